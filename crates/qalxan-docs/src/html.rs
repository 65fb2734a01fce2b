//! HTML attachments: smuggling (a script builds a file in the browser and downloads it),
//! data: URIs carrying executables, credential-phishing forms, obfuscated script.

use std::sync::OnceLock;

use regex::Regex;

use crate::report::{Context, Severity};

struct Patterns {
    blob: Regex,
    download: Regex,
    data_uri: Regex,
    form: Regex,
    password: Regex,
    obfuscation: Regex,
    script: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("static pattern");
        Patterns {
            blob: re(r"(?i)new\s+Blob\s*\(|\bUint8Array\b|\batob\s*\("),
            download: re(r#"(?i)\.download\s*=|\bdownload\s*=\s*["']|msSaveOrOpenBlob|msSaveBlob|createObjectURL"#),
            data_uri: re(r#"(?i)data:(application/(?:x-msdownload|octet-stream|x-msdos-program|x-dosexec|zip|x-zip-compressed|vnd\.ms-|hta|x-iso9660-image)[^;,"']*|[a-z]+/[a-z0-9.+-]+)(?:;[a-z0-9=-]+)*;base64,(TVq|UEsDB|0M8R4|[A-Za-z0-9+/]{0,8})"#),
            form: re(r#"(?is)<form\b[^>]*\baction\s*=\s*["']?([^"'\s>]+)"#),
            password: re(r#"(?i)<input\b[^>]*\btype\s*=\s*["']?password"#),
            obfuscation: re(r"(?i)\beval\s*\(\s*(?:atob|unescape|decodeURIComponent|String\.fromCharCode)|document\.write\s*\(\s*(?:atob|unescape)"),
            script: re(r"(?i)<script\b"),
        }
    })
}

pub(crate) fn analyze(cx: &mut Context<'_>, data: &[u8], location: &str) {
    let text = String::from_utf8_lossy(&data[..data.len().min(32 << 20)]);
    let p = patterns();
    if p.script.is_match(&text) {
        cx.flags.javascript = true;
    }
    if p.blob.is_match(&text) && p.download.is_match(&text) {
        cx.flags.suspicious = true;
        cx.add(
            "html.smuggling",
            Severity::High,
            location,
            "script builds a file in the browser and saves it (HTML smuggling)".into(),
        );
    }
    for c in p.data_uri.captures_iter(&text).take(100) {
        let mime = c.get(1).map_or("", |m| m.as_str());
        let head = c.get(2).map_or("", |m| m.as_str());
        let (id, sev, what) = match head {
            "TVq" => (
                "html.data_executable",
                Severity::High,
                "a Windows executable",
            ),
            "UEsDB" => (
                "html.data_archive",
                Severity::Medium,
                "a zip archive or OOXML document",
            ),
            "0M8R4" => (
                "html.data_document",
                Severity::Medium,
                "an OLE2 (Office 97-2003) document",
            ),
            _ if mime.to_ascii_lowercase().starts_with("application/") => {
                ("html.data_file", Severity::Low, "a file")
            }
            _ => continue,
        };
        cx.add(
            id,
            sev,
            location,
            format!("data: URI ({mime}) carries {what}"),
        );
    }
    if p.password.is_match(&text) {
        let action = p
            .form
            .captures(&text)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_string())
            .unwrap_or_default();
        let remote =
            action.starts_with("http:") || action.starts_with("https:") || action.starts_with("//");
        cx.add(
            "html.credential_form",
            if remote {
                Severity::High
            } else {
                Severity::Medium
            },
            location,
            if action.is_empty() {
                "form asking for a password in a local file (credential phishing)".into()
            } else {
                format!("form asking for a password, sent to {action} (credential phishing)")
            },
        );
        if remote {
            cx.flags.external_refs = true;
        }
    }
    if p.obfuscation.is_match(&text) {
        cx.flags.suspicious = true;
        cx.add(
            "html.obfuscated_script",
            Severity::Medium,
            location,
            "script decodes and runs hidden code (eval of atob/unescape)".into(),
        );
    }
}
