//! Backfills and clearing on PostgreSQL. Clearing locks the run's row first, as every
//! transaction that decides a run's task instances does; starting a backfill's runs locks the
//! backfill's row, so two schedulers never both see room for the same runs.

use chrono::{DateTime, Utc};
use sluice_core::BackfillState;
use sqlx::PgConnection;
use sqlx::types::Json;

use super::runs::{evaluate_in_tx, insert_task_instances, lock_run};
use super::{PgStore, notify_work};
use crate::read::{self, run_columns};
use crate::*;

pub(super) async fn runs_in_range(
    store: &PgStore,
    range: &RunRange,
) -> StoreResult<Vec<RunRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_runs WHERE dag_id = $1 AND logical_date >= $2 AND logical_date < $3 ORDER BY logical_date"
    ))
    .bind(&range.dag_id)
    .bind(range.start)
    .bind(range.end)
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(read::run).collect()
}

pub(super) async fn clear_tasks(store: &PgStore, clear: &ClearTasks) -> StoreResult<u32> {
    let mut tx = store.tx().await?;
    let cleared = clear_in_tx(&mut tx, clear, None).await?;
    if cleared > 0 {
        notify_work(&mut tx).await?;
    }
    tx.commit().await?;
    if cleared > 0 {
        store.wakeups.wake();
    }
    Ok(cleared)
}

/// Clears the task instances and puts the run back to work (see `Store::clear_tasks`); with
/// `backfill_id` the run joins that backfill.
async fn clear_in_tx(
    conn: &mut PgConnection,
    clear: &ClearTasks,
    backfill_id: Option<i64>,
) -> StoreResult<u32> {
    if lock_run(conn, clear.run_pk).await?.is_none() {
        return Ok(0);
    }
    let result = sqlx::query(
        "UPDATE task_instances SET state = 'pending', max_tries = max_tries - try_base + try_number, \
         try_base = try_number, next_try_at = NULL, queued_at = NULL, started_at = NULL, ended_at = NULL \
         WHERE run_pk = $1 AND task_id = ANY($2) \
         AND state IN ('success', 'failed', 'skipped', 'upstream_failed', 'cancelled')",
    )
    .bind(clear.run_pk)
    .bind(&clear.task_ids)
    .execute(&mut *conn)
    .await?;
    let cleared = u32::try_from(result.rows_affected()).unwrap_or(u32::MAX);
    if cleared == 0 {
        return Ok(0);
    }
    sqlx::query(
        "UPDATE dag_runs SET state = CASE WHEN state = 'running' THEN 'running' ELSE 'queued' END, \
         ended_at = NULL, backfill_id = COALESCE($1, backfill_id) WHERE pk = $2",
    )
    .bind(backfill_id)
    .bind(clear.run_pk)
    .execute(&mut *conn)
    .await?;
    evaluate_in_tx(conn, clear.run_pk, clear.now).await?;
    Ok(cleared)
}

pub(super) async fn create(store: &PgStore, backfill: &NewBackfill) -> StoreResult<BackfillRecord> {
    let mut tx = store.tx().await?;
    let row = sqlx::query(
        "INSERT INTO backfills (dag_id, range_start, range_end, max_active_runs, reverse, options, state, triggered_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8) ON CONFLICT DO NOTHING RETURNING *",
    )
    .bind(&backfill.dag_id)
    .bind(backfill.range.start)
    .bind(backfill.range.end)
    .bind(read::saturating_i32(backfill.max_active_runs))
    .bind(backfill.reverse)
    .bind(Json(&backfill.options))
    .bind(&backfill.triggered_by)
    .bind(backfill.now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(StoreError::Conflict(format!(
            "DAG `{}` already has an open backfill",
            backfill.dag_id
        )));
    };
    let record = read::backfill(&row)?;
    for run in &backfill.create {
        let pk: Option<i64> = sqlx::query_scalar(
            "INSERT INTO dag_runs (dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, \
             dag_hash, params, triggered_by, queued_at, backfill_id) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT DO NOTHING RETURNING pk",
        )
        .bind(&run.dag_id)
        .bind(&run.run_id)
        .bind(run.run_type.as_str())
        .bind(run.logical_date)
        .bind(run.data_interval.start)
        .bind(run.data_interval.end)
        .bind(&run.dag_hash)
        .bind(Json(&run.params))
        .bind(&run.triggered_by)
        .bind(run.now)
        .bind(record.id)
        .fetch_optional(&mut *tx)
        .await?;
        // a run created since the plan was made is left to whoever created it
        if let Some(pk) = pk {
            insert_task_instances(&mut tx, pk, &run.tasks).await?;
        }
    }
    let mut cleared = 0;
    for clear in &backfill.rerun {
        cleared += clear_in_tx(&mut tx, clear, Some(record.id)).await?;
    }
    if cleared > 0 {
        notify_work(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(record)
}

pub(super) async fn get(store: &PgStore, id: i64) -> StoreResult<Option<BackfillRecord>> {
    let row = sqlx::query("SELECT * FROM backfills WHERE id = $1")
        .bind(id)
        .fetch_optional(&store.pool)
        .await?;
    row.as_ref().map(read::backfill).transpose()
}

pub(super) async fn open(store: &PgStore) -> StoreResult<Vec<BackfillRecord>> {
    let rows = sqlx::query("SELECT * FROM backfills WHERE state = 'running' ORDER BY id")
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(read::backfill).collect()
}

pub(super) async fn progress(store: &PgStore, id: i64) -> StoreResult<BackfillProgress> {
    let rows = sqlx::query(
        "SELECT state, COUNT(*) AS n FROM dag_runs WHERE backfill_id = $1 GROUP BY state",
    )
    .bind(id)
    .fetch_all(&store.pool)
    .await?;
    read::backfill_progress(&rows)
}

pub(super) async fn start_runs(
    store: &PgStore,
    id: i64,
    now: DateTime<Utc>,
) -> StoreResult<BackfillStep> {
    let mut tx = store.tx().await?;
    let Some(row) =
        sqlx::query("SELECT * FROM backfills WHERE id = $1 AND state = 'running' FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(BackfillStep::default());
    };
    let backfill = read::backfill(&row)?;
    let running: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM dag_runs WHERE backfill_id = $1 AND state = 'running'",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let room = i64::from(backfill.max_active_runs) - running;
    let mut step = BackfillStep::default();
    let mut queued = 0;
    if room > 0 {
        // a run being cancelled right now is skipped rather than waited for
        let sql = if backfill.reverse {
            concat!(
                "UPDATE dag_runs SET state = 'running', started_at = $1 WHERE pk IN \
                 (SELECT pk FROM dag_runs WHERE backfill_id = $2 AND state = 'queued' ORDER BY logical_date DESC LIMIT $3 \
                  FOR NO KEY UPDATE SKIP LOCKED) RETURNING ",
                run_columns!()
            )
        } else {
            concat!(
                "UPDATE dag_runs SET state = 'running', started_at = $1 WHERE pk IN \
                 (SELECT pk FROM dag_runs WHERE backfill_id = $2 AND state = 'queued' ORDER BY logical_date LIMIT $3 \
                  FOR NO KEY UPDATE SKIP LOCKED) RETURNING ",
                run_columns!()
            )
        };
        let rows = sqlx::query(sql)
            .bind(now)
            .bind(id)
            .bind(room)
            .fetch_all(&mut *tx)
            .await?;
        step.started = rows.iter().map(read::run).collect::<StoreResult<_>>()?;
        step.started.sort_by_key(|r| r.logical_date);
        if backfill.reverse {
            step.started.reverse();
        }
        for run in &step.started {
            queued += evaluate_in_tx(&mut tx, run.pk, now).await?.queued;
        }
    }
    let rows = sqlx::query(
        "SELECT state, COUNT(*) AS n FROM dag_runs WHERE backfill_id = $1 GROUP BY state",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let progress = read::backfill_progress(&rows)?;
    if progress.queued + progress.running == 0 {
        let state = if progress.failed + progress.cancelled > 0 {
            BackfillState::Failed
        } else {
            BackfillState::Success
        };
        sqlx::query("UPDATE backfills SET state = $1, ended_at = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        step.finished = Some(state);
    }
    if queued > 0 {
        notify_work(&mut tx).await?;
    }
    tx.commit().await?;
    if queued > 0 {
        store.wakeups.wake();
    }
    Ok(step)
}

pub(super) async fn cancel(store: &PgStore, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
    let mut tx = store.tx().await?;
    let result = sqlx::query(
        "UPDATE backfills SET state = 'cancelled', ended_at = $1 WHERE id = $2 AND state = 'running'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() == 0 {
        return Ok(false);
    }
    // the run rows first, as every transaction deciding a run's tasks locks its run first
    let unfinished: Vec<i64> = sqlx::query_scalar(
        "UPDATE dag_runs SET state = 'cancelled', ended_at = $1 WHERE backfill_id = $2 AND state IN ('queued', 'running') RETURNING pk",
    )
    .bind(now)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE task_instances SET state = 'cancelled', ended_at = $1 \
         WHERE run_pk = ANY($2) AND state IN ('pending', 'queued', 'running', 'up_for_retry', 'up_for_reschedule')",
    )
    .bind(now)
    .bind(&unfinished)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE task_attempts SET state = 'cancelled', ended_at = $1, error = 'the backfill was cancelled' \
         WHERE run_pk = ANY($2) AND state IN ('running', 'up_for_reschedule')",
    )
    .bind(now)
    .bind(&unfinished)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
