//! Administration pages: user accounts, API tokens and the audit trail.

use super::{
    csrf_field, error_box, layout, notice_box, respond, secret_box, CsrfForm, Nav, PageError,
    PageResult, PageUser,
};
use crate::api::audit::AuditQuery;
use crate::api::tokens::{issue_token, TokenCreate};
use crate::api::users::{create_account, reset_account_password, UserCreate};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use qalxan_core::{now_millis, Institution, InstitutionId, Role, Timestamp};
use qalxan_store::{User, UserUpdate};
use serde::Deserialize;

const READERS: &[Role] = &[Role::Admin, Role::Auditor];

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    notice: Option<String>,
}

fn role_options(selected: Option<Role>, for_tokens: bool) -> Markup {
    html! {
        @for r in Role::ALL {
            @if for_tokens || r.can_log_in() {
                option value=(r.as_str()) selected[Some(*r) == selected] { (r) }
            }
        }
    }
}

fn institution_options(all: &[Institution], selected: Option<InstitutionId>) -> Markup {
    html! {
        option value="" { "— none —" }
        @for i in all {
            option value=(i.id) selected[Some(i.id) == selected] { (i.fields.name) }
        }
    }
}

fn parse_role(s: &str) -> Result<Role, PageError> {
    s.parse().map_err(|e: qalxan_core::UnknownName| {
        PageError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
    })
}

fn parse_institution(s: &str) -> Result<Option<InstitutionId>, PageError> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| PageError::new(StatusCode::UNPROCESSABLE_ENTITY, "institution: not an id"))
}

fn institution_name(all: &[Institution], id: Option<InstitutionId>) -> String {
    id.and_then(|id| all.iter().find(|i| i.id == id))
        .map(|i| i.fields.name.clone())
        .unwrap_or_default()
}

// ----- users -----

#[derive(Deserialize, Default)]
pub struct NewUserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    institution_id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
}

async fn users_page(
    state: &AppState,
    user: &PageUser,
    notice: Option<&str>,
    error: Option<&str>,
    created: Option<(&User, &str)>,
) -> PageResult {
    user.principal.require(READERS)?;
    let users = state.store().list_users().await?;
    let institutions = state.store().list_institutions(None).await?;
    let is_admin = user.principal.role == Role::Admin;
    let content = html! {
        h1 { "Users" }
        (notice_box(notice))
        (error_box(error))
        @if let Some((u, password)) = created {
            (secret_box(&format!("Password for {}", u.username), password))
        }
        div.scroll {
            table {
                thead { tr { th { "User" } th { "Role" } th { "Institution" } th { "State" } th { "Created" } } }
                tbody {
                    @for u in &users {
                        tr {
                            td { a href={"/users/" (u.id)} { (u.username) } @if !u.display_name.is_empty() { br; small { (u.display_name) } } }
                            td { (u.role) }
                            td { (institution_name(&institutions, u.institution_id)) }
                            td { @if u.disabled { span.sev.sev-high { "disabled" } } @else { "active" } }
                            td { (u.created_at) }
                        }
                    }
                }
            }
        }
        @if is_admin {
            section.card.wide {
                h2 { "New user" }
                form method="post" action="/users" {
                    (csrf_field(user))
                    div.row {
                        label { "User name" input name="username" required autocomplete="off"; }
                        label { "Role" select name="role" { (role_options(Some(Role::Analyst), false)) } }
                        label { "Institution (role institution only)" select name="institution_id" { (institution_options(&institutions, None)) } }
                    }
                    div.row {
                        label { "Full name" input name="display_name"; }
                        label { "E-mail" input type="email" name="email"; }
                    }
                    p.muted { "A random password is generated and shown once." }
                    button type="submit" { "Create user" }
                }
            }
        }
    };
    Ok(respond(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        layout(user, Nav::Users, "Users", content),
    ))
}

pub async fn users(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    users_page(&state, &user, q.notice.as_deref(), None, None).await
}

pub async fn create_user(State(state): State<AppState>, form: CsrfForm<NewUserForm>) -> PageResult {
    let CsrfForm { user, form } = form;
    user.principal.require(&[Role::Admin])?;
    let body = UserCreate {
        username: form.username,
        role: parse_role(&form.role)?,
        institution_id: parse_institution(&form.institution_id)?,
        display_name: form.display_name,
        email: form.email,
        password: None,
    };
    match create_account(&state, &user.principal, body).await {
        Ok(created) => {
            let password = created.password.unwrap_or_default();
            users_page(
                &state,
                &user,
                Some("created"),
                None,
                Some((&created.user, &password)),
            )
            .await
        }
        Err(e) if e.status.is_client_error() => {
            users_page(&state, &user, None, Some(&e.detail), None).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
pub struct EditUserForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    institution_id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    /// A checkbox: present when ticked.
    disabled: Option<String>,
}

async fn user_page(
    state: &AppState,
    user: &PageUser,
    id: &str,
    notice: Option<&str>,
    error: Option<&str>,
    password: Option<&str>,
) -> PageResult {
    user.principal.require(READERS)?;
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "user not found"))?;
    let target = state
        .store()
        .get_user(id)
        .await?
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "user not found"))?;
    let institutions = state.store().list_institutions(None).await?;
    let is_admin = user.principal.role == Role::Admin;
    let content = html! {
        h1 { "User " (target.username) }
        (notice_box(notice))
        (error_box(error))
        @if let Some(p) = password { (secret_box(&format!("New password for {}", target.username), p)) }
        form.card.wide method="post" action={"/users/" (target.id)} {
            (csrf_field(user))
            fieldset disabled[!is_admin] {
                div.row {
                    label { "Role" select name="role" { (role_options(Some(target.role), false)) } }
                    label { "Institution" select name="institution_id" { (institution_options(&institutions, target.institution_id)) } }
                }
                div.row {
                    label { "Full name" input name="display_name" value=(target.display_name); }
                    label { "E-mail" input type="email" name="email" value=(target.email); }
                }
                label.check { input type="checkbox" name="disabled" value="1" checked[target.disabled]; " Disabled (cannot log in; sessions end)" }
                @if is_admin { button type="submit" { "Save" } }
            }
        }
        @if is_admin {
            form.inline method="post" action={"/users/" (target.id) "/password"} {
                (csrf_field(user))
                button type="submit" { "Reset password" }
                small.muted { " Generates a new password and ends the user's sessions." }
            }
        }
        p.muted { "Created " (target.created_at) "; password last changed " (target.password_changed_at) "." }
    };
    Ok(respond(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        layout(user, Nav::Users, &target.username, content),
    ))
}

pub async fn user_form(
    State(state): State<AppState>,
    user: PageUser,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    user_page(&state, &user, &id, q.notice.as_deref(), None, None).await
}

pub async fn update_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<EditUserForm>,
) -> PageResult {
    let CsrfForm { user, form } = form;
    user.principal.require(&[Role::Admin])?;
    let target: i64 = id
        .parse()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "user not found"))?;
    let update = UserUpdate {
        display_name: Some(form.display_name),
        email: Some(form.email),
        role: Some(parse_role(&form.role)?),
        institution_id: Some(parse_institution(&form.institution_id)?),
        disabled: Some(form.disabled.is_some()),
    };
    match state
        .store()
        .update_user(&user.principal.actor(), target, update)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/users/{target}?notice=saved")).into_response()),
        Err(e @ (qalxan_store::StoreError::Invalid(_) | qalxan_store::StoreError::Conflict(_))) => {
            user_page(&state, &user, &id, None, Some(&e.to_string()), None).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct Empty {}

pub async fn reset_password(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<Empty>,
) -> PageResult {
    let user = form.user;
    let target: i64 = id
        .parse()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "user not found"))?;
    let password = reset_account_password(&state, &user.principal, target, None).await?;
    user_page(&state, &user, &id, Some("saved"), None, password.as_deref()).await
}

// ----- API tokens -----

#[derive(Deserialize, Default)]
pub struct NewTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    institution_id: String,
    /// Days until it expires; empty for never.
    #[serde(default)]
    expires_days: String,
}

async fn tokens_page(
    state: &AppState,
    user: &PageUser,
    notice: Option<&str>,
    error: Option<&str>,
    secret: Option<(&str, &str)>,
) -> PageResult {
    user.principal.require(READERS)?;
    let tokens = state.store().list_tokens().await?;
    let institutions = state.store().list_institutions(None).await?;
    let is_admin = user.principal.role == Role::Admin;
    let now = now_millis();
    let content = html! {
        h1 { "API tokens" }
        p.muted { "For gateways, scanners, agents and scripts: " code { "Authorization: Bearer qx_…" } ". Only a hash of each token is stored." }
        (notice_box(notice))
        (error_box(error))
        @if let Some((name, s)) = secret { (secret_box(&format!("Token {name}"), s)) }
        div.scroll {
            table {
                thead { tr { th { "Name" } th { "Prefix" } th { "Role" } th { "Institution" } th { "Created" } th { "Last used" } th { "State" } th {} } }
                tbody {
                    @for t in &tokens {
                        tr {
                            td { (t.name) br; small { "by " (t.created_by) } }
                            td { code { (t.prefix) "…" } }
                            td { (t.role) }
                            td { (institution_name(&institutions, t.institution_id)) }
                            td { (t.created_at) }
                            td { (t.last_used_at.map(|t| t.to_string()).unwrap_or_else(|| "never".into())) }
                            td {
                                @if t.revoked_at.is_some() { span.sev.sev-high { "revoked" } }
                                @else if !t.is_usable(now) { span.sev.sev-medium { "expired" } }
                                @else { "active" @if let Some(e) = t.expires_at { br; small { "until " (e) } } }
                            }
                            td {
                                @if is_admin && t.revoked_at.is_none() {
                                    form.inline method="post" action={"/tokens/" (t.id) "/revoke"} {
                                        (csrf_field(user))
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if is_admin {
            section.card.wide {
                h2 { "New token" }
                form method="post" action="/tokens" {
                    (csrf_field(user))
                    div.row {
                        label { "Name" input name="name" required placeholder="gateway-1"; }
                        label { "Role" select name="role" { (role_options(Some(Role::Sensor), true)) } }
                        label { "Institution (optional)" select name="institution_id" { (institution_options(&institutions, None)) } }
                        label { "Expires after (days, empty = never)" input type="number" min="1" name="expires_days"; }
                    }
                    button type="submit" { "Create token" }
                }
            }
        }
    };
    Ok(respond(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        layout(user, Nav::Tokens, "API tokens", content),
    ))
}

pub async fn tokens(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    tokens_page(&state, &user, q.notice.as_deref(), None, None).await
}

pub async fn create_token(
    State(state): State<AppState>,
    form: CsrfForm<NewTokenForm>,
) -> PageResult {
    let CsrfForm { user, form } = form;
    user.principal.require(&[Role::Admin])?;
    let expires_at = match form.expires_days.trim() {
        "" => None,
        days => match days.parse::<u32>() {
            Ok(d) if d > 0 => Some(Timestamp(now_millis() + i64::from(d) * 86_400_000)),
            _ => {
                return tokens_page(
                    &state,
                    &user,
                    None,
                    Some("expires: give a number of days, or leave it empty"),
                    None,
                )
                .await
            }
        },
    };
    let body = TokenCreate {
        name: form.name,
        role: parse_role(&form.role)?,
        institution_id: parse_institution(&form.institution_id)?,
        expires_at,
    };
    match issue_token(state.store(), &user.principal.actor(), body).await {
        Ok(created) => {
            tokens_page(
                &state,
                &user,
                Some("created"),
                None,
                Some((&created.token.name, &created.secret)),
            )
            .await
        }
        Err(e) if e.status.is_client_error() => {
            tokens_page(&state, &user, None, Some(&e.detail), None).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<Empty>,
) -> PageResult {
    let user = form.user;
    user.principal.require(&[Role::Admin])?;
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::new(StatusCode::NOT_FOUND, "API token not found"))?;
    state
        .store()
        .revoke_token(&user.principal.actor(), id)
        .await?;
    Ok(Redirect::to("/tokens?notice=revoked").into_response())
}

// ----- audit trail -----

pub async fn audit(
    State(state): State<AppState>,
    user: PageUser,
    Query(q): Query<AuditQuery>,
) -> PageResult {
    user.principal.require(READERS)?;
    let filter = q.filter();
    let entries = state.store().list_audit(&filter).await?;
    let older = (entries.len() as u32 >= filter.limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let keep = |before: i64| {
        let mut pairs = vec![("before", before.to_string())];
        for (k, v) in [
            ("object_type", &filter.object_type),
            ("object_id", &filter.object_id),
            ("actor", &filter.actor),
        ] {
            if let Some(v) = v {
                pairs.push((k, v.clone()));
            }
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    };
    let content = html! {
        h1 { "Audit trail" }
        p.muted { "Every change, with the object before and after. Append-only: not even administrators can change it." }
        form.inline method="get" action="/audit" {
            label.inline { "Object " input name="object_type" placeholder="institution" value=[filter.object_type.as_deref()]; }
            label.inline { "Id " input name="object_id" size="6" value=[filter.object_id.as_deref()]; }
            label.inline { "Actor " input name="actor" placeholder="user:alice" value=[filter.actor.as_deref()]; }
            button type="submit" { "Filter" }
        }
        div.scroll {
            table.audit {
                thead { tr { th { "Time (UTC)" } th { "Actor" } th { "Action" } th { "Object" } th { "Change" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (e.at) }
                            td { (e.actor) @if !e.ip.is_empty() { br; small { (e.ip) } } }
                            td { (e.action) }
                            td { (e.object_type) " " (e.object_id) }
                            td {
                                @if e.before.is_some() || e.after.is_some() {
                                    details {
                                        summary { "before / after" }
                                        @if let Some(b) = &e.before { pre { (serde_json::to_string_pretty(b).unwrap_or_default()) } }
                                        @if let Some(a) = &e.after { pre { (serde_json::to_string_pretty(a).unwrap_or_default()) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(id) = older {
            p { a href={"/audit?" (keep(id))} { "Older entries →" } }
        }
    };
    Ok(respond(
        StatusCode::OK,
        layout(&user, Nav::Audit, "Audit trail", content),
    ))
}
