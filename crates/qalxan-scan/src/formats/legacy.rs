//! Older installer and help formats: SZDD (MS `compress.exe`), SIS (Symbian installers), CHM
//! (compiled HTML help) and ARJ archives.

use std::io::Read;

use super::{u16le, u32le, visit_bytes, Context, Flow, Visit};

/// SZDD: a 14-byte header, then LZSS with a 4 KiB window pre-filled with spaces.
pub fn szdd(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let size = u32le(data, 10).ok_or("truncated header")? as u64;
    let limit = size.min(ctx.max_size) as usize;
    let mut window = [b' '; 4096];
    let mut wpos = 4096 - 16;
    let mut out = Vec::with_capacity(limit);
    let mut i = 14;
    'outer: while i < data.len() && out.len() < limit {
        let control = data[i];
        i += 1;
        for bit in 0..8 {
            if out.len() >= limit {
                break 'outer;
            }
            if control & (1 << bit) != 0 {
                let Some(&b) = data.get(i) else { break 'outer };
                i += 1;
                out.push(b);
                window[wpos] = b;
                wpos = (wpos + 1) & 4095;
            } else {
                let (Some(&b1), Some(&b2)) = (data.get(i), data.get(i + 1)) else {
                    break 'outer;
                };
                i += 2;
                let mut src = (b1 as usize | ((b2 as usize & 0xf0) << 4)) & 4095;
                for _ in 0..(b2 as usize & 0x0f) + 3 {
                    let b = window[src];
                    out.push(b);
                    window[wpos] = b;
                    wpos = (wpos + 1) & 4095;
                    src = (src + 1) & 4095;
                }
            }
        }
    }
    let exceeded = size > ctx.max_size;
    out.truncate(limit);
    let short = (out.len() as u64) < size.min(ctx.max_size);
    let flow = visit(super::Child {
        name: "szdd-content".into(),
        data: out,
        exceeded,
    });
    if short {
        return Err("truncated: fewer bytes than the header promises".into());
    }
    Ok(flow)
}

/// SIS (Symbian OS installer, EPOC release 6): file records point at zlib-compressed files.
pub fn sis(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let nlangs = u16le(data, 0x12).ok_or("truncated header")?.max(1) as usize;
    let nfiles = u16le(data, 0x14).ok_or("truncated header")? as usize;
    let options = u16le(data, 0x24).ok_or("truncated header")?;
    let compressed = options & 0x0008 == 0;
    let mut rec = u32le(data, 0x34).ok_or("truncated header")? as usize;
    for index in 0..nfiles.min(4096) {
        let kind = u32le(data, rec).ok_or("truncated file record")?;
        let copies = match kind {
            0 => 1,
            1 => nlangs.min(64),
            // Options and conditions records: nothing to extract, and their length is not
            // stored, so the walk ends here.
            _ => return Ok(Flow::Continue),
        };
        let src_len = u32le(data, rec + 12).ok_or("truncated file record")? as usize;
        let src_ptr = u32le(data, rec + 16).ok_or("truncated file record")? as usize;
        let name_raw = data
            .get(src_ptr..src_ptr.saturating_add(src_len))
            .unwrap_or(b"");
        let name = if options & 1 != 0 {
            let units: Vec<u16> = name_raw
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            String::from_utf8_lossy(name_raw).into_owned()
        };
        let name = name
            .rsplit(['\\', '/'])
            .next()
            .unwrap_or("file")
            .to_string();
        let lens = rec + 28;
        let ptrs = lens + 4 * copies;
        for c in 0..copies {
            let len = u32le(data, lens + 4 * c).ok_or("truncated file record")? as usize;
            let ptr = u32le(data, ptrs + 4 * c).ok_or("truncated file record")? as usize;
            let Some(raw) = data.get(ptr..ptr.saturating_add(len)) else {
                return Err(format!("file {index}: data outside the installer"));
            };
            let bytes = if compressed {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(raw)
                    .take(ctx.max_size)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("{name}: {e}"))?;
                out
            } else {
                raw.to_vec()
            };
            if visit_bytes(name.clone(), bytes, visit) == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        // Lengths, pointers, original lengths (release 6), then the MIME type length and pointer.
        rec = ptrs + 4 * copies + 4 * copies + 8;
    }
    Ok(Flow::Continue)
}

pub fn chm(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    crate::formats::chm::open(data, ctx, visit)
}

pub fn arj(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    crate::formats::arj::open(data, ctx, visit)
}
