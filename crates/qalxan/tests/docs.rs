//! `qalxan analyze` against the labelled document corpus in ../shared/data/docs (oletools'
//! test files and crafted PDFs): every label must agree.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_qalxan");

fn corpus() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/docs");
    if !d.join("labels.json").is_file() {
        eprintln!("skipping: {} is absent", d.display());
        return None;
    }
    Some(d)
}

#[test]
fn analyze_agrees_with_every_label() {
    let Some(dir) = corpus() else { return };
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("labels.json")).expect("labels"))
            .expect("json");
    let labels = labels.as_array().expect("a list of labelled files");
    let files: Vec<String> = labels
        .iter()
        .map(|l| l["file"].as_str().expect("file").to_string())
        .collect();
    // oletools keeps its zipped samples under the password "infected-test".
    let out = Command::new(BIN)
        .args(["analyze", "--json", "--password", "infected-test"])
        .args(&files)
        .current_dir(&dir)
        .output()
        .expect("qalxan analyze runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(results.len(), files.len(), "one result per file: {stdout}");
    let mut mismatches = Vec::new();
    let mut any_flagged = false;
    for (label, result) in labels.iter().zip(&results) {
        let file = label["file"].as_str().unwrap_or_default();
        assert_eq!(result["file"], file, "results come in argument order");
        assert!(result.get("error").is_none(), "{file}: {result}");
        for (key, want) in label["expect"].as_object().expect("expect") {
            let got = &result["flags"][key];
            if got != want {
                mismatches.push(format!("{file}: {key} = {got}, label says {want}"));
            }
        }
        any_flagged |= result["verdict"] != "clean";
    }
    assert!(
        mismatches.is_empty(),
        "{} disagreements:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(any_flagged);
    // Some files are malicious, so the exit code says so.
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn verdicts_of_known_samples() {
    let Some(dir) = corpus() else { return };
    let run = |file: &str| -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["analyze", "--json", "-p", "infected-test", file])
            .current_dir(&dir)
            .output()
            .expect("runs");
        serde_json::from_slice(&out.stdout).expect("json")
    };
    for (file, verdict) in [
        ("oletools/msodde/harmless-clean.docm", "clean"),
        ("generated-pdf/clean-minimal.pdf", "clean"),
        ("oletools/msodde/dde-test.docx", "malicious"),
        ("generated-pdf/js-openaction.pdf", "malicious"),
        ("generated-pdf/launch-openaction.pdf", "malicious"),
        ("oletools/encrypted/encrypted.docx", "suspicious"),
        (
            "oletools/excel4-macros/excel4_sample_macro.xlsm",
            "malicious",
        ),
    ] {
        let r = run(file);
        assert_eq!(r["verdict"], verdict, "{file}: {r}");
    }
    // The explanation names where: the JavaScript is shown decoded, with its object.
    let r = run("generated-pdf/js-in-objstm.pdf");
    let scripts = r["scripts"].as_array().expect("scripts");
    assert!(
        scripts.iter().any(|s| s["kind"] == "javascript"
            && s["location"]
                .as_str()
                .is_some_and(|l| l.starts_with("obj "))),
        "{r}"
    );
    // VBA source comes out of the MS-OVBA compression.
    let r = run("oletools/encrypted/autostart-encrypt-standardpassword.xls");
    let macros = r["macros"].as_array().expect("macros");
    assert!(
        macros.iter().any(|m| m["code"]
            .as_str()
            .is_some_and(|c| c.contains("Sub Auto_Open()"))),
        "{r}"
    );
}

#[test]
fn exit_codes_and_errors() {
    let Some(dir) = corpus() else { return };
    let ok = Command::new(BIN)
        .args(["analyze", "generated-pdf/clean-minimal.pdf"])
        .current_dir(&dir)
        .output()
        .expect("runs");
    assert_eq!(ok.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&ok.stdout).starts_with("generated-pdf/clean-minimal.pdf: clean")
    );
    let missing = Command::new(BIN)
        .args(["analyze", "--json", "no/such/file.doc"])
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&missing.stdout).expect("json");
    assert!(v["error"]
        .as_str()
        .is_some_and(|e| e.contains("no/such/file.doc")));
}
