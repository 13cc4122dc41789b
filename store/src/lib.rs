//! Run state: the `Store` trait, its records, and its PostgreSQL and SQLite implementations.
//!
//! Only this crate holds SQL. Every multi-row state change is one transaction, and the
//! decisions inside those transactions (trigger rules, retries, run outcome) come from
//! `sluice_core::deps` and `RetryPolicy`, so both databases decide alike.
#![forbid(unsafe_code)]

#[cfg(feature = "testing")]
pub mod conformance;
mod decide;
mod mapping_records;
pub mod postgres;
mod read;
mod records;
mod rendered_records;
mod reschedule_records;
mod scheduler_records;
pub mod sqlite;
mod sqlite_rendered;
mod sqlite_reschedule;
mod sqlite_schedulers;
mod sqlite_web;
#[cfg(feature = "testing")]
pub mod testing;
mod wake;
mod web_records;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use mapping_records::ExpandTask;
pub use read::dropped_log_line;
pub use records::*;
pub use rendered_records::RenderedRecord;
pub use reschedule_records::RescheduleAttempt;
pub use scheduler_records::{SchedulerRecord, SchedulerTick, TickOutcome};
pub use wake::Wakeups;
pub use web_records::*;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}`: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error(
        "the lease on attempt {attempt_id} is no longer current (the attempt was finished, cancelled or taken over)"
    )]
    LeaseLost { attempt_id: i64 },
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
}

/// Opens the store a URL names (`sqlite://path`, `sqlite::memory:`, `postgres://…`) and applies
/// the migrations, so a process never runs against an older schema.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    connect_with(url, StoreOptions::default()).await
}

/// `connect` with options other than the defaults (the log cap).
pub async fn connect_with(url: &str, options: StoreOptions) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::connect_with(url, options).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PgStore::connect_with(url, options).await?;
        store.migrate().await?;
        Ok(Arc::new(store))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// A URL with its password replaced by `***`, fit for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Everything the scheduler, workers, web and CLI need from the database.
///
/// Timestamps are passed in (`now`) rather than read from the database clock, so tests can
/// drive time and every process agrees on what "now" meant for a decision.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations; idempotent.
    async fn migrate(&self) -> StoreResult<()>;

    // ---- DAG registry -------------------------------------------------------------------

    /// Mirrors the DAG folder: upserts each DAG (keeping `is_paused`), stores a version row
    /// for each new hash, marks DAGs missing from `dags` inactive, and replaces the import
    /// errors with `import_errors`. One transaction.
    async fn sync_dags(&self, sync: &DagSync) -> StoreResult<()>;
    async fn list_dags(&self) -> StoreResult<Vec<DagRecord>>;
    async fn get_dag(&self, dag_id: &str) -> StoreResult<Option<DagRecord>>;
    /// `NotFound` for an unknown DAG.
    async fn set_paused(&self, dag_id: &str, paused: Paused) -> StoreResult<()>;
    /// The exact source a run was pinned to.
    async fn dag_version(&self, hash: &str) -> StoreResult<Option<DagVersion>>;
    async fn import_errors(&self) -> StoreResult<Vec<ImportErrorRecord>>;

    // ---- runs ---------------------------------------------------------------------------

    /// Creates the run and all its task instances (state `pending`), or returns `None` when a
    /// run with the same `(dag_id, logical_date)` or `(dag_id, run_id)` exists. One
    /// transaction; safe to race from several schedulers.
    async fn create_run_if_absent(&self, run: &NewRun) -> StoreResult<Option<RunRecord>>;
    /// The latest `data_interval_end` of the DAG's scheduled and backfill runs: where the
    /// schedule continues from.
    async fn last_scheduled_interval_end(&self, dag_id: &str)
    -> StoreResult<Option<DateTime<Utc>>>;
    /// Moves queued runs of the DAG to `running`, oldest logical date first, while fewer than
    /// `max_active_runs` are running, and queues their root tasks. Returns the runs started.
    /// Runs of an open backfill are neither counted nor started here: they run within the
    /// backfill's own limit (`start_backfill_runs`).
    async fn start_queued_runs(
        &self,
        dag_id: &str,
        max_active_runs: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RunRecord>>;
    /// Re-evaluates one running run: decides pending tasks by trigger rule and finishes the
    /// run when every task is settled. The scheduler's safety net; normally
    /// `finish_attempt` does this in its own transaction.
    async fn evaluate_run(&self, run_pk: i64, now: DateTime<Utc>) -> StoreResult<RunProgress>;
    /// Primary keys of the runs in state `running`.
    async fn running_run_pks(&self) -> StoreResult<Vec<i64>>;
    /// The DAGs that have runs waiting in state `queued`, so the scheduler tries to start
    /// runs of those only.
    async fn dags_with_queued_runs(&self) -> StoreResult<Vec<String>>;
    /// Cancels a run that is not finished: unfinished task instances and running attempts
    /// become `cancelled`. Returns false when the run was already finished.
    async fn cancel_run(&self, run_pk: i64, now: DateTime<Utc>) -> StoreResult<bool>;

    // ---- workers ------------------------------------------------------------------------

    /// Claims up to `limit` task instances that are `queued` (or `up_for_retry` whose
    /// `next_try_at` has passed) in running runs on the given queues, highest priority
    /// first: each becomes `running` with a new attempt row holding a fresh lease. A task
    /// instance is never claimed twice, however many workers race.
    async fn claim_attempts(&self, claim: &Claim) -> StoreResult<Vec<ClaimedAttempt>>;
    /// `LeaseLost` when the attempt is no longer running under this lease.
    async fn heartbeat_attempt(&self, lease: &Lease, now: DateTime<Utc>) -> StoreResult<()>;
    /// Appends a chunk of log text (whole lines) to the attempt. `LeaseLost` as above.
    async fn append_log(&self, lease: &Lease, chunk: &str, now: DateTime<Utc>) -> StoreResult<()>;
    /// Records the attempt's end and, in the same transaction: the task instance's new state
    /// (success, up_for_retry with its next try time, or failed), its outputs, the downstream
    /// tasks that became ready (queued, skipped, upstream_failed) and the run's end when every
    /// task is settled. Wakes idle workers when it queued anything.
    async fn finish_attempt(&self, finish: &FinishAttempt) -> StoreResult<FinishResult>;
    /// `append_log(log)` and `finish_attempt` in one transaction: a short task's whole log
    /// and result cost one commit. An empty `log` appends nothing.
    async fn finish_attempt_with_log(
        &self,
        finish: &FinishAttempt,
        log: &str,
    ) -> StoreResult<FinishResult> {
        if !log.is_empty() {
            self.append_log(&finish.lease, log, finish.now).await?;
        }
        self.finish_attempt(finish).await
    }
    async fn worker_heartbeat(&self, worker: &WorkerBeat) -> StoreResult<()>;
    async fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>>;
    /// Forgets a worker that stopped cleanly (a crashed one stays listed, stale).
    async fn remove_worker(&self, worker_id: &str) -> StoreResult<()>;
    /// Of the given leases, the attempt ids whose lease is no longer current (the attempt was
    /// cancelled, failed as a zombie or finished): the worker holding them must stop them.
    async fn lost_leases(&self, leases: &[Lease]) -> StoreResult<Vec<i64>>;
    /// Fails every running attempt whose own heartbeat and whose worker's heartbeat are older
    /// than `stale_before`: the reason goes into the attempt's `error` and its log, and the
    /// task is retried per its retries (downstream decided, run finished, as `finish_attempt`
    /// does). One transaction per attempt, each re-checked under the run's lock, so several
    /// schedulers sweeping at once fail each zombie once.
    async fn fail_zombies(&self, sweep: &ZombieSweep) -> StoreResult<Vec<ZombieAttempt>>;

    // ---- pools --------------------------------------------------------------------------

    /// Creates or resizes a pool. Claims never run more of its task instances at once than
    /// its slots, across every worker; a pool without a row has no cap.
    async fn set_pool(&self, pool: &PoolSlots, now: DateTime<Utc>) -> StoreResult<()>;
    /// Removes a pool (its tasks run uncapped); false when there was none.
    async fn delete_pool(&self, name: &str) -> StoreResult<bool>;
    /// Every pool with its running and waiting task instances, by name.
    async fn list_pools(&self) -> StoreResult<Vec<PoolRecord>>;

    // ---- reads --------------------------------------------------------------------------

    /// Newest logical date first.
    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>>;
    async fn get_run(&self, dag_id: &str, run_id: &str) -> StoreResult<Option<RunRecord>>;
    async fn get_run_by_pk(&self, run_pk: i64) -> StoreResult<Option<RunRecord>>;
    /// The runs with this run id, in any DAG (run ids are unique per DAG only).
    async fn find_runs(&self, run_id: &str) -> StoreResult<Vec<RunRecord>>;
    /// In creation order (the DAG file's task order).
    async fn task_instances(&self, run_pk: i64) -> StoreResult<Vec<TaskInstanceRecord>>;
    /// Every attempt of the run, by task instance then try number.
    async fn attempts(&self, run_pk: i64) -> StoreResult<Vec<AttemptRecord>>;
    /// Log chunks of an attempt with `seq > after_seq`, in order.
    async fn read_log(&self, attempt_id: i64, after_seq: i64) -> StoreResult<Vec<LogChunk>>;
    /// The outputs of each task's latest successful attempt in the run: task → key → value.
    async fn run_outputs(
        &self,
        run_pk: i64,
    ) -> StoreResult<BTreeMap<String, BTreeMap<String, serde_json::Value>>>;

    // ---- backfills and clearing ---------------------------------------------------------

    /// The runs of a DAG with a logical date in the range, oldest first.
    async fn runs_in_range(&self, range: &RunRange) -> StoreResult<Vec<RunRecord>>;
    /// Clears task instances of one run (see `ClearTasks`) and puts the run back to work: a
    /// finished run becomes `queued`, a running one is re-evaluated at once. Returns how many
    /// task instances were cleared; none cleared changes nothing. One transaction.
    async fn clear_tasks(&self, clear: &ClearTasks) -> StoreResult<u32>;
    /// Creates the backfill row, its new runs and its reruns in one transaction; each of
    /// those runs points at the backfill. `Conflict` when the DAG has an open backfill.
    async fn create_backfill(&self, backfill: &NewBackfill) -> StoreResult<BackfillRecord>;
    async fn get_backfill(&self, id: i64) -> StoreResult<Option<BackfillRecord>>;
    /// Backfills in state `running`, oldest first.
    async fn open_backfills(&self) -> StoreResult<Vec<BackfillRecord>>;
    async fn backfill_progress(&self, id: i64) -> StoreResult<BackfillProgress>;
    /// Starts queued runs of an open backfill while fewer than its `max_active_runs` run
    /// (oldest logical date first, newest with `reverse`), queueing their roots; finishes the
    /// backfill when none of its runs is queued or running.
    async fn start_backfill_runs(&self, id: i64, now: DateTime<Utc>) -> StoreResult<BackfillStep>;
    /// Cancels an open backfill and its unfinished runs (their running attempts lose their
    /// leases). Returns false when the backfill had already ended.
    async fn cancel_backfill(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool>;

    // ---- wake-ups -----------------------------------------------------------------------

    /// A counter that moves whenever work may have become claimable in this process's view.
    fn wakeups(&self) -> Wakeups;

    // ---- web: users, sessions, API tokens, audit events --------------------------------

    /// `Conflict` when the username is taken.
    async fn create_user(&self, user: &NewUser) -> StoreResult<UserRecord>;
    /// By username.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// Stores the session and drops the sessions that expired before `session.now`.
    async fn create_session(&self, session: &NewSession) -> StoreResult<()>;
    /// The session with this token hash and its user, unless it expired by `now`.
    async fn get_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRecord>>;
    /// Logging out; deleting a session that does not exist is not an error.
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    /// `Conflict` when the name is taken.
    async fn create_api_token(&self, token: &NewApiToken) -> StoreResult<ApiTokenRecord>;
    /// By name.
    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>>;
    async fn get_api_token(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>>;
    async fn record_event(&self, event: &NewEvent) -> StoreResult<EventRecord>;
    /// Newest first.
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<EventRecord>>;
    /// A page of runs, newest logical date first, continuing after `query.before`.
    async fn list_runs_page(&self, query: &RunPageQuery) -> StoreResult<Vec<RunRecord>>;
    /// Runs per DAG and state (only the pairs that have runs).
    async fn run_counts(&self) -> StoreResult<Vec<RunCount>>;
    /// Task instances per state (only the states that have some).
    async fn task_counts(&self) -> StoreResult<Vec<TaskCount>>;
    /// The durations of every finished attempt, as a histogram.
    async fn attempt_durations(&self) -> StoreResult<AttemptDurations>;
    /// Marks a task's instances success or failed by hand: their running attempts are
    /// cancelled (the worker's lease ends), a finished run is reopened, and the run is
    /// evaluated again (downstream tasks decided, its outcome recomputed). `NotFound` when the
    /// run has no such task instance.
    async fn mark_task_instance(&self, mark: &MarkTaskInstance) -> StoreResult<RunProgress>;
    /// The `per_dag` newest runs of each of `dag_ids` (newest first within a DAG, DAGs by
    /// id): a page of the DAG list in one query.
    async fn recent_runs(&self, dag_ids: &[String], per_dag: u32) -> StoreResult<Vec<RunRecord>>;
    /// The task instances of several runs (by run, then creation order): the grid in one query.
    async fn task_instances_of_runs(&self, run_pks: &[i64])
    -> StoreResult<Vec<TaskInstanceRecord>>;

    // ---- rendered fields (the task instance page) ---------------------------------------

    /// Records what the attempt's templates rendered to (secrets already masked by the
    /// worker), replacing an earlier record of the attempt. Called before the step runs, so
    /// it shows while the attempt runs. `LeaseLost` when the lease is no longer current.
    async fn record_rendered(
        &self,
        lease: &Lease,
        fields: &BTreeMap<String, String>,
    ) -> StoreResult<()>;
    /// The rendered fields of the run's attempts that recorded them, by attempt id.
    async fn rendered_fields(&self, run_pk: i64) -> StoreResult<Vec<RenderedRecord>>;

    // ---- scheduler loop -----------------------------------------------------------------

    /// Adds a finished tick to its scheduler's totals (creating the scheduler's row at its
    /// first tick) and forgets schedulers silent for a day. Schedulers are separate
    /// processes, so this is how `/metrics` learns their loop time.
    async fn record_scheduler_tick(&self, tick: &SchedulerTick) -> StoreResult<()>;
    /// Every scheduler that ticked within the last day, by id.
    async fn list_schedulers(&self) -> StoreResult<Vec<SchedulerRecord>>;

    // ---- foreach from a template --------------------------------------------------------

    /// Expands a task mapped from a `foreach` template, whose placeholder (`map_index -1`)
    /// the caller claimed and rendered: under the lease, in one transaction, the placeholder's
    /// attempt ends in success with `log`, the placeholder becomes `success` (or `skipped`
    /// for an empty list), one instance per item is created `queued` with its item (an
    /// earlier, pending instance of the same index takes the new item; a pending one past
    /// the new list is skipped), and the run is evaluated. `LeaseLost` when the lease is no
    /// longer current, so a placeholder expands once however many workers race.
    async fn expand_mapped_task(&self, expand: &ExpandTask) -> StoreResult<FinishResult>;
    /// The item a mapped instance was expanded with; `None` for an unmapped instance or an
    /// item of a literal `foreach` list (those are in the DAG version).
    async fn mapped_item(&self, ti_id: i64) -> StoreResult<Option<serde_json::Value>>;

    // ---- sensors ------------------------------------------------------------------------

    /// A `mode: reschedule` sensor's poke found its condition false: under the lease, the
    /// attempt and its task instance become `up_for_reschedule` (the slot is free) until
    /// `next_poke_at`, when `claim_attempts` hands the same attempt (same try, its
    /// `started_at` kept) out again under a new lease. Does not use up a try. `LeaseLost`
    /// when the lease is no longer current.
    async fn reschedule_attempt(&self, reschedule: &RescheduleAttempt) -> StoreResult<()>;
}
