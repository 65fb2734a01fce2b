//! The events the parts of the platform reported, newest first.

use super::{fmt_int, layout, respond, Nav, PageResult, PageUser};
use crate::api::events::READERS;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use maud::html;
use qalxan_core::EventKind;
use qalxan_store::EventFilter;
use serde::Deserialize;

const PAGE: u32 = 100;

#[derive(Deserialize, Default)]
pub struct EventsQuery {
    kind: Option<String>,
    before: Option<i64>,
}

pub async fn page(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<EventsQuery>,
) -> PageResult {
    user.principal.require(READERS)?;
    let kind: Option<EventKind> = q.kind.as_deref().and_then(|k| k.parse().ok());
    let events = state
        .store()
        .list_events(&EventFilter {
            institution_id: user.principal.scope(),
            kind,
            before_id: q.before,
            limit: PAGE,
        })
        .await?;
    let names: std::collections::HashMap<_, _> = state
        .store()
        .list_institutions(user.principal.scope())
        .await?
        .into_iter()
        .map(|i| (i.id, i.fields.name))
        .collect();
    let older = (events.len() as u32 == PAGE)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    let content = html! {
        div.heading {
            h1 { "Events" }
            form.inline method="get" action="/events" {
                label.inline { "Kind "
                    select name="kind" {
                        option value="" { "all" }
                        @for k in EventKind::ALL {
                            option value=(k.as_str()) selected[Some(*k) == kind] { (k.label()) }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
        }
        @if events.is_empty() {
            p.muted { "No events." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th { "Time (UTC)" } th { "Kind" } th { "Institution" } th { "Severity" } th.num { "Count" } th { "Source" } th { "Details" } } }
                    tbody {
                        @for e in &events {
                            tr {
                                td { (e.occurred_at) }
                                td { (e.kind.label()) }
                                td { (e.institution_id.and_then(|i| names.get(&i)).map(String::as_str).unwrap_or("—")) }
                                td { span class={"sev sev-" (e.severity)} { (e.severity) } }
                                td.num { (fmt_int(e.count)) @if let Some(v) = e.value { " (" (fmt_int(v)) ")" } }
                                td { (e.source) }
                                td { @if e.attributes.as_object().is_some_and(|o| !o.is_empty()) { code { (e.attributes) } } }
                            }
                        }
                    }
                }
            }
            @if let Some(id) = older {
                p { a href={"/events?before=" (id) (kind.map(|k| format!("&kind={k}")).unwrap_or_default())} { "Older events →" } }
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Events, "Events", content),
    ))
}
