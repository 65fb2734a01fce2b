//! The engine against the shared STIX and MISP material: the OASIS validator's verdicts on
//! patterns, the OASIS example bundles, and PyMISP's event files.

use qalxan_core::Tlp;
use qalxan_intel::{misp, stix, Pattern};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn data(sub: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(sub);
    if dir.exists() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent", dir.display());
        None
    }
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

#[test]
fn patterns_classify_as_the_oasis_validator_does() {
    let Some(file) = data("stix/patterns.jsonl") else {
        return;
    };
    let text = std::fs::read_to_string(file).expect("readable");
    let mut wrong = Vec::new();
    let mut total = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let pattern = row["pattern"].as_str().expect("pattern");
        let valid = row["valid"].as_bool().expect("valid");
        total += 1;
        let got = Pattern::parse(pattern);
        if got.is_ok() != valid {
            wrong.push(format!("{pattern}: expected valid={valid}, got {got:?}"));
        }
    }
    assert!(total >= 70, "only {total} patterns read");
    assert!(
        wrong.is_empty(),
        "{} of {total} misclassified:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

fn ids(objects: &[serde_json::Value]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap_or_default().to_owned(),
                o["modified"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn example_bundles_round_trip() {
    let Some(dir) = data("stix/bundles") else {
        return;
    };
    let files = json_files(&dir);
    assert!(files.len() >= 5);
    let mut indicators = 0;
    for f in files {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).expect("readable")).expect("JSON");
        let first = stix::import_bundle(&v, "test", Tlp::Amber)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let exported = stix::bundle(first.objects.clone());
        let second = stix::import_bundle(&exported, "test", Tlp::Amber)
            .unwrap_or_else(|e| panic!("{} again: {e}", f.display()));
        // The export adds only the TLP 2.0 marking definitions its objects reference.
        let added: Vec<_> = ids(&second.objects)
            .difference(&ids(&first.objects))
            .cloned()
            .collect();
        assert!(
            added
                .iter()
                .all(|(id, _)| id.starts_with("marking-definition--")),
            "{}: {added:?}",
            f.display()
        );
        assert!(
            ids(&first.objects).is_subset(&ids(&second.objects)),
            "{}",
            f.display()
        );
        for o in &first.objects {
            let id = &o["id"];
            let again = second
                .objects
                .iter()
                .find(|x| x["id"] == *id)
                .expect("kept");
            assert_eq!(o, again, "{}: {id} changed", f.display());
        }
        assert_eq!(first.indicators, second.indicators, "{}", f.display());
        indicators += first.indicators.len();
    }
    assert!(
        indicators >= 15,
        "{indicators} indicators read from the bundles"
    );
}

#[test]
fn c2_indicator_is_read_with_its_pattern() {
    let Some(dir) = data("stix/bundles") else {
        return;
    };
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("indicator-for-c2-ip-address.json")).expect("readable"),
    )
    .expect("JSON");
    let imp = stix::import_bundle(&v, "test", Tlp::Amber).expect("imports");
    assert_eq!(imp.indicators.len(), 1);
    let i = &imp.indicators[0];
    assert_eq!((i.kind.as_str(), i.value.as_str()), ("ipv4", "10.0.0.0"));
    assert_eq!(
        i.stix_id.as_deref(),
        Some("indicator--33fe3b22-0201-47cf-85d0-97c02164528d")
    );
    // A private address is warninglisted: kept, not blocking.
    assert_eq!(i.warninglist.as_deref(), Some("special-use-ip-ranges"));
    assert!(!i.blocking);
}

#[test]
fn misp_events_import_with_all_attributes() {
    let Some(dir) = data("misp") else { return };
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("existing_event.json")).expect("readable"))
            .expect("JSON");
    let imp = misp::import(&v, "test", Tlp::Amber).expect("imports");
    let event = v.get("Event").unwrap_or(&v);
    let attributes = event["Attribute"].as_array().expect("list").len()
        + event["Object"]
            .as_array()
            .expect("list")
            .iter()
            .map(|o| o["Attribute"].as_array().map_or(0, Vec::len))
            .sum::<usize>();
    // Every attribute is either an indicator (domain|ip and filename|hash give two) or listed as
    // skipped with its reason.
    let mut accounted = BTreeSet::new();
    for s in &imp.skipped {
        accounted.insert(
            s.split(':')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".value")
                .to_owned(),
        );
    }
    let text_like = event["Attribute"]
        .as_array()
        .expect("list")
        .iter()
        .chain(
            event["Object"]
                .as_array()
                .expect("list")
                .iter()
                .flat_map(|o| o["Attribute"].as_array().expect("list")),
        )
        .filter(|a| matches!(a["type"].as_str(), Some("text" | "link" | "comment")))
        .count();
    assert_eq!(imp.skipped.len(), text_like, "{:?}", imp.skipped);
    assert_eq!(
        imp.indicators.len() + imp.skipped.len(),
        attributes,
        "{:?}",
        imp.skipped
    );
    let domains = imp
        .indicators
        .iter()
        .filter(|i| i.kind.as_str() == "domain")
        .count();
    assert_eq!(domains, 7 + 12);
    for f in ["event_obj_attr_tag.json", "malware.json", "event_tags.json"] {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(f)).expect("readable")).expect("JSON");
        let imp = misp::import(&v, "test", Tlp::Amber).unwrap_or_else(|e| panic!("{f}: {e}"));
        match f {
            "event_obj_attr_tag.json" => {
                let got: Vec<_> = imp
                    .indicators
                    .iter()
                    .map(|i| (i.kind.as_str(), i.value.as_str()))
                    .collect();
                assert_eq!(
                    got,
                    vec![("filename", "bar"), ("url", "https://www.circl.lu/")]
                );
                assert_eq!(imp.indicators[0].tags, vec!["blah".to_owned()]);
            }
            "malware.json" => assert_eq!(imp.indicators.len(), 1, "{:?}", imp.skipped),
            _ => assert!(imp.indicators.is_empty()),
        }
    }
}
