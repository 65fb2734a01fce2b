//! Office decryption (MS-OFFCRYPTO), only as far as analysis needs it: ECMA-376 Agile and
//! Standard encryption of OOXML packages, and RC4 and CryptoAPI RC4 encryption of Excel 97-2003
//! workbooks.
//!
//! Attackers encrypt documents with Excel's built-in password "VelvetSweatshop" because
//! Excel opens them without asking, while scanners that do not decrypt see nothing. So that
//! password is always tried, then the configured list.

use aes::cipher::{BlockDecrypt, BlockDecryptMut, KeyInit, KeyIvInit};
use base64::Engine;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};

use crate::vba::{u16le, u32le};
use crate::Options;

pub(crate) const EXCEL_DEFAULT: &str = "VelvetSweatshop";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("unsupported encryption: {0}")]
    Unsupported(String),
    #[error("malformed encryption header: {0}")]
    Malformed(&'static str),
}

/// Passwords tried on encrypted Office documents: Excel's own, then the configured
/// document passwords. (The archive list is not tried here: each attempt on an Office file
/// costs 50,000-100,000 hash rounds.)
pub(crate) fn candidate_passwords(opts: &Options) -> Vec<String> {
    let mut v = vec![EXCEL_DEFAULT.to_string()];
    for p in &opts.document_passwords {
        if !v.contains(p) {
            v.push(p.clone());
        }
    }
    v
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// Decrypts an `EncryptedPackage` stream with the first password that fits. Ok(None): no
/// password fits.
pub(crate) fn decrypt_package(
    info: &[u8],
    package: &[u8],
    passwords: &[String],
) -> Result<Option<(Vec<u8>, String)>, CryptoError> {
    let (major, minor) = (
        u16le(info, 0).ok_or(CryptoError::Malformed("EncryptionInfo too short"))?,
        u16le(info, 2).unwrap_or(0),
    );
    match (major, minor) {
        (4, 4) => agile(info, package, passwords),
        (2..=4, 2) => standard(info, package, passwords),
        _ => Err(CryptoError::Unsupported(format!(
            "EncryptionInfo version {major}.{minor}"
        ))),
    }
}

#[derive(Clone, Copy)]
enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => HashAlg::Sha1,
            "SHA256" => HashAlg::Sha256,
            "SHA384" => HashAlg::Sha384,
            "SHA512" => HashAlg::Sha512,
            _ => return None,
        })
    }

    /// ECMA-376's password hash: H0 = H(salt + password), then `spin` rounds of
    /// H(round + previous). Generic and allocation-free: this loop is most of the cost of
    /// opening an encrypted document.
    fn spin(self, salt: &[u8], password: &[u8], spin: u32) -> Vec<u8> {
        fn run<D: sha2::Digest>(salt: &[u8], password: &[u8], spin: u32) -> Vec<u8> {
            let mut h = D::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize();
            for i in 0..spin {
                h = D::new()
                    .chain_update(i.to_le_bytes())
                    .chain_update(&h)
                    .finalize();
            }
            h.to_vec()
        }
        let h0 = |alg: HashAlg| alg.hash(&[salt, password]);
        match self {
            HashAlg::Sha1 => spin_sha1(&h0(self), spin),
            HashAlg::Sha256 => spin_sha256(&h0(self), spin),
            HashAlg::Sha384 => run::<Sha384>(salt, password, spin),
            HashAlg::Sha512 => spin_sha512(&h0(self), spin),
        }
    }

    #[cfg(test)]
    fn spin_reference(self, salt: &[u8], password: &[u8], spin: u32) -> Vec<u8> {
        let mut h = self.hash(&[salt, password]);
        for i in 0..spin {
            h = self.hash(&[&i.to_le_bytes(), &h]);
        }
        h
    }

    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().to_vec()
        }
        match self {
            HashAlg::Sha1 => run::<Sha1>(parts),
            HashAlg::Sha256 => run::<Sha256>(parts),
            HashAlg::Sha384 => run::<Sha384>(parts),
            HashAlg::Sha512 => run::<Sha512>(parts),
        }
    }
}

// The spin rounds with the compression function called directly. Each round hashes the
// round number and the previous digest, which fits one block, so the padding is laid out
// once and only the message bytes change: half the cost of the streaming API, and these
// rounds are most of the time spent opening an encrypted document.

fn spin_sha1(h0: &[u8], spin: u32) -> Vec<u8> {
    const IV: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut block = sha1::digest::generic_array::GenericArray::from([0u8; 64]);
    block[24] = 0x80;
    block[56..].copy_from_slice(&(24u64 * 8).to_be_bytes());
    block[4..24].copy_from_slice(&h0[..20]);
    for i in 0..spin {
        block[..4].copy_from_slice(&i.to_le_bytes());
        let mut st = IV;
        sha1::compress(&mut st, std::slice::from_ref(&block));
        for (k, w) in st.iter().enumerate() {
            block[4 + k * 4..8 + k * 4].copy_from_slice(&w.to_be_bytes());
        }
    }
    block[4..24].to_vec()
}

fn spin_sha256(h0: &[u8], spin: u32) -> Vec<u8> {
    const IV: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    let mut block = sha2::digest::generic_array::GenericArray::from([0u8; 64]);
    block[36] = 0x80;
    block[56..].copy_from_slice(&(36u64 * 8).to_be_bytes());
    block[4..36].copy_from_slice(&h0[..32]);
    for i in 0..spin {
        block[..4].copy_from_slice(&i.to_le_bytes());
        let mut st = IV;
        sha2::compress256(&mut st, std::slice::from_ref(&block));
        for (k, w) in st.iter().enumerate() {
            block[4 + k * 4..8 + k * 4].copy_from_slice(&w.to_be_bytes());
        }
    }
    block[4..36].to_vec()
}

fn spin_sha512(h0: &[u8], spin: u32) -> Vec<u8> {
    const IV: [u64; 8] = [
        0x6a09_e667_f3bc_c908,
        0xbb67_ae85_84ca_a73b,
        0x3c6e_f372_fe94_f82b,
        0xa54f_f53a_5f1d_36f1,
        0x510e_527f_ade6_82d1,
        0x9b05_688c_2b3e_6c1f,
        0x1f83_d9ab_fb41_bd6b,
        0x5be0_cd19_137e_2179,
    ];
    let mut block = sha2::digest::generic_array::GenericArray::from([0u8; 128]);
    block[68] = 0x80;
    block[112..].copy_from_slice(&(68u128 * 8).to_be_bytes());
    block[4..68].copy_from_slice(&h0[..64]);
    for i in 0..spin {
        block[..4].copy_from_slice(&i.to_le_bytes());
        let mut st = IV;
        sha2::compress512(&mut st, std::slice::from_ref(&block));
        for (k, w) in st.iter().enumerate() {
            block[4 + k * 8..12 + k * 8].copy_from_slice(&w.to_be_bytes());
        }
    }
    block[4..68].to_vec()
}

fn aes_cbc_decrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut buf = data[..data.len() / 16 * 16].to_vec();
    let iv = iv.get(..16)?;
    use aes::cipher::block_padding::NoPadding;
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .ok()?,
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .ok()?,
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .ok()?,
        _ => return None,
    };
    Some(buf)
}

fn aes_ecb_decrypt(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut buf = data[..data.len() / 16 * 16].to_vec();
    macro_rules! run {
        ($c:ty) => {{
            let c = <$c>::new_from_slice(key).ok()?;
            for block in buf.chunks_exact_mut(16) {
                c.decrypt_block(block.into());
            }
        }};
    }
    match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        32 => run!(aes::Aes256),
        _ => return None,
    }
    Some(buf)
}

/// Attributes of the first element called `name` (any namespace prefix) in the XML.
fn xml_attrs(xml: &str, name: &str) -> Option<Vec<(String, String)>> {
    let mut found = None;
    crate::xml::walk(xml.as_bytes(), |node| {
        if let crate::xml::Node::Start { name: n, attrs } = node {
            if found.is_none() && n == name {
                found = Some(attrs);
            }
        }
    });
    found
}

struct AgileParams {
    hash: HashAlg,
    salt: Vec<u8>,
    key_bits: usize,
    block: usize,
}

fn params(attrs: &[(String, String)]) -> Result<AgileParams, CryptoError> {
    let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let cipher = get("cipherAlgorithm").unwrap_or("AES");
    if cipher != "AES" {
        return Err(CryptoError::Unsupported(format!("cipher {cipher}")));
    }
    let hash = get("hashAlgorithm")
        .and_then(HashAlg::parse)
        .ok_or(CryptoError::Malformed("hashAlgorithm"))?;
    let salt = b64(get("saltValue").ok_or(CryptoError::Malformed("saltValue"))?)?;
    let key_bits = get("keyBits").and_then(|v| v.parse().ok()).unwrap_or(256);
    let block = get("blockSize").and_then(|v| v.parse().ok()).unwrap_or(16);
    Ok(AgileParams {
        hash,
        salt,
        key_bits,
        block,
    })
}

fn b64(s: &str) -> Result<Vec<u8>, CryptoError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| CryptoError::Malformed("base64 value"))
}

fn agile(
    info: &[u8],
    package: &[u8],
    passwords: &[String],
) -> Result<Option<(Vec<u8>, String)>, CryptoError> {
    let xml = String::from_utf8_lossy(info.get(8..).ok_or(CryptoError::Malformed("no XML"))?);
    let key_data = params(&xml_attrs(&xml, "keyData").ok_or(CryptoError::Malformed("keyData"))?)?;
    let enc_attrs =
        xml_attrs(&xml, "encryptedKey").ok_or(CryptoError::Malformed("encryptedKey"))?;
    let enc = params(&enc_attrs)?;
    let get = |k: &str| {
        enc_attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .ok_or(CryptoError::Malformed("encryptedKey attribute"))
    };
    let spin: u32 = get("spinCount")?
        .parse()
        .map_err(|_| CryptoError::Malformed("spinCount"))?;
    if spin > 10_000_000 {
        return Err(CryptoError::Unsupported(format!("spin count {spin}")));
    }
    let verifier_input = b64(get("encryptedVerifierHashInput")?)?;
    let verifier_hash = b64(get("encryptedVerifierHashValue")?)?;
    let key_value = b64(get("encryptedKeyValue")?)?;
    const BK_INPUT: [u8; 8] = [0xfe, 0xa7, 0xd2, 0x76, 0x3b, 0x4b, 0x9e, 0x79];
    const BK_HASH: [u8; 8] = [0xd7, 0xaa, 0x0f, 0x6d, 0x30, 0x61, 0x34, 0x4e];
    const BK_KEY: [u8; 8] = [0x14, 0x6e, 0x0b, 0xe7, 0xab, 0xac, 0xd0, 0xd6];
    for password in passwords {
        let h = enc.hash.spin(&enc.salt, &utf16(password), spin);
        let derive = |bk: &[u8]| {
            let mut k = enc.hash.hash(&[&h, bk]);
            k.resize(enc.key_bits / 8, 0x36);
            k
        };
        let Some(input) = aes_cbc_decrypt(&derive(&BK_INPUT), &enc.salt, &verifier_input) else {
            continue;
        };
        let Some(expected) = aes_cbc_decrypt(&derive(&BK_HASH), &enc.salt, &verifier_hash) else {
            continue;
        };
        let actual = enc.hash.hash(&[&input[..enc.salt.len().min(input.len())]]);
        if expected.get(..actual.len()) != Some(&actual[..]) {
            continue;
        }
        let Some(mut secret) = aes_cbc_decrypt(&derive(&BK_KEY), &enc.salt, &key_value) else {
            continue;
        };
        secret.truncate(key_data.key_bits / 8);
        let size = package
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .ok_or(CryptoError::Malformed("EncryptedPackage too short"))?;
        let mut out = Vec::with_capacity(package.len());
        for (i, seg) in package[8..].chunks(4096).enumerate() {
            let mut iv = key_data
                .hash
                .hash(&[&key_data.salt, &(i as u32).to_le_bytes()]);
            iv.resize(key_data.block.max(16), 0x36);
            match aes_cbc_decrypt(&secret, &iv, seg) {
                Some(p) => out.extend_from_slice(&p),
                None => return Err(CryptoError::Malformed("EncryptedPackage segment")),
            }
        }
        out.truncate(size.min(out.len() as u64) as usize);
        return Ok(Some((out, password.clone())));
    }
    Ok(None)
}

fn standard(
    info: &[u8],
    package: &[u8],
    passwords: &[String],
) -> Result<Option<(Vec<u8>, String)>, CryptoError> {
    let header_size = u32le(info, 8).ok_or(CryptoError::Malformed("header size"))? as usize;
    let header = info
        .get(12..12 + header_size)
        .ok_or(CryptoError::Malformed("EncryptionHeader"))?;
    let alg = u32le(header, 8).unwrap_or(0);
    let key_bits = match alg {
        0x660e => 128,
        0x660f => 192,
        0x6610 => 256,
        other => return Err(CryptoError::Unsupported(format!("algorithm {other:#x}"))),
    };
    let v = info
        .get(12 + header_size..)
        .ok_or(CryptoError::Malformed("EncryptionVerifier"))?;
    let salt = v.get(4..20).ok_or(CryptoError::Malformed("salt"))?;
    let enc_verifier = v.get(20..36).ok_or(CryptoError::Malformed("verifier"))?;
    let enc_hash = v
        .get(40..72)
        .ok_or(CryptoError::Malformed("verifier hash"))?;
    for password in passwords {
        let h = HashAlg::Sha1.spin(salt, &utf16(password), 50_000);
        let hfinal = HashAlg::Sha1.hash(&[&h, &0u32.to_le_bytes()]);
        let mut b1 = [0x36u8; 64];
        let mut b2 = [0x5cu8; 64];
        for (i, b) in hfinal.iter().enumerate() {
            b1[i] ^= b;
            b2[i] ^= b;
        }
        let mut key = HashAlg::Sha1.hash(&[&b1]);
        key.extend(HashAlg::Sha1.hash(&[&b2]));
        key.truncate(key_bits / 8);
        let (Some(verifier), Some(hash)) = (
            aes_ecb_decrypt(&key, enc_verifier),
            aes_ecb_decrypt(&key, enc_hash),
        ) else {
            continue;
        };
        if HashAlg::Sha1.hash(&[&verifier])[..] != hash[..20] {
            continue;
        }
        let size = package
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .ok_or(CryptoError::Malformed("EncryptedPackage too short"))?;
        let mut out = aes_ecb_decrypt(&key, &package[8..])
            .ok_or(CryptoError::Malformed("EncryptedPackage"))?;
        out.truncate(size.min(out.len() as u64) as usize);
        return Ok(Some((out, password.clone())));
    }
    Ok(None)
}

/// The two RC4 schemes of Office 97-2003 binary files: the same cipher, re-keyed for every
/// 1024-byte block of the stream, with keys derived differently.
#[derive(Clone, Copy)]
enum Rc4Scheme<'a> {
    /// Office 97/2000 (MS-OFFCRYPTO 2.3.6, version 1.1): MD5-based, 128-bit keys.
    Office97 { salt: &'a [u8] },
    /// CryptoAPI RC4 (2.3.5, versions 2.2/3.2/4.2, Excel 2002 and later): SHA-1-based,
    /// 40 to 128-bit keys. A 40-bit key is padded to 128 bits with zeros, as CryptoAPI does.
    CryptoApi { salt: &'a [u8], key_bits: u32 },
}

impl Rc4Scheme<'_> {
    fn key(self, password: &str, block: u32) -> Vec<u8> {
        match self {
            Rc4Scheme::Office97 { salt } => {
                let h0 = Md5::digest(utf16(password));
                let mut buf = Vec::with_capacity(21 * 16);
                for _ in 0..16 {
                    buf.extend_from_slice(&h0[..5]);
                    buf.extend_from_slice(salt);
                }
                let h1 = Md5::digest(&buf);
                let mut last = h1[..5].to_vec();
                last.extend_from_slice(&block.to_le_bytes());
                Md5::digest(&last).to_vec()
            }
            Rc4Scheme::CryptoApi { salt, key_bits } => {
                let h0 = Sha1::new()
                    .chain_update(salt)
                    .chain_update(utf16(password))
                    .finalize();
                let h = Sha1::new()
                    .chain_update(h0)
                    .chain_update(block.to_le_bytes())
                    .finalize();
                if key_bits == 40 {
                    let mut k = h[..5].to_vec();
                    k.resize(16, 0);
                    k
                } else {
                    h[..(key_bits / 8) as usize].to_vec()
                }
            }
        }
    }

    /// Whether `password` opens the document: the verifier decrypts to a value whose hash
    /// follows it in the same key stream.
    fn verifies(self, password: &str, verifier: &[u8], hash: &[u8]) -> bool {
        let mut buf = [verifier, hash].concat();
        rc4_apply(&self.key(password, 0), &mut buf);
        let (v, h) = buf.split_at(verifier.len());
        match self {
            Rc4Scheme::Office97 { .. } => Md5::digest(v)[..] == *h,
            Rc4Scheme::CryptoApi { .. } => Sha1::digest(v)[..] == *h,
        }
    }
}

/// RC4 with the key lengths CryptoAPI allows (40-128 bits in steps of 8; 40-bit keys arrive
/// padded to 16 bytes): the PDF reader's, which takes 5 to 16-byte keys.
fn rc4_apply(key: &[u8], data: &mut [u8]) {
    crate::pdfcrypt::rc4(key, data);
}

/// The RC4 scheme and verifier of a FILEPASS record (MS-XLS 2.4.117).
fn filepass_rc4(body: &[u8]) -> Result<(Rc4Scheme<'_>, &[u8], &[u8]), CryptoError> {
    let field = |at: usize, len: usize, what: &'static str| {
        body.get(at..at + len).ok_or(CryptoError::Malformed(what))
    };
    let kind = u16le(body, 0).unwrap_or(0);
    let (major, minor) = (u16le(body, 2).unwrap_or(0), u16le(body, 4).unwrap_or(0));
    if kind == 0 {
        return Err(CryptoError::Unsupported("XOR obfuscation".into()));
    }
    match (major, minor) {
        (1, 1) => Ok((
            Rc4Scheme::Office97 {
                salt: field(6, 16, "FILEPASS salt")?,
            },
            field(22, 16, "FILEPASS verifier")?,
            field(38, 16, "FILEPASS hash")?,
        )),
        (2..=4, 2) => {
            // Flags, header size, the EncryptionHeader, then the EncryptionVerifier.
            let header_size =
                u32le(body, 10).ok_or(CryptoError::Malformed("FILEPASS header size"))? as usize;
            let header = field(14, header_size, "FILEPASS encryption header")?;
            let alg = u32le(header, 8).unwrap_or(0);
            if alg != 0 && alg != 0x6801 {
                return Err(CryptoError::Unsupported(format!(
                    "CryptoAPI algorithm {alg:#x}"
                )));
            }
            let key_bits = match u32le(header, 16).unwrap_or(0) {
                0 => 40,
                bits @ 40..=128 if bits % 8 == 0 => bits,
                bits => return Err(CryptoError::Unsupported(format!("{bits}-bit RC4 key"))),
            };
            let v = 14 + header_size;
            let salt_size = u32le(body, v).unwrap_or(0) as usize;
            if salt_size != 16 {
                return Err(CryptoError::Malformed("FILEPASS salt size"));
            }
            Ok((
                Rc4Scheme::CryptoApi {
                    salt: field(v + 4, 16, "FILEPASS salt")?,
                    key_bits,
                },
                field(v + 20, 16, "FILEPASS verifier")?,
                field(v + 40, 20, "FILEPASS hash")?,
            ))
        }
        _ => Err(CryptoError::Unsupported(format!(
            "RC4 version {major}.{minor}"
        ))),
    }
}

/// Decrypts an Excel 97-2003 workbook stream protected with RC4 or CryptoAPI RC4 (FILEPASS
/// record): record headers and a few records stay in the clear, everything else is XORed
/// with a key stream that restarts every 1024 bytes of the stream.
pub(crate) fn decrypt_biff(
    stream: &[u8],
    passwords: &[String],
) -> Result<Option<(Vec<u8>, String)>, CryptoError> {
    let (filepass_end, body) = crate::xls::records(stream)
        .find(|(_, k, _)| *k == 0x002f)
        .map(|(at, _, b)| (at + 4 + b.len(), b))
        .ok_or(CryptoError::Malformed("no FILEPASS record"))?;
    let (scheme, verifier, hash) = filepass_rc4(body)?;
    let Some(password) = passwords
        .iter()
        .find(|p| scheme.verifies(p, verifier, hash))
    else {
        return Ok(None);
    };
    let mut out = stream.to_vec();
    let mut block = u32::MAX;
    let mut keystream = [0u8; 1024];
    let mut pos = filepass_end;
    while let (Some(kind), Some(len)) = (u16le(stream, pos), u16le(stream, pos + 2)) {
        let start = pos + 4;
        let end = (start + len as usize).min(stream.len());
        // BOF, FILEPASS, USREXCL, FILELOCK, INTERFACEHDR, RRDINFO, RRDHEAD stay in the clear;
        // BOUNDSHEET keeps its stream position (first 4 bytes) in the clear.
        let clear_until = match kind {
            0x0809 | 0x002f | 0x0194 | 0x0195 | 0x00e1 | 0x0196 | 0x0138 => end,
            0x0085 => start + 4,
            _ => start,
        };
        for p in clear_until.min(end)..end {
            let b = (p / 1024) as u32;
            if b != block {
                block = b;
                keystream = [0u8; 1024];
                rc4_apply(&scheme.key(password, b), &mut keystream);
            }
            out[p] ^= keystream[p % 1024];
        }
        pos = end;
        if end >= stream.len() {
            break;
        }
    }
    Ok(Some((out, password.clone())))
}

#[cfg(test)]
mod tests {
    use super::HashAlg;

    #[test]
    fn fast_spin_matches_the_streaming_hash() {
        for alg in [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ] {
            for spin in [0, 1, 2, 1000] {
                assert_eq!(
                    alg.spin(b"0123456789abcdef", b"p\0w\0", spin),
                    alg.spin_reference(b"0123456789abcdef", b"p\0w\0", spin)
                );
            }
        }
    }
}
