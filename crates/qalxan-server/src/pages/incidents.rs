//! Incident response pages: the live alert monitor, incidents with their team, tasks,
//! timeline, observables, victims and evidence, and the periodic report with charts.
//! The handlers call the same store methods and API helpers the JSON API does.

use super::{
    csrf_field, error_box, fmt_int, layout, layout_refreshing, notice_box, respond, CsrfForm, Nav,
    PageError, PageResult, PageUser,
};
use crate::api::alerts::{self as api_alerts, AlertQuery, ObservableInput};
use crate::api::incidents::{self as api, IncidentInput, PeriodicQuery};
use crate::chart;
use crate::{live, AppState};
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use qalxan_core::{InstitutionId, Role, Severity};
use qalxan_incident::{AlertStatus, Category, Status, TaskStatus, VictimKind, VictimRole};
use qalxan_store::{AlertFilter, AlertRecord, IncidentRecord, NewVictim, PromoteTo};
use serde::Deserialize;

/// Seconds between reloads of the alert monitor where scripts do not run.
const MONITOR_REFRESH: u32 = 15;

fn sev(s: Severity) -> Markup {
    html! { span class={"sev sev-" (s.as_str())} { (s) } }
}

fn not_found(what: &str) -> PageError {
    PageError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
}

fn parse_id(raw: &str, what: &str) -> Result<i64, PageError> {
    raw.parse().map_err(|_| not_found(what))
}

/// Values of a form field that may repeat (`id=1&id=2`).
fn all<'a>(form: &'a [(String, String)], key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    form.iter()
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn one<'a>(form: &'a [(String, String)], key: &'a str) -> &'a str {
    all(form, key).next().unwrap_or("").trim()
}

fn category_select(name: &str, selected: Option<&str>) -> Markup {
    html! {
        select name=(name) {
            @for c in Category::all() {
                @let id = c.to_string();
                option value=(id) selected[selected == Some(id.as_str())] { (c.label()) }
            }
        }
    }
}

fn severity_select(name: &str, selected: Severity) -> Markup {
    html! {
        select name=(name) {
            @for s in Severity::ALL {
                option value=(s.as_str()) selected[*s == selected] { (s) }
            }
        }
    }
}

fn institution_names(
    list: &[qalxan_core::Institution],
) -> impl Fn(Option<InstitutionId>) -> String + '_ {
    move |id| {
        id.and_then(|id| {
            list.iter()
                .find(|i| i.id == id)
                .map(|i| i.fields.name.clone())
        })
        .unwrap_or_else(|| "—".to_owned())
    }
}

#[derive(Deserialize, Default)]
pub struct MonitorQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    rule: String,
    /// Alerts older than this id: the next page.
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Alerts per page of the monitor.
const MONITOR_PAGE: u32 = 200;

/// The monitor's filter from its query.
fn monitor_filter(user: &PageUser, q: &MonitorQuery) -> Result<AlertFilter, PageError> {
    let bad = |e: qalxan_core::UnknownName| PageError::new(StatusCode::BAD_REQUEST, e.to_string());
    let status: Option<AlertStatus> = if q.status.is_empty() {
        None
    } else {
        Some(q.status.parse().map_err(bad)?)
    };
    let severity: Option<Severity> = if q.severity.is_empty() {
        None
    } else {
        Some(q.severity.parse().map_err(bad)?)
    };
    let query = AlertQuery {
        status,
        rule: (!q.rule.is_empty()).then(|| q.rule.clone()),
        severity,
        institution_id: None,
        since: None,
        before: q.before,
        limit: Some(MONITOR_PAGE),
    };
    query
        .filter(&user.principal)
        .ok_or_else(|| not_found("alerts"))
}

/// One alert of the monitor's table (the page and its live stream draw rows alike).
fn alert_row(
    a: &AlertRecord,
    can_act: bool,
    name_of: &impl Fn(Option<InstitutionId>) -> String,
) -> Markup {
    html! {
        tr data-alert=(a.id) {
            @if can_act { td { input type="checkbox" name="id" value=(a.id) aria-label={"select alert " (a.id)}; } }
            td { (a.id) }
            td { (a.title)
                @if !a.observables.is_empty() { br; span.muted { @for o in a.observables.iter().take(3) { code { (o.value) } " " } } } }
            td { code { (a.rule) } }
            td { (name_of(a.institution_id)) }
            td { (sev(a.severity)) }
            td.num data-count { (fmt_int(a.count)) }
            td { (a.sources.join(", ")) }
            td { (a.last_seen) }
            td data-status=(a.status.as_str()) { (a.status)
                @if let Some(i) = a.incident_id { " → " a href={"/incidents/" (i)} { "incident #" (i) } }
                @if let Some(m) = a.merged_into { " → #" (m) }
                @if !a.status_reason.is_empty() { br; span.muted { (a.status_reason) } } }
        }
    }
}

/// The alert monitor: newest alerts, followed live (server-sent events; without scripts the
/// first page reloads itself), with filters and bulk actions.
pub async fn alerts(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<MonitorQuery>,
) -> PageResult {
    user.principal.require(api_alerts::READERS)?;
    let filter = monitor_filter(&user, &q)?;
    let (status, severity) = (filter.status, filter.min_severity);
    let started = std::time::Instant::now();
    let list = state.store().list_alerts(&filter).await?;
    let counts = state.store().alert_counts(user.principal.scope()).await?;
    let institutions = state
        .store()
        .list_institutions(user.principal.scope())
        .await?;
    let name_of = institution_names(&institutions);
    let can_act = api_alerts::HANDLERS.contains(&user.principal.role);
    let first_page = q.before.is_none();
    let stream = first_page.then(|| {
        let query = serde_urlencoded::to_string([
            ("status", q.status.as_str()),
            ("severity", q.severity.as_str()),
            ("rule", q.rule.as_str()),
        ])
        .unwrap_or_default();
        format!("/alerts/stream?{query}")
    });
    let content = html! {
        h1 { "Alerts" }
        p.muted { "What the gateways, scanners, sandbox and sensors raise, folded by key: the same attacker against the same institution is one alert with a count. "
            @if first_page {
                "New and changed alerts appear as they happen: " span #live-state { "reloading every " (MONITOR_REFRESH) " seconds" } "."
            } }
        (notice_box(q.done.as_deref()))
        (error_box(q.error.as_deref()))
        div.row {
            @for s in AlertStatus::ALL {
                @let n = counts.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n);
                p { a href={"/alerts?status=" (s.as_str())} { (s) } ": " strong data-count=(s.as_str()) { (fmt_int(n)) } }
            }
        }
        form.inline method="get" action="/alerts" {
            label.inline { "Status " select name="status" {
                option value="" { "any" }
                @for s in AlertStatus::ALL { option value=(s.as_str()) selected[status == Some(*s)] { (s) } }
            } }
            label.inline { "At least " select name="severity" {
                option value="" { "any" }
                @for s in Severity::ALL { option value=(s.as_str()) selected[severity == Some(*s)] { (s) } }
            } }
            label.inline { "Kind " input type="text" name="rule" value=(q.rule) placeholder="waf.blocked"; }
            button type="submit" { "Filter" }
        }
        p.muted #no-alerts hidden[!list.is_empty()] { "No alerts match." }
        form method="post" action="/alerts/act" hidden[list.is_empty()] {
            (csrf_field(&user))
            div.scroll {
                table #alerts data-stream=[stream.as_deref()] data-rows=(MONITOR_PAGE) {
                    thead { tr {
                        @if can_act { th { "" } }
                        th { "#" } th { "Alert" } th { "Kind" } th { "Institution" } th { "Severity" }
                        th.num { "Count" } th { "Sources" } th { "Last seen" } th { "Status" }
                    } }
                    tbody {
                        @for a in &list { (alert_row(a, can_act, &name_of)) }
                    }
                }
            }
            @if can_act {
                div.card.wide {
                    p.muted { "With the selected alerts:" }
                    div.row {
                        button type="submit" name="action" value="acknowledge" { "Acknowledge" }
                        label.inline { "Reason " input type="text" name="reason" placeholder="why it is no threat"; }
                        button type="submit" name="action" value="dismiss" { "Dismiss" }
                        button type="submit" name="action" value="merge" { "Merge into the first" }
                    }
                    div.row {
                        label.inline { "Category " (category_select("category", Some("other/undetermined"))) }
                        label.inline { "Incident #" input type="number" name="incident_id" min="1" placeholder="new"; }
                        button type="submit" name="action" value="promote" { "Promote to incident" }
                    }
                }
            }
        }
        @if list.len() as u32 >= MONITOR_PAGE {
            @if let Some(last) = list.last() {
                p { a rel="next" href={"/alerts?" (older_query(&q, last.id))} { "Older alerts" } }
            }
        }
        p.muted data-server-ms=(started.elapsed().as_millis()) { "Listed in " (started.elapsed().as_millis()) " ms." }
    };
    Ok(respond(
        StatusCode::OK,
        layout_refreshing(
            &user,
            Nav::Alerts,
            "Alerts",
            first_page.then_some(MONITOR_REFRESH),
            content,
        ),
    ))
}

/// The monitor's live stream: `row` events carry a table row to add or replace, `gone` the id
/// of an alert that left the filter, `counts` the counters per status, `lagged` that the page
/// should reload.
pub async fn alerts_stream(
    State(state): State<AppState>,
    user: PageUser,
    headers: axum::http::HeaderMap,
    Query(q): Query<MonitorQuery>,
) -> Result<Response, PageError> {
    user.principal.require(api_alerts::READERS)?;
    let filter = monitor_filter(&user, &q)?;
    let scope = user.principal.scope();
    let follower =
        live::Follower::new(&state, scope, live::resume_from(&headers)).ok_or_else(|| {
            PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many live views on this server; reload later",
            )
        })?;
    let can_act = api_alerts::HANDLERS.contains(&user.principal.role);
    Ok(live::stream(follower, move |change| {
        let state = state.clone();
        let filter = filter.clone();
        async move {
            let institutions = state
                .store()
                .list_institutions(scope)
                .await
                .unwrap_or_default();
            let name_of = institution_names(&institutions);
            let mut events = Vec::new();
            for a in &change.alerts {
                if filter.matches(a) {
                    // An event's data ends at a line break; HTML reads one as a space.
                    let row = alert_row(a, can_act, &name_of)
                        .into_string()
                        .replace(['\r', '\n'], " ");
                    events.push(Event::default().event("row").data(row));
                } else if live::left(&filter, a) {
                    events.push(Event::default().event("gone").data(a.id.to_string()));
                }
            }
            if let Ok(counts) = state.store().alert_counts(scope).await {
                let counts: serde_json::Map<String, serde_json::Value> = counts
                    .into_iter()
                    .map(|(s, n)| (s.as_str().to_owned(), fmt_int(n).into()))
                    .collect();
                if let Ok(e) = Event::default().event("counts").json_data(counts) {
                    events.push(e);
                }
            }
            live::finish(events, &change)
        }
    })
    .into_response())
}

/// The monitor's query for the page after the alert `before`, keeping the filters.
fn older_query(q: &MonitorQuery, before: i64) -> String {
    serde_urlencoded::to_string([
        ("status", q.status.as_str()),
        ("severity", q.severity.as_str()),
        ("rule", q.rule.as_str()),
        ("before", &before.to_string()),
    ])
    .unwrap_or_default()
}

fn back_to_alerts(error: &str) -> Response {
    let q = serde_urlencoded::to_string([("error", error)]).unwrap_or_default();
    Redirect::to(&format!("/alerts?{q}")).into_response()
}

/// The monitor's bulk actions.
pub async fn alerts_act(
    State(state): State<AppState>,
    CsrfForm { user, form }: CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    user.principal.require(api_alerts::HANDLERS)?;
    let ids: Vec<i64> = all(&form, "id").filter_map(|v| v.parse().ok()).collect();
    if ids.is_empty() {
        return Ok(back_to_alerts("Select at least one alert."));
    }
    let actor = user.principal.actor();
    let store = state.store();
    let result: Result<Response, qalxan_store::StoreError> = async {
        match one(&form, "action") {
            "acknowledge" | "dismiss" => {
                let (status, reason) = if one(&form, "action") == "dismiss" {
                    (AlertStatus::Dismissed, one(&form, "reason"))
                } else {
                    (AlertStatus::Acknowledged, "")
                };
                for id in &ids {
                    store.set_alert_status(&actor, *id, status, reason).await?;
                }
                Ok(Redirect::to("/alerts?done=saved").into_response())
            }
            "merge" => {
                store.merge_alerts(&actor, ids[0], &ids[1..]).await?;
                Ok(Redirect::to("/alerts?done=saved").into_response())
            }
            "promote" => {
                let to = match one(&form, "incident_id").parse::<i64>() {
                    Ok(id) => PromoteTo::Existing(id),
                    Err(_) => {
                        let first = store
                            .get_alert(ids[0], None)
                            .await?
                            .ok_or(qalxan_store::StoreError::NotFound("alert"))?;
                        let input = IncidentInput {
                            category: Some(one(&form, "category").to_owned())
                                .filter(|c| !c.is_empty()),
                            ..Default::default()
                        };
                        match input.into_new(Some(&first)) {
                            Ok(n) => PromoteTo::New(n),
                            Err(e) => return Ok(back_to_alerts(&e.detail)),
                        }
                    }
                };
                let incident = store.promote_alerts(&actor, &ids, to).await?;
                state.incidents_changed().notify_one();
                Ok(
                    Redirect::to(&format!("/incidents/{}?done=created", incident.id))
                        .into_response(),
                )
            }
            _ => Ok(back_to_alerts("Choose an action.")),
        }
    }
    .await;
    // Even a failed bulk action may have changed the alerts before the one that failed.
    state.alerts_changed();
    match result {
        Ok(r) => Ok(r),
        Err(e) => Ok(back_to_alerts(&crate::error::ApiError::from(e).detail)),
    }
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    all: Option<String>,
    #[serde(default)]
    class: String,
    #[serde(default)]
    error: Option<String>,
}

fn sla_cell(policy: &qalxan_incident::SlaPolicy, r: &IncidentRecord) -> Markup {
    let sla = api::sla_of(policy, r);
    html! {
        @if sla.triage.overdue && r.triaged_at.is_none() { span.overdue data-overdue="triage" { "triage overdue" } }
        @else if sla.contain.overdue && r.contained_at.is_none() { span.overdue data-overdue="contain" { "containment overdue" } }
        @else if r.status.is_closed() { span.muted { "—" } }
        @else { span.muted { "on time" } }
    }
}

/// Incidents, open ones first by default, and the form to open one.
pub async fn list(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<ListQuery>,
) -> PageResult {
    user.principal.require(api::READERS)?;
    let query = api::IncidentQuery {
        open: q.all.is_none(),
        category: (!q.class.is_empty()).then(|| q.class.clone()),
        limit: Some(200),
        ..Default::default()
    };
    let filter = query
        .filter(&user.principal)
        .ok_or_else(|| not_found("incidents"))?;
    let list = state.store().list_incidents(&filter).await?;
    let institutions = state
        .store()
        .list_institutions(user.principal.scope())
        .await?;
    let can_open = api::HANDLERS.contains(&user.principal.role);
    let policy = state.config().sla();
    let content = html! {
        h1 { "Incidents" }
        (error_box(q.error.as_deref()))
        form.inline method="get" action="/incidents" {
            label.inline { input type="checkbox" name="all" value="1" checked[q.all.is_some()]; " closed ones too" }
            label.inline { "Class " select name="class" {
                option value="" { "any" }
                @for c in qalxan_incident::taxonomy::CLASSES { option value=(c.id) selected[q.class == c.id] { (c.label) } }
            } }
            button type="submit" { "Filter" }
        }
        @if list.is_empty() {
            p.muted { "No incidents." }
        } @else {
            div.scroll { table #incidents {
                thead { tr { th { "#" } th { "Incident" } th { "Category" } th { "Severity" } th { "Status" } th { "SLA" } th { "Institutions" } th { "Opened" } } }
                tbody { @for r in &list {
                    @let sla = api::sla_of(&policy, r);
                    tr.overdue[(sla.triage.overdue && r.triaged_at.is_none()) || (sla.contain.overdue && r.contained_at.is_none())] data-incident=(r.id) {
                        td { (r.id) }
                        td { a href={"/incidents/" (r.id)} { (r.title) } }
                        td { (Category::parse(&r.category).map(|c| c.label()).unwrap_or_else(|_| r.category.clone())) }
                        td { (sev(r.severity)) }
                        td { (r.status) }
                        td { (sla_cell(&policy, r)) }
                        td { (r.institutions.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")) }
                        td { (r.opened_at) }
                    }
                } }
            } }
        }
        @if can_open {
            form.card.wide method="post" action="/incidents" {
                h2 { "Open an incident" }
                (csrf_field(&user))
                label { "Title" input type="text" name="title" required maxlength="300"; }
                label { "Description" textarea name="description" rows="3" {} }
                div.row {
                    label.inline { "Category " (category_select("category", Some("other/undetermined"))) }
                    label.inline { "Severity " (severity_select("severity", Severity::Medium)) }
                    label.inline { "TLP " select name="tlp" { @for t in ["TLP:CLEAR", "TLP:GREEN", "TLP:AMBER", "TLP:AMBER+STRICT", "TLP:RED"] { option selected[t == "TLP:AMBER"] { (t) } } } }
                }
                label { "Affected institutions" select name="institution" multiple size="4" {
                    @for i in &institutions { option value=(i.id.0) { (i.fields.name) } }
                } }
                button type="submit" { "Open incident" }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Incidents, "Incidents", content),
    ))
}

fn back(id: i64, error: Option<&str>) -> Response {
    match error {
        Some(e) => {
            let q = serde_urlencoded::to_string([("error", e)]).unwrap_or_default();
            Redirect::to(&format!("/incidents/{id}?{q}")).into_response()
        }
        None => Redirect::to(&format!("/incidents/{id}?done=saved")).into_response(),
    }
}

/// Opens an incident from the form.
pub async fn create(
    State(state): State<AppState>,
    CsrfForm { user, form }: CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    user.principal.require(api::HANDLERS)?;
    let input = IncidentInput {
        title: Some(one(&form, "title").to_owned()),
        description: one(&form, "description").to_owned(),
        category: Some(one(&form, "category").to_owned()),
        severity: one(&form, "severity").parse().ok(),
        tlp: Some(one(&form, "tlp").to_owned()).filter(|t| !t.is_empty()),
        institutions: all(&form, "institution")
            .filter_map(|v| v.parse().ok())
            .map(InstitutionId)
            .collect(),
        ..Default::default()
    };
    let created = match input.into_new(None) {
        Ok(n) => {
            state
                .store()
                .create_incident(&user.principal.actor(), n)
                .await
        }
        Err(e) => {
            let q = serde_urlencoded::to_string([("error", e.detail)]).unwrap_or_default();
            return Ok(Redirect::to(&format!("/incidents?{q}")).into_response());
        }
    };
    match created {
        Ok(r) => {
            state.incidents_changed().notify_one();
            Ok(Redirect::to(&format!("/incidents/{}?done=created", r.id)).into_response())
        }
        Err(e) => {
            let q =
                serde_urlencoded::to_string([("error", crate::error::ApiError::from(e).detail)])
                    .unwrap_or_default();
            Ok(Redirect::to(&format!("/incidents?{q}")).into_response())
        }
    }
}

#[derive(Deserialize, Default)]
pub struct ShowQuery {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// One incident: facts, SLA, team, tasks, observables, victims, evidence, alerts, timeline.
pub async fn show(
    State(state): State<AppState>,
    user: PageUser,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> PageResult {
    user.principal.require(api::READERS)?;
    let id = parse_id(&id, "incident")?;
    let d = state
        .store()
        .get_incident(id, user.principal.scope())
        .await?
        .ok_or_else(|| not_found("incident"))?;
    let i = &d.incident;
    let sla = api::sla_of(&state.config().sla(), i);
    let can_run = api::HANDLERS.contains(&user.principal.role);
    let can_contribute = api::CONTRIBUTORS.contains(&user.principal.role);
    let institutions = state
        .store()
        .list_institutions(user.principal.scope())
        .await?;
    let name_of = institution_names(&institutions);
    let staff: Vec<qalxan_store::User> = if can_run {
        state
            .store()
            .list_users()
            .await?
            .into_iter()
            .filter(|u| !u.disabled && matches!(u.role, Role::Admin | Role::Analyst))
            .collect()
    } else {
        Vec::new()
    };
    let content = html! {
        div.heading {
            h1 { "Incident #" (i.id) ": " (i.title) }
            span data-status=(i.status) { (i.status) }
        }
        (notice_box(q.done.as_deref()))
        (error_box(q.error.as_deref()))
        div.cards {
            div.card {
                h2 { "Classification" }
                dl {
                    dt { "Category (RSIT)" } dd { (Category::parse(&i.category).map(|c| c.label()).unwrap_or_else(|_| i.category.clone())) }
                    dt { "Severity / impact" } dd { (sev(i.severity)) " " (i.impact) }
                    dt { "TLP / PAP" } dd { (i.tlp) " / " (i.pap) }
                    dt { "Institutions" } dd { (i.institutions.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")) }
                }
            }
            div.card {
                h2 { "SLA" }
                dl {
                    dt { "Triage due" } dd { (qalxan_core::Timestamp(sla.triage.due_at))
                        @if sla.triage.overdue { " " span.overdue data-overdue="triage" { "overdue" } } }
                    dt { "Containment due" } dd { (qalxan_core::Timestamp(sla.contain.due_at))
                        @if sla.contain.overdue { " " span.overdue data-overdue="contain" { "overdue" } } }
                    dt { "Opened" } dd { (i.opened_at) }
                    @if let Some(c) = i.closed_at { dt { "Closed" } dd { (c) " — " (i.status_reason) } }
                }
            }
            div.card {
                h2 { "Report" }
                p { "Full: " a href={"/api/v1/incidents/" (i.id) "/report?format=md"} { "Markdown" } " · "
                    a href={"/api/v1/incidents/" (i.id) "/report?format=pdf"} data-report="pdf" { "PDF" } }
                @if qalxan_incident::Audience::Partners.may_receive(i.tlp) {
                    p { "For partners (" (i.tlp) ", no names): "
                        a href={"/api/v1/incidents/" (i.id) "/report?audience=partners&format=md"} { "Markdown" } " · "
                        a href={"/api/v1/incidents/" (i.id) "/report?audience=partners&format=pdf"} data-report="partners-pdf" { "PDF" } }
                } @else {
                    p.muted { (i.tlp) ": not shared with partners." }
                }
            }
        }
        @if !i.description.is_empty() { p { (i.description) } }
        @if can_run {
            form.inline method="post" action={"/incidents/" (i.id) "/status"} {
                (csrf_field(&user))
                label.inline { "Status " select name="status" {
                    @for s in Status::ALL { option value=(s.as_str()) selected[*s == i.status] { (s) } }
                } }
                label.inline { "Reason " input type="text" name="reason" placeholder="needed to close or reopen"; }
                button type="submit" { "Change status" }
            }
        }
        h2 { "Team" }
        @if d.team.is_empty() { p.muted { "No team yet." } } @else {
            ul #team { @for m in &d.team { li { (m.username) @if m.role == "lead" { " (lead)" } } } }
        }
        @if can_run {
            form.inline method="post" action={"/incidents/" (i.id) "/team"} {
                (csrf_field(&user))
                label.inline { "Lead " select name="lead" {
                    option value="" { "none" }
                    @for u in &staff { option value=(u.id) selected[d.team.iter().any(|m| m.user_id == u.id && m.role == "lead")] { (u.username) } }
                } }
                label.inline { "Members " select name="member" multiple size="3" {
                    @for u in &staff { option value=(u.id) selected[d.team.iter().any(|m| m.user_id == u.id && m.role == "member")] { (u.username) } }
                } }
                button type="submit" { "Form team" }
            }
        }
        h2 { "Tasks" }
        @if d.tasks.is_empty() { p.muted { "No tasks." } } @else {
            table #tasks {
                thead { tr { th { "#" } th { "Task" } th { "Owner" } th { "Due" } th { "Status" } @if can_run { th { "" } } } }
                tbody { @for t in &d.tasks {
                    tr.overdue[t.status == TaskStatus::Open && t.due_at.is_some_and(|d| d.0 < qalxan_core::now_millis())] {
                        td { (t.id) } td { (t.title) } td { (t.owner.as_deref().unwrap_or("—")) }
                        td { @if let Some(d) = t.due_at { (d) } @else { "—" } }
                        td { (t.status) }
                        @if can_run { td { @if t.status == TaskStatus::Open {
                            form.inline method="post" action={"/incidents/" (i.id) "/task-done"} {
                                (csrf_field(&user)) input type="hidden" name="task" value=(t.id);
                                button type="submit" { "Done" }
                            } } } }
                    }
                } }
            }
        }
        @if can_run {
            form.inline method="post" action={"/incidents/" (i.id) "/task"} {
                (csrf_field(&user))
                label.inline { "Task " input type="text" name="title" required maxlength="300"; }
                label.inline { "Owner " select name="owner" { option value="" { "none" } @for u in &staff { option value=(u.id) { (u.username) } } } }
                label.inline { "Due " input type="date" name="due"; }
                button type="submit" { "Add task" }
            }
        }
        h2 { "Observables" }
        @if d.observables.is_empty() { p.muted { "None." } } @else {
            table #observables {
                thead { tr { th { "Type" } th { "Value" } th { "Indicator" } } }
                tbody { @for o in &d.observables { tr {
                    td { (o.kind) } td { code { (o.value) } }
                    td { @if let Some(ind) = o.indicator_id { a href={"/intel/" (ind)} { "#" (ind) } }
                        @else if can_run {
                            form.inline method="post" action={"/incidents/" (i.id) "/observable"} {
                                (csrf_field(&user))
                                input type="hidden" name="type" value=(o.kind);
                                input type="hidden" name="value" value=(o.value);
                                input type="hidden" name="to_intel" value="1";
                                button type="submit" data-to-intel=(o.value) { "Send to intelligence" }
                            }
                        } @else { "—" } }
                } } }
            }
        }
        @if can_run {
            form.inline #add-observable method="post" action={"/incidents/" (i.id) "/observable"} {
                (csrf_field(&user))
                label.inline { "Value " input type="text" name="value" required placeholder="evil.example, 203.0.113.7, a hash…"; }
                label.inline { input type="checkbox" name="to_intel" value="1" checked; " send to threat intelligence" }
                button type="submit" { "Add observable" }
            }
        }
        h2 { "Victims" }
        @if d.victims.is_empty() { p.muted { "None recorded." } } @else {
            table #victims {
                thead { tr { th { "Kind" } th { "Institution" } th { "Role" } th.num { "Count" } th { "Note" } } }
                tbody { @for v in &d.victims { tr {
                    td { (v.kind) } td { (name_of(v.institution_id)) }
                    td { (v.role.map_or("—".to_owned(), |r| r.to_string())) } td.num { (v.count) } td { (v.note) }
                } } }
            }
        }
        @if can_run {
            form.inline method="post" action={"/incidents/" (i.id) "/victim"} {
                (csrf_field(&user))
                label.inline { "Kind " select name="kind" { @for k in VictimKind::ALL { option value=(k.as_str()) { (k) } } } }
                label.inline { "Institution " select name="institution" { option value="" { "— (citizens)" } @for x in &institutions { option value=(x.id.0) { (x.fields.name) } } } }
                label.inline { "Role " select name="role" { option value="" { "—" } @for r in VictimRole::ALL { option value=(r.as_str()) { (r) } } } }
                label.inline { "Count " input type="number" name="count" value="1" min="1"; }
                button type="submit" { "Record victims" }
            }
        }
        h2 { "Evidence" }
        @if d.evidence.is_empty() { p.muted { "None." } } @else {
            table #evidence {
                thead { tr { th { "File" } th.num { "Size" } th { "SHA-256" } th { "Scan" } th { "By" } } }
                tbody { @for e in &d.evidence { tr {
                    td { a href={"/api/v1/incidents/" (i.id) "/evidence/" (e.id)} { (e.name) } }
                    td.num { (fmt_int(e.size)) } td { code { (e.sha256) } } td data-scan { (e.scan_result) } td { (e.uploaded_by) }
                } } }
            }
        }
        @if can_contribute {
            form.inline method="post" action={"/incidents/" (i.id) "/evidence"} enctype="multipart/form-data" {
                (csrf_field(&user))
                label.inline { "File " input type="file" name="file" required; }
                button type="submit" { "Upload evidence" }
            }
        }
        @if !d.alerts.is_empty() {
            h2 { "Linked alerts" }
            ul { @for a in &d.alerts { li { "#" (a.id) " " (a.title) " ×" (fmt_int(a.count)) } } }
        }
        h2 { "Timeline" }
        ol.timeline #timeline { @for l in &d.timeline {
            li data-kind=(l.kind) { span.muted { (l.at) " · " (l.actor) } br; (l.text) }
        } }
        @if can_contribute {
            form method="post" action={"/incidents/" (i.id) "/comment"} {
                (csrf_field(&user))
                label { "Comment" textarea name="text" rows="2" required {} }
                button type="submit" { "Add to timeline" }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(
            &user,
            Nav::Incidents,
            &format!("Incident #{}", i.id),
            content,
        ),
    ))
}

/// The incident page's forms.
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    CsrfForm { user, form }: CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let principal = &user.principal;
    let needed = if action == "comment" {
        api::CONTRIBUTORS
    } else {
        api::HANDLERS
    };
    principal.require(needed)?;
    let id = parse_id(&id, "incident")?;
    if !state
        .store()
        .incident_visible(id, principal.scope())
        .await?
    {
        return Err(not_found("incident"));
    }
    let actor = principal.actor();
    let store = state.store();
    let opt_id = |key: &str| one(&form, key).parse::<i64>().ok();
    let result: Result<(), crate::error::ApiError> = async {
        match action.as_str() {
            "status" => {
                let to: Status =
                    one(&form, "status")
                        .parse()
                        .map_err(|e: qalxan_core::UnknownName| {
                            crate::error::ApiError::invalid("status", e.to_string())
                        })?;
                store
                    .set_incident_status(&actor, id, to, one(&form, "reason"))
                    .await?;
            }
            "team" => {
                let members: Vec<i64> = all(&form, "member")
                    .filter_map(|v| v.parse().ok())
                    .collect();
                store
                    .set_incident_team(&actor, id, opt_id("lead"), &members)
                    .await?;
            }
            "task" => {
                let due = match one(&form, "due") {
                    "" => None,
                    d => Some(api::parse_bound("due", d)?),
                };
                store
                    .add_incident_task(&actor, id, one(&form, "title"), opt_id("owner"), due)
                    .await?;
            }
            "task-done" => {
                let task = opt_id("task")
                    .ok_or_else(|| crate::error::ApiError::invalid("task", "missing"))?;
                store
                    .update_incident_task(&actor, id, task, Some(TaskStatus::Done), None, None)
                    .await?;
            }
            "observable" => {
                let input = [ObservableInput {
                    kind: Some(one(&form, "type").to_owned()).filter(|k| !k.is_empty()),
                    value: one(&form, "value").to_owned(),
                }];
                let observed = api_alerts::observables_of(&input, "observables")?;
                let d = store
                    .get_incident(id, principal.scope())
                    .await?
                    .ok_or_else(|| crate::error::ApiError::not_found("incident"))?;
                api::send_observables(
                    &state,
                    principal,
                    &d.incident,
                    &observed,
                    one(&form, "to_intel") == "1",
                )
                .await?;
            }
            "victim" => {
                let kind: VictimKind =
                    one(&form, "kind")
                        .parse()
                        .map_err(|e: qalxan_core::UnknownName| {
                            crate::error::ApiError::invalid("kind", e.to_string())
                        })?;
                store
                    .add_incident_victims(
                        &actor,
                        id,
                        NewVictim {
                            kind,
                            institution_id: opt_id("institution").map(InstitutionId),
                            role: one(&form, "role").parse().ok(),
                            count: opt_id("count").unwrap_or(1),
                            note: String::new(),
                        },
                    )
                    .await?;
            }
            "comment" => {
                store
                    .add_incident_comment(&actor, id, one(&form, "text"))
                    .await?;
            }
            _ => return Err(crate::error::ApiError::not_found("action")),
        }
        Ok(())
    }
    .await;
    Ok(match result {
        Ok(()) => back(id, None),
        Err(e) => back(id, Some(&e.detail)),
    })
}

/// The evidence upload (multipart: the CSRF token is one of its fields).
pub async fn evidence(
    State(state): State<AppState>,
    user: PageUser,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    user.principal.require(api::CONTRIBUTORS)?;
    let id = parse_id(&id, "incident")?;
    if !state
        .store()
        .incident_visible(id, user.principal.scope())
        .await?
    {
        return Err(not_found("incident"));
    }
    let mut csrf = None;
    let mut file: Option<(String, Bytes)> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Ok(back(id, Some(&format!("upload failed: {}", e.body_text())))),
        };
        match field.name() {
            Some("csrf") => csrf = field.text().await.ok(),
            Some("file") => {
                let name = field.file_name().unwrap_or("evidence").to_owned();
                match field.bytes().await {
                    Ok(b) => file = Some((name, b)),
                    Err(e) => {
                        return Ok(back(id, Some(&format!("upload failed: {}", e.body_text()))))
                    }
                }
            }
            _ => {}
        }
    }
    if !csrf.is_some_and(|t| crate::auth::constant_time_eq(&t, &user.session.csrf_token)) {
        return Err(super::csrf_failure());
    }
    let Some((name, data)) = file.filter(|(_, d)| !d.is_empty()) else {
        return Ok(back(id, Some("Choose a file to upload.")));
    };
    Ok(
        match api::attach_evidence(&state, &user.principal, id, &name, data).await {
            Ok(_) => back(id, None),
            Err(e) => back(id, Some(&e.detail)),
        },
    )
}

#[derive(Deserialize, Default)]
pub struct ReportQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// The periodic report with charts, and its downloads.
pub async fn reports(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<ReportQuery>,
) -> PageResult {
    user.principal.require(api::READERS)?;
    let pq = PeriodicQuery {
        from: q.from.clone(),
        to: q.to.clone(),
        institution_id: None,
        format: None,
    };
    let (from, to) = pq.window()?;
    let f = state
        .store()
        .periodic_figures(from, to, user.principal.scope())
        .await?;
    let day = |ms: i64| qalxan_core::format_rfc3339(ms)[..10].to_owned();
    let link = |format: &str| {
        let q = serde_urlencoded::to_string([
            ("from", qalxan_core::format_rfc3339(from)),
            ("to", qalxan_core::format_rfc3339(to)),
            ("format", format.to_owned()),
        ])
        .unwrap_or_default();
        format!("/api/v1/reports/periodic?{q}")
    };
    let content = html! {
        h1 { "Periodic report" }
        form.inline method="get" action="/reports" {
            label.inline { "From " input type="date" name="from" value=(day(from)); }
            label.inline { "To " input type="date" name="to" value=(day(to)); }
            button type="submit" { "Show" }
        }
        p { (f.scope) ", " (qalxan_core::format_rfc3339(from)) " to " (qalxan_core::format_rfc3339(to)) ". "
            a href=(link("md")) { "Markdown" } " · " a href=(link("pdf")) data-report="pdf" { "PDF" } }
        table #figures {
            thead { tr { th { "Figure" } th.num { "Total" } th.num { "Peak" } } }
            tbody {
                @for (label, total, peak) in &f.figures { tr { td { (label) } td.num { (fmt_int(*total)) } td.num { (fmt_int(*peak)) } } }
                tr { td { "Alerts raised" } td.num data-figure="alerts" { (fmt_int(f.alerts)) } td {} }
                tr { td { "Incidents opened" } td.num data-figure="incidents-opened" { (fmt_int(f.incidents_opened)) } td {} }
                tr { td { "Incidents closed" } td.num data-figure="incidents-closed" { (fmt_int(f.incidents_closed)) } td {} }
            }
        }
        h2 { "Victims" }
        p #victims { (qalxan_incident::report::victims_sentence(&f)) }
        div.cards {
            div.card { h2 { "Incidents by category" } (chart::hbars("Incidents by category", &f.by_category)) }
            div.card { h2 { "Incidents by institution" } (chart::hbars("Incidents by institution", &f.by_institution)) }
            div.card { h2 { "Incidents by severity" } (chart::hbars("Incidents by severity", &f.by_severity)) }
            div.card { h2 { "Alerts by kind" } (chart::hbars("Alerts by kind", &f.alerts_by_rule)) }
            div.card { h2 { "Employee victims by role" } (chart::hbars("Victims by role", &f.victims_by_role)) }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Reports, "Reports", content),
    ))
}

#[derive(Deserialize, Default)]
pub struct WebhookQuery {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Webhooks (admins): where new incidents and SLA breaches are posted, signed.
pub async fn webhooks(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<WebhookQuery>,
) -> PageResult {
    user.principal.require(&[Role::Admin])?;
    let hooks = state.store().list_webhooks().await?;
    let content = html! {
        h1 { "Webhooks" }
        p.muted { "New incidents and SLA breaches at or above a severity are posted as JSON to these addresses, with "
            code { "X-Qalxan-Event" } " and " code { "X-Qalxan-Signature: sha256=HMAC-SHA256(secret, body)" } "." }
        (notice_box(q.done.as_deref()))
        (error_box(q.error.as_deref()))
        @if hooks.is_empty() { p.muted { "No webhooks." } } @else {
            table #webhooks {
                thead { tr { th { "URL" } th { "From severity" } th { "Added" } th { "" } } }
                tbody { @for h in &hooks { tr {
                    td { code { (h.url) } } td { (sev(h.min_severity)) } td { (h.created_at) " · " (h.created_by) }
                    td { form.inline method="post" action={"/webhooks/" (h.id) "/delete"} {
                        (csrf_field(&user)) button type="submit" { "Remove" } } }
                } } }
            }
        }
        form.card.wide method="post" action="/webhooks" {
            h2 { "Add a webhook" }
            (csrf_field(&user))
            label { "URL" input type="url" name="url" required placeholder="https://soc.example/hooks/qalxan"; }
            label { "Secret (at least 16 characters, shared with the receiver)" input type="password" name="secret" required minlength="16" autocomplete="off"; }
            label.inline { "From severity " (severity_select("min_severity", Severity::High)) }
            button type="submit" { "Add webhook" }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Webhooks, "Webhooks", content),
    ))
}

fn back_to_webhooks(error: Option<&str>) -> Response {
    match error {
        Some(e) => {
            let q = serde_urlencoded::to_string([("error", e)]).unwrap_or_default();
            Redirect::to(&format!("/webhooks?{q}")).into_response()
        }
        None => Redirect::to("/webhooks?done=saved").into_response(),
    }
}

pub async fn add_webhook(
    State(state): State<AppState>,
    CsrfForm { user, form }: CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    user.principal.require(&[Role::Admin])?;
    let severity = one(&form, "min_severity").parse().unwrap_or(Severity::High);
    Ok(
        match state
            .store()
            .create_webhook(
                &user.principal.actor(),
                one(&form, "url"),
                one(&form, "secret"),
                severity,
            )
            .await
        {
            Ok(_) => back_to_webhooks(None),
            Err(e) => back_to_webhooks(Some(&crate::error::ApiError::from(e).detail)),
        },
    )
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { user, .. }: CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    user.principal.require(&[Role::Admin])?;
    let id = parse_id(&id, "webhook")?;
    state
        .store()
        .delete_webhook(&user.principal.actor(), id)
        .await?;
    Ok(back_to_webhooks(None))
}
