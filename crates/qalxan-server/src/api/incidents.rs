//! `/api/v1/incidents` and `/api/v1/reports`: incidents with their team, tasks, timeline,
//! observables (sent to threat intelligence), victims and evidence (scanned on upload), and
//! the reports for the authorities as JSON, Markdown or PDF.
//!
//! An institution's staff read their own institution's incidents and comment on them; any
//! other incident is a 404 to them, as are its evidence and report.

use super::alerts::ObservableInput;
use super::{page_limit, parse_id, ApiJson, ApiQuery, Page};
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qalxan_core::{now_millis, InstitutionId, Role, Severity, Timestamp, Tlp, DAY_MS};
use qalxan_incident::report::{periodic_document, Audience, Document};
use qalxan_incident::{
    Category, Impact, Pap, SlaPolicy, Status, TaskStatus, Timer, VictimKind, VictimRole,
};
use qalxan_intel::{Indicator, Observable};
use qalxan_store::{
    AlertRecord, Evidence, IncidentDetail, IncidentFilter, IncidentObservable, IncidentRecord,
    IncidentUpdate, LogEntry, Member, NewIncident, NewVictim, Task, Victim,
};
use serde::{Deserialize, Serialize};

/// Roles that run incidents.
pub(crate) const HANDLERS: &[Role] = &[Role::Admin, Role::Analyst];
/// Roles that read incidents (an institution's staff only their institution's).
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Auditor, Role::Institution];
/// Roles that comment on and add evidence to incidents they can see.
pub(crate) const CONTRIBUTORS: &[Role] = &[Role::Admin, Role::Analyst, Role::Institution];

/// A new incident, or the defaults a promotion fills in.
#[derive(Deserialize, utoipa::ToSchema, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct IncidentInput {
    pub title: Option<String>,
    #[serde(default)]
    pub description: String,
    /// RSIT `class/type`, e.g. `fraud/phishing` (default `other/undetermined`).
    pub category: Option<String>,
    pub severity: Option<Severity>,
    #[schema(value_type = Option<String>)]
    pub impact: Option<Impact>,
    /// Default TLP:AMBER.
    pub tlp: Option<String>,
    /// Default PAP:AMBER.
    #[schema(value_type = Option<String>)]
    pub pap: Option<Pap>,
    #[serde(default)]
    pub institutions: Vec<InstitutionId>,
    pub lead_user_id: Option<i64>,
}

pub(crate) fn category_of(text: &str) -> Result<Category, ApiError> {
    Category::parse(text).map_err(|e| ApiError::invalid("category", e.to_string()))
}

fn tlp_of(text: &str) -> Result<Tlp, ApiError> {
    Tlp::parse_lenient(text).map_err(|e| ApiError::invalid("tlp", e.to_string()))
}

impl IncidentInput {
    pub fn into_new(self, from: Option<&AlertRecord>) -> Result<NewIncident, ApiError> {
        let title = match (self.title, from) {
            (Some(t), _) => t,
            (None, Some(a)) => a.title.clone(),
            (None, None) => return Err(ApiError::invalid("title", "is required")),
        };
        Ok(NewIncident {
            title,
            description: self.description,
            category: category_of(self.category.as_deref().unwrap_or("other/undetermined"))?,
            severity: self
                .severity
                .or(from.map(|a| a.severity))
                .unwrap_or(Severity::Medium),
            impact: self.impact.unwrap_or(Impact::Medium),
            tlp: self
                .tlp
                .as_deref()
                .map(tlp_of)
                .transpose()?
                .unwrap_or(Tlp::Amber),
            pap: self.pap.unwrap_or(Pap::Amber),
            institutions: self.institutions,
            lead_user_id: self.lead_user_id,
        })
    }
}

/// The SLA clocks of an incident.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Sla {
    pub triage: Timer,
    pub contain: Timer,
}

pub(crate) fn sla_of(policy: &SlaPolicy, r: &IncidentRecord) -> Sla {
    let (triage, contain) = policy.timers(
        r.severity,
        r.opened_at.0,
        r.triaged_at.map(|t| t.0),
        r.contained_at.map(|t| t.0),
        now_millis(),
    );
    Sla { triage, contain }
}

/// An incident as the API returns it: its fields and its SLA clocks.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: IncidentRecord,
    pub category_label: String,
    pub sla: Sla,
}

impl IncidentView {
    pub(crate) fn new(incident: IncidentRecord, state: &AppState) -> IncidentView {
        IncidentView {
            category_label: Category::parse(&incident.category)
                .map(|c| c.label())
                .unwrap_or_else(|_| incident.category.clone()),
            sla: sla_of(&state.config().sla(), &incident),
            incident,
        }
    }
}

/// An incident with everything attached, and its category's name and SLA clocks.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IncidentDetailView {
    #[serde(flatten)]
    pub detail: IncidentDetail,
    pub category_label: String,
    pub sla: Sla,
}

fn detail_view(detail: IncidentDetail, state: &AppState) -> IncidentDetailView {
    let IncidentView {
        category_label,
        sla,
        ..
    } = IncidentView::new(detail.incident.clone(), state);
    IncidentDetailView {
        detail,
        category_label,
        sla,
    }
}

/// The incident, if the caller may see it; a 404 otherwise (never a 403 that would confirm
/// it exists).
pub(crate) async fn visible(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<IncidentDetail, ApiError> {
    let id = parse_id(id, "incident")?;
    state
        .store()
        .get_incident(id, principal.scope())
        .await?
        .ok_or_else(|| ApiError::not_found("incident"))
}

/// The incident's id, if the caller may see it (one query, for changes that need no more).
pub(crate) async fn visible_id(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<i64, ApiError> {
    let id = parse_id(id, "incident")?;
    if state
        .store()
        .incident_visible(id, principal.scope())
        .await?
    {
        Ok(id)
    } else {
        Err(ApiError::not_found("incident"))
    }
}

/// Opens an incident.
#[utoipa::path(post, operation_id = "create_incident", path = "/api/v1/incidents", tag = "incidents",
    request_body = IncidentInput,
    responses((status = 201, body = IncidentView), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<IncidentInput>,
) -> Result<(StatusCode, Json<IncidentView>), ApiError> {
    principal.require(HANDLERS)?;
    let record = state
        .store()
        .create_incident(&principal.actor(), body.into_new(None)?)
        .await?;
    state.incidents_changed().notify_one();
    Ok((StatusCode::CREATED, Json(IncidentView::new(record, &state))))
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IncidentQuery {
    #[param(value_type = Option<String>)]
    pub status: Option<Status>,
    /// Only incidents not closed.
    #[serde(default)]
    pub open: bool,
    /// A class (`fraud`) or a category (`fraud/phishing`).
    pub category: Option<String>,
    pub institution_id: Option<InstitutionId>,
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

impl IncidentQuery {
    pub(crate) fn filter(&self, principal: &Principal) -> Option<IncidentFilter> {
        let institution_id = match (principal.scope(), self.institution_id) {
            (Some(own), Some(asked)) if own != asked => return None,
            (Some(own), _) => Some(own),
            (None, asked) => asked,
        };
        Some(IncidentFilter {
            institution_id,
            status: self.status,
            open: self.open,
            category: self.category.clone().filter(|c| !c.is_empty()),
            before_id: self.before,
            limit: page_limit(self.limit),
        })
    }
}

/// Incidents the caller may see, newest first.
#[utoipa::path(get, operation_id = "list_incidents", path = "/api/v1/incidents", tag = "incidents",
    params(IncidentQuery), responses((status = 200, body = Page<IncidentView>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<IncidentQuery>,
) -> Result<Json<Page<IncidentView>>, ApiError> {
    principal.require(READERS)?;
    let Some(filter) = query.filter(&principal) else {
        return Ok(Json(Page::new(Vec::new(), 1, |_| 0)));
    };
    let items: Vec<IncidentView> = state
        .store()
        .list_incidents(&filter)
        .await?
        .into_iter()
        .map(|r| IncidentView::new(r, &state))
        .collect();
    Ok(Json(Page::new(items, filter.limit, |v| v.incident.id)))
}

/// One incident with its team, tasks, timeline, observables, victims, evidence and alerts.
#[utoipa::path(get, operation_id = "get_incident", path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = i64, Path)), responses((status = 200, body = IncidentDetailView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<IncidentDetailView>, ApiError> {
    principal.require(READERS)?;
    Ok(Json(detail_view(
        visible(&state, &principal, &id).await?,
        &state,
    )))
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct IncidentPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub severity: Option<Severity>,
    #[schema(value_type = Option<String>)]
    pub impact: Option<Impact>,
    pub tlp: Option<String>,
    #[schema(value_type = Option<String>)]
    pub pap: Option<Pap>,
    pub institutions: Option<Vec<InstitutionId>>,
}

/// Changes an incident's description, classification or affected institutions.
#[utoipa::path(patch, operation_id = "update_incident", path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = i64, Path)), request_body = IncidentPatch,
    responses((status = 200, body = IncidentView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(p): ApiJson<IncidentPatch>,
) -> Result<Json<IncidentView>, ApiError> {
    principal.require(HANDLERS)?;
    let id = visible_id(&state, &principal, &id).await?;
    let record = state
        .store()
        .update_incident(
            &principal.actor(),
            id,
            IncidentUpdate {
                title: p.title,
                description: p.description,
                category: p.category.as_deref().map(category_of).transpose()?,
                severity: p.severity,
                impact: p.impact,
                tlp: p.tlp.as_deref().map(tlp_of).transpose()?,
                pap: p.pap,
                institutions: p.institutions,
            },
        )
        .await?;
    Ok(Json(IncidentView::new(record, &state)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// `new`, `triage`, `investigating`, `contained`, `eradicated`, `recovered` or `closed`.
    #[schema(value_type = String)]
    pub status: Status,
    /// Required to close or reopen.
    #[serde(default)]
    pub reason: String,
}

/// Moves an incident along its workflow.
#[utoipa::path(post, operation_id = "set_incident_status", path = "/api/v1/incidents/{id}/status", tag = "incidents",
    params(("id" = i64, Path)), request_body = StatusChange,
    responses((status = 200, body = IncidentView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusChange>,
) -> Result<Json<IncidentView>, ApiError> {
    principal.require(HANDLERS)?;
    let id = visible_id(&state, &principal, &id).await?;
    let record = state
        .store()
        .set_incident_status(&principal.actor(), id, body.status, &body.reason)
        .await?;
    Ok(Json(IncidentView::new(record, &state)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamInput {
    pub lead_user_id: Option<i64>,
    #[serde(default)]
    pub members: Vec<i64>,
}

/// Forms the incident's investigation team (replacing the previous one).
#[utoipa::path(put, operation_id = "set_incident_team", path = "/api/v1/incidents/{id}/team", tag = "incidents",
    params(("id" = i64, Path)), request_body = TeamInput,
    responses((status = 200, body = Vec<Member>), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_team(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TeamInput>,
) -> Result<Json<Vec<Member>>, ApiError> {
    principal.require(HANDLERS)?;
    let id = visible_id(&state, &principal, &id).await?;
    if body.members.len() > 100 {
        return Err(ApiError::invalid("members", "at most 100"));
    }
    Ok(Json(
        state
            .store()
            .set_incident_team(&principal.actor(), id, body.lead_user_id, &body.members)
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    pub title: String,
    pub owner_user_id: Option<i64>,
    pub due_at: Option<Timestamp>,
}

/// Adds a task.
#[utoipa::path(post, operation_id = "add_incident_task", path = "/api/v1/incidents/{id}/tasks", tag = "incidents",
    params(("id" = i64, Path)), request_body = TaskInput,
    responses((status = 201, body = Task), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn add_task(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TaskInput>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    principal.require(HANDLERS)?;
    let id = visible_id(&state, &principal, &id).await?;
    let task = state
        .store()
        .add_incident_task(
            &principal.actor(),
            id,
            &body.title,
            body.owner_user_id,
            body.due_at.map(|t| t.0),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(task)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    #[schema(value_type = Option<String>)]
    pub status: Option<TaskStatus>,
    /// `null` removes the owner.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub owner_user_id: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub due_at: Option<Option<Timestamp>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Changes a task's state, owner or due date.
#[utoipa::path(patch, operation_id = "update_incident_task", path = "/api/v1/incidents/{id}/tasks/{task}", tag = "incidents",
    params(("id" = i64, Path), ("task" = i64, Path)), request_body = TaskPatch,
    responses((status = 200, body = Task), (status = 404, body = Problem)))]
pub async fn update_task(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, task)): Path<(String, String)>,
    ApiJson(body): ApiJson<TaskPatch>,
) -> Result<Json<Task>, ApiError> {
    principal.require(HANDLERS)?;
    let id = visible_id(&state, &principal, &id).await?;
    let task = parse_id(&task, "task")?;
    Ok(Json(
        state
            .store()
            .update_incident_task(
                &principal.actor(),
                id,
                task,
                body.status,
                body.owner_user_id,
                body.due_at.map(|d| d.map(|t| t.0)),
            )
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentInput {
    pub text: String,
}

/// Adds a comment to the timeline (institution staff on their own incidents too).
#[utoipa::path(post, operation_id = "comment_incident", path = "/api/v1/incidents/{id}/comments", tag = "incidents",
    params(("id" = i64, Path)), request_body = CommentInput,
    responses((status = 201, body = LogEntry), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn comment(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CommentInput>,
) -> Result<(StatusCode, Json<LogEntry>), ApiError> {
    principal.require(CONTRIBUTORS)?;
    let id = visible_id(&state, &principal, &id).await?;
    let entry = state
        .store()
        .add_incident_comment(&principal.actor(), id, &body.text)
        .await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservablesInput {
    pub observables: Vec<ObservableInput>,
    /// Also send them to threat intelligence as indicators (default true), marked with the
    /// incident's TLP.
    #[serde(default = "yes")]
    pub to_intel: bool,
}

fn yes() -> bool {
    true
}

/// Attaches observables to an incident and (by default) makes them indicators.
#[utoipa::path(post, operation_id = "add_incident_observables", path = "/api/v1/incidents/{id}/observables", tag = "incidents",
    params(("id" = i64, Path)), request_body = ObservablesInput,
    responses((status = 201, body = Vec<IncidentObservable>), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn add_observables(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ObservablesInput>,
) -> Result<(StatusCode, Json<Vec<IncidentObservable>>), ApiError> {
    principal.require(HANDLERS)?;
    let d = visible(&state, &principal, &id).await?;
    if body.observables.is_empty() || body.observables.len() > 1000 {
        return Err(ApiError::invalid(
            "observables",
            "name 1 to 1000 observables",
        ));
    }
    let observed = super::alerts::observables_of(&body.observables, "observables")?;
    let list = send_observables(&state, &principal, &d.incident, &observed, body.to_intel).await?;
    Ok((StatusCode::CREATED, Json(list)))
}

/// Makes observables indicators (when asked) and attaches them to the incident.
pub(crate) async fn send_observables(
    state: &AppState,
    principal: &Principal,
    incident: &IncidentRecord,
    observed: &[qalxan_store::Observed],
    to_intel: bool,
) -> Result<Vec<IncidentObservable>, ApiError> {
    if to_intel {
        let source = format!("incident #{}", incident.id);
        let mut indicators = Vec::new();
        for o in observed {
            let kind = o
                .kind
                .parse()
                .map_err(|e: qalxan_intel::ObservableError| ApiError::invalid("type", e.reason))?;
            let ob = Observable::new(kind, &o.value)
                .map_err(|e| ApiError::invalid("observables", e.to_string()))?;
            let mut ind = Indicator::new(ob, &source);
            ind.tlp = incident.tlp;
            ind.confidence = 75;
            ind.description = incident.title.clone();
            ind.tags = vec![format!("rsit:{}", incident.category)];
            indicators.push(ind);
        }
        super::intel::store_indicators(state, principal, &source, &indicators, &[]).await?;
    }
    Ok(state
        .store()
        .add_incident_observables(&principal.actor(), incident.id, observed)
        .await?)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VictimInput {
    /// `employee` or `citizen`.
    #[schema(value_type = String)]
    pub kind: VictimKind,
    /// The employer, for employees.
    pub institution_id: Option<InstitutionId>,
    /// For employees: `administrative`, `technical`, `management` or `other`.
    #[schema(value_type = Option<String>)]
    pub role: Option<VictimRole>,
    /// How many people (default 1).
    #[serde(default = "one")]
    pub count: i64,
    #[serde(default)]
    pub note: String,
}

fn one() -> i64 {
    1
}

/// Records victims of an incident.
#[utoipa::path(post, operation_id = "add_incident_victims", path = "/api/v1/incidents/{id}/victims", tag = "incidents",
    params(("id" = i64, Path)), request_body = VictimInput,
    responses((status = 201, body = Victim), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn add_victims(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VictimInput>,
) -> Result<(StatusCode, Json<Victim>), ApiError> {
    principal.require(HANDLERS)?;
    let id = visible_id(&state, &principal, &id).await?;
    let v = state
        .store()
        .add_incident_victims(
            &principal.actor(),
            id,
            NewVictim {
                kind: body.kind,
                institution_id: body.institution_id,
                role: body.role,
                count: body.count,
                note: body.note,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvidenceQuery {
    /// The file's name.
    pub name: Option<String>,
}

/// Scans and attaches an evidence file (stored once per SHA-256).
pub(crate) async fn attach_evidence(
    state: &AppState,
    principal: &Principal,
    incident: i64,
    name: &str,
    data: Bytes,
) -> Result<Evidence, ApiError> {
    let scanner = state.scanner().clone();
    let bytes = data.clone();
    let outcome = tokio::task::spawn_blocking(move || scanner.scan_bytes(&bytes))
        .await
        .map_err(|_| ApiError::unavailable("the scan did not complete"))?;
    let scan = if outcome.detections.is_empty() {
        "clean".to_owned()
    } else {
        outcome
            .detections
            .iter()
            .map(|d| format!("{} FOUND", d.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let name: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let name = if name.trim().is_empty() {
        "evidence".to_owned()
    } else {
        name
    };
    let sha = super::sha256_hex(&data);
    Ok(state
        .store()
        .add_incident_evidence(&principal.actor(), incident, &name, &sha, &data, &scan)
        .await?)
}

/// Uploads an evidence file (the request body); the scan engine checks it first.
#[utoipa::path(post, operation_id = "add_incident_evidence", path = "/api/v1/incidents/{id}/evidence", tag = "incidents",
    params(("id" = i64, Path), EvidenceQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Evidence), (status = 404, body = Problem), (status = 413, body = Problem)))]
pub async fn add_evidence(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<EvidenceQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Evidence>), ApiError> {
    principal.require(CONTRIBUTORS)?;
    let id = visible_id(&state, &principal, &id).await?;
    let body = super::upload_body(
        body,
        "evidence_max_bytes",
        state.config().evidence_max_bytes,
    )?;
    let e = attach_evidence(
        &state,
        &principal,
        id,
        query.name.as_deref().unwrap_or("evidence"),
        body,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(e)))
}

/// Downloads an evidence file.
#[utoipa::path(get, operation_id = "get_incident_evidence", path = "/api/v1/incidents/{id}/evidence/{evidence}", tag = "incidents",
    params(("id" = i64, Path), ("evidence" = i64, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = Problem)))]
pub async fn get_evidence(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, evidence)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    principal.require(READERS)?;
    let id = parse_id(&id, "incident")?;
    let evidence = parse_id(&evidence, "evidence")?;
    let (e, bytes) = state
        .store()
        .evidence_content(id, evidence, principal.scope())
        .await?
        .ok_or_else(|| ApiError::not_found("evidence"))?;
    let safe: String = e
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{safe}\""),
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header("X-Content-SHA256", e.sha256)
        .body(Body::from(bytes))
        .map_err(|e| ApiError::internal(&e))
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportFormat {
    /// `md` (default), `pdf` or `json`.
    pub format: Option<String>,
    /// `cert` (default): everything; `partners`: what may be shared under the incident's TLP
    /// (refused for TLP:AMBER+STRICT and TLP:RED).
    #[param(value_type = Option<String>)]
    pub audience: Option<Audience>,
}

/// A report's bytes in `format` (`md`, `pdf` or `json`) and their media type.
pub fn render_report(
    doc: &Document,
    title: &str,
    format: Option<&str>,
    fonts: Option<qalxan_incident::pdf::Fonts<'_>>,
) -> Result<(&'static str, Vec<u8>), ApiError> {
    match format.unwrap_or("md") {
        "md" | "markdown" => Ok((
            "text/markdown; charset=utf-8",
            doc.to_markdown().into_bytes(),
        )),
        "pdf" => Ok((
            "application/pdf",
            qalxan_incident::pdf::render_with(doc, title, fonts),
        )),
        "json" => Ok((
            "application/json",
            serde_json::to_vec_pretty(doc).map_err(|e| ApiError::internal(&e))?,
        )),
        other => Err(ApiError::invalid(
            "format",
            format!("unknown report format '{other}' (expected md, pdf or json)"),
        )),
    }
}

/// A report as a download.
pub(crate) fn render(
    state: &AppState,
    doc: &Document,
    title: &str,
    format: Option<&str>,
    file: &str,
) -> Result<Response, ApiError> {
    let (content_type, bytes) = render_report(doc, title, format, state.report_fonts())?;
    let ext = match content_type {
        "application/pdf" => "pdf",
        "application/json" => "json",
        _ => "md",
    };
    let disposition = if ext == "pdf" { "attachment" } else { "inline" };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("{disposition}; filename=\"{file}.{ext}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The incident report for `audience`, marked with the incident's TLP; refused when the
/// incident's TLP does not allow that audience.
pub fn incident_document(
    d: &IncidentDetail,
    institutions: &[qalxan_core::Institution],
    sla: &SlaPolicy,
    audience: Audience,
) -> Result<Document, ApiError> {
    let i = &d.incident;
    if !audience.may_receive(i.tlp) {
        return Err(ApiError::conflict(format!(
            "incident #{} is marked {}: it is not shared with {audience}",
            i.id, i.tlp
        )));
    }
    let cert = audience == Audience::Cert;
    let name_of = |id: Option<InstitutionId>| {
        id.and_then(|id| institutions.iter().find(|x| x.id == id))
            .map_or_else(|| "-".to_owned(), |x| x.fields.name.clone())
    };
    let sla = sla_of(sla, i);
    let category = Category::parse(&i.category)
        .map(|c| c.label())
        .unwrap_or_else(|_| i.category.clone());
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    let mut doc = Document::default();
    doc.mark(i.tlp.as_str());
    doc.heading(1, format!("Incident #{}: {}", i.id, i.title));
    if !cert {
        doc.paragraph(format!(
            "Prepared for partners: shared under {} ({}); PAP {}.",
            i.tlp,
            tlp_meaning(i.tlp),
            i.pap
        ));
    }
    let mut facts = vec![
        (
            "Category (RSIT)".into(),
            format!("{category} ({})", i.category),
        ),
        (
            "Severity / impact".into(),
            format!("{} / {}", i.severity, i.impact),
        ),
        ("TLP / PAP".into(), format!("{} / {}", i.tlp, i.pap)),
        (
            "Status".into(),
            if i.status_reason.is_empty() || !cert {
                i.status.to_string()
            } else {
                format!("{} ({})", i.status, i.status_reason)
            },
        ),
        ("Opened".into(), i.opened_at.to_string()),
        (
            "Triaged".into(),
            i.triaged_at.map_or("-".into(), |t| t.to_string()),
        ),
        (
            "Contained".into(),
            i.contained_at.map_or("-".into(), |t| t.to_string()),
        ),
        (
            "Closed".into(),
            i.closed_at.map_or("-".into(), |t| t.to_string()),
        ),
    ];
    if cert {
        facts.push((
            "SLA".into(),
            format!(
                "triage {}, containment {}",
                if sla.triage.overdue {
                    "overdue"
                } else {
                    "on time"
                },
                if sla.contain.overdue {
                    "overdue"
                } else {
                    "on time"
                }
            ),
        ));
        facts.push((
            "Affected institutions".into(),
            list(i.institutions.iter().map(|x| x.name.clone()).collect()),
        ));
        facts.push((
            "Team".into(),
            list(
                d.team
                    .iter()
                    .map(|m| format!("{} ({})", m.username, m.role))
                    .collect(),
            ),
        ));
    } else {
        // Sectors say what kind of target it was without naming it.
        let mut sectors: Vec<String> = i
            .institutions
            .iter()
            .filter_map(|x| institutions.iter().find(|y| y.id == x.id))
            .map(|y| y.fields.sector.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        sectors.sort();
        sectors.dedup();
        facts.push((
            "Affected institutions".into(),
            format!(
                "{}{}",
                i.institutions.len(),
                if sectors.is_empty() {
                    String::new()
                } else {
                    format!(" (sectors: {})", sectors.join(", "))
                }
            ),
        ));
    }
    doc.facts(facts);
    if !i.description.is_empty() {
        doc.heading(2, "Description");
        for para in i.description.split("\n\n") {
            doc.paragraph(para);
        }
    }
    doc.heading(2, "Victims");
    let employees: i64 = d
        .victims
        .iter()
        .filter(|v| v.kind == VictimKind::Employee)
        .map(|v| v.count)
        .sum();
    let citizens: i64 = d
        .victims
        .iter()
        .filter(|v| v.kind == VictimKind::Citizen)
        .map(|v| v.count)
        .sum();
    doc.paragraph(format!("{employees} employees and {citizens} citizens."));
    if cert {
        doc.table(
            &["Kind", "Institution", "Role", "Count", "Note"],
            d.victims
                .iter()
                .map(|v| {
                    vec![
                        v.kind.to_string(),
                        name_of(v.institution_id),
                        v.role.map_or("-".into(), |r| r.to_string()),
                        v.count.to_string(),
                        v.note.clone(),
                    ]
                })
                .collect(),
        );
    } else {
        let mut by_role: Vec<(String, i64)> = Vec::new();
        for v in d.victims.iter().filter(|v| v.kind == VictimKind::Employee) {
            let role = v.role.map_or("-".into(), |r| r.to_string());
            match by_role.iter_mut().find(|(r, _)| *r == role) {
                Some((_, n)) => *n += v.count,
                None => by_role.push((role, v.count)),
            }
        }
        doc.table(
            &["Employees' role", "Count"],
            by_role
                .into_iter()
                .map(|(r, n)| vec![r, n.to_string()])
                .collect(),
        );
    }
    doc.heading(2, "Observables");
    if cert {
        doc.table(
            &["Type", "Value", "Indicator"],
            d.observables
                .iter()
                .map(|o| {
                    vec![
                        o.kind.clone(),
                        o.value.clone(),
                        o.indicator_id.map_or("-".into(), |i| format!("#{i}")),
                    ]
                })
                .collect(),
        );
    } else {
        doc.table(
            &["Type", "Value"],
            d.observables
                .iter()
                .map(|o| vec![o.kind.clone(), o.value.clone()])
                .collect(),
        );
    }
    if cert {
        doc.heading(2, "Tasks");
        doc.table(
            &["#", "Task", "Owner", "Due", "Status"],
            d.tasks
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.title.clone(),
                        t.owner.clone().unwrap_or_else(|| "-".into()),
                        t.due_at.map_or("-".into(), |d| d.to_string()),
                        t.status.to_string(),
                    ]
                })
                .collect(),
        );
        doc.heading(2, "Evidence");
        doc.table(
            &["File", "Size", "SHA-256", "Scan"],
            d.evidence
                .iter()
                .map(|e| {
                    vec![
                        e.name.clone(),
                        e.size.to_string(),
                        e.sha256.clone(),
                        e.scan_result.clone(),
                    ]
                })
                .collect(),
        );
        doc.heading(2, "Linked alerts");
        doc.table(
            &["#", "Alert", "Count", "First seen", "Last seen"],
            d.alerts
                .iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        a.title.clone(),
                        a.count.to_string(),
                        a.first_seen.to_string(),
                        a.last_seen.to_string(),
                    ]
                })
                .collect(),
        );
        doc.heading(2, "Timeline");
        doc.table(
            &["When", "Who", "What"],
            d.timeline
                .iter()
                .map(|l| vec![l.at.to_string(), l.actor.clone(), l.text.clone()])
                .collect(),
        );
    } else {
        // Files are known by their hashes; their names may name the victim.
        doc.heading(2, "Files");
        doc.table(
            &["SHA-256", "Size", "Scan"],
            d.evidence
                .iter()
                .map(|e| vec![e.sha256.clone(), e.size.to_string(), e.scan_result.clone()])
                .collect(),
        );
        let detections: i64 = d.alerts.iter().map(|a| a.count).sum();
        doc.paragraph(format!(
            "{} alerts linked, standing for {detections} detections.",
            d.alerts.len()
        ));
    }
    Ok(doc)
}

/// What a TLP label asks of its recipients (FIRST TLP 2.0), printed on shared reports.
fn tlp_meaning(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "disclosure is not limited",
        Tlp::Green => "limited disclosure, within the recipients' community",
        Tlp::Amber => "limited disclosure, within the recipients' organisation and its clients on a need-to-know basis",
        Tlp::AmberStrict => "limited disclosure, within the recipients' organisation only",
        Tlp::Red => "for the eyes and ears of individual recipients only",
    }
}

/// The incident report, as Markdown, PDF or JSON.
#[utoipa::path(get, operation_id = "incident_report", path = "/api/v1/incidents/{id}/report", tag = "incidents",
    params(("id" = i64, Path), ReportFormat),
    responses((status = 200, content_type = "text/markdown", body = String), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn report(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReportFormat>,
) -> Result<Response, ApiError> {
    principal.require(READERS)?;
    let d = visible(&state, &principal, &id).await?;
    let institutions = state.store().list_institutions(principal.scope()).await?;
    let audience = q.audience.unwrap_or(Audience::Cert);
    let doc = incident_document(&d, &institutions, &state.config().sla(), audience)?;
    let title = format!("Incident #{}", d.incident.id);
    let file = match audience {
        Audience::Cert => format!("incident-{}", d.incident.id),
        Audience::Partners => format!("incident-{}-partners", d.incident.id),
    };
    render(&state, &doc, &title, q.format.as_deref(), &file)
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeriodicQuery {
    /// Start (RFC 3339 or `YYYY-MM-DD`); default 182 days before `to`.
    pub from: Option<String>,
    /// End, exclusive (RFC 3339 or `YYYY-MM-DD`); default now.
    pub to: Option<String>,
    pub institution_id: Option<InstitutionId>,
    /// `md` (default), `pdf` or `json` (the figures).
    pub format: Option<String>,
}

/// Parses a report bound: RFC 3339, or a date meaning its midnight UTC.
pub(crate) fn parse_bound(field: &str, text: &str) -> Result<i64, ApiError> {
    let t = text.trim();
    let full = if t.len() == 10 {
        format!("{t}T00:00:00Z")
    } else {
        t.to_owned()
    };
    qalxan_core::parse_rfc3339(&full)
        .map_err(|_| ApiError::invalid(field, "expected RFC 3339 or YYYY-MM-DD"))
}

impl PeriodicQuery {
    pub fn window(&self) -> Result<(i64, i64), ApiError> {
        let to = match self.to.as_deref().filter(|s| !s.is_empty()) {
            Some(t) => parse_bound("to", t)?,
            None => now_millis(),
        };
        let from = match self.from.as_deref().filter(|s| !s.is_empty()) {
            Some(f) => parse_bound("from", f)?,
            None => to - 182 * DAY_MS,
        };
        if from >= to {
            return Err(ApiError::invalid("from", "must be before to"));
        }
        Ok((from, to))
    }
}

/// The periodic report: the CERT's figures over any window.
#[utoipa::path(get, operation_id = "periodic_report", path = "/api/v1/reports/periodic", tag = "incidents",
    params(PeriodicQuery),
    responses((status = 200, content_type = "text/markdown", body = String), (status = 422, body = Problem)))]
pub async fn periodic(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<PeriodicQuery>,
) -> Result<Response, ApiError> {
    principal.require(READERS)?;
    let (from, to) = q.window()?;
    let scope = match (principal.scope(), q.institution_id) {
        (Some(own), Some(asked)) if own != asked => return Err(ApiError::not_found("institution")),
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    let figures = state.store().periodic_figures(from, to, scope).await?;
    if q.format.as_deref() == Some("json") {
        return Ok(Json(figures).into_response());
    }
    let title = "Periodic report of the CERT";
    let doc = periodic_document(&figures, title);
    render(&state, &doc, title, q.format.as_deref(), "qalxan-report")
}

/// The RSIT taxonomy incidents are classified with.
#[utoipa::path(get, operation_id = "incident_taxonomy", path = "/api/v1/incidents/taxonomy", tag = "incidents",
    responses((status = 200, body = Object)))]
pub async fn taxonomy(principal: Principal) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(READERS)?;
    Ok(Json(
        serde_json::to_value(qalxan_incident::taxonomy::CLASSES).unwrap_or_default(),
    ))
}
