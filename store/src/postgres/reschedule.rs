//! Sensors in `mode: reschedule` on PostgreSQL: a poke that frees the worker's slot.

use sqlx::PgPool;

use crate::reschedule_records::RescheduleAttempt;
use crate::{StoreError, StoreResult};

pub(crate) async fn reschedule_attempt(
    pool: &PgPool,
    reschedule: &RescheduleAttempt,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    let lost = || StoreError::LeaseLost {
        attempt_id: reschedule.lease.attempt_id,
    };
    // the task instance first, then its attempt: the order `cancel_run` locks them in
    let ti_id: Option<i64> = sqlx::query_scalar(
        "UPDATE task_instances SET state = 'up_for_reschedule', next_try_at = $1 \
         WHERE state = 'running' AND id = \
             (SELECT ti_id FROM task_attempts WHERE id = $2 AND lease_token = $3 AND state = 'running') \
         RETURNING id",
    )
    .bind(reschedule.next_poke_at)
    .bind(reschedule.lease.attempt_id)
    .bind(&reschedule.lease.token)
    .fetch_optional(&mut *tx)
    .await?;
    let ti_id = ti_id.ok_or_else(lost)?;
    let moved = sqlx::query(
        "UPDATE task_attempts SET state = 'up_for_reschedule', heartbeat_at = $1 \
         WHERE id = $2 AND ti_id = $3 AND lease_token = $4 AND state = 'running'",
    )
    .bind(reschedule.now)
    .bind(reschedule.lease.attempt_id)
    .bind(ti_id)
    .bind(&reschedule.lease.token)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Err(lost());
    }
    tx.commit().await?;
    Ok(())
}
