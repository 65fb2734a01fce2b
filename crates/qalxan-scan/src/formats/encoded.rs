//! Files hidden in text: e-mail (MIME, mbox), uuencode, BinHex, TNEF (winmail.dat) and HTML
//! `data:` URIs.

use base64::Engine;
use mail_parser::MimeHeaders;

use super::{u16le, u32be, u32le, visit_bytes, Context, Flow, Visit};

/// Most messages read from one mbox.
const MAX_MESSAGES: usize = 10_000;

pub fn mail(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    // An mbox holds messages one after another, each starting with a "From " line.
    let mut starts = vec![0usize];
    if data.starts_with(b"From ") {
        starts.extend(
            memchr::memmem::find_iter(data, b"\nFrom ")
                .map(|p| p + 1)
                .take(MAX_MESSAGES),
        );
    }
    starts.push(data.len());
    for (i, w) in starts.windows(2).enumerate() {
        let msg = &data[w[0]..w[1]];
        if message(msg, i, ctx, visit)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Continue)
}

fn message(
    raw: &[u8],
    index: usize,
    _ctx: &Context<'_>,
    visit: &mut Visit<'_>,
) -> Result<Flow, String> {
    let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
        return Err(format!("message {index}: not parseable"));
    };
    for (i, part) in msg.parts.iter().enumerate() {
        let name = part
            .attachment_name()
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("message{index}/part{i}"));
        let bytes: Vec<u8> = match &part.body {
            mail_parser::PartType::Multipart(_) => continue,
            mail_parser::PartType::Message(_) => raw
                .get(part.offset_body as usize..part.offset_end as usize)
                .unwrap_or(&[])
                .to_vec(),
            _ => part.contents().to_vec(),
        };
        if i == 0
            && !matches!(
                part.body,
                mail_parser::PartType::Binary(_) | mail_parser::PartType::InlineBinary(_)
            )
            && bytes.is_empty()
        {
            continue;
        }
        // x-uuencode bodies arrive undecoded.
        let flow = if let Some((file, decoded)) = uudecode(&bytes) {
            visit_bytes(format!("{name}/{file}"), decoded, visit)
        } else {
            visit_bytes(name, bytes, visit)
        };
        if flow == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Continue)
}

pub fn uuencoded(data: &[u8], _ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    match uudecode(data) {
        Some((name, bytes)) => Ok(visit_bytes(name, bytes, visit)),
        None => Err("no uuencoded body".into()),
    }
}

/// Decodes the first `begin MODE NAME` ... `end` block in `text`.
fn uudecode(text: &[u8]) -> Option<(String, Vec<u8>)> {
    let begin = if text.starts_with(b"begin ") {
        0
    } else {
        memchr::memmem::find(text, b"\nbegin ")? + 1
    };
    let mut lines = text[begin..].split(|&b| b == b'\n');
    let header = lines.next()?;
    let header = String::from_utf8_lossy(header);
    let mut words = header.trim_end().splitn(3, ' ');
    let (_, mode, name) = (words.next()?, words.next()?, words.next()?);
    if !mode.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = Vec::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"end" || line.is_empty() {
            break;
        }
        let n = ((line[0].wrapping_sub(32)) & 63) as usize;
        if n == 0 {
            break;
        }
        let vals: Vec<u8> = line[1..].iter().map(|&c| c.wrapping_sub(32) & 63).collect();
        let mut decoded = Vec::with_capacity(n + 3);
        for q in vals.chunks(4) {
            let g = |i: usize| q.get(i).copied().unwrap_or(0);
            decoded.push(g(0) << 2 | g(1) >> 4);
            decoded.push(g(1) << 4 | g(2) >> 2);
            decoded.push(g(2) << 6 | g(3));
        }
        decoded.truncate(n);
        out.extend_from_slice(&decoded);
    }
    Some((name.to_string(), out))
}

const BINHEX_ALPHABET: &[u8] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";

pub fn binhex(data: &[u8], _ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let marker = memchr::memmem::find(data, b"(This file must be converted with BinHex")
        .ok_or("no BinHex marker")?;
    let start = memchr::memchr(b':', &data[marker..])
        .map(|p| marker + p + 1)
        .ok_or("no BinHex data")?;
    let mut table = [255u8; 256];
    for (i, &c) in BINHEX_ALPHABET.iter().enumerate() {
        table[c as usize] = i as u8;
    }
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut packed = Vec::new();
    for &c in &data[start..] {
        if c == b':' {
            break;
        }
        let v = table[c as usize];
        if v == 255 {
            continue;
        }
        bits = bits << 6 | v as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            packed.push((bits >> nbits) as u8);
        }
    }
    // Run-length: 0x90 n repeats the previous byte n-1 more times; 0x90 0 is a literal 0x90.
    let mut out: Vec<u8> = Vec::with_capacity(packed.len());
    let mut i = 0;
    while i < packed.len() {
        let b = packed[i];
        if b == 0x90 && i + 1 < packed.len() {
            let n = packed[i + 1] as usize;
            if n == 0 {
                out.push(0x90);
            } else if let Some(&prev) = out.last() {
                out.extend(std::iter::repeat_n(prev, n - 1));
            }
            i += 2;
            continue;
        }
        out.push(b);
        i += 1;
    }
    let name_len = *out.first().ok_or("empty BinHex")? as usize;
    let name = String::from_utf8_lossy(out.get(1..1 + name_len).ok_or("truncated BinHex header")?)
        .into_owned();
    let h = 1 + name_len + 1 + 4 + 4 + 2;
    let data_len = u32be(&out, h).ok_or("truncated BinHex header")? as usize;
    let rsrc_len = u32be(&out, h + 4).ok_or("truncated BinHex header")? as usize;
    let data_start = h + 8 + 2;
    let fork = out
        .get(data_start..data_start.saturating_add(data_len))
        .ok_or("truncated BinHex data fork")?
        .to_vec();
    if visit_bytes(name.clone(), fork, visit) == Flow::Stop {
        return Ok(Flow::Stop);
    }
    let rsrc_start = data_start + data_len + 2;
    if rsrc_len > 0 {
        if let Some(r) = out.get(rsrc_start..rsrc_start.saturating_add(rsrc_len)) {
            return Ok(visit_bytes(format!("{name}/resource"), r.to_vec(), visit));
        }
    }
    Ok(Flow::Continue)
}

/// HTML: files carried in `data:...;base64,` URIs.
pub fn html(data: &[u8], _ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut index = 0;
    for p in memchr::memmem::find_iter(data, b";base64,") {
        let before = &data[p.saturating_sub(256)..p];
        if !before.windows(5).any(|w| w.eq_ignore_ascii_case(b"data:")) {
            continue;
        }
        let start = p + 8;
        let len = data[start..]
            .iter()
            .take_while(|&&b| {
                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\r' | b'\n' | b' ')
            })
            .count();
        let clean: Vec<u8> = data[start..start + len]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&clean) else {
            continue;
        };
        index += 1;
        if visit_bytes(format!("data-uri{index}"), decoded, visit) == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Continue)
}

/// TNEF (winmail.dat): attachments are `attAttachData` attributes, titled by `attAttachTitle`.
pub fn tnef(data: &[u8], _ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut pos = 6; // signature + key
    let mut title = String::from("attachment");
    let mut count = 0;
    while pos < data.len() {
        let (Some(id), Some(len)) = (u32le(data, pos + 1), u32le(data, pos + 5)) else {
            return Err(format!("truncated attribute at offset {pos}"));
        };
        let body = pos + 9;
        let Some(value) = data.get(body..body.saturating_add(len as usize)) else {
            return Err(format!("truncated attribute at offset {pos}"));
        };
        match id & 0xffff {
            0x8010 => {
                title =
                    String::from_utf8_lossy(value.strip_suffix(&[0]).unwrap_or(value)).into_owned()
            }
            0x800f => {
                count += 1;
                if visit_bytes(format!("{count}/{title}"), value.to_vec(), visit) == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
            _ => {}
        }
        let _ = u16le(data, body + len as usize); // checksum, not checked: damaged files are still scanned
        pos = body + len as usize + 2;
    }
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uudecode_roundtrip() {
        let text = b"begin 644 hi.txt\n%:&5L;&\\`\n`\nend\n";
        let (name, data) = uudecode(text).expect("decodes");
        assert_eq!(name, "hi.txt");
        assert_eq!(data, b"hello");
    }
}
