//! The user's own account: who they are, and changing their password.

use super::{
    csrf_field, error_box, layout, notice_box, respond, CsrfForm, Nav, PageResult, PageUser,
};
use crate::api::me::change_own_password;
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use qalxan_core::{Role, Severity};
use qalxan_store::NotificationSettings;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct AccountQuery {
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

fn account_page(
    user: &PageUser,
    notice: Option<&str>,
    error: Option<&str>,
    institution: Option<String>,
    settings: NotificationSettings,
) -> Markup {
    let u = &user.user;
    let content = html! {
        h1 { "Account" }
        (notice_box(notice))
        section.card.wide {
            dl {
                dt { "User name" } dd { (u.username) }
                dt { "Role" } dd { (u.role) }
                @if let Some(name) = institution { dt { "Institution" } dd { (name) } }
                dt { "Session ends" } dd { (user.session.expires_at) " (UTC)" }
            }
        }
        section.card.wide {
            h2 { "Change password" }
            (error_box(error))
            form method="post" action="/account/password" {
                (csrf_field(user))
                label { "Current password" input type="password" name="current_password" autocomplete="current-password" required; }
                label { "New password (at least " (crate::auth::MIN_PASSWORD_CHARS) " characters)"
                    input type="password" name="new_password" autocomplete="new-password" required minlength=(crate::auth::MIN_PASSWORD_CHARS);
                }
                label { "New password again" input type="password" name="confirm_password" autocomplete="new-password" required; }
                button type="submit" { "Change password" }
            }
        }
        @if matches!(u.role, Role::Admin | Role::Analyst) {
            section.card.wide {
                h2 { "E-mail notifications" }
                @if u.email.is_empty() { p.muted { "Your account has no e-mail address; an administrator can add one." } }
                form method="post" action="/account/notifications" {
                    (csrf_field(user))
                    label.inline { input type="checkbox" name="email_incidents" value="1" checked[settings.email_incidents]; " new incidents" }
                    label.inline { input type="checkbox" name="email_sla" value="1" checked[settings.email_sla]; " SLA breaches" }
                    label.inline { "of severity at least " select name="min_severity" {
                        @for s in Severity::ALL { option value=(s.as_str()) selected[*s == settings.min_severity] { (s) } }
                    } }
                    button type="submit" { "Save" }
                }
            }
        }
    };
    layout(user, Nav::Account, "Account", content)
}

async fn institution_name(state: &AppState, user: &PageUser) -> Option<String> {
    let id = user.user.institution_id?;
    state
        .store()
        .get_institution(id)
        .await
        .ok()
        .flatten()
        .map(|i| i.fields.name)
}

pub async fn page(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<AccountQuery>,
) -> PageResult {
    let institution = institution_name(&state, &user).await;
    let settings = state.store().notification_settings(user.user.id).await?;
    Ok(respond(
        StatusCode::OK,
        account_page(&user, q.notice.as_deref(), None, institution, settings),
    ))
}

#[derive(Deserialize)]
pub struct NotificationForm {
    #[serde(default)]
    email_incidents: Option<String>,
    #[serde(default)]
    email_sla: Option<String>,
    min_severity: Severity,
}

pub async fn notifications(
    State(state): State<AppState>,
    CsrfForm { user, form }: CsrfForm<NotificationForm>,
) -> PageResult {
    state
        .store()
        .set_notification_settings(
            &user.principal.actor(),
            user.user.id,
            NotificationSettings {
                email_incidents: form.email_incidents.is_some(),
                email_sla: form.email_sla.is_some(),
                min_severity: form.min_severity,
            },
        )
        .await?;
    Ok(Redirect::to("/account?notice=saved").into_response())
}

pub async fn change_password(
    State(state): State<AppState>,
    form: CsrfForm<PasswordForm>,
) -> PageResult {
    let CsrfForm { user, form } = form;
    let result: Result<(), String> = if form.new_password != form.confirm_password {
        Err("The two new passwords differ.".to_owned())
    } else {
        change_own_password(
            &state,
            &user.principal,
            form.current_password,
            form.new_password,
        )
        .await
        .map_err(|e| e.detail)
    };
    match result {
        Ok(()) => Ok(Redirect::to("/account?notice=password").into_response()),
        Err(message) => {
            let institution = institution_name(&state, &user).await;
            let settings = state.store().notification_settings(user.user.id).await?;
            Ok(respond(
                StatusCode::UNPROCESSABLE_ENTITY,
                account_page(&user, None, Some(&message), institution, settings),
            ))
        }
    }
}
