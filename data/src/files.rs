//! Data files: which format a path holds, records written to a file atomically, and a file
//! read back as Arrow record batches. Everything here is blocking IO: call it from
//! `tokio::task::spawn_blocking` inside async code.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::{csv, json};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use serde_json::Value;
use sluice_core::spec::FileFormat;

use crate::DataError;

/// Rows per record batch when reading, and per chunk when converting records.
const BATCH_ROWS: usize = 8192;

/// Record batches read from one file; each error names the file.
pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch, DataError>> + Send>;

/// What a write produced: the rows written, the file's size and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub rows: u64,
    pub bytes: u64,
    pub path: PathBuf,
}

/// The format of `path`: `explicit` when given, else from the extension (case-insensitive):
/// `.csv` → CSV; `.jsonl`, `.ndjson`, `.json` → JSON lines; `.parquet`, `.pq` → Parquet.
/// An unknown extension without `explicit` is [`DataError::UnknownFormat`], naming the path.
pub fn format_for(path: &Path, explicit: Option<FileFormat>) -> Result<FileFormat, DataError> {
    if let Some(format) = explicit {
        return Ok(format);
    }
    format_from_extension(path).ok_or_else(|| DataError::UnknownFormat {
        path: path.to_path_buf(),
    })
}

/// The format an extension names, if any.
pub(crate) fn format_from_extension(path: &Path) -> Option<FileFormat> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "csv" => Some(FileFormat::Csv),
        "jsonl" | "ndjson" | "json" => Some(FileFormat::Jsonl),
        "parquet" | "pq" => Some(FileFormat::Parquet),
        _ => None,
    }
}

/// Writes JSON records (each must be an object) to `dest` in `format`, atomically.
///
/// - JSON lines: each record as-is, one compact object per line.
/// - CSV (with a header) and Parquet (snappy-compressed): through Arrow, with the schema
///   inferred from all the records (columns in the records' key order, which for
///   `serde_json::Value` is by name; a column whose values are of mixed scalar types becomes
///   a string). In CSV a nested value (object or array) is
///   written as its JSON text; Parquet keeps it as a struct or list.
///
/// The parent folders are created. The data goes to a hidden temp file in the destination's
/// folder that is renamed onto `dest` once complete, so a reader never sees a partial file and
/// an earlier file at `dest` is replaced whole; on any error the temp file is removed and
/// `dest` is untouched. Zero records make an empty JSON lines or CSV file, and a Parquet file
/// with no columns.
pub fn write_json_records(
    records: &[Value],
    dest: &Path,
    format: FileFormat,
) -> Result<WriteSummary, DataError> {
    if let Some(index) = records.iter().position(|record| !record.is_object()) {
        return Err(DataError::content(
            dest,
            format!("record {} is not a JSON object", index + 1),
        ));
    }
    write_atomically(dest, |file| match format {
        FileFormat::Jsonl => write_jsonl(records, file),
        FileFormat::Csv => {
            let flat: Vec<Value> = records.iter().map(flatten_nested).collect();
            let (schema, batches) = records_to_batches(&flat)?;
            write_batches_to(file, FileFormat::Csv, schema, batches)
        }
        FileFormat::Parquet => {
            let (schema, batches) = records_to_batches(records)?;
            write_batches_to(file, FileFormat::Parquet, schema, batches)
        }
    })
}

/// Writes record batches to `dest` in `format` (CSV with a header, JSON lines, or Parquet),
/// atomically like [`write_json_records`]. Every batch must have `schema`.
pub fn write_batches(
    schema: SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, DataError>>,
    dest: &Path,
    format: FileFormat,
) -> Result<WriteSummary, DataError> {
    write_atomically(dest, |file| {
        let batches = batches
            .into_iter()
            .map(|batch| batch.map_err(|e| e.to_string()));
        write_batches_to(file, format, schema, batches)
    })
}

/// Opens `path` as `format` and returns its schema and its record batches.
///
/// - CSV: the first line is the header; column types are inferred from the whole file
///   (integers, floats, booleans, dates and timestamps, else strings).
/// - JSON lines: one object per line, types inferred from the whole file.
/// - Parquet: the schema stored in the file.
///
/// Errors (a missing file, a file that does not parse) name the file.
pub fn read_batches(path: &Path, format: FileFormat) -> Result<(SchemaRef, BatchIter), DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, "opening", e))?;
    let owned = path.to_path_buf();
    let name_errors = move |e: datafusion::arrow::error::ArrowError| DataError::content(&owned, e);
    match format {
        FileFormat::Csv => {
            let csv_format = csv::reader::Format::default().with_header(true);
            let (schema, _) = csv_format
                .infer_schema(BufReader::new(&file), None)
                .map_err(|e| DataError::content(path, e))?;
            rewind(&mut file, path)?;
            let schema = Arc::new(schema);
            let reader = csv::ReaderBuilder::new(schema.clone())
                .with_format(csv_format)
                .with_batch_size(BATCH_ROWS)
                .build(file)
                .map_err(|e| DataError::content(path, e))?;
            Ok((
                schema,
                Box::new(reader.map(move |b| b.map_err(&name_errors))),
            ))
        }
        FileFormat::Jsonl => {
            let (schema, _) = json::reader::infer_json_schema(BufReader::new(&file), None)
                .map_err(|e| DataError::content(path, e))?;
            rewind(&mut file, path)?;
            let schema = Arc::new(schema);
            let reader = json::ReaderBuilder::new(schema.clone())
                .with_batch_size(BATCH_ROWS)
                .build(BufReader::new(file))
                .map_err(|e| DataError::content(path, e))?;
            Ok((
                schema,
                Box::new(reader.map(move |b| b.map_err(&name_errors))),
            ))
        }
        FileFormat::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| DataError::content(path, e))?;
            let schema = builder.schema().clone();
            let reader = builder
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| DataError::content(path, e))?;
            Ok((
                schema,
                Box::new(reader.map(move |b| b.map_err(&name_errors))),
            ))
        }
    }
}

/// Runs `write` on a temp file beside `dest` and renames it onto `dest` when it succeeds.
/// `write` returns the rows written, or a message that is reported against `dest`.
fn write_atomically(
    dest: &Path,
    write: impl FnOnce(&mut File) -> Result<u64, String>,
) -> Result<WriteSummary, DataError> {
    let folder = parent_folder(dest);
    fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, "creating the folder", e))?;
    let name = dest
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| DataError::content(dest, "the destination has no file name"))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&folder)
        .map_err(|e| DataError::io(&folder, "creating a temp file", e))?;
    // on any early return `temp` is dropped, which removes the temp file
    let rows = write(temp.as_file_mut()).map_err(|message| DataError::content(dest, message))?;
    let file = temp.as_file();
    file.sync_all()
        .map_err(|e| DataError::io(temp.path(), "writing", e))?;
    let bytes = file
        .metadata()
        .map_err(|e| DataError::io(temp.path(), "reading the size of", e))?
        .len();
    temp.persist(dest)
        .map_err(|e| DataError::io(dest, "renaming the temp file into place", e.error))?;
    Ok(WriteSummary {
        rows,
        bytes,
        path: dest.to_path_buf(),
    })
}

/// The folder a path is in (`.` for a bare file name).
pub(crate) fn parent_folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn rewind(file: &mut File, path: &Path) -> Result<(), DataError> {
    file.seek(SeekFrom::Start(0))
        .map(|_| ())
        .map_err(|e| DataError::io(path, "reading", e))
}

fn write_jsonl(records: &[Value], file: &mut File) -> Result<u64, String> {
    let mut out = BufWriter::new(file);
    for record in records {
        serde_json::to_writer(&mut out, record).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(records.len() as u64)
}

/// A record with its nested values (objects, arrays) replaced by their JSON text, for CSV.
fn flatten_nested(record: &Value) -> Value {
    match record {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let flat = match value {
                        Value::Object(_) | Value::Array(_) => Value::String(value.to_string()),
                        other => other.clone(),
                    };
                    (key.clone(), flat)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The schema inferred from `records` and the records as batches of that schema.
fn records_to_batches(
    records: &[Value],
) -> Result<(SchemaRef, impl Iterator<Item = Result<RecordBatch, String>>), String> {
    let schema = json::reader::infer_json_schema_from_iterator(records.iter().map(Ok))
        .map_err(|e| format!("inferring a schema from the records: {e}"))?;
    let schema = Arc::new(schema);
    let mut decoder = json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let batches = records.chunks(BATCH_ROWS).filter_map(move |chunk| {
        let decoded = decoder.serialize(chunk).and_then(|()| decoder.flush());
        decoded.map_err(|e| e.to_string()).transpose()
    });
    Ok((schema, batches))
}

/// Writes batches to `file` in `format`; returns the rows written.
fn write_batches_to(
    file: &mut File,
    format: FileFormat,
    schema: SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, String>>,
) -> Result<u64, String> {
    let mut rows = 0u64;
    match format {
        FileFormat::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .with_header(true)
                .build(BufWriter::new(file));
            for batch in batches {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(|e| e.to_string())?;
            }
            writer.into_inner().flush().map_err(|e| e.to_string())?;
        }
        FileFormat::Jsonl => {
            let mut writer = json::LineDelimitedWriter::new(BufWriter::new(file));
            for batch in batches {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(|e| e.to_string())?;
            }
            writer.finish().map_err(|e| e.to_string())?;
            writer.into_inner().flush().map_err(|e| e.to_string())?;
        }
        FileFormat::Parquet => {
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build();
            let mut writer = ArrowWriter::try_new(BufWriter::new(file), schema, Some(properties))
                .map_err(|e| e.to_string())?;
            for batch in batches {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                writer.write(&batch).map_err(|e| e.to_string())?;
            }
            writer
                .into_inner()
                .map_err(|e| e.to_string())?
                .flush()
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(rows)
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
