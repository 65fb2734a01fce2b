//! The HTTP API end to end: a real server over a real database (SQLite, or PostgreSQL with
//! `QALXAN_TEST_DATABASE_URL`), called over HTTP.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap should fail loudly.

mod common;

use common::TestServer;
use qalxan_core::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn probes_and_openapi() {
    let s = TestServer::start().await;
    let anon = s.anonymous();
    let r = anon.request(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = anon.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let (status, doc) = anon.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/v1/institutions",
        "/api/v1/institutions/{id}",
        "/api/v1/events",
        "/api/v1/overview",
        "/api/v1/users",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/api/v1/me",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["InstitutionFields"].is_object());

    let (status, body) = anon.get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn tokens_authenticate_and_can_be_revoked() {
    let s = TestServer::start().await;
    let (status, _) = s.anonymous().get("/api/v1/institutions").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = s
        .api("qx_not-a-real-token")
        .get("/api/v1/institutions")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("unknown, expired or revoked"));
    let r = s
        .anonymous()
        .request(Method::GET, "/api/v1/me")
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let admin = s.api(&s.token(Role::Admin, None).await);
    let (status, created) = admin
        .post("/api/v1/tokens", &json!({"name": "gw-1", "role": "sensor"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("qx_"));
    let sensor = s.api(secret);
    let (status, me) = sensor.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "sensor");
    assert_eq!(me["kind"], "token");

    // The secret is nowhere in the listing or the audit trail, only its hash is stored.
    let (_, list) = admin.get("/api/v1/tokens").await;
    assert!(!list.to_string().contains(secret));
    let (_, audit) = admin.get("/api/v1/audit?object_type=api_token").await;
    assert!(!audit.to_string().contains(secret));

    let id = created["token"]["id"].as_i64().unwrap();
    let (status, revoked) = admin.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    let (status, _) = sensor.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn institutions_crud_with_validation_and_audit() {
    let s = TestServer::start().await;
    let admin = s.api(&s.token(Role::Admin, None).await);
    let (status, created) = admin
        .post(
            "/api/v1/institutions",
            &json!({
                "name": "Ministry of Health",
                "sector": "Health",
                "contact_email": "soc@health.example",
                "domains": ["Health.Example", "bücher.example"],
                "ip_ranges": ["192.0.2.7/24"]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["domains"],
        json!(["health.example", "xn--bcher-kva.example"])
    );
    assert_eq!(created["ip_ranges"], json!(["192.0.2.0/24"]));
    let id = created["id"].as_i64().unwrap();

    let (status, body) = admin
        .post(
            "/api/v1/institutions",
            &json!({"name": "ministry OF health"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, body) = admin
        .post(
            "/api/v1/institutions",
            &json!({"name": "Bank", "ip_ranges": ["10.0.0.0/8", "nope"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "ip_ranges[1]");

    let (status, body) = admin
        .post(
            "/api/v1/institutions",
            &json!({"name": "Bank", "colour": "blue"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{body}"
    );

    let (status, body) = admin
        .post("/api/v1/institutions", &json!({"sector": "x"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("missing field `name`"),
        "{body}"
    );

    let r = admin
        .request(Method::POST, "/api/v1/institutions")
        .header("content-type", "application/json")
        .body("{\"name\": \"Bank\",")
        .send()
        .await
        .unwrap();
    let (status, body) = common::read(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("line 1"),
        "{body}"
    );

    let r = admin
        .request(Method::POST, "/api/v1/institutions")
        .header("content-type", "text/plain")
        .body("name=Bank")
        .send()
        .await
        .unwrap();
    assert_eq!(common::read(r).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = "x".repeat(3 * 1024 * 1024);
    let (status, _) = admin
        .post(
            "/api/v1/institutions",
            &json!({"name": "Bank", "notes": huge}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, updated) = admin
        .patch(
            &format!("/api/v1/institutions/{id}"),
            &json!({"contact_phone": "+994 12 000 00 00"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["contact_phone"], "+994 12 000 00 00");
    assert_eq!(updated["domains"], created["domains"]);

    let (status, _) = admin.get("/api/v1/institutions/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin.get("/api/v1/institutions/abc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, audit) = admin
        .get(&format!(
            "/api/v1/audit?object_type=institution&object_id={id}"
        ))
        .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{audit}");
    assert_eq!(items[0]["action"], "update");
    assert_eq!(items[0]["actor"], "token:admin-token");
    assert_eq!(items[0]["ip"], "127.0.0.1");
    assert_eq!(items[0]["before"]["contact_phone"], "");
    assert_eq!(items[0]["after"]["contact_phone"], "+994 12 000 00 00");

    let (status, _) = admin.delete(&format!("/api/v1/institutions/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = admin.get(&format!("/api/v1/institutions/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, audit) = admin
        .get("/api/v1/audit?object_type=institution&limit=1")
        .await;
    assert_eq!(audit["items"][0]["action"], "delete");
    assert!(audit["items"][0]["after"].is_null());
    assert_eq!(audit["next_before"], audit["items"][0]["id"]);
}

#[tokio::test]
async fn the_audit_trail_cannot_be_changed_through_the_api() {
    let s = TestServer::start().await;
    let admin = s.api(&s.token(Role::Admin, None).await);
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let r = admin
            .request(method.clone(), "/api/v1/audit")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test]
async fn institutions_see_only_their_own_data() {
    let s = TestServer::start().await;
    let a = s.institution("Alpha Ministry").await;
    let b = s.institution("Beta Agency").await;
    let sensor = s.api(&s.token(Role::Sensor, None).await);
    let (status, body) = sensor
        .post(
            "/api/v1/events",
            &json!({"events": [
                {"kind": "waf.blocked", "institution_id": a.0, "count": 3},
                {"kind": "waf.blocked", "institution_id": b.0, "count": 40},
                {"kind": "scan.infected"}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let alpha = s.api(&s.token(Role::Institution, Some(a)).await);
    let (status, list) = alpha.get("/api/v1/institutions").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, [json!("Alpha Ministry")]);
    let (status, _) = alpha.get(&format!("/api/v1/institutions/{}", a.0)).await;
    assert_eq!(status, StatusCode::OK);
    // Another institution's object does not exist as far as this caller can tell.
    let (status, body) = alpha.get(&format!("/api/v1/institutions/{}", b.0)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "institution not found");
    let (status, _) = alpha
        .patch(
            &format!("/api/v1/institutions/{}", b.0),
            &json!({"notes": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = alpha
        .patch(
            &format!("/api/v1/institutions/{}", a.0),
            &json!({"notes": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (_, events) = alpha.get("/api/v1/events").await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events}");
    assert_eq!(items[0]["institution_id"], a.0);
    let (_, events) = alpha
        .get(&format!("/api/v1/events?institution_id={}", b.0))
        .await;
    assert!(events["items"].as_array().unwrap().is_empty());

    let (_, overview) = alpha.get("/api/v1/overview?period=24h").await;
    assert_eq!(overview["series"][0]["kind"], "waf.blocked");
    assert_eq!(overview["series"][0]["total"], 3);
    let analyst = s.api(&s.token(Role::Analyst, None).await);
    let (_, overview) = analyst.get("/api/v1/overview?period=30d").await;
    assert_eq!(overview["series"][0]["total"], 43);
    assert_eq!(overview["series"][2]["total"], 1);
    assert_eq!(overview["series"][0]["bins"].as_array().unwrap().len(), 30);
}

#[tokio::test]
async fn roles_limit_what_callers_do() {
    let s = TestServer::start().await;
    let researcher = s.api(&s.token(Role::Researcher, None).await);
    let auditor = s.api(&s.token(Role::Auditor, None).await);
    let sensor = s.api(&s.token(Role::Sensor, None).await);
    let analyst = s.api(&s.token(Role::Analyst, None).await);

    assert_eq!(
        researcher.get("/api/v1/institutions").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        researcher.get("/api/v1/overview").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        sensor.get("/api/v1/institutions").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(auditor.get("/api/v1/institutions").await.0, StatusCode::OK);
    assert_eq!(auditor.get("/api/v1/audit").await.0, StatusCode::OK);
    assert_eq!(analyst.get("/api/v1/audit").await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        auditor
            .post("/api/v1/institutions", &json!({"name": "X Corp"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        analyst
            .post("/api/v1/institutions", &json!({"name": "X Corp"}))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        analyst
            .post(
                "/api/v1/users",
                &json!({"username": "eve", "role": "admin"})
            )
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        auditor
            .post(
                "/api/v1/events",
                &json!({"events": [{"kind": "waf.blocked"}]})
            )
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn events_are_checked_and_scoped() {
    let s = TestServer::start().await;
    let a = s.institution("Alpha Ministry").await;
    let b = s.institution("Beta Agency").await;
    let scoped = s.api(&s.token(Role::Sensor, Some(a)).await);

    let an_hour_ago = qalxan_core::format_rfc3339(qalxan_core::now_millis() - 3_600_000);
    let (status, body) = scoped
        .post(
            "/api/v1/events",
            &json!({"events": [{"kind": "ddos.detected", "value": 12000, "severity": "high",
                "occurred_at": an_hour_ago, "attributes": {"target": "portal.alpha.example"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["accepted"], 1);
    let analyst = s.api(&s.token(Role::Analyst, None).await);
    let (_, events) = analyst.get("/api/v1/events?kind=ddos.detected").await;
    let e = &events["items"][0];
    assert_eq!(
        e["institution_id"], a.0,
        "a scoped token reports for its institution"
    );
    assert_eq!(e["source"], "token:sensor-token");
    assert_eq!(e["value"], 12000);
    assert_eq!(e["occurred_at"], an_hour_ago);
    assert_eq!(e["attributes"]["target"], "portal.alpha.example");

    let (status, body) = scoped
        .post(
            "/api/v1/events",
            &json!({"events": [{"kind": "waf.blocked", "institution_id": b.0}]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, body) = scoped
        .post(
            "/api/v1/events",
            &json!({"events": [{"kind": "waf.blocked"}, {"kind": "waf.block"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "events[1].kind");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("unknown event kind 'waf.block'"));

    let (status, body) = scoped
        .post(
            "/api/v1/events",
            &json!({"events": [{"kind": "waf.blocked", "occurred_at": "2999-01-01T00:00:00Z"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "events[0].occurred_at");

    let (status, body) = scoped
        .post(
            "/api/v1/events",
            &json!({"events": [{"kind": "waf.blocked", "count": 0}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "events[0].count");

    // Counts and values are bounded, so sums can never overflow.
    let (status, body) = scoped
        .post(
            "/api/v1/events",
            &json!({"events": [{"kind": "waf.blocked", "count": i64::MAX}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "events[0].count");
    let (status, body) = scoped
        .post(
            "/api/v1/events",
            &json!({"events": [{"kind": "ddos.detected", "value": -5}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "events[0].value");

    let too_many: Vec<_> = (0..1001).map(|_| json!({"kind": "waf.blocked"})).collect();
    let (status, body) = scoped
        .post("/api/v1/events", &json!({"events": too_many}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["detail"].as_str().unwrap().contains("at most 1000"));

    let unscoped = s.api(&s.token(Role::Sensor, None).await);
    let (status, body) = unscoped
        .post(
            "/api/v1/events",
            &json!({"events": [{"kind": "waf.blocked", "institution_id": 424242}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "events[0].institution_id");

    // Refused batches stored nothing.
    let (_, events) = analyst.get("/api/v1/events").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 1);

    let full: Vec<_> = (0..1000)
        .map(|i| json!({"kind": "waf.blocked", "count": i % 3 + 1}))
        .collect();
    let (status, body) = scoped
        .post("/api/v1/events", &json!({"events": full}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["ids"].as_array().unwrap().len(), 1000);
    let (_, overview) = analyst.get("/api/v1/overview").await;
    let expected: i64 = (0..1000).map(|i| i % 3 + 1).sum();
    assert_eq!(overview["series"][0]["total"], expected);
    let (_, page) = analyst.get("/api/v1/events?limit=600").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 600);
    let next = page["next_before"].as_i64().unwrap();
    let (_, page2) = analyst
        .get(&format!("/api/v1/events?limit=600&before={next}"))
        .await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 401);
    assert!(page2["next_before"].is_null());
}

#[tokio::test]
async fn metrics_need_staff_and_count_events() {
    let s = TestServer::start().await;
    let r = s
        .anonymous()
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let sensor = s.api(&s.token(Role::Sensor, None).await);
    let r = sensor
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    sensor
        .post(
            "/api/v1/events",
            &json!({"events": [{"kind": "scan.infected", "count": 7}]}),
        )
        .await;
    let admin = s.api(&s.token(Role::Admin, None).await);
    let r = admin.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert!(
        text.contains(r#"qalxan_events_total{kind="scan.infected"} 7"#),
        "{text}"
    );
    assert!(
        text.contains(r#"qalxan_events_total{kind="waf.blocked"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"qalxan_http_requests_total{method="POST",route="/api/v1/events",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("qalxan_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("qalxan_users 1"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn accounts_are_managed_by_admins() {
    let s = TestServer::start().await;
    let inst = s.institution("Alpha Ministry").await;
    let admin = s.api(&s.token(Role::Admin, None).await);

    let (status, body) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "Rana", "role": "institution"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "institution_id");
    let (status, body) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "rana", "role": "analyst", "password": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "password");

    let (status, created) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "Rana", "role": "institution", "institution_id": inst.0, "email": "rana@alpha.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["user"]["username"], "rana");
    let password = created["password"].as_str().unwrap().to_owned();
    assert!(
        !created["user"].to_string().contains("argon2"),
        "no hash leaves the server"
    );

    let (status, body) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "RANA", "role": "analyst"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let rana = s.browser("rana", &password).await;
    let (status, _) = rana.page("/institutions").await;
    assert_eq!(status, StatusCode::OK);

    let id = created["user"]["id"].as_i64().unwrap();
    let (status, body) = admin
        .patch(&format!("/api/v1/users/{id}"), &json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Disabling ends the account's sessions at once.
    let r = rana.get("/institutions").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        rana.login("rana", &password).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let (_, users) = admin.get("/api/v1/users").await;
    let admin_id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "admin")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, body) = admin
        .patch(
            &format!("/api/v1/users/{admin_id}"),
            &json!({"role": "analyst"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, reset) = admin
        .post(&format!("/api/v1/users/{id}/password"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let new_password = reset["password"].as_str().unwrap();
    assert_ne!(new_password, password);
    let (_, audit) = admin
        .get(&format!("/api/v1/audit?object_type=user&object_id={id}"))
        .await;
    let actions: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(
        actions,
        [json!("password"), json!("update"), json!("create")]
    );
}
