//! The step a task runs: one reader per `type:`, over the step's keys written flat in the task.

use std::time::Duration;

use super::fields::{Check, Report, did_you_mean};
use super::sources;
use super::yaml::{Entry, Node, Pos};
use crate::spec::{
    BatchStep, FileFormat, HttpStep, LoadMode, LoadStep, STEP_TYPES, ShellStep, SparkSubmitStep,
    SqlStep, Step,
};

/// A `type:` value that names a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepKind {
    Noop,
    Shell,
    Http,
    Sql,
    Ingest,
    Batch,
    Load,
    SparkSubmit,
    Sensor,
}

impl StepKind {
    /// The step for a `type:` value, or the message explaining why there is none.
    pub fn parse(name: &str) -> Result<StepKind, String> {
        let kind = match name {
            "noop" => StepKind::Noop,
            "shell" => StepKind::Shell,
            "http" => StepKind::Http,
            "sql" => StepKind::Sql,
            "ingest" => StepKind::Ingest,
            "batch" => StepKind::Batch,
            "load" => StepKind::Load,
            "spark_submit" => StepKind::SparkSubmit,
            "sensor" => StepKind::Sensor,
            _ => {
                let hint = did_you_mean(name, STEP_TYPES.iter().copied())
                    .map(|hint| format!("did you mean `{hint}`? "))
                    .unwrap_or_default();
                return Err(format!(
                    "unknown step type `{name}` ({hint}types are {})",
                    STEP_TYPES.join(", ")
                ));
            }
        };
        Ok(kind)
    }

    pub fn name(self) -> &'static str {
        match self {
            StepKind::Noop => "noop",
            StepKind::Shell => "shell",
            StepKind::Http => "http",
            StepKind::Sql => "sql",
            StepKind::Ingest => "ingest",
            StepKind::Batch => "batch",
            StepKind::Load => "load",
            StepKind::SparkSubmit => "spark_submit",
            StepKind::Sensor => "sensor",
        }
    }

    /// The step's own keys, written beside the task's common keys. A sensor's `timeout` is
    /// its own too, but it is listed with the common keys.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            StepKind::Noop => &[],
            StepKind::Shell => &["command", "env", "working_dir"],
            StepKind::Http => &[
                "url",
                "method",
                "headers",
                "body",
                "expect_status",
                "save_to",
                "outputs",
            ],
            StepKind::Sql => &["connection", "sql", "outputs"],
            StepKind::Ingest => &["source", "destination", "format"],
            StepKind::Batch => &["inputs", "sql", "output", "format", "partition_by"],
            StepKind::Load => &["from", "connection", "table", "mode", "key", "format"],
            StepKind::SparkSubmit => &[
                "application",
                "master",
                "deploy_mode",
                "name",
                "conf",
                "packages",
                "py_files",
                "args",
                "spark_home",
                "env",
            ],
            StepKind::Sensor => &["file", "http", "sql", "task", "poke_interval", "mode"],
        }
    }

    /// Whether any step type has this key (used when the task's type is unknown).
    pub fn any_has(key: &str) -> bool {
        ALL.iter().any(|kind| kind.fields().contains(&key))
    }
}

const ALL: [StepKind; 9] = [
    StepKind::Noop,
    StepKind::Shell,
    StepKind::Http,
    StepKind::Sql,
    StepKind::Ingest,
    StepKind::Batch,
    StepKind::Load,
    StepKind::SparkSubmit,
    StepKind::Sensor,
];

/// A task's step keys, for one step reader.
pub(crate) struct StepFields<'n> {
    pub task: &'n str,
    /// Where the task's key is: missing fields are reported there.
    pub task_pos: Pos,
    pub kind: StepKind,
    pub entries: Vec<(&'n str, &'n Entry)>,
    /// The task's own or inherited `timeout` (http uses it for the request).
    pub timeout: Option<Duration>,
}

impl<'n> StepFields<'n> {
    /// The value of `key`, unless absent or null.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, entry)| &entry.value)
            .filter(|node| !node.is_null())
    }

    /// Like `get`, reporting "task `x` (type shell) is missing `command`" when absent.
    pub fn required(&self, report: &mut Report, key: &str) -> Option<&'n Node> {
        let node = self.get(key);
        if node.is_none() {
            self.missing(report, &format!("`{key}`"));
        }
        node
    }

    /// "task `x` (type shell) is missing `command`".
    pub fn missing(&self, report: &mut Report, what: &str) {
        report.error(
            self.task_pos,
            format!(
                "task `{}` (type {}) is missing {what}",
                self.task,
                self.kind.name()
            ),
        );
    }

    /// A required template field.
    fn template(&self, report: &mut Report, key: &str) -> Option<String> {
        self.required(report, key)
            .and_then(|node| report.template(key, node))
    }

    fn optional_template(&self, report: &mut Report, key: &str) -> Option<String> {
        self.get(key).and_then(|node| report.template(key, node))
    }

    fn string(&self, report: &mut Report, key: &str) -> Option<String> {
        self.required(report, key)
            .and_then(|node| report.string(key, node))
    }

    fn optional_string(&self, report: &mut Report, key: &str) -> Option<String> {
        self.get(key).and_then(|node| report.string(key, node))
    }

    fn strings(&self, report: &mut Report, key: &str) -> Vec<String> {
        self.get(key)
            .map(|node| report.strings(key, node))
            .unwrap_or_default()
    }

    fn templates(&self, report: &mut Report, key: &str) -> Vec<String> {
        self.get(key)
            .map(|node| report.templates(key, node))
            .unwrap_or_default()
    }

    fn template_map(
        &self,
        report: &mut Report,
        key: &str,
    ) -> std::collections::BTreeMap<String, String> {
        self.get(key)
            .map(|node| report.template_map(key, node))
            .unwrap_or_default()
    }

    pub fn format(&self, report: &mut Report) -> Option<FileFormat> {
        self.get("format")
            .and_then(|node| report.choice("format", node, FORMATS))
    }
}

const FORMATS: &[(&str, FileFormat)] = &[
    ("csv", FileFormat::Csv),
    ("jsonl", FileFormat::Jsonl),
    ("parquet", FileFormat::Parquet),
];

/// Reads the step; `None` when a required field is missing or wrong (already reported).
pub(crate) fn read_step(report: &mut Report, fields: &StepFields) -> Option<Step> {
    // Every reader reads every field before giving up, so all problems are reported at once.
    match fields.kind {
        StepKind::Noop => Some(Step::Noop),
        StepKind::Shell => shell(report, fields).map(Step::Shell),
        StepKind::Http => http(report, fields).map(Step::Http),
        StepKind::Sql => sql(report, fields).map(Step::Sql),
        StepKind::Ingest => sources::ingest(report, fields).map(Step::Ingest),
        StepKind::Batch => batch(report, fields).map(Step::Batch),
        StepKind::Load => load(report, fields).map(Step::Load),
        StepKind::SparkSubmit => spark_submit(report, fields).map(Step::SparkSubmit),
        StepKind::Sensor => sources::sensor(report, fields).map(Step::Sensor),
    }
}

fn shell(report: &mut Report, fields: &StepFields) -> Option<ShellStep> {
    let command = fields.template(report, "command");
    let env = fields.template_map(report, "env");
    let working_dir = fields.optional_template(report, "working_dir");
    Some(ShellStep {
        command: command?,
        env,
        working_dir,
    })
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn http(report: &mut Report, fields: &StepFields) -> Option<HttpStep> {
    let url = fields.template(report, "url");
    let method = match fields.get("method") {
        None => Some("GET".to_owned()),
        Some(node) => report.text("method", node).and_then(|text| {
            let upper = text.to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) {
                return Some(upper);
            }
            report.error(
                node.pos,
                format!(
                    "`method` must be one of {}, got `{text}`",
                    METHODS.join(", ")
                ),
            );
            None
        }),
    };
    let headers = fields.template_map(report, "headers");
    let body = fields.get("body").and_then(|node| body(report, node));
    let expect_status = fields
        .get("expect_status")
        .map(|node| status_codes(report, "expect_status", node))
        .unwrap_or_default();
    let save_to = fields.optional_template(report, "save_to");
    let outputs = fields
        .get("outputs")
        .map(|node| report.string_map("outputs", node, Check::Text))
        .unwrap_or_default();
    Some(HttpStep {
        url: url?,
        method: method?,
        headers,
        body,
        expect_status,
        timeout: fields.timeout,
        save_to,
        outputs,
    })
}

/// A string body as written; a mapping or list is sent as JSON.
fn body(report: &mut Report, node: &Node) -> Option<String> {
    if node.as_scalar().is_some() {
        return report.template("body", node);
    }
    let json = report.json("body", node)?;
    let text = json.to_string();
    report.check_template("body", node.pos, &text);
    Some(text)
}

/// HTTP status codes: one or a list, each 100 to 599.
pub(crate) fn status_codes(report: &mut Report, name: &str, node: &Node) -> Vec<u16> {
    let mut codes = Vec::new();
    for item in report.items(name, node) {
        let Some(code) = report.uint(name, item) else {
            continue;
        };
        match u16::try_from(code) {
            Ok(code) if (100..=599).contains(&code) => codes.push(code),
            _ => report.error(
                item.pos,
                format!("`{name}` must hold HTTP status codes (100 to 599), got `{code}`"),
            ),
        }
    }
    codes
}

fn sql(report: &mut Report, fields: &StepFields) -> Option<SqlStep> {
    let connection = fields.string(report, "connection");
    let sql = fields.template(report, "sql");
    let outputs = fields.strings(report, "outputs");
    Some(SqlStep {
        connection: connection?,
        sql: sql?,
        outputs,
    })
}

fn batch(report: &mut Report, fields: &StepFields) -> Option<BatchStep> {
    let inputs = fields.required(report, "inputs").map(|node| {
        non_empty(report, fields, "inputs", node, |r, k, n| {
            r.template_map(k, n)
        })
    });
    let sql = fields
        .required(report, "sql")
        .map(|node| non_empty(report, fields, "sql", node, |r, k, n| r.templates(k, n)));
    let output = fields.template(report, "output");
    let format = fields.format(report);
    let partition_by = fields.strings(report, "partition_by");
    Some(BatchStep {
        inputs: inputs??,
        sql: sql??,
        output: output?,
        format,
        partition_by,
    })
}

/// A collection field that must hold something; an empty one (`sql: []`) is reported.
fn non_empty<'f, T: IsEmpty>(
    report: &mut Report<'f>,
    fields: &StepFields,
    key: &str,
    node: &Node,
    read: impl FnOnce(&mut Report<'f>, &str, &Node) -> T,
) -> Option<T> {
    let errors_before = report.error_count();
    let value = read(report, key, node);
    if !value.is_empty() {
        return Some(value);
    }
    // A wrong value was reported by `read`; only an empty one needs saying.
    if report.error_count() == errors_before {
        report.error(
            node.pos,
            format!("task `{}`: `{key}` is empty", fields.task),
        );
    }
    None
}

trait IsEmpty {
    fn is_empty(&self) -> bool;
}

impl<T> IsEmpty for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

impl<K, V> IsEmpty for std::collections::BTreeMap<K, V> {
    fn is_empty(&self) -> bool {
        std::collections::BTreeMap::is_empty(self)
    }
}

const LOAD_MODES: &[(&str, LoadMode)] = &[
    ("append", LoadMode::Append),
    ("replace", LoadMode::Replace),
    ("upsert", LoadMode::Upsert),
];

fn load(report: &mut Report, fields: &StepFields) -> Option<LoadStep> {
    let from = fields.template(report, "from");
    let connection = fields.string(report, "connection");
    let table = fields.string(report, "table");
    let mode = match fields.get("mode") {
        None => Some(LoadMode::Append),
        Some(node) => report.choice("mode", node, LOAD_MODES),
    };
    let key = fields.strings(report, "key");
    let upsert_without_key = mode == Some(LoadMode::Upsert) && key.is_empty();
    if upsert_without_key {
        report.error(
            fields.task_pos,
            format!(
                "task `{}` (type load) has `mode: upsert` but no `key`: list the key columns",
                fields.task
            ),
        );
    }
    let format = fields.format(report);
    Some(LoadStep {
        from: from?,
        connection: connection?,
        table: table?,
        mode: mode.filter(|_| !upsert_without_key)?,
        key,
        format,
    })
}

const DEPLOY_MODES: &[(&str, &str)] = &[("client", "client"), ("cluster", "cluster")];

fn spark_submit(report: &mut Report, fields: &StepFields) -> Option<SparkSubmitStep> {
    let application = fields.template(report, "application");
    let master = fields
        .optional_string(report, "master")
        .unwrap_or_else(|| "local[*]".to_owned());
    let deploy_mode = fields
        .get("deploy_mode")
        .and_then(|node| report.choice("deploy_mode", node, DEPLOY_MODES))
        .map(str::to_owned);
    let name = fields.optional_template(report, "name");
    let conf = fields.template_map(report, "conf");
    let packages = fields.strings(report, "packages");
    let py_files = fields.templates(report, "py_files");
    let args = fields.templates(report, "args");
    let spark_home = fields.optional_string(report, "spark_home");
    let env = fields.template_map(report, "env");
    Some(SparkSubmitStep {
        application: application?,
        master,
        deploy_mode,
        name,
        conf,
        packages,
        py_files,
        args,
        spark_home,
        env,
    })
}
