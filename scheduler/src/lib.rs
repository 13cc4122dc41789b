//! The scheduler: loads the DAG folder, creates due runs, starts them within
//! `max_active_runs`, and re-evaluates running runs as a safety net. `tick` does one pass at a
//! given time so tests drive it with a manual clock; `run` loops it for production.
#![forbid(unsafe_code)]

pub mod backfill;
pub mod registry;
pub mod runs;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_core::clock::Clock;
use sluice_core::{RunState, RunType, Timetable};
use sluice_store::{
    DagSync, RunFilter, RunRecord, SchedulerTick, Store, StoreError, TickOutcome, ZombieAttempt,
    ZombieSweep,
};
use tokio::sync::{Mutex, watch};

pub use registry::{FolderLoader, Loaded, LoadedDag, load_paths};
pub use runs::{RunRequest, build_run, parse_param_overrides, run_id};

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bad --param: {0}")]
    BadParam(String),
    /// A request that cannot be carried out as asked (bad range, no schedule, …).
    #[error("{0}")]
    Invalid(String),
    #[error("DAG `{0}` not found in the DAG folder or the database")]
    UnknownDag(String),
    #[error("the stored version {hash} of DAG `{dag_id}` no longer parses: {message}")]
    BadStoredVersion {
        dag_id: String,
        hash: String,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pause between ticks.
    pub tick_interval: Duration,
    /// At most this many runs are created per DAG per tick, so a long catch-up does not hold
    /// up every other DAG; the next tick continues it.
    pub max_runs_created_per_tick: usize,
    /// While a backfill is open, its next runs are started this often between ticks, so a
    /// backfill of short runs is not paced by the tick interval.
    pub backfill_interval: Duration,
    /// A running attempt whose worker has not heartbeaten for this long is failed as a zombie
    /// and retried per its task's retries.
    pub zombie_after: Duration,
    /// Names this scheduler process in the `schedulers` table (its loop time in `/metrics`):
    /// `host:pid:random` in production, where several may share a database.
    pub scheduler_id: String,
    /// The machine it runs on, as recorded beside its loop time.
    pub host: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            tick_interval: Duration::from_secs(1),
            max_runs_created_per_tick: 64,
            backfill_interval: Duration::from_millis(100),
            zombie_after: Duration::from_secs(60),
            scheduler_id: "scheduler".to_owned(),
            host: "localhost".to_owned(),
        }
    }
}

/// What one tick did, for tests and logs.
#[derive(Debug, Default, Clone)]
pub struct TickReport {
    pub dags_changed: bool,
    pub created: Vec<String>,
    pub started: Vec<String>,
    pub finished: Vec<(i64, RunState)>,
    /// Backfills this tick found finished, with their final state.
    pub backfills_finished: Vec<(i64, sluice_core::BackfillState)>,
    pub zombies: Vec<ZombieAttempt>,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    loader: Mutex<FolderLoader>,
    synced_once: std::sync::atomic::AtomicBool,
    /// Paused DAGs as the last tick saw them: their backfills wait too.
    paused: std::sync::Mutex<HashSet<String>>,
    /// Whether the last look found an open backfill (then `run` steps backfills between ticks).
    backfills_open: AtomicBool,
    /// When a tick last failed or stalled (the database was away). Workers could not
    /// heartbeat then either, so zombies are only looked for once `zombie_after` has passed.
    last_failure: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Per DAG (and file hash): nothing can fall due before this time, so ticks until then
    /// skip the DAG without asking the database. An idle scheduler with a thousand DAGs
    /// then costs a few queries a tick, not thousands.
    quiet_until: std::sync::Mutex<HashMap<String, (String, DateTime<Utc>)>>,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        loader: FolderLoader,
        config: SchedulerConfig,
    ) -> Self {
        Scheduler {
            store,
            clock,
            config,
            loader: Mutex::new(loader),
            synced_once: false.into(),
            paused: Default::default(),
            backfills_open: false.into(),
            last_failure: std::sync::Mutex::new(None),
            quiet_until: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// One pass of the scheduler at `now`.
    #[tracing::instrument(skip_all, fields(now = %now))]
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, SchedulerError> {
        let mut report = TickReport::default();
        let (loaded, changed) = self.loader.lock().await.scan();
        let first = !self.synced_once.load(std::sync::atomic::Ordering::Relaxed);
        if changed || first {
            self.store
                .sync_dags(&DagSync {
                    dags: loaded.snapshots(),
                    import_errors: loaded.errors.clone(),
                    now,
                })
                .await?;
            self.synced_once
                .store(true, std::sync::atomic::Ordering::Relaxed);
            report.dags_changed = true;
            for error in &loaded.errors {
                for line in &error.errors {
                    tracing::warn!(file = %error.fileloc, "DAG file not loaded: {line}");
                }
            }
            tracing::info!(
                dags = loaded.dags.len(),
                import_errors = loaded.errors.len(),
                "DAG folder loaded"
            );
        }
        let paused: HashMap<String, bool> = self
            .store
            .list_dags()
            .await?
            .into_iter()
            .map(|d| (d.dag_id, d.is_paused))
            .collect();
        let queued: std::collections::HashSet<String> = self
            .store
            .dags_with_queued_runs()
            .await?
            .into_iter()
            .collect();
        for (dag_id, loaded_dag) in &loaded.dags {
            if paused.get(dag_id).copied().unwrap_or(false) {
                continue;
            }
            let dag = &loaded_dag.dag;
            let created = report.created.len();
            if !self.quiet(dag, now) {
                self.create_due_runs(dag, now, &mut report).await?;
            }
            if report.created.len() == created && !queued.contains(dag_id) {
                continue;
            }
            for run in self
                .store
                .start_queued_runs(dag_id, dag.max_active_runs, now)
                .await?
            {
                tracing::info!(dag_id, run_id = %run.run_id, "run started");
                report.started.push(run.run_id);
            }
        }
        *self
            .paused
            .lock()
            .expect("no code panics while holding the paused set") = paused
            .iter()
            .filter(|(_, paused)| **paused)
            .map(|(id, _)| id.clone())
            .collect();
        self.step_backfills(now, &mut report).await?;
        let zombie_after =
            chrono::Duration::from_std(self.config.zombie_after).unwrap_or(chrono::Duration::MAX);
        let sweep = ZombieSweep {
            stale_before: now.checked_sub_signed(zombie_after).unwrap_or(now),
            now,
        };
        let recovering = self
            .last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|failed_at| failed_at > sweep.stale_before);
        let zombies = if recovering {
            Vec::new()
        } else {
            self.store.fail_zombies(&sweep).await?
        };
        for zombie in zombies {
            tracing::warn!(
                run_pk = zombie.run_pk,
                task_id = %zombie.task_id,
                try_number = zombie.try_number,
                worker_id = %zombie.worker_id,
                last_heartbeat = %zombie.last_heartbeat,
                task_state = %zombie.task_state,
                "attempt failed: its worker stopped heartbeating (zombie)"
            );
            report.zombies.push(zombie);
        }
        for run_pk in self.store.running_run_pks().await? {
            if let Some(state) = self.store.evaluate_run(run_pk, now).await?.finished {
                report.finished.push((run_pk, state));
            }
        }
        Ok(report)
    }

    async fn create_due_runs(
        &self,
        dag: &sluice_core::Dag,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let Some(schedule) = &dag.schedule else {
            return Ok(());
        };
        let active = self.active_runs(dag.id.as_str()).await?;
        let room = (dag.max_active_runs as usize).saturating_sub(active);
        if room == 0 {
            tracing::debug!(dag_id = %dag.id, "not creating runs: max_active_runs reached");
            return Ok(());
        }
        let timetable = Timetable {
            schedule,
            timezone: dag.timezone,
            start_date: dag.start_date,
            end_date: dag.end_date,
        };
        let last_end = self
            .store
            .last_scheduled_interval_end(dag.id.as_str())
            .await?;
        let limit = room.min(self.config.max_runs_created_per_tick);
        let due = timetable.due(last_end, now, dag.catchup, limit);
        if due.is_empty() {
            // nothing is due before the schedule's next tick (or ever, past its end date)
            let until = timetable
                .tick_after(now)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            self.quiet_until
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(dag.id.as_str().to_owned(), (dag.hash.clone(), until));
        }
        for interval in due {
            let request = RunRequest {
                run_type: RunType::Scheduled,
                logical_date: interval.start,
                data_interval: interval,
                params: Default::default(),
                triggered_by: "scheduler".to_owned(),
                now,
            };
            if let Some(run) = self
                .store
                .create_run_if_absent(&build_run(dag, request))
                .await?
            {
                let late = now - interval.end;
                tracing::info!(dag_id = %dag.id, run_id = %run.run_id, late_ms = late.num_milliseconds(), "run created");
                report.created.push(run.run_id);
            }
        }
        Ok(())
    }

    /// Starts the next runs of every open backfill within its own `max_active_runs` (a paused
    /// DAG's backfill waits) and closes the backfills with nothing left to run.
    pub async fn step_backfills(
        &self,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let open = self.store.open_backfills().await?;
        self.backfills_open
            .store(!open.is_empty(), Ordering::Relaxed);
        for backfill in open {
            let paused = self
                .paused
                .lock()
                .expect("no code panics while holding the paused set")
                .contains(&backfill.dag_id);
            if paused {
                continue;
            }
            let step = self.store.start_backfill_runs(backfill.id, now).await?;
            for run in step.started {
                tracing::info!(dag_id = %run.dag_id, run_id = %run.run_id, backfill_id = backfill.id, "backfill run started");
                report.started.push(run.run_id);
            }
            if let Some(state) = step.finished {
                tracing::info!(dag_id = %backfill.dag_id, backfill_id = backfill.id, %state, "backfill finished");
                report.backfills_finished.push((backfill.id, state));
            }
        }
        Ok(())
    }

    /// True when an earlier tick found nothing due for this version of the DAG before a time
    /// still to come.
    fn quiet(&self, dag: &sluice_core::Dag, now: DateTime<Utc>) -> bool {
        self.quiet_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(dag.id.as_str())
            .is_some_and(|(hash, until)| *hash == dag.hash && now < *until)
    }

    async fn active_runs(&self, dag_id: &str) -> Result<usize, SchedulerError> {
        let mut active = 0;
        for state in [RunState::Queued, RunState::Running] {
            let filter = RunFilter {
                dag_id: Some(dag_id.to_owned()),
                state: Some(state),
                limit: 10_000,
            };
            // a backfill's runs count against the backfill's limit, not the DAG's
            active += self
                .store
                .list_runs(&filter)
                .await?
                .iter()
                .filter(|run| run.backfill_id.is_none())
                .count();
        }
        Ok(active)
    }

    /// Ticks until `shutdown` turns true. A failing tick (database down) is logged and retried
    /// with a growing pause, so the scheduler rides out an outage. Each tick's duration is
    /// recorded in the store, where `/metrics` in the web process reads it.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let run_started_at = self.clock.now();
        loop {
            let started = std::time::Instant::now();
            let result = self.tick(self.clock.now()).await;
            let outcome = match result {
                Ok(_) => TickOutcome::Succeeded,
                Err(_) => TickOutcome::Failed,
            };
            self.record_tick(run_started_at, started.elapsed(), outcome)
                .await;
            // a tick that failed, or that waited long for the database, means the database
            // was away: workers could not heartbeat meanwhile either
            let stalled =
                started.elapsed() > self.config.tick_interval * 2 + Duration::from_secs(1);
            if result.is_err() || stalled {
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(self.clock.now());
            }
            let pause = match result {
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!("scheduler recovered after {failures} failed ticks");
                    }
                    failures = 0;
                    self.config.tick_interval
                }
                Err(error) => {
                    failures += 1;
                    let pause = backoff(failures);
                    tracing::error!(%error, retry_in_ms = pause.as_millis() as u64, "scheduler tick failed");
                    pause
                }
            };
            let next_tick = tokio::time::Instant::now() + pause;
            loop {
                let open = self.backfills_open.load(Ordering::Relaxed) && failures == 0;
                let wake_at = if open {
                    next_tick.min(tokio::time::Instant::now() + self.config.backfill_interval)
                } else {
                    next_tick
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(wake_at) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                if tokio::time::Instant::now() >= next_tick {
                    break;
                }
                let mut report = TickReport::default();
                if let Err(error) = self.step_backfills(self.clock.now(), &mut report).await {
                    tracing::warn!(%error, "starting backfill runs failed; the next tick retries");
                    break;
                }
            }
        }
    }
}

impl Scheduler {
    /// Records one tick of `run`'s loop. A failure is only logged: the loop goes on, and a
    /// database that is away already makes the tick itself fail and back off.
    async fn record_tick(
        &self,
        run_started_at: DateTime<Utc>,
        took: Duration,
        outcome: TickOutcome,
    ) {
        let tick = SchedulerTick {
            scheduler_id: self.config.scheduler_id.clone(),
            host: self.config.host.clone(),
            started_at: run_started_at,
            at: self.clock.now(),
            seconds: took.as_secs_f64(),
            outcome,
        };
        if let Err(error) = self.store.record_scheduler_tick(&tick).await {
            tracing::warn!(%error, scheduler_id = %tick.scheduler_id, "recording the scheduler's loop time failed");
        }
    }
}

/// 0.5 s, 1 s, 2 s … up to 30 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.saturating_sub(1).min(6)))
        .min(Duration::from_secs(30))
}

/// Creates a manual run of `dag` now and starts it at once when `max_active_runs` allows (a
/// paused DAG's run waits, queued, until it is unpaused).
pub async fn trigger(
    store: &dyn Store,
    dag: &sluice_core::Dag,
    params: std::collections::BTreeMap<String, serde_json::Value>,
    triggered_by: &str,
    now: DateTime<Utc>,
) -> Result<RunRecord, SchedulerError> {
    let request = RunRequest {
        run_type: RunType::Manual,
        logical_date: now,
        data_interval: sluice_core::DataInterval {
            start: now,
            end: now,
        },
        params,
        triggered_by: triggered_by.to_owned(),
        now,
    };
    let new_run = build_run(dag, request);
    let run = store.create_run_if_absent(&new_run).await?.ok_or_else(|| {
        StoreError::Conflict(format!(
            "a run `{}` of DAG `{}` already exists",
            new_run.run_id, dag.id
        ))
    })?;
    let paused = store
        .get_dag(dag.id.as_str())
        .await?
        .is_some_and(|d| d.is_paused);
    if !paused {
        store
            .start_queued_runs(dag.id.as_str(), dag.max_active_runs, now)
            .await?;
    }
    Ok(store.get_run_by_pk(run.pk).await?.unwrap_or(run))
}
