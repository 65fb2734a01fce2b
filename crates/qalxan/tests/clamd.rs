//! `qalxan clamd` end to end: the protocol's exact bytes over TCP, and Debian's clamdscan as
//! the client (INSTREAM, MULTISCAN, FILDES) agreeing with `qalxan scan` on ClamAV's test files.

#![allow(clippy::unwrap_used)] // A test that cannot unwrap should fail loudly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_qalxan");
const TESTFILES: &str = "/usr/share/clamav-testfiles";
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

struct Daemon {
    child: Child,
    port: u16,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hdb() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/clamav-test-sigs/clamav.hdb");
    p.is_file().then_some(p)
}

fn start(extra: &[&str]) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("clamd.sock");
    let port = free_port();
    let empty = dir.path().join("empty.hdb");
    std::fs::write(&empty, "").unwrap();
    let db = hdb().unwrap_or(empty);
    let child = Command::new(BIN)
        .args([
            "clamd",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--socket",
        ])
        .arg(&socket)
        .arg("-d")
        .arg(&db)
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() || !socket.exists() {
        assert!(Instant::now() < deadline, "clamd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon {
        child,
        port,
        socket,
        _dir: dir,
    }
}

/// Sends `request` and reads until the server closes the connection.
fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn instream(cmd: &[u8], data: &[u8], chunk: usize) -> Vec<u8> {
    let mut req = cmd.to_vec();
    for c in data.chunks(chunk) {
        req.extend_from_slice(&(c.len() as u32).to_be_bytes());
        req.extend_from_slice(c);
    }
    req.extend_from_slice(&[0, 0, 0, 0]);
    req
}

#[test]
fn protocol_bytes_match_clamd() {
    let d = start(&["--stream-max", "1000"]);
    assert_eq!(exchange(d.port, b"zPING\0"), b"PONG\0");
    assert_eq!(exchange(d.port, b"nPING\n"), b"PONG\n");
    assert_eq!(exchange(d.port, b"PING\n"), b"PONG\n");
    assert_eq!(exchange(d.port, b"zFOO\0"), b"UNKNOWN COMMAND\0");
    let v = exchange(d.port, b"zVERSIONCOMMANDS\0");
    assert!(v.starts_with(b"ClamAV "), "{}", String::from_utf8_lossy(&v));
    assert!(String::from_utf8_lossy(&v).contains("| COMMANDS: SCAN QUIT RELOAD PING CONTSCAN"));
    assert_eq!(
        exchange(d.port, &instream(b"zINSTREAM\0", EICAR, 10)),
        b"stream: Eicar-Test-Signature FOUND\0"
    );
    assert_eq!(
        exchange(d.port, &instream(b"nINSTREAM\n", b"hello", 2)),
        b"stream: OK\n"
    );
    assert_eq!(
        exchange(d.port, &instream(b"zINSTREAM\0", &[b'a'; 2000], 500)),
        b"INSTREAM size limit exceeded. ERROR\0"
    );
    assert_eq!(
        exchange(d.port, b"zSCAN /nonexistent/file\0"),
        b"/nonexistent/file: File path check failure: No such file or directory. ERROR\0"
    );
    let dir = tempfile::tempdir().unwrap();
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    std::fs::write(dir.path().join("clean.txt"), "clean").unwrap();
    let scan = exchange(d.port, format!("zSCAN {}\0", eicar.display()).as_bytes());
    assert_eq!(
        scan,
        format!("{}: Eicar-Test-Signature FOUND\0", eicar.display()).as_bytes()
    );
    let clean = dir.path().join("clean.txt");
    let scan = exchange(
        d.port,
        format!("zCONTSCAN {}\0", clean.display()).as_bytes(),
    );
    assert_eq!(scan, format!("{}: OK\0", clean.display()).as_bytes());

    // A session: numbered replies, closed by END.
    let mut req = b"zIDSESSION\0zPING\0".to_vec();
    req.extend_from_slice(format!("zSCAN {}\0", eicar.display()).as_bytes());
    req.extend_from_slice(&instream(b"zINSTREAM\0", b"hello", 5));
    req.extend_from_slice(b"zEND\0");
    let out = exchange(d.port, &req);
    let replies: Vec<&[u8]> = out.split(|&b| b == 0).filter(|r| !r.is_empty()).collect();
    assert_eq!(replies.len(), 3, "{}", String::from_utf8_lossy(&out));
    assert_eq!(replies[0], b"1: PONG");
    assert_eq!(
        replies[1],
        format!("2: {}: Eicar-Test-Signature FOUND", eicar.display()).as_bytes()
    );
    assert_eq!(replies[2], b"3: stream: OK");

    let stats = String::from_utf8(exchange(d.port, b"nSTATS\n")).unwrap();
    assert!(
        stats.starts_with("POOLS: 1\n") && stats.ends_with("END\n"),
        "{stats}"
    );
    assert_eq!(exchange(d.port, b"zRELOAD\0"), b"RELOADING\0");
    assert_eq!(exchange(d.port, b"zPING\0"), b"PONG\0");
}

#[test]
fn shutdown_stops_the_daemon() {
    let mut d = start(&[]);
    let _ = exchange(d.port, b"zSHUTDOWN\0");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(Instant::now() < deadline, "still running after SHUTDOWN");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!d.socket.exists(), "the socket file is removed");
}

fn found_lines(out: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.ends_with(" FOUND"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn clamdscan_agrees_with_qalxan_scan() {
    if Command::new("clamdscan").arg("--help").output().is_err() {
        eprintln!("skipping: clamdscan is not installed (apt-get install clamdscan)");
        return;
    }
    let (Some(db), true) = (hdb(), Path::new(TESTFILES).is_dir()) else {
        eprintln!("skipping: ClamAV's test files or ../shared are absent");
        return;
    };
    let d = start(&[]);
    let conf = d._dir.path().join("clamd.conf");
    std::fs::write(
        &conf,
        format!(
            "TCPSocket {}\nTCPAddr 127.0.0.1\nLocalSocket {}\n",
            d.port,
            d.socket.display()
        ),
    )
    .unwrap();
    let tcp_conf = d._dir.path().join("clamd-tcp.conf");
    std::fs::write(
        &tcp_conf,
        format!("TCPSocket {}\nTCPAddr 127.0.0.1\n", d.port),
    )
    .unwrap();
    let unix_conf = d._dir.path().join("clamd-unix.conf");
    std::fs::write(&unix_conf, format!("LocalSocket {}\n", d.socket.display())).unwrap();

    let files: Vec<PathBuf> = std::fs::read_dir(TESTFILES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    let ours = Command::new(BIN)
        .args(["scan", "--no-summary", "-d"])
        .arg(&db)
        .args(&files)
        .output()
        .unwrap();
    let expected = found_lines(&ours.stdout);
    assert!(expected.len() >= 28, "{expected:#?}");
    for (mode, conf) in [
        ("--stream", &tcp_conf),
        ("--multiscan", &tcp_conf),
        ("--fdpass", &unix_conf),
    ] {
        let out = Command::new("clamdscan")
            .arg(format!("--config-file={}", conf.display()))
            .args([mode, "--no-summary"])
            .args(&files)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(found_lines(&out.stdout), expected, "{mode}");
    }
    let clean_file = d._dir.path().join("clean.txt");
    std::fs::write(&clean_file, "nothing here").unwrap();
    let clean = Command::new("clamdscan")
        .arg(format!("--config-file={}", tcp_conf.display()))
        .args(["--stream", "--no-summary"])
        .arg(&clean_file)
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&clean.stdout),
        format!("{}: OK\n", clean_file.display())
    );
}

mod common;

/// Detections from `qalxan scan` and `qalxan clamd` reach the server as `scan.infected`
/// events, tied to the institution: the dashboard's "infected files stopped".
#[tokio::test(flavor = "multi_thread")]
async fn detections_are_reported_to_the_server() {
    use qalxan_core::Role;
    let server = common::TestServer::start().await;
    let institution = server.institution("Ministry of Scans").await;
    let token = server.token(Role::Sensor, None).await;
    let dir = tempfile::tempdir().unwrap();
    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let empty = dir.path().join("empty.hdb");
    std::fs::write(&empty, "").unwrap();
    let out = tokio::process::Command::new(BIN)
        .args([
            "scan",
            "--no-summary",
            "--server",
            &server.url(""),
            "--institution",
        ])
        .arg(institution.0.to_string())
        .arg("-d")
        .arg(&empty)
        .arg(&eicar)
        .env("QALXAN_SCANNER_TOKEN", &token)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let mut daemon = tokio::process::Command::new(BIN)
        .args([
            "clamd",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--server",
            &server.url(""),
            "--institution",
        ])
        .arg(institution.0.to_string())
        .arg("-d")
        .arg(&empty)
        .env("QALXAN_SCANNER_TOKEN", &token)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let request = instream(b"zINSTREAM\0", EICAR, 64);
    let mut reply = Vec::new();
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            reply = tokio::task::spawn_blocking(move || exchange(port, &request))
                .await
                .unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reply, b"stream: Eicar-Test-Signature FOUND\0");

    let analyst = server.api(&server.token(Role::Analyst, None).await);
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (_, page) = analyst.get("/api/v1/events?kind=scan.infected").await;
        seen = page["items"].as_array().unwrap().clone();
        if seen.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = daemon.kill().await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|e| e["institution_id"] == institution.0
        && e["attributes"]["signature"] == "Eicar-Test-Signature"));
    let mut scanners: Vec<&str> = seen
        .iter()
        .map(|e| e["attributes"]["scanner"].as_str().unwrap())
        .collect();
    scanners.sort();
    assert_eq!(scanners, ["qalxan clamd", "qalxan scan"]);
}

/// The CERT's hash indicators reach the scanners: `qalxan scan --server` pulls them once,
/// `qalxan clamd --server` keeps them fresh; a file with a listed hash is detected under a
/// name that carries the hash, and each detection is a sighting of its indicator.
#[tokio::test(flavor = "multi_thread")]
async fn scanners_detect_the_hashes_of_threat_intelligence() {
    use qalxan_core::Role;
    use serde_json::json;
    use sha2::Digest;
    let server = common::TestServer::start().await;
    let token = server.token(Role::Sensor, None).await;
    let analyst = server.api(&server.token(Role::Analyst, None).await);
    let dropper = b"MZ... a dropper seen at a ministry, known only by its hash".to_vec();
    let sha256: String = sha2::Sha256::digest(&dropper)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (s, created) = analyst
        .post("/api/v1/intel/indicators", &json!({"value": sha256}))
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{created}");
    let id = created["indicator"]["id"].as_i64().unwrap();
    let name = format!("Qalxan.Intel.SHA256.{sha256}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("invoice.exe");
    std::fs::write(&file, &dropper).unwrap();
    let clean = dir.path().join("clean.txt");
    std::fs::write(&clean, b"nothing to see").unwrap();
    let empty = dir.path().join("empty.hdb");
    std::fs::write(&empty, "").unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["scan", "--no-summary", "--server", &server.url("")])
        .arg("-d")
        .arg(&empty)
        .arg(&file)
        .arg(&clean)
        .env("QALXAN_SCANNER_TOKEN", &token)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("{}: {name} FOUND", file.display()))
            && stdout.contains(&format!("{}: OK", clean.display())),
        "{stdout}"
    );

    let port = free_port();
    let mut daemon = tokio::process::Command::new(BIN)
        .args([
            "clamd",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--server",
            &server.url(""),
            "--intel-every",
            "1",
        ])
        .arg("-d")
        .arg(&empty)
        .env("QALXAN_SCANNER_TOKEN", &token)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The daemon answers at once and learns the list with its first pull.
    let want = format!("stream: {name} FOUND\0").into_bytes();
    let mut reply = Vec::new();
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let request = instream(b"zINSTREAM\0", &dropper, 64);
            reply = tokio::task::spawn_blocking(move || exchange(port, &request))
                .await
                .unwrap();
            if reply == want {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        String::from_utf8_lossy(&reply),
        String::from_utf8_lossy(&want)
    );
    let request = instream(b"zINSTREAM\0", b"nothing to see", 64);
    let reply = tokio::task::spawn_blocking(move || exchange(port, &request))
        .await
        .unwrap();
    assert_eq!(reply, b"stream: OK\0");

    // Each detection was reported and counted as a sighting of the indicator.
    let mut detail = serde_json::Value::Null;
    for _ in 0..100 {
        detail = analyst
            .get(&format!("/api/v1/intel/indicators/{id}"))
            .await
            .1;
        if detail["indicator"]["sightings"].as_i64() >= Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = daemon.kill().await;
    assert_eq!(detail["indicator"]["sightings"], 2, "{detail}");
}
