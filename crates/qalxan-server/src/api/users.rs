//! `/api/v1/users`: accounts, managed by admins.

use super::{parse_id, ApiJson};
use crate::auth::{self, Principal};
use crate::error::{ApiError, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use qalxan_core::{InstitutionId, Role};
use qalxan_store::{NewUser, User, UserUpdate};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub username: String,
    pub role: Role,
    /// Required for role `institution`, refused for the others.
    pub institution_id: Option<InstitutionId>,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub email: String,
    /// Left out, a random password is generated and returned once.
    pub password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserCreated {
    pub user: User,
    /// The generated password, shown only in this response.
    pub password: Option<String>,
}

/// Changes to an account; absent fields stay as they are. `institution_id: null` removes it.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub institution_id: Option<Option<InstitutionId>>,
    pub disabled: Option<bool>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// Left out, a random password is generated and returned once.
    pub password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PasswordResetDone {
    pub password: Option<String>,
}

/// Creates an account; shared by the API, the users page and the CLI.
pub(crate) async fn create_account(
    state: &AppState,
    principal: &Principal,
    body: UserCreate,
) -> Result<UserCreated, ApiError> {
    principal.require(&[Role::Admin])?;
    let (password, generated) = match body.password {
        Some(p) if !p.is_empty() => (p, false),
        _ => (auth::generate_password_for(&body.username), true),
    };
    auth::check_password_policy(&password, &body.username)?;
    let password_hash = auth::hash_password_blocking(password.clone()).await?;
    let user = state
        .store()
        .create_user(
            &principal.actor(),
            NewUser {
                username: body.username,
                display_name: body.display_name,
                email: body.email,
                role: body.role,
                institution_id: body.institution_id,
                password_hash,
            },
        )
        .await?;
    Ok(UserCreated {
        user,
        password: generated.then_some(password),
    })
}

pub(crate) async fn reset_account_password(
    state: &AppState,
    principal: &Principal,
    id: i64,
    password: Option<String>,
) -> Result<Option<String>, ApiError> {
    principal.require(&[Role::Admin])?;
    let user = state
        .store()
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let (password, generated) = match password {
        Some(p) if !p.is_empty() => (p, false),
        _ => (auth::generate_password_for(&user.username), true),
    };
    auth::check_password_policy(&password, &user.username)?;
    let hash = auth::hash_password_blocking(password.clone()).await?;
    state
        .store()
        .set_password(&principal.actor(), user.id, &hash, None)
        .await?;
    Ok(generated.then_some(password))
}

#[utoipa::path(get, operation_id = "list_users", path = "/api/v1/users", tag = "accounts",
    responses((status = 200, body = Vec<User>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<User>>, ApiError> {
    principal.require(&[Role::Admin, Role::Auditor])?;
    Ok(Json(state.store().list_users().await?))
}

#[utoipa::path(post, operation_id = "create_user", path = "/api/v1/users", tag = "accounts", request_body = UserCreate,
    responses((status = 201, body = UserCreated), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<UserCreate>,
) -> Result<(StatusCode, Json<UserCreated>), ApiError> {
    let created = create_account(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, operation_id = "get_user", path = "/api/v1/users/{id}", tag = "accounts",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = User), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    principal.require(&[Role::Admin, Role::Auditor])?;
    let id = parse_id(&id, "user")?;
    let user = state
        .store()
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(user))
}

#[utoipa::path(patch, operation_id = "update_user", path = "/api/v1/users/{id}", tag = "accounts", request_body = UserPatch,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = User), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<User>, ApiError> {
    principal.require(&[Role::Admin])?;
    let id = parse_id(&id, "user")?;
    let update = UserUpdate {
        display_name: patch.display_name,
        email: patch.email,
        role: patch.role,
        institution_id: patch.institution_id,
        disabled: patch.disabled,
    };
    Ok(Json(
        state
            .store()
            .update_user(&principal.actor(), id, update)
            .await?,
    ))
}

/// Sets a new password for an account and ends its sessions.
#[utoipa::path(post, operation_id = "reset_user_password", path = "/api/v1/users/{id}/password", tag = "accounts", request_body = PasswordReset,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = PasswordResetDone), (status = 404, body = Problem)))]
pub async fn reset_password(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PasswordReset>,
) -> Result<Json<PasswordResetDone>, ApiError> {
    let id = parse_id(&id, "user")?;
    let password = reset_account_password(&state, &principal, id, body.password).await?;
    Ok(Json(PasswordResetDone { password }))
}
