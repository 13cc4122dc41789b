//! `type: sql`: statements against a connection (PostgreSQL or SQLite), in order, in one
//! transaction; optional outputs from the first row of the last statement.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use serde_json::Value;
use sluice_core::spec::SqlStep;
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Column, Connection, Either, Row, TypeInfo, ValueRef};

use super::{StepContext, StepError, StepOutput};
use crate::connections::{Database, redact};

/// How much of a statement a log line or an error shows.
const SHOWN_CHARS: usize = 300;

pub async fn run(config: &SqlStep, ctx: &StepContext) -> Result<StepOutput, StepError> {
    let sql = ctx.render("sql", &config.sql)?;
    ctx.record_rendered().await;
    let statements = split_statements(&sql);
    if statements.is_empty() {
        return Err(StepError::new("`sql` has no statement to run"));
    }
    let url = ctx
        .connections
        .url(&config.connection)
        .map_err(|e| StepError::new(e.to_string()))?;
    ctx.log.line(format!(
        "[sql] connecting to `{}` ({})",
        config.connection,
        redact(url)
    ));
    let work = async {
        let database = ctx
            .connections
            .open(&config.connection, &ctx.base_dir)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        match database {
            Database::Postgres(mut connection) => {
                let mut tx = connection.begin().await.map_err(begin_failed)?;
                let row = execute::<sqlx::Postgres>(&mut tx, &statements, ctx).await?;
                tx.commit().await.map_err(commit_failed)?;
                row.map(|row| pg_values(&row)).transpose()
            }
            Database::Sqlite(mut connection) => {
                let mut tx = connection.begin().await.map_err(begin_failed)?;
                let row = execute::<sqlx::Sqlite>(&mut tx, &statements, ctx).await?;
                tx.commit().await.map_err(commit_failed)?;
                row.map(|row| sqlite_values(&row)).transpose()
            }
        }
    };
    // a cancelled attempt drops the transaction: it is rolled back, nothing half-written
    let first_row = tokio::select! {
        result = work => result?,
        _ = ctx.cancel.cancelled() => {
            return Err(StepError::new("stopped: the attempt was cancelled; the transaction was rolled back"));
        }
    };
    let outputs = outputs(config, first_row)?;
    for (key, value) in &outputs {
        ctx.log.line(format!("[sql] output {key} = {value}"));
    }
    Ok(StepOutput {
        outputs,
        exit_code: None,
    })
}

/// Runs each statement in order, logging it and the rows it affected; returns the first row
/// of the last statement.
async fn execute<DB>(
    connection: &mut DB::Connection,
    statements: &[String],
    ctx: &StepContext,
) -> Result<Option<DB::Row>, StepError>
where
    DB: sqlx::Database,
    DB::QueryResult: RowsAffected,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
{
    let count = statements.len();
    let mut first_row = None;
    for (index, statement) in statements.iter().enumerate() {
        let number = index + 1;
        ctx.log.line(format!(
            "[sql] statement {number}/{count}: {}",
            cut(statement)
        ));
        let mut affected = 0u64;
        let mut rows = 0u64;
        let mut first = None;
        let mut stream =
            sqlx::raw_sql(AssertSqlSafe(statement.clone())).fetch_many(&mut *connection);
        while let Some(item) = stream.try_next().await.map_err(|error| {
            StepError::new(format!(
                "statement {number} of {count} failed: {}\n  in: {}",
                database_message(&error),
                cut(statement)
            ))
        })? {
            match item {
                Either::Left(result) => affected += result.rows_affected(),
                Either::Right(row) => {
                    rows += 1;
                    if first.is_none() {
                        first = Some(row);
                    }
                }
            }
        }
        drop(stream);
        if rows > 0 {
            ctx.log.line(format!(
                "[sql] statement {number}/{count}: {rows} row{} returned",
                plural(rows)
            ));
        } else {
            ctx.log.line(format!(
                "[sql] statement {number}/{count}: {affected} row{} affected",
                plural(affected)
            ));
        }
        first_row = first;
    }
    Ok(first_row)
}

/// The rows a statement changed, whatever the database.
trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The outputs the step declares, from the first row of the last statement.
fn outputs(
    config: &SqlStep,
    first_row: Option<BTreeMap<String, Value>>,
) -> Result<BTreeMap<String, Value>, StepError> {
    if config.outputs.is_empty() {
        return Ok(BTreeMap::new());
    }
    let Some(mut row) = first_row else {
        return Err(StepError::new(format!(
            "`outputs` asks for {} but the last statement returned no row",
            config
                .outputs
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let mut outputs = BTreeMap::new();
    for column in &config.outputs {
        let Some(value) = row.remove(column) else {
            return Err(StepError::new(format!(
                "`outputs` names column `{column}`, which the last statement did not return (its columns: {})",
                row.keys()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        outputs.insert(column.clone(), value);
    }
    Ok(outputs)
}

/// A PostgreSQL row as JSON values. Statements run with the simple query protocol, so every
/// value arrives as text, read by its column's type.
fn pg_values(row: &PgRow) -> Result<BTreeMap<String, Value>, StepError> {
    let mut values = BTreeMap::new();
    for (index, column) in row.columns().iter().enumerate() {
        let raw = row
            .try_get_raw(index)
            .map_err(|e| StepError::new(format!("reading column `{}`: {e}", column.name())))?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            let type_name = raw.type_info().name().to_owned();
            let text = match raw.format() {
                PgValueFormat::Text => raw.as_str().map(str::to_owned).map_err(|e| {
                    StepError::new(format!("reading column `{}`: {e}", column.name()))
                })?,
                PgValueFormat::Binary => {
                    return Err(StepError::new(format!(
                        "reading column `{}`: an unexpected binary value",
                        column.name()
                    )));
                }
            };
            pg_text_value(&type_name, text)
        };
        values.insert(column.name().to_owned(), value);
    }
    Ok(values)
}

fn pg_text_value(type_name: &str, text: String) -> Value {
    match type_name {
        "BOOL" => Value::Bool(text == "t"),
        "INT2" | "INT4" | "INT8" | "OID" => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(text)),
        "FLOAT4" | "FLOAT8" | "NUMERIC" => number(&text).unwrap_or(Value::String(text)),
        "JSON" | "JSONB" => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        _ => Value::String(text),
    }
}

/// A decimal text as a JSON number: an integer when it is one, else a float.
fn number(text: &str) -> Option<Value> {
    if let Ok(integer) = text.parse::<i64>() {
        return Some(Value::from(integer));
    }
    let float = text.parse::<f64>().ok()?;
    serde_json::Number::from_f64(float).map(Value::Number)
}

/// A SQLite row as JSON values, by each value's storage class (a column declared BOOLEAN
/// gives booleans).
fn sqlite_values(row: &SqliteRow) -> Result<BTreeMap<String, Value>, StepError> {
    let mut values = BTreeMap::new();
    for (index, column) in row.columns().iter().enumerate() {
        let failed =
            |e: sqlx::Error| StepError::new(format!("reading column `{}`: {e}", column.name()));
        let raw = row.try_get_raw(index).map_err(failed)?;
        let declared = column.type_info().name().to_ascii_uppercase();
        let value = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" => {
                    let integer: i64 = row.try_get(index).map_err(failed)?;
                    if declared == "BOOLEAN" {
                        Value::Bool(integer != 0)
                    } else {
                        Value::from(integer)
                    }
                }
                "REAL" => {
                    let float: f64 = row.try_get(index).map_err(failed)?;
                    serde_json::Number::from_f64(float)
                        .map(Value::Number)
                        .unwrap_or(Value::Null)
                }
                "BLOB" => {
                    let bytes: Vec<u8> = row.try_get(index).map_err(failed)?;
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }
                _ => Value::String(row.try_get(index).map_err(failed)?),
            }
        };
        values.insert(column.name().to_owned(), value);
    }
    Ok(values)
}

fn begin_failed(error: sqlx::Error) -> StepError {
    StepError::new(format!(
        "starting a transaction: {}",
        database_message(&error)
    ))
}

fn commit_failed(error: sqlx::Error) -> StepError {
    StepError::new(format!(
        "committing the transaction: {}",
        database_message(&error)
    ))
}

/// The database's own message for a database error, else the driver's.
fn database_message(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

/// Splits on `;` outside quotes ('…', "…", $tag$…$tag$) and comments (-- …, /* … */); empty
/// statements are dropped.
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        let taken = match c {
            '\'' | '"' => quoted(rest, c),
            '-' if rest.starts_with("--") => rest.find('\n').map_or(rest.len(), |i| i + 1),
            '/' if rest.starts_with("/*") => rest[2..].find("*/").map_or(rest.len(), |i| i + 4),
            '$' => dollar_quoted(rest).unwrap_or(1),
            ';' => {
                push_statement(&mut statements, &current);
                current.clear();
                rest = &rest[1..];
                continue;
            }
            _ => c.len_utf8(),
        };
        current.push_str(&rest[..taken]);
        rest = &rest[taken..];
    }
    push_statement(&mut statements, &current);
    statements
}

fn push_statement(statements: &mut Vec<String>, text: &str) {
    let trimmed = text.trim();
    if !trimmed.is_empty() && !only_comments(trimmed) {
        statements.push(trimmed.to_owned());
    }
}

fn only_comments(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with("--")
    }) && !text.contains("/*")
}

/// The length of a quoted string starting at `rest` (a doubled quote stays inside).
fn quoted(rest: &str, quote: char) -> usize {
    let mut chars = rest.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if chars.peek().map(|(_, next)| *next) == Some(quote) {
                chars.next();
                continue;
            }
            return i + 1;
        }
    }
    rest.len()
}

/// The length of a PostgreSQL dollar-quoted string (`$$…$$`, `$tag$…$tag$`) at `rest`.
fn dollar_quoted(rest: &str) -> Option<usize> {
    let end = rest[1..].find('$')? + 1;
    let tag = &rest[..=end];
    if !tag[1..tag.len() - 1]
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    let close = rest[tag.len()..].find(tag)?;
    Some(tag.len() + close + tag.len())
}

fn cut(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = one_line.chars();
    let shown: String = chars.by_ref().take(SHOWN_CHARS).collect();
    if chars.next().is_some() {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_semicolons_outside_quotes_and_comments() {
        let sql = "CREATE TABLE t (a text); -- a comment; still a comment\n\
                   INSERT INTO t VALUES ('x;y'), (\"q;\"); /* block ; */ \n\
                   DO $body$ BEGIN PERFORM 1; END $body$;\n;  ;\n-- trailing comment";
        assert_eq!(
            split_statements(sql),
            [
                "CREATE TABLE t (a text)",
                "-- a comment; still a comment\nINSERT INTO t VALUES ('x;y'), (\"q;\")",
                "/* block ; */ \nDO $body$ BEGIN PERFORM 1; END $body$",
            ]
        );
        assert!(split_statements(" ;\n -- nothing\n").is_empty());
    }

    #[test]
    fn postgres_text_values_become_json() {
        assert_eq!(pg_text_value("INT8", "42".into()), Value::from(42));
        assert_eq!(
            pg_text_value("NUMERIC", "1.50".into()),
            serde_json::json!(1.5)
        );
        assert_eq!(pg_text_value("BOOL", "t".into()), Value::Bool(true));
        assert_eq!(
            pg_text_value("JSONB", "{\"a\": [1]}".into()),
            serde_json::json!({"a": [1]})
        );
        assert_eq!(pg_text_value("TEXT", "kr".into()), Value::from("kr"));
    }
}
