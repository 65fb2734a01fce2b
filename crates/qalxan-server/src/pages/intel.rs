//! Threat intelligence pages: search indicators, read one with its sources and sightings,
//! change whether it blocks, import a file or pasted values after a preview of what will
//! change, and check an e-mail message against the indicators (each match a sighting).

use super::{
    csrf_field, error_box, layout, respond, CsrfForm, Nav, PageError, PageResult, PageUser,
};
use crate::api::intel::{
    check_mail, import_bytes, max_tlp, ImportQuery, ImportReport, MailCheck, SearchQuery,
    MAIL_SENDERS,
};
use crate::AppState;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use qalxan_core::{Role, Tlp};
use qalxan_intel::Kind;
use qalxan_store::IndicatorRecord;
use serde::Deserialize;

const READERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Auditor, Role::Institution];
const EDITORS: &[Role] = &[Role::Admin, Role::Analyst];

fn tlp_class(t: Tlp) -> &'static str {
    match t {
        Tlp::Clear => "tlp tlp-clear",
        Tlp::Green => "tlp tlp-green",
        Tlp::Amber | Tlp::AmberStrict => "tlp tlp-amber",
        Tlp::Red => "tlp tlp-red",
    }
}

fn tlp_select(name: &str, selected: Option<Tlp>, any: bool) -> Markup {
    html! {
        select name=(name) {
            @if any { option value="" { "any" } }
            @for t in Tlp::ALL {
                option value=(t.as_str()) selected[selected == Some(*t)] { (t.as_str()) }
            }
        }
    }
}

fn import_form(user: &PageUser, pasted: &str) -> Markup {
    html! {
        form.card.wide method="post" action="/intel/import" enctype="multipart/form-data" {
            (csrf_field(user))
            h2 { "Import" }
            p.muted { "A STIX 2.1 bundle, MISP event, CSV (type,value,...) or a plain list: one value per line. Nothing is stored until you confirm the preview." }
            label { "File" input type="file" name="file"; }
            label { "or paste values" textarea name="values" rows="5" placeholder="evil.example\n203.0.113.7\nhxxp://phish[.]example/login" { (pasted) } }
            div.row {
                label { "TLP for unmarked values" (tlp_select("tlp", Some(Tlp::Amber), false)) }
                label { "Source" input type="text" name="source" placeholder="who reported them"; }
            }
            input type="hidden" name="step" value="preview";
            button type="submit" { "Preview" }
        }
    }
}

fn results_table(items: &[IndicatorRecord]) -> Markup {
    html! {
        div.scroll {
            table.indicators {
                thead { tr { th { "Type" } th { "Value" } th { "TLP" } th.num { "Confidence" } th { "Blocking" } th { "Sources" } th.num { "Sightings" } th { "Updated" } } }
                tbody {
                    @for i in items {
                        tr {
                            td { (i.kind) }
                            td { a href={"/intel/" (i.id)} { code { (i.value) } } }
                            td { span class=(tlp_class(i.tlp)) { (i.tlp) } }
                            td.num { (i.confidence) }
                            td { @if i.blocking { "yes" } @else if !i.warninglist.is_empty() { span.muted title=(i.warninglist) { "warninglist" } } @else { span.muted { "no" } } }
                            td { (i.sources.join(", ")) }
                            td.num { (i.sightings) }
                            td { (i.updated_at) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    user: PageUser,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> PageResult {
    user.principal.require(READERS)?;
    // The import's outcome comes back in the query beside the search's fields.
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or_default())
            .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, format!("query string: {e}")))?;
    let notice = pairs
        .iter()
        .find(|(k, _)| k == "imported")
        .map(|(_, added)| {
            let merged = pairs
                .iter()
                .find(|(k, _)| k == "merged")
                .map_or("0", |(_, v)| v.as_str());
            format!("Imported: {added} new indicators, {merged} merged with known ones.")
        });
    let search: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "imported" && k != "merged")
        .collect();
    let query: SearchQuery =
        serde_urlencoded::from_str(&serde_urlencoded::to_string(&search).unwrap_or_default())
            .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, format!("query string: {e}")))?;
    let (items, error) = match query.filter(max_tlp(&user.principal)) {
        Ok(f) => (state.store().list_indicators(&f).await?, None),
        Err(e) => (Vec::new(), Some(e.detail)),
    };
    let total = state.store().count_indicators().await?;
    let kind_sel = query.kind.clone().unwrap_or_default();
    let next = (items.len() as u32 >= crate::api::page_limit(query.limit))
        .then(|| items.last().map(|i| i.id))
        .flatten();
    let content = html! {
        h1 { "Threat intelligence" }
        p.muted { (super::fmt_int(total)) " indicators of attack. Values on a warninglist are kept but do not block unless forced." }
        (error_box(error.as_deref()))
        @if let Some(n) = &notice { p.notice role="status" { (n) } }
        form.card.wide.search method="get" action="/intel" {
            div.row {
                label { "Value contains" input type="search" name="q" value=[query.q.as_deref()] autofocus; }
                label { "Type" select name="type" {
                    option value="" { "any" }
                    @for k in Kind::ALL { option value=(k.as_str()) selected[kind_sel == k.as_str()] { (k.as_str()) } }
                } }
                label { "Tag" input type="text" name="tag" value=[query.tag.as_deref()]; }
                label { "Source" input type="text" name="source" value=[query.source.as_deref()]; }
                label { "Up to TLP" (tlp_select("tlp", query.tlp.as_deref().and_then(|t| Tlp::parse_lenient(t).ok()), true)) }
            }
            button type="submit" { "Search" }
        }
        @if items.is_empty() {
            p.muted { "No indicator matches." }
        } @else {
            (results_table(&items))
            @if let Some(before) = next {
                p { a href={"/intel?" (next_query(&query, before))} { "Older →" } }
            }
        }
        @if EDITORS.contains(&user.principal.role) { (import_form(&user, "")) }
        @if MAIL_SENDERS.contains(&user.principal.role) {
            p { a href="/intel/mail" { "Check an e-mail message against the indicators →" } }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Intel, "Threat intelligence", content),
    ))
}

fn next_query(q: &SearchQuery, before: i64) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("q", &q.q),
        ("type", &q.kind),
        ("tag", &q.tag),
        ("source", &q.source),
        ("tlp", &q.tlp),
    ] {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            pairs.push((k, v.clone()));
        }
    }
    pairs.push(("before", before.to_string()));
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn preview_page(user: &PageUser, report: &ImportReport, data: &str, query: &ImportQuery) -> Markup {
    let content = html! {
        h1 { "Import preview" }
        div.cards {
            div.card { h2 { "New" } p.figure data-preview-added=(report.added) { (report.added) } }
            div.card { h2 { "Already known" } p.figure { (report.updated) } p.muted { "merged: sources added, most restrictive TLP kept" } }
            div.card { h2 { "Will block" } p.figure { (report.blocking) } p.muted { (report.warninglisted) " on warninglists, kept without blocking" } }
        }
        @if !report.skipped.is_empty() {
            details.card.wide open {
                summary { (report.skipped.len()) " not imported" }
                ul { @for s in &report.skipped { li { (s) } } }
            }
        }
        @if !report.sample.is_empty() {
            h2 { "First values read" }
            div.scroll {
                table {
                    thead { tr { th { "Type" } th { "Value" } th { "TLP" } th { "Blocks" } th { "Warninglist" } } }
                    tbody {
                        @for i in &report.sample {
                            tr {
                                td { (i.kind) } td { code { (i.value) } } td { (i.tlp) }
                                td { @if i.blocking { "yes" } @else { "no" } }
                                td { (i.warninglist.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        form.card.wide method="post" action="/intel/import" enctype="multipart/form-data" {
            (csrf_field(user))
            textarea name="values" hidden style="display:none" { (data) }
            input type="hidden" name="tlp" value=(query.tlp.clone().unwrap_or_default());
            input type="hidden" name="source" value=(query.source.clone().unwrap_or_default());
            input type="hidden" name="name" value=(query.name.clone().unwrap_or_default());
            input type="hidden" name="step" value="import";
            button type="submit" { "Import " (report.read) " values" }
            " " a href="/intel" { "Cancel" }
        }
    };
    layout(user, Nav::Intel, "Import preview", content)
}

/// The import form posts multipart data (a file or pasted text); the CSRF token is a field.
pub async fn import(
    State(state): State<AppState>,
    user: PageUser,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    user.principal.require(EDITORS)?;
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    let mut file_name = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(PageError::new(e.status(), e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            file_name = field
                .file_name()
                .map(str::to_owned)
                .filter(|n| !n.is_empty());
        }
        let data = field
            .bytes()
            .await
            .map_err(|e| PageError::new(e.status(), e.body_text()))?;
        fields.push((name, data.to_vec()));
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    if !get("csrf").is_some_and(|t| crate::auth::constant_time_eq(&t, &user.session.csrf_token)) {
        return Err(super::csrf_failure());
    }
    let file = fields
        .iter()
        .find(|(n, v)| n == "file" && !v.is_empty())
        .map(|(_, v)| v.clone());
    let data = match file {
        Some(f) => f,
        None => get("values").unwrap_or_default().into_bytes(),
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(PageError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a file or paste values to import.",
        ));
    }
    let query = ImportQuery {
        source: get("source").filter(|s| !s.trim().is_empty()),
        tlp: get("tlp").filter(|s| !s.is_empty()),
        preview: get("step").as_deref() != Some("import"),
        name: file_name
            .or_else(|| get("name").filter(|s| !s.is_empty()))
            .or(Some("pasted values".to_owned())),
    };
    let report = import_bytes(&state, &user.principal, &data, &query).await?;
    if query.preview {
        let text = String::from_utf8(data).map_err(|_| {
            PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The file is not UTF-8 text.",
            )
        })?;
        return Ok(respond(
            StatusCode::OK,
            preview_page(&user, &report, &text, &query),
        ));
    }
    let q = serde_urlencoded::to_string([
        ("imported", report.added.to_string()),
        ("merged", report.updated.to_string()),
    ])
    .unwrap_or_default();
    Ok(Redirect::to(&format!("/intel?{q}")).into_response())
}

fn parse_id(raw: &str) -> Result<i64, PageError> {
    raw.parse()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "indicator not found"))
}

pub async fn show(
    State(state): State<AppState>,
    user: PageUser,
    Path(id): Path<String>,
) -> PageResult {
    user.principal.require(READERS)?;
    let (i, sightings) = state
        .store()
        .get_indicator(parse_id(&id)?)
        .await?
        .filter(|(i, _)| i.tlp <= max_tlp(&user.principal))
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "indicator not found"))?;
    // Correlation: what else is known about the same value or the ranges/domains covering it.
    let related: Vec<IndicatorRecord> = state
        .store()
        .match_indicator(&i.to_indicator().observable())
        .await?
        .into_iter()
        .filter(|r| r.id != i.id && r.tlp <= max_tlp(&user.principal))
        .collect();
    let can_edit = EDITORS.contains(&user.principal.role);
    let incidents = crate::api::intel::linked_incidents(&state, &user.principal, i.id).await?;
    let content = html! {
        div.heading {
            h1 { code { (i.value) } " " small { (i.kind) } }
            span class=(tlp_class(i.tlp)) { (i.tlp) }
        }
        div.cards {
            div.card {
                h2 { "Enforcement" }
                p.figure data-blocking=(i.blocking) { @if i.blocking { "blocking" } @else { "not blocking" } }
                @if !i.warninglist.is_empty() { p.muted { "on the warninglist " (i.warninglist) } }
                @if let Some(u) = i.valid_until { p.muted { "until " (u) } }
            }
            div.card {
                h2 { "Reported" }
                dl {
                    dt { "Sources" } dd { (i.sources.join(", ")) }
                    dt { "Confidence" } dd { (i.confidence) " of 100" }
                    @if !i.tags.is_empty() { dt { "Tags" } dd { (i.tags.join(", ")) } }
                    @if let Some(f) = i.first_seen { dt { "First seen" } dd { (f) } }
                    @if let Some(l) = i.last_seen { dt { "Last seen" } dd { (l) } }
                    @if let Some(s) = &i.stix_id { dt { "STIX id" } dd { code { (s) } } }
                    dt { "Added" } dd { (i.created_at) }
                }
            }
        }
        @if !i.description.is_empty() { p { (i.description) } }
        h2 { "Sightings" }
        @if sightings.is_empty() {
            p.muted { "No part of the platform has seen it yet." }
        } @else {
            table {
                thead { tr { th { "Seen by" } th.num { "Times" } th { "First" } th { "Last" } } }
                tbody { @for s in &sightings { tr { td { (s.sensor) } td.num { (s.count) } td { (s.first_seen) } td { (s.last_seen) } } } }
            }
        }
        @if !incidents.is_empty() {
            h2 { "Incidents" }
            ul.incidents { @for x in &incidents { li { a href={"/incidents/" (x.id)} { "#" (x.id) " " (x.title) } } } }
        }
        @if !related.is_empty() {
            h2 { "Also known" }
            (results_table(&related))
        }
        @if can_edit {
            form.card.wide method="post" action={"/intel/" (i.id)} {
                (csrf_field(&user))
                h2 { "Change" }
                div.row {
                    label { "Blocking" select name="blocking" {
                        option value="true" selected[i.blocking] { "block (forces a warninglisted value)" }
                        option value="false" selected[!i.blocking] { "do not block" }
                    } }
                    label { "TLP" (tlp_select("tlp", Some(i.tlp), false)) }
                }
                button type="submit" { "Save" }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Intel, &i.value, content),
    ))
}

#[derive(Deserialize)]
pub struct ChangeForm {
    blocking: Option<bool>,
    tlp: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<ChangeForm>,
) -> PageResult {
    let CsrfForm { user, form } = form;
    user.principal.require(EDITORS)?;
    let id = parse_id(&id)?;
    let tlp = form
        .tlp
        .as_deref()
        .map(|t| {
            Tlp::parse_lenient(t)
                .map_err(|e| PageError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
        })
        .transpose()?;
    state
        .store()
        .update_indicator(&user.principal.actor(), id, form.blocking, tlp, None)
        .await?;
    Ok(Redirect::to(&format!("/intel/{id}")).into_response())
}

fn mail_form(user: &PageUser) -> Markup {
    html! {
        form.card.wide method="post" action="/intel/mail" enctype="multipart/form-data" {
            (csrf_field(user))
            p.muted { "A message as received (.eml, with its headers): its senders, relays, links and attachments are matched against the indicators, and each match counts as a sighting." }
            label { "Message" input type="file" name="file" accept=".eml,message/rfc822" required; }
            button type="submit" { "Check the message" }
        }
    }
}

fn mail_page(user: &PageUser, error: Option<&str>, check: Option<&MailCheck>) -> Markup {
    let content = html! {
        h1 { "Check an e-mail message" }
        (error_box(error))
        @if let Some(c) = check {
            section.card.wide data-blocked=(c.blocked) {
                h2 { (c.subject.as_deref().unwrap_or("(no subject)")) }
                @if c.matches.is_empty() {
                    p { "Nothing in this message is a known indicator." }
                } @else {
                    p.notice role="status" {
                        (c.matches.len()) " known indicators in this message, each counted as a sighting"
                        @if c.blocked { "; the defences block at least one of them" } "."
                    }
                    (results_table(&c.matches))
                }
                @if c.skipped > 0 { p.muted { (c.skipped) " parts, links or observables were left out (limits): the check may be incomplete." } }
                div.scroll {
                    table.observables {
                        thead { tr { th { "Type" } th { "Value" } th { "Found in" } th { "Indicators" } } }
                        tbody {
                            @for o in &c.observables {
                                tr {
                                    td { (o.kind) }
                                    td { code { (o.value) } }
                                    td { (o.place) }
                                    td { @for id in &o.indicators { a href={"/intel/" (id)} { "#" (id) } " " } }
                                }
                            }
                        }
                    }
                }
            }
        }
        (mail_form(user))
    };
    layout(user, Nav::Intel, "Check an e-mail message", content)
}

pub async fn mail(user: PageUser) -> PageResult {
    user.principal.require(MAIL_SENDERS)?;
    Ok(respond(StatusCode::OK, mail_page(&user, None, None)))
}

/// The message posts as multipart data: the CSRF token is one of its fields.
pub async fn mail_check(
    State(state): State<AppState>,
    user: PageUser,
    multipart: Multipart,
) -> PageResult {
    let upload = super::file_upload(&user, multipart, "message").await?;
    user.principal.require(MAIL_SENDERS)?;
    let Some((_, data)) = upload else {
        return Ok(respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            mail_page(&user, Some("Choose a message to check."), None),
        ));
    };
    match check_mail(&state, &user.principal, user.principal.institution, data).await {
        Ok(c) => Ok(respond(StatusCode::OK, mail_page(&user, None, Some(&c)))),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => Ok(respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            mail_page(&user, Some(&e.detail), None),
        )),
        Err(e) => Err(e.into()),
    }
}
