//! The few facts of a PE (Windows executable) header that signatures refer to: the section
//! table, the entry point as a file offset, and the file's extent.
//!
//! Written by hand because only these fields are needed and they must be read defensively
//! from hostile files (any bound may lie); a full PE crate would parse far more than we use.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub virtual_address: u32,
    pub virtual_size: u32,
    pub raw_offset: u64,
    pub raw_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeInfo {
    pub sections: Vec<Section>,
    /// The entry point translated to a file offset, when it lies in the file.
    pub entry_offset: Option<u64>,
    /// Where the image ends in the file: the furthest end of the headers and the sections.
    pub image_end: u64,
}

fn u16_at(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
}

/// Parses `data` as a PE file; `None` when it is not one.
pub fn parse(data: &[u8]) -> Option<PeInfo> {
    if !data.starts_with(b"MZ") {
        return None;
    }
    let pe = u32_at(data, 0x3c)? as usize;
    if data.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let coff = pe + 4;
    let nsections = u16_at(data, coff + 2)? as usize;
    let opt_size = u16_at(data, coff + 16)? as usize;
    let opt = coff + 20;
    let entry_rva = u32_at(data, opt + 16)?;
    let headers_size = u32_at(data, opt + 60).unwrap_or(0) as u64;
    let table = opt + opt_size;
    let mut sections = Vec::with_capacity(nsections.min(96));
    // Windows loads at most 96 sections; more is a malformed or hostile file.
    for i in 0..nsections.min(96) {
        let s = table + i * 40;
        let Some(raw) = data.get(s..s + 40) else {
            break;
        };
        sections.push(Section {
            virtual_size: u32_at(raw, 8)?,
            virtual_address: u32_at(raw, 12)?,
            raw_size: u32_at(raw, 16)? as u64,
            raw_offset: u32_at(raw, 20)? as u64,
        });
    }
    let entry_offset = sections
        .iter()
        .find(|s| {
            entry_rva >= s.virtual_address
                && entry_rva
                    < s.virtual_address
                        .saturating_add(s.virtual_size.max(s.raw_size as u32))
        })
        .map(|s| s.raw_offset + (entry_rva - s.virtual_address) as u64)
        .or_else(|| (u64::from(entry_rva) < headers_size).then_some(entry_rva as u64))
        .filter(|&o| o < data.len() as u64);
    let image_end = sections
        .iter()
        .filter(|s| s.raw_size > 0)
        .map(|s| s.raw_offset + s.raw_size)
        .chain([headers_size, (table + nsections * 40) as u64])
        .max()
        .unwrap_or(0);
    Some(PeInfo {
        sections,
        entry_offset,
        image_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_pe_and_truncated_headers() {
        assert!(parse(b"hello").is_none());
        assert!(parse(b"MZ").is_none());
        let mut d = vec![0u8; 0x40];
        d[0] = b'M';
        d[1] = b'Z';
        d[0x3c] = 0xff;
        assert!(parse(&d).is_none());
    }
}
