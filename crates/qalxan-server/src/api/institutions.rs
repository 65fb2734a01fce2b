//! `/api/v1/institutions`: the constituency.

use super::{parse_id, ApiJson};
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use qalxan_core::{Institution, InstitutionFields, InstitutionId, Role};
use serde::Deserialize;

/// Roles that may read institutions (an institution's staff only their own).
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::Analyst, Role::Auditor, Role::Institution];
/// Roles that may change them.
pub(crate) const WRITERS: &[Role] = &[Role::Admin, Role::Analyst];

/// Changes to an institution; absent fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct InstitutionPatch {
    pub name: Option<String>,
    pub sector: Option<String>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    pub domains: Option<Vec<String>>,
    pub ip_ranges: Option<Vec<String>>,
    pub notes: Option<String>,
}

impl InstitutionPatch {
    pub(crate) fn apply(self, mut f: InstitutionFields) -> InstitutionFields {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { f.$field = v; })* };
        }
        set!(
            name,
            sector,
            contact_name,
            contact_email,
            contact_phone,
            domains,
            ip_ranges,
            notes
        );
        f
    }
}

/// The institution if the caller may see it; otherwise "not found", so ids cannot be probed.
pub(crate) async fn visible(
    state: &AppState,
    principal: &Principal,
    id: InstitutionId,
) -> Result<Institution, ApiError> {
    principal.require(READERS)?;
    match state.store().get_institution(id).await? {
        Some(inst) if principal.can_see(inst.id) => Ok(inst),
        _ => Err(ApiError::not_found("institution")),
    }
}

/// Institutions the caller may see.
#[utoipa::path(get, operation_id = "list_institutions", path = "/api/v1/institutions", tag = "institutions",
    responses((status = 200, body = Vec<Institution>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<Institution>>, ApiError> {
    principal.require(READERS)?;
    Ok(Json(
        state.store().list_institutions(principal.scope()).await?,
    ))
}

#[utoipa::path(post, operation_id = "create_institution", path = "/api/v1/institutions", tag = "institutions", request_body = InstitutionFields,
    responses((status = 201, body = Institution), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(fields): ApiJson<InstitutionFields>,
) -> Result<(StatusCode, Json<Institution>), ApiError> {
    principal.require(WRITERS)?;
    let created = state
        .store()
        .create_institution(&principal.actor(), fields)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, operation_id = "get_institution", path = "/api/v1/institutions/{id}", tag = "institutions",
    params(("id" = i64, Path, description = "Institution id")),
    responses((status = 200, body = Institution), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Institution>, ApiError> {
    let id = InstitutionId(parse_id(&id, "institution")?);
    Ok(Json(visible(&state, &principal, id).await?))
}

#[utoipa::path(patch, operation_id = "update_institution", path = "/api/v1/institutions/{id}", tag = "institutions", request_body = InstitutionPatch,
    params(("id" = i64, Path, description = "Institution id")),
    responses((status = 200, body = Institution), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<InstitutionPatch>,
) -> Result<Json<Institution>, ApiError> {
    let id = InstitutionId(parse_id(&id, "institution")?);
    let current = visible(&state, &principal, id).await?;
    principal.require(WRITERS)?;
    let fields = patch.apply(current.fields);
    Ok(Json(
        state
            .store()
            .update_institution(&principal.actor(), id, fields)
            .await?,
    ))
}

/// Deletes an institution that has no users, tokens or events.
#[utoipa::path(delete, operation_id = "delete_institution", path = "/api/v1/institutions/{id}", tag = "institutions",
    params(("id" = i64, Path, description = "Institution id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = InstitutionId(parse_id(&id, "institution")?);
    visible(&state, &principal, id).await?;
    principal.require(WRITERS)?;
    state
        .store()
        .delete_institution(&principal.actor(), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
