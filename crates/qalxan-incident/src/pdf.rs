//! A report [`Document`] rendered as PDF with `pdf-writer` (typst's low-level writer): A4
//! pages, the standard Helvetica fonts (every PDF reader has them, so nothing is embedded),
//! text wrapped by Helvetica's metrics, tables, and bar charts drawn as rectangles.
//!
//! The standard fonts speak WinAnsi (Windows-1252): characters outside it are transliterated
//! where a close letter exists (Azerbaijani `ə`, `ş`, `ğ`, `ı` become `e`, `s`, `g`, `i`)
//! and shown as `?` otherwise. Embedding a Unicode font is the next step when reports must
//! carry other scripts.

use crate::report::{Block, Document};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 50.0;
const BODY: f32 = 10.0;
const LEADING: f32 = 1.35;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// Helvetica's advance widths (1/1000 em) for ASCII 32..=126, from Adobe's AFM.
const WIDTHS: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// One character in WinAnsi, or a close ASCII letter, or `?`.
fn win_ansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{a0}'..='\u{ff}' => c as u32 as u8,
        '€' => 0x80,
        '‚' => 0x82,
        '„' => 0x84,
        '…' => 0x85,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        'Š' => 0x8a,
        'š' => 0x9a,
        'Ž' => 0x8e,
        'ž' => 0x9e,
        'Œ' => 0x8c,
        'œ' => 0x9c,
        'Ÿ' => 0x9f,
        'ə' => b'e',
        'Ə' => b'E',
        'ş' | 'ś' => b's',
        'Ş' | 'Ś' => b'S',
        'ğ' => b'g',
        'Ğ' => b'G',
        'ı' => b'i',
        'İ' => b'I',
        _ => b'?',
    }
}

fn encode(text: &str) -> Vec<u8> {
    text.chars()
        .filter(|c| !c.is_control())
        .map(win_ansi)
        .collect()
}

/// Width of WinAnsi bytes at `size` points. Letters outside ASCII take an average width.
fn width(bytes: &[u8], size: f32, bold: bool) -> f32 {
    let units: u32 = bytes
        .iter()
        .map(|&b| match b {
            32..=126 => u32::from(WIDTHS[usize::from(b - 32)]),
            _ => 556,
        })
        .sum();
    let w = units as f32 * size / 1000.0;
    if bold {
        w * 1.06
    } else {
        w
    }
}

/// Splits `text` into lines no wider than `max` (a word longer than a line is cut).
fn wrap(text: &str, size: f32, bold: bool, max: f32) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    for word in encode(text).split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        let mut word = word.to_vec();
        loop {
            let candidate_w = if line.is_empty() {
                width(&word, size, bold)
            } else {
                width(&line, size, bold) + width(b" ", size, bold) + width(&word, size, bold)
            };
            if candidate_w <= max {
                if !line.is_empty() {
                    line.push(b' ');
                }
                line.extend_from_slice(&word);
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A single word wider than the line: cut it where it overflows.
            let mut cut = word.len();
            while cut > 1 && width(&word[..cut], size, bold) > max {
                cut -= 1;
            }
            lines.push(word[..cut].to_vec());
            word = word[cut..].to_vec();
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Cuts one line to `max` points, ending it with an ellipsis when cut.
fn fit(text: &str, size: f32, bold: bool, max: f32) -> Vec<u8> {
    let mut bytes = encode(text);
    if width(&bytes, size, bold) <= max {
        return bytes;
    }
    while !bytes.is_empty() && width(&bytes, size, bold) + width(&[0x85], size, bold) > max {
        bytes.pop();
    }
    bytes.push(0x85);
    bytes
}

/// Lays blocks out on pages.
struct Layout {
    pages: Vec<Content>,
    y: f32,
}

impl Layout {
    fn new() -> Layout {
        let mut l = Layout {
            pages: Vec::new(),
            y: 0.0,
        };
        l.new_page();
        l
    }

    fn new_page(&mut self) {
        self.pages.push(Content::new());
        self.y = PAGE_H - MARGIN;
    }

    fn page(&mut self) -> &mut Content {
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Makes room for `height` points, starting a page when needed.
    fn room(&mut self, height: f32) {
        if self.y - height < MARGIN {
            self.new_page();
        }
    }

    fn text_at(&mut self, x: f32, y: f32, font: Name<'static>, size: f32, bytes: &[u8]) {
        let page = self.page();
        page.begin_text();
        page.set_font(font, size);
        page.next_line(x, y);
        page.show(Str(bytes));
        page.end_text();
    }

    fn lines(&mut self, text: &str, size: f32, bold: bool, indent: f32) {
        let font = if bold { BOLD } else { REGULAR };
        let step = size * LEADING;
        for line in wrap(text, size, bold, PAGE_W - 2.0 * MARGIN - indent) {
            self.room(step);
            self.y -= step;
            let y = self.y;
            self.text_at(MARGIN + indent, y, font, size, &line);
        }
    }

    fn fill(&mut self, rgb: (f32, f32, f32), x: f32, y: f32, w: f32, h: f32) {
        let page = self.page();
        page.save_state();
        page.set_fill_rgb(rgb.0, rgb.1, rgb.2);
        page.rect(x, y, w, h);
        page.fill_nonzero();
        page.restore_state();
    }

    fn table(&mut self, header: &[String], rows: &[Vec<String>]) {
        let cols = header.len().max(1);
        let total = PAGE_W - 2.0 * MARGIN;
        // Each column as wide as its widest cell wants, scaled to fit the page.
        let mut want: Vec<f32> = (0..cols)
            .map(|i| {
                std::iter::once(header.get(i))
                    .chain(rows.iter().map(|r| r.get(i)))
                    .flatten()
                    .map(|c| width(&encode(c), BODY, false) + 8.0)
                    .fold(30.0, f32::max)
            })
            .collect();
        let sum: f32 = want.iter().sum();
        if sum > total {
            want.iter_mut().for_each(|w| *w *= total / sum);
        }
        let step = BODY * 1.6;
        let draw_row = |l: &mut Layout, cells: &[String], bold: bool| {
            l.room(step);
            l.y -= step;
            if bold {
                let y = l.y;
                l.fill((0.9, 0.92, 0.95), MARGIN, y - 4.0, want.iter().sum(), step);
            }
            let mut x = MARGIN;
            for (i, w) in want.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let bytes = fit(cell, BODY, bold, w - 6.0);
                let y = l.y;
                l.text_at(x + 3.0, y, if bold { BOLD } else { REGULAR }, BODY, &bytes);
                x += w;
            }
        };
        draw_row(self, header, true);
        for r in rows {
            draw_row(self, r, false);
        }
        self.y -= 6.0;
    }

    fn bars(&mut self, title: &str, bars: &[(String, i64)]) {
        self.lines(title, BODY + 1.0, true, 0.0);
        let label_w = 170.0;
        let max_w = PAGE_W - 2.0 * MARGIN - label_w - 50.0;
        let top = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f32;
        let step = BODY * 1.7;
        for (label, value) in bars {
            self.room(step);
            self.y -= step;
            let y = self.y;
            let bytes = fit(label, BODY, false, label_w - 6.0);
            self.text_at(MARGIN, y, REGULAR, BODY, &bytes);
            let w = (*value.max(&0) as f32 / top * max_w).max(1.0);
            self.fill((0.16, 0.38, 0.66), MARGIN + label_w, y - 2.0, w, BODY);
            let v = value.to_string();
            self.text_at(MARGIN + label_w + w + 4.0, y, REGULAR, BODY, v.as_bytes());
        }
        self.y -= 8.0;
    }
}

/// Renders `doc` as a PDF file.
pub fn render(doc: &Document, title: &str) -> Vec<u8> {
    let mut l = Layout::new();
    for block in &doc.blocks {
        match block {
            Block::Heading { level, text } => {
                let size = match level {
                    1 => 18.0,
                    2 => 13.0,
                    _ => 11.0,
                };
                l.y -= size * 0.6;
                l.lines(text, size, true, 0.0);
                l.y -= 4.0;
            }
            Block::Paragraph { text } => {
                l.lines(text, BODY, false, 0.0);
                l.y -= 6.0;
            }
            Block::Facts { rows } => {
                for (label, value) in rows {
                    l.lines(&format!("{label}: {value}"), BODY, false, 0.0);
                }
                l.y -= 6.0;
            }
            Block::Table { header, rows } => {
                if rows.is_empty() {
                    l.lines("None.", BODY, false, 0.0);
                    l.y -= 6.0;
                } else {
                    l.table(header, rows);
                }
            }
            Block::Bars { title, bars } => {
                if bars.is_empty() {
                    l.lines(title, BODY + 1.0, true, 0.0);
                    l.lines("None.", BODY, false, 0.0);
                    l.y -= 6.0;
                } else {
                    l.bars(title, bars);
                }
            }
        }
    }

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let first_page = 6;
    let count = l.pages.len() as i32;
    let page_ref = |i: i32| Ref::new(first_page + 2 * i);
    let content_ref = |i: i32| Ref::new(first_page + 2 * i + 1);
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids((0..count).map(page_ref)).count(count);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(pdf_writer::TextStr(title))
        .producer(pdf_writer::TextStr("Qalxan"));
    for (i, mut content) in l.pages.into_iter().enumerate() {
        let i = i as i32;
        // Page numbers in the footer.
        let footer = format!("{} / {}", i + 1, count);
        content.begin_text();
        content.set_font(REGULAR, 8.0);
        content.next_line(
            PAGE_W - MARGIN - width(footer.as_bytes(), 8.0, false),
            MARGIN / 2.0,
        );
        content.show(Str(footer.as_bytes()));
        content.end_text();
        let mut page = pdf.page(page_ref(i));
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree);
        page.contents(content_ref(i));
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(REGULAR, regular);
        fonts.pair(BOLD, bold);
        fonts.finish();
        resources.finish();
        page.finish();
        pdf.stream(content_ref(i), &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_by_width() {
        let lines = wrap("aaaa bbbb cccc", 10.0, false, 60.0);
        assert_eq!(lines, vec![b"aaaa bbbb".to_vec(), b"cccc".to_vec()]);
        let long = wrap(&"x".repeat(100), 10.0, false, 50.0);
        assert!(long.len() > 1 && long.iter().all(|l| width(l, 10.0, false) <= 50.0));
        assert_eq!(encode("Bakı şəhəri €"), b"Baki seheri \x80".to_vec());
    }

    #[test]
    fn renders_pages() {
        let mut d = Document::default();
        d.heading(1, "Report");
        for i in 0..120 {
            d.paragraph(format!(
                "Paragraph {i} with some words to wrap across the page width."
            ));
        }
        d.table(&["a", "b"], vec![vec!["1".into(), "2".into()]]);
        d.bars("Bars", vec![("x".into(), 3), ("y".into(), 0)]);
        let pdf = render(&d, "Report");
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(
            text.contains("/Count 3") || text.contains("/Count 4"),
            "several pages"
        );
    }
}
