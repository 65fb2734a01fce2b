//! A TAXII 2.1 server at `/taxii2/`: discovery, one API root, collections, objects (GET with
//! `added_after`, `limit`/`next`, `match[...]`; POST with a status resource), single objects,
//! versions, manifests and status.
//!
//! Collections come from the store: the CERT's own (CERT staff only), TLP-capped views of it
//! for partners, and per-partner exchange collections. A partner (an `institution` token)
//! lists and reads only collections meant for all partners or for its own institution, never
//! objects above the collection's TLP, and writes only to its own exchange collection. What a
//! partner posts is stored and becomes intelligence that does not block until an analyst says so.
//! Authentication is the API token, as Bearer or as the password of HTTP Basic (what TAXII
//! clients offer).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use qalxan_core::{Role, Tlp};
use qalxan_store::{Collection, ObjectFilter, StoredObject};
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

pub const TAXII_MEDIA: &str = "application/taxii+json;version=2.1";
pub const STIX_MEDIA: &str = "application/stix+json;version=2.1";
const MAX_PAGE: u32 = 1000;

pub fn router(config: &crate::Config) -> Router<AppState> {
    Router::new()
        .route("/taxii2/", get(discovery))
        .route("/taxii2/api/", get(api_root))
        .route("/taxii2/api/collections/", get(collections))
        .route("/taxii2/api/collections/{id}/", get(collection))
        .route(
            "/taxii2/api/collections/{id}/objects/",
            get(objects)
                .post(add_objects)
                .layer(axum::extract::DefaultBodyLimit::max(config.docs_max_bytes)),
        )
        .route(
            "/taxii2/api/collections/{id}/objects/{object_id}/",
            get(object),
        )
        .route(
            "/taxii2/api/collections/{id}/objects/{object_id}/versions/",
            get(versions),
        )
        .route("/taxii2/api/collections/{id}/manifest/", get(manifest))
        .route("/taxii2/api/status/{status_id}/", get(status))
}

/// A TAXII error message (section 3.6.1), served with the TAXII media type.
pub struct TaxiiError {
    status: StatusCode,
    title: String,
    description: String,
}

impl TaxiiError {
    fn new(status: StatusCode, title: &str, description: impl Into<String>) -> TaxiiError {
        TaxiiError {
            status,
            title: title.to_owned(),
            description: description.into(),
        }
    }
}

impl From<ApiError> for TaxiiError {
    fn from(e: ApiError) -> TaxiiError {
        TaxiiError {
            status: e.status,
            title: e.title.to_owned(),
            description: e.detail,
        }
    }
}

impl From<qalxan_store::StoreError> for TaxiiError {
    fn from(e: qalxan_store::StoreError) -> TaxiiError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for TaxiiError {
    fn into_response(self) -> Response {
        let body = json!({
            "title": self.title,
            "description": self.description,
            "http_status": self.status.as_u16().to_string(),
        });
        (
            self.status,
            [(header::CONTENT_TYPE, TAXII_MEDIA)],
            body.to_string(),
        )
            .into_response()
    }
}

type Result<T> = std::result::Result<T, TaxiiError>;

fn taxii_json(v: Value) -> Response {
    ([(header::CONTENT_TYPE, TAXII_MEDIA)], v.to_string()).into_response()
}

/// TAXII clients must ask for the TAXII media type; anything else gets 406.
fn check_accept(headers: &HeaderMap) -> Result<()> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let ok = accept.split(',').any(|m| {
        let m = m.trim().to_ascii_lowercase();
        m.starts_with("application/taxii+json")
            || m.starts_with("*/*")
            || m.starts_with("application/*")
    });
    if ok {
        Ok(())
    } else {
        Err(TaxiiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "Not acceptable",
            format!("this server answers with {TAXII_MEDIA}"),
        ))
    }
}

type Auth = std::result::Result<Principal, ApiError>;

async fn caller(state: &AppState, headers: &HeaderMap, principal: Auth) -> Result<Principal> {
    let _ = state;
    let p = principal.map_err(TaxiiError::from)?;
    check_accept(headers)?;
    Ok(p)
}

fn can_read(p: &Principal, c: &Collection) -> bool {
    match p.role {
        Role::Admin | Role::Analyst | Role::Auditor | Role::Sensor => true,
        Role::Institution => {
            c.audience == "all"
                || (c.audience == "institution"
                    && c.institution_id.is_some()
                    && c.institution_id == p.institution)
        }
        Role::Researcher => false,
    }
}

fn can_write(p: &Principal, c: &Collection) -> bool {
    if c.view_of.is_some() {
        return false;
    }
    match p.role {
        Role::Admin | Role::Analyst => true,
        Role::Institution => {
            c.audience == "institution"
                && c.institution_id.is_some()
                && c.institution_id == p.institution
        }
        _ => false,
    }
}

/// The base URL clients reach this server at: `public_url` when configured, else the Host.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let configured = state.config().public_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn discovery(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
) -> Result<Response> {
    caller(&state, &headers, principal).await?;
    let root = format!("{}/taxii2/api/", base_url(&state, &headers));
    Ok(taxii_json(json!({
        "title": "Qalxan TAXII server",
        "description": "Indicators of attack shared by the CERT, by TLP and by partner.",
        "default": root,
        "api_roots": [root],
    })))
}

async fn api_root(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
) -> Result<Response> {
    caller(&state, &headers, principal).await?;
    Ok(taxii_json(json!({
        "title": "Qalxan CERT intelligence",
        "description": "The CERT's indicators of attack and what its partners share.",
        "versions": [TAXII_MEDIA],
        "max_content_length": state.config().docs_max_bytes,
    })))
}

fn collection_json(p: &Principal, c: &Collection) -> Value {
    json!({
        "id": c.id,
        "title": c.title,
        "description": c.description,
        "can_read": can_read(p, c),
        "can_write": can_write(p, c),
        "media_types": [STIX_MEDIA],
    })
}

async fn collections(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
) -> Result<Response> {
    let p = caller(&state, &headers, principal).await?;
    let list: Vec<Value> = state
        .store()
        .taxii_collections()
        .await?
        .iter()
        .filter(|c| can_read(&p, c) || can_write(&p, c))
        .map(|c| collection_json(&p, c))
        .collect();
    Ok(taxii_json(if list.is_empty() {
        json!({})
    } else {
        json!({ "collections": list })
    }))
}

/// The collection, or 404 when it does not exist and 403 when the caller may neither read nor
/// write it.
async fn find(state: &AppState, p: &Principal, id: &str) -> Result<Collection> {
    let c = state
        .store()
        .taxii_collections()
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| {
            TaxiiError::new(
                StatusCode::NOT_FOUND,
                "Collection not found",
                format!("no collection {id}"),
            )
        })?;
    if !can_read(p, &c) && !can_write(p, &c) {
        return Err(TaxiiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "this caller may not access this collection",
        ));
    }
    Ok(c)
}

async fn readable(state: &AppState, p: &Principal, id: &str) -> Result<Collection> {
    let c = find(state, p, id).await?;
    if !can_read(p, &c) {
        return Err(TaxiiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "this caller may not read this collection",
        ));
    }
    Ok(c)
}

async fn collection(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
    Path(id): Path<String>,
) -> Result<Response> {
    let p = caller(&state, &headers, principal).await?;
    let c = find(&state, &p, &id).await?;
    Ok(taxii_json(collection_json(&p, &c)))
}

/// The query parameters TAXII defines, parsed by hand: `match[type]` style keys do not suit
/// serde's derive.
fn object_filter(query: Option<&str>) -> Result<ObjectFilter> {
    let mut f = ObjectFilter {
        limit: 100,
        ..Default::default()
    };
    let bad = |m: String| TaxiiError::new(StatusCode::BAD_REQUEST, "Bad request", m);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| bad(format!("query string: {e}")))?;
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "added_after" => {
                f.added_after = Some(
                    qalxan_intel::pattern::parse_timestamp(&v)
                        .or_else(|| qalxan_core::parse_rfc3339(&v).ok())
                        .ok_or_else(|| bad(format!("added_after: '{v}' is not a timestamp")))?,
                )
            }
            "limit" => {
                f.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|l| *l > 0)
                    .ok_or_else(|| bad(format!("limit: '{v}' is not a positive integer")))?
                    .min(MAX_PAGE)
            }
            "next" => {
                f.after_seq =
                    Some(v.parse().map_err(|_| {
                        bad(format!("next: '{v}' is not a cursor from this server"))
                    })?)
            }
            "match[id]" => f.ids.extend(list(&v)),
            "match[type]" => f.types.extend(list(&v)),
            "match[version]" => f.versions.extend(list(&v)),
            "match[spec_version]" => f.spec_versions.extend(list(&v)),
            other => return Err(bad(format!("unknown parameter '{other}'"))),
        }
    }
    Ok(f)
}

/// A partner never sees above TLP:GREEN, whatever the collection allows.
fn capped(c: &Collection, p: &Principal) -> Collection {
    let mut c = c.clone();
    c.max_tlp = c.max_tlp.min(crate::api::intel::max_tlp(p));
    c
}

fn date_headers(objects: &[StoredObject], mut resp: Response) -> Response {
    if let (Some(first), Some(last)) = (objects.first(), objects.last()) {
        for (name, ts) in [
            ("x-taxii-date-added-first", first.added_at.0),
            ("x-taxii-date-added-last", last.added_at.0),
        ] {
            if let Ok(v) = HeaderValue::from_str(&qalxan_intel::stix::format_time(ts)) {
                resp.headers_mut().insert(name, v);
            }
        }
    }
    resp
}

fn envelope(objects: &[StoredObject], more: bool) -> Value {
    let mut env = json!({ "more": more });
    if more {
        if let Some(last) = objects.last() {
            env["next"] = json!(last.seq.to_string());
        }
    }
    if !objects.is_empty() {
        env["objects"] = Value::Array(objects.iter().map(|o| o.body.clone()).collect());
    }
    env
}

/// The objects of a collection the caller may read, filtered by the request's query and
/// `narrow` (an endpoint's own constraints).
async fn read_objects(
    state: &AppState,
    headers: &HeaderMap,
    principal: Auth,
    id: &str,
    query: Option<&str>,
    narrow: impl FnOnce(&mut ObjectFilter),
) -> Result<(Vec<StoredObject>, bool, ObjectFilter)> {
    let p = caller(state, headers, principal).await?;
    let c = capped(&readable(state, &p, id).await?, &p);
    let mut f = object_filter(query)?;
    narrow(&mut f);
    let (objs, more) = state.store().stix_objects(&c, &f).await?;
    Ok((objs, more, f))
}

fn no_object(object_id: &str) -> TaxiiError {
    TaxiiError::new(
        StatusCode::NOT_FOUND,
        "Object not found",
        format!("no object {object_id} here"),
    )
}

async fn objects(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let (objs, more, _) =
        read_objects(&state, &headers, principal, &id, query.as_deref(), |_| {}).await?;
    Ok(date_headers(&objs, taxii_json(envelope(&objs, more))))
}

async fn object(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
    Path((id, object_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let (objs, more, f) = read_objects(&state, &headers, principal, &id, query.as_deref(), |f| {
        f.ids = vec![object_id.clone()];
    })
    .await?;
    if objs.is_empty() && f.after_seq.is_none() {
        return Err(no_object(&object_id));
    }
    Ok(date_headers(&objs, taxii_json(envelope(&objs, more))))
}

async fn versions(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
    Path((id, object_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let (objs, more, _) = read_objects(&state, &headers, principal, &id, query.as_deref(), |f| {
        f.ids = vec![object_id.clone()];
        f.versions = vec!["all".into()];
    })
    .await?;
    if objs.is_empty() {
        return Err(no_object(&object_id));
    }
    let mut body = json!({"more": more, "versions": objs.iter().map(|o| o.version.clone()).collect::<Vec<_>>()});
    if more {
        body["next"] = json!(objs.last().map(|o| o.seq.to_string()));
    }
    Ok(date_headers(&objs, taxii_json(body)))
}

async fn manifest(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let (objs, more, _) =
        read_objects(&state, &headers, principal, &id, query.as_deref(), |_| {}).await?;
    let records: Vec<Value> = objs
        .iter()
        .map(|o| {
            json!({
                "id": o.stix_id,
                "date_added": qalxan_intel::stix::format_time(o.added_at.0),
                "version": if o.version.is_empty() { qalxan_intel::stix::format_time(o.added_at.0) } else { o.version.clone() },
                "media_type": STIX_MEDIA,
            })
        })
        .collect();
    let mut body = json!({"more": more});
    if more {
        body["next"] = json!(objs.last().map(|o| o.seq.to_string()));
    }
    if !records.is_empty() {
        body["objects"] = Value::Array(records);
    }
    Ok(date_headers(&objs, taxii_json(body)))
}

fn status_json(s: &qalxan_store::TaxiiStatus) -> Value {
    json!({
        "id": s.id,
        "status": "complete",
        "request_timestamp": qalxan_intel::stix::format_time(s.created_at.0),
        "total_count": s.total,
        "success_count": s.success,
        "failure_count": s.failure,
        "pending_count": 0,
        "successes": s.details["successes"],
        "failures": s.details["failures"],
    })
}

async fn add_objects(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response> {
    let p = caller(&state, &headers, principal).await?;
    let c = find(&state, &p, &id).await?;
    if !can_write(&p, &c) {
        return Err(TaxiiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "this caller may not add to this collection",
        ));
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !media
        .to_ascii_lowercase()
        .starts_with("application/taxii+json")
    {
        return Err(TaxiiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!("send an envelope as {TAXII_MEDIA}"),
        ));
    }
    let body = crate::api::upload_body(body, "docs_max_bytes", state.config().docs_max_bytes)?;
    let envelope: Value = serde_json::from_slice(&body).map_err(|e| {
        TaxiiError::new(
            StatusCode::BAD_REQUEST,
            "Bad request",
            format!("the envelope is not JSON: {e}"),
        )
    })?;
    let items = match envelope.get("objects") {
        Some(Value::Array(a)) => a.clone(),
        None => Vec::new(),
        Some(_) => {
            return Err(TaxiiError::new(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "objects: must be a list",
            ))
        }
    };
    let mut good = Vec::new();
    let mut failures = Vec::new();
    for (i, o) in items.into_iter().enumerate() {
        match qalxan_intel::stix::check_object(&o, &format!("objects[{i}]")) {
            Ok(()) => good.push(o),
            Err(e) => failures.push((
                o.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                e.to_string(),
            )),
        }
    }
    let cert_staff = p.role.sees_all_institutions();
    let default_tlp = if cert_staff {
        Tlp::Amber
    } else {
        Tlp::Green.min(c.max_tlp)
    };
    let status_id = uuid::Uuid::new_v4().to_string();
    let status = state
        .store()
        .add_taxii_objects(&p.actor(), &c.id, &good, &failures, default_tlp, &status_id)
        .await?;
    // What arrives becomes intelligence; a partner's does not block until reviewed.
    let source = format!("taxii:{}", p.name);
    if let Ok(mut imp) = qalxan_intel::stix::import_objects(good, &source, default_tlp, "objects") {
        if !cert_staff {
            for i in &mut imp.indicators {
                i.blocking = false;
            }
        }
        if !imp.indicators.is_empty() {
            crate::api::intel::store_indicators(
                &state,
                &p,
                &format!("taxii:{}", c.id),
                &imp.indicators,
                &[],
            )
            .await?;
        }
    }
    let mut resp = taxii_json(status_json(&status));
    *resp.status_mut() = StatusCode::ACCEPTED;
    Ok(resp)
}

async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    principal: Auth,
    Path(status_id): Path<String>,
) -> Result<Response> {
    let p = caller(&state, &headers, principal).await?;
    let (s, _) = state
        .store()
        .taxii_status(&status_id)
        .await?
        .filter(|(_, by)| p.role.sees_all_institutions() || *by == p.actor().name)
        .ok_or_else(|| {
            TaxiiError::new(
                StatusCode::NOT_FOUND,
                "Status not found",
                format!("no status {status_id}"),
            )
        })?;
    Ok(taxii_json(status_json(&s)))
}
