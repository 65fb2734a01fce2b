//! The PDF standard security handler (ISO 32000-2 7.6.4): RC4 and AES-128 (revisions 2-4)
//! and AES-256 (revisions 5 and 6). Most encrypted attachments open without a password
//! (only permissions are restricted), so the empty user password is tried first.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use md5::{Digest as _, Md5};
use rc4::{KeyInit, StreamCipher};
use sha2::{Sha256, Sha384, Sha512};

use crate::pdf::{Dict, Document, Obj};

const PAD: [u8; 32] = [
    0x28, 0xBF, 0x4E, 0x5E, 0x4E, 0x75, 0x8A, 0x41, 0x64, 0x00, 0x4E, 0x56, 0xFF, 0xFA, 0x01, 0x08,
    0x2E, 0x2E, 0x00, 0xB6, 0xD0, 0x68, 0x3E, 0x80, 0x2F, 0x0C, 0xA9, 0xFE, 0x64, 0x53, 0x69, 0x7A,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cipher {
    Rc4,
    Aes128,
    Aes256,
}

/// A file key that opened the document.
pub(crate) struct Key {
    key: Vec<u8>,
    strings: Cipher,
    streams: Cipher,
}

fn bytes(o: Option<&Obj>) -> Vec<u8> {
    match o {
        Some(Obj::Str(s)) => s.clone(),
        _ => Vec::new(),
    }
}

/// RC4 with 5 to 16-byte keys (PDF's 40 to 128-bit keys, Office's CryptoAPI keys); other
/// lengths leave the data as it is.
pub(crate) fn rc4(key: &[u8], data: &mut [u8]) {
    macro_rules! run {
        ($n:ty) => {{
            let mut c = rc4::Rc4::<$n>::new_from_slice(key).expect("key length checked");
            c.apply_keystream(data);
        }};
    }
    use rc4::consts::*;
    match key.len() {
        5 => run!(U5),
        6 => run!(U6),
        7 => run!(U7),
        8 => run!(U8),
        9 => run!(U9),
        10 => run!(U10),
        11 => run!(U11),
        12 => run!(U12),
        13 => run!(U13),
        14 => run!(U14),
        15 => run!(U15),
        16 => run!(U16),
        _ => {}
    }
}

fn cipher_of(encrypt: &Dict, filter_key: &[u8], doc: &Document) -> Cipher {
    let name = encrypt.name(filter_key).unwrap_or(b"Identity").to_vec();
    let cf = encrypt
        .get(b"CF")
        .map(|c| doc.resolve(c))
        .and_then(Obj::as_dict);
    let cfm = cf
        .and_then(|cf| cf.get(&name))
        .map(|c| doc.resolve(c))
        .and_then(Obj::as_dict)
        .and_then(|d| d.name(b"CFM"))
        .map(<[u8]>::to_vec);
    match cfm.as_deref() {
        Some(b"AESV2") => Cipher::Aes128,
        Some(b"AESV3") => Cipher::Aes256,
        _ => Cipher::Rc4,
    }
}

/// Finds the file key for one of `passwords` (tried as user passwords).
pub(crate) fn open(doc: &Document, passwords: &[&str]) -> Option<Key> {
    let encrypt = doc
        .trailer(b"Encrypt")
        .map(|e| doc.resolve(e))
        .and_then(Obj::as_dict)?
        .clone();
    if encrypt.name(b"Filter") != Some(b"Standard") {
        return None;
    }
    let v = encrypt.get(b"V").and_then(Obj::as_int).unwrap_or(0);
    let r = encrypt.get(b"R").and_then(Obj::as_int).unwrap_or(2);
    let o = bytes(encrypt.get(b"O"));
    let u = bytes(encrypt.get(b"U"));
    let (strings, streams) = if v >= 4 {
        (
            cipher_of(&encrypt, b"StrF", doc),
            cipher_of(&encrypt, b"StmF", doc),
        )
    } else {
        (Cipher::Rc4, Cipher::Rc4)
    };
    for pw in passwords {
        let key = if r >= 5 {
            open_aes256(&encrypt, r, &u, pw.as_bytes())
        } else {
            open_rc4(&encrypt, doc, r, &o, &u, pw.as_bytes())
        };
        if let Some(key) = key {
            return Some(Key {
                key,
                strings,
                streams,
            });
        }
    }
    None
}

fn open_rc4(
    encrypt: &Dict,
    doc: &Document,
    r: i64,
    o: &[u8],
    u: &[u8],
    pw: &[u8],
) -> Option<Vec<u8>> {
    let p = encrypt.get(b"P").and_then(Obj::as_int).unwrap_or(0) as i32;
    let n = if r == 2 {
        5
    } else {
        (encrypt.get(b"Length").and_then(Obj::as_int).unwrap_or(40) / 8).clamp(5, 16) as usize
    };
    let id0 = match doc.trailer(b"ID") {
        Some(Obj::Array(a)) => bytes(a.first()),
        _ => Vec::new(),
    };
    let mut padded = pw[..pw.len().min(32)].to_vec();
    padded.extend_from_slice(&PAD[..32 - padded.len()]);
    let mut h = Md5::new();
    h.update(&padded);
    h.update(o.get(..32)?);
    h.update(p.to_le_bytes());
    h.update(&id0);
    if r >= 4 && encrypt.get(b"EncryptMetadata") == Some(&Obj::Bool(false)) {
        h.update([0xff; 4]);
    }
    let mut key = h.finalize().to_vec();
    if r >= 3 {
        for _ in 0..50 {
            key = Md5::digest(&key[..n]).to_vec();
        }
    }
    key.truncate(n);
    let ok = if r == 2 {
        let mut t = PAD;
        rc4(&key, &mut t);
        u.get(..32) == Some(&t[..])
    } else {
        let mut h = Md5::new();
        h.update(PAD);
        h.update(&id0);
        let mut t = h.finalize().to_vec();
        rc4(&key, &mut t);
        for i in 1..=19u8 {
            let k: Vec<u8> = key.iter().map(|b| b ^ i).collect();
            rc4(&k, &mut t);
        }
        u.get(..16) == Some(&t[..16])
    };
    ok.then_some(key)
}

/// ISO 32000-2 Algorithm 2.B (revision 6) or plain SHA-256 (revision 5).
fn hash_r6(pw: &[u8], salt: &[u8], udata: &[u8], r: i64) -> Vec<u8> {
    let mut k = Sha256::new()
        .chain_update(pw)
        .chain_update(salt)
        .chain_update(udata)
        .finalize()
        .to_vec();
    if r == 5 {
        return k;
    }
    let mut round = 0u32;
    loop {
        let mut k1 = Vec::with_capacity(64 * (pw.len() + k.len() + udata.len()));
        for _ in 0..64 {
            k1.extend_from_slice(pw);
            k1.extend_from_slice(&k);
            k1.extend_from_slice(udata);
        }
        let Ok(enc) = cbc::Encryptor::<aes::Aes128>::new_from_slices(&k[..16], &k[16..32]) else {
            return k;
        };
        let len = k1.len();
        let e = match enc.encrypt_padded_mut::<NoPadding>(&mut k1, len) {
            Ok(e) => e.to_vec(),
            Err(_) => return k,
        };
        let sum: u32 = e[..16].iter().map(|&b| b as u32).sum();
        k = match sum % 3 {
            0 => Sha256::digest(&e).to_vec(),
            1 => Sha384::digest(&e).to_vec(),
            _ => Sha512::digest(&e).to_vec(),
        };
        round += 1;
        let last = *e.last().unwrap_or(&0) as u32;
        if round >= 64 && last <= round - 32 {
            break;
        }
        if round > 1000 {
            break;
        }
    }
    k.truncate(32);
    k
}

fn open_aes256(encrypt: &Dict, r: i64, u: &[u8], pw: &[u8]) -> Option<Vec<u8>> {
    let pw = &pw[..pw.len().min(127)];
    let ue = bytes(encrypt.get(b"UE"));
    if u.len() < 48 || ue.len() < 32 {
        return None;
    }
    if hash_r6(pw, &u[32..40], &[], r) != u[..32] {
        return None;
    }
    let k = hash_r6(pw, &u[40..48], &[], r);
    let mut key = ue[..32].to_vec();
    cbc::Decryptor::<aes::Aes256>::new_from_slices(&k, &[0u8; 16])
        .ok()?
        .decrypt_padded_mut::<NoPadding>(&mut key)
        .ok()?;
    Some(key)
}

impl Key {
    fn object_key(&self, num: u32, gen: u16, cipher: Cipher) -> Vec<u8> {
        if cipher == Cipher::Aes256 {
            return self.key.clone();
        }
        let mut h = Md5::new();
        h.update(&self.key);
        h.update(&num.to_le_bytes()[..3]);
        h.update(gen.to_le_bytes());
        if cipher == Cipher::Aes128 {
            h.update(b"sAlT");
        }
        let k = h.finalize();
        k[..(self.key.len() + 5).min(16)].to_vec()
    }

    fn decrypt(&self, num: u32, gen: u16, cipher: Cipher, data: &[u8]) -> Vec<u8> {
        let key = self.object_key(num, gen, cipher);
        match cipher {
            Cipher::Rc4 => {
                let mut d = data.to_vec();
                rc4(&key, &mut d);
                d
            }
            Cipher::Aes128 | Cipher::Aes256 => {
                if data.len() < 32 || data.len() % 16 != 0 {
                    return data.to_vec();
                }
                let mut buf = data[16..].to_vec();
                let ok = if cipher == Cipher::Aes128 {
                    cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &data[..16])
                        .ok()
                        .and_then(|d| d.decrypt_padded_mut::<NoPadding>(&mut buf).ok().map(|_| ()))
                } else {
                    cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &data[..16])
                        .ok()
                        .and_then(|d| d.decrypt_padded_mut::<NoPadding>(&mut buf).ok().map(|_| ()))
                };
                if ok.is_none() {
                    return data.to_vec();
                }
                // PKCS#7 padding.
                if let Some(&p) = buf.last() {
                    if (1..=16).contains(&p) && buf.len() >= p as usize {
                        buf.truncate(buf.len() - p as usize);
                    }
                }
                buf
            }
        }
    }

    /// Decrypts every string and stream of an object in place.
    pub(crate) fn decrypt_obj(&self, num: u32, gen: u16, o: &mut Obj, depth: usize) {
        if depth > 64 {
            return;
        }
        match o {
            Obj::Str(s) => *s = self.decrypt(num, gen, self.strings, s),
            Obj::Array(a) => a
                .iter_mut()
                .for_each(|v| self.decrypt_obj(num, gen, v, depth + 1)),
            Obj::Dict(d) => {
                d.0.iter_mut()
                    .for_each(|(_, v)| self.decrypt_obj(num, gen, v, depth + 1))
            }
            Obj::Stream(d, raw) => {
                let xref = d.name(b"Type") == Some(b"XRef");
                d.0.iter_mut()
                    .for_each(|(_, v)| self.decrypt_obj(num, gen, v, depth + 1));
                if !xref {
                    *raw = self.decrypt(num, gen, self.streams, raw);
                }
            }
            _ => {}
        }
    }
}
