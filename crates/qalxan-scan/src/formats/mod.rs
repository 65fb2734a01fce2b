//! Containers and encodings opened to scan what is inside: each format hands its members to
//! the scanner one at a time, so a container never has to be unpacked whole.
//!
//! Well-kept crates do the decompression where they exist (zip, flate2, bzip2, lzma-rs, tar,
//! sevenz-rust2, cab, cfb, mail-parser, lzxd); the formats no crate reads (cpio, BinHex,
//! uuencode, TNEF, SIS, SZDD, RTF objects, PDF streams, CHM directories, ARJ) are small and
//! written here, each reading defensively: every length is checked against the data.

mod archive;
mod arj;
mod chm;
mod encoded;
mod legacy;
mod office;

use std::io::{self, Read};

use crate::filetype::FileType;

/// One member of a container, decoded.
#[derive(Debug)]
pub struct Child {
    pub name: String,
    pub data: Vec<u8>,
    /// The member was larger than the per-file limit; `data` holds only its start.
    pub exceeded: bool,
}

/// Whether to go on after a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

pub struct Context<'a> {
    /// Most bytes to decode from one member.
    pub max_size: u64,
    pub passwords: &'a [String],
}

pub type Visit<'v> = dyn FnMut(Child) -> Flow + 'v;

/// Whether files of this type have members.
pub fn is_container(t: FileType) -> bool {
    !matches!(
        t,
        FileType::Elf
            | FileType::MachO
            | FileType::Graphics
            | FileType::Flash
            | FileType::Java
            | FileType::Text
    )
}

/// Hands each member of `data` (of type `t`) to `visit`. An error means the container is
/// damaged; members before the damage have been visited.
pub fn children(
    t: FileType,
    data: &[u8],
    ctx: &Context<'_>,
    visit: &mut Visit<'_>,
) -> Result<(), String> {
    let result = match t {
        FileType::Zip => archive::zip(data, ctx, visit),
        FileType::Gzip => archive::gzip(data, ctx, visit),
        FileType::Bzip2 => archive::bzip2(data, ctx, visit),
        FileType::Xz => archive::xz(data, ctx, visit),
        FileType::Tar => archive::tar(data, ctx, visit),
        FileType::Cpio => archive::cpio(data, ctx, visit),
        FileType::SevenZip => archive::seven_zip(data, ctx, visit),
        FileType::Cab => archive::cab(data, ctx, visit),
        FileType::Ole2 => office::ole2(data, ctx, visit),
        FileType::Mail => encoded::mail(data, ctx, visit),
        FileType::Uuencoded => encoded::uuencoded(data, ctx, visit),
        FileType::BinHex => encoded::binhex(data, ctx, visit),
        FileType::Html => encoded::html(data, ctx, visit),
        FileType::Pdf => office::pdf(data, ctx, visit),
        FileType::Rtf => office::rtf(data, ctx, visit),
        FileType::Tnef => encoded::tnef(data, ctx, visit),
        FileType::Szdd => legacy::szdd(data, ctx, visit),
        FileType::Sis => legacy::sis(data, ctx, visit),
        FileType::Chm => legacy::chm(data, ctx, visit),
        FileType::Arj => legacy::arj(data, ctx, visit),
        // Executables, media and text hold no members (embedded PEs are looked for below).
        FileType::Pe
        | FileType::Binary
        | FileType::Elf
        | FileType::MachO
        | FileType::Graphics
        | FileType::Flash
        | FileType::Java
        | FileType::Text => Ok(Flow::Continue),
    };
    match result {
        Ok(Flow::Stop) => Ok(()),
        Ok(Flow::Continue) => {
            if matches!(t, FileType::Binary | FileType::Ole2 | FileType::Pe) {
                embedded_pe(data, visit);
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Windows executables hidden inside other data (OLE streams, droppers, self-extractors): each
/// `MZ` that starts a valid PE header is carved out to the end of its last section.
fn embedded_pe(data: &[u8], visit: &mut Visit<'_>) {
    let mut found = 0;
    for pos in memchr::memmem::find_iter(data, b"MZ") {
        if pos == 0 {
            continue;
        }
        let rest = &data[pos..];
        let Some(pe) = crate::pe::parse(rest) else {
            continue;
        };
        let end = (pe.image_end as usize).min(rest.len());
        found += 1;
        let child = Child {
            name: format!("embedded-pe@{pos}"),
            data: rest[..end].to_vec(),
            exceeded: false,
        };
        if visit(child) == Flow::Stop || found >= 16 {
            return;
        }
    }
}

/// Reads at most `max` bytes; `exceeded` tells whether there was more.
pub(crate) fn read_capped(mut r: impl Read, max: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    (&mut r).take(max + 1).read_to_end(&mut out)?;
    let exceeded = out.len() as u64 > max;
    if exceeded {
        out.truncate(max as usize);
    }
    Ok((out, exceeded))
}

/// Decodes with `r` and visits the result as one member named `name`.
pub(crate) fn visit_decoded(
    name: &str,
    r: impl Read,
    ctx: &Context<'_>,
    visit: &mut Visit<'_>,
) -> Result<Flow, String> {
    let (data, exceeded) = read_capped(r, ctx.max_size).map_err(|e| e.to_string())?;
    Ok(visit(Child {
        name: name.to_string(),
        data,
        exceeded,
    }))
}

pub(crate) fn visit_bytes(name: impl Into<String>, data: Vec<u8>, visit: &mut Visit<'_>) -> Flow {
    visit(Child {
        name: name.into(),
        data,
        exceeded: false,
    })
}

pub(crate) fn u16le(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?))
}

pub(crate) fn u32le(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
}

pub(crate) fn u32be(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(o..o + 4)?.try_into().ok()?))
}
