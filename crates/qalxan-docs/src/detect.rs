//! File type by content: magic numbers first, then a look at the first bytes of text.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Empty,
    /// OLE2 compound file: Word/Excel/PowerPoint 97-2003, MSI, encrypted OOXML.
    Ole2,
    /// Zip: OOXML, ODF, XPS, or a plain archive.
    Zip,
    Rtf,
    Pdf,
    /// XML: Word/Excel 2003 XML, Flat OPC, or other XML.
    Xml,
    /// MIME HTML (`.mht`), also Word's "single file web page" with an ActiveMime part.
    Mht,
    /// Symbolic Link (SYLK) spreadsheet, which can carry Excel 4 macros.
    Slk,
    /// Windows shortcut.
    Lnk,
    Html,
    /// MZ/PE executable.
    Executable,
    Text,
    Unknown,
}

impl FileType {
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Empty => "empty",
            FileType::Ole2 => "ole2",
            FileType::Zip => "zip",
            FileType::Rtf => "rtf",
            FileType::Pdf => "pdf",
            FileType::Xml => "xml",
            FileType::Mht => "mht",
            FileType::Slk => "slk",
            FileType::Lnk => "lnk",
            FileType::Html => "html",
            FileType::Executable => "executable",
            FileType::Text => "text",
            FileType::Unknown => "unknown",
        }
    }
}

const LNK_CLSID: [u8; 20] = [
    0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46,
];

/// Detects the type of `data` from its content alone.
pub fn detect(data: &[u8]) -> FileType {
    if data.is_empty() {
        return FileType::Empty;
    }
    if data.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return FileType::Ole2;
    }
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        return FileType::Zip;
    }
    if data.starts_with(&LNK_CLSID) {
        return FileType::Lnk;
    }
    if data.starts_with(b"MZ") {
        return FileType::Executable;
    }
    // RTF readers accept `{\rt` followed by anything; attackers rely on that.
    if data.starts_with(b"{\\rt") {
        return FileType::Rtf;
    }
    // PDF readers look for the header anywhere in the first kilobyte.
    if memchr::memmem::find(&data[..data.len().min(1024)], b"%PDF-").is_some() {
        return FileType::Pdf;
    }
    if data.starts_with(b"ID;") {
        return FileType::Slk;
    }
    let head = &data[..data.len().min(4096)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    if trimmed.starts_with("mime-version:")
        || (text.contains("mime-version:") && text.contains("content-type: multipart/"))
    {
        return FileType::Mht;
    }
    if trimmed.starts_with("<?xml") {
        if text.contains("<html") {
            return FileType::Html;
        }
        return FileType::Xml;
    }
    if trimmed.starts_with("<!doctype html")
        || trimmed.starts_with("<html")
        || trimmed.starts_with("<head")
        || trimmed.starts_with("<body")
        || trimmed.starts_with("<script")
        || (trimmed.starts_with('<') && (text.contains("<script") || text.contains("<form")))
    {
        return FileType::Html;
    }
    let binary = head
        .iter()
        .filter(|&&b| b < 0x09 || (b > 0x0d && b < 0x20))
        .count();
    if binary * 10 < head.len() {
        return FileType::Text;
    }
    FileType::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic() {
        assert_eq!(detect(b""), FileType::Empty);
        assert_eq!(detect(b"{\\rtf1\\ansi}"), FileType::Rtf);
        assert_eq!(detect(b"{\\rtxyz}"), FileType::Rtf);
        assert_eq!(detect(b"junk\n%PDF-1.7\n"), FileType::Pdf);
        assert_eq!(detect(b"<!DOCTYPE html><p>"), FileType::Html);
        assert_eq!(
            detect(b"<?xml version='1.0'?><w:wordDocument/>"),
            FileType::Xml
        );
        assert_eq!(detect(b"ID;PWXL;N;E\r\n"), FileType::Slk);
        assert_eq!(detect(b"hello\n"), FileType::Text);
        assert_eq!(detect(&[0, 1, 2, 3, 4, 5, 6, 7]), FileType::Unknown);
    }
}
