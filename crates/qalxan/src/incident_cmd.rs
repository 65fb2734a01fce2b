//! `qalxan incident`, `qalxan alert` and `qalxan report`: incident response from the server's
//! shell, on the same store methods and report layouts as the API.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use qalxan_core::{InstitutionId, Severity};
use qalxan_incident::{AlertStatus, Audience, Status};
use qalxan_server::api::incidents as api;
use qalxan_store::{Actor, AlertFilter, IncidentFilter, Store};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum IncidentCommand {
    /// List incidents, newest first (open ones unless --all).
    List {
        #[arg(long)]
        all: bool,
        /// A RSIT class (`fraud`) or category (`fraud/phishing`).
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show an incident with its team, tasks, timeline, observables, victims and evidence.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Open an incident.
    Open {
        #[arg(long)]
        title: String,
        /// RSIT `class/type`, e.g. `fraud/phishing`.
        #[arg(long, default_value = "other/undetermined")]
        category: String,
        #[arg(long, default_value = "medium")]
        severity: Severity,
        #[arg(long, default_value = "")]
        description: String,
        /// An affected institution's id (repeatable).
        #[arg(long = "institution")]
        institutions: Vec<i64>,
    },
    /// Move an incident along its workflow (closing and reopening need --reason).
    Status {
        id: i64,
        /// new, triage, investigating, contained, eradicated, recovered or closed.
        status: Status,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Write the incident report for the authorities.
    Report {
        id: i64,
        /// cert (everything) or partners (what the incident's TLP lets partner CERTs have:
        /// no names of institutions, people or files, no work log).
        #[arg(long, default_value = "cert")]
        audience: Audience,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// List alerts, newest first.
    List {
        /// open, acknowledged, dismissed, merged or promoted.
        #[arg(long)]
        status: Option<AlertStatus>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct Output {
    /// md, pdf or json.
    #[arg(long, default_value = "md")]
    format: String,
    /// Write here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReportArgs {
    /// Start: YYYY-MM-DD or RFC 3339 (default 182 days before --to).
    #[arg(long)]
    from: Option<String>,
    /// End, exclusive: YYYY-MM-DD or RFC 3339 (default now).
    #[arg(long)]
    to: Option<String>,
    /// Only this institution's figures.
    #[arg(long)]
    institution: Option<i64>,
    #[command(flatten)]
    out: Output,
}

fn api_err(e: qalxan_server::error::ApiError) -> anyhow::Error {
    anyhow!("{}", e.detail)
}

fn write_out(out: &Output, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    match &out.output {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => {
            if out.format == "pdf" {
                bail!("a PDF goes to a file: add --output FILE");
            }
            std::io::stdout().write_all(bytes)?;
        }
    }
    Ok(())
}

pub async fn incident(
    store: &Store,
    config: &qalxan_server::Config,
    cmd: IncidentCommand,
) -> Result<u8> {
    let sla = config.sla();
    let fonts = config.load_report_fonts();
    let actor = Actor::cli();
    match cmd {
        IncidentCommand::List {
            all,
            category,
            json,
        } => {
            let list = store
                .list_incidents(&IncidentFilter {
                    open: !all,
                    category,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            if json {
                for i in &list {
                    println!("{}", serde_json::to_string(i)?);
                }
            } else {
                for i in &list {
                    println!(
                        "#{:<5} {:<13} {:<8} {:<40} {}",
                        i.id, i.status, i.severity, i.category, i.title
                    );
                }
            }
            Ok(0)
        }
        IncidentCommand::Show { id, json } => {
            let d = store
                .get_incident(id, None)
                .await?
                .ok_or_else(|| anyhow!("no incident {id}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                let institutions = store.list_institutions(None).await?;
                let doc = api::incident_document(&d, &institutions, &sla, Audience::Cert)
                    .map_err(api_err)?;
                print!("{}", doc.to_markdown());
            }
            Ok(0)
        }
        IncidentCommand::Open {
            title,
            category,
            severity,
            description,
            institutions,
        } => {
            let input = api::IncidentInput {
                title: Some(title),
                description,
                category: Some(category),
                severity: Some(severity),
                institutions: institutions.into_iter().map(InstitutionId).collect(),
                ..Default::default()
            };
            let r = store
                .create_incident(&actor, input.into_new(None).map_err(api_err)?)
                .await?;
            println!("opened incident #{}", r.id);
            Ok(0)
        }
        IncidentCommand::Status { id, status, reason } => {
            let r = store
                .set_incident_status(&actor, id, status, &reason)
                .await?;
            println!("incident #{} is {}", r.id, r.status);
            Ok(0)
        }
        IncidentCommand::Report { id, audience, out } => {
            let d = store
                .get_incident(id, None)
                .await?
                .ok_or_else(|| anyhow!("no incident {id}"))?;
            let institutions = store.list_institutions(None).await?;
            let doc = api::incident_document(&d, &institutions, &sla, audience).map_err(api_err)?;
            let fonts = fonts
                .as_ref()
                .map(|(regular, bold)| qalxan_incident::pdf::Fonts { regular, bold });
            let (_, bytes) =
                api::render_report(&doc, &format!("Incident #{id}"), Some(&out.format), fonts)
                    .map_err(api_err)?;
            write_out(&out, &bytes)?;
            Ok(0)
        }
    }
}

pub async fn alert(store: &Store, cmd: AlertCommand) -> Result<u8> {
    match cmd {
        AlertCommand::List {
            status,
            limit,
            json,
        } => {
            let list = store
                .list_alerts(&AlertFilter {
                    status,
                    limit,
                    ..Default::default()
                })
                .await?;
            for a in &list {
                if json {
                    println!("{}", serde_json::to_string(a)?);
                } else {
                    println!(
                        "#{:<6} {:<12} {:<8} ×{:<8} {:<16} {}",
                        a.id, a.status, a.severity, a.count, a.rule, a.title
                    );
                }
            }
            Ok(0)
        }
    }
}

pub async fn report(store: &Store, config: &qalxan_server::Config, args: ReportArgs) -> Result<u8> {
    let fonts = config.load_report_fonts();
    let q = api::PeriodicQuery {
        from: args.from,
        to: args.to,
        institution_id: args.institution.map(InstitutionId),
        format: None,
    };
    let (from, to) = q.window().map_err(api_err)?;
    let figures = store.periodic_figures(from, to, q.institution_id).await?;
    let bytes = if args.out.format == "json" {
        serde_json::to_vec_pretty(&figures)?
    } else {
        let title = "Periodic report of the CERT";
        let doc = qalxan_incident::periodic_document(&figures, title);
        let fonts = fonts
            .as_ref()
            .map(|(regular, bold)| qalxan_incident::pdf::Fonts { regular, bold });
        api::render_report(&doc, title, Some(&args.out.format), fonts)
            .map_err(api_err)?
            .1
    };
    write_out(&args.out, &bytes)?;
    Ok(0)
}
