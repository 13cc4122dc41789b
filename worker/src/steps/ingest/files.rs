//! The `files` source of `ingest`: every file a glob matches (a local path, or a `file://`,
//! `s3://` or `gs://` URL read through `object_store`), in path order.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use serde_json::{Map, Value};
use sluice_core::spec::FileFormat;

use super::{Data, format_of};
use crate::steps::{StepContext, StepError};

/// Characters that make a path segment a pattern.
const GLOB_CHARS: &[char] = &['*', '?', '['];

pub(super) async fn read(
    glob: &str,
    destination: FileFormat,
    ctx: &StepContext,
) -> Result<(Data, BTreeMap<String, Value>), StepError> {
    let place = Place::parse(glob, &ctx.base_dir)?;
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

    let mut records = Vec::new();
    for file in &files {
        let shown = place.show(file);
        let format = format_of(Path::new(file.as_ref())).ok_or_else(|| {
            StepError::new(format!(
                "cannot tell the format of `{shown}` from its extension: ingest reads .jsonl and .csv files"
            ))
        })?;
        let bytes = place.read(file).await?;
        let before = records.len();
        match format {
            FileFormat::Jsonl => read_jsonl(&bytes, &shown, &mut records)?,
            FileFormat::Csv => read_csv(&bytes, &shown, &mut records)?,
            FileFormat::Parquet => {
                return Err(StepError::new(format!(
                    "`{shown}` is Parquet: ingest copies a single Parquet file to a .parquet destination as it is, but does not combine or convert Parquet files (a `batch` step does)"
                )));
            }
        }
        ctx.log.line(format!(
            "read {} records from {shown}",
            records.len() - before
        ));
    }
    Ok((Data::Records(records), outputs))
}

/// Where a glob looks: a store, the part of the path before the first pattern segment, and
/// the pattern matched against whole object paths.
struct Place {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/` or `file:///` — put before an object path to show it.
    root: String,
    prefix: ObjectPath,
    pattern: glob::Pattern,
}

impl Place {
    fn parse(glob: &str, base_dir: &Path) -> Result<Place, StepError> {
        if glob.contains('{') {
            return Err(StepError::new(format!(
                "`source.files` `{glob}`: braces (`{{a,b}}`) are not supported; match several names with `*`, `?` or `[ab]`"
            )));
        }
        let bad_pattern = |e: glob::PatternError| {
            StepError::new(format!("`source.files` `{glob}` is not a valid glob: {e}"))
        };
        if let Some((scheme, rest)) = glob.split_once("://")
            && scheme != "file"
        {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let root = format!("{scheme}://{bucket}");
            let store: Arc<dyn ObjectStore> = match scheme {
                "s3" => Arc::new(
                    AmazonS3Builder::from_env()
                        .with_url(&root)
                        .build()
                        .map_err(|e| StepError::new(format!("opening `{root}`: {e}")))?,
                ),
                "gs" => Arc::new(
                    GoogleCloudStorageBuilder::from_env()
                        .with_url(&root)
                        .build()
                        .map_err(|e| StepError::new(format!("opening `{root}`: {e}")))?,
                ),
                other => {
                    return Err(StepError::new(format!(
                        "`source.files` `{glob}`: `{other}://` is not supported; use a local path or a file://, s3:// or gs:// URL"
                    )));
                }
            };
            return Ok(Place {
                store,
                root: format!("{root}/"),
                prefix: ObjectPath::from(literal_prefix(key)),
                pattern: glob::Pattern::new(key).map_err(bad_pattern)?,
            });
        }
        let local = match glob.strip_prefix("file://") {
            Some(path) => path.to_owned(),
            None => base_dir.join(glob).display().to_string(),
        };
        if !local.starts_with('/') {
            return Err(StepError::new(format!(
                "`source.files` `{glob}`: a file:// URL needs an absolute path (file:///data/…)"
            )));
        }
        let relative = normalize(&local);
        Ok(Place {
            store: Arc::new(LocalFileSystem::new()),
            root: "/".to_owned(),
            prefix: ObjectPath::from(literal_prefix(&relative)),
            pattern: glob::Pattern::new(&relative).map_err(bad_pattern)?,
        })
    }

    /// The matching object paths, sorted.
    async fn matches(&self) -> Result<Vec<ObjectPath>, StepError> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let listed: Vec<_> = match self.store.list(Some(&self.prefix)).try_collect().await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => {
                return Err(StepError::new(format!(
                    "listing {}: {e}",
                    self.show(&self.prefix)
                )));
            }
        };
        let mut paths: Vec<ObjectPath> = listed
            .into_iter()
            .map(|meta| meta.location)
            .filter(|location| self.pattern.matches_with(location.as_ref(), options))
            .collect();
        paths.sort();
        Ok(paths)
    }

    async fn read(&self, location: &ObjectPath) -> Result<Vec<u8>, StepError> {
        let shown = self.show(location);
        let result = self
            .store
            .get(location)
            .await
            .map_err(|e| StepError::new(format!("reading `{shown}`: {e}")))?;
        let bytes = result
            .bytes()
            .await
            .map_err(|e| StepError::new(format!("reading `{shown}`: {e}")))?;
        Ok(bytes.to_vec())
    }

    fn show(&self, location: &ObjectPath) -> String {
        format!("{}{location}", self.root)
    }
}

/// The path without its leading `/`, `.` and `..` folded (object paths have neither).
fn normalize(path: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts.join("/")
}

/// The leading segments without pattern characters: where listing starts.
fn literal_prefix(pattern: &str) -> String {
    let segments: Vec<&str> = pattern.split('/').collect();
    let literal: Vec<&str> = segments
        .iter()
        .take(segments.len().saturating_sub(1))
        .take_while(|segment| !segment.contains(GLOB_CHARS))
        .copied()
        .collect();
    literal.join("/")
}

fn count_rows(bytes: &[u8], format: FileFormat, shown: &str) -> Result<u64, StepError> {
    match format {
        FileFormat::Jsonl => Ok(bytes
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .count() as u64),
        FileFormat::Csv => {
            let mut reader = csv::Reader::from_reader(bytes);
            let mut rows = 0;
            for record in reader.records() {
                record.map_err(|e| StepError::new(format!("reading `{shown}`: {e}")))?;
                rows += 1;
            }
            Ok(rows)
        }
        FileFormat::Parquet => Err(StepError::new(format!(
            "copying `{shown}`: counting the rows of a Parquet file is not supported by ingest"
        ))),
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
