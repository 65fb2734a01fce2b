//! A transaction's record in ModSecurity v3's JSON audit-log format, so log pipelines built
//! for ModSecurity (and the CERT's dashboards) read Qalxan's records unchanged.

use crate::eval::{Request, Transaction};
use serde_json::{json, Map, Value};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The audit record of `tx` for `request`. `status` is the HTTP status answered.
pub fn record(
    tx: &Transaction,
    request: &Request,
    status: u16,
    unique_id: &str,
    time: &str,
) -> Value {
    let mut headers = Map::new();
    for (k, v) in &request.headers {
        headers.insert(k.clone(), Value::String(text(v)));
    }
    let severities = [
        "EMERGENCY",
        "ALERT",
        "CRITICAL",
        "ERROR",
        "WARNING",
        "NOTICE",
        "INFO",
        "DEBUG",
    ];
    let messages: Vec<Value> = tx
        .matches
        .iter()
        .map(|m| {
            json!({
                "message": m.msg,
                "details": {
                    "match": format!("Matched {}", m.variable),
                    "reference": "",
                    "ruleId": m.id.to_string(),
                    "file": m.file,
                    "lineNumber": m.line.to_string(),
                    "data": m.data,
                    "severity": m.severity.map(|s| s.to_string()).unwrap_or_default(),
                    "severityName": m.severity.and_then(|s| severities.get(s as usize)).copied().unwrap_or(""),
                    "ver": "",
                    "rev": "",
                    "tags": m.tags,
                    "maturity": "0",
                    "accuracy": "0"
                }
            })
        })
        .collect();
    let version = request
        .protocol
        .strip_prefix(b"HTTP/")
        .unwrap_or(&request.protocol);
    json!({
        "transaction": {
            "client_ip": request.remote_addr,
            "time_stamp": time,
            "server_id": "qalxan",
            "client_port": request.remote_port,
            "host_ip": request.server_addr,
            "host_port": request.server_port,
            "unique_id": unique_id,
            "request": {
                "method": text(&request.method),
                "http_version": text(version),
                "uri": text(&request.uri),
                "headers": headers,
            },
            "response": {
                "http_code": status,
                "headers": {}
            },
            "producer": {
                "modsecurity": format!("Qalxan WAF {}", env!("CARGO_PKG_VERSION")),
                "connector": "qalxan",
                "secrules_engine": match tx.engine_mode() {
                    crate::EngineMode::On => "Enabled",
                    crate::EngineMode::Off => "Disabled",
                    crate::EngineMode::DetectionOnly => "DetectionOnly",
                },
                "components": []
            },
            "messages": messages
        }
    })
}
