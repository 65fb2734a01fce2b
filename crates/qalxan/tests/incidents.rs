//! Incident response end to end through the API and the pages: alerts from two parts with one
//! key aggregate, promotion opens an incident, a team, a task, observables that become
//! indicators, victims, evidence scanned on upload, closing with a reason, and the periodic
//! report holding exactly the counts put in (Markdown, JSON, and a PDF that Debian's pdftoppm
//! renders). Institution staff get 404 for everything of another institution.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use qalxan_core::{now_millis, Role};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Renders a PDF with pdftoppm and says how many pages it drew; `None` when pdftoppm is absent.
fn rendered_pages(pdf: &[u8]) -> Option<usize> {
    if Command::new("pdftoppm").arg("-v").output().is_err() {
        eprintln!("skipping the PDF rendering check: pdftoppm (poppler-utils) is absent");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new("pdftoppm")
        .args(["-r", "40", "-png"])
        .arg(&file)
        .arg(dir.path().join("page"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pdftoppm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "pdftoppm complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pages = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    Some(pages)
}

/// The text pdftotext reads from a PDF, whitespace collapsed; `None` when it is absent.
fn pdf_text(pdf: &[u8]) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = Command::new("pdftotext")
        .arg(&file)
        .arg("-")
        .output()
        .ok()?;
    // Words as read, one space between them: where lines wrap depends on the font.
    Some(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[tokio::test]
async fn alerts_become_an_incident_and_the_report_counts_them() {
    let server = TestServer::start().await;
    let start = now_millis() - 1;
    let ministry = server.institution("Ministry of Finance").await;
    let agency = server.institution("Tax Agency").await;
    let admin = server.api(&server.token(Role::Admin, None).await);
    let gw1 = server.api(&server.token(Role::Sensor, None).await);
    let gw2 = server.api(&server.token(Role::Analyst, None).await);
    let ministry_staff = server.api(&server.token(Role::Institution, Some(ministry)).await);
    let agency_staff = server.api(&server.token(Role::Institution, Some(agency)).await);

    // Two parts report the same attacker against the same institution: one alert, count 2.
    let alert = json!({"rule": "waf.blocked", "severity": "high", "institution_id": ministry.0,
        "observables": [{"value": "203.0.113.50"}]});
    let (s, first) = gw1
        .post("/api/v1/alerts", &json!({"alerts": [alert]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, second) = gw2
        .post("/api/v1/alerts", &json!({"alerts": [alert]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(
        (first["created"].as_i64(), second["aggregated"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(first["ids"], second["ids"]);
    let alert_id = first["ids"][0].as_i64().unwrap();
    let (_, a) = admin.get(&format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(a["count"], 2);
    assert_eq!(a["sources"].as_array().unwrap().len(), 2);
    assert_eq!(
        a["observables"][0],
        json!({"kind": "ipv4", "value": "203.0.113.50"})
    );

    // Events raise alerts too: two blocks of one address from the gateway are one alert.
    for _ in 0..2 {
        let (s, body) = gw1
            .post("/api/v1/events", &json!({"events": [{"kind": "waf.blocked", "institution_id": ministry.0,
                "severity": "high", "attributes": {"client_ip": "198.51.100.23", "uri": "/login"}}]}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let (_, list) = admin.get("/api/v1/alerts?rule=waf.blocked").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    let from_events = items
        .iter()
        .find(|a| a["id"].as_i64() != Some(alert_id))
        .unwrap();
    assert_eq!(from_events["count"], 2);
    assert_eq!(
        from_events["key"],
        format!("waf.blocked|{}|198.51.100.23", ministry.0)
    );

    // Bad input names the field.
    let (s, p) = gw1
        .post(
            "/api/v1/alerts",
            &json!({"alerts": [{"rule": "x", "observables": [{"type": "ipv4", "value": "no"}]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("alerts[0].observables[0].value"),
        "{p}"
    );

    // Promote: an incident for the ministry, the alert linked, its observable attached.
    let (s, incident) = admin
        .post("/api/v1/alerts/promote", &json!({"alerts": [alert_id],
            "incident": {"title": "Exploitation attempts on the tax portal", "category": "intrusion-attempts/exploit"}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{incident}");
    let id = incident["id"].as_i64().unwrap();
    assert_eq!(incident["status"], "new");
    assert_eq!(incident["severity"], "high");
    assert_eq!(incident["institutions"][0]["id"], ministry.0);
    assert!(incident["sla"]["triage"]["due_at"].as_i64().is_some());
    let (_, a) = admin.get(&format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(
        (a["status"].as_str(), a["incident_id"].as_i64()),
        (Some("promoted"), Some(id))
    );

    // The team: an analyst leads it.
    let (s, created) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "leyla", "role": "analyst", "password": "Correct-Horse-Battery-9"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let analyst_id = created["user"]["id"].as_i64().unwrap();
    let (s, team) = admin
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/incidents/{id}/team"),
            &json!({"lead_user_id": analyst_id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{team}");
    assert_eq!(team[0]["role"], "lead");
    let (s, task) = admin
        .post(
            &format!("/api/v1/incidents/{id}/tasks"),
            &json!({"title": "Patch the portal",
            "owner_user_id": analyst_id, "due_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    assert_eq!(task["owner"], "leyla");

    // An observable goes to threat intelligence as an indicator with the incident's TLP.
    let (s, obs) = admin
        .post(
            &format!("/api/v1/incidents/{id}/observables"),
            &json!({"observables": [{"value": "hxxps://tax-portal-login[.]example/x"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{obs}");
    let url = obs
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "url")
        .unwrap();
    let indicator = url["indicator_id"].as_i64().unwrap();
    let (_, ind) = admin
        .get(&format!("/api/v1/intel/indicators/{indicator}"))
        .await;
    assert_eq!(
        ind["incidents"][0]["id"], id,
        "the indicator knows its incident: {ind}"
    );
    assert_eq!(ind["indicator"]["tlp"], "TLP:AMBER", "the incident's TLP");
    let (_, m) = admin
        .get("/api/v1/intel/match?value=https://tax-portal-login.example/x")
        .await;
    assert!(m.to_string().contains(&format!("incident #{id}")), "{m}");

    // Victims: 4 administrative staff of the ministry, 1 technician of the agency, 7 citizens.
    for body in [
        json!({"kind": "employee", "institution_id": ministry.0, "role": "administrative", "count": 4}),
        json!({"kind": "employee", "institution_id": agency.0, "role": "technical"}),
        json!({"kind": "citizen", "count": 7}),
    ] {
        let (s, v) = admin
            .post(&format!("/api/v1/incidents/{id}/victims"), &body)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    // Evidence is scanned on upload and stored by its SHA-256.
    let response = admin
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/incidents/{id}/evidence?name=dropper.com"),
        )
        .body(EICAR.to_vec())
        .send()
        .await
        .unwrap();
    let (s, ev) = common::read(response).await;
    assert_eq!(s, StatusCode::CREATED, "{ev}");
    assert!(
        ev["scan_result"].as_str().unwrap().contains("Eicar"),
        "{ev}"
    );
    let evidence_path = format!("/api/v1/incidents/{id}/evidence/{}", ev["id"]);
    let bytes = ministry_staff
        .request(reqwest::Method::GET, &evidence_path)
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.status(), StatusCode::OK);
    assert_eq!(bytes.bytes().await.unwrap().as_ref(), EICAR);

    // Institution staff: their own incident they read and comment on; another's is a 404.
    let (s, c) = ministry_staff
        .post(
            &format!("/api/v1/incidents/{id}/comments"),
            &json!({"text": "Passwords reset for 4 staff"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    for path in [
        format!("/api/v1/incidents/{id}"),
        format!("/api/v1/alerts/{alert_id}"),
        evidence_path.clone(),
        format!("/api/v1/incidents/{id}/report"),
    ] {
        let r = agency_staff
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let r = ministry_staff
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let (s, _) = agency_staff
        .post(
            &format!("/api/v1/incidents/{id}/comments"),
            &json!({"text": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, theirs) = agency_staff.get("/api/v1/alerts").await;
    assert_eq!(theirs["items"], json!([]));
    let (s, _) = ministry_staff
        .post(
            &format!("/api/v1/incidents/{id}/status"),
            &json!({"status": "closed", "reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Closing needs a reason.
    let (s, p) = admin
        .post(
            &format!("/api/v1/incidents/{id}/status"),
            &json!({"status": "closed"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (s, closed) = admin
        .post(
            &format!("/api/v1/incidents/{id}/status"),
            &json!({"status": "closed", "reason": "portal patched, accounts reset"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{closed}");
    assert_eq!(closed["status"], "closed");
    let (_, detail) = admin.get(&format!("/api/v1/incidents/{id}")).await;
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    for k in [
        "opened",
        "alert",
        "team",
        "task",
        "observable",
        "victim",
        "evidence",
        "comment",
        "status",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }

    // The periodic report holds exactly what was put in.
    let window = format!(
        "from={}&to={}",
        qalxan_core::format_rfc3339(start),
        qalxan_core::format_rfc3339(now_millis() + 60_000)
    );
    let (s, f) = admin
        .get(&format!("/api/v1/reports/periodic?{window}&format=json"))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(
        (
            f["incidents_opened"].as_i64(),
            f["incidents_closed"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(f["alerts"], 2);
    assert_eq!(
        (f["employees"].as_i64(), f["employee_institutions"].as_i64()),
        (Some(5), Some(2))
    );
    assert_eq!(
        (f["administrative"].as_i64(), f["citizens"].as_i64()),
        (Some(4), Some(7))
    );
    let blocked = f["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x[0] == "Malicious requests blocked")
        .unwrap();
    assert_eq!(blocked[1], 2);
    assert_eq!(f["by_category"], json!([["Intrusion attempts", 1]]));
    let md = admin
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/reports/periodic?{window}&format=md"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        md.contains(
            "5 employees from 2 institutions fell victim, 80 % administrative staff; 7 citizens."
        ),
        "{md}"
    );
    assert!(md.contains("| Malicious requests blocked | 2 |"), "{md}");
    let pdf = admin
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/reports/periodic?{window}&format=pdf"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let pdf = pdf.bytes().await.unwrap();
    if let Some(pages) = rendered_pages(&pdf) {
        assert!(pages >= 1);
        let text = pdf_text(&pdf).unwrap_or_default();
        assert!(
            text.contains("Periodic report") && text.contains("fell victim"),
            "{text}"
        );
    }
    // Scoped to the agency: its one employee, none of the ministry's.
    let (_, scoped) = agency_staff
        .get(&format!("/api/v1/reports/periodic?{window}&format=json"))
        .await;
    assert_eq!(
        (
            scoped["employees"].as_i64(),
            scoped["incidents_opened"].as_i64()
        ),
        (Some(1), Some(0))
    );

    // The incident report for the authorities.
    let incident_pdf = admin
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/incidents/{id}/report?format=pdf"),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    if let Some(pages) = rendered_pages(&incident_pdf) {
        assert!(pages >= 1);
        let text = pdf_text(&incident_pdf).unwrap_or_default();
        assert!(
            text.contains("Exploitation attempts on the tax portal"),
            "{text}"
        );
    }
    let incident_md = admin
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/incidents/{id}/report"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        incident_md.contains("Intrusion attempts / exploit")
            && incident_md.contains("Patch the portal"),
        "{incident_md}"
    );
    let (s, p) = admin
        .get(&format!("/api/v1/incidents/{id}/report?format=docx"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(incident_md.starts_with("**TLP:AMBER**"), "{incident_md}");

    // The report for partners: under the incident's TLP, the indicators and figures, no names.
    let get_text = |path: String| {
        let admin = &admin;
        async move {
            let r = admin
                .request(reqwest::Method::GET, &path)
                .send()
                .await
                .unwrap();
            (r.status(), r.bytes().await.unwrap())
        }
    };
    let (s, partners) = get_text(format!("/api/v1/incidents/{id}/report?audience=partners")).await;
    assert_eq!(s, StatusCode::OK);
    let partners = String::from_utf8(partners.to_vec()).unwrap();
    for shared in [
        "**TLP:AMBER**",
        "Prepared for partners",
        "Intrusion attempts / exploit",
        "https://tax-portal-login.example/x",
        "203.0.113.50",
        ev["sha256"].as_str().unwrap(),
        "| administrative | 4 |",
        "| technical | 1 |",
        "5 employees and 7 citizens",
    ] {
        assert!(partners.contains(shared), "{shared} missing: {partners}");
    }
    for private in [
        "Ministry of Finance",
        "Tax Agency",
        "leyla",
        "Patch the portal",
        "dropper.com",
        "Passwords reset",
    ] {
        assert!(!partners.contains(private), "{private} shared: {partners}");
    }
    let (s, pdf) = get_text(format!(
        "/api/v1/incidents/{id}/report?audience=partners&format=pdf"
    ))
    .await;
    assert_eq!(s, StatusCode::OK);
    if rendered_pages(&pdf).is_some() {
        let text = pdf_text(&pdf).unwrap_or_default();
        assert!(
            text.matches("TLP:AMBER").count() >= 2,
            "the marking heads and foots each page: {text}"
        );
        assert!(!text.contains("Ministry of Finance"), "{text}");
    }
    // Marked TLP:RED, the incident is not shared with partners at all.
    let (s, body) = admin
        .patch(&format!("/api/v1/incidents/{id}"), &json!({"tlp": "red"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, refused) = admin
        .get(&format!("/api/v1/incidents/{id}/report?audience=partners"))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("TLP:RED"),
        "{refused}"
    );
    let (s, bad) = admin
        .get(&format!("/api/v1/incidents/{id}/report?audience=press"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        bad["detail"].as_str().unwrap().contains("audience"),
        "{bad}"
    );
}

#[tokio::test]
async fn pages_run_the_same_workflow() {
    let server = TestServer::start().await;
    let ministry = server.institution("Ministry").await;
    let gw = server.api(&server.token(Role::Sensor, None).await);
    for source_ip in ["192.0.2.10", "192.0.2.10", "192.0.2.11"] {
        let (s, _) = gw
            .post(
                "/api/v1/events",
                &json!({"events": [{"kind": "waf.blocked", "institution_id": ministry.0,
                "attributes": {"client_ip": source_ip}}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let browser = server.admin_browser().await;
    let (s, html) = browser.page("/alerts").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("http-equiv=\"refresh\""),
        "the monitor reloads itself"
    );
    assert!(html.contains("Malicious requests from 192.0.2.10") && html.contains("192.0.2.11"));
    let alerts: Value = server
        .api(&server.token(Role::Admin, None).await)
        .get("/api/v1/alerts")
        .await
        .1;
    let ids: Vec<String> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let csrf = browser.csrf().await;
    let mut form: Vec<(&str, &str)> = vec![
        ("csrf", &csrf),
        ("action", "promote"),
        ("category", "intrusion-attempts/ids-alert"),
    ];
    for id in &ids {
        form.push(("id", id));
    }
    let r = browser.post_form("/alerts/act", &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/incidents/"), "{location}");
    let path = location.split('?').next().unwrap().to_owned();
    let (s, html) = browser.page(&path).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("Intrusion attempts") && html.contains("Ministry"),
        "{html}"
    );
    let r = browser
        .submit(
            &path,
            &format!("{path}/comment"),
            &[("text", "Blocked at the edge")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = browser
        .submit(
            &path,
            &format!("{path}/status"),
            &[("status", "closed"), ("reason", "")],
        )
        .await;
    assert!(
        r.headers()["location"].to_str().unwrap().contains("error="),
        "closing without a reason is refused"
    );
    let (_, html) = browser.page(&path).await;
    assert!(html.contains("Blocked at the edge"));
    let (s, html) = browser.page("/incidents").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Malicious requests from"));

    // The monitor pages back through older alerts; only its first page reloads itself.
    let batch: Vec<Value> = (0..205)
        .map(|i| json!({"rule": "scanner.probe", "observables": [{"value": format!("198.18.0.{}", i % 250)}],
            "key": format!("probe-{i}")}))
        .collect();
    let (s, body) = gw.post("/api/v1/alerts", &json!({"alerts": batch})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (_, html) = browser.page("/alerts?rule=scanner.probe").await;
    assert_eq!(html.matches("data-alert=").count(), 200);
    let start = html
        .find(r#"rel="next" href=""#)
        .expect("a link to older alerts")
        + r#"rel="next" href=""#.len();
    let next = html[start..start + html[start..].find('"').unwrap()].replace("&amp;", "&");
    let (s, older) = browser.page(&next).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    assert_eq!(older.matches("data-alert=").count(), 5, "{next}");
    assert!(
        !older.contains("http-equiv=\"refresh\""),
        "an older page does not reload itself"
    );
    // Webhooks from their page.
    let r = browser
        .submit(
            "/webhooks",
            "/webhooks",
            &[
                ("url", "https://soc.example/hook"),
                ("secret", "0123456789abcdef0123"),
                ("min_severity", "critical"),
            ],
        )
        .await;
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("done=saved"));
    let (_, html) = browser.page("/webhooks").await;
    assert!(
        html.contains("https://soc.example/hook") && !html.contains("0123456789abcdef0123"),
        "the secret is not shown"
    );
    let r = browser
        .submit(
            "/webhooks",
            "/webhooks",
            &[("url", "ftp://x"), ("secret", "0123456789abcdef0123")],
        )
        .await;
    assert!(r.headers()["location"].to_str().unwrap().contains("error="));
    let (s, html) = browser.page("/reports").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("data-figure=\"incidents-opened\">1<"),
        "{html}"
    );
    assert!(html.contains("<svg"), "charts");
}

const BIN: &str = env!("CARGO_BIN_EXE_qalxan");

fn qalxan(db: &qalxan_store::testing::TestDb, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("QALXAN_CONFIG")
        .arg("--data")
        .arg(db.dir.path().join("data"));
    if db.is_postgres() {
        cmd.args(["--database-url", &db.url]);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn the_cli_opens_closes_and_reports() {
    let db = qalxan_store::testing::TestDb::new().await.unwrap();
    let out = qalxan(
        &db,
        &[
            "incident",
            "open",
            "--title",
            "Phishing of the tax office",
            "--category",
            "fraud/phishing",
            "--severity",
            "high",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "opened incident #1"
    );
    let out = qalxan(&db, &["incident", "status", "1", "closed"]);
    assert!(!out.status.success(), "closing needs a reason");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reason"));
    let out = qalxan(
        &db,
        &[
            "incident",
            "status",
            "1",
            "closed",
            "--reason",
            "takedown done",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = qalxan(&db, &["incident", "list", "--all"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains("closed") && listed.contains("fraud/phishing"),
        "{listed}"
    );
    let out = qalxan(&db, &["incident", "report", "1"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("# Incident #1: Phishing of the tax office")
    );
    let out = qalxan(&db, &["incident", "report", "1", "--audience", "partners"]);
    let shared = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && shared.contains("Prepared for partners"),
        "{shared}"
    );
    let dir = tempfile::tempdir().unwrap();
    // Reports print Azerbaijani: with Debian's DejaVu fonts (the default report font) the PDF
    // embeds them and the letters read back as written.
    let out = qalxan(
        &db,
        &[
            "incident",
            "open",
            "--title",
            "Vergi xidmətinə fişinq hücumu (Bakı)",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let az = dir.path().join("az.pdf");
    let out = qalxan(
        &db,
        &[
            "incident",
            "report",
            "2",
            "--format",
            "pdf",
            "-o",
            az.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let az = std::fs::read(&az).unwrap();
    if std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        if let Some(text) = pdf_text(&az) {
            assert!(
                text.contains("Vergi xidmətinə fişinq hücumu (Bakı)"),
                "{text}"
            );
        }
    } else {
        eprintln!("skipping the Azerbaijani PDF check: fonts-dejavu-core is absent");
    }
    let pdf = dir.path().join("h1.pdf");
    let out = qalxan(
        &db,
        &[
            "report",
            "--format",
            "pdf",
            "--output",
            pdf.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&pdf).unwrap();
    if let Some(pages) = rendered_pages(&bytes) {
        assert!(pages >= 1);
    }
    let out = qalxan(&db, &["report", "--format", "json"]);
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            f["incidents_opened"].as_i64(),
            f["incidents_closed"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(f["by_category"], json!([["Fraud", 1], ["Other", 1]]));
    let out = qalxan(&db, &["report", "--from", "2030-13-01"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("from"),
        "names the bad field"
    );
}

/// Webhook deliveries received: event header, signature header, body.
type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A webhook receiver: records each delivery's event header, signature header and body.
async fn webhook_receiver() -> (String, Deliveries) {
    use axum::http::HeaderMap;
    let got: Deliveries = Default::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                sink.lock().unwrap().push((
                    h("x-qalxan-event"),
                    h("x-qalxan-signature"),
                    body.to_vec(),
                ));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// The HMAC as Python's standard library computes it, to check ours independently.
fn python_hmac(secret: &str, body: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", "import hmac,hashlib,sys; print('sha256=' + hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())", secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned()
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// aiosmtpd (a real SMTP server) writing what it receives into a Maildir; `None` when absent.
fn smtp_server(dir: &std::path::Path) -> Option<(u16, Killed)> {
    let have = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .ok()?;
    if !have.status.success() {
        eprintln!("skipping the e-mail check: aiosmtpd is absent (.ci/run installs it)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Killed(
        Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(dir)
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((port, child));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("aiosmtpd did not start");
}

#[tokio::test]
async fn new_incidents_and_sla_breaches_are_notified() {
    let tmp = tempfile::tempdir().unwrap();
    // Python's Maildir creates its folders only when the directory does not exist yet.
    let maildir = tmp.path().join("mail");
    let smtp = smtp_server(&maildir);
    let mut config = qalxan_server::Config {
        sla_check_seconds: 1,
        // Critical incidents must be triaged at once: the breach is immediate.
        sla_triage_minutes: [60, 60, 60, 60, 0],
        ..Default::default()
    };
    if let Some((port, _)) = &smtp {
        config.smtp_url = format!("smtp://127.0.0.1:{port}");
    }
    let server = TestServer::start_with(config).await;
    let admin = server.api(&server.token(Role::Admin, None).await);
    let (_, users) = admin.get("/api/v1/users").await;
    let admin_id = users.as_array().unwrap()[0]["id"].as_i64().unwrap();
    let (s, body) = admin
        .patch(
            &format!("/api/v1/users/{admin_id}"),
            &json!({"email": "duty@cert.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (url, got) = webhook_receiver().await;
    let secret = "a-shared-secret-of-32-characters";
    let (s, hook) = admin
        .post(
            "/api/v1/webhooks",
            &json!({"url": url, "secret": secret, "min_severity": "high"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    assert!(
        hook.get("secret").is_none(),
        "the secret is never shown back"
    );
    let (s, short) = admin
        .post("/api/v1/webhooks", &json!({"url": url, "secret": "short"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{short}");

    // The affected institution hears of its incidents: its contact address and its staff.
    let (s, registry) = admin
        .post(
            "/api/v1/institutions",
            &json!({"name": "State Registry", "contact_email": "soc@registry.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{registry}");
    let (s, body) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "registry-it", "role": "institution",
                "institution_id": registry["id"], "email": "it@registry.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    let (_, critical) = admin
        .post(
            "/api/v1/incidents",
            &json!({"title": "Ransomware at the registry", "severity": "critical",
                "institutions": [registry["id"]]}),
        )
        .await;
    let (_, low) = admin
        .post(
            "/api/v1/incidents",
            &json!({"title": "Port scan", "severity": "low", "institutions": [registry["id"]]}),
        )
        .await;
    // TLP:RED stays with the CERT's named staff.
    let (s, red) = admin
        .post(
            "/api/v1/incidents",
            &json!({"title": "Insider at the registry", "severity": "high", "tlp": "TLP:RED",
                "institutions": [registry["id"]]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{red}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n = got.lock().unwrap().len();
        if n >= 3 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Time for a duplicate to show up, if the ledger failed.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let deliveries = got.lock().unwrap().clone();
    let mut events: Vec<&str> = deliveries.iter().map(|(e, _, _)| e.as_str()).collect();
    events.sort_unstable();
    assert_eq!(
        events,
        vec!["incident.opened", "incident.opened", "sla.triage_breached"],
        "once each, the low one not at all"
    );
    for (event, signature, body) in &deliveries {
        assert_eq!(signature, &python_hmac(secret, body));
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_ne!(v["incident"]["id"], low["id"]);
        if event == "sla.triage_breached" {
            assert_eq!(v["incident"]["id"], critical["id"]);
        }
    }
    if let Some((_, server)) = smtp {
        let new = maildir.join("new");
        for _ in 0..100 {
            let n = std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0);
            if n >= 5 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Time for a mail that should not be sent to arrive.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let texts: Vec<String> = std::fs::read_dir(&new)
            .unwrap()
            .map(|m| std::fs::read_to_string(m.unwrap().path()).unwrap())
            .collect();
        drop(server);
        let mut got: Vec<(String, String)> = texts
            .iter()
            .map(|t| {
                // Long headers are folded onto continuation lines.
                let t = t.replace("\n ", " ");
                let header = |name: &str| {
                    t.lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                };
                (header("To:"), header("Subject:"))
            })
            .collect();
        got.sort();
        let opened = "[Qalxan] [TLP:AMBER] New incident: #1 Ransomware at the registry (critical)";
        assert_eq!(
            got,
            vec![
                ("duty@cert.example".to_owned(), opened.to_owned()),
                (
                    "duty@cert.example".to_owned(),
                    "[Qalxan] [TLP:AMBER] Triage overdue: #1 Ransomware at the registry (critical)"
                        .to_owned()
                ),
                (
                    "duty@cert.example".to_owned(),
                    "[Qalxan] [TLP:RED] New incident: #3 Insider at the registry (high)".to_owned()
                ),
                ("it@registry.example".to_owned(), opened.to_owned()),
                ("soc@registry.example".to_owned(), opened.to_owned()),
            ],
            "{texts:?}"
        );
        assert!(
            texts.iter().all(|t| t.contains("TLP:")),
            "the body leads with the TLP"
        );
    }
}

/// One server-sent event as read off the wire.
#[derive(Debug, Default, Clone)]
struct Sse {
    event: String,
    data: String,
    id: Option<String>,
}

/// Reads a `text/event-stream` response into events on a channel.
fn sse_events(response: reqwest::Response) -> tokio::sync::mpsc::UnboundedReceiver<Sse> {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut response = response;
        let mut buffer = String::new();
        let mut event = Sse::default();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                let line = line.trim_end_matches('\n');
                if line.is_empty() {
                    if !event.event.is_empty() && tx.send(std::mem::take(&mut event)).is_err() {
                        return;
                    }
                    event = Sse::default();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event.event = v.trim_start().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                } else if let Some(v) = line.strip_prefix("id:") {
                    event.id = Some(v.trim_start().to_owned());
                }
            }
        }
    });
    rx
}

/// The next event of `kind` (others are skipped), within ten seconds.
async fn next_of(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Sse>, kind: &str) -> Sse {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let e = rx.recv().await.expect("the stream ended");
            if e.event == kind {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no '{kind}' event within 10 s"))
}

/// Whether an event of `kind` arrives within `ms` milliseconds.
async fn arrives(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Sse>, kind: &str, ms: u64) -> bool {
    tokio::time::timeout(std::time::Duration::from_millis(ms), next_of(rx, kind))
        .await
        .is_ok()
}

#[tokio::test]
async fn the_monitor_follows_alerts_live() {
    let server = TestServer::start().await;
    let ministry = server.institution("Ministry").await;
    let agency = server.institution("Agency").await;
    let analyst = server.api(&server.token(Role::Analyst, None).await);
    let ministry_staff = server.api(&server.token(Role::Institution, Some(ministry)).await);
    let follow = |api: &common::Api, query: &str| {
        api.request(
            reqwest::Method::GET,
            &format!("/api/v1/alerts/stream{query}"),
        )
        .send()
    };
    let mut open = sse_events(follow(&analyst, "?status=open").await.unwrap());
    let mut own = sse_events(follow(&ministry_staff, "").await.unwrap());
    // Asking for another institution's alerts is refused, as listing them is.
    let r = follow(&ministry_staff, &format!("?institution_id={}", agency.0))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let raise = |institution: qalxan_core::InstitutionId, ip: &'static str| {
        let analyst = &analyst;
        async move {
            let (s, body) = analyst
                .post(
                    "/api/v1/alerts",
                    &json!({"alerts": [{"rule": "waf.blocked",
                    "severity": "high", "institution_id": institution.0,
                    "observables": [{"value": ip}]}]}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{body}");
            body["ids"][0].as_i64().unwrap()
        }
    };
    // A new alert arrives on both streams; the same key again arrives with its count.
    let id = raise(ministry, "203.0.113.7").await;
    let e = next_of(&mut open, "alert").await;
    let a: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!((a["id"].as_i64(), a["count"].as_i64()), (Some(id), Some(1)));
    assert!(e.id.is_some(), "a batch's last event carries the cursor");
    let a: Value = serde_json::from_str(&next_of(&mut own, "alert").await.data).unwrap();
    assert_eq!(a["id"].as_i64(), Some(id));
    raise(ministry, "203.0.113.7").await;
    let a: Value = serde_json::from_str(&next_of(&mut open, "alert").await.data).unwrap();
    assert_eq!((a["id"].as_i64(), a["count"].as_i64()), (Some(id), Some(2)));

    // Another institution's alert reaches the CERT's stream, not the ministry's.
    let other = raise(agency, "198.51.100.9").await;
    let a: Value = serde_json::from_str(&next_of(&mut open, "alert").await.data).unwrap();
    assert_eq!(a["id"].as_i64(), Some(other));
    let a: Value = serde_json::from_str(&next_of(&mut own, "alert").await.data).unwrap();
    assert_eq!(a["count"].as_i64(), Some(2), "{a}");
    assert!(
        !arrives(&mut own, "alert", 3000).await,
        "the ministry's stream showed the agency's alert"
    );

    // Dismissed, it leaves the stream of open alerts.
    let (s, body) = analyst
        .post(
            &format!("/api/v1/alerts/{id}/status"),
            &json!({"status": "dismissed", "reason": "our own scanner"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let gone = next_of(&mut open, "gone").await;
    assert_eq!(
        serde_json::from_str::<Value>(&gone.data).unwrap(),
        json!({"id": id})
    );

    // A client that reconnects with the last id it saw gets what changed since.
    let cursor = gone.id.expect("the cursor");
    raise(agency, "198.51.100.10").await;
    let resumed = analyst
        .request(reqwest::Method::GET, "/api/v1/alerts/stream")
        .header("Last-Event-ID", &cursor)
        .send()
        .await
        .unwrap();
    let mut resumed = sse_events(resumed);
    // Delivery is at least once: changes shortly before the cursor may come again.
    loop {
        let a: Value = serde_json::from_str(&next_of(&mut resumed, "alert").await.data).unwrap();
        if a["observables"][0]["value"] == "198.51.100.10" {
            break;
        }
    }

    // The page's stream carries table rows drawn as the page draws them, and the counters.
    let browser = server.admin_browser().await;
    let (_, html) = browser.page("/alerts").await;
    assert!(
        html.contains("data-stream=\"/alerts/stream?"),
        "the page follows its stream"
    );
    let mut rows = sse_events(browser.get("/alerts/stream?status=open").await);
    let newest = raise(ministry, "192.0.2.99").await;
    // Rows changed shortly before the stream opened come too: the page may have missed them.
    let mut row = next_of(&mut rows, "row").await;
    while !row.data.contains("192.0.2.99") {
        row = next_of(&mut rows, "row").await;
    }
    assert!(
        row.data
            .starts_with(&format!("<tr data-alert=\"{newest}\">"))
            && row.data.contains("192.0.2.99"),
        "{}",
        row.data
    );
    let counts: Value = serde_json::from_str(&next_of(&mut rows, "counts").await.data).unwrap();
    assert_eq!(counts["open"], "3", "{counts}");
    // Without a session there is no stream.
    let r = server
        .anonymous()
        .request(reqwest::Method::GET, "/api/v1/alerts/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
