//! `foreach` from a template on SQLite: a placeholder's expansion into its mapped instances,
//! and the item each mapped instance was expanded with.

use serde_json::Value;
use sluice_core::TaskState;

use super::attempts::append_in_tx;
use super::{SqliteStore, check_lease, evaluate_in_tx, micros, to_json};
use crate::mapping_records::ExpandTask;
use crate::read::Columns;
use crate::*;

/// One `BEGIN IMMEDIATE` transaction: the lease checked, the placeholder's attempt ended, its
/// mapped instances created queued (or re-queued, after a clear), the run evaluated.
pub(super) async fn expand_mapped_task(
    store: &SqliteStore,
    expand: &ExpandTask,
) -> StoreResult<FinishResult> {
    let mut tx = store.write_tx().await?;
    let leased = check_lease(&mut tx, &expand.lease).await?;
    let placeholder = sqlx::query("SELECT task_id, map_index FROM task_instances WHERE id = ?")
        .bind(leased.ti_id)
        .fetch_one(&mut *tx)
        .await?;
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
    let now = micros(expand.now);
    sqlx::query("UPDATE task_attempts SET state = 'success', ended_at = ? WHERE id = ?")
        .bind(now)
        .bind(expand.lease.attempt_id)
        .execute(&mut *tx)
        .await?;
    let task_state = if expand.items.is_empty() {
        TaskState::Skipped
    } else {
        TaskState::Success
    };
    sqlx::query(
        "UPDATE task_instances SET state = ?, next_try_at = NULL, ended_at = ? WHERE id = ?",
    )
    .bind(task_state.as_str())
    .bind(now)
    .bind(leased.ti_id)
    .execute(&mut *tx)
    .await?;
    for (index, item) in expand.items.iter().enumerate() {
        let map_index = i32::try_from(index).map_err(|_| {
            StoreError::Conflict(format!("`foreach` of `{task_id}` has too many items"))
        })?;
        // a cleared task expands again over its earlier instances: they take the new items
        sqlx::query(
            "INSERT INTO task_instances (run_pk, task_id, map_index, state, max_tries, retry_delay_ms, \
                retry_exponential, max_retry_delay_ms, timeout_ms, upstream, trigger_rule, queue, pool, \
                priority, queued_at, item) \
             SELECT run_pk, task_id, ?1, 'queued', max_tries, retry_delay_ms, retry_exponential, \
                max_retry_delay_ms, timeout_ms, upstream, trigger_rule, queue, pool, priority, ?2, ?3 \
             FROM task_instances WHERE id = ?4 \
             ON CONFLICT (run_pk, task_id, map_index) DO UPDATE SET \
                item = CASE WHEN state = 'pending' THEN excluded.item ELSE item END, \
                queued_at = CASE WHEN state = 'pending' THEN excluded.queued_at ELSE queued_at END, \
                state = CASE WHEN state = 'pending' THEN 'queued' ELSE state END",
        )
        .bind(map_index)
        .bind(now)
        .bind(to_json(item))
        .bind(leased.ti_id)
        .execute(&mut *tx)
        .await?;
    }
    // instances of an earlier, longer expansion that the new list no longer has
    sqlx::query(
        "UPDATE task_instances SET state = 'skipped', ended_at = ? \
         WHERE run_pk = ? AND task_id = ? AND map_index >= ? AND state = 'pending'",
    )
    .bind(now)
    .bind(leased.run_pk)
    .bind(&task_id)
    .bind(i64::try_from(expand.items.len()).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    let mut progress = evaluate_in_tx(&mut tx, leased.run_pk, expand.now).await?;
    progress.queued = progress
        .queued
        .saturating_add(u32::try_from(expand.items.len()).unwrap_or(u32::MAX));
    tx.commit().await?;
    if progress.queued > 0 {
        store.wakeups.wake();
    }
    Ok(FinishResult {
        task_state,
        progress,
    })
}

pub(super) async fn mapped_item(store: &SqliteStore, ti_id: i64) -> StoreResult<Option<Value>> {
    let item: Option<Option<String>> =
        sqlx::query_scalar("SELECT item FROM task_instances WHERE id = ?")
            .bind(ti_id)
            .fetch_optional(&store.pool)
            .await?;
    crate::mapping_records::parse_item(item.flatten())
}
