//! `qalxan intel`: threat intelligence from the server's shell: import files, folders, MISP
//! feeds and URLs; export; match a value; check a STIX pattern; pull from a partner's TAXII
//! server; print the blocklist and check a file of values against it.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use qalxan_core::{InstitutionId, Tlp};
use qalxan_intel::compiled::Lists;
use qalxan_intel::Import;
use qalxan_store::{Actor, Store, CERT_COLLECTION};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum IntelCommand {
    /// Import indicators: STIX 2.1 bundles, MISP events, MISP feeds (a folder or URL with
    /// manifest.json), CSV (type,value,...) or plain lists (one value per line).
    Import(ImportArgs),
    /// Export indicators as a STIX 2.1 bundle, a MISP event or CSV.
    Export {
        /// stix, misp or csv.
        #[arg(long, default_value = "stix")]
        format: String,
        /// Only indicators up to this TLP (e.g. green to share with partners).
        #[arg(long)]
        tlp: Option<String>,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Look a value up: the indicators that match it exactly or cover it. Exit 0 when one
    /// does, 1 when none does (as grep).
    Match {
        value: String,
        /// The value's type (guessed when absent).
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check a STIX 2.1 pattern: prints `valid` (exit 0) or the error with its column (exit 1).
    PatternCheck { pattern: String },
    /// Pull a collection from a partner's TAXII 2.1 server and import it.
    Pull {
        /// The API root, e.g. https://cert.partner.example/taxii2/api/
        url: String,
        /// The collection's id.
        #[arg(long)]
        collection: String,
        /// Only objects added after this time (RFC 3339).
        #[arg(long)]
        added_after: Option<String>,
        /// TLP for objects the partner did not mark.
        #[arg(long, default_value = "amber")]
        tlp: String,
        /// The partner's API token (else QALXAN_TAXII_TOKEN).
        #[arg(long, env = "QALXAN_TAXII_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Read e-mail messages (.eml, as received): list the senders, relays, links and
    /// attachments each carries, with the indicators they match; each match counts as a
    /// sighting. Exit 0 when one matches, 1 when none does (as grep).
    Mail {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The institution that received them.
        #[arg(long)]
        institution: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Print the blocklist the gateway and scanners enforce.
    Lists,
    /// Check many values (one per line: addresses, domains, URLs, hashes, e-mail addresses
    /// from a log or a report) against the blocklist; prints those it blocks as `kind value`.
    /// Exit 0 when one is blocked, 1 when none is (as grep).
    Check {
        /// The values' file; `-` or nothing for standard input.
        file: Option<PathBuf>,
        /// A blocklist in the text form (`qalxan intel lists`, what gateways pull) instead of
        /// the store's.
        #[arg(long)]
        lists: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct ImportArgs {
    /// Files, folders or http(s) URLs.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Who the indicators are from (default: the file's own organisation, else the file name).
    #[arg(long)]
    pub source: Option<String>,
    /// TLP for indicators the input does not mark.
    #[arg(long, default_value = "amber")]
    pub tlp: String,
    /// Show what would change, store nothing.
    #[arg(long)]
    pub preview: bool,
}

/// Commands that need no database.
pub fn pattern_check(pattern: &str) -> u8 {
    match qalxan_intel::Pattern::parse(pattern) {
        Ok(_) => {
            println!("valid");
            0
        }
        Err(e) => {
            println!("invalid: {e}");
            1
        }
    }
}

pub async fn run(store: &Store, cmd: IntelCommand) -> Result<u8> {
    match cmd {
        IntelCommand::Import(args) => import(store, args).await,
        IntelCommand::Export {
            format,
            tlp,
            output,
        } => {
            let (_, text) = qalxan_server::api::intel::export_text(
                store,
                Tlp::Red,
                Some(&format),
                tlp.as_deref(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => write_stdout(&text)?,
            }
            Ok(0)
        }
        IntelCommand::Match { value, kind, json } => {
            let ob = match kind {
                Some(k) => qalxan_intel::Observable::new(k.parse()?, &value)?,
                None => qalxan_intel::Observable::guess(&value)?,
            };
            let matches = store.match_indicator(&ob).await?;
            let warn = qalxan_intel::warninglist::check(&ob);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"type": ob.kind, "value": ob.value, "warninglist": warn, "matches": matches})
                );
            } else {
                println!(
                    "{} {}{}",
                    ob.kind,
                    ob.value,
                    warn.map(|w| format!(" (warninglist: {w})"))
                        .unwrap_or_default()
                );
                if matches.is_empty() {
                    println!("no indicator matches");
                }
                for m in &matches {
                    println!(
                        "  #{} {} {} {} confidence {} {} sources: {}{}",
                        m.id,
                        m.kind,
                        m.value,
                        m.tlp,
                        m.confidence,
                        if m.blocking {
                            "blocking"
                        } else {
                            "not blocking"
                        },
                        m.sources.join(", "),
                        if m.sightings > 0 {
                            format!(" sightings: {}", m.sightings)
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(if matches.is_empty() { 1 } else { 0 })
        }
        IntelCommand::PatternCheck { pattern } => Ok(pattern_check(&pattern)),
        IntelCommand::Pull {
            url,
            collection,
            added_after,
            tlp,
            token,
        } => pull(store, &url, &collection, added_after, &tlp, token).await,
        IntelCommand::Mail {
            files,
            institution,
            json,
        } => mail(store, &files, institution.map(InstitutionId), json).await,
        IntelCommand::Lists => {
            let (version, items) = store.blocklist().await?;
            write_stdout(&Lists::to_text(&items, &version))?;
            Ok(0)
        }
        IntelCommand::Check { file, lists } => {
            let lists = match lists {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Lists::from_text(&text).with_context(|| path.display().to_string())?
                }
                None => Lists::build(&store.blocklist().await?.1),
            };
            tokio::task::spawn_blocking(move || check(&lists, file.as_deref())).await?
        }
    }
}

/// `intel check`: the values of a file against the lists, in batches so that lookups in a
/// large list overlap their cache misses ([`Lists::matches_each`]). Lines that are no
/// indicator (comments, free text) are skipped and counted.
fn check(lists: &Lists, file: Option<&Path>) -> Result<u8> {
    use std::io::BufRead;
    let input: Box<dyn BufRead> = match file {
        Some(p) if p != Path::new("-") => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    let name = file.map_or("standard input".into(), |p| p.display().to_string());
    let mut counts = CheckCounts::default();
    match check_lines(lists, input, &mut counts) {
        Err(CheckError::Read(n, e)) => {
            return Err(anyhow::Error::new(e).context(format!("{name}: line {n}")))
        }
        Err(CheckError::Write(e)) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e.into())
        }
        _ => {}
    }
    eprintln!(
        "{} values checked against {} list entries: {} blocked, {} not indicators",
        counts.read,
        lists.len(),
        counts.blocked,
        counts.skipped
    );
    Ok(if counts.blocked > 0 { 0 } else { 1 })
}

#[derive(Default)]
struct CheckCounts {
    read: u64,
    skipped: u64,
    blocked: u64,
}

enum CheckError {
    Read(usize, std::io::Error),
    Write(std::io::Error),
}

fn check_lines(
    lists: &Lists,
    input: impl std::io::BufRead,
    counts: &mut CheckCounts,
) -> std::result::Result<(), CheckError> {
    use std::io::Write;
    const BATCH: usize = 4096;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut batch = Vec::with_capacity(BATCH);
    let mut emit = |batch: &mut Vec<qalxan_intel::Observable>, counts: &mut CheckCounts| {
        for (o, hit) in batch.iter().zip(lists.matches_each(batch)) {
            if hit {
                counts.blocked += 1;
                writeln!(out, "{} {}", o.kind, o.value).map_err(CheckError::Write)?;
            }
        }
        batch.clear();
        Ok(())
    };
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| CheckError::Read(n + 1, e))?;
        let value = line.trim();
        if value.is_empty() || value.starts_with('#') {
            continue;
        }
        counts.read += 1;
        match qalxan_intel::Observable::guess(value) {
            Ok(o) => batch.push(o),
            Err(_) => counts.skipped += 1,
        }
        if batch.len() == BATCH {
            emit(&mut batch, counts)?;
        }
    }
    emit(&mut batch, counts)?;
    out.flush().map_err(CheckError::Write)
}

/// Writes to standard output; a closed pipe (`| head`) ends the output quietly.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Files a folder import reads: feeds' formats, not READMEs and licences beside them.
fn importable(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "json" | "csv" | "txt" | "lst" | "list"
        )
    })
}

fn tlp_arg(t: &str) -> Result<Tlp> {
    Tlp::parse_lenient(t).map_err(|e| anyhow::anyhow!("--tlp: {e}"))
}

/// The documents one input names: a file, every file of a folder (a MISP feed's events when it
/// has manifest.json), or a URL (with its events when it is a feed's manifest).
async fn documents(input: &str, client: &reqwest::Client) -> Result<Vec<(String, Vec<u8>)>> {
    if input.starts_with("http://") || input.starts_with("https://") {
        return Ok(qalxan_server::feeds::url_documents(client, input).await?);
    }
    let path = Path::new(input);
    if path.is_dir() {
        let manifest_path = path.join("manifest.json");
        if manifest_path.is_file() {
            let data = std::fs::read(&manifest_path)
                .with_context(|| format!("reading {}", manifest_path.display()))?;
            let uuids = manifest(&data).with_context(|| {
                format!("{}: not a MISP feed manifest", manifest_path.display())
            })?;
            return uuids
                .into_iter()
                .map(|u| {
                    let p = path.join(format!("{u}.json"));
                    std::fs::read(&p)
                        .with_context(|| {
                            format!("reading {} (listed in manifest.json)", p.display())
                        })
                        .map(|d| (p.display().to_string(), d))
                })
                .collect();
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading folder {}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && importable(p))
            .collect();
        files.sort();
        return files
            .into_iter()
            .map(|p| {
                std::fs::read(&p)
                    .with_context(|| format!("reading {}", p.display()))
                    .map(|d| (p.display().to_string(), d))
            })
            .collect();
    }
    let data = std::fs::read(path).with_context(|| format!("reading {input}"))?;
    Ok(vec![(input.to_owned(), data)])
}

fn manifest(data: &[u8]) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    qalxan_intel::misp::manifest_events(&v)
}

async fn import(store: &Store, args: ImportArgs) -> Result<u8> {
    let tlp = tlp_arg(&args.tlp)?;
    let client = qalxan_server::feeds::client()?;
    let mut failed = false;
    for input in &args.inputs {
        for (name, data) in documents(input, &client).await? {
            let source = args.source.clone().unwrap_or_else(|| {
                Path::new(&name)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or(name.clone())
            });
            let parsed: Import = match qalxan_intel::import_any(&data, &source, tlp) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    failed = true;
                    continue;
                }
            };
            for s in &parsed.skipped {
                eprintln!("{name}: skipped {s}");
            }
            let blocking = parsed.indicators.iter().filter(|i| i.blocking).count();
            let warned = parsed
                .indicators
                .iter()
                .filter(|i| i.warninglist.is_some())
                .count();
            if args.preview {
                let pairs: Vec<_> = parsed
                    .indicators
                    .iter()
                    .map(|i| (i.kind, i.value.clone()))
                    .collect();
                let existing = store.existing_indicators(&pairs).await?;
                let mut distinct = pairs.clone();
                distinct.sort();
                distinct.dedup();
                let known = distinct.iter().filter(|p| existing.contains(*p)).count();
                println!(
                    "{name}: would add {} new, merge {known} known; {} read, {blocking} blocking, {warned} on warninglists, {} STIX objects, {} skipped",
                    distinct.len() - known,
                    parsed.indicators.len(),
                    parsed.objects.len(),
                    parsed.skipped.len()
                );
                continue;
            }
            let summary = store
                .import_intel(
                    &Actor::cli(),
                    &name,
                    &parsed.indicators,
                    &parsed.objects,
                    CERT_COLLECTION,
                )
                .await?;
            println!(
                "{name}: {} added, {} merged, {} STIX objects stored; {blocking} blocking, {warned} on warninglists, {} skipped",
                summary.added,
                summary.updated,
                summary.objects,
                parsed.skipped.len()
            );
        }
    }
    Ok(if failed { 2 } else { 0 })
}

/// `intel mail`: each message's observables, matched and counted as sightings.
async fn mail(
    store: &Store,
    files: &[PathBuf],
    institution: Option<InstitutionId>,
    json: bool,
) -> Result<u8> {
    let mut any = false;
    for file in files {
        let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let check = qalxan_server::mail::check(
            store,
            &Actor::cli(),
            data,
            qalxan_mail::Limits::default(),
            institution,
            Tlp::Red,
        )
        .await
        .with_context(|| file.display().to_string())?;
        any |= !check.matches.is_empty();
        if json {
            let mut out = serde_json::to_value(&check)?;
            out["file"] = file.display().to_string().into();
            println!("{out}");
            continue;
        }
        println!(
            "{}: {}",
            file.display(),
            check.subject.as_deref().unwrap_or("(no subject)")
        );
        for o in &check.observables {
            let ids: Vec<String> = o.indicators.iter().map(|id| format!("#{id}")).collect();
            println!(
                "  {} {} ({}){}",
                o.kind,
                o.value,
                o.place,
                if ids.is_empty() {
                    String::new()
                } else {
                    format!(" matches {}", ids.join(", "))
                }
            );
        }
        if check.skipped > 0 {
            println!(
                "  {} parts, links or observables left out (limits): the check may be incomplete",
                check.skipped
            );
        }
    }
    Ok(if any { 0 } else { 1 })
}

/// A TAXII 2.1 client: pages through a collection's objects and imports them.
async fn pull(
    store: &Store,
    url: &str,
    collection: &str,
    added_after: Option<String>,
    tlp: &str,
    token: Option<String>,
) -> Result<u8> {
    let tlp = tlp_arg(tlp)?;
    let client = qalxan_server::feeds::client()?;
    let base = format!(
        "{}/collections/{collection}/objects/",
        url.trim_end_matches('/')
    );
    let objects = qalxan_server::feeds::taxii_objects(
        &client,
        url,
        collection,
        added_after.as_deref(),
        token.as_deref(),
    )
    .await?;
    let source = format!("taxii:{}", url.trim_end_matches('/'));
    let parsed = qalxan_intel::stix::import_objects(objects, &source, tlp, "objects")?;
    let summary = store
        .import_intel(
            &Actor::cli(),
            &base,
            &parsed.indicators,
            &parsed.objects,
            CERT_COLLECTION,
        )
        .await?;
    println!(
        "{base}: {} objects, {} indicators added, {} merged",
        parsed.objects.len(),
        summary.added,
        summary.updated
    );
    Ok(0)
}
