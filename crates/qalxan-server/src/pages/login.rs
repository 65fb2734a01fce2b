//! Logging in and out.
//!
//! The login form carries its own CSRF token (a cookie matched against a hidden field) since
//! there is no session yet. Every attempt is recorded as failed before the password is checked
//! (and corrected on success), so parallel guesses count at once; past the configured limits per
//! account and per client address, attempts are refused until the window passes.

use super::{bare_page, csrf_failure, respond, CsrfForm, PageError, PageResult};
use crate::auth::{self, client_ip};
use crate::AppState;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use qalxan_core::now_millis;
use qalxan_store::Actor;
use serde::Deserialize;

const LOGIN_CSRF_COOKIE: &str = "qalxan_login";
/// Behind TLS the `__Host-` prefix stops a sibling subdomain from planting the cookie.
const SECURE_LOGIN_CSRF_COOKIE: &str = "__Host-qalxan_login";

fn login_cookie_name(state: &AppState) -> &'static str {
    if state.config().secure_cookies() {
        SECURE_LOGIN_CSRF_COOKIE
    } else {
        LOGIN_CSRF_COOKIE
    }
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// Only local paths are followed after login, so the page cannot send people elsewhere.
/// Browsers drop tabs and newlines inside URLs and read `\\` as `/`, so `/\t/evil.example`
/// would leave the site: any control character, space or backslash disqualifies a path.
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if local {
        next
    } else {
        "/"
    }
}

fn cookie_attributes(state: &AppState) -> &'static str {
    if state.config().secure_cookies() {
        "; HttpOnly; SameSite=Strict; Secure"
    } else {
        "; HttpOnly; SameSite=Strict"
    }
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let token = auth::random_secret();
    let page = bare_page(
        "Log in",
        html! {
            main.login {
                h1 { span.shield { "◆" } " Qalxan" }
                p.muted { "Cyber-defence platform" }
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
                }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="next" value=(safe_next(next));
                    label { "User name"
                        input name="username" autocomplete="username" required autofocus value=(username);
                    }
                    label { "Password"
                        input type="password" name="password" autocomplete="current-password" required;
                    }
                    button type="submit" { "Log in" }
                }
            }
        },
    );
    let mut response = respond(status, page);
    let cookie = format!(
        "{}={token}; Path=/; Max-Age=3600{}",
        login_cookie_name(state),
        cookie_attributes(state)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn form(State(state): State<AppState>, request: Request) -> Response {
    let query: LoginQuery =
        serde_urlencoded::from_str(request.uri().query().unwrap_or_default()).unwrap_or_default();
    login_page(
        &state,
        StatusCode::OK,
        query.next.as_deref().unwrap_or("/"),
        "",
        None,
    )
}

pub async fn submit(State(state): State<AppState>, request: Request) -> PageResult {
    let (parts, body) = request.into_parts();
    let ip = client_ip(&parts, &state).to_string();
    let expected = auth::cookie(&parts, login_cookie_name(&state)).map(str::to_owned);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let form = axum::Form::<LoginForm>::from_request(Request::from_parts(parts, body), &state)
        .await
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.body_text()))?
        .0;
    if !expected.is_some_and(|e| !form.csrf.is_empty() && auth::constant_time_eq(&e, &form.csrf)) {
        return Err(csrf_failure());
    }
    let config = state.config();
    let store = state.store();
    let now = now_millis();
    let window_ms = i64::from(config.login_window_minutes) * 60_000;
    // Counted first, then checked: this attempt is among the failures it is checked against.
    let attempt = store.begin_login_attempt(&form.username, &ip).await?;
    let failures = store
        .login_failures(&form.username, &ip, now - window_ms)
        .await?;
    if failures.account > i64::from(config.login_max_failures_per_account)
        || failures.ip > i64::from(config.login_max_failures_per_ip)
    {
        tracing::warn!(username = %form.username, %ip, "login refused: too many failures");
        let message = format!(
            "Too many failed logins. Wait {} minutes and try again, or ask an administrator.",
            config.login_window_minutes
        );
        let mut response = login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &form.next,
            &form.username,
            Some(&message),
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(u64::from(config.login_window_minutes) * 60),
        );
        return Ok(response);
    }

    let account = store.user_credentials(&form.username).await?;
    let (hash, user) = match &account {
        Some((user, hash)) if !user.disabled && user.role.can_log_in() => {
            (Some(hash.clone()), Some(user))
        }
        _ => (None, None),
    };
    let verified = auth::verify_password_blocking(form.password, hash).await;
    let Some(user) = user.filter(|_| verified) else {
        tracing::info!(username = %form.username, %ip, "login failed");
        return Ok(login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &form.next,
            &form.username,
            Some("Wrong user name or password."),
        ));
    };
    store.login_succeeded(attempt).await?;

    let secret = auth::random_secret();
    let expires = now + i64::from(config.session_hours) * 3_600_000;
    store
        .create_session(
            &Actor::user(&user.username, ip.clone()),
            user.id,
            &auth::sha256_hex(&secret),
            &auth::random_secret(),
            expires,
            &ip,
            &user_agent,
        )
        .await?;
    tracing::info!(username = %user.username, %ip, "login");

    let mut response = Redirect::to(safe_next(&form.next)).into_response();
    let session_cookie = format!(
        "{}={secret}; Path=/; Max-Age={}{}",
        state.session_cookie_name(),
        i64::from(config.session_hours) * 3600,
        cookie_attributes(&state)
    );
    let clear_login = format!(
        "{}=; Path=/; Max-Age=0{}",
        login_cookie_name(&state),
        cookie_attributes(&state)
    );
    for cookie in [session_cookie, clear_login] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct LogoutForm {}

pub async fn logout(State(state): State<AppState>, form: CsrfForm<LogoutForm>) -> PageResult {
    let user = form.user;
    state
        .store()
        .end_session(&user.principal.actor(), user.session.id)
        .await?;
    let mut response = Redirect::to("/login").into_response();
    let clear = format!(
        "{}=; Path=/; Max-Age=0{}",
        state.session_cookie_name(),
        cookie_attributes(&state)
    );
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/institutions?x=1"), "/institutions?x=1");
        assert_eq!(safe_next("//evil.example/"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
        assert_eq!(safe_next("/\t/evil.example"), "/");
        assert_eq!(safe_next("/\n/evil.example"), "/");
        assert_eq!(safe_next("/ /evil.example"), "/");
    }
}
