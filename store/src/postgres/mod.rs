//! The production store: PostgreSQL, shared by any number of schedulers, workers and web
//! processes.
//!
//! Claims are `FOR UPDATE SKIP LOCKED`, so racing workers never wait on each other nor take
//! the same task instance. Every transaction that decides or settles task instances of a run
//! (start, evaluate, finish, cancel) locks the run's row first (`FOR NO KEY UPDATE`): they are
//! serialized per run as every write is on SQLite, so each sees the others' results and none
//! can deadlock another. Claims, heartbeats and log writes never take that lock. Transactions
//! that race on something else take an advisory lock (`sync_dags`, `start_queued_runs` per
//! DAG) or rely on a unique key (`create_run_if_absent`). Work that became claimable is
//! announced with `NOTIFY sluice_work` in the committing transaction; `listen` turns those
//! notifications into wake-ups in every process.

mod attempts;
mod backfills;
mod claims;
mod cluster;
mod finish;
mod listen;
mod mapping;
mod rendered;
mod reschedule;
mod runs;
mod schedulers;
mod web;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_core::RunState;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres};

use crate::read::{self, Columns, plain_columns, run_columns};
use crate::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// How long to wait for a connection, from the pool or from the server.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections per process: a worker's claims, heartbeats and log writes and a scheduler's
/// tick are short transactions.
const MAX_CONNECTIONS: u32 = 10;

pub struct PgStore {
    pool: PgPool,
    options: StoreOptions,
    /// Whether the `pools` table had rows when last looked at, and when: see `claims`.
    pools_seen: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
    wakeups: Wakeups,
    listener: tokio::task::AbortHandle,
}

impl PgStore {
    /// `postgres://user:password@host:port/database`. Fails at once with the server's answer
    /// when it cannot be reached, and starts listening for work notifications.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// `connect` with options other than the defaults.
    pub async fn connect_with(url: &str, store_options: StoreOptions) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("sluice");
        // a first direct connection says why the server cannot be reached; the pool would
        // retry a refused connection until its timeout and then only say that it timed out
        let probe = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect())
            .await
            .map_err(|_| {
                let message = format!(
                    "no answer from {} within {}s",
                    redact_url(url),
                    ACQUIRE_TIMEOUT.as_secs()
                );
                sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
            })??;
        // best effort: the connection is dropped either way
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Some(Duration::from_secs(600)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            .connect_lazy_with(options.clone());
        let wakeups = Wakeups::default();
        let listener =
            listen::start(options.application_name("sluice-listener"), wakeups.clone()).await?;
        Ok(PgStore {
            pool,
            options: store_options,
            pools_seen: std::sync::Mutex::new(None),
            wakeups,
            listener,
        })
    }

    async fn tx(&self) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Columns for PgRow {
    plain_columns!();

    fn opt_time(&self, _table: &'static str, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(sqlx::Row::try_get(self, column)?)
    }

    fn json_value(&self, _table: &'static str, column: &str) -> StoreResult<Value> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

/// Tells every process's workers, once the transaction commits, that attempts were cancelled.
async fn notify_cancel(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(listen::CANCEL_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Tells every process's workers, once the transaction commits, that work may be claimable.
async fn notify_work(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(listen::CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        // sqlx serializes concurrent migrators with a session advisory lock on this
        // connection; a failed run may leave it held, so that connection is never reused
        let mut conn = self.pool.acquire().await?;
        // `run_direct` is what `Migrator::run` calls; on a connection, `run` trips the
        // "`Acquire` is not general enough" error inside an async trait method
        let result = MIGRATOR.run_direct(None, &mut *conn, false).await;
        if result.is_err() {
            conn.close_on_drop();
        }
        Ok(result?)
    }

    async fn sync_dags(&self, sync: &DagSync) -> StoreResult<()> {
        let mut tx = self.tx().await?;
        // two schedulers syncing at once would both replace the import errors: one at a time
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('sluice:sync_dags', 0))")
            .execute(&mut *tx)
            .await?;
        for dag in &sync.dags {
            sqlx::query(
                "INSERT INTO dags (dag_id, fileloc, hash, is_active, schedule, timezone, description, tags, updated_at) \
                 VALUES ($1, $2, $3, TRUE, $4, $5, $6, $7, $8) \
                 ON CONFLICT (dag_id) DO UPDATE SET fileloc = excluded.fileloc, hash = excluded.hash, is_active = TRUE, \
                 schedule = excluded.schedule, timezone = excluded.timezone, description = excluded.description, \
                 tags = excluded.tags, updated_at = CASE WHEN dags.hash = excluded.hash AND dags.is_active THEN dags.updated_at ELSE excluded.updated_at END",
            )
            .bind(&dag.dag_id)
            .bind(&dag.fileloc)
            .bind(&dag.hash)
            .bind(&dag.schedule)
            .bind(&dag.timezone)
            .bind(&dag.description)
            .bind(Json(&dag.tags))
            .bind(sync.now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO dag_versions (hash, dag_id, fileloc, source, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING")
                .bind(&dag.hash)
                .bind(&dag.dag_id)
                .bind(&dag.fileloc)
                .bind(&dag.source)
                .bind(sync.now)
                .execute(&mut *tx)
                .await?;
        }
        let present: Vec<&str> = sync.dags.iter().map(|d| d.dag_id.as_str()).collect();
        sqlx::query("UPDATE dags SET is_active = FALSE, updated_at = $1 WHERE is_active AND NOT (dag_id = ANY($2))")
            .bind(sync.now)
            .bind(&present)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM import_errors")
            .execute(&mut *tx)
            .await?;
        for error in &sync.import_errors {
            sqlx::query(
                "INSERT INTO import_errors (fileloc, errors, updated_at) VALUES ($1, $2, $3)",
            )
            .bind(&error.fileloc)
            .bind(Json(&error.errors))
            .bind(sync.now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_dags(&self) -> StoreResult<Vec<DagRecord>> {
        let rows = sqlx::query("SELECT * FROM dags ORDER BY dag_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read::dag).collect()
    }

    async fn get_dag(&self, dag_id: &str) -> StoreResult<Option<DagRecord>> {
        let row = sqlx::query("SELECT * FROM dags WHERE dag_id = $1")
            .bind(dag_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(read::dag).transpose()
    }

    async fn set_paused(&self, dag_id: &str, paused: Paused) -> StoreResult<()> {
        let result = sqlx::query("UPDATE dags SET is_paused = $1 WHERE dag_id = $2")
            .bind(paused == Paused::Paused)
            .bind(dag_id)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "DAG",
                id: dag_id.to_owned(),
            });
        }
        Ok(())
    }

    async fn dag_version(&self, hash: &str) -> StoreResult<Option<DagVersion>> {
        let row = sqlx::query("SELECT * FROM dag_versions WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(read::dag_version).transpose()
    }

    async fn import_errors(&self) -> StoreResult<Vec<ImportErrorRecord>> {
        let rows = sqlx::query("SELECT fileloc, errors FROM import_errors ORDER BY fileloc")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read::import_error).collect()
    }

    async fn create_run_if_absent(&self, run: &NewRun) -> StoreResult<Option<RunRecord>> {
        runs::create_if_absent(self, run).await
    }

    async fn last_scheduled_interval_end(
        &self,
        dag_id: &str,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let row = sqlx::query(
            "SELECT MAX(data_interval_end) AS latest FROM dag_runs WHERE dag_id = $1 AND run_type IN ('scheduled', 'backfill')",
        )
        .bind(dag_id)
        .fetch_one(&self.pool)
        .await?;
        row.opt_time("dag_runs", "latest")
    }

    async fn start_queued_runs(
        &self,
        dag_id: &str,
        max_active_runs: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<RunRecord>> {
        runs::start_queued(self, dag_id, max_active_runs, now).await
    }

    async fn evaluate_run(&self, run_pk: i64, now: DateTime<Utc>) -> StoreResult<RunProgress> {
        runs::evaluate(self, run_pk, now).await
    }

    async fn running_run_pks(&self) -> StoreResult<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT pk FROM dag_runs WHERE state = 'running' ORDER BY pk")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn dags_with_queued_runs(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT dag_id FROM dag_runs WHERE state = 'queued' ORDER BY dag_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn cancel_run(&self, run_pk: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        runs::cancel(self, run_pk, now).await
    }

    async fn claim_attempts(&self, claim: &Claim) -> StoreResult<Vec<ClaimedAttempt>> {
        attempts::claim(self, claim).await
    }

    async fn heartbeat_attempt(&self, lease: &Lease, now: DateTime<Utc>) -> StoreResult<()> {
        let result = sqlx::query("UPDATE task_attempts SET heartbeat_at = $1 WHERE id = $2 AND lease_token = $3 AND state = 'running'")
            .bind(now)
            .bind(lease.attempt_id)
            .bind(&lease.token)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::LeaseLost {
                attempt_id: lease.attempt_id,
            });
        }
        Ok(())
    }

    async fn append_log(&self, lease: &Lease, chunk: &str, now: DateTime<Utc>) -> StoreResult<()> {
        attempts::append_log(self, lease, chunk, now).await
    }

    async fn finish_attempt(&self, finish: &FinishAttempt) -> StoreResult<FinishResult> {
        attempts::finish(self, finish, "").await
    }

    async fn finish_attempt_with_log(
        &self,
        finish: &FinishAttempt,
        log: &str,
    ) -> StoreResult<FinishResult> {
        attempts::finish(self, finish, log).await
    }

    async fn worker_heartbeat(&self, worker: &WorkerBeat) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO workers (worker_id, host, queues, slots, slots_in_use, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (worker_id) DO UPDATE SET host = excluded.host, queues = excluded.queues, slots = excluded.slots, \
             slots_in_use = excluded.slots_in_use, heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&worker.worker_id)
        .bind(&worker.host)
        .bind(Json(&worker.queues))
        .bind(read::saturating_i32(worker.slots))
        .bind(read::saturating_i32(worker.slots_in_use))
        .bind(worker.now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        let rows = sqlx::query("SELECT * FROM workers ORDER BY worker_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read::worker).collect()
    }

    async fn remove_worker(&self, worker_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM workers WHERE worker_id = $1")
            .bind(worker_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn lost_leases(&self, leases: &[Lease]) -> StoreResult<Vec<i64>> {
        cluster::lost_leases(self, leases).await
    }

    async fn fail_zombies(&self, sweep: &ZombieSweep) -> StoreResult<Vec<ZombieAttempt>> {
        cluster::fail_zombies(self, sweep).await
    }

    async fn set_pool(&self, pool: &PoolSlots, now: DateTime<Utc>) -> StoreResult<()> {
        cluster::set_pool(self, pool, now).await
    }

    async fn delete_pool(&self, name: &str) -> StoreResult<bool> {
        cluster::delete_pool(self, name).await
    }

    async fn list_pools(&self) -> StoreResult<Vec<PoolRecord>> {
        cluster::list_pools(self).await
    }

    async fn find_runs(&self, run_id: &str) -> StoreResult<Vec<RunRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_runs WHERE run_id = $1 ORDER BY dag_id"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read::run).collect()
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        let limit = if filter.limit == 0 {
            100
        } else {
            i64::from(filter.limit)
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_runs WHERE ($1::text IS NULL OR dag_id = $1) AND ($2::text IS NULL OR state = $2) \
             ORDER BY logical_date DESC, pk DESC LIMIT $3"
        ))
        .bind(&filter.dag_id)
        .bind(filter.state.map(RunState::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read::run).collect()
    }

    async fn get_run(&self, dag_id: &str, run_id: &str) -> StoreResult<Option<RunRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_runs WHERE dag_id = $1 AND run_id = $2"
        ))
        .bind(dag_id)
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(read::run).transpose()
    }

    async fn get_run_by_pk(&self, run_pk: i64) -> StoreResult<Option<RunRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_runs WHERE pk = $1"
        ))
        .bind(run_pk)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(read::run).transpose()
    }

    async fn task_instances(&self, run_pk: i64) -> StoreResult<Vec<TaskInstanceRecord>> {
        let rows = sqlx::query("SELECT * FROM task_instances WHERE run_pk = $1 ORDER BY id")
            .bind(run_pk)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read::task_instance).collect()
    }

    async fn attempts(&self, run_pk: i64) -> StoreResult<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT a.*, ti.task_id, ti.map_index FROM task_attempts a JOIN task_instances ti ON ti.id = a.ti_id \
             WHERE a.run_pk = $1 ORDER BY a.ti_id, a.try_number",
        )
        .bind(run_pk)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read::attempt).collect()
    }

    async fn read_log(&self, attempt_id: i64, after_seq: i64) -> StoreResult<Vec<LogChunk>> {
        let rows = sqlx::query("SELECT seq, content, created_at FROM task_logs WHERE attempt_id = $1 AND seq > $2 ORDER BY seq")
            .bind(attempt_id)
            .bind(after_seq)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read::log_chunk).collect()
    }

    async fn run_outputs(
        &self,
        run_pk: i64,
    ) -> StoreResult<BTreeMap<String, BTreeMap<String, Value>>> {
        // the latest successful attempt of each task instance holds the outputs that count
        let rows = sqlx::query(
            "SELECT ti.task_id, ti.map_index, o.key, o.value FROM task_outputs o \
             JOIN task_attempts a ON a.id = o.attempt_id JOIN task_instances ti ON ti.id = a.ti_id \
             WHERE a.run_pk = $1 AND a.state = 'success' ORDER BY a.id",
        )
        .bind(run_pk)
        .fetch_all(&self.pool)
        .await?;
        let mapped = sqlx::query(
            "SELECT task_id, MAX(map_index) AS last_index FROM task_instances \
             WHERE run_pk = $1 AND map_index >= 0 AND state <> 'skipped' GROUP BY task_id",
        )
        .bind(run_pk)
        .fetch_all(&self.pool)
        .await?;
        read::outputs(&rows, &mapped)
    }

    async fn runs_in_range(&self, range: &RunRange) -> StoreResult<Vec<RunRecord>> {
        backfills::runs_in_range(self, range).await
    }

    async fn clear_tasks(&self, clear: &ClearTasks) -> StoreResult<u32> {
        backfills::clear_tasks(self, clear).await
    }

    async fn create_backfill(&self, backfill: &NewBackfill) -> StoreResult<BackfillRecord> {
        backfills::create(self, backfill).await
    }

    async fn get_backfill(&self, id: i64) -> StoreResult<Option<BackfillRecord>> {
        backfills::get(self, id).await
    }

    async fn open_backfills(&self) -> StoreResult<Vec<BackfillRecord>> {
        backfills::open(self).await
    }

    async fn backfill_progress(&self, id: i64) -> StoreResult<BackfillProgress> {
        backfills::progress(self, id).await
    }

    async fn start_backfill_runs(&self, id: i64, now: DateTime<Utc>) -> StoreResult<BackfillStep> {
        backfills::start_runs(self, id, now).await
    }

    async fn cancel_backfill(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        backfills::cancel(self, id, now).await
    }

    fn wakeups(&self) -> Wakeups {
        self.wakeups.clone()
    }

    // ---- web: users, sessions, API tokens, audit events --------------------------------

    async fn create_user(&self, user: &NewUser) -> StoreResult<UserRecord> {
        web::create_user(&self.pool, user).await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        web::list_users(&self.pool).await
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        web::get_user(&self.pool, username).await
    }

    async fn create_session(&self, session: &NewSession) -> StoreResult<()> {
        web::create_session(&self.pool, session).await
    }

    async fn get_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRecord>> {
        web::get_session(&self.pool, token_hash, now).await
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        web::delete_session(&self.pool, token_hash).await
    }

    async fn create_api_token(&self, token: &NewApiToken) -> StoreResult<ApiTokenRecord> {
        web::create_api_token(&self.pool, token).await
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>> {
        web::list_api_tokens(&self.pool).await
    }

    async fn get_api_token(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        web::get_api_token(&self.pool, token_hash).await
    }

    async fn record_event(&self, event: &NewEvent) -> StoreResult<EventRecord> {
        web::record_event(&self.pool, event).await
    }

    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<EventRecord>> {
        web::list_events(&self.pool, filter).await
    }

    async fn list_runs_page(&self, query: &RunPageQuery) -> StoreResult<Vec<RunRecord>> {
        web::list_runs_page(&self.pool, query).await
    }

    async fn run_counts(&self) -> StoreResult<Vec<RunCount>> {
        web::run_counts(&self.pool).await
    }

    async fn task_counts(&self) -> StoreResult<Vec<TaskCount>> {
        web::task_counts(&self.pool).await
    }

    async fn attempt_durations(&self) -> StoreResult<AttemptDurations> {
        web::attempt_durations(&self.pool).await
    }

    async fn mark_task_instance(&self, mark: &MarkTaskInstance) -> StoreResult<RunProgress> {
        web::mark_task_instance(&self.pool, mark).await?;
        // a separate transaction, as the scheduler's own re-evaluation: idempotent
        self.evaluate_run(mark.run_pk, mark.now).await
    }

    async fn recent_runs(&self, dag_ids: &[String], per_dag: u32) -> StoreResult<Vec<RunRecord>> {
        web::recent_runs(&self.pool, dag_ids, per_dag).await
    }

    async fn task_instances_of_runs(
        &self,
        run_pks: &[i64],
    ) -> StoreResult<Vec<TaskInstanceRecord>> {
        web::task_instances_of_runs(&self.pool, run_pks).await
    }

    async fn record_rendered(
        &self,
        lease: &Lease,
        fields: &BTreeMap<String, String>,
    ) -> StoreResult<()> {
        rendered::record_rendered(&self.pool, lease, fields).await
    }

    async fn rendered_fields(&self, run_pk: i64) -> StoreResult<Vec<RenderedRecord>> {
        rendered::rendered_fields(&self.pool, run_pk).await
    }

    async fn record_scheduler_tick(&self, tick: &SchedulerTick) -> StoreResult<()> {
        schedulers::record_scheduler_tick(&self.pool, tick).await
    }

    async fn list_schedulers(&self) -> StoreResult<Vec<SchedulerRecord>> {
        schedulers::list_schedulers(&self.pool).await
    }

    async fn expand_mapped_task(&self, expand: &ExpandTask) -> StoreResult<FinishResult> {
        mapping::expand_mapped_task(self, expand).await
    }

    async fn mapped_item(&self, ti_id: i64) -> StoreResult<Option<Value>> {
        mapping::mapped_item(self, ti_id).await
    }

    async fn reschedule_attempt(&self, reschedule: &RescheduleAttempt) -> StoreResult<()> {
        reschedule::reschedule_attempt(&self.pool, reschedule).await
    }
}
