//! `/api/v1/events` and `/api/v1/overview`: what the parts of the platform report, and the
//! figures the dashboard shows.

use super::{page_limit, ApiJson, ApiQuery, Page};
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use qalxan_core::{now_millis, EventKind, InstitutionId, Period, Role, Severity, Timestamp};
use qalxan_store::{EventFilter, NewEvent, Overview, StoredEvent};
use serde::{Deserialize, Serialize};

/// Largest number of events in one request.
pub const MAX_BATCH: usize = 1000;
/// How far in the future an event's time may lie (clock skew between machines).
const MAX_FUTURE_MS: i64 = 3_600_000;
/// 2000-01-01T00:00:00Z: nothing the platform reports happened earlier.
const EARLIEST_MS: i64 = 946_684_800_000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// 1 to 1000 events, stored together or not at all.
    pub events: Vec<EventInput>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub kind: EventKind,
    /// When it happened; defaults to when the server receives it.
    pub occurred_at: Option<Timestamp>,
    /// The institution concerned. A token confined to an institution reports only for it (and
    /// may leave this out).
    pub institution_id: Option<InstitutionId>,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// How many occurrences this event stands for; defaults to 1.
    #[serde(default = "one")]
    pub count: i64,
    /// A magnitude, such as a flood's peak in requests per second.
    pub value: Option<i64>,
    /// Details, as a JSON object.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

fn default_severity() -> Severity {
    Severity::Medium
}

fn one() -> i64 {
    1
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventsAccepted {
    pub accepted: usize,
    pub ids: Vec<i64>,
}

/// Records a batch of events (gateway blocks, scanner detections, sandbox verdicts...).
#[utoipa::path(post, operation_id = "report_events", path = "/api/v1/events", tag = "events", request_body = EventBatch,
    responses((status = 201, body = EventsAccepted), (status = 403, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(batch): ApiJson<EventBatch>,
) -> Result<(StatusCode, Json<EventsAccepted>), ApiError> {
    principal.require(&[Role::Admin, Role::Analyst, Role::Sensor])?;
    if batch.events.is_empty() {
        return Err(ApiError::invalid("events", "must hold at least one event"));
    }
    if batch.events.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "events",
            format!(
                "holds {} events; send at most {MAX_BATCH} per request",
                batch.events.len()
            ),
        ));
    }
    let now = now_millis();
    let source = principal.actor().name;
    let mut events = Vec::with_capacity(batch.events.len());
    for (i, e) in batch.events.into_iter().enumerate() {
        let occurred_at = e.occurred_at.map_or(now, |t| t.0);
        if occurred_at > now + MAX_FUTURE_MS || occurred_at < EARLIEST_MS {
            return Err(ApiError::invalid(
                format!("events[{i}].occurred_at"),
                "lies in the future or before 2000",
            ));
        }
        let institution_id = match (principal.institution, e.institution_id) {
            (Some(own), None) => Some(own),
            (Some(own), Some(given)) if own != given => {
                return Err(ApiError::forbidden(format!(
                    "events[{i}].institution_id: this caller reports only for institution {own}"
                )))
            }
            (_, given) => given,
        };
        events.push(NewEvent {
            occurred_at,
            kind: e.kind,
            source: source.clone(),
            institution_id,
            severity: e.severity,
            count: e.count,
            value: e.value,
            attributes: serde_json::Value::Object(e.attributes),
        });
    }
    let ids = state.store().insert_events(&events).await?;
    super::alerts::raise_from_events(&state, &source, &events).await;
    // A block by the blocklist is a sighting of the indicator it matched.
    let mut sightings: std::collections::HashMap<
        (String, Option<qalxan_core::InstitutionId>),
        i64,
    > = std::collections::HashMap::new();
    for e in &events {
        if let Some(v) = e.attributes.get("indicator").and_then(|v| v.as_str()) {
            *sightings
                .entry((v.to_owned(), e.institution_id))
                .or_default() += e.count.max(1);
        }
    }
    for ((value, institution), count) in sightings {
        if let Ok(ob) = qalxan_intel::Observable::guess(&value) {
            if let Err(e) = state
                .store()
                .record_sighting(&principal.actor(), &ob, institution, count)
                .await
            {
                tracing::warn!(error = %e, "could not record a sighting");
            }
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(EventsAccepted {
            accepted: ids.len(),
            ids,
        }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    pub kind: Option<EventKind>,
    pub institution_id: Option<InstitutionId>,
    /// Events older than this id (from `next_before`).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Roles that read events and figures (an institution's staff only their own).
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Auditor, Role::Institution];

/// Events the caller may see, newest first.
#[utoipa::path(get, operation_id = "list_events", path = "/api/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, body = Page<StoredEvent>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<Page<StoredEvent>>, ApiError> {
    principal.require(READERS)?;
    let institution_id = match (principal.scope(), query.institution_id) {
        (Some(own), Some(asked)) if own != asked => {
            return Ok(Json(Page::new(Vec::new(), 1, |_| 0)))
        }
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    let filter = EventFilter {
        institution_id,
        kind: query.kind,
        before_id: query.before,
        limit: page_limit(query.limit),
    };
    let events = state.store().list_events(&filter).await?;
    Ok(Json(Page::new(events, filter.limit, |e| e.id)))
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// `24h`, `30d` or `6m`; defaults to `24h`.
    #[param(value_type = Option<String>)]
    pub period: Option<Period>,
}

/// The dashboard's figures over a period, for the caller's scope.
pub(crate) async fn overview_for(
    state: &AppState,
    principal: &Principal,
    period: Period,
) -> Result<Overview, ApiError> {
    principal.require(READERS)?;
    let (start, _) = period.window(now_millis());
    Ok(state
        .store()
        .overview(start, period.bin_ms(), period.bins(), principal.scope())
        .await?)
}

/// The figures a CERT reports, each with a per-bin series for charts.
#[utoipa::path(get, operation_id = "get_overview", path = "/api/v1/overview", tag = "events", params(OverviewQuery),
    responses((status = 200, body = Overview), (status = 403, body = Problem)))]
pub async fn overview(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    Ok(Json(
        overview_for(&state, &principal, query.period.unwrap_or(Period::Day)).await?,
    ))
}
