//! `qalxan scan` (clamscan's interface) and `qalxan quarantine`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use qalxan_scan::quarantine::Quarantine;
use qalxan_scan::{Database, LoadOptions, Outcome, ScanOptions, Scanner};

/// ClamAV's default database folder, used when no `-d` is given.
pub const DEFAULT_DB_DIR: &str = "/var/lib/clamav";

#[derive(Args, Clone)]
pub struct DbArgs {
    /// Signature database file or folder (.hdb .hsb .mdb .msb .ndb .ldb .fp .sfp .ign2 .cvd .cld);
    /// repeatable [default: /var/lib/clamav when it exists].
    #[arg(short = 'd', long = "database", value_name = "FILE_OR_DIR")]
    pub databases: Vec<PathBuf>,
    /// Skip malformed signature lines (counting them) instead of refusing the database.
    #[arg(long)]
    pub lenient: bool,
    /// Also load potentially-unwanted-application signatures (.hdu .ndu ...).
    #[arg(long)]
    pub detect_pua: bool,
}

impl DbArgs {
    pub fn load(&self) -> Result<Database> {
        let mut paths = self.databases.clone();
        if paths.is_empty() && Path::new(DEFAULT_DB_DIR).is_dir() {
            paths.push(PathBuf::from(DEFAULT_DB_DIR));
        }
        let db = Database::load(
            &paths,
            LoadOptions {
                lenient: self.lenient,
                pua: self.detect_pua,
            },
        )?;
        let r = db.report();
        if r.skipped_malformed > 0 || r.unsupported > 0 {
            eprintln!(
                "LibQalxan Warning: skipped {} malformed and {} unsupported signature(s); first: {}",
                r.skipped_malformed,
                r.unsupported,
                r.warnings.first().map(String::as_str).unwrap_or("")
            );
        }
        Ok(db)
    }
}

/// Where detections are reported (the dashboard's "infected files stopped").
#[derive(Args, Clone)]
pub struct ReportArgs {
    /// Qalxan server to report detections to, e.g. https://cert.example; the sensor token is
    /// read from QALXAN_SCANNER_TOKEN.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The institution whose files these are, when the token is not tied to one.
    #[arg(long)]
    institution: Option<i64>,
    /// With --server, also detect the file hashes of the CERT's threat intelligence (its
    /// blocklist): clamd pulls them every this many seconds, scan once; 0: do not.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    intel_every: u64,
}

impl ReportArgs {
    fn link(&self) -> Result<Option<qalxan_client::ServerLink>> {
        let Some(url) = &self.server else {
            return Ok(None);
        };
        let token = std::env::var("QALXAN_SCANNER_TOKEN").context(
            "--server needs the sensor token in the QALXAN_SCANNER_TOKEN environment variable",
        )?;
        Ok(Some(qalxan_client::ServerLink {
            url: url.clone(),
            token,
            institution_id: self.institution,
        }))
    }
}

/// A detection as an event. A hash from threat intelligence names its indicator, which the
/// server counts as a sighting.
fn infected_event(file: &str, signature: &str, scanner: &str) -> serde_json::Value {
    let mut e = serde_json::json!({ "file": file, "signature": signature, "scanner": scanner });
    if let Some(hex) = signature
        .strip_prefix(INTEL_PREFIX)
        .and_then(|rest| rest.split_once('.'))
        .map(|(_, hex)| hex)
    {
        e["indicator"] = hex.into();
    }
    e
}

/// Detection names of threat-intelligence hashes: `Qalxan.Intel.SHA256.<hex>`.
const INTEL_PREFIX: &str = "Qalxan.Intel.";

/// Where the CERT's hash indicators come from: kept fresh (clamd) or pulled once (scan).
enum IntelSource {
    Feed(qalxan_client::ListFeed),
    Fixed(Arc<qalxan_intel::compiled::Lists>),
}

/// The CERT's hash indicators as the scan engine asks for them.
struct IntelHashes(IntelSource);

impl std::fmt::Debug for IntelHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntelHashes")
    }
}

impl IntelHashes {
    fn lists(&self) -> Arc<qalxan_intel::compiled::Lists> {
        match &self.0 {
            IntelSource::Feed(feed) => feed.current(),
            IntelSource::Fixed(lists) => lists.clone(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl qalxan_scan::HashIntel for IntelHashes {
    fn wants(&self) -> (bool, bool, bool) {
        self.lists().hash_kinds()
    }

    fn lookup(
        &self,
        md5: Option<&[u8; 16]>,
        sha1: Option<&[u8; 20]>,
        sha256: Option<&[u8; 32]>,
    ) -> Option<String> {
        let lists = self.lists();
        if let Some(d) = sha256.filter(|d| lists.contains_sha256(d)) {
            return Some(format!("{INTEL_PREFIX}SHA256.{}", hex(d)));
        }
        if let Some(d) = sha1.filter(|d| lists.contains_sha1(d)) {
            return Some(format!("{INTEL_PREFIX}SHA1.{}", hex(d)));
        }
        md5.filter(|d| lists.contains_md5(d))
            .map(|d| format!("{INTEL_PREFIX}MD5.{}", hex(d)))
    }
}

#[derive(Args, Clone)]
pub struct LimitArgs {
    /// Report every matching signature, not only the first.
    #[arg(short = 'z', long)]
    pub allmatch: bool,
    /// Deepest container nesting opened.
    #[arg(long, default_value_t = 17)]
    pub max_recursion: u32,
    /// Most files unpacked from one scanned file.
    #[arg(long, default_value_t = 10_000)]
    pub max_files: u32,
    /// Largest file (or unpacked member) scanned, in bytes.
    #[arg(long, default_value_t = 100 << 20)]
    pub max_filesize: u64,
    /// Most bytes scanned per file, unpacked members included.
    #[arg(long, default_value_t = 400 << 20)]
    pub max_scansize: u64,
    /// Most seconds spent on one file.
    #[arg(long, default_value_t = 120)]
    pub max_scantime: u64,
    /// Do not report files whose scan stopped at a limit (Heuristics.Limits.Exceeded.*).
    #[arg(long)]
    pub no_alert_exceeds_max: bool,
    /// Password tried on encrypted archives (repeatable) [default: infected].
    #[arg(long = "archive-password", value_name = "PASSWORD")]
    pub passwords: Vec<String>,
}

impl LimitArgs {
    pub fn options(&self) -> ScanOptions {
        ScanOptions {
            limits: qalxan_scan::Limits {
                max_depth: self.max_recursion,
                max_files: self.max_files,
                max_file_size: self.max_filesize,
                max_scan_size: self.max_scansize,
                max_time: Duration::from_secs(self.max_scantime),
            },
            all_match: self.allmatch,
            alert_exceeds_max: !self.no_alert_exceeds_max,
            passwords: if self.passwords.is_empty() {
                vec!["infected".into()]
            } else {
                self.passwords.clone()
            },
        }
    }
}

#[derive(Args)]
pub struct ScanArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// Scan folders recursively.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Print one JSON object per file instead of clamscan's lines.
    #[arg(long)]
    json: bool,
    /// Print only infected files.
    #[arg(short = 'i', long)]
    infected: bool,
    /// Do not print the summary.
    #[arg(long)]
    no_summary: bool,
    /// Move infected files into this quarantine folder.
    #[arg(long = "move", value_name = "DIR")]
    move_to: Option<PathBuf>,
    /// Scanning threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    report: ReportArgs,
    /// Files and folders to scan.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

enum Item {
    File(PathBuf),
    Error(PathBuf, String),
}

fn collect(paths: &[PathBuf], recursive: bool, dirs: &mut usize) -> Vec<Item> {
    let mut out = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                *dirs += 1;
                let walker = walkdir::WalkDir::new(p).min_depth(1).sort_by_file_name();
                let walker = if recursive {
                    walker
                } else {
                    walker.max_depth(1)
                };
                for entry in walker {
                    match entry {
                        Ok(e) if e.file_type().is_file() => out.push(Item::File(e.into_path())),
                        Ok(e) if e.file_type().is_dir() => *dirs += 1,
                        Ok(_) => {}
                        Err(e) => out.push(Item::Error(
                            e.path().map(Path::to_path_buf).unwrap_or_else(|| p.clone()),
                            e.to_string(),
                        )),
                    }
                }
            }
            Ok(_) => out.push(Item::File(p.clone())),
            Err(e) => out.push(Item::Error(p.clone(), e.to_string())),
        }
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Runs `qalxan scan`; the exit code is clamscan's: 0 clean, 1 found, 2 error.
pub fn scan(args: ScanArgs) -> Result<u8> {
    let started = Instant::now();
    let db = Arc::new(args.db.load()?);
    let known = db.signature_count();
    let link = args.report.link()?;
    let intel: Option<Arc<dyn qalxan_scan::HashIntel>> = match &link {
        Some(link) if args.report.intel_every > 0 => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime that pulls the blocklist")?;
            let lists = runtime
                .block_on(qalxan_client::fetch_lists(link))
                .map_err(|e| anyhow::anyhow!("pulling the blocklist from {}: {e}", link.url))?;
            Some(Arc::new(IntelHashes(IntelSource::Fixed(Arc::new(lists)))))
        }
        _ => None,
    };
    let scanner = Scanner::new(db, args.limits.options()).with_intel(intel);
    let quarantine = match &args.move_to {
        Some(dir) => Some(
            Quarantine::open(dir)
                .with_context(|| format!("opening quarantine {}", dir.display()))?,
        ),
        None => None,
    };
    let mut reported: Vec<(String, String)> = Vec::new();
    let mut dirs = 0;
    let items = collect(&args.paths, args.recursive, &mut dirs);
    let progress = (!args.json && std::io::stderr().is_terminal() && items.len() > 1).then(|| {
        let bar = indicatif::ProgressBar::new(items.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });

    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .context("starting scanning threads")?;
    let (tx, rx) = mpsc::channel::<(usize, Result<Outcome, String>)>();
    let files: Vec<(usize, PathBuf)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| match it {
            Item::File(p) => Some((i, p.clone())),
            Item::Error(..) => None,
        })
        .collect();
    let worker_scanner = scanner.clone();
    pool.spawn(move || {
        use rayon::prelude::*;
        files.into_par_iter().for_each_with(tx, |tx, (i, p)| {
            let r = worker_scanner.scan_path(&p).map_err(|e| match e {
                qalxan_scan::ScanError::Io { source, .. } => source.to_string(),
            });
            let _ = tx.send((i, r));
        });
    });

    // Print in the order the files were listed, whatever order the threads finish in.
    let mut pending: std::collections::BTreeMap<usize, Result<Outcome, String>> =
        Default::default();
    let mut next = 0;
    let (mut scanned, mut infected, mut errors, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut emit =
        |i: usize, r: Option<Result<Outcome, String>>, out: &mut dyn Write| -> Result<()> {
            let (path, result) = match (&items[i], r) {
                (Item::Error(p, e), _) => (p, Err(e.clone())),
                (Item::File(p), Some(r)) => (p, r),
                (Item::File(p), None) => (p, Err("not scanned".into())),
            };
            let shown = path.display().to_string();
            match result {
                Err(e) => {
                    errors += 1;
                    if args.json {
                        let v = serde_json::json!({"file": shown, "status": "error", "error": e});
                        writeln!(out, "{v}")?;
                    } else {
                        writeln!(out, "{shown}: {e} ERROR")?;
                    }
                }
                Ok(o) => {
                    scanned += 1;
                    bytes += o.scanned_bytes;
                    let mut quarantined = None;
                    if o.is_infected() {
                        infected += 1;
                        if link.is_some() {
                            reported.push((shown.clone(), o.detections[0].name.clone()));
                        }
                        if let Some(q) = &quarantine {
                            match q.store(path, &o.detections[0].name) {
                                Ok(entry) => quarantined = Some(entry.id),
                                Err(e) => {
                                    errors += 1;
                                    eprintln!("{shown}: cannot quarantine: {e}");
                                }
                            }
                        }
                    }
                    if args.json {
                        let v = serde_json::json!({
                            "file": shown,
                            "status": if o.is_infected() { "infected" } else { "clean" },
                            "detections": o.detections,
                            "warnings": o.warnings,
                            "scanned_bytes": o.scanned_bytes,
                            "quarantine_id": quarantined,
                        });
                        writeln!(out, "{v}")?;
                    } else {
                        for d in &o.detections {
                            writeln!(out, "{shown}: {} FOUND", d.name)?;
                        }
                        if !o.is_infected() && !args.infected {
                            writeln!(out, "{shown}: OK")?;
                        }
                        if let Some(id) = quarantined {
                            writeln!(out, "{shown}: moved to quarantine as {id}")?;
                        }
                        for w in &o.warnings {
                            eprintln!("LibQalxan Warning: {shown}: {w}");
                        }
                    }
                }
            }
            Ok(())
        };
    for (i, it) in items.iter().enumerate() {
        if matches!(it, Item::Error(..)) {
            pending.insert(i, Err(String::new()));
        }
    }
    while next < items.len() {
        if let Some(r) = pending.remove(&next) {
            emit(next, Some(r), &mut out)?;
            next += 1;
            if let Some(bar) = &progress {
                bar.inc(1);
            }
            continue;
        }
        match rx.recv() {
            Ok((i, r)) => {
                pending.insert(i, r);
            }
            Err(_) => {
                emit(next, None, &mut out)?;
                next += 1;
            }
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if !args.no_summary && !args.json {
        let t = started.elapsed();
        writeln!(out, "\n----------- SCAN SUMMARY -----------")?;
        writeln!(out, "Known viruses: {known}")?;
        writeln!(out, "Engine version: qalxan {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(out, "Scanned directories: {dirs}")?;
        writeln!(out, "Scanned files: {scanned}")?;
        writeln!(out, "Infected files: {infected}")?;
        if errors > 0 {
            writeln!(out, "Total errors: {errors}")?;
        }
        writeln!(out, "Data scanned: {}", mib(bytes))?;
        writeln!(out, "Time: {:.3} sec", t.as_secs_f64())?;
    }
    out.flush()?;
    drop(out);
    if let Some(link) = link {
        if !reported.is_empty() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the reporting runtime")?;
            let sent = runtime.block_on(async {
                let sink = qalxan_client::EventSink::start(link);
                for (file, name) in &reported {
                    sink.report(
                        "scan.infected",
                        "high",
                        infected_event(file, name, "qalxan scan"),
                    );
                }
                sink.flush(Duration::from_secs(30)).await
            });
            if let Err(e) = sent {
                eprintln!("warning: detections not reported: {e}");
            }
        }
    }
    Ok(if errors > 0 {
        2
    } else if infected > 0 {
        1
    } else {
        0
    })
}

#[derive(Args)]
pub struct ClamdArgs {
    /// TCP address to listen on [default: 127.0.0.1:3310 when no --socket is given].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Unix socket to listen on (needed for FILDES).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// Largest INSTREAM accepted, in bytes (clamd's StreamMaxLength).
    #[arg(long, default_value_t = 25 << 20)]
    stream_max: u64,
    /// Seconds to wait for a command or a stream chunk.
    #[arg(long, default_value_t = 120)]
    read_timeout: u64,
    #[command(flatten)]
    report: ReportArgs,
}

/// Runs `qalxan clamd` until SHUTDOWN or Ctrl-C.
pub async fn clamd(args: ClamdArgs) -> Result<()> {
    let mut databases = args.db.databases.clone();
    if databases.is_empty() && Path::new(DEFAULT_DB_DIR).is_dir() {
        databases.push(PathBuf::from(DEFAULT_DB_DIR));
    }
    let tcp = match (args.listen, &args.socket) {
        (None, None) => Some(std::net::SocketAddr::from(([127, 0, 0, 1], 3310))),
        (l, _) => l,
    };
    let link = args.report.link()?;
    let intel: Option<Arc<dyn qalxan_scan::HashIntel>> = match &link {
        Some(link) if args.report.intel_every > 0 => {
            let feed = qalxan_client::ListFeed::start(
                link.clone(),
                Duration::from_secs(args.report.intel_every),
            );
            Some(Arc::new(IntelHashes(IntelSource::Feed(feed))))
        }
        _ => None,
    };
    let config = qalxan_clamd::Config {
        intel,
        tcp,
        unix: args.socket.clone(),
        databases,
        load: LoadOptions {
            lenient: args.db.lenient,
            pua: args.db.detect_pua,
        },
        scan: args.limits.options(),
        stream_max: args.stream_max,
        read_timeout: args.read_timeout,
    };
    let hook: Option<qalxan_clamd::DetectionHook> = link.map(|link| {
        let sink = qalxan_client::EventSink::start(link);
        let hook: qalxan_clamd::DetectionHook =
            std::sync::Arc::new(move |subject: &str, name: &str| {
                sink.report(
                    "scan.infected",
                    "high",
                    infected_event(subject, name, "qalxan clamd"),
                );
            });
        hook
    });
    let daemon = tokio::task::spawn_blocking(move || qalxan_clamd::Daemon::new(config, hook))
        .await
        .context("loading databases")??;
    tracing::info!(
        signatures = daemon.scanner().database().signature_count(),
        "databases loaded"
    );
    let stopper = daemon.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stopper.shutdown();
        }
    });
    daemon.serve().await?;
    Ok(())
}

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined files.
    List {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Put a quarantined file back (where it was, or at --to).
    Restore {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        id: String,
        #[arg(long)]
        to: Option<PathBuf>,
        /// Overwrite a file that is now at the destination.
        #[arg(long)]
        force: bool,
    },
    /// Delete a quarantined file for good.
    Delete {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        id: String,
    },
}

pub fn quarantine(cmd: QuarantineCommand) -> Result<()> {
    match cmd {
        QuarantineCommand::List { dir, json } => {
            let q = Quarantine::open(&dir)?;
            for e in q.list()? {
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    println!(
                        "{}  {}  {}  {}  {}",
                        e.id,
                        e.quarantined_at,
                        e.signature,
                        e.size,
                        e.original_path.display()
                    );
                }
            }
        }
        QuarantineCommand::Restore { dir, id, to, force } => {
            let q = Quarantine::open(&dir)?;
            let path = q.restore(&id, to.as_deref(), force)?;
            println!("restored {id} to {}", path.display());
        }
        QuarantineCommand::Delete { dir, id } => {
            Quarantine::open(&dir)?.delete(&id)?;
            println!("deleted {id}");
        }
    }
    Ok(())
}
