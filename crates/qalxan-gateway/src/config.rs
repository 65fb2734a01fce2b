//! The gateway's configuration file (`qalxan gateway --config gateway.toml`): listeners, sites
//! chosen by Host and path prefix with their upstream pools and WAF settings, limits, and the
//! link to the Qalxan server. The same keys may sit under a `[gateway]` table, so one
//! `qalxan.toml` can hold the server's and the gateway's settings.
//!
//! Durations are seconds. Every error names the file and the key (and, for syntax errors, the
//! line and column) so an operator can fix it without guessing.

use crate::{
    Balance, CertificateFiles, Config, HealthCheck, Limits, Listener, PoolConfig, Site, WafMode,
};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// qalxan.toml: the server's keys beside the `[gateway]` table are the server's business.
#[derive(Deserialize)]
struct Outer {
    gateway: File,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    listen: Vec<ListenFile>,
    #[serde(default)]
    site: Vec<SiteFile>,
    #[serde(default)]
    waf: WafFile,
    #[serde(default)]
    limits: LimitsFile,
    server: Option<ServerFile>,
    admin: Option<AdminFile>,
    inspect_limit: Option<usize>,
    header_timeout: Option<f64>,
    body_timeout: Option<f64>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    access_log: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    workers: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    address: String,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    proxy_protocol: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WafFile {
    mode: Option<String>,
    rules: Option<PathBuf>,
    paranoia: Option<u8>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    rate: Option<f64>,
    burst: Option<f64>,
    max_conns_per_ip: Option<u32>,
    ban_after: Option<u32>,
    ban_window: Option<f64>,
    ban_for: Option<f64>,
    max_in_flight: Option<u32>,
    max_uri: Option<usize>,
    max_header_count: Option<usize>,
    max_header_bytes: Option<usize>,
    max_body: Option<u64>,
    min_body_rate: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    url: String,
    /// The environment variable holding the sensor token.
    token_env: Option<String>,
    institution: Option<i64>,
    lists_every: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    listen: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    name: String,
    #[serde(default)]
    hosts: Vec<String>,
    path: Option<String>,
    upstreams: Vec<String>,
    balance: Option<String>,
    retries: Option<u32>,
    max_fails: Option<u32>,
    fail_timeout: Option<f64>,
    /// PEM file of extra certificate authorities trusted for https upstreams.
    upstream_ca: Option<PathBuf>,
    health_check: Option<HealthFile>,
    waf: Option<String>,
    rules: Option<PathBuf>,
    paranoia: Option<u8>,
    institution: Option<i64>,
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
    rate: Option<f64>,
    burst: Option<f64>,
    upstream_protocol: Option<String>,
    max_body: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    path: Option<String>,
    interval: Option<f64>,
    timeout: Option<f64>,
    rise: Option<u32>,
    fall: Option<u32>,
}

/// Reads and checks a configuration file; relative paths in it are taken from its folder.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses configuration text; `path` names it in errors and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let syntax = |e: toml::de::Error| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_owned(),
    };
    let table: toml::Table = toml::from_str(text).map_err(syntax)?;
    let file: File = if table.contains_key("gateway") {
        toml::from_str::<Outer>(text).map_err(syntax)?.gateway
    } else {
        toml::from_str(text).map_err(syntax)?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    Checker { path, base }.config(file)
}

struct Checker<'a> {
    path: &'a Path,
    base: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn relative(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn seconds(
        &self,
        field: &str,
        value: Option<f64>,
        default: f64,
    ) -> Result<Duration, ConfigError> {
        let v = value.unwrap_or(default);
        Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.invalid(field, format!("{v} is not a positive number of seconds")))
    }

    fn address(&self, field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value
            .parse()
            .map_err(|_| self.invalid(field, format!("'{value}' is not an address:port")))
    }

    fn mode(
        &self,
        field: &str,
        value: Option<&str>,
        default: WafMode,
    ) -> Result<WafMode, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: String| self.invalid(field, e)),
        }
    }

    fn paranoia(&self, field: &str, value: Option<u8>, default: u8) -> Result<u8, ConfigError> {
        let p = value.unwrap_or(default);
        if (1..=4).contains(&p) {
            Ok(p)
        } else {
            Err(self.invalid(field, format!("{p} is not a paranoia level (1 to 4)")))
        }
    }

    fn config(&self, file: File) -> Result<Config, ConfigError> {
        let mut listeners = Vec::new();
        for (i, l) in file.listen.iter().enumerate() {
            listeners.push(Listener {
                address: self.address(&format!("listen[{i}].address"), &l.address)?,
                tls: l.tls,
                proxy_protocol: l.proxy_protocol,
            });
        }
        if listeners.is_empty() {
            return Err(self.invalid("listen", "no [[listen]] address is configured"));
        }
        let default_mode = self.mode("waf.mode", file.waf.mode.as_deref(), WafMode::Block)?;
        let default_paranoia = self.paranoia("waf.paranoia", file.waf.paranoia, 1)?;
        let default_rules = file.waf.rules.map(|p| self.relative(p));
        let mut sites = Vec::new();
        for (i, s) in file.site.into_iter().enumerate() {
            sites.push(self.site(i, s, default_mode, default_rules.as_ref(), default_paranoia)?);
        }
        if sites.is_empty() {
            return Err(self.invalid("site", "no [[site]] is configured"));
        }
        for (i, a) in sites.iter().enumerate() {
            for b in &sites[..i] {
                let same_host = a.hosts.iter().any(|h| b.hosts.contains(h))
                    || (a.hosts.is_empty() && b.hosts.is_empty());
                if same_host && a.path_prefix == b.path_prefix {
                    return Err(self.invalid(
                        format!("site[{i}]"),
                        format!(
                            "sites '{}' and '{}' serve the same host and path",
                            b.name, a.name
                        ),
                    ));
                }
            }
        }
        if listeners.iter().any(|l| l.tls) && !sites.iter().any(|s| s.certificate.is_some()) {
            return Err(self.invalid(
                "listen",
                "a TLS listener needs at least one site with a certificate and key",
            ));
        }
        let l = &file.limits;
        let limits = Limits {
            rate: l.rate.map(|r| (r, l.burst.unwrap_or(r * 2.0))),
            max_connections: l.max_conns_per_ip,
            ban: match l.ban_after {
                Some(strikes) => Some(crate::BanPolicy {
                    strikes,
                    window: self.seconds("limits.ban_window", l.ban_window, 60.0)?,
                    duration: self.seconds("limits.ban_for", l.ban_for, 600.0)?,
                }),
                None => None,
            },
            max_in_flight: match l.max_in_flight {
                Some(0) => return Err(self.invalid("limits.max_in_flight", "must be at least 1")),
                n => n,
            },
        };
        let defaults = crate::RequestLimits::default();
        let request_limits = crate::RequestLimits {
            max_uri: l.max_uri.unwrap_or(defaults.max_uri),
            max_header_count: l.max_header_count.unwrap_or(defaults.max_header_count),
            max_header_bytes: l.max_header_bytes.unwrap_or(defaults.max_header_bytes),
            max_body: l.max_body,
            min_body_rate: l.min_body_rate.unwrap_or(defaults.min_body_rate),
        };
        for (key, value, least) in [
            ("limits.max_uri", request_limits.max_uri, 16),
            (
                "limits.max_header_count",
                request_limits.max_header_count,
                8,
            ),
            (
                "limits.max_header_bytes",
                request_limits.max_header_bytes,
                1024,
            ),
        ] {
            if value < least {
                return Err(self.invalid(key, format!("must be at least {least}")));
            }
        }
        if let Some((rate, burst)) = limits.rate {
            if !(rate > 0.0 && burst >= 1.0) {
                return Err(self.invalid(
                    "limits.rate",
                    "the rate must be positive and the burst at least 1",
                ));
            }
        }
        let mut trusted_proxies = Vec::new();
        for (i, t) in file.trusted_proxies.iter().enumerate() {
            let net = t
                .parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    self.invalid(
                        format!("trusted_proxies[{i}]"),
                        format!("'{t}' is not an address or CIDR range"),
                    )
                })?;
            trusted_proxies.push(net.trunc());
        }
        if let Some(i) = listeners.iter().position(|l| l.proxy_protocol) {
            if trusted_proxies.is_empty() {
                return Err(self.invalid(
                    format!("listen[{i}].proxy_protocol"),
                    "needs trusted_proxies: the load balancers allowed to name clients",
                ));
            }
        }
        let (server, lists_every) = match file.server {
            None => (None, None),
            Some(s) => {
                let var = s.token_env.as_deref().unwrap_or("QALXAN_GATEWAY_TOKEN");
                let token = std::env::var(var)
                    .ok()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        self.invalid(
                            "server.token_env",
                            format!("the environment variable {var} holds no sensor token"),
                        )
                    })?;
                let every = match s.lists_every {
                    Some(0.0) => None,
                    other => Some(self.seconds("server.lists_every", other, 5.0)?),
                };
                (
                    Some(crate::ServerLink {
                        url: s.url,
                        token,
                        institution_id: s.institution,
                    }),
                    every,
                )
            }
        };
        Ok(Config {
            listeners,
            sites,
            inspect_limit: file.inspect_limit.unwrap_or(131_072),
            server,
            access_log: file.access_log.map(|p| self.relative(p)),
            audit_log: file.audit_log.map(|p| self.relative(p)),
            limits,
            request_limits,
            admin: match &file.admin {
                Some(a) => Some(self.address("admin.listen", &a.listen)?),
                None => None,
            },
            admin_token: std::env::var("QALXAN_GATEWAY_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            header_timeout: self.seconds("header_timeout", file.header_timeout, 10.0)?,
            body_timeout: self.seconds("body_timeout", file.body_timeout, 30.0)?,
            lists_every,
            trusted_proxies,
            workers: match file.workers {
                Some(0) => return Err(self.invalid("workers", "must be at least 1")),
                Some(n) => n,
                None => crate::default_workers(),
            },
        })
    }

    fn site(
        &self,
        i: usize,
        s: SiteFile,
        default_mode: WafMode,
        default_rules: Option<&PathBuf>,
        default_paranoia: u8,
    ) -> Result<Site, ConfigError> {
        let at = |key: &str| format!("site[{i}] ('{}').{key}", s.name);
        let mut hosts = Vec::new();
        for h in &s.hosts {
            let host = h.trim().trim_end_matches('.').to_ascii_lowercase();
            let bare = host.strip_prefix("*.").unwrap_or(&host);
            if bare.is_empty()
                || bare.contains('*')
                || !bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(self.invalid(
                    at("hosts"),
                    format!("'{h}' is not a host name (a leading '*.' is the only wildcard)"),
                ));
            }
            hosts.push(host);
        }
        let path_prefix = s.path.clone().unwrap_or_else(|| "/".to_owned());
        if !path_prefix.starts_with('/') {
            return Err(self.invalid(at("path"), format!("'{path_prefix}' must start with '/'")));
        }
        let mut servers = Vec::new();
        for (j, u) in s.upstreams.iter().enumerate() {
            servers.push(
                crate::upstream_uri(u).map_err(|e| {
                    self.invalid(format!("{}[{j}]", at("upstreams")), e.to_string())
                })?,
            );
        }
        if servers.is_empty() {
            return Err(self.invalid(at("upstreams"), "a site needs at least one upstream"));
        }
        let balance = match s.balance.as_deref() {
            None | Some("round-robin") => Balance::RoundRobin,
            Some("least-conn") => Balance::LeastConn,
            Some(other) => {
                return Err(self.invalid(
                    at("balance"),
                    format!("'{other}' is not round-robin or least-conn"),
                ))
            }
        };
        let health_check = match s.health_check {
            None => None,
            Some(h) => {
                let path = h.path.unwrap_or_else(|| "/".to_owned());
                if !path.starts_with('/') {
                    return Err(self.invalid(
                        at("health_check.path"),
                        format!("'{path}' must start with '/'"),
                    ));
                }
                Some(HealthCheck {
                    path,
                    interval: self.seconds(&at("health_check.interval"), h.interval, 5.0)?,
                    timeout: self.seconds(&at("health_check.timeout"), h.timeout, 2.0)?,
                    rise: h.rise.unwrap_or(2).max(1),
                    fall: h.fall.unwrap_or(3).max(1),
                })
            }
        };
        let certificate = match (s.certificate, s.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(CertificateFiles {
                cert: self.relative(cert),
                key: self.relative(key),
            }),
            _ => {
                return Err(self.invalid(
                    at("certificate"),
                    "a certificate needs both 'certificate' and 'key'",
                ))
            }
        };
        Ok(Site {
            hosts,
            path_prefix,
            upstream: PoolConfig {
                servers,
                balance,
                retries: s.retries.unwrap_or(1),
                max_fails: s.max_fails.unwrap_or(3),
                fail_timeout: self.seconds(&at("fail_timeout"), s.fail_timeout, 10.0)?,
                health_check,
                ca: s.upstream_ca.map(|p| self.relative(p)),
                http2: match s.upstream_protocol.as_deref() {
                    None | Some("http1") => false,
                    Some("http2") => true,
                    Some(other) => {
                        return Err(self.invalid(
                            at("upstream_protocol"),
                            format!("'{other}' is not http1 or http2"),
                        ))
                    }
                },
            },
            waf: self.mode(&at("waf"), s.waf.as_deref(), default_mode)?,
            rules: s.rules.map(|p| self.relative(p)).or(default_rules.cloned()),
            paranoia: self.paranoia(&at("paranoia"), s.paranoia, default_paranoia)?,
            institution: s.institution,
            certificate,
            max_body: s.max_body,
            rate: match s.rate {
                None if s.burst.is_some() => {
                    return Err(self.invalid(at("burst"), "a burst needs a rate"))
                }
                None => None,
                Some(rate) => {
                    let burst = s.burst.unwrap_or(rate * 2.0);
                    if !(rate > 0.0 && burst >= 1.0) {
                        return Err(self.invalid(
                            at("rate"),
                            "the rate must be positive and the burst at least 1",
                        ));
                    }
                    Some((rate, burst))
                }
            },
            name: s.name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        trusted_proxies = ["10.0.0.0/8", "192.0.2.7"]
        [[listen]]
        address = "127.0.0.1:8080"
        proxy_protocol = true
        [waf]
        mode = "detect"
        paranoia = 2
        [limits]
        rate = 50
        ban_after = 10
        [[site]]
        name = "portal"
        hosts = ["Portal.Example.AZ", "*.portal.example.az"]
        upstreams = ["http://127.0.0.1:9000", "http://127.0.0.1:9001"]
        balance = "least-conn"
        [site.health_check]
        path = "/healthz"
        [[site]]
        name = "api"
        hosts = ["portal.example.az"]
        path = "/api"
        upstreams = ["http://127.0.0.1:9100"]
        waf = "block"
        rules = "rules/api.conf"
        rate = 5
        burst = 10
        upstream_protocol = "http2"
        max_body = 1048576
    "#;

    #[test]
    fn a_good_file_gives_sites_pools_and_defaults() {
        let c = parse(GOOD, Path::new("/etc/qalxan/gateway.toml")).unwrap();
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.sites.len(), 2);
        let portal = &c.sites[0];
        assert_eq!(portal.hosts, ["portal.example.az", "*.portal.example.az"]);
        assert_eq!(portal.path_prefix, "/");
        assert_eq!(portal.waf, WafMode::Detect);
        assert_eq!(portal.paranoia, 2);
        assert_eq!(portal.upstream.balance, Balance::LeastConn);
        assert_eq!(portal.upstream.servers.len(), 2);
        assert_eq!(portal.upstream.health_check.as_ref().unwrap().fall, 3);
        let api = &c.sites[1];
        assert_eq!(api.waf, WafMode::Block);
        assert_eq!(
            api.rules.as_deref(),
            Some(Path::new("/etc/qalxan/rules/api.conf"))
        );
        assert_eq!(c.limits.rate, Some((50.0, 100.0)));
        assert_eq!(c.limits.ban.unwrap().duration, Duration::from_secs(600));
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.listeners[0].proxy_protocol);
        assert_eq!((portal.rate, api.rate), (None, Some((5.0, 10.0))));
        assert!(api.upstream.http2 && !portal.upstream.http2);
        assert_eq!((portal.max_body, api.max_body), (None, Some(1_048_576)));
        assert_eq!(c.request_limits, crate::RequestLimits::default());
        assert_eq!(c.workers, crate::default_workers());
    }

    /// The annotated example in README.md is a file that loads, so documented keys exist.
    #[test]
    fn the_readme_example_loads() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("The gateway's configuration file")
            .expect("README has the gateway example");
        let example: String = readme[start..]
            .lines()
            .skip_while(|l| !l.starts_with("    "))
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
            .collect();
        // The token comes from the environment, which a test cannot set safely beside other
        // threads: any variable that holds something stands in for it.
        let example = example.replace("\"QALXAN_GATEWAY_TOKEN\"", "\"PATH\"");
        let c = parse(&example, Path::new("/etc/qalxan/gateway.toml")).unwrap();
        assert!(c.sites.len() >= 2, "{example}");
        assert_eq!(c.request_limits.min_body_rate, 500);
        assert_eq!(c.request_limits.max_body, Some(10_485_760));
        let server = c.server.expect("[server] is read");
        assert_eq!(
            (server.url.as_str(), server.institution_id),
            ("https://cert.example", Some(3))
        );
        assert_eq!(c.lists_every, Some(Duration::from_secs(5)));
        assert_eq!(c.workers, 4);
    }

    #[test]
    fn the_same_keys_work_under_a_gateway_table() {
        let nested = format!(
            "[gateway]\n{}",
            GOOD.replace("[[listen]]", "[[gateway.listen]]")
                .replace("[waf]", "[gateway.waf]")
                .replace("[limits]", "[gateway.limits]")
                .replace("[[site]]", "[[gateway.site]]")
                .replace("[site.health_check]", "[gateway.site.health_check]")
        );
        let c = parse(
            &format!("data_dir = \"/var/lib/qalxan\"\n{nested}"),
            Path::new("qalxan.toml"),
        )
        .unwrap();
        assert_eq!(c.sites.len(), 2);
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("gw.toml")).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = error(&GOOD.replace("balance = \"least-conn\"", "balance = \"random\""));
        assert!(
            e.starts_with("gw.toml: site[0] ('portal').balance: 'random'"),
            "{e}"
        );
        let e = error(&GOOD.replace("http://127.0.0.1:9100", "ftp://127.0.0.1:9100"));
        assert!(e.contains("site[1] ('api').upstreams[0]"), "{e}");
        let e = error(&GOOD.replace("paranoia = 2", "paranoia = 7"));
        assert!(e.contains("waf.paranoia: 7 is not a paranoia level"), "{e}");
        let e = error(&GOOD.replace("rate = 50", "rat = 50"));
        assert!(
            e.contains("unknown field `rat`") && e.contains("line"),
            "{e}"
        );
        let e = error(&GOOD.replace("127.0.0.1:8080", "localhost"));
        assert!(e.contains("listen[0].address"), "{e}");
        let e = error(&GOOD.replace("path = \"/api\"", "path = \"/\""));
        assert!(e.contains("serve the same host and path"), "{e}");
        let e = error(&GOOD.replace("\"192.0.2.7\"", "\"proxy.local\""));
        assert!(e.contains("trusted_proxies[1]"), "{e}");
        let e = error(&GOOD.replace(
            "address = \"127.0.0.1:8080\"",
            "address = \"127.0.0.1:8443\"\ntls = true",
        ));
        assert!(
            e.contains("needs at least one site with a certificate"),
            "{e}"
        );
        let e = error(&GOOD.replace("trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]", ""));
        assert!(
            e.contains("listen[0].proxy_protocol: needs trusted_proxies"),
            "{e}"
        );
        let e = error(&GOOD.replace("\"http2\"", "\"spdy\""));
        assert!(
            e.contains("upstream_protocol: 'spdy' is not http1 or http2"),
            "{e}"
        );
        let e = error(&GOOD.replace("rate = 50", "rate = 50\nmax_in_flight = 0"));
        assert!(
            e.contains("limits.max_in_flight: must be at least 1"),
            "{e}"
        );
        let e = error(&GOOD.replace("rate = 50", "rate = 50\nmax_uri = 3"));
        assert!(e.contains("limits.max_uri: must be at least 16"), "{e}");
        let e = error(&GOOD.replace("rate = 5\n", "rate = 0\n"));
        assert!(
            e.contains("site[1] ('api').rate: the rate must be positive"),
            "{e}"
        );
        let e = error(&GOOD.replace(
            "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]",
            "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\nworkers = 0",
        ));
        assert!(e.contains("gw.toml: workers: must be at least 1"), "{e}");
        let e = error("[[listen]]\naddress = \"127.0.0.1:1\"\n");
        assert!(e.contains("no [[site]]"), "{e}");
    }
}
