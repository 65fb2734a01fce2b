//! A clamd-compatible daemon: ClamAV's socket protocol over Qalxan's scan engine, so that
//! `clamdscan` and every program that speaks INSTREAM work against it unchanged.
//!
//! The protocol is ClamAV's (see ../shared/research/clamd-protocol.md): a command per
//! connection, or many inside `IDSESSION`/`END` with numbered replies; `z` commands end with
//! NUL, `n` and old-style commands with a newline, and the reply uses the same terminator.
//! Scans run on blocking threads; the database can be swapped (`RELOAD`) while connections
//! are open, each scan keeping the database it started with.

mod protocol;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use qalxan_scan::{Database, LoadOptions, ScanOptions, Scanner};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

pub use protocol::{Command, Framing};

/// What ClamAV version we answer as: clients check the `ClamAV ` prefix.
pub const VERSION: &str = concat!("ClamAV 1.4.6 (qalxan ", env!("CARGO_PKG_VERSION"), ")");

#[derive(Debug, Clone)]
pub struct Config {
    pub tcp: Option<std::net::SocketAddr>,
    pub unix: Option<PathBuf>,
    pub databases: Vec<PathBuf>,
    pub load: LoadOptions,
    pub scan: ScanOptions,
    /// Largest INSTREAM accepted (clamd's StreamMaxLength, default 25 MiB).
    pub stream_max: u64,
    /// Longest wait for the next command or chunk, in seconds (clamd's ReadTimeout).
    pub read_timeout: u64,
    /// Hashes detected besides the signatures (the CERT's threat intelligence); kept across
    /// RELOAD.
    pub intel: Option<Arc<dyn qalxan_scan::HashIntel>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tcp: None,
            unix: None,
            databases: Vec::new(),
            load: LoadOptions::default(),
            scan: ScanOptions::default(),
            stream_max: 25 << 20,
            read_timeout: 120,
            intel: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {what}: {source}")]
    Listen {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] qalxan_scan::LoadError),
}

/// Counters for STATS and the logs.
#[derive(Debug, Default)]
pub struct Stats {
    pub scanned: AtomicU64,
    pub found: AtomicU64,
    pub errors: AtomicU64,
}

/// Receives each detection, e.g. to report it to the Qalxan server.
pub type DetectionHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The shared state of a running daemon.
pub struct Daemon {
    config: Config,
    scanner: RwLock<Scanner>,
    pub stats: Stats,
    started: Instant,
    shutdown: watch::Sender<bool>,
    hook: Option<DetectionHook>,
}

impl Daemon {
    pub fn new(config: Config, hook: Option<DetectionHook>) -> Result<Arc<Self>, DaemonError> {
        let db = Database::load(&config.databases, config.load)?;
        let scanner =
            Scanner::new(Arc::new(db), config.scan.clone()).with_intel(config.intel.clone());
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Daemon {
            config,
            scanner: RwLock::new(scanner),
            stats: Stats::default(),
            started: Instant::now(),
            shutdown,
            hook,
        }))
    }

    pub fn scanner(&self) -> Scanner {
        match self.scanner.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the databases again; the old ones keep serving if the new ones fail to load.
    pub fn reload(&self) -> Result<usize, qalxan_scan::LoadError> {
        let db = Database::load(&self.config.databases, self.config.load)?;
        let count = db.signature_count();
        let scanner = Scanner::new(Arc::new(db), self.config.scan.clone())
            .with_intel(self.config.intel.clone());
        match self.scanner.write() {
            Ok(mut s) => *s = scanner,
            Err(poisoned) => *poisoned.into_inner() = scanner,
        }
        Ok(count)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub(crate) fn report(&self, subject: &str, name: &str) {
        self.stats.found.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.hook {
            hook(subject, name);
        }
    }

    /// Listens where configured and serves until SHUTDOWN (or `shutdown()`).
    pub async fn serve(self: Arc<Self>) -> Result<(), DaemonError> {
        let mut stop = self.shutdown.subscribe();
        let tcp = match self.config.tcp {
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| DaemonError::Listen {
                            what: addr.to_string(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let unix = match &self.config.unix {
            Some(path) => {
                remove_stale_socket(path);
                let l = UnixListener::bind(path).map_err(|source| DaemonError::Listen {
                    what: path.display().to_string(),
                    source,
                })?;
                Some(l)
            }
            None => None,
        };
        if let Some(t) = &tcp {
            tracing::info!(addr = %t.local_addr().map(|a| a.to_string()).unwrap_or_default(), "clamd protocol on TCP");
        }
        if let Some(p) = &self.config.unix {
            tracing::info!(socket = %p.display(), "clamd protocol on a unix socket");
        }
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                Some(conn) = accept_tcp(tcp.as_ref()) => {
                    if let Ok((stream, _)) = conn {
                        let d = self.clone();
                        tokio::spawn(async move { protocol::serve_connection(d, stream).await });
                    }
                }
                Some(conn) = accept_unix(unix.as_ref()) => {
                    if let Ok((stream, _)) = conn {
                        let d = self.clone();
                        tokio::spawn(async move { protocol::serve_connection(d, stream).await });
                    }
                }
            }
        }
        if let Some(p) = &self.config.unix {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}

async fn accept_tcp(
    l: Option<&TcpListener>,
) -> Option<std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>> {
    match l {
        Some(l) => Some(l.accept().await),
        None => std::future::pending().await,
    }
}

async fn accept_unix(
    l: Option<&UnixListener>,
) -> Option<std::io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)>> {
    match l {
        Some(l) => Some(l.accept().await),
        None => std::future::pending().await,
    }
}

/// A socket file left by a daemon that died is replaced; a live one is not.
fn remove_stale_socket(path: &Path) {
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}
