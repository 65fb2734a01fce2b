//! Test harness: a real server on a random port over a fresh database (SQLite, or PostgreSQL
//! when `QALXAN_TEST_DATABASE_URL` is set), and a cookie-keeping client that logs in like a
//! browser.

#![allow(dead_code)]

use qalxan_core::{InstitutionFields, InstitutionId, Role};
use qalxan_server::api::tokens::{issue_token, TokenCreate};
use qalxan_server::{AppState, Config};
use qalxan_store::testing::TestDb;
use qalxan_store::Actor;
use reqwest::redirect::Policy;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

pub struct TestServer {
    pub db: TestDb,
    pub base: String,
    pub admin_password: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        let db = TestDb::new().await.expect("test database");
        let admin_password = qalxan_server::bootstrap_admin(&db.store)
            .await
            .expect("bootstrap")
            .expect("a fresh store gets an admin");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = AppState::new(db.store.clone(), config).expect("state");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(qalxan_server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        TestServer {
            db,
            base,
            admin_password,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A new API token with `role`, created as the CLI would.
    pub async fn token(&self, role: Role, institution: Option<InstitutionId>) -> String {
        issue_token(
            &self.db.store,
            &Actor::cli(),
            TokenCreate {
                name: format!("{role}-token"),
                role,
                institution_id: institution,
                expires_at: None,
            },
        )
        .await
        .expect("token")
        .secret
    }

    pub async fn institution(&self, name: &str) -> InstitutionId {
        self.db
            .store
            .create_institution(
                &Actor::cli(),
                InstitutionFields {
                    name: name.into(),
                    ..Default::default()
                },
            )
            .await
            .expect("institution")
            .id
    }

    /// An API client that sends `token`.
    pub fn api(&self, token: &str) -> Api {
        Api {
            client: plain_client(),
            base: self.base.clone(),
            token: Some(token.to_owned()),
        }
    }

    pub fn anonymous(&self) -> Api {
        Api {
            client: plain_client(),
            base: self.base.clone(),
            token: None,
        }
    }

    /// A browser-like client, logged in through the login page.
    pub async fn browser(&self, username: &str, password: &str) -> Browser {
        let browser = Browser::new(&self.base);
        let response = browser.login(username, password).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "login of {username} failed"
        );
        browser
    }

    pub async fn admin_browser(&self) -> Browser {
        self.browser("admin", &self.admin_password.clone()).await
    }
}

fn plain_client() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

pub struct Api {
    pub client: Client,
    pub base: String,
    pub token: Option<String>,
}

impl Api {
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        read(
            self.request(reqwest::Method::GET, path)
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        read(
            self.request(method, path)
                .json(body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, body).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        read(
            self.request(reqwest::Method::DELETE, path)
                .send()
                .await
                .expect("DELETE"),
        )
        .await
    }
}

/// Status and JSON body; an empty body reads as `null`. Error bodies must be problem documents.
pub async fn read(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(content_type, "application/problem+json", "{status} {body}");
        assert_eq!(body["status"], status.as_u16(), "{body}");
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:qalxan:problem:")),
            "{body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    (status, body)
}

pub struct Browser {
    pub client: Client,
    pub base: String,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            client: Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .build()
                .expect("client"),
            base: base.to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    pub async fn page(&self, path: &str) -> (StatusCode, String) {
        let r = self.get(path).await;
        let status = r.status();
        (status, r.text().await.expect("text"))
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        let (_, html) = self.page("/login").await;
        let csrf = csrf_of(&html);
        self.post_form(
            "/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/"),
            ],
        )
        .await
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .expect("POST")
    }

    /// Posts a form with the CSRF token taken from `page_path`, as a browser submitting it would.
    pub async fn submit(&self, page_path: &str, action: &str, form: &[(&str, &str)]) -> Response {
        let (status, html) = self.page(page_path).await;
        assert_eq!(status, StatusCode::OK, "{page_path}: {html}");
        let csrf = csrf_of(&html);
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("csrf", &csrf));
        self.post_form(action, &fields).await
    }

    /// The session's CSRF token, as browser scripts get it.
    pub async fn csrf(&self) -> String {
        let r = self.get("/api/v1/me").await;
        let me: Value = r.json().await.expect("me");
        me["csrf_token"].as_str().expect("csrf token").to_owned()
    }
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF field in page: {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("end of value") + start;
    html[start..end].to_owned()
}
