//! Zip archives: members read (with the password list for encrypted ones) and analysed as
//! documents of their own, within the depth and size limits.

use std::io::{Cursor, Read};

use crate::report::{join, Context, Severity};

pub(crate) type Zip<'d> = zip::ZipArchive<Cursor<&'d [u8]>>;

/// One member's bytes: Ok(None) for directories; Err for members that cannot be read.
pub(crate) fn read_member(
    archive: &mut Zip<'_>,
    i: usize,
    passwords: &[String],
    cap: usize,
) -> Result<Option<(String, Vec<u8>, bool)>, String> {
    fn take(
        entry: zip::read::ZipFile<'_, Cursor<&[u8]>>,
        cap: usize,
    ) -> Result<Option<(String, Vec<u8>, bool)>, String> {
        if entry.is_dir() {
            return Ok(None);
        }
        let name = entry.name().to_string();
        let mut out = Vec::new();
        let mut r = entry.take(cap as u64 + 1);
        match r.read_to_end(&mut out) {
            Ok(_) => {}
            // A corrupt stream still yields what came before the damage.
            Err(e) if out.is_empty() => return Err(format!("{name}: {e}")),
            Err(_) => {}
        }
        let truncated = out.len() > cap;
        out.truncate(cap);
        Ok(Some((name, out, truncated)))
    }
    let attempt = archive.by_index(i).map(|e| take(e, cap));
    match attempt {
        Ok(r) => r,
        Err(zip::result::ZipError::UnsupportedArchive(m))
            if m.to_ascii_lowercase().contains("password") =>
        {
            for pw in passwords {
                if let Ok(e) = archive.by_index_decrypt(i, pw.as_bytes()) {
                    if let Ok(Some(r)) = take(e, cap) {
                        return Ok(Some(r));
                    }
                }
            }
            Err(format!("member {i} is encrypted with an unknown password"))
        }
        Err(e) => Err(format!("member {i}: {e}")),
    }
}

/// A plain archive: every member is analysed as a document.
pub(crate) fn analyze(cx: &mut Context<'_>, archive: &mut Zip<'_>, location: &str, depth: u32) {
    let passwords = cx.opts.passwords.clone();
    let n = archive.len().min(cx.opts.limits.max_items);
    if archive.len() > n {
        cx.add(
            "limit.items",
            Severity::Medium,
            location,
            format!(
                "archive has {} members; only the first {n} were analysed",
                archive.len()
            ),
        );
    }
    for i in 0..n {
        let cap = cx.decode_cap();
        match read_member(archive, i, &passwords, cap) {
            Ok(Some((name, bytes, truncated))) => {
                let loc = join(location, &name);
                if truncated {
                    cx.add(
                        "limit.size",
                        Severity::Medium,
                        &loc,
                        format!("member larger than {cap} bytes; only the start was analysed"),
                    );
                }
                if !cx.charge(bytes.len(), &loc) {
                    return;
                }
                if crate::report::is_dangerous_name(&name) {
                    cx.add(
                        "archive.executable",
                        Severity::Medium,
                        &loc,
                        format!("archive member {name} is a file Windows runs when opened"),
                    );
                }
                let ext_doc = name.rsplit_once('.').is_some_and(|(_, e)| {
                    matches!(
                        e.to_ascii_lowercase().as_str(),
                        "doc"
                            | "docx"
                            | "docm"
                            | "xls"
                            | "xlsx"
                            | "xlsm"
                            | "pdf"
                            | "rtf"
                            | "ppt"
                            | "pptx"
                            | "txt"
                            | "jpg"
                            | "png"
                    )
                });
                if ext_doc && crate::detect(&bytes) == crate::FileType::Executable {
                    cx.add(
                        "executable.disguised",
                        Severity::High,
                        &loc,
                        format!("a Windows executable named like a document ({name})"),
                    );
                }
                cx.analyze(&bytes, &loc, depth + 1);
            }
            Ok(None) => {}
            Err(e) => {
                if e.contains("unknown password") {
                    cx.flags.encrypted = true;
                    cx.add("encrypted", Severity::Medium, location, e);
                } else {
                    cx.malformed(location, e);
                }
            }
        }
    }
}
