//! `/api/v1/tokens`: API tokens for agents, gateways and scripts.

use super::{parse_id, ApiJson};
use crate::auth::{self, Principal};
use crate::error::{ApiError, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use qalxan_core::{InstitutionId, Role, Timestamp};
use qalxan_store::{Actor, ApiToken, NewToken, Store};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    pub name: String,
    pub role: Role,
    /// Confines the token to one institution's data.
    pub institution_id: Option<InstitutionId>,
    pub expires_at: Option<Timestamp>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenCreated {
    pub token: ApiToken,
    /// The secret, shown only in this response: send it as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// Mints a token and stores its hash; shared by the API, the tokens page and the CLI.
pub async fn issue_token(
    store: &Store,
    actor: &Actor,
    body: TokenCreate,
) -> Result<TokenCreated, ApiError> {
    let minted = auth::mint_token();
    let token = store
        .create_token(
            actor,
            NewToken {
                name: body.name,
                role: body.role,
                institution_id: body.institution_id,
                expires_at: body.expires_at.map(|t| t.0),
                token_hash: minted.hash,
                prefix: minted.prefix,
            },
        )
        .await?;
    Ok(TokenCreated {
        token,
        secret: minted.secret,
    })
}

#[utoipa::path(get, operation_id = "list_tokens", path = "/api/v1/tokens", tag = "accounts",
    responses((status = 200, body = Vec<ApiToken>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    principal.require(&[Role::Admin, Role::Auditor])?;
    Ok(Json(state.store().list_tokens().await?))
}

#[utoipa::path(post, operation_id = "create_token", path = "/api/v1/tokens", tag = "accounts", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<TokenCreate>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    principal.require(&[Role::Admin])?;
    let created = issue_token(state.store(), &principal.actor(), body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes a token; it stops working at once.
#[utoipa::path(delete, operation_id = "revoke_token", path = "/api/v1/tokens/{id}", tag = "accounts",
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, body = ApiToken), (status = 404, body = Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<ApiToken>, ApiError> {
    principal.require(&[Role::Admin])?;
    let id = parse_id(&id, "API token")?;
    Ok(Json(
        state.store().revoke_token(&principal.actor(), id).await?,
    ))
}
