//! `type: ingest`: records from an HTTP JSON API (paginated, retried), from files (a glob,
//! local or in object storage) or from a SQL query, written to one destination file (JSONL,
//! CSV or Parquet) atomically, so a failed or cancelled try leaves nothing behind.

mod files;
mod http_source;
mod sql;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sluice_core::spec::{FileFormat, IngestSource, IngestStep};

use super::{StepContext, StepError, StepOutput};
use crate::atomic;

pub async fn run(step: &IngestStep, ctx: &StepContext) -> Result<StepOutput, StepError> {
    let destination = ctx
        .base_dir
        .join(ctx.render("destination", &step.destination)?);
    let format = destination_format(&destination, step.format)?;
    let source = render_source(&step.source, ctx)?;
    ctx.record_rendered().await;

    let work = async {
        let (data, mut outputs) = match &source {
            Source::Http(config) => http_source::fetch(config, ctx).await?,
            Source::Files { glob } => files::read(glob, format, ctx).await?,
            Source::Sql { connection, query } => sql::query(connection, query, ctx).await?,
        };
        let rows = write(data, &destination, format).await?;
        ctx.log.line(format!(
            "wrote {rows} rows to {} ({})",
            destination.display(),
            format_name(format)
        ));
        outputs.insert("rows".to_owned(), Value::from(rows));
        outputs.insert(
            "path".to_owned(),
            Value::from(destination.display().to_string()),
        );
        Ok(StepOutput {
            outputs,
            exit_code: None,
        })
    };
    tokio::select! {
        result = work => result,
        _ = ctx.cancel.cancelled() => Err(StepError::new("stopped: the attempt was cancelled")),
    }
}

/// What the sources hand to the writer.
pub(crate) enum Data {
    /// JSON records, re-written in the destination's format.
    Records(Vec<Value>),
    /// Arrow record batches of one schema (CSV and Parquet files keep their column types).
    Batches {
        schema: sluice_data::arrow::datatypes::SchemaRef,
        batches: Vec<sluice_data::arrow::record_batch::RecordBatch>,
    },
    /// One file already in the destination's format, copied byte for byte.
    Copy { bytes: bytes::Bytes, rows: u64 },
}

/// The source with its templates rendered.
enum Source {
    Http(http_source::Config),
    Files { glob: String },
    Sql { connection: String, query: String },
}

fn render_source(source: &IngestSource, ctx: &StepContext) -> Result<Source, StepError> {
    Ok(match source {
        IngestSource::Http {
            url,
            headers,
            records_path,
            pagination,
            max_pages,
            retries,
            retry_delay,
        } => {
            let mut rendered = BTreeMap::new();
            for (name, value) in headers {
                rendered.insert(
                    name.clone(),
                    ctx.render(&format!("source.http.headers.{name}"), value)?,
                );
            }
            Source::Http(http_source::Config {
                url: ctx.render("source.http.url", url)?,
                headers: rendered,
                records_path: records_path.clone(),
                pagination: pagination.clone(),
                max_pages: max_pages.unwrap_or(http_source::DEFAULT_MAX_PAGES),
                tries: retries.unwrap_or(http_source::DEFAULT_TRIES).max(1),
                retry_delay: retry_delay.unwrap_or(http_source::DEFAULT_RETRY_DELAY),
            })
        }
        IngestSource::Files { glob } => Source::Files {
            glob: ctx.render("source.files", glob)?,
        },
        IngestSource::Sql { connection, query } => Source::Sql {
            connection: connection.clone(),
            query: ctx.render("source.sql.query", query)?,
        },
    })
}

/// `format` when given, else the destination's extension.
fn destination_format(path: &Path, explicit: Option<FileFormat>) -> Result<FileFormat, StepError> {
    sluice_data::format_for(path, explicit).map_err(|_| {
        StepError::new(format!(
            "cannot tell the format of `destination` `{}` from its extension: name it .jsonl, .csv or .parquet, or set `format`",
            path.display()
        ))
    })
}

/// The format a file's extension names, if any.
pub(crate) fn format_of(path: &Path) -> Option<FileFormat> {
    sluice_data::format_for(path, None).ok()
}

pub(crate) fn format_name(format: FileFormat) -> &'static str {
    match format {
        FileFormat::Jsonl => "jsonl",
        FileFormat::Csv => "csv",
        FileFormat::Parquet => "parquet",
    }
}

/// Writes the data atomically (records through the sluice-data file API); returns how many
/// rows were written.
async fn write(data: Data, destination: &Path, format: FileFormat) -> Result<u64, StepError> {
    let destination = destination.to_path_buf();
    match data {
        Data::Copy { bytes, rows } => {
            atomic::write_bytes(&destination, bytes)
                .await
                .map_err(StepError::new)?;
            Ok(rows)
        }
        Data::Batches { schema, batches } => tokio::task::spawn_blocking(move || {
            sluice_data::write_batches(schema, batches.into_iter().map(Ok), &destination, format)
                .map(|summary| summary.rows)
                .map_err(|e| StepError::new(e.to_string()))
        })
        .await
        .map_err(|e| StepError::new(format!("writing the destination: {e}")))?,
        Data::Records(records) => tokio::task::spawn_blocking(move || {
            sluice_data::write_json_records(&records, &destination, format)
                .map(|summary| summary.rows)
                .map_err(|e| StepError::new(e.to_string()))
        })
        .await
        .map_err(|e| StepError::new(format!("writing the destination: {e}")))?,
    }
}
