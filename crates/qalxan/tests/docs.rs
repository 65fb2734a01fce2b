//! `qalxan analyze` against the labelled document corpus in ../shared/data/docs (oletools'
//! test files and crafted PDFs): every label must agree.

mod common;

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
    // A folder stands for the files below it.
    let folder = Command::new(BIN)
        .args(["analyze", "--json", "generated-pdf"])
        .current_dir(&dir)
        .output()
        .expect("runs");
    let lines = String::from_utf8_lossy(&folder.stdout).lines().count();
    let pdfs = std::fs::read_dir(dir.join("generated-pdf"))
        .expect("folder")
        .count();
    assert_eq!(lines, pdfs);
    assert_eq!(folder.status.code(), Some(1));
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

fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping the {name} checks: {name} is not installed");
    }
    found
}

/// LibreOffice opens the file and renders it to PDF.
fn libreoffice_converts(file: &Path, work: &Path) -> bool {
    let out = work.join("lo-out");
    let _ = std::fs::remove_dir_all(&out);
    let profile = format!(
        "-env:UserInstallation=file://{}",
        work.join("lo-profile").display()
    );
    let status = Command::new("timeout")
        .args([
            "120",
            "soffice",
            &profile,
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
        ])
        .arg(&out)
        .arg(file)
        .output()
        .expect("soffice runs");
    let stem = file
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    status.status.success()
        && std::fs::metadata(out.join(format!("{stem}.pdf"))).is_ok_and(|m| m.len() > 0)
}

/// Files disarm refuses, with the reason it gives.
const NOT_DISARMED: &[(&str, &str)] = &[
    ("oletools/basic/empty", "cannot be disarmed"),
    ("encrypted.docm", "unknown password"),
    ("encrypted.docx", "unknown password"),
    ("encrypted.pptm", "unknown password"),
    ("encrypted.pptx", "unknown password"),
    ("encrypted.xlsb", "unknown password"),
    ("encrypted.xlsm", "unknown password"),
    ("excel4_sample_macro.xlsb", "binary workbooks"),
];

#[test]
fn disarm_round_trip_on_every_sample() {
    let Some(dir) = corpus() else { return };
    // No database here: CI's second pass, on PostgreSQL, need not open LibreOffice again.
    if std::env::var_os("QALXAN_TEST_DATABASE_URL").is_some() {
        eprintln!("skipping: this test uses no database and runs in the SQLite pass");
        return;
    }
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("labels.json")).expect("labels"))
            .expect("json");
    let work = tempfile::tempdir().expect("tempdir");
    let check_pdf = tool("qpdf");
    let check_office = tool("soffice");
    let mut failures = Vec::new();
    for (i, label) in labels.as_array().expect("list").iter().enumerate() {
        let file = label["file"].as_str().expect("file");
        let name = file.rsplit('/').next().unwrap_or(file);
        let out_path = work.path().join(format!("{i}-{name}"));
        let out = Command::new(BIN)
            .args(["disarm", "--json", "-p", "infected-test", file, "-o"])
            .arg(&out_path)
            .current_dir(&dir)
            .output()
            .expect("qalxan disarm runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some((_, why)) = NOT_DISARMED.iter().find(|(f, _)| file.ends_with(f)) {
            if out.status.code() != Some(2) || !stderr.contains(why) {
                failures.push(format!(
                    "{file}: expected a refusal mentioning {why:?}, got {:?} {stderr}",
                    out.status.code()
                ));
            }
            continue;
        }
        if !out.status.success() {
            failures.push(format!("{file}: disarm failed: {stderr}"));
            continue;
        }
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        assert!(report["removed"].is_array(), "{report}");
        // Re-analysing the safe copy finds nothing active.
        let again = Command::new(BIN)
            .args(["analyze", "--json"])
            .arg(&out_path)
            .output()
            .expect("analyze runs");
        let r: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
        if r["verdict"] != "clean" {
            failures.push(format!(
                "{file}: disarmed copy is {}: {}",
                r["verdict"], r["indicators"]
            ));
        }
        for flag in [
            "macros",
            "autoexec",
            "dde",
            "ole_objects",
            "javascript",
            "open_action",
            "launch",
            "embedded_files",
            "xlm_macros",
        ] {
            if r["flags"][flag] == true {
                failures.push(format!("{file}: disarmed copy still has {flag}"));
            }
        }
        let expect = &label["expect"];
        // PDF links (/URI) are kept, like hyperlinks in Office files: they run nothing.
        let links_kept = file.ends_with(".pdf");
        let active = [
            "macros",
            "dde",
            "ole_objects",
            "external_refs",
            "javascript",
            "open_action",
            "launch",
            "embedded_files",
        ]
        .iter()
        .any(|k| expect[*k] == true && !(links_kept && *k == "external_refs"));
        if active && report["removed"].as_array().is_none_or(|a| a.is_empty()) {
            failures.push(format!(
                "{file}: active content but nothing reported removed"
            ));
        }
        // The copy still opens.
        if file.ends_with(".pdf") {
            if check_pdf {
                let q = Command::new("qpdf")
                    .arg("--check")
                    .arg(&out_path)
                    .output()
                    .expect("qpdf runs");
                if !q.status.success() {
                    failures.push(format!(
                        "{file}: qpdf --check: {}",
                        String::from_utf8_lossy(&q.stdout)
                    ));
                }
            }
        } else if check_office && !file.ends_with(".zip") {
            // Only a copy that fails is compared with its original (which may not open either).
            if !libreoffice_converts(&out_path, work.path())
                && libreoffice_converts(&dir.join(file), work.path())
            {
                failures.push(format!("{file}: LibreOffice cannot open the disarmed copy"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// PDFs encrypted by qpdf with AES-128 and AES-256 and an empty user password are decrypted
/// for analysis and disarmed into plain PDFs.
#[test]
fn encrypted_pdfs_are_opened() {
    let Some(dir) = corpus() else { return };
    if !tool("qpdf") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    for bits in ["128", "256"] {
        let enc = work.path().join(format!("js-{bits}.pdf"));
        let q = Command::new("qpdf")
            .args(["--encrypt", "", "owner-secret", bits])
            .args(if bits == "128" {
                vec!["--use-aes=y"]
            } else {
                vec![]
            })
            .args(["--", "generated-pdf/js-openaction.pdf"])
            .arg(&enc)
            .current_dir(&dir)
            .output()
            .expect("qpdf runs");
        assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
        let out = Command::new(BIN)
            .args(["analyze", "--json"])
            .arg(&enc)
            .output()
            .expect("runs");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(r["flags"]["encrypted"], true, "{r}");
        assert_eq!(r["flags"]["javascript"], true, "AES-{bits}: {r}");
        let code = r["scripts"][0]["code"].as_str().unwrap_or_default();
        assert!(
            code.contains("app.alert") || code.contains("alert"),
            "decrypted JavaScript: {code:?}"
        );
        let safe = work.path().join(format!("safe-{bits}.pdf"));
        let d = Command::new(BIN)
            .args(["disarm"])
            .arg(&enc)
            .arg("-o")
            .arg(&safe)
            .output()
            .expect("runs");
        assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
        let q = Command::new("qpdf")
            .arg("--check")
            .arg(&safe)
            .output()
            .expect("qpdf");
        assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stdout));
        assert!(String::from_utf8_lossy(&q.stdout).contains("File is not encrypted"));
    }
}

/// The API and the page: upload, the stored verdict, the safe copy, the event, isolation.
#[tokio::test(flavor = "multi_thread")]
async fn documents_api_and_page() {
    use qalxan_core::Role;
    let Some(dir) = corpus() else { return };
    let config = qalxan_server::Config {
        docs_max_bytes: 1 << 20,
        ..qalxan_server::Config::default()
    };
    let server = common::TestServer::start_with(config).await;
    let ours = server.institution("Ministry of Documents").await;
    let theirs = server.institution("Another Ministry").await;
    let staff = server.token(Role::Institution, Some(ours)).await;
    let other = server.token(Role::Institution, Some(theirs)).await;
    let client = reqwest::Client::new();
    let sample =
        std::fs::read(dir.join("oletools/encrypted/autostart-encrypt-standardpassword.xlsm"))
            .expect("sample");
    let r = client
        .post(server.url("/api/v1/documents?name=invoice.xlsm"))
        .bearer_auth(&staff)
        .body(sample)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let doc: serde_json::Value = r.json().await.expect("json");
    assert_eq!(doc["verdict"], "malicious", "{doc}");
    assert_eq!(doc["institution_id"], ours.0);
    assert_eq!(doc["report"]["flags"]["macros"], true);
    assert!(doc["report"]["macros"][0]["code"]
        .as_str()
        .is_some_and(|c| c.contains("Auto_Open")));
    let id = doc["id"].as_i64().expect("id");
    let download = doc["download"].as_str().expect("a safe copy");
    let r = client
        .get(server.url(download))
        .bearer_auth(&staff)
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .contains("invoice.disarmed.xlsx"));
    let safe = r.bytes().await.expect("bytes");
    let again = qalxan_docs::analyze(&safe, "invoice.xlsx", &qalxan_docs::Options::default());
    assert_eq!(
        again.verdict,
        qalxan_docs::Verdict::Clean,
        "{:?}",
        again.indicators
    );

    // Neutralised: one doc.neutralized event for the institution.
    let (_, page) = server
        .api(&staff)
        .get("/api/v1/events?kind=doc.neutralized")
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");

    // Another institution sees neither the document nor its copy.
    let r = client
        .get(server.url(&format!("/api/v1/documents/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let r = client
        .get(server.url(download))
        .bearer_auth(&other)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let (_, list) = server.api(&other).get("/api/v1/documents").await;
    assert_eq!(list.as_array().map(Vec::len), Some(0));
    let sensor = server.token(Role::Sensor, None).await;
    let r = client
        .get(server.url("/api/v1/documents"))
        .bearer_auth(&sensor)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403, "machines submit, they do not read");
    let r = client
        .post(server.url("/api/v1/documents"))
        .bearer_auth(&staff)
        .body(vec![0u8; (1 << 20) + 1])
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 413);

    // The page: upload through the form (multipart, with the session's CSRF token).
    let browser = server.admin_browser().await;
    let (status, html) = browser.page("/documents").await;
    assert_eq!(status, 200);
    let csrf = common::csrf_of(&html);
    let pdf = std::fs::read(dir.join("generated-pdf/js-openaction.pdf")).expect("pdf");
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(pdf.clone()).file_name("<b>offer</b>.pdf"),
        );
    let r = browser
        .client
        .post(server.url("/documents"))
        .multipart(form)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    let (status, html) = browser.page(&location).await;
    assert_eq!(status, 200);
    assert!(html.contains("data-verdict=\"malicious\""), "{html}");
    assert!(
        html.contains("&lt;b&gt;offer&lt;/b&gt;.pdf"),
        "the file name is escaped"
    );
    assert!(html.contains("app.alert"), "the JavaScript is shown");
    assert!(html.contains("pdf.javascript"));
    let (status, _) = browser.page(&format!("{location}/disarmed")).await;
    assert_eq!(status, 200);
    // Without the CSRF token the upload is refused.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(pdf).file_name("x.pdf"),
    );
    let r = browser
        .client
        .post(server.url("/documents"))
        .multipart(form)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
}

/// `--reveal` shows macro source with its string obfuscation undone, here in an
/// OpenDocument text's StarBasic module built for the test.
#[test]
fn reveal_shows_deobfuscated_macro_source() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("letter.odt");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).expect("create"));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let module = "<?xml version=\"1.0\"?><script:module xmlns:script=\"http://openoffice.org/2000/script\" script:name=\"Module1\" script:language=\"StarBasic\">Sub Main\n  c = Chr(112) &amp; Chr(111) &amp; ChrW(&amp;H77) &amp; \"er\" + \"sh\" &amp; StrReverse(\"lle\")\n  Shell(c)\nEnd Sub\n</script:module>";
    let parts: [(&str, &str); 4] = [
        ("mimetype", "application/vnd.oasis.opendocument.text"),
        (
            "content.xml",
            "<?xml version=\"1.0\"?><office:document-content xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\"/>",
        ),
        (
            "META-INF/manifest.xml",
            "<?xml version=\"1.0\"?><manifest:manifest xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\"/>",
        ),
        ("Basic/Standard/Module1.xml", module),
    ];
    for (name, text) in parts {
        z.start_file(name, stored).expect("member");
        z.write_all(text.as_bytes()).expect("write");
    }
    z.finish().expect("zip");

    let run = |flag: &str| {
        let out = Command::new(BIN)
            .args(["analyze", flag])
            .arg(&path)
            .output()
            .expect("runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let revealed = run("--reveal");
    assert!(revealed.contains("(deobfuscated)"), "{revealed}");
    assert!(revealed.contains("|   c = \"powershell\""), "{revealed}");
    let plain = run("--show-code");
    assert!(
        plain.contains("StrReverse(\"lle\")") && !plain.contains("\"powershell\""),
        "{plain}"
    );
    let r: serde_json::Value = serde_json::from_str(&run("--json")).expect("json");
    assert!(
        r["macros"][0]["revealed"]
            .as_str()
            .is_some_and(|c| c.contains("c = \"powershell\"")),
        "{r}"
    );
}
