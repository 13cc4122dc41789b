//! `/metrics`: Prometheus text from the store: runs by DAG and state, task instances by state
//! (the queue depth is the `queued` ones), attempt durations, worker heartbeats, and each
//! scheduler's loop time (recorded by the scheduler processes after every tick).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use sluice_core::TaskState;
use sluice_store::{
    ATTEMPT_DURATION_BOUNDS, AttemptDurations, RunCount, SchedulerRecord, TaskCount, WorkerRecord,
};

use crate::AppState;
use crate::error::ApiError;

pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let store = state.store.as_ref();
    let snapshot = Snapshot {
        runs: store.run_counts().await?,
        tasks: store.task_counts().await?,
        durations: store.attempt_durations().await?,
        workers: store.list_workers().await?,
        schedulers: store.list_schedulers().await?,
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
    pub schedulers: Vec<SchedulerRecord>,
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
        let age = seconds_since(snapshot.now, worker.heartbeat_at);
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
    write_schedulers(out, snapshot)
}

/// Each scheduler's loop: the last tick's duration, the totals (`rate` of the seconds over
/// the rate of the ticks is the mean loop time), and how long ago it last ticked.
fn write_schedulers(out: &mut String, snapshot: &Snapshot) -> std::fmt::Result {
    type Value = fn(&SchedulerRecord, DateTime<Utc>) -> String;
    let families: [(&str, &str, &str, Value); 5] = [
        (
            "sluice_scheduler_loop_seconds",
            "gauge",
            "How long each scheduler's last tick took.",
            |scheduler, _| scheduler.last_tick_seconds.to_string(),
        ),
        (
            "sluice_scheduler_ticks_total",
            "counter",
            "Ticks each scheduler has run.",
            |scheduler, _| scheduler.ticks.to_string(),
        ),
        (
            "sluice_scheduler_tick_seconds_total",
            "counter",
            "Seconds each scheduler has spent in its ticks.",
            |scheduler, _| scheduler.tick_seconds_total.to_string(),
        ),
        (
            "sluice_scheduler_failed_ticks_total",
            "counter",
            "Ticks that failed (the database away, a store error), per scheduler.",
            |scheduler, _| scheduler.failed_ticks.to_string(),
        ),
        (
            "sluice_scheduler_last_tick_age_seconds",
            "gauge",
            "Seconds since each scheduler's last tick ended.",
            |scheduler, now| seconds_since(now, scheduler.last_tick_at).to_string(),
        ),
    ];
    for (name, kind, help, value) in families {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} {kind}")?;
        for scheduler in &snapshot.schedulers {
            writeln!(
                out,
                "{name}{{scheduler_id=\"{}\"}} {}",
                label(&scheduler.scheduler_id),
                value(scheduler, snapshot.now)
            )?;
        }
    }
    Ok(())
}

/// Whole milliseconds since `then`, in seconds; 0 when `then` is ahead (clocks differ).
fn seconds_since(now: DateTime<Utc>, then: DateTime<Utc>) -> f64 {
    (now - then).num_milliseconds().max(0) as f64 / 1000.0
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
            schedulers: Vec::new(),
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

    #[test]
    fn scheduler_loop_time_is_shown_per_scheduler_with_escaped_ids() {
        let now = Utc::now();
        let text = render(&Snapshot {
            runs: Vec::new(),
            tasks: Vec::new(),
            durations: AttemptDurations::default(),
            workers: Vec::new(),
            schedulers: vec![SchedulerRecord {
                scheduler_id: "host\"a:1:ff".to_owned(),
                host: "host".to_owned(),
                started_at: now - chrono::Duration::seconds(60),
                last_tick_at: now - chrono::Duration::milliseconds(1500),
                last_tick_seconds: 0.25,
                ticks: 40,
                tick_seconds_total: 8.5,
                failed_ticks: 2,
            }],
            now,
        });
        for line in [
            "# TYPE sluice_scheduler_loop_seconds gauge",
            "sluice_scheduler_loop_seconds{scheduler_id=\"host\\\"a:1:ff\"} 0.25",
            "# TYPE sluice_scheduler_ticks_total counter",
            "sluice_scheduler_ticks_total{scheduler_id=\"host\\\"a:1:ff\"} 40",
            "# TYPE sluice_scheduler_tick_seconds_total counter",
            "sluice_scheduler_tick_seconds_total{scheduler_id=\"host\\\"a:1:ff\"} 8.5",
            "sluice_scheduler_failed_ticks_total{scheduler_id=\"host\\\"a:1:ff\"} 2",
            "# TYPE sluice_scheduler_last_tick_age_seconds gauge",
            "sluice_scheduler_last_tick_age_seconds{scheduler_id=\"host\\\"a:1:ff\"} 1.5",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
    }
}
