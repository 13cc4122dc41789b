//! Test databases for this crate's conformance suite and for other crates' tests (feature
//! `testing`): a fresh PostgreSQL database per test, dropped when the test ends.
//!
//! The rule, as DEVELOPERS.md states it: PostgreSQL tests read `SLUICE_TEST_DATABASE_URL`
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`, a database the tests may connect to
//! in order to create and drop others). Without it they print one line and pass; with
//! `CI=true` a missing variable or an unreachable server fails them instead.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::redact_url;

/// The variable naming the server the PostgreSQL tests use.
pub const DATABASE_URL_VAR: &str = "SLUICE_TEST_DATABASE_URL";

/// Test databases alive at once in one test binary: each test's stores hold a dozen
/// connections or more, and the server's default limit is 100.
static LIVE_DATABASES: Semaphore = Semaphore::const_new(4);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database created for one test. Dropping it drops the database (`WITH (FORCE)`, so
/// connections still open do not keep it alive), also when the test panicked.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
    _permit: SemaphorePermit<'static>,
}

impl TestDatabase {
    /// The URL of the fresh database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Creates `sluice_test_<random>` on the server `SLUICE_TEST_DATABASE_URL` names.
///
/// `None` (after printing `skipped: …`) when the variable is not set or the server cannot be
/// reached, so the calling test returns early; panics instead under `CI=true`.
pub async fn fresh_postgres_url() -> Option<TestDatabase> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let admin_url = match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ if ci => panic!("{DATABASE_URL_VAR} not set, and CI=true: the PostgreSQL tests must run"),
        _ => {
            println!("skipped: {DATABASE_URL_VAR} not set");
            return None;
        }
    };
    let permit = LIVE_DATABASES
        .acquire()
        .await
        .expect("the semaphore is static and never closed");
    let name = format!("sluice_test_{:016x}", rand::random::<u64>());
    if let Err(error) = create_database(&admin_url, &name).await {
        let message = format!(
            "PostgreSQL at {} unreachable: {error}",
            redact_url(&admin_url)
        );
        assert!(!ci, "{message} (CI=true: the PostgreSQL tests must run)");
        println!("skipped: {message}");
        return None;
    }
    Some(TestDatabase {
        url: with_database(&admin_url, &name),
        admin_url,
        name,
        _permit: permit,
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and may run on a runtime thread or while unwinding: drop the
        // database from a thread with a runtime of its own, and only warn if that fails.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_database(&admin_url, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: dropping test database {}: {error}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

async fn admin_connection(admin_url: &str) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(admin_url))
        .await
        .map_err(|_| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            ))
        })?
}

async fn create_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = admin_connection(admin_url).await?;
    // `name` is ours: `sluice_test_` and hex digits
    sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut admin)
        .await?;
    admin.close().await
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = admin_connection(admin_url).await?;
    sqlx::query(AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await
}

/// The same server URL naming another database; the query string is kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{authority}/{database}?{query}"),
        None => format!("{authority}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_on_the_same_server() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/db",
            ),
            (
                "postgres://u:p@host/x?sslmode=disable",
                "postgres://u:p@host/db?sslmode=disable",
            ),
            ("postgresql://host", "postgresql://host/db"),
            (
                "postgres://host:5432?application_name=t",
                "postgres://host:5432/db?application_name=t",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "db"), expected, "{url}");
        }
    }
}
