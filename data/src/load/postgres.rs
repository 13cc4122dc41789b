//! PostgreSQL: `COPY … FROM STDIN` straight into the table (append), into a staging table
//! swapped in at the end (replace), or into a temporary table merged with one
//! `INSERT … ON CONFLICT` (upsert); all in one transaction.

use datafusion::arrow::record_batch::RecordBatch;
use futures::Stream;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError};
use sqlx::{AssertSqlSafe, Connection as _};

use super::encode::{self, Rows};
use super::schema::{self, FileColumn, TableColumn};
use super::sql::{self, Dialect};
use super::{LoadError, LoadJob, Mode, TableName, next_batch};

/// Encoded rows are sent to the server in chunks of about this size.
const SEND_BYTES: usize = 1 << 20;

pub(crate) async fn load<S>(
    job: &LoadJob<'_>,
    options: &PgConnectOptions,
    columns: &[FileColumn],
    batches: S,
) -> Result<(u64, bool), LoadError>
where
    S: Stream<Item = Result<RecordBatch, LoadError>> + Send + Unpin,
{
    let mut connection = job
        .destination
        .connect_postgres(options, job.cancel)
        .await?;
    let result = load_on(&mut connection, job, columns, batches).await;
    // a failed load's transaction is already rolled back; a connection in a bad state is
    // simply dropped
    if result.is_ok() {
        let _ = connection.close().await;
    }
    result
}

async fn load_on<S>(
    connection: &mut PgConnection,
    job: &LoadJob<'_>,
    columns: &[FileColumn],
    batches: S,
) -> Result<(u64, bool), LoadError>
where
    S: Stream<Item = Result<RecordBatch, LoadError>> + Send + Unpin,
{
    let table = job.table;
    let mut tx = connection
        .begin()
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
                sql::create_table(Dialect::Postgres, table, columns, key),
            )
            .await?;
            columns.iter().map(|column| column.name.clone()).collect()
        }
        Some(existing) => schema::match_columns(
            Dialect::Postgres,
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
    let copy_into = match (job.mode, created) {
        (Mode::Append, _) | (Mode::Replace, true) => table.quoted(),
        (Mode::Replace, false) => {
            execute(&mut tx, job, sql::create_staging_like(table)).await?;
            table.staging().quoted()
        }
        (Mode::Upsert { .. }, _) => {
            for statement in sql::create_upsert_staging(table) {
                execute(&mut tx, job, statement).await?;
            }
            sql::UPSERT_STAGING.to_owned()
        }
    };
    let rows = copy(&mut tx, job, &copy_into, &targets, columns, batches).await?;
    match (job.mode, created) {
        (Mode::Replace, false) => {
            for statement in sql::swap(table) {
                execute(&mut tx, job, statement).await?;
            }
        }
        (Mode::Upsert { .. }, _) => {
            execute(
                &mut tx,
                job,
                sql::upsert_from_staging(table, &targets, &key_targets),
            )
            .await?;
        }
        _ => {}
    }
    if job.cancel.is_cancelled() {
        return Err(LoadError::Cancelled);
    }
    tx.commit().await.map_err(|e| job.database_error(e))?;
    Ok((rows, created))
}

/// Streams every batch through one `COPY`; any error aborts it (and so the transaction).
async fn copy<S>(
    connection: &mut PgConnection,
    job: &LoadJob<'_>,
    into: &str,
    targets: &[String],
    columns: &[FileColumn],
    mut batches: S,
) -> Result<u64, LoadError>
where
    S: Stream<Item = Result<RecordBatch, LoadError>> + Send + Unpin,
{
    let mut copy = connection
        .copy_in_raw(&sql::copy_in(into, targets))
        .await
        .map_err(|e| job.database_error(e))?;
    let mut buffer = Vec::with_capacity(SEND_BYTES + SEND_BYTES / 4);
    let mut rows: u64 = 0;
    let sent: Result<(), LoadError> = async {
        while let Some(batch) = next_batch(job, &mut batches).await? {
            let arrays = encode::prepare(&batch, columns).map_err(|error| LoadError::Read {
                file: job.file.to_owned(),
                message: error.to_string(),
            })?;
            let encoded = Rows::new(columns, &arrays);
            encoded
                .write_copy_text(&mut buffer)
                .map_err(|error| LoadError::Value {
                    file: job.file.to_owned(),
                    column: error.column,
                    row: rows + error.row as u64 + 1,
                    message: error.message.to_owned(),
                })?;
            rows += encoded.len() as u64;
            if buffer.len() >= SEND_BYTES {
                copy.send(buffer.as_slice())
                    .await
                    .map_err(|e| copy_error(job, e))?;
                buffer.clear();
            }
        }
        if !buffer.is_empty() {
            copy.send(buffer.as_slice())
                .await
                .map_err(|e| copy_error(job, e))?;
        }
        Ok(())
    }
    .await;
    match sent {
        Ok(()) => copy.finish().await.map_err(|e| copy_error(job, e)),
        Err(error) => {
            // the server answers an abort with an error of its own; ours is the one to tell
            let _ = copy.abort(error.to_string()).await;
            Err(error)
        }
    }
}

/// A `COPY` error with PostgreSQL's own pointer to the row: `COPY sales, line 15001, column
/// id: "abc"` (lines count the file's data rows from 1).
fn copy_error(job: &LoadJob<'_>, error: sqlx::Error) -> LoadError {
    let located = match &error {
        sqlx::Error::Database(database) => {
            database
                .try_downcast_ref::<PgDatabaseError>()
                .map(|pg| match pg.r#where() {
                    Some(place) => format!("{} ({place})", pg.message()),
                    None => pg.message().to_owned(),
                })
        }
        _ => None,
    };
    match located {
        Some(message) => job.database_error(message),
        None => job.database_error(error),
    }
}

async fn execute(
    connection: &mut PgConnection,
    job: &LoadJob<'_>,
    statement: String,
) -> Result<(), LoadError> {
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(connection)
        .await
        .map(drop)
        .map_err(|e| job.database_error(e))
}

/// The table's columns and declared types, or `None` when there is no such table.
async fn table_columns(
    connection: &mut PgConnection,
    table: &TableName,
) -> Result<Option<Vec<TableColumn>>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table.quoted())
        .fetch_one(&mut *connection)
        .await?;
    if !exists {
        return Ok(None);
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .bind(table.quoted())
    .fetch_all(&mut *connection)
    .await?;
    Ok(Some(
        rows.into_iter()
            .map(|(name, declared)| TableColumn { name, declared })
            .collect(),
    ))
}

/// Whether a primary key or unique index (without predicate or expression) covers exactly
/// the key columns, as `ON CONFLICT (key)` needs.
async fn has_unique_index(
    connection: &mut PgConnection,
    table: &TableName,
    key: &[String],
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i \
           WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL \
             AND i.indexprs IS NULL AND i.indnkeyatts = cardinality($2::text[]) \
             AND (SELECT array_agg(a.attname::text) FROM pg_attribute a \
                  WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) @> $2::text[])",
    )
    .bind(table.quoted())
    .bind(key)
    .fetch_one(connection)
    .await
}

/// The key columns as the table spells them.
pub(crate) fn key_in_table(
    columns: &[FileColumn],
    targets: &[String],
    key: &[String],
) -> Vec<String> {
    key.iter()
        .filter_map(|name| {
            columns
                .iter()
                .position(|column| &column.name == name)
                .and_then(|index| targets.get(index).cloned())
        })
        .collect()
}
