//! The embedded store: one SQLite file in WAL mode, the single-node default.
//!
//! Write transactions start with `BEGIN IMMEDIATE` so two writers queue on the busy timeout
//! instead of failing when a reader tries to upgrade its lock. Timestamps are integer
//! microseconds (see the migration).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_core::RunState;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{SqliteConnection, SqlitePool};

use crate::decide::{self, TaskRow, TaskSettings};
use crate::read::{self, Columns, corrupt, not_in_open_backfill, plain_columns, run_columns};
use crate::*;

mod attempts;
mod backfills;
mod mapping;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    options: StoreOptions,
    wakeups: Wakeups,
}

impl SqliteStore {
    /// `sqlite://path/to/file.db` (created if missing) or `sqlite::memory:`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// `connect` with options other than the defaults.
    pub async fn connect_with(url: &str, store_options: StoreOptions) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = SqlitePoolOptions::new()
            // an in-memory database exists once per connection: keep exactly one
            .max_connections(if in_memory { 1 } else { 8 })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(1800))
            })
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            pool,
            options: store_options,
            wakeups: Wakeups::default(),
        })
    }

    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes to JSON")
}

impl Columns for SqliteRow {
    plain_columns!();

    fn opt_time(&self, table: &'static str, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        let Some(value) = self.opt_int(column)? else {
            return Ok(None);
        };
        DateTime::from_timestamp_micros(value)
            .map(Some)
            .ok_or_else(|| corrupt(table, format!("`{column}`: timestamp {value} out of range")))
    }

    fn json_value(&self, table: &'static str, column: &str) -> StoreResult<Value> {
        serde_json::from_str(&self.text(column)?)
            .map_err(|e| corrupt(table, format!("`{column}`: {e}")))
    }
}

/// Decides the pending task instances of a running run and finishes the run when all are
/// settled. Runs inside the caller's transaction.
pub(crate) async fn evaluate_in_tx(
    conn: &mut SqliteConnection,
    run_pk: i64,
    now: DateTime<Utc>,
) -> StoreResult<RunProgress> {
    let run_state: Option<String> = sqlx::query_scalar("SELECT state FROM dag_runs WHERE pk = ?")
        .bind(run_pk)
        .fetch_optional(&mut *conn)
        .await?;
    if run_state.as_deref() != Some(RunState::Running.as_str()) {
        return Ok(RunProgress::default());
    }
    let rows = sqlx::query("SELECT id, task_id, map_index, state, upstream, trigger_rule FROM task_instances WHERE run_pk = ? ORDER BY id")
        .bind(run_pk)
        .fetch_all(&mut *conn)
        .await?;
    let tasks = rows
        .iter()
        .map(TaskRow::read)
        .collect::<StoreResult<Vec<_>>>()?;
    let plan = decide::plan_run(&tasks, now);
    for change in &plan.changes {
        sqlx::query("UPDATE task_instances SET state = ?, queued_at = COALESCE(?, queued_at), ended_at = ? WHERE id = ? AND state = 'pending'")
            .bind(change.state.as_str())
            .bind(change.queued_at.map(micros))
            .bind(change.ended_at.map(micros))
            .bind(change.id)
            .execute(&mut *conn)
            .await?;
    }
    if let Some(outcome) = plan.outcome {
        sqlx::query(
            "UPDATE dag_runs SET state = ?, ended_at = ? WHERE pk = ? AND state = 'running'",
        )
        .bind(outcome.as_str())
        .bind(micros(now))
        .bind(run_pk)
        .execute(&mut *conn)
        .await?;
    }
    Ok(plan.progress)
}

/// The task instances of a new run, in the given (file) order.
pub(crate) async fn insert_task_instances(
    conn: &mut SqliteConnection,
    run_pk: i64,
    tasks: &[NewTaskInstance],
) -> StoreResult<()> {
    for task in tasks {
        let settings = TaskSettings::of(task);
        sqlx::query(
            "INSERT INTO task_instances (run_pk, task_id, map_index, state, max_tries, retry_delay_ms, retry_exponential, \
             max_retry_delay_ms, timeout_ms, upstream, trigger_rule, queue, pool, priority) \
             VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run_pk)
        .bind(&task.task_id)
        .bind(task.map_index)
        .bind(settings.max_tries)
        .bind(settings.retry_delay_ms)
        .bind(settings.retry_exponential)
        .bind(settings.max_retry_delay_ms)
        .bind(settings.timeout_ms)
        .bind(to_json(&task.upstream))
        .bind(task.trigger_rule.as_str())
        .bind(&task.queue)
        .bind(&task.pool)
        .bind(task.priority)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Checks that the lease is current: the attempt is running under this token.
async fn check_lease(conn: &mut SqliteConnection, lease: &Lease) -> StoreResult<read::Leased> {
    let row = sqlx::query(
        "SELECT ti_id, run_pk, try_number, state, lease_token FROM task_attempts WHERE id = ?",
    )
    .bind(lease.attempt_id)
    .fetch_optional(&mut *conn)
    .await?;
    read::leased(row.as_ref(), lease)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn sync_dags(&self, sync: &DagSync) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let now = micros(sync.now);
        for dag in &sync.dags {
            sqlx::query(
                "INSERT INTO dags (dag_id, fileloc, hash, is_active, schedule, timezone, description, tags, updated_at) \
                 VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?) \
                 ON CONFLICT (dag_id) DO UPDATE SET fileloc = excluded.fileloc, hash = excluded.hash, is_active = 1, \
                 schedule = excluded.schedule, timezone = excluded.timezone, description = excluded.description, \
                 tags = excluded.tags, updated_at = CASE WHEN dags.hash = excluded.hash AND dags.is_active THEN dags.updated_at ELSE excluded.updated_at END",
            )
            .bind(&dag.dag_id)
            .bind(&dag.fileloc)
            .bind(&dag.hash)
            .bind(&dag.schedule)
            .bind(&dag.timezone)
            .bind(&dag.description)
            .bind(to_json(&dag.tags))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO dag_versions (hash, dag_id, fileloc, source, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING")
                .bind(&dag.hash)
                .bind(&dag.dag_id)
                .bind(&dag.fileloc)
                .bind(&dag.source)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let present: Vec<&str> = sync.dags.iter().map(|d| d.dag_id.as_str()).collect();
        sqlx::query("UPDATE dags SET is_active = 0, updated_at = ? WHERE is_active = 1 AND dag_id NOT IN (SELECT value FROM json_each(?))")
            .bind(now)
            .bind(to_json(&present))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM import_errors")
            .execute(&mut *tx)
            .await?;
        for error in &sync.import_errors {
            sqlx::query("INSERT INTO import_errors (fileloc, errors, updated_at) VALUES (?, ?, ?)")
                .bind(&error.fileloc)
                .bind(to_json(&error.errors))
                .bind(now)
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
        let row = sqlx::query("SELECT * FROM dags WHERE dag_id = ?")
            .bind(dag_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(read::dag).transpose()
    }

    async fn set_paused(&self, dag_id: &str, paused: Paused) -> StoreResult<()> {
        let result = sqlx::query("UPDATE dags SET is_paused = ? WHERE dag_id = ?")
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
        let row = sqlx::query("SELECT * FROM dag_versions WHERE hash = ?")
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
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO dag_runs (dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, \
             dag_hash, params, triggered_by, queued_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING ", run_columns!(), ""
        ))
        .bind(&run.dag_id)
        .bind(&run.run_id)
        .bind(run.run_type.as_str())
        .bind(micros(run.logical_date))
        .bind(micros(run.data_interval.start))
        .bind(micros(run.data_interval.end))
        .bind(&run.dag_hash)
        .bind(to_json(&run.params))
        .bind(&run.triggered_by)
        .bind(micros(run.now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let record = read::run(&row)?;
        insert_task_instances(&mut tx, record.pk, &run.tasks).await?;
        tx.commit().await?;
        Ok(Some(record))
    }

    async fn last_scheduled_interval_end(
        &self,
        dag_id: &str,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let row = sqlx::query(
            "SELECT MAX(data_interval_end) AS latest FROM dag_runs WHERE dag_id = ? AND run_type IN ('scheduled', 'backfill')",
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
        let mut tx = self.write_tx().await?;
        let running: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM dag_runs WHERE dag_id = ? AND state = 'running' AND ",
            not_in_open_backfill!()
        ))
        .bind(dag_id)
        .fetch_one(&mut *tx)
        .await?;
        let room = i64::from(max_active_runs) - running;
        if room <= 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "UPDATE dag_runs SET state = 'running', started_at = ? WHERE pk IN \
             (SELECT pk FROM dag_runs WHERE dag_id = ? AND state = 'queued' AND ",
            not_in_open_backfill!(),
            " ORDER BY logical_date LIMIT ?) \
             RETURNING ",
            run_columns!(),
            ""
        ))
        .bind(micros(now))
        .bind(dag_id)
        .bind(room)
        .fetch_all(&mut *tx)
        .await?;
        let mut started = rows
            .iter()
            .map(read::run)
            .collect::<StoreResult<Vec<_>>>()?;
        started.sort_by_key(|r| r.logical_date);
        let mut queued = 0;
        for run in &started {
            queued += evaluate_in_tx(&mut tx, run.pk, now).await?.queued;
        }
        tx.commit().await?;
        if queued > 0 {
            self.wakeups.wake();
        }
        // a run with no tasks may have finished at once
        let mut refreshed = Vec::with_capacity(started.len());
        for run in started {
            refreshed.push(self.get_run_by_pk(run.pk).await?.unwrap_or(run));
        }
        Ok(refreshed)
    }

    async fn evaluate_run(&self, run_pk: i64, now: DateTime<Utc>) -> StoreResult<RunProgress> {
        let mut tx = self.write_tx().await?;
        let progress = evaluate_in_tx(&mut tx, run_pk, now).await?;
        tx.commit().await?;
        if progress.queued > 0 {
            self.wakeups.wake();
        }
        Ok(progress)
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
        let mut tx = self.write_tx().await?;
        let now = micros(now);
        let result = sqlx::query("UPDATE dag_runs SET state = 'cancelled', ended_at = ? WHERE pk = ? AND state IN ('queued', 'running')")
            .bind(now)
            .bind(run_pk)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE task_instances SET state = 'cancelled', ended_at = ? \
             WHERE run_pk = ? AND state IN ('pending', 'queued', 'running', 'up_for_retry', 'up_for_reschedule')",
        )
        .bind(now)
        .bind(run_pk)
        .execute(&mut *tx)
        .await?;
        let stopped = sqlx::query("UPDATE task_attempts SET state = 'cancelled', ended_at = ?, error = 'the run was cancelled' WHERE run_pk = ? AND state IN ('running', 'up_for_reschedule')")
            .bind(now)
            .bind(run_pk)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if stopped > 0 {
            self.wakeups.cancelled();
        }
        Ok(true)
    }

    async fn claim_attempts(&self, claim: &Claim) -> StoreResult<Vec<ClaimedAttempt>> {
        attempts::claim(self, claim).await
    }

    async fn heartbeat_attempt(&self, lease: &Lease, now: DateTime<Utc>) -> StoreResult<()> {
        let result = sqlx::query("UPDATE task_attempts SET heartbeat_at = ? WHERE id = ? AND lease_token = ? AND state = 'running'")
            .bind(micros(now))
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
            "INSERT INTO workers (worker_id, host, queues, slots, slots_in_use, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (worker_id) DO UPDATE SET host = excluded.host, queues = excluded.queues, slots = excluded.slots, \
             slots_in_use = excluded.slots_in_use, heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&worker.worker_id)
        .bind(&worker.host)
        .bind(to_json(&worker.queues))
        .bind(worker.slots)
        .bind(worker.slots_in_use)
        .bind(micros(worker.now))
        .bind(micros(worker.now))
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
        sqlx::query("DELETE FROM workers WHERE worker_id = ?")
            .bind(worker_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn lost_leases(&self, leases: &[Lease]) -> StoreResult<Vec<i64>> {
        attempts::lost_leases(self, leases).await
    }

    async fn fail_zombies(&self, sweep: &ZombieSweep) -> StoreResult<Vec<ZombieAttempt>> {
        attempts::fail_zombies(self, sweep).await
    }

    async fn set_pool(&self, pool: &PoolSlots, now: DateTime<Utc>) -> StoreResult<()> {
        attempts::set_pool(self, pool, now).await
    }

    async fn delete_pool(&self, name: &str) -> StoreResult<bool> {
        attempts::delete_pool(self, name).await
    }

    async fn list_pools(&self) -> StoreResult<Vec<PoolRecord>> {
        attempts::list_pools(self).await
    }

    async fn find_runs(&self, run_id: &str) -> StoreResult<Vec<RunRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_runs WHERE run_id = ? ORDER BY dag_id"
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
            " FROM dag_runs WHERE (?1 IS NULL OR dag_id = ?1) AND (?2 IS NULL OR state = ?2) \
             ORDER BY logical_date DESC, pk DESC LIMIT ?3"
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
            " FROM dag_runs WHERE dag_id = ? AND run_id = ?"
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
            " FROM dag_runs WHERE pk = ?"
        ))
        .bind(run_pk)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(read::run).transpose()
    }

    async fn task_instances(&self, run_pk: i64) -> StoreResult<Vec<TaskInstanceRecord>> {
        let rows = sqlx::query("SELECT * FROM task_instances WHERE run_pk = ? ORDER BY id")
            .bind(run_pk)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(read::task_instance).collect()
    }

    async fn attempts(&self, run_pk: i64) -> StoreResult<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT a.*, ti.task_id, ti.map_index FROM task_attempts a JOIN task_instances ti ON ti.id = a.ti_id \
             WHERE a.run_pk = ? ORDER BY a.ti_id, a.try_number",
        )
        .bind(run_pk)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read::attempt).collect()
    }

    async fn read_log(&self, attempt_id: i64, after_seq: i64) -> StoreResult<Vec<LogChunk>> {
        let rows = sqlx::query("SELECT seq, content, created_at FROM task_logs WHERE attempt_id = ? AND seq > ? ORDER BY seq")
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
             WHERE a.run_pk = ? AND a.state = 'success' ORDER BY a.id",
        )
        .bind(run_pk)
        .fetch_all(&self.pool)
        .await?;
        let mapped = sqlx::query(
            "SELECT task_id, MAX(map_index) AS last_index FROM task_instances \
             WHERE run_pk = ? AND map_index >= 0 AND state <> 'skipped' GROUP BY task_id",
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
        crate::sqlite_web::create_user(&self.pool, user).await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        crate::sqlite_web::list_users(&self.pool).await
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        crate::sqlite_web::get_user(&self.pool, username).await
    }

    async fn create_session(&self, session: &NewSession) -> StoreResult<()> {
        crate::sqlite_web::create_session(&self.pool, session).await
    }

    async fn get_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRecord>> {
        crate::sqlite_web::get_session(&self.pool, token_hash, now).await
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        crate::sqlite_web::delete_session(&self.pool, token_hash).await
    }

    async fn create_api_token(&self, token: &NewApiToken) -> StoreResult<ApiTokenRecord> {
        crate::sqlite_web::create_api_token(&self.pool, token).await
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>> {
        crate::sqlite_web::list_api_tokens(&self.pool).await
    }

    async fn get_api_token(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        crate::sqlite_web::get_api_token(&self.pool, token_hash).await
    }

    async fn record_event(&self, event: &NewEvent) -> StoreResult<EventRecord> {
        crate::sqlite_web::record_event(&self.pool, event).await
    }

    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<EventRecord>> {
        crate::sqlite_web::list_events(&self.pool, filter).await
    }

    async fn list_runs_page(&self, query: &RunPageQuery) -> StoreResult<Vec<RunRecord>> {
        crate::sqlite_web::list_runs_page(&self.pool, query).await
    }

    async fn run_counts(&self) -> StoreResult<Vec<RunCount>> {
        crate::sqlite_web::run_counts(&self.pool).await
    }

    async fn task_counts(&self) -> StoreResult<Vec<TaskCount>> {
        crate::sqlite_web::task_counts(&self.pool).await
    }

    async fn attempt_durations(&self) -> StoreResult<AttemptDurations> {
        crate::sqlite_web::attempt_durations(&self.pool).await
    }

    async fn mark_task_instance(&self, mark: &MarkTaskInstance) -> StoreResult<RunProgress> {
        crate::sqlite_web::mark_task_instance(&self.pool, mark).await?;
        // a separate transaction, as the scheduler's own re-evaluation: idempotent
        self.evaluate_run(mark.run_pk, mark.now).await
    }

    async fn recent_runs(&self, dag_ids: &[String], per_dag: u32) -> StoreResult<Vec<RunRecord>> {
        crate::sqlite_web::recent_runs(&self.pool, dag_ids, per_dag).await
    }

    async fn task_instances_of_runs(
        &self,
        run_pks: &[i64],
    ) -> StoreResult<Vec<TaskInstanceRecord>> {
        crate::sqlite_web::task_instances_of_runs(&self.pool, run_pks).await
    }

    async fn record_rendered(
        &self,
        lease: &Lease,
        fields: &BTreeMap<String, String>,
    ) -> StoreResult<()> {
        crate::sqlite_rendered::record_rendered(&self.pool, lease, fields).await
    }

    async fn rendered_fields(&self, run_pk: i64) -> StoreResult<Vec<RenderedRecord>> {
        crate::sqlite_rendered::rendered_fields(&self.pool, run_pk).await
    }

    async fn record_scheduler_tick(&self, tick: &SchedulerTick) -> StoreResult<()> {
        crate::sqlite_schedulers::record_scheduler_tick(&self.pool, tick).await
    }

    async fn list_schedulers(&self) -> StoreResult<Vec<SchedulerRecord>> {
        crate::sqlite_schedulers::list_schedulers(&self.pool).await
    }

    async fn expand_mapped_task(&self, expand: &ExpandTask) -> StoreResult<FinishResult> {
        mapping::expand_mapped_task(self, expand).await
    }

    async fn mapped_item(&self, ti_id: i64) -> StoreResult<Option<Value>> {
        mapping::mapped_item(self, ti_id).await
    }

    async fn reschedule_attempt(&self, reschedule: &RescheduleAttempt) -> StoreResult<()> {
        crate::sqlite_reschedule::reschedule_attempt(&self.pool, reschedule).await
    }
}
