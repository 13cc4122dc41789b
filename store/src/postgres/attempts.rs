//! Attempts on PostgreSQL: claims, log chunks and results, each under its lease.

use std::collections::BTreeMap;

use sluice_core::AttemptState;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use super::runs::{evaluate_in_tx, lock_run};
use super::{PgStore, notify_work};
use crate::decide;
use crate::read::{self, Columns, run_columns};
use crate::*;

/// The retry settings of a task instance, as `read::retry_policy` reads them.
macro_rules! retry_columns {
    () => {
        "max_tries, retry_delay_ms, retry_exponential, max_retry_delay_ms"
    };
}

/// `FOR UPDATE SKIP LOCKED` picks the task instances: a claimer passes over rows another
/// claimer holds, and a row claimed since this statement began no longer matches when it is
/// re-checked under its lock, so no instance is claimed twice and no claimer waits.
pub(super) async fn claim(store: &PgStore, claim: &Claim) -> StoreResult<Vec<ClaimedAttempt>> {
    if claim.limit == 0 {
        return Ok(Vec::new());
    }
    let mut attempts = super::claims::claim_without_pools(store, claim).await?;
    let claimed = u32::try_from(attempts.len()).unwrap_or(u32::MAX);
    if claimed < claim.limit && super::claims::pools_exist(store).await? {
        // pools have sizes: the fast path took nothing
        let rest = Claim {
            limit: claim.limit - claimed,
            ..claim.clone()
        };
        attempts.extend(claim_within_pools(store, &rest).await?);
    }
    Ok(attempts)
}

/// The claim when pools may cap it: pick, then keep what fits in the pools (their rows
/// locked), then mark running and insert the attempts, in one transaction.
async fn claim_within_pools(store: &PgStore, claim: &Claim) -> StoreResult<Vec<ClaimedAttempt>> {
    let mut tx = store.tx().await?;
    // pick first, skipping pools already full by the last committed count (a hint: the
    // count that decides is taken under the pools' locks below)
    // the index walked in order per queue, as `claims::claim_without_pools` does
    let picked = sqlx::query(
        "WITH fresh AS ( \
            SELECT x.id, x.pool, x.priority FROM UNNEST($2::text[]) AS q(name) CROSS JOIN LATERAL ( \
                SELECT ti.id, ti.pool, ti.priority FROM task_instances ti \
                WHERE ti.state = 'queued' AND ti.queue = q.name \
                  AND (SELECT r.state FROM dag_runs r WHERE r.pk = ti.run_pk) = 'running' \
                  AND (ti.pool IS NULL OR NOT EXISTS (SELECT 1 FROM pools p WHERE p.name = ti.pool AND p.slots <= \
                       (SELECT COUNT(*) FROM task_instances b WHERE b.state = 'running' AND b.pool = p.name))) \
                ORDER BY ti.priority DESC, ti.id LIMIT $3 \
                FOR UPDATE OF ti SKIP LOCKED) x \
         ), retried AS ( \
            SELECT x.id, x.pool, x.priority FROM UNNEST($2::text[]) AS q(name) CROSS JOIN LATERAL ( \
                SELECT ti.id, ti.pool, ti.priority FROM task_instances ti \
                WHERE ti.state IN ('up_for_retry', 'up_for_reschedule') AND ti.queue = q.name AND ti.next_try_at <= $1 \
                  AND (SELECT r.state FROM dag_runs r WHERE r.pk = ti.run_pk) = 'running' \
                  AND (ti.pool IS NULL OR NOT EXISTS (SELECT 1 FROM pools p WHERE p.name = ti.pool AND p.slots <= \
                       (SELECT COUNT(*) FROM task_instances b WHERE b.state = 'running' AND b.pool = p.name))) \
                ORDER BY ti.priority DESC, ti.id LIMIT $3 \
                FOR UPDATE OF ti SKIP LOCKED) x \
         ) \
         SELECT p.id, p.pool FROM (SELECT * FROM fresh UNION ALL SELECT * FROM retried) p \
         ORDER BY p.priority DESC, p.id LIMIT $3",
    )
    .bind(claim.now)
    .bind(&claim.queues)
    .bind(i64::from(claim.limit))
    .fetch_all(&mut *tx)
    .await?;
    let mut picked_ids = Vec::with_capacity(picked.len());
    let mut pools = Vec::with_capacity(picked.len());
    for row in &picked {
        picked_ids.push(row.int("id")?);
        pools.push(row.opt_text("pool")?);
    }
    let picked_ids = within_pools(&mut tx, picked_ids, &pools).await?;
    let claimed = sqlx::query(
        "UPDATE task_instances ti SET state = 'running', \
             try_number = ti.try_number + CASE WHEN ti.state = 'up_for_reschedule' THEN 0 ELSE 1 END, \
             started_at = CASE WHEN ti.state = 'up_for_reschedule' THEN ti.started_at ELSE $1 END, \
             ended_at = NULL, next_try_at = NULL \
         WHERE ti.id = ANY($2) \
         RETURNING ti.id, ti.run_pk, ti.task_id, ti.map_index, ti.try_number, ti.max_tries, ti.timeout_ms, ti.priority, ti.started_at AS try_started_at",
    )
    .bind(claim.now)
    .bind(&picked_ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut claimed = claimed;
    // the order claims were picked in: priority, then age
    let mut order = BTreeMap::new();
    for (position, id) in picked_ids.iter().enumerate() {
        order.insert(*id, position);
    }
    claimed.sort_by_key(|row| {
        row.int("id")
            .ok()
            .and_then(|id| order.get(&id).copied())
            .unwrap_or(usize::MAX)
    });
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let mut ti_ids = Vec::with_capacity(claimed.len());
    let mut run_pks = Vec::with_capacity(claimed.len());
    let mut try_numbers = Vec::with_capacity(claimed.len());
    let mut tokens = Vec::with_capacity(claimed.len());
    for row in &claimed {
        ti_ids.push(row.int("id")?);
        run_pks.push(row.int("run_pk")?);
        try_numbers.push(row.int32("try_number")?);
        tokens.push(uuid::Uuid::new_v4().to_string());
    }
    let attempt_ids: Vec<(i64, i64)> = sqlx::query_as(
        "INSERT INTO task_attempts (ti_id, run_pk, try_number, state, worker_id, lease_token, started_at, heartbeat_at) \
         SELECT t.ti_id, t.run_pk, t.try_number, 'running', $5, t.token, $6, $6 \
         FROM UNNEST($1::int8[], $2::int8[], $3::int4[], $4::text[]) AS t(ti_id, run_pk, try_number, token) \
         ON CONFLICT (ti_id, try_number) DO UPDATE SET state = 'running', worker_id = EXCLUDED.worker_id, \
             lease_token = EXCLUDED.lease_token, heartbeat_at = EXCLUDED.heartbeat_at \
         RETURNING ti_id, id",
    )
    .bind(&ti_ids)
    .bind(&run_pks)
    .bind(&try_numbers)
    .bind(&tokens)
    .bind(&claim.worker_id)
    .bind(claim.now)
    .fetch_all(&mut *tx)
    .await?;
    let attempt_ids: BTreeMap<i64, i64> = attempt_ids.into_iter().collect();
    let run_rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_runs WHERE pk = ANY($1)"
    ))
    .bind(&run_pks)
    .fetch_all(&mut *tx)
    .await?;
    let mut runs = BTreeMap::new();
    for row in &run_rows {
        let run = read::run(row)?;
        runs.insert(run.pk, run);
    }
    let mut attempts = Vec::with_capacity(claimed.len());
    for ((row, ti_id), (run_pk, token)) in
        claimed.iter().zip(&ti_ids).zip(run_pks.iter().zip(tokens))
    {
        let (Some(&attempt_id), Some(run)) = (attempt_ids.get(ti_id), runs.get(run_pk)) else {
            return Err(read::corrupt(
                "task_attempts",
                format!("the attempt or run of claimed task instance {ti_id} was not found"),
            ));
        };
        let lease = Lease { attempt_id, token };
        attempts.push(read::claimed_attempt(row, run, lease)?);
    }
    tx.commit().await?;
    Ok(attempts)
}

/// Keeps the picked task instances (in order) that fit in their pools. The rows of the pools
/// involved are locked, in name order, before their running instances are counted: claimers
/// of one pool take turns, each counting what the previous one committed, so no two can fill
/// the same free slot.
async fn within_pools(
    conn: &mut PgConnection,
    picked: Vec<i64>,
    pools: &[Option<String>],
) -> StoreResult<Vec<i64>> {
    let mut names: Vec<&str> = pools.iter().flatten().map(String::as_str).collect();
    if names.is_empty() {
        return Ok(picked);
    }
    names.sort_unstable();
    names.dedup();
    let slots: Vec<(String, i32)> = sqlx::query_as(
        "SELECT name, slots FROM pools WHERE name = ANY($1) ORDER BY name FOR UPDATE",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    if slots.is_empty() {
        return Ok(picked);
    }
    let running: Vec<(String, i64)> = sqlx::query_as(
        "SELECT pool, COUNT(*) FROM task_instances WHERE state = 'running' AND pool = ANY($1) GROUP BY pool",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    Ok(decide::fit_pools(picked, pools, &slots, &running))
}

/// The attempt's row, locked: log writes of one attempt take their sequence numbers one at a
/// time, and a result committed meanwhile is seen.
pub(super) async fn lock_attempt(
    conn: &mut PgConnection,
    lease: &Lease,
) -> StoreResult<read::Leased> {
    let row = sqlx::query(
        "SELECT ti_id, run_pk, try_number, state, lease_token FROM task_attempts WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(lease.attempt_id)
    .fetch_optional(&mut *conn)
    .await?;
    read::leased(row.as_ref(), lease)
}

pub(super) async fn append_log(
    store: &PgStore,
    lease: &Lease,
    chunk: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<()> {
    let mut tx = store.tx().await?;
    lock_attempt(&mut tx, lease).await?;
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
/// chunks but never the newest. The caller holds the attempt's row lock.
pub(super) async fn append_in_tx(
    conn: &mut PgConnection,
    attempt_id: i64,
    chunk: &str,
    now: chrono::DateTime<chrono::Utc>,
    cap: u64,
) -> StoreResult<()> {
    let kept: i64 = sqlx::query_scalar(
        "WITH appended AS ( \
            INSERT INTO task_logs (attempt_id, seq, content, created_at) \
            VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM task_logs WHERE attempt_id = $1), $2, $3) \
            RETURNING attempt_id \
         ) \
         UPDATE task_attempts SET log_bytes = log_bytes + $4 \
         WHERE id = (SELECT attempt_id FROM appended) RETURNING log_bytes",
    )
    .bind(attempt_id)
    .bind(chunk)
    .bind(now)
    .bind(i64::try_from(chunk.len()).unwrap_or(i64::MAX))
    .fetch_one(&mut *conn)
    .await?;
    trim_in_tx(conn, attempt_id, kept, cap).await
}

/// Keeps a finished attempt's log within the cap, once `finish::finish_success` appended its
/// last lines beyond it.
pub(super) async fn trim_log(store: &PgStore, attempt_id: i64) -> StoreResult<()> {
    let mut tx = store.tx().await?;
    let kept: i64 =
        sqlx::query_scalar("SELECT log_bytes FROM task_attempts WHERE id = $1 FOR NO KEY UPDATE")
            .bind(attempt_id)
            .fetch_one(&mut *tx)
            .await?;
    trim_in_tx(&mut tx, attempt_id, kept, store.options.log_cap_bytes).await?;
    tx.commit().await?;
    Ok(())
}

/// Drops the oldest chunks (never the newest) of a log of `kept` bytes until it fits in `cap`,
/// and counts them. The caller holds the attempt's row lock.
async fn trim_in_tx(
    conn: &mut PgConnection,
    attempt_id: i64,
    kept: i64,
    cap: u64,
) -> StoreResult<()> {
    let cap = i64::try_from(cap).unwrap_or(i64::MAX);
    if kept <= cap {
        return Ok(());
    }
    let dropped: Vec<i64> = sqlx::query_scalar(
        "WITH sized AS ( \
            SELECT seq, SUM(octet_length(content)) OVER (ORDER BY seq) - octet_length(content) AS before \
            FROM task_logs WHERE attempt_id = $1 \
         ) \
         DELETE FROM task_logs t USING sized \
         WHERE t.attempt_id = $1 AND t.seq = sized.seq AND sized.before < $2 \
           AND t.seq < (SELECT MAX(seq) FROM task_logs WHERE attempt_id = $1) \
         RETURNING octet_length(t.content)::int8",
    )
    .bind(attempt_id)
    .bind(kept - cap)
    .fetch_all(&mut *conn)
    .await?;
    let dropped: i64 = dropped.iter().sum();
    sqlx::query(
        "UPDATE task_attempts SET log_bytes = log_bytes - $2, log_dropped_bytes = log_dropped_bytes + $2 WHERE id = $1",
    )
    .bind(attempt_id)
    .bind(dropped)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Appends one chunk after the attempt's last; the caller holds the attempt's row lock.
async fn insert_log(
    conn: &mut PgConnection,
    attempt_id: i64,
    chunk: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO task_logs (attempt_id, seq, content, created_at) \
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM task_logs WHERE attempt_id = $1), $2, $3)",
    )
    .bind(attempt_id)
    .bind(chunk)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A success takes `finish::finish_success` (one statement). A failure is decided by the
/// task's retry policy, read here under the task instance's lock.
///
/// Most attempts of a wide run have no task waiting on them: their end is recorded without
/// the run's lock, so attempts of one run finish side by side instead of one at a time. Only
/// an attempt that a pending task waits on takes the run's lock and evaluates the run in its
/// transaction. Whether the run has ended is asked after the commit: of several attempts
/// ending together, the last to commit sees every other settled and evaluates the run. (It
/// must be asked after every commit: a task seen waiting inside the transaction may be
/// claimed and finished by another worker before this commit lands.)
pub(super) async fn finish(
    store: &PgStore,
    finish: &FinishAttempt,
    log: &str,
) -> StoreResult<FinishResult> {
    if matches!(finish.outcome, AttemptOutcome::Success) {
        return super::finish::finish_success(store, finish, log).await;
    }
    // a task leaves `pending` for good: `waited_on` false cannot turn true later
    let found: Option<(i64, i64, bool)> = sqlx::query_as(
        "SELECT a.run_pk, a.ti_id, EXISTS (SELECT 1 FROM task_instances d WHERE d.run_pk = a.run_pk \
                AND d.state = 'pending' AND d.upstream @> jsonb_build_array(ti.task_id)) AS waited_on \
         FROM task_attempts a JOIN task_instances ti ON ti.id = a.ti_id WHERE a.id = $1",
    )
    .bind(finish.lease.attempt_id)
    .fetch_optional(&store.pool)
    .await?;
    let Some((run_pk, ti_id, waited_on)) = found else {
        return Err(StoreError::LeaseLost {
            attempt_id: finish.lease.attempt_id,
        });
    };
    let mut tx = store.tx().await?;
    let evaluate = if waited_on {
        // the run's row first, as every transaction that decides about the run takes its locks
        lock_run(&mut tx, run_pk).await?;
        Evaluate::InTransaction
    } else {
        // the task instance before the attempt, in the order `cancel_run` takes them
        let task_instance = sqlx::query(concat!(
            "SELECT ",
            retry_columns!(),
            " FROM task_instances WHERE id = $1 FOR NO KEY UPDATE"
        ))
        .bind(ti_id)
        .fetch_one(&mut *tx)
        .await?;
        Evaluate::Later { task_instance }
    };
    let log = (!log.is_empty()).then_some((log, store.options.log_cap_bytes));
    let Finished { mut result, wake } = finish_in_tx(&mut tx, finish, evaluate, log).await?;
    tx.commit().await?;
    if wake {
        store.wakeups.wake();
    }
    if waited_on && result.task_state.is_terminal() {
        // a success of another upstream that committed after this transaction read the run
        // counted this task as running (`finish::downstream_may_be_decided`): evaluate again
        match super::runs::evaluate(store, run_pk, finish.now).await {
            Ok(again) => {
                result.progress.changed += again.changed;
                result.progress.queued += again.queued;
                result.progress.finished = result.progress.finished.or(again.finished);
            }
            Err(error) => {
                tracing::warn!(run_pk, %error, "evaluating the run after an attempt's end failed; the scheduler will");
            }
        }
    }
    if !waited_on && result.task_state.is_terminal() {
        let unsettled: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM task_instances WHERE run_pk = $1 \
                            AND state IN ('pending', 'queued', 'running', 'up_for_retry', 'up_for_reschedule'))",
        )
        .bind(run_pk)
        .fetch_one(&store.pool)
        .await?;
        if !unsettled {
            result.progress = super::runs::evaluate(store, run_pk, finish.now).await?;
        }
    }
    Ok(result)
}

/// Whether `finish_in_tx` evaluates the run (its row already locked by the caller), or
/// leaves that for after the commit (the caller already locked and read the task instance).
enum Evaluate {
    InTransaction,
    Later { task_instance: PgRow },
}

/// What `finish_in_tx` decided.
struct Finished {
    result: FinishResult,
    /// Idle workers must be woken once the transaction commits (`NOTIFY` is sent in it).
    wake: bool,
}

/// Records the attempt's end inside the caller's transaction.
async fn finish_in_tx(
    tx: &mut PgConnection,
    finish: &FinishAttempt,
    evaluate: Evaluate,
    log: Option<(&str, u64)>,
) -> StoreResult<Finished> {
    let leased = lock_attempt(&mut *tx, &finish.lease).await?;
    if let Some((chunk, cap)) = log {
        append_in_tx(&mut *tx, finish.lease.attempt_id, chunk, finish.now, cap).await?;
    }
    let attempt_state = match finish.outcome {
        AttemptOutcome::Success => AttemptState::Success,
        AttemptOutcome::Failed => AttemptState::Failed,
    };
    sqlx::query("UPDATE task_attempts SET state = $1, ended_at = $2, exit_code = $3, error = $4 WHERE id = $5")
        .bind(attempt_state.as_str())
        .bind(finish.now)
        .bind(finish.exit_code)
        .bind(&finish.error)
        .bind(finish.lease.attempt_id)
        .execute(&mut *tx)
        .await?;
    if !finish.outputs.is_empty() {
        sqlx::query(
            "INSERT INTO task_outputs (attempt_id, key, value) SELECT $1, o.key, o.value \
             FROM UNNEST($2::text[], $3::jsonb[]) AS o(key, value)",
        )
        .bind(finish.lease.attempt_id)
        .bind(finish.outputs.keys().collect::<Vec<_>>())
        .bind(finish.outputs.values().collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    let (ti, evaluate_now) = match evaluate {
        Evaluate::Later { task_instance } => (task_instance, false),
        Evaluate::InTransaction => {
            let ti = sqlx::query(concat!(
                "SELECT ",
                retry_columns!(),
                " FROM task_instances WHERE id = $1"
            ))
            .bind(leased.ti_id)
            .fetch_one(&mut *tx)
            .await?;
            (ti, true)
        }
    };
    let after = decide::after_attempt(
        finish.outcome,
        leased.try_number,
        ti.count("task_instances", "max_tries")?,
        &read::retry_policy(&ti)?,
        finish.now,
    );
    sqlx::query(
        "UPDATE task_instances SET state = $1, next_try_at = $2, ended_at = $3 WHERE id = $4",
    )
    .bind(after.task_state.as_str())
    .bind(after.next_try_at)
    .bind(after.ended_at)
    .bind(leased.ti_id)
    .execute(&mut *tx)
    .await?;
    let progress = if evaluate_now {
        evaluate_in_tx(&mut *tx, leased.run_pk, finish.now).await?
    } else {
        RunProgress::default()
    };
    let wake = decide::wakes_workers(after.task_state, &progress);
    if wake {
        notify_work(&mut *tx).await?;
    }
    Ok(Finished {
        result: FinishResult {
            task_state: after.task_state,
            progress,
        },
        wake,
    })
}

/// Fails one zombie attempt: re-checked under the run's and the attempt's locks (another
/// scheduler may have failed it, or its worker may have come back), its log and `error` say
/// why, and the task goes to its retry policy. `None` when it is no zombie any more.
pub(super) async fn fail_zombie(
    store: &PgStore,
    candidate: &read::ZombieCandidate,
    sweep: &ZombieSweep,
) -> StoreResult<Option<ZombieAttempt>> {
    let mut tx = store.tx().await?;
    lock_run(&mut tx, candidate.run_pk).await?;
    let lease = Lease {
        attempt_id: candidate.attempt_id,
        token: candidate.token.clone(),
    };
    let leased = match lock_attempt(&mut tx, &lease).await {
        Ok(leased) => leased,
        Err(StoreError::LeaseLost { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let beat: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT heartbeat_at FROM task_attempts WHERE id = $1")
            .bind(candidate.attempt_id)
            .fetch_one(&mut *tx)
            .await?;
    let worker_beat: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT heartbeat_at FROM workers WHERE worker_id = $1")
            .bind(&candidate.worker_id)
            .fetch_optional(&mut *tx)
            .await?;
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
    let Finished { result, wake, .. } =
        finish_in_tx(&mut tx, &finish, Evaluate::InTransaction, None).await?;
    tx.commit().await?;
    if wake {
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
