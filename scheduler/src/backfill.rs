//! Backfills: a range of a DAG's schedule run on request.
//!
//! `plan` looks at every schedule point in the range (the DAG's timezone and data intervals)
//! and at the runs that already exist, and decides for each date what happens; it writes
//! nothing, so `--dry-run` is just printing it. `create` writes the plan as one backfill row,
//! its new runs and its reruns in one transaction. From then on the scheduler starts the
//! backfill's runs within its own `max_active_runs` (`Scheduler::step_backfills`), whether or
//! not the CLI that asked for it is still there.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sluice_core::{Dag, DataInterval, RunState, RunType, TaskState, Timetable};
use sluice_store::{BackfillRecord, ClearTasks, NewBackfill, RunRange, RunRecord, Store};

use crate::{RunRequest, SchedulerError, build_run};

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    /// Logical dates in `[start, end)`.
    pub range: RunRange,
    /// `None`: the DAG's.
    pub max_active_runs: Option<u32>,
    /// Newest logical date first.
    pub reverse: bool,
    /// Clear and rerun failed (and cancelled) runs; without it they are left alone.
    pub rerun_failed: bool,
    /// Only these tasks rerun in existing runs.
    pub tasks: Option<TaskSelection>,
    pub triggered_by: String,
    pub now: DateTime<Utc>,
}

/// Tasks picked by `--tasks REGEX` (and `--downstream`).
#[derive(Debug, Clone, Serialize)]
pub struct TaskSelection {
    pub pattern: String,
    pub downstream: bool,
    /// In the DAG file's order, downstream tasks included.
    pub task_ids: Vec<String>,
}

/// What happens to one schedule point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// No run yet: a backfill run is created.
    Create,
    /// The run is cleared and runs again: these tasks (and every map index of them).
    Rerun { tasks: Vec<String> },
    /// The run is left as it is, for the reason given.
    Keep { reason: &'static str },
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedRun {
    pub interval: DataInterval,
    pub existing: Option<RunRecord>,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackfillPlan {
    pub dag_id: String,
    pub range_start: DateTime<Utc>,
    pub range_end: DateTime<Utc>,
    pub max_active_runs: u32,
    pub reverse: bool,
    /// Every schedule point in the range whose interval has ended, oldest first.
    pub runs: Vec<PlannedRun>,
    /// Schedule points in the range whose interval has not ended yet: not backfilled.
    pub not_yet_due: usize,
}

impl BackfillPlan {
    pub fn count(&self, pick: impl Fn(&Action) -> bool) -> usize {
        self.runs.iter().filter(|r| pick(&r.action)).count()
    }

    /// True when the plan creates or reruns at least one run.
    pub fn has_work(&self) -> bool {
        self.count(|a| !matches!(a, Action::Keep { .. })) > 0
    }
}

/// The most runs one backfill may hold.
pub const MAX_RUNS: usize = 100_000;

/// The intervals a backfill covers: every schedule point with a logical date in the range
/// whose interval has ended at `now`, oldest first, and how many are not due yet. The DAG's
/// `start_date`, `end_date` and `catchup` do not limit a backfill (it is an explicit request),
/// but `every` schedules stay aligned to the start date.
pub fn intervals(
    dag: &Dag,
    range: &RunRange,
    now: DateTime<Utc>,
) -> Result<(Vec<DataInterval>, usize), SchedulerError> {
    let Some(schedule) = &dag.schedule else {
        return Err(SchedulerError::Invalid(format!(
            "DAG `{}` has no schedule, so there is nothing to backfill (run it with `sluice dags trigger {}`)",
            dag.id, dag.id
        )));
    };
    let timetable = Timetable {
        schedule,
        timezone: dag.timezone,
        start_date: dag.start_date,
        end_date: dag.end_date,
    };
    let mut due = Vec::new();
    let mut not_yet_due = 0;
    let mut next = timetable.next_interval_after(range.start);
    while let Some(interval) = next.filter(|i| i.start < range.end) {
        if due.len() == MAX_RUNS {
            return Err(SchedulerError::Invalid(format!(
                "the range holds more than {MAX_RUNS} runs of DAG `{}`: backfill it in parts",
                dag.id
            )));
        }
        if interval.end <= now {
            due.push(interval);
        } else {
            not_yet_due += 1;
        }
        next = timetable.next_interval_after(interval.end);
    }
    Ok((due, not_yet_due))
}

/// Decides what the backfill does for each schedule point; reads, never writes.
///
/// - no run yet: create one;
/// - a queued or running run: keep it;
/// - a successful run: keep it, unless `--tasks` (without `--rerun-failed`) asks to rerun
///   those tasks everywhere;
/// - a failed or cancelled run: rerun it with `--rerun-failed` (its unsuccessful tasks and
///   everything downstream of them, or the `--tasks` selection) or with `--tasks`; else keep.
pub async fn plan(
    store: &dyn Store,
    dag: &Dag,
    request: &BackfillRequest,
) -> Result<BackfillPlan, SchedulerError> {
    if request.range.start >= request.range.end {
        return Err(SchedulerError::Invalid(
            "--start must be on or before --end".to_owned(),
        ));
    }
    if request.max_active_runs == Some(0) {
        return Err(SchedulerError::Invalid(
            "--max-active-runs must be at least 1".to_owned(),
        ));
    }
    let (intervals, not_yet_due) = intervals(dag, &request.range, request.now)?;
    let existing = store.runs_in_range(&request.range).await?;
    let mut runs = Vec::with_capacity(intervals.len());
    for interval in intervals {
        let run = existing
            .iter()
            .find(|r| r.logical_date == interval.start)
            .cloned();
        let action = match &run {
            None => Action::Create,
            Some(run) => decide(store, dag, request, run).await?,
        };
        runs.push(PlannedRun {
            interval,
            existing: run,
            action,
        });
    }
    Ok(BackfillPlan {
        dag_id: dag.id.to_string(),
        range_start: request.range.start,
        range_end: request.range.end,
        max_active_runs: request.max_active_runs.unwrap_or(dag.max_active_runs),
        reverse: request.reverse,
        runs,
        not_yet_due,
    })
}

async fn decide(
    store: &dyn Store,
    dag: &Dag,
    request: &BackfillRequest,
    run: &RunRecord,
) -> Result<Action, SchedulerError> {
    let selected = request.tasks.as_ref().map(|s| s.task_ids.clone());
    Ok(match run.state {
        RunState::Queued | RunState::Running => Action::Keep {
            reason: "in progress",
        },
        RunState::Success => match selected {
            Some(tasks) if !request.rerun_failed => Action::Rerun { tasks },
            _ => Action::Keep {
                reason: "succeeded",
            },
        },
        RunState::Failed | RunState::Cancelled => match selected {
            Some(tasks) => Action::Rerun { tasks },
            None if request.rerun_failed => {
                let unsuccessful: Vec<String> = store
                    .task_instances(run.pk)
                    .await?
                    .into_iter()
                    .filter(|ti| ti.state != TaskState::Success)
                    .map(|ti| ti.task_id)
                    .collect();
                Action::Rerun {
                    tasks: with_downstream(dag, &unsuccessful),
                }
            }
            None => Action::Keep {
                reason: "not successful (pass --rerun-failed to rerun it)",
            },
        },
    })
}

/// Writes the plan: the backfill row, its new runs and its reruns, in one transaction.
pub async fn create(
    store: &dyn Store,
    dag: &Dag,
    plan: &BackfillPlan,
    request: &BackfillRequest,
) -> Result<BackfillRecord, SchedulerError> {
    let mut create = Vec::new();
    let mut rerun = Vec::new();
    for planned in &plan.runs {
        match (&planned.action, &planned.existing) {
            (Action::Create, _) => create.push(build_run(
                dag,
                RunRequest {
                    run_type: RunType::Backfill,
                    logical_date: planned.interval.start,
                    data_interval: planned.interval,
                    params: Default::default(),
                    triggered_by: request.triggered_by.clone(),
                    now: request.now,
                },
            )),
            (Action::Rerun { tasks }, Some(run)) => rerun.push(ClearTasks {
                run_pk: run.pk,
                task_ids: tasks.clone(),
                now: request.now,
            }),
            _ => {}
        }
    }
    let options = serde_json::json!({
        "rerun_failed": request.rerun_failed,
        "tasks": request.tasks.as_ref().map(|t| &t.pattern),
        "downstream": request.tasks.as_ref().is_some_and(|t| t.downstream),
    });
    let backfill = NewBackfill {
        dag_id: plan.dag_id.clone(),
        range: request.range.clone(),
        max_active_runs: plan.max_active_runs,
        reverse: plan.reverse,
        options,
        triggered_by: request.triggered_by.clone(),
        create,
        rerun,
        now: request.now,
    };
    Ok(store.create_backfill(&backfill).await?)
}

/// The tasks and, transitively, every task downstream of them, in the DAG file's order.
pub fn with_downstream(dag: &Dag, task_ids: &[String]) -> Vec<String> {
    let mut picked: BTreeSet<&str> = task_ids.iter().map(String::as_str).collect();
    let mut frontier: Vec<&str> = picked.iter().copied().collect();
    while let Some(id) = frontier.pop() {
        for task in dag.downstream_of(id) {
            if picked.insert(task.id.as_str()) {
                frontier.push(task.id.as_str());
            }
        }
    }
    dag.tasks
        .iter()
        .map(|t| t.id.as_str())
        .filter(|id| picked.contains(id))
        .map(str::to_owned)
        .collect()
}

/// The tasks whose id matches the regex `pattern`, with every task downstream of them when
/// asked: `--tasks` of the CLI and `tasks` of the API. `Invalid` for a bad regex or one that
/// matches no task.
pub fn select_tasks(
    dag: &Dag,
    pattern: &str,
    downstream: bool,
) -> Result<TaskSelection, SchedulerError> {
    let regex = regex::Regex::new(pattern).map_err(|e| {
        // the regex crate draws the pattern over several lines; its last line says why
        let error = e.to_string();
        let why = error
            .lines()
            .last()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned();
        SchedulerError::Invalid(format!("`{pattern}` is not a valid regex: {why}"))
    })?;
    let matching: Vec<String> = dag
        .tasks
        .iter()
        .map(|t| t.id.to_string())
        .filter(|id| regex.is_match(id))
        .collect();
    if matching.is_empty() {
        let all: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
        return Err(SchedulerError::Invalid(format!(
            "`{pattern}` matches no task of DAG `{}` (tasks: {})",
            dag.id,
            all.join(", ")
        )));
    }
    let task_ids = if downstream {
        with_downstream(dag, &matching)
    } else {
        matching
    };
    Ok(TaskSelection {
        pattern: pattern.to_owned(),
        downstream,
        task_ids,
    })
}

/// Which end of a range a date given on the command line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Inclusive: a day means its first instant.
    Start,
    /// Inclusive, returned as the exclusive end: a day means up to the next midnight.
    End,
}

/// Reads `YYYY-MM-DD` (a day in `tz`), `YYYY-MM-DDTHH:MM[:SS]` (a wall-clock time in `tz`) or
/// an RFC 3339 time with its offset. For `Bound::End` the result is exclusive.
pub fn parse_date(text: &str, tz: Tz, bound: Bound) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a date: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (in the DAG's timezone) or an RFC 3339 time"
        )
    };
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = match bound {
            Bound::Start => day,
            Bound::End => day.succ_opt().ok_or_else(bad)?,
        };
        return local(day.and_hms_opt(0, 0, 0).ok_or_else(bad)?, tz);
    }
    let exact = if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        at.with_timezone(&Utc)
    } else {
        let naive = [
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .ok_or_else(bad)?;
        local(naive, tz)?
    };
    Ok(match bound {
        Bound::Start => exact,
        Bound::End => exact + TimeDelta::seconds(1),
    })
}

fn local(naive: NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, String> {
    // a time in the autumn's repeated hour means its first pass; a time in the spring gap
    // (some zones switch at midnight) means the same wall-clock time an hour later
    match tz.from_local_datetime(&naive).earliest() {
        Some(at) => Ok(at.with_timezone(&Utc)),
        None => tz
            .from_local_datetime(&(naive + TimeDelta::hours(1)))
            .earliest()
            .map(|at| at.with_timezone(&Utc))
            .ok_or_else(|| format!("{naive} does not exist in {}", tz.name())),
    }
}
