//! The overview: the figures a CERT reports, each with its chart, for 24 hours, 30 days or
//! six months.

use super::{fmt_int, layout, respond, Nav, PageResult, PageUser};
use crate::api::events::overview_for;
use crate::chart;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::html;
use qalxan_core::{EventKind, Period, Role};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct OverviewQuery {
    period: Option<String>,
}

/// Figures with a chart each, in the order a report lists them.
const FIGURES: &[EventKind] = &[
    EventKind::RequestBlocked,
    EventKind::DdosDetected,
    EventKind::FileInfected,
    EventKind::DocumentNeutralized,
    EventKind::IndicatorAdded,
    EventKind::VictimRecorded,
];

pub async fn page(
    State(state): State<AppState>,
    user: PageUser,
    Query(query): Query<OverviewQuery>,
) -> PageResult {
    if !super::EVENT_READERS.contains(&user.principal.role) {
        // Researchers and others without figures start at their account.
        return Ok(Redirect::to("/account").into_response());
    }
    let period = query
        .period
        .as_deref()
        .and_then(|p| p.parse().ok())
        .unwrap_or(Period::Day);
    let overview = overview_for(&state, &user.principal, period).await?;
    let scope_name = match user.principal.scope() {
        Some(id) => state
            .store()
            .get_institution(id)
            .await?
            .map(|i| i.fields.name),
        None => None,
    };
    let start = overview.start.0;
    let series = |kind: EventKind| overview.series.iter().find(|s| s.kind == kind);
    let opened = series(EventKind::IncidentOpened).map_or(0, |s| s.total);
    let content = html! {
        div.heading {
            h1 {
                "Overview"
                @if let Some(name) = &scope_name { small { " — " (name) } }
            }
            nav.periods aria-label="Period" {
                @for p in Period::ALL {
                    a href={"/?period=" (p.as_str())} aria-current=[(*p == period).then_some("page")] { (p.label()) }
                }
            }
        }
        p.muted { "Last " (period.label()) ", up to " (overview.end) " (UTC)." }
        div.cards {
            section.card data-figure="incident.open" {
                h2 { "Open incidents" }
                p.figure data-total { (fmt_int(overview.open_incidents)) }
                p.muted { (fmt_int(opened)) " opened in this period" }
            }
            @for kind in FIGURES {
                @if let Some(s) = series(*kind) {
                    section.card data-figure=(kind.as_str()) {
                        h2 { (kind.label()) }
                        p.figure data-total { (fmt_int(s.total)) }
                        @if *kind == EventKind::DdosDetected {
                            p.muted { "peak " (fmt_int(s.peak)) " requests/s" }
                        }
                        (chart::bars(kind.label(), &s.bins, start, overview.bin_ms))
                    }
                }
            }
        }
        section.card.wide {
            h2 { "Victims by institution" }
            @if overview.victims.is_empty() {
                p.muted { "No victims recorded in this period." }
            } @else {
                table {
                    thead { tr { th { "Institution" } th.num { "Victims" } } }
                    tbody {
                        @for v in &overview.victims {
                            tr { td { (v.institution) } td.num { (fmt_int(v.victims)) } }
                        }
                    }
                }
            }
        }
        @if user.principal.role == Role::Admin || user.principal.role == Role::Analyst {
            p.muted {
                "Figures come from the events the gateway, scanners, sandbox and agents report to "
                code { "POST /api/v1/events" } "."
            }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Overview, "Overview", content),
    ))
}
