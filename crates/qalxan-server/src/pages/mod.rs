//! The dashboard: server-rendered HTML (maud), no scripts, usable on a phone, light and dark.
//!
//! Every page needs a login session ([`PageUser`]); every form posts its session's CSRF token,
//! checked by [`CsrfForm`] before the handler runs.

mod account;
mod admin;
mod documents;
mod events;
mod incidents;
mod institutions;
mod intel;
mod login;
mod overview;

use crate::api::events::READERS as EVENT_READERS;
use crate::auth::{self, Credential, Principal};
use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use qalxan_core::Role;
use qalxan_store::{Session, User};
use serde::de::DeserializeOwned;

const STYLE: &str = include_str!("../../assets/style.css");
const MONITOR_SCRIPT: &str = include_str!("../../assets/monitor.js");

pub fn router(config: &crate::Config) -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/account", get(account::page))
        .route("/account/password", post(account::change_password))
        .route("/account/notifications", post(account::notifications))
        .route("/events", get(events::page))
        .route(
            "/institutions",
            get(institutions::list).post(institutions::create),
        )
        .route("/institutions/new", get(institutions::new_form))
        .route(
            "/institutions/{id}",
            get(institutions::edit_form).post(institutions::update),
        )
        .route("/institutions/{id}/delete", post(institutions::delete))
        .route("/users", get(admin::users).post(admin::create_user))
        .route(
            "/users/{id}",
            get(admin::user_form).post(admin::update_user),
        )
        .route("/users/{id}/password", post(admin::reset_password))
        .route("/tokens", get(admin::tokens).post(admin::create_token))
        .route("/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/audit", get(admin::audit))
        .route(
            "/documents",
            get(documents::list)
                .post(documents::upload)
                .layer(axum::extract::DefaultBodyLimit::max(config.docs_max_bytes)),
        )
        .route("/documents/{id}", get(documents::show))
        .route("/documents/{id}/disarmed", get(documents::download))
        .route("/intel", get(intel::list))
        .route(
            "/intel/import",
            post(intel::import).layer(axum::extract::DefaultBodyLimit::max(config.docs_max_bytes)),
        )
        .route(
            "/intel/mail",
            get(intel::mail)
                .post(intel::mail_check)
                .layer(axum::extract::DefaultBodyLimit::max(config.docs_max_bytes)),
        )
        .route("/intel/{id}", get(intel::show).post(intel::update))
        .route("/alerts", get(incidents::alerts))
        .route("/alerts/act", post(incidents::alerts_act))
        .route("/alerts/stream", get(incidents::alerts_stream))
        .route("/incidents", get(incidents::list).post(incidents::create))
        .route("/incidents/{id}", get(incidents::show))
        .route(
            "/incidents/{id}/evidence",
            post(incidents::evidence).layer(axum::extract::DefaultBodyLimit::max(
                config.evidence_max_bytes,
            )),
        )
        .route("/incidents/{id}/{action}", post(incidents::act))
        .route("/reports", get(incidents::reports))
        .route(
            "/webhooks",
            get(incidents::webhooks).post(incidents::add_webhook),
        )
        .route("/webhooks/{id}/delete", post(incidents::delete_webhook))
        .route("/static/style.css", get(stylesheet))
        .route("/static/monitor.js", get(monitor_script))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(not_found)
}

async fn monitor_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        MONITOR_SCRIPT,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn not_found() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "There is no page at this address.")
}

/// A person logged in through the login page.
pub struct PageUser {
    pub principal: Principal,
    pub user: User,
    pub session: Session,
}

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let principal = auth::authenticate(parts, state)
            .await
            .map_err(|e| PageError::from(e).into_response())?;
        match principal {
            Some(principal) => match &principal.credential {
                Credential::Session { user, session } => Ok(PageUser {
                    user: (**user).clone(),
                    session: session.clone(),
                    principal,
                }),
                Credential::Token { .. } => Err(PageError::new(
                    StatusCode::FORBIDDEN,
                    "API tokens are for the API; log in to use the dashboard.",
                )
                .into_response()),
            },
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
                Err(Redirect::to(&format!("/login?{query}")).into_response())
            }
        }
    }
}

/// A form posted by a logged-in user, with its CSRF token checked against the session.
pub struct CsrfForm<T> {
    pub user: PageUser,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let user = PageUser::from_request_parts(&mut parts, state).await?;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|r| PageError::new(r.status(), r.body_text()).into_response())?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            PageError::new(StatusCode::BAD_REQUEST, format!("unreadable form: {e}")).into_response()
        })?;
        let sent = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str());
        if !sent.is_some_and(|t| auth::constant_time_eq(t, &user.session.csrf_token)) {
            return Err(csrf_failure().into_response());
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            PageError::new(StatusCode::BAD_REQUEST, format!("unreadable form: {e}")).into_response()
        })?;
        Ok(CsrfForm { user, form })
    }
}

pub(crate) fn csrf_failure() -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
}

/// A form that uploads one file (multipart data, field `file`, the CSRF token a field of its
/// own): the file's name and bytes once the token checked out, `None` when no file (or an
/// empty one) was chosen.
pub(crate) async fn file_upload(
    user: &PageUser,
    mut multipart: axum::extract::Multipart,
    default_name: &str,
) -> Result<Option<(String, Bytes)>, PageError> {
    let mut csrf = None;
    let mut file = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(PageError::new(e.status(), e.body_text())),
        };
        match field.name() {
            Some("csrf") => csrf = field.text().await.ok(),
            Some("file") => {
                let name = field.file_name().unwrap_or(default_name).to_string();
                let data = field
                    .bytes()
                    .await
                    .map_err(|e| PageError::new(e.status(), e.body_text()))?;
                file = Some((name, data));
            }
            _ => {}
        }
    }
    if !csrf.is_some_and(|t| auth::constant_time_eq(&t, &user.session.csrf_token)) {
        return Err(csrf_failure());
    }
    Ok(file.filter(|(_, d)| !d.is_empty()))
}

/// An error shown as a page.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::new(e.status, e.detail)
    }
}

impl From<qalxan_store::StoreError> for PageError {
    fn from(e: qalxan_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = bare_page(
            title,
            html! {
                main.narrow {
                    h1 { (title) }
                    p.error { (self.message) }
                    p { a href="/" { "Back to the overview" } }
                }
            },
        );
        (self.status, body).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;

/// The page skeleton without navigation (login, errors).
fn bare_page(title: &str, content: Markup) -> Markup {
    page_head(title, None, content)
}

/// The skeleton. A live view (`refresh` given) follows changes with `/static/monitor.js`
/// and, where scripts do not run, reloads itself every `refresh` seconds.
fn page_head(title: &str, refresh: Option<u32>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                @if let Some(seconds) = refresh {
                    noscript { meta http-equiv="refresh" content=(seconds); }
                    script src="/static/monitor.js" defer {}
                }
                title { (title) " · Qalxan" }
                link rel="stylesheet" href="/static/style.css";
            }
            body { (content) }
        }
    }
}

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Events,
    Institutions,
    Documents,
    Intel,
    Alerts,
    Incidents,
    Reports,
    Webhooks,
    Users,
    Tokens,
    Audit,
    Account,
}

/// The page skeleton with navigation for a logged-in user.
fn layout(user: &PageUser, nav: Nav, title: &str, content: Markup) -> Markup {
    layout_refreshing(user, nav, title, None, content)
}

fn layout_refreshing(
    user: &PageUser,
    nav: Nav,
    title: &str,
    refresh: Option<u32>,
    content: Markup,
) -> Markup {
    let role = user.principal.role;
    let staff_reader = matches!(role, Role::Admin | Role::Auditor);
    let entries = [
        (
            Nav::Overview,
            "/",
            "Overview",
            EVENT_READERS.contains(&role),
        ),
        (
            Nav::Events,
            "/events",
            "Events",
            EVENT_READERS.contains(&role),
        ),
        (
            Nav::Institutions,
            "/institutions",
            "Institutions",
            crate::api::institutions::READERS.contains(&role),
        ),
        (
            Nav::Documents,
            "/documents",
            "Documents",
            crate::api::documents::READERS.contains(&role),
        ),
        (
            Nav::Intel,
            "/intel",
            "Intelligence",
            matches!(
                role,
                Role::Admin | Role::Analyst | Role::Auditor | Role::Institution
            ),
        ),
        (
            Nav::Alerts,
            "/alerts",
            "Alerts",
            crate::api::alerts::READERS.contains(&role),
        ),
        (
            Nav::Incidents,
            "/incidents",
            "Incidents",
            crate::api::incidents::READERS.contains(&role),
        ),
        (
            Nav::Reports,
            "/reports",
            "Reports",
            crate::api::incidents::READERS.contains(&role),
        ),
        (Nav::Users, "/users", "Users", staff_reader),
        (Nav::Tokens, "/tokens", "API tokens", staff_reader),
        (Nav::Audit, "/audit", "Audit trail", staff_reader),
        (Nav::Webhooks, "/webhooks", "Webhooks", role == Role::Admin),
        (Nav::Account, "/account", "Account", true),
    ];
    page_head(
        title,
        refresh,
        html! {
            header.top {
                a.brand href="/" { span.shield { "◆" } " Qalxan" }
                nav {
                    @for (id, href, label, shown) in entries {
                        @if shown {
                            a href=(href) aria-current=[(id == nav).then_some("page")] { (label) }
                        }
                    }
                }
                form.logout method="post" action="/logout" {
                    (csrf_field(user))
                    span.who { (user.user.username) " · " (role) }
                    button.link type="submit" { "Log out" }
                }
            }
            main { (content) }
        },
    )
}

fn csrf_field(user: &PageUser) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.session.csrf_token); }
}

/// A page as a response, with caching off: pages show live data and secrets shown once.
fn respond(status: StatusCode, page: Markup) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], page).into_response()
}

/// Renders an integer with thousands separators.
pub(crate) fn fmt_int(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Notices a page can show after a redirect; only these fixed texts, never request text.
fn notice(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "saved" => Some("Saved."),
        "created" => Some("Created."),
        "deleted" => Some("Deleted."),
        "revoked" => Some("Token revoked: it no longer works."),
        "password" => Some("Password changed. Your other sessions have ended."),
        _ => None,
    }
}

fn notice_box(code: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = notice(code) {
            p.notice role="status" { (text) }
        }
    }
}

fn error_box(error: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = error {
            p.error role="alert" { (text) }
        }
    }
}

/// Shows a secret once, with a warning that it will not be shown again.
fn secret_box(label: &str, secret: &str) -> Markup {
    html! {
        div.secret role="status" {
            p { strong { (label) } " — copy it now, it is shown only once:" }
            code data-secret { (secret) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_int;

    #[test]
    fn thousands() {
        assert_eq!(fmt_int(0), "0");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_int(1000), "1,000");
        assert_eq!(fmt_int(-1234567), "-1,234,567");
    }
}
