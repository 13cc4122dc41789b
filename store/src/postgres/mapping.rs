//! `foreach` from a template on PostgreSQL: a placeholder's expansion into its mapped
//! instances, and the item each mapped instance was expanded with.

use serde_json::Value;
use sluice_core::TaskState;

use super::attempts::{append_in_tx, lock_attempt};
use super::runs::{evaluate_in_tx, lock_run};
use super::{PgStore, notify_work};
use crate::mapping_records::ExpandTask;
use crate::read::Columns;
use crate::*;

/// One transaction, the run's row locked first as every decision about its tasks does: the
/// lease checked, the placeholder's attempt ended, its mapped instances created queued (or
/// re-queued, after a clear), the run evaluated, `NOTIFY sluice_work` sent.
pub(super) async fn expand_mapped_task(
    store: &PgStore,
    expand: &ExpandTask,
) -> StoreResult<FinishResult> {
    let found: Option<(i64, i64)> =
        sqlx::query_as("SELECT run_pk, ti_id FROM task_attempts WHERE id = $1")
            .bind(expand.lease.attempt_id)
            .fetch_optional(&store.pool)
            .await?;
    let Some((run_pk, ti_id)) = found else {
        return Err(StoreError::LeaseLost {
            attempt_id: expand.lease.attempt_id,
        });
    };
    let mut tx = store.tx().await?;
    // the run, then the task instance, then the attempt: the order `cancel_run` takes them
    lock_run(&mut tx, run_pk).await?;
    let placeholder = sqlx::query(
        "SELECT task_id, map_index FROM task_instances WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(ti_id)
    .fetch_one(&mut *tx)
    .await?;
    let leased = lock_attempt(&mut tx, &expand.lease).await?;
    if placeholder.int32("map_index")? >= 0 {
        return Err(StoreError::Conflict(format!(
            "task instance {} is a mapped instance, not the placeholder of a `foreach` template",
            leased.ti_id
        )));
    }
    let task_id = placeholder.text("task_id")?;
    if !expand.log.is_empty() {
        append_in_tx(
            &mut tx,
            expand.lease.attempt_id,
            &expand.log,
            expand.now,
            store.options.log_cap_bytes,
        )
        .await?;
    }
    sqlx::query("UPDATE task_attempts SET state = 'success', ended_at = $1 WHERE id = $2")
        .bind(expand.now)
        .bind(expand.lease.attempt_id)
        .execute(&mut *tx)
        .await?;
    let task_state = if expand.items.is_empty() {
        TaskState::Skipped
    } else {
        TaskState::Success
    };
    sqlx::query(
        "UPDATE task_instances SET state = $1, next_try_at = NULL, ended_at = $2 WHERE id = $3",
    )
    .bind(task_state.as_str())
    .bind(expand.now)
    .bind(leased.ti_id)
    .execute(&mut *tx)
    .await?;
    let count = i32::try_from(expand.items.len()).map_err(|_| {
        StoreError::Conflict(format!("`foreach` of `{task_id}` has too many items"))
    })?;
    let items: Vec<String> = expand
        .items
        .iter()
        .map(|item| serde_json::to_string(item).expect("a JSON value always serializes"))
        .collect();
    // a cleared task expands again over its earlier instances: pending ones take the new items
    sqlx::query(
        "INSERT INTO task_instances AS t (run_pk, task_id, map_index, state, max_tries, retry_delay_ms, \
            retry_exponential, max_retry_delay_ms, timeout_ms, upstream, trigger_rule, queue, pool, \
            priority, queued_at, item) \
         SELECT p.run_pk, p.task_id, m.map_index, 'queued', p.max_tries, p.retry_delay_ms, \
            p.retry_exponential, p.max_retry_delay_ms, p.timeout_ms, p.upstream, p.trigger_rule, \
            p.queue, p.pool, p.priority, $2, m.item \
         FROM task_instances p, UNNEST($3::int4[], $4::text[]) AS m(map_index, item) WHERE p.id = $1 \
         ON CONFLICT (run_pk, task_id, map_index) DO UPDATE SET \
            item = CASE WHEN t.state = 'pending' THEN excluded.item ELSE t.item END, \
            queued_at = CASE WHEN t.state = 'pending' THEN excluded.queued_at ELSE t.queued_at END, \
            state = CASE WHEN t.state = 'pending' THEN 'queued' ELSE t.state END",
    )
    .bind(leased.ti_id)
    .bind(expand.now)
    .bind((0..count).collect::<Vec<i32>>())
    .bind(items)
    .execute(&mut *tx)
    .await?;
    // instances of an earlier, longer expansion that the new list no longer has
    sqlx::query(
        "UPDATE task_instances SET state = 'skipped', ended_at = $1 \
         WHERE run_pk = $2 AND task_id = $3 AND map_index >= $4 AND state = 'pending'",
    )
    .bind(expand.now)
    .bind(leased.run_pk)
    .bind(&task_id)
    .bind(count)
    .execute(&mut *tx)
    .await?;
    let mut progress = evaluate_in_tx(&mut tx, leased.run_pk, expand.now).await?;
    progress.queued = progress
        .queued
        .saturating_add(u32::try_from(count).unwrap_or_default());
    if progress.queued > 0 {
        notify_work(&mut tx).await?;
    }
    tx.commit().await?;
    if progress.queued > 0 {
        store.wakeups.wake();
    }
    Ok(FinishResult {
        task_state,
        progress,
    })
}

pub(super) async fn mapped_item(store: &PgStore, ti_id: i64) -> StoreResult<Option<Value>> {
    let item: Option<Option<String>> =
        sqlx::query_scalar("SELECT item FROM task_instances WHERE id = $1")
            .bind(ti_id)
            .fetch_optional(&store.pool)
            .await?;
    crate::mapping_records::parse_item(item.flatten())
}
