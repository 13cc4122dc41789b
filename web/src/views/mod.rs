//! Page models: what each template shows, built from store records as text ready to print.

mod charts;
mod dags;
mod events;
mod runs;
mod task_instance;

use chrono::{DateTime, Utc};
use sluice_store::{RunRecord, Store};

pub(crate) use dags::{DagListFilter, DagPage, DagsPage, RunListRequest, dag_page, dags_page};
pub(crate) use events::{AccessPage, EventsPage, access_page, events_page};
pub(crate) use runs::{LogPage, LogRequest, RunPage, attempt_log_page, run_page};
pub(crate) use task_instance::{TaskInstancePage, TaskInstanceRequest, task_instance_page};

use crate::error::AppError;
use crate::format::{NONE, elapsed, optional_time, time};
use crate::paths;

/// One run as a table row; `state` doubles as the CSS class suffix (`state-running`).
pub(crate) struct RunRow {
    pub run_id: String,
    pub href: String,
    /// `backfill #3` for a backfill's run.
    pub run_type: String,
    pub logical_date: String,
    pub interval_start: String,
    pub interval_end: String,
    pub state: &'static str,
    pub started: String,
    pub ended: String,
    pub duration: String,
    /// Queued or running: the page showing it refreshes itself.
    pub unfinished: bool,
}

impl RunRow {
    fn new(run: &RunRecord, now: DateTime<Utc>) -> Self {
        RunRow {
            run_id: run.run_id.clone(),
            href: paths::run(&run.dag_id, &run.run_id),
            run_type: match run.backfill_id {
                Some(id) => format!("backfill #{id}"),
                None => run.run_type.as_str().to_owned(),
            },
            logical_date: time(run.logical_date),
            interval_start: time(run.data_interval.start),
            interval_end: time(run.data_interval.end),
            state: run.state.as_str(),
            started: optional_time(run.started_at),
            ended: optional_time(run.ended_at),
            // a finished run without an end time (older rows) has no duration to show
            duration: if run.state.is_terminal() && run.ended_at.is_none() {
                NONE.to_owned()
            } else {
                elapsed(run.started_at, run.ended_at, now)
            },
            unfinished: !run.state.is_terminal(),
        }
    }
}

pub(crate) async fn find_run(
    store: &dyn Store,
    dag_id: &str,
    run_id: &str,
) -> Result<RunRecord, AppError> {
    store
        .get_run(dag_id, run_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("DAG `{dag_id}` has no run `{run_id}`")))
}
