//! Loads the [`Config`]: defaults, then the TOML file, then `QALXAN_*` environment variables,
//! then command-line flags, each overriding the one before.

use anyhow::{Context, Result};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use qalxan_server::{Config, LogFormat};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Settings given as flags; `None` leaves the lower layers' value.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = file {
        if !file.is_file() {
            anyhow::bail!("configuration file {} does not exist", file.display());
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    // Only the known keys: other QALXAN_* variables (QALXAN_CONFIG, test settings) are not ours.
    let env = Env::prefixed("QALXAN_").filter(|key| {
        Config::KEYS
            .iter()
            .any(|k| key.as_str().eq_ignore_ascii_case(k))
    });
    figment = figment.merge(env).merge(Serialized::defaults(overrides));
    figment
        .extract()
        .map_err(|e| anyhow::anyhow!(describe(e)))
        .context("invalid configuration")
}

/// figment's errors name the key and where its value came from; list every one of them.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn to_toml(config: &Config) -> Result<String> {
    toml::to_string(config).context("rendering the configuration as TOML")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type.
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "q.toml",
                "listen = \"0.0.0.0:9000\"\nsession_hours = 4\nlog_level = \"debug\"\n",
            )?;
            jail.set_env("QALXAN_SESSION_HOURS", "6");
            jail.set_env("QALXAN_TRUSTED_PROXIES", "[\"10.0.0.0/8\"]");
            jail.set_env("QALXAN_TEST_DATABASE_URL", "ignored");
            let overrides = Overrides {
                listen: Some("127.0.0.1:9100".parse().unwrap()),
                ..Default::default()
            };
            let c = load(Some(Path::new("q.toml")), &overrides).unwrap();
            assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
            assert_eq!(c.session_hours, 6);
            assert_eq!(c.log_level, "debug");
            assert_eq!(c.trusted_proxies, ["10.0.0.0/8"]);
            assert_eq!(c.data_dir, PathBuf::from("qalxan-data"));
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key_and_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "listen = \"not an address\"\n")?;
            let err = load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
            let text = format!("{err:#}");
            assert!(
                text.contains("listen") && text.contains("bad.toml"),
                "{text}"
            );
            jail.create_file("typo.toml", "lissen = \"127.0.0.1:1\"\n")?;
            let err = load(Some(Path::new("typo.toml")), &Overrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains("lissen"), "{err:#}");
            Ok(())
        });
    }
}
