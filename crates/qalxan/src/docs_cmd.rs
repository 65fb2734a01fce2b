//! `qalxan analyze`: the document sandbox on the command line.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use rayon::prelude::*;

#[derive(Args)]
pub struct AnalyzeArgs {
    /// Print one JSON object per file (JSON lines), with flags, macro source and scripts.
    #[arg(long)]
    json: bool,
    /// Password to try on encrypted archives, PDFs and Office documents (repeatable); tried
    /// after the defaults (infected, malware, virus for archives; Excel's VelvetSweatshop
    /// for Office documents).
    #[arg(long = "password", short = 'p', value_name = "PASSWORD")]
    passwords: Vec<String>,
    /// Show extracted macro source code and scripts in the text output.
    #[arg(long)]
    show_code: bool,
    /// Show macro source with its string obfuscation undone (Chr() calls, StrReverse,
    /// joined literals), like olevba --reveal; implies --show-code.
    #[arg(long)]
    reveal: bool,
    /// Files larger than this many bytes are not read.
    #[arg(long, default_value_t = 512 << 20, value_name = "BYTES")]
    max_filesize: u64,
    /// Documents to analyse; folders are walked (files in name order).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// The files named, with folders replaced by the files below them.
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .sort_by_file_name()
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .collect();
            out.append(&mut found);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Runs the analysis; the exit code is 0 clean, 1 malicious or suspicious, 2 error.
pub fn analyze(args: AnalyzeArgs) -> Result<u8> {
    let mut options = qalxan_docs::Options::default();
    for p in &args.passwords {
        if !options.passwords.contains(p) {
            options.passwords.push(p.clone());
        }
        options.document_passwords.push(p.clone());
    }
    let files = expand(&args.files);
    let results: Vec<(String, Result<qalxan_docs::Report, String>)> = files
        .par_iter()
        .map(|path| {
            let shown = path.display().to_string();
            let result = std::fs::metadata(path)
                .map_err(|e| format!("{shown}: {e}"))
                .and_then(|m| {
                    if m.len() > args.max_filesize {
                        Err(format!(
                            "{shown}: {} bytes, larger than --max-filesize {}",
                            m.len(),
                            args.max_filesize
                        ))
                    } else {
                        std::fs::read(path).map_err(|e| format!("{shown}: {e}"))
                    }
                })
                .map(|data| qalxan_docs::analyze(&data, &shown, &options));
            (shown, result)
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut code = 0u8;
    for (file, result) in results {
        match result {
            Ok(report) => {
                if report.verdict != qalxan_docs::Verdict::Clean {
                    code = code.max(1);
                }
                if args.json {
                    let mut v = serde_json::to_value(&report)?;
                    if let Some(o) = v.as_object_mut() {
                        o.insert("file".into(), serde_json::Value::String(file));
                    }
                    writeln!(out, "{}", serde_json::to_string(&v)?)?;
                } else {
                    print_report(
                        &mut out,
                        &file,
                        &report,
                        args.show_code || args.reveal,
                        args.reveal,
                    )?;
                }
            }
            Err(e) => {
                code = 2;
                if args.json {
                    let v = serde_json::json!({"file": file, "error": e});
                    writeln!(out, "{v}")?;
                } else {
                    eprintln!("error: {e}");
                }
            }
        }
    }
    Ok(code)
}

fn print_report(
    out: &mut impl Write,
    file: &str,
    r: &qalxan_docs::Report,
    show_code: bool,
    reveal: bool,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{file}: {} (score {}, type {})",
        r.verdict.as_str(),
        r.score,
        r.file_type.as_str()
    )?;
    for i in &r.indicators {
        let sev = match i.severity {
            qalxan_docs::Severity::High => "high",
            qalxan_docs::Severity::Medium => "medium",
            qalxan_docs::Severity::Low => "low",
            qalxan_docs::Severity::Info => "info",
        };
        let at = if i.location.is_empty() {
            String::new()
        } else {
            format!(" [{}]", i.location)
        };
        writeln!(out, "  {sev:<6} {}{at}: {}", i.id, i.description)?;
    }
    if show_code {
        for m in &r.macros {
            let (code, revealed) = match (&m.revealed, reveal) {
                (Some(r), true) => (r, " (deobfuscated)"),
                _ => (&m.code, ""),
            };
            writeln!(
                out,
                "  --- VBA module {} [{}]{revealed}",
                m.name, m.location
            )?;
            for line in code.lines() {
                writeln!(out, "  | {line}")?;
            }
        }
        for s in &r.scripts {
            writeln!(out, "  --- {} [{}]", s.kind, s.location)?;
            for line in s.code.lines() {
                writeln!(out, "  | {line}")?;
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct DisarmArgs {
    /// The document to disarm.
    input: PathBuf,
    /// Where to write the disarmed copy.
    #[arg(short, long)]
    output: PathBuf,
    /// Print the report of what was removed as JSON.
    #[arg(long)]
    json: bool,
    /// Password to try on encrypted documents (repeatable).
    #[arg(long = "password", short = 'p', value_name = "PASSWORD")]
    passwords: Vec<String>,
}

/// Writes a copy of the document without its active content; exit 0, or 2 on error.
pub fn disarm(args: DisarmArgs) -> Result<u8> {
    use anyhow::Context as _;
    let mut options = qalxan_docs::Options::default();
    options.passwords.extend(args.passwords.iter().cloned());
    options
        .document_passwords
        .extend(args.passwords.iter().cloned());
    let data =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let result = qalxan_docs::disarm::disarm(&data, &options)
        .with_context(|| format!("{}", args.input.display()))?;
    std::fs::write(&args.output, &result.data)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let mut v = serde_json::to_value(&result)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("input".into(), args.input.display().to_string().into());
            o.insert("output".into(), args.output.display().to_string().into());
        }
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
    } else {
        writeln!(
            out,
            "{} -> {}: {} item(s) removed",
            args.input.display(),
            args.output.display(),
            result.removed.len()
        )?;
        for r in &result.removed {
            writeln!(
                out,
                "  removed {} [{}]: {}",
                r.id, r.location, r.description
            )?;
        }
        for n in &result.notes {
            writeln!(out, "  note: {n}")?;
        }
        if let Some(ext) = result.extension {
            writeln!(out, "  note: save it as .{ext}")?;
        }
    }
    Ok(0)
}
