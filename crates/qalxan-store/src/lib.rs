//! Qalxan's storage: the only crate that writes SQL.
//!
//! One [`Store`] API over two backends: SQLite in the data folder (the embedded default) and
//! PostgreSQL (when a deployment outgrows one machine). Queries go through sqlx's `Any` driver
//! and are written once in the SQL both dialects share; only the schema migrations exist in two
//! dialects (`migrations/sqlite`, `migrations/postgres`) with the same versions.
//!
//! Invariants:
//! - every method that changes data takes an [`Actor`] and writes its audit-trail row in the same
//!   transaction as the change, so a change is never stored without its record, nor the reverse;
//! - a write returns only after its transaction committed (SQLite runs in WAL mode with
//!   `synchronous=FULL`), so an acknowledged write survives a killed process;
//! - the audit log and the events are append-only, enforced by triggers in the database itself.

mod alerts;
mod audit;
mod documents;
mod events;
mod incidents;
mod institutions;
mod intel;
mod notifications;
mod reports;
mod rows;
#[cfg(feature = "test-support")]
pub mod testing;
mod tokens;
mod users;

pub use alerts::{AlertFilter, AlertRecord, IngestSummary, Observed};
pub use audit::{AuditEntry, AuditFilter};
pub use documents::{DocumentRecord, NewDocument};
pub use events::{
    EventFilter, KindSeries, NewEvent, Overview, StoredEvent, VictimCount, MAX_EVENT_COUNT,
    MAX_EVENT_VALUE,
};
pub use incidents::{
    Evidence, IncidentDetail, IncidentFilter, IncidentObservable, IncidentRecord, IncidentUpdate,
    InstitutionRef, LogEntry, Member, NewIncident, NewVictim, PromoteTo, Task, Victim,
};
pub use intel::{
    tlp_rank, Collection, ImportSummary, IndicatorFilter, IndicatorRecord, ObjectFilter,
    SightingRecord, StoredObject, TaxiiStatus, CERT_COLLECTION, SHARED_COLLECTION,
};
pub use notifications::{NotificationSettings, Webhook};
pub use tokens::{ApiToken, NewToken};
pub use users::{LoginFailures, NewUser, Session, User, UserUpdate};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(#[from] qalxan_core::FieldError),
    #[error("unsupported database URL '{0}': expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored {table}.{column} holds an unreadable value: {detail}")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        detail: String,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who made a change, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `user:NAME`, `token:NAME`, `cli:OSUSER` or `system`.
    pub name: String,
    /// The client address for changes made over HTTP.
    pub ip: String,
}

impl Actor {
    pub fn user(username: &str, ip: impl Into<String>) -> Actor {
        Actor {
            name: format!("user:{username}"),
            ip: ip.into(),
        }
    }

    pub fn token(name: &str, ip: impl Into<String>) -> Actor {
        Actor {
            name: format!("token:{name}"),
            ip: ip.into(),
        }
    }

    /// A change made with the `qalxan` command on the server's machine.
    pub fn cli() -> Actor {
        let who = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".to_owned());
        Actor {
            name: format!("cli:{who}"),
            ip: String::new(),
        }
    }

    /// A change the platform made by itself (first-start bootstrap, expiry).
    pub fn system() -> Actor {
        Actor {
            name: "system".to_owned(),
            ip: String::new(),
        }
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The platform's database. Cheap to clone; clones share the connection pools.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads go here; for PostgreSQL also writes.
    read: AnyPool,
    /// SQLite allows one writer at a time: a single-connection pool serialises writes in the
    /// process instead of letting transactions fail with SQLITE_BUSY when they upgrade to writing.
    write: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        Store::open(&sqlite_url(path)).await
    }

    /// Connects to `sqlite://...` or `postgres://...` and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let store = match backend {
            Backend::Sqlite => {
                let write = sqlite_pool(url, 1).await?;
                // Migrate before the read pool opens so its connections see the final schema.
                SQLITE_MIGRATIONS.run(&write).await?;
                let read = sqlite_pool(url, 8).await?;
                Store {
                    read,
                    write,
                    backend,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                POSTGRES_MIGRATIONS.run(&pool).await?;
                Store {
                    read: pool.clone(),
                    write: pool,
                    backend,
                }
            }
        };
        tracing::debug!(backend = ?store.backend, "store open");
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database answers; for readiness probes.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Migration versions applied to this database, oldest first.
    pub async fn schema_versions(&self) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(StoreError::from))
            .collect()
    }
}

/// Migration versions each dialect defines; they must agree.
pub fn migration_versions() -> (Vec<i64>, Vec<i64>) {
    let versions = |m: &sqlx::migrate::Migrator| m.iter().map(|m| m.version).collect();
    (versions(&SQLITE_MIGRATIONS), versions(&POSTGRES_MIGRATIONS))
}

/// The `sqlite://` URL of a database file. The path is percent-decoded when the URL is parsed,
/// so the characters that would end or escape it are encoded.
pub(crate) fn sqlite_url(path: &Path) -> String {
    let mut encoded = String::new();
    for c in path.display().to_string().chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            c => encoded.push(c),
        }
    }
    format!("sqlite://{encoded}?mode=rwc")
}

async fn sqlite_pool(url: &str, connections: u32) -> Result<AnyPool> {
    let pool = AnyPoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                // A new database gets 16 KiB pages (SQLite's default is 4 KiB): bulk writes
                // split and write a quarter as many pages (an import of 1 M values into the
                // indicator tables: 2.3 s instead of 3.1 s, measured in Python's sqlite3 on the
                // same schema). It only takes effect before the first write, so it comes
                // before the switch to WAL, which writes the header; existing files keep theirs.
                // WAL lets readers run beside the writer; FULL makes each commit durable before
                // it is acknowledged; foreign keys are off by default in SQLite.
                for pragma in [
                    "PRAGMA page_size = 16384",
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA synchronous = FULL",
                    "PRAGMA foreign_keys = ON",
                    "PRAGMA busy_timeout = 10000",
                ] {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                if connections == 1 {
                    // The writer walks large indexes on imports (millions of indicators keyed by
                    // hash): 64 MiB of page cache instead of SQLite's 2 MiB.
                    sqlx::query("PRAGMA cache_size = -65536")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

/// Hides the password in a database URL before it is shown or logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Maps a unique-constraint violation to a conflict with a message people understand.
fn conflict_on_unique(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(err),
    }
}

/// `SELECT` of the integers in `$1`, a JSON array, for `id IN (...)` with one parameter.
pub(crate) fn json_ids(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT value FROM json_each($1)",
        Backend::Postgres => "SELECT (json_array_elements_text($1::json))::bigint",
    }
}

/// Reads a column that holds one of the core's named values.
fn parse_column<T: FromStr>(row: &AnyRow, table: &'static str, column: &'static str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let text: String = row.try_get(column)?;
    text.parse().map_err(|e: T::Err| StoreError::Corrupt {
        table,
        column,
        detail: e.to_string(),
    })
}

/// Reads a column that holds JSON.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    table: &'static str,
    column: &'static str,
) -> Result<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        table,
        column,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_define_the_same_migrations() {
        let (sqlite, postgres) = migration_versions();
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
    }

    #[tokio::test]
    async fn opens_files_with_awkward_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd 100% name?#.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        store.ping().await.unwrap();
        assert!(path.is_file());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://qalxan:s3cret@db:5432/qalxan"),
            "postgres://qalxan:***@db:5432/qalxan"
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
