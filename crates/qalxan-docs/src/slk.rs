//! SYLK spreadsheets (Excel 4 macros as plain text) and other text files (CSV cells that
//! Excel would run as DDE formulas).

use crate::report::{Context, Severity};

pub(crate) fn analyze(cx: &mut Context<'_>, data: &[u8], location: &str) {
    let text = String::from_utf8_lossy(data);
    let mut formulas = Vec::new();
    let mut names = Vec::new();
    // A cell record names its row (Y) and column (X) only when they change.
    let (mut row, mut col) = (1u32, 1u32);
    for line in text.lines().take(1_000_000) {
        let fields: Vec<&str> = line.split(';').collect();
        match fields.first().copied() {
            Some("C") => {
                for f in fields.iter().skip(1) {
                    if let Some(y) = f.strip_prefix('Y').and_then(|v| v.parse().ok()) {
                        row = y;
                    } else if let Some(x) = f.strip_prefix('X').and_then(|v| v.parse().ok()) {
                        col = x;
                    }
                }
                if let Some(e) = fields.iter().skip(1).find_map(|f| f.strip_prefix('E')) {
                    let at =
                        crate::xlm::cell(row.saturating_sub(1), col.saturating_sub(1), true, true);
                    formulas.push(format!("{at}: ={e}"));
                }
            }
            Some("NN") => {
                if let Some(n) = fields.iter().skip(1).find_map(|f| f.strip_prefix('N')) {
                    names.push(n.to_string());
                }
            }
            _ => {}
        }
    }
    let any_formula = !formulas.is_empty();
    if any_formula {
        cx.flags.macros = true;
        cx.flags.xlm_macros = true;
        cx.flags.suspicious = true;
        cx.add(
            "xlm.macro_sheet",
            Severity::Medium,
            location,
            format!("SYLK file with {} Excel 4 (XLM) formulas", formulas.len()),
        );
        crate::report::xlm_script(cx, location, formulas);
    }
    for n in names {
        let l = n.to_ascii_lowercase();
        if l.starts_with("auto_open") || l.starts_with("auto_close") {
            cx.flags.autoexec = true;
            cx.add(
                "xlm.autoexec",
                if !any_formula {
                    Severity::Medium
                } else {
                    Severity::High
                },
                location,
                format!("name {n} runs Excel 4 macros when the file opens"),
            );
        }
    }
}

/// Text: CSV cells such as `=cmd|'/c calc'!A0` that Excel runs through DDE.
pub(crate) fn analyze_text(cx: &mut Context<'_>, data: &[u8], location: &str) {
    let text = String::from_utf8_lossy(&data[..data.len().min(16 << 20)]);
    for line in text.lines().take(1_000_000) {
        for cell in line.split([',', ';', '\t']) {
            let cell = cell.trim().trim_matches('"');
            if cell.starts_with(['=', '+', '-', '@'])
                && cell.contains('|')
                && crate::report::dde_formula(cx, location, cell)
            {
                return;
            }
        }
    }
}
