//! Documents that carry files: OLE2 compound files (Word, Excel, PowerPoint, MSI), PDF
//! streams, and RTF embedded objects.

use std::io::{Cursor, Read};

use super::{read_capped, u16le, u32le, visit_bytes, Child, Context, Flow, Visit};

/// Streams nested deeper than this in an OLE2 storage tree are not read.
const MAX_OLE_STREAMS: usize = 4096;

pub fn ole2(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut cf = cfb::CompoundFile::open(Cursor::new(data)).map_err(|e| e.to_string())?;
    let streams: Vec<std::path::PathBuf> = cf
        .walk()
        .filter(|e| e.is_stream())
        .take(MAX_OLE_STREAMS)
        .map(|e| e.path().to_path_buf())
        .collect();
    let mut first_error = None;
    for path in streams {
        let name = path.to_string_lossy().into_owned();
        let (bytes, exceeded) = match cf
            .open_stream(&path)
            .and_then(|s| read_capped(s, ctx.max_size))
        {
            Ok(r) => r,
            Err(e) => {
                first_error.get_or_insert(format!("{name}: {e}"));
                continue;
            }
        };
        let leaf = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut extra = Vec::new();
        if leaf == "\u{1}Ole10Native" {
            // A 4-byte size, then an OLE1 "Package": the file a user dragged into the document.
            if let Some((file, payload)) = bytes.get(4..).and_then(parse_package) {
                extra.push((format!("{name}/{file}"), payload.to_vec()));
            }
        } else if leaf == "PowerPoint Document" {
            for (i, obj) in powerpoint_objects(&bytes, ctx.max_size)
                .into_iter()
                .enumerate()
            {
                extra.push((format!("{name}/ExOleObjStg{i}"), obj));
            }
        }
        if visit(Child {
            name,
            data: bytes,
            exceeded,
        }) == Flow::Stop
        {
            return Ok(Flow::Stop);
        }
        for (n, d) in extra {
            if visit_bytes(n, d, visit) == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
    }
    first_error.map_or(Ok(Flow::Continue), Err)
}

fn cstr(d: &[u8], pos: &mut usize) -> Option<String> {
    let rest = d.get(*pos..)?;
    let end = memchr::memchr(0, rest)?;
    *pos += end + 1;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// The OLE1 Package format (Packager): type 2, display name, source path, temp path, data.
pub(crate) fn parse_package(native: &[u8]) -> Option<(String, &[u8])> {
    if u16le(native, 0)? != 2 {
        return None;
    }
    let mut pos = 2;
    let label = cstr(native, &mut pos)?;
    let _source = cstr(native, &mut pos)?;
    pos += 4; // reserved: 0x00030000
    let tmp_len = u32le(native, pos)? as usize;
    pos += 4 + tmp_len;
    let size = u32le(native, pos)? as usize;
    pos += 4;
    let end = pos.checked_add(size)?;
    Some((
        if label.is_empty() {
            "package".into()
        } else {
            label
        },
        native.get(pos..end)?,
    ))
}

/// Embedded OLE objects of a PowerPoint document: ExOleObjStg records, zlib-compressed when
/// their instance is 1.
fn powerpoint_objects(stream: &[u8], max: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let (Some(ver_inst), Some(kind), Some(len)) = (
        u16le(stream, pos),
        u16le(stream, pos + 2),
        u32le(stream, pos + 4),
    ) {
        let body = pos + 8;
        if ver_inst & 0xf == 0xf {
            // A container: its records follow directly.
            pos = body;
            continue;
        }
        let end = body.saturating_add(len as usize);
        if kind == 0x1011 {
            if let Some(rec) = stream.get(body..end.min(stream.len())) {
                let instance = ver_inst >> 4;
                if instance == 1 && rec.len() > 4 {
                    let mut data = Vec::new();
                    let _ = flate2::read::ZlibDecoder::new(&rec[4..])
                        .take(max)
                        .read_to_end(&mut data);
                    out.push(data);
                } else {
                    out.push(rec.to_vec());
                }
            }
        }
        if end >= stream.len() || out.len() >= 256 {
            break;
        }
        pos = end;
    }
    out
}

/// PDF: every stream, decoded through its filters where this engine knows them.
pub fn pdf(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut pos = 0usize;
    let mut index = 0usize;
    while let Some(off) = memchr::memmem::find(&data[pos..], b"stream") {
        let kw = pos + off;
        pos = kw + 6;
        // "endstream" also contains "stream"; only a keyword after a dictionary starts one.
        if kw >= 3 && &data[kw - 3..kw] == b"end" {
            continue;
        }
        let mut start = kw + 6;
        if data.get(start) == Some(&b'\r') {
            start += 1;
        }
        if data.get(start) == Some(&b'\n') {
            start += 1;
        } else if data.get(start - 1) != Some(&b'\r') {
            continue;
        }
        let dict_start = memchr::memmem::rfind(&data[kw.saturating_sub(4096)..kw], b"obj")
            .map(|p| kw.saturating_sub(4096) + p)
            .unwrap_or(kw.saturating_sub(4096));
        let dict = &data[dict_start..kw];
        let end = memchr::memmem::find(&data[start..], b"endstream")
            .map(|p| start + p)
            .unwrap_or(data.len());
        let mut raw = &data[start..end];
        if let Some(len) = direct_length(dict) {
            if len <= raw.len() {
                raw = &raw[..len];
            }
        }
        while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r')
            && direct_length(dict).is_none()
        {
            raw = &raw[..raw.len() - 1];
        }
        index += 1;
        let decoded = apply_filters(raw, &filters(dict), ctx.max_size);
        let bytes = decoded.unwrap_or_else(|| raw.to_vec());
        if visit_bytes(format!("stream{index}"), bytes, visit) == Flow::Stop {
            return Ok(Flow::Stop);
        }
        pos = end;
    }
    Ok(Flow::Continue)
}

fn direct_length(dict: &[u8]) -> Option<usize> {
    let p = memchr::memmem::rfind(dict, b"/Length")?;
    let rest = &dict[p + 7..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let after = &rest[digits..];
    // `/Length 13 0 R` is an indirect reference, not a length.
    let trimmed: Vec<u8> = after
        .iter()
        .copied()
        .take(8)
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if trimmed.first().is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn filters(dict: &[u8]) -> Vec<String> {
    let Some(p) = memchr::memmem::rfind(dict, b"/Filter") else {
        return Vec::new();
    };
    let rest = &dict[p + 7..];
    let end = rest
        .iter()
        .position(|&b| b == b']' || b == b'>')
        .unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split('/')
        .skip(1)
        .map(|f| {
            f.trim_matches(|c: char| c.is_whitespace() || c == '[')
                .to_string()
        })
        .filter(|f| !f.is_empty())
        .collect()
}

fn apply_filters(raw: &[u8], filters: &[String], max: u64) -> Option<Vec<u8>> {
    if filters.is_empty() {
        return None;
    }
    let mut cur = raw.to_vec();
    for f in filters {
        cur = match f.as_str() {
            "FlateDecode" | "Fl" => {
                let mut out = Vec::new();
                let r = flate2::read::ZlibDecoder::new(&cur[..])
                    .take(max)
                    .read_to_end(&mut out);
                if r.is_err() && out.is_empty() {
                    return None;
                }
                out
            }
            "ASCIIHexDecode" | "AHx" => hex_decode(&cur),
            _ => return None,
        };
    }
    Some(cur)
}

fn hex_decode(s: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = s
        .iter()
        .take_while(|&&b| b != b'>' && b != b'}')
        .filter_map(|&b| (b as char).to_digit(16).map(|v| v as u8))
        .collect();
    digits
        .chunks(2)
        .map(|p| p[0] << 4 | p.get(1).copied().unwrap_or(0))
        .collect()
}

/// RTF: `\objdata` hex payloads, unwrapped from their OLE1 header; Packager payloads too.
pub fn rtf(data: &[u8], _ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut pos = 0;
    let mut index = 0;
    while let Some(off) = memchr::memmem::find(&data[pos..], b"\\objdata") {
        let start = pos + off + 8;
        let end = data[start..]
            .iter()
            .position(|&b| b == b'}')
            .map(|p| start + p)
            .unwrap_or(data.len());
        // Control words inside the hex (obfuscation) are skipped: drop `\word` runs.
        let mut hex = Vec::with_capacity(end - start);
        let mut i = start;
        while i < end {
            if data[i] == b'\\' {
                i += 1;
                while i < end && data[i].is_ascii_alphabetic() {
                    i += 1;
                }
                while i < end && (data[i].is_ascii_digit() || data[i] == b'-') {
                    i += 1;
                }
                continue;
            }
            if data[i].is_ascii_hexdigit() {
                hex.push(data[i]);
            }
            i += 1;
        }
        let obj = hex_decode(&hex);
        index += 1;
        let name = format!("objdata{index}");
        let native = ole1_native(&obj);
        let child = match native {
            Some((class, native)) => match parse_package(native).filter(|_| class == "Package") {
                Some((file, payload)) => (format!("{name}/{file}"), payload.to_vec()),
                None => (format!("{name}/{class}"), native.to_vec()),
            },
            None => (name, obj.clone()),
        };
        if visit_bytes(child.0, child.1, visit) == Flow::Stop {
            return Ok(Flow::Stop);
        }
        pos = end;
    }
    Ok(Flow::Continue)
}

/// The OLE1 object header: version, format, class name, topic, item, then the native data.
fn ole1_native(obj: &[u8]) -> Option<(String, &[u8])> {
    let format = u32le(obj, 4)?;
    if format != 2 {
        return None;
    }
    let class_len = u32le(obj, 8)? as usize;
    let class = obj.get(12..12 + class_len)?;
    let class = String::from_utf8_lossy(class.strip_suffix(&[0]).unwrap_or(class)).into_owned();
    let mut pos = 12 + class_len;
    for _ in 0..2 {
        let l = u32le(obj, pos)? as usize;
        pos += 4 + l;
    }
    let size = u32le(obj, pos)? as usize;
    pos += 4;
    Some((class, obj.get(pos..pos.checked_add(size)?.min(obj.len()))?))
}
