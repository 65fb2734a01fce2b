//! Log set-up: the terminal gets human-readable or JSON lines; `qalxan serve` also writes JSON
//! lines to `<data>/logs/qalxan.log.<date>`, rotated daily.

use anyhow::{Context, Result};
use qalxan_server::{Config, LogFormat};
use std::io::IsTerminal;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Keeps the log file writer running; drop it last.
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

pub fn init_server(config: &Config) -> Result<LogGuard> {
    let filter = EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("log_level: '{}' is not a valid filter", config.log_level))?;
    let file_filter = EnvFilter::try_new(&config.log_level)?;
    let terminal = match config.log_format {
        LogFormat::Human => fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let appender = tracing_appender::rolling::daily(config.data_dir.join("logs"), "qalxan.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let file = fmt::layer()
        .json()
        .with_ansi(false)
        .with_writer(writer)
        .with_filter(file_filter);
    tracing_subscriber::registry()
        .with(terminal)
        .with(file)
        .try_init()
        .context("setting up logging")?;
    Ok(LogGuard(Some(guard)))
}

/// Administrative commands log warnings only, to the terminal.
pub fn init_cli() -> LogGuard {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::new("warn"))
        .try_init();
    LogGuard(None)
}
