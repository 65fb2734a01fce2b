//! One client connection: commands in, replies out, byte for byte as clamd.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use qalxan_scan::{Outcome, ScanOptions, Scanner};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Daemon;

/// Longest command line accepted (a path plus the command name).
const MAX_COMMAND: usize = 16 * 1024;
/// Commands served in one session before it is closed.
const MAX_SESSION_COMMANDS: u64 = 1_000_000;

/// How a command was framed; the reply is framed the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `zCOMMAND\0`
    Nul,
    /// `nCOMMAND\n`
    Newline,
    /// `COMMAND\n` (the oldest form)
    Legacy,
}

impl Framing {
    fn terminator(self) -> u8 {
        match self {
            Framing::Nul => 0,
            _ => b'\n',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ping,
    Version,
    VersionCommands,
    Reload,
    Shutdown,
    Scan(PathBuf),
    ContScan(PathBuf),
    MultiScan(PathBuf),
    AllMatchScan(PathBuf),
    InStream,
    Fildes,
    Stats,
    IdSession,
    End,
    Unknown,
}

impl Command {
    /// Parses a command without its prefix or terminator.
    pub fn parse(text: &str) -> Command {
        let (word, arg) = match text.split_once(' ') {
            Some((w, a)) => (w, Some(a)),
            None => (text, None),
        };
        let path = || arg.filter(|a| !a.is_empty()).map(PathBuf::from);
        match (word, path()) {
            ("PING", None) => Command::Ping,
            ("VERSION", None) => Command::Version,
            ("VERSIONCOMMANDS", None) => Command::VersionCommands,
            ("RELOAD", None) => Command::Reload,
            ("SHUTDOWN", None) => Command::Shutdown,
            ("SCAN", Some(p)) => Command::Scan(p),
            ("CONTSCAN", Some(p)) => Command::ContScan(p),
            ("MULTISCAN", Some(p)) => Command::MultiScan(p),
            ("ALLMATCHSCAN", Some(p)) => Command::AllMatchScan(p),
            ("INSTREAM", None) => Command::InStream,
            ("FILDES", None) => Command::Fildes,
            ("STATS", None) => Command::Stats,
            ("IDSESSION", None) => Command::IdSession,
            ("END", None) | ("QUIT", None) => Command::End,
            _ => Command::Unknown,
        }
    }
}

/// A connection's stream, plus (on the unix socket) the ability to receive a descriptor.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {
    fn receive_fd(
        &mut self,
    ) -> impl std::future::Future<Output = std::io::Result<std::fs::File>> + Send {
        async { Err(std::io::Error::other("FILDES needs the unix socket")) }
    }
}

impl Conn for tokio::net::TcpStream {}

impl Conn for tokio::net::UnixStream {
    async fn receive_fd(&mut self) -> std::io::Result<std::fs::File> {
        use std::os::fd::AsRawFd;
        loop {
            self.readable().await?;
            let fd = self.as_raw_fd();
            let got = self.try_io(tokio::io::Interest::READABLE, || {
                let mut byte = [0u8; 1];
                let mut iov = [std::io::IoSliceMut::new(&mut byte)];
                let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
                let msg = nix::sys::socket::recvmsg::<()>(
                    fd,
                    &mut iov,
                    Some(&mut space),
                    nix::sys::socket::MsgFlags::empty(),
                )
                .map_err(std::io::Error::from)?;
                let mut received = None;
                for c in msg.cmsgs().map_err(std::io::Error::from)? {
                    if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                        for f in fds {
                            if received.is_none() {
                                received = Some(f);
                            } else {
                                let _ = nix::unistd::close(f);
                            }
                        }
                    }
                }
                Ok(received)
            });
            match got {
                Ok(Some(raw)) => {
                    // Reopened through /proc so the descriptor is owned without unsafe code;
                    // the passed descriptor is closed either way.
                    let file = std::fs::File::open(format!("/proc/self/fd/{raw}"));
                    let _ = nix::unistd::close(raw);
                    return file;
                }
                Ok(None) => return Err(std::io::Error::other("no file descriptor was passed")),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads one command without reading past it: a FILDES descriptor travels with the next byte.
async fn read_command<C: Conn>(
    conn: &mut C,
    timeout: Duration,
) -> std::io::Result<Option<(Framing, String)>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, conn.read(&mut first)).await {
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "command timeout",
            ))
        }
        Ok(Ok(0)) => return Ok(None),
        Ok(r) => {
            r?;
        }
    }
    let (framing, mut line) = match first[0] {
        b'z' => (Framing::Nul, Vec::new()),
        b'n' => (Framing::Newline, Vec::new()),
        // A bare newline: an empty legacy command.
        b'\n' => return Ok(Some((Framing::Legacy, String::new()))),
        other => (Framing::Legacy, vec![other]),
    };
    let end = framing.terminator();
    loop {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(timeout, conn.read(&mut b))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "command timeout"))??;
        if n == 0 {
            return Ok(None);
        }
        if b[0] == end {
            break;
        }
        line.push(b[0]);
        if line.len() > MAX_COMMAND {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "command too long",
            ));
        }
    }
    if framing == Framing::Legacy && line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some((framing, String::from_utf8_lossy(&line).into_owned())))
}

struct Replier {
    framing: Framing,
    session: Option<u64>,
}

impl Replier {
    async fn send<C: Conn>(&self, conn: &mut C, text: &str) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(text.len() + 8);
        if let Some(n) = self.session {
            out.extend_from_slice(format!("{n}: ").as_bytes());
        }
        out.extend_from_slice(text.as_bytes());
        out.push(self.framing.terminator());
        conn.write_all(&out).await
    }
}

pub(crate) async fn serve_connection<C: Conn>(daemon: Arc<Daemon>, mut conn: C) {
    let timeout = Duration::from_secs(daemon.config().read_timeout);
    let Ok(Some((framing, text))) = read_command(&mut conn, timeout).await else {
        return;
    };
    let command = Command::parse(&text);
    if command == Command::IdSession {
        if framing == Framing::Legacy {
            let _ = Replier {
                framing,
                session: None,
            }
            .send(&mut conn, "UNKNOWN COMMAND")
            .await;
            return;
        }
        let mut n = 0u64;
        while n < MAX_SESSION_COMMANDS {
            let Ok(Some((framing, text))) = read_command(&mut conn, timeout).await else {
                return;
            };
            let command = Command::parse(&text);
            if command == Command::End {
                return;
            }
            n += 1;
            let replier = Replier {
                framing,
                session: Some(n),
            };
            if command == Command::IdSession || framing == Framing::Legacy {
                let _ = replier.send(&mut conn, "UNKNOWN COMMAND").await;
                return;
            }
            if !run(&daemon, &mut conn, command, &replier).await {
                return;
            }
        }
        return;
    }
    let replier = Replier {
        framing,
        session: None,
    };
    let _ = run(&daemon, &mut conn, command, &replier).await;
    let _ = conn.shutdown().await;
}

/// Runs one command; false when the connection must close.
async fn run<C: Conn>(daemon: &Arc<Daemon>, conn: &mut C, command: Command, r: &Replier) -> bool {
    let result = match command {
        Command::Ping => r.send(conn, "PONG").await,
        Command::Version => r.send(conn, crate::VERSION).await,
        Command::VersionCommands => {
            let text = format!(
                "{}| COMMANDS: SCAN QUIT RELOAD PING CONTSCAN VERSIONCOMMANDS VERSION END SHUTDOWN MULTISCAN FILDES STATS IDSESSION INSTREAM ALLMATCHSCAN",
                crate::VERSION
            );
            r.send(conn, &text).await
        }
        Command::Reload => {
            let d = daemon.clone();
            tokio::task::spawn_blocking(move || match d.reload() {
                Ok(n) => tracing::info!(signatures = n, "databases reloaded"),
                Err(e) => tracing::error!(error = %e, "reload failed; the loaded databases stay"),
            });
            r.send(conn, "RELOADING").await
        }
        Command::Shutdown => {
            daemon.shutdown();
            return false;
        }
        Command::Stats => r.send(conn, &stats(daemon)).await,
        Command::InStream => return instream(daemon, conn, r).await,
        Command::Fildes => match conn.receive_fd().await {
            Ok(file) => {
                let d = daemon.clone();
                let outcome =
                    tokio::task::spawn_blocking(move || scan_file(&d.scanner(), file)).await;
                let text = match outcome {
                    Ok(Ok(o)) => {
                        count(daemon, &o, "fd");
                        verdict_lines("fd[0]", &o, false).join("\u{1}")
                    }
                    Ok(Err(e)) => {
                        daemon.stats.errors.fetch_add(1, Ordering::Relaxed);
                        format!("fd[0]: {} ERROR", os_message(&e))
                    }
                    Err(_) => "fd[0]: internal error ERROR".into(),
                };
                send_lines(conn, r, &text).await
            }
            Err(e) => {
                r.send(conn, &format!("FILDES: {} ERROR", os_message(&e)))
                    .await
            }
        },
        Command::Scan(p) => path_scan(daemon, conn, r, p, Mode::FirstFound).await,
        Command::ContScan(p) => path_scan(daemon, conn, r, p, Mode::Continue).await,
        Command::MultiScan(p) => path_scan(daemon, conn, r, p, Mode::Parallel).await,
        Command::AllMatchScan(p) => path_scan(daemon, conn, r, p, Mode::AllMatch).await,
        Command::IdSession | Command::End | Command::Unknown => {
            r.send(conn, "UNKNOWN COMMAND").await
        }
    };
    result.is_ok()
}

/// Several lines of one reply, each framed on its own (joined with \x01 internally).
async fn send_lines<C: Conn>(conn: &mut C, r: &Replier, joined: &str) -> std::io::Result<()> {
    for line in joined.split('\u{1}') {
        r.send(conn, line).await?;
    }
    Ok(())
}

fn stats(daemon: &Daemon) -> String {
    let s = &daemon.stats;
    format!(
        "POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: live 1  idle 0 max {} idle-timeout 30\nQUEUE: 0 items\n\tSTATS 0.000000\n\nSCANNED: {}\nFOUND: {}\nERRORS: {}\nUPTIME: {}\n\nMEMSTATS: heap N/A mmap N/A used N/A free N/A releasable N/A pools 1 pools_used N/A pools_total N/A\nEND",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        s.scanned.load(Ordering::Relaxed),
        s.found.load(Ordering::Relaxed),
        s.errors.load(Ordering::Relaxed),
        daemon.uptime().as_secs(),
    )
}

fn os_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn scan_file(scanner: &Scanner, mut file: std::fs::File) -> std::io::Result<Outcome> {
    use std::io::Read;
    let limit = scanner.options().limits.max_file_size;
    let mut data = Vec::new();
    (&mut file).take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Ok(Outcome {
            detections: vec![qalxan_scan::Detection {
                name: "Heuristics.Limits.Exceeded.MaxFileSize".into(),
                location: Vec::new(),
            }],
            ..Outcome::default()
        });
    }
    Ok(scanner.scan_bytes(&data))
}

fn count(daemon: &Daemon, o: &Outcome, subject: &str) {
    daemon.stats.scanned.fetch_add(1, Ordering::Relaxed);
    if let Some(d) = o.detections.first() {
        daemon.report(subject, &d.name);
    }
}

fn verdict_lines(subject: &str, o: &Outcome, all: bool) -> Vec<String> {
    if o.detections.is_empty() {
        return vec![format!("{subject}: OK")];
    }
    let n = if all { o.detections.len() } else { 1 };
    o.detections
        .iter()
        .take(n)
        .map(|d| format!("{subject}: {} FOUND", d.name))
        .collect()
}

async fn instream<C: Conn>(daemon: &Arc<Daemon>, conn: &mut C, r: &Replier) -> bool {
    let timeout = Duration::from_secs(daemon.config().read_timeout);
    let max = daemon.config().stream_max;
    let mut data: Vec<u8> = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(timeout, conn.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return false,
        }
        let len = u32::from_be_bytes(len) as u64;
        if len == 0 {
            break;
        }
        if data.len() as u64 + len > max {
            let _ = r.send(conn, "INSTREAM size limit exceeded. ERROR").await;
            return false;
        }
        let start = data.len();
        data.resize(start + len as usize, 0);
        match tokio::time::timeout(timeout, conn.read_exact(&mut data[start..])).await {
            Ok(Ok(_)) => {}
            _ => return false,
        }
    }
    let scanner = daemon.scanner();
    let Ok(outcome) = tokio::task::spawn_blocking(move || scanner.scan_bytes(&data)).await else {
        return false;
    };
    count(daemon, &outcome, "stream");
    let lines = verdict_lines("stream", &outcome, false);
    send_lines(conn, r, &lines.join("\u{1}")).await.is_ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    FirstFound,
    Continue,
    Parallel,
    AllMatch,
}

async fn path_scan<C: Conn>(
    daemon: &Arc<Daemon>,
    conn: &mut C,
    r: &Replier,
    path: PathBuf,
    mode: Mode,
) -> std::io::Result<()> {
    let d = daemon.clone();
    let shown = path.display().to_string();
    let lines = tokio::task::spawn_blocking(move || scan_tree(&d, &path, mode))
        .await
        .unwrap_or_else(|_| vec![format!("{shown}: internal error ERROR")]);
    send_lines(conn, r, &lines.join("\u{1}")).await
}

fn scan_tree(daemon: &Daemon, root: &Path, mode: Mode) -> Vec<String> {
    let shown = root.display().to_string();
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) => {
            daemon.stats.errors.fetch_add(1, Ordering::Relaxed);
            return vec![format!(
                "{shown}: File path check failure: {}. ERROR",
                os_message(&e)
            )];
        }
    };
    let mut scanner = daemon.scanner();
    if mode == Mode::AllMatch {
        let options = ScanOptions {
            all_match: true,
            ..scanner.options().clone()
        };
        scanner = scanner.with_options(options);
    }
    let one = |p: &Path| -> Vec<String> {
        let shown = p.display().to_string();
        match scanner.scan_path(p) {
            Ok(o) => {
                count(daemon, &o, &shown);
                if o.is_infected() {
                    verdict_lines(&shown, &o, mode == Mode::AllMatch)
                } else {
                    Vec::new()
                }
            }
            Err(e) => {
                daemon.stats.errors.fetch_add(1, Ordering::Relaxed);
                let msg = match e {
                    qalxan_scan::ScanError::Io { source, .. } => os_message(&source),
                };
                vec![format!("{shown}: {msg} ERROR")]
            }
        }
    };
    if !meta.is_dir() {
        let found = one(root);
        return if found.is_empty() {
            vec![format!("{shown}: OK")]
        } else {
            found
        };
    }
    let files: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect();
    let mut out = Vec::new();
    if mode == Mode::Parallel {
        use rayon::prelude::*;
        let results: Vec<Vec<String>> = files.par_iter().map(|p| one(p)).collect();
        out.extend(results.into_iter().flatten());
    } else {
        for f in &files {
            let lines = one(f);
            let infected = lines.iter().any(|l| l.ends_with(" FOUND"));
            out.extend(lines);
            if infected && mode == Mode::FirstFound {
                break;
            }
        }
    }
    if out.is_empty() {
        out.push(format!("{shown}: OK"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(Command::parse("PING"), Command::Ping);
        assert_eq!(
            Command::parse("SCAN /tmp/x y"),
            Command::Scan(PathBuf::from("/tmp/x y"))
        );
        assert_eq!(Command::parse("SCAN"), Command::Unknown);
        assert_eq!(Command::parse("PING extra"), Command::Unknown);
        assert_eq!(Command::parse("FOO"), Command::Unknown);
        assert_eq!(Command::parse("END"), Command::End);
    }
}
