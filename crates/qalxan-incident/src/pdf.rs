//! A report [`Document`] rendered as PDF with `pdf-writer` (typst's low-level writer): A4
//! pages, text wrapped by the font's metrics, tables, and bar charts drawn as rectangles.
//!
//! Two fonts: a TrueType family the caller passes in ([`Fonts`], e.g. Debian's DejaVu Sans),
//! embedded whole and compressed, with a ToUnicode map so the text can be searched and copied;
//! or, when none is given, the standard Helvetica every reader has. Helvetica speaks WinAnsi
//! (Windows-1252): characters outside it are transliterated where a close letter exists
//! (Azerbaijani `ə`, `ş`, `ğ`, `ı` become `e`, `s`, `g`, `i`) and shown as `?` otherwise, so
//! reports in Azerbaijani want the TrueType font.

use crate::report::{Block, Document};
use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str};
use std::cell::RefCell;
use std::collections::BTreeMap;

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

/// TrueType fonts (the files' bytes) to draw a report in.
#[derive(Clone, Copy)]
pub struct Fonts<'a> {
    pub regular: &'a [u8],
    pub bold: &'a [u8],
}

/// How text becomes bytes in a content stream and how wide it is.
trait Metrics {
    fn width(&self, text: &str, size: f32, bold: bool) -> f32;
    fn encode(&self, text: &str, bold: bool) -> Vec<u8>;
}

/// Helvetica in WinAnsi.
struct Standard;

impl Metrics for Standard {
    fn width(&self, text: &str, size: f32, bold: bool) -> f32 {
        let units: u32 = text
            .chars()
            .filter(|c| !c.is_control())
            .map(|c| match win_ansi(c) {
                b @ 32..=126 => u32::from(WIDTHS[usize::from(b - 32)]),
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

    fn encode(&self, text: &str, _bold: bool) -> Vec<u8> {
        text.chars()
            .filter(|c| !c.is_control())
            .map(win_ansi)
            .collect()
    }
}

/// One embedded TrueType face: glyph ids as two-byte codes (Identity-H), and the glyphs used,
/// for the widths and the ToUnicode map.
struct Embedded<'a> {
    face: ttf_parser::Face<'a>,
    data: &'a [u8],
    used: RefCell<BTreeMap<u16, char>>,
}

impl<'a> Embedded<'a> {
    fn new(data: &'a [u8]) -> Option<Embedded<'a>> {
        Some(Embedded {
            face: ttf_parser::Face::parse(data, 0).ok()?,
            data,
            used: RefCell::new(BTreeMap::new()),
        })
    }

    fn glyph(&self, c: char) -> u16 {
        self.face.glyph_index(c).map_or(0, |g| g.0)
    }

    /// Advance of a glyph in 1/1000 em.
    fn advance(&self, gid: u16) -> f32 {
        let units = f32::from(self.face.units_per_em().max(1));
        f32::from(
            self.face
                .glyph_hor_advance(ttf_parser::GlyphId(gid))
                .unwrap_or(0),
        ) * 1000.0
            / units
    }

    fn scale(&self, v: i16) -> f32 {
        f32::from(v) * 1000.0 / f32::from(self.face.units_per_em().max(1))
    }
}

/// The embedded regular and bold faces.
struct Family<'a> {
    regular: Embedded<'a>,
    bold: Embedded<'a>,
}

impl Family<'_> {
    fn face(&self, bold: bool) -> &Embedded<'_> {
        if bold {
            &self.bold
        } else {
            &self.regular
        }
    }
}

impl Metrics for Family<'_> {
    fn width(&self, text: &str, size: f32, bold: bool) -> f32 {
        let f = self.face(bold);
        text.chars()
            .filter(|c| !c.is_control())
            .map(|c| f.advance(f.glyph(c)))
            .sum::<f32>()
            * size
            / 1000.0
    }

    fn encode(&self, text: &str, bold: bool) -> Vec<u8> {
        let f = self.face(bold);
        let mut out = Vec::with_capacity(text.len() * 2);
        let mut used = f.used.borrow_mut();
        for c in text.chars().filter(|c| !c.is_control()) {
            let g = f.glyph(c);
            used.entry(g).or_insert(c);
            out.extend_from_slice(&g.to_be_bytes());
        }
        out
    }
}

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

fn ellipsis() -> &'static str {
    "\u{2026}"
}

/// Splits `text` into lines no wider than `max` (a word longer than a line is cut).
fn wrap(m: &dyn Metrics, text: &str, size: f32, bold: bool, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_owned();
        loop {
            let candidate = if line.is_empty() {
                word.clone()
            } else {
                format!("{line} {word}")
            };
            if m.width(&candidate, size, bold) <= max {
                line = candidate;
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A single word wider than the line: cut it where it overflows.
            let chars: Vec<char> = word.chars().collect();
            let mut cut = chars.len();
            while cut > 1 && m.width(&chars[..cut].iter().collect::<String>(), size, bold) > max {
                cut -= 1;
            }
            lines.push(chars[..cut].iter().collect());
            word = chars[cut..].iter().collect();
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
fn fit(m: &dyn Metrics, text: &str, size: f32, bold: bool, max: f32) -> String {
    if m.width(text, size, bold) <= max {
        return text.to_owned();
    }
    let mut chars: Vec<char> = text.chars().collect();
    let tail = m.width(ellipsis(), size, bold);
    while !chars.is_empty() && m.width(&chars.iter().collect::<String>(), size, bold) + tail > max {
        chars.pop();
    }
    let mut out: String = chars.into_iter().collect();
    out.push_str(ellipsis());
    out
}

/// Lays blocks out on pages.
struct Layout<'m> {
    m: &'m dyn Metrics,
    pages: Vec<Content>,
    y: f32,
}

impl<'m> Layout<'m> {
    fn new(m: &'m dyn Metrics) -> Layout<'m> {
        let mut l = Layout {
            m,
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

    fn text_at(&mut self, x: f32, y: f32, bold: bool, size: f32, text: &str) {
        let bytes = self.m.encode(text, bold);
        let page = self.page();
        page.begin_text();
        page.set_font(if bold { BOLD } else { REGULAR }, size);
        page.next_line(x, y);
        page.show(Str(&bytes));
        page.end_text();
    }

    fn lines(&mut self, text: &str, size: f32, bold: bool, indent: f32) {
        let step = size * LEADING;
        for line in wrap(self.m, text, size, bold, PAGE_W - 2.0 * MARGIN - indent) {
            self.room(step);
            self.y -= step;
            let y = self.y;
            self.text_at(MARGIN + indent, y, bold, size, &line);
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
                let head = header
                    .get(i)
                    .map_or(0.0, |h| self.m.width(h, BODY, true) + 8.0);
                rows.iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| self.m.width(c, BODY, false) + 8.0)
                    .fold(head.max(30.0), f32::max)
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
                let shown = fit(l.m, cell, BODY, bold, w - 6.0);
                let y = l.y;
                l.text_at(x + 3.0, y, bold, BODY, &shown);
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
            let shown = fit(self.m, label, BODY, false, label_w - 6.0);
            self.text_at(MARGIN, y, false, BODY, &shown);
            let w = (*value.max(&0) as f32 / top * max_w).max(1.0);
            self.fill((0.16, 0.38, 0.66), MARGIN + label_w, y - 2.0, w, BODY);
            self.text_at(
                MARGIN + label_w + w + 4.0,
                y,
                false,
                BODY,
                &value.to_string(),
            );
        }
        self.y -= 8.0;
    }

    fn blocks(&mut self, doc: &Document) {
        for block in &doc.blocks {
            match block {
                Block::Heading { level, text } => {
                    let size = match level {
                        1 => 18.0,
                        2 => 13.0,
                        _ => 11.0,
                    };
                    self.y -= size * 0.6;
                    self.lines(text, size, true, 0.0);
                    self.y -= 4.0;
                }
                Block::Paragraph { text } => {
                    self.lines(text, BODY, false, 0.0);
                    self.y -= 6.0;
                }
                Block::Facts { rows } => {
                    for (label, value) in rows {
                        self.lines(&format!("{label}: {value}"), BODY, false, 0.0);
                    }
                    self.y -= 6.0;
                }
                Block::Table { header, rows } => {
                    if rows.is_empty() {
                        self.lines("None.", BODY, false, 0.0);
                        self.y -= 6.0;
                    } else {
                        self.table(header, rows);
                    }
                }
                Block::Bars { title, bars } => {
                    if bars.is_empty() {
                        self.lines(title, BODY + 1.0, true, 0.0);
                        self.lines("None.", BODY, false, 0.0);
                        self.y -= 6.0;
                    } else {
                        self.bars(title, bars);
                    }
                }
            }
        }
        // Page numbers in the footers; the marking at the top and the bottom of every page.
        let count = self.pages.len();
        let marking = doc
            .marking
            .as_deref()
            .map(|m| (self.m.encode(m, true), self.m.width(m, 9.0, true)));
        for i in 0..count {
            let footer = format!("{} / {count}", i + 1);
            let x = PAGE_W - MARGIN - self.m.width(&footer, 8.0, false);
            let bytes = self.m.encode(&footer, false);
            let page = &mut self.pages[i];
            page.begin_text();
            page.set_font(REGULAR, 8.0);
            page.next_line(x, MARGIN / 2.0);
            page.show(Str(&bytes));
            page.end_text();
            if let Some((text, width)) = &marking {
                for (x, y) in [
                    (PAGE_W - MARGIN - width, PAGE_H - MARGIN / 2.0),
                    (MARGIN, MARGIN / 2.0),
                ] {
                    page.begin_text();
                    page.set_font(BOLD, 9.0);
                    page.next_line(x, y);
                    page.show(Str(text));
                    page.end_text();
                }
            }
        }
    }
}

/// Renders `doc` as a PDF file in Helvetica.
pub fn render(doc: &Document, title: &str) -> Vec<u8> {
    render_with(doc, title, None)
}

/// Renders `doc` in `fonts` when given and readable (embedded), else in Helvetica.
pub fn render_with(doc: &Document, title: &str, fonts: Option<Fonts<'_>>) -> Vec<u8> {
    let family = fonts.and_then(|f| {
        Some(Family {
            regular: Embedded::new(f.regular)?,
            bold: Embedded::new(f.bold)?,
        })
    });
    let standard = Standard;
    let metrics: &dyn Metrics = match &family {
        Some(f) => f,
        None => &standard,
    };
    let mut l = Layout::new(metrics);
    l.blocks(doc);
    let pages = std::mem::take(&mut l.pages);

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    // Fonts' own objects (descendant font, descriptor, file, ToUnicode), 4 per face.
    let font_objects = 6;
    let first_page = font_objects + 8;
    let count = pages.len() as i32;
    let page_ref = |i: i32| Ref::new(first_page + 2 * i);
    let content_ref = |i: i32| Ref::new(first_page + 2 * i + 1);
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids((0..count).map(page_ref)).count(count);
    match &family {
        Some(f) => {
            write_embedded(&mut pdf, regular, font_objects, &f.regular, b"QalxanSans");
            write_embedded(
                &mut pdf,
                bold,
                font_objects + 4,
                &f.bold,
                b"QalxanSans-Bold",
            );
        }
        None => {
            pdf.type1_font(regular)
                .base_font(Name(b"Helvetica"))
                .encoding_predefined(Name(b"WinAnsiEncoding"));
            pdf.type1_font(bold)
                .base_font(Name(b"Helvetica-Bold"))
                .encoding_predefined(Name(b"WinAnsiEncoding"));
        }
    }
    pdf.document_info(info)
        .title(pdf_writer::TextStr(title))
        .producer(pdf_writer::TextStr("Qalxan"));
    for (i, content) in pages.into_iter().enumerate() {
        let i = i as i32;
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

/// A TrueType face as a Type0 font (Identity-H, CIDs are glyph ids), with the widths of the
/// glyphs used, the whole font file compressed, and a ToUnicode map.
fn write_embedded(pdf: &mut Pdf, id: Ref, first: i32, face: &Embedded<'_>, name: &[u8]) {
    let cid = Ref::new(first);
    let descriptor = Ref::new(first + 1);
    let file = Ref::new(first + 2);
    let to_unicode = Ref::new(first + 3);
    pdf.type0_font(id)
        .base_font(Name(name))
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid)
        .to_unicode(to_unicode);
    let info = SystemInfo {
        registry: Str(b"Adobe"),
        ordering: Str(b"Identity"),
        supplement: 0,
    };
    let used = face.used.borrow();
    let mut font = pdf.cid_font(cid);
    font.subtype(CidFontType::Type2)
        .base_font(Name(name))
        .system_info(info)
        .font_descriptor(descriptor)
        .default_width(face.advance(0))
        .cid_to_gid_map_predefined(Name(b"Identity"));
    {
        let mut widths = font.widths();
        for &g in used.keys() {
            widths.consecutive(g, [face.advance(g)]);
        }
    }
    font.finish();
    let b = face.face.global_bounding_box();
    pdf.font_descriptor(descriptor)
        .name(Name(name))
        .flags(FontFlags::NON_SYMBOLIC)
        .bbox(Rect::new(
            face.scale(b.x_min),
            face.scale(b.y_min),
            face.scale(b.x_max),
            face.scale(b.y_max),
        ))
        .italic_angle(0.0)
        .ascent(face.scale(face.face.ascender()))
        .descent(face.scale(face.face.descender()))
        .cap_height(face.scale(face.face.capital_height().unwrap_or(700)))
        .stem_v(80.0)
        .font_file2(file);
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(face.data, 6);
    pdf.stream(file, &compressed)
        .filter(Filter::FlateDecode)
        .pair(Name(b"Length1"), face.data.len() as i32);
    let mut cmap = UnicodeCmap::new(Name(b"Qalxan-UTF16"), info);
    for (&g, &c) in used.iter() {
        cmap.pair(g, c);
    }
    pdf.cmap(to_unicode, &cmap.finish());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_by_width() {
        let lines = wrap(&Standard, "aaaa bbbb cccc", 10.0, false, 60.0);
        assert_eq!(lines, vec!["aaaa bbbb".to_owned(), "cccc".to_owned()]);
        let long = wrap(&Standard, &"x".repeat(100), 10.0, false, 50.0);
        assert!(long.len() > 1 && long.iter().all(|l| Standard.width(l, 10.0, false) <= 50.0));
        assert_eq!(
            Standard.encode("Bakı şəhəri €", false),
            b"Baki seheri \x80".to_vec()
        );
        assert!(fit(&Standard, "abcdefghij", 10.0, false, 30.0).ends_with('\u{2026}'));
    }

    fn sample() -> Document {
        let mut d = Document::default();
        d.heading(1, "Hesabat: Bakı şəhəri");
        for i in 0..120 {
            d.paragraph(format!(
                "Paragraph {i} with some words to wrap across the page width."
            ));
        }
        d.table(&["a", "b"], vec![vec!["1".into(), "ğ".into()]]);
        d.bars("Bars", vec![("x".into(), 3), ("y".into(), 0)]);
        d
    }

    #[test]
    fn renders_pages() {
        let pdf = render(&sample(), "Report");
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(
            text.contains("/Count 3") || text.contains("/Count 4"),
            "several pages"
        );
    }

    #[test]
    fn embeds_a_truetype_font_when_given() {
        let (Ok(regular), Ok(bold)) = (
            std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
            std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
        ) else {
            eprintln!("skipping: Debian's fonts-dejavu-core is absent");
            return;
        };
        let pdf = render_with(
            &sample(),
            "Hesabat",
            Some(Fonts {
                regular: &regular,
                bold: &bold,
            }),
        );
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/Identity-H") && text.contains("/FontFile2"));
        // Poppler reads the Azerbaijani letters back through the ToUnicode map.
        let dir = std::env::temp_dir().join(format!("qalxan-pdf-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("r.pdf");
        let _ = std::fs::write(&file, &pdf);
        if let Ok(out) = std::process::Command::new("pdftotext")
            .arg(&file)
            .arg("-")
            .output()
        {
            let read = String::from_utf8_lossy(&out.stdout);
            assert!(read.contains("Hesabat: Bakı şəhəri"), "{read}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        // Bad font bytes fall back to Helvetica.
        let fallback = render_with(
            &sample(),
            "x",
            Some(Fonts {
                regular: b"nope",
                bold: b"nope",
            }),
        );
        assert!(String::from_utf8_lossy(&fallback).contains("/Helvetica"));
    }
}
