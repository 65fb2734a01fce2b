//! Qalxan's document sandbox: decides whether a document is malicious, explains why, and
//! (in [`disarm`]) writes a copy with the active content removed.
//!
//! The engine knows nothing of files on disk, sockets or databases: callers hand it bytes and
//! get a [`Report`] back. Every parser here reads untrusted input, so each one is bounded by
//! [`Limits`] (depth, decoded bytes, object counts) and reports damage as a `malformed`
//! indicator instead of failing: a broken document is itself a finding.
//!
//! Formats: OLE2 (Word/Excel/PowerPoint 97-2003, with VBA, Excel 4 macro sheets, embedded
//! objects, encryption), OOXML and ODF (zip), Word/Excel 2003 XML and Flat OPC, SYLK, RTF,
//! PDF, Windows shortcuts (LNK), HTML, and zip archives (opened with a password list).

mod archive;
mod crypto;
mod detect;
pub mod disarm;
mod html;
mod lnk;
pub mod ole;
mod ooxml;
pub mod pdf;
mod pdfcrypt;
mod report;
pub mod rtf;
mod slk;
pub mod vba;
pub mod xlm;
mod xlm_names;
mod xls;
mod xml;

pub use detect::{detect, FileType};
pub use report::{Flags, Indicator, Report, Script, Severity, VbaModule, Verdict};

/// Bounds on the work one document may cause: nested containers, decoded bytes, objects.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Containers opened inside containers (archive → document → embedded object ...).
    pub max_depth: u32,
    /// Bytes any one decoder may produce (a stream, a zip member, a VBA module).
    pub max_decoded: usize,
    /// Bytes all decoders together may produce for one top-level document.
    pub max_total: usize,
    /// PDF objects, zip members, OLE streams read per container.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 8,
            max_decoded: 64 << 20,
            max_total: 512 << 20,
            max_items: 100_000,
        }
    }
}

/// What the analyser may try: passwords for archives and documents, and its limits.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tried on password-protected archives and PDFs, in order.
    pub passwords: Vec<String>,
    /// Tried on encrypted Office documents after Excel's built-in "VelvetSweatshop".
    pub document_passwords: Vec<String>,
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            passwords: vec!["infected".into(), "malware".into(), "virus".into()],
            document_passwords: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// Analyses one document held in memory; `name` (may be empty) is the file name it came
/// with, used only to notice an executable disguised by its extension.
pub fn analyze(data: &[u8], name: &str, options: &Options) -> Report {
    let mut cx = report::Context::new(options);
    let file_type = detect(data);
    if file_type == FileType::Executable {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        let disguised = ext.as_deref().is_some_and(|e| {
            !matches!(
                e,
                "exe" | "dll" | "scr" | "com" | "sys" | "cpl" | "ocx" | "efi"
            )
        });
        if disguised {
            cx.add(
                "executable.disguised",
                Severity::High,
                "",
                format!("a Windows executable named like a document ({name})"),
            );
        } else {
            cx.add(
                "executable",
                Severity::Medium,
                "",
                "a Windows executable, not a document".into(),
            );
        }
    }
    cx.analyze(data, "", 0);
    cx.finish(file_type)
}
