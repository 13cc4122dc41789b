//! Attempts on SQLite: claims (within pools), log chunks (within the cap), results and the
//! zombie sweep. Every write transaction is `BEGIN IMMEDIATE`, so each sees the last one's
//! commits and pool counts need no further locking.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use chrono::{DateTime, Utc};
use sluice_core::AttemptState;
use sqlx::SqliteConnection;

use super::{SqliteStore, check_lease, evaluate_in_tx, micros, to_json};
use crate::decide;
use crate::read::{self, Columns, run_columns};
use crate::*;

/// Picks by priority then age; a task instance of a pool is numbered within its pool among
/// the candidates (`ROW_NUMBER`) and taken only while that number fits the pool's free slots.
pub(super) async fn claim(store: &SqliteStore, claim: &Claim) -> StoreResult<Vec<ClaimedAttempt>> {
    if claim.limit == 0 {
        return Ok(Vec::new());
    }
    let mut tx = store.write_tx().await?;
    let now = micros(claim.now);
    let claimed = sqlx::query(
        "UPDATE task_instances SET state = 'running', \
             try_number = try_number + CASE WHEN state = 'up_for_reschedule' THEN 0 ELSE 1 END, \
             started_at = CASE WHEN state = 'up_for_reschedule' THEN started_at ELSE ?1 END, \
             ended_at = NULL, next_try_at = NULL \
         WHERE id IN (SELECT c.id FROM ( \
                SELECT ti.id, ti.priority, ti.pool, \
                       ROW_NUMBER() OVER (PARTITION BY ti.pool ORDER BY ti.priority DESC, ti.id) AS n \
                FROM task_instances ti JOIN dag_runs r ON r.pk = ti.run_pk \
                WHERE r.state = 'running' AND ti.queue IN (SELECT value FROM json_each(?2)) \
                AND (ti.state = 'queued' OR (ti.state IN ('up_for_retry', 'up_for_reschedule') AND ti.next_try_at <= ?1)) \
             ) c LEFT JOIN pools p ON p.name = c.pool \
             WHERE p.name IS NULL OR c.n <= p.slots - \
                (SELECT COUNT(*) FROM task_instances b WHERE b.state = 'running' AND b.pool = c.pool) \
             ORDER BY c.priority DESC, c.id LIMIT ?3) \
         RETURNING id, run_pk, task_id, map_index, try_number, max_tries, timeout_ms, priority, started_at AS try_started_at",
    )
    .bind(now)
    .bind(to_json(&claim.queues))
    .bind(i64::from(claim.limit))
    .fetch_all(&mut *tx)
    .await?;
    let mut claimed = claimed;
    claimed.sort_by_key(|row| {
        (
            -row.int32("priority").unwrap_or(0),
            row.int("id").unwrap_or(i64::MAX),
        )
    });
    let mut attempts = Vec::with_capacity(claimed.len());
    let mut runs: BTreeMap<i64, RunRecord> = BTreeMap::new();
    for row in &claimed {
        let ti_id = row.int("id")?;
        let run_pk = row.int("run_pk")?;
        let try_number = row.int32("try_number")?;
        let token = uuid::Uuid::new_v4().to_string();
        let attempt_id: i64 = sqlx::query_scalar(
            "INSERT INTO task_attempts (ti_id, run_pk, try_number, state, worker_id, lease_token, started_at, heartbeat_at) \
             VALUES (?, ?, ?, 'running', ?, ?, ?, ?) \
             ON CONFLICT (ti_id, try_number) DO UPDATE SET state = 'running', worker_id = excluded.worker_id, \
                 lease_token = excluded.lease_token, heartbeat_at = excluded.heartbeat_at \
             RETURNING id",
        )
        .bind(ti_id)
        .bind(run_pk)
        .bind(try_number)
        .bind(&claim.worker_id)
        .bind(&token)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let run = match runs.entry(run_pk) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(unknown) => {
                let run_row = sqlx::query(concat!(
                    "SELECT ",
                    run_columns!(),
                    " FROM dag_runs WHERE pk = ?"
                ))
                .bind(run_pk)
                .fetch_one(&mut *tx)
                .await?;
                unknown.insert(read::run(&run_row)?)
            }
        };
        let lease = Lease { attempt_id, token };
        attempts.push(read::claimed_attempt(row, run, lease)?);
    }
    tx.commit().await?;
    Ok(attempts)
}

pub(super) async fn append_log(
    store: &SqliteStore,
    lease: &Lease,
    chunk: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut tx = store.write_tx().await?;
    check_lease(&mut tx, lease).await?;
    append_in_tx(
        &mut tx,
        lease.attempt_id,
        chunk,
        now,
        store.options.log_cap_bytes,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Appends a chunk and keeps the log within `cap` bytes, dropping (and counting) the oldest
/// chunks but never the newest.
pub(super) async fn append_in_tx(
    conn: &mut SqliteConnection,
    attempt_id: i64,
    chunk: &str,
    now: DateTime<Utc>,
    cap: u64,
) -> StoreResult<()> {
    insert_log(&mut *conn, attempt_id, chunk, now).await?;
    let kept: i64 = sqlx::query_scalar(
        "UPDATE task_attempts SET log_bytes = log_bytes + ? WHERE id = ? RETURNING log_bytes",
    )
    .bind(i64::try_from(chunk.len()).unwrap_or(i64::MAX))
    .bind(attempt_id)
    .fetch_one(&mut *conn)
    .await?;
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    if kept <= cap {
        return Ok(());
    }
    let dropped: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM task_logs WHERE attempt_id = ?1 AND seq IN ( \
            SELECT seq FROM (SELECT seq, SUM(length(CAST(content AS BLOB))) OVER (ORDER BY seq) \
                                    - length(CAST(content AS BLOB)) AS before \
                             FROM task_logs WHERE attempt_id = ?1) \
            WHERE before < ?2) \
         AND seq < (SELECT MAX(seq) FROM task_logs WHERE attempt_id = ?1) \
         RETURNING length(CAST(content AS BLOB))",
    )
    .bind(attempt_id)
    .bind(kept - cap)
    .fetch_all(&mut *conn)
    .await?;
    let dropped: i64 = dropped.iter().sum();
    sqlx::query(
        "UPDATE task_attempts SET log_bytes = log_bytes - ?1, log_dropped_bytes = log_dropped_bytes + ?1 WHERE id = ?2",
    )
    .bind(dropped)
    .bind(attempt_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_log(
    conn: &mut SqliteConnection,
    attempt_id: i64,
    chunk: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO task_logs (attempt_id, seq, content, created_at) \
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM task_logs WHERE attempt_id = ?1), ?2, ?3)",
    )
    .bind(attempt_id)
    .bind(chunk)
    .bind(micros(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn finish(
    store: &SqliteStore,
    finish: &FinishAttempt,
    log: &str,
) -> StoreResult<FinishResult> {
    let mut tx = store.write_tx().await?;
    if !log.is_empty() {
        check_lease(&mut tx, &finish.lease).await?;
        append_in_tx(
            &mut tx,
            finish.lease.attempt_id,
            log,
            finish.now,
            store.options.log_cap_bytes,
        )
        .await?;
    }
    let result = finish_in_tx(&mut tx, finish).await?;
    tx.commit().await?;
    if decide::wakes_workers(result.task_state, &result.progress) {
        store.wakeups.wake();
    }
    Ok(result)
}

async fn finish_in_tx(
    tx: &mut SqliteConnection,
    finish: &FinishAttempt,
) -> StoreResult<FinishResult> {
    let leased = check_lease(&mut *tx, &finish.lease).await?;
    let now = micros(finish.now);
    let attempt_state = match finish.outcome {
        AttemptOutcome::Success => AttemptState::Success,
        AttemptOutcome::Failed => AttemptState::Failed,
    };
    sqlx::query(
        "UPDATE task_attempts SET state = ?, ended_at = ?, exit_code = ?, error = ? WHERE id = ?",
    )
    .bind(attempt_state.as_str())
    .bind(now)
    .bind(finish.exit_code)
    .bind(&finish.error)
    .bind(finish.lease.attempt_id)
    .execute(&mut *tx)
    .await?;
    for (key, value) in &finish.outputs {
        sqlx::query("INSERT INTO task_outputs (attempt_id, key, value) VALUES (?, ?, ?)")
            .bind(finish.lease.attempt_id)
            .bind(key)
            .bind(to_json(value))
            .execute(&mut *tx)
            .await?;
    }
    let ti = sqlx::query("SELECT task_id, max_tries, retry_delay_ms, retry_exponential, max_retry_delay_ms FROM task_instances WHERE id = ?")
        .bind(leased.ti_id)
        .fetch_one(&mut *tx)
        .await?;
    let after = decide::after_attempt(
        finish.outcome,
        leased.try_number,
        ti.count("task_instances", "max_tries")?,
        &read::retry_policy(&ti)?,
        finish.now,
    );
    sqlx::query("UPDATE task_instances SET state = ?, next_try_at = ?, ended_at = ? WHERE id = ?")
        .bind(after.task_state.as_str())
        .bind(after.next_try_at.map(micros))
        .bind(after.ended_at.map(micros))
        .bind(leased.ti_id)
        .execute(&mut *tx)
        .await?;
    // only when a pending task waits on this one, or nothing else in the run is unsettled,
    // can a whole evaluation (every task instance of the run) change anything
    let may_change: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_instances WHERE run_pk = ?1 AND state = 'pending' \
                          AND EXISTS (SELECT 1 FROM json_each(upstream) WHERE value = ?2)) \
             OR NOT EXISTS (SELECT 1 FROM task_instances WHERE run_pk = ?1 AND id <> ?3 \
                          AND state IN ('pending', 'queued', 'running', 'up_for_retry', 'up_for_reschedule'))",
    )
    .bind(leased.run_pk)
    .bind(ti.text("task_id")?)
    .bind(leased.ti_id)
    .fetch_one(&mut *tx)
    .await?;
    let progress = if may_change {
        evaluate_in_tx(&mut *tx, leased.run_pk, finish.now).await?
    } else {
        RunProgress::default()
    };
    Ok(FinishResult {
        task_state: after.task_state,
        progress,
    })
}

pub(super) async fn fail_zombies(
    store: &SqliteStore,
    sweep: &ZombieSweep,
) -> StoreResult<Vec<ZombieAttempt>> {
    let stale_before = micros(sweep.stale_before);
    let rows = sqlx::query(
        "SELECT a.id, a.run_pk, a.lease_token, a.worker_id, ti.task_id, ti.map_index \
         FROM task_attempts a JOIN task_instances ti ON ti.id = a.ti_id \
         WHERE a.state = 'running' AND a.heartbeat_at < ?1 \
         ORDER BY a.id",
    )
    .bind(stale_before)
    .fetch_all(&store.pool)
    .await?;
    let mut failed = Vec::new();
    for row in &rows {
        let candidate = read::zombie_candidate(row)?;
        if let Some(zombie) = fail_zombie(store, &candidate, sweep).await? {
            failed.push(zombie);
        }
    }
    Ok(failed)
}

/// One zombie, re-checked inside its own write transaction.
async fn fail_zombie(
    store: &SqliteStore,
    candidate: &read::ZombieCandidate,
    sweep: &ZombieSweep,
) -> StoreResult<Option<ZombieAttempt>> {
    let mut tx = store.write_tx().await?;
    let lease = Lease {
        attempt_id: candidate.attempt_id,
        token: candidate.token.clone(),
    };
    let leased = match check_lease(&mut tx, &lease).await {
        Ok(leased) => leased,
        Err(StoreError::LeaseLost { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let row = sqlx::query(
        "SELECT a.heartbeat_at, w.heartbeat_at AS worker_heartbeat_at FROM task_attempts a \
         LEFT JOIN workers w ON w.worker_id = a.worker_id WHERE a.id = ?",
    )
    .bind(candidate.attempt_id)
    .fetch_one(&mut *tx)
    .await?;
    let beat = row.time("task_attempts", "heartbeat_at")?;
    let worker_beat = row.opt_time("workers", "worker_heartbeat_at")?;
    if !read::is_zombie(beat, worker_beat, sweep) {
        return Ok(None);
    }
    let (message, last_heartbeat) =
        read::zombie_message(&candidate.worker_id, beat, worker_beat, sweep.stale_before);
    insert_log(
        &mut tx,
        candidate.attempt_id,
        &format!("[sluice] {message}\n"),
        sweep.now,
    )
    .await?;
    let finish = FinishAttempt {
        lease,
        outcome: AttemptOutcome::Failed,
        exit_code: None,
        error: Some(message),
        outputs: BTreeMap::new(),
        now: sweep.now,
    };
    let result = finish_in_tx(&mut tx, &finish).await?;
    tx.commit().await?;
    if decide::wakes_workers(result.task_state, &result.progress) {
        store.wakeups.wake();
    }
    Ok(Some(ZombieAttempt {
        attempt_id: candidate.attempt_id,
        run_pk: candidate.run_pk,
        task_id: candidate.task_id.clone(),
        map_index: candidate.map_index,
        try_number: leased.try_number,
        worker_id: candidate.worker_id.clone(),
        last_heartbeat,
        task_state: result.task_state,
    }))
}

pub(super) async fn lost_leases(store: &SqliteStore, leases: &[Lease]) -> StoreResult<Vec<i64>> {
    let mut lost = Vec::new();
    for lease in leases {
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM task_attempts WHERE id = ? AND lease_token = ? AND state = 'running'",
        )
        .bind(lease.attempt_id)
        .bind(&lease.token)
        .fetch_optional(&store.pool)
        .await?;
        if current.is_none() {
            lost.push(lease.attempt_id);
        }
    }
    Ok(lost)
}

pub(super) async fn set_pool(
    store: &SqliteStore,
    pool: &PoolSlots,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO pools (name, slots, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET slots = excluded.slots, updated_at = excluded.updated_at",
    )
    .bind(&pool.name)
    .bind(pool.slots)
    .bind(micros(now))
    .execute(&store.pool)
    .await?;
    // a pool that grew may let waiting tasks run
    store.wakeups.wake();
    Ok(())
}

pub(super) async fn delete_pool(store: &SqliteStore, name: &str) -> StoreResult<bool> {
    let deleted = sqlx::query("DELETE FROM pools WHERE name = ?")
        .bind(name)
        .execute(&store.pool)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}

pub(super) async fn list_pools(store: &SqliteStore) -> StoreResult<Vec<PoolRecord>> {
    let rows = sqlx::query(
        "SELECT p.name, p.slots, p.updated_at, \
            (SELECT COUNT(*) FROM task_instances ti WHERE ti.pool = p.name AND ti.state = 'running') AS running, \
            (SELECT COUNT(*) FROM task_instances ti WHERE ti.pool = p.name AND ti.state IN ('queued', 'up_for_retry', 'up_for_reschedule')) AS queued \
         FROM pools p ORDER BY p.name",
    )
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(read::pool).collect()
}
