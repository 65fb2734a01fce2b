//! CRS's regression tests (the YAML format of OWASP's `ftw`) run against the engine in process.
//!
//! Each test sends one or more requests and expects rule ids in the log (`log_contains`), not
//! in it (`no_log_contains`), an HTTP status, or the server to refuse the request. The engine is
//! configured as CRS's own CI configured ModSecurity: the recommended base configuration,
//! DetectionOnly, paranoia level 4 ([`CRS_TEST_SETUP`]). Requests the HTTP layer would refuse
//! (a malformed request line) answer 400 here as Apache answered them there.

use crate::compile::Plan;
use crate::eval::{Request, Transaction};
use crate::syntax::{RuleFile, SyntaxError};
use crate::{load, load_str, LoadLimits};
use base64::Engine;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The base configuration CRS's tests ran with (rules 200000-200004, DetectionOnly).
pub const CRS_TEST_BASE: &str = include_str!("../assets/crs-test-base.conf");

/// The setup action CRS's CI added before the rules (CRS 3.3 tests/regression/README.md),
/// with the argument and file-size limits its tests of rules 920380-920400 rely on.
pub const CRS_TEST_SETUP: &str =
    "SecAction \"id:900005,phase:1,nolog,pass,ctl:ruleEngine=DetectionOnly,\
ctl:ruleRemoveById=910000,setvar:tx.paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,\
setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,\
setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535\"\n";

/// Loads CRS as its tests expect it: base configuration, `setup` (crs-setup.conf), the test
/// setup action, then `rules_dir/*.conf` in name order.
pub fn load_crs_for_tests(setup: &Path, rules_dir: &Path) -> Result<Plan, Vec<SyntaxError>> {
    load_crs(CRS_TEST_BASE, setup, CRS_TEST_SETUP, rules_dir)
}

/// Loads CRS from Debian's layout with configuration text of the caller's before the setup file
/// (`before`) and between it and the rules (`after_setup`), e.g. a paranoia level.
pub fn load_crs(
    before: &str,
    setup: &Path,
    after_setup: &str,
    rules_dir: &Path,
) -> Result<Plan, Vec<SyntaxError>> {
    let limits = LoadLimits::default();
    let mut set = RuleFile::default();
    let mut add = |part: Result<RuleFile, crate::LoadErrors>| -> Result<(), Vec<SyntaxError>> {
        set.append(part.map_err(|e| e.errors)?);
        Ok(())
    };
    add(load_str(
        before,
        &rules_dir.join("qalxan-before-setup.conf"),
        &limits,
    ))?;
    add(load(setup, &limits))?;
    add(load_str(
        after_setup,
        &rules_dir.join("qalxan-after-setup.conf"),
        &limits,
    ))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(rules_dir)
        .map_err(|e| {
            vec![SyntaxError {
                location: crate::syntax::Location {
                    file: rules_dir.into(),
                    line: 0,
                    column: 0,
                },
                message: format!("cannot read {}: {e}", rules_dir.display()),
            }]
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    for f in files {
        add(load(&f, &limits))?;
    }
    Plan::compile(&set)
}

#[derive(Debug, Deserialize)]
struct TestFile {
    #[serde(default)]
    tests: Vec<Test>,
}

#[derive(Debug, Deserialize)]
struct Test {
    test_title: String,
    #[serde(default)]
    stages: Vec<StageWrapper>,
}

#[derive(Debug, Deserialize)]
struct StageWrapper {
    stage: Stage,
}

#[derive(Debug, Deserialize)]
struct Stage {
    #[serde(default)]
    input: Input,
    #[serde(default)]
    output: Output,
}

#[derive(Debug, Default, Deserialize)]
struct Input {
    method: Option<String>,
    uri: Option<String>,
    version: Option<String>,
    port: Option<u16>,
    dest_addr: Option<String>,
    #[serde(default)]
    headers: serde_yaml_ng::Mapping,
    data: Option<Data>,
    raw_request: Option<String>,
    encoded_request: Option<String>,
    #[serde(default)]
    stop_magic: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Data {
    Text(String),
    Lines(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct Output {
    log_contains: Option<String>,
    no_log_contains: Option<String>,
    status: Option<Status>,
    #[serde(default)]
    expect_error: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Status {
    One(u16),
    Many(Vec<u16>),
}

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub title: String,
    pub file: PathBuf,
    /// `None` when it passed; otherwise why not.
    pub failure: Option<String>,
}

fn yaml_scalar(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// What the HTTP server in front of ModSecurity (Apache, in CRS's CI) answers before any rule
/// runs: `Ok` for a request it passes on, or the error status it answers itself. The checks are
/// those of HTTP/1.1 (RFC 9110/9112) that CRS's tests exercise, as lenient as Apache is: a token
/// method, a request target without whitespace or a fragment, `HTTP/x.y` with x at least 1, one
/// valid Host for 1.1, no CR, LF or NUL in header values, a numeric Content-Length the body
/// matches. CONNECT to a valid authority reaches the rules, then answers 405.
fn http_check(r: &Request) -> Result<(), u16> {
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if r.method.is_empty() || !r.method.iter().all(token) {
        return Err(400);
    }
    let p = r.protocol.as_slice();
    let version_ok = p.len() == 8
        && p.starts_with(b"HTTP/")
        && (b'1'..=b'9').contains(&p[5])
        && p[6] == b'.'
        && p[7].is_ascii_digit();
    if !version_ok {
        return Err(400);
    }
    let target = r.uri.as_slice();
    if target.is_empty() || target.iter().any(|&b| b <= 0x20 || b == 0x7f || b == b'#') {
        return Err(400);
    }
    if r.method == b"CONNECT" {
        // authority-form: host:port.
        let text = String::from_utf8_lossy(target);
        let valid = text
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !valid {
            return Err(400);
        }
    } else {
        let origin = target.starts_with(b"/") || target.starts_with(b"?");
        let absolute = target
            .windows(3)
            .position(|w| w == b"://")
            .is_some_and(|p| p > 0 && target[..p].iter().all(u8::is_ascii_alphabetic));
        let asterisk = target == b"*" && r.method == b"OPTIONS";
        if !(origin || absolute || asterisk) {
            return Err(400);
        }
    }
    let hosts: Vec<&[u8]> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_slice())
        .collect();
    let host_ok = |h: &[u8]| {
        !h.is_empty()
            && h.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
    };
    if r.protocol == b"HTTP/1.1" && hosts.len() != 1 {
        return Err(400);
    }
    if hosts.iter().any(|h| !host_ok(h)) {
        return Err(400);
    }
    for (name, value) in &r.headers {
        if name.is_empty()
            || !name.bytes().all(|b| token(&b))
            || value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
        {
            return Err(400);
        }
    }
    let lengths: Vec<&[u8]> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_slice())
        .collect();
    if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            return Err(400);
        }
        let text = String::from_utf8_lossy(first);
        let n: usize = text.trim().parse().map_err(|_| 400u16)?;
        if n > r.body.len() {
            // The server waits for a body that never comes, then gives up.
            return Err(408);
        }
    }
    Ok(())
}

/// Parses a raw HTTP request (for `raw_request`/`encoded_request` tests); `None` if the
/// request line or headers are malformed.
fn parse_raw(raw: &[u8]) -> Option<Request> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4))
        .or_else(|| {
            raw.windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| (p, p + 2))
        })
        .unwrap_or((raw.len(), raw.len()));
    let head = &raw[..head_end.0];
    let body = raw[head_end.1..].to_vec();
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next()?;
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next()?.to_vec();
    let uri = parts.next()?.to_vec();
    let protocol = parts.next().unwrap_or(b"HTTP/0.9").to_vec();
    let mut headers = Vec::new();
    for l in lines {
        let colon = l.iter().position(|&b| b == b':')?;
        let name = String::from_utf8_lossy(&l[..colon]).trim().to_owned();
        let value = l[colon + 1..]
            .iter()
            .copied()
            .skip_while(|b| *b == b' ' || *b == b'\t')
            .collect();
        headers.push((name, value));
    }
    Some(Request {
        method,
        uri,
        protocol,
        headers,
        body,
        ..Request::default()
    })
}

fn build_request(input: &Input) -> Result<Option<Request>, String> {
    if let Some(encoded) = &input.encoded_request {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("encoded_request is not base64: {e}"))?;
        return Ok(parse_raw(&raw));
    }
    if let Some(raw) = &input.raw_request {
        return Ok(parse_raw(raw.as_bytes()));
    }
    let body = match &input.data {
        None => Vec::new(),
        Some(Data::Text(t)) => t.as_bytes().to_vec(),
        Some(Data::Lines(lines)) => lines.join("\r\n").into_bytes(),
    };
    let mut headers: Vec<(String, Vec<u8>)> = input
        .headers
        .iter()
        .map(|(k, v)| (yaml_scalar(k), yaml_scalar(v).into_bytes()))
        .collect();
    // ftw's "magic": a body gets a Content-Length and, lacking one, a form Content-Type.
    if !body.is_empty() && !input.stop_magic {
        let has = |headers: &[(String, Vec<u8>)], name: &str| {
            headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        if !has(&headers, "content-type") {
            headers.push((
                "Content-Type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ));
        }
        if !has(&headers, "content-length") {
            headers.push(("Content-Length".into(), body.len().to_string().into_bytes()));
        }
    }
    Ok(Some(Request {
        method: input
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .into_bytes(),
        uri: input.uri.clone().unwrap_or_else(|| "/".into()).into_bytes(),
        protocol: input
            .version
            .clone()
            .unwrap_or_else(|| "HTTP/1.1".into())
            .into_bytes(),
        headers,
        body,
        remote_addr: "127.0.0.1".into(),
        remote_port: 40000,
        server_addr: input
            .dest_addr
            .clone()
            .unwrap_or_else(|| "127.0.0.1".into()),
        server_port: input.port.unwrap_or(80),
    }))
}

/// ModSecurity-style log lines for the rules that matched, which `log_contains` searches.
fn log_text(tx: &Transaction) -> String {
    let mut out = String::new();
    for m in &tx.matches {
        out.push_str(&format!(
            "ModSecurity: Warning. Matched \"{}\" [id \"{}\"] [msg \"{}\"] [data \"{}\"]",
            m.variable, m.id, m.msg, m.data
        ));
        if let Some(s) = m.severity {
            out.push_str(&format!(" [severity \"{s}\"]"));
        }
        for t in &m.tags {
            out.push_str(&format!(" [tag \"{t}\"]"));
        }
        out.push('\n');
    }
    out
}

/// What an HTTP/1.1 server does with a chunked body before the WAF sees it: decodes the chunks
/// and drops Content-Length, which Transfer-Encoding overrides (RFC 9112 section 6.3).
fn dechunk(mut r: Request) -> Option<Request> {
    let chunked = r.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    if !chunked {
        return Some(r);
    }
    let mut body = Vec::new();
    let mut rest = r.body.as_slice();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
    r.body = body;
    r.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    Some(r)
}

fn run_stage(plan: &Plan, stage: &Stage, show: bool) -> Result<(), String> {
    let request = build_request(&stage.input)?.and_then(dechunk);
    if show {
        eprintln!("request: {request:?}");
    }
    let checked = match request {
        None => Err(400),
        Some(r) => http_check(&r).map(|()| r),
    };
    let (status, log) = match checked {
        Err(status) => (status, String::new()),
        Ok(r) => {
            let mut tx = Transaction::evaluate_request(plan, &r);
            tx.finish();
            // Nothing here proxies CONNECT: past the rules it is not allowed.
            let passed = if r.method == b"CONNECT" { 405 } else { 200 };
            let status = tx.interruption.as_ref().map_or(passed, |i| i.status);
            if show {
                eprintln!("log:\n{}", log_text(&tx));
            }
            (status, log_text(&tx))
        }
    };
    let out = &stage.output;
    if out.expect_error {
        return if status >= 400 && status != 403 {
            Ok(())
        } else {
            Err("expected the request to be refused".into())
        };
    }
    if let Some(pattern) = &out.log_contains {
        let re = regex::Regex::new(pattern).map_err(|e| format!("bad log_contains: {e}"))?;
        if !re.is_match(&log) {
            return Err(format!("log lacks {pattern}"));
        }
    }
    if let Some(pattern) = &out.no_log_contains {
        let re = regex::Regex::new(pattern).map_err(|e| format!("bad no_log_contains: {e}"))?;
        if re.is_match(&log) {
            return Err(format!("log has {pattern}"));
        }
    }
    if let Some(expected) = &out.status {
        let ok = match expected {
            Status::One(s) => *s == status,
            Status::Many(list) => list.contains(&status),
        };
        if !ok {
            return Err(format!("status {status}, expected {expected:?}"));
        }
    }
    Ok(())
}

/// Every test file under `dir`, parsed, in path order.
fn test_files(dir: &Path) -> Result<Vec<(PathBuf, TestFile)>, String> {
    let mut files = Vec::new();
    collect_yaml(dir, &mut files).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let parsed: TestFile =
                serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            Ok((file, parsed))
        })
        .collect()
}

/// Runs every test in every `*.yaml` under `dir` (or only the one titled `only`, showing its
/// requests and log on standard error).
pub fn run_dir(plan: &Plan, dir: &Path, only: Option<&str>) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::new();
    for (file, parsed) in test_files(dir)? {
        for test in parsed.tests {
            if only.is_some_and(|o| o != test.test_title) {
                continue;
            }
            let failure = test
                .stages
                .iter()
                .map(|s| run_stage(plan, &s.stage, only.is_some()))
                .find_map(Result::err);
            outcomes.push(Outcome {
                title: test.test_title,
                file: file.clone(),
                failure,
            });
        }
    }
    Ok(outcomes)
}

/// The request of every test stage under `dir` that the HTTP layer would pass to the rules,
/// with its test's title: for comparing engines or settings on CRS's own traffic.
pub fn requests_in(dir: &Path) -> Result<Vec<(String, Request)>, String> {
    let mut out = Vec::new();
    for (_, parsed) in test_files(dir)? {
        for test in parsed.tests {
            for stage in &test.stages {
                let request = build_request(&stage.stage.input)?.and_then(dechunk);
                if let Some(r) = request.filter(|r| http_check(r).is_ok()) {
                    out.push((test.test_title.clone(), r));
                }
            }
        }
    }
    Ok(out)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_layer_refuses_what_http_forbids() {
        let ok = Request {
            method: b"GET".to_vec(),
            uri: b"/".to_vec(),
            protocol: b"HTTP/1.1".to_vec(),
            headers: vec![("Host".into(), b"localhost".to_vec())],
            ..Request::default()
        };
        assert_eq!(http_check(&ok), Ok(()));
        let with = |f: &dyn Fn(&mut Request)| {
            let mut r = ok.clone();
            f(&mut r);
            http_check(&r)
        };
        assert_eq!(with(&|r| r.method = b"     GET".to_vec()), Err(400));
        assert_eq!(with(&|r| r.uri = b"/a b".to_vec()), Err(400));
        assert_eq!(with(&|r| r.uri = b"/a#frag".to_vec()), Err(400));
        assert_eq!(with(&|r| r.protocol = b"HTTP/0.9".to_vec()), Err(400));
        assert_eq!(with(&|r| r.protocol = b"HTTP/2".to_vec()), Err(400));
        assert_eq!(
            with(&|r| r.protocol = b"HTTP/3.0".to_vec()),
            Ok(()),
            "left to rule 920430"
        );
        assert_eq!(
            with(&|r| r.uri = br"/a\b".to_vec()),
            Ok(()),
            "Apache passes backslashes on"
        );
        assert_eq!(
            with(&|r| r.headers.clear()),
            Err(400),
            "HTTP/1.1 needs Host"
        );
        assert_eq!(with(&|r| r.headers[0].1 = b"local%00".to_vec()), Err(400));
        assert_eq!(
            with(&|r| r.headers.push(("X".into(), b"a\rb".to_vec()))),
            Err(400)
        );
        assert_eq!(
            with(&|r| r.headers.push(("Content-Length".into(), b"abc".to_vec()))),
            Err(400)
        );
        assert_eq!(
            with(&|r| r.headers.push(("Content-Length".into(), b"5".to_vec()))),
            Err(408)
        );
        assert_eq!(
            with(&|r| {
                r.method = b"CONNECT".to_vec();
                r.uri = b"www.example.com".to_vec();
            }),
            Err(400)
        );
        assert_eq!(with(&|r| r.uri = b"http://example.com/x".to_vec()), Ok(()));
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let r = Request {
            headers: vec![
                ("Transfer-Encoding".into(), b"chunked".to_vec()),
                ("Content-Length".into(), b"7".to_vec()),
            ],
            body: b"3\r\nfoo\r\n4\r\n=bar\r\n0\r\n\r\n".to_vec(),
            ..Request::default()
        };
        let r = dechunk(r).unwrap();
        assert_eq!(r.body, b"foo=bar");
        assert_eq!(r.headers.len(), 1);
        let bad = Request {
            headers: vec![("Transfer-Encoding".into(), b"chunked".to_vec())],
            body: b"zz\r\n".to_vec(),
            ..Request::default()
        };
        assert!(
            dechunk(bad).is_none(),
            "a malformed chunked body is refused"
        );
    }

    #[test]
    fn raw_requests_parse() {
        let r = parse_raw(b"POST /x HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc").unwrap();
        assert_eq!(
            (r.method.as_slice(), r.uri.as_slice(), r.body.as_slice()),
            (&b"POST"[..], &b"/x"[..], &b"abc"[..])
        );
        assert_eq!(r.headers[1], ("Content-Length".into(), b"3".to_vec()));
        assert!(parse_raw(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").is_none());
    }
}
