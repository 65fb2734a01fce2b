//! `/api/v1/webhooks` (admins) and `/api/v1/me/notifications` (each person's e-mail
//! settings): who hears about new incidents and SLA breaches (see `crate::notify`).

use super::{parse_id, ApiJson};
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use qalxan_core::{Role, Severity};
use qalxan_store::{NotificationSettings, Webhook};
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookCreate {
    pub url: String,
    /// The HMAC-SHA256 key; each delivery carries `X-Qalxan-Signature: sha256=<hex>` over the
    /// body. At least 16 characters.
    pub secret: String,
    /// Incidents at least this severe (default high).
    pub min_severity: Option<Severity>,
}

/// Webhooks that receive new incidents and SLA breaches.
#[utoipa::path(get, operation_id = "list_webhooks", path = "/api/v1/webhooks", tag = "incidents",
    responses((status = 200, body = Vec<Webhook>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<Webhook>>, ApiError> {
    principal.require(&[Role::Admin])?;
    Ok(Json(state.store().list_webhooks().await?))
}

/// Registers a webhook.
#[utoipa::path(post, operation_id = "create_webhook", path = "/api/v1/webhooks", tag = "incidents",
    request_body = WebhookCreate,
    responses((status = 201, body = Webhook), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<WebhookCreate>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    principal.require(&[Role::Admin])?;
    let hook = state
        .store()
        .create_webhook(
            &principal.actor(),
            &body.url,
            &body.secret,
            body.min_severity.unwrap_or(Severity::High),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(hook)))
}

/// Removes a webhook.
#[utoipa::path(delete, operation_id = "delete_webhook", path = "/api/v1/webhooks/{id}", tag = "incidents",
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(&[Role::Admin])?;
    let id = parse_id(&id, "webhook")?;
    state.store().delete_webhook(&principal.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn user_id(principal: &Principal) -> Result<i64, ApiError> {
    principal.user().map(|u| u.id).ok_or_else(|| {
        ApiError::forbidden(
            "notification settings belong to a person: use a login session, not an API token",
        )
    })
}

/// The caller's e-mail notification settings.
#[utoipa::path(get, operation_id = "get_notifications", path = "/api/v1/me/notifications", tag = "accounts",
    responses((status = 200, body = NotificationSettings), (status = 403, body = Problem)))]
pub async fn get_mine(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<NotificationSettings>, ApiError> {
    Ok(Json(
        state
            .store()
            .notification_settings(user_id(&principal)?)
            .await?,
    ))
}

/// Changes the caller's e-mail notification settings.
#[utoipa::path(put, operation_id = "set_notifications", path = "/api/v1/me/notifications", tag = "accounts",
    request_body = NotificationSettings,
    responses((status = 200, body = NotificationSettings), (status = 403, body = Problem)))]
pub async fn set_mine(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<NotificationSettings>,
) -> Result<Json<NotificationSettings>, ApiError> {
    let id = user_id(&principal)?;
    Ok(Json(
        state
            .store()
            .set_notification_settings(&principal.actor(), id, body)
            .await?,
    ))
}
