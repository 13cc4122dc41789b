//! The store conformance suite: what every `Store` implementation must do, as its users (the
//! scheduler, workers, web and CLI) see it.
//!
//! Each function tests one behaviour on a fresh, migrated database and panics with what it saw
//! when the store misbehaves. Most take one handle (`&dyn Store`); the concurrency tests take a
//! `Connector` and open several handles on the same database, as separate processes would.
//! `tests/conformance.rs` runs every function once per backend.

mod backfills;
mod claims;
mod cluster;
mod concurrency;
mod mapping;
mod registry;
mod rendered;
mod results;
mod runs;
mod schedulers;
mod sensors;
mod throughput;
mod web;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use sluice_core::spec::{Backoff, RetryPolicy};
use sluice_core::{DataInterval, RunType, TaskState, TriggerRule};

use crate::*;

pub use backfills::*;
pub use claims::*;
pub use cluster::*;
pub use concurrency::*;
pub use mapping::*;
pub use registry::*;
pub use rendered::*;
pub use results::*;
pub use runs::*;
pub use schedulers::*;
pub use sensors::*;
pub use throughput::*;
pub use web::*;

/// Opens handles on one database.
#[async_trait]
pub trait Connector: Send + Sync {
    /// A new handle (its own pool, its own wake-ups) on the same migrated database, as another
    /// process would open it.
    async fn open(&self) -> Arc<dyn Store>;
}

/// The start of the suite's calendar: every time is an offset from it, in whole seconds, so
/// both backends store it exactly.
pub(crate) fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid date")
        + chrono::Duration::seconds(seconds)
}

pub(crate) const DAY: i64 = 86_400;

/// A root task on the default queue with the scheduler's defaults: no retries, all_success.
pub(crate) fn task(task_id: &str, upstream: &[&str]) -> NewTaskInstance {
    NewTaskInstance {
        task_id: task_id.to_owned(),
        map_index: UNMAPPED,
        upstream: upstream.iter().map(|u| (*u).to_owned()).collect(),
        trigger_rule: TriggerRule::AllSuccess,
        retry: fixed_retries(0, Duration::from_secs(30)),
        timeout: None,
        queue: "default".to_owned(),
        pool: None,
        priority: 0,
    }
}

/// `retries` more tries, each after `delay`.
pub(crate) fn fixed_retries(retries: u32, delay: Duration) -> RetryPolicy {
    RetryPolicy {
        retries,
        delay,
        backoff: Backoff::Fixed,
        max_delay: None,
    }
}

/// The scheduled run of `dag_id` for day `day` of the calendar, created when its interval ends.
pub(crate) fn daily_run(dag_id: &str, day: i64, tasks: Vec<NewTaskInstance>) -> NewRun {
    let logical_date = t(day * DAY);
    NewRun {
        dag_id: dag_id.to_owned(),
        run_id: format!("scheduled__{}", logical_date.format("%Y-%m-%dT%H:%M:%SZ")),
        run_type: RunType::Scheduled,
        logical_date,
        data_interval: DataInterval {
            start: logical_date,
            end: logical_date + chrono::Duration::days(1),
        },
        dag_hash: format!("{dag_id}-hash-1"),
        params: BTreeMap::from([("region".to_owned(), json!("kr"))]),
        triggered_by: "scheduler".to_owned(),
        tasks,
        now: logical_date + chrono::Duration::days(1),
    }
}

/// Creates the run and starts it (its roots queued).
pub(crate) async fn started_run(store: &dyn Store, run: &NewRun) -> RunRecord {
    let created = store
        .create_run_if_absent(run)
        .await
        .expect("creating the run")
        .expect("the run is new");
    let started = store
        .start_queued_runs(&run.dag_id, 16, run.now)
        .await
        .expect("starting the run");
    assert!(
        started.iter().any(|r| r.pk == created.pk),
        "run {} was not started: {started:?}",
        created.run_id
    );
    created
}

pub(crate) fn claim(worker_id: &str, limit: u32, now: DateTime<Utc>) -> Claim {
    Claim {
        worker_id: worker_id.to_owned(),
        queues: vec!["default".to_owned()],
        limit,
        now,
    }
}

/// Claims exactly one attempt on the default queue.
pub(crate) async fn claim_one(store: &dyn Store, now: DateTime<Utc>) -> ClaimedAttempt {
    let mut claimed = store
        .claim_attempts(&claim("worker-1", 1, now))
        .await
        .expect("claiming");
    assert_eq!(claimed.len(), 1, "expected one claimable task at {now}");
    claimed.remove(0)
}

pub(crate) fn finished(
    attempt: &ClaimedAttempt,
    outcome: AttemptOutcome,
    now: DateTime<Utc>,
) -> FinishAttempt {
    let failed = outcome == AttemptOutcome::Failed;
    FinishAttempt {
        lease: attempt.lease.clone(),
        outcome,
        exit_code: Some(if failed { 1 } else { 0 }),
        error: failed.then(|| "exit status 1".to_owned()),
        outputs: BTreeMap::new(),
        now,
    }
}

/// Task id → state, for runs without mapped tasks.
pub(crate) async fn states(store: &dyn Store, run_pk: i64) -> BTreeMap<String, TaskState> {
    store
        .task_instances(run_pk)
        .await
        .expect("reading task instances")
        .into_iter()
        .map(|ti| (ti.task_id, ti.state))
        .collect()
}

pub(crate) fn expect_states(
    seen: &BTreeMap<String, TaskState>,
    expected: &[(&str, TaskState)],
    when: &str,
) {
    let expected: BTreeMap<String, TaskState> = expected
        .iter()
        .map(|(id, state)| ((*id).to_owned(), *state))
        .collect();
    assert_eq!(seen, &expected, "task states {when}");
}

pub(crate) async fn run_state(store: &dyn Store, run_pk: i64) -> sluice_core::RunState {
    store
        .get_run_by_pk(run_pk)
        .await
        .expect("reading the run")
        .expect("the run exists")
        .state
}

pub(crate) fn assert_lease_lost<T: std::fmt::Debug>(result: StoreResult<T>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::LeaseLost { .. })),
        "{what} under a stale lease: expected LeaseLost, got {result:?}"
    );
}
