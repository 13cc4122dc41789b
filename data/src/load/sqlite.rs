//! SQLite: batched multi-row `INSERT`s (one prepared statement, reused) in one `BEGIN
//! IMMEDIATE` transaction; `replace` deletes the old rows in that same transaction, so
//! readers see the old rows until it commits.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use futures::Stream;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Connection as _};

use super::encode::{self, Rows, SqliteValue};
use super::postgres::key_in_table;
use super::schema::{self, FileColumn, TableColumn};
use super::sql::{self, Dialect};
use super::{LoadError, LoadJob, Mode, TableName, next_batch};

/// SQLite binds at most 32,766 parameters a statement.
const MAX_PARAMETERS: usize = 32_766;
/// Rows one `INSERT` carries at most.
const MAX_ROWS_PER_INSERT: usize = 256;

pub(crate) async fn load<S>(
    job: &LoadJob<'_>,
    path: &Path,
    columns: &[FileColumn],
    batches: S,
) -> Result<(u64, bool), LoadError>
where
    S: Stream<Item = Result<RecordBatch, LoadError>> + Send + Unpin,
{
    let mut connection = job.destination.connect_sqlite(path, job.cancel).await?;
    let result = load_on(&mut connection, job, columns, batches).await;
    let _ = connection.close().await;
    result
}

async fn load_on<S>(
    connection: &mut SqliteConnection,
    job: &LoadJob<'_>,
    columns: &[FileColumn],
    mut batches: S,
) -> Result<(u64, bool), LoadError>
where
    S: Stream<Item = Result<RecordBatch, LoadError>> + Send + Unpin,
{
    let table = job.table;
    let mut tx = connection
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| job.database_error(e))?;
    let key: &[String] = match job.mode {
        Mode::Upsert { key } => key,
        Mode::Append | Mode::Replace => &[],
    };
    let existing = table_columns(&mut tx, table)
        .await
        .map_err(|e| job.database_error(e))?;
    let created = existing.is_none();
    let targets = match existing {
        None => {
            execute(
                &mut tx,
                job,
                sql::create_table(Dialect::Sqlite, table, columns, key),
            )
            .await?;
            columns.iter().map(|column| column.name.clone()).collect()
        }
        Some(existing) => schema::match_columns(
            Dialect::Sqlite,
            columns,
            &existing,
            job.file,
            &table.to_string(),
        )?,
    };
    let key_targets = key_in_table(columns, &targets, key);
    if !created
        && !key.is_empty()
        && !has_unique_index(&mut tx, table, &key_targets)
            .await
            .map_err(|e| job.database_error(e))?
    {
        return Err(LoadError::NoUniqueKey {
            table: table.to_string(),
            key: key_targets.join(", "),
        });
    }
    if job.mode == &Mode::Replace && !created {
        execute(&mut tx, job, sql::delete_all(table)).await?;
    }
    let conflict_key = (!key.is_empty()).then_some(key_targets.as_slice());
    let per_insert = (MAX_PARAMETERS / targets.len().max(1)).clamp(1, MAX_ROWS_PER_INSERT);
    let full_insert: Arc<str> = Arc::from(sql::insert_values(
        table,
        &targets,
        per_insert,
        conflict_key,
    ));
    let mut rows: u64 = 0;
    let mut values = Vec::with_capacity(per_insert * targets.len());
    while let Some(batch) = next_batch(job, &mut batches).await? {
        let arrays = encode::prepare(&batch, columns).map_err(|error| LoadError::Read {
            file: job.file.to_owned(),
            message: error.to_string(),
        })?;
        let encoded = Rows::new(columns, &arrays);
        let mut start = 0;
        while start < encoded.len() {
            let count = per_insert.min(encoded.len() - start);
            values.clear();
            for row in start..start + count {
                encoded
                    .sqlite_values(row, &mut values)
                    .map_err(|error| LoadError::Value {
                        file: job.file.to_owned(),
                        column: error.column,
                        row: rows + error.row as u64 + 1,
                        message: error.message.to_owned(),
                    })?;
            }
            let statement = if count == per_insert {
                full_insert.clone()
            } else {
                Arc::from(sql::insert_values(table, &targets, count, conflict_key))
            };
            let mut query = sqlx::query(AssertSqlSafe(statement));
            for value in values.drain(..) {
                query = match value {
                    SqliteValue::Null => query.bind(None::<i64>),
                    SqliteValue::Integer(value) => query.bind(value),
                    SqliteValue::Real(value) => query.bind(value),
                    SqliteValue::Text(value) => query.bind(value),
                    SqliteValue::Blob(value) => query.bind(value),
                };
            }
            query.execute(&mut *tx).await.map_err(|error| {
                job.database_error(format!(
                    "{error} (in rows {}–{} of `{}`)",
                    rows + 1,
                    rows + count as u64,
                    job.file
                ))
            })?;
            rows += count as u64;
            start += count;
        }
    }
    if job.cancel.is_cancelled() {
        return Err(LoadError::Cancelled);
    }
    tx.commit().await.map_err(|e| job.database_error(e))?;
    Ok((rows, created))
}

async fn execute(
    connection: &mut SqliteConnection,
    job: &LoadJob<'_>,
    statement: String,
) -> Result<(), LoadError> {
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(connection)
        .await
        .map(drop)
        .map_err(|e| job.database_error(e))
}

fn schema_of(table: &TableName) -> &str {
    table.schema().unwrap_or("main")
}

/// The table's columns and declared types, or `None` when there is no such table.
async fn table_columns(
    connection: &mut SqliteConnection,
    table: &TableName,
) -> Result<Option<Vec<TableColumn>>, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, type FROM pragma_table_info(?1, ?2) ORDER BY cid")
            .bind(table.name())
            .bind(schema_of(table))
            .fetch_all(connection)
            .await?;
    Ok((!rows.is_empty()).then(|| {
        rows.into_iter()
            .map(|(name, declared)| TableColumn { name, declared })
            .collect()
    }))
}

/// Whether the primary key or a unique index (without `WHERE`) covers exactly the key
/// columns, as `ON CONFLICT (key)` needs.
async fn has_unique_index(
    connection: &mut SqliteConnection,
    table: &TableName,
    key: &[String],
) -> Result<bool, sqlx::Error> {
    let same = |mut columns: Vec<String>| {
        let mut key = key.to_vec();
        columns.sort();
        key.sort();
        columns == key
    };
    let primary_key: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info(?1, ?2) WHERE pk > 0")
            .bind(table.name())
            .bind(schema_of(table))
            .fetch_all(&mut *connection)
            .await?;
    if !primary_key.is_empty() && same(primary_key) {
        return Ok(true);
    }
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM pragma_index_list(?1, ?2) WHERE \"unique\" = 1 AND partial = 0",
    )
    .bind(table.name())
    .bind(schema_of(table))
    .fetch_all(&mut *connection)
    .await?;
    for index in indexes {
        let columns: Vec<Option<String>> =
            sqlx::query_scalar("SELECT name FROM pragma_index_info(?1, ?2)")
                .bind(&index)
                .bind(schema_of(table))
                .fetch_all(&mut *connection)
                .await?;
        let columns: Option<Vec<String>> = columns.into_iter().collect();
        if columns.is_some_and(same) {
            return Ok(true);
        }
    }
    Ok(false)
}
