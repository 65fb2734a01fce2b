//! CHM (Microsoft compiled HTML help, ITSF): a directory of PMGL chunks naming files in two
//! sections, the second LZX-compressed in 32 KiB frames listed by a reset table. LZX itself
//! is decoded by the `lzxd` crate; only the container is read here.

use super::{u32le, visit_bytes, Context, Flow, Visit};

const FRAME: usize = 0x8000;
const MAX_ENTRIES: usize = 100_000;

fn u64le(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?))
}

fn encint(d: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for _ in 0..9 {
        let b = *d.get(*pos)?;
        *pos += 1;
        v = (v << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

struct Entry {
    name: String,
    section: u64,
    offset: u64,
    length: u64,
}

pub fn open(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let dir_off = u64le(data, 0x48).ok_or("truncated header")? as usize;
    let content = match u64le(data, 0x58) {
        Some(c) if u32le(data, 4) == Some(3) => c as usize,
        _ => dir_off + u64le(data, 0x50).ok_or("truncated header")? as usize,
    };
    let itsp = data.get(dir_off..).ok_or("directory outside the file")?;
    if !itsp.starts_with(b"ITSP") {
        return Err("no ITSP directory header".into());
    }
    let header_len = u32le(itsp, 8).ok_or("truncated directory")? as usize;
    let chunk_size = u32le(itsp, 0x10).ok_or("truncated directory")? as usize;
    let nchunks = u32le(itsp, 0x2c).ok_or("truncated directory")? as usize;
    if !(0x20..=0x10_0000).contains(&chunk_size) {
        return Err(format!("implausible chunk size {chunk_size}"));
    }
    let mut entries = Vec::new();
    for c in 0..nchunks.min(65_536) {
        let start = dir_off + header_len + c * chunk_size;
        let Some(chunk) = data.get(start..start + chunk_size) else {
            break;
        };
        if !chunk.starts_with(b"PMGL") {
            continue;
        }
        let free = u32le(chunk, 4).unwrap_or(0) as usize;
        let end = chunk_size.saturating_sub(free);
        let mut pos = 0x14;
        while pos < end && entries.len() < MAX_ENTRIES {
            let Some(nlen) = encint(chunk, &mut pos) else {
                break;
            };
            let Some(name) = chunk.get(pos..pos + nlen as usize) else {
                break;
            };
            pos += nlen as usize;
            let (Some(section), Some(offset), Some(length)) = (
                encint(chunk, &mut pos),
                encint(chunk, &mut pos),
                encint(chunk, &mut pos),
            ) else {
                break;
            };
            entries.push(Entry {
                name: String::from_utf8_lossy(name).into_owned(),
                section,
                offset,
                length,
            });
        }
    }
    let section0 = |e: &Entry| -> Option<&[u8]> {
        let s = content.checked_add(e.offset as usize)?;
        data.get(s..s.checked_add(e.length as usize)?)
    };
    let find = |name: &str| entries.iter().find(|e| e.name == name);
    let mut decompressed: Option<Vec<u8>> = None;
    let mut error = None;
    if entries.iter().any(|e| e.section == 1 && e.length > 0) {
        match decompress_section1(&entries, &find, &section0, ctx.max_size) {
            Ok(d) => decompressed = Some(d),
            Err(e) => error = Some(e),
        }
    }
    for e in &entries {
        if e.length == 0 || e.name.starts_with("::") || e.name.ends_with('/') {
            continue;
        }
        let bytes = match e.section {
            0 => section0(e),
            _ => decompressed
                .as_ref()
                .and_then(|d| d.get(e.offset as usize..(e.offset + e.length) as usize)),
        };
        if let Some(b) = bytes {
            if visit_bytes(
                e.name.trim_start_matches('/').to_string(),
                b.to_vec(),
                visit,
            ) == Flow::Stop
            {
                return Ok(Flow::Stop);
            }
        }
    }
    error.map_or(Ok(Flow::Continue), Err)
}

fn decompress_section1<'a>(
    _entries: &[Entry],
    find: &dyn Fn(&str) -> Option<&'a Entry>,
    section0: &dyn Fn(&Entry) -> Option<&'a [u8]>,
    max: u64,
) -> Result<Vec<u8>, String> {
    const BASE: &str = "::DataSpace/Storage/MSCompressed/";
    let get = |suffix: &str| -> Result<&'a [u8], String> {
        let name = format!("{BASE}{suffix}");
        find(&name)
            .and_then(section0)
            .ok_or_else(|| format!("missing {name}"))
    };
    let control = get("ControlData")?;
    let reset = get("Transform/{7FC28940-9D31-11D0-9B27-00A0C91E9C7C}/InstanceData/ResetTable")?;
    let compressed = get("Content")?;
    if control.get(4..8) != Some(b"LZXC") {
        return Err("bad LZX control data".into());
    }
    let version = u32le(control, 8).unwrap_or(1);
    let (mut reset_interval, mut window) = (
        u32le(control, 12).ok_or("bad LZX control data")? as usize,
        u32le(control, 16).ok_or("bad LZX control data")? as usize,
    );
    if version == 2 {
        reset_interval *= FRAME;
        window *= FRAME;
    }
    let window_size = match window {
        0x8000 => lzxd::WindowSize::KB32,
        0x10000 => lzxd::WindowSize::KB64,
        0x20000 => lzxd::WindowSize::KB128,
        0x40000 => lzxd::WindowSize::KB256,
        0x80000 => lzxd::WindowSize::KB512,
        0x100000 => lzxd::WindowSize::MB1,
        0x200000 => lzxd::WindowSize::MB2,
        other => return Err(format!("unsupported LZX window {other:#x}")),
    };
    let frames_per_reset = (reset_interval / FRAME).max(1);
    let nblocks = u32le(reset, 4).ok_or("bad reset table")? as usize;
    let header = u32le(reset, 12).ok_or("bad reset table")? as usize;
    let total = u64le(reset, 16).ok_or("bad reset table")?;
    let mut offsets = Vec::with_capacity(nblocks.min(1 << 16));
    for i in 0..nblocks.min(1 << 20) {
        offsets.push(u64le(reset, header + i * 8).ok_or("truncated reset table")? as usize);
    }
    offsets.push(compressed.len());
    let total = total.min(max) as usize;
    let mut out = Vec::with_capacity(total.min(64 << 20));
    let mut lzx = lzxd::Lzxd::new(window_size);
    for (i, w) in offsets.windows(2).enumerate() {
        if out.len() >= total {
            break;
        }
        if i % frames_per_reset == 0 {
            lzx.reset();
        }
        let chunk = compressed
            .get(w[0]..w[1])
            .ok_or("frame outside the compressed data")?;
        let want = (total - out.len()).min(FRAME);
        let frame = lzx
            .decompress_next(chunk, want)
            .map_err(|e| format!("LZX frame {i}: {e}"))?;
        out.extend_from_slice(frame);
    }
    Ok(out)
}
