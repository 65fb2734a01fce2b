//! Signature databases in ClamAV's formats, loaded into one immutable [`Database`].
//!
//! Hash signatures (`.hdb .hsb .mdb .msb`, allow lists `.fp .sfp`) go into hash maps keyed by
//! (size, digest); body signatures (`.ndb`) and the subsignatures of logical signatures (`.ldb`)
//! into one Aho-Corasick automaton over each pattern's anchor. `.cvd`/`.cld` containers are
//! opened and their members loaded as if they were files. A malformed line is an error that
//! names the file and line; under `lenient` it is skipped and counted instead. A valid line
//! using a feature this engine does not implement is always skipped and counted
//! ([`LoadReport::unsupported`]), so official databases load.

pub(crate) mod bytecmp;
pub mod logical;
pub mod offset;
pub mod pattern;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::filetype::Target;
use logical::{Expr, TargetDesc};
use offset::Offset;
use pattern::{Modifiers, Pattern};

/// The functionality level this engine claims (ClamAV 1.4's is 210): signatures that need a
/// newer engine are skipped, as ClamAV skips them.
pub const FLEVEL: u32 = 210;

/// Longest database line read (logical signatures with long hex patterns run to tens of KB).
const MAX_LINE: usize = 4 << 20;

/// The EICAR anti-virus test file, detected without any database.
const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based line, or 0 when the error concerns the whole file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for LoadError {}

/// What a load did, for the CLI's summary and the daemon's logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub files: usize,
    pub hash_signatures: usize,
    pub body_signatures: usize,
    pub logical_signatures: usize,
    pub yara_rules: usize,
    pub allow_entries: usize,
    pub ignored_names: usize,
    /// Valid signatures using features this engine does not implement (skipped).
    pub unsupported: usize,
    /// Malformed lines skipped under `lenient`.
    pub skipped_malformed: usize,
    /// Signatures for a newer engine (their minimum functionality level is above ours).
    pub skipped_flevel: usize,
    /// Database files of kinds this engine does not read (e.g. `.cbc` bytecode), skipped.
    pub skipped_files: Vec<String>,
    /// The first few skipped lines with their reasons.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub lenient: bool,
    /// Load potentially-unwanted-application databases (`.hdu .ndu .ldu ...`).
    pub pua: bool,
}

/// Signature names in one arena: a million hash signatures must not cost a million
/// allocations. Each name is its start offset (top bit: from an official database); it ends
/// where the next begins.
#[derive(Debug, Default)]
struct Names {
    text: String,
    starts: Vec<u32>,
}

pub type NameId = u32;

const OFFICIAL: u32 = 1 << 31;

impl Names {
    fn add(&mut self, name: &str, official: bool) -> NameId {
        let start = self.text.len() as u32;
        self.text.push_str(name);
        self.starts
            .push(if official { start | OFFICIAL } else { start });
        (self.starts.len() - 1) as NameId
    }

    fn get(&self, id: NameId) -> (&str, bool) {
        let raw = self.starts[id as usize];
        let start = (raw & !OFFICIAL) as usize;
        let end = self
            .starts
            .get(id as usize + 1)
            .map_or(self.text.len(), |n| (n & !OFFICIAL) as usize);
        (&self.text[start..end], raw & OFFICIAL != 0)
    }
}

/// Digests of one kind: sorted vectors searched by halving, not hash maps, because a million
/// signatures must load in a fraction of a second and stay small (48 bytes each for SHA-256,
/// no spare buckets). Digests are uniformly random, so they are kept in 256 vectors by their
/// first byte: each is sorted on its own, a few thousand entries in cache, on every core,
/// where one sort of the whole table jumps around 48 MB (and gathering them into one vector
/// would cost a second 48 MB buffer's page faults). A side table holds `*` sizes; a bitmap of
/// the sizes lets the scanner skip hashing files of a size no signature has.
#[derive(Debug)]
pub(crate) struct HashTable<const N: usize> {
    /// By the digest's first byte; empty until the first insert.
    exact: Vec<Vec<Entry<N>>>,
    any_size: Vec<([u8; N], NameId)>,
    /// One bit per size modulo its length: a clear bit means no signature has that size. A
    /// set bit may be another size's (the file is then hashed for nothing); a sorted list of
    /// a million sizes took 8 MB and a sort of its own.
    sizes: Vec<u64>,
}

/// A digest, the file size it is for, and the signature's name.
type Entry<const N: usize> = (([u8; N], u64), NameId);

impl<const N: usize> Default for HashTable<N> {
    fn default() -> Self {
        Self {
            exact: Vec::new(),
            any_size: Vec::new(),
            sizes: Vec::new(),
        }
    }
}

impl<const N: usize> HashTable<N> {
    fn bucket(&mut self, digest: &[u8; N]) -> &mut Vec<Entry<N>> {
        if self.exact.is_empty() {
            self.exact.resize_with(256, Vec::new);
        }
        &mut self.exact[usize::from(digest[0])]
    }

    fn insert(&mut self, size: Option<u64>, digest: [u8; N], name: NameId) {
        match size {
            Some(s) => self.bucket(&digest).push(((digest, s), name)),
            None => self.any_size.push((digest, name)),
        }
    }

    fn reserve(&mut self, n: usize) {
        if self.exact.is_empty() {
            self.exact.resize_with(256, Vec::new);
        }
        for b in &mut self.exact {
            b.reserve(n / 256 + n / 1024);
        }
    }

    fn absorb(&mut self, other: &mut HashTable<N>, id_base: NameId) {
        if !other.exact.is_empty() && self.exact.is_empty() {
            self.exact.resize_with(256, Vec::new);
        }
        for (mine, theirs) in self.exact.iter_mut().zip(&mut other.exact) {
            mine.extend(theirs.drain(..).map(|(k, id)| (k, id + id_base)));
        }
        self.any_size
            .extend(other.any_size.drain(..).map(|(k, id)| (k, id + id_base)));
    }

    /// Sorts for lookup; of duplicate (digest, size) keys one is kept.
    fn seal(&mut self) {
        use rayon::prelude::*;
        // The first eight bytes decide nearly every comparison; a whole-key comparison is a
        // call to memcmp.
        fn prefix(d: &[u8]) -> u64 {
            let mut p = [0u8; 8];
            let n = d.len().min(8);
            p[..n].copy_from_slice(&d[..n]);
            u64::from_be_bytes(p)
        }
        self.exact.par_iter_mut().for_each(|b| {
            b.sort_unstable_by(|x, y| {
                prefix(&x.0 .0)
                    .cmp(&prefix(&y.0 .0))
                    .then_with(|| x.0.cmp(&y.0))
            });
            b.dedup_by(|a, b| a.0 == b.0);
            b.shrink_to_fit();
        });
        if self.exact.iter().all(Vec::is_empty) {
            self.exact = Vec::new();
        }
        self.any_size.sort_unstable_by_key(|a| a.0);
        self.any_size.dedup_by(|a, b| a.0 == b.0);
        self.sizes.clear();
        let n: usize = self.exact.iter().map(Vec::len).sum();
        if n > 0 {
            // About eight bits per size: one file in eight of a size nobody has is hashed.
            let words = (n * 8).next_power_of_two().div_ceil(64);
            self.sizes = vec![0u64; words];
            for e in self.exact.iter().flatten() {
                let bit = size_bit(e.0 .1, words);
                self.sizes[bit / 64] |= 1 << (bit % 64);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.any_size.is_empty()
    }

    /// Whether a file of `size` bytes could match, before paying for its digest.
    pub(crate) fn wants(&self, size: u64) -> bool {
        if !self.any_size.is_empty() {
            return true;
        }
        if self.sizes.is_empty() {
            return false;
        }
        let bit = size_bit(size, self.sizes.len());
        self.sizes[bit / 64] & (1 << (bit % 64)) != 0
    }

    pub(crate) fn get(&self, size: u64, digest: &[u8; N]) -> Option<NameId> {
        let key = (*digest, size);
        if let Some(bucket) = self.exact.get(usize::from(digest[0])) {
            if let Ok(i) = bucket.binary_search_by(|e| e.0.cmp(&key)) {
                return Some(bucket[i].1);
            }
        }
        self.any_size
            .binary_search_by(|e| e.0.cmp(digest))
            .ok()
            .map(|i| self.any_size[i].1)
    }
}

/// A size's bit in a bitmap of `words` 64-bit words (a power of two): sizes are not random
/// (many files are a few hundred bytes), so they are mixed first.
fn size_bit(size: u64, words: usize) -> usize {
    (size.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & (words * 64 - 1)
}

#[derive(Debug, Default)]
pub(crate) struct HashSet3 {
    pub md5: HashTable<16>,
    pub sha1: HashTable<20>,
    pub sha256: HashTable<32>,
}

impl HashSet3 {
    fn absorb(&mut self, other: &mut HashSet3, id_base: NameId) {
        self.md5.absorb(&mut other.md5, id_base);
        self.sha1.absorb(&mut other.sha1, id_base);
        self.sha256.absorb(&mut other.sha256, id_base);
    }

    fn seal(&mut self) {
        self.md5.seal();
        self.sha1.seal();
        self.sha256.seal();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.md5.is_empty() && self.sha1.is_empty() && self.sha256.is_empty()
    }
}

/// Who a pattern belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Body { name: NameId },
    Logical { sig: u32, sub: u32 },
}

#[derive(Debug)]
pub(crate) struct PatternSig {
    pub owner: Owner,
    pub target: Target,
    pub offset: Offset,
    pub pattern: Pattern,
    pub fullword: bool,
}

#[derive(Debug)]
pub(crate) struct LogicalSig {
    pub name: NameId,
    pub desc: TargetDesc,
    pub expr: Expr,
    pub subsigs: u32,
    /// PCRE subsignatures, run only once their trigger expression holds.
    pub pcres: Vec<PcreSub>,
    /// Byte-compare subsignatures (the subsignature each is counted as, and the compare).
    pub byte_compares: Vec<(u32, bytecmp::ByteCompare)>,
    /// Subsignatures whose match starts byte compares read from (bit per subsignature).
    pub triggers: u64,
}

/// `[OFFSET:]TRIGGER/REGEX/[FLAGS]`: a PCRE2 regular expression counted as subsignature `sub`.
#[derive(Debug)]
pub(crate) struct PcreSub {
    pub sub: u32,
    pub trigger: Expr,
    pub offset: Offset,
    pub regex: pcre2::bytes::Regex,
}

/// Parsed subsignatures: a hex pattern, or a PCRE.
enum Subsig {
    Hex(Offset, Pattern, bool),
    Pcre(Offset, Expr, pcre2::bytes::Regex),
    ByteCompare(bytecmp::ByteCompare),
}

/// The compiled body-pattern matcher: anchors of all patterns, case-sensitive and not.
#[derive(Debug)]
pub(crate) struct Anchors {
    pub automaton: AhoCorasick,
    /// For each automaton pattern: the patterns whose anchor it is, with the anchor's element index.
    pub owners: Vec<Vec<u32>>,
}

/// An immutable, loaded signature set, shared by every scanning thread.
#[derive(Debug)]
pub struct Database {
    names: Names,
    pub(crate) hashes: HashSet3,
    /// PE section hashes (`.mdb` / `.msb`).
    pub(crate) sections: HashSet3,
    pub(crate) allow: HashSet3,
    pub(crate) patterns: Vec<PatternSig>,
    pub(crate) logicals: Vec<LogicalSig>,
    pub(crate) anchors: Option<Anchors>,
    pub(crate) anchors_nocase: Option<Anchors>,
    /// Patterns with no fixed byte run to anchor on; tried at every allowed offset.
    pub(crate) unanchored: Vec<u32>,
    pub(crate) yara: Option<YaraRules>,
    ignored: FxHashSet<String>,
    report: LoadReport,
}

/// Compiled YARA rules and the detection name of each (`YARA.<rule>`, as ClamAV names them).
pub(crate) struct YaraRules {
    pub rules: yara_x::Rules,
    /// "namespace\0identifier" to name.
    pub names: FxHashMap<String, NameId>,
}

impl fmt::Debug for YaraRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "YaraRules({} rules)", self.names.len())
    }
}

impl YaraRules {
    pub(crate) fn name_of(&self, namespace: &str, identifier: &str) -> Option<NameId> {
        self.names
            .get(&format!("{namespace}\0{identifier}"))
            .copied()
    }
}

fn compile_yara(sources: &[(String, String)], names: &mut Names) -> Option<YaraRules> {
    if sources.is_empty() {
        return None;
    }
    let mut compiler = yara_x::Compiler::new();
    for (i, (origin, text)) in sources.iter().enumerate() {
        compiler.new_namespace(&format!("file{i}"));
        // Each file compiled alone before; a clash between files drops only the clashing rule.
        let _ = compiler
            .add_source(yara_x::SourceCode::from(text.as_str()).with_origin(origin.as_str()));
    }
    let rules = compiler.build();
    let mut map = FxHashMap::default();
    for rule in rules.iter() {
        let id = names.add(&format!("YARA.{}", rule.identifier()), false);
        map.insert(format!("{}\0{}", rule.namespace(), rule.identifier()), id);
    }
    Some(YaraRules { rules, names: map })
}

/// The line of the first `origin:LINE:COL` in a yara-x error report.
fn yara_error_line(report: &str, origin: &str) -> usize {
    let needle = format!("{origin}:");
    report
        .find(&needle)
        .and_then(|i| {
            let rest = &report[i + needle.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

impl Database {
    /// The built-in signatures alone (EICAR).
    pub fn builtin() -> Self {
        let mut b = Builder::new(LoadOptions::default());
        b.add_builtin();
        b.finish()
    }

    /// Loads files and folders (their database files, not recursing) on top of the built-ins.
    pub fn load(paths: &[PathBuf], options: LoadOptions) -> Result<Self, LoadError> {
        let mut b = Builder::new(options);
        b.add_builtin();
        for p in paths {
            b.add_path(p)?;
        }
        Ok(b.finish())
    }

    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// The signature count, as ClamAV reports "Known viruses".
    pub fn signature_count(&self) -> usize {
        let r = &self.report;
        r.hash_signatures + r.body_signatures + r.logical_signatures + r.yara_rules
    }

    /// The name shown to users: ClamAV marks names from unsigned databases `.UNOFFICIAL`.
    pub(crate) fn display_name(&self, id: NameId) -> Option<String> {
        let (name, official) = self.names.get(id);
        if self.ignored.contains(name) {
            return None;
        }
        Some(if official {
            name.to_string()
        } else {
            format!("{name}.UNOFFICIAL")
        })
    }
}

/// Collects signatures, then [`Builder::finish`] compiles the matchers.
pub struct Builder {
    options: LoadOptions,
    names: Names,
    hashes: HashSet3,
    sections: HashSet3,
    allow: HashSet3,
    patterns: Vec<PatternSig>,
    logicals: Vec<LogicalSig>,
    ignored: FxHashSet<String>,
    report: LoadReport,
    yara_sources: Vec<(String, String)>,
}

/// The database kinds by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hdb,
    Hsb,
    Mdb,
    Msb,
    Ndb,
    Ldb,
    Fp,
    Sfp,
    Ign,
    Container,
    Yara,
}

fn kind_of(ext: &str, pua: bool) -> Option<Kind> {
    Some(match ext {
        "hdb" => Kind::Hdb,
        "hsb" => Kind::Hsb,
        "mdb" => Kind::Mdb,
        "msb" => Kind::Msb,
        "ndb" => Kind::Ndb,
        "ldb" => Kind::Ldb,
        "hdu" if pua => Kind::Hdb,
        "hsu" if pua => Kind::Hsb,
        "mdu" if pua => Kind::Mdb,
        "msu" if pua => Kind::Msb,
        "ndu" if pua => Kind::Ndb,
        "ldu" if pua => Kind::Ldb,
        "fp" => Kind::Fp,
        "sfp" => Kind::Sfp,
        "ign" | "ign2" => Kind::Ign,
        "cvd" | "cld" | "cud" => Kind::Container,
        "yar" | "yara" => Kind::Yara,
        _ => return None,
    })
}

/// Extensions a ClamAV database folder holds that this engine knowingly does not read.
const KNOWN_UNREAD: &[&str] = &[
    "info", "cfg", "ftm", "cdb", "crb", "idb", "pdb", "gdb", "wdb", "cbc", "imp", "hdu", "hsu",
    "mdu", "msu", "ndu", "ldu", "cat", "crt", "dat", "zmd", "rmd", "db", "sign", "pwdb",
];

impl Builder {
    pub fn new(options: LoadOptions) -> Self {
        Builder {
            options,
            names: Names::default(),
            hashes: HashSet3::default(),
            sections: HashSet3::default(),
            allow: HashSet3::default(),
            patterns: Vec::new(),
            logicals: Vec::new(),
            ignored: FxHashSet::default(),
            report: LoadReport::default(),
            yara_sources: Vec::new(),
        }
    }

    fn add_builtin(&mut self) {
        let hex: String = EICAR.bytes().map(|b| format!("{b:02x}")).collect();
        let name = self.names.add("Eicar-Test-Signature", true);
        if let Ok(pattern) = Pattern::parse(&hex) {
            self.patterns.push(PatternSig {
                owner: Owner::Body { name },
                target: Target::Any,
                offset: Offset::At {
                    anchor: offset::Anchor::Start,
                    delta: 0,
                    shift: 0,
                },
                pattern,
                fullword: false,
            });
            self.report.body_signatures += 1;
        }
    }

    /// Loads a database file, or every database file in a folder (sorted by name).
    pub fn add_path(&mut self, path: &Path) -> Result<(), LoadError> {
        let whole = |message: String| LoadError {
            file: path.to_path_buf(),
            line: 0,
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| whole(e.to_string()))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| whole(e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            for entry in entries {
                let ext = entry
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if kind_of(&ext, self.options.pua).is_some() {
                    self.add_path(&entry)?;
                } else if KNOWN_UNREAD.contains(&ext.as_str()) {
                    self.report.skipped_files.push(entry.display().to_string());
                }
            }
            return Ok(());
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let Some(kind) = kind_of(&ext, self.options.pua) else {
            return Err(whole(format!(
                "not a signature database this engine reads (.{ext})"
            )));
        };
        if kind == Kind::Container {
            let bytes = std::fs::read(path).map_err(|e| whole(e.to_string()))?;
            return self.add_container(path, &bytes);
        }
        if kind == Kind::Yara {
            let text = std::fs::read_to_string(path).map_err(|e| whole(e.to_string()))?;
            return self.add_yara(path, text);
        }
        let file = std::fs::File::open(path).map_err(|e| whole(e.to_string()))?;
        if matches!(kind, Kind::Hdb | Kind::Hsb | Kind::Fp | Kind::Sfp) {
            // Hash lines run 60 to 100 bytes: reserve once rather than grow a 50 MB table.
            let estimate = (meta.len() / 80) as usize;
            match kind {
                Kind::Hsb => self.hashes.sha256.reserve(estimate),
                Kind::Hdb => self.hashes.md5.reserve(estimate),
                _ => {}
            }
            // Names too: grown by doubling they would be copied (and paged in) several times.
            self.names.text.reserve((meta.len() / 4) as usize);
            self.names.starts.reserve(estimate);
            return self.add_hash_file(path, kind, file);
        }
        self.add_lines(
            path,
            kind,
            std::io::BufReader::with_capacity(1 << 20, file),
            false,
        )
    }

    /// Hash databases run to millions of lines: they are read in chunks cut at line ends, each
    /// chunk parsed on its own thread into a partial builder, and the partials merged in order
    /// (so names, line numbers and the first error are as a serial load would give).
    fn add_hash_file(
        &mut self,
        path: &Path,
        kind: Kind,
        mut file: std::fs::File,
    ) -> Result<(), LoadError> {
        use rayon::prelude::*;
        const CHUNK: usize = 2 << 20;
        let batch = rayon::current_num_threads().max(1) * 2;
        self.report.files += 1;
        // Buffers and partial builders are reused from batch to batch: fresh ones for every
        // chunk cost more in page faults (kernel time) than the parsing itself.
        let mut buffers: Vec<Vec<u8>> = Vec::new();
        let mut partials: Vec<Builder> = Vec::new();
        let mut carry: Vec<u8> = Vec::new();
        let mut lines_before = 0usize;
        let mut eof = false;
        while !eof {
            let mut chunks: Vec<(usize, Vec<u8>)> = Vec::with_capacity(batch);
            while chunks.len() < batch && !eof {
                let mut buf = buffers.pop().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(&carry);
                carry.clear();
                let start = buf.len();
                buf.resize(start + CHUNK, 0);
                let mut filled = start;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            return Err(LoadError {
                                file: path.to_path_buf(),
                                line: lines_before + 1,
                                message: e.to_string(),
                            })
                        }
                    }
                }
                buf.truncate(filled);
                if !eof {
                    match memchr::memrchr(b'\n', &buf) {
                        Some(cut) => {
                            carry.extend_from_slice(&buf[cut + 1..]);
                            buf.truncate(cut + 1);
                        }
                        None if buf.len() > MAX_LINE => {
                            return Err(LoadError {
                                file: path.to_path_buf(),
                                line: lines_before + 1,
                                message: format!("line longer than {MAX_LINE} bytes"),
                            })
                        }
                        None => {
                            carry = buf;
                            continue;
                        }
                    }
                }
                let lines = memchr::memchr_iter(b'\n', &buf).count();
                chunks.push((lines_before, buf));
                lines_before += lines;
            }
            let options = self.options;
            while partials.len() < chunks.len() {
                partials.push(Builder::new(options));
            }
            let results: Vec<Result<(), LoadError>> = chunks
                .par_iter()
                .zip(partials.par_iter_mut())
                .map(|((first_line, bytes), b)| {
                    let estimate = bytes.len() / 60;
                    match kind {
                        Kind::Hsb => b.hashes.sha256.reserve(estimate),
                        Kind::Hdb => b.hashes.md5.reserve(estimate),
                        _ => {}
                    }
                    b.names.text.reserve(bytes.len() / 3);
                    b.names.starts.reserve(estimate);
                    b.add_chunk(path, kind, bytes).map_err(|mut e| {
                        e.line += first_line;
                        e
                    })
                })
                .collect();
            for (result, partial) in results.into_iter().zip(partials.iter_mut()) {
                result?;
                self.absorb(partial);
            }
            buffers.extend(chunks.into_iter().map(|(_, b)| b));
        }
        Ok(())
    }

    /// YARA rules, compiled by yara-x. Each file is compiled alone first so that an error names
    /// its file and line; all files are compiled together (one namespace each) at the end.
    fn add_yara(&mut self, path: &Path, text: String) -> Result<(), LoadError> {
        self.report.files += 1;
        let origin = path.display().to_string();
        let mut check = yara_x::Compiler::new();
        if let Err(e) =
            check.add_source(yara_x::SourceCode::from(text.as_str()).with_origin(origin.as_str()))
        {
            let report = e.to_string();
            let line = yara_error_line(&report, &origin);
            let message = report.lines().next().unwrap_or("YARA error").to_string();
            if self.options.lenient {
                self.report.skipped_malformed += 1;
                self.warn(path, line, &message);
                return Ok(());
            }
            return Err(LoadError {
                file: path.to_path_buf(),
                line,
                message: if message.is_empty() { report } else { message },
            });
        }
        self.yara_sources.push((origin, text));
        Ok(())
    }

    /// Takes over the hash signatures, names and counts of a partial builder, leaving it
    /// empty with its capacity, to be used again.
    fn absorb(&mut self, other: &mut Builder) {
        let id_base = self.names.starts.len() as NameId;
        let text_base = self.names.text.len() as u32;
        self.names.text.push_str(&other.names.text);
        self.names.starts.extend(
            other
                .names
                .starts
                .iter()
                .map(|s| (s & OFFICIAL) | ((s & !OFFICIAL) + text_base)),
        );
        other.names.text.clear();
        other.names.starts.clear();
        for (mine, theirs) in [
            (&mut self.hashes, &mut other.hashes),
            (&mut self.allow, &mut other.allow),
            (&mut self.sections, &mut other.sections),
        ] {
            mine.absorb(theirs, id_base);
        }
        let r = std::mem::take(&mut other.report);
        self.report.hash_signatures += r.hash_signatures;
        self.report.allow_entries += r.allow_entries;
        self.report.unsupported += r.unsupported;
        self.report.skipped_malformed += r.skipped_malformed;
        self.report.skipped_flevel += r.skipped_flevel;
        for w in r.warnings {
            if self.report.warnings.len() < 20 {
                self.report.warnings.push(w);
            }
        }
    }

    /// Loads database text as if read from a file called `name` (its extension gives the kind).
    pub fn add_str(&mut self, name: &str, text: &str) -> Result<(), LoadError> {
        let path = Path::new(name);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match kind_of(&ext, self.options.pua) {
            Some(Kind::Container) | None => Err(LoadError {
                file: path.to_path_buf(),
                line: 0,
                message: format!("not a text signature database (.{ext})"),
            }),
            Some(kind) => self.add_lines(path, kind, text.as_bytes(), false),
        }
    }

    /// Loads a `.cvd`/`.cld`: a 512-byte header, then a (gzipped) tar of database files.
    fn add_container(&mut self, path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
        let whole = |message: String| LoadError {
            file: path.to_path_buf(),
            line: 0,
            message,
        };
        if bytes.len() < 512 || !bytes.starts_with(b"ClamAV-VDB:") {
            return Err(whole(
                "not a ClamAV database container (no ClamAV-VDB header)".into(),
            ));
        }
        let header = String::from_utf8_lossy(&bytes[..512]);
        let fields: Vec<&str> = header.trim_end().split(':').collect();
        let body = &bytes[512..];
        if let Some(md5_hex) = fields.get(5).filter(|f| f.len() == 32) {
            use md5::Digest;
            let digest = md5::Md5::digest(body);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            // .cld files are rewritten after incremental updates and keep no valid digest.
            if !path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("cld"))
                && !hex.eq_ignore_ascii_case(md5_hex)
            {
                return Err(whole(format!(
                    "the archive's MD5 {hex} does not match the header's {md5_hex}: file damaged"
                )));
            }
        }
        let reader: Box<dyn Read + '_> = if body.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(body))
        } else {
            Box::new(body)
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| whole(format!("bad archive: {e}")))?;
        self.report.files += 1;
        for entry in entries {
            let mut entry = entry.map_err(|e| whole(format!("bad archive: {e}")))?;
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .map_err(|e| whole(format!("bad archive: {e}")))?;
            let ext = name
                .rsplit_once('.')
                .map(|(_, e)| e.to_ascii_lowercase())
                .unwrap_or_default();
            let member = path.join(&name);
            match kind_of(&ext, self.options.pua) {
                Some(Kind::Container) | None => {
                    self.report.skipped_files.push(member.display().to_string());
                }
                Some(kind) => {
                    self.add_lines(&member, kind, std::io::BufReader::new(&mut entry), true)?;
                }
            }
        }
        Ok(())
    }

    /// Loads database lines of a known kind; `official` names come from signed containers.
    /// Lines are read one at a time, so a 100 MB database never sits in memory whole.
    fn add_lines(
        &mut self,
        path: &Path,
        kind: Kind,
        mut reader: impl std::io::BufRead,
        official: bool,
    ) -> Result<(), LoadError> {
        use std::io::BufRead;
        self.report.files += 1;
        let mut buf = Vec::with_capacity(256);
        let mut number = 0;
        loop {
            buf.clear();
            let got = (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| LoadError {
                    file: path.to_path_buf(),
                    line: number + 1,
                    message: e.to_string(),
                })?;
            if got == 0 {
                return Ok(());
            }
            number += 1;
            self.take_line(path, kind, number, &buf, official)?;
        }
    }

    /// The lines of a chunk of a database held in memory, without copying each line out.
    fn add_chunk(&mut self, path: &Path, kind: Kind, bytes: &[u8]) -> Result<(), LoadError> {
        let mut number = 0;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            number += 1;
            self.take_line(path, kind, number, line, false)?;
        }
        Ok(())
    }

    fn warn(&mut self, path: &Path, line: usize, why: &str) {
        if self.report.warnings.len() < 20 {
            self.report
                .warnings
                .push(format!("{}:{line}: {why}", path.display()));
        }
    }

    /// One raw line (with or without its line end) numbered `number`.
    fn take_line(
        &mut self,
        path: &Path,
        kind: Kind,
        number: usize,
        raw: &[u8],
        official: bool,
    ) -> Result<(), LoadError> {
        if raw.len() > MAX_LINE {
            return Err(LoadError {
                file: path.to_path_buf(),
                line: number,
                message: format!("line longer than {MAX_LINE} bytes"),
            });
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(raw),
        };
        let line = text.trim_end_matches(['\n', '\r']);
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        match self.add_line(kind, line, official) {
            Ok(()) => {}
            Err(LineError::Unsupported(why)) => {
                self.report.unsupported += 1;
                self.warn(path, number, &why);
            }
            Err(LineError::Flevel) => self.report.skipped_flevel += 1,
            Err(LineError::Malformed(message)) => {
                if self.options.lenient {
                    self.report.skipped_malformed += 1;
                    self.warn(path, number, &message);
                } else {
                    return Err(LoadError {
                        file: path.to_path_buf(),
                        line: number,
                        message,
                    });
                }
            }
        }
        Ok(())
    }

    fn add_line(&mut self, kind: Kind, line: &str, official: bool) -> Result<(), LineError> {
        match kind {
            Kind::Hdb | Kind::Hsb | Kind::Fp | Kind::Sfp => self.add_hash(kind, line, official),
            Kind::Mdb | Kind::Msb => self.add_section_hash(line, official),
            Kind::Ndb => self.add_body(line, official),
            Kind::Ldb => self.add_logical(line, official),
            Kind::Ign => {
                let name = line.split(':').next().unwrap_or(line).trim();
                self.ignored.insert(name.to_string());
                self.report.ignored_names += 1;
                Ok(())
            }
            Kind::Container | Kind::Yara => {
                Err(LineError::Malformed("not a line-based database".into()))
            }
        }
    }

    fn add_hash(&mut self, kind: Kind, line: &str, official: bool) -> Result<(), LineError> {
        // memchr finds the colons far faster than str::split (a million lines per database).
        let mut f = ColonFields {
            rest: Some(line),
            left: 6,
        };
        let (Some(hash), Some(size), Some(name)) = (f.next(), f.next(), f.next()) else {
            let n = line.split(':').count();
            return Err(LineError::Malformed(format!(
                "expected HASH:SIZE:NAME, got {n} field(s)"
            )));
        };
        let (min_fl, max_fl) = (f.next(), f.next());
        if f.next().is_some() {
            return Err(LineError::Malformed(
                "too many fields (expected HASH:SIZE:NAME[:MINFL[:MAXFL]])".into(),
            ));
        }
        check_flevel(min_fl, max_fl)?;
        let size = parse_size(size)?;
        if size.is_none() && min_fl.is_none() {
            // ClamAV only accepts `*` sizes from signatures that declare a functionality level
            // that knows them (73 or later).
            return Err(LineError::Malformed(
                "a '*' size needs a minimum functionality level field (73)".into(),
            ));
        }
        if name.is_empty() {
            return Err(LineError::Malformed("empty signature name".into()));
        }
        let allow = matches!(kind, Kind::Fp | Kind::Sfp);
        let id = self.names.add(name, official);
        let table = if allow {
            &mut self.allow
        } else {
            &mut self.hashes
        };
        insert_digest(table, hash, size, id)?;
        if allow {
            self.report.allow_entries += 1;
        } else {
            self.report.hash_signatures += 1;
        }
        Ok(())
    }

    fn add_section_hash(&mut self, line: &str, official: bool) -> Result<(), LineError> {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 {
            return Err(LineError::Malformed(format!(
                "expected SECTIONSIZE:HASH:NAME, got {} field(s)",
                f.len()
            )));
        }
        check_flevel(f.get(3).copied(), f.get(4).copied())?;
        let size = parse_size(f[0])?;
        let id = self.names.add(f[2], official);
        insert_digest(&mut self.sections, f[1], size, id)?;
        self.report.hash_signatures += 1;
        Ok(())
    }

    fn add_body(&mut self, line: &str, official: bool) -> Result<(), LineError> {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return Err(LineError::Malformed(format!(
                "expected NAME:TARGET:OFFSET:HEX, got {} field(s)",
                f.len()
            )));
        }
        check_flevel(f.get(4).copied(), f.get(5).copied())?;
        let target_n: u32 = f[1]
            .parse()
            .map_err(|_| LineError::Malformed(format!("bad target type {:?}", f[1])))?;
        let target = Target::from_number(target_n)
            .ok_or_else(|| LineError::Malformed(format!("unknown target type {target_n}")))?;
        let offset = Offset::parse(f[2]).map_err(LineError::Malformed)?;
        let pattern = parse_pattern(f[3], Modifiers::default())?;
        let name = self.names.add(f[0], official);
        self.patterns.push(PatternSig {
            owner: Owner::Body { name },
            target,
            offset,
            pattern,
            fullword: false,
        });
        self.report.body_signatures += 1;
        Ok(())
    }

    fn add_logical(&mut self, line: &str, official: bool) -> Result<(), LineError> {
        let f: Vec<&str> = line.split(';').collect();
        if f.len() < 4 {
            return Err(LineError::Malformed(format!(
                "expected NAME;TARGETDESC;EXPRESSION;SUBSIG..., got {} field(s)",
                f.len()
            )));
        }
        let desc = TargetDesc::parse(f[1]).map_err(LineError::Malformed)?;
        if let Some((lo, hi)) = desc.engine {
            if FLEVEL < lo || FLEVEL > hi {
                return Err(LineError::Flevel);
            }
        }
        let subs = &f[3..];
        if subs.len() > 64 {
            return Err(LineError::Malformed(format!(
                "{} subsignatures; at most 64",
                subs.len()
            )));
        }
        let expr = logical::parse_expr(f[2], subs.len()).map_err(LineError::Malformed)?;
        let mut parsed = Vec::with_capacity(subs.len());
        for (i, sub) in subs.iter().enumerate() {
            parsed.push(
                parse_subsig(sub, subs.len())
                    .map_err(|e| e.within(&format!("subsignature {i}")))?,
            );
        }
        let sig = self.logicals.len() as u32;
        let name = self.names.add(f[0], official);
        let target = desc.target.unwrap_or(Target::Any);
        let mut pcres = Vec::new();
        let mut byte_compares = Vec::new();
        let mut triggers = 0u64;
        // Only hex subsignatures have match starts; ClamAV loads a byte compare triggered by
        // a PCRE or another byte compare, which then never matches, and so does this.
        for sub in &parsed {
            if let Subsig::ByteCompare(b) = sub {
                if matches!(parsed[b.trigger as usize], Subsig::Hex(..)) {
                    triggers |= 1 << b.trigger;
                }
            }
        }
        for (i, sub) in parsed.into_iter().enumerate() {
            match sub {
                Subsig::Hex(offset, pattern, fullword) => self.patterns.push(PatternSig {
                    owner: Owner::Logical { sig, sub: i as u32 },
                    target,
                    offset,
                    pattern,
                    fullword,
                }),
                Subsig::Pcre(offset, trigger, regex) => pcres.push(PcreSub {
                    sub: i as u32,
                    trigger,
                    offset,
                    regex,
                }),
                Subsig::ByteCompare(b) => byte_compares.push((i as u32, b)),
            }
        }
        self.logicals.push(LogicalSig {
            name,
            desc,
            expr,
            subsigs: subs.len() as u32,
            pcres,
            byte_compares,
            triggers,
        });
        self.report.logical_signatures += 1;
        Ok(())
    }

    /// Compiles the matchers.
    pub fn finish(mut self) -> Database {
        self.hashes.seal();
        self.sections.seal();
        self.allow.seal();
        let mut sensitive = AnchorSet::default();
        let mut nocase = AnchorSet::default();
        let mut unanchored = Vec::new();
        for (i, p) in self.patterns.iter().enumerate() {
            let Some(anchor) = p.pattern.anchor_bytes() else {
                unanchored.push(i as u32);
                continue;
            };
            let nocase_anchor = p.pattern.nocase
                && p.pattern.anchor.is_some_and(|(s, l)| {
                    p.pattern.elems[s..s + l]
                        .iter()
                        .any(|e| matches!(e, pattern::Elem::Byte { nocase: true, .. }))
                });
            let set = if nocase_anchor {
                &mut nocase
            } else {
                &mut sensitive
            };
            let idx = *set.2.entry(anchor.clone()).or_insert_with(|| {
                set.0.push(anchor);
                set.1.push(Vec::new());
                set.0.len() - 1
            });
            set.1[idx].push(i as u32);
        }
        let build =
            |(pats, owners, _): (Vec<Vec<u8>>, Vec<Vec<u32>>, _), ci: bool| -> Option<Anchors> {
                if pats.is_empty() {
                    return None;
                }
                let automaton = AhoCorasick::builder()
                    .ascii_case_insensitive(ci)
                    .build(&pats)
                    .ok()?;
                Some(Anchors { automaton, owners })
            };
        let mut names = self.names;
        let yara = compile_yara(&self.yara_sources, &mut names);
        let mut report = self.report;
        report.yara_rules = yara.as_ref().map_or(0, |y| y.names.len());
        Database {
            yara,
            anchors: build(sensitive, false),
            anchors_nocase: build(nocase, true),
            unanchored,
            names,
            hashes: self.hashes,
            sections: self.sections,
            allow: self.allow,
            patterns: self.patterns,
            logicals: self.logicals,
            ignored: self.ignored,
            report,
        }
    }
}

/// Anchors being collected: the literals, the patterns per literal, and a literal's index.
type AnchorSet = (Vec<Vec<u8>>, Vec<Vec<u32>>, FxHashMap<Vec<u8>, usize>);

/// `str::splitn(n, ':')`, with memchr.
struct ColonFields<'a> {
    rest: Option<&'a str>,
    left: usize,
}

impl<'a> Iterator for ColonFields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            self.rest = None;
            return Some(rest);
        }
        match memchr::memchr(b':', rest.as_bytes()) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

enum LineError {
    Malformed(String),
    Unsupported(String),
    Flevel,
}

impl LineError {
    fn within(self, what: &str) -> Self {
        match self {
            LineError::Malformed(m) => LineError::Malformed(format!("{what}: {m}")),
            LineError::Unsupported(m) => LineError::Unsupported(format!("{what}: {m}")),
            LineError::Flevel => LineError::Flevel,
        }
    }
}

fn check_flevel(min: Option<&str>, max: Option<&str>) -> Result<(), LineError> {
    let parse = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| LineError::Malformed(format!("bad functionality level {s:?}")))
    };
    if let Some(min) = min.filter(|s| !s.is_empty()) {
        if parse(min)? > FLEVEL {
            return Err(LineError::Flevel);
        }
    }
    if let Some(max) = max.filter(|s| !s.is_empty()) {
        if parse(max)? < FLEVEL {
            return Err(LineError::Flevel);
        }
    }
    Ok(())
}

fn parse_size(s: &str) -> Result<Option<u64>, LineError> {
    if s == "*" {
        return Ok(None);
    }
    s.parse::<u64>()
        .map(Some)
        .map_err(|_| LineError::Malformed(format!("bad size {s:?}")))
}

fn insert_digest(
    table: &mut HashSet3,
    hex: &str,
    size: Option<u64>,
    id: NameId,
) -> Result<(), LineError> {
    let bad = || {
        LineError::Malformed(format!(
            "bad hash {hex:?} (expected 32, 40 or 64 hex digits)"
        ))
    };
    match hex.len() {
        32 => table
            .md5
            .insert(size, qalxan_core::hex::decode(hex).ok_or_else(bad)?, id),
        40 => table
            .sha1
            .insert(size, qalxan_core::hex::decode(hex).ok_or_else(bad)?, id),
        64 => table
            .sha256
            .insert(size, qalxan_core::hex::decode(hex).ok_or_else(bad)?, id),
        _ => return Err(bad()),
    }
    Ok(())
}

fn parse_pattern(hex: &str, modifiers: Modifiers) -> Result<Pattern, LineError> {
    Pattern::parse_with(hex, modifiers).map_err(|e| {
        if e.message.contains("not supported") {
            LineError::Unsupported(format!("pattern {e}"))
        } else {
            LineError::Malformed(format!("pattern {e}"))
        }
    })
}

/// `[OFFSET:]HEX[::MODIFIERS]`, `[OFFSET:]TRIGGER/PCRE/[FLAGS]` or a byte compare
/// `TRIGGER(OFFSET#OPTIONS#COMPARISONS)`; macro subsignatures are not implemented.
fn parse_subsig(s: &str, subsigs: usize) -> Result<Subsig, LineError> {
    if let Some(slash) = s.find('/') {
        return parse_pcre(s, slash, subsigs);
    }
    if bytecmp::is_byte_compare(s) {
        return bytecmp::ByteCompare::parse(s, subsigs)
            .map(Subsig::ByteCompare)
            .map_err(LineError::Malformed);
    }
    if s.contains('$') {
        return Err(LineError::Unsupported(
            "macro subsignatures are not supported yet".into(),
        ));
    }
    let (body, modifiers) = match s.split_once("::") {
        Some((b, m)) => (b, Modifiers::parse(m).map_err(LineError::Malformed)?),
        None => (s, Modifiers::default()),
    };
    let (offset, hex) = match body.rsplit_once(':') {
        Some((o, h)) => (Offset::parse(o).map_err(LineError::Malformed)?, h),
        None => (Offset::Any, body),
    };
    if modifiers.wide && modifiers.ascii {
        return Err(LineError::Unsupported(
            "'wa' (both widths) is not supported yet".into(),
        ));
    }
    Ok(Subsig::Hex(
        offset,
        parse_pattern(hex, modifiers)?,
        modifiers.fullword,
    ))
}

/// `[OFFSET:]TRIGGER/REGEX/[FLAGS]`. Flags i, s, m, x map to PCRE2's options; ClamAV's
/// match-position flags (g, r, e, E, G, U, A) are accepted and do not change what matches.
fn parse_pcre(s: &str, slash: usize, subsigs: usize) -> Result<Subsig, LineError> {
    let (head, rest) = (&s[..slash], &s[slash + 1..]);
    let Some(end) = rest.rfind('/') else {
        return Err(LineError::Malformed(
            "PCRE subsignature without a closing '/'".into(),
        ));
    };
    let (pattern, flags) = (&rest[..end], &rest[end + 1..]);
    let (offset, trigger) = match head.rsplit_once(':') {
        Some((o, t)) => (Offset::parse(o).map_err(LineError::Malformed)?, t),
        None => (Offset::Any, head),
    };
    let trigger = logical::parse_expr(trigger, subsigs)
        .map_err(|e| LineError::Malformed(format!("PCRE trigger: {e}")))?;
    let mut b = pcre2::bytes::RegexBuilder::new();
    b.jit_if_available(true);
    for f in flags.chars() {
        match f {
            'i' => {
                b.caseless(true);
            }
            's' => {
                b.dotall(true);
            }
            'm' => {
                b.multi_line(true);
            }
            'x' => {
                b.extended(true);
            }
            'g' | 'r' | 'e' | 'E' | 'G' | 'U' | 'A' => {}
            other => return Err(LineError::Malformed(format!("unknown PCRE flag '{other}'"))),
        }
    }
    let regex = b
        .build(pattern)
        .map_err(|e| LineError::Malformed(format!("PCRE /{pattern}/: {e}")))?;
    Ok(Subsig::Pcre(offset, trigger, regex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tables_find_what_they_hold_in_every_bucket() {
        use sha2::Digest;
        let mut t = HashTable::<32>::default();
        let mut held = Vec::new();
        for i in 0..5_000u32 {
            let d: [u8; 32] = sha2::Sha256::digest(i.to_le_bytes()).into();
            let size = u64::from(i % 700) * 13 + 1;
            t.insert(Some(size), d, i);
            held.push((d, size, i));
        }
        // A duplicate key (kept once), the same digest with another size, and digests that
        // share their first eight bytes.
        t.insert(Some(held[0].1), held[0].0, 99_999);
        t.insert(Some(held[0].1 + 1), held[0].0, 5_000);
        let mut twin = held[1].0;
        twin[31] ^= 1;
        t.insert(Some(held[1].1), twin, 5_001);
        let any: [u8; 32] = sha2::Sha256::digest(b"any size").into();
        let mut other = HashTable::<32>::default();
        other.insert(None, any, 0);
        t.absorb(&mut other, 6_000);
        t.seal();
        for (d, size, i) in &held {
            assert!(t.wants(*size));
            let id = t.get(*size, d).expect("held");
            assert!(id == *i || (*i == 0 && id == 99_999));
        }
        assert_eq!(t.get(held[0].1 + 1, &held[0].0), Some(5_000));
        assert_eq!(t.get(held[1].1, &twin), Some(5_001));
        assert_eq!(t.get(held[2].1 + 1, &held[2].0), None, "another size");
        assert_eq!(
            t.get(123_456, &any),
            Some(6_000),
            "a `*` size matches any size"
        );
        assert_eq!(t.exact.iter().map(Vec::len).sum::<usize>(), 5_002);
        let mut empty = HashTable::<16>::default();
        empty.seal();
        assert!(empty.is_empty() && !empty.wants(10) && empty.get(10, &[0; 16]).is_none());
        // Sizes nobody has are mostly skipped (the bitmap has about eight bits per size).
        let mut sparse = HashTable::<16>::default();
        sparse.insert(Some(68), [7; 16], 0);
        sparse.seal();
        let wanted = (0..10_000u64).filter(|&s| sparse.wants(s)).count();
        assert!(sparse.wants(68) && wanted < 2_000, "{wanted}");
    }

    fn load_str(kind: Kind, text: &str) -> Result<Database, LoadError> {
        let mut b = Builder::new(LoadOptions::default());
        b.add_lines(Path::new("test.db"), kind, text.as_bytes(), false)?;
        Ok(b.finish())
    }

    #[test]
    fn hash_lines() {
        let db = load_str(
            Kind::Hsb,
            "# comment\n62dd70f5e7530e0239901ac186f1f9ae39292561:544:A.Sha1\naa15bcf478d165efd2065190eb473bcb:*:B:73\n",
        )
        .expect("loads");
        assert_eq!(db.report().hash_signatures, 2);
        let e = load_str(Kind::Hdb, "ok:1\n").expect_err("too few fields");
        assert_eq!((e.line, e.file.as_path()), (1, Path::new("test.db")));
        let e = load_str(Kind::Hdb, "aa15bcf478d165efd2065190eb473bcb:5:A\nzz:5:B\n")
            .expect_err("bad hash");
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("test.db:2: bad hash"), "{e}");
        assert!(load_str(Kind::Hdb, "aa15bcf478d165efd2065190eb473bcb:*:B\n").is_err());
    }

    #[test]
    fn lenient_skips_and_counts() {
        let mut b = Builder::new(LoadOptions {
            lenient: true,
            ..Default::default()
        });
        b.add_lines(
            Path::new("x.ndb"),
            Kind::Ndb,
            "A:0:*:4142\nB:0:*:41zz\nC:0:*:4142:999\n".as_bytes(),
            false,
        )
        .expect("lenient");
        let db = b.finish();
        assert_eq!(db.report().body_signatures, 1);
        assert_eq!(db.report().skipped_malformed, 1);
        assert_eq!(db.report().skipped_flevel, 1);
    }

    #[test]
    fn logical_lines() {
        let db = load_str(
            Kind::Ldb,
            "L;Engine:51-255,Target:1;0&1;4142;EOF-10:4344::i\n",
        )
        .expect("loads");
        assert_eq!(db.report().logical_signatures, 1);
        assert_eq!(db.patterns.len(), 2);
        let e = load_str(Kind::Ldb, "L;Target:0;0&2;4142;4344\n").expect_err("bad subsig ref");
        assert!(e.message.contains("does not exist"), "{e}");
        let db = load_str(Kind::Ldb, "L;Target:0;0&1;4142;0/a+b/i\n").expect("pcre");
        assert_eq!(db.logicals[0].pcres.len(), 1);
        assert!(load_str(Kind::Ldb, "L;Target:0;0&1;4142;0/a(b/\n").is_err());
        assert!(load_str(Kind::Ldb, "L;Target:0;0&1;4142;0/ab/q\n").is_err());
        let db = load_str(Kind::Ldb, "L;Target:0;0&1;4142;0(>>2#ib2#>5)\n").expect("compare");
        assert_eq!(db.logicals[0].byte_compares.len(), 1);
        assert_eq!(db.logicals[0].triggers, 1);
        assert!(load_str(Kind::Ldb, "L;Target:0;0;aa#x\n").is_err());
        let db = load_str(Kind::Ldb, "L;Engine:250-255,Target:0;0;4142\n").expect("flevel");
        assert_eq!(db.report().skipped_flevel, 1);
    }
}
