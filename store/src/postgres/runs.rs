//! Run transitions on PostgreSQL: creation, start, evaluation and cancellation.

use chrono::{DateTime, Utc};
use sluice_core::RunState;
use sqlx::PgConnection;
use sqlx::types::Json;

use super::{PgStore, notify_cancel, notify_work};
use crate::decide::{self, TaskRow, TaskSettings};
use crate::read::{self, not_in_open_backfill, run_columns};
use crate::*;

/// `INSERT … ON CONFLICT DO NOTHING` on both unique keys: a scheduler racing another one
/// waits on the unique index until the other commits, then finds the run and returns `None`.
pub(super) async fn create_if_absent(
    store: &PgStore,
    run: &NewRun,
) -> StoreResult<Option<RunRecord>> {
    let mut tx = store.tx().await?;
    let row = sqlx::query(concat!(
        "INSERT INTO dag_runs (dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, \
         dag_hash, params, triggered_by, queued_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT DO NOTHING RETURNING ", run_columns!(), ""
    ))
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
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let record = read::run(&row)?;
    insert_task_instances(&mut tx, record.pk, &run.tasks).await?;
    tx.commit().await?;
    Ok(Some(record))
}

/// All task instances of a new run in one statement, ids in the given (file) order.
pub(super) async fn insert_task_instances(
    conn: &mut PgConnection,
    run_pk: i64,
    tasks: &[NewTaskInstance],
) -> StoreResult<()> {
    let settings: Vec<TaskSettings> = tasks.iter().map(TaskSettings::of).collect();
    sqlx::query(
        "INSERT INTO task_instances (run_pk, task_id, map_index, state, max_tries, retry_delay_ms, retry_exponential, \
         max_retry_delay_ms, timeout_ms, upstream, trigger_rule, queue, pool, priority) \
         SELECT $1, t.task_id, t.map_index, 'pending', t.max_tries, t.retry_delay_ms, t.retry_exponential, \
                t.max_retry_delay_ms, t.timeout_ms, t.upstream, t.trigger_rule, t.queue, t.pool, t.priority \
         FROM UNNEST($2::text[], $3::int4[], $4::int4[], $5::int8[], $6::bool[], $7::int8[], $8::int8[], \
                     $9::jsonb[], $10::text[], $11::text[], $12::text[], $13::int4[]) WITH ORDINALITY \
              AS t(task_id, map_index, max_tries, retry_delay_ms, retry_exponential, max_retry_delay_ms, timeout_ms, \
                   upstream, trigger_rule, queue, pool, priority, position) \
         ORDER BY t.position",
    )
    .bind(run_pk)
    .bind(tasks.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.map_index).collect::<Vec<_>>())
    .bind(settings.iter().map(|s| s.max_tries).collect::<Vec<_>>())
    .bind(settings.iter().map(|s| s.retry_delay_ms).collect::<Vec<_>>())
    .bind(settings.iter().map(|s| s.retry_exponential).collect::<Vec<_>>())
    .bind(settings.iter().map(|s| s.max_retry_delay_ms).collect::<Vec<_>>())
    .bind(settings.iter().map(|s| s.timeout_ms).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| Json(&t.upstream)).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.trigger_rule.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.queue.as_str()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.pool.as_deref()).collect::<Vec<_>>())
    .bind(tasks.iter().map(|t| t.priority).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn start_queued(
    store: &PgStore,
    dag_id: &str,
    max_active_runs: u32,
    now: DateTime<Utc>,
) -> StoreResult<Vec<RunRecord>> {
    let mut tx = store.tx().await?;
    // two schedulers starting runs of one DAG at once would both see room for the same runs
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('sluice:start_queued_runs:' || $1, 0))",
    )
    .bind(dag_id)
    .execute(&mut *tx)
    .await?;
    let running: i64 = sqlx::query_scalar(concat!(
        "SELECT COUNT(*) FROM dag_runs WHERE dag_id = $1 AND state = 'running' AND ",
        not_in_open_backfill!()
    ))
    .bind(dag_id)
    .fetch_one(&mut *tx)
    .await?;
    let room = i64::from(max_active_runs) - running;
    if room <= 0 {
        return Ok(Vec::new());
    }
    // a run being cancelled right now is skipped rather than waited for
    let rows = sqlx::query(concat!(
        "UPDATE dag_runs SET state = 'running', started_at = $1 WHERE pk IN \
         (SELECT pk FROM dag_runs WHERE dag_id = $2 AND state = 'queued' AND ",
        not_in_open_backfill!(),
        " ORDER BY logical_date LIMIT $3 \
          FOR NO KEY UPDATE SKIP LOCKED) \
         RETURNING ",
        run_columns!(),
        ""
    ))
    .bind(now)
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
    if queued > 0 {
        notify_work(&mut tx).await?;
    }
    tx.commit().await?;
    if queued > 0 {
        store.wakeups.wake();
    }
    // a run with no tasks may have finished at once
    let mut refreshed = Vec::with_capacity(started.len());
    for run in started {
        refreshed.push(store.get_run_by_pk(run.pk).await?.unwrap_or(run));
    }
    Ok(refreshed)
}

pub(super) async fn evaluate(
    store: &PgStore,
    run_pk: i64,
    now: DateTime<Utc>,
) -> StoreResult<RunProgress> {
    let mut tx = store.tx().await?;
    let progress = evaluate_in_tx(&mut tx, run_pk, now).await?;
    if progress.queued > 0 {
        notify_work(&mut tx).await?;
    }
    tx.commit().await?;
    if progress.queued > 0 {
        store.wakeups.wake();
    }
    Ok(progress)
}

/// Locks the run's row (later evaluations of it wait and then see this one's changes), then
/// decides its pending task instances and finishes it when every task is settled. Runs inside
/// the caller's transaction; the caller notifies when anything was queued.
pub(super) async fn evaluate_in_tx(
    conn: &mut PgConnection,
    run_pk: i64,
    now: DateTime<Utc>,
) -> StoreResult<RunProgress> {
    let run_state = lock_run(conn, run_pk).await?;
    if run_state.as_deref() != Some(RunState::Running.as_str()) {
        return Ok(RunProgress::default());
    }
    let rows = sqlx::query("SELECT id, task_id, map_index, state, upstream, trigger_rule FROM task_instances WHERE run_pk = $1 ORDER BY id")
        .bind(run_pk)
        .fetch_all(&mut *conn)
        .await?;
    let tasks = rows
        .iter()
        .map(TaskRow::read)
        .collect::<StoreResult<Vec<_>>>()?;
    let plan = decide::plan_run(&tasks, now);
    if !plan.changes.is_empty() {
        sqlx::query(
            "UPDATE task_instances ti SET state = c.state, queued_at = COALESCE(c.queued_at, ti.queued_at), ended_at = c.ended_at \
             FROM UNNEST($1::int8[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS c(id, state, queued_at, ended_at) \
             WHERE ti.id = c.id AND ti.state = 'pending'",
        )
        .bind(plan.changes.iter().map(|c| c.id).collect::<Vec<_>>())
        .bind(plan.changes.iter().map(|c| c.state.as_str()).collect::<Vec<_>>())
        .bind(plan.changes.iter().map(|c| c.queued_at).collect::<Vec<_>>())
        .bind(plan.changes.iter().map(|c| c.ended_at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if let Some(outcome) = plan.outcome {
        sqlx::query(
            "UPDATE dag_runs SET state = $1, ended_at = $2 WHERE pk = $3 AND state = 'running'",
        )
        .bind(outcome.as_str())
        .bind(now)
        .bind(run_pk)
        .execute(&mut *conn)
        .await?;
    }
    Ok(plan.progress)
}

/// The run's state, its row locked until the transaction ends. `FOR NO KEY UPDATE` leaves
/// claims free to insert attempts that reference the run.
pub(super) async fn lock_run(conn: &mut PgConnection, run_pk: i64) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT state FROM dag_runs WHERE pk = $1 FOR NO KEY UPDATE")
            .bind(run_pk)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

pub(super) async fn cancel(store: &PgStore, run_pk: i64, now: DateTime<Utc>) -> StoreResult<bool> {
    let mut tx = store.tx().await?;
    let result = sqlx::query("UPDATE dag_runs SET state = 'cancelled', ended_at = $1 WHERE pk = $2 AND state IN ('queued', 'running')")
        .bind(now)
        .bind(run_pk)
        .execute(&mut *tx)
        .await?;
    if result.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE task_instances SET state = 'cancelled', ended_at = $1 \
         WHERE run_pk = $2 AND state IN ('pending', 'queued', 'running', 'up_for_retry', 'up_for_reschedule')",
    )
    .bind(now)
    .bind(run_pk)
    .execute(&mut *tx)
    .await?;
    let stopped = sqlx::query("UPDATE task_attempts SET state = 'cancelled', ended_at = $1, error = 'the run was cancelled' WHERE run_pk = $2 AND state IN ('running', 'up_for_reschedule')")
        .bind(now)
        .bind(run_pk)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if stopped > 0 {
        notify_cancel(&mut tx).await?;
    }
    tx.commit().await?;
    if stopped > 0 {
        store.wakeups.cancelled();
    }
    Ok(true)
}
