//! Excel 97-2003 workbooks (BIFF5/BIFF8 records in the `Workbook` stream): Excel 4 macro
//! sheets, auto-run names, DDE links, encryption; and Word's field codes, which share the
//! "scan the binary text" approach.

use crate::report::{Context, Severity};
use crate::vba::{u16le, u32le};

const BOF: u16 = 0x0809;
const FILEPASS: u16 = 0x002f;
const BOUNDSHEET: u16 = 0x0085;
const LBL: u16 = 0x0018;
const SUPBOOK: u16 = 0x01ae;
const EXTERNNAME: u16 = 0x0023;
const EXTERNSHEET: u16 = 0x0017;
const FORMULA: u16 = 0x0006;
const EOF: u16 = 0x000a;

/// The records of a BIFF stream: (offset, type, body).
pub(crate) fn records(stream: &[u8]) -> impl Iterator<Item = (usize, u16, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let kind = u16le(stream, pos)?;
        let len = u16le(stream, pos + 2)? as usize;
        let body = stream.get(pos + 4..pos + 4 + len)?;
        let at = pos;
        pos += 4 + len;
        Some((at, kind, body))
    })
}

pub(crate) fn analyze(cx: &mut Context<'_>, stream: &[u8], location: &str) {
    let mut decrypted = None;
    for (_, kind, body) in records(stream).take(64) {
        if kind == FILEPASS {
            cx.flags.encrypted = true;
            let passwords = crate::crypto::candidate_passwords(cx.opts);
            match crate::crypto::decrypt_biff(stream, &passwords) {
                Ok(Some((plain, password))) => {
                    cx.add(
                        "encrypted",
                        Severity::Medium,
                        location,
                        format!("encrypted workbook; opened with the password \"{password}\""),
                    );
                    cx.auto_decrypted |= password == crate::crypto::EXCEL_DEFAULT;
                    decrypted = Some(plain);
                }
                Ok(None) => {
                    cx.add(
                        "encrypted",
                        Severity::Medium,
                        location,
                        "encrypted workbook; the password is unknown, so its sheets were not analysed"
                            .into(),
                    );
                    return;
                }
                Err(e) => {
                    let kind = u16le(body, 0).unwrap_or(0);
                    cx.add(
                        "encrypted",
                        Severity::Medium,
                        location,
                        format!("encrypted workbook (encryption type {kind}) not opened: {e}"),
                    );
                    return;
                }
            }
            break;
        }
    }
    let stream = decrypted.as_deref().unwrap_or(stream);
    let Some((_, first, bof)) = records(stream).next() else {
        cx.malformed(location, "workbook stream too short for a BOF record");
        return;
    };
    // BIFF8 has version 0x0600 in its BOF; BIFF5 (Excel 5/95) 0x0500 and no Unicode flags.
    let biff8 = first == BOF && u16le(bof, 0) == Some(0x0600);
    let mut macro_sheets = Vec::new();
    let mut auto_names = Vec::new();
    // What formulas refer to by number: sheets in workbook order, the XTIs of EXTERNSHEET
    // (BIFF8) pointing into them, and defined names in order.
    let mut sheet_names = Vec::new();
    let mut xti_first_sheet = Vec::new();
    let mut names = crate::xlm::Names::default();
    for (_, kind, body) in records(stream).take(cx.opts.limits.max_items) {
        match kind {
            BOUNDSHEET => {
                let state = body.get(4).copied().unwrap_or(0) & 0x03;
                let dt = body.get(5).copied().unwrap_or(0);
                let name = sheet_name(body.get(6..).unwrap_or_default(), biff8);
                if dt == 0x01 {
                    let start = u32le(body, 0).unwrap_or(0);
                    macro_sheets.push((name.clone(), state, start as usize));
                }
                sheet_names.push(name);
            }
            EXTERNSHEET if biff8 => {
                let n = u16le(body, 0).unwrap_or(0) as usize;
                for i in 0..n {
                    let first = u16le(body, 2 + i * 6 + 2).map_or(-1, |v| i32::from(v as i16));
                    xti_first_sheet.push(first);
                }
            }
            LBL => {
                let name = defined_name(body, biff8);
                if let Some(name) = &name {
                    let lower = name.to_ascii_lowercase();
                    if lower.starts_with("auto_open") || lower.starts_with("auto_close") {
                        auto_names.push(name.clone());
                    }
                }
                names.defined.push(name.unwrap_or_default());
            }
            SUPBOOK => {
                if let Some(path) = supbook_dde(body) {
                    cx.flags.dde = true;
                    cx.add(
                        "dde",
                        Severity::High,
                        location,
                        format!("DDE/OLE link to another program: {path}"),
                    );
                }
            }
            EXTERNNAME => {}
            _ => {}
        }
    }
    names.sheets = if biff8 {
        crate::xlm::Names::sheets_of_xtis(&sheet_names, &xti_first_sheet)
    } else {
        sheet_names
    };
    let biff = if biff8 {
        crate::xlm::Biff::V8
    } else {
        crate::xlm::Biff::V5
    };
    let mut formulas: Vec<Vec<String>> = vec![Vec::new(); macro_sheets.len()];
    let mut current = None;
    // Sheets follow the globals, so their formulas need a second walk, only when some
    // sheet is a macro sheet.
    let sheet_records = if macro_sheets.is_empty() {
        0
    } else {
        cx.opts.limits.max_items
    };
    for (at, kind, body) in records(stream).take(sheet_records) {
        match kind {
            BOF => current = macro_sheets.iter().position(|s| s.2 == at),
            EOF => current = None,
            FORMULA => {
                if let Some(i) = current {
                    if let Some(line) = crate::xlm::biff_formula_line(body, biff, &names) {
                        formulas[i].push(line);
                    }
                }
            }
            _ => {}
        }
    }
    for ((name, _, _), lines) in macro_sheets.iter().zip(formulas) {
        if lines.is_empty() {
            continue;
        }
        crate::report::xlm_script(cx, &format!("{location}/{name}"), lines);
    }
    for (name, state, _) in &macro_sheets {
        cx.flags.macros = true;
        cx.flags.xlm_macros = true;
        cx.flags.suspicious = true;
        let hidden = match state {
            1 => ", hidden",
            2 => ", very hidden (only code can show it)",
            _ => "",
        };
        cx.add(
            "xlm.macro_sheet",
            if *state == 2 {
                Severity::High
            } else {
                Severity::Medium
            },
            location,
            format!("Excel 4 (XLM) macro sheet \"{name}\"{hidden}"),
        );
    }
    for name in &auto_names {
        cx.flags.autoexec = true;
        cx.add(
            "xlm.autoexec",
            if macro_sheets.is_empty() {
                Severity::Medium
            } else {
                Severity::High
            },
            location,
            format!("defined name {name} runs Excel 4 macros when the workbook opens"),
        );
    }
}

fn sheet_name(d: &[u8], biff8: bool) -> String {
    let cch = d.first().copied().unwrap_or(0) as usize;
    if biff8 {
        let high = d.get(1).copied().unwrap_or(0) & 1 != 0;
        xl_chars(d.get(2..).unwrap_or_default(), cch, high)
    } else {
        xl_chars(d.get(1..).unwrap_or_default(), cch, false)
    }
}

fn xl_chars(d: &[u8], cch: usize, high: bool) -> String {
    if high {
        let units: Vec<u16> = d
            .chunks_exact(2)
            .take(cch)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        d.iter().take(cch).map(|&b| b as char).collect()
    }
}

/// The name of a LBL (NAME) record; built-in names are one code (1 = Auto_Open, 2 =
/// Auto_Close) and come back spelled out.
fn defined_name(body: &[u8], biff8: bool) -> Option<String> {
    let flags = u16le(body, 0)?;
    let cch = *body.get(3)? as usize;
    let builtin = flags & 0x0020 != 0;
    let name = if biff8 {
        let high = body.get(14)? & 1 != 0;
        xl_chars(body.get(15..)?, cch, high)
    } else {
        xl_chars(body.get(14..)?, cch, false)
    };
    if builtin {
        return Some(
            match name.chars().next()? {
                '\u{1}' => "Auto_Open",
                '\u{2}' => "Auto_Close",
                '\u{3}' => "Extract",
                '\u{6}' => "Print_Area",
                _ => return None,
            }
            .to_string(),
        );
    }
    Some(name)
}

/// SUPBOOK (MS-XLS 2.4.271): with no sheets and a path that is neither special mark, the
/// record names a DDE or OLE server, e.g. `cmd` with topic `/c calc.exe`.
pub(crate) fn supbook_dde(body: &[u8]) -> Option<String> {
    let ctab = u16le(body, 0)?;
    let cch = u16le(body, 2)?;
    if cch == 0x0401 || cch == 0x3a01 || ctab != 0 || cch == 0 {
        return None;
    }
    let high = body.get(4)? & 1 != 0;
    let path = xl_chars(body.get(5..)?, cch as usize, high);
    if path == " " || path == "\0" {
        return None;
    }
    Some(path.replace('\u{3}', " "))
}

/// Field instructions in a Word binary document: the text between the field-begin (0x13)
/// and field-separator (0x14) or field-end (0x15) marks, in 8-bit or UTF-16 text.
pub(crate) fn field_codes(doc: &[u8]) -> Vec<String> {
    field_spans(doc)
        .into_iter()
        .map(|(_, _, text)| text)
        .collect()
}

/// Each field instruction with its byte range in the stream.
pub(crate) fn field_spans(doc: &[u8]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    // 8-bit pieces.
    let mut pos = 0;
    while let Some(off) = memchr::memchr(0x13, &doc[pos..]) {
        let start = pos + off + 1;
        let end = doc[start..]
            .iter()
            .position(|&b| b == 0x14 || b == 0x15 || b == 0x13)
            .map_or(doc.len(), |p| start + p)
            .min(start + 1024);
        let text = &doc[start..end];
        if text
            .iter()
            .all(|&b| b >= 0x20 || b == b'\t' || b == b'\r' || b == b'\n')
            && !text.is_empty()
        {
            let s = encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(text)
                .0
                .into_owned();
            out.push((start, end, s));
        }
        pos = start;
        if out.len() > 1000 {
            return out;
        }
    }
    // UTF-16 pieces: 0x13 0x00, text, 0x14 0x00 or 0x15 0x00.
    let mut pos = 0;
    while let Some(off) = memchr::memmem::find(&doc[pos..], &[0x13, 0x00]) {
        let start = pos + off + 2;
        let mut units = Vec::new();
        let mut i = start;
        while let Some(u) = u16le(doc, i) {
            if u == 0x14 || u == 0x15 || u == 0x13 || units.len() > 512 {
                break;
            }
            units.push(u);
            i += 2;
        }
        if !units.is_empty()
            && units
                .iter()
                .all(|&u| u >= 0x20 || u == 9 || u == 13 || u == 10)
        {
            out.push((start, i, String::from_utf16_lossy(&units)));
        }
        pos = start;
        if out.len() > 2000 {
            break;
        }
    }
    out
}

/// Blanks DDE field instructions in place (spaces, same length, 8-bit or UTF-16 alike);
/// returns how many were blanked.
pub(crate) fn blank_dde_fields(doc: &mut [u8]) -> usize {
    let mut n = 0;
    for (start, end, text) in field_spans(doc) {
        if crate::report::is_dde_instruction(&text) {
            for b in &mut doc[start..end] {
                if *b != 0 {
                    *b = b' ';
                }
            }
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_fields() {
        let mut doc =
            b"abc\x13 DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k calc\" \x14x\x15".to_vec();
        doc.extend_from_slice(&[0x13, 0]);
        for c in " DDE x".encode_utf16() {
            doc.extend_from_slice(&c.to_le_bytes());
        }
        doc.extend_from_slice(&[0x15, 0]);
        let f = field_codes(&doc);
        assert!(f.iter().any(|s| s.starts_with(" DDEAUTO c:")));
        assert!(f.iter().any(|s| s == " DDE x"));
    }

    #[test]
    fn supbook() {
        let mut body = vec![0, 0, 3, 0, 0];
        body.extend_from_slice(b"cmd");
        assert_eq!(supbook_dde(&body).as_deref(), Some("cmd"));
        assert_eq!(supbook_dde(&[1, 0, 1, 4]), None);
    }
}
