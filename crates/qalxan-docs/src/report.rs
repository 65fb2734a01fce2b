//! The result of an analysis and the context the format parsers fill it through.

use serde::Serialize;

use crate::detect::{detect, FileType};
use crate::Options;

/// How much an indicator weighs in the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, harmless alone (a hyperlink, an object stream).
    Info,
    /// Active or unusual content that benign documents also carry.
    Low,
    /// Content that attacks use and few benign documents need.
    Medium,
    /// A pattern of attack: auto-run code that writes or runs something, an exploit object.
    High,
}

impl Severity {
    fn weight(self) -> u32 {
        match self {
            Severity::Info => 0,
            Severity::Low => 5,
            Severity::Medium => 20,
            Severity::High => 50,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Clean,
    Suspicious,
    Malicious,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Suspicious => "suspicious",
            Verdict::Malicious => "malicious",
        }
    }
}

/// One finding, with where in the file it was seen (stream, part, object, member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Indicator {
    pub id: String,
    pub severity: Severity,
    pub description: String,
    pub location: String,
}

/// The yes/no summary analysts and tests key on; `true` means found anywhere in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    pub macros: bool,
    pub autoexec: bool,
    pub suspicious: bool,
    pub dde: bool,
    pub ole_objects: bool,
    pub external_refs: bool,
    pub encrypted: bool,
    pub javascript: bool,
    pub open_action: bool,
    pub launch: bool,
    pub embedded_files: bool,
    pub xlm_macros: bool,
    pub malformed: bool,
}

impl Flags {
    /// The flags by name, for tests and label files.
    pub fn get(&self, name: &str) -> Option<bool> {
        Some(match name {
            "macros" => self.macros,
            "autoexec" => self.autoexec,
            "suspicious" => self.suspicious,
            "dde" => self.dde,
            "ole_objects" => self.ole_objects,
            "external_refs" => self.external_refs,
            "encrypted" => self.encrypted,
            "javascript" => self.javascript,
            "open_action" => self.open_action,
            "launch" => self.launch,
            "embedded_files" => self.embedded_files,
            "xlm_macros" => self.xlm_macros,
            "malformed" => self.malformed,
            _ => return None,
        })
    }
}

/// A VBA module's source code as stored in the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VbaModule {
    pub location: String,
    pub name: String,
    pub code: String,
    /// The code with its string obfuscation undone (`vba::reveal`), when there was some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revealed: Option<String>,
}

/// Code that is not VBA: PDF JavaScript after decoding, Excel 4 formulas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Script {
    pub kind: &'static str,
    pub location: String,
    pub code: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(rename = "type")]
    pub file_type: FileType,
    pub verdict: Verdict,
    pub score: u32,
    pub indicators: Vec<Indicator>,
    pub flags: Flags,
    pub macros: Vec<VbaModule>,
    pub scripts: Vec<Script>,
}

/// Filled by the format parsers while they walk a document and whatever it contains.
pub(crate) struct Context<'a> {
    pub opts: &'a Options,
    pub flags: Flags,
    indicators: Vec<Indicator>,
    pub macros: Vec<VbaModule>,
    pub scripts: Vec<Script>,
    /// Bytes decoded so far, against `Limits::max_total`.
    decoded: usize,
    /// Some part was opened with a password Office supplies by itself (VelvetSweatshop).
    pub auto_decrypted: bool,
}

/// Base64 as Office and mail software write it: padding optional, stray trailing bits
/// accepted (Word 2003 XML blobs have them).
pub(crate) fn base64_lenient(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{
        general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig,
    };
    use base64::Engine;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    ENGINE.decode(clean.as_bytes()).ok()
}

/// Joins a parent location and a child name: `word/vbaProject.bin` + `VBA/Module1`.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else if child.is_empty() {
        parent.to_string()
    } else {
        format!("{parent}/{child}")
    }
}

impl<'a> Context<'a> {
    pub fn new(opts: &'a Options) -> Self {
        Context {
            opts,
            flags: Flags::default(),
            indicators: Vec::new(),
            macros: Vec::new(),
            scripts: Vec::new(),
            decoded: 0,
            auto_decrypted: false,
        }
    }

    /// Records a finding; the same id at the same place is kept once.
    pub fn add(&mut self, id: &str, severity: Severity, location: &str, description: String) {
        if self
            .indicators
            .iter()
            .any(|i| i.id == id && i.location == location && i.description == description)
        {
            return;
        }
        if id == "malformed" {
            self.flags.malformed = true;
        }
        self.indicators.push(Indicator {
            id: id.to_string(),
            severity,
            description,
            location: location.to_string(),
        });
    }

    pub fn malformed(&mut self, location: &str, what: impl Into<String>) {
        self.add("malformed", Severity::Low, location, what.into());
    }

    /// Takes `n` bytes from the document's decoding budget; false once it is spent, and the
    /// caller stops decoding.
    pub fn charge(&mut self, n: usize, location: &str) -> bool {
        self.decoded = self.decoded.saturating_add(n);
        if self.decoded > self.opts.limits.max_total {
            self.add(
                "limit.decoded",
                Severity::Medium,
                location,
                format!(
                    "more than {} bytes decoded; the rest of the document was not analysed",
                    self.opts.limits.max_total
                ),
            );
            return false;
        }
        true
    }

    /// The most one decoder may produce here: the per-stream limit or what is left of the
    /// document's budget, whichever is smaller.
    pub fn decode_cap(&self) -> usize {
        self.opts
            .limits
            .max_decoded
            .min(self.opts.limits.max_total.saturating_sub(self.decoded))
    }

    /// Analyses `data` found at `location`, `depth` containers deep.
    pub fn analyze(&mut self, data: &[u8], location: &str, depth: u32) {
        if depth > self.opts.limits.max_depth {
            self.add(
                "limit.depth",
                Severity::Medium,
                location,
                format!(
                    "nested deeper than {} containers; not opened",
                    self.opts.limits.max_depth
                ),
            );
            return;
        }
        match detect(data) {
            FileType::Ole2 => crate::ole::analyze(self, data, location, depth),
            FileType::Zip => crate::ooxml::analyze(self, data, location, depth),
            FileType::Rtf => crate::rtf::analyze(self, data, location, depth),
            FileType::Pdf => crate::pdf::analyze(self, data, location, depth),
            FileType::Xml => crate::xml::analyze(self, data, location, depth),
            FileType::Slk => crate::slk::analyze(self, data, location),
            FileType::Lnk => crate::lnk::analyze(self, data, location),
            FileType::Html => crate::html::analyze(self, data, location),
            FileType::Mht => crate::xml::analyze_mht(self, data, location, depth),
            FileType::Text => crate::slk::analyze_text(self, data, location),
            FileType::Executable if depth > 0 => self.add(
                "embedded.executable",
                Severity::High,
                location,
                "a Windows executable inside the document".into(),
            ),
            FileType::Executable | FileType::Empty | FileType::Unknown => {}
        }
    }

    pub fn finish(mut self, file_type: FileType) -> Report {
        if self.auto_decrypted && self.flags.autoexec {
            self.flags.suspicious = true;
            self.add(
                "evasion.encrypted_macros",
                Severity::High,
                "",
                "auto-run macros in a document encrypted with a password Office supplies by itself (VelvetSweatshop): a way to hide macros from scanners".into(),
            );
        }
        self.indicators.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.location.cmp(&b.location))
        });
        let score = self
            .indicators
            .iter()
            .map(|i| i.severity.weight())
            .sum::<u32>()
            .min(100);
        let top = self.indicators.first().map(|i| i.severity);
        let verdict = match top {
            Some(Severity::High) => Verdict::Malicious,
            Some(Severity::Medium) => Verdict::Suspicious,
            _ => Verdict::Clean,
        };
        Report {
            file_type,
            verdict,
            score,
            indicators: self.indicators,
            flags: self.flags,
            macros: self.macros,
            scripts: self.scripts,
        }
    }
}

/// File names Windows runs (or hands to an interpreter) when a user double-clicks them.
pub(crate) fn is_dangerous_name(name: &str) -> bool {
    let name = name.trim_end_matches(['\0', ' ', '.']);
    let Some((_, ext)) = name.rsplit_once('.') else {
        return false;
    };
    matches!(
        ext.to_ascii_lowercase().as_str(),
        "exe"
            | "scr"
            | "pif"
            | "com"
            | "bat"
            | "cmd"
            | "vbs"
            | "vbe"
            | "js"
            | "jse"
            | "wsf"
            | "wsh"
            | "hta"
            | "ps1"
            | "psm1"
            | "lnk"
            | "jar"
            | "msi"
            | "msp"
            | "cpl"
            | "dll"
            | "reg"
            | "inf"
            | "chm"
            | "sct"
            | "gadget"
            | "application"
            | "appref-ms"
            | "iso"
            | "img"
            | "vhd"
            | "vhdx"
            | "url"
            | "scf"
    )
}

/// Whether a field instruction is DDE or DDEAUTO, which start another program: the one
/// test analysis and disarm share, whatever the format the field came from.
pub(crate) fn is_dde_instruction(instruction: &str) -> bool {
    let first = instruction
        .split_whitespace()
        .next()
        .unwrap_or("")
        .split('"')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    first == "DDE" || first == "DDEAUTO"
}

/// A field instruction from any format (Word binary, WordprocessingML, RTF, 2003 XML):
/// DDE and DDEAUTO start another program with arguments.
pub(crate) fn dde_field(cx: &mut Context<'_>, location: &str, instruction: &str) {
    let text: String = instruction.split_whitespace().collect::<Vec<_>>().join(" ");
    if is_dde_instruction(&text) {
        let first = text
            .split([' ', '"'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        cx.flags.dde = true;
        cx.add(
            "dde",
            Severity::High,
            location,
            format!(
                "{first} field starts another program: {}",
                text.chars().take(300).collect::<String>()
            ),
        );
    }
}

/// A DDE formula in a spreadsheet cell or CSV (`=cmd|'/c calc'!A0`): Excel asks to start
/// the program named before the `|`.
pub(crate) fn dde_formula(cx: &mut Context<'_>, location: &str, formula: &str) -> bool {
    let f = formula.trim();
    if is_dde_formula(f) {
        cx.flags.dde = true;
        cx.add(
            "dde",
            Severity::High,
            location,
            format!(
                "DDE formula starts another program: {}",
                f.chars().take(300).collect::<String>()
            ),
        );
        return true;
    }
    false
}

/// Whether a cell formula calls another program through DDE (`=cmd|' /c calc'!A0`).
pub(crate) fn is_dde_formula(formula: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r#"(?i)^[=+\-@][^|]{0,64}?[A-Za-z0-9_.]+\s*\|\s*'?[^|']*'?\s*!"#)
            .expect("static pattern")
    });
    re.is_match(formula.trim())
}

/// Records the modules of one VBA project and what their code does.
pub(crate) fn vba_modules(
    cx: &mut Context<'_>,
    project: &str,
    modules: Vec<(String, String, String, Vec<u8>)>,
) {
    cx.flags.macros = true;
    let mut all = String::new();
    for (name, location, code, pcode) in modules {
        all.push_str(&code);
        all.push('\n');
        if looks_stomped(&code, &pcode) {
            cx.flags.suspicious = true;
            cx.add(
                "vba.stomping",
                Severity::High,
                &location,
                format!("module {name}: compiled p-code is present but the source code is missing or different (VBA stomping)"),
            );
        }
        let revealed = crate::vba::reveal(&code);
        // The keyword analysis reads what the obfuscation hid as well as what is written.
        if let Some(r) = &revealed {
            all.push_str(r);
            all.push('\n');
        }
        cx.macros.push(VbaModule {
            location,
            name,
            revealed,
            code,
        });
    }
    macro_findings(cx, project, &all, "VBA");
}

/// Formula lines (`A1: =...`) of a macro sheet: analysed like macro code and kept as a
/// script for the report.
pub(crate) fn xlm_script(cx: &mut Context<'_>, location: &str, lines: Vec<String>) {
    if lines.is_empty() {
        return;
    }
    for l in &lines {
        if let Some((_, f)) = l.split_once(": =") {
            dde_formula(cx, location, &format!("={f}"));
        }
    }
    let code = lines.join("\n");
    macro_findings(cx, location, &code, "Excel 4");
    cx.scripts.push(crate::Script {
        kind: "xlm",
        location: location.to_string(),
        code,
    });
}

/// The keyword analysis of macro code (VBA or Excel 4), turned into indicators.
pub(crate) fn macro_findings(cx: &mut Context<'_>, location: &str, code: &str, lang: &str) {
    let f = crate::vba::analyze_code(code);
    let list = |v: &[String]| v.join(", ");
    if !f.autoexec.is_empty() {
        cx.flags.autoexec = true;
        cx.add(
            "macro.autoexec",
            Severity::Medium,
            location,
            format!("{lang} code runs by itself: {}", list(&f.autoexec)),
        );
    }
    for (kw, why) in &f.suspicious {
        cx.flags.suspicious = true;
        cx.add(
            "macro.suspicious",
            Severity::Medium,
            location,
            format!("{kw}: {why}"),
        );
    }
    if !f.iocs.is_empty() {
        cx.add(
            "macro.ioc",
            Severity::Low,
            location,
            format!("indicators in {lang} code: {}", list(&f.iocs)),
        );
    }
    for (raw, text) in f.decoded.iter().take(10) {
        cx.add(
            "macro.encoded_string",
            Severity::Low,
            location,
            format!(
                "{} decodes to {:?}",
                raw.chars().take(40).collect::<String>(),
                text.chars().take(200).collect::<String>()
            ),
        );
    }
    if f.malicious() {
        let mut acts = f.write.clone();
        acts.extend(f.execute.iter().cloned());
        cx.add(
            "macro.autoexec_write_execute",
            Severity::High,
            location,
            format!(
                "{lang} code that runs by itself ({}) also writes or runs something ({})",
                list(&f.autoexec),
                list(&acts)
            ),
        );
    } else if f.autoexec.is_empty() && f.suspicious.is_empty() {
        cx.add(
            "macro.present",
            Severity::Low,
            location,
            format!("{lang} macros without auto-run triggers or suspicious calls"),
        );
    }
}

/// VBA stomping: Office runs the compiled p-code when its version matches and ignores the
/// source. String literals survive compilation as plain text in the p-code (identifiers do
/// not: they live in the project's name table), so literals the source never spells are
/// compiled code the source does not account for: one when the source holds no code at all,
/// two when it holds other code.
fn looks_stomped(code: &str, pcode: &[u8]) -> bool {
    let has_code = code.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with("Attribute ")
    });
    let mut missing = 0;
    for run in pcode.split(|b| !(b.is_ascii_graphic() || *b == b' ')) {
        if run.len() < 6 || run.iter().filter(|b| b.is_ascii_alphabetic()).count() < 3 {
            continue;
        }
        let s = String::from_utf8_lossy(run);
        if !code.contains(s.trim()) {
            missing += 1;
        }
    }
    if has_code {
        missing >= 2
    } else {
        missing >= 1
    }
}
