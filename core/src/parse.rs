//! DAG file → `Dag`, reporting every problem at its line and column.
//!
//! The YAML is read into a positioned tree (`yaml`), then each level is read by its own
//! module: the top-level keys here, tasks and `defaults:` in `task`, step configs in `steps`
//! and `sources`, and the dependency graph in `graph`. Readers never stop at the first
//! mistake: they record it in a `Report` and go on, so a user fixes a file in one pass.

mod dates;
mod fields;
mod graph;
mod sources;
mod steps;
mod task;
mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::error::DagError;
use crate::ids::DagId;
use crate::schedule::Schedule;
use crate::spec::{Callback, Dag};
use fields::{Report, did_you_mean};
use task::{Settings, TaskDraft};
use yaml::{Entry, Kind, Node, Pos};

/// Reads one DAG file. `file` is the path as the caller names it (kept as `Dag::fileloc`, the
/// dag id's default is its stem); every problem is returned, sorted by line and column.
///
/// Defaults a user would notice:
/// - `catchup` is `false`, as in modern Airflow: a new DAG runs its latest interval rather
///   than every interval since `start_date`, unless the file asks for catch-up.
/// - `max_active_runs` is 16, `timezone` UTC, `schedule` absent means manual runs only.
/// - per task: `trigger_rule: all_success`, `retries: 0`, `retry_delay: 30s`, fixed backoff,
///   no timeout, `queue: default`, `priority: 0`; `defaults:` overrides these for all tasks
///   and a task's own keys override `defaults:`.
/// - a sensor's `timeout` is how long it waits (default 24 h); `defaults.timeout` does not
///   apply to it. An http task's `timeout` also limits its request.
/// - `null` (or an empty value) means "not set", everywhere: `pool: ~` in a task inherits
///   `defaults.pool`. A list field also takes a single value (`depends_on: extract`).
/// - top-level keys starting with `x-` are ignored, to hold YAML anchors (`x-common: &c`).
pub fn parse_dag(file: &str, source: &str) -> Result<Dag, Vec<DagError>> {
    let mut report = Report::new(file);
    let (root, problems) = yaml::load(source);
    for (pos, message) in problems {
        report.error(pos, message);
    }
    let dag = match &root {
        Some(root) => read_dag(&mut report, file, source, root),
        None => {
            if !report.has_errors() {
                report.error(
                    Pos::START,
                    "the file is empty; a DAG needs at least `tasks:`",
                );
            }
            None
        }
    };
    if dag.is_none() && !report.has_errors() {
        report.error(Pos::START, BUG);
    }
    match dag {
        Some(dag) if !report.has_errors() => Ok(dag),
        _ => Err(report.into_errors()),
    }
}

/// A reader gave up without saying why: never silently drop a DAG or a task.
const BUG: &str =
    "this file could not be read, and sluice recorded no reason (a bug: please report it)";

const TOP_KEYS: &[&str] = &[
    "dag",
    "description",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "tags",
    "params",
    "defaults",
    "on_failure",
    "on_success",
    "tasks",
];

/// The top-level values, found first because some depend on others (dates on the timezone,
/// tasks on `defaults:`).
#[derive(Default)]
struct TopLevel<'n> {
    dag: Option<&'n Node>,
    description: Option<&'n Node>,
    schedule: Option<&'n Node>,
    timezone: Option<&'n Node>,
    start_date: Option<&'n Node>,
    end_date: Option<&'n Node>,
    catchup: Option<&'n Node>,
    max_active_runs: Option<&'n Node>,
    tags: Option<&'n Node>,
    params: Option<&'n Node>,
    defaults: Option<&'n Node>,
    on_failure: Option<&'n Node>,
    on_success: Option<&'n Node>,
    tasks: Option<&'n Entry>,
}

fn read_dag(report: &mut Report, file: &str, source: &str, root: &Node) -> Option<Dag> {
    let Kind::Map(entries) = &root.kind else {
        let got = fields::shown(root);
        let message =
            format!("a DAG file is a mapping of keys (dag, schedule, tasks, …), got {got}");
        report.error(root.pos, message);
        return None;
    };
    let top = top_level(report, entries);
    let id = dag_id(report, file, top.dag);
    let description = top
        .description
        .and_then(|node| report.string("description", node));
    let schedule = top.schedule.and_then(|node| {
        let text = report.text("schedule", node)?;
        Schedule::parse(text)
            .map_err(|error| report.error(node.pos, error))
            .ok()
    });
    let timezone = top.timezone.and_then(|node| timezone(report, node));
    let zone = timezone.unwrap_or(Tz::UTC);
    let start_date = top
        .start_date
        .and_then(|node| date(report, "start_date", node, zone));
    let end_date = top
        .end_date
        .and_then(|node| date(report, "end_date", node, zone));
    if let (Some(start), Some(end), Some(node)) = (start_date, end_date, top.end_date)
        && end < start
    {
        report.error(node.pos, "`end_date` is before `start_date`");
    }
    let catchup = top.catchup.and_then(|node| report.boolean("catchup", node));
    let max_active_runs = top.max_active_runs.and_then(|node| {
        let runs = report.uint("max_active_runs", node)?;
        if runs == 0 {
            report.error(node.pos, "`max_active_runs` must be at least 1, got `0`");
        }
        Some(runs)
    });
    let tags = top.tags.map(|node| report.strings("tags", node));
    let params = top.params.map(|node| params(report, node));
    let on_failure = top
        .on_failure
        .map(|node| callbacks(report, "on_failure", node));
    let on_success = top
        .on_success
        .map(|node| callbacks(report, "on_success", node));
    let defaults = top
        .defaults
        .map(|node| task::read_defaults(report, node))
        .unwrap_or_default();
    let tasks = read_tasks(report, top.tasks, &defaults);
    if report.has_errors() {
        return None;
    }
    Some(Dag {
        id: id?,
        description,
        schedule,
        timezone: zone,
        start_date,
        end_date,
        catchup: catchup.unwrap_or(false),
        max_active_runs: max_active_runs.unwrap_or(16),
        tags: tags.unwrap_or_default(),
        params: params.unwrap_or_default(),
        on_failure: on_failure.unwrap_or_default(),
        on_success: on_success.unwrap_or_default(),
        tasks,
        fileloc: file.to_owned(),
        hash: hex::encode(Sha256::digest(source.as_bytes())),
    })
}

fn top_level<'n>(report: &mut Report, entries: &'n [Entry]) -> TopLevel<'n> {
    let mut top = TopLevel::default();
    for entry in entries {
        let Some(key) = report.key(entry) else {
            continue;
        };
        let value = Some(&entry.value);
        match key {
            "dag" => top.dag = value,
            "description" => top.description = value,
            "schedule" => top.schedule = value,
            "timezone" => top.timezone = value,
            "start_date" => top.start_date = value,
            "end_date" => top.end_date = value,
            "catchup" => top.catchup = value,
            "max_active_runs" => top.max_active_runs = value,
            "tags" => top.tags = value,
            "params" => top.params = value,
            "defaults" => top.defaults = value,
            "on_failure" => top.on_failure = value,
            "on_success" => top.on_success = value,
            "tasks" => top.tasks = Some(entry),
            // Extension keys, as in Docker Compose: a place for `&anchors` to merge elsewhere.
            _ if key.starts_with("x-") => {}
            _ => report.unknown_key(entry.key.pos, key, TOP_KEYS, ""),
        }
    }
    top
}

/// `dag:`, or else the file's stem (`dags/daily_sales.yaml` → `daily_sales`).
fn dag_id(report: &mut Report, file: &str, node: Option<&Node>) -> Option<DagId> {
    if let Some(node) = node.filter(|node| !node.is_null()) {
        let text = report.text("dag", node)?;
        return DagId::parse(text)
            .map_err(|error| report.error(node.pos, error))
            .ok();
    }
    let stem = Path::new(file)
        .file_stem()
        .map(|stem| stem.to_string_lossy())
        .unwrap_or_default();
    DagId::parse(&stem)
        .map_err(|error| {
            let message = format!(
                "the dag id comes from the file name when `dag:` is absent, and {error}; \
                 add `dag: <id>` or rename the file"
            );
            report.error(Pos::START, message);
        })
        .ok()
}

fn timezone(report: &mut Report, node: &Node) -> Option<Tz> {
    let text = report.text("timezone", node)?;
    if let Ok(zone) = text.parse::<Tz>() {
        return Some(zone);
    }
    let names = chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name());
    let hint = match did_you_mean(text, names) {
        Some(name) => format!("did you mean `{name}`?"),
        None => "use an IANA name like `Europe/Berlin` or `UTC`".to_owned(),
    };
    report.error(node.pos, format!("unknown timezone `{text}` ({hint})"));
    None
}

fn date(
    report: &mut Report,
    name: &str,
    node: &Node,
    zone: Tz,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = report.text(name, node)?;
    dates::parse_date(text, zone)
        .map_err(|error| report.error(node.pos, format!("`{name}`: {error}")))
        .ok()
}

fn params(report: &mut Report, node: &Node) -> BTreeMap<String, serde_json::Value> {
    let mut params = BTreeMap::new();
    for entry in report.map("params", node).unwrap_or_default() {
        let Some(key) = report.key(entry) else {
            continue;
        };
        if let Some(value) = report.json("params", &entry.value) {
            params.insert(key.to_owned(), value);
        }
    }
    params
}

/// `on_failure: [{webhook: "…"}]`; a single mapping stands for a list of one.
fn callbacks(report: &mut Report, name: &str, node: &Node) -> Vec<Callback> {
    let items = match &node.kind {
        Kind::Map(_) => std::slice::from_ref(node),
        _ => report.items(name, node),
    };
    let mut callbacks = Vec::with_capacity(items.len());
    for item in items {
        let Some(entries) = report.map(name, item) else {
            if item.is_null() {
                report.expected(name, "a list of `webhook:` mappings", item);
            }
            continue;
        };
        let mut webhook = None;
        for entry in entries {
            let Some(key) = report.key(entry) else {
                continue;
            };
            match key {
                "webhook" => webhook = report.template("webhook", &entry.value),
                _ => report.unknown_key(entry.key.pos, key, &["webhook"], &format!(" in `{name}`")),
            }
        }
        match webhook {
            Some(webhook) => callbacks.push(Callback { webhook }),
            None if !entries
                .iter()
                .any(|entry| entry.key.key_text() == Some("webhook")) =>
            {
                report.error(item.pos, format!("`{name}` entry is missing `webhook`"));
            }
            None => {}
        }
    }
    callbacks
}

/// `tasks:`, in file order, after the graph check.
fn read_tasks(
    report: &mut Report,
    tasks: Option<&Entry>,
    defaults: &Settings,
) -> Vec<crate::spec::Task> {
    let Some(tasks) = tasks else {
        report.error(
            Pos::START,
            "the DAG has no `tasks:`; it needs at least one task",
        );
        return Vec::new();
    };
    let entries = match &tasks.value.kind {
        Kind::Map(entries) if !entries.is_empty() => entries,
        Kind::Map(_) => {
            report.error(
                tasks.key.pos,
                "`tasks` is empty; a DAG needs at least one task",
            );
            return Vec::new();
        }
        _ if tasks.value.is_null() => {
            report.error(
                tasks.key.pos,
                "`tasks` is empty; a DAG needs at least one task",
            );
            return Vec::new();
        }
        _ => {
            report.expected("tasks", "a mapping from task id to task", &tasks.value);
            return Vec::new();
        }
    };
    let drafts: Vec<TaskDraft> = entries
        .iter()
        .filter_map(|entry| task::read_task(report, entry, defaults))
        .collect();
    graph::check(report, &drafts);
    let mut tasks = Vec::with_capacity(drafts.len());
    for draft in drafts {
        match draft.task {
            Some(task) => tasks.push(task),
            None if !report.has_errors() => report.error(draft.pos, BUG),
            None => {}
        }
    }
    tasks
}

#[cfg(test)]
mod tests;
