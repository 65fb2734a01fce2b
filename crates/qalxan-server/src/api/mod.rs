//! The JSON API under `/api/v1`. Every error is a problem document (RFC 9457); the OpenAPI
//! description at `/api/v1/openapi.json` is generated from these handlers.

pub(crate) mod alerts;
pub(crate) mod audit;
pub(crate) mod documents;
pub(crate) mod events;
pub mod incidents;
pub(crate) mod institutions;
pub mod intel;
pub(crate) mod me;
pub(crate) mod notifications;
pub(crate) mod scan;
pub mod tokens;
pub(crate) mod users;

use crate::error::{ApiError, Problem};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;

pub fn router(config: &crate::Config) -> Router<AppState> {
    Router::new()
        .route(
            "/scan",
            axum::routing::post(scan::scan)
                .layer(axum::extract::DefaultBodyLimit::max(config.scan_max_bytes)),
        )
        .route(
            "/documents",
            get(documents::list)
                .post(documents::create)
                .layer(axum::extract::DefaultBodyLimit::max(config.docs_max_bytes)),
        )
        .route("/documents/{id}", get(documents::get))
        .route("/documents/{id}/disarmed", get(documents::download))
        .route("/intel/indicators", get(intel::list).post(intel::create))
        .route(
            "/intel/indicators/{id}",
            get(intel::get).patch(intel::update).delete(intel::delete),
        )
        .route(
            "/intel/import",
            axum::routing::post(intel::import)
                .layer(axum::extract::DefaultBodyLimit::max(config.docs_max_bytes)),
        )
        .route("/intel/match", get(intel::matcher))
        .route(
            "/intel/collections",
            get(intel::collections).post(intel::create_collection),
        )
        .route("/intel/export", get(intel::export))
        .route("/intel/lists", get(intel::lists))
        .route("/intel/feeds", get(intel::feeds))
        .route("/intel/sightings", axum::routing::post(intel::sighting))
        .route(
            "/intel/mail",
            axum::routing::post(intel::mail)
                .layer(axum::extract::DefaultBodyLimit::max(config.docs_max_bytes)),
        )
        .route(
            "/intel/pattern-check",
            axum::routing::post(intel::pattern_check),
        )
        .route("/alerts", get(alerts::list).post(alerts::create))
        .route("/alerts/promote", axum::routing::post(alerts::promote))
        .route("/alerts/stream", get(alerts::follow))
        .route("/alerts/{id}", get(alerts::get))
        .route(
            "/alerts/{id}/status",
            axum::routing::post(alerts::set_status),
        )
        .route("/alerts/{id}/merge", axum::routing::post(alerts::merge))
        .route("/incidents", get(incidents::list).post(incidents::create))
        .route("/incidents/taxonomy", get(incidents::taxonomy))
        .route(
            "/incidents/{id}",
            get(incidents::get).patch(incidents::update),
        )
        .route(
            "/incidents/{id}/status",
            axum::routing::post(incidents::set_status),
        )
        .route(
            "/incidents/{id}/team",
            axum::routing::put(incidents::set_team),
        )
        .route(
            "/incidents/{id}/tasks",
            axum::routing::post(incidents::add_task),
        )
        .route(
            "/incidents/{id}/tasks/{task}",
            axum::routing::patch(incidents::update_task),
        )
        .route(
            "/incidents/{id}/comments",
            axum::routing::post(incidents::comment),
        )
        .route(
            "/incidents/{id}/observables",
            axum::routing::post(incidents::add_observables),
        )
        .route(
            "/incidents/{id}/victims",
            axum::routing::post(incidents::add_victims),
        )
        .route(
            "/incidents/{id}/evidence",
            axum::routing::post(incidents::add_evidence).layer(
                axum::extract::DefaultBodyLimit::max(config.evidence_max_bytes),
            ),
        )
        .route(
            "/incidents/{id}/evidence/{evidence}",
            get(incidents::get_evidence),
        )
        .route("/incidents/{id}/report", get(incidents::report))
        .route("/reports/periodic", get(incidents::periodic))
        .route("/openapi.json", get(openapi_json))
        .route("/me", get(me::get_me))
        .route("/me/password", axum::routing::post(me::change_password))
        .route(
            "/me/notifications",
            get(notifications::get_mine).put(notifications::set_mine),
        )
        .route(
            "/webhooks",
            get(notifications::list).post(notifications::create),
        )
        .route(
            "/webhooks/{id}",
            axum::routing::delete(notifications::delete),
        )
        .route(
            "/institutions",
            get(institutions::list).post(institutions::create),
        )
        .route(
            "/institutions/{id}",
            get(institutions::get)
                .patch(institutions::update)
                .delete(institutions::delete),
        )
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", get(users::get).patch(users::update))
        .route(
            "/users/{id}/password",
            axum::routing::post(users::reset_password),
        )
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/audit", get(audit::list))
        .route("/events", get(events::list).post(events::create))
        .route("/overview", get(events::overview))
        .fallback(|| async { ApiError::not_found("API endpoint") })
}

/// The query of the upload endpoints (scan, documents).
#[derive(serde::Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name as received, for the report and the event (never used to detect its type).
    pub name: Option<String>,
    /// The institution the file came from, when the caller's token is not tied to one.
    pub institution_id: Option<qalxan_core::InstitutionId>,
}

/// The institution an upload is recorded for: the caller's own when the caller is tied to one
/// (naming another is refused), else the one the caller names.
pub(crate) fn upload_institution(
    principal: &crate::auth::Principal,
    given: Option<qalxan_core::InstitutionId>,
    what: &str,
) -> Result<Option<qalxan_core::InstitutionId>, ApiError> {
    match (principal.institution, given) {
        (Some(own), Some(given)) if own != given => Err(ApiError::forbidden(format!(
            "institution_id: this caller {what} only for institution {own}"
        ))),
        (Some(own), _) => Ok(Some(own)),
        (None, given) => Ok(given),
    }
}

/// An uploaded body, or the problem naming the size limit (`key`) it broke.
pub(crate) fn upload_body(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    key: &str,
    limit: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(format!("the upload is larger than {key} ({limit} bytes)"))
        } else {
            ApiError::bad_request(e.body_text())
        }
    })
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Qalxan API",
        description = "The API of Qalxan, a cyber-defence platform for a national CERT. \
            Authenticate with an API token (`Authorization: Bearer qx_...`) or a dashboard \
            session cookie (changes then need the `X-CSRF-Token` header). Errors are RFC 9457 \
            problem documents.",
        license(name = "Apache-2.0")
    ),
    paths(
        me::get_me,
        me::change_password,
        institutions::list,
        institutions::create,
        institutions::get,
        institutions::update,
        institutions::delete,
        users::list,
        users::create,
        users::get,
        users::update,
        users::reset_password,
        tokens::list,
        tokens::create,
        tokens::revoke,
        audit::list,
        events::create,
        events::list,
        events::overview,
        scan::scan,
        documents::create,
        documents::list,
        documents::get,
        documents::download,
        intel::list,
        intel::create,
        intel::get,
        intel::update,
        intel::delete,
        intel::import,
        intel::matcher,
        intel::export,
        intel::lists,
        intel::sighting,
        intel::mail,
        intel::pattern_check,
        intel::collections,
        intel::create_collection,
        intel::feeds,
        alerts::create,
        alerts::list,
        alerts::follow,
        alerts::get,
        alerts::set_status,
        alerts::merge,
        alerts::promote,
        incidents::create,
        incidents::list,
        incidents::get,
        incidents::update,
        incidents::set_status,
        incidents::set_team,
        incidents::add_task,
        incidents::update_task,
        incidents::comment,
        incidents::add_observables,
        incidents::add_victims,
        incidents::add_evidence,
        incidents::get_evidence,
        incidents::report,
        incidents::periodic,
        incidents::taxonomy,
        notifications::list,
        notifications::create,
        notifications::delete,
        notifications::get_mine,
        notifications::set_mine,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "accounts", description = "Users, API tokens and the caller's own account"),
        (name = "institutions", description = "The constituency the CERT protects"),
        (name = "events", description = "What the parts of the platform report, and the figures"),
        (name = "audit", description = "The append-only audit trail"),
        (name = "scan", description = "The scan engine: ClamAV signatures, containers opened"),
        (name = "documents", description = "The document sandbox: explained verdicts and disarmed copies"),
        (name = "incidents", description = "Incident response: alerts, incidents, victims, evidence and reports"),
        (name = "intel", description = "Threat intelligence: indicators of attack, imports and exports, the blocklist"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// A JSON request body. Unlike axum's `Json`, every failure is a problem document that says
/// where the body went wrong: malformed JSON (400, with line and column), a field that does not
/// fit (422, naming the field's path), the wrong media type (415), or too large (413).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::unsupported_media_type(
                "send the body as JSON with 'Content-Type: application/json'",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(
                    "the request body exceeds the configured limit (max_body_bytes)",
                )
            } else {
                ApiError::bad_request(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::invalid(field, inner.to_string())
            }
            _ => ApiError::bad_request(format!("malformed JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Query-string parameters, with problem documents for values that do not parse.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request(format!("query string: {e}")))
    }
}

/// Object ids in paths; anything that is not an id names no object.
pub(crate) fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(what))
}

/// A page of results, newest first. Pass `next_before` as `before` to get the next page.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Absent on the last page.
    pub next_before: Option<i64>,
}

impl<T> Page<T> {
    pub(crate) fn new(items: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> Page<T> {
        let next_before = (items.len() as u32 >= limit)
            .then(|| items.last().map(&id))
            .flatten();
        Page { items, next_before }
    }
}

/// Default and largest page sizes.
pub(crate) fn page_limit(requested: Option<u32>) -> u32 {
    requested.unwrap_or(100).clamp(1, 1000)
}
