//! `qalxan`: runs the platform (`qalxan serve`) and administers it from the server's shell.
//!
//! This binary only parses flags, loads the configuration, sets up logging and calls the
//! crates below; nothing here decides anything the API could not also do.

mod config;
mod docs_cmd;
mod incident_cmd;
mod intel_cmd;
mod logging;
mod scan_cmd;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use qalxan_core::{InstitutionFields, InstitutionId, Role, Timestamp};
use qalxan_server::api::tokens::{issue_token, TokenCreate};
use qalxan_server::{auth, AppState, Config};
use qalxan_store::{Actor, NewUser, Store, UserUpdate};
use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "qalxan",
    version,
    about = "Qalxan: cyber-defence platform for a national CERT"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where the platform keeps its data; every command accepts these.
#[derive(Args, Clone, Default)]
pub struct CommonArgs {
    /// TOML configuration file (every key can also be set as QALXAN_<KEY>).
    #[arg(long, global = true, env = "QALXAN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data folder: SQLite database, logs and files [default: ./qalxan-data].
    #[arg(long = "data", global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Use PostgreSQL (postgres://user:password@host/db) instead of SQLite in the data folder.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: dashboard and API.
    Serve(ServeArgs),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens for agents, gateways and scripts.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the institutions of the constituency.
    #[command(subcommand)]
    Institution(InstitutionCommand),
    /// Print the effective configuration (file, environment and flags combined) as TOML.
    Config,
    /// Run the filtering reverse proxy: the WAF in front of web services (one with flags, any
    /// number with --config), or reload a running one.
    Gateway(GatewayArgs),
    /// Web application firewall rules (SecLang, as the OWASP Core Rule Set writes them).
    #[command(subcommand)]
    Waf(WafCommand),
    /// Scan files and folders with ClamAV signatures (clamscan's interface).
    Scan(scan_cmd::ScanArgs),
    /// Run a clamd-compatible scanning daemon (for clamdscan and INSTREAM clients).
    Clamd(scan_cmd::ClamdArgs),
    /// Analyse documents (Office, PDF, RTF, LNK, HTML, archives): verdict, score and the
    /// indicators that explain it.
    Analyze(docs_cmd::AnalyzeArgs),
    /// Write a copy of a document with its active content removed (macros, objects,
    /// DDE, external references, PDF JavaScript and actions), and report what was removed.
    Disarm(docs_cmd::DisarmArgs),
    /// Threat intelligence: import, export, match, check STIX patterns, pull from TAXII servers.
    #[command(subcommand)]
    Intel(intel_cmd::IntelCommand),
    /// Incidents: list, show, open, move along the workflow, write the report.
    #[command(subcommand)]
    Incident(incident_cmd::IncidentCommand),
    /// Alerts raised by the parts of the platform.
    #[command(subcommand)]
    Alert(incident_cmd::AlertCommand),
    /// The periodic report for the authorities over any window (Markdown, PDF or JSON).
    Report(incident_cmd::ReportArgs),
    /// List, restore or delete quarantined files.
    #[command(subcommand)]
    Quarantine(scan_cmd::QuarantineCommand),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct GatewayArgs {
    #[command(subcommand)]
    command: Option<GatewayCommand>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The web service to protect, e.g. http://127.0.0.1:9000; without it every setting comes
    /// from --config FILE (top-level or `[gateway]` keys: listeners, sites, pools, TLS, limits).
    #[arg(long)]
    upstream: Option<String>,
    /// block, detect (log only) or off.
    #[arg(long, default_value = "block")]
    waf: qalxan_gateway::WafMode,
    /// A rule file [default: Debian's OWASP CRS with /etc/modsecurity/crs/crs-setup.conf].
    #[arg(long)]
    rules: Option<PathBuf>,
    /// CRS paranoia level, 1 to 4.
    #[arg(long, default_value_t = 1)]
    paranoia: u8,
    /// Bytes of each request body the WAF inspects; the rest streams through.
    #[arg(long, default_value_t = 131_072)]
    inspect_limit: usize,
    /// The Qalxan server to report blocks to (with the sensor token in QALXAN_GATEWAY_TOKEN).
    #[arg(long)]
    server: Option<String>,
    /// The institution this gateway protects, when its token is not tied to one.
    #[arg(long)]
    institution: Option<i64>,
    /// JSON lines of every request.
    #[arg(long)]
    access_log: Option<PathBuf>,
    /// ModSecurity-style JSON audit records of requests that matched rules.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Requests per second allowed from one client address (token bucket; off by default).
    #[arg(long)]
    rate: Option<f64>,
    /// Requests one client may send in a burst above the rate [default: twice the rate].
    #[arg(long)]
    burst: Option<f64>,
    /// Connections one client address may hold open at once.
    #[arg(long)]
    max_conns_per_ip: Option<u32>,
    /// Requests in flight at once before the heaviest clients are refused (503) first.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: Option<u32>,
    /// Ban an address after this many strikes (requests over the rate, WAF blocks)...
    #[arg(long)]
    ban_after: Option<u32>,
    /// ...within this many seconds...
    #[arg(long, default_value_t = 60)]
    ban_window: u64,
    /// ...for this many seconds.
    #[arg(long, default_value_t = 600)]
    ban_for: u64,
    /// Admin API (health, metrics, bans) address; token in QALXAN_GATEWAY_ADMIN_TOKEN, else
    /// loopback clients only.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Seconds a client has to send its request headers.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request body has before --min-body-rate applies, and the longest it may
    /// go silent.
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Bytes per second a request body must keep up after --body-timeout (each such amount
    /// buys a second more; slower bodies get 408); 0: the whole body within --body-timeout.
    #[arg(long, default_value_t = 500)]
    min_body_rate: u64,
    /// Seconds between pulls of the server's blocklist (addresses, domains, URLs refused
    /// outright; needs --server); 0 turns it off.
    #[arg(long, default_value_t = 5)]
    lists_every: u64,
    /// Threads serving connections, each with its own event loop [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    workers: Option<u32>,
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Make a running gateway read its configuration file again: new sites, rules, upstreams,
    /// certificates and limits apply to new requests; a file or rule with an error is refused
    /// and the running configuration stays.
    Reload {
        /// The gateway's admin API, e.g. http://127.0.0.1:9091 [default: the admin address in
        /// --config FILE]. Token in QALXAN_GATEWAY_ADMIN_TOKEN.
        #[arg(long)]
        admin: Option<String>,
    },
}

#[derive(Subcommand)]
enum WafCommand {
    /// Parse rule files (and what they include) and report every error as file:line:column.
    Check {
        /// Rule files, e.g. /usr/share/modsecurity-crs/owasp-crs.load
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Evaluate one HTTP request (JSON) against a rule set; prints the decision, the rules that
    /// matched, the anomaly score and a ModSecurity JSON audit-log record.
    Eval {
        /// The rule file, e.g. a file that Includes crs-setup.conf and the CRS rules.
        #[arg(long)]
        rules: PathBuf,
        /// {"method", "uri", "version", "headers": {name: value} or [[name, value]], "body",
        /// "remote_addr"}; "-" reads standard input.
        request: PathBuf,
    },
    /// Run the OWASP CRS regression tests (YAML) against the engine, configured as CRS's own CI
    /// (DetectionOnly, paranoia level 4); prints the failing test ids, then "N passed, M failed".
    TestCrs {
        /// CRS's folder: its rules are in RULES/rules/*.conf.
        #[arg(long, default_value = "/usr/share/modsecurity-crs")]
        rules: PathBuf,
        /// crs-setup.conf [default: RULES/crs-setup.conf, else /etc/modsecurity/crs/crs-setup.conf]
        #[arg(long)]
        setup: Option<PathBuf>,
        /// The folder of test YAML files.
        #[arg(long)]
        tests: PathBuf,
        /// Fail (exit 1) when fewer tests pass than this.
        #[arg(long, default_value_t = 0)]
        min_passed: usize,
        /// Print why each failing test failed.
        #[arg(long)]
        verbose: bool,
        /// Run only the test with this title, showing its request and log.
        #[arg(long)]
        only: Option<String>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address for the dashboard and API [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Log lines on the terminal as `human` or `json`.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<qalxan_server::LogFormat>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; prints its generated password once (or reads one with --password-stdin).
    Add {
        name: String,
        #[arg(long)]
        role: Role,
        /// Institution id, for role `institution`.
        #[arg(long)]
        institution: Option<InstitutionId>,
        #[arg(long, default_value = "")]
        display_name: String,
        #[arg(long, default_value = "")]
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
    /// Set a new password (generated and printed once, or read with --password-stdin); ends the
    /// account's sessions.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Enable or disable an account.
    Disable {
        name: String,
        /// Enable the account again instead.
        #[arg(long)]
        undo: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once on standard output.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Role,
        /// Confine the token to one institution's data.
        #[arg(long)]
        institution: Option<InstitutionId>,
        /// Days until the token expires (default: never).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum InstitutionCommand {
    /// Add an institution.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        sector: String,
        /// A domain it owns; repeat for several.
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// An address range it owns (CIDR); repeat for several.
        #[arg(long = "ip-range")]
        ip_ranges: Vec<String>,
    },
    /// List institutions with their ids.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Scanning is synchronous and parallel on its own threads; its exit codes are clamscan's.
    if let Command::Scan(args) = cli.command {
        return match scan_cmd::scan(args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Disarm(args) = cli.command {
        return match docs_cmd::disarm(args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Analyze(args) = cli.command {
        return match docs_cmd::analyze(args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Intel(intel_cmd::IntelCommand::PatternCheck { pattern }) = &cli.command {
        return ExitCode::from(intel_cmd::pattern_check(pattern));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command that needs the configuration; returns the process's exit code.
async fn run(cli: Cli) -> Result<u8> {
    // The gateway reads its own keys (top level, or under [gateway] in qalxan.toml).
    if let Command::Gateway(args) = cli.command {
        gateway(args, cli.common.config).await?;
        return Ok(0);
    }
    let mut overrides = config::Overrides {
        data_dir: cli.common.data_dir.clone(),
        database_url: cli.common.database_url.clone(),
        ..Default::default()
    };
    if let Command::Serve(args) = &cli.command {
        overrides.listen = args.listen;
        overrides.log_format = args.log_format;
    }
    let config = config::load(cli.common.config.as_deref(), &overrides)?;
    if let Command::Intel(cmd) = cli.command {
        let _log = logging::init_cli();
        let store = open_store(&config).await?;
        let code = intel_cmd::run(&store, cmd).await;
        store.close().await;
        return code;
    }
    let needs_store = matches!(
        cli.command,
        Command::Incident(_) | Command::Alert(_) | Command::Report(_)
    );
    if needs_store {
        let _log = logging::init_cli();
        let store = open_store(&config).await?;
        let code = match cli.command {
            Command::Incident(cmd) => incident_cmd::incident(&store, &config, cmd).await,
            Command::Alert(cmd) => incident_cmd::alert(&store, cmd).await,
            Command::Report(args) => incident_cmd::report(&store, &config, args).await,
            _ => unreachable!("checked above"),
        };
        store.close().await;
        return code;
    }
    match cli.command {
        Command::Serve(_) => serve(config, cli.common.config).await,
        Command::Waf(cmd) => waf_command(cmd),
        Command::Scan(_)
        | Command::Analyze(_)
        | Command::Disarm(_)
        | Command::Intel(_)
        | Command::Incident(_)
        | Command::Alert(_)
        | Command::Report(_) => {
            unreachable!("handled before")
        }
        Command::Quarantine(cmd) => scan_cmd::quarantine(cmd),
        Command::Clamd(args) => {
            let _log = logging::init_cli();
            scan_cmd::clamd(args).await
        }
        Command::Gateway(_) => unreachable!("handled before"),
        Command::Config => {
            let mut shown = config.clone();
            shown.database_url = qalxan_store::redact_url(&shown.database_url);
            shown.smtp_url = qalxan_store::redact_url(&shown.smtp_url);
            print!("{}", toml_string(&shown)?);
            Ok(())
        }
        Command::User(cmd) => {
            let _log = logging::init_cli();
            let store = open_store(&config).await?;
            user_command(&store, cmd).await
        }
        Command::Token(cmd) => {
            let _log = logging::init_cli();
            let store = open_store(&config).await?;
            token_command(&store, cmd).await
        }
        Command::Institution(cmd) => {
            let _log = logging::init_cli();
            let store = open_store(&config).await?;
            institution_command(&store, cmd).await
        }
    }
    .map(|()| 0)
}

fn toml_string(config: &Config) -> Result<String> {
    config::to_toml(config)
}

async fn open_store(config: &Config) -> Result<Store> {
    match config.database_url() {
        Some(url) => Store::open(url)
            .await
            .with_context(|| format!("opening database {}", qalxan_store::redact_url(url))),
        None => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating data folder {}", config.data_dir.display()))?;
            let path = config.data_dir.join("qalxan.db");
            Store::open_sqlite(&path)
                .await
                .with_context(|| format!("opening database {}", path.display()))
        }
    }
}

async fn serve(config: Config, file: Option<PathBuf>) -> Result<()> {
    for sub in ["", "logs", "files"] {
        let dir = config.data_dir.join(sub);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _log = logging::init_server(&config)?;
    let store = open_store(&config).await?;
    tracing::info!(
        database = %config.database_url().map(qalxan_store::redact_url).unwrap_or_else(|| config.data_dir.join("qalxan.db").display().to_string()),
        data = %config.data_dir.display(),
        "store ready"
    );
    if let Some(password) = qalxan_server::bootstrap_admin(&store).await? {
        // Printed to the terminal only: never through tracing, so it reaches no log file.
        println!();
        println!("Created the first account:");
        println!("  user:     admin");
        println!("  password: {password}");
        println!("This password is shown once and is not logged. Change it after logging in.");
        println!();
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // A [gateway] table in the configuration file: the gateway runs in this process too.
    let gateway = match (&config.gateway, file) {
        (Some(_), Some(path)) => {
            let mut gateway = qalxan_gateway::Config::from_file(&path)?;
            link_embedded_gateway(&store, &mut gateway, addr).await?;
            Some(start_gateway(gateway, Some(path)).await?)
        }
        _ => None,
    };
    let state = AppState::new(store.clone(), config)?;
    println!("Qalxan is serving the dashboard and API on http://{addr}/");
    tracing::info!(%addr, "listening");
    qalxan_server::serve(listener, state, shutdown_signal()).await?;
    if let Some(gateway) = gateway {
        gateway.await??;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn read_password_line() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

async fn find_user(store: &Store, name: &str) -> Result<qalxan_store::User> {
    match store.user_credentials(name).await? {
        Some((user, _)) => Ok(user),
        None => bail!("no user named '{name}'"),
    }
}

async fn user_command(store: &Store, cmd: UserCommand) -> Result<()> {
    let actor = Actor::cli();
    match cmd {
        UserCommand::Add {
            name,
            role,
            institution,
            display_name,
            email,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                (read_password_line()?, false)
            } else {
                (auth::generate_password_for(&name), true)
            };
            auth::check_password_policy(&password, &name)?;
            let password_hash =
                auth::hash_password(&password).map_err(|e| anyhow::anyhow!(e.detail))?;
            let user = store
                .create_user(
                    &actor,
                    NewUser {
                        username: name,
                        display_name,
                        email,
                        role,
                        institution_id: institution,
                        password_hash,
                    },
                )
                .await?;
            eprintln!("created user '{}' with role {}", user.username, user.role);
            if generated {
                println!("{password}");
            }
        }
        UserCommand::List => {
            println!(
                "{:<6} {:<24} {:<12} {:<11} STATE",
                "ID", "USER", "ROLE", "INSTITUTION"
            );
            for u in store.list_users().await? {
                println!(
                    "{:<6} {:<24} {:<12} {:<11} {}",
                    u.id,
                    u.username,
                    u.role,
                    u.institution_id
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "-".into()),
                    if u.disabled { "disabled" } else { "active" }
                );
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let user = find_user(store, &name).await?;
            let (password, generated) = if password_stdin {
                (read_password_line()?, false)
            } else {
                (auth::generate_password_for(&user.username), true)
            };
            auth::check_password_policy(&password, &user.username)?;
            let hash = auth::hash_password(&password).map_err(|e| anyhow::anyhow!(e.detail))?;
            store.set_password(&actor, user.id, &hash, None).await?;
            eprintln!(
                "password of '{}' changed; its sessions have ended",
                user.username
            );
            if generated {
                println!("{password}");
            }
        }
        UserCommand::Disable { name, undo } => {
            let user = find_user(store, &name).await?;
            store
                .update_user(
                    &actor,
                    user.id,
                    UserUpdate {
                        disabled: Some(!undo),
                        ..Default::default()
                    },
                )
                .await?;
            eprintln!(
                "'{}' is now {}",
                user.username,
                if undo { "enabled" } else { "disabled" }
            );
        }
    }
    Ok(())
}

async fn token_command(store: &Store, cmd: TokenCommand) -> Result<()> {
    let actor = Actor::cli();
    match cmd {
        TokenCommand::Create {
            name,
            role,
            institution,
            expires_days,
        } => {
            let expires_at = expires_days
                .map(|d| Timestamp(qalxan_core::now_millis() + i64::from(d) * 86_400_000));
            let created = issue_token(
                store,
                &actor,
                TokenCreate {
                    name,
                    role,
                    institution_id: institution,
                    expires_at,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!(e.detail))?;
            eprintln!(
                "created token {} '{}' with role {}; it is shown once:",
                created.token.id, created.token.name, created.token.role
            );
            println!("{}", created.secret);
        }
        TokenCommand::List => {
            println!(
                "{:<6} {:<24} {:<12} {:<11} {:<10} STATE",
                "ID", "NAME", "ROLE", "INSTITUTION", "PREFIX"
            );
            let now = qalxan_core::now_millis();
            for t in store.list_tokens().await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.is_usable(now) {
                    "active"
                } else {
                    "expired"
                };
                println!(
                    "{:<6} {:<24} {:<12} {:<11} {:<10} {}",
                    t.id,
                    t.name,
                    t.role,
                    t.institution_id
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "-".into()),
                    t.prefix,
                    state
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let t = store.revoke_token(&actor, id).await?;
            eprintln!("token {} '{}' revoked", t.id, t.name);
        }
    }
    Ok(())
}

fn waf_command(cmd: WafCommand) -> Result<()> {
    match cmd {
        WafCommand::Check { files } => {
            let mut failed = 0;
            for file in &files {
                match qalxan_waf::load(file, &qalxan_waf::LoadLimits::default()) {
                    Ok(set) => {
                        let s = set.summary();
                        println!(
                            "{}: OK: {} rules ({} chained), {} actions, {} markers, {} other directives, in {} file(s)",
                            file.display(),
                            s.rules,
                            s.chained,
                            s.actions,
                            s.markers,
                            s.settings,
                            s.files
                        );
                    }
                    Err(errors) => {
                        for e in &errors.errors {
                            eprintln!("{e}");
                        }
                        failed += errors.errors.len();
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} error(s) in the rule files");
            }
            Ok(())
        }
        WafCommand::Eval { rules, request } => waf_eval(&rules, &request),
        WafCommand::TestCrs {
            rules,
            setup,
            tests,
            min_passed,
            verbose,
            only,
        } => {
            let setup = setup.unwrap_or_else(|| {
                let local = rules.join("crs-setup.conf");
                if local.is_file() {
                    local
                } else {
                    PathBuf::from("/etc/modsecurity/crs/crs-setup.conf")
                }
            });
            let plan = qalxan_waf::regression::load_crs_for_tests(&setup, &rules.join("rules"))
                .map_err(|errors| {
                    anyhow::anyhow!(errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"))
                })?;
            let outcomes = qalxan_waf::regression::run_dir(&plan, &tests, only.as_deref())
                .map_err(anyhow::Error::msg)?;
            let failed: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
            for f in &failed {
                if verbose {
                    println!(
                        "FAILED {}: {}",
                        f.title,
                        f.failure.as_deref().unwrap_or_default()
                    );
                } else {
                    println!("FAILED {}", f.title);
                }
            }
            let passed = outcomes.len() - failed.len();
            println!("{passed} passed, {} failed", failed.len());
            if passed < min_passed {
                bail!("{passed} tests passed, fewer than the floor of {min_passed}");
            }
            Ok(())
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalRequest {
    #[serde(default = "default_method")]
    method: String,
    uri: String,
    #[serde(default = "default_version")]
    version: String,
    #[serde(default)]
    headers: EvalHeaders,
    #[serde(default)]
    body: String,
    #[serde(default = "default_addr")]
    remote_addr: String,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum EvalHeaders {
    Map(std::collections::BTreeMap<String, String>),
    List(Vec<(String, String)>),
}

impl Default for EvalHeaders {
    fn default() -> Self {
        EvalHeaders::List(Vec::new())
    }
}

fn default_method() -> String {
    "GET".into()
}

fn default_version() -> String {
    "HTTP/1.1".into()
}

fn default_addr() -> String {
    "127.0.0.1".into()
}

fn waf_eval(rules: &std::path::Path, request: &std::path::Path) -> Result<()> {
    use std::io::Read;
    let set = qalxan_waf::load(rules, &qalxan_waf::LoadLimits::default())?;
    let plan = qalxan_waf::Plan::compile(&set).map_err(|errors| {
        anyhow::anyhow!(errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"))
    })?;
    let mut text = String::new();
    if request.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(request)
            .with_context(|| format!("reading {}", request.display()))?;
    }
    let input: EvalRequest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a request", request.display()))?;
    let headers = match input.headers {
        EvalHeaders::Map(m) => m.into_iter().collect(),
        EvalHeaders::List(l) => l,
    };
    let req = qalxan_waf::Request {
        method: input.method.into_bytes(),
        uri: input.uri.into_bytes(),
        protocol: input.version.into_bytes(),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect(),
        body: input.body.into_bytes(),
        remote_addr: input.remote_addr,
        remote_port: 0,
        server_addr: "127.0.0.1".into(),
        server_port: 80,
    };
    let mut tx = qalxan_waf::Transaction::evaluate_request(&plan, &req);
    tx.finish();
    let status = tx.interruption.as_ref().map_or(200, |i| i.status);
    let matched: Vec<_> = tx
        .matches
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id, "phase": m.phase, "msg": m.msg, "data": m.data,
                "severity": m.severity, "tags": m.tags, "variable": m.variable
            })
        })
        .collect();
    let now = qalxan_core::format_rfc3339(qalxan_core::now_millis());
    let out = serde_json::json!({
        "decision": if tx.interruption.is_some() { "block" } else { "pass" },
        "status": status,
        "rule_id": tx.interruption.as_ref().map(|i| i.rule_id),
        "anomaly_score": tx.anomaly_score(),
        "matched": matched,
        "audit_log": qalxan_waf::audit::record(&tx, &req, status, &tx.unique_id(), &now),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn gateway(args: GatewayArgs, file: Option<PathBuf>) -> Result<()> {
    let _log = logging::init_cli();
    if let Some(GatewayCommand::Reload { admin }) = args.command {
        return gateway_reload(admin, file).await;
    }
    // --upstream wins: QALXAN_CONFIG may name the server's file in the environment.
    let (config, source) = match (&file, &args.upstream) {
        (_, Some(_)) => (gateway_flags(&args)?, None),
        (Some(path), None) => (qalxan_gateway::Config::from_file(path)?, file.clone()),
        (None, None) => anyhow::bail!("give --upstream URL (one site) or --config FILE"),
    };
    start_gateway(config, source).await?.await??;
    Ok(())
}

/// `qalxan serve`'s own gateway reports its blocks and bans to this server and enforces its
/// blocklist, unless its table names another server: over loopback, with a sensor token
/// minted at each start (the previous start's revoked), so no secret has to be configured.
async fn link_embedded_gateway(
    store: &Store,
    gateway: &mut qalxan_gateway::Config,
    listening: SocketAddr,
) -> Result<()> {
    const NAME: &str = "qalxan serve's own gateway";
    if gateway.server.is_some() {
        return Ok(());
    }
    let actor = Actor::system();
    for old in store.list_tokens().await? {
        if old.name == NAME && old.revoked_at.is_none() {
            store.revoke_token(&actor, old.id).await?;
        }
    }
    let created = issue_token(
        store,
        &actor,
        TokenCreate {
            name: NAME.to_owned(),
            role: Role::Sensor,
            institution_id: None,
            expires_at: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("minting the embedded gateway's token: {}", e.detail))?;
    let host = match listening.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip => ip,
    };
    gateway.server = Some(qalxan_gateway::ServerLink {
        url: format!("http://{}", SocketAddr::new(host, listening.port())),
        token: created.secret,
        institution_id: None,
    });
    gateway.lists_every = gateway
        .lists_every
        .or(Some(std::time::Duration::from_secs(5)));
    Ok(())
}

/// Starts a gateway that reloads on SIGHUP and stops with the process's shutdown signal.
async fn start_gateway(
    config: qalxan_gateway::Config,
    source: Option<PathBuf>,
) -> Result<tokio::task::JoinHandle<Result<(), qalxan_gateway::GatewayError>>> {
    let started = std::time::Instant::now();
    let gateway = qalxan_gateway::Gateway::start(config, source).await?;
    eprintln!(
        "Gateway ready in {:.1} s (rules compiled)",
        started.elapsed().as_secs_f64()
    );
    if let Some(a) = gateway.admin_address() {
        println!("Qalxan gateway admin API on http://{a}/");
    }
    for (addr, tls) in gateway.addresses() {
        println!(
            "Qalxan gateway on {}://{addr}/",
            if tls { "https" } else { "http" }
        );
    }
    #[cfg(unix)]
    {
        let reloader = gateway.reloader();
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match reloader.reload().await {
                    Ok(summary) => tracing::info!("SIGHUP: {summary}"),
                    Err(e) => tracing::error!(
                        "SIGHUP: reload refused, the running configuration stays: {e}"
                    ),
                }
            }
        });
    }
    Ok(tokio::spawn(gateway.serve(shutdown_signal())))
}

/// One site from the command-line flags.
fn gateway_flags(args: &GatewayArgs) -> Result<qalxan_gateway::Config> {
    let text = args.upstream.as_deref().unwrap_or_default();
    let upstream =
        qalxan_gateway::upstream_uri(text).with_context(|| format!("--upstream '{text}'"))?;
    let server = match &args.server {
        Some(url) => {
            let token = std::env::var("QALXAN_GATEWAY_TOKEN").context(
                "--server needs the sensor token in the QALXAN_GATEWAY_TOKEN environment variable",
            )?;
            Some(qalxan_gateway::ServerLink {
                url: url.clone(),
                token,
                institution_id: args.institution,
            })
        }
        None => None,
    };
    let site = qalxan_gateway::Site {
        waf: args.waf,
        rules: args.rules.clone(),
        paranoia: args.paranoia,
        ..qalxan_gateway::Site::new("default", upstream)
    };
    let mut config = qalxan_gateway::Config::new(args.listen, vec![site]);
    config.inspect_limit = args.inspect_limit;
    config.server = server;
    config.access_log = args.access_log.clone();
    config.audit_log = args.audit_log.clone();
    config.limits = qalxan_gateway::Limits {
        rate: args.rate.map(|r| (r, args.burst.unwrap_or(r * 2.0))),
        max_connections: args.max_conns_per_ip,
        ban: args.ban_after.map(|strikes| qalxan_gateway::BanPolicy {
            strikes,
            window: std::time::Duration::from_secs(args.ban_window),
            duration: std::time::Duration::from_secs(args.ban_for),
        }),
        max_in_flight: args.max_in_flight,
    };
    config.admin = args.admin_listen;
    config.admin_token = std::env::var("QALXAN_GATEWAY_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    config.header_timeout = std::time::Duration::from_secs(args.header_timeout);
    config.body_timeout = std::time::Duration::from_secs(args.body_timeout);
    config.request_limits.min_body_rate = args.min_body_rate;
    config.lists_every =
        (args.lists_every > 0).then(|| std::time::Duration::from_secs(args.lists_every));
    if let Some(n) = args.workers {
        config.workers = n as usize;
    }
    Ok(config)
}

async fn gateway_reload(admin: Option<String>, config: Option<PathBuf>) -> Result<()> {
    let base = match (admin, config) {
        (Some(url), _) => url,
        (None, Some(path)) => {
            let config = qalxan_gateway::Config::from_file(&path)?;
            let addr = config.admin.with_context(|| {
                format!(
                    "{}: no [admin] listen address to send the reload to",
                    path.display()
                )
            })?;
            format!("http://{addr}")
        }
        (None, None) => anyhow::bail!("give --admin URL or the gateway's --config FILE"),
    };
    let mut request = reqwest::Client::new().post(format!("{}/reload", base.trim_end_matches('/')));
    if let Ok(token) = std::env::var("QALXAN_GATEWAY_ADMIN_TOKEN") {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("the gateway's admin API at {base} does not answer"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status.is_success() {
        println!("{}", body["summary"].as_str().unwrap_or("reloaded"));
        Ok(())
    } else {
        anyhow::bail!(
            "reload refused ({status}); the running configuration stays: {}",
            body["error"].as_str().unwrap_or("no details")
        )
    }
}

async fn institution_command(store: &Store, cmd: InstitutionCommand) -> Result<()> {
    match cmd {
        InstitutionCommand::Add {
            name,
            sector,
            domains,
            ip_ranges,
        } => {
            let created = store
                .create_institution(
                    &Actor::cli(),
                    InstitutionFields {
                        name,
                        sector,
                        domains,
                        ip_ranges,
                        ..Default::default()
                    },
                )
                .await?;
            eprintln!("created institution '{}'", created.fields.name);
            println!("{}", created.id);
        }
        InstitutionCommand::List => {
            println!("{:<6} {:<40} SECTOR", "ID", "NAME");
            for i in store.list_institutions(None).await? {
                println!("{:<6} {:<40} {}", i.id, i.fields.name, i.fields.sector);
            }
        }
    }
    Ok(())
}
