//! Threat intelligence end to end: the `qalxan intel` commands on the shared STIX and MISP
//! material, exports checked by OASIS's `stix2-validator`, the API (imports with preview,
//! matching, the blocklist with its ETag, sightings, TLP limits), and the TAXII server driven by
//! the real `taxii2-client`.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use qalxan_core::Role;
use qalxan_store::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_qalxan");

fn shared(sub: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(sub);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

fn db_args(db: &TestDb) -> Vec<String> {
    let data = db.dir.path().join("data").display().to_string();
    let mut args = vec!["--data".to_owned(), data];
    if db.is_postgres() {
        args.extend(["--database-url".to_owned(), db.url.clone()]);
    }
    args
}

fn qalxan(db: &TestDb, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(db_args(db))
        .args(args)
        .env_remove("QALXAN_CONFIG")
        .output()
        .expect("run qalxan")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn python_has(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping the {module} checks: the Python package is not installed (pip install {module})");
    }
    ok
}

#[test]
fn pattern_check_classifies_every_shared_pattern() {
    let Some(file) = shared("stix/patterns.jsonl") else {
        return;
    };
    for line in std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
    {
        let row: Value = serde_json::from_str(line).unwrap();
        let pattern = row["pattern"].as_str().unwrap();
        let out = Command::new(BIN)
            .args(["intel", "pattern-check", pattern])
            .output()
            .unwrap();
        let valid = row["valid"].as_bool().unwrap();
        assert_eq!(
            out.status.code(),
            Some(if valid { 0 } else { 1 }),
            "{pattern}: {}",
            text(&out)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        if valid {
            assert_eq!(said.trim(), "valid");
        } else {
            assert!(said.starts_with("invalid: column "), "{said}");
        }
    }
}

fn objects_of(path: &Path) -> Vec<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out: Vec<String> = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn cli_imports_exports_and_round_trips() {
    let (Some(bundles), Some(misp)) = (shared("stix/bundles"), shared("misp")) else {
        return;
    };
    let db = TestDb::new().await.unwrap();
    let event = misp.join("existing_event.json");
    let preview = qalxan(
        &db,
        &["intel", "import", "--preview", event.to_str().unwrap()],
    );
    assert!(preview.status.success(), "{}", text(&preview));
    assert!(
        text(&preview).contains("would add 81 new"),
        "{}",
        text(&preview)
    );
    let out = qalxan(
        &db,
        &[
            "intel",
            "import",
            bundles.to_str().unwrap(),
            event.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("poisonivy.json: 44 added"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("LICENSE"),
        "folders import feeds' files only"
    );
    // A domain of the MISP event is known, with the event's organisation as its source.
    let ev: Value = serde_json::from_slice(&std::fs::read(&event).unwrap()).unwrap();
    let ev = ev.get("Event").unwrap_or(&ev);
    let domain = ev["Attribute"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "domain")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_lowercase();
    let m = qalxan(&db, &["intel", "match", "--json", &domain]);
    assert_eq!(m.status.code(), Some(0), "{}", text(&m));
    let v: Value = serde_json::from_slice(&m.stdout).unwrap();
    assert_eq!(v["matches"][0]["value"], domain.as_str());
    assert_eq!(v["matches"][0]["sources"][0], ev["Orgc"]["name"], "{v}");
    let none = qalxan(&db, &["intel", "match", "nothing.example"]);
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    let lists = qalxan(&db, &["intel", "lists"]);
    let lists_text = String::from_utf8_lossy(&lists.stdout).to_string();
    assert!(
        lists_text.starts_with("# qalxan-lists 1 version="),
        "{lists_text}"
    );
    assert!(
        !lists_text.contains("ipv4 10.0.0.0\n"),
        "warninglisted values stay out of the blocklist"
    );
    let domain = lists_text
        .lines()
        .find(|l| l.starts_with("domain "))
        .map(|l| l.trim_start_matches("domain ").to_owned())
        .expect("a blocking domain");
    let hit = qalxan(&db, &["intel", "match", &format!("http://a.{domain}/x")]);
    assert_eq!(hit.status.code(), Some(0), "{}", text(&hit));
    assert!(text(&hit).contains(" blocking "), "{}", text(&hit));

    // A log's values against the blocklist: the store's, and the text form a gateway pulls.
    let work = tempfile::tempdir().unwrap();
    let values = work.path().join("values.txt");
    let listed = lists_text
        .lines()
        .find(|l| {
            ["ipv4 ", "md5 ", "sha1 ", "sha256 "]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .expect("an address or a hash")
        .split_once(' ')
        .unwrap()
        .1
        .to_owned();
    std::fs::write(
        &values,
        format!(
            "# proxy log extract\nnothing.example\nhttps://cdn.{domain}/login\nthis is no indicator\n\n{listed}\n198.51.100.200\n"
        ),
    )
    .unwrap();
    let lists_file = work.path().join("lists.txt");
    std::fs::write(&lists_file, &lists_text).unwrap();
    for extra in [vec![], vec!["--lists", lists_file.to_str().unwrap()]] {
        let mut args = vec!["intel", "check", values.to_str().unwrap()];
        args.extend(extra);
        let out = qalxan(&db, &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let blocked: Vec<&str> = stdout.lines().collect();
        assert_eq!(blocked.len(), 2, "{}", text(&out));
        assert!(
            blocked[0].starts_with("url ") && blocked[0].contains(&domain),
            "{stdout}"
        );
        assert!(blocked[1].ends_with(&format!(" {listed}")), "{stdout}");
        assert!(
            text(&out).contains("5 values checked") && text(&out).contains("2 blocked, 1 not"),
            "{}",
            text(&out)
        );
    }
    std::fs::write(&values, "nothing.example\n").unwrap();
    let out = qalxan(&db, &["intel", "check", values.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = qalxan(&db, &["intel", "check", "/nonexistent/values.txt"]);
    assert!(
        text(&out).contains("/nonexistent/values.txt"),
        "{}",
        text(&out)
    );

    let first = work.path().join("first.json");
    let out = qalxan(
        &db,
        &[
            "intel",
            "export",
            "--format",
            "stix",
            "-o",
            first.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let first_objects = objects_of(&first);
    assert!(
        first_objects.len() > 300,
        "{} objects exported",
        first_objects.len()
    );
    // Importing the export elsewhere and exporting again gives the same objects.
    let db2 = TestDb::new().await.unwrap();
    let out = qalxan(&db2, &["intel", "import", first.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let second = work.path().join("second.json");
    assert!(
        qalxan(&db2, &["intel", "export", "-o", second.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(
        first_objects,
        objects_of(&second),
        "round trip changed the objects"
    );

    let validator = Command::new("sh")
        .args(["-c", "command -v stix2_validator"])
        .output();
    if validator.is_ok_and(|o| o.status.success()) {
        let v = Command::new("stix2_validator")
            .arg(&first)
            .output()
            .unwrap();
        let report = text(&v);
        assert!(
            report.contains("STIX JSON: Valid") && !report.contains("[X]"),
            "{report}"
        );
    } else {
        eprintln!(
            "skipping the stix2-validator check: not installed (pip install stix2-validator)"
        );
    }

    for (format, needle) in [("misp", "\"Attribute\""), ("csv", "type,value,tlp")] {
        let out = qalxan(&db, &["intel", "export", "--format", format]);
        assert!(
            out.status.success() && text(&out).contains(needle),
            "{format}: {}",
            text(&out)
        );
    }
    let bad = qalxan(
        &db,
        &[
            "intel",
            "import",
            misp.join("sighting.json").to_str().unwrap(),
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains("not a STIX bundle or a MISP event"),
        "{}",
        text(&bad)
    );
}

async fn import(api: &common::Api, body: &[u8], query: &str) -> (StatusCode, Value) {
    common::read(
        api.request(
            reqwest::Method::POST,
            &format!("/api/v1/intel/import{query}"),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap(),
    )
    .await
}

#[tokio::test]
async fn api_and_taxii() {
    let server = TestServer::start().await;
    let analyst = server.api(&server.token(Role::Analyst, None).await);
    let admin = server.api(&server.token(Role::Admin, None).await);
    let sensor = server.api(&server.token(Role::Sensor, None).await);
    let partner_a = server.institution("Partner CERT A").await;
    let partner_b = server.institution("Partner CERT B").await;
    let partner_token = server.token(Role::Institution, Some(partner_a)).await;
    let partner = server.api(&partner_token);

    // A plain list previews, then imports; an institution may not import.
    let list = b"# feed\n203.0.113.250\nphish-bank.example\nhxxp://login.phish-bank[.]example/x\n8.8.8.8\n";
    let (status, preview) = import(&analyst, list, "?preview=true&tlp=green&source=feed-x").await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(
        (preview["added"].as_u64(), preview["warninglisted"].as_u64()),
        (Some(4), Some(2)),
        "{preview}"
    );
    let (status, _) = import(&partner, list, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, done) = import(&analyst, list, "?tlp=green&source=feed-x&name=feed.txt").await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["added"], 4);
    let (_, again) = import(&analyst, list, "?preview=true").await;
    assert_eq!(
        (again["added"].as_u64(), again["updated"].as_u64()),
        (Some(0), Some(4))
    );
    let (status, err) = import(
        &analyst,
        b"{\"type\": \"bundle\", \"objects\": [{\"type\": \"indicator\"}]}",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["field"], "objects[0].id", "{err}");

    // A TLP:RED indicator is for the CERT only.
    let (status, red) = analyst
        .post(
            "/api/v1/intel/indicators",
            &json!({"value": "+994 50 555 12 34", "tlp": "red", "tags": ["fraud-call"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{red}");
    assert_eq!(red["indicator"]["kind"], "phone");
    let red_id = red["indicator"]["id"].as_i64().unwrap();
    let (status, _) = partner
        .get(&format!("/api/v1/intel/indicators/{red_id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, seen) = partner.get("/api/v1/intel/indicators?limit=100").await;
    assert!(
        seen["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["tlp"] == "TLP:CLEAR" || i["tlp"] == "TLP:GREEN"),
        "{seen}"
    );
    let (status, e) = analyst
        .post(
            "/api/v1/intel/indicators",
            &json!({"type": "md5", "value": "abc"}),
        )
        .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("value"))
    );

    // Match covers parent domains; the sensor reports a sighting.
    let (_, m) = analyst
        .get("/api/v1/intel/match?value=https://login.phish-bank.example/y")
        .await;
    assert_eq!(m["blocked"], true, "{m}");
    let (status, s) = sensor
        .post(
            "/api/v1/intel/sightings",
            &json!({"value": "a.phish-bank.example", "count": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    let id = s["indicator_id"].as_i64().unwrap();
    let (_, detail) = analyst.get(&format!("/api/v1/intel/indicators/{id}")).await;
    assert_eq!(detail["indicator"]["sightings"], 7);
    assert_eq!(detail["sightings"][0]["sensor"], "token:sensor-token");

    // The blocklist: ETag, 304, and a change when an indicator is forced or expired.
    let lists = |etag: Option<String>| {
        let mut r = sensor.request(reqwest::Method::GET, "/api/v1/intel/lists");
        if let Some(e) = etag {
            r = r.header("If-None-Match", e);
        }
        r.send()
    };
    let first = lists(None).await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let body = first.text().await.unwrap();
    assert!(
        body.contains("domain phish-bank.example\n") && !body.contains("8.8.8.8"),
        "{body}"
    );
    assert_eq!(
        lists(Some(etag.clone())).await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );
    let (_, dns) = analyst.get("/api/v1/intel/match?value=8.8.8.8").await;
    let dns_id = dns["matches"][0]["id"].as_i64().unwrap();
    let (status, forced) = analyst
        .patch(
            &format!("/api/v1/intel/indicators/{dns_id}"),
            &json!({"blocking": true}),
        )
        .await;
    assert_eq!(
        (status, forced["blocking"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let changed = lists(Some(etag)).await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert!(changed.text().await.unwrap().contains("ipv4 8.8.8.8\n"));
    let (status, _) = partner.get("/api/v1/intel/lists").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (_, p) = analyst
        .post(
            "/api/v1/intel/pattern-check",
            &json!({"pattern": "[domain-name:value = 'a.example'] AND"}),
        )
        .await;
    assert_eq!(
        (p["valid"].as_bool(), p["column"].as_u64()),
        (Some(false), Some(38)),
        "{p}"
    );

    // Exports respect TLP: a partner's never holds the RED phone number.
    let export = partner
        .request(reqwest::Method::GET, "/api/v1/intel/export?format=csv")
        .send()
        .await
        .unwrap();
    let csv = export.text().await.unwrap();
    assert!(
        csv.contains("phish-bank.example") && !csv.contains("+994505551234"),
        "{csv}"
    );

    // TAXII: partner exchange collections, then the real client.
    let (status, inbox) = admin
        .post("/api/v1/intel/collections", &json!({"title": "Partner A exchange", "audience": "institution", "institution_id": partner_a.0, "max_tlp": "amber"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inbox}");
    let (_, other) = admin
        .post("/api/v1/intel/collections", &json!({"title": "Partner B exchange", "audience": "institution", "institution_id": partner_b.0}))
        .await;
    let (status, _) = analyst
        .post(
            "/api/v1/intel/collections",
            &json!({"title": "x", "audience": "all"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins add collections");
    if let Some(bundles) = shared("stix/bundles") {
        let (status, r) = import(
            &analyst,
            &std::fs::read(bundles.join("apt1.json")).unwrap(),
            "?tlp=red",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{r}");
    }
    let mut unauth = server
        .anonymous()
        .request(reqwest::Method::GET, "/taxii2/")
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unauth.headers()["content-type"],
        "application/taxii+json;version=2.1"
    );
    let e: Value = unauth.json().await.unwrap();
    assert_eq!(e["http_status"], "401");
    unauth = partner
        .request(reqwest::Method::GET, "/taxii2/")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), StatusCode::NOT_ACCEPTABLE);

    if !python_has("taxii2client") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("partner.json");
    std::fs::write(
        &bundle,
        json!({"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": [
            {"type": "indicator", "spec_version": "2.1", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
             "created": "2026-11-01T10:00:00.000Z", "modified": "2026-11-01T10:00:00.000Z",
             "name": "Phishing kit host", "description": "Seen by partner A", "indicator_types": ["malicious-activity"],
             "pattern": "[domain-name:value = 'kit.partner-seen.example']", "pattern_type": "stix",
             "valid_from": "2026-11-01T10:00:00Z",
             "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"]},
            {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "198.51.100.3"}
        ]})
        .to_string(),
    )
    .unwrap();
    let config = work.path().join("taxii.json");
    std::fs::write(
        &config,
        json!({
            "base": server.base, "analyst": analyst.token, "partner": partner_token,
            "cert": qalxan_store::CERT_COLLECTION, "shared": qalxan_store::SHARED_COLLECTION,
            "partner_inbox": inbox["id"], "other_inbox": other["id"], "bundle": bundle,
        })
        .to_string(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/taxii/client_check.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(&config)
        .output()
        .await
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // What the partner posted is intelligence now, not blocking until reviewed.
    let (_, m) = analyst
        .get("/api/v1/intel/match?value=kit.partner-seen.example")
        .await;
    assert_eq!(m["matches"][0]["blocking"], false, "{m}");
    assert_eq!(m["matches"][0]["sources"][0], "taxii:institution-token");
}

#[tokio::test]
async fn intelligence_pages() {
    let server = TestServer::start().await;
    let browser = server.admin_browser().await;
    let (status, html) = browser.page("/intel").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Threat intelligence") && html.contains("href=\"/intel\""));
    let csrf = common::csrf_of(&html);
    let post = |form: reqwest::multipart::Form| {
        browser
            .client
            .post(server.url("/intel/import"))
            .multipart(form)
            .send()
    };

    // Pasted values: a preview first (nothing stored), then the import.
    let values = "evil-<b>bank</b>.example\n45.9.148.3\n8.8.8.8\nnot a value\n";
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("values", values.replace("<b>", "").replace("</b>", ""))
        .text("tlp", "TLP:GREEN")
        .text("source", "partner mail")
        .text("step", "preview");
    let r = post(form).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let preview = r.text().await.unwrap();
    assert!(preview.contains("data-preview-added=\"3\""), "{preview}");
    assert!(
        preview.contains("public-dns-resolvers") && preview.contains("1 not imported"),
        "{preview}"
    );
    let (_, listed) = browser.page("/intel").await;
    assert!(
        listed.contains("No indicator matches"),
        "the preview stored nothing"
    );
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("values", "evil-bank.example\n45.9.148.3\n8.8.8.8\n")
        .text("tlp", "TLP:GREEN")
        .text("source", "partner mail")
        .text("step", "import");
    let r = post(form).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let (_, html) = browser.page(&location).await;
    assert!(html.contains("Imported: 3 new indicators"), "{html}");
    assert!(html.contains("evil-bank.example") && html.contains("partner mail"));

    // Search, then the detail page, then force the warninglisted resolver to block.
    let (_, found) = browser.page("/intel?q=8.8&type=ipv4").await;
    assert!(
        found.contains("8.8.8.8") && !found.contains("evil-bank.example"),
        "{found}"
    );
    let id = found
        .split("href=\"/intel/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let (status, detail) = browser.page(&format!("/intel/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        detail.contains("data-blocking=\"false\"") && detail.contains("public-dns-resolvers"),
        "{detail}"
    );
    let r = browser
        .submit(
            &format!("/intel/{id}"),
            &format!("/intel/{id}"),
            &[("blocking", "true"), ("tlp", "TLP:AMBER")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, detail) = browser.page(&format!("/intel/{id}")).await;
    assert!(
        detail.contains("data-blocking=\"true\"") && detail.contains("TLP:AMBER"),
        "{detail}"
    );
    // Without the CSRF token nothing changes.
    let r = browser
        .post_form(&format!("/intel/{id}"), &[("blocking", "false")])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(
        reqwest::multipart::Form::new()
            .text("values", "x.example")
            .text("step", "import"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, html) = browser.page("/intel?type=nonsense").await;
    assert!(html.contains("unknown indicator type"), "{html}");
}

#[tokio::test]
async fn configured_feeds_are_pulled_by_the_server() {
    // A partner CERT running Qalxan, sharing a TLP:GREEN indicator over TAXII.
    let partner = TestServer::start().await;
    let partner_admin = partner.api(&partner.token(Role::Admin, None).await);
    let (s, body) = partner_admin
        .post(
            "/api/v1/intel/indicators",
            &json!({"value": "partner-c2.example", "tlp": "TLP:GREEN"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let us = partner.institution("Our CERT").await;
    let token_env = format!("QALXAN_TEST_PARTNER_TOKEN_{}", std::process::id());
    // The only environment variable this test binary sets; the feed reads it at each pull.
    std::env::set_var(&token_env, partner.token(Role::Institution, Some(us)).await);

    // A MISP feed (manifest.json and its event) and a plain list, over HTTP.
    let uuid = "5b0c3a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
    let event = json!({"Event": {"uuid": uuid, "info": "Phishing kit", "Attribute": [
        {"type": "domain", "category": "Network activity", "to_ids": true, "value": "misp-feed.example"}]}});
    let manifest = json!({uuid: {"info": "Phishing kit", "timestamp": "1700000000"}});
    let app = axum::Router::new()
        .route(
            "/feed/manifest.json",
            axum::routing::get(move || async move { axum::Json(manifest) }),
        )
        .route(
            &format!("/feed/{uuid}.json"),
            axum::routing::get(move || async move { axum::Json(event) }),
        )
        .route(
            "/list.txt",
            axum::routing::get(|| async { "203.0.113.99\n# a comment\n" }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let files = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let feeds: Vec<qalxan_server::feeds::Feed> = serde_json::from_value(json!([
        {"name": "partner", "kind": "taxii", "url": partner.url("/taxii2/api/"),
         "collection": qalxan_store::SHARED_COLLECTION, "token_env": token_env},
        {"name": "misp", "kind": "url", "url": format!("{files}/feed/manifest.json"), "tlp": "green"},
        {"name": "list", "kind": "url", "url": format!("{files}/list.txt")},
    ]))
    .unwrap();
    let server = TestServer::start_with(qalxan_server::Config {
        intel_feeds: feeds,
        ..Default::default()
    })
    .await;
    let api = server.api(&server.token(Role::Admin, None).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut statuses = Value::Null;
    while std::time::Instant::now() < deadline {
        statuses = api.get("/api/v1/intel/feeds").await.1;
        if statuses
            .as_array()
            .is_some_and(|a| a.iter().all(|f| f["pulls"].as_u64() >= Some(1)))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for f in statuses.as_array().unwrap() {
        assert_eq!(f["last_error"], Value::Null, "{f}");
        assert!(f["last"]["added"].as_u64() >= Some(1), "{f}");
    }
    for (value, source) in [
        ("partner-c2.example", "partner"),
        ("misp-feed.example", "misp"),
        ("203.0.113.99", "list"),
    ] {
        let (s, m) = api.get(&format!("/api/v1/intel/match?value={value}")).await;
        assert_eq!(s, StatusCode::OK, "{m}");
        assert!(m.to_string().contains(source), "{value} from {source}: {m}");
    }
}

/// A phishing message as a mail server would hand it over.
const PHISH_EML: &str = "Return-Path: <bounce@mailer.bad-bank.example>\r\n\
Received: from mx.bad-bank.example (mx.bad-bank.example [45.9.148.3])\r\n\
\tby mx.institution.example with ESMTP id 1; Tue, 24 Nov 2026 10:00:00 +0000\r\n\
From: \"Your Bank\" <security@bad-bank.example>\r\n\
Reply-To: collect@drop.example\r\n\
To: clerk@institution.example\r\n\
Subject: Verify your account\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>Please <a href=\"https://login.bad-bank.example/verify?id=1&amp;t=2\">log in</a>.</p>\r\n\
--b1\r\n\
Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n\
Content-Disposition: attachment; filename=\"invoice.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
TVqQAAMAAAAEAAAA\r\n\
--b1--\r\n";

/// The mail part: a message's senders, relays, links and attachments matched against the
/// indicators, each match a sighting, from the API and from `qalxan intel mail`.
#[tokio::test]
async fn mail_observables_become_sightings() {
    let server = TestServer::start().await;
    let analyst = server.api(&server.token(Role::Analyst, None).await);
    let institution = server.institution("Ministry of Examples").await;
    let mailgw = server.api(&server.token(Role::Sensor, Some(institution)).await);
    let auditor = server.api(&server.token(Role::Auditor, None).await);
    let (status, done) = import(
        &analyst,
        b"bad-bank.example\n45.9.148.3\n",
        "?tlp=green&source=phishing-feed",
    )
    .await;
    assert_eq!(
        (status, done["added"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{done}"
    );

    let post = |api: &common::Api, body: &'static [u8]| {
        let r = api
            .request(reqwest::Method::POST, "/api/v1/intel/mail")
            .header("Content-Type", "message/rfc822")
            .body(body);
        async move { common::read(r.send().await.unwrap()).await }
    };
    let (status, check) = post(&mailgw, PHISH_EML.as_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{check}");
    assert_eq!(check["subject"], "Verify your account");
    assert_eq!(check["blocked"], true, "{check}");
    let observables = check["observables"].as_array().unwrap();
    let place_of = |value: &str| {
        observables.iter().find(|o| o["value"] == value).map(|o| {
            (
                o["place"].as_str().unwrap(),
                o["indicators"].as_array().unwrap().len(),
            )
        })
    };
    assert_eq!(
        place_of("security@bad-bank.example"),
        Some(("From", 1)),
        "{check}"
    );
    assert_eq!(place_of("45.9.148.3"), Some(("Received", 1)));
    assert_eq!(place_of("collect@drop.example"), Some(("Reply-To", 0)));
    assert_eq!(place_of("invoice.exe"), Some(("attachment invoice.exe", 0)));
    let link = observables
        .iter()
        .find(|o| o["type"] == "url")
        .unwrap_or_else(|| panic!("no link in {check}"));
    assert!(link["value"].as_str().unwrap().contains("t=2"), "{link}");
    assert_eq!(link["place"], "HTML body");
    let matched: Vec<&str> = check["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(matched.len(), 2, "each indicator once: {matched:?}");

    // Every match was a sighting by the mail gateway, for its institution.
    let domain_id = check["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["value"] == "bad-bank.example")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (_, detail) = analyst
        .get(&format!("/api/v1/intel/indicators/{domain_id}"))
        .await;
    let sightings = &detail["sightings"][0];
    assert_eq!(sightings["sensor"], "token:sensor-token", "{detail}");
    assert_eq!(sightings["institution_id"], institution.0, "{detail}");
    assert_eq!(
        detail["indicator"]["sightings"], 1,
        "one message is one sighting, however many of its parts name the domain"
    );

    // Who may hand over mail, and what is not mail.
    let (status, _) = post(&auditor, PHISH_EML.as_bytes()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an auditor changes nothing");

    // The page: upload through the form (multipart, with the session's CSRF token).
    let browser = server.admin_browser().await;
    let (status, html) = browser.page("/intel/mail").await;
    assert_eq!(status, 200);
    let form = |csrf: Option<String>| {
        let mut f = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(PHISH_EML.as_bytes()).file_name("phish.eml"),
        );
        if let Some(c) = csrf {
            f = f.text("csrf", c);
        }
        f
    };
    let r = browser
        .client
        .post(server.url("/intel/mail"))
        .multipart(form(Some(common::csrf_of(&html))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("2 known indicators in this message"),
        "{html}"
    );
    assert!(html.contains("data-blocked=\"true\""), "{html}");
    assert!(
        html.contains(&format!("href=\"/intel/{domain_id}\"")),
        "{html}"
    );
    assert!(html.contains("attachment invoice.exe"), "{html}");
    let r = browser
        .client
        .post(server.url("/intel/mail"))
        .multipart(form(None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no CSRF token, no check");
    let (status, e) = post(&mailgw, b"").await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("body")),
        "{e}"
    );

    // The CLI on a stored message: the attachment's hash, once it is an indicator, matches.
    let sha256 = observables.iter().find(|o| o["type"] == "sha256").unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = TestDb::new().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("phish.eml");
    std::fs::write(&eml, PHISH_EML).unwrap();
    let none = qalxan(&db, &["intel", "mail", eml.to_str().unwrap()]);
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    let list = dir.path().join("hashes.txt");
    std::fs::write(&list, format!("{sha256}\n")).unwrap();
    let out = qalxan(&db, &["intel", "import", list.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let found = qalxan(&db, &["intel", "mail", eml.to_str().unwrap()]);
    assert_eq!(found.status.code(), Some(0), "{}", text(&found));
    let out = text(&found);
    assert!(out.contains("phish.eml: Verify your account"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(&sha256) && l.contains("(attachment invoice.exe) matches #")),
        "{out}"
    );
    let seen = qalxan(&db, &["intel", "match", &sha256]);
    assert!(text(&seen).contains("sightings: 1"), "{}", text(&seen));
}
