//! VBA stomping: a module whose source was replaced while its compiled p-code stays. Office
//! runs the p-code, so a scanner that reads only the source is blind. Built here from the
//! corpus' auto-run workbook by rewriting one module's source.

use std::io::{Cursor, Read, Write};
use std::path::Path;

/// MS-OVBA compression with literal tokens only: valid, just not smaller.
fn compress_literally(text: &[u8]) -> Vec<u8> {
    let mut out = vec![1u8];
    for chunk in text.chunks(4096) {
        let mut body = Vec::new();
        for group in chunk.chunks(8) {
            body.push(0u8); // eight literals follow
            body.extend_from_slice(group);
        }
        let header = 0xb000u16 | (body.len() as u16 + 2 - 3);
        out.extend_from_slice(&header.to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// The corpus' auto-run workbook, or None when the corpus is absent.
fn workbook() -> Option<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/data/docs/oletools/encrypted/autostart-encrypt-standardpassword.xls",
    );
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!("skipping: {} is absent", path.display());
            None
        }
    }
}

/// A copy of the compound file with Modul1's compressed source replaced by `source`; the
/// module's p-code stays as it was.
fn with_module_source(original: &[u8], source: &[u8]) -> Vec<u8> {
    let mut src = cfb::CompoundFile::open(Cursor::new(original)).expect("OLE2");
    let mut dst = cfb::CompoundFile::create_with_version(src.version(), Cursor::new(Vec::new()))
        .expect("create");
    let entries: Vec<(std::path::PathBuf, bool)> = src
        .walk()
        .map(|e| (e.path().to_path_buf(), e.is_storage()))
        .collect();
    for (p, storage) in &entries {
        if *storage && p != Path::new("/") {
            dst.create_storage(p).expect("storage");
        }
    }
    for (p, storage) in entries {
        if storage {
            continue;
        }
        let mut bytes = Vec::new();
        src.open_stream(&p)
            .expect("stream")
            .read_to_end(&mut bytes)
            .expect("read");
        if p.ends_with("VBA/Modul1") {
            // The compressed source starts at the last 0x01 that opens a valid container
            // holding the module's text; everything before it is p-code.
            let start = (0..bytes.len())
                .rev()
                .find(|&i| {
                    bytes[i] == 1
                        && qalxan_docs::vba::decompress(&bytes[i..], 1 << 20)
                            .is_some_and(|t| String::from_utf8_lossy(&t).contains("Sub Auto_Open"))
                })
                .expect("the source container");
            bytes.truncate(start);
            bytes.extend(compress_literally(source));
        }
        dst.create_stream(&p)
            .expect("create")
            .write_all(&bytes)
            .expect("write");
    }
    dst.flush().expect("flush");
    dst.into_inner().into_inner()
}

#[test]
fn stomped_module_is_flagged() {
    let Some(original) = workbook() else { return };
    let opts = qalxan_docs::Options::default();
    let before = qalxan_docs::analyze(&original, "book.xls", &opts);
    assert!(!before.indicators.iter().any(|i| i.id == "vba.stomping"));
    let module_code = before
        .macros
        .iter()
        .find(|m| m.name == "Modul1")
        .map(|m| m.code.clone())
        .expect("the workbook's Modul1");
    assert!(module_code.contains("Auto_Open"));

    // Modul1's source replaced by its attribute line alone.
    let stomped = with_module_source(&original, b"Attribute VB_Name = \"Modul1\"\r\n");

    let after = qalxan_docs::analyze(&stomped, "book.xls", &opts);
    let m = after
        .macros
        .iter()
        .find(|m| m.name == "Modul1")
        .expect("Modul1 still listed");
    assert!(
        !m.code.contains("Auto_Open"),
        "the source was replaced: {}",
        m.code
    );
    assert!(
        after.indicators.iter().any(|i| i.id == "vba.stomping"),
        "{:#?}",
        after.indicators
    );
    assert!(after.flags.suspicious);
    assert_ne!(after.verdict, qalxan_docs::Verdict::Clean);
}

/// Source hidden behind Chr() arithmetic, reversed strings and split literals comes back
/// readable, as olevba --reveal shows it, and the keyword analysis sees through it too.
#[test]
fn obfuscated_strings_are_revealed() {
    let Some(original) = workbook() else { return };
    let source = "Attribute VB_Name = \"Modul1\"\r\nSub Auto_Open()\r\n    c = Chr(112) & Chr(111) & ChrW(&H77) & \"er\" + \"sh\" & StrReverse(\"lle\")\r\n    CreateObject(\"WScript.Shell\").Run c & \" -w hidden\", 0\r\nEnd Sub\r\n";
    let doc = with_module_source(&original, source.as_bytes());
    let r = qalxan_docs::analyze(&doc, "book.xls", &qalxan_docs::Options::default());
    let m = r
        .macros
        .iter()
        .find(|m| m.name == "Modul1")
        .expect("Modul1");
    assert_eq!(m.code.replace("\r\n", "\n"), source.replace("\r\n", "\n"));
    let revealed = m.revealed.as_deref().expect("revealed source");
    assert!(
        revealed.contains("    c = \"powershell\"\r\n"),
        "{revealed}"
    );
    let json = serde_json::to_value(&r).expect("json");
    assert!(json["macros"]
        .as_array()
        .expect("macros")
        .iter()
        .any(|m| m["revealed"]
            .as_str()
            .is_some_and(|c| c.contains("\"powershell\""))));
    assert!(
        r.indicators
            .iter()
            .any(|i| i.id == "macro.suspicious" && i.description.starts_with("powershell")),
        "{:#?}",
        r.indicators
    );
    // Modules without obfuscation carry no second copy.
    assert!(r
        .macros
        .iter()
        .filter(|m| m.name != "Modul1")
        .all(|m| m.revealed.is_none()));
}
