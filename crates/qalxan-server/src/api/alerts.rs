//! `/api/v1/alerts`: what every part raises, aggregated by key, and what analysts do with it
//! (acknowledge, dismiss with a reason, merge, promote to an incident).
//!
//! Parts raise alerts two ways: explicitly through `POST /api/v1/alerts`, or implicitly by
//! reporting events (gateway blocks and bans, scanner detections, sandbox verdicts), each of
//! which raises the alert `qalxan_incident::alert::from_event` derives from it.

use super::{page_limit, parse_id, ApiJson, ApiQuery, Page};
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::{live, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::Json;
use qalxan_core::{now_millis, InstitutionId, Role, Severity, Timestamp};
use qalxan_incident::alert::{self, AlertDraft};
use qalxan_incident::AlertStatus;
use qalxan_store::{AlertFilter, AlertRecord, IngestSummary, NewEvent, Observed, PromoteTo};
use serde::Deserialize;

/// Largest number of alerts in one request.
pub const MAX_BATCH: usize = 1000;
/// Roles that raise alerts: machines and the CERT.
const RAISERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Sensor];
/// Roles that work on alerts.
pub(crate) const HANDLERS: &[Role] = &[Role::Admin, Role::Analyst];
/// Roles that read alerts (an institution's staff only their own).
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Auditor, Role::Institution];

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertBatch {
    /// 1 to 1000 alerts.
    pub alerts: Vec<AlertInput>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertInput {
    /// The kind of detection, such as `phishing.reported` or `agent.malware`.
    pub rule: String,
    /// What people read; defaults to the rule and the first observable.
    #[serde(default)]
    pub title: String,
    #[serde(default = "medium")]
    pub severity: Severity,
    /// A token confined to an institution raises alerts only for it (and may leave this out).
    pub institution_id: Option<InstitutionId>,
    /// Values in the threat-intelligence vocabulary; `type` is guessed when absent.
    #[serde(default)]
    pub observables: Vec<ObservableInput>,
    /// What aggregates alerts; defaults to rule, institution and the first observable.
    pub key: Option<String>,
    /// How many detections this alert stands for (default 1).
    #[serde(default = "one")]
    pub count: i64,
    /// Defaults to when the server receives it.
    pub occurred_at: Option<Timestamp>,
}

#[derive(Deserialize, utoipa::ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ObservableInput {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: String,
}

fn medium() -> Severity {
    Severity::Medium
}
fn one() -> i64 {
    1
}

/// Checks and normalises observables (the same spelling the threat-intelligence store uses,
/// so an observable and its indicator match).
pub(crate) fn observables_of(
    list: &[ObservableInput],
    field: &str,
) -> Result<Vec<Observed>, ApiError> {
    list.iter()
        .enumerate()
        .map(|(i, o)| {
            let ob = super::intel::observable_of(
                o.kind.as_deref(),
                &o.value,
                &format!("{field}[{i}].value"),
            )?;
            Ok(Observed {
                kind: ob.kind.as_str().to_owned(),
                value: ob.value,
            })
        })
        .collect()
}

/// How long an alert keeps absorbing alerts with its key.
pub(crate) fn window_ms(state: &AppState) -> i64 {
    i64::from(state.config().alert_window_minutes.max(1)) * 60_000
}

/// Raises the alerts `events` imply. Alerts are derived data: a failure is logged, never
/// turned into a lost event report.
pub(crate) async fn raise_from_events(state: &AppState, source: &str, events: &[NewEvent]) {
    let drafts: Vec<AlertDraft> = events
        .iter()
        .filter_map(|e| {
            alert::from_event(
                e.kind,
                e.severity,
                e.institution_id.map(|i| i.0),
                e.count,
                e.occurred_at,
                &e.attributes,
            )
        })
        .collect();
    if drafts.is_empty() {
        return;
    }
    if let Err(e) = state
        .store()
        .ingest_alerts(source, &drafts, window_ms(state))
        .await
    {
        tracing::warn!(error = %e, "could not raise alerts from events");
    } else {
        state.alerts_changed();
    }
}

/// Raises alerts (aggregated with live alerts of the same key).
#[utoipa::path(post, operation_id = "raise_alerts", path = "/api/v1/alerts", tag = "incidents",
    request_body = AlertBatch,
    responses((status = 201, body = IngestSummary), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(batch): ApiJson<AlertBatch>,
) -> Result<(StatusCode, Json<IngestSummary>), ApiError> {
    principal.require(RAISERS)?;
    if batch.alerts.is_empty() || batch.alerts.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "alerts",
            format!("must hold 1 to {MAX_BATCH} alerts"),
        ));
    }
    let now = now_millis();
    let mut drafts = Vec::with_capacity(batch.alerts.len());
    for (i, a) in batch.alerts.into_iter().enumerate() {
        let rule = a.rule.trim();
        if rule.is_empty() || rule.len() > 100 {
            return Err(ApiError::invalid(
                format!("alerts[{i}].rule"),
                "must be 1 to 100 characters",
            ));
        }
        let institution_id = match (principal.institution, a.institution_id) {
            (Some(own), Some(given)) if own != given => {
                return Err(ApiError::forbidden(format!(
                    "alerts[{i}].institution_id: this caller reports only for institution {own}"
                )))
            }
            (Some(own), _) => Some(own),
            (None, given) => given,
        };
        let observables = observables_of(&a.observables, &format!("alerts[{i}].observables"))?;
        let first = observables.first().map(|o| o.value.as_str()).unwrap_or("");
        let title = if a.title.trim().is_empty() {
            format!("{rule} {first}").trim().to_owned()
        } else {
            a.title.trim().to_owned()
        };
        let key = match a.key.as_deref().map(str::trim) {
            Some(k) if !k.is_empty() => alert::cut(k),
            _ => alert::key(rule, institution_id.map(|i| i.0), first),
        };
        let occurred_at = a.occurred_at.map_or(now, |t| t.0);
        if occurred_at > now + 3_600_000 {
            return Err(ApiError::invalid(
                format!("alerts[{i}].occurred_at"),
                "lies in the future",
            ));
        }
        drafts.push(AlertDraft {
            key,
            rule: rule.to_owned(),
            title: alert::cut(&title),
            severity: a.severity,
            institution_id: institution_id.map(|i| i.0),
            observables: observables
                .into_iter()
                .take(alert::MAX_OBSERVABLES)
                .map(|o| (o.kind, o.value))
                .collect(),
            count: a.count,
            occurred_at,
        });
    }
    let summary = state
        .store()
        .ingest_alerts(&principal.actor().name, &drafts, window_ms(&state))
        .await?;
    state.alerts_changed();
    Ok((StatusCode::CREATED, Json(summary)))
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    #[param(value_type = Option<String>)]
    pub status: Option<AlertStatus>,
    pub rule: Option<String>,
    /// Only alerts at least this severe.
    pub severity: Option<Severity>,
    pub institution_id: Option<InstitutionId>,
    /// Only alerts seen at or after this time (RFC 3339).
    pub since: Option<Timestamp>,
    /// Alerts older than this id (from `next_before`).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

impl AlertQuery {
    pub(crate) fn filter(&self, principal: &Principal) -> Option<AlertFilter> {
        let institution_id = match (principal.scope(), self.institution_id) {
            (Some(own), Some(asked)) if own != asked => return None,
            (Some(own), _) => Some(own),
            (None, asked) => asked,
        };
        Some(AlertFilter {
            institution_id,
            status: self.status,
            rule: self.rule.clone().filter(|r| !r.is_empty()),
            min_severity: self.severity,
            since: self.since.map(|t| t.0),
            incident_id: None,
            before_id: self.before,
            limit: page_limit(self.limit),
        })
    }
}

/// Alerts the caller may see, newest first.
#[utoipa::path(get, operation_id = "list_alerts", path = "/api/v1/alerts", tag = "incidents", params(AlertQuery),
    responses((status = 200, body = Page<AlertRecord>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AlertQuery>,
) -> Result<Json<Page<AlertRecord>>, ApiError> {
    principal.require(READERS)?;
    let Some(filter) = query.filter(&principal) else {
        return Ok(Json(Page::new(Vec::new(), 1, |_| 0)));
    };
    let alerts = state.store().list_alerts(&filter).await?;
    Ok(Json(Page::new(alerts, filter.limit, |a| a.id)))
}

/// Follows the alerts the caller may see as they are raised and change: server-sent events
/// (`text/event-stream`). `alert` events carry an alert as listed that matches the filters;
/// `gone` events (`{"id": N}`) an alert that changed and no longer matches the status asked
/// for; `lagged` says more changed at once than one batch holds (list afresh). Each batch's
/// last event has an id: send it back as `Last-Event-ID` to resume (delivery is at least
/// once: changes from a few seconds before it may come again). Streams last five minutes;
/// clients reconnect.
#[utoipa::path(get, operation_id = "follow_alerts", path = "/api/v1/alerts/stream", tag = "incidents", params(AlertQuery),
    responses((status = 200, content_type = "text/event-stream", description = "alert, gone and lagged events"),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn follow(
    State(state): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    ApiQuery(query): ApiQuery<AlertQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    principal.require(READERS)?;
    let filter = query
        .filter(&principal)
        .ok_or_else(|| ApiError::not_found("institution"))?;
    let follower = live::Follower::new(&state, filter.institution_id, live::resume_from(&headers))
        .ok_or_else(|| ApiError::unavailable("too many live views on this server; retry later"))?;
    Ok(live::stream(follower, move |change| {
        let mut events = Vec::new();
        for a in &change.alerts {
            if filter.matches(a) {
                match Event::default().event("alert").json_data(a) {
                    Ok(e) => events.push(e),
                    Err(e) => tracing::warn!(error = %e, "could not encode an alert"),
                }
            } else if live::left(&filter, a) {
                events.push(
                    Event::default()
                        .event("gone")
                        .data(format!("{{\"id\":{}}}", a.id)),
                );
            }
        }
        std::future::ready(live::finish(events, &change))
    })
    .into_response())
}

pub(crate) async fn visible_alert(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<AlertRecord, ApiError> {
    state
        .store()
        .get_alert(id, principal.scope())
        .await?
        .ok_or_else(|| ApiError::not_found("alert"))
}

/// One alert.
#[utoipa::path(get, operation_id = "get_alert", path = "/api/v1/alerts/{id}", tag = "incidents",
    params(("id" = i64, Path)), responses((status = 200, body = AlertRecord), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<AlertRecord>, ApiError> {
    principal.require(READERS)?;
    let id = parse_id(&id, "alert")?;
    Ok(Json(visible_alert(&state, &principal, id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertStatusChange {
    /// `acknowledged`, `dismissed` or `open` (to reopen).
    #[schema(value_type = String)]
    pub status: AlertStatus,
    /// Required to dismiss.
    #[serde(default)]
    pub reason: String,
}

/// Acknowledges, dismisses (with a reason) or reopens an alert.
#[utoipa::path(post, operation_id = "set_alert_status", path = "/api/v1/alerts/{id}/status", tag = "incidents",
    params(("id" = i64, Path)), request_body = AlertStatusChange,
    responses((status = 200, body = AlertRecord), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AlertStatusChange>,
) -> Result<Json<AlertRecord>, ApiError> {
    principal.require(HANDLERS)?;
    let id = parse_id(&id, "alert")?;
    visible_alert(&state, &principal, id).await?;
    let alert = state
        .store()
        .set_alert_status(&principal.actor(), id, body.status, &body.reason)
        .await?;
    state.alerts_changed();
    Ok(Json(alert))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertMerge {
    /// The alerts to fold into this one.
    pub alerts: Vec<i64>,
}

/// Merges other alerts into this one.
#[utoipa::path(post, operation_id = "merge_alerts", path = "/api/v1/alerts/{id}/merge", tag = "incidents",
    params(("id" = i64, Path)), request_body = AlertMerge,
    responses((status = 200, body = AlertRecord), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn merge(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AlertMerge>,
) -> Result<Json<AlertRecord>, ApiError> {
    principal.require(HANDLERS)?;
    let id = parse_id(&id, "alert")?;
    if body.alerts.is_empty() || body.alerts.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "alerts",
            format!("name 1 to {MAX_BATCH} alerts"),
        ));
    }
    let alert = state
        .store()
        .merge_alerts(&principal.actor(), id, &body.alerts)
        .await?;
    state.alerts_changed();
    Ok(Json(alert))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertPromotion {
    pub alerts: Vec<i64>,
    /// Add the alerts to this incident instead of opening a new one.
    pub incident_id: Option<i64>,
    /// The new incident (defaults: the first alert's title and severity, `other/undetermined`).
    pub incident: Option<super::incidents::IncidentInput>,
}

/// Promotes alerts to a new incident (or into an existing one).
#[utoipa::path(post, operation_id = "promote_alerts", path = "/api/v1/alerts/promote", tag = "incidents",
    request_body = AlertPromotion,
    responses((status = 201, body = super::incidents::IncidentView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn promote(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<AlertPromotion>,
) -> Result<(StatusCode, Json<super::incidents::IncidentView>), ApiError> {
    principal.require(HANDLERS)?;
    if body.alerts.is_empty() || body.alerts.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "alerts",
            format!("name 1 to {MAX_BATCH} alerts"),
        ));
    }
    let first = visible_alert(&state, &principal, body.alerts[0]).await?;
    let to = match body.incident_id {
        Some(id) => PromoteTo::Existing(id),
        None => {
            let input = body.incident.unwrap_or_default();
            PromoteTo::New(input.into_new(Some(&first))?)
        }
    };
    let incident = state
        .store()
        .promote_alerts(&principal.actor(), &body.alerts, to)
        .await?;
    state.incidents_changed().notify_one();
    state.alerts_changed();
    Ok((
        StatusCode::CREATED,
        Json(super::incidents::IncidentView::new(incident, &state)),
    ))
}
