//! `/api/v1/audit`: the audit trail, read-only.

use super::{page_limit, ApiQuery, Page};
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use qalxan_core::Role;
use qalxan_store::{AuditEntry, AuditFilter};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// e.g. `institution`, `user`, `api_token`, `session`.
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// e.g. `user:alice`, `token:gateway-1`.
    pub actor: Option<String>,
    /// Entries older than this id (from `next_before`).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

impl AuditQuery {
    pub(crate) fn filter(self) -> AuditFilter {
        AuditFilter {
            object_type: self.object_type.filter(|s| !s.is_empty()),
            object_id: self.object_id.filter(|s| !s.is_empty()),
            actor: self.actor.filter(|s| !s.is_empty()),
            before_id: self.before,
            limit: page_limit(self.limit),
        }
    }
}

/// Audit entries, newest first.
#[utoipa::path(get, operation_id = "list_audit", path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    principal.require(&[Role::Admin, Role::Auditor])?;
    let filter = query.filter();
    let entries = state.store().list_audit(&filter).await?;
    Ok(Json(Page::new(entries, filter.limit, |e| e.id)))
}
