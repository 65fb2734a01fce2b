//! The dashboard pages end to end: login, sessions, CSRF, throttling, forms and isolation, with
//! a cookie-keeping client on a real server and database.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap should fail loudly.

mod common;

use common::{csrf_of, Browser, TestServer};
use qalxan_core::{now_millis, Role};
use qalxan_server::{auth, Config};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn login_sets_a_strict_http_only_session_and_shows_the_overview() {
    let s = TestServer::start().await;
    let b = Browser::new(&s.base);
    let r = b.get("/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?next=%2F");

    let r = b.login("admin", "wrong password!").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Wrong user name or password."));
    let r = b.login("nobody", "wrong password!").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = b.login("ADMIN", &s.admin_password).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
    let cookies = set_cookies(&r);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("qalxan_session="))
        .expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "plain HTTP: {session}");

    let (status, html) = b.page("/").await;
    assert_eq!(status, StatusCode::OK);
    for figure in [
        "waf.blocked",
        "ddos.detected",
        "scan.infected",
        "doc.neutralized",
        "intel.indicator",
        "incident.victim",
        "incident.open",
    ] {
        assert!(
            html.contains(&format!(r#"data-figure="{figure}""#)),
            "overview lacks {figure}"
        );
    }
    assert!(html.contains(r#"<meta name="viewport""#));
    assert_eq!(html.matches("<svg").count(), 6, "one chart per figure");
    let (_, html) = b.page("/?period=6m").await;
    assert!(html.contains(r#"aria-current="page">6 months"#), "{html}");
    let css = b.get("/static/style.css").await.text().await.unwrap();
    assert!(css.contains("prefers-color-scheme: dark"));

    // The login is in the audit trail, attributed to the user and address.
    let (_, audit) = s
        .api(&s.token(Role::Admin, None).await)
        .get("/api/v1/audit?object_type=session")
        .await;
    assert_eq!(audit["items"][0]["action"], "login");
    assert_eq!(audit["items"][0]["actor"], "user:admin");
}

#[tokio::test]
async fn overview_counts_what_was_reported() {
    let s = TestServer::start().await;
    let a = s.institution("Alpha Ministry").await;
    let sensor = s.api(&s.token(Role::Sensor, None).await);
    let (status, body) = sensor
        .post(
            "/api/v1/events",
            &json!({"events": [
                {"kind": "waf.blocked", "count": 1234, "institution_id": a.0},
                {"kind": "ddos.detected", "value": 56000},
                {"kind": "incident.victim", "count": 4, "institution_id": a.0}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Open incidents are the incidents not closed: two opened, one closed.
    let admin = s.api(&s.token(Role::Admin, None).await);
    for title in ["First", "Second"] {
        let (status, body) = admin
            .post("/api/v1/incidents", &json!({"title": title}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        if title == "First" {
            let (status, body) = admin
                .post(
                    &format!("/api/v1/incidents/{}/status", body["id"]),
                    &json!({"status": "closed", "reason": "false positive"}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let b = s.admin_browser().await;
    let (_, html) = b.page("/").await;
    let figure = |kind: &str| {
        let at = html.find(&format!(r#"data-figure="{kind}""#)).unwrap();
        let start = html[at..].find("data-total>").unwrap() + at + "data-total>".len();
        let end = html[start..].find('<').unwrap() + start;
        html[start..end].to_owned()
    };
    assert_eq!(figure("waf.blocked"), "1,234");
    assert_eq!(figure("ddos.detected"), "1");
    assert!(html.contains("peak 56,000 requests/s"));
    assert_eq!(figure("incident.open"), "1");
    assert_eq!(figure("incident.victim"), "4");
    assert_eq!(figure("scan.infected"), "0");
    assert!(
        html.contains("<td>Alpha Ministry</td><td class=\"num\">4</td>"),
        "{html}"
    );
}

#[tokio::test]
async fn forms_need_the_session_csrf_token() {
    let s = TestServer::start().await;
    let b = s.admin_browser().await;
    let r = b
        .post_form("/institutions", &[("name", "No Token Agency")])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = b
        .post_form(
            "/institutions",
            &[("name", "No Token Agency"), ("csrf", "forged")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = b.post_form("/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The login form is protected too, before any session exists.
    let fresh = Browser::new(&s.base);
    let r = fresh
        .post_form(
            "/login",
            &[
                ("username", "admin"),
                ("password", &s.admin_password),
                ("csrf", "x"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = b
        .submit(
            "/institutions/new",
            "/institutions",
            &[
                ("name", "Gamma Bank"),
                ("sector", "Finance"),
                ("domains", "gamma.example\nbank.example"),
                ("ip_ranges", "198.51.100.0/24"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = location(&r);
    assert!(
        page.starts_with("/institutions/") && page.ends_with("?notice=created"),
        "{page}"
    );
    let (status, html) = b.page(&page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Gamma Bank") && html.contains("Created."));
    assert!(html.contains("gamma.example\nbank.example"));

    let r = b
        .submit(
            "/institutions/new",
            "/institutions",
            &[("name", "Delta"), ("ip_ranges", "300.1.1.1")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("ip_ranges[0]: &#39;300.1.1.1&#39; is not an IP address")
            || html.contains("ip_ranges[0]: '300.1.1.1' is not an IP address"),
        "{html}"
    );
    assert!(
        html.contains(r#"value="Delta""#),
        "the form keeps what was typed"
    );

    // The API with a session cookie: reads work, changes need the X-CSRF-Token header.
    let r = b
        .client
        .get(format!("{}/api/v1/institutions", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = b
        .client
        .post(format!("{}/api/v1/institutions", s.base))
        .json(&json!({"name": "Epsilon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let csrf = b.csrf().await;
    let r = b
        .client
        .post(format!("{}/api/v1/institutions", s.base))
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "Epsilon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let (_, audit) = s
        .api(&s.token(Role::Admin, None).await)
        .get("/api/v1/audit?object_type=institution")
        .await;
    let actors: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].clone())
        .collect();
    assert_eq!(actors, [json!("user:admin"), json!("user:admin")]);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_and_per_address() {
    let config = Config {
        login_max_failures_per_account: 3,
        login_max_failures_per_ip: 6,
        ..Config::default()
    };
    let s = TestServer::start_with(config).await;
    let b = Browser::new(&s.base);
    for _ in 0..3 {
        assert_eq!(
            b.login("admin", "not the password").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is refused now, and the answer says when to retry.
    let r = b.login("admin", &s.admin_password).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "900");
    assert!(r.text().await.unwrap().contains("Too many failed logins"));

    // The refused attempt counted too: four failures from this address. Two more on other names
    // exhaust the address's allowance of six for every account.
    let inst = s.institution("Alpha Ministry").await;
    let admin = s.api(&s.token(Role::Admin, None).await);
    let (_, created) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "omar", "role": "institution", "institution_id": inst.0}),
        )
        .await;
    let omar_password = created["password"].as_str().unwrap();
    for name in ["x1", "x2"] {
        assert_eq!(
            b.login(name, "guess guess guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        b.login("omar", omar_password).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn parallel_guesses_do_not_slip_past_the_limit() {
    let config = Config {
        login_max_failures_per_account: 3,
        ..Config::default()
    };
    let s = TestServer::start_with(config).await;
    let mut guesses = Vec::new();
    for i in 0..12 {
        let base = s.base.clone();
        guesses.push(tokio::spawn(async move {
            let b = Browser::new(&base);
            b.login("admin", &format!("guess number {i}"))
                .await
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap());
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        checked <= 3,
        "{checked} passwords were checked: {statuses:?}"
    );
    assert_eq!(checked + refused, 12, "{statuses:?}");
}

#[tokio::test]
async fn expired_sessions_and_logout_end_access() {
    let s = TestServer::start().await;
    let (admin, _) = s.db.store.user_credentials("admin").await.unwrap().unwrap();
    let secret = auth::random_secret();
    s.db.store
        .create_session(
            &qalxan_store::Actor::system(),
            admin.id,
            &auth::sha256_hex(&secret),
            "csrf",
            now_millis() - 1,
            "127.0.0.1",
            "test",
        )
        .await
        .unwrap();
    let r = s
        .anonymous()
        .client
        .get(s.url("/"))
        .header("cookie", format!("qalxan_session={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "an expired session is no session"
    );
    let r = s
        .anonymous()
        .client
        .get(s.url("/api/v1/me"))
        .header("cookie", format!("qalxan_session={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let b = s.admin_browser().await;
    let r = b.submit("/", "/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login");
    assert_eq!(b.get("/").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions() {
    let s = TestServer::start().await;
    let here = s.admin_browser().await;
    let elsewhere = s.admin_browser().await;

    let r = here
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", &s.admin_password),
                ("new_password", "a new long passphrase"),
                ("confirm_password", "a different one!!"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = here
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", "not it at all"),
                ("new_password", "a new long passphrase"),
                ("confirm_password", "a new long passphrase"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("is not the account"));
    let r = here
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", &s.admin_password),
                ("new_password", "a new long passphrase"),
                ("confirm_password", "a new long passphrase"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/account?notice=password");

    assert_eq!(here.get("/account").await.status(), StatusCode::OK);
    assert_eq!(
        elsewhere.get("/account").await.status(),
        StatusCode::SEE_OTHER
    );
    let fresh = Browser::new(&s.base);
    assert_eq!(
        fresh.login("admin", &s.admin_password).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        fresh.login("admin", "a new long passphrase").await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn behind_tls_cookies_are_secure_and_host_only() {
    let s = TestServer::start_with(Config {
        public_url: "https://cert.example".into(),
        ..Config::default()
    })
    .await;
    let b = Browser::new(&s.base);
    let (_, html) = b.page("/login").await;
    let csrf = csrf_of(&html);
    // The browser would hold the login cookie; send it by hand since this test speaks plain HTTP.
    let r = s
        .anonymous()
        .client
        .post(s.url("/login"))
        .header("cookie", format!("__Host-qalxan_login={csrf}"))
        .form(&[
            ("username", "admin"),
            ("password", s.admin_password.as_str()),
            ("csrf", &csrf),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookies = set_cookies(&r);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-qalxan_session="))
        .expect("secure cookie");
    assert!(
        session.contains("; Secure")
            && session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
    );
    assert!(r.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
}

#[tokio::test]
async fn institution_staff_see_only_their_institution() {
    let s = TestServer::start().await;
    let a = s.institution("Alpha Ministry").await;
    let b_id = s.institution("Beta Agency").await;
    let admin = s.api(&s.token(Role::Admin, None).await);
    let (_, created) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "aysel", "role": "institution", "institution_id": a.0}),
        )
        .await;
    let b = s
        .browser("aysel", created["password"].as_str().unwrap())
        .await;
    let (status, html) = b.page("/institutions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Alpha Ministry") && !html.contains("Beta Agency"));
    assert!(
        !html.contains("New institution"),
        "institution staff cannot create institutions"
    );
    let (status, _) = b.page(&format!("/institutions/{}", b_id.0)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = b.page(&format!("/institutions/{}", a.0)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = b.page("/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = b.page("/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, html) = b.page("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Alpha Ministry"),
        "the overview names the institution"
    );
    assert!(!html.contains(r#"href="/users""#), "no admin links");
    let r = b
        .submit(
            &format!("/institutions/{}", a.0),
            &format!("/institutions/{}", a.0),
            &[("name", "Renamed")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let direct = TestServer::start().await;
    let admin = direct.api(&direct.token(Role::Admin, None).await);
    admin
        .request(Method::POST, "/api/v1/institutions")
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"name": "Spoofed"}))
        .send()
        .await
        .unwrap();
    let (_, audit) = admin.get("/api/v1/audit?object_type=institution").await;
    assert_eq!(audit["items"][0]["ip"], "127.0.0.1");

    let proxied = TestServer::start_with(Config {
        trusted_proxies: vec!["127.0.0.1".into()],
        ..Config::default()
    })
    .await;
    let admin = proxied.api(&proxied.token(Role::Admin, None).await);
    admin
        .request(Method::POST, "/api/v1/institutions")
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
        .json(&json!({"name": "Forwarded"}))
        .send()
        .await
        .unwrap();
    let (_, audit) = admin.get("/api/v1/audit?object_type=institution").await;
    assert_eq!(audit["items"][0]["ip"], "203.0.113.9");
}

#[tokio::test]
async fn secrets_are_shown_once_on_the_admin_pages() {
    let s = TestServer::start().await;
    let b = s.admin_browser().await;
    let r = b
        .submit(
            "/tokens",
            "/tokens",
            &[
                ("name", "gateway-1"),
                ("role", "sensor"),
                ("institution_id", ""),
                ("expires_days", "30"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let start = html.find("<code data-secret>").expect("secret shown") + "<code data-secret>".len();
    let secret = &html[start..start + 46];
    assert!(secret.starts_with("qx_"));
    let (_, list) = b.page("/tokens").await;
    assert!(list.contains("gateway-1") && !list.contains(secret));
    let (status, me) = s.api(secret).get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "gateway-1");

    let r = b
        .submit(
            "/users",
            "/users",
            &[
                ("username", "leyla"),
                ("role", "analyst"),
                ("institution_id", ""),
                ("display_name", "Leyla"),
                ("email", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let start =
        html.find("<code data-secret>").expect("password shown") + "<code data-secret>".len();
    let end = html[start..].find('<').unwrap() + start;
    let password = &html[start..end];
    let leyla = Browser::new(&s.base);
    assert_eq!(
        leyla.login("leyla", password).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, users) = b.page("/users").await;
    assert!(!users.contains(password));

    let (status, audit) = b.page("/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(audit.contains("api_token") && audit.contains("user:admin"));
    assert!(!audit.contains(secret) && !audit.contains(password));
}
