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

#[test]
fn stomped_module_is_flagged() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/data/docs/oletools/encrypted/autostart-encrypt-standardpassword.xls",
    );
    let Ok(original) = std::fs::read(&path) else {
        eprintln!("skipping: {} is absent", path.display());
        return;
    };
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

    // Copy the compound file, Modul1's source replaced by its attribute line alone.
    let mut src = cfb::CompoundFile::open(Cursor::new(&original[..])).expect("OLE2");
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
            bytes.extend(compress_literally(b"Attribute VB_Name = \"Modul1\"\r\n"));
        }
        dst.create_stream(&p)
            .expect("create")
            .write_all(&bytes)
            .expect("write");
    }
    dst.flush().expect("flush");
    let stomped = dst.into_inner().into_inner();

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
