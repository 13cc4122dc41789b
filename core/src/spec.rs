//! The validated DAG: what a DAG file means once the parser (`crate::parse`) accepted it.
//!
//! Template fields are kept as their source text (a `Template`); they were compiled once by the
//! parser to catch syntax errors and are rendered by the worker with the run's context.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;

use crate::ids::{DagId, TaskId};
use crate::schedule::Schedule;
use crate::state::TriggerRule;

/// Text that may contain `{{ … }}` templates, rendered per attempt.
pub type Template = String;

#[derive(Debug, Clone, Serialize)]
pub struct Dag {
    pub id: DagId,
    pub description: Option<String>,
    /// `None` for a DAG that only runs when triggered (`schedule: null` or absent).
    pub schedule: Option<Schedule>,
    #[serde(serialize_with = "serialize_tz")]
    pub timezone: Tz,
    /// A date-only `start_date` means midnight of that day in `timezone`.
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub max_active_runs: u32,
    pub tags: Vec<String>,
    /// Defaults; a trigger may override them.
    pub params: BTreeMap<String, Value>,
    pub on_failure: Vec<Callback>,
    pub on_success: Vec<Callback>,
    /// In file order.
    pub tasks: Vec<Task>,
    /// The path the DAG was read from, as given to the parser.
    pub fileloc: String,
    /// Hex SHA-256 of the file's bytes: the version a run is pinned to.
    pub hash: String,
}

impl Dag {
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id.as_str() == id)
    }

    /// Task ids that list `id` in their `depends_on`.
    pub fn downstream_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks
            .iter()
            .filter(move |t| t.depends_on.iter().any(|d| d.as_str() == id))
    }
}

fn serialize_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

#[derive(Debug, Clone, Serialize)]
pub struct Callback {
    /// A URL template; a JSON description of the run is POSTed to it.
    pub webhook: Template,
}

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: TaskId,
    pub description: Option<String>,
    pub step: Step,
    pub depends_on: Vec<TaskId>,
    pub trigger_rule: TriggerRule,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub queue: String,
    pub pool: Option<String>,
    /// Higher runs first among queued tasks.
    pub priority: i32,
    pub foreach: Option<Foreach>,
}

#[derive(Debug, Clone, Serialize)]
pub enum Foreach {
    /// A literal YAML list: one mapped instance per element.
    List(Vec<Value>),
    /// A template that renders to a JSON list (e.g. from an upstream output).
    Template(Template),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Extra tries after the first: `retries: 2` allows three attempts.
    pub retries: u32,
    pub delay: Duration,
    pub backoff: Backoff,
    pub max_delay: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            delay: Duration::from_secs(30),
            backoff: Backoff::Fixed,
            max_delay: None,
        }
    }
}

impl RetryPolicy {
    /// The wait before try `next_try` (2 for the first retry).
    pub fn delay_before(&self, next_try: u32) -> Duration {
        let delay = match self.backoff {
            Backoff::Fixed => self.delay,
            Backoff::Exponential => {
                let exponent = next_try.saturating_sub(2).min(30);
                self.delay.saturating_mul(1u32 << exponent)
            }
        };
        match self.max_delay {
            Some(cap) => delay.min(cap),
            None => delay,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    Fixed,
    Exponential,
}

/// What a task does: one variant per `type:`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    Noop,
    Shell(ShellStep),
    Http(HttpStep),
    Sql(SqlStep),
    Ingest(IngestStep),
    Batch(BatchStep),
    Load(LoadStep),
    SparkSubmit(SparkSubmitStep),
    Sensor(SensorStep),
}

impl Step {
    pub fn type_name(&self) -> &'static str {
        match self {
            Step::Noop => "noop",
            Step::Shell(_) => "shell",
            Step::Http(_) => "http",
            Step::Sql(_) => "sql",
            Step::Ingest(_) => "ingest",
            Step::Batch(_) => "batch",
            Step::Load(_) => "load",
            Step::SparkSubmit(_) => "spark_submit",
            Step::Sensor(_) => "sensor",
        }
    }
}

/// The step type names, in the order the docs list them.
pub const STEP_TYPES: &[&str] = &[
    "shell",
    "http",
    "sql",
    "ingest",
    "batch",
    "load",
    "spark_submit",
    "sensor",
    "noop",
];

#[derive(Debug, Clone, Serialize)]
pub struct ShellStep {
    pub command: Template,
    pub env: BTreeMap<String, Template>,
    pub working_dir: Option<Template>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpStep {
    pub url: Template,
    /// Upper-case HTTP method, default `GET`.
    pub method: String,
    pub headers: BTreeMap<String, Template>,
    pub body: Option<Template>,
    /// Accepted status codes; empty means any 2xx.
    pub expect_status: Vec<u16>,
    pub timeout: Option<Duration>,
    pub save_to: Option<Template>,
    /// Output name → dotted path into the JSON response (`data.items.0.id`).
    pub outputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SqlStep {
    /// Connection name, resolved from `SLUICE_CONN_<NAME>` or the secrets file.
    pub connection: String,
    pub sql: Template,
    /// Columns of the first row of the last statement to store as outputs.
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestStep {
    pub source: IngestSource,
    pub destination: Template,
    pub format: Option<FileFormat>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestSource {
    Http {
        url: Template,
        headers: BTreeMap<String, Template>,
        /// Dotted path to the array of records (`data.items`); the whole body when absent.
        records_path: Option<String>,
        pagination: Option<Pagination>,
        /// Most pages fetched before the step fails (guards against endless pagination).
        max_pages: Option<u32>,
        /// Tries of one request answered 5xx or 429 (or not answered), the first included.
        retries: Option<u32>,
        /// The pause before the first retry, doubled for each next one (unless `Retry-After`).
        retry_delay: Option<Duration>,
    },
    Files {
        /// A glob: a local path or an `s3://`, `gs://`, `file://` URL.
        glob: Template,
    },
    Sql {
        connection: String,
        query: Template,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pagination {
    /// The next cursor is read from `cursor_path` in the body and sent as `param`.
    Cursor { param: String, cursor_path: String },
    /// Pages `1, 2, …` sent as `param` until a page has no records.
    Page {
        param: String,
        size_param: Option<String>,
        size: Option<u32>,
    },
    /// Follow the `Link: <…>; rel="next"` header.
    LinkHeader,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchStep {
    /// Table name → path or glob (CSV, JSON lines, Parquet; a folder for partitioned data).
    pub inputs: BTreeMap<String, Template>,
    /// One or more statements; the last one's result is written to `output`.
    pub sql: Vec<Template>,
    pub output: Template,
    pub format: Option<FileFormat>,
    pub partition_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadStep {
    pub from: Template,
    pub connection: String,
    pub table: String,
    pub mode: LoadMode,
    /// Key columns for `mode: upsert`.
    pub key: Vec<String>,
    pub format: Option<FileFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    Append,
    Replace,
    Upsert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    Jsonl,
    Parquet,
}

#[derive(Debug, Clone, Serialize)]
pub struct SparkSubmitStep {
    pub application: Template,
    /// Default `local[*]`.
    pub master: String,
    pub deploy_mode: Option<String>,
    pub name: Option<String>,
    pub conf: BTreeMap<String, Template>,
    pub packages: Vec<String>,
    pub py_files: Vec<Template>,
    pub args: Vec<Template>,
    pub spark_home: Option<String>,
    pub env: BTreeMap<String, Template>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SensorStep {
    pub condition: SensorCondition,
    /// Default 60 s.
    pub poke_interval: Duration,
    /// How long to keep poking before failing; default 24 h.
    pub timeout: Duration,
    pub mode: SensorMode,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorCondition {
    /// A local path or object-store URL exists (globs allowed).
    File { path: Template },
    /// The URL answers with one of `expect_status` (default any 2xx).
    Http {
        url: Template,
        expect_status: Vec<u16>,
    },
    /// The first column of the first row is true / non-zero / non-empty.
    Sql { connection: String, sql: Template },
    /// Another DAG's task succeeded for the logical date shifted by `offset`.
    Task {
        dag: DagId,
        task: TaskId,
        offset: SignedDuration,
    },
}

/// A duration that may be negative (`-1d`): for sensors looking at earlier runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SignedDuration {
    pub negative: bool,
    pub magnitude: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorMode {
    /// Keep the worker slot and poke in a loop.
    Poke,
    /// Free the slot between pokes; the task is re-queued for the next poke.
    Reschedule,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_and_respects_the_cap() {
        let policy = RetryPolicy {
            retries: 5,
            delay: Duration::from_secs(10),
            backoff: Backoff::Exponential,
            max_delay: Some(Duration::from_secs(35)),
        };
        assert_eq!(policy.delay_before(2), Duration::from_secs(10));
        assert_eq!(policy.delay_before(3), Duration::from_secs(20));
        assert_eq!(policy.delay_before(4), Duration::from_secs(35));
    }
}
