//! `POST /api/v1/scan`: a file uploaded to the scan engine. An infected file is recorded as a
//! `scan.infected` event, like the scanners' own reports.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use qalxan_core::{EventKind, Role, Severity};
use qalxan_store::NewEvent;
use serde::Serialize;

use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScanDetection {
    /// Signature name, as ClamAV would print it.
    pub name: String,
    /// Members leading from the file to the part that matched (empty: the file itself).
    pub location: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScanReport {
    pub infected: bool,
    pub detections: Vec<ScanDetection>,
    pub size: u64,
    pub sha256: String,
    /// Damaged containers met while scanning.
    pub warnings: Vec<String>,
    /// The `scan.infected` event recorded, when infected.
    pub event_id: Option<i64>,
}

/// Scans an uploaded file (the request body, any content type) with the scan engine.
#[utoipa::path(post, operation_id = "scan_file", path = "/api/v1/scan", tag = "scan", params(super::UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ScanReport), (status = 403, body = Problem), (status = 413, body = Problem)))]
pub async fn scan(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<super::UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ScanReport>), ApiError> {
    principal.require(&[Role::Admin, Role::Analyst, Role::Sensor, Role::Institution])?;
    let institution_id = super::upload_institution(&principal, query.institution_id, "scans")?;
    let body = super::upload_body(body, "scan_max_bytes", state.config().scan_max_bytes)?;
    let scanner = state.scanner().clone();
    let data = body.clone();
    let outcome = tokio::task::spawn_blocking(move || scanner.scan_bytes(&data))
        .await
        .map_err(|_| ApiError::unavailable("the scan did not complete"))?;
    let sha256 = super::sha256_hex(&body);
    let mut event_id = None;
    if let Some(first) = outcome.detections.first() {
        let event = NewEvent {
            occurred_at: qalxan_core::now_millis(),
            kind: EventKind::FileInfected,
            source: principal.actor().name,
            institution_id,
            severity: Severity::High,
            count: 1,
            value: None,
            attributes: serde_json::json!({
                "file": query.name,
                "signature": first.name,
                "sha256": sha256,
                "size": body.len(),
                "scanner": "api",
            }),
        };
        event_id = state
            .store()
            .insert_events(std::slice::from_ref(&event))
            .await?
            .into_iter()
            .next();
        super::alerts::raise_from_events(&state, &event.source, std::slice::from_ref(&event)).await;
    }
    Ok((
        StatusCode::OK,
        Json(ScanReport {
            infected: outcome.is_infected(),
            detections: outcome
                .detections
                .into_iter()
                .map(|d| ScanDetection {
                    name: d.name,
                    location: d.location,
                })
                .collect(),
            size: body.len() as u64,
            sha256,
            warnings: outcome.warnings,
            event_id,
        }),
    ))
}
