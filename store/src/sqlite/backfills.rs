//! Backfills and clearing on SQLite: every write is one `BEGIN IMMEDIATE` transaction, so
//! they are serialized with claims and results as every other write is.

use chrono::{DateTime, Utc};
use sluice_core::BackfillState;
use sqlx::SqliteConnection;

use super::{SqliteStore, evaluate_in_tx, insert_task_instances, micros, to_json};
use crate::read::{self, run_columns};
use crate::*;

pub(super) async fn runs_in_range(
    store: &SqliteStore,
    range: &RunRange,
) -> StoreResult<Vec<RunRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_runs WHERE dag_id = ? AND logical_date >= ? AND logical_date < ? ORDER BY logical_date"
    ))
    .bind(&range.dag_id)
    .bind(micros(range.start))
    .bind(micros(range.end))
    .fetch_all(&store.pool)
    .await?;
    rows.iter().map(read::run).collect()
}

pub(super) async fn clear_tasks(store: &SqliteStore, clear: &ClearTasks) -> StoreResult<u32> {
    let mut tx = store.write_tx().await?;
    let cleared = clear_in_tx(&mut tx, clear, None).await?;
    tx.commit().await?;
    if cleared > 0 {
        store.wakeups.wake();
    }
    Ok(cleared)
}

/// Clears the task instances and puts the run back to work (see `Store::clear_tasks`); with
/// `backfill_id` the run joins that backfill.
async fn clear_in_tx(
    conn: &mut SqliteConnection,
    clear: &ClearTasks,
    backfill_id: Option<i64>,
) -> StoreResult<u32> {
    let result = sqlx::query(
        "UPDATE task_instances SET state = 'pending', max_tries = max_tries - try_base + try_number, \
         try_base = try_number, next_try_at = NULL, queued_at = NULL, started_at = NULL, ended_at = NULL \
         WHERE run_pk = ? AND task_id IN (SELECT value FROM json_each(?)) \
         AND state IN ('success', 'failed', 'skipped', 'upstream_failed', 'cancelled')",
    )
    .bind(clear.run_pk)
    .bind(to_json(&clear.task_ids))
    .execute(&mut *conn)
    .await?;
    let cleared = u32::try_from(result.rows_affected()).unwrap_or(u32::MAX);
    if cleared == 0 {
        return Ok(0);
    }
    sqlx::query(
        "UPDATE dag_runs SET state = CASE WHEN state = 'running' THEN 'running' ELSE 'queued' END, \
         ended_at = NULL, backfill_id = COALESCE(?, backfill_id) WHERE pk = ?",
    )
    .bind(backfill_id)
    .bind(clear.run_pk)
    .execute(&mut *conn)
    .await?;
    evaluate_in_tx(conn, clear.run_pk, clear.now).await?;
    Ok(cleared)
}

pub(super) async fn create(
    store: &SqliteStore,
    backfill: &NewBackfill,
) -> StoreResult<BackfillRecord> {
    let mut tx = store.write_tx().await?;
    let row = sqlx::query(
        "INSERT INTO backfills (dag_id, range_start, range_end, max_active_runs, reverse, options, state, triggered_by, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?) ON CONFLICT DO NOTHING RETURNING *",
    )
    .bind(&backfill.dag_id)
    .bind(micros(backfill.range.start))
    .bind(micros(backfill.range.end))
    .bind(i64::from(backfill.max_active_runs))
    .bind(backfill.reverse)
    .bind(to_json(&backfill.options))
    .bind(&backfill.triggered_by)
    .bind(micros(backfill.now))
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
             dag_hash, params, triggered_by, queued_at, backfill_id) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING RETURNING pk",
        )
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
        .bind(record.id)
        .fetch_optional(&mut *tx)
        .await?;
        // a run created since the plan was made is left to whoever created it
        if let Some(pk) = pk {
            insert_task_instances(&mut tx, pk, &run.tasks).await?;
        }
    }
    for clear in &backfill.rerun {
        clear_in_tx(&mut tx, clear, Some(record.id)).await?;
    }
    tx.commit().await?;
    Ok(record)
}

pub(super) async fn get(store: &SqliteStore, id: i64) -> StoreResult<Option<BackfillRecord>> {
    let row = sqlx::query("SELECT * FROM backfills WHERE id = ?")
        .bind(id)
        .fetch_optional(&store.pool)
        .await?;
    row.as_ref().map(read::backfill).transpose()
}

pub(super) async fn open(store: &SqliteStore) -> StoreResult<Vec<BackfillRecord>> {
    let rows = sqlx::query("SELECT * FROM backfills WHERE state = 'running' ORDER BY id")
        .fetch_all(&store.pool)
        .await?;
    rows.iter().map(read::backfill).collect()
}

pub(super) async fn progress(store: &SqliteStore, id: i64) -> StoreResult<BackfillProgress> {
    let rows = sqlx::query(
        "SELECT state, COUNT(*) AS n FROM dag_runs WHERE backfill_id = ? GROUP BY state",
    )
    .bind(id)
    .fetch_all(&store.pool)
    .await?;
    read::backfill_progress(&rows)
}

pub(super) async fn start_runs(
    store: &SqliteStore,
    id: i64,
    now: DateTime<Utc>,
) -> StoreResult<BackfillStep> {
    let mut tx = store.write_tx().await?;
    let Some(row) = sqlx::query("SELECT * FROM backfills WHERE id = ? AND state = 'running'")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(BackfillStep::default());
    };
    let backfill = read::backfill(&row)?;
    let running: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM dag_runs WHERE backfill_id = ? AND state = 'running'",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let room = i64::from(backfill.max_active_runs) - running;
    let mut step = BackfillStep::default();
    if room > 0 {
        let sql = if backfill.reverse {
            concat!(
                "UPDATE dag_runs SET state = 'running', started_at = ? WHERE pk IN \
                 (SELECT pk FROM dag_runs WHERE backfill_id = ? AND state = 'queued' ORDER BY logical_date DESC LIMIT ?) \
                 RETURNING ",
                run_columns!()
            )
        } else {
            concat!(
                "UPDATE dag_runs SET state = 'running', started_at = ? WHERE pk IN \
                 (SELECT pk FROM dag_runs WHERE backfill_id = ? AND state = 'queued' ORDER BY logical_date LIMIT ?) \
                 RETURNING ",
                run_columns!()
            )
        };
        let rows = sqlx::query(sql)
            .bind(micros(now))
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
            evaluate_in_tx(&mut tx, run.pk, now).await?;
        }
    }
    let rows = sqlx::query(
        "SELECT state, COUNT(*) AS n FROM dag_runs WHERE backfill_id = ? GROUP BY state",
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
        sqlx::query("UPDATE backfills SET state = ?, ended_at = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(micros(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        step.finished = Some(state);
    }
    tx.commit().await?;
    if !step.started.is_empty() {
        store.wakeups.wake();
    }
    Ok(step)
}

pub(super) async fn cancel(store: &SqliteStore, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
    let mut tx = store.write_tx().await?;
    let now = micros(now);
    let result = sqlx::query(
        "UPDATE backfills SET state = 'cancelled', ended_at = ? WHERE id = ? AND state = 'running'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() == 0 {
        return Ok(false);
    }
    let unfinished: Vec<i64> = sqlx::query_scalar(
        "UPDATE dag_runs SET state = 'cancelled', ended_at = ? WHERE backfill_id = ? AND state IN ('queued', 'running') RETURNING pk",
    )
    .bind(now)
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let pks = to_json(&unfinished);
    sqlx::query(
        "UPDATE task_instances SET state = 'cancelled', ended_at = ? \
         WHERE run_pk IN (SELECT value FROM json_each(?)) AND state IN ('pending', 'queued', 'running', 'up_for_retry', 'up_for_reschedule')",
    )
    .bind(now)
    .bind(&pks)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE task_attempts SET state = 'cancelled', ended_at = ?, error = 'the backfill was cancelled' \
         WHERE run_pk IN (SELECT value FROM json_each(?)) AND state IN ('running', 'up_for_reschedule')",
    )
    .bind(now)
    .bind(&pks)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
