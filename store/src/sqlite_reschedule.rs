//! Sensors in `mode: reschedule` on SQLite: a poke that frees the worker's slot.

use sqlx::SqlitePool;

use crate::reschedule_records::RescheduleAttempt;
use crate::sqlite::micros;
use crate::{StoreError, StoreResult};

pub(crate) async fn reschedule_attempt(
    pool: &SqlitePool,
    reschedule: &RescheduleAttempt,
) -> StoreResult<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let lost = || StoreError::LeaseLost {
        attempt_id: reschedule.lease.attempt_id,
    };
    let ti_id: Option<i64> = sqlx::query_scalar(
        "UPDATE task_attempts SET state = 'up_for_reschedule', heartbeat_at = ? \
         WHERE id = ? AND lease_token = ? AND state = 'running' RETURNING ti_id",
    )
    .bind(micros(reschedule.now))
    .bind(reschedule.lease.attempt_id)
    .bind(&reschedule.lease.token)
    .fetch_optional(&mut *tx)
    .await?;
    let ti_id = ti_id.ok_or_else(lost)?;
    let moved = sqlx::query(
        "UPDATE task_instances SET state = 'up_for_reschedule', next_try_at = ? \
         WHERE id = ? AND state = 'running'",
    )
    .bind(micros(reschedule.next_poke_at))
    .bind(ti_id)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Err(lost());
    }
    tx.commit().await?;
    Ok(())
}
