//! The document sandbox: upload a document, read the explained verdict, download the
//! disarmed copy.

use super::{csrf_field, error_box, layout, respond, Nav, PageError, PageResult, PageUser};
use crate::api::documents::{submit, READERS, SUBMITTERS};
use crate::AppState;
use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use qalxan_store::DocumentRecord;

fn verdict_class(v: &str) -> &'static str {
    match v {
        "malicious" => "sev sev-high",
        "suspicious" => "sev sev-medium",
        _ => "sev sev-low",
    }
}

fn list_page(user: &PageUser, docs: &[DocumentRecord], error: Option<&str>) -> Markup {
    let can_submit = SUBMITTERS.contains(&user.principal.role);
    let content = html! {
        h1 { "Documents" }
        p.muted { "Office, PDF, RTF, shortcut and HTML attachments: a verdict that says why, and a copy with the active content removed." }
        (error_box(error))
        @if can_submit {
            form.card.wide method="post" action="/documents" enctype="multipart/form-data" {
                (csrf_field(user))
                label { "Document" input type="file" name="file" required; }
                button type="submit" { "Analyse and disarm" }
            }
        }
        @if docs.is_empty() {
            p.muted { "No documents analysed yet." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "When" } th { "File" } th { "Type" } th { "Verdict" } th.num { "Score" } th { "Safe copy" } } }
                    tbody {
                        @for d in docs {
                            tr {
                                td { (d.created_at) }
                                td { a href={"/documents/" (d.id)} { (d.filename) } }
                                td { (d.file_type) }
                                td { span class=(verdict_class(&d.verdict)) { (d.verdict) } }
                                td.num { (d.score) }
                                td { @if d.disarmed_available { a href={"/documents/" (d.id) "/disarmed"} { "download" } } @else { span.muted { "—" } } }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(user, Nav::Documents, "Documents", content)
}

pub async fn list(State(state): State<AppState>, user: PageUser) -> PageResult {
    user.principal.require(READERS)?;
    let docs = state
        .store()
        .list_documents(user.principal.scope(), 100)
        .await?;
    Ok(respond(StatusCode::OK, list_page(&user, &docs, None)))
}

/// The upload form posts multipart data: the CSRF token is one of its fields.
pub async fn upload(
    State(state): State<AppState>,
    user: PageUser,
    multipart: Multipart,
) -> Result<Response, PageError> {
    let Some((name, data)) = super::file_upload(&user, multipart, "document").await? else {
        let docs = state
            .store()
            .list_documents(user.principal.scope(), 100)
            .await?;
        return Ok(respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            list_page(&user, &docs, Some("Choose a file to analyse.")),
        ));
    };
    let record = submit(&state, &user.principal, Some(name), None, data).await?;
    Ok(Redirect::to(&format!("/documents/{}", record.id)).into_response())
}

fn parse_id(raw: &str) -> Result<i64, PageError> {
    raw.parse()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "document not found"))
}

pub async fn show(
    State(state): State<AppState>,
    user: PageUser,
    Path(id): Path<String>,
) -> PageResult {
    user.principal.require(READERS)?;
    let d = state
        .store()
        .get_document(parse_id(&id)?, user.principal.scope())
        .await?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "document not found"))?;
    let r = &d.report;
    let flags: Vec<String> = r["flags"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| **v == true)
                .map(|(k, _)| k.replace('_', " "))
                .collect()
        })
        .unwrap_or_default();
    let empty = Vec::new();
    let indicators = r["indicators"].as_array().unwrap_or(&empty);
    let macros = r["macros"].as_array().unwrap_or(&empty);
    let scripts = r["scripts"].as_array().unwrap_or(&empty);
    let removed = d
        .disarm_report
        .as_ref()
        .and_then(|x| x["removed"].as_array())
        .unwrap_or(&empty);
    let notes = d
        .disarm_report
        .as_ref()
        .and_then(|x| x["notes"].as_array())
        .unwrap_or(&empty);
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let content = html! {
        div.heading {
            h1 { (d.filename) " " small { (d.file_type) } }
            @if d.disarmed_available {
                a.button.download href={"/documents/" (d.id) "/disarmed"} { "Download the safe copy" }
            }
        }
        div.cards {
            div.card {
                h2 { "Verdict" }
                p.figure data-verdict=(d.verdict) { span class=(verdict_class(&d.verdict)) { (d.verdict) } }
                p.muted { "score " (d.score) " of 100" }
            }
            div.card {
                h2 { "File" }
                dl {
                    dt { "SHA-256" } dd { code { (d.sha256) } }
                    dt { "Size" } dd { (super::fmt_int(d.size)) " bytes" }
                    dt { "Received" } dd { (d.created_at) " from " (d.uploaded_by) }
                    dt { "Found" } dd { @if flags.is_empty() { "nothing active" } @else { (flags.join(", ")) } }
                }
            }
        }
        h2 style="margin-top:1rem" { "Why" }
        @if indicators.is_empty() {
            p.muted { "No indicators: nothing active or unusual was found." }
        } @else {
            div.scroll {
                table.indicators {
                    thead { tr { th { "Severity" } th { "Indicator" } th { "Where" } th { "What" } } }
                    tbody {
                        @for i in indicators {
                            tr {
                                td { span class={"sev sev-" (s(&i["severity"]))} { (s(&i["severity"])) } }
                                td { code { (s(&i["id"])) } }
                                td { (s(&i["location"])) }
                                td { (s(&i["description"])) }
                            }
                        }
                    }
                }
            }
        }
        @for m in macros {
            details.card.wide open {
                summary { "VBA module " (s(&m["name"])) " " span.muted { (s(&m["location"])) } }
                @if m["revealed"].is_string() {
                    // The obfuscation undone first: that is what the analyst reads.
                    h3 { "Deobfuscated" }
                    pre.code.revealed { (s(&m["revealed"])) }
                    h3 { "As stored" }
                }
                pre.code { (s(&m["code"])) }
            }
        }
        @for sc in scripts {
            details.card.wide open {
                summary { (s(&sc["kind"])) " " span.muted { (s(&sc["location"])) } }
                pre.code { (s(&sc["code"])) }
            }
        }
        h2 style="margin-top:1rem" { "Disarm" }
        @if let Some(e) = (!d.disarm_error.is_empty()).then_some(&d.disarm_error) {
            p.error role="alert" { "No safe copy: " (e) }
        } @else if removed.is_empty() {
            p.muted { "Nothing needed removing; the safe copy is the document rebuilt." }
        } @else {
            ul.removed {
                @for x in removed {
                    li { (s(&x["description"])) " " span.muted { "(" (s(&x["location"])) ")" } }
                }
            }
        }
        @for n in notes { p.muted { (s(n)) } }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Documents, &d.filename, content),
    ))
}

pub async fn download(
    State(state): State<AppState>,
    user: PageUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    user.principal.require(READERS)?;
    let (name, bytes) = state
        .store()
        .disarmed_document(parse_id(&id)?, user.principal.scope())
        .await?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "no safe copy of this document"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        Body::from(bytes),
    )
        .into_response())
}
