//! One run with every task instance and every attempt, and one attempt's log.

use askama::Template;
use askama_web::WebTemplate;
use chrono::{DateTime, Utc};
use sluice_core::AttemptState;
use sluice_store::{AttemptRecord, RunRecord, Store, TaskInstanceRecord, UNMAPPED};

use super::charts::{Gantt, Span, gantt};
use super::{RunRow, find_run};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::format::{NONE, elapsed, optional_time, time};
use crate::paths::{self, AttemptAddress};

#[derive(Template, WebTemplate)]
#[template(path = "run.html")]
pub(crate) struct RunPage {
    refresh: bool,
    pub(crate) user: Option<CurrentUser>,
    dag_id: String,
    dag_href: String,
    cancel_href: String,
    clear_href: String,
    run: RunRow,
    triggered_by: String,
    queued_at: String,
    /// Name and JSON value, by name.
    params: Vec<(String, String)>,
    tasks: Vec<TaskRow>,
    /// Every attempt on one time axis; `None` before the first attempt starts.
    gantt: Option<Gantt>,
}

#[derive(Template, WebTemplate)]
#[template(path = "log.html")]
pub(crate) struct LogPage {
    refresh: bool,
    pub(crate) user: Option<CurrentUser>,
    dag_id: String,
    dag_href: String,
    run_id: String,
    run_href: String,
    task_id: String,
    map_index: Option<i32>,
    attempt: AttemptRow,
    /// Every try of the same task instance, for moving between them.
    tries: Vec<AttemptRow>,
    log: String,
    /// While the attempt runs: where its log's new chunks stream from.
    stream_href: Option<String>,
}

/// Which attempt's log a request asks for.
pub(crate) struct LogRequest<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub map_index: i32,
    pub try_number: u32,
}

pub(crate) async fn run_page(
    store: &dyn Store,
    dag_id: &str,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<RunPage, AppError> {
    let run = find_run(store, dag_id, run_id).await?;
    let instances = store.task_instances(run.pk).await?;
    let attempts = store.attempts(run.pk).await?;
    let outputs = store.run_outputs(run.pk).await?;
    let mut with_outputs = std::collections::BTreeSet::new();
    let tasks = instances
        .iter()
        .map(|instance| {
            let mut row = TaskRow::new(&run, instance, &attempts, now);
            // outputs are per task (a mapped task's are lists): shown on its first row, which
            // for a `foreach` template is the placeholder that expanded it
            if with_outputs.insert(instance.task_id.as_str())
                && let Some(values) = outputs.get(&instance.task_id)
            {
                row.outputs = values
                    .iter()
                    .map(|(key, value)| (key.clone(), value.to_string()))
                    .collect();
            }
            row
        })
        .collect();
    let spans: Vec<Span> = attempts
        .iter()
        .map(|attempt| Span {
            label: format!(
                "{}{} try {}",
                attempt.task_id,
                map_suffix(attempt.map_index),
                attempt.try_number
            ),
            state: attempt.state.as_str(),
            start: attempt.started_at,
            end: attempt.ended_at,
        })
        .collect();
    Ok(RunPage {
        user: None,
        refresh: !run.state.is_terminal(),
        dag_id: run.dag_id.clone(),
        dag_href: paths::dag(&run.dag_id),
        cancel_href: paths::cancel_run(&run.dag_id, &run.run_id),
        clear_href: paths::clear_run(&run.dag_id, &run.run_id),
        triggered_by: run.triggered_by.clone(),
        queued_at: time(run.queued_at),
        params: run
            .params
            .iter()
            .map(|(name, value)| (name.clone(), value.to_string()))
            .collect(),
        tasks,
        gantt: gantt(&spans, now),
        run: RunRow::new(&run, now),
    })
}

pub(crate) async fn attempt_log_page(
    store: &dyn Store,
    request: &LogRequest<'_>,
    now: DateTime<Utc>,
) -> Result<LogPage, AppError> {
    let run = find_run(store, request.dag_id, request.run_id).await?;
    // the store has no attempt-by-id read; a run's attempts are few, so pick it from those
    let attempts = store.attempts(run.pk).await?;
    let tries: Vec<&AttemptRecord> = attempts
        .iter()
        .filter(|attempt| {
            attempt.task_id == request.task_id && attempt.map_index == request.map_index
        })
        .collect();
    let Some(attempt) = tries
        .iter()
        .find(|attempt| attempt.try_number == request.try_number)
    else {
        return Err(AppError::NotFound(format!(
            "task `{}`{} of run `{}` has no try {}",
            request.task_id,
            map_suffix(request.map_index),
            request.run_id,
            request.try_number
        )));
    };
    let chunks = store.read_log(attempt.id, 0).await?;
    let last_seq = chunks.last().map_or(0, |chunk| chunk.seq);
    let mut log = String::new();
    if attempt.log_dropped_bytes > 0 {
        // the oldest output went over the per-attempt cap: say so where it would have been
        log.push_str(&sluice_store::dropped_log_line(attempt.log_dropped_bytes));
        log.push('\n');
    }
    for chunk in chunks {
        log.push_str(&chunk.content);
    }
    let running = attempt.state == AttemptState::Running;
    let stream_href = running.then(|| {
        let address = AttemptAddress {
            dag_id: &run.dag_id,
            run_id: &run.run_id,
            task_id: &attempt.task_id,
            map_index: attempt.map_index,
            try_number: attempt.try_number,
        };
        paths::attempt_log_stream(&address, last_seq)
    });
    Ok(LogPage {
        user: None,
        // the log follows itself over server-sent events; without scripts the page reloads
        refresh: false,
        stream_href,
        dag_id: run.dag_id.clone(),
        dag_href: paths::dag(&run.dag_id),
        run_id: run.run_id.clone(),
        run_href: paths::run(&run.dag_id, &run.run_id),
        task_id: attempt.task_id.clone(),
        map_index: mapped(attempt.map_index),
        attempt: AttemptRow::new(&run, attempt, now),
        tries: tries
            .iter()
            .map(|other| AttemptRow::new(&run, other, now))
            .collect(),
        log,
    })
}

struct TaskRow {
    task_id: String,
    href: String,
    mark_href: String,
    /// In a terminal state: it can be cleared.
    settled: bool,
    map_index: Option<i32>,
    state: &'static str,
    /// Tries started so far, and how many the retry policy allows.
    try_number: u32,
    max_tries: u32,
    next_try_at: Option<String>,
    attempts: Vec<AttemptRow>,
    /// What the task's successful attempt returned: key and JSON value.
    outputs: Vec<(String, String)>,
}

impl TaskRow {
    fn new(
        run: &RunRecord,
        instance: &TaskInstanceRecord,
        attempts: &[AttemptRecord],
        now: DateTime<Utc>,
    ) -> Self {
        TaskRow {
            task_id: instance.task_id.clone(),
            href: paths::task_instance(
                &run.dag_id,
                &run.run_id,
                &instance.task_id,
                instance.map_index,
            ),
            mark_href: paths::mark_task(&run.dag_id, &run.run_id, &instance.task_id),
            settled: instance.state.is_terminal(),
            map_index: mapped(instance.map_index),
            state: instance.state.as_str(),
            try_number: instance.try_number,
            max_tries: instance.max_tries,
            next_try_at: instance.next_try_at.map(time),
            attempts: attempts
                .iter()
                .filter(|attempt| attempt.ti_id == instance.id)
                .map(|attempt| AttemptRow::new(run, attempt, now))
                .collect(),
            outputs: Vec::new(),
        }
    }
}

pub(super) struct AttemptRow {
    pub(super) try_number: u32,
    pub(super) state: &'static str,
    pub(super) worker_id: String,
    pub(super) started: String,
    pub(super) ended: String,
    pub(super) duration: String,
    pub(super) exit_code: String,
    pub(super) error: Option<String>,
    pub(super) log_href: String,
}

impl AttemptRow {
    pub(super) fn new(run: &RunRecord, attempt: &AttemptRecord, now: DateTime<Utc>) -> Self {
        AttemptRow {
            try_number: attempt.try_number,
            state: attempt.state.as_str(),
            worker_id: attempt.worker_id.clone(),
            started: time(attempt.started_at),
            ended: optional_time(attempt.ended_at),
            duration: if attempt.state == AttemptState::Running || attempt.ended_at.is_some() {
                elapsed(Some(attempt.started_at), attempt.ended_at, now)
            } else {
                NONE.to_owned()
            },
            exit_code: attempt
                .exit_code
                .map_or_else(|| NONE.to_owned(), |code| code.to_string()),
            error: attempt.error.clone(),
            log_href: paths::attempt_log(&AttemptAddress {
                dag_id: &run.dag_id,
                run_id: &run.run_id,
                task_id: &attempt.task_id,
                map_index: attempt.map_index,
                try_number: attempt.try_number,
            }),
        }
    }
}

pub(super) fn mapped(map_index: i32) -> Option<i32> {
    (map_index != UNMAPPED).then_some(map_index)
}

pub(super) fn map_suffix(map_index: i32) -> String {
    mapped(map_index).map_or_else(String::new, |index| format!("[{index}]"))
}
