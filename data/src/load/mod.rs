//! `load`: a file's rows into a database table (PostgreSQL through `COPY … FROM STDIN`,
//! SQLite through batched multi-row INSERTs), always in one transaction.
//!
//! The table is created from the file's schema when it is missing; when it exists, every
//! file column must be one of its columns, of a type that converts, or nothing is loaded.
//! `replace` swaps the table atomically and `upsert` updates rows on `key` columns (the last
//! row of the file wins when a key repeats), so both are safe to retry.

mod encode;
mod postgres;
mod schema;
mod sql;
mod sqlite;
mod target;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt as _};
use tokio_util::sync::CancellationToken;

pub use target::Destination;

use crate::{DataError, FileFormat, format_for, read_batches};

/// Batches read ahead of the database while it is busy with the ones before.
const READ_AHEAD: usize = 4;

/// What happens to the rows already in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Adds the file's rows.
    Append,
    /// The table holds exactly the file's rows afterwards; readers see the old rows or the
    /// new ones, never an empty table.
    Replace,
    /// Inserts the file's rows, updating the rows whose `key` columns match.
    Upsert { key: Vec<String> },
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Append => f.write_str("append"),
            Mode::Replace => f.write_str("replace"),
            Mode::Upsert { key } => write!(f, "upsert on ({})", key.join(", ")),
        }
    }
}

/// A table as the DAG names it: `table` or `schema.table`. Names are used as written
/// (quoted), so `Sales` and `sales` are two tables on PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

impl TableName {
    pub fn parse(text: &str) -> Result<TableName, LoadError> {
        let invalid = || LoadError::InvalidTable {
            table: text.to_owned(),
        };
        let (schema, name) = match text.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, text),
        };
        let valid = |part: &str| !part.trim().is_empty() && !part.contains('.');
        if !valid(name) || schema.is_some_and(|schema| !valid(schema)) {
            return Err(invalid());
        }
        Ok(TableName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One load: where the rows go and how.
pub struct LoadJob<'a> {
    pub destination: &'a Destination,
    pub table: &'a TableName,
    pub mode: &'a Mode,
    /// The file as the user named it, for messages.
    pub file: &'a str,
    /// Stops the load between batches; the transaction is rolled back.
    pub cancel: &'a CancellationToken,
}

/// What a finished load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// Rows read from the file and written (a key repeated in an upsert counts each time).
    pub rows: u64,
    /// Whether the table was created from the file's schema.
    pub created: bool,
    pub elapsed: Duration,
}

/// Why a load failed; every message names the connection, file, table or column to fix, and
/// none holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("`table: {table}` is not a valid table name: write `table` or `schema.table`")]
    InvalidTable { table: String },
    #[error(
        "`connection: {connection}` is a `{scheme}` URL: load writes to PostgreSQL (postgres://…) and SQLite (sqlite:path or sqlite://path)"
    )]
    UnsupportedDatabase { connection: String, scheme: String },
    #[error("`connection: {connection}`: {message}")]
    Connect { connection: String, message: String },
    #[error("`from`: file `{file}` not found (looked for {path})")]
    FileNotFound { file: String, path: String },
    #[error("reading `{file}`: {message}; nothing was loaded")]
    Read { file: String, message: String },
    #[error(
        "row {row} of `{file}`, column `{column}`: {message}, which load cannot write; nothing was loaded"
    )]
    Value {
        file: String,
        column: String,
        /// 1-based, counting data rows (not a CSV header).
        row: u64,
        message: String,
    },
    #[error(
        "column `{column}` of `{file}` has type {data_type}, which load cannot write to a table"
    )]
    UnsupportedType {
        column: String,
        file: String,
        data_type: String,
    },
    #[error("`{file}` has column `{column}` twice")]
    DuplicateColumn { column: String, file: String },
    #[error("`key` column `{column}` is not a column of `{file}`")]
    MissingKey { column: String, file: String },
    #[error("schema mismatch: {detail}; nothing was loaded")]
    SchemaMismatch { detail: String },
    #[error(
        "`mode: upsert` needs a primary key or unique index on ({key}) in table `{table}`, and it has none: create one (CREATE UNIQUE INDEX ON {table} ({key})) or let load create the table; nothing was loaded"
    )]
    NoUniqueKey { table: String, key: String },
    #[error(
        "loading into table `{table}` on connection `{connection}`: {message}; nothing was loaded"
    )]
    Database {
        connection: String,
        table: String,
        message: String,
    },
    #[error("the load was cancelled; nothing was loaded")]
    Cancelled,
}

/// Loads the file at `path` (`format`, else told by its extension) into the job's table, in
/// one transaction. The file is read on a blocking thread, a few batches ahead of the database.
pub async fn load_file(
    job: &LoadJob<'_>,
    path: &Path,
    format: Option<FileFormat>,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let read_error = |error: DataError| match &error {
        DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            LoadError::FileNotFound {
                file: job.file.to_owned(),
                path: path.display().to_string(),
            }
        }
        _ => LoadError::Read {
            file: job.file.to_owned(),
            message: error.to_string(),
        },
    };
    let format = format_for(path, format).map_err(read_error)?;
    let owned = path.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || read_batches(&owned, format))
        .await
        .map_err(|error| LoadError::Read {
            file: job.file.to_owned(),
            message: format!("the reader stopped: {error}"),
        })?;
    let (schema, batches) = opened.map_err(read_error)?;
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD);
    // stops at the first error, or when the load stops listening (it failed or was cancelled)
    let reader = tokio::task::spawn_blocking(move || {
        for batch in batches {
            let failed = batch.is_err();
            if sender.blocking_send(batch).is_err() || failed {
                break;
            }
        }
    });
    let batches = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    })
    .map(|batch| batch.map_err(read_error));
    let result = load_batches(job, schema, Box::pin(batches)).await;
    // the receiver is gone: the reader ends at its next batch
    drop(reader);
    result.map(|report| LoadReport {
        elapsed: started.elapsed(),
        ..report
    })
}

/// Loads `batches` (of `schema`) into the job's table, in one transaction.
pub async fn load_batches<S>(
    job: &LoadJob<'_>,
    schema: SchemaRef,
    batches: S,
) -> Result<LoadReport, LoadError>
where
    S: Stream<Item = Result<RecordBatch, LoadError>> + Send + Unpin,
{
    let started = Instant::now();
    let columns = schema::file_columns(&schema, job.file)?;
    if let Mode::Upsert { key } = job.mode {
        for column in key {
            if !columns.iter().any(|candidate| &candidate.name == column) {
                return Err(LoadError::MissingKey {
                    column: column.clone(),
                    file: job.file.to_owned(),
                });
            }
        }
    }
    let (rows, created) = match job.destination.kind() {
        target::Kind::Postgres(options) => postgres::load(job, options, &columns, batches).await?,
        target::Kind::Sqlite(path) => sqlite::load(job, path, &columns, batches).await?,
    };
    Ok(LoadReport {
        rows,
        created,
        elapsed: started.elapsed(),
    })
}

/// The next batch, or `Cancelled` as soon as the job's token fires.
async fn next_batch<S>(job: &LoadJob<'_>, batches: &mut S) -> Result<Option<RecordBatch>, LoadError>
where
    S: Stream<Item = Result<RecordBatch, LoadError>> + Send + Unpin,
{
    tokio::select! {
        biased;
        () = job.cancel.cancelled() => Err(LoadError::Cancelled),
        next = batches.next() => next.transpose(),
    }
}

impl LoadJob<'_> {
    /// A database error as a `LoadError`, the password scrubbed from its text.
    fn database_error(&self, error: impl fmt::Display) -> LoadError {
        LoadError::Database {
            connection: self.destination.name().to_owned(),
            table: self.table.to_string(),
            message: self.destination.scrub(error.to_string()),
        }
    }
}
