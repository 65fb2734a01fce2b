//! ARJ archives: stored members and methods 1-3 (LZ77 with static Huffman blocks, the LHA
//! family). Ported from the public-domain UNARJ decoder's algorithm: no maintained crate reads
//! ARJ. Method 4 and garbled (encrypted) members are reported, not read.

use super::{u16le, u32le, Context, Flow, Visit};

const DICSIZ: usize = 26624;
const THRESHOLD: usize = 3;
const MAXMATCH: usize = 256;
const NC: usize = 255 + MAXMATCH + 2 - THRESHOLD;
const NP: usize = 17;
const NT: usize = 19;
const CBIT: u32 = 9;
const PBIT: u32 = 5;
const TBIT: u32 = 5;
const CTABLESIZE: usize = 4096;
const PTABLESIZE: usize = 256;

pub fn open(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    // The main header, then one header per member; a zero-size header ends the archive.
    let mut pos = skip_header(data, 0).ok_or("truncated main header")?;
    loop {
        if data.get(pos..pos + 2) != Some(&[0x60, 0xea]) {
            return Err(format!("no member header at offset {pos}"));
        }
        let size = u16le(data, pos + 2).ok_or("truncated member header")? as usize;
        if size == 0 {
            return Ok(Flow::Continue);
        }
        let h = data
            .get(pos + 4..pos + 4 + size)
            .ok_or("truncated member header")?;
        let first = *h.first().ok_or("empty header")? as usize;
        let flags = h.get(4).copied().unwrap_or(0);
        let method = h.get(5).copied().unwrap_or(0);
        let kind = h.get(6).copied().unwrap_or(0);
        let csize = u32le(h, 12).ok_or("truncated member header")? as usize;
        let osize = u32le(h, 16).ok_or("truncated member header")? as u64;
        let name_bytes = h.get(first..).unwrap_or(&[]);
        let name_end = memchr::memchr(0, name_bytes).unwrap_or(name_bytes.len());
        let name = String::from_utf8_lossy(&name_bytes[..name_end]).into_owned();
        let body = skip_header(data, pos).ok_or("truncated member header")?;
        let comp = data
            .get(body..body + csize)
            .ok_or_else(|| format!("{name}: truncated"))?;
        pos = body + csize;
        if kind == 3 {
            continue; // a directory
        }
        if flags & 1 != 0 {
            return Err(format!(
                "{name}: garbled (password-protected) members are not supported"
            ));
        }
        let limit = osize.min(ctx.max_size) as usize;
        let bytes = match method {
            0 => comp[..comp.len().min(limit)].to_vec(),
            1..=3 => decode(comp, limit).map_err(|e| format!("{name}: {e}"))?,
            m => return Err(format!("{name}: compression method {m} is not supported")),
        };
        if visit(super::Child {
            name,
            data: bytes,
            exceeded: osize > ctx.max_size,
        }) == Flow::Stop
        {
            return Ok(Flow::Stop);
        }
    }
}

/// Skips a header at `pos` (id, size, basic header, CRC, extended headers); returns what follows.
fn skip_header(data: &[u8], pos: usize) -> Option<usize> {
    if data.get(pos..pos + 2)? != [0x60, 0xea] {
        return None;
    }
    let size = u16le(data, pos + 2)? as usize;
    let mut p = pos + 4 + size + 4;
    loop {
        let ext = u16le(data, p)? as usize;
        p += 2;
        if ext == 0 {
            return Some(p);
        }
        p += ext + 4;
    }
}

struct Bits<'a> {
    src: &'a [u8],
    pos: usize,
    bitbuf: u32,
    subbitbuf: u32,
    bitcount: u32,
}

impl<'a> Bits<'a> {
    fn new(src: &'a [u8]) -> Self {
        let mut b = Bits {
            src,
            pos: 0,
            bitbuf: 0,
            subbitbuf: 0,
            bitcount: 0,
        };
        b.fill(16);
        b
    }

    fn fill(&mut self, mut n: u32) {
        self.bitbuf = (self.bitbuf << n) & 0xffff;
        while n > self.bitcount {
            n -= self.bitcount;
            self.bitbuf |= (self.subbitbuf << n) & 0xffff;
            self.subbitbuf = self.src.get(self.pos).copied().unwrap_or(0) as u32;
            self.pos += 1;
            self.bitcount = 8;
        }
        self.bitcount -= n;
        self.bitbuf |= self.subbitbuf >> self.bitcount;
    }

    fn get(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let x = self.bitbuf >> (16 - n);
        self.fill(n);
        x
    }

    /// Past the end by more than the 2 bytes of look-ahead: the stream is truncated.
    fn exhausted(&self) -> bool {
        self.pos > self.src.len() + 2
    }
}

struct Tables {
    left: Vec<u16>,
    right: Vec<u16>,
    c_len: Vec<u8>,
    c_table: Vec<u16>,
    pt_len: Vec<u8>,
    pt_table: Vec<u16>,
}

#[derive(Clone, Copy)]
enum Slot {
    Table(usize),
    Left(usize),
    Right(usize),
}

fn make_table(
    nchar: usize,
    bitlen: &[u8],
    tablebits: u32,
    table: &mut [u16],
    left: &mut [u16],
    right: &mut [u16],
) -> Result<(), String> {
    let mut count = [0u32; 17];
    for &l in &bitlen[..nchar] {
        if l > 16 {
            return Err("bad code length".into());
        }
        count[l as usize] += 1;
    }
    let mut start = [0u32; 18];
    for i in 1..=16 {
        start[i + 1] = start[i] + (count[i] << (16 - i));
    }
    if start[17] != 1 << 16 {
        return Err("bad Huffman table".into());
    }
    let jutbits = 16 - tablebits;
    let mut weight = [0u32; 17];
    for i in 1..=16usize {
        if i as u32 <= tablebits {
            start[i] >>= jutbits;
            weight[i] = 1 << (tablebits - i as u32);
        } else {
            weight[i] = 1 << (16 - i);
        }
    }
    let mut i = (start[tablebits as usize + 1] >> jutbits) as usize;
    if i != 1 << 16 {
        let k = 1usize << tablebits;
        while i < k {
            table[i] = 0;
            i += 1;
        }
    }
    let mut avail = nchar;
    let mask = 1u32 << (15 - tablebits);
    for (ch, &bits) in bitlen.iter().enumerate().take(nchar) {
        let len = bits as usize;
        if len == 0 {
            continue;
        }
        let mut k = start[len];
        let next = k + weight[len];
        if len as u32 <= tablebits {
            for slot in table.iter_mut().take(next as usize).skip(k as usize) {
                *slot = ch as u16;
            }
        } else {
            let mut p = Slot::Table((k >> jutbits) as usize);
            let mut n = len as u32 - tablebits;
            while n != 0 {
                let cur = match p {
                    Slot::Table(x) => table.get_mut(x),
                    Slot::Left(x) => left.get_mut(x),
                    Slot::Right(x) => right.get_mut(x),
                }
                .ok_or("bad Huffman table")?;
                if *cur == 0 {
                    if avail >= left.len() {
                        return Err("bad Huffman table".into());
                    }
                    left[avail] = 0;
                    right[avail] = 0;
                    *match p {
                        Slot::Table(x) => &mut table[x],
                        Slot::Left(x) => &mut left[x],
                        Slot::Right(x) => &mut right[x],
                    } = avail as u16;
                    avail += 1;
                }
                let node = match p {
                    Slot::Table(x) => table[x],
                    Slot::Left(x) => left[x],
                    Slot::Right(x) => right[x],
                } as usize;
                p = if k & mask != 0 {
                    Slot::Right(node)
                } else {
                    Slot::Left(node)
                };
                k <<= 1;
                n -= 1;
            }
            match p {
                Slot::Table(x) => table[x] = ch as u16,
                Slot::Left(x) => left[x] = ch as u16,
                Slot::Right(x) => right[x] = ch as u16,
            }
        }
        start[len] = next;
    }
    Ok(())
}

impl Tables {
    fn new() -> Self {
        Tables {
            left: vec![0; 2 * NC - 1],
            right: vec![0; 2 * NC - 1],
            c_len: vec![0; NC],
            c_table: vec![0; CTABLESIZE],
            pt_len: vec![0; NT.max(NP)],
            pt_table: vec![0; PTABLESIZE],
        }
    }

    fn walk(
        &self,
        mut j: usize,
        limit: usize,
        mut mask: u32,
        bitbuf: u32,
    ) -> Result<usize, String> {
        let mut steps = 0;
        while j >= limit {
            j = if bitbuf & mask != 0 {
                *self.right.get(j).ok_or("bad code")?
            } else {
                *self.left.get(j).ok_or("bad code")?
            } as usize;
            mask >>= 1;
            steps += 1;
            if steps > 32 {
                return Err("bad code".into());
            }
        }
        Ok(j)
    }

    fn read_pt_len(
        &mut self,
        b: &mut Bits<'_>,
        nn: usize,
        nbit: u32,
        special: Option<usize>,
    ) -> Result<(), String> {
        let n = b.get(nbit) as usize;
        if n == 0 {
            let c = b.get(nbit) as u16;
            self.pt_len[..nn].fill(0);
            self.pt_table.fill(c);
            return Ok(());
        }
        if n > nn {
            return Err("bad table size".into());
        }
        let mut i = 0;
        while i < n {
            let mut c = b.bitbuf >> 13;
            if c == 7 {
                let mut mask = 1u32 << 12;
                while mask & b.bitbuf != 0 {
                    mask >>= 1;
                    c += 1;
                    if c > 16 {
                        return Err("bad code length".into());
                    }
                }
            }
            b.fill(if c < 7 { 3 } else { c - 3 });
            self.pt_len[i] = c as u8;
            i += 1;
            if Some(i) == special {
                let zeros = b.get(2) as usize;
                for _ in 0..zeros {
                    if i >= nn {
                        return Err("bad table".into());
                    }
                    self.pt_len[i] = 0;
                    i += 1;
                }
            }
        }
        self.pt_len[i..nn].fill(0);
        make_table(
            nn,
            &self.pt_len,
            8,
            &mut self.pt_table,
            &mut self.left,
            &mut self.right,
        )
    }

    fn read_c_len(&mut self, b: &mut Bits<'_>) -> Result<(), String> {
        let n = b.get(CBIT) as usize;
        if n == 0 {
            let c = b.get(CBIT) as u16;
            self.c_len.fill(0);
            self.c_table.fill(c);
            return Ok(());
        }
        if n > NC {
            return Err("bad table size".into());
        }
        let mut i = 0;
        while i < n {
            let c = self.pt_table[(b.bitbuf >> 8) as usize] as usize;
            let c = self.walk(c, NT, 1 << 7, b.bitbuf)?;
            b.fill(self.pt_len[c] as u32);
            if c <= 2 {
                let run = match c {
                    0 => 1,
                    1 => b.get(4) as usize + 3,
                    _ => b.get(CBIT) as usize + 20,
                };
                if i + run > NC {
                    return Err("bad table".into());
                }
                self.c_len[i..i + run].fill(0);
                i += run;
            } else {
                self.c_len[i] = (c - 2) as u8;
                i += 1;
            }
        }
        self.c_len[i..].fill(0);
        make_table(
            NC,
            &self.c_len,
            12,
            &mut self.c_table,
            &mut self.left,
            &mut self.right,
        )
    }
}

fn decode(src: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let mut b = Bits::new(src);
    let mut t = Tables::new();
    let mut out: Vec<u8> = Vec::with_capacity(size.min(64 << 20));
    let mut blocksize = 0u32;
    while out.len() < size {
        if b.exhausted() {
            return Err("truncated".into());
        }
        if blocksize == 0 {
            blocksize = b.get(16);
            t.read_pt_len(&mut b, NT, TBIT, Some(3))?;
            t.read_c_len(&mut b)?;
            t.read_pt_len(&mut b, NP, PBIT, None)?;
        }
        blocksize = blocksize.saturating_sub(1);
        let j = t.c_table[(b.bitbuf >> 4) as usize] as usize;
        let c = t.walk(j, NC, 1 << 3, b.bitbuf)?;
        b.fill(t.c_len[c] as u32);
        if c <= 255 {
            out.push(c as u8);
            continue;
        }
        let len = c - (256 - THRESHOLD);
        let j = t.pt_table[(b.bitbuf >> 8) as usize] as usize;
        let p = t.walk(j, NP, 1 << 7, b.bitbuf)?;
        b.fill(t.pt_len[p] as u32);
        let dist = if p != 0 {
            (1usize << (p - 1)) + b.get(p as u32 - 1) as usize
        } else {
            0
        };
        if dist >= DICSIZ || dist + 1 > out.len() {
            return Err("match before the start of the data".into());
        }
        let from = out.len() - dist - 1;
        for k in 0..len {
            if out.len() >= size {
                break;
            }
            out.push(out[from + k]);
        }
    }
    Ok(out)
}
