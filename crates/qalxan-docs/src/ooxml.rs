//! Zip-based documents: Office Open XML (docx/xlsx/pptx and their macro-enabled forms),
//! OpenDocument, XPS; anything else in a zip is a plain archive.

use std::io::Cursor;

use crate::report::{join, Context, Severity};
use crate::xml::{walk, Node};

pub(crate) fn analyze(cx: &mut Context<'_>, data: &[u8], location: &str, depth: u32) {
    let mut archive = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(a) => a,
        Err(e) => {
            cx.malformed(
                location,
                format!("zip without a readable central directory: {e}"),
            );
            return;
        }
    };
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let ooxml = names.iter().any(|n| n == "[Content_Types].xml");
    let odf = names
        .iter()
        .any(|n| n == "mimetype" || n == "META-INF/manifest.xml")
        && names.iter().any(|n| n == "content.xml");
    if !ooxml && !odf {
        crate::archive::analyze(cx, &mut archive, location, depth);
        return;
    }
    let n = archive.len().min(cx.opts.limits.max_items);
    let mut xlm_parts = Vec::new();
    let mut auto_open = Vec::new();
    let mut xlsb_sheets = Vec::new();
    let mut xlsb_names = crate::xlm::Names::default();
    let names: Vec<String> = names.into_iter().take(n).collect();
    for (i, listed) in names.iter().enumerate() {
        // Pictures, fonts and media carry no active content the sandbox knows; not inflating
        // them is most of the time saved on a large document.
        if !worth_reading(listed, odf) {
            continue;
        }
        let cap = cx.decode_cap();
        let (name, bytes) = match crate::archive::read_member(&mut archive, i, &[], cap) {
            Ok(Some((name, bytes, _))) => (name, bytes),
            Ok(None) => continue,
            Err(e) => {
                cx.malformed(location, e);
                continue;
            }
        };
        if !cx.charge(bytes.len(), location) {
            return;
        }
        let lower = name.to_ascii_lowercase();
        let loc = join(location, &name);
        let file = lower.rsplit('/').next().unwrap_or(&lower).to_string();
        if file == "vbaproject.bin" {
            cx.analyze(&bytes, &loc, depth + 1);
        } else if lower.ends_with(".rels") {
            relationships(cx, &bytes, &loc);
        } else if lower.contains("/macrosheets/") || lower.starts_with("macrosheets/") {
            xlm_parts.push(loc.clone());
            if lower.ends_with(".xml") {
                macro_sheet_formulas(cx, &bytes, &loc);
            } else if lower.ends_with(".bin") {
                // Binary sheets refer to the workbook's names, which may come later.
                xlsb_sheets.push((loc.clone(), bytes));
            }
        } else if lower.contains("/embeddings/") || lower.starts_with("embeddings/") {
            cx.flags.ole_objects = true;
            cx.add(
                "ole.object",
                Severity::Low,
                &loc,
                format!("embedded object {}", file),
            );
            cx.analyze(&bytes, &loc, depth + 1);
        } else if lower.contains("/activex/") && lower.ends_with(".bin") {
            cx.add(
                "ooxml.activex",
                Severity::Medium,
                &loc,
                "ActiveX control".into(),
            );
        } else if odf && is_odf_object(&name) {
            cx.flags.ole_objects = true;
            cx.add("ole.object", Severity::Low, &loc, "embedded object".into());
            cx.analyze(&bytes, &loc, depth + 1);
        } else if odf
            && lower.starts_with("basic/")
            && lower.ends_with(".xml")
            && file != "script-lb.xml"
            && file != "script-lc.xml"
        {
            basic_module(cx, &bytes, &loc);
        } else if lower == "xl/workbook.xml" {
            walk(&bytes, |node| {
                if let Node::Start { name, attrs } = node {
                    if name == "definedName" {
                        if let Some(v) = attr(&attrs, "name") {
                            if is_auto_name(v) {
                                auto_open.push(v.to_string());
                            }
                        }
                    }
                }
            });
        } else if lower == "xl/workbook.bin" {
            xlsb_names = crate::xlm::xlsb_names(&bytes, cx.opts.limits.max_items);
            let needle: Vec<u8> = "Auto_Open"
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect();
            if memchr::memmem::find(&bytes, &needle).is_some() {
                auto_open.push("Auto_Open".into());
            }
        } else if lower.ends_with(".xml")
            && (lower.starts_with("word/") || lower.starts_with("xl/") || lower.starts_with("ppt/"))
        {
            fields_and_links(cx, &bytes, &loc);
        }
    }
    for (loc, bytes) in xlsb_sheets {
        let lines = crate::xlm::xlsb_formulas(&bytes, &xlsb_names, cx.opts.limits.max_items);
        crate::report::xlm_script(cx, &loc, lines);
    }
    if !xlm_parts.is_empty() {
        cx.flags.macros = true;
        cx.flags.xlm_macros = true;
        cx.flags.suspicious = true;
        for loc in &xlm_parts {
            cx.add(
                "xlm.macro_sheet",
                Severity::Medium,
                loc,
                "Excel 4 (XLM) macro sheet".into(),
            );
        }
    }
    for name in auto_open {
        cx.flags.autoexec = true;
        cx.add(
            "xlm.autoexec",
            if xlm_parts.is_empty() {
                Severity::Medium
            } else {
                Severity::High
            },
            location,
            format!("defined name {name} runs macros when the workbook opens"),
        );
    }
}

/// Whether a part is one the analysis looks at.
fn worth_reading(name: &str, odf: bool) -> bool {
    let lower = name.to_ascii_lowercase();
    let file = lower.rsplit('/').next().unwrap_or(&lower);
    file == "vbaproject.bin"
        || lower.ends_with(".rels")
        || lower.contains("macrosheets/")
        || lower.contains("embeddings/")
        || (lower.contains("/activex/") && lower.ends_with(".bin"))
        || (odf && (is_odf_object(name) || lower.starts_with("basic/")))
        || lower == "xl/workbook.bin"
        || (lower.ends_with(".xml")
            && (lower.starts_with("word/")
                || lower.starts_with("xl/")
                || lower.starts_with("ppt/")))
}

fn is_auto_name(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    let l = l.strip_prefix("_xlnm.").unwrap_or(&l);
    l.starts_with("auto_open") || l.starts_with("auto_close") || l.starts_with("auto_activate")
}

fn is_odf_object(name: &str) -> bool {
    // "Object 1" (an OLE object stored as a compound file) or "Object 1/content.xml".
    let first = name.split('/').next().unwrap_or("");
    first.starts_with("Object ")
        && !name.ends_with('/')
        && (!name.contains('/') || name.ends_with("/content.xml"))
}

pub(crate) fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Relationships with `TargetMode="External"`: remote templates, linked objects, frames.
pub(crate) fn relationships(cx: &mut Context<'_>, data: &[u8], location: &str) {
    walk(data, |node| {
        let Node::Start { name, attrs } = node else {
            return;
        };
        if name != "Relationship" || attr(&attrs, "TargetMode") != Some("External") {
            return;
        }
        let target = attr(&attrs, "Target").unwrap_or("").to_string();
        let kind = attr(&attrs, "Type")
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        let remote = {
            let t = target.to_ascii_lowercase();
            t.starts_with("http:")
                || t.starts_with("https:")
                || t.starts_with("\\\\")
                || t.starts_with("file:")
                || t.starts_with("ftp:")
                || t.starts_with("mhtml:")
        };
        match kind.as_str() {
            "hyperlink" => cx.add(
                "ooxml.hyperlink",
                Severity::Info,
                location,
                format!("hyperlink to {target}"),
            ),
            "attachedTemplate" => {
                cx.flags.external_refs = true;
                cx.add(
                    "ooxml.remote_template",
                    if remote { Severity::High } else { Severity::Medium },
                    location,
                    format!("template loaded from {target} when the document opens (remote template injection)"),
                );
            }
            _ => {
                cx.flags.external_refs = true;
                cx.add(
                    "ooxml.external_ref",
                    Severity::Medium,
                    location,
                    format!("external {kind} relationship to {target}"),
                );
            }
        }
    });
}

/// Field instructions (DDE) in WordprocessingML; DDE links and formulas in SpreadsheetML.
pub(crate) fn fields_and_links(cx: &mut Context<'_>, data: &[u8], location: &str) {
    let mut instr: Option<String> = None;
    let mut in_instr = false;
    let mut in_formula = false;
    let mut formula = String::new();
    let mut fields = Vec::new();
    let mut formulas = Vec::new();
    let mut dde_links = Vec::new();
    walk(data, |node| match node {
        Node::Start { name, attrs } => match name.as_str() {
            "fldChar" => match attr(&attrs, "fldCharType") {
                Some("begin") => instr = Some(String::new()),
                Some("separate") | Some("end") => {
                    if let Some(i) = instr.take() {
                        fields.push(i);
                    }
                }
                _ => {}
            },
            "instrText" => in_instr = true,
            "fldSimple" => {
                if let Some(i) = attr(&attrs, "instr") {
                    fields.push(i.to_string());
                }
            }
            "f" => {
                in_formula = true;
                formula.clear();
            }
            "ddeLink" => {
                let service = attr(&attrs, "ddeService").unwrap_or("");
                let topic = attr(&attrs, "ddeTopic").unwrap_or("");
                dde_links.push(format!("{service} {topic}"));
            }
            _ => {}
        },
        Node::End { name } => match name.as_str() {
            "instrText" => in_instr = false,
            "f" => {
                in_formula = false;
                formulas.push(std::mem::take(&mut formula));
            }
            _ => {}
        },
        Node::Text(t) => {
            if in_instr {
                match instr.as_mut() {
                    Some(i) => i.push_str(&t),
                    None => fields.push(t),
                }
            } else if in_formula {
                formula.push_str(&t);
            }
        }
    });
    for f in fields {
        crate::report::dde_field(cx, location, &f);
    }
    for link in dde_links {
        cx.flags.dde = true;
        cx.add(
            "dde",
            Severity::High,
            location,
            format!("DDE link starts another program: {}", link.trim()),
        );
    }
    for f in formulas {
        crate::report::dde_formula(cx, location, &format!("={f}"));
    }
}

/// The formulas of an XLM macro sheet, shown to the analyst and run through the keyword
/// analysis.
fn macro_sheet_formulas(cx: &mut Context<'_>, data: &[u8], location: &str) {
    let mut in_f = false;
    let mut cell = String::new();
    let mut cur = String::new();
    let mut all = Vec::new();
    walk(data, |node| match node {
        Node::Start { name, attrs } if name == "c" => {
            cell = attr(&attrs, "r").unwrap_or("").to_string();
        }
        Node::Start { name, .. } if name == "f" => {
            in_f = true;
            cur.clear();
        }
        Node::End { name } if name == "f" => {
            in_f = false;
            all.push(format!("{cell}: ={}", std::mem::take(&mut cur)));
        }
        Node::Text(t) if in_f => cur.push_str(&t),
        _ => {}
    });
    crate::report::xlm_script(cx, location, all);
}

/// OpenDocument Basic (StarBasic) macros: the module source is the text of the XML.
fn basic_module(cx: &mut Context<'_>, data: &[u8], location: &str) {
    let mut code = String::new();
    let mut name = String::new();
    walk(data, |node| match node {
        Node::Start { name: n, attrs } if n == "module" => {
            name = attr(&attrs, "name").unwrap_or("").to_string();
        }
        Node::Text(t) => code.push_str(&t),
        _ => {}
    });
    if code.trim().is_empty() {
        return;
    }
    cx.flags.macros = true;
    cx.macros.push(crate::VbaModule {
        location: location.to_string(),
        name,
        code: code.clone(),
        revealed: crate::vba::reveal(&code),
    });
    crate::report::macro_findings(cx, location, &code, "StarBasic");
}
