//! Batch SQL in-process with DataFusion: named inputs become tables, statements run in order,
//! the last one's result is written to the output atomically.
//!
//! The work runs on a Tokio runtime of its own (one thread per core by default), so a long
//! query never starves the worker's heartbeats and log writing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::file_format::FileFormat as DfFileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::DFParser;
use sluice_core::spec::FileFormat;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::DataError;
use crate::files::{format_from_extension, parent_folder};

/// What to run: every path absolute (the caller resolves relative paths).
#[derive(Debug, Clone)]
pub struct BatchJob {
    /// Table name → a file, a glob (`/data/raw/*.csv`) or a folder (every data file under it;
    /// `key=value` folders become partition columns).
    pub inputs: BTreeMap<String, PathBuf>,
    /// SQL texts, each holding one or more statements separated by `;`, run in order.
    pub sql: Vec<String>,
    /// Where the last statement's result goes: a file, or a folder when `partition_by` is set.
    pub output: PathBuf,
    /// The output's format; from `output`'s extension when absent (Parquet for a folder).
    pub format: Option<FileFormat>,
    /// Columns whose values make `column=value/` folders under `output`.
    pub partition_by: Vec<String>,
    /// Threads and partitions to use; all cores when absent.
    pub threads: Option<usize>,
}

/// What a finished batch wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    /// Rows of the last statement's result, all written.
    pub rows: u64,
    pub output: PathBuf,
    /// Data files written under a partitioned output; `None` for a single file.
    pub files: Option<u64>,
}

/// Where a batch reports what it does, line by line (the attempt log).
pub type LogFn = Arc<dyn Fn(String) + Send + Sync>;

/// Runs `job` and returns what it wrote. Stops promptly when `cancel` fires or the returned
/// future is dropped; a failure or a cancel leaves neither the output nor any temp file (an
/// output from an earlier run stays as it was).
pub async fn run_batch(
    job: BatchJob,
    log: LogFn,
    cancel: CancellationToken,
) -> Result<BatchSummary, DataError> {
    let threads = job
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    // the step's future may be dropped (a timeout): the guard then stops the batch too
    let stop = cancel.child_token();
    let _stop_when_dropped = stop.clone().drop_guard();
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-batch".into())
        .spawn(move || {
            let _ = done.send(run_on_own_runtime(job, threads, log, stop));
        })
        .map_err(|e| DataError::Invalid(format!("starting the batch thread: {e}")))?;
    result
        .await
        .map_err(|_| DataError::Invalid("the batch thread stopped without an answer".into()))?
}

fn run_on_own_runtime(
    job: BatchJob,
    threads: usize,
    log: LogFn,
    cancel: CancellationToken,
) -> Result<BatchSummary, DataError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("sluice-batch")
        .enable_all()
        .build()
        .map_err(|e| DataError::Invalid(format!("starting the batch runtime: {e}")))?;
    let output = Output::plan(&job)?;
    let created = output.create_folder()?;
    let temp = match output.temp_folder() {
        Ok(temp) => temp,
        Err(error) => {
            remove_created(&output.path, created.as_deref());
            return Err(error);
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = execute(&job, &output, temp.path(), threads, &log) => result,
            _ = cancel.cancelled() => Err(DataError::Cancelled),
        }
    });
    // stop every task still writing before the temp folder goes
    runtime.shutdown_timeout(Duration::from_secs(10));
    let result = result.and_then(|rows| output.publish(temp.path(), rows));
    drop(temp);
    if result.is_err() {
        remove_created(&output.path, created.as_deref());
    }
    result
}

/// Removes the (now empty) folders this run created above `output`, up to `top`.
fn remove_created(output: &Path, top: Option<&Path>) {
    let Some(top) = top else {
        return;
    };
    let mut folder = output.parent();
    while let Some(current) = folder {
        if std::fs::remove_dir(current).is_err() || current == top {
            break;
        }
        folder = current.parent();
    }
}

async fn execute(
    job: &BatchJob,
    output: &Output,
    temp: &Path,
    threads: usize,
    log: &LogFn,
) -> Result<u64, DataError> {
    let config = SessionConfig::new().with_target_partitions(threads);
    let ctx = SessionContext::new_with_config(config);
    for (name, path) in &job.inputs {
        let input = register_input(&ctx, name, path).await?;
        log(format!("input `{name}`: {input}"));
    }

    let mut statements = Vec::new();
    for text in &job.sql {
        let parsed = DFParser::parse_sql(text).map_err(|e| DataError::Statement {
            number: statements.len() + 1,
            message: e.to_string(),
        })?;
        statements.extend(parsed);
    }
    let count = statements.len();
    if count == 0 {
        return Err(DataError::Invalid("`sql` holds no statement".into()));
    }
    let state = ctx.state();
    let mut last: Option<DataFrame> = None;
    for (index, statement) in statements.into_iter().enumerate() {
        let number = index + 1;
        let failed = |e: datafusion::error::DataFusionError| DataError::Statement {
            number,
            message: e.to_string(),
        };
        log(format!("statement {number}/{count}: {statement}"));
        let started = Instant::now();
        let plan = state.statement_to_plan(statement).await.map_err(failed)?;
        let is_query = !matches!(
            plan,
            LogicalPlan::Ddl(_)
                | LogicalPlan::Dml(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Statement(_)
        );
        if number == count {
            if !is_query {
                return Err(DataError::Statement {
                    number,
                    message: "the last statement must be a query (SELECT …): its result is written to `output`".into(),
                });
            }
            last = Some(ctx.execute_logical_plan(plan).await.map_err(failed)?);
        } else {
            let frame = ctx.execute_logical_plan(plan).await.map_err(failed)?;
            let batches = frame.collect().await.map_err(failed)?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if is_query {
                log(format!(
                    "statement {number}/{count}: {rows} rows (not written: only the last statement's result is) in {:.2?}",
                    started.elapsed()
                ));
            } else {
                log(format!(
                    "statement {number}/{count}: done in {:.2?}",
                    started.elapsed()
                ));
            }
        }
    }
    let frame = last.expect("the loop sets the last statement's frame");
    let started = Instant::now();
    let rows = output.write(frame, temp, count).await?;
    log(format!(
        "statement {count}/{count}: {rows} rows written to {} in {:.2?}",
        output.path.display(),
        started.elapsed()
    ));
    Ok(rows)
}

/// Registers one named input as a table and says what it found.
async fn register_input(
    ctx: &SessionContext,
    name: &str,
    path: &Path,
) -> Result<String, DataError> {
    let missing = |message: &'static str| DataError::MissingInput {
        input: name.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let text = path
        .to_str()
        .ok_or_else(|| missing("the path is not valid UTF-8"))?;
    let found = if text.contains(['*', '?', '[']) {
        let pattern = glob::glob(text).map_err(|e| DataError::Input {
            input: name.into(),
            path: path.into(),
            message: format!("not a valid glob: {e}"),
        })?;
        let mut files = pattern.filter_map(Result::ok).filter(|p| p.is_file());
        let first = files.next().ok_or_else(|| missing("no file matches"))?;
        let count = 1 + files.count();
        Found {
            url: text.to_string(),
            format: input_format(name, &first)?,
            extension: extension_of(&first),
            partitions: Vec::new(),
            files: count,
        }
    } else if path.is_file() {
        Found {
            url: text.to_string(),
            format: input_format(name, path)?,
            extension: extension_of(path),
            partitions: Vec::new(),
            files: 1,
        }
    } else if path.is_dir() {
        let (files, first) = data_files_under(path);
        let first = first.ok_or_else(|| {
            missing("the folder holds no .csv, .jsonl, .json, .ndjson or .parquet file")
        })?;
        Found {
            url: format!("{}/", text.trim_end_matches('/')),
            format: input_format(name, &first)?,
            extension: extension_of(&first),
            partitions: partition_columns(path, &first),
            files,
        }
    } else {
        return Err(missing("no such file or folder"));
    };

    let format: Arc<dyn DfFileFormat> = match found.format {
        FileFormat::Csv => Arc::new(CsvFormat::default().with_has_header(true)),
        FileFormat::Jsonl => Arc::new(JsonFormat::default()),
        FileFormat::Parquet => Arc::new(ParquetFormat::default()),
    };
    let options = ListingOptions::new(format)
        .with_file_extension(found.extension.clone())
        .with_table_partition_cols(
            found
                .partitions
                .iter()
                .map(|column| (column.clone(), DataType::Utf8))
                .collect(),
        );
    ctx.register_listing_table(name, &found.url, options, None, None)
        .await
        .map_err(|e| DataError::Input {
            input: name.into(),
            path: path.into(),
            message: e.to_string(),
        })?;
    let partitions = if found.partitions.is_empty() {
        String::new()
    } else {
        format!(", partitioned by {}", found.partitions.join(", "))
    };
    Ok(format!(
        "{} ({} file{}, {}{partitions})",
        path.display(),
        found.files,
        if found.files == 1 { "" } else { "s" },
        format_name(found.format)
    ))
}

struct Found {
    url: String,
    format: FileFormat,
    extension: String,
    partitions: Vec<String>,
    files: usize,
}

fn input_format(name: &str, file: &Path) -> Result<FileFormat, DataError> {
    format_from_extension(file).ok_or_else(|| DataError::Input {
        input: name.into(),
        path: file.into(),
        message: "cannot tell the format: use a .csv, .jsonl (or .json, .ndjson) or .parquet name"
            .into(),
    })
}

fn extension_of(file: &Path) -> String {
    file.extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default()
}

fn format_name(format: FileFormat) -> &'static str {
    match format {
        FileFormat::Csv => "CSV",
        FileFormat::Jsonl => "JSON lines",
        FileFormat::Parquet => "Parquet",
    }
}

/// The number of data files under `folder` (hidden and `_` names skipped) and the first one,
/// in name order.
fn data_files_under(folder: &Path) -> (usize, Option<PathBuf>) {
    let mut count = 0;
    let mut first = None;
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && !n.starts_with('_'))
            })
            .collect();
        entries.sort();
        // visit in name order: push folders reversed so the smallest is popped first
        for entry in entries.iter().rev() {
            if entry.is_dir() {
                pending.push(entry.clone());
            }
        }
        for entry in entries {
            if entry.is_file() && format_from_extension(&entry).is_some() {
                count += 1;
                if first.is_none() {
                    first = Some(entry);
                }
            }
        }
    }
    (count, first)
}

/// The `key` of every `key=value` folder between `folder` and `file`.
fn partition_columns(folder: &Path, file: &Path) -> Vec<String> {
    let Ok(relative) = file.strip_prefix(folder) else {
        return Vec::new();
    };
    let mut components: Vec<_> = relative.components().collect();
    components.pop(); // the file itself
    components
        .iter()
        .filter_map(|c| c.as_os_str().to_str())
        .filter_map(|c| c.split_once('=').map(|(key, _)| key.to_string()))
        .collect()
}

/// The output: where it goes, in which format, partitioned or not.
struct Output {
    path: PathBuf,
    format: FileFormat,
    partition_by: Vec<String>,
}

impl Output {
    fn plan(job: &BatchJob) -> Result<Output, DataError> {
        let format = match (job.format, format_from_extension(&job.output)) {
            (Some(format), _) => format,
            (None, Some(format)) => format,
            (None, None) if !job.partition_by.is_empty() => FileFormat::Parquet,
            (None, None) => {
                return Err(DataError::UnknownFormat {
                    path: job.output.clone(),
                });
            }
        };
        if job.output.file_name().is_none() {
            return Err(DataError::Invalid(format!(
                "`output` must name a file or folder, not {}",
                job.output.display()
            )));
        }
        Ok(Output {
            path: job.output.clone(),
            format,
            partition_by: job.partition_by.clone(),
        })
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn failed(&self, message: impl ToString) -> DataError {
        DataError::Output {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// Creates the folder the output goes in; returns the topmost folder it had to create.
    fn create_folder(&self) -> Result<Option<PathBuf>, DataError> {
        let folder = parent_folder(&self.path);
        let mut top = None;
        let mut missing = Some(folder.as_path());
        while let Some(candidate) = missing {
            if candidate.as_os_str().is_empty() || candidate.exists() {
                break;
            }
            top = Some(candidate.to_path_buf());
            missing = candidate.parent();
        }
        std::fs::create_dir_all(&folder)
            .map_err(|e| self.failed(format!("creating the folder {}: {e}", folder.display())))?;
        Ok(top)
    }

    /// A hidden folder beside the output where it is written first (removed when dropped).
    fn temp_folder(&self) -> Result<tempfile::TempDir, DataError> {
        let folder = parent_folder(&self.path);
        tempfile::Builder::new()
            .prefix(&format!(".{}.sluice-", self.name()))
            .tempdir_in(&folder)
            .map_err(|e| {
                self.failed(format!(
                    "creating a temp folder in {}: {e}",
                    folder.display()
                ))
            })
    }

    /// Writes `frame` under `temp`; returns the rows written.
    async fn write(&self, frame: DataFrame, temp: &Path, number: usize) -> Result<u64, DataError> {
        let staged = temp.join(self.name());
        let target = staged
            .to_str()
            .ok_or_else(|| self.failed("the path is not valid UTF-8"))?
            .to_string();
        let options = DataFrameWriteOptions::new()
            .with_single_file_output(self.partition_by.is_empty())
            .with_partition_by(self.partition_by.clone());
        let result = match self.format {
            FileFormat::Parquet => {
                let mut parquet = TableParquetOptions::default();
                // snappy, like Spark: fast to write and to read
                parquet.global.compression = Some("snappy".into());
                frame.write_parquet(&target, options, Some(parquet)).await
            }
            FileFormat::Csv => frame.write_csv(&target, options, None).await,
            FileFormat::Jsonl => frame.write_json(&target, options, None).await,
        };
        let counts = result.map_err(|e| DataError::Statement {
            number,
            message: e.to_string(),
        })?;
        let mut rows = 0;
        for batch in &counts {
            if let Some(column) = batch.columns().first()
                && let Some(values) = column.as_any().downcast_ref::<UInt64Array>()
            {
                rows += values.iter().flatten().sum::<u64>();
            }
        }
        Ok(rows)
    }

    /// Moves what `write` staged under `temp` into place.
    fn publish(&self, temp: &Path, rows: u64) -> Result<BatchSummary, DataError> {
        let staged = temp.join(self.name());
        if self.partition_by.is_empty() {
            if self.path.is_dir() {
                return Err(self.failed("a folder is in the way of the output file"));
            }
            std::fs::rename(&staged, &self.path)
                .map_err(|e| self.failed(format!("renaming the temp file into place: {e}")))?;
            return Ok(BatchSummary {
                rows,
                output: self.path.clone(),
                files: None,
            });
        }
        // a result with no rows writes no partition: the output is an empty folder
        std::fs::create_dir_all(&staged).map_err(|e| self.failed(e))?;
        let files = count_files(&staged);
        if self.path.exists() {
            // the earlier output is moved aside into the temp folder (removed with it), then
            // the new one takes its place
            let old = temp.join(".previous");
            std::fs::rename(&self.path, &old)
                .map_err(|e| self.failed(format!("moving the earlier output aside: {e}")))?;
            if let Err(e) = std::fs::rename(&staged, &self.path) {
                let _ = std::fs::rename(&old, &self.path);
                return Err(self.failed(format!("renaming the temp folder into place: {e}")));
            }
        } else {
            std::fs::rename(&staged, &self.path)
                .map_err(|e| self.failed(format!("renaming the temp folder into place: {e}")))?;
        }
        Ok(BatchSummary {
            rows,
            output: self.path.clone(),
            files: Some(files),
        })
    }
}

/// Files under `folder`, at any depth.
fn count_files(folder: &Path) -> u64 {
    let mut count = 0;
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                count += 1;
            }
        }
    }
    count
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
