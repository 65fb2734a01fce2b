//! Scanning: each layer of a file (the file itself, then everything unpacked from it,
//! recursively) is checked against the hash and body signatures, within limits on depth,
//! sizes, file count and time.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::Digest;
use serde::Serialize;

use crate::filetype::{self, FileType};
use crate::formats::{self, Child, Flow};
use crate::pe::{self, PeInfo};
use crate::sigs::{Database, HashSet3, NameId, Owner};

/// Bounds on the work one scan may do, as ClamAV's `--max-*` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Containers nested deeper than this are not opened (`--max-recursion`).
    pub max_depth: u32,
    /// Files unpacked from one scanned file (`--max-files`).
    pub max_files: u32,
    /// A file (or unpacked member) larger than this is not scanned (`--max-filesize`).
    pub max_file_size: u64,
    /// Bytes unpacked and scanned for one file in all (`--max-scansize`).
    pub max_scan_size: u64,
    /// Wall-clock time for one file (`--max-scantime`).
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 17,
            max_files: 10_000,
            max_file_size: 100 << 20,
            max_scan_size: 400 << 20,
            max_time: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScanOptions {
    pub limits: Limits,
    /// Report every matching signature, not only the first (`--allmatch`).
    pub all_match: bool,
    /// Report a file whose scan stopped at a limit as `Heuristics.Limits.Exceeded.*`.
    pub alert_exceeds_max: bool,
    /// Passwords tried on encrypted archives.
    pub passwords: Vec<String>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            limits: Limits::default(),
            all_match: false,
            alert_exceeds_max: true,
            passwords: vec!["infected".into()],
        }
    }
}

/// One signature match, and where in the file it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub name: String,
    /// Members leading from the scanned file to the layer that matched (empty: the file itself).
    pub location: Vec<String>,
}

/// What scanning one file found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub detections: Vec<Detection>,
    /// Damaged or unreadable containers met on the way (the rest was still scanned).
    pub warnings: Vec<String>,
    /// Bytes scanned across all layers.
    pub scanned_bytes: u64,
    /// Layers scanned (the file and everything unpacked from it).
    pub layers: u32,
}

impl Outcome {
    pub fn is_infected(&self) -> bool {
        !self.detections.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Digests known elsewhere to be malicious, such as the CERT's threat-intelligence hashes
/// pulled from the Qalxan server: checked on every layer like hash signatures of any size,
/// after the allow list. The engine knows nothing of where they come from.
pub trait HashIntel: Send + Sync + std::fmt::Debug {
    /// Which digests to compute for it: (MD5, SHA-1, SHA-256).
    fn wants(&self) -> (bool, bool, bool);
    /// The detection name for a layer with these digests, when one is listed.
    fn lookup(
        &self,
        md5: Option<&[u8; 16]>,
        sha1: Option<&[u8; 20]>,
        sha256: Option<&[u8; 32]>,
    ) -> Option<String>;
}

/// A scanner: a database plus options; cheap to clone, shared across threads.
#[derive(Debug, Clone)]
pub struct Scanner {
    db: Arc<Database>,
    options: Arc<ScanOptions>,
    intel: Option<Arc<dyn HashIntel>>,
}

impl Scanner {
    pub fn new(db: Arc<Database>, options: ScanOptions) -> Self {
        Scanner {
            db,
            options: Arc::new(options),
            intel: None,
        }
    }

    /// The same database and intelligence with other options.
    pub fn with_options(&self, options: ScanOptions) -> Scanner {
        Scanner {
            db: self.db.clone(),
            options: Arc::new(options),
            intel: self.intel.clone(),
        }
    }

    /// Also detects what `intel` lists.
    pub fn with_intel(mut self, intel: Option<Arc<dyn HashIntel>>) -> Self {
        self.intel = intel;
        self
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    pub fn options(&self) -> &ScanOptions {
        &self.options
    }

    /// Scans a file on disk. Files over the size limit are not read (like ClamAV, they are
    /// reported only with `alert_exceeds_max`).
    pub fn scan_path(&self, path: &Path) -> Result<Outcome, ScanError> {
        let io = |source| ScanError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > self.options.limits.max_file_size {
            let mut outcome = Outcome::default();
            if self.options.alert_exceeds_max {
                outcome.detections.push(Detection {
                    name: "Heuristics.Limits.Exceeded.MaxFileSize".into(),
                    location: Vec::new(),
                });
            }
            return Ok(outcome);
        }
        let cap = self.options.limits.max_scan_size;
        if len > cap {
            return self.scan_large(file, len).map_err(io);
        }
        let mut data = Vec::with_capacity(len as usize);
        file.take(self.options.limits.max_file_size + 1)
            .read_to_end(&mut data)
            .map_err(io)?;
        Ok(self.scan_bytes(&data))
    }

    /// A file larger than one scan may read (`max_scan_size`, when `max_file_size` was raised
    /// above it): as ClamAV's MaxScanSize, its content is scanned up to the limit and the
    /// limit reported; its hash signatures still see the whole file, whose digests are
    /// computed as it streams past. Memory stays at the limit however large the file.
    fn scan_large(&self, mut file: std::fs::File, len: u64) -> std::io::Result<Outcome> {
        let cap = self.options.limits.max_scan_size;
        // The scan's clock runs from here: hashing a large file is part of its time.
        let mut ctx = self.context();
        let mut head = Vec::with_capacity(usize::try_from(cap).unwrap_or(usize::MAX));
        (&mut file).take(cap).read_to_end(&mut head)?;
        let also = self
            .intel
            .as_deref()
            .map_or((false, false, false), |i| i.wants());
        let mut hashing = StreamDigests::new(&[&self.db.hashes, &self.db.allow], len, also);
        hashing.update(&head);
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => hashing.update(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !ctx.hash_lookups(&hashing.finish(), len) {
            ctx.limit("MaxScanSize");
            ctx.top_hashed = true;
            ctx.layer(&head, 0);
        }
        Ok(ctx.finish())
    }

    fn context(&self) -> Ctx<'_> {
        Ctx {
            db: &self.db,
            intel: self.intel.as_deref(),
            options: &self.options,
            outcome: Outcome::default(),
            files: 0,
            deadline: Instant::now() + self.options.limits.max_time,
            stopped: false,
            location: Vec::new(),
            limits_hit: Vec::new(),
            top_hashed: false,
        }
    }

    /// Scans a buffer (an upload, a clamd stream).
    pub fn scan_bytes(&self, data: &[u8]) -> Outcome {
        let mut ctx = self.context();
        ctx.layer(data, 0);
        ctx.finish()
    }
}

struct Ctx<'a> {
    db: &'a Database,
    intel: Option<&'a dyn HashIntel>,
    options: &'a ScanOptions,
    outcome: Outcome,
    files: u32,
    deadline: Instant,
    /// Set once a detection ends the scan (without all-match) or a global limit is hit.
    stopped: bool,
    location: Vec<String>,
    /// Limits met on the way, as the names they are reported under.
    limits_hit: Vec<String>,
    /// The top layer is the head of a larger file whose digests were already looked up.
    top_hashed: bool,
}

/// Layer digests, computed only when some table could match.
struct Digests {
    md5: Option<[u8; 16]>,
    sha1: Option<[u8; 20]>,
    sha256: Option<[u8; 32]>,
}

/// The digests a layer of `size` bytes needs: (MD5, SHA-1, SHA-256). `also`: digests wanted
/// whatever the tables hold.
fn wanted(tables: &[&HashSet3], size: u64, also: (bool, bool, bool)) -> (bool, bool, bool) {
    (
        also.0 || tables.iter().any(|t| t.md5.wants(size)),
        also.1 || tables.iter().any(|t| t.sha1.wants(size)),
        also.2 || tables.iter().any(|t| t.sha256.wants(size)),
    )
}

/// Digests computed over a file read piece by piece.
struct StreamDigests {
    md5: Option<md5::Md5>,
    sha1: Option<sha1::Sha1>,
    sha256: Option<sha2::Sha256>,
}

impl StreamDigests {
    fn new(tables: &[&HashSet3], size: u64, also: (bool, bool, bool)) -> Self {
        let (md5, sha1, sha256) = wanted(tables, size, also);
        StreamDigests {
            md5: md5.then(md5::Md5::new),
            sha1: sha1.then(sha1::Sha1::new),
            sha256: sha256.then(sha2::Sha256::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.md5 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(bytes);
        }
    }

    fn finish(self) -> Digests {
        Digests {
            md5: self.md5.map(|h| h.finalize().into()),
            sha1: self.sha1.map(|h| h.finalize().into()),
            sha256: self.sha256.map(|h| h.finalize().into()),
        }
    }
}

impl Digests {
    fn compute(data: &[u8], tables: &[&HashSet3], also: (bool, bool, bool)) -> Self {
        let (md5, sha1, sha256) = wanted(tables, data.len() as u64, also);
        Digests {
            md5: md5.then(|| md5::Md5::digest(data).into()),
            sha1: sha1.then(|| sha1::Sha1::digest(data).into()),
            sha256: sha256.then(|| sha2::Sha256::digest(data).into()),
        }
    }

    fn lookup(&self, table: &HashSet3, size: u64) -> Option<NameId> {
        self.lookup_all(table, size).next()
    }

    /// Every kind of digest can match its own signature; all-match reports each.
    fn lookup_all<'t>(&self, table: &'t HashSet3, size: u64) -> impl Iterator<Item = NameId> + 't {
        let md5 = self.md5.and_then(|d| table.md5.get(size, &d));
        let sha1 = self.sha1.and_then(|d| table.sha1.get(size, &d));
        let sha256 = self.sha256.and_then(|d| table.sha256.get(size, &d));
        md5.into_iter().chain(sha1).chain(sha256)
    }
}

impl Ctx<'_> {
    fn detect(&mut self, name: String) {
        if !self.options.all_match && !self.outcome.detections.is_empty() {
            return;
        }
        self.outcome.detections.push(Detection {
            name,
            location: self.location.clone(),
        });
        if !self.options.all_match {
            self.stopped = true;
        }
    }

    fn detect_id(&mut self, id: NameId) {
        if let Some(name) = self.db.display_name(id) {
            self.detect(name);
        }
    }

    /// A limit was hit. Reported only if no signature matched: a real detection says more.
    fn limit(&mut self, which: &str) {
        let name = format!("Heuristics.Limits.Exceeded.{which}");
        if !self.limits_hit.contains(&name) {
            self.limits_hit.push(name);
        }
    }

    fn finish(mut self) -> Outcome {
        if self.outcome.detections.is_empty() && self.options.alert_exceeds_max {
            let keep = if self.options.all_match {
                self.limits_hit.len()
            } else {
                1
            };
            for name in self.limits_hit.into_iter().take(keep) {
                self.outcome.detections.push(Detection {
                    name,
                    location: Vec::new(),
                });
            }
        }
        self.outcome
    }

    /// The hash signatures, the allow list and the intel lists for a layer's digests; true when
    /// the layer is on the allow list (trusted, with everything inside it).
    fn hash_lookups(&mut self, digests: &Digests, size: u64) -> bool {
        if digests.lookup(&self.db.allow, size).is_some() {
            return true;
        }
        for id in digests.lookup_all(&self.db.hashes, size) {
            self.detect_id(id);
            if self.stopped {
                return false;
            }
        }
        if let Some(name) = self.intel.and_then(|i| {
            i.lookup(
                digests.md5.as_ref(),
                digests.sha1.as_ref(),
                digests.sha256.as_ref(),
            )
        }) {
            self.detect(name);
        }
        false
    }

    fn layer(&mut self, data: &[u8], depth: u32) {
        if self.stopped {
            return;
        }
        if Instant::now() > self.deadline {
            self.limit("MaxScanTime");
            self.stopped = true;
            return;
        }
        self.outcome.layers += 1;
        self.outcome.scanned_bytes += data.len() as u64;
        if self.outcome.scanned_bytes > self.options.limits.max_scan_size {
            self.limit("MaxScanSize");
            self.stopped = true;
            return;
        }
        let db = self.db;
        let size = data.len() as u64;

        if !(depth == 0 && self.top_hashed) {
            let also = self.intel.map_or((false, false, false), |i| i.wants());
            let digests = Digests::compute(data, &[&db.hashes, &db.allow], also);
            if self.hash_lookups(&digests, size) || self.stopped {
                return;
            }
        }

        let ftype = filetype::detect(data);
        let pe = if ftype == FileType::Pe {
            pe::parse(data)
        } else {
            None
        };
        if let Some(pe) = &pe {
            self.section_hashes(data, pe);
            if self.stopped {
                return;
            }
        }
        self.body(data, ftype, pe.as_ref());
        if self.stopped {
            return;
        }
        self.yara(data);
        if self.stopped {
            return;
        }

        if depth >= self.options.limits.max_depth {
            if formats::is_container(ftype) {
                self.limit("MaxRecursion");
            }
            return;
        }
        let limits = self.options.limits;
        let passwords = self.options.passwords.clone();
        let mut on_child = |child: Child| -> Flow {
            if self.stopped {
                return Flow::Stop;
            }
            self.files += 1;
            if self.files > limits.max_files {
                self.limit("MaxFiles");
                self.stopped = true;
                return Flow::Stop;
            }
            if child.exceeded {
                self.limit("MaxFileSize");
                return Flow::Continue;
            }
            self.location.push(child.name);
            self.layer(&child.data, depth + 1);
            self.location.pop();
            if self.stopped {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        let ctx = formats::Context {
            max_size: limits.max_file_size,
            passwords: &passwords,
        };
        if let Err(e) = formats::children(ftype, data, &ctx, &mut on_child) {
            let at = if self.location.is_empty() {
                String::new()
            } else {
                format!("{}: ", self.location.join("/"))
            };
            self.outcome
                .warnings
                .push(format!("{at}{}: {e}", ftype.name()));
        }
    }

    fn yara(&mut self, data: &[u8]) {
        let Some(y) = &self.db.yara else { return };
        let mut scanner = yara_x::Scanner::new(&y.rules);
        let left = self.deadline.saturating_duration_since(Instant::now());
        scanner.set_timeout(left.max(Duration::from_millis(1)));
        let found: Vec<NameId> = match scanner.scan(data) {
            Ok(results) => results
                .matching_rules()
                .filter_map(|r| y.name_of(r.namespace(), r.identifier()))
                .collect(),
            Err(yara_x::errors::ScanError::Timeout) => {
                self.limit("MaxScanTime");
                self.stopped = true;
                return;
            }
            Err(e) => {
                self.outcome.warnings.push(format!("yara: {e}"));
                return;
            }
        };
        for id in found {
            self.detect_id(id);
            if self.stopped {
                return;
            }
        }
    }

    fn section_hashes(&mut self, data: &[u8], pe: &PeInfo) {
        if self.db.sections.is_empty() {
            return;
        }
        for s in &pe.sections {
            let (start, end) = (s.raw_offset as usize, (s.raw_offset + s.raw_size) as usize);
            let Some(bytes) = data.get(start..end) else {
                continue;
            };
            let d = Digests::compute(bytes, &[&self.db.sections], (false, false, false));
            if let Some(id) = d.lookup(&self.db.sections, s.raw_size) {
                self.detect_id(id);
                if self.stopped {
                    return;
                }
            }
        }
    }

    fn body(&mut self, data: &[u8], ftype: FileType, pe: Option<&PeInfo>) {
        let db = self.db;
        let len = data.len() as u64;
        let mut found_bodies: Vec<NameId> = Vec::new();
        let mut counts: rustc_hash::FxHashMap<u32, Vec<u32>> = Default::default();
        let mut last_start: rustc_hash::FxHashMap<u32, usize> = Default::default();
        let mut memos: rustc_hash::FxHashMap<u32, crate::sigs::pattern::Memo> = Default::default();
        // Where the subsignatures that byte compares read from matched: (signature, sub).
        let mut positions: rustc_hash::FxHashMap<(u32, u32), Vec<usize>> = Default::default();
        let all_match = self.options.all_match;
        let mut stop = false;

        let mut consider =
            |pid: u32, anchor_pos: usize, found_bodies: &mut Vec<NameId>, stop: &mut bool| {
                let p = &db.patterns[pid as usize];
                if !ftype.is_target(p.target) {
                    return;
                }
                if let Owner::Body { name } = p.owner {
                    if found_bodies.contains(&name) {
                        return;
                    }
                }
                let Some(range) = p.offset.resolve(len, pe) else {
                    return;
                };
                let mut hit = None;
                let memo = memos.entry(pid).or_default();
                p.pattern
                    .verify_at(data, anchor_pos, range, memo, &mut |start| {
                        if p.fullword && !is_word_boundary(data, start) {
                            return true;
                        }
                        hit = Some(start);
                        false
                    });
                let Some(start) = hit else { return };
                match p.owner {
                    Owner::Body { name } => {
                        found_bodies.push(name);
                        if !all_match && db.display_name(name).is_some() {
                            *stop = true;
                        }
                    }
                    Owner::Logical { sig, sub } => {
                        if last_start.get(&pid) == Some(&start) {
                            return;
                        }
                        last_start.insert(pid, start);
                        let lsig = &db.logicals[sig as usize];
                        let c = counts
                            .entry(sig)
                            .or_insert_with(|| vec![0; lsig.subsigs as usize]);
                        c[sub as usize] += 1;
                        note_trigger(&mut positions, lsig, sig, sub, start);
                    }
                }
            };

        for anchors in [&db.anchors, &db.anchors_nocase].into_iter().flatten() {
            for m in anchors.automaton.find_overlapping_iter(data) {
                for &pid in &anchors.owners[m.pattern().as_usize()] {
                    consider(pid, m.start(), &mut found_bodies, &mut stop);
                    if stop {
                        break;
                    }
                }
                if stop {
                    break;
                }
            }
            if stop {
                break;
            }
        }
        if !stop {
            for &pid in &db.unanchored {
                let p = &db.patterns[pid as usize];
                if !ftype.is_target(p.target) {
                    continue;
                }
                let Some((lo, hi)) = p.offset.resolve(len, pe) else {
                    continue;
                };
                let hi = hi.min(len);
                let mut pos = lo;
                while pos <= hi {
                    if p.pattern.matches_at(data, pos as usize) {
                        match p.owner {
                            Owner::Body { name } => {
                                if !found_bodies.contains(&name) {
                                    found_bodies.push(name);
                                }
                                break;
                            }
                            Owner::Logical { sig, sub } => {
                                let lsig = &db.logicals[sig as usize];
                                let c = counts
                                    .entry(sig)
                                    .or_insert_with(|| vec![0; lsig.subsigs as usize]);
                                c[sub as usize] += 1;
                                note_trigger(&mut positions, lsig, sig, sub, pos as usize);
                            }
                        }
                    }
                    pos += 1;
                }
            }
        }
        for name in found_bodies {
            self.detect_id(name);
            if self.stopped {
                return;
            }
        }
        let mut sigs: Vec<(&u32, &Vec<u32>)> = counts.iter().collect();
        sigs.sort_by_key(|(s, _)| **s);
        for (&sig, c) in sigs {
            let lsig = &db.logicals[sig as usize];
            if !ftype.is_target(lsig.desc.target.unwrap_or(crate::filetype::Target::Any)) {
                continue;
            }
            if lsig
                .desc
                .file_size
                .is_some_and(|(lo, hi)| len < lo || len > hi)
            {
                continue;
            }
            if let Some((lo, hi)) = lsig.desc.sections {
                let n = pe.map_or(0, |p| p.sections.len() as u64);
                if pe.is_none() || n < lo || n > hi {
                    continue;
                }
            }
            if let Some((lo, hi)) = lsig.desc.entry_point {
                match pe.and_then(|p| p.entry_offset) {
                    Some(ep) if ep >= lo && ep <= hi => {}
                    _ => continue,
                }
            }
            let mut with_pcre;
            let c = if lsig.pcres.is_empty() && lsig.byte_compares.is_empty() {
                c
            } else {
                with_pcre = c.clone();
                // Byte compares first: PCRE triggers may name them.
                for (sub, b) in &lsig.byte_compares {
                    let starts = positions
                        .get(&(sig, b.trigger))
                        .map_or(&[][..], Vec::as_slice);
                    with_pcre[*sub as usize] =
                        u32::from(starts.iter().any(|&start| b.holds_at(data, start)));
                }
                for p in &lsig.pcres {
                    if !p.trigger.eval(&with_pcre) {
                        continue;
                    }
                    let Some((lo, hi)) = p.offset.resolve(len, pe) else {
                        continue;
                    };
                    let from = (lo as usize).min(data.len());
                    let mut n = 0u32;
                    for m in p.regex.find_iter(&data[from..]).take(255) {
                        match m {
                            Ok(m) if (from + m.start()) as u64 <= hi => n += 1,
                            Ok(_) => break,
                            // Match limits hit on hostile input: count what was found.
                            Err(_) => break,
                        }
                    }
                    with_pcre[p.sub as usize] = n;
                }
                &with_pcre
            };
            if lsig.expr.eval(c) {
                self.detect_id(lsig.name);
                if self.stopped {
                    return;
                }
            }
        }
    }
}

/// Most match starts of one subsignature a byte compare reads from; ClamAV keeps a bounded
/// list too, and a hostile file repeating a pattern must not grow it without end.
const MAX_TRIGGER_STARTS: usize = 64;

fn note_trigger(
    positions: &mut rustc_hash::FxHashMap<(u32, u32), Vec<usize>>,
    lsig: &crate::sigs::LogicalSig,
    sig: u32,
    sub: u32,
    start: usize,
) {
    if sub < 64 && lsig.triggers & (1 << sub) != 0 {
        let starts = positions.entry((sig, sub)).or_default();
        if starts.len() < MAX_TRIGGER_STARTS {
            starts.push(start);
        }
    }
}

fn is_word_boundary(data: &[u8], start: usize) -> bool {
    start == 0 || !data[start - 1].is_ascii_alphanumeric()
}
