//! The `sql` source of `ingest`: one query on a named connection (PostgreSQL or SQLite), its
//! rows as JSON records keyed by column name.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Column, Connection as _, Row, TypeInfo, ValueRef};

use super::Data;
use crate::steps::{StepContext, StepError};

pub(super) async fn query(
    name: &str,
    query: &str,
    ctx: &StepContext,
) -> Result<(Data, BTreeMap<String, Value>), StepError> {
    let connection = Connection::named(name, ctx)?;
    let records = match connection.scheme.as_str() {
        "postgres" | "postgresql" => postgres(&connection, query).await?,
        "sqlite" => sqlite(&connection, query).await?,
        other => {
            return Err(StepError::new(format!(
                "connection `{name}` is `{other}://`: ingest queries PostgreSQL (postgres://) and SQLite (sqlite://) connections"
            )));
        }
    };
    ctx.log.line(format!(
        "query on connection `{name}` returned {} rows",
        records.len()
    ));
    Ok((Data::Records(records), BTreeMap::new()))
}

/// A connection as the template context holds it (from `SLUICE_CONN_<NAME>`).
struct Connection {
    name: String,
    url: String,
    scheme: String,
    password: Option<String>,
}

impl Connection {
    fn named(name: &str, ctx: &StepContext) -> Result<Connection, StepError> {
        let key = name.to_ascii_lowercase();
        let entry = ctx
            .template_context
            .get("conn")
            .and_then(|connections| connections.get(&key))
            .ok_or_else(|| {
                StepError::new(format!(
                    "connection `{name}` is not defined: set SLUICE_CONN_{} to its URL on the worker",
                    name.to_ascii_uppercase()
                ))
            })?;
        let text = |field: &str| entry.get(field).and_then(Value::as_str).map(str::to_owned);
        Ok(Connection {
            name: name.to_owned(),
            url: text("url").unwrap_or_default(),
            scheme: text("scheme").unwrap_or_default(),
            password: text("password").filter(|password| !password.is_empty()),
        })
    }

    /// A database error in words, with the URL and password (should a driver repeat them) masked.
    fn error(&self, doing: &str, error: impl std::fmt::Display) -> StepError {
        let mut text = error.to_string().replace(&self.url, "<url>");
        if let Some(password) = &self.password {
            text = text.replace(password.as_str(), "***");
        }
        StepError::new(format!("{doing} on connection `{}`: {text}", self.name))
    }
}

async fn postgres(connection: &Connection, query: &str) -> Result<Vec<Value>, StepError> {
    let mut db = PgConnection::connect(&connection.url)
        .await
        .map_err(|e| connection.error("connecting", e))?;
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(query)).fetch(&mut db);
    let mut records = Vec::new();
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| connection.error("running the query", e))?
    {
        records.push(postgres_record(&row)?);
    }
    Ok(records)
}

fn postgres_record(row: &PgRow) -> Result<Value, StepError> {
    let mut record = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let type_name = column.type_info().name().to_owned();
        let bad =
            |e: sqlx::Error| StepError::new(format!("reading column `{name}` ({type_name}): {e}"));
        let value = if row.try_get_raw(index).map_err(bad)?.is_null() {
            Value::Null
        } else {
            match type_name.as_str() {
                "BOOL" => Value::from(row.try_get::<bool, _>(index).map_err(bad)?),
                "INT2" => Value::from(row.try_get::<i16, _>(index).map_err(bad)?),
                "INT4" => Value::from(row.try_get::<i32, _>(index).map_err(bad)?),
                "INT8" => Value::from(row.try_get::<i64, _>(index).map_err(bad)?),
                "FLOAT4" => Value::from(row.try_get::<f32, _>(index).map_err(bad)?),
                "FLOAT8" => Value::from(row.try_get::<f64, _>(index).map_err(bad)?),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => {
                    Value::from(row.try_get::<String, _>(index).map_err(bad)?)
                }
                "JSON" | "JSONB" => row.try_get::<Value, _>(index).map_err(bad)?,
                "UUID" => Value::from(
                    row.try_get::<uuid::Uuid, _>(index)
                        .map_err(bad)?
                        .to_string(),
                ),
                "TIMESTAMPTZ" => Value::from(
                    row.try_get::<chrono::DateTime<chrono::Utc>, _>(index)
                        .map_err(bad)?
                        .to_rfc3339(),
                ),
                "TIMESTAMP" => Value::from(
                    row.try_get::<chrono::NaiveDateTime, _>(index)
                        .map_err(bad)?
                        .to_string(),
                ),
                "DATE" => Value::from(
                    row.try_get::<chrono::NaiveDate, _>(index)
                        .map_err(bad)?
                        .to_string(),
                ),
                "TIME" => Value::from(
                    row.try_get::<chrono::NaiveTime, _>(index)
                        .map_err(bad)?
                        .to_string(),
                ),
                other => {
                    return Err(StepError::new(format!(
                        "column `{name}` has type {other}, which ingest cannot read: cast it in the query (`{name}::text` or `{name}::float8`)"
                    )));
                }
            }
        };
        record.insert(name.to_owned(), value);
    }
    Ok(Value::Object(record))
}

async fn sqlite(connection: &Connection, query: &str) -> Result<Vec<Value>, StepError> {
    let mut db = SqliteConnection::connect(&connection.url)
        .await
        .map_err(|e| connection.error("connecting", e))?;
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(query)).fetch(&mut db);
    let mut records = Vec::new();
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| connection.error("running the query", e))?
    {
        records.push(sqlite_record(&row)?);
    }
    Ok(records)
}

/// SQLite values by their storage class: integers, reals, text; a BLOB is refused.
fn sqlite_record(row: &SqliteRow) -> Result<Value, StepError> {
    let mut record = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let bad = |e: sqlx::Error| StepError::new(format!("reading column `{name}`: {e}"));
        let raw = row.try_get_raw(index).map_err(bad)?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            let storage = raw.type_info().name().to_ascii_uppercase();
            match storage.as_str() {
                "INTEGER" | "INT" | "INT8" | "BIGINT" => {
                    Value::from(row.try_get::<i64, _>(index).map_err(bad)?)
                }
                "BOOLEAN" => Value::from(row.try_get::<bool, _>(index).map_err(bad)?),
                "REAL" | "FLOAT" | "DOUBLE" => {
                    Value::from(row.try_get::<f64, _>(index).map_err(bad)?)
                }
                "BLOB" => {
                    return Err(StepError::new(format!(
                        "column `{name}` holds a BLOB, which ingest cannot write as a record: select it as text (hex({name}))"
                    )));
                }
                _ => Value::from(row.try_get::<String, _>(index).map_err(bad)?),
            }
        };
        record.insert(name.to_owned(), value);
    }
    Ok(Value::Object(record))
}
