//! One task: its common keys, what it inherits from `defaults:`, and its step.

use std::time::Duration;

use super::fields::{Report, shown};
use super::steps::{StepFields, StepKind, read_step};
use super::yaml::{Entry, Kind, Node, Pos};
use crate::ids::TaskId;
use crate::spec::{Backoff, Foreach, RetryPolicy, Task};
use crate::state::TriggerRule;

/// What the graph check needs of a task, kept even when the task's config is wrong so that
/// its dependents are not also reported as pointing nowhere.
pub(crate) struct TaskDraft<'n> {
    pub id: &'n str,
    /// The task's key: whole-task problems are reported there.
    pub pos: Pos,
    pub depends_on: Vec<(&'n str, Pos)>,
    /// `None` when something in the task is wrong (and reported).
    pub task: Option<Task>,
}

/// The keys of `defaults:`, each also settable per task.
const SETTING_KEYS: &[&str] = &[
    "retries",
    "retry_delay",
    "retry_backoff",
    "max_retry_delay",
    "timeout",
    "queue",
    "pool",
    "priority",
    "trigger_rule",
];

/// Keys every task may have besides its step's own.
const TASK_KEYS: &[&str] = &["type", "description", "depends_on", "foreach"];

/// The settings a task inherits from `defaults:` and may override, all optional.
#[derive(Debug, Default, Clone)]
pub(crate) struct Settings {
    retries: Option<u32>,
    retry_delay: Option<Duration>,
    retry_backoff: Option<Backoff>,
    max_retry_delay: Option<Duration>,
    timeout: Option<Duration>,
    queue: Option<String>,
    pool: Option<String>,
    priority: Option<i32>,
    trigger_rule: Option<TriggerRule>,
}

impl Settings {
    /// Reads `key` into the settings; `false` when `key` is not a setting.
    fn read(&mut self, report: &mut Report, key: &str, node: &Node) -> bool {
        match key {
            "retries" => self.retries = report.uint(key, node),
            "retry_delay" => self.retry_delay = report.duration(key, node),
            "retry_backoff" => {
                let options = [
                    ("fixed", Backoff::Fixed),
                    ("exponential", Backoff::Exponential),
                ];
                self.retry_backoff = report.choice(key, node, &options);
            }
            "max_retry_delay" => self.max_retry_delay = report.duration(key, node),
            "timeout" => {
                self.timeout = report.duration(key, node);
                if self.timeout == Some(Duration::ZERO) {
                    report.error(node.pos, "`timeout` must be longer than 0s");
                }
            }
            "queue" => self.queue = report.string(key, node),
            "pool" => self.pool = report.string(key, node),
            "priority" => self.priority = report.int(key, node),
            "trigger_rule" => {
                let options: Vec<(&str, TriggerRule)> = TriggerRule::ALL
                    .iter()
                    .map(|rule| (rule.as_str(), *rule))
                    .collect();
                self.trigger_rule = report.choice(key, node, &options);
            }
            _ => return false,
        }
        true
    }

    /// Each setting of `self`, or else the default's.
    fn or(self, defaults: &Settings) -> Settings {
        Settings {
            retries: self.retries.or(defaults.retries),
            retry_delay: self.retry_delay.or(defaults.retry_delay),
            retry_backoff: self.retry_backoff.or(defaults.retry_backoff),
            max_retry_delay: self.max_retry_delay.or(defaults.max_retry_delay),
            timeout: self.timeout.or(defaults.timeout),
            queue: self.queue.or_else(|| defaults.queue.clone()),
            pool: self.pool.or_else(|| defaults.pool.clone()),
            priority: self.priority.or(defaults.priority),
            trigger_rule: self.trigger_rule.or(defaults.trigger_rule),
        }
    }
}

/// `defaults:`: the settings every task inherits.
pub(crate) fn read_defaults(report: &mut Report, node: &Node) -> Settings {
    let mut settings = Settings::default();
    for entry in report.map("defaults", node).unwrap_or_default() {
        let Some(key) = report.key(entry) else {
            continue;
        };
        if !settings.read(report, key, &entry.value) {
            report.unknown_key(entry.key.pos, key, SETTING_KEYS, " in `defaults`");
        }
    }
    settings
}

/// One `tasks:` entry; `None` only when its key is not text.
pub(crate) fn read_task<'n>(
    report: &mut Report,
    entry: &'n Entry,
    defaults: &Settings,
) -> Option<TaskDraft<'n>> {
    let id = report.key(entry)?;
    let pos = entry.key.pos;
    let mut draft = TaskDraft {
        id,
        pos,
        depends_on: Vec::new(),
        task: None,
    };
    let task_id = TaskId::parse(id)
        .map_err(|error| report.error(pos, error))
        .ok();
    let entries = match &entry.value.kind {
        Kind::Map(entries) => entries,
        _ if entry.value.is_null() => {
            report.error(
                pos,
                format!("task `{id}` is empty; it needs at least `type`"),
            );
            return Some(draft);
        }
        _ => {
            let got = shown(&entry.value);
            let message = format!(
                "task `{id}` must be a mapping of its keys (type, depends_on, …), got {got}"
            );
            report.error(entry.value.pos, message);
            return Some(draft);
        }
    };
    let kind = step_kind(report, id, pos, entries);
    let mut own = Settings::default();
    let mut description = None;
    let mut foreach = None;
    let mut step_entries = Vec::new();
    for entry in entries {
        let Some(key) = report.key(entry) else {
            continue;
        };
        let value = &entry.value;
        match key {
            "type" => {}
            "description" => description = report.string(key, value),
            "depends_on" => draft.depends_on = depends_on(report, value),
            "foreach" => foreach = read_foreach(report, value),
            "timeout" if kind == Some(StepKind::Sensor) => step_entries.push((key, entry)),
            _ if own.read(report, key, value) => {}
            _ if kind.map_or(StepKind::any_has(key), |kind| kind.fields().contains(&key)) => {
                step_entries.push((key, entry));
            }
            _ => {
                let mut known: Vec<&str> = TASK_KEYS.to_vec();
                known.extend_from_slice(SETTING_KEYS);
                known.extend_from_slice(kind.map_or(&[], StepKind::fields));
                report.unknown_key(entry.key.pos, key, &known, &format!(" in task `{id}`"));
            }
        }
    }
    let settings = own.or(defaults);
    let Some(kind) = kind else {
        return Some(draft);
    };
    // A sensor's `timeout` is its own (see `sources::sensor`), not the task's.
    let timeout = settings.timeout.filter(|_| kind != StepKind::Sensor);
    let fields = StepFields {
        task: id,
        task_pos: pos,
        kind,
        entries: step_entries,
        timeout,
    };
    let step = read_step(report, &fields);
    if let (Some(id), Some(step)) = (task_id, step) {
        draft.task = Some(Task {
            id,
            description,
            step,
            // ids that do not parse are reported by the graph check as pointing nowhere
            depends_on: draft
                .depends_on
                .iter()
                .filter_map(|(upstream, _)| TaskId::parse(upstream).ok())
                .collect(),
            trigger_rule: settings.trigger_rule.unwrap_or_default(),
            retry: retry_policy(&settings),
            timeout,
            queue: settings.queue.unwrap_or_else(|| "default".to_owned()),
            pool: settings.pool,
            priority: settings.priority.unwrap_or(0),
            foreach,
        });
    }
    Some(draft)
}

fn retry_policy(settings: &Settings) -> RetryPolicy {
    let default = RetryPolicy::default();
    RetryPolicy {
        retries: settings.retries.unwrap_or(default.retries),
        delay: settings.retry_delay.unwrap_or(default.delay),
        backoff: settings.retry_backoff.unwrap_or(default.backoff),
        max_delay: settings.max_retry_delay.or(default.max_delay),
    }
}

/// The task's `type:`, reported when missing or unknown.
fn step_kind(report: &mut Report, id: &str, pos: Pos, entries: &[Entry]) -> Option<StepKind> {
    let Some(entry) = entries
        .iter()
        .find(|entry| entry.key.key_text() == Some("type"))
        .filter(|entry| !entry.value.is_null())
    else {
        let types = crate::spec::STEP_TYPES.join(", ");
        report.error(pos, format!("task `{id}` has no `type` (one of {types})"));
        return None;
    };
    let name = report.text("type", &entry.value)?;
    StepKind::parse(name)
        .map_err(|message| report.error(entry.value.pos, message))
        .ok()
}

/// Task ids with their positions; one id may stand alone, a repeat is ignored.
fn depends_on<'n>(report: &mut Report, node: &'n Node) -> Vec<(&'n str, Pos)> {
    let mut upstream: Vec<(&str, Pos)> = Vec::new();
    for item in report.items("depends_on", node) {
        let Some(id) = report.text("depends_on", item) else {
            continue;
        };
        if !upstream.iter().any(|(seen, _)| *seen == id) {
            upstream.push((id, item.pos));
        }
    }
    upstream
}

/// `foreach:` a YAML list, or a template that renders to one.
fn read_foreach(report: &mut Report, node: &Node) -> Option<Foreach> {
    match &node.kind {
        Kind::List(_) => match report.json("foreach", node)? {
            serde_json::Value::Array(items) => Some(Foreach::List(items)),
            _ => None,
        },
        Kind::Scalar(_) if node.is_null() => None,
        Kind::Scalar(_) => report.template("foreach", node).map(Foreach::Template),
        Kind::Map(_) => {
            report.expected(
                "foreach",
                "a list or a template that renders to a list",
                node,
            );
            None
        }
    }
}
