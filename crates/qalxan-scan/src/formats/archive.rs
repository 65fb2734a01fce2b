//! Archives and compressed streams: zip, gzip, bzip2, xz, tar, cpio, 7z, cab.

use std::io::{Cursor, Read, Write};

use super::{read_capped, visit_bytes, visit_decoded, Child, Context, Flow, Visit};

pub fn zip(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut archive = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(a) => a,
        // No usable central directory (truncated, or written as a stream): walk the local
        // headers instead, as far as they go.
        Err(e) => return zip_local_headers(data, ctx, visit).map_err(|le| format!("{e}; {le}")),
    };
    let mut first_error = None;
    for i in 0..archive.len() {
        // Settled before trying passwords: the plain attempt borrows the archive.
        let attempt = archive.by_index(i).map(|entry| zip_member(entry, ctx));
        let member = match attempt {
            Ok(member) => member,
            Err(zip::result::ZipError::UnsupportedArchive(m))
                if m.to_ascii_lowercase().contains("password") =>
            {
                ctx.passwords
                    .iter()
                    .find_map(|pw| {
                        archive
                            .by_index_decrypt(i, pw.as_bytes())
                            .ok()
                            .map(|entry| zip_member(entry, ctx))
                    })
                    .unwrap_or_else(|| {
                        Err(format!("member {i}: encrypted with an unknown password"))
                    })
            }
            Err(e) => Err(format!("member {i}: {e}")),
        };
        match member {
            Ok(Some(child)) => {
                if visit(child) == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(Flow::Continue),
    }
}

fn zip_member(
    entry: zip::read::ZipFile<'_, Cursor<&[u8]>>,
    ctx: &Context<'_>,
) -> Result<Option<Child>, String> {
    if entry.is_dir() {
        return Ok(None);
    }
    let name = entry.name().to_string();
    let (data, exceeded) = read_capped(entry, ctx.max_size).map_err(|e| format!("{name}: {e}"))?;
    Ok(Some(Child {
        name,
        data,
        exceeded,
    }))
}

fn zip_local_headers(
    data: &[u8],
    ctx: &Context<'_>,
    visit: &mut Visit<'_>,
) -> Result<Flow, String> {
    use super::{u16le, u32le};
    let mut pos = 0;
    let mut seen = 0;
    while let Some(off) = memchr::memmem::find(&data[pos..], b"PK\x03\x04") {
        let h = pos + off;
        let (Some(flags), Some(method), Some(csize), Some(nlen), Some(xlen)) = (
            u16le(data, h + 6),
            u16le(data, h + 8),
            u32le(data, h + 18),
            u16le(data, h + 26),
            u16le(data, h + 28),
        ) else {
            break;
        };
        let name_start = h + 30;
        let body = name_start + nlen as usize + xlen as usize;
        let name = String::from_utf8_lossy(
            data.get(name_start..name_start + nlen as usize)
                .unwrap_or(b"?"),
        )
        .into_owned();
        let avail = data.get(body..).unwrap_or(&[]);
        // Sizes live in a data descriptor after the body when bit 3 is set; decode to the end.
        let compressed = if flags & 8 != 0 || csize as usize > avail.len() {
            avail
        } else {
            &avail[..csize as usize]
        };
        seen += 1;
        let flow = match method {
            0 => visit_bytes(
                name,
                compressed[..compressed.len().min(ctx.max_size as usize)].to_vec(),
                visit,
            ),
            8 => {
                // A truncated stream still yields what was decoded before the cut.
                let mut out = Vec::new();
                let _ = flate2::read::DeflateDecoder::new(compressed)
                    .take(ctx.max_size)
                    .read_to_end(&mut out);
                visit_bytes(name, out, visit)
            }
            _ => Flow::Continue,
        };
        if flow == Flow::Stop {
            break;
        }
        pos = body.max(h + 4);
        if pos >= data.len() {
            break;
        }
    }
    if seen == 0 {
        Err("no zip members found".into())
    } else {
        Err(format!("damaged: read {seen} member(s) from local headers"))
    }
}

pub fn gzip(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut decoder = flate2::read::MultiGzDecoder::new(data);
    let name = decoder
        .header()
        .and_then(|h| h.filename())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_else(|| "gzip-content".into());
    let mut out = Vec::new();
    let result = (&mut decoder).take(ctx.max_size + 1).read_to_end(&mut out);
    let exceeded = out.len() as u64 > ctx.max_size;
    out.truncate(ctx.max_size as usize);
    let flow = visit(Child {
        name,
        data: out,
        exceeded,
    });
    result.map_err(|e| format!("truncated or damaged: {e}"))?;
    Ok(flow)
}

pub fn bzip2(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut out = Vec::new();
    let result = bzip2::read::MultiBzDecoder::new(data)
        .take(ctx.max_size + 1)
        .read_to_end(&mut out);
    let exceeded = out.len() as u64 > ctx.max_size;
    out.truncate(ctx.max_size as usize);
    let flow = visit(Child {
        name: "bzip2-content".into(),
        data: out,
        exceeded,
    });
    result.map_err(|e| format!("truncated or damaged: {e}"))?;
    Ok(flow)
}

/// A writer that refuses to grow past a cap, so a decompression bomb stops early.
struct CappedWriter {
    out: Vec<u8>,
    cap: u64,
    exceeded: bool,
}

impl Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = (self.cap as usize).saturating_sub(self.out.len());
        if buf.len() > room {
            self.out.extend_from_slice(&buf[..room]);
            self.exceeded = true;
            return Err(std::io::Error::other("size limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn xz(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut w = CappedWriter {
        out: Vec::new(),
        cap: ctx.max_size,
        exceeded: false,
    };
    let result = lzma_rs::xz_decompress(&mut std::io::BufReader::new(data), &mut w);
    let flow = visit(Child {
        name: "xz-content".into(),
        data: w.out,
        exceeded: w.exceeded,
    });
    if !w.exceeded {
        result.map_err(|e| format!("truncated or damaged: {e}"))?;
    }
    Ok(flow)
}

pub fn tar(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut archive = tar::Archive::new(data);
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("damaged: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "?".into());
        if visit_decoded(&name, entry, ctx, visit)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Continue)
}

/// cpio in its four encodings: old binary (either byte order), odc (octal), newc/crc (hex).
pub fn cpio(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut pos = 0usize;
    let field = |s: &[u8], radix: u32| -> Option<u64> {
        u64::from_str_radix(std::str::from_utf8(s).ok()?, radix).ok()
    };
    loop {
        let d = data.get(pos..).unwrap_or(&[]);
        if d.len() < 6 {
            return Err("truncated header".into());
        }
        let (name_len, file_size, header_len, align) = if d.starts_with(b"070707") {
            let h = d.get(..76).ok_or("truncated odc header")?;
            (field(&h[59..65], 8), field(&h[65..76], 8), 76, 1)
        } else if d.starts_with(b"070701") || d.starts_with(b"070702") {
            let h = d.get(..110).ok_or("truncated newc header")?;
            (field(&h[94..102], 16), field(&h[54..62], 16), 110, 4)
        } else if d.starts_with(&[0xc7, 0x71]) || d.starts_with(&[0x71, 0xc7]) {
            let h = d.get(..26).ok_or("truncated binary header")?;
            let le = d[0] == 0xc7;
            let w = |o: usize| -> u64 {
                let b = [h[o], h[o + 1]];
                (if le {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                }) as u64
            };
            (Some(w(20)), Some(w(22) << 16 | w(24)), 26, 2)
        } else {
            return Err(format!("bad header magic at offset {pos}"));
        };
        let (Some(name_len), Some(file_size)) = (name_len, file_size) else {
            return Err(format!("bad header fields at offset {pos}"));
        };
        let pad = |n: usize| n.div_ceil(align) * align;
        let name_end = header_len + name_len as usize;
        let name_bytes = d.get(header_len..name_end).ok_or("truncated name")?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .into_owned();
        if name == "TRAILER!!!" {
            return Ok(Flow::Continue);
        }
        let body_start = pad(name_end);
        let body_end = body_start
            .checked_add(file_size as usize)
            .ok_or("bad size")?;
        let Some(body) = d.get(body_start..body_end) else {
            return Err(format!("{name}: truncated"));
        };
        if file_size > 0 {
            let exceeded = file_size > ctx.max_size;
            let keep = body[..body.len().min(ctx.max_size as usize)].to_vec();
            if visit(Child {
                name,
                data: keep,
                exceeded,
            }) == Flow::Stop
            {
                return Ok(Flow::Stop);
            }
        }
        pos += pad(body_end);
    }
}

pub fn seven_zip(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut passwords: Vec<sevenz_rust2::Password> = vec![sevenz_rust2::Password::empty()];
    passwords.extend(ctx.passwords.iter().map(|p| sevenz_rust2::Password::new(p)));
    let mut last_error = String::new();
    for password in passwords {
        let mut reader = match sevenz_rust2::ArchiveReader::new(Cursor::new(data), password) {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        let mut flow = Flow::Continue;
        let result = reader.for_each_entries(|entry, r| {
            if entry.is_directory() {
                return Ok(true);
            }
            let (data, exceeded) = read_capped(r, ctx.max_size)?;
            flow = visit(Child {
                name: entry.name().to_string(),
                data,
                exceeded,
            });
            Ok(flow == Flow::Continue)
        });
        return match result {
            Ok(()) => Ok(flow),
            Err(e) if flow == Flow::Stop => {
                let _ = e;
                Ok(Flow::Stop)
            }
            Err(e) => Err(e.to_string()),
        };
    }
    Err(last_error)
}

pub fn cab(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut cabinet = cab::Cabinet::new(Cursor::new(data)).map_err(|e| e.to_string())?;
    let names: Vec<String> = cabinet
        .folder_entries()
        .flat_map(|f| f.file_entries().map(|e| e.name().to_string()))
        .collect();
    let mut first_error = None;
    for name in names {
        match cabinet.read_file(&name) {
            Ok(r) => match read_capped(r, ctx.max_size) {
                Ok((data, exceeded)) => {
                    if visit(Child {
                        name,
                        data,
                        exceeded,
                    }) == Flow::Stop
                    {
                        return Ok(Flow::Stop);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(format!("{name}: {e}"));
                }
            },
            Err(e) => {
                first_error.get_or_insert(format!("{name}: {e}"));
            }
        }
    }
    first_error.map_or(Ok(Flow::Continue), Err)
}
