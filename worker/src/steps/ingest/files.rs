//! The `files` source of `ingest`: every file a glob matches (a local path, or a `file://`,
//! `s3://` or `gs://` URL read through `object_store`), in path order.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use serde_json::{Map, Value};
use sluice_core::spec::FileFormat;
use sluice_data::arrow::datatypes::SchemaRef;
use sluice_data::parquet::file::reader::{FileReader, SerializedFileReader};

use super::{Data, format_of};
use crate::objects::Place;
use crate::steps::{StepContext, StepError};

pub(super) async fn read(
    glob: &str,
    destination: FileFormat,
    ctx: &StepContext,
) -> Result<(Data, BTreeMap<String, Value>), StepError> {
    let place = Place::parse(glob, &ctx.base_dir, "source.files")?;
    let files = place.matches().await?;
    if files.is_empty() {
        return Err(StepError::new(format!(
            "no file matches `source.files` `{glob}`"
        )));
    }
    ctx.log.line(format!("{} files match {glob}", files.len()));
    let outputs = BTreeMap::from([("files".to_owned(), Value::from(files.len()))]);

    if let [only] = files.as_slice()
        && format_of(Path::new(only.as_ref())) == Some(destination)
    {
        let bytes = place.read(only).await?;
        let rows = count_rows(&bytes, destination, &place.show(only))?;
        ctx.log.line(format!(
            "copying {} ({} bytes) as it is",
            place.show(only),
            bytes.len()
        ));
        return Ok((Data::Copy { bytes, rows }, outputs));
    }

    let mut contents = Vec::new();
    for file in &files {
        let shown = place.show(file);
        let format = format_of(Path::new(file.as_ref())).ok_or_else(|| {
            StepError::new(format!(
                "cannot tell the format of `{shown}` from its extension: ingest reads .jsonl, .csv and .parquet files"
            ))
        })?;
        let bytes = place.read(file).await?;
        contents.push(Content {
            shown,
            format,
            bytes,
        });
    }
    let typed = destination != FileFormat::Jsonl
        && contents
            .iter()
            .all(|content| content.format != FileFormat::Jsonl);
    let data = if typed {
        let data = tokio::task::spawn_blocking(move || read_typed(&contents))
            .await
            .map_err(|e| StepError::new(format!("reading the files: {e}")))??;
        if let Data::Batches { schema, batches } = &data {
            ctx.log.line(format!(
                "read {} rows of ({}) from {} files",
                batches.iter().map(|batch| batch.num_rows()).sum::<usize>(),
                columns(schema),
                files.len()
            ));
        }
        data
    } else {
        read_records(&contents, ctx)?
    };
    Ok((data, outputs))
}

/// One matched file, read.
struct Content {
    shown: String,
    format: FileFormat,
    bytes: Bytes,
}

/// JSON lines and CSV files as JSON records (CSV values are strings).
fn read_records(contents: &[Content], ctx: &StepContext) -> Result<Data, StepError> {
    let mut records = Vec::new();
    for Content {
        shown,
        format,
        bytes,
    } in contents
    {
        let before = records.len();
        match format {
            FileFormat::Jsonl => read_jsonl(bytes, shown, &mut records)?,
            FileFormat::Csv => read_csv(bytes, shown, &mut records)?,
            FileFormat::Parquet => {
                return Err(StepError::new(format!(
                    "`{shown}` is Parquet: ingest combines Parquet files only with CSV and Parquet files into a .csv or .parquet destination (a `batch` step can do more)"
                )));
            }
        }
        ctx.log.line(format!(
            "read {} records from {shown}",
            records.len() - before
        ));
    }
    Ok(Data::Records(records))
}

/// CSV and Parquet files through Arrow, keeping their column types (CSV types inferred per
/// file); every file must come out with the same columns.
fn read_typed(contents: &[Content]) -> Result<Data, StepError> {
    let mut schema: Option<(SchemaRef, &str)> = None;
    let mut batches = Vec::new();
    for Content {
        shown,
        format,
        bytes,
    } in contents
    {
        // sluice-data reads paths: object store bytes go through a temp file
        let mut temp = tempfile::NamedTempFile::new()
            .map_err(|e| StepError::new(format!("reading `{shown}`: a temp file: {e}")))?;
        temp.write_all(bytes)
            .map_err(|e| StepError::new(format!("reading `{shown}`: a temp file: {e}")))?;
        let (file_schema, file_batches) =
            sluice_data::read_batches(temp.path(), *format).map_err(|e| {
                StepError::new(format!(
                    "reading `{shown}`: {}",
                    without_path(e, temp.path())
                ))
            })?;
        match &schema {
            None => schema = Some((file_schema.clone(), shown)),
            Some((first, first_shown)) if first.fields() != file_schema.fields() => {
                return Err(StepError::new(format!(
                    "`{shown}` has columns ({}) but `{first_shown}` has ({}): ingest combines files of one schema only (a `batch` step can reconcile them)",
                    columns(&file_schema),
                    columns(first)
                )));
            }
            Some(_) => {}
        }
        for batch in file_batches {
            batches.push(batch.map_err(|e| {
                StepError::new(format!(
                    "reading `{shown}`: {}",
                    without_path(e, temp.path())
                ))
            })?);
        }
    }
    let (schema, _) = schema.ok_or_else(|| StepError::new("no file to read"))?;
    Ok(Data::Batches { schema, batches })
}

fn columns(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|field| format!("{} {}", field.name(), field.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A sluice-data error about a temp file, without the temp file's name.
fn without_path(error: sluice_data::DataError, temp: &Path) -> String {
    error
        .to_string()
        .replace(&format!("{}: ", temp.display()), "")
        .replace(&temp.display().to_string(), "the file")
}

fn count_rows(bytes: &Bytes, format: FileFormat, shown: &str) -> Result<u64, StepError> {
    match format {
        FileFormat::Jsonl => Ok(bytes
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .count() as u64),
        FileFormat::Csv => {
            let mut reader = csv::Reader::from_reader(bytes.as_ref());
            let mut rows = 0;
            for record in reader.records() {
                record.map_err(|e| StepError::new(format!("reading `{shown}`: {e}")))?;
                rows += 1;
            }
            Ok(rows)
        }
        FileFormat::Parquet => {
            // the footer holds the row count: no page is decoded
            let reader = SerializedFileReader::new(bytes.clone())
                .map_err(|e| StepError::new(format!("`{shown}` is not a Parquet file: {e}")))?;
            Ok(u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0))
        }
    }
}

fn read_jsonl(bytes: &[u8], shown: &str, records: &mut Vec<Value>) -> Result<(), StepError> {
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = serde_json::from_slice(line)
            .map_err(|e| StepError::new(format!("`{shown}` line {}: not JSON: {e}", index + 1)))?;
        records.push(record);
    }
    Ok(())
}

/// CSV rows as records keyed by the header; every value is a string (empty ones are null).
fn read_csv(bytes: &[u8], shown: &str, records: &mut Vec<Value>) -> Result<(), StepError> {
    let mut reader = csv::Reader::from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| StepError::new(format!("reading the header of `{shown}`: {e}")))?
        .clone();
    for row in reader.records() {
        let row = row.map_err(|e| StepError::new(format!("reading `{shown}`: {e}")))?;
        let mut record = Map::new();
        for (name, value) in header.iter().zip(row.iter()) {
            let value = if value.is_empty() {
                Value::Null
            } else {
                Value::from(value)
            };
            record.insert(name.to_owned(), value);
        }
        records.push(Value::Object(record));
    }
    Ok(())
}
