//! `/metrics`: Prometheus text from the store: runs by DAG and state, task instances by state
//! (the queue depth is the `queued` ones), attempt durations, worker heartbeats.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use sluice_core::TaskState;
use sluice_store::{ATTEMPT_DURATION_BOUNDS, AttemptDurations, RunCount, TaskCount, WorkerRecord};

use crate::AppState;
use crate::error::ApiError;

pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let store = state.store.as_ref();
    let snapshot = Snapshot {
        runs: store.run_counts().await?,
        tasks: store.task_counts().await?,
        durations: store.attempt_durations().await?,
        workers: store.list_workers().await?,
        now: Utc::now(),
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&snapshot),
    ))
}

/// What one scrape reads.
pub(crate) struct Snapshot {
    pub runs: Vec<RunCount>,
    pub tasks: Vec<TaskCount>,
    pub durations: AttemptDurations,
    pub workers: Vec<WorkerRecord>,
    pub now: DateTime<Utc>,
}

pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    // writing to a String cannot fail
    let _ = write_all(&mut out, snapshot);
    out
}

fn write_all(out: &mut String, snapshot: &Snapshot) -> std::fmt::Result {
    writeln!(out, "# HELP sluice_runs Runs by DAG and state.")?;
    writeln!(out, "# TYPE sluice_runs gauge")?;
    for count in &snapshot.runs {
        writeln!(
            out,
            "sluice_runs{{dag_id=\"{}\",state=\"{}\"}} {}",
            label(&count.dag_id),
            count.state,
            count.count
        )?;
    }
    writeln!(out, "# HELP sluice_task_instances Task instances by state.")?;
    writeln!(out, "# TYPE sluice_task_instances gauge")?;
    for count in &snapshot.tasks {
        writeln!(
            out,
            "sluice_task_instances{{state=\"{}\"}} {}",
            count.state, count.count
        )?;
    }
    let queued: u64 = snapshot
        .tasks
        .iter()
        .filter(|count| count.state == TaskState::Queued)
        .map(|count| count.count)
        .sum();
    writeln!(
        out,
        "# HELP sluice_queued_tasks Task instances waiting for a worker: the queue depth."
    )?;
    writeln!(out, "# TYPE sluice_queued_tasks gauge")?;
    writeln!(out, "sluice_queued_tasks {queued}")?;

    let durations = &snapshot.durations;
    writeln!(
        out,
        "# HELP sluice_attempt_duration_seconds How long finished attempts took."
    )?;
    writeln!(out, "# TYPE sluice_attempt_duration_seconds histogram")?;
    let mut cumulative = 0;
    for (bound, in_bucket) in ATTEMPT_DURATION_BOUNDS.iter().zip(durations.buckets) {
        cumulative += in_bucket;
        writeln!(
            out,
            "sluice_attempt_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        )?;
    }
    writeln!(
        out,
        "sluice_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        durations.count
    )?;
    writeln!(
        out,
        "sluice_attempt_duration_seconds_sum {}",
        durations.sum_seconds
    )?;
    writeln!(
        out,
        "sluice_attempt_duration_seconds_count {}",
        durations.count
    )?;

    writeln!(
        out,
        "# HELP sluice_worker_heartbeat_age_seconds Seconds since each worker's last heartbeat."
    )?;
    writeln!(out, "# TYPE sluice_worker_heartbeat_age_seconds gauge")?;
    for worker in &snapshot.workers {
        let age = (snapshot.now - worker.heartbeat_at)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0;
        writeln!(
            out,
            "sluice_worker_heartbeat_age_seconds{{worker_id=\"{}\"}} {age}",
            label(&worker.worker_id)
        )?;
    }
    writeln!(
        out,
        "# HELP sluice_worker_slots_in_use Task slots each worker is using."
    )?;
    writeln!(out, "# TYPE sluice_worker_slots_in_use gauge")?;
    for worker in &snapshot.workers {
        writeln!(
            out,
            "sluice_worker_slots_in_use{{worker_id=\"{}\"}} {}",
            label(&worker.worker_id),
            worker.slots_in_use
        )?;
    }
    Ok(())
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use sluice_core::RunState;

    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let mut durations = AttemptDurations::default();
        durations.buckets[0] = 2;
        durations.buckets[3] = 1;
        durations.buckets[10] = 1;
        durations.count = 4;
        durations.sum_seconds = 4000.5;
        let text = render(&Snapshot {
            runs: vec![RunCount {
                dag_id: "we\"ird".to_owned(),
                state: RunState::Running,
                count: 3,
            }],
            tasks: vec![TaskCount {
                state: TaskState::Queued,
                count: 7,
            }],
            durations,
            workers: Vec::new(),
            now: Utc::now(),
        });
        assert!(
            text.contains("sluice_runs{dag_id=\"we\\\"ird\",state=\"running\"} 3"),
            "{text}"
        );
        assert!(text.contains("sluice_queued_tasks 7"), "{text}");
        assert!(
            text.contains("sluice_attempt_duration_seconds_bucket{le=\"0.1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("sluice_attempt_duration_seconds_bucket{le=\"5\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("sluice_attempt_duration_seconds_bucket{le=\"3600\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("sluice_attempt_duration_seconds_bucket{le=\"+Inf\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("sluice_attempt_duration_seconds_count 4"),
            "{text}"
        );
    }
}
