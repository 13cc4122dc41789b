//! Connections (`conn.<name>.*` in templates), read from URLs such as `postgres://u:p@h:5432/db`.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// A connection's parts. Its `Debug` never shows the password; templates see every field
/// (`{{ conn.warehouse.password }}` is a legitimate use), plus the aliases `login` (= `user`)
/// and `schema` (= `database`) that Airflow users know.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// The URL as given.
    pub url: String,
    pub scheme: String,
    pub host: Option<String>,
    /// Only a port written in the URL; no scheme default is assumed.
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The path without its leading `/` (a database, schema, bucket prefix or file path).
    pub database: Option<String>,
    /// The query string, decoded: `?sslmode=require` → `{"sslmode": "require"}`.
    pub extra: BTreeMap<String, String>,
}

impl Connection {
    /// Splits `scheme://[user[:password]@]host[:port][/database][?key=value&…]`, decoding
    /// percent-escapes; `sqlite:path` (no `//`) is a SQLite file too. The error never repeats
    /// the URL, which may hold a password.
    pub fn parse_url(url: &str) -> Result<Connection, String> {
        let text = url.trim();
        if let Some(path) = text
            .strip_prefix("sqlite:")
            .filter(|rest| !rest.starts_with("//"))
        {
            let file = path.split_once('?').map_or(path, |(file, _)| file);
            return Ok(Connection {
                url: text.to_owned(),
                scheme: "sqlite".to_owned(),
                database: Some(file.to_owned()).filter(|file| !file.is_empty()),
                ..Connection::default()
            });
        }
        if !text.contains("://") {
            return Err("not a valid connection URL: expected scheme://[user[:password]@]host[:port][/database]".to_owned());
        }
        let parsed = url::Url::parse(text)
            .map_err(|error| format!("not a valid connection URL: {error}"))?;
        let host = parsed
            .host_str()
            .filter(|host| !host.is_empty())
            .map(|host| {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            });
        let path = parsed.path().trim_start_matches('/');
        Ok(Connection {
            url: text.to_owned(),
            scheme: parsed.scheme().to_owned(),
            host,
            port: parsed.port(),
            user: Some(percent_decode(parsed.username())).filter(|user| !user.is_empty()),
            password: parsed.password().map(percent_decode),
            database: Some(percent_decode(path)).filter(|database| !database.is_empty()),
            extra: parsed.query_pairs().into_owned().collect(),
        })
    }

    /// The URL with its password, and the values of query keys that look like credentials
    /// (`token`, `api_key`, `secret`…), replaced by `***`: for logs and error messages.
    pub fn redacted_url(&self) -> String {
        let has_password = self
            .password
            .as_deref()
            .is_some_and(|password| !password.is_empty());
        let has_secret_extra = self.extra.keys().any(|key| is_secret_key(key));
        if !has_password && !has_secret_extra {
            return self.url.clone();
        }
        let redacted = url::Url::parse(&self.url).ok().and_then(|mut parsed| {
            if has_password {
                parsed.set_password(Some("***")).ok()?;
            }
            if has_secret_extra {
                let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
                parsed
                    .query_pairs_mut()
                    .clear()
                    .extend_pairs(pairs.iter().map(|(key, value)| {
                        (
                            key.as_str(),
                            if is_secret_key(key) {
                                "***"
                            } else {
                                value.as_str()
                            },
                        )
                    }));
            }
            Some(parsed.to_string())
        });
        // A URL that no longer parses still must not show the secrets.
        redacted.unwrap_or_else(|| {
            let secrets = self.password.iter().chain(
                self.extra
                    .iter()
                    .filter(|(key, _)| is_secret_key(key))
                    .map(|(_, value)| value),
            );
            secrets
                .filter(|secret| !secret.is_empty())
                .fold(self.url.clone(), |url, secret| {
                    url.replace(secret.as_str(), "***")
                })
        })
    }
}

/// Query keys whose values are credentials: `?token=`, `?api_key=`, `?client_secret=`…
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "pass",
        "secret",
        "token",
        "key",
        "auth",
        "credential",
        "signature",
    ]
    .iter()
    .any(|word| key.contains(word))
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.redacted_url())
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field(
                "extra",
                &self
                    .extra
                    .iter()
                    .map(|(key, value)| (key, if is_secret_key(key) { "***" } else { value }))
                    .collect::<BTreeMap<_, _>>(),
            )
            .finish()
    }
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_struct("Connection", 10)?;
        fields.serialize_field("url", &self.url)?;
        fields.serialize_field("scheme", &self.scheme)?;
        fields.serialize_field("host", &self.host)?;
        fields.serialize_field("port", &self.port)?;
        fields.serialize_field("user", &self.user)?;
        fields.serialize_field("login", &self.user)?;
        fields.serialize_field("password", &self.password)?;
        fields.serialize_field("database", &self.database)?;
        fields.serialize_field("schema", &self.database)?;
        fields.serialize_field("extra", &self.extra)?;
        fields.end()
    }
}

/// `p%40ss` → `p@ss`; a malformed escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
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
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_url() {
        let connection = Connection::parse_url("postgres://loader:p%40ss:w0rd@db.internal:6432/warehouse?sslmode=require&application_name=sluice").unwrap();
        assert_eq!(connection.scheme, "postgres");
        assert_eq!(connection.host.as_deref(), Some("db.internal"));
        assert_eq!(connection.port, Some(6432));
        assert_eq!(connection.user.as_deref(), Some("loader"));
        assert_eq!(connection.password.as_deref(), Some("p@ss:w0rd"));
        assert_eq!(connection.database.as_deref(), Some("warehouse"));
        assert_eq!(
            connection.extra.get("sslmode").map(String::as_str),
            Some("require")
        );
        assert_eq!(
            connection.extra.get("application_name").map(String::as_str),
            Some("sluice")
        );
    }

    #[test]
    fn parses_urls_without_password_port_or_path() {
        let connection = Connection::parse_url("mysql://reader@db.example.com/sales").unwrap();
        assert_eq!(connection.user.as_deref(), Some("reader"));
        assert_eq!((connection.password, connection.port), (None, None));
        assert_eq!(connection.database.as_deref(), Some("sales"));

        let connection = Connection::parse_url("https://hooks.example.com").unwrap();
        assert_eq!(connection.host.as_deref(), Some("hooks.example.com"));
        assert_eq!((connection.user, connection.database), (None, None));
        assert!(connection.extra.is_empty());

        let connection = Connection::parse_url("sqlite:///var/lib/sluice/data.db").unwrap();
        assert_eq!(connection.host, None);
        assert_eq!(
            connection.database.as_deref(),
            Some("var/lib/sluice/data.db")
        );

        let connection = Connection::parse_url("redis://:secret@[::1]:6379").unwrap();
        assert_eq!(connection.host.as_deref(), Some("::1"));
        assert_eq!(connection.user, None);
        assert_eq!(connection.password.as_deref(), Some("secret"));
    }

    #[test]
    fn sqlite_urls_without_slashes_name_a_file() {
        let connection = Connection::parse_url("sqlite:data/warehouse.db").unwrap();
        assert_eq!(connection.scheme, "sqlite");
        assert_eq!(connection.database.as_deref(), Some("data/warehouse.db"));
        assert_eq!(connection.url, "sqlite:data/warehouse.db");
        assert_eq!(connection.host, None);
    }

    #[test]
    fn bad_urls_are_rejected_without_echoing_them() {
        let error = Connection::parse_url("db.internal:5432 with s3cret").unwrap_err();
        assert!(error.starts_with("not a valid connection URL"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        assert!(Connection::parse_url("").is_err());
    }

    #[test]
    fn debug_and_redacted_url_hide_password_and_secret_extras() {
        let connection = Connection::parse_url(
            "postgres://loader:hunter2@db:5432/dw?sslmode=require&api_token=abc123",
        )
        .unwrap();
        let debug = format!("{connection:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("abc123"), "{debug}");
        assert!(debug.contains("\"sslmode\": \"require\""), "{debug}");
        assert_eq!(
            connection.redacted_url(),
            "postgres://loader:***@db:5432/dw?sslmode=require&api_token=***"
        );
        let plain = Connection::parse_url("https://hooks.example.com/x?channel=ops").unwrap();
        assert_eq!(
            plain.redacted_url(),
            "https://hooks.example.com/x?channel=ops"
        );
        let hand_made = Connection {
            url: "weird hunter2".to_owned(),
            password: Some("hunter2".to_owned()),
            ..Connection::default()
        };
        assert_eq!(hand_made.redacted_url(), "weird ***");
    }

    #[test]
    fn serializes_every_field_with_airflow_aliases() {
        let connection = Connection::parse_url("postgres://loader:pw@db:5432/dw").unwrap();
        let json = serde_json::to_value(&connection).unwrap();
        assert_eq!(json["password"], "pw");
        assert_eq!(json["login"], "loader");
        assert_eq!(json["schema"], "dw");
        assert_eq!(json["port"], 5432);
        assert_eq!(json["url"], "postgres://loader:pw@db:5432/dw");
    }
}
