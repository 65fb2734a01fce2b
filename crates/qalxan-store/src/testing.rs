//! A fresh, empty database for each test, on whichever backend the test run asks for.
//!
//! With `QALXAN_TEST_DATABASE_URL=postgres://...` set, every [`TestDb`] is a new database created
//! on that server (the CI run points it at a throwaway cluster); otherwise it is a SQLite file in
//! a temporary folder. The same tests thereby run against both backends.

use crate::{Result, Store};
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that switches tests to PostgreSQL.
pub const POSTGRES_ENV: &str = "QALXAN_TEST_DATABASE_URL";

pub struct TestDb {
    pub store: Store,
    /// URL of this test's database, for starting a server process on it.
    pub url: String,
    /// Keeps the SQLite file's folder alive for the test's duration.
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new() -> Result<TestDb> {
        let dir = tempfile::tempdir().map_err(|e| crate::StoreError::Database(e.into()))?;
        let url = match std::env::var(POSTGRES_ENV) {
            Ok(base) if !base.is_empty() => create_postgres_database(&base).await?,
            _ => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("qalxan.db").display()
            ),
        };
        let store = Store::open(&url).await?;
        Ok(TestDb { store, url, dir })
    }

    pub fn is_postgres(&self) -> bool {
        self.store.backend() == crate::Backend::Postgres
    }
}

async fn create_postgres_database(base: &str) -> Result<String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    sqlx::any::install_default_drivers();
    let name = format!(
        "qx_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    );
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(base).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    <sqlx::AnyConnection as sqlx::Connection>::close(conn).await?;
    let (without_query, query) = match base.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (base, String::new()),
    };
    let prefix = match without_query.rfind('/') {
        Some(i) if i > "postgres://".len() => &without_query[..i],
        _ => without_query,
    };
    Ok(format!("{prefix}/{name}{query}"))
}
