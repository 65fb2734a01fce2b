//! Prometheus metrics at `/metrics`: request counts and latencies kept in this process, plus
//! the platform's figures read from the store at scrape time (so every instance reports the same
//! totals, whichever one Prometheus asks).

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use qalxan_core::Role;
use std::time::Instant;

type Labels = Vec<(&'static str, String)>;

pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("qalxan");
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route",
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
        }
    }
}

/// Counts and times every request. Routes are labelled by their pattern (`/api/v1/users/{id}`),
/// never by the raw path, so the number of series stays bounded.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics
        .latency
        .get_or_create(&vec![("method", method.clone()), ("route", route.clone())])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&vec![
            ("method", method),
            ("route", route),
            ("status", response.status().as_u16().to_string()),
        ])
        .inc();
    response
}

/// `GET /metrics`, for CERT staff and their Prometheus (with an API token).
pub(crate) async fn scrape(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin, Role::Analyst, Role::Auditor])?;
    let mut platform = Registry::with_prefix("qalxan");
    let events = Family::<Labels, Counter>::default();
    for (kind, total) in state.store().event_totals().await? {
        events
            .get_or_create(&vec![("kind", kind.as_str().to_owned())])
            .inc_by(total.max(0) as u64);
    }
    platform.register(
        "events",
        "Occurrences reported through the events API since the platform started, by kind",
        events,
    );
    let institutions = Gauge::<i64>::default();
    institutions.set(state.store().list_institutions(None).await?.len() as i64);
    platform.register(
        "institutions",
        "Institutions in the constituency",
        institutions,
    );
    let users = Gauge::<i64>::default();
    users.set(state.store().count_users().await?);
    platform.register("users", "User accounts", users);

    let mut body = String::new();
    encode(&mut body, &state.metrics().registry).map_err(|e| ApiError::internal(&e))?;
    // Both registries end with the OpenMetrics terminator; only the last one may keep it.
    if let Some(stripped) = body.strip_suffix("# EOF\n") {
        body.truncate(stripped.len());
    }
    encode(&mut body, &platform).map_err(|e| ApiError::internal(&e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
