//! MISP event JSON in and out, and MISP feed manifests.
//!
//! Accepts what MISP produces: `{"Event": {...}}`, a bare event, a search response
//! (`{"response": [{"Event": ...}]}`), or a list of events. Attributes and the attributes of
//! objects become indicators by their MISP type (`ip-dst`, `domain|ip`, `filename|sha256`,
//! `malware-sample` ...); `to_ids: false` keeps an indicator from blocking; `tlp:*` tags set its
//! TLP (an attribute's tag over its event's). Attributes that are not indicators (text,
//! comments, links to reports) are listed in `skipped` with the reason, never silently dropped.

use crate::observable::{Kind, Observable};
use crate::{FormatError, Import, Indicator, MAX_OBJECTS};
use qalxan_core::Tlp;
use serde_json::{json, Value};

/// The events of a MISP document, with their locations.
fn events(v: &Value) -> Result<Vec<(String, &Value)>, FormatError> {
    if let Some(e) = v.get("Event") {
        return Ok(vec![("Event".to_owned(), e)]);
    }
    if let Some(list) = v.get("response").and_then(Value::as_array) {
        return Ok(list
            .iter()
            .enumerate()
            .map(|(i, item)| {
                (
                    format!("response[{i}].Event"),
                    item.get("Event").unwrap_or(item),
                )
            })
            .collect());
    }
    if let Some(list) = v.as_array() {
        return Ok(list
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("[{i}].Event"), item.get("Event").unwrap_or(item)))
            .collect());
    }
    if v.get("Attribute").is_some() || v.get("Object").is_some() || v.get("info").is_some() {
        return Ok(vec![(String::new(), v)]);
    }
    Err(FormatError::new(
        "",
        "not a STIX bundle or a MISP event (no \"type\": \"bundle\", no \"Event\")",
    ))
}

/// Whether this is a MISP feed's manifest.json (event uuid → summary); returns the uuids.
pub fn manifest_events(v: &Value) -> Option<Vec<String>> {
    let map = v.as_object()?;
    if map.is_empty()
        || !map
            .iter()
            .all(|(k, e)| uuid::Uuid::parse_str(k).is_ok() && e.get("info").is_some())
    {
        return None;
    }
    Some(map.keys().cloned().collect())
}

fn tag_names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).or_else(|| t.as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn tlp_from_tags(tags: &[String]) -> Option<Tlp> {
    tags.iter()
        .filter(|t| t.to_ascii_lowercase().starts_with("tlp:"))
        .filter_map(|t| Tlp::parse_lenient(t).ok())
        .max()
}

/// MISP writes booleans as `true`, `"1"` or `1`.
fn truthy(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_i64() != Some(0)),
        Value::String(s) => Some(matches!(s.as_str(), "1" | "true" | "True")),
        _ => None,
    }
}

fn time_of(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => s
            .parse::<i64>()
            .ok()
            .map(|secs| secs * 1000)
            .or_else(|| qalxan_core::parse_rfc3339(s).ok())
            .or_else(|| crate::pattern::parse_timestamp(s)),
        Value::Number(n) => n.as_i64().map(|s| s * 1000),
        _ => None,
    }
}

/// A list property: absent or null is empty, anything else but a list is an error.
fn list<'a>(v: Option<&'a Value>, at: &str) -> Result<&'a [Value], FormatError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(FormatError::new(at, "must be a list")),
    }
}

/// The kinds one MISP attribute holds, in the order of its `|`-separated parts.
fn kinds_of(misp_type: &str) -> Option<Vec<Option<Kind>>> {
    use Kind::*;
    let one = |k: Kind| Some(vec![Some(k)]);
    match misp_type {
        "ip-src" | "ip-dst" => one(Ipv4),
        "ip-src|port" | "ip-dst|port" => Some(vec![Some(Ipv4), None]),
        "domain" | "hostname" => one(Domain),
        "domain|ip" => Some(vec![Some(Domain), Some(Ipv4)]),
        "hostname|port" => Some(vec![Some(Domain), None]),
        "url" | "uri" => one(Url),
        "email" | "email-src" | "email-dst" | "email-reply-to" | "whois-registrant-email" => {
            one(Email)
        }
        "md5" => one(Md5),
        "sha1" => one(Sha1),
        "sha256" => one(Sha256),
        "filename" => one(Filename),
        "filename|md5" | "malware-sample" => Some(vec![Some(Filename), Some(Md5)]),
        "filename|sha1" => Some(vec![Some(Filename), Some(Sha1)]),
        "filename|sha256" => Some(vec![Some(Filename), Some(Sha256)]),
        "phone-number" | "whois-registrant-phone" => one(Phone),
        "bin" => one(CardBin),
        "yara" => one(Yara),
        "stix2-pattern" => one(StixPattern),
        _ => None,
    }
}

/// Reads MISP events.
pub fn import(v: &Value, source: &str, default_tlp: Tlp) -> Result<Import, FormatError> {
    let mut out = Import::default();
    for (at, event) in events(v)? {
        let event_tags = tag_names(event.get("Tag"));
        let event_tlp = tlp_from_tags(&event_tags).unwrap_or(default_tlp);
        let org = event
            .get("Orgc")
            .and_then(|o| o.get("name"))
            .and_then(Value::as_str)
            .unwrap_or(source);
        let info = event
            .get("info")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let dot = if at.is_empty() { "" } else { "." };
        let mut attrs: Vec<(String, &Value)> = Vec::new();
        for (i, x) in list(event.get("Attribute"), &format!("{at}{dot}Attribute"))?
            .iter()
            .enumerate()
        {
            attrs.push((format!("{at}{dot}Attribute[{i}]"), x));
        }
        for (j, obj) in list(event.get("Object"), &format!("{at}{dot}Object"))?
            .iter()
            .enumerate()
        {
            let oat = format!("{at}{dot}Object[{j}]");
            for (i, x) in list(obj.get("Attribute"), &format!("{oat}.Attribute"))?
                .iter()
                .enumerate()
            {
                attrs.push((format!("{oat}.Attribute[{i}]"), x));
            }
        }
        if attrs.len() > MAX_OBJECTS {
            return Err(FormatError::new(
                at,
                format!("more than {MAX_OBJECTS} attributes"),
            ));
        }
        for (here, a) in attrs {
            let misp_type = a.get("type").and_then(Value::as_str).ok_or_else(|| {
                FormatError::new(format!("{here}.type"), "missing or not a string")
            })?;
            let value = a.get("value").and_then(Value::as_str).ok_or_else(|| {
                FormatError::new(format!("{here}.value"), "missing or not a string")
            })?;
            let Some(kinds) = kinds_of(misp_type) else {
                out.skipped.push(format!(
                    "{here}: MISP type '{misp_type}' is not an indicator type"
                ));
                continue;
            };
            let parts: Vec<&str> = if kinds.len() > 1 {
                value.splitn(kinds.len(), '|').collect()
            } else {
                vec![value]
            };
            // A sample being uploaded carries only its name; MISP adds the hash once stored.
            let whole = parts.len() == kinds.len() || misp_type == "malware-sample";
            if !whole {
                out.skipped.push(format!(
                    "{here}.value: '{value}' does not have the {} parts of a {misp_type}",
                    kinds.len()
                ));
                continue;
            }
            let tags = tag_names(a.get("Tag"));
            let tlp = tlp_from_tags(&tags).unwrap_or(event_tlp);
            let to_ids = truthy(a.get("to_ids")).unwrap_or(true);
            let comment = a.get("comment").and_then(Value::as_str).unwrap_or_default();
            let sightings = a
                .get("Sighting")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            for (kind, part) in kinds.iter().zip(parts) {
                let Some(kind) = kind else { continue };
                let ob = match Observable::new(*kind, part) {
                    Ok(ob) => ob,
                    Err(e) => {
                        out.skipped.push(format!("{here}.value: {e}"));
                        continue;
                    }
                };
                let mut ind = Indicator::new(ob, org);
                ind.tlp = tlp;
                ind.blocking &= to_ids;
                let mut all_tags: Vec<String> = event_tags
                    .iter()
                    .chain(&tags)
                    .filter(|t| !t.to_ascii_lowercase().starts_with("tlp:"))
                    .cloned()
                    .collect();
                all_tags.sort();
                all_tags.dedup();
                ind.tags = all_tags;
                ind.description = [info, comment]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(": ");
                ind.first_seen =
                    time_of(a.get("first_seen")).or_else(|| time_of(a.get("timestamp")));
                ind.last_seen = time_of(a.get("last_seen"));
                if sightings > 0 {
                    ind.tags.push(format!("misp-sightings:{sightings}"));
                }
                out.indicators.push(ind);
            }
        }
    }
    Ok(out)
}

/// The MISP type and category an indicator is exported as.
fn misp_type(kind: Kind, value: &str) -> (&'static str, &'static str) {
    match kind {
        Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr => ("ip-dst", "Network activity"),
        Kind::Domain => ("domain", "Network activity"),
        Kind::Url => ("url", "Network activity"),
        Kind::Email => ("email-src", "Payload delivery"),
        Kind::Md5 => ("md5", "Payload delivery"),
        Kind::Sha1 => ("sha1", "Payload delivery"),
        Kind::Sha256 => ("sha256", "Payload delivery"),
        Kind::Filename => ("filename", "Payload delivery"),
        Kind::Phone => ("phone-number", "Other"),
        Kind::CardBin => ("bin", "Financial fraud"),
        Kind::Messenger if value.starts_with("telegram:") => ("text", "Social network"),
        Kind::Messenger => ("text", "Social network"),
        Kind::Yara => ("yara", "Payload installation"),
        Kind::StixPattern => ("stix2-pattern", "Payload installation"),
    }
}

/// One MISP event holding the indicators; the event carries the most restrictive TLP among them.
pub fn export(indicators: &[Indicator], info: &str, org: &str, now_ms: i64) -> Value {
    let tlp = indicators.iter().map(|i| i.tlp).max().unwrap_or(Tlp::Clear);
    let attributes: Vec<Value> = indicators
        .iter()
        .map(|i| {
            let (t, category) = misp_type(i.kind, &i.value);
            let id = crate::stix::stable_uuid(&format!("qalxan:indicator:{}:{}", i.kind, i.value));
            let mut tags: Vec<Value> = vec![json!({"name": i.tlp.as_str().to_ascii_lowercase()})];
            tags.extend(i.tags.iter().map(|t| json!({"name": t})));
            let mut a = json!({
                "uuid": id.to_string(),
                "type": t,
                "category": category,
                "value": i.value,
                "to_ids": i.blocking,
                "comment": if i.kind == Kind::Messenger { format!("messenger account {}; {}", i.value, i.description) } else { i.description.clone() },
                "timestamp": (i.last_seen.or(i.first_seen).unwrap_or(now_ms) / 1000).to_string(),
                "Tag": tags,
            });
            if let Some(f) = i.first_seen {
                a["first_seen"] = json!(crate::stix::format_time(f));
            }
            if let Some(l) = i.last_seen {
                a["last_seen"] = json!(crate::stix::format_time(l));
            }
            a
        })
        .collect();
    let date = crate::stix::format_time(now_ms)[..10].to_owned();
    json!({"Event": {
        "uuid": uuid::Uuid::new_v4().to_string(),
        "info": info,
        "date": date,
        "timestamp": (now_ms / 1000).to_string(),
        "threat_level_id": "2",
        "analysis": "2",
        "distribution": "0",
        "published": false,
        "Orgc": {"name": org},
        "Tag": [{"name": tlp.as_str().to_ascii_lowercase()}],
        "Attribute": attributes,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_and_objects_become_indicators() {
        let ev = json!({"Event": {"info": "Phishing wave", "Orgc": {"name": "CERT-X"},
            "Tag": [{"name": "tlp:green"}, {"name": "phishing"}],
            "Attribute": [
                {"type": "domain|ip", "value": "Evil.Example|203.0.113.9", "to_ids": true, "category": "Network activity"},
                {"type": "malware-sample", "value": "bar.exe|d41d8cd98f00b204e9800998ecf8427e", "to_ids": "1"},
                {"type": "url", "value": "http://evil.example/x", "to_ids": false, "Tag": [{"name": "tlp:amber"}]},
                {"type": "text", "value": "free text"}
            ],
            "Object": [{"name": "file", "Attribute": [{"type": "sha256", "value": "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"}]}]
        }});
        let imp = import(&ev, "file", Tlp::Amber).unwrap();
        let got: Vec<_> = imp
            .indicators
            .iter()
            .map(|i| (i.kind, i.value.as_str(), i.tlp, i.blocking))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::Domain, "evil.example", Tlp::Green, true),
                (Kind::Ipv4, "203.0.113.9", Tlp::Green, false),
                (Kind::Filename, "bar.exe", Tlp::Green, false),
                (
                    Kind::Md5,
                    "d41d8cd98f00b204e9800998ecf8427e",
                    Tlp::Green,
                    false
                ),
                (Kind::Url, "http://evil.example/x", Tlp::Amber, false),
                (
                    Kind::Sha256,
                    "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f",
                    Tlp::Green,
                    true
                ),
            ]
        );
        assert_eq!(imp.indicators[0].source, "CERT-X");
        assert_eq!(imp.indicators[0].tags, vec!["phishing".to_owned()]);
        assert_eq!(imp.skipped.len(), 1, "{:?}", imp.skipped);
        assert!(imp.skipped[0].contains("Attribute[3]"));
        let out = export(&imp.indicators, "x", "CERT", 0);
        let back = import(&out, "y", Tlp::Red).unwrap();
        assert_eq!(back.indicators.len(), imp.indicators.len());
        assert!(import(
            &json!({"Event": {"Attribute": [{"value": "x"}]}}),
            "f",
            Tlp::Amber
        )
        .unwrap_err()
        .location
        .ends_with("Attribute[0].type"));
    }
}
