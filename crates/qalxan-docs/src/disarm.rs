//! Content disarm and reconstruction (CDR): a copy of a document with its active content
//! removed, which still opens, and the list of what was removed.
//!
//! - OOXML: VBA projects, ActiveX controls, embedded objects, external relationships (remote
//!   templates, linked objects), DDE fields and links; macro-enabled types become their
//!   plain forms (docm → docx); Excel 4 macro sheets become empty worksheets.
//! - OLE2: the macro and object storages are left out of a freshly written compound file
//!   (rewriting in place would leave the old bytes in free sectors); Excel 4 macro sheets
//!   become worksheets and their auto-run names lose their meaning.
//! - PDF: JavaScript, actions run on open or on events, launches, embedded files, rich media,
//!   XFA and form submission are removed and the file is rebuilt with a new xref table.
//! - RTF: embedded objects are replaced by their result pictures; DDE fields by their result.
//! - OpenDocument: macro libraries, event listeners and embedded objects are removed.
//! - SYLK: formulas (Excel 4 macros are formulas) and auto-run names are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesStart, BytesText, Event};

use crate::detect::{detect, FileType};
use crate::pdf::{Dict, Obj};
use crate::Options;

/// One thing taken out of the document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub id: String,
    pub location: String,
    pub description: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Disarmed {
    #[serde(skip)]
    pub data: Vec<u8>,
    #[serde(rename = "type")]
    pub file_type: FileType,
    pub removed: Vec<Removed>,
    /// Conversions and caveats, e.g. "macro-enabled document converted to docx".
    pub notes: Vec<String>,
    /// The extension the output should carry when it changed (docm → "docx").
    pub extension: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum DisarmError {
    #[error("{0} cannot be disarmed")]
    Unsupported(String),
    #[error("encrypted with an unknown password; its content cannot be disarmed")]
    Encrypted,
    #[error("malformed document: {0}")]
    Malformed(String),
}

struct Out {
    removed: Vec<Removed>,
    notes: Vec<String>,
    extension: Option<&'static str>,
}

impl Out {
    fn remove(&mut self, id: &str, location: &str, description: impl Into<String>) {
        self.removed.push(Removed {
            id: id.into(),
            location: location.into(),
            description: description.into(),
        });
    }
}

/// Disarms one document held in memory.
pub fn disarm(data: &[u8], options: &Options) -> Result<Disarmed, DisarmError> {
    let mut out = Out {
        removed: Vec::new(),
        notes: Vec::new(),
        extension: None,
    };
    let file_type = detect(data);
    let (bytes, file_type) = match file_type {
        FileType::Zip => (ooxml(data, options, &mut out, 0)?, file_type),
        FileType::Ole2 => ole(data, options, &mut out)?,
        FileType::Pdf => (pdf(data, options, &mut out), file_type),
        FileType::Rtf => (rtf(data, &mut out), file_type),
        FileType::Xml => (xml_document(data, &mut out)?, file_type),
        FileType::Slk => (slk(data, &mut out), file_type),
        other => {
            return Err(DisarmError::Unsupported(format!(
                "{} files",
                other.as_str()
            )))
        }
    };
    Ok(Disarmed {
        data: bytes,
        file_type,
        removed: out.removed,
        notes: out.notes,
        extension: out.extension,
    })
}

// ---------------------------------------------------------------------------------------
// OOXML

/// Macro-enabled main content types and their plain forms, with the plain extension.
const MAIN_TYPES: &[(&str, &str, &str)] = &[
    (
        "application/vnd.ms-word.document.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        "docx",
    ),
    (
        "application/vnd.ms-word.template.macroEnabledTemplate.main+xml",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
        "dotx",
    ),
    (
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "xlsx",
    ),
    (
        "application/vnd.ms-excel.template.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
        "xltx",
    ),
    (
        "application/vnd.ms-excel.addin.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "xlsx",
    ),
    (
        "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
        "pptx",
    ),
    (
        "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
        "ppsx",
    ),
    (
        "application/vnd.ms-powerpoint.template.macroEnabled.main+xml",
        "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
        "potx",
    ),
];

const WORKSHEET_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml";
const WORKSHEET_REL: &str =
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet";
const EMPTY_WORKSHEET: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData/></worksheet>";

/// Resolves a relationship target against the folder of the part that owns the .rels.
fn resolve_target(rels_path: &str, target: &str) -> String {
    if let Some(abs) = target.strip_prefix('/') {
        return abs.to_string();
    }
    // word/_rels/document.xml.rels → word/
    let base = rels_path
        .rsplit_once("_rels/")
        .map(|(dir, _)| dir)
        .unwrap_or("");
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// The part a .rels file describes: word/_rels/document.xml.rels → word/document.xml.
fn rels_source(rels_path: &str) -> String {
    match rels_path.rsplit_once("_rels/") {
        Some((dir, file)) => format!("{dir}{}", file.trim_end_matches(".rels")),
        None => String::new(),
    }
}

fn is_dropped_part(lower: &str) -> Option<&'static str> {
    let file = lower.rsplit('/').next().unwrap_or(lower);
    if file == "vbaproject.bin" || file == "vbadata.xml" || file.starts_with("vbaprojectsignature")
    {
        Some("vba")
    } else if lower.contains("/activex/") {
        Some("activex")
    } else if lower.contains("/embeddings/") {
        Some("embedded_object")
    } else {
        None
    }
}

fn ooxml(
    data: &[u8],
    options: &Options,
    out: &mut Out,
    depth: u32,
) -> Result<Vec<u8>, DisarmError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(data))
        .map_err(|e| DisarmError::Malformed(format!("zip: {e}")))?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    if !names.iter().any(|n| n == "[Content_Types].xml") {
        if names
            .iter()
            .any(|n| n == "mimetype" || n == "META-INF/manifest.xml")
        {
            return odf(&mut archive, out);
        }
        return zip_archive(&mut archive, options, out, depth);
    }
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive
            .by_index(i)
            .map_err(|e| DisarmError::Malformed(format!("zip member {i}: {e}")))?;
        if f.is_dir() {
            continue;
        }
        let mut buf = Vec::new();
        (&mut f)
            .take(512 << 20)
            .read_to_end(&mut buf)
            .map_err(|e| DisarmError::Malformed(format!("{}: {e}", f.name())))?;
        parts.push((f.name().to_string(), buf));
    }
    // Parts to drop, and macro sheets to empty.
    let mut dropped: BTreeSet<String> = BTreeSet::new();
    let mut macro_sheets: BTreeSet<String> = BTreeSet::new();
    for (name, bytes) in &parts {
        let lower = name.to_ascii_lowercase();
        if let Some(kind) = is_dropped_part(&lower) {
            dropped.insert(name.clone());
            let what = match kind {
                "vba" => "VBA project",
                "activex" => "ActiveX control",
                _ => "embedded object",
            };
            if !lower.ends_with(".rels") {
                out.remove(kind, name, what);
            }
        } else if lower.contains("macrosheets/") && !lower.ends_with(".rels") {
            if !lower.ends_with(".xml") {
                return Err(DisarmError::Unsupported(
                    "Excel 4 macro sheets in binary workbooks (xlsb)".into(),
                ));
            }
            macro_sheets.insert(name.clone());
            out.remove(
                "xlm_macro_sheet",
                name,
                "Excel 4 macro sheet replaced by an empty worksheet",
            );
        } else if lower.contains("externallinks/") && lower.ends_with(".xml") {
            let mut dde = false;
            crate::xml::walk(bytes, |n| {
                if let crate::xml::Node::Start { name, .. } = n {
                    dde |= name == "ddeLink" || name == "oleLink";
                }
            });
            if dde {
                dropped.insert(name.clone());
                out.remove("dde", name, "DDE link to another program");
            }
        }
    }
    // Macro sheets move to the worksheets folder under new names, so nothing in the output
    // is still called a macro sheet.
    let renamed: BTreeMap<String, String> = macro_sheets
        .iter()
        .enumerate()
        .map(|(i, old)| {
            let dir = old
                .rsplit_once("macrosheets/")
                .map(|(d, _)| d)
                .unwrap_or("xl/");
            (
                old.clone(),
                format!("{dir}worksheets/disarmed-macrosheet{}.xml", i + 1),
            )
        })
        .collect();
    for (name, _) in &parts {
        if name.contains("macrosheets/_rels/") {
            dropped.insert(name.clone());
        }
    }
    // Relationships: drop those to dropped parts and external ones (hyperlinks stay);
    // remember the ids per source part so the elements using them go too.
    let mut removed_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut new_parts: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, bytes) in &parts {
        if dropped.contains(name) {
            continue;
        }
        if name.ends_with(".rels") {
            let source = rels_source(name);
            let ids = removed_ids.entry(source.clone()).or_default();
            let rewritten = rewrite_xml(bytes, |ev| match ev {
                XmlEv::Start(e) if e.local_name().as_ref() == b"Relationship" => {
                    let attr = |k: &[u8]| {
                        e.attributes()
                            .flatten()
                            .find(|a| a.key.local_name().as_ref() == k)
                            .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                    };
                    let id = attr(b"Id").unwrap_or_default();
                    let target = attr(b"Target").unwrap_or_default();
                    let kind = attr(b"Type").unwrap_or_default();
                    let short = kind.rsplit('/').next().unwrap_or("").to_string();
                    let external = attr(b"TargetMode").as_deref() == Some("External");
                    let resolved = resolve_target(name, &target);
                    if external && short != "hyperlink" {
                        ids.insert(id);
                        out.remove(
                            if short == "attachedTemplate" {
                                "remote_template"
                            } else {
                                "external_ref"
                            },
                            name,
                            format!("external {short} relationship to {target}"),
                        );
                        return Edit::Drop;
                    }
                    if !external && (dropped.contains(&resolved) || short == "vbaProject") {
                        ids.insert(id);
                        return Edit::Drop;
                    }
                    if let Some(new) = renamed.get(&resolved).filter(|_| !external) {
                        let mut n = BytesStart::new("Relationship");
                        for a in e.attributes().flatten() {
                            match a.key.local_name().as_ref() {
                                b"Type" => n.push_attribute(("Type", WORKSHEET_REL)),
                                b"Target" => {
                                    n.push_attribute(("Target", format!("/{new}").as_str()))
                                }
                                _ => n.push_attribute(a),
                            }
                        }
                        return Edit::Replace(n);
                    }
                    Edit::Keep
                }
                _ => Edit::Keep,
            })?;
            new_parts.push((name.clone(), rewritten));
        } else {
            new_parts.push((name.clone(), bytes.clone()));
        }
    }
    // Part contents.
    let mut main_converted = None;
    let remaining_bins = new_parts
        .iter()
        .any(|(n, _)| n.to_ascii_lowercase().ends_with(".bin"));
    for (name, bytes) in new_parts.iter_mut() {
        let lower = name.to_ascii_lowercase();
        if let Some(new) = renamed.get(name.as_str()) {
            *name = new.clone();
            *bytes = EMPTY_WORKSHEET.to_vec();
            continue;
        }
        if name == "[Content_Types].xml" {
            *bytes = rewrite_xml(bytes, |ev| match ev {
                XmlEv::Start(e) => {
                    let attr = |k: &[u8]| {
                        e.attributes()
                            .flatten()
                            .find(|a| a.key.local_name().as_ref() == k)
                            .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                    };
                    let ct = attr(b"ContentType").unwrap_or_default();
                    match e.local_name().as_ref() {
                        b"Override" => {
                            let part = attr(b"PartName").unwrap_or_default();
                            let part = part.trim_start_matches('/');
                            if dropped.contains(part) {
                                return Edit::Drop;
                            }
                            if let Some(new) = renamed.get(part) {
                                let mut n = BytesStart::new("Override");
                                n.push_attribute(("PartName", format!("/{new}").as_str()));
                                n.push_attribute(("ContentType", WORKSHEET_TYPE));
                                return Edit::Replace(n);
                            }
                            let new_ct = {
                                MAIN_TYPES.iter().find(|(m, _, _)| *m == ct).map(
                                    |(_, plain, ext)| {
                                        main_converted = Some(*ext);
                                        *plain
                                    },
                                )
                            };
                            match new_ct {
                                Some(t) => {
                                    let mut n = BytesStart::new("Override");
                                    for a in e.attributes().flatten() {
                                        if a.key.local_name().as_ref() == b"ContentType" {
                                            n.push_attribute(("ContentType", t));
                                        } else {
                                            n.push_attribute(a);
                                        }
                                    }
                                    Edit::Replace(n)
                                }
                                None => Edit::Keep,
                            }
                        }
                        b"Default"
                            if ct == "application/vnd.ms-office.vbaProject" && !remaining_bins =>
                        {
                            Edit::Drop
                        }
                        _ => Edit::Keep,
                    }
                }
                _ => Edit::Keep,
            })?;
            continue;
        }
        if !lower.ends_with(".xml") {
            continue;
        }
        let ids = removed_ids.get(name.as_str()).cloned().unwrap_or_default();
        let is_workbook = lower == "xl/workbook.xml";
        let is_word = lower.starts_with("word/");
        let dde_fields = if is_word {
            dde_field_ordinals(bytes)
        } else {
            Vec::new()
        };
        let drop_containers = !dropped.is_empty();
        if ids.is_empty() && !is_workbook && dde_fields.iter().all(|d| !d) && !drop_containers {
            continue;
        }
        let part = Part {
            ids: &ids,
            is_workbook,
            is_word,
            drop_containers,
            xml_document: false,
        };
        let rewritten = rewrite_part(bytes, &part, &dde_fields, name, out)?;
        *bytes = rewritten;
    }
    if let Some(ext) = main_converted {
        out.extension = Some(ext);
        out.notes.push(format!(
            "macro-enabled document converted to its plain form (.{ext})"
        ));
    }
    write_zip(&new_parts)
}

/// Writes parts as a zip, deflated, except a `mimetype` part, which OpenDocument wants
/// first and stored.
fn write_zip(parts: &[(String, Vec<u8>)]) -> Result<Vec<u8>, DisarmError> {
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mimetype = parts.iter().filter(|(n, _)| n == "mimetype");
    for (name, bytes) in mimetype.chain(parts.iter().filter(|(n, _)| n != "mimetype")) {
        let opts = if name == "mimetype" { stored } else { deflated };
        zw.start_file(name.as_str(), opts)
            .and_then(|_| zw.write_all(bytes).map_err(Into::into))
            .map_err(|e| DisarmError::Malformed(format!("writing {name}: {e}")))?;
    }
    let cursor = zw
        .finish()
        .map_err(|e| DisarmError::Malformed(format!("writing zip: {e}")))?;
    Ok(cursor.into_inner())
}

/// What one XML part's rewrite needs to know.
#[derive(Clone, Copy)]
struct Part<'a> {
    /// Relationship ids removed from this part's .rels: elements using them go.
    ids: &'a BTreeSet<String>,
    is_workbook: bool,
    is_word: bool,
    /// Embedded objects or controls were removed: their container elements go too.
    drop_containers: bool,
    /// A whole document in one XML file (Word/Excel 2003 XML, Flat OPC).
    xml_document: bool,
}

fn rewrite_part(
    bytes: &[u8],
    part: &Part<'_>,
    dde_fields: &[bool],
    name: &str,
    out: &mut Out,
) -> Result<Vec<u8>, DisarmError> {
    let mut field_stack: Vec<usize> = Vec::new();
    let mut field_count = 0usize;
    let mut in_instr = false;
    let mut dde_removed = 0;
    let location = name.to_string();
    let Part {
        ids,
        is_workbook,
        is_word,
        drop_containers,
        xml_document,
    } = *part;
    let rewritten = rewrite_xml(bytes, |ev| match ev {
        XmlEv::Start(e) => {
            let local = e.local_name();
            let local = local.as_ref();
            let refs_removed = e.attributes().flatten().any(|a| {
                matches!(a.key.local_name().as_ref(), b"id" | b"embed" | b"link")
                    && ids.contains(String::from_utf8_lossy(&a.value).as_ref())
            });
            if refs_removed && local != b"imagedata" && local != b"blip" {
                return Edit::Drop;
            }
            if drop_containers && matches!(local, b"oleObjects" | b"controls") {
                return Edit::Drop;
            }
            if xml_document {
                if let Some(what) = xml_document_drop(e) {
                    out.remove(what.0, &location, what.1);
                    return Edit::Drop;
                }
                if local == b"Cell"
                    && e.attributes().flatten().any(|a| {
                        a.key.local_name().as_ref() == b"Formula"
                            && crate::report::is_dde_formula(&String::from_utf8_lossy(&a.value))
                    })
                {
                    out.remove("dde", &location, "DDE formula");
                    let mut n =
                        BytesStart::new(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                    for a in e.attributes().flatten() {
                        if a.key.local_name().as_ref() != b"Formula" {
                            n.push_attribute(a);
                        }
                    }
                    return Edit::Replace(n);
                }
            }
            if is_workbook && local == b"definedName" {
                let auto = e.attributes().flatten().any(|a| {
                    a.key.local_name().as_ref() == b"name" && {
                        let v = String::from_utf8_lossy(&a.value).to_ascii_lowercase();
                        let v = v.strip_prefix("_xlnm.").unwrap_or(&v).to_string();
                        v.starts_with("auto_open")
                            || v.starts_with("auto_close")
                            || v.starts_with("auto_activate")
                    }
                });
                if auto {
                    out.remove(
                        "autoexec_name",
                        &location,
                        "auto-run defined name (Auto_Open)",
                    );
                    return Edit::Drop;
                }
            }
            if is_word {
                match local {
                    b"fldChar" => {
                        let kind = e
                            .attributes()
                            .flatten()
                            .find(|a| a.key.local_name().as_ref() == b"fldCharType")
                            .map(|a| a.value.to_vec());
                        match kind.as_deref() {
                            Some(b"begin") => {
                                field_stack.push(field_count);
                                field_count += 1;
                            }
                            Some(b"separate") | Some(b"end") => {
                                // After the separator the result follows: not code.
                                if kind.as_deref() == Some(b"end") {
                                    field_stack.pop();
                                } else if let Some(top) = field_stack.last_mut() {
                                    *top = usize::MAX;
                                }
                            }
                            _ => {}
                        }
                    }
                    b"instrText" => in_instr = true,
                    b"fldSimple" => {
                        let dde = e.attributes().flatten().any(|a| {
                            a.key.local_name().as_ref() == b"instr" && {
                                crate::report::is_dde_instruction(&String::from_utf8_lossy(
                                    &a.value,
                                ))
                            }
                        });
                        if dde {
                            dde_removed += 1;
                            let mut n = BytesStart::new(
                                String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                            );
                            for a in e.attributes().flatten() {
                                if a.key.local_name().as_ref() != b"instr" {
                                    n.push_attribute(a);
                                }
                            }
                            n.push_attribute(("w:instr", ""));
                            return Edit::Replace(n);
                        }
                    }
                    _ => {}
                }
            }
            Edit::Keep
        }
        XmlEv::End(local) => {
            if local == b"instrText" {
                in_instr = false;
            }
            Edit::Keep
        }
        XmlEv::Text if in_instr => {
            let current = field_stack.last().copied().unwrap_or(usize::MAX);
            if dde_fields.get(current).copied().unwrap_or(false) {
                dde_removed += 1;
                Edit::Text(String::new())
            } else {
                Edit::Keep
            }
        }
        XmlEv::Text => Edit::Keep,
    })?;
    if dde_removed > 0 {
        out.remove("dde", name, "DDE field instruction");
    }
    Ok(rewritten)
}

/// Elements of 2003 XML and Flat OPC documents that carry active content.
fn xml_document_drop(e: &BytesStart<'_>) -> Option<(&'static str, &'static str)> {
    let attr = |k: &[u8]| {
        e.attributes()
            .flatten()
            .find(|a| a.key.local_name().as_ref() == k)
            .map(|a| String::from_utf8_lossy(&a.value).to_ascii_lowercase())
    };
    match e.local_name().as_ref() {
        b"OLEObject" => Some(("embedded_object", "embedded OLE object")),
        b"binData" => {
            let n = attr(b"name").unwrap_or_default();
            if n.ends_with("editdata.mso") {
                Some(("vba", "VBA project (editdata.mso)"))
            } else if n.ends_with("oledata.mso") {
                Some(("embedded_object", "embedded objects (oledata.mso)"))
            } else {
                None
            }
        }
        b"part" => {
            let n = attr(b"name").unwrap_or_default();
            is_dropped_part(n.trim_start_matches('/')).map(|k| match k {
                "vba" => ("vba", "VBA project part"),
                "activex" => ("activex", "ActiveX control part"),
                _ => ("embedded_object", "embedded object part"),
            })
        }
        _ => None,
    }
}

/// Word/Excel 2003 XML and Flat OPC: the same rewrite as an OOXML part, plus the blobs and
/// attributes these single-file forms use.
fn xml_document(data: &[u8], out: &mut Out) -> Result<Vec<u8>, DisarmError> {
    let ids = BTreeSet::new();
    let part = Part {
        ids: &ids,
        is_workbook: false,
        is_word: true,
        drop_containers: false,
        xml_document: true,
    };
    rewrite_part(data, &part, &dde_field_ordinals(data), "", out)
}

/// For each Word field, in the order of their begin marks: whether its instruction is DDE.
fn dde_field_ordinals(xml: &[u8]) -> Vec<bool> {
    let mut fields: Vec<String> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut in_instr = false;
    crate::xml::walk(xml, |n| match n {
        crate::xml::Node::Start { name, attrs } => match name.as_str() {
            "fldChar" => match crate::ooxml::attr(&attrs, "fldCharType") {
                Some("begin") => {
                    fields.push(String::new());
                    stack.push(fields.len() - 1);
                }
                Some("separate") => {
                    if let Some(top) = stack.last_mut() {
                        *top = usize::MAX;
                    }
                }
                Some("end") => {
                    stack.pop();
                }
                _ => {}
            },
            "instrText" => in_instr = true,
            _ => {}
        },
        crate::xml::Node::End { name } if name == "instrText" => in_instr = false,
        crate::xml::Node::Text(t) if in_instr => {
            if let Some(f) = stack.last().and_then(|&i| fields.get_mut(i)) {
                f.push_str(&t);
            }
        }
        _ => {}
    });
    fields
        .iter()
        .map(|f| crate::report::is_dde_instruction(f))
        .collect()
}

enum XmlEv<'a, 'b> {
    Start(&'a BytesStart<'b>),
    End(&'a [u8]),
    Text,
}

enum Edit {
    Keep,
    /// Leave out this element and everything in it.
    Drop,
    Replace(BytesStart<'static>),
    Text(String),
}

/// Streams an XML part through `f`, which may drop elements, replace start tags or text.
fn rewrite_xml(
    data: &[u8],
    mut f: impl FnMut(XmlEv<'_, '_>) -> Edit,
) -> Result<Vec<u8>, DisarmError> {
    let mut reader = quick_xml::Reader::from_reader(data);
    reader.config_mut().check_end_names = false;
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(data.len()));
    let mut buf = Vec::new();
    let mut skip_depth = 0usize;
    let err = |e: std::io::Error| DisarmError::Malformed(format!("writing XML: {e}"));
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(|e| {
            DisarmError::Malformed(format!("XML at byte {}: {e}", reader.buffer_position()))
        })?;
        if skip_depth > 0 {
            match ev {
                Event::Start(_) => skip_depth += 1,
                Event::End(_) => skip_depth -= 1,
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
            continue;
        }
        match ev {
            Event::Start(e) => match f(XmlEv::Start(&e)) {
                Edit::Drop => skip_depth = 1,
                Edit::Replace(n) => writer.write_event(Event::Start(n)).map_err(err)?,
                _ => writer.write_event(Event::Start(e)).map_err(err)?,
            },
            Event::Empty(e) => match f(XmlEv::Start(&e)) {
                Edit::Drop => {}
                Edit::Replace(n) => writer.write_event(Event::Empty(n)).map_err(err)?,
                _ => {
                    let local = e.local_name().as_ref().to_vec();
                    writer.write_event(Event::Empty(e)).map_err(err)?;
                    f(XmlEv::End(&local));
                }
            },
            Event::End(e) => {
                f(XmlEv::End(e.local_name().as_ref()));
                writer.write_event(Event::End(e)).map_err(err)?;
            }
            Event::Text(t) => match f(XmlEv::Text) {
                Edit::Text(s) => writer
                    .write_event(Event::Text(BytesText::new(&s)))
                    .map_err(err)?,
                _ => writer.write_event(Event::Text(t)).map_err(err)?,
            },
            Event::Eof => break,
            other => writer.write_event(other).map_err(err)?,
        }
        buf.clear();
    }
    Ok(writer.into_inner())
}

/// SYLK: cells keep their values but lose their formulas (Excel 4 macros are formulas),
/// and names that run macros when the file opens go.
fn slk(data: &[u8], out: &mut Out) -> Vec<u8> {
    let mut result = Vec::with_capacity(data.len());
    let (mut formulas, mut names) = (0, 0);
    for line in data.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let ending = &line[body.len()..];
        // Fields are separated by ';', and ';;' is a literal semicolon inside a field.
        let mut fields: Vec<Vec<u8>> = vec![Vec::new()];
        let mut i = 0;
        while i < body.len() {
            if body[i] == b';' {
                if body.get(i + 1) == Some(&b';') {
                    if let Some(f) = fields.last_mut() {
                        f.extend_from_slice(b";;");
                    }
                    i += 2;
                    continue;
                }
                fields.push(Vec::new());
            } else if let Some(f) = fields.last_mut() {
                f.push(body[i]);
            }
            i += 1;
        }
        match fields[0].as_slice() {
            // Cell records carry formulas in E fields (an F record's bare E is a display flag).
            b"C" => {
                let before = fields.len();
                fields.retain(|f| !f.starts_with(b"E"));
                formulas += before - fields.len();
            }
            b"NN" => {
                let auto = fields.iter().any(|f| {
                    let l = String::from_utf8_lossy(f).to_ascii_lowercase();
                    l.starts_with("nauto_open") || l.starts_with("nauto_close")
                });
                if auto {
                    names += 1;
                    continue;
                }
            }
            _ => {}
        }
        result.extend_from_slice(&fields.join(&b';'));
        result.extend_from_slice(ending);
    }
    if formulas > 0 {
        out.remove(
            "xlm_formulas",
            "",
            format!("{formulas} formula(s), Excel 4 macros among them"),
        );
    }
    if names > 0 {
        out.remove("autoexec_name", "", "Auto_Open/Auto_Close name");
    }
    result
}

/// What an OpenDocument part is, for disarm: macros and scripts, an embedded object, or
/// content to keep.
fn odf_drop(name: &str) -> Option<(&'static str, &'static str)> {
    let first = name.split('/').next().unwrap_or("");
    if first == "Basic" || first == "Scripts" {
        Some(("macros", "macro library"))
    } else if first.starts_with("Object ") {
        Some(("embedded_object", "embedded object"))
    } else {
        None
    }
}

/// OpenDocument: macro libraries and embedded objects go (their replacement pictures stay),
/// with the manifest entries and the content elements that point at them; event listeners
/// that call macros go too. `mimetype` stays first and uncompressed, as the format requires.
fn odf(archive: &mut crate::archive::Zip<'_>, out: &mut Out) -> Result<Vec<u8>, DisarmError> {
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..archive.len() {
        let Some((name, bytes, _)) = crate::archive::read_member(archive, i, &[], 512 << 20)
            .map_err(DisarmError::Malformed)?
        else {
            continue;
        };
        if let Some((id, what)) = odf_drop(&name) {
            if !name.ends_with('/')
                && !out
                    .removed
                    .iter()
                    .any(|r| r.location == name.split('/').next().unwrap_or(""))
            {
                out.remove(id, name.split('/').next().unwrap_or(&name), what);
            }
            continue;
        }
        parts.push((name, bytes));
    }
    for (name, bytes) in parts.iter_mut() {
        if name == "META-INF/manifest.xml" {
            *bytes = rewrite_xml(bytes, |ev| match ev {
                XmlEv::Start(e) if e.local_name().as_ref() == b"file-entry" => {
                    let path = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == b"full-path")
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                        .unwrap_or_default();
                    if odf_drop(&path).is_some() {
                        Edit::Drop
                    } else {
                        Edit::Keep
                    }
                }
                _ => Edit::Keep,
            })?;
        } else if name.ends_with(".xml") {
            let location = name.clone();
            *bytes = rewrite_xml(bytes, |ev| match ev {
                XmlEv::Start(e) => match e.local_name().as_ref() {
                    b"object" | b"object-ole" => Edit::Drop,
                    b"event-listeners" | b"scripts" => {
                        out.remove(
                            "macros",
                            &location,
                            "event listeners and scripts that call macros",
                        );
                        Edit::Drop
                    }
                    _ => Edit::Keep,
                },
                _ => Edit::Keep,
            })?;
        }
    }
    write_zip(&parts)
}

/// A plain zip archive: each member that is a document is disarmed in turn; files Windows
/// would run are left out. The output archive is not encrypted even when the input was.
fn zip_archive(
    archive: &mut crate::archive::Zip<'_>,
    options: &Options,
    out: &mut Out,
    depth: u32,
) -> Result<Vec<u8>, DisarmError> {
    if depth >= options.limits.max_depth {
        return Err(DisarmError::Unsupported("archives nested this deep".into()));
    }
    let mut parts = Vec::new();
    for i in 0..archive.len().min(options.limits.max_items) {
        let Some((name, bytes, truncated)) =
            crate::archive::read_member(archive, i, &options.passwords, options.limits.max_decoded)
                .map_err(|e| {
                    if e.contains("unknown password") {
                        DisarmError::Encrypted
                    } else {
                        DisarmError::Malformed(e)
                    }
                })?
        else {
            continue;
        };
        if truncated {
            return Err(DisarmError::Unsupported(format!(
                "member {name} larger than the size limit"
            )));
        }
        if crate::report::is_dangerous_name(&name) || detect(&bytes) == FileType::Executable {
            out.remove(
                "executable",
                &name,
                "file Windows runs when opened, left out of the archive",
            );
            continue;
        }
        let before = out.removed.len();
        let clean = match detect(&bytes) {
            FileType::Zip => ooxml(&bytes, options, out, depth + 1)?,
            FileType::Ole2 => ole(&bytes, options, out)?.0,
            FileType::Pdf => pdf(&bytes, options, out),
            FileType::Rtf => rtf(&bytes, out),
            FileType::Xml => xml_document(&bytes, out)?,
            _ => bytes,
        };
        for r in out.removed.iter_mut().skip(before) {
            r.location = crate::report::join(&name, &r.location);
        }
        parts.push((name, clean));
    }
    write_zip(&parts)
}

// ---------------------------------------------------------------------------------------
// OLE2

fn ole(data: &[u8], options: &Options, out: &mut Out) -> Result<(Vec<u8>, FileType), DisarmError> {
    let mut src = crate::ole::Ole::open(data, 1_000_000).map_err(DisarmError::Malformed)?;
    if let (Some(info), Some(pkg)) = (src.find("EncryptionInfo"), src.find("EncryptedPackage")) {
        let info = src.read(&info, 1 << 20).map_err(DisarmError::Malformed)?;
        let pkg = src.read(&pkg, 1 << 30).map_err(DisarmError::Malformed)?;
        let passwords = crate::crypto::candidate_passwords(options);
        return match crate::crypto::decrypt_package(&info, &pkg, &passwords) {
            Ok(Some((plain, password))) => {
                out.notes.push(format!(
                    "decrypted with the password \"{password}\"; the disarmed copy is not encrypted"
                ));
                Ok((ooxml(&plain, options, out, 0)?, FileType::Zip))
            }
            _ => Err(DisarmError::Encrypted),
        };
    }
    let drop_storage = |p: &Path, streams: &[PathBuf]| -> Option<&'static str> {
        let name = p.file_name()?.to_string_lossy().into_owned();
        let top = p.components().count() == 2;
        if top && (name == "Macros" || name == "_VBA_PROJECT_CUR" || name == "_VBA_PROJECT") {
            return Some("vba");
        }
        if top && name == "ObjectPool" {
            return Some("embedded_object");
        }
        if top && name.starts_with("MBD") {
            return Some("embedded_object");
        }
        if streams.iter().any(|s| {
            s.parent() == Some(p) && s.file_name().is_some_and(|f| f == "\u{1}Ole10Native")
        }) {
            return Some("embedded_object");
        }
        None
    };
    let mut dropped: Vec<PathBuf> = Vec::new();
    for s in src.storages.clone() {
        if dropped.iter().any(|d| s.starts_with(d)) {
            continue;
        }
        if let Some(kind) = drop_storage(&s, &src.streams) {
            out.remove(
                kind,
                &crate::ole::display(&s),
                if kind == "vba" {
                    "VBA project storage"
                } else {
                    "embedded object storage"
                },
            );
            dropped.push(s);
        }
    }
    // Same sector size as the source: Office and LibreOffice read version 3 files best.
    let mut dst = cfb::CompoundFile::create_with_version(src.cf.version(), Cursor::new(Vec::new()))
        .map_err(|e| DisarmError::Malformed(format!("creating compound file: {e}")))?;
    let io = |e: std::io::Error| DisarmError::Malformed(e.to_string());
    let root_clsid = *src.cf.root_entry().clsid();
    dst.set_storage_clsid("/", root_clsid).map_err(io)?;
    for s in src.storages.clone() {
        if s == Path::new("/") || dropped.iter().any(|d| s.starts_with(d)) {
            continue;
        }
        dst.create_storage(&s).map_err(io)?;
        if let Some(clsid) = src.cf.entry(&s).ok().map(|e| *e.clsid()) {
            dst.set_storage_clsid(&s, clsid).map_err(io)?;
        }
    }
    for s in src.streams.clone() {
        if dropped.iter().any(|d| s.starts_with(d)) {
            continue;
        }
        let mut bytes = src.read(&s, usize::MAX).map_err(DisarmError::Malformed)?;
        let name = s
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if s.components().count() == 2 && (name == "Workbook" || name == "Book") {
            bytes = xls_links(bytes, options, out)?;
            xls_macro_sheets(&mut bytes, out);
        }
        if s.components().count() == 2 && name == "WordDocument" {
            let n = crate::xls::blank_dde_fields(&mut bytes);
            if n > 0 {
                out.remove(
                    "dde",
                    "WordDocument",
                    format!("{n} DDE field instruction(s) blanked"),
                );
            }
        }
        if s.components().count() == 2 && name == "PowerPoint Document" {
            powerpoint_objects(&mut bytes, out)?;
        }
        let mut w = dst.create_stream(&s).map_err(io)?;
        w.write_all(&bytes).map_err(io)?;
    }
    dst.flush().map_err(io)?;
    Ok((dst.into_inner().into_inner(), FileType::Ole2))
}

/// PowerPoint 97-2003 keeps embedded objects and the VBA project in ExOleObjStg records
/// inside its main stream, found through offsets elsewhere in the file. Each record body is
/// overwritten in place (same length) with an empty compound file, so every offset stays
/// valid and the slide keeps the object's picture.
fn powerpoint_objects(stream: &mut [u8], out: &mut Out) -> Result<(), DisarmError> {
    let mut empty =
        cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::new()))
            .map_err(|e| DisarmError::Malformed(e.to_string()))?;
    empty
        .flush()
        .map_err(|e| DisarmError::Malformed(e.to_string()))?;
    let empty = empty.into_inner().into_inner();
    let mut packed = (empty.len() as u32).to_le_bytes().to_vec();
    {
        let mut z = flate2::write::ZlibEncoder::new(&mut packed, flate2::Compression::best());
        z.write_all(&empty)
            .map_err(|e| DisarmError::Malformed(e.to_string()))?;
        z.finish()
            .map_err(|e| DisarmError::Malformed(e.to_string()))?;
    }
    let spans = crate::ole::exoleobj_spans(stream, 10_000);
    let payloads = crate::ole::exoleobj_records(stream, 64 << 20, 10_000);
    for ((body, len, compressed), payload) in spans.into_iter().zip(payloads) {
        let is_vba = crate::ole::Ole::open(&payload, 1000).is_ok_and(|c| {
            c.streams
                .iter()
                .any(|s| s.file_name().is_some_and(|f| f.eq_ignore_ascii_case("dir")))
        });
        let replacement: &[u8] = if compressed { &packed } else { &empty };
        let target = &mut stream[body..body + len];
        target.fill(0);
        if replacement.len() <= len {
            target[..replacement.len()].copy_from_slice(replacement);
        }
        out.remove(
            if is_vba { "vba" } else { "embedded_object" },
            &format!("PowerPoint Document/offset {body}"),
            if is_vba {
                "VBA project (ExOleObjStg record emptied)"
            } else {
                "embedded object (ExOleObjStg record emptied)"
            },
        );
    }
    Ok(())
}

/// Excel 97-2003 workbook records rewritten: decrypted when Office's own password opens
/// them (FILEPASS dropped), DDE/OLE links (SUPBOOK) turned into inert add-in references.
/// Records change size, so the stream offsets other records hold are moved with them.
fn xls_links(stream: Vec<u8>, options: &Options, out: &mut Out) -> Result<Vec<u8>, DisarmError> {
    let encrypted = crate::xls::records(&stream)
        .take(64)
        .any(|(_, k, _)| k == 0x002f);
    let plain = if encrypted {
        match crate::crypto::decrypt_biff(&stream, &crate::crypto::candidate_passwords(options)) {
            Ok(Some((plain, password))) => {
                out.notes.push(format!(
                    "workbook decrypted with the password \"{password}\"; the disarmed copy is not encrypted"
                ));
                plain
            }
            _ => return Err(DisarmError::Encrypted),
        }
    } else {
        stream
    };
    let mut rebuilt = Vec::with_capacity(plain.len());
    let mut moved: BTreeMap<usize, usize> = BTreeMap::new();
    let mut changed = encrypted;
    for (at, kind, body) in crate::xls::records(&plain) {
        moved.insert(at, rebuilt.len());
        let body: std::borrow::Cow<'_, [u8]> = match kind {
            0x002f => continue,
            0x01ae if crate::xls::supbook_dde(body).is_some() => {
                changed = true;
                out.remove(
                    "dde",
                    "Workbook",
                    format!(
                        "DDE/OLE link to {} (now an inert add-in reference)",
                        crate::xls::supbook_dde(body).unwrap_or_default()
                    ),
                );
                std::borrow::Cow::Owned(vec![0x01, 0x00, 0x01, 0x3a])
            }
            _ => std::borrow::Cow::Borrowed(body),
        };
        rebuilt.extend_from_slice(&kind.to_le_bytes());
        rebuilt.extend_from_slice(&(body.len() as u16).to_le_bytes());
        rebuilt.extend_from_slice(&body);
    }
    if !changed {
        return Ok(plain);
    }
    moved.insert(plain.len(), rebuilt.len());
    let fix = |buf: &mut [u8], at: usize| {
        if let Some(v) = buf.get(at..at + 4) {
            let old = u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize;
            if let Some(&new) = moved.get(&old) {
                buf[at..at + 4].copy_from_slice(&(new as u32).to_le_bytes());
            }
        }
    };
    let spans: Vec<(usize, u16, usize)> = crate::xls::records(&rebuilt)
        .map(|(at, kind, body)| (at, kind, body.len()))
        .collect();
    for (at, kind, len) in spans {
        match kind {
            // BOUNDSHEET: the sheet's BOF.
            0x0085 => fix(&mut rebuilt, at + 4),
            // INDEX: DEFCOLWIDTH and each DBCELL.
            0x020b => {
                let mut p = at + 4 + 12;
                while p + 4 <= at + 4 + len {
                    fix(&mut rebuilt, p);
                    p += 4;
                }
            }
            _ => {}
        }
    }
    Ok(rebuilt)
}

/// Excel 97-2003 macro sheets become worksheets (BOUNDSHEET and the sheet's BOF say so)
/// and built-in Auto_Open/Auto_Close names lose their built-in meaning. The records keep
/// their sizes, so every stream offset in the workbook stays valid.
fn xls_macro_sheets(stream: &mut [u8], out: &mut Out) {
    let records: Vec<(usize, u16, usize)> = crate::xls::records(stream)
        .map(|(at, kind, body)| (at, kind, body.len()))
        .collect();
    if records.iter().any(|(_, k, _)| *k == 0x002f) {
        // Encrypted: record bodies cannot be edited without re-encrypting them.
        if records.iter().any(|(_, k, _)| *k == 0x0085) {
            out.notes
                .push("workbook is encrypted; its sheets were left as they are".into());
        }
        return;
    }
    let biff8 = records.first().is_some_and(|(at, kind, _)| {
        *kind == 0x0809 && stream.get(at + 4..at + 6) == Some(&[0x00, 0x06])
    });
    for (at, kind, len) in records {
        let body = at + 4;
        match kind {
            0x0085 if len >= 6 && stream[body + 5] == 0x01 => {
                let pos = u32::from_le_bytes([
                    stream[body],
                    stream[body + 1],
                    stream[body + 2],
                    stream[body + 3],
                ]) as usize;
                stream[body + 5] = 0x00;
                stream[body + 4] &= !0x03;
                // The sheet's own BOF: dt 0x0040 (macro sheet) → 0x0010 (worksheet).
                if stream.get(pos..pos + 2) == Some(&[0x09, 0x08]) && pos + 8 <= stream.len() {
                    stream[pos + 6] = 0x10;
                    stream[pos + 7] = 0x00;
                }
                out.remove(
                    "xlm_macro_sheet",
                    "Workbook",
                    "Excel 4 macro sheet turned into a worksheet",
                );
            }
            0x0018 if len >= 16 => {
                let flags = u16::from_le_bytes([stream[body], stream[body + 1]]);
                if flags & 0x0020 != 0 {
                    let ch = if biff8 { body + 15 } else { body + 14 };
                    if matches!(stream.get(ch), Some(1) | Some(2)) {
                        stream[body] &= !0x20;
                        stream[ch] = b'_';
                        out.remove(
                            "autoexec_name",
                            "Workbook",
                            "built-in Auto_Open/Auto_Close name",
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// PDF

/// Keys that carry or trigger active content.
const PDF_KEYS: &[&[u8]] = &[
    b"JS",
    b"JavaScript",
    b"OpenAction",
    b"AA",
    b"EmbeddedFiles",
    b"RichMedia",
    b"RichMediaContent",
    b"XFA",
    b"Launch",
    b"EF",
];
/// Action types removed wherever they appear.
const PDF_ACTIONS: &[&[u8]] = &[
    b"JavaScript",
    b"Launch",
    b"SubmitForm",
    b"ImportData",
    b"GoToE",
    b"GoToR",
    b"RichMediaExecute",
    b"Rendition",
    b"Movie",
    b"Sound",
];

fn pdf(data: &[u8], options: &Options, out: &mut Out) -> Vec<u8> {
    let mut passwords: Vec<&str> = vec![""];
    passwords.extend(options.passwords.iter().map(String::as_str));
    let mut doc = crate::pdf::parse_with(
        data,
        options.limits.max_items,
        options.limits.max_decoded,
        &passwords,
    );
    // The decrypted copy is written without encryption; the Encrypt dictionary goes.
    if doc.decrypted_with.is_some() {
        if let Some(Obj::Ref(n, _)) = doc.trailer(b"Encrypt").cloned() {
            doc.objects.remove(&n);
        }
        out.notes.push(
            "decrypted (it opened without a password); the disarmed copy is not encrypted".into(),
        );
    }
    // Objects that are themselves active content: action dictionaries and embedded files.
    let mut dead: BTreeSet<u32> = BTreeSet::new();
    for (&n, (_, o)) in &doc.objects {
        if let Some(d) = o.as_dict() {
            let action = d.name(b"S").is_some_and(|s| PDF_ACTIONS.contains(&s));
            let file = d.name(b"Type") == Some(b"EmbeddedFile");
            let annot = matches!(
                d.name(b"Subtype"),
                Some(b"FileAttachment")
                    | Some(b"RichMedia")
                    | Some(b"Screen")
                    | Some(b"Movie")
                    | Some(b"Sound")
            );
            if action || file || annot {
                dead.insert(n);
            }
        }
    }
    let mut removed = Vec::new();
    let nums: Vec<u32> = doc.objects.keys().copied().collect();
    for n in nums {
        if dead.contains(&n) {
            let kind = doc
                .get(n)
                .and_then(Obj::as_dict)
                .and_then(|d| d.name(b"S").or(d.name(b"Type")).or(d.name(b"Subtype")))
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            removed.push((format!("obj {n}"), format!("{kind} object")));
            if let Some(entry) = doc.objects.get_mut(&n) {
                entry.1 = Obj::Null;
            }
            continue;
        }
        if let Some(entry) = doc.objects.get_mut(&n) {
            clean_pdf_obj(&mut entry.1, &dead, &format!("obj {n}"), &mut removed, 0);
        }
    }
    for (loc, what) in removed {
        out.remove("pdf_active_content", &loc, what);
    }
    if doc.trailer(b"Encrypt").is_some() && doc.decrypted_with.is_none() {
        out.notes
            .push("encrypted PDF: rebuilt without decrypting; strings stay encrypted".into());
    }
    crate::pdf::write(&doc)
}

fn clean_pdf_obj(
    o: &mut Obj,
    dead: &BTreeSet<u32>,
    loc: &str,
    removed: &mut Vec<(String, String)>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    match o {
        Obj::Dict(d) | Obj::Stream(d, _) => clean_pdf_dict(d, dead, loc, removed, depth),
        Obj::Array(a) => {
            a.retain(|v| !matches!(v, Obj::Ref(n, _) if dead.contains(n)));
            for v in a.iter_mut() {
                clean_pdf_obj(v, dead, loc, removed, depth + 1);
            }
        }
        _ => {}
    }
}

fn clean_pdf_dict(
    d: &mut Dict,
    dead: &BTreeSet<u32>,
    loc: &str,
    removed: &mut Vec<(String, String)>,
    depth: usize,
) {
    let before: Vec<Vec<u8>> = d.0.iter().map(|(k, _)| k.clone()).collect();
    d.0.retain(|(k, v)| {
        if PDF_KEYS.contains(&k.as_slice()) {
            return false;
        }
        match v {
            Obj::Ref(n, _) if dead.contains(n) => false,
            Obj::Dict(inner) => !inner.name(b"S").is_some_and(|s| PDF_ACTIONS.contains(&s)),
            _ => true,
        }
    });
    for k in before {
        if d.get(&k).is_none() {
            removed.push((loc.to_string(), format!("/{}", String::from_utf8_lossy(&k))));
        }
    }
    // A form that posts somewhere keeps its fields but not the destination.
    if d.name(b"S") == Some(b"SubmitForm") {
        d.remove(b"F");
    }
    for (_, v) in d.0.iter_mut() {
        clean_pdf_obj(v, dead, loc, removed, depth + 1);
    }
}

// ---------------------------------------------------------------------------------------
// RTF

/// Replaces `\object` groups by their `\result` and DDE `\field` groups by their
/// `\fldrslt`; drops `\*\template`.
fn rtf(data: &[u8], out: &mut Out) -> Vec<u8> {
    // Group spans: (start, end exclusive, first control word, index of parent).
    let mut spans: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut stack: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'{' => {
                stack.push((i, Vec::new()));
                i += 1;
            }
            b'}' => {
                if let Some((start, word)) = stack.pop() {
                    spans.push((start, i + 1, word));
                }
                i += 1;
            }
            b'\\' => {
                i += 1;
                let s = i;
                while i < data.len() && data[i].is_ascii_alphabetic() && i - s < 32 {
                    i += 1;
                }
                let word = data[s..i].to_vec();
                if word.is_empty() {
                    if data.get(i) == Some(&b'*') {
                        if let Some(top) = stack.last_mut() {
                            if top.1.is_empty() {
                                top.1 = b"*".to_vec();
                            }
                        }
                    }
                    i += if data.get(i) == Some(&b'\'') { 3 } else { 1 };
                    continue;
                }
                let ps = i;
                if data.get(i) == Some(&b'-') {
                    i += 1;
                }
                while i < data.len() && data[i].is_ascii_digit() && i - ps < 10 {
                    i += 1;
                }
                let param: usize = std::str::from_utf8(&data[ps..i])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if data.get(i) == Some(&b' ') {
                    i += 1;
                }
                if let Some(top) = stack.last_mut() {
                    if top.1.is_empty() || top.1 == b"*" {
                        top.1 = word.clone();
                    }
                }
                if word == b"bin" {
                    i = i.saturating_add(param).min(data.len());
                }
            }
            _ => i += 1,
        }
    }
    // Unclosed groups run to the end.
    while let Some((start, word)) = stack.pop() {
        spans.push((start, data.len(), word));
    }
    let find_child = |start: usize, end: usize, word: &[u8]| {
        spans
            .iter()
            .filter(|(s, e, w)| *s > start && *e <= end && w.as_slice() == word)
            .min_by_key(|(s, _, _)| *s)
            .map(|(s, e, _)| (*s, *e))
    };
    // Replacements: (start, end, replacement bytes), outermost first.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for (start, end, word) in &spans {
        match word.as_slice() {
            b"object" => {
                let result = find_child(*start, *end, b"result")
                    .map(|(s, e)| data[s..e].to_vec())
                    .unwrap_or_default();
                edits.push((*start, *end, result));
                out.remove(
                    "embedded_object",
                    &format!("offset {start}"),
                    "RTF \\object group (kept its result picture)",
                );
            }
            b"field" => {
                let inst = find_child(*start, *end, b"fldinst");
                let is_dde = inst.is_some_and(|(s, e)| {
                    let text = String::from_utf8_lossy(&data[s..e]).to_ascii_uppercase();
                    text.contains("DDE")
                });
                if is_dde {
                    let result = find_child(*start, *end, b"fldrslt")
                        .map(|(s, e)| data[s..e].to_vec())
                        .unwrap_or_default();
                    edits.push((*start, *end, result));
                    out.remove(
                        "dde",
                        &format!("offset {start}"),
                        "RTF DDE field (kept its result)",
                    );
                }
            }
            b"template" => {
                edits.push((*start, *end, Vec::new()));
                out.remove(
                    "remote_template",
                    &format!("offset {start}"),
                    "RTF \\template reference",
                );
            }
            _ => {}
        }
    }
    edits.sort_by_key(|(s, e, _)| (*s, std::cmp::Reverse(*e)));
    let mut result = Vec::with_capacity(data.len());
    let mut pos = 0;
    for (s, e, rep) in edits {
        if s < pos {
            continue; // inside an edit already applied
        }
        result.extend_from_slice(&data[pos..s]);
        // The kept result may itself hold objects (a picture group rarely does); a second
        // pass would catch them, one level is what Word writes.
        result.extend_from_slice(&strip_objupdate(&rep));
        pos = e;
    }
    result.extend_from_slice(&data[pos..]);
    result
}

fn strip_objupdate(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    while let Some(p) = memchr::memmem::find(&v, b"\\objupdate") {
        v.drain(p..p + 10);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve() {
        assert_eq!(
            resolve_target("word/_rels/document.xml.rels", "vbaProject.bin"),
            "word/vbaProject.bin"
        );
        assert_eq!(
            resolve_target(
                "xl/worksheets/_rels/sheet1.xml.rels",
                "../embeddings/oleObject1.bin"
            ),
            "xl/embeddings/oleObject1.bin"
        );
        assert_eq!(
            resolve_target("_rels/.rels", "/word/document.xml"),
            "word/document.xml"
        );
        assert_eq!(
            rels_source("word/_rels/document.xml.rels"),
            "word/document.xml"
        );
    }

    #[test]
    fn rtf_object_becomes_its_picture() {
        let doc = b"{\\rtf1 a{\\object\\objemb\\objupdate{\\*\\objdata 0102}{\\result {\\pict abc}}} b{\\field{\\*\\fldinst DDEAUTO cmd}{\\fldrslt shown}}}";
        let mut out = Out {
            removed: Vec::new(),
            notes: Vec::new(),
            extension: None,
        };
        let clean = rtf(doc, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&clean),
            "{\\rtf1 a{\\result {\\pict abc}} b{\\fldrslt shown}}"
        );
        assert_eq!(out.removed.len(), 2);
    }
}
