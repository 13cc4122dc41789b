//! Connections by name, for every step that opens a user's database (`sql`, `load`,
//! `ingest`'s SQL source, SQL sensors).
//!
//! A connection is a URL found, by its lower-cased name, in a `SLUICE_CONN_<NAME>`
//! environment variable or in the `[connections]` table of the secrets file (the environment
//! wins); never in the DAG file. A secrets file inside the DAG folder is refused, because the
//! DAG folder is in Git. Errors name the connection and the variable to set, never a
//! password: a URL in a message is always redacted.
//!
//! ```toml
//! # /etc/sluice/secrets.toml (--secrets-file, SLUICE_SECRETS_FILE or secrets_file in sluice.toml)
//! [connections]
//! warehouse = "postgres://loader:s3cret@db.internal:5432/warehouse"
//! scratch = "sqlite:///var/lib/sluice/scratch.db"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sluice_core::template::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection as _};

/// How long opening a connection may take before it counts as refused.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a connection could not be found or opened, without its password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error(
        "unknown connection `{name}` (in `connection:`): set SLUICE_CONN_{variable}=URL in the worker's environment, or add `{name} = \"URL\"` under [connections] in the secrets file"
    )]
    Unknown { name: String, variable: String },
    #[error(
        "the secrets file {path} is inside the DAG folder {dags_folder}, which is in Git: keep it outside"
    )]
    InsideDagFolder { path: String, dags_folder: String },
    #[error("reading the secrets file {path}: {message}")]
    SecretsFile { path: String, message: String },
    #[error(
        "connection `{name}` ({url}): unsupported URL scheme: expected postgres://… or sqlite:PATH"
    )]
    Unsupported { name: String, url: String },
    #[error("connection `{name}` ({url}): {message}")]
    Open {
        name: String,
        url: String,
        message: String,
    },
}

/// A secrets file that was checked to lie outside the DAG folder.
#[derive(Debug, Clone)]
pub struct SecretsFile {
    path: PathBuf,
}

impl SecretsFile {
    /// Checks that `path` is a readable file outside `dags_folder`.
    pub fn new(path: &Path, dags_folder: &Path) -> Result<Self, ConnectionError> {
        let shown = path.display().to_string();
        let absolute = std::fs::canonicalize(path).map_err(|e| ConnectionError::SecretsFile {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        if let Ok(dags) = std::fs::canonicalize(dags_folder)
            && absolute.starts_with(&dags)
        {
            return Err(ConnectionError::InsideDagFolder {
                path: shown,
                dags_folder: dags_folder.display().to_string(),
            });
        }
        let file = SecretsFile { path: absolute };
        file.read()?;
        Ok(file)
    }

    /// The `[connections]` table: name → URL. Read at every attempt, so a rotated password
    /// is used without restarting the worker.
    fn read(&self) -> Result<BTreeMap<String, String>, ConnectionError> {
        let error = |message: String| ConnectionError::SecretsFile {
            path: self.path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(&self.path).map_err(|e| error(e.to_string()))?;
        // toml's messages quote the offending line, which may hold a password: position only
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            error(match e.span() {
                Some(span) => format!(
                    "not valid TOML (line {})",
                    text[..span.start.min(text.len())].lines().count().max(1)
                ),
                None => "not valid TOML".to_owned(),
            })
        })?;
        let mut urls = BTreeMap::new();
        for (key, value) in &table {
            let toml::Value::Table(section) = value else {
                return Err(error(format!(
                    "unexpected key `{key}`: connections go under [connections]"
                )));
            };
            if key != "connections" {
                return Err(error(format!(
                    "unknown section [{key}]: connections go under [connections]"
                )));
            }
            for (name, url) in section {
                let toml::Value::String(url) = url else {
                    return Err(error(format!("connection `{name}`: expected a URL string")));
                };
                urls.insert(name.to_ascii_lowercase(), url.clone());
            }
        }
        Ok(urls)
    }
}

/// The connections one attempt may use, by lower-cased name.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    urls: BTreeMap<String, String>,
}

impl Connections {
    /// The secrets file's connections, then the `SLUICE_CONN_<NAME>` variables of `env` over
    /// them (the environment wins).
    pub fn load(
        env: &BTreeMap<String, String>,
        secrets_file: Option<&SecretsFile>,
    ) -> Result<Self, ConnectionError> {
        let mut urls = match secrets_file {
            Some(file) => file.read()?,
            None => BTreeMap::new(),
        };
        for (key, value) in env {
            if let Some(name) = key.strip_prefix("SLUICE_CONN_") {
                urls.insert(name.to_ascii_lowercase(), value.clone());
            }
        }
        Ok(Connections { urls })
    }

    /// Adds `defaults` (name → URL) under the names neither the secrets file nor the
    /// environment defines: `standalone`'s built-in `local` connection.
    pub fn with_defaults(mut self, defaults: &BTreeMap<String, String>) -> Self {
        for (name, url) in defaults {
            self.urls
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| url.clone());
        }
        self
    }

    /// The URL of a connection; `Unknown` names the variable to set.
    pub fn url(&self, name: &str) -> Result<&str, ConnectionError> {
        self.urls
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .ok_or_else(|| ConnectionError::Unknown {
                name: name.to_owned(),
                variable: name.to_ascii_uppercase(),
            })
    }

    /// Each connection's parts, for `{{ conn.<name>.* }}`. A URL that does not parse is
    /// left out with a warning naming it, never its value.
    pub fn for_templates(&self) -> BTreeMap<String, Connection> {
        let mut connections = BTreeMap::new();
        for (name, url) in &self.urls {
            match parse(url) {
                Ok(connection) => {
                    connections.insert(name.clone(), connection);
                }
                Err(_) => {
                    tracing::warn!(connection = %name, "ignoring a connection that is not a valid URL")
                }
            }
        }
        connections
    }

    /// Every password the connections hold: masked wherever an attempt writes text.
    pub fn passwords(&self) -> Vec<String> {
        let mut secrets: Vec<String> = Vec::new();
        for url in self.urls.values() {
            if let Ok(connection) = parse(url)
                && let Some(password) = connection.password
            {
                // the raw (percent-encoded) form may appear too
                if let Some(raw) = raw_password(url) {
                    secrets.push(raw);
                }
                secrets.push(password);
            }
        }
        secrets
    }

    /// Opens the named connection: PostgreSQL (`postgres://`, `postgresql://`) or SQLite
    /// (`sqlite://PATH`, `sqlite:PATH`; a relative path resolves against `base_dir`).
    pub async fn open(&self, name: &str, base_dir: &Path) -> Result<Database, ConnectionError> {
        let url = self.url(name)?;
        let failed = |message: String| ConnectionError::Open {
            name: name.to_owned(),
            url: redact(url),
            message,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| failed(clean(&e, url)))?;
            let connection = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
                .await
                .map_err(|_| failed(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
                .map_err(|e| failed(clean(&e, url)))?;
            Ok(Database::Postgres(connection))
        } else if let Some(path) = sqlite_path(url) {
            let path = base_dir.join(path);
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .busy_timeout(Duration::from_secs(10));
            let connection = SqliteConnection::connect_with(&options)
                .await
                .map_err(|e| failed(clean(&e, url)))?;
            Ok(Database::Sqlite(connection))
        } else {
            Err(ConnectionError::Unsupported {
                name: name.to_owned(),
                url: redact(url),
            })
        }
    }
}

/// An open connection to a user's database.
pub enum Database {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// A URL fit for messages: its password (and credential-like query values) as `***`.
pub fn redact(url: &str) -> String {
    match parse(url) {
        Ok(connection) => connection.redacted_url(),
        Err(_) => sluice_store::redact_url(url),
    }
}

/// A connection's parts; `sqlite:PATH` (no `//`) is read as a SQLite path.
fn parse(url: &str) -> Result<Connection, String> {
    match sqlite_path(url) {
        Some(path) => Ok(Connection {
            url: url.to_owned(),
            scheme: "sqlite".to_owned(),
            database: Some(path.to_owned()),
            ..Connection::default()
        }),
        None => Connection::parse_url(url),
    }
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.strip_prefix("//").unwrap_or(rest);
    (!path.is_empty()).then_some(path)
}

/// The password as written in the URL (still percent-encoded).
fn raw_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// A driver's message with any trace of the URL's password removed.
fn clean(error: &dyn std::fmt::Display, url: &str) -> String {
    let mut message = error.to_string();
    if let Ok(connection) = parse(url) {
        for secret in connection
            .password
            .into_iter()
            .chain(raw_password(url))
            .filter(|s| !s.is_empty())
        {
            message = message.replace(&secret, "***");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_environment_wins_over_the_secrets_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dags = dir.path().join("dags");
        std::fs::create_dir(&dags).expect("mkdir");
        let path = dir.path().join("secrets.toml");
        std::fs::write(
            &path,
            "[connections]\nwarehouse = \"postgres://file:pw-from-file@db/w\"\nScratch = \"sqlite:scratch.db\"\n",
        )
        .expect("write");
        let file = SecretsFile::new(&path, &dags).expect("a file outside the DAG folder");
        let connections = Connections::load(
            &env(&[("SLUICE_CONN_WAREHOUSE", "postgres://env:pw-from-env@db/w")]),
            Some(&file),
        )
        .expect("loading");
        assert_eq!(
            connections.url("warehouse"),
            Ok("postgres://env:pw-from-env@db/w")
        );
        assert_eq!(connections.url("scratch"), Ok("sqlite:scratch.db"));
        assert_eq!(
            connections.for_templates()["scratch"].database.as_deref(),
            Some("scratch.db")
        );
    }

    #[test]
    fn defaults_fill_only_the_names_nothing_else_defines() {
        let defaults = BTreeMap::from([
            ("local".to_owned(), "sqlite:.sluice/local.db".to_owned()),
            ("warehouse".to_owned(), "sqlite:default.db".to_owned()),
        ]);
        let connections = Connections::load(
            &env(&[("SLUICE_CONN_WAREHOUSE", "postgres://u:pw@db/w")]),
            None,
        )
        .expect("loading")
        .with_defaults(&defaults);
        assert_eq!(connections.url("local"), Ok("sqlite:.sluice/local.db"));
        assert_eq!(connections.url("warehouse"), Ok("postgres://u:pw@db/w"));
    }

    #[test]
    fn a_secrets_file_inside_the_dag_folder_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, "[connections]\n").expect("write");
        let error = SecretsFile::new(&path, dir.path()).expect_err("inside the DAG folder");
        assert!(
            matches!(error, ConnectionError::InsideDagFolder { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("which is in Git"), "{error}");
    }

    #[test]
    fn a_malformed_secrets_file_is_named_without_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.toml");
        std::fs::write(
            &path,
            "[connections]\nwarehouse = postgres://u:hunter22@db\n",
        )
        .expect("write");
        let error = SecretsFile::new(&path, &dir.path().join("dags")).expect_err("not TOML");
        let message = error.to_string();
        assert!(message.contains("not valid TOML (line 2)"), "{message}");
        assert!(!message.contains("hunter22"), "{message}");
    }

    #[test]
    fn an_unknown_connection_names_the_variable_to_set() {
        let error = Connections::default()
            .url("warehouse")
            .expect_err("no such connection");
        assert_eq!(
            error.to_string(),
            "unknown connection `warehouse` (in `connection:`): set SLUICE_CONN_WAREHOUSE=URL in the worker's environment, or add `warehouse = \"URL\"` under [connections] in the secrets file"
        );
    }

    #[test]
    fn passwords_are_known_raw_and_decoded() {
        let connections = Connections::load(
            &env(&[("SLUICE_CONN_A", "postgres://u:p%40ss-word@db/x")]),
            None,
        )
        .expect("loading");
        let passwords = connections.passwords();
        assert!(passwords.contains(&"p@ss-word".to_owned()), "{passwords:?}");
        assert!(
            passwords.contains(&"p%40ss-word".to_owned()),
            "{passwords:?}"
        );
        assert_eq!(
            redact("postgres://u:p%40ss-word@db/x"),
            "postgres://u:***@db/x"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_names_it_without_the_password() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let connections = Connections::load(
            &env(&[(
                "SLUICE_CONN_WAREHOUSE",
                &format!("postgres://loader:hunter22@127.0.0.1:{port}/w"),
            )]),
            None,
        )
        .expect("loading");
        let error = match connections.open("warehouse", Path::new(".")).await {
            Ok(_) => panic!("nothing listens on port {port}"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.starts_with(&format!(
                "connection `warehouse` (postgres://loader:***@127.0.0.1:{port}/w): "
            )),
            "{error}"
        );
        assert!(!error.contains("hunter22"), "{error}");
    }
}
