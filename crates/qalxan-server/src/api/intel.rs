//! `/api/v1/intel`: indicators of attack. Search, create, import (STIX, MISP, CSV, plain lists,
//! with a preview), match a value, export, sightings from the sensors, and the blocklist the
//! gateway and scanners pull (`/intel/lists`, with an ETag).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qalxan_core::{Role, Tlp};
use qalxan_intel::{Indicator, Kind, Observable};
use qalxan_store::{
    ImportSummary, IndicatorFilter, IndicatorRecord, SightingRecord, CERT_COLLECTION,
};
use serde::{Deserialize, Serialize};

use super::{ApiJson, Page};
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::AppState;

/// CERT staff change intelligence.
const EDITORS: &[Role] = &[Role::Admin, Role::Analyst];
/// Who reads it: CERT staff, machines, and institutions (up to TLP:GREEN).
const READERS: &[Role] = &[
    Role::Admin,
    Role::Analyst,
    Role::Auditor,
    Role::Sensor,
    Role::Institution,
];

/// The most sensitive TLP a caller may read: institutions and partners get what the CERT may
/// share with its community, TLP:GREEN.
pub(crate) fn max_tlp(p: &Principal) -> Tlp {
    if p.role.sees_all_institutions() || p.role == Role::Sensor {
        Tlp::Red
    } else {
        Tlp::Green
    }
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Part of the value.
    pub q: Option<String>,
    /// Indicator type: ipv4, ipv6, cidr, domain, url, email, md5, sha1, sha256, filename, phone,
    /// card-bin, messenger, yara, stix-pattern.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub tag: Option<String>,
    pub source: Option<String>,
    /// Only up to this TLP.
    pub tlp: Option<String>,
    pub blocking: Option<bool>,
    /// The cursor from the previous page's `next_before`.
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

impl SearchQuery {
    pub(crate) fn filter(&self, caller_max: Tlp) -> Result<IndicatorFilter, ApiError> {
        let kind = self
            .kind
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(|k| {
                k.parse::<Kind>()
                    .map_err(|e| ApiError::invalid("type", e.reason))
            })
            .transpose()?;
        let tlp = self
            .tlp
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| Tlp::parse_lenient(t).map_err(|e| ApiError::invalid("tlp", e.to_string())))
            .transpose()?;
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        Ok(IndicatorFilter {
            q: nonempty(&self.q),
            kind,
            tag: nonempty(&self.tag),
            source: nonempty(&self.source),
            max_tlp: Some(tlp.map_or(caller_max, |t| t.min(caller_max))),
            blocking: self.blocking,
            before_id: self.before,
            limit: super::page_limit(self.limit),
        })
    }
}

/// Searches indicators, newest first.
#[utoipa::path(get, operation_id = "list_indicators", path = "/api/v1/intel/indicators", tag = "intel",
    params(SearchQuery), responses((status = 200, body = Page<IndicatorRecord>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    super::ApiQuery(query): super::ApiQuery<SearchQuery>,
) -> Result<Json<Page<IndicatorRecord>>, ApiError> {
    principal.require(READERS)?;
    let filter = query.filter(max_tlp(&principal))?;
    let items = state.store().list_indicators(&filter).await?;
    Ok(Json(Page::new(items, filter.limit, |i| i.id)))
}

/// One indicator to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IndicatorCreate {
    /// The indicator type; guessed from the value when absent.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: String,
    /// TLP:CLEAR, TLP:GREEN, TLP:AMBER (default), TLP:AMBER+STRICT or TLP:RED.
    pub tlp: Option<String>,
    /// 0 to 100 (default 50).
    pub confidence: Option<u8>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// RFC 3339; after it the indicator stops blocking.
    pub valid_until: Option<String>,
    /// Block even a value on a warninglist.
    #[serde(default)]
    pub force: bool,
}

/// An indicator with its sightings.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IndicatorDetail {
    pub indicator: IndicatorRecord,
    pub sightings: Vec<SightingRecord>,
    /// The incidents whose observables include this value (those the caller may see).
    pub incidents: Vec<LinkedIncident>,
}

/// An incident an indicator is linked to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LinkedIncident {
    pub id: i64,
    pub title: String,
}

pub(crate) async fn linked_incidents(
    state: &AppState,
    principal: &Principal,
    indicator: i64,
) -> Result<Vec<LinkedIncident>, ApiError> {
    Ok(state
        .store()
        .incidents_for_indicator(indicator, principal.scope())
        .await?
        .into_iter()
        .map(|(id, title)| LinkedIncident { id, title })
        .collect())
}

pub(crate) fn observable_of(
    kind: Option<&str>,
    value: &str,
    field: &str,
) -> Result<Observable, ApiError> {
    match kind.filter(|k| !k.is_empty()) {
        Some(k) => {
            let kind: Kind = k
                .parse()
                .map_err(|e: qalxan_intel::ObservableError| ApiError::invalid("type", e.reason))?;
            Observable::new(kind, value).map_err(|e| ApiError::invalid(field, e.to_string()))
        }
        None => Observable::guess(value).map_err(|e| ApiError::invalid(field, e.to_string())),
    }
}

/// Adds one indicator (merged with an existing one of the same value).
#[utoipa::path(post, operation_id = "create_indicator", path = "/api/v1/intel/indicators", tag = "intel",
    request_body = IndicatorCreate,
    responses((status = 201, body = IndicatorDetail), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<IndicatorCreate>,
) -> Result<(StatusCode, Json<IndicatorDetail>), ApiError> {
    principal.require(EDITORS)?;
    let record = create_one(&state, &principal, body).await?;
    let (indicator, sightings) = state
        .store()
        .get_indicator(record)
        .await?
        .ok_or_else(|| ApiError::not_found("indicator"))?;
    Ok((
        StatusCode::CREATED,
        Json(IndicatorDetail {
            incidents: linked_incidents(&state, &principal, indicator.id).await?,
            indicator,
            sightings,
        }),
    ))
}

pub(crate) async fn create_one(
    state: &AppState,
    principal: &Principal,
    body: IndicatorCreate,
) -> Result<i64, ApiError> {
    let ob = observable_of(body.kind.as_deref(), &body.value, "value")?;
    let mut ind = Indicator::new(ob.clone(), &principal.actor().name);
    if let Some(t) = body.tlp.as_deref().filter(|t| !t.is_empty()) {
        ind.tlp = Tlp::parse_lenient(t).map_err(|e| ApiError::invalid("tlp", e.to_string()))?;
    }
    if let Some(c) = body.confidence {
        if c > 100 {
            return Err(ApiError::invalid("confidence", "0 to 100"));
        }
        ind.confidence = c;
    }
    ind.tags = body
        .tags
        .into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    ind.description = body.description;
    if let Some(v) = body.valid_until.as_deref().filter(|v| !v.is_empty()) {
        ind.valid_until = Some(
            qalxan_core::parse_rfc3339(v)
                .map_err(|e| ApiError::invalid("valid_until", e.to_string()))?,
        );
    }
    if body.force && ob.kind.is_blockable() {
        ind.blocking = true;
    }
    store_indicators(state, principal, "api", &[ind], &[]).await?;
    let found = state.store().match_indicator(&ob).await?;
    found
        .iter()
        .find(|r| r.kind == ob.kind && r.value == ob.value)
        .map(|r| r.id)
        .ok_or_else(|| ApiError::internal(&"the indicator was not stored"))
}

/// Stores indicators in the CERT's collection (the store records the dashboard's event).
pub(crate) async fn store_indicators(
    state: &AppState,
    principal: &Principal,
    label: &str,
    indicators: &[Indicator],
    objects: &[serde_json::Value],
) -> Result<ImportSummary, ApiError> {
    Ok(state
        .store()
        .import_intel(
            &principal.actor(),
            label,
            indicators,
            objects,
            CERT_COLLECTION,
        )
        .await?)
}

/// One indicator with the sensors that saw it.
#[utoipa::path(get, operation_id = "get_indicator", path = "/api/v1/intel/indicators/{id}", tag = "intel",
    params(("id" = i64, Path)), responses((status = 200, body = IndicatorDetail), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<IndicatorDetail>, ApiError> {
    principal.require(READERS)?;
    let id = super::parse_id(&id, "indicator")?;
    let (indicator, sightings) = state
        .store()
        .get_indicator(id)
        .await?
        .filter(|(i, _)| i.tlp <= max_tlp(&principal))
        .ok_or_else(|| ApiError::not_found("indicator"))?;
    Ok(Json(IndicatorDetail {
        incidents: linked_incidents(&state, &principal, indicator.id).await?,
        indicator,
        sightings,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IndicatorUpdate {
    /// Enforce it (true forces a warninglisted value) or stop enforcing it.
    pub blocking: Option<bool>,
    pub tlp: Option<String>,
    /// RFC 3339, or null to never expire.
    #[serde(default, with = "serde_with_double_option")]
    #[schema(value_type = Option<String>)]
    pub valid_until: Option<Option<String>>,
}

mod serde_with_double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Ok(Some(Option::<String>::deserialize(d)?))
    }
}

/// Changes whether an indicator blocks, its TLP or its expiry.
#[utoipa::path(patch, operation_id = "update_indicator", path = "/api/v1/intel/indicators/{id}", tag = "intel",
    params(("id" = i64, Path)), request_body = IndicatorUpdate,
    responses((status = 200, body = IndicatorRecord), (status = 404, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<IndicatorUpdate>,
) -> Result<Json<IndicatorRecord>, ApiError> {
    principal.require(EDITORS)?;
    let id = super::parse_id(&id, "indicator")?;
    let tlp = body
        .tlp
        .as_deref()
        .map(|t| Tlp::parse_lenient(t).map_err(|e| ApiError::invalid("tlp", e.to_string())))
        .transpose()?;
    let until = match body.valid_until {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => {
            Some(Some(qalxan_core::parse_rfc3339(&v).map_err(|e| {
                ApiError::invalid("valid_until", e.to_string())
            })?))
        }
    };
    let record = state
        .store()
        .update_indicator(&principal.actor(), id, body.blocking, tlp, until)
        .await?;
    Ok(Json(record))
}

/// Deletes an indicator.
#[utoipa::path(delete, operation_id = "delete_indicator", path = "/api/v1/intel/indicators/{id}", tag = "intel",
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(EDITORS)?;
    let id = super::parse_id(&id, "indicator")?;
    state
        .store()
        .delete_indicator(&principal.actor(), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Who the indicators are from (default: the file's own identities/organisations, else the caller).
    pub source: Option<String>,
    /// TLP for indicators the file does not mark (default TLP:AMBER).
    pub tlp: Option<String>,
    /// Only say what would change; store nothing.
    #[serde(default)]
    pub preview: bool,
    /// A name for the audit trail (the file's name).
    pub name: Option<String>,
}

/// What an import did, or (with `preview`) would do.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub preview: bool,
    /// Indicators read from the file.
    pub read: u64,
    /// New values.
    pub added: u64,
    /// Values already known, merged.
    pub updated: u64,
    /// STIX objects stored for TAXII.
    pub objects: u64,
    /// Of the values read, how many will block (not warninglisted, enforceable).
    pub blocking: u64,
    /// Values on a warninglist (kept, not blocking).
    pub warninglisted: u64,
    /// What was not imported and why, with its place in the file.
    pub skipped: Vec<String>,
    /// The first indicators read, for the preview.
    #[schema(value_type = Vec<Object>)]
    pub sample: Vec<Indicator>,
}

pub(crate) async fn import_bytes(
    state: &AppState,
    principal: &Principal,
    data: &[u8],
    query: &ImportQuery,
) -> Result<ImportReport, ApiError> {
    principal.require(EDITORS)?;
    let tlp = match query.tlp.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Tlp::parse_lenient(t).map_err(|e| ApiError::invalid("tlp", e.to_string()))?,
        None => Tlp::Amber,
    };
    let source = query
        .source
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| principal.actor().name);
    let data = data.to_vec();
    let parsed = tokio::task::spawn_blocking(move || qalxan_intel::import_any(&data, &source, tlp))
        .await
        .map_err(|_| ApiError::unavailable("the import did not complete"))?
        .map_err(|e| ApiError::invalid(e.location.clone(), e.message.clone()))?;
    let blocking = parsed.indicators.iter().filter(|i| i.blocking).count() as u64;
    let warninglisted = parsed
        .indicators
        .iter()
        .filter(|i| i.warninglist.is_some())
        .count() as u64;
    let mut report = ImportReport {
        preview: query.preview,
        read: parsed.indicators.len() as u64,
        added: 0,
        updated: 0,
        objects: parsed.objects.len() as u64,
        blocking,
        warninglisted,
        skipped: parsed.skipped.iter().take(1000).cloned().collect(),
        sample: parsed.indicators.iter().take(50).cloned().collect(),
    };
    if query.preview {
        let pairs: Vec<(Kind, String)> = parsed
            .indicators
            .iter()
            .map(|i| (i.kind, i.value.clone()))
            .collect();
        let existing = state.store().existing_indicators(&pairs).await?;
        let mut distinct = pairs.clone();
        distinct.sort();
        distinct.dedup();
        report.updated = distinct.iter().filter(|p| existing.contains(*p)).count() as u64;
        report.added = distinct.len() as u64 - report.updated;
        return Ok(report);
    }
    let label = query.name.clone().unwrap_or_else(|| "upload".to_owned());
    let summary = store_indicators(
        state,
        principal,
        &label,
        &parsed.indicators,
        &parsed.objects,
    )
    .await?;
    report.added = summary.added;
    report.updated = summary.updated;
    report.objects = summary.objects;
    Ok(report)
}

/// Imports a STIX 2.1 bundle, MISP event(s), CSV (type,value,...) or a plain list (one value per
/// line); the format is detected from the content.
#[utoipa::path(post, operation_id = "import_indicators", path = "/api/v1/intel/import", tag = "intel",
    params(ImportQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ImportReport), (status = 422, body = Problem)))]
pub async fn import(
    State(state): State<AppState>,
    principal: Principal,
    super::ApiQuery(query): super::ApiQuery<ImportQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    let body = super::upload_body(body, "docs_max_bytes", state.config().docs_max_bytes)?;
    Ok(Json(import_bytes(&state, &principal, &body, &query).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MatchQuery {
    pub value: String,
    /// Guessed when absent.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MatchResult {
    #[serde(rename = "type")]
    pub kind: String,
    /// The value as stored (normalised).
    pub value: String,
    /// Whether the defences block it.
    pub blocked: bool,
    pub warninglist: Option<String>,
    /// Indicators that match it exactly or cover it (a range, a parent domain).
    pub matches: Vec<IndicatorRecord>,
}

pub(crate) async fn match_value(
    state: &AppState,
    principal: &Principal,
    kind: Option<&str>,
    value: &str,
) -> Result<MatchResult, ApiError> {
    let ob = observable_of(kind, value, "value")?;
    let cap = max_tlp(principal);
    let matches: Vec<IndicatorRecord> = state
        .store()
        .match_indicator(&ob)
        .await?
        .into_iter()
        .filter(|m| m.tlp <= cap)
        .collect();
    let now = qalxan_core::now_millis();
    Ok(MatchResult {
        kind: ob.kind.as_str().to_owned(),
        blocked: matches
            .iter()
            .any(|m| m.blocking && m.valid_until.is_none_or(|u| u.0 > now)),
        warninglist: qalxan_intel::warninglist::check(&ob).map(str::to_owned),
        value: ob.value,
        matches,
    })
}

/// Whether a value is a known indicator (exactly, or inside a listed range or domain).
#[utoipa::path(get, operation_id = "match_indicator", path = "/api/v1/intel/match", tag = "intel",
    params(MatchQuery), responses((status = 200, body = MatchResult), (status = 422, body = Problem)))]
pub async fn matcher(
    State(state): State<AppState>,
    principal: Principal,
    super::ApiQuery(query): super::ApiQuery<MatchQuery>,
) -> Result<Json<MatchResult>, ApiError> {
    principal.require(READERS)?;
    Ok(Json(
        match_value(&state, &principal, query.kind.as_deref(), &query.value).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `stix` (default), `misp` or `csv`.
    pub format: Option<String>,
    /// Only up to this TLP (default: all the caller may see).
    pub tlp: Option<String>,
}

/// All indicators up to a TLP as a STIX 2.1 bundle, a MISP event or CSV.
#[utoipa::path(get, operation_id = "export_indicators", path = "/api/v1/intel/export", tag = "intel",
    params(ExportQuery), responses((status = 200, content_type = "application/json"), (status = 422, body = Problem)))]
pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    super::ApiQuery(query): super::ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    principal.require(READERS)?;
    let (content_type, body) = export_text(
        state.store(),
        max_tlp(&principal),
        query.format.as_deref(),
        query.tlp.as_deref(),
    )
    .await?;
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// All indicators up to `caller_max` (and `tlp`, when given) in `format`: its media type and text.
pub async fn export_text(
    store: &qalxan_store::Store,
    caller_max: Tlp,
    format: Option<&str>,
    tlp: Option<&str>,
) -> Result<(&'static str, String), ApiError> {
    let cap = match tlp.filter(|t| !t.is_empty()) {
        Some(t) => Tlp::parse_lenient(t)
            .map_err(|e| ApiError::invalid("tlp", e.to_string()))?
            .min(caller_max),
        None => caller_max,
    };
    let mut records = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_indicators(&IndicatorFilter {
                max_tlp: Some(cap),
                before_id: before,
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        let done = page.len() < 10_000;
        before = page.last().map(|r| r.id);
        records.extend(page);
        if done {
            break;
        }
    }
    records.reverse();
    let indicators: Vec<Indicator> = records.iter().map(IndicatorRecord::to_indicator).collect();
    let now = qalxan_core::now_millis();
    match format.unwrap_or("stix") {
        "stix" => {
            // The CERT's collection holds every object as received plus one generated for each
            // indicator that came without one: exporting it keeps relationships, reports and
            // the partners' own ids.
            let mut collection = store
                .taxii_collections()
                .await?
                .into_iter()
                .find(|c| c.id == CERT_COLLECTION)
                .ok_or_else(|| ApiError::not_found("CERT collection"))?;
            collection.max_tlp = cap;
            let mut objects = Vec::new();
            let mut after = None;
            loop {
                let filter = qalxan_store::ObjectFilter {
                    after_seq: after,
                    limit: 10_000,
                    ..Default::default()
                };
                let (page, more) = store.stix_objects(&collection, &filter).await?;
                after = page.last().map(|o| o.seq);
                objects.extend(page.into_iter().map(|o| o.body));
                if !more {
                    break;
                }
            }
            let bundle = qalxan_intel::stix::bundle(objects);
            Ok((
                "application/stix+json;version=2.1",
                serde_json::to_string_pretty(&bundle).unwrap_or_default(),
            ))
        }
        "misp" => {
            let event = qalxan_intel::misp::export(
                &indicators,
                "Qalxan CERT indicators",
                "Qalxan CERT",
                now,
            );
            Ok((
                "application/json",
                serde_json::to_string_pretty(&event).unwrap_or_default(),
            ))
        }
        "csv" => Ok((
            "text/csv; charset=utf-8",
            qalxan_intel::lists::export_csv(&indicators),
        )),
        other => Err(ApiError::invalid(
            "format",
            format!("'{other}': expected stix, misp or csv"),
        )),
    }
}

/// The blocklist the gateway and scanners enforce: `kind value` per line. Send the ETag back in
/// `If-None-Match`; the answer is 304 until the list changes.
#[utoipa::path(get, operation_id = "intel_lists", path = "/api/v1/intel/lists", tag = "intel",
    responses((status = 200, content_type = "text/plain"), (status = 304)))]
pub async fn lists(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin, Role::Analyst, Role::Auditor, Role::Sensor])?;
    let (version, items) = state.store().blocklist().await?;
    let etag = format!("\"{version}\"");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let text = qalxan_intel::compiled::Lists::to_text(&items, &version);
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::ETAG, etag),
        ],
        text,
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SightingCreate {
    pub value: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// How many times (default 1).
    pub count: Option<i64>,
    pub institution_id: Option<qalxan_core::InstitutionId>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SightingResult {
    /// The indicator the sighting was counted on; null when the value is no indicator.
    pub indicator_id: Option<i64>,
}

/// A sensor (gateway, scanner, mail) reports that it saw a value.
#[utoipa::path(post, operation_id = "report_sighting", path = "/api/v1/intel/sightings", tag = "intel",
    request_body = SightingCreate, responses((status = 200, body = SightingResult), (status = 422, body = Problem)))]
pub async fn sighting(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<SightingCreate>,
) -> Result<Json<SightingResult>, ApiError> {
    principal.require(&[Role::Admin, Role::Analyst, Role::Sensor])?;
    let ob = observable_of(body.kind.as_deref(), &body.value, "value")?;
    let institution = super::upload_institution(&principal, body.institution_id, "reports")?;
    let id = state
        .store()
        .record_sighting(
            &principal.actor(),
            &ob,
            institution,
            body.count.unwrap_or(1),
        )
        .await?;
    Ok(Json(SightingResult { indicator_id: id }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternCheck {
    pub pattern: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PatternVerdict {
    pub valid: bool,
    /// 1-based column of the error.
    pub column: Option<usize>,
    pub error: Option<String>,
    /// The values the pattern reduces to, when it is simple enough to block on.
    #[schema(value_type = Vec<Object>)]
    pub observables: Option<Vec<Observable>>,
}

/// Checks a STIX 2.1 pattern.
#[utoipa::path(post, operation_id = "check_pattern", path = "/api/v1/intel/pattern-check", tag = "intel",
    request_body = PatternCheck, responses((status = 200, body = PatternVerdict)))]
pub async fn pattern_check(
    principal: Principal,
    ApiJson(body): ApiJson<PatternCheck>,
) -> Result<Json<PatternVerdict>, ApiError> {
    principal.require(READERS)?;
    Ok(Json(match qalxan_intel::Pattern::parse(&body.pattern) {
        Ok(p) => PatternVerdict {
            valid: true,
            column: None,
            error: None,
            observables: p.observables(),
        },
        Err(e) => PatternVerdict {
            valid: false,
            column: Some(e.column),
            error: Some(e.message),
            observables: None,
        },
    }))
}

/// A TAXII collection to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionCreate {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// `cert` (CERT staff only), `all` (every partner) or `institution` (one partner).
    pub audience: String,
    /// The partner, for audience `institution`.
    pub institution_id: Option<qalxan_core::InstitutionId>,
    /// The most sensitive TLP the collection may hold or show (default TLP:GREEN).
    pub max_tlp: Option<String>,
    /// Show another collection's objects (read-only) up to `max_tlp`.
    pub view_of: Option<String>,
}

/// The TAXII collections.
#[utoipa::path(get, operation_id = "list_collections", path = "/api/v1/intel/collections", tag = "intel",
    responses((status = 200, body = Vec<qalxan_store::Collection>), (status = 403, body = Problem)))]
pub async fn collections(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<qalxan_store::Collection>>, ApiError> {
    principal.require(&[Role::Admin, Role::Analyst, Role::Auditor])?;
    Ok(Json(state.store().taxii_collections().await?))
}

/// Adds a TAXII collection: a partner's exchange collection, or a TLP-capped view.
#[utoipa::path(post, operation_id = "create_collection", path = "/api/v1/intel/collections", tag = "intel",
    request_body = CollectionCreate,
    responses((status = 201, body = qalxan_store::Collection), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create_collection(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CollectionCreate>,
) -> Result<(StatusCode, Json<qalxan_store::Collection>), ApiError> {
    principal.require(&[Role::Admin])?;
    if body.title.trim().is_empty() {
        return Err(ApiError::invalid("title", "empty"));
    }
    if !matches!(body.audience.as_str(), "cert" | "all" | "institution") {
        return Err(ApiError::invalid(
            "audience",
            "expected cert, all or institution",
        ));
    }
    if (body.audience == "institution") != body.institution_id.is_some() {
        return Err(ApiError::invalid(
            "institution_id",
            "required for audience institution, and only then",
        ));
    }
    if let Some(id) = body.institution_id {
        state
            .store()
            .get_institution(id)
            .await?
            .ok_or_else(|| ApiError::invalid("institution_id", "no such institution"))?;
    }
    let max_tlp = match body.max_tlp.as_deref() {
        Some(t) => {
            Tlp::parse_lenient(t).map_err(|e| ApiError::invalid("max_tlp", e.to_string()))?
        }
        None => Tlp::Green,
    };
    let existing = state.store().taxii_collections().await?;
    if let Some(v) = &body.view_of {
        if !existing.iter().any(|c| &c.id == v) {
            return Err(ApiError::invalid("view_of", "no such collection"));
        }
    }
    let c = qalxan_store::Collection {
        id: uuid::Uuid::new_v4().to_string(),
        title: body.title.trim().to_owned(),
        description: body.description,
        audience: body.audience,
        institution_id: body.institution_id,
        max_tlp,
        view_of: body.view_of,
    };
    state
        .store()
        .create_collection(&principal.actor(), &c)
        .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// The configured feeds and what their last pulls did.
#[utoipa::path(get, operation_id = "intel_feeds", path = "/api/v1/intel/feeds", tag = "intel",
    responses((status = 200, body = Vec<crate::feeds::FeedStatus>), (status = 403, body = Problem)))]
pub async fn feeds(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<crate::feeds::FeedStatus>>, ApiError> {
    principal.require(&[Role::Admin, Role::Analyst, Role::Auditor])?;
    Ok(Json(state.feed_statuses()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MailQuery {
    /// The institution that received the message (a caller of an institution reports only
    /// for its own).
    pub institution_id: Option<qalxan_core::InstitutionId>,
}

use crate::mail::CheckError;
pub use crate::mail::{MailCheck, MailObservable};

/// Who may hand over a message: the CERT, mail gateways, and an institution's staff
/// reporting what reached them.
pub(crate) const MAIL_SENDERS: &[Role] =
    &[Role::Admin, Role::Analyst, Role::Sensor, Role::Institution];

/// A mail gateway or an abuse mailbox hands over a message (RFC 5322, as received): its
/// senders, relays, links and attachments are matched against the indicators, and every match
/// is counted as a sighting by the caller.
#[utoipa::path(post, operation_id = "check_mail", path = "/api/v1/intel/mail", tag = "intel",
    params(MailQuery),
    request_body(content = Vec<u8>, content_type = "message/rfc822"),
    responses((status = 200, body = MailCheck), (status = 403, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn mail(
    State(state): State<AppState>,
    principal: Principal,
    super::ApiQuery(query): super::ApiQuery<MailQuery>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<MailCheck>, ApiError> {
    principal.require(MAIL_SENDERS)?;
    let body = super::upload_body(body, "docs_max_bytes", state.config().docs_max_bytes)?;
    let institution = super::upload_institution(&principal, query.institution_id, "reports")?;
    Ok(Json(
        check_mail(&state, &principal, institution, body).await?,
    ))
}

/// A message's observables matched and counted as sightings (the API and the page).
pub(crate) async fn check_mail(
    state: &AppState,
    principal: &Principal,
    institution: Option<qalxan_core::InstitutionId>,
    body: axum::body::Bytes,
) -> Result<MailCheck, ApiError> {
    let limits = qalxan_mail::Limits {
        max_bytes: state.config().docs_max_bytes,
        ..qalxan_mail::Limits::default()
    };
    crate::mail::check(
        state.store(),
        &principal.actor(),
        body.to_vec(),
        limits,
        institution,
        max_tlp(principal),
    )
    .await
    .map_err(|e| match e {
        CheckError::Mail(e @ qalxan_mail::MailError::TooLarge { .. }) => {
            ApiError::payload_too_large(e.to_string())
        }
        CheckError::Mail(e @ qalxan_mail::MailError::NotMail) => {
            ApiError::invalid("body", e.to_string())
        }
        CheckError::Store(e) => e.into(),
        CheckError::Task(e) => ApiError::internal(&e),
    })
}
