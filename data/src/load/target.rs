//! The database a load writes to, read from a connection URL; it never shows the password.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio_util::sync::CancellationToken;

use super::LoadError;

/// How long connecting may take before the load gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A named connection's database: PostgreSQL (`postgres://…`, `postgresql://…`) or SQLite
/// (`sqlite:path`, `sqlite://path`, `sqlite:///absolute/path`; a relative path resolves
/// against the base directory).
#[derive(Clone)]
pub struct Destination {
    name: String,
    kind: Kind,
    /// The password as written and decoded: scrubbed from every message, whatever made it.
    secrets: Vec<String>,
}

#[derive(Clone)]
pub(crate) enum Kind {
    Postgres(Box<PgConnectOptions>),
    Sqlite(PathBuf),
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("database", &self.describe())
            .finish()
    }
}

impl Destination {
    /// `name` is the connection's name as the DAG writes it, `url` its value.
    pub fn parse(name: &str, url: &str, base_dir: &Path) -> Result<Destination, LoadError> {
        let url = url.trim();
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        let secrets = secrets_of(url);
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url).map_err(|_| LoadError::Connect {
                    connection: name.to_owned(),
                    message: "not a valid PostgreSQL URL: expected postgres://user:password@host:5432/database".to_owned(),
                })?;
                Kind::Postgres(Box::new(options))
            }
            "sqlite" => {
                let rest = &url[scheme.len() + 1..];
                let rest = rest.strip_prefix("//").unwrap_or(rest);
                let path = rest.split_once('?').map_or(rest, |(path, _)| path);
                if path.is_empty() {
                    return Err(LoadError::Connect {
                        connection: name.to_owned(),
                        message: "the SQLite URL names no file: write sqlite:path/to/file.db"
                            .to_owned(),
                    });
                }
                Kind::Sqlite(base_dir.join(path))
            }
            _ => {
                return Err(LoadError::UnsupportedDatabase {
                    connection: name.to_owned(),
                    scheme: scheme.to_owned(),
                });
            }
        };
        Ok(Destination {
            name: name.to_owned(),
            kind,
            secrets,
        })
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `PostgreSQL at host:port/database` or `SQLite file path`, for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Postgres(options) => format!(
                "PostgreSQL at {}:{}/{}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or("")
            ),
            Kind::Sqlite(path) => format!("SQLite file {}", path.display()),
        }
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    /// `text` with the password replaced by `***`.
    pub(crate) fn scrub(&self, text: String) -> String {
        self.secrets
            .iter()
            .fold(text, |text, secret| text.replace(secret.as_str(), "***"))
    }

    fn connect_error(&self, message: impl std::fmt::Display) -> LoadError {
        LoadError::Connect {
            connection: self.name.clone(),
            message: self.scrub(format!("cannot connect to {}: {message}", self.describe())),
        }
    }

    pub(crate) async fn connect_postgres(
        &self,
        options: &PgConnectOptions,
        cancel: &CancellationToken,
    ) -> Result<PgConnection, LoadError> {
        let options = options.clone().application_name("sluice load");
        self.connect_within(cancel, PgConnection::connect_with(&options))
            .await
    }

    pub(crate) async fn connect_sqlite(
        &self,
        path: &Path,
        cancel: &CancellationToken,
    ) -> Result<SqliteConnection, LoadError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(30));
        self.connect_within(cancel, SqliteConnection::connect_with(&options))
            .await
    }

    async fn connect_within<C>(
        &self,
        cancel: &CancellationToken,
        connect: impl Future<Output = Result<C, sqlx::Error>>,
    ) -> Result<C, LoadError> {
        tokio::select! {
            () = cancel.cancelled() => Err(LoadError::Cancelled),
            result = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match result {
                Ok(Ok(connection)) => Ok(connection),
                Ok(Err(error)) => Err(self.connect_error(error)),
                Err(_) => Err(self.connect_error(format_args!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))),
            },
        }
    }
}

/// The password in `scheme://user:password@host…` as written and percent-decoded: what
/// [`Destination::scrub`] hides.
fn secrets_of(url: &str) -> Vec<String> {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    let Some(password) = password else {
        return Vec::new();
    };
    let mut decoded = Vec::with_capacity(password.len());
    let bytes = password.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| password.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).into_owned();
    if decoded == password {
        vec![decoded]
    } else {
        // the longer first, so a decoded password inside the written one cannot half-match
        let mut secrets = vec![password.to_owned(), decoded];
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_postgres_and_sqlite_urls() {
        let base = Path::new("/srv/sluice");
        let pg = Destination::parse(
            "warehouse",
            "postgres://loader:s3cret@db.internal:6432/dw",
            base,
        )
        .unwrap();
        assert_eq!(pg.describe(), "PostgreSQL at db.internal:6432/dw");
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert_eq!(
            pg.scrub("bad password s3cret".to_owned()),
            "bad password ***"
        );
        let encoded = Destination::parse("w", "postgres://u:p%40ss@h/db", base).unwrap();
        assert_eq!(encoded.scrub("p@ss and p%40ss".to_owned()), "*** and ***");
        for (url, path) in [
            ("sqlite:data/out.db", "/srv/sluice/data/out.db"),
            ("sqlite://data/out.db", "/srv/sluice/data/out.db"),
            ("sqlite:///var/lib/out.db?mode=rwc", "/var/lib/out.db"),
        ] {
            let sqlite = Destination::parse("local", url, base).unwrap();
            assert_eq!(sqlite.describe(), format!("SQLite file {path}"), "{url}");
        }
    }

    #[test]
    fn other_databases_are_named_errors() {
        let error = Destination::parse("crm", "mysql://u:pw@h/db", Path::new(".")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`connection: crm` is a `mysql` URL: load writes to PostgreSQL (postgres://…) and SQLite (sqlite:path or sqlite://path)"
        );
        let error = Destination::parse("local", "sqlite:", Path::new(".")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`connection: local`: the SQLite URL names no file: write sqlite:path/to/file.db"
        );
    }
}
