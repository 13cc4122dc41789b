//! A sensor's four conditions, rendered once per attempt and checked once per poke. A check
//! says `Met` (with the step's outputs), `NotYet` (with why, for the log and the timeout
//! message) or fails the step (a misconfiguration that waiting cannot fix).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sluice_core::TaskState;
use sluice_core::spec::{SensorCondition, SignedDuration};
use sluice_store::{RunRange, redact_url};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Column, Connection as _, Row, TypeInfo, ValueRef};

use super::Sensing;
use crate::objects::Place;
use crate::steps::{StepContext, StepError, StepOutput};

pub(super) enum Check {
    Met(StepOutput),
    NotYet(String),
}

pub(super) enum Condition {
    File {
        /// As rendered, for messages.
        written: String,
        /// Resolved against `base_dir`; may hold glob characters.
        pattern: PathBuf,
    },
    /// An `s3://` or `gs://` URL (globs allowed), listed through `object_store`.
    Object {
        written: String,
        place: Place,
    },
    Http {
        /// The URL with any password masked, for messages.
        shown: String,
        url: String,
        expect_status: Vec<u16>,
        client: reqwest::Client,
        /// One check never outlasts this.
        timeout: Duration,
    },
    Sql {
        connection: Database,
        sql: String,
    },
    Task {
        dag: String,
        task: String,
        logical_date: DateTime<Utc>,
    },
}

impl Condition {
    pub(super) fn render(
        condition: &SensorCondition,
        poke_interval: Duration,
        ctx: &StepContext,
        sensing: &Sensing,
    ) -> Result<Condition, StepError> {
        match condition {
            SensorCondition::File { path } => {
                let written = ctx.render("file", path)?;
                if let Some((scheme, _)) = written.split_once("://")
                    && scheme != "file"
                {
                    let place = Place::parse(&written, &ctx.base_dir, "file")?;
                    return Ok(Condition::Object { written, place });
                }
                let pattern = local_path(&written, &ctx.base_dir)?;
                Ok(Condition::File { written, pattern })
            }
            SensorCondition::Http { url, expect_status } => {
                let url = ctx.render("http.url", url)?;
                let parsed = reqwest::Url::parse(&url)
                    .map_err(|error| StepError::new(format!("`http.url`: {error}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(StepError::new(format!(
                        "`http.url`: `{}://` is not HTTP; the http sensor asks http:// and https:// URLs",
                        parsed.scheme()
                    )));
                }
                // one check never outlasts the interval between checks (nor a minute)
                let request_timeout =
                    poke_interval.clamp(Duration::from_secs(1), Duration::from_secs(60));
                Ok(Condition::Http {
                    shown: redact_url(&url),
                    url,
                    expect_status: expect_status.clone(),
                    client: crate::http::client().map_err(StepError::new)?,
                    timeout: request_timeout,
                })
            }
            SensorCondition::Sql { connection, sql } => {
                let sql = ctx.render("sql.sql", sql)?;
                Ok(Condition::Sql {
                    connection: Database::named(connection, ctx)?,
                    sql,
                })
            }
            SensorCondition::Task { dag, task, offset } => Ok(Condition::Task {
                dag: dag.to_string(),
                task: task.to_string(),
                logical_date: shifted(sensing.logical_date, *offset)?,
            }),
        }
    }

    /// The condition in the user's terms: `file `data/ready.flag``.
    pub(super) fn describe(&self) -> String {
        match self {
            Condition::File { written, .. } | Condition::Object { written, .. } => {
                format!("file `{written}`")
            }
            Condition::Http { shown, .. } => format!("http `{shown}`"),
            Condition::Sql { connection, .. } => format!("sql on connection `{}`", connection.name),
            Condition::Task {
                dag,
                task,
                logical_date,
            } => format!(
                "task `{dag}.{task}` for {}",
                logical_date.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        }
    }

    pub(super) async fn check(&self, sensing: &Sensing) -> Result<Check, StepError> {
        match self {
            Condition::File { written, pattern } => file_exists(written, pattern),
            Condition::Object { written, place } => object_exists(written, place).await,
            Condition::Http {
                shown,
                url,
                expect_status,
                client,
                timeout,
            } => http_answers(client.get(url).timeout(*timeout), url, shown, expect_status).await,
            Condition::Sql { connection, sql } => connection.truthy(sql).await,
            Condition::Task {
                dag,
                task,
                logical_date,
            } => {
                let Some(store) = &sensing.store else {
                    return Err(StepError::new(
                        "the `task` condition reads other runs from the database: it runs on a worker, not in `sluice tasks test`",
                    ));
                };
                task_succeeded(store, dag, task, *logical_date).await
            }
        }
    }
}

/// A local path or `file://` URL, relative paths against the worker's base directory.
fn local_path(written: &str, base_dir: &Path) -> Result<PathBuf, StepError> {
    let path = written.strip_prefix("file://").unwrap_or(written);
    if path.is_empty() {
        return Err(StepError::new("`file`: the path is empty"));
    }
    Ok(base_dir.join(path))
}

/// The first object the URL matches. A store that cannot be listed (unreachable, denied) is
/// "not yet", with its reason in the log, as an unreachable HTTP server is.
async fn object_exists(written: &str, place: &Place) -> Result<Check, StepError> {
    Ok(match place.matches().await {
        Ok(found) => match found.first() {
            Some(first) => Check::Met(output([("path", json!(place.show(first)))])),
            None => Check::NotYet(format!("no object matches {written}")),
        },
        Err(error) => Check::NotYet(error.message),
    })
}

fn file_exists(written: &str, pattern: &Path) -> Result<Check, StepError> {
    let text = pattern.to_string_lossy();
    let first = if text.contains(['*', '?', '[']) {
        let mut matches = glob::glob(&text).map_err(|error| {
            StepError::new(format!("`file`: `{written}` is not a valid glob: {error}"))
        })?;
        matches.find_map(Result::ok)
    } else {
        pattern.exists().then(|| pattern.to_path_buf())
    };
    Ok(match first {
        Some(path) => Check::Met(output([("path", json!(path.to_string_lossy()))])),
        None => Check::NotYet(format!("no file matches {text}")),
    })
}

async fn http_answers(
    request: reqwest::RequestBuilder,
    url: &str,
    shown: &str,
    expect_status: &[u16],
) -> Result<Check, StepError> {
    let response = match request.send().await {
        Ok(response) => response,
        // the service may not be up yet: that is what a sensor waits for
        Err(error) => {
            let cause = std::error::Error::source(&error)
                .map(|source| source.to_string())
                .unwrap_or_else(|| error.to_string());
            return Ok(Check::NotYet(format!(
                "could not reach {shown}: {}",
                cause.replace(url, shown)
            )));
        }
    };
    let status = response.status().as_u16();
    let expected = if expect_status.is_empty() {
        response.status().is_success()
    } else {
        expect_status.contains(&status)
    };
    Ok(if expected {
        Check::Met(output([("status", json!(status))]))
    } else {
        let wanted = if expect_status.is_empty() {
            "any 2xx".to_owned()
        } else {
            expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Check::NotYet(format!("{shown} answered {status} (expected {wanted})"))
    })
}

/// A named connection from the template context (`SLUICE_CONN_<NAME>` on the worker).
pub(super) struct Database {
    name: String,
    url: String,
    scheme: String,
    password: Option<String>,
}

impl Database {
    fn named(name: &str, ctx: &StepContext) -> Result<Database, StepError> {
        let entry = ctx
            .template_context
            .get("conn")
            .and_then(|connections| connections.get(name.to_ascii_lowercase()))
            .ok_or_else(|| {
                StepError::new(format!(
                    "`sql.connection`: connection `{name}` is not defined: set SLUICE_CONN_{} to its URL on the worker",
                    name.to_ascii_uppercase()
                ))
            })?;
        let text = |field: &str| entry.get(field).and_then(Value::as_str).map(str::to_owned);
        let database = Database {
            name: name.to_owned(),
            url: text("url").unwrap_or_default(),
            scheme: text("scheme").unwrap_or_default(),
            password: text("password").filter(|password| !password.is_empty()),
        };
        if !matches!(
            database.scheme.as_str(),
            "postgres" | "postgresql" | "sqlite"
        ) {
            return Err(StepError::new(format!(
                "`sql.connection`: connection `{name}` is `{}://`: the sql sensor queries PostgreSQL (postgres://) and SQLite (sqlite://)",
                database.scheme
            )));
        }
        Ok(database)
    }

    /// An error's text with the URL and the password (should a driver repeat them) masked.
    fn masked(&self, error: impl std::fmt::Display) -> String {
        let mut text = error.to_string().replace(&self.url, &redact_url(&self.url));
        if let Some(password) = &self.password {
            text = text.replace(password.as_str(), "***");
        }
        text
    }

    /// The first column of the first row, as true or false. A database that cannot be
    /// reached is "not yet"; a query the database refuses fails the step.
    async fn truthy(&self, sql: &str) -> Result<Check, StepError> {
        let value = if self.scheme == "sqlite" {
            match SqliteConnection::connect(&self.url).await {
                Ok(mut db) => {
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                        .fetch_optional(&mut db)
                        .await;
                    let _ = db.close().await;
                    row.map(|row| row.map(|row| sqlite_value(&row)))
                }
                Err(error) => return Ok(self.unreachable(error)),
            }
        } else {
            match PgConnection::connect(&self.url).await {
                Ok(mut db) => {
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                        .fetch_optional(&mut db)
                        .await;
                    let _ = db.close().await;
                    row.map(|row| row.map(|row| postgres_value(&row)))
                }
                Err(error) => return Ok(self.unreachable(error)),
            }
        };
        let value = match value {
            Ok(value) => value.transpose().map_err(|error| self.failed(error))?,
            // the database's own words, without the driver's wrapping (or the server's source line)
            Err(sqlx::Error::Database(error)) => return Err(self.failed(error.message())),
            Err(error) => return Ok(self.unreachable(error)),
        };
        let Some(value) = value else {
            return Ok(Check::NotYet("the query returned no rows".to_owned()));
        };
        Ok(if is_true(&value) {
            Check::Met(output([("value", value)]))
        } else {
            Check::NotYet(format!("the query returned {value}"))
        })
    }

    fn unreachable(&self, error: sqlx::Error) -> Check {
        Check::NotYet(format!(
            "could not query connection `{}`: {}",
            self.name,
            self.masked(error)
        ))
    }

    fn failed(&self, error: impl std::fmt::Display) -> StepError {
        StepError::new(format!(
            "`sql.sql` failed on connection `{}`: {}",
            self.name,
            self.masked(error)
        ))
    }
}

/// True, non-zero, non-empty.
fn is_true(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
    }
}

fn sqlite_value(row: &sqlx::sqlite::SqliteRow) -> Result<Value, String> {
    if row.columns().is_empty() {
        return Err("the query returns no columns".to_owned());
    }
    let raw = row.try_get_raw(0).map_err(|error| error.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().name().to_owned();
    let value = match kind.as_str() {
        "INTEGER" | "BOOLEAN" => row.try_get::<i64, _>(0).map(Value::from),
        "REAL" => row.try_get::<f64, _>(0).map(Value::from),
        "BLOB" => row.try_get::<Vec<u8>, _>(0).map(|bytes| json!(bytes.len())),
        _ => row.try_get::<String, _>(0).map(Value::from),
    };
    value.map_err(|error| error.to_string())
}

fn postgres_value(row: &sqlx::postgres::PgRow) -> Result<Value, String> {
    let Some(column) = row.columns().first() else {
        return Err("the query returns no columns".to_owned());
    };
    let raw = row.try_get_raw(0).map_err(|error| error.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = column.type_info().name().to_owned();
    let value = match kind.as_str() {
        "BOOL" => row.try_get::<bool, _>(0).map(Value::from),
        "INT2" => row.try_get::<i16, _>(0).map(Value::from),
        "INT4" => row.try_get::<i32, _>(0).map(Value::from),
        "INT8" => row.try_get::<i64, _>(0).map(Value::from),
        "FLOAT4" => row.try_get::<f32, _>(0).map(Value::from),
        "FLOAT8" => row.try_get::<f64, _>(0).map(Value::from),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => row.try_get::<String, _>(0).map(Value::from),
        other => {
            return Err(format!(
                "the first column is of type {other}; cast it to boolean, integer or text"
            ));
        }
    };
    value.map_err(|error| error.to_string())
}

/// The logical date the `task` condition looks at: the run's, shifted by `offset`.
fn shifted(
    logical_date: DateTime<Utc>,
    offset: SignedDuration,
) -> Result<DateTime<Utc>, StepError> {
    let magnitude = chrono::Duration::from_std(offset.magnitude)
        .map_err(|_| StepError::new("`task.offset` is too long"))?;
    let shifted = if offset.negative {
        logical_date.checked_sub_signed(magnitude)
    } else {
        logical_date.checked_add_signed(magnitude)
    };
    shifted.ok_or_else(|| StepError::new("`task.offset` is too long"))
}

/// Met when the DAG has a run for exactly that logical date in which every instance of the
/// task (every map index) succeeded.
async fn task_succeeded(
    store: &Arc<dyn sluice_store::Store>,
    dag: &str,
    task: &str,
    logical_date: DateTime<Utc>,
) -> Result<Check, StepError> {
    let range = RunRange {
        dag_id: dag.to_owned(),
        start: logical_date,
        end: logical_date + chrono::Duration::microseconds(1),
    };
    let date = logical_date.format("%Y-%m-%dT%H:%M:%SZ");
    let runs = match store.runs_in_range(&range).await {
        Ok(runs) => runs,
        Err(error) => {
            return Ok(Check::NotYet(format!(
                "could not read the runs of `{dag}`: {error}"
            )));
        }
    };
    let Some(run) = runs.into_iter().next() else {
        return Ok(Check::NotYet(format!("DAG `{dag}` has no run for {date}")));
    };
    let instances = match store.task_instances(run.pk).await {
        Ok(instances) => instances,
        Err(error) => {
            return Ok(Check::NotYet(format!(
                "could not read run `{}`: {error}",
                run.run_id
            )));
        }
    };
    let states: Vec<TaskState> = instances
        .iter()
        .filter(|instance| instance.task_id == task)
        .map(|instance| instance.state)
        .collect();
    if states.is_empty() {
        return Ok(Check::NotYet(format!(
            "run `{}` of `{dag}` has no task `{task}`",
            run.run_id
        )));
    }
    if states.iter().all(|state| *state == TaskState::Success) {
        return Ok(Check::Met(output([("run_id", json!(run.run_id))])));
    }
    let shown: Vec<&str> = states.iter().map(|state| state.as_str()).collect();
    Ok(Check::NotYet(format!(
        "task `{task}` of run `{}` is {}",
        run.run_id,
        shown.join(", ")
    )))
}

fn output<const N: usize>(pairs: [(&str, Value); N]) -> StepOutput {
    StepOutput {
        outputs: pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect::<BTreeMap<_, _>>(),
        exit_code: None,
    }
}
