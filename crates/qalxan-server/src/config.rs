//! The server's settings. Loading them (TOML file, `QALXAN_*` environment, flags) is the
//! binary's job; this is the typed result and its defaults.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder for the SQLite database, logs and files.
    pub data_dir: PathBuf,
    /// Address the dashboard and API listen on.
    pub listen: SocketAddr,
    /// `postgres://...` to use PostgreSQL; empty for SQLite in `data_dir`.
    pub database_url: String,
    /// `human` or `json` log lines on the terminal (the log file is always JSON).
    pub log_format: LogFormat,
    /// tracing filter, e.g. `info` or `qalxan_server=debug,info`.
    pub log_level: String,
    /// The address people reach the dashboard at, e.g. `https://cert.example`. An `https` URL
    /// marks session cookies `Secure`.
    pub public_url: String,
    /// Hours a login session lasts.
    pub session_hours: u32,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Window over which failed logins are counted, in minutes.
    pub login_window_minutes: u32,
    /// Failed logins for one account within the window before further attempts are refused.
    pub login_max_failures_per_account: u32,
    /// Failed logins from one address within the window before further attempts are refused.
    pub login_max_failures_per_ip: u32,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// ClamAV signature files or folders for `POST /api/v1/scan`; empty: ClamAV's
    /// /var/lib/clamav when it exists (the built-in EICAR signature always).
    pub scan_databases: Vec<PathBuf>,
    /// Largest file accepted by `POST /api/v1/scan`, in bytes.
    pub scan_max_bytes: usize,
    /// Largest document accepted by `POST /api/v1/documents` and the upload page, in bytes.
    pub docs_max_bytes: usize,
    /// Minutes an alert keeps absorbing new alerts with its key (the same attacker against
    /// the same institution) after it was last seen.
    pub alert_window_minutes: u32,
    /// Largest evidence file attached to an incident, in bytes.
    pub evidence_max_bytes: usize,
    /// SMTP server for notification e-mails, e.g. `smtp://mail.cert.example:25`,
    /// `smtp://user:password@host:587?tls=required` or `smtps://host`; empty: no e-mail.
    pub smtp_url: String,
    /// Sender of notification e-mails.
    pub smtp_from: String,
    /// E-mail new incidents (not TLP:RED) to the contact address of each affected institution;
    /// their staff accounts follow their own settings either way.
    pub notify_institution_contacts: bool,
    /// Institutions' contacts hear of incidents at least this severe.
    pub institution_contact_min_severity: qalxan_core::Severity,
    /// Seconds between checks for SLA breaches (new incidents are announced at once).
    pub sla_check_seconds: u32,
    /// Minutes to triage an incident, by severity: info, low, medium, high, critical.
    pub sla_triage_minutes: [i64; 5],
    /// Minutes to contain an incident, by severity: info, low, medium, high, critical.
    pub sla_contain_minutes: [i64; 5],
    /// Threat-intelligence feeds to pull on a schedule (`[[intel_feeds]]` tables: name, kind
    /// `taxii` or `url`, url, collection, token_env, tlp, every_minutes).
    pub intel_feeds: Vec<crate::feeds::Feed>,
    /// TrueType font reports are drawn in (embedded in the PDFs, so any script prints);
    /// empty or unreadable: the standard Helvetica, which knows only Western European letters.
    pub report_font: PathBuf,
    pub report_font_bold: PathBuf,
    /// The `[gateway]` table: `qalxan serve` then runs the filtering gateway too. Its keys are
    /// the gateway's (see `qalxan-gateway`'s config module), read by the gateway itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format '{other}' (expected human or json)"
            )),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("qalxan-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: String::new(),
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            public_url: String::new(),
            session_hours: 12,
            max_body_bytes: 2 * 1024 * 1024,
            login_window_minutes: 15,
            login_max_failures_per_account: 5,
            login_max_failures_per_ip: 20,
            trusted_proxies: Vec::new(),
            scan_databases: Vec::new(),
            scan_max_bytes: 25 * 1024 * 1024,
            docs_max_bytes: 25 * 1024 * 1024,
            alert_window_minutes: 60,
            evidence_max_bytes: 50 * 1024 * 1024,
            smtp_url: String::new(),
            smtp_from: "Qalxan <qalxan@localhost>".to_owned(),
            notify_institution_contacts: true,
            institution_contact_min_severity: qalxan_core::Severity::High,
            sla_check_seconds: 60,
            sla_triage_minutes: qalxan_incident::SlaPolicy::default().triage_minutes,
            sla_contain_minutes: qalxan_incident::SlaPolicy::default().contain_minutes,
            intel_feeds: Vec::new(),
            report_font: PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
            report_font_bold: PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
            gateway: None,
        }
    }
}

impl Config {
    /// The configuration keys, which are also the `QALXAN_<KEY>` environment variables.
    pub const KEYS: &'static [&'static str] = &[
        "data_dir",
        "listen",
        "database_url",
        "log_format",
        "log_level",
        "public_url",
        "session_hours",
        "max_body_bytes",
        "login_window_minutes",
        "login_max_failures_per_account",
        "login_max_failures_per_ip",
        "trusted_proxies",
        "scan_databases",
        "scan_max_bytes",
        "docs_max_bytes",
        "alert_window_minutes",
        "evidence_max_bytes",
        "smtp_url",
        "smtp_from",
        "notify_institution_contacts",
        "institution_contact_min_severity",
        "sla_check_seconds",
        "sla_triage_minutes",
        "sla_contain_minutes",
        "intel_feeds",
        "report_font",
        "report_font_bold",
    ];

    /// The report fonts' bytes, when both files can be read.
    pub fn load_report_fonts(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.report_font.as_os_str().is_empty() {
            return None;
        }
        match (
            std::fs::read(&self.report_font),
            std::fs::read(&self.report_font_bold),
        ) {
            (Ok(r), Ok(b)) => Some((r, b)),
            _ => {
                tracing::info!(
                    font = %self.report_font.display(),
                    "report font not readable: PDF reports use Helvetica"
                );
                None
            }
        }
    }

    /// The SLA targets incidents are measured against.
    pub fn sla(&self) -> qalxan_incident::SlaPolicy {
        qalxan_incident::SlaPolicy {
            triage_minutes: self.sla_triage_minutes,
            contain_minutes: self.sla_contain_minutes,
        }
    }

    /// The database to use: the configured URL, or SQLite in the data folder.
    pub fn database_url(&self) -> Option<&str> {
        let url = self.database_url.trim();
        (!url.is_empty()).then_some(url)
    }

    /// The signature databases the server's scanner loads.
    pub fn scan_database_paths(&self) -> Vec<PathBuf> {
        if !self.scan_databases.is_empty() {
            return self.scan_databases.clone();
        }
        let clamav = PathBuf::from("/var/lib/clamav");
        if clamav.is_dir() {
            vec![clamav]
        } else {
            Vec::new()
        }
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_list_every_field() {
        let value = serde_json::to_value(Config::default()).unwrap();
        let mut fields: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        let mut keys: Vec<_> = Config::KEYS.iter().map(|k| k.to_string()).collect();
        fields.sort();
        keys.sort();
        assert_eq!(fields, keys);
    }
}
