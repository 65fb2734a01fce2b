//! STIX 2.1 bundles in and out.
//!
//! Objects are kept as JSON (`serde_json::Value`), not mapped onto Rust structs: STIX has
//! dozens of object types and custom properties, and a CERT must pass on what a partner sent
//! without losing fields it does not understand. What Qalxan acts on is read out of them:
//! indicators (their patterns reduced to values for the blocklists), observables (kept as
//! non-blocking intelligence), TLP markings. Every object is checked for the common properties
//! the specification requires (`type`, an `id` of the form `type--UUID`, `spec_version`,
//! `created`/`modified` on domain objects) so a bad object is refused by its position.

use crate::observable::{Kind, Observable};
use crate::pattern::{pattern_for, Pattern};
use crate::{FormatError, Import, Indicator, MAX_OBJECTS};
use qalxan_core::Tlp;
use serde_json::{json, Map, Value};

/// The TLP 2.0 extension every TLP 2.0 marking declares.
pub const TLP2_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

/// The published marking-definition ids: TLP 2.0's, then TLP 1.0's (predefined by STIX 2.1).
pub fn tlp_marking_id(t: Tlp) -> &'static str {
    match t {
        Tlp::Clear => "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
        Tlp::Green => "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
        Tlp::Amber => "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
        Tlp::AmberStrict => "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
        Tlp::Red => "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    }
}

const TLP1_MARKINGS: &[(&str, Tlp)] = &[
    (
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
        Tlp::Clear,
    ),
    (
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
        Tlp::Green,
    ),
    (
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
        Tlp::Amber,
    ),
    (
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        Tlp::Red,
    ),
];

/// The TLP a marking id stands for, from the published ids.
pub fn tlp_of_marking(id: &str) -> Option<Tlp> {
    TLP1_MARKINGS
        .iter()
        .find(|(m, _)| *m == id)
        .map(|(_, t)| *t)
        .or_else(|| Tlp::ALL.iter().copied().find(|t| tlp_marking_id(*t) == id))
}

/// The TLP 2.0 marking-definition object, as published by OASIS.
pub fn tlp_marking_object(t: Tlp) -> Value {
    let level = t.as_str().trim_start_matches("TLP:").to_ascii_lowercase();
    json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": tlp_marking_id(t),
        "created": "2022-10-01T00:00:00.000Z",
        "name": t.as_str(),
        "extensions": {
            TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}
        }
    })
}

/// Object types that are cyber observables (SCOs): no `created`/`modified` required.
const SCO_TYPES: &[&str] = &[
    "artifact",
    "autonomous-system",
    "directory",
    "domain-name",
    "email-addr",
    "email-message",
    "file",
    "ipv4-addr",
    "ipv6-addr",
    "mac-addr",
    "mutex",
    "network-traffic",
    "process",
    "software",
    "url",
    "user-account",
    "windows-registry-key",
    "x509-certificate",
];

fn is_sco(t: &str) -> bool {
    SCO_TYPES.contains(&t) || (t.starts_with("x-") && !t.starts_with("x-mitre"))
}

/// STIX timestamps: RFC 3339 in UTC with `Z`.
fn parse_time(v: Option<&Value>) -> Option<i64> {
    crate::pattern::parse_timestamp(v?.as_str()?)
}

/// Formats Unix milliseconds as STIX wants (`2024-01-01T00:00:00.000Z`).
pub fn format_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Checks the common properties of one object; `at` is its location for errors.
pub fn check_object(o: &Value, at: &str) -> Result<(), FormatError> {
    let obj = o
        .as_object()
        .ok_or_else(|| FormatError::new(at, "an object must be a JSON object"))?;
    let t = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| FormatError::new(format!("{at}.type"), "missing or not a string"))?;
    let valid_type = (3..=250).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !t.starts_with('-');
    if !valid_type {
        return Err(FormatError::new(
            format!("{at}.type"),
            format!("'{t}' is not a STIX type name (lower-case letters, digits, '-')"),
        ));
    }
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| FormatError::new(format!("{at}.id"), "missing or not a string"))?;
    let ok_id = id
        .strip_prefix(t)
        .and_then(|r| r.strip_prefix("--"))
        .is_some_and(|u| uuid::Uuid::parse_str(u).is_ok());
    if !ok_id {
        return Err(FormatError::new(
            format!("{at}.id"),
            format!("'{id}' is not '{t}--' followed by a UUID"),
        ));
    }
    if !is_sco(t) && t != "bundle" {
        for field in ["created"]
            .into_iter()
            .chain((t != "marking-definition").then_some("modified"))
        {
            let v = obj.get(field);
            if parse_time(v).is_none() {
                return Err(FormatError::new(
                    format!("{at}.{field}"),
                    "missing or not a timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z)",
                ));
            }
        }
    }
    if let Some(sv) = obj.get("spec_version") {
        if sv.as_str() != Some("2.1") {
            return Err(FormatError::new(
                format!("{at}.spec_version"),
                format!("{sv} is not \"2.1\" (only STIX 2.1 is read)"),
            ));
        }
    }
    Ok(())
}

/// The most restrictive TLP among an object's markings (markings from `bundle_markings`,
/// custom definitions inside the bundle, resolve too).
fn object_tlp(o: &Value, custom: &[(String, Tlp)]) -> Option<Tlp> {
    o.get("object_marking_refs")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|id| {
            tlp_of_marking(id).or_else(|| custom.iter().find(|(c, _)| c == id).map(|(_, t)| *t))
        })
        .max()
}

/// A marking definition in a bundle that is a TLP marking under another id.
fn custom_tlp(o: &Value) -> Option<Tlp> {
    if let Some(def) = o.get("definition") {
        if o.get("definition_type").and_then(Value::as_str) == Some("tlp") {
            return Tlp::parse_lenient(def.get("tlp")?.as_str()?).ok();
        }
    }
    let ext = o.get("extensions")?.get(TLP2_EXTENSION)?;
    Tlp::parse_lenient(ext.get("tlp_2_0")?.as_str()?).ok()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a bundle: every object is checked and kept; indicators and observables are read out.
pub fn import_bundle(
    bundle: &Value,
    source: &str,
    default_tlp: Tlp,
) -> Result<Import, FormatError> {
    let objects: Vec<Value> = match bundle.get("type").and_then(Value::as_str) {
        Some("bundle") => {
            if let Some(id) = bundle.get("id").and_then(Value::as_str) {
                if !id.starts_with("bundle--") {
                    return Err(FormatError::new(
                        "id",
                        format!("'{id}' is not 'bundle--' followed by a UUID"),
                    ));
                }
            }
            match bundle.get("objects") {
                None => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(_) => return Err(FormatError::new("objects", "must be a list")),
            }
        }
        // A single object (a TAXII envelope's item, a file of one indicator).
        Some(_) => vec![bundle.clone()],
        None => {
            return Err(FormatError::new(
                "type",
                "missing: not a STIX bundle or object",
            ))
        }
    };
    import_objects(objects, source, default_tlp, "objects")
}

/// Reads a list of objects (a bundle's, or a TAXII envelope's).
pub fn import_objects(
    objects: Vec<Value>,
    source: &str,
    default_tlp: Tlp,
    at: &str,
) -> Result<Import, FormatError> {
    if objects.len() > MAX_OBJECTS {
        return Err(FormatError::new(
            at,
            format!("more than {MAX_OBJECTS} objects"),
        ));
    }
    let mut out = Import::default();
    let mut custom = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        check_object(o, &format!("{at}[{i}]"))?;
        if o["type"] == "marking-definition" {
            if let (Some(id), Some(t)) = (o["id"].as_str(), custom_tlp(o)) {
                custom.push((id.to_owned(), t));
            }
        }
    }
    // Identities name the source better than the file does.
    let identity_names: Vec<(String, String)> = objects
        .iter()
        .filter(|o| o["type"] == "identity")
        .filter_map(|o| Some((o["id"].as_str()?.to_owned(), o["name"].as_str()?.to_owned())))
        .collect();
    for (i, o) in objects.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let t = o["type"].as_str().unwrap_or_default();
        let tlp = object_tlp(o, &custom).unwrap_or(default_tlp);
        let src = o
            .get("created_by_ref")
            .and_then(Value::as_str)
            .and_then(|r| identity_names.iter().find(|(id, _)| id == r))
            .map(|(_, n)| n.as_str())
            .unwrap_or(source);
        match t {
            "indicator" => read_indicator(o, &here, src, tlp, &mut out)?,
            _ if is_sco(t) => {
                let path_value = match t {
                    "ipv4-addr" | "ipv6-addr" | "domain-name" | "url" | "email-addr" => {
                        o.get("value").and_then(Value::as_str).map(|v| (t, v))
                    }
                    _ => None,
                };
                let kind = match path_value.map(|(t, _)| t) {
                    Some("ipv4-addr") => Some(Kind::Ipv4),
                    Some("ipv6-addr") => Some(Kind::Ipv6),
                    Some("domain-name") => Some(Kind::Domain),
                    Some("url") => Some(Kind::Url),
                    Some("email-addr") => Some(Kind::Email),
                    _ => None,
                };
                let mut found: Vec<Observable> = Vec::new();
                if let (Some(kind), Some((_, v))) = (kind, path_value) {
                    match Observable::new(kind, v) {
                        Ok(ob) => found.push(ob),
                        Err(e) => out.skipped.push(format!("{here}.value: {e}")),
                    }
                }
                if t == "file" {
                    if let Some(h) = o.get("hashes").and_then(Value::as_object) {
                        for (algo, v) in h {
                            let kind = match algo.to_ascii_uppercase().replace('-', "").as_str() {
                                "MD5" => Kind::Md5,
                                "SHA1" => Kind::Sha1,
                                "SHA256" => Kind::Sha256,
                                _ => continue,
                            };
                            if let Some(ob) = v.as_str().and_then(|v| Observable::new(kind, v).ok())
                            {
                                found.push(ob);
                            }
                        }
                    }
                }
                for ob in found {
                    // Observed is not malicious: kept as intelligence, never blocking.
                    let mut ind = Indicator::new(ob, src);
                    ind.blocking = false;
                    ind.tlp = tlp;
                    ind.tags.push("observed".to_owned());
                    ind.stix_id = o["id"].as_str().map(str::to_owned);
                    out.indicators.push(ind);
                }
            }
            _ => {}
        }
    }
    out.objects = objects;
    Ok(out)
}

fn read_indicator(
    o: &Value,
    here: &str,
    source: &str,
    tlp: Tlp,
    out: &mut Import,
) -> Result<(), FormatError> {
    let pattern = o
        .get("pattern")
        .and_then(Value::as_str)
        .ok_or_else(|| FormatError::new(format!("{here}.pattern"), "missing or not a string"))?;
    let pattern_type = o
        .get("pattern_type")
        .and_then(Value::as_str)
        .unwrap_or("stix");
    let observables = match pattern_type {
        "stix" => {
            let p = Pattern::parse(pattern)
                .map_err(|e| FormatError::new(format!("{here}.pattern"), e.to_string()))?;
            p.observables().unwrap_or_else(|| {
                vec![Observable {
                    kind: Kind::StixPattern,
                    value: pattern.to_owned(),
                }]
            })
        }
        "yara" => match Observable::new(Kind::Yara, pattern) {
            Ok(ob) => vec![ob],
            Err(e) => {
                out.skipped.push(format!("{here}.pattern: {e}"));
                return Ok(());
            }
        },
        other => {
            out.skipped.push(format!(
                "{here}: pattern_type '{other}' is kept but not enforced (stix and yara are)"
            ));
            return Ok(());
        }
    };
    let valid_from = parse_time(o.get("valid_from"));
    let valid_until = parse_time(o.get("valid_until"));
    let mut tags = strings(o.get("labels"));
    for t in strings(o.get("indicator_types")) {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    let description = [o.get("name"), o.get("description")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(": ");
    let revoked = o.get("revoked").and_then(Value::as_bool) == Some(true);
    for ob in observables {
        let mut ind = Indicator::new(ob, source);
        ind.tlp = tlp;
        ind.confidence = o
            .get("confidence")
            .and_then(Value::as_u64)
            .map_or(50, |c| c.min(100) as u8);
        ind.tags = tags.clone();
        ind.description = description.clone();
        ind.first_seen = valid_from;
        ind.valid_until = valid_until;
        ind.stix_id = o["id"].as_str().map(str::to_owned);
        if revoked {
            ind.blocking = false;
        }
        out.indicators.push(ind);
    }
    Ok(())
}

/// A UUID in version 4 form (what STIX wants for domain objects) derived from `name`, so the
/// same value always gets the same id.
pub fn stable_uuid(name: &str) -> uuid::Uuid {
    let v5 = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes());
    uuid::Builder::from_random_bytes(*v5.as_bytes()).into_uuid()
}

/// Ids for the objects one batch generates (an import gives each new indicator a STIX
/// object), in version-4 UUID form and sorting by creation: 48 bits of Unix milliseconds, 26
/// random bits drawn once per batch, then a 48-bit number the caller makes unique within the
/// batch (the store uses the indicator's row id, so it can write the ids in one SQL statement,
/// `printf('%08x-%04x-4%03x-%04x-%012x', ...)` of [`IdBatch::parts`]). Stores index objects by
/// id: ids that grow with time are appended to that index instead of scattered through it,
/// which made SQLite's bulk import of generated objects 2.5 times faster (measured on 300,000
/// objects). The random bits keep two deployments generating at the same millisecond apart.
#[derive(Debug, Clone, Copy)]
pub struct IdBatch {
    ms: i64,
    random_a: u16,
    random_b: u16,
}

impl IdBatch {
    pub fn new(ms: i64) -> IdBatch {
        let r = *uuid::Uuid::new_v4().as_bytes();
        IdBatch {
            ms: ms.clamp(0, (1 << 48) - 1),
            random_a: u16::from_be_bytes([r[0], r[1]]) & 0x0fff,
            random_b: u16::from_be_bytes([r[2], r[3]]) & 0x3fff,
        }
    }

    /// The integers of the UUID's groups before the last: time high (32 bits), time low (16),
    /// the 12 bits after the version nibble `4`, and the group with the variant bits set.
    pub fn parts(&self) -> [i64; 4] {
        [
            self.ms >> 16,
            self.ms & 0xffff,
            i64::from(self.random_a),
            0x8000 | i64::from(self.random_b),
        ]
    }

    /// The id of object `n` of the batch.
    pub fn id(&self, object_type: &str, n: u64) -> String {
        let [hi, lo, a, b] = self.parts();
        format!(
            "{object_type}--{hi:08x}-{lo:04x}-4{a:03x}-{b:04x}-{:012x}",
            n & 0xffff_ffff_ffff
        )
    }
}

/// Who a bundle Qalxan writes says it is from.
pub fn cert_identity(name: &str) -> Value {
    let id = stable_uuid(&format!("qalxan:identity:{name}"));
    json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": format!("identity--{id}"),
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "name": name,
        "identity_class": "organization",
    })
}

/// The STIX id of an indicator's object: the one it came with, else one derived from its
/// value, so the same value always has the same id.
pub fn indicator_id(ind: &Indicator) -> String {
    ind.stix_id
        .clone()
        .filter(|s| s.starts_with("indicator--"))
        .unwrap_or_else(|| {
            let u = stable_uuid(&format!("qalxan:indicator:{}:{}", ind.kind, ind.value));
            format!("indicator--{u}")
        })
}

/// The STIX indicator object for a stored indicator that did not come from STIX. Its id is
/// derived from the value, so exporting twice gives the same object.
pub fn indicator_object(
    ind: &Indicator,
    created_ms: i64,
    modified_ms: i64,
    identity: &str,
) -> Value {
    let ob = ind.observable();
    let id = indicator_id(ind);
    let valid_from = ind.first_seen.unwrap_or(created_ms);
    let mut m = Map::new();
    m.insert("type".into(), json!("indicator"));
    m.insert("spec_version".into(), json!("2.1"));
    m.insert("id".into(), json!(id));
    m.insert("created".into(), json!(format_time(created_ms)));
    m.insert(
        "modified".into(),
        json!(format_time(modified_ms.max(created_ms))),
    );
    m.insert("created_by_ref".into(), json!(identity));
    m.insert(
        "name".into(),
        json!(format!("{} {}", ind.kind, shorten(&ind.value))),
    );
    let description = if ind.description.is_empty() {
        format!(
            "Reported by {}.",
            if ind.source.is_empty() {
                "the CERT"
            } else {
                &ind.source
            }
        )
    } else {
        ind.description.clone()
    };
    m.insert("description".into(), json!(description));
    m.insert("indicator_types".into(), json!(["malicious-activity"]));
    let (pattern_type, pattern) = match ind.kind {
        Kind::Yara => ("yara", ind.value.clone()),
        _ => ("stix", pattern_for(&ob)),
    };
    m.insert("pattern".into(), json!(pattern));
    m.insert("pattern_type".into(), json!(pattern_type));
    m.insert("valid_from".into(), json!(format_time(valid_from)));
    if let Some(until) = ind.valid_until.filter(|u| *u > valid_from) {
        m.insert("valid_until".into(), json!(format_time(until)));
    }
    m.insert("confidence".into(), json!(ind.confidence));
    if !ind.tags.is_empty() {
        m.insert("labels".into(), json!(ind.tags));
    }
    m.insert(
        "object_marking_refs".into(),
        json!([tlp_marking_id(ind.tlp)]),
    );
    Value::Object(m)
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// A bundle of `objects`, with the TLP 2.0 marking definitions they reference added.
pub fn bundle(mut objects: Vec<Value>) -> Value {
    let mut used: Vec<Tlp> = Vec::new();
    for o in &objects {
        for r in strings(o.get("object_marking_refs")) {
            if let Some(t) = Tlp::ALL.iter().find(|t| tlp_marking_id(**t) == r) {
                if !used.contains(t) {
                    used.push(*t);
                }
            }
        }
    }
    used.sort();
    for t in used {
        if !objects.iter().any(|o| o["id"] == tlp_marking_id(t)) {
            objects.push(tlp_marking_object(t));
        }
    }
    json!({
        "type": "bundle",
        "id": format!("bundle--{}", uuid::Uuid::new_v4()),
        "objects": objects,
    })
}

#[cfg(test)]
mod id_batch_tests {
    use super::IdBatch;

    #[test]
    fn batch_ids_are_v4_and_sort_by_time_then_number() {
        let first = IdBatch::new(1_700_000_000_000);
        let later = IdBatch::new(1_700_000_000_001);
        let ids = [
            first.id("indicator", 0),
            first.id("indicator", 1),
            first.id("indicator", 70_000),
            first.id("indicator", (1 << 48) - 1),
            later.id("indicator", 0),
        ];
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        for id in &ids {
            let u = uuid::Uuid::parse_str(id.strip_prefix("indicator--").unwrap()).unwrap();
            assert_eq!(u.get_version_num(), 4, "{id}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_checked_by_position() {
        let b = json!({"type": "bundle", "id": "bundle--44af6c39-c09b-49c5-9de2-394224b04982", "objects": [
            {"type": "indicator", "spec_version": "2.1", "id": "indicator--33fe3b22-0201-47cf-85d0-97c02164528d",
             "created": "2014-05-08T09:00:00.000Z", "modified": "2014-05-08T09:00:00.000Z",
             "pattern": "[ipv4-addr:value = '45.9.148.3']", "pattern_type": "stix", "valid_from": "2014-05-08T09:00:00Z",
             "object_marking_refs": ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]},
            {"type": "indicator", "spec_version": "2.1", "id": "indicator--nope"}
        ]});
        let e = import_bundle(&b, "t", Tlp::Amber).unwrap_err();
        assert_eq!(e.location, "objects[1].id");
        let mut ok = b.clone();
        ok["objects"].as_array_mut().unwrap().pop();
        let imp = import_bundle(&ok, "t", Tlp::Amber).unwrap();
        assert_eq!(imp.indicators.len(), 1);
        assert_eq!(imp.indicators[0].tlp, Tlp::Green);
        assert!(imp.indicators[0].blocking);
        let mut bad = ok.clone();
        bad["objects"][0]["pattern"] = json!("[ipv4-addr:value = ");
        let e = import_bundle(&bad, "t", Tlp::Amber).unwrap_err();
        assert_eq!(e.location, "objects[0].pattern");
    }

    #[test]
    fn exported_indicators_read_back() {
        let mut ind = Indicator::new(
            Observable::new(Kind::Domain, "evil.example").unwrap(),
            "cert",
        );
        ind.tlp = Tlp::AmberStrict;
        ind.tags = vec!["phishing".into()];
        let o = indicator_object(&ind, 1_700_000_000_000, 1_700_000_000_000, "identity--x");
        let b = bundle(vec![o.clone()]);
        assert_eq!(b["objects"][1]["id"], tlp_marking_id(Tlp::AmberStrict));
        let back = import_bundle(&b, "t", Tlp::Clear).unwrap();
        assert_eq!(back.indicators[0].value, "evil.example");
        assert_eq!(back.indicators[0].tlp, Tlp::AmberStrict);
        assert_eq!(back.indicators[0].stix_id.as_deref(), o["id"].as_str());
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(stable_uuid("x").get_version_num(), 4);
        assert_eq!(stable_uuid("x"), stable_uuid("x"));
    }
}
