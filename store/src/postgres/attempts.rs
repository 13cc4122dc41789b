//! Attempts on PostgreSQL: claims, log chunks and results, each under its lease.

use std::collections::BTreeMap;

use sluice_core::AttemptState;
use sqlx::PgConnection;

use super::runs::{evaluate_in_tx, lock_run};
use super::{PgStore, notify_work};
use crate::decide;
use crate::read::{self, Columns, run_columns};
use crate::*;

/// `FOR UPDATE SKIP LOCKED` picks the task instances: a claimer passes over rows another
/// claimer holds, and a row claimed since this statement began no longer matches when it is
/// re-checked under its lock, so no instance is claimed twice and no claimer waits.
pub(super) async fn claim(store: &PgStore, claim: &Claim) -> StoreResult<Vec<ClaimedAttempt>> {
    if claim.limit == 0 {
        return Ok(Vec::new());
    }
    let mut tx = store.tx().await?;
    let claimed = sqlx::query(
        "WITH picked AS ( \
            SELECT ti.id FROM task_instances ti JOIN dag_runs r ON r.pk = ti.run_pk \
            WHERE r.state = 'running' AND ti.queue = ANY($2) \
              AND (ti.state = 'queued' OR (ti.state = 'up_for_retry' AND ti.next_try_at <= $1)) \
            ORDER BY ti.priority DESC, ti.id LIMIT $3 \
            FOR UPDATE OF ti SKIP LOCKED \
         ), claimed AS ( \
            UPDATE task_instances ti SET state = 'running', try_number = ti.try_number + 1, started_at = $1, \
                ended_at = NULL, next_try_at = NULL \
            FROM picked WHERE ti.id = picked.id \
            RETURNING ti.id, ti.run_pk, ti.task_id, ti.map_index, ti.try_number, ti.max_tries, ti.timeout_ms, ti.priority \
         ) \
         SELECT * FROM claimed ORDER BY priority DESC, id",
    )
    .bind(claim.now)
    .bind(&claim.queues)
    .bind(i64::from(claim.limit))
    .fetch_all(&mut *tx)
    .await?;
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

/// The attempt's row, locked: log writes of one attempt take their sequence numbers one at a
/// time, and a result committed meanwhile is seen.
async fn lock_attempt(conn: &mut PgConnection, lease: &Lease) -> StoreResult<read::Leased> {
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
    sqlx::query(
        "INSERT INTO task_logs (attempt_id, seq, content, created_at) \
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM task_logs WHERE attempt_id = $1), $2, $3)",
    )
    .bind(lease.attempt_id)
    .bind(chunk)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn finish(store: &PgStore, finish: &FinishAttempt) -> StoreResult<FinishResult> {
    let mut tx = store.tx().await?;
    // the run's row first, as every transaction that changes the run takes its locks
    let run_pk: Option<i64> = sqlx::query_scalar("SELECT run_pk FROM task_attempts WHERE id = $1")
        .bind(finish.lease.attempt_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(run_pk) = run_pk else {
        return Err(StoreError::LeaseLost {
            attempt_id: finish.lease.attempt_id,
        });
    };
    lock_run(&mut tx, run_pk).await?;
    let leased = lock_attempt(&mut tx, &finish.lease).await?;
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
    let ti = sqlx::query("SELECT max_tries, retry_delay_ms, retry_exponential, max_retry_delay_ms FROM task_instances WHERE id = $1")
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
    sqlx::query(
        "UPDATE task_instances SET state = $1, next_try_at = $2, ended_at = $3 WHERE id = $4",
    )
    .bind(after.task_state.as_str())
    .bind(after.next_try_at)
    .bind(after.ended_at)
    .bind(leased.ti_id)
    .execute(&mut *tx)
    .await?;
    let progress = evaluate_in_tx(&mut tx, leased.run_pk, finish.now).await?;
    let wake = decide::wakes_workers(after.task_state, &progress);
    if wake {
        notify_work(&mut tx).await?;
    }
    tx.commit().await?;
    if wake {
        store.wakeups.wake();
    }
    Ok(FinishResult {
        task_state: after.task_state,
        progress,
    })
}
