//! `/api/v1/documents`: the document sandbox. An upload is analysed and disarmed; the report
//! and the safe copy are stored, and a malicious document neutralised is a `doc.neutralized`
//! event (the dashboard's counter).

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use qalxan_core::{EventKind, InstitutionId, Role, Severity};
use qalxan_store::{DocumentRecord, NewDocument, NewEvent};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::AppState;

/// Roles that may submit documents: the CERT, institutions' staff, and machines (mail gateways).
pub(crate) const SUBMITTERS: &[Role] =
    &[Role::Admin, Role::Analyst, Role::Institution, Role::Sensor];
/// Roles that may read results (institutions' staff only their own).
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Auditor, Role::Institution];

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many of the newest documents (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A document as the API returns it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DocumentView {
    pub id: i64,
    pub institution_id: Option<InstitutionId>,
    pub uploaded_by: String,
    pub filename: String,
    pub sha256: String,
    pub size: i64,
    /// File type detected from content.
    #[serde(rename = "type")]
    pub file_type: String,
    /// `malicious`, `suspicious` or `clean`.
    pub verdict: String,
    pub score: i64,
    /// The full analysis: indicators (id, severity, description, location), flags, VBA
    /// modules' source code and scripts.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
    /// What disarm removed and its notes, when it ran.
    #[schema(value_type = Object)]
    pub disarm: Option<serde_json::Value>,
    /// Why no safe copy could be made, when none was.
    pub disarm_error: Option<String>,
    /// Where to download the safe copy, when there is one.
    pub download: Option<String>,
    pub created_at: i64,
}

impl From<DocumentRecord> for DocumentView {
    fn from(d: DocumentRecord) -> Self {
        DocumentView {
            download: d
                .disarmed_available
                .then(|| format!("/api/v1/documents/{}/disarmed", d.id)),
            id: d.id,
            institution_id: d.institution_id,
            uploaded_by: d.uploaded_by,
            filename: d.filename,
            sha256: d.sha256,
            size: d.size,
            file_type: d.file_type,
            verdict: d.verdict,
            score: d.score,
            report: d.report,
            disarm: d.disarm_report,
            disarm_error: (!d.disarm_error.is_empty()).then_some(d.disarm_error),
            created_at: d.created_at.0,
        }
    }
}

/// The name the safe copy is offered under: the original's, with the extension disarm chose.
fn disarmed_name(original: &str, extension: Option<&str>) -> String {
    let base = original
        .rsplit(['/', '\\'])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("document");
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (stem, ext) = match clean.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), e.to_string()),
        _ => (clean.clone(), String::new()),
    };
    let ext = extension.map(str::to_string).unwrap_or(ext);
    if ext.is_empty() {
        format!("{stem}.disarmed")
    } else {
        format!("{stem}.disarmed.{ext}")
    }
}

/// Analyses, disarms and records one document for `principal`.
pub(crate) async fn submit(
    state: &AppState,
    principal: &Principal,
    name: Option<String>,
    institution_id: Option<InstitutionId>,
    data: Bytes,
) -> Result<DocumentRecord, ApiError> {
    principal.require(SUBMITTERS)?;
    let institution_id = super::upload_institution(principal, institution_id, "submits")?;
    let filename = name.unwrap_or_else(|| "document".into());
    let shown = filename.clone();
    let bytes = data.clone();
    let (report, disarmed) = tokio::task::spawn_blocking(move || {
        let options = qalxan_docs::Options::default();
        let report = qalxan_docs::analyze(&bytes, &shown, &options);
        let disarmed = qalxan_docs::disarm::disarm(&bytes, &options);
        (report, disarmed)
    })
    .await
    .map_err(|_| ApiError::unavailable("the analysis did not complete"))?;
    let sha256 = super::sha256_hex(&data);
    let report_json = serde_json::to_value(&report).unwrap_or_default();
    let (disarm_report, disarm_error, safe_name, safe) = match disarmed {
        Ok(d) => (
            serde_json::to_value(&d).ok(),
            String::new(),
            disarmed_name(&filename, d.extension),
            Some(d.data),
        ),
        Err(e) => (None, e.to_string(), String::new(), None),
    };
    let neutralized = report.verdict == qalxan_docs::Verdict::Malicious && safe.is_some();
    let record = state
        .store()
        .insert_document(
            &principal.actor(),
            NewDocument {
                institution_id,
                filename: filename.clone(),
                sha256: sha256.clone(),
                size: data.len() as i64,
                file_type: report.file_type.as_str().to_string(),
                verdict: report.verdict.as_str().to_string(),
                score: i64::from(report.score),
                report: report_json,
                disarm_report,
                disarm_error,
                disarmed_name: safe_name,
                disarmed: safe,
            },
        )
        .await?;
    if neutralized {
        let event = NewEvent {
            occurred_at: qalxan_core::now_millis(),
            kind: EventKind::DocumentNeutralized,
            source: principal.actor().name,
            institution_id,
            severity: Severity::High,
            count: 1,
            value: None,
            attributes: serde_json::json!({
                "file": filename,
                "sha256": sha256,
                "document_id": record.id,
                "type": report.file_type.as_str(),
                "indicators": report.indicators.iter().take(10).map(|i| i.id.clone()).collect::<Vec<_>>(),
            }),
        };
        state
            .store()
            .insert_events(std::slice::from_ref(&event))
            .await?;
        super::alerts::raise_from_events(state, &event.source, std::slice::from_ref(&event)).await;
    }
    Ok(record)
}

/// Analyses and disarms an uploaded document (the request body, any content type).
#[utoipa::path(post, operation_id = "submit_document", path = "/api/v1/documents", tag = "documents",
    params(super::UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = DocumentView), (status = 403, body = Problem), (status = 413, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<super::UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DocumentView>), ApiError> {
    let body = super::upload_body(body, "docs_max_bytes", state.config().docs_max_bytes)?;
    let record = submit(&state, &principal, query.name, query.institution_id, body).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// The newest analysed documents (an institution's staff see only their own).
#[utoipa::path(get, operation_id = "list_documents", path = "/api/v1/documents", tag = "documents",
    params(ListQuery), responses((status = 200, body = Vec<DocumentView>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<DocumentView>>, ApiError> {
    principal.require(READERS)?;
    let docs = state
        .store()
        .list_documents(principal.scope(), query.limit.unwrap_or(100))
        .await?;
    Ok(Json(docs.into_iter().map(Into::into).collect()))
}

/// One analysed document with its full report.
#[utoipa::path(get, operation_id = "get_document", path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = i64, Path)), responses((status = 200, body = DocumentView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<DocumentView>, ApiError> {
    principal.require(READERS)?;
    state
        .store()
        .get_document(id, principal.scope())
        .await?
        .map(|d| Json(d.into()))
        .ok_or_else(|| ApiError::not_found("document"))
}

/// Downloads the disarmed (safe) copy of a document.
#[utoipa::path(get, operation_id = "download_disarmed", path = "/api/v1/documents/{id}/disarmed", tag = "documents",
    params(("id" = i64, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = Problem)))]
pub async fn download(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(READERS)?;
    let (name, bytes) = state
        .store()
        .disarmed_document(id, principal.scope())
        .await?
        .ok_or_else(|| ApiError::not_found("disarmed document"))?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::from(bytes))
        .map_err(|e| ApiError::internal(&e))
}

#[cfg(test)]
mod tests {
    use super::disarmed_name;

    #[test]
    fn safe_copy_names() {
        assert_eq!(
            disarmed_name("invoice.docm", Some("docx")),
            "invoice.disarmed.docx"
        );
        assert_eq!(disarmed_name("C:\\x\\a b.pdf", None), "a_b.disarmed.pdf");
        assert_eq!(
            disarmed_name("../\"evil\".pdf", None),
            "_evil_.disarmed.pdf"
        );
        assert_eq!(disarmed_name("", None), "document.disarmed");
    }
}
