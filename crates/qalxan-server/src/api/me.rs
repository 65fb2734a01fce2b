//! The caller's own account.

use super::ApiJson;
use crate::auth::{self, Principal};
use crate::error::{ApiError, Problem};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use qalxan_core::{InstitutionId, Role};
use serde::{Deserialize, Serialize};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    /// User name, or the API token's name.
    pub name: String,
    /// `user` or `token`.
    pub kind: &'static str,
    pub role: Role,
    pub institution_id: Option<InstitutionId>,
    /// The session's CSRF token, for browser scripts that call the API; absent for tokens.
    pub csrf_token: Option<String>,
}

/// Who the caller is.
#[utoipa::path(get, operation_id = "get_me", path = "/api/v1/me", tag = "accounts",
    responses((status = 200, body = Me), (status = 401, body = Problem)))]
pub async fn get_me(principal: Principal) -> Json<Me> {
    Json(Me {
        name: principal.name.clone(),
        kind: if principal.user().is_some() {
            "user"
        } else {
            "token"
        },
        role: principal.role,
        institution_id: principal.institution,
        csrf_token: principal.session().map(|s| s.csrf_token.clone()),
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Changes the caller's password; other sessions of the account end.
#[utoipa::path(post, operation_id = "change_own_password", path = "/api/v1/me/password", tag = "accounts", request_body = PasswordChange,
    responses((status = 204), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    change_own_password(&state, &principal, body.current_password, body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Shared by the API and the account page.
pub(crate) async fn change_own_password(
    state: &AppState,
    principal: &Principal,
    current: String,
    new: String,
) -> Result<(), ApiError> {
    let (Some(user), Some(session)) = (principal.user(), principal.session()) else {
        return Err(ApiError::forbidden("API tokens have no password"));
    };
    let (_, hash) = state
        .store()
        .user_credentials(&user.username)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if !auth::verify_password_blocking(current, Some(hash)).await {
        return Err(ApiError::invalid(
            "current_password",
            "is not the account's password",
        ));
    }
    auth::check_password_policy(&new, &user.username)?;
    let new_hash = auth::hash_password_blocking(new).await?;
    state
        .store()
        .set_password(&principal.actor(), user.id, &new_hash, Some(session.id))
        .await?;
    Ok(())
}
