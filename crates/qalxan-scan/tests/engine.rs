//! The engine end to end on files built here: EICAR in nested archives, decompression bombs,
//! damaged archives, allow and ignore lists.

use std::io::Write;
use std::sync::Arc;

use qalxan_scan::{Database, Limits, LoadOptions, ScanOptions, Scanner};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn zip_of(members: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, data) in members {
            w.start_file(*name, opts).expect("start member");
            w.write_all(data).expect("write member");
        }
        w.finish().expect("finish zip");
    }
    buf.into_inner()
}

fn scanner(options: ScanOptions) -> Scanner {
    Scanner::new(Arc::new(Database::builtin()), options)
}

fn names(o: &qalxan_scan::Outcome) -> Vec<String> {
    o.detections.iter().map(|d| d.name.clone()).collect()
}

#[test]
fn eicar_plain_and_in_zip_in_zip() {
    let s = scanner(ScanOptions::default());
    assert_eq!(names(&s.scan_bytes(EICAR)), vec!["Eicar-Test-Signature"]);
    let inner = zip_of(&[("eicar.com", EICAR)], zip::CompressionMethod::Deflated);
    let outer = zip_of(
        &[("readme.txt", b"hello"), ("inner.zip", &inner)],
        zip::CompressionMethod::Deflated,
    );
    let o = s.scan_bytes(&outer);
    assert_eq!(names(&o), vec!["Eicar-Test-Signature"]);
    assert_eq!(o.detections[0].location, vec!["inner.zip", "eicar.com"]);
    assert!(!s.scan_bytes(b"just some text").is_infected());
    // EICAR must start the file: the same bytes later on are not the test file.
    let mut shifted = b"xx".to_vec();
    shifted.extend_from_slice(EICAR);
    assert!(!s.scan_bytes(&shifted).is_infected());
}

#[test]
fn a_zip_bomb_stops_at_the_limits() {
    let zeros = vec![0u8; 64 << 20];
    let bomb = zip_of(&[("zeros.bin", &zeros)], zip::CompressionMethod::Deflated);
    assert!(
        bomb.len() < 1 << 20,
        "the bomb compresses: {} bytes",
        bomb.len()
    );
    let s = scanner(ScanOptions {
        limits: Limits {
            max_file_size: 8 << 20,
            ..Limits::default()
        },
        ..ScanOptions::default()
    });
    let o = s.scan_bytes(&bomb);
    assert_eq!(names(&o), vec!["Heuristics.Limits.Exceeded.MaxFileSize"]);
    assert!(
        o.scanned_bytes < 16 << 20,
        "scanned {} bytes",
        o.scanned_bytes
    );

    // Nesting deeper than allowed: reported, and the scan ends.
    let mut nested = zip_of(&[("clean.txt", b"clean")], zip::CompressionMethod::Deflated);
    for i in 0..8 {
        nested = zip_of(
            &[(&format!("level{i}.zip"), &nested)],
            zip::CompressionMethod::Deflated,
        );
    }
    let s = scanner(ScanOptions {
        limits: Limits {
            max_depth: 4,
            ..Limits::default()
        },
        ..ScanOptions::default()
    });
    assert_eq!(
        names(&s.scan_bytes(&nested)),
        vec!["Heuristics.Limits.Exceeded.MaxRecursion"]
    );
    let quiet = scanner(ScanOptions {
        limits: Limits {
            max_depth: 4,
            ..Limits::default()
        },
        alert_exceeds_max: false,
        ..ScanOptions::default()
    });
    assert!(!quiet.scan_bytes(&nested).is_infected());

    // Too many members.
    let many: Vec<(String, Vec<u8>)> = (0..50).map(|i| (format!("f{i}"), vec![b'a'; 10])).collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let wide = zip_of(&refs, zip::CompressionMethod::Stored);
    let s = scanner(ScanOptions {
        limits: Limits {
            max_files: 10,
            ..Limits::default()
        },
        ..ScanOptions::default()
    });
    assert_eq!(
        names(&s.scan_bytes(&wide)),
        vec!["Heuristics.Limits.Exceeded.MaxFiles"]
    );
}

#[test]
fn a_truncated_archive_is_reported_not_crashed_on() {
    let s = scanner(ScanOptions::default());
    let z = zip_of(
        &[("a.txt", b"aaaa"), ("eicar.com", EICAR)],
        zip::CompressionMethod::Stored,
    );
    // Cut inside the central directory: the local headers still lead to the members.
    let cut = &z[..z.len() - 30];
    let o = s.scan_bytes(cut);
    assert_eq!(names(&o), vec!["Eicar-Test-Signature"]);
    assert!(!o.warnings.is_empty(), "the damage is reported");
    // Every prefix of a deflated archive and of a gzip: no panic, and a warning for the cut.
    let z = zip_of(&[("eicar.com", EICAR)], zip::CompressionMethod::Deflated);
    for n in 0..z.len() {
        let _ = s.scan_bytes(&z[..n]);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&vec![7u8; 100_000]).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let o = s.scan_bytes(&gz[..gz.len() / 2]);
    assert!(
        o.warnings.iter().any(|w| w.contains("gzip")),
        "{:?}",
        o.warnings
    );
}

#[test]
fn allow_and_ignore_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let md5 = {
        use md5::Digest;
        let d = md5::Md5::digest(EICAR);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let ndb = dir.path().join("t.ndb");
    std::fs::write(&ndb, "Test.Hello:0:*:68656c6c6f\n").expect("write");
    let db = Database::load(std::slice::from_ref(&ndb), LoadOptions::default()).expect("loads");
    let s = Scanner::new(Arc::new(db), ScanOptions::default());
    assert_eq!(
        names(&s.scan_bytes(b"say hello")),
        vec!["Test.Hello.UNOFFICIAL"]
    );

    let fp = dir.path().join("t.fp");
    std::fs::write(&fp, format!("{md5}:{}:Eicar.Allowed\n", EICAR.len())).expect("write");
    let ign = dir.path().join("t.ign2");
    std::fs::write(&ign, "Test.Hello\n").expect("write");
    let db = Database::load(&[ndb, fp, ign], LoadOptions::default()).expect("loads");
    let s = Scanner::new(Arc::new(db), ScanOptions::default());
    assert!(!s.scan_bytes(EICAR).is_infected(), "allow-listed by hash");
    assert!(!s.scan_bytes(b"say hello").is_infected(), "name ignored");
}

#[test]
fn malformed_databases_name_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad.ndb");
    std::fs::write(&p, "Good:0:*:4142\nBad:0:*:41{2\n").expect("write");
    let e =
        Database::load(std::slice::from_ref(&p), LoadOptions::default()).expect_err("malformed");
    assert_eq!(e.line, 2);
    assert!(e.to_string().contains("bad.ndb:2:"), "{e}");
    let db = Database::load(
        &[p],
        LoadOptions {
            lenient: true,
            ..Default::default()
        },
    )
    .expect("lenient");
    assert_eq!(db.report().skipped_malformed, 1);
    let unknown = dir.path().join("x.abc");
    std::fs::write(&unknown, "").expect("write");
    assert!(Database::load(&[unknown], LoadOptions::default()).is_err());
}

#[test]
fn cvd_containers_load_as_official() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tar = tar::Builder::new(Vec::new());
    let body = b"Official.Test:0:*:6f6666696369616c\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "test.ndb", &body[..]).expect("tar");
    let tar = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gz");
    let gz = gz.finish().expect("gz");
    let md5 = {
        use md5::Digest;
        md5::Md5::digest(&gz)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut header =
        format!("ClamAV-VDB:01 Jan 2026 00-00 +0000:1:1:90:{md5}:sig:qalxan:0").into_bytes();
    header.resize(512, b' ');
    let mut cvd = header.clone();
    cvd.extend_from_slice(&gz);
    let path = dir.path().join("test.cvd");
    std::fs::write(&path, &cvd).expect("write");
    let db = Database::load(std::slice::from_ref(&path), LoadOptions::default()).expect("loads");
    let s = Scanner::new(Arc::new(db), ScanOptions::default());
    assert_eq!(
        names(&s.scan_bytes(b"an official thing")),
        vec!["Official.Test"]
    );
    // A damaged body is refused.
    let n = cvd.len();
    cvd[n - 5] ^= 0xff;
    std::fs::write(&path, &cvd).expect("write");
    let e = Database::load(&[path], LoadOptions::default()).expect_err("damaged");
    assert!(e.message.contains("MD5"), "{e}");
}

#[test]
fn large_hash_databases_load_in_parallel_chunks_with_true_line_numbers() {
    use sha2::Digest;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = b"the one planted file";
    let digest: String = sha2::Sha256::digest(target)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut text = String::new();
    // Past 16 MB: more than one batch of chunks on two cores, so buffers and partial
    // builders are reused.
    for i in 0..250_000u32 {
        let fake: String = sha2::Sha256::digest(i.to_le_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        text.push_str(&format!("{fake}:{}:Fake.{i}\n", 1000 + i));
        if i == 219_999 {
            text.push_str(&format!("{digest}:{}:Planted.Sig\n", target.len()));
        }
    }
    assert!(
        text.len() > 17 << 20,
        "spans several batches of 4 MB chunks"
    );
    let good = dir.path().join("big.hsb");
    std::fs::write(&good, &text).expect("write");
    let db = Database::load(std::slice::from_ref(&good), LoadOptions::default()).expect("loads");
    assert_eq!(db.report().hash_signatures, 250_001);
    let s = Scanner::new(Arc::new(db), ScanOptions::default());
    assert_eq!(names(&s.scan_bytes(target)), vec!["Planted.Sig.UNOFFICIAL"]);

    let mut lines: Vec<&str> = text.lines().collect();
    lines[230_000] = "not a hash line";
    let bad = dir.path().join("bad.hsb");
    std::fs::write(&bad, lines.join("\n")).expect("write");
    let e = Database::load(&[bad], LoadOptions::default()).expect_err("malformed");
    assert_eq!(e.line, 230_001, "{e}");
}

#[test]
fn yara_rules_run_on_every_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yar = dir.path().join("rules.yar");
    std::fs::write(
        &yar,
        "rule Invoice_Dropper {\n  strings:\n    $a = \"powershell -enc\" nocase\n  condition:\n    $a\n}\n",
    )
    .expect("write");
    let db = Database::load(std::slice::from_ref(&yar), LoadOptions::default()).expect("loads");
    assert_eq!(db.report().yara_rules, 1);
    let s = Scanner::new(Arc::new(db), ScanOptions::default());
    assert_eq!(
        names(&s.scan_bytes(b"run POWERSHELL -ENC aGVsbG8=")),
        vec!["YARA.Invoice_Dropper.UNOFFICIAL"]
    );
    let zipped = zip_of(
        &[("run.bat", b"cmd /c powershell -enc AAAA")],
        zip::CompressionMethod::Deflated,
    );
    let o = s.scan_bytes(&zipped);
    assert_eq!(names(&o), vec!["YARA.Invoice_Dropper.UNOFFICIAL"]);
    assert_eq!(o.detections[0].location, vec!["run.bat"]);
    assert!(!s.scan_bytes(b"nothing here").is_infected());

    let bad = dir.path().join("bad.yar");
    std::fs::write(
        &bad,
        "rule A {\n  condition:\n    true\n}\nrule B {\n  condition\n}\n",
    )
    .expect("write");
    let e = Database::load(&[bad], LoadOptions::default()).expect_err("syntax error");
    assert_eq!(e.line, 7, "{e}");
    assert!(e.to_string().contains("bad.yar:7:"), "{e}");
}

/// A one-member zip, stored, encrypted with traditional PKWARE encryption (ZipCrypto) — the
/// zip crate writes it only internally, and malware exchanges still use it.
fn zipcrypto(name: &str, data: &[u8], password: &[u8]) -> Vec<u8> {
    fn crc_byte(crc: u32, b: u8) -> u32 {
        let mut c = (crc ^ b as u32) & 0xff;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        c ^ (crc >> 8)
    }
    struct Keys(u32, u32, u32);
    impl Keys {
        fn update(&mut self, p: u8) {
            self.0 = crc_byte(self.0, p);
            self.1 = (self.1.wrapping_add(self.0 & 0xff))
                .wrapping_mul(134_775_813)
                .wrapping_add(1);
            self.2 = crc_byte(self.2, (self.1 >> 24) as u8);
        }
        fn encrypt(&mut self, p: u8) -> u8 {
            let t = (self.2 | 2) & 0xffff;
            let c = p ^ ((t.wrapping_mul(t ^ 1) >> 8) & 0xff) as u8;
            self.update(p);
            c
        }
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let crc = crc.sum();
    let mut keys = Keys(0x1234_5678, 0x2345_6789, 0x3456_7890);
    for &b in password {
        keys.update(b);
    }
    let mut header = [7u8; 12];
    header[11] = (crc >> 24) as u8;
    let body: Vec<u8> = header
        .iter()
        .chain(data)
        .map(|&b| keys.encrypt(b))
        .collect();
    let mut out = Vec::new();
    let le16 = |v: u16| v.to_le_bytes();
    let le32 = |v: u32| v.to_le_bytes();
    out.extend_from_slice(b"PK\x03\x04");
    out.extend_from_slice(&le16(20));
    out.extend_from_slice(&le16(1)); // encrypted
    out.extend_from_slice(&le16(0)); // stored
    out.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
    out.extend_from_slice(&le32(crc));
    out.extend_from_slice(&le32(body.len() as u32));
    out.extend_from_slice(&le32(data.len() as u32));
    out.extend_from_slice(&le16(name.len() as u16));
    out.extend_from_slice(&le16(0));
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&body);
    let cd = out.len();
    out.extend_from_slice(b"PK\x01\x02");
    out.extend_from_slice(&le16(20));
    out.extend_from_slice(&le16(20));
    out.extend_from_slice(&le16(1));
    out.extend_from_slice(&le16(0));
    out.extend_from_slice(&[0, 0, 0x21, 0]);
    out.extend_from_slice(&le32(crc));
    out.extend_from_slice(&le32(body.len() as u32));
    out.extend_from_slice(&le32(data.len() as u32));
    out.extend_from_slice(&le16(name.len() as u16));
    out.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
    out.extend_from_slice(&le32(0)); // local header offset
    out.extend_from_slice(name.as_bytes());
    let cd_len = out.len() - cd;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&le16(1));
    out.extend_from_slice(&le16(1));
    out.extend_from_slice(&le32(cd_len as u32));
    out.extend_from_slice(&le32(cd as u32));
    out.extend_from_slice(&le16(0));
    out
}

#[test]
fn encrypted_zips_open_with_the_listed_passwords() {
    let locked = zipcrypto("eicar.com", EICAR, b"infected");
    let s = scanner(ScanOptions::default());
    assert_eq!(names(&s.scan_bytes(&locked)), vec!["Eicar-Test-Signature"]);
    let other = scanner(ScanOptions {
        passwords: vec!["secret".into()],
        ..ScanOptions::default()
    });
    let o = other.scan_bytes(&locked);
    assert!(!o.is_infected());
    assert!(
        o.warnings.iter().any(|w| w.contains("unknown password")),
        "{:?}",
        o.warnings
    );
}

#[test]
fn pcre_subsignatures_run_once_their_trigger_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ldb = dir.path().join("t.ldb");
    std::fs::write(
        &ldb,
        "Pcre.Test;Engine:81-255,Target:0;0&1;68656c6c6f;0/wor+ld\\d+/i\nPcre.Count;Engine:81-255,Target:0;0&1>1;78797a;0/x[0-9]z/\n",
    )
    .expect("write");
    let db = Database::load(std::slice::from_ref(&ldb), LoadOptions::default()).expect("loads");
    assert_eq!(db.report().unsupported, 0);
    let s = Scanner::new(Arc::new(db), ScanOptions::default());
    assert_eq!(
        names(&s.scan_bytes(b"hello WORRLD42")),
        vec!["Pcre.Test.UNOFFICIAL"]
    );
    assert!(
        !s.scan_bytes(b"hello world").is_infected(),
        "the regex needs digits"
    );
    assert!(!s.scan_bytes(b"WORLD42 without the trigger").is_infected());
    assert!(
        !s.scan_bytes(b"xyz x1z").is_infected(),
        "one regex match is not more than one"
    );
    assert_eq!(
        names(&s.scan_bytes(b"xyz x1z x2z")),
        vec!["Pcre.Count.UNOFFICIAL"]
    );
}

/// Hashes from outside the signatures (the CERT's threat intelligence), as a scanner gets them.
#[derive(Debug)]
struct Listed(Vec<[u8; 32]>);

impl qalxan_scan::HashIntel for Listed {
    fn wants(&self) -> (bool, bool, bool) {
        (false, false, true)
    }

    fn lookup(
        &self,
        md5: Option<&[u8; 16]>,
        sha1: Option<&[u8; 20]>,
        sha256: Option<&[u8; 32]>,
    ) -> Option<String> {
        assert!(
            md5.is_none() && sha1.is_none(),
            "only the digest asked for is computed"
        );
        sha256
            .filter(|d| self.0.contains(d))
            .map(|_| "Qalxan.Intel.SHA256".to_owned())
    }
}

#[test]
fn intelligence_hashes_are_found_in_archives_too() {
    use sha2::Digest;
    let payload = b"a dropper known only by its hash".as_slice();
    let listed = Listed(vec![sha2::Sha256::digest(payload).into()]);
    let s = scanner(ScanOptions::default()).with_intel(Some(Arc::new(listed)));
    let zip = zip_of(
        &[("invoice.exe", payload)],
        zip::CompressionMethod::Deflated,
    );
    let o = s.scan_bytes(&zip);
    assert_eq!(names(&o), vec!["Qalxan.Intel.SHA256"]);
    assert_eq!(o.detections[0].location, vec!["invoice.exe"]);
    // Options changed for one scan (all-match) keep the intelligence.
    let all = s.with_options(ScanOptions {
        all_match: true,
        ..ScanOptions::default()
    });
    assert!(all.scan_bytes(payload).is_infected());
    assert!(!s.scan_bytes(b"something else").is_infected());
}

/// Byte-compare subsignatures, on files and signatures whose results were taken from
/// clamscan 1.4.3 (`clamscan --allmatch`): every name below is what it reported, and every
/// signature not listed for a file is one it did not report.
#[test]
fn byte_compare_subsignatures_give_clamscans_results() {
    let ldb = "\
BC.BinBE;Engine:101-255,Target:0;0&1;4d41474943;0(>>5#ib2#=512)
BC.BinLE;Engine:101-255,Target:0;0&1;4d41474943;0(>>5#il2#=2)
BC.BinNoOrder;Engine:101-255,Target:0;0&1;4d41474943;0(>>5#i2#=512)
BC.Dec;Engine:101-255,Target:0;0&1;6c656e3d;0(>>4#d5#=1234)
BC.DecExact;Engine:101-255,Target:0;0&1;6c656e3d;0(>>4#de5#=1234)
BC.DecShort;Engine:101-255,Target:0;0&1;6c656e3d;0(>>4#d2#=12)
BC.HexLE;Engine:101-255,Target:0;0&1;6c653d;0(>>3#hle4#=0x1234)
BC.HexBE;Engine:101-255,Target:0;0&1;6c653d;0(>>3#hbe4#=0x3412)
BC.HexNoOrder;Engine:101-255,Target:0;0&1;6c653d;0(>>3#h4#=0x3412)
BC.Auto0x;Engine:101-255,Target:0;0&1;6865783d;0(>>4#ab4#=31)
BC.AutoShort;Engine:101-255,Target:0;0&1;6865783d;0(>>6#ab2#=31)
BC.Back;Engine:101-255,Target:0;0&1;3b6c656e;0(<<4#d4#=400)
BC.Two;Engine:101-255,Target:0;0&1;73697a653d;0(>>5#d4#>399,<401)
BC.Either;Engine:101-255,Target:0;0|1;73697a653d;0(>>5#d4#>1000)
";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bc.ldb");
    std::fs::write(&path, ldb).expect("write");
    let db = Database::load(&[path], LoadOptions::default()).expect("byte compares load");
    assert_eq!(db.report().unsupported, 0);
    let s = Scanner::new(
        Arc::new(db),
        ScanOptions {
            all_match: true,
            ..ScanOptions::default()
        },
    );
    let found = |data: &[u8]| {
        let mut n: Vec<String> = names(&s.scan_bytes(data))
            .into_iter()
            .map(|n| n.trim_end_matches(".UNOFFICIAL").to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        found(b"MAGIC\x02\x00 size=0400;len=1234x;hex=0x1f;le=3412 end\n"),
        [
            "BC.Auto0x",
            "BC.Back",
            "BC.BinBE",
            "BC.BinLE",
            "BC.Dec",
            "BC.DecShort",
            "BC.Either",
            "BC.HexBE",
            "BC.HexLE",
            "BC.Two"
        ]
    );
    assert_eq!(
        found(b"MAGIC\x00\x02 size=0399;len=12;hex=0x20;le=1234 end\n"),
        ["BC.DecShort", "BC.Either"]
    );

    // A malformed compare is a load error naming its line, as in clamscan.
    let path = dir.path().join("bad.ldb");
    std::fs::write(&path, "X;Engine:101-255,Target:0;0&1;aabb;0(>>4#dl2#=1)\n").expect("write");
    let e = Database::load(&[path], LoadOptions::default()).expect_err("little-endian decimal");
    assert_eq!(e.line, 1, "{e}");
    assert!(e.message.contains("little-endian"), "{e}");
    // A compare triggered by another compare loads (as in clamscan) and never matches.
    let path = dir.path().join("chained.ldb");
    std::fs::write(
        &path,
        "X;Engine:101-255,Target:0;0&1&2;4142;0(>>2#d2#=12);1(>>0#d2#=12)\n",
    )
    .expect("write");
    let db = Database::load(&[path], LoadOptions::default()).expect("loads");
    let s = Scanner::new(Arc::new(db), ScanOptions::default());
    assert!(names(&s.scan_bytes(b"AB12")).is_empty());
}

/// A file over `max_scan_size` (with `max_file_size` raised above it) is scanned up to the
/// limit, its hash signatures see the whole file, and it is never read into memory whole.
#[test]
fn files_over_the_scan_size_are_hashed_whole_and_scanned_to_the_limit() {
    use sha2::Digest;
    let dir = tempfile::tempdir().expect("tempdir");
    // 3 MiB: a marker in the first MiB, EICAR in the last.
    let mut big = vec![b'.'; 3 << 20];
    big[1000..1011].copy_from_slice(b"hello world");
    let tail = big.len() - EICAR.len() - 10;
    big[tail..tail + EICAR.len()].copy_from_slice(EICAR);
    let path = dir.path().join("big.bin");
    std::fs::write(&path, &big).expect("write");
    let sha = sha2::Sha256::digest(&big)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let ndb = dir.path().join("t.ndb");
    std::fs::write(&ndb, "Test.Hello:0:*:68656c6c6f20776f726c64\n").expect("write");
    let hsb = dir.path().join("t.hsb");
    std::fs::write(&hsb, format!("{sha}:{}:Test.Big.File\n", big.len())).expect("write");
    let options = |alert| ScanOptions {
        limits: Limits {
            max_file_size: 1 << 30,
            max_scan_size: 1 << 20,
            ..Limits::default()
        },
        alert_exceeds_max: alert,
        all_match: true,
        ..ScanOptions::default()
    };
    let body_only = Database::load(std::slice::from_ref(&ndb), LoadOptions::default()).unwrap();
    let s = Scanner::new(Arc::new(body_only), options(true));
    let o = s.scan_path(&path).expect("scans");
    // EICAR lies past the limit; the marker within it is found; the limit is not reported
    // beside a real detection.
    assert_eq!(names(&o), vec!["Test.Hello.UNOFFICIAL"]);
    assert_eq!(o.scanned_bytes, 1 << 20, "only the first MiB was scanned");
    std::fs::write(&path, &big[2000..]).expect("write");
    let o = s.scan_path(&path).expect("scans");
    assert_eq!(names(&o), vec!["Heuristics.Limits.Exceeded.MaxScanSize"]);
    let s = Scanner::new(
        Arc::new(Database::load(std::slice::from_ref(&ndb), LoadOptions::default()).unwrap()),
        options(false),
    );
    assert!(!s.scan_path(&path).expect("scans").is_infected());

    std::fs::write(&path, &big).expect("write");
    let db = Database::load(&[ndb, hsb], LoadOptions::default()).unwrap();
    let s = Scanner::new(Arc::new(db), options(false));
    let o = s.scan_path(&path).expect("scans");
    assert_eq!(
        names(&o),
        vec!["Test.Big.File.UNOFFICIAL", "Test.Hello.UNOFFICIAL"],
        "the whole file's SHA-256, then the scanned head"
    );
}
