//! OLE2 compound files: Word, Excel and PowerPoint 97-2003 documents, VBA projects,
//! embedded objects, and the container of encrypted OOXML documents.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use crate::report::{join, Context, Severity};
use crate::vba::{self, u16le, u32le};

/// A parsed compound file with its streams read on demand.
pub(crate) struct Ole<'d> {
    pub cf: cfb::CompoundFile<Cursor<&'d [u8]>>,
    /// Every stream path, in the order the directory lists them.
    pub streams: Vec<PathBuf>,
    /// Every storage path.
    pub storages: Vec<PathBuf>,
}

impl<'d> Ole<'d> {
    pub fn open(data: &'d [u8], max_items: usize) -> Result<Self, String> {
        let cf = cfb::CompoundFile::open(Cursor::new(data)).map_err(|e| e.to_string())?;
        let mut streams = Vec::new();
        let mut storages = Vec::new();
        for e in cf.walk().take(max_items) {
            if e.is_stream() {
                streams.push(e.path().to_path_buf());
            } else if e.is_storage() {
                storages.push(e.path().to_path_buf());
            }
        }
        Ok(Ole {
            cf,
            streams,
            storages,
        })
    }

    /// The stream at `path`, at most `max` bytes of it.
    pub fn read(&mut self, path: &Path, max: usize) -> Result<Vec<u8>, String> {
        let s = self.cf.open_stream(path).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        s.take(max as u64)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    pub fn find(&self, name: &str) -> Option<PathBuf> {
        self.streams
            .iter()
            .find(|p| p.file_name().is_some_and(|f| f.eq_ignore_ascii_case(name)) && depth(p) == 1)
            .cloned()
    }
}

fn depth(p: &Path) -> usize {
    p.components().count() - 1
}

/// A stream or storage path as analysts read it: `/` separated, control characters escaped.
pub(crate) fn display(p: &Path) -> String {
    let s = p.to_string_lossy();
    let s = s.trim_start_matches('/');
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c as u32) < 0x20 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn analyze(cx: &mut Context<'_>, data: &[u8], location: &str, depth_: u32) {
    let mut ole = match Ole::open(data, cx.opts.limits.max_items) {
        Ok(o) => o,
        Err(e) => {
            cx.malformed(location, format!("not a readable OLE2 compound file: {e}"));
            return;
        }
    };
    let cap = cx.decode_cap();

    if let (Some(info), Some(pkg)) = (ole.find("EncryptionInfo"), ole.find("EncryptedPackage")) {
        encrypted_package(cx, &mut ole, &info, &pkg, location, depth_);
        return;
    }

    vba_projects(cx, &mut ole, location);
    if let Some(word) = ole.find("WordDocument") {
        word_document(cx, &mut ole, &word, location, cap);
    }
    for name in ["Workbook", "Book"] {
        if let Some(book) = ole.find(name) {
            if let Ok(bytes) = ole.read(&book, cap) {
                cx.charge(bytes.len(), location);
                crate::xls::analyze(cx, &bytes, &join(location, name));
            }
            break;
        }
    }
    if let Some(ppt) = ole.find("PowerPoint Document") {
        if let Ok(bytes) = ole.read(&ppt, cap) {
            cx.charge(bytes.len(), location);
            powerpoint(cx, &bytes, &join(location, "PowerPoint Document"), depth_);
        }
    }
    embedded_objects(cx, &mut ole, location, depth_);
}

/// OOXML encrypted with a password (ECMA-376 Agile or Standard encryption): the zip is the
/// `EncryptedPackage` stream. Office's default passwords and the configured list are tried.
fn encrypted_package(
    cx: &mut Context<'_>,
    ole: &mut Ole<'_>,
    info: &Path,
    pkg: &Path,
    location: &str,
    depth: u32,
) {
    cx.flags.encrypted = true;
    let cap = cx.decode_cap();
    let (Ok(info), Ok(pkg)) = (ole.read(info, 1 << 20), ole.read(pkg, cap)) else {
        cx.malformed(
            location,
            "unreadable EncryptionInfo or EncryptedPackage stream",
        );
        return;
    };
    cx.charge(pkg.len(), location);
    let passwords = crate::crypto::candidate_passwords(cx.opts);
    match crate::crypto::decrypt_package(&info, &pkg, &passwords) {
        Ok(Some((plain, password))) => {
            cx.auto_decrypted |= password == crate::crypto::EXCEL_DEFAULT;
            cx.add(
                "encrypted",
                Severity::Medium,
                location,
                format!(
                    "encrypted Office document; opened with the {} password \"{password}\"",
                    if password == crate::crypto::EXCEL_DEFAULT {
                        "built-in Excel"
                    } else {
                        "configured"
                    }
                ),
            );
            cx.charge(plain.len(), location);
            cx.analyze(&plain, &join(location, "EncryptedPackage"), depth + 1);
        }
        Ok(None) => cx.add(
            "encrypted",
            Severity::Medium,
            location,
            "encrypted Office document; the password is unknown, so its content was not analysed"
                .into(),
        ),
        Err(e) => {
            cx.add(
                "encrypted",
                Severity::Medium,
                location,
                format!("encrypted Office document that could not be decrypted: {e}"),
            );
        }
    }
}

/// Every VBA project in the file: storages holding a `VBA/dir` stream.
fn vba_projects(cx: &mut Context<'_>, ole: &mut Ole<'_>, location: &str) {
    let dirs: Vec<PathBuf> = ole
        .streams
        .iter()
        .filter(|p| {
            p.file_name().is_some_and(|f| f.eq_ignore_ascii_case("dir"))
                && p.parent()
                    .and_then(|d| d.file_name())
                    .is_some_and(|f| f.eq_ignore_ascii_case("VBA"))
        })
        .cloned()
        .collect();
    for dir in dirs {
        let vba_dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let project_loc = join(location, &display(&vba_dir));
        cx.flags.macros = true;
        let cap = cx.decode_cap();
        let raw = match ole.read(&dir, cap) {
            Ok(r) => r,
            Err(e) => {
                cx.malformed(&project_loc, format!("unreadable VBA dir stream: {e}"));
                continue;
            }
        };
        let project = match vba::decompress(&raw, cap) {
            Some(d) => vba::parse_dir(&d),
            None => {
                cx.malformed(
                    &project_loc,
                    "VBA dir stream is not compressed as MS-OVBA says",
                );
                vba::Project::default()
            }
        };
        if project.damaged {
            cx.malformed(&project_loc, "VBA dir stream ends before its terminator");
        }
        let mut modules = Vec::new();
        for m in &project.modules {
            let path = vba_dir.join(&m.stream);
            let Ok(stream) = ole.read(&path, cap) else {
                cx.malformed(
                    &project_loc,
                    format!("module {} names a missing stream {}", m.name, m.stream),
                );
                continue;
            };
            cx.charge(stream.len(), &project_loc);
            let offset = m.offset as usize;
            let source = stream
                .get(offset..)
                .and_then(|s| vba::decompress(s, cap))
                .or_else(|| {
                    cx.malformed(
                        &project_loc,
                        format!("module {}: source offset {offset} is wrong", m.name),
                    );
                    scan_for_source(&stream, cap)
                })
                .unwrap_or_default();
            cx.charge(source.len(), &project_loc);
            let code = vba::decode(&source, project.codepage);
            let pcode = stream.get(..offset.min(stream.len())).unwrap_or_default();
            modules.push((
                m.name.clone(),
                join(&project_loc, &m.stream),
                code,
                pcode.to_vec(),
            ));
        }
        // Modules the dir stream does not name are still in the storage; malware hides
        // code there when it breaks the dir stream on purpose.
        if project.modules.is_empty() {
            for path in ole.streams.clone() {
                if path.parent() != Some(vba_dir.as_path()) {
                    continue;
                }
                let name = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name.eq_ignore_ascii_case("dir")
                    || name.starts_with("_VBA_PROJECT")
                    || name.starts_with("__SRP_")
                {
                    continue;
                }
                if let Ok(stream) = ole.read(&path, cap) {
                    if let Some(src) = scan_for_source(&stream, cap) {
                        let code = vba::decode(&src, 1252);
                        modules.push((name.clone(), join(&project_loc, &name), code, Vec::new()));
                    }
                }
            }
        }
        crate::report::vba_modules(cx, &project_loc, modules);
    }
}

/// olevba's fallback: the compressed source starts with 0x01 and a chunk header whose
/// signature bits are 0b011; try each such place and keep the longest text.
fn scan_for_source(stream: &[u8], cap: usize) -> Option<Vec<u8>> {
    let mut best: Option<Vec<u8>> = None;
    for (i, _) in stream.iter().enumerate().filter(|(_, &b)| b == 1).take(64) {
        let Some(h) = u16le(stream, i + 1) else { break };
        if h & 0x7000 != 0x3000 {
            continue;
        }
        if let Some(out) = vba::decompress(&stream[i..], cap) {
            let text = out
                .iter()
                .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
                .count();
            if out.len() > 16
                && text * 10 >= out.len() * 9
                && best.as_ref().is_none_or(|b| b.len() < out.len())
            {
                best = Some(out);
            }
        }
    }
    best
}

/// Word 97-2003: encryption bit in the FIB, and field codes (DDE) in the text.
fn word_document(cx: &mut Context<'_>, ole: &mut Ole<'_>, path: &Path, location: &str, cap: usize) {
    let loc = join(location, "WordDocument");
    let Ok(doc) = ole.read(path, cap) else {
        cx.malformed(&loc, "unreadable WordDocument stream");
        return;
    };
    cx.charge(doc.len(), location);
    if u16le(&doc, 0) != Some(0xa5ec) {
        cx.malformed(&loc, "WordDocument stream without the FIB signature");
        return;
    }
    let flags = u16le(&doc, 0x0a).unwrap_or(0);
    if flags & 0x0100 != 0 {
        cx.flags.encrypted = true;
        let obfuscated = flags & 0x8000 != 0;
        cx.add(
            "encrypted",
            Severity::Medium,
            &loc,
            if obfuscated {
                "Word document obfuscated with XOR; its text was not analysed".into()
            } else {
                "encrypted Word document; its text and fields were not analysed".into()
            },
        );
        return;
    }
    for field in crate::xls::field_codes(&doc) {
        crate::report::dde_field(cx, &loc, &field);
    }
}

/// PowerPoint 97-2003: ExOleObjStg records hold embedded objects and the VBA project,
/// zlib-compressed when the record instance is 1.
fn powerpoint(cx: &mut Context<'_>, stream: &[u8], location: &str, depth: u32) {
    let cap = cx.decode_cap();
    for (i, obj) in exoleobj_records(stream, cap, cx.opts.limits.max_items)
        .into_iter()
        .enumerate()
    {
        let loc = join(location, &format!("ExOleObjStg{i}"));
        cx.charge(obj.len(), &loc);
        let inner = Ole::open(&obj, cx.opts.limits.max_items);
        // An emptied record (what disarm leaves) holds a compound file with no streams.
        if inner.as_ref().is_ok_and(|o| o.streams.is_empty()) {
            continue;
        }
        let is_vba = inner.is_ok_and(|o| {
            o.streams
                .iter()
                .any(|p| p.file_name().is_some_and(|f| f.eq_ignore_ascii_case("dir")))
        });
        if !is_vba {
            cx.flags.ole_objects = true;
            cx.add(
                "ole.object",
                Severity::Low,
                &loc,
                "embedded OLE object".into(),
            );
        }
        cx.analyze(&obj, &loc, depth + 1);
    }
}

/// Where ExOleObjStg (0x1011) records sit in a PowerPoint Document stream: (body offset,
/// body length, compressed).
pub(crate) fn exoleobj_spans(stream: &[u8], max_items: usize) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let (Some(ver_inst), Some(kind), Some(len)) = (
        u16le(stream, pos),
        u16le(stream, pos + 2),
        u32le(stream, pos + 4),
    ) {
        let body = pos + 8;
        if ver_inst & 0xf == 0xf {
            // A container: its records follow directly.
            pos = body;
            continue;
        }
        let end = body.saturating_add(len as usize).min(stream.len());
        if kind == 0x1011 {
            out.push((body, end - body, ver_inst >> 4 == 1));
        }
        if end >= stream.len() || out.len() >= max_items.min(256) {
            break;
        }
        pos = end;
    }
    out
}

/// The payloads of ExOleObjStg records, decompressed.
pub fn exoleobj_records(stream: &[u8], max: usize, max_items: usize) -> Vec<Vec<u8>> {
    exoleobj_spans(stream, max_items)
        .into_iter()
        .map(|(body, len, compressed)| {
            let rec = &stream[body..body + len];
            if compressed && rec.len() > 4 {
                let mut data = Vec::new();
                let _ = flate2::read::ZlibDecoder::new(&rec[4..])
                    .take(max as u64)
                    .read_to_end(&mut data);
                data
            } else {
                rec.to_vec()
            }
        })
        .collect()
}

/// Embedded objects: Word's ObjectPool, Excel's MBD storages, any storage with an
/// `\x01Ole10Native` (Packager) or `\x01CompObj` below the root.
fn embedded_objects(cx: &mut Context<'_>, ole: &mut Ole<'_>, location: &str, depth: u32) {
    let cap = cx.decode_cap();
    let ole_streams = ole.streams.clone();
    let objects: Vec<PathBuf> = ole
        .storages
        .iter()
        .filter(|s| {
            let name = s
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent_is_pool = s
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|f| f == "ObjectPool");
            parent_is_pool
                || (name.starts_with("MBD") && self::depth(s) == 1)
                || ole_streams.iter().any(|p| {
                    p.parent() == Some(s.as_path())
                        && p.file_name().is_some_and(|f| f == "\u{1}Ole10Native")
                })
        })
        .cloned()
        .collect();
    for storage in objects {
        let loc = join(location, &display(&storage));
        let class = ole
            .read(&storage.join("\u{1}CompObj"), 1 << 16)
            .ok()
            .and_then(|c| compobj_progid(&c));
        cx.flags.ole_objects = true;
        let class_desc = class.clone().unwrap_or_else(|| "unknown class".into());
        if class.as_deref().is_some_and(is_exploit_class) {
            cx.add(
                "ole.exploit_class",
                Severity::High,
                &loc,
                format!("embedded {class_desc} object, a class used by known exploits"),
            );
        } else {
            cx.add(
                "ole.object",
                Severity::Low,
                &loc,
                format!("embedded OLE object ({class_desc})"),
            );
        }
        let native = storage.join("\u{1}Ole10Native");
        if let Ok(bytes) = ole.read(&native, cap) {
            cx.charge(bytes.len(), &loc);
            match bytes.get(4..).and_then(parse_package) {
                Some(pkg) => package(cx, &pkg, &loc, depth),
                None => cx.malformed(&loc, "Ole10Native stream is not a well-formed Package"),
            }
        }
        // Embedded documents (a Word file inside Excel) are storages of their own.
        for s in ole.streams.clone() {
            if s.parent() == Some(storage.as_path()) {
                let name = s
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name == "Package" || name == "CONTENTS" {
                    if let Ok(bytes) = ole.read(&s, cap) {
                        cx.charge(bytes.len(), &loc);
                        cx.analyze(&bytes, &join(&loc, &name), depth + 1);
                    }
                }
            }
        }
    }
}

/// Classes whose mere presence in a document is an exploit: the Equation Editor
/// (CVE-2017-11882, CVE-2018-0802), OLE2Link/URL monikers (CVE-2017-0199).
pub(crate) fn is_exploit_class(class: &str) -> bool {
    let c = class.to_ascii_lowercase();
    c.starts_with("equation.3") || c.starts_with("ole2link") || c.starts_with("equation.2")
}

/// The ProgID of a `\x01CompObj` stream (MS-OLEDS 2.3.8): header, user type, clipboard
/// format, then the ProgID.
fn compobj_progid(c: &[u8]) -> Option<String> {
    let mut pos = 28;
    let ansi = |pos: &mut usize| -> Option<String> {
        let len = u32le(c, *pos)? as usize;
        *pos += 4;
        let s = c.get(*pos..pos.checked_add(len)?)?;
        *pos += len;
        Some(String::from_utf8_lossy(s.strip_suffix(&[0]).unwrap_or(s)).into_owned())
    };
    let _user_type = ansi(&mut pos)?;
    let marker = u32le(c, pos)?;
    if marker == 0xffff_ffff || marker == 0xffff_fffe {
        pos += 8;
    } else {
        ansi(&mut pos)?;
    }
    let progid = ansi(&mut pos)?;
    (!progid.is_empty()).then_some(progid)
}

/// An OLE1 Package (Packager): the file a user dragged into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package<'a> {
    pub label: String,
    pub source: String,
    pub temp_path: String,
    pub data: &'a [u8],
}

fn cstr(d: &[u8], pos: &mut usize) -> Option<String> {
    let rest = d.get(*pos..)?;
    let end = memchr::memchr(0, rest)?;
    *pos += end + 1;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Type 2, label, source path, reserved, temp path, then the data.
pub fn parse_package(native: &[u8]) -> Option<Package<'_>> {
    if u16le(native, 0)? != 2 {
        return None;
    }
    let mut pos = 2;
    let label = cstr(native, &mut pos)?;
    let source = cstr(native, &mut pos)?;
    pos += 4;
    let tmp_len = u32le(native, pos)? as usize;
    let temp = native.get(pos + 4..pos + 4 + tmp_len)?;
    let temp_path = String::from_utf8_lossy(temp.strip_suffix(&[0]).unwrap_or(temp)).into_owned();
    pos += 4 + tmp_len;
    let size = u32le(native, pos)? as usize;
    pos += 4;
    let end = pos.checked_add(size)?;
    Some(Package {
        label,
        source,
        temp_path,
        data: native.get(pos..end)?,
    })
}

/// Reports a Packager payload and analyses what it carries.
pub(crate) fn package(cx: &mut Context<'_>, pkg: &Package<'_>, location: &str, depth: u32) {
    let name = if pkg.label.is_empty() {
        &pkg.temp_path
    } else {
        &pkg.label
    };
    let loc = join(location, name);
    if crate::report::is_dangerous_name(name) || crate::report::is_dangerous_name(&pkg.temp_path) {
        cx.add(
            "ole.package_executable",
            Severity::High,
            &loc,
            format!(
                "embedded package {name} ({} bytes, from {}) is a file Windows runs when opened",
                pkg.data.len(),
                pkg.source
            ),
        );
    } else {
        cx.add(
            "ole.package",
            Severity::Low,
            &loc,
            format!("embedded package {name} ({} bytes)", pkg.data.len()),
        );
    }
    cx.analyze(pkg.data, &loc, depth + 1);
}
