//! File type detection by content (magic bytes), never by name, and ClamAV's target types.

/// ClamAV's signature target types (the `TargetType` field of `.ndb`, `Target:` of `.ldb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Any,
    Pe,
    Ole2,
    Html,
    Mail,
    Graphics,
    Elf,
    Text,
    MachO,
    Pdf,
    Flash,
    Java,
}

impl Target {
    pub fn from_number(n: u32) -> Option<Self> {
        Some(match n {
            0 => Target::Any,
            1 => Target::Pe,
            2 => Target::Ole2,
            3 => Target::Html,
            4 => Target::Mail,
            5 => Target::Graphics,
            6 => Target::Elf,
            7 => Target::Text,
            9 => Target::MachO,
            10 => Target::Pdf,
            11 => Target::Flash,
            12 => Target::Java,
            _ => return None,
        })
    }
}

/// What a buffer is, as far as the scanner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Pe,
    Elf,
    MachO,
    Zip,
    Gzip,
    Bzip2,
    Xz,
    Tar,
    Cpio,
    SevenZip,
    Cab,
    Chm,
    Arj,
    Szdd,
    Ole2,
    Pdf,
    Rtf,
    Html,
    Mail,
    BinHex,
    Uuencoded,
    Tnef,
    Sis,
    Graphics,
    Flash,
    Java,
    Text,
    Binary,
}

impl FileType {
    /// Whether signatures for `target` apply to a file of this type.
    pub fn is_target(self, target: Target) -> bool {
        match target {
            Target::Any => true,
            Target::Pe => self == FileType::Pe,
            Target::Ole2 => self == FileType::Ole2,
            Target::Html => self == FileType::Html,
            Target::Mail => self == FileType::Mail,
            Target::Graphics => self == FileType::Graphics,
            Target::Elf => self == FileType::Elf,
            Target::Text => matches!(
                self,
                FileType::Text | FileType::Html | FileType::Mail | FileType::Rtf
            ),
            Target::MachO => self == FileType::MachO,
            Target::Pdf => self == FileType::Pdf,
            Target::Flash => self == FileType::Flash,
            Target::Java => self == FileType::Java,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileType::Pe => "pe",
            FileType::Elf => "elf",
            FileType::MachO => "macho",
            FileType::Zip => "zip",
            FileType::Gzip => "gzip",
            FileType::Bzip2 => "bzip2",
            FileType::Xz => "xz",
            FileType::Tar => "tar",
            FileType::Cpio => "cpio",
            FileType::SevenZip => "7z",
            FileType::Cab => "cab",
            FileType::Chm => "chm",
            FileType::Arj => "arj",
            FileType::Szdd => "szdd",
            FileType::Ole2 => "ole2",
            FileType::Pdf => "pdf",
            FileType::Rtf => "rtf",
            FileType::Html => "html",
            FileType::Mail => "mail",
            FileType::BinHex => "binhex",
            FileType::Uuencoded => "uuencoded",
            FileType::Tnef => "tnef",
            FileType::Sis => "sis",
            FileType::Graphics => "graphics",
            FileType::Flash => "flash",
            FileType::Java => "java",
            FileType::Text => "text",
            FileType::Binary => "binary",
        }
    }
}

const MAIL_HEADERS: &[&[u8]] = &[
    b"From ",
    b"Received:",
    b"Return-Path:",
    b"Delivered-To:",
    b"Message-ID:",
    b"MIME-Version:",
    b"Date:",
    b"From:",
    b"To:",
    b"Subject:",
    b"X-",
    b"Content-Type:",
];

fn looks_like_mail(data: &[u8]) -> bool {
    let head = &data[..data.len().min(4096)];
    let mut headers = 0;
    for line in head.split(|&b| b == b'\n').take(40) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        if MAIL_HEADERS
            .iter()
            .any(|h| line.len() >= h.len() && line[..h.len()].eq_ignore_ascii_case(h))
        {
            headers += 1;
        } else if !line.contains(&b':') {
            return false;
        }
    }
    headers >= 2 || (headers >= 1 && head.starts_with(b"From "))
}

fn is_cpio(data: &[u8]) -> bool {
    data.starts_with(b"070707")
        || data.starts_with(b"070701")
        || data.starts_with(b"070702")
        || data.starts_with(&[0xc7, 0x71])
        || data.starts_with(&[0x71, 0xc7])
}

fn is_text(data: &[u8]) -> bool {
    let head = &data[..data.len().min(1024)];
    !head.is_empty()
        && head
            .iter()
            .all(|&b| b >= 0x20 || matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
}

fn contains_nocase(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Detects the type of `data` from its first bytes.
pub fn detect(data: &[u8]) -> FileType {
    let d = data;
    if d.starts_with(b"MZ") {
        return if crate::pe::parse(d).is_some() {
            FileType::Pe
        } else {
            FileType::Binary
        };
    }
    if d.starts_with(b"\x7fELF") {
        return FileType::Elf;
    }
    if d.starts_with(&[0xfe, 0xed, 0xfa, 0xce])
        || d.starts_with(&[0xce, 0xfa, 0xed, 0xfe])
        || d.starts_with(&[0xfe, 0xed, 0xfa, 0xcf])
        || d.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
    {
        return FileType::MachO;
    }
    if d.starts_with(&[0xca, 0xfe, 0xba, 0xbe]) {
        return FileType::Java;
    }
    if d.starts_with(b"PK\x03\x04")
        || d.starts_with(b"PK\x05\x06")
        || d.starts_with(b"PK00PK\x03\x04")
    {
        return FileType::Zip;
    }
    if d.starts_with(&[0x1f, 0x8b]) {
        return FileType::Gzip;
    }
    if d.starts_with(b"BZh") {
        return FileType::Bzip2;
    }
    if d.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return FileType::Xz;
    }
    if d.starts_with(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c]) {
        return FileType::SevenZip;
    }
    if d.starts_with(b"MSCF\0\0\0\0") {
        return FileType::Cab;
    }
    if d.starts_with(b"ITSF") {
        return FileType::Chm;
    }
    if d.starts_with(&[0x60, 0xea]) {
        return FileType::Arj;
    }
    if d.starts_with(b"SZDD\x88\xf0\x27\x33") {
        return FileType::Szdd;
    }
    if d.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return FileType::Ole2;
    }
    if d.starts_with(&[0x78, 0x9f, 0x3e, 0x22]) {
        return FileType::Tnef;
    }
    if d.len() >= 12 && d[8..12] == [0x19, 0x04, 0x00, 0x10] {
        return FileType::Sis;
    }
    if d.get(257..262) == Some(b"ustar") {
        return FileType::Tar;
    }
    if is_cpio(d) {
        return FileType::Cpio;
    }
    if d.starts_with(b"FWS") || d.starts_with(b"CWS") || d.starts_with(b"ZWS") {
        return FileType::Flash;
    }
    if d.starts_with(b"\x89PNG")
        || d.starts_with(&[0xff, 0xd8, 0xff])
        || d.starts_with(b"GIF8")
        || d.starts_with(b"BM")
            && d.len() > 14
            && u32::from_le_bytes([d[2], d[3], d[4], d[5]]) as usize == d.len()
    {
        return FileType::Graphics;
    }
    if d.starts_with(b"{\\rt") {
        return FileType::Rtf;
    }
    let head = &d[..d.len().min(1024)];
    if memchr::memmem::find(head, b"%PDF-").is_some() {
        return FileType::Pdf;
    }
    if memchr::memmem::find(head, b"(This file must be converted with BinHex").is_some() {
        return FileType::BinHex;
    }
    if looks_like_mail(d) {
        return FileType::Mail;
    }
    if d.starts_with(b"begin ")
        && d.get(6..9)
            .is_some_and(|m| m.iter().all(u8::is_ascii_digit))
    {
        return FileType::Uuencoded;
    }
    let head_text = is_text(d);
    if head_text
        && [
            b"<html".as_slice(),
            b"<body",
            b"<script",
            b"<a href",
            b"<iframe",
            b"<!doctype html",
            b"<head",
            b"<meta",
            b"<img",
        ]
        .iter()
        .any(|tag| contains_nocase(head, tag))
    {
        return FileType::Html;
    }
    if head_text {
        FileType::Text
    } else {
        FileType::Binary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_content() {
        assert_eq!(detect(b"PK\x03\x04rest"), FileType::Zip);
        assert_eq!(detect(b"\x1f\x8b\x08"), FileType::Gzip);
        assert_eq!(detect(b"<html><body>hi</body></html>"), FileType::Html);
        assert_eq!(
            detect(b"From a@b Mon\nSubject: x\nTo: y\n\nbody"),
            FileType::Mail
        );
        assert_eq!(detect(b"hello world\n"), FileType::Text);
        assert_eq!(detect(&[0u8, 1, 2, 3]), FileType::Binary);
        assert_eq!(detect(b"begin 644 clam.exe\n"), FileType::Uuencoded);
        assert_eq!(detect(b"{\\rtf1\\ansi"), FileType::Rtf);
    }
}
