//! What running as a cluster needs on PostgreSQL: lease checks, the zombie sweep and pools.

use chrono::{DateTime, Utc};

use super::{PgStore, attempts};
use crate::read;
use crate::*;

pub(super) async fn lost_leases(store: &PgStore, leases: &[Lease]) -> StoreResult<Vec<i64>> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = leases.iter().map(|l| l.attempt_id).collect();
    let tokens: Vec<&str> = leases.iter().map(|l| l.token.as_str()).collect();
    Ok(sqlx::query_scalar(
        "SELECT l.id FROM UNNEST($1::int8[], $2::text[]) AS l(id, token) \
         LEFT JOIN task_attempts a ON a.id = l.id AND a.lease_token = l.token AND a.state = 'running' \
         WHERE a.id IS NULL ORDER BY l.id",
    )
    .bind(&ids)
    .bind(&tokens)
    .fetch_all(&store.pool)
    .await?)
}

pub(super) async fn fail_zombies(
    store: &PgStore,
    sweep: &ZombieSweep,
) -> StoreResult<Vec<ZombieAttempt>> {
    let rows = sqlx::query(
        "SELECT a.id, a.run_pk, a.lease_token, a.worker_id, ti.task_id, ti.map_index \
         FROM task_attempts a JOIN task_instances ti ON ti.id = a.ti_id \
         WHERE a.state = 'running' AND a.heartbeat_at < $1 \
         ORDER BY a.id",
    )
    .bind(sweep.stale_before)
    .fetch_all(&store.pool)
    .await?;
    let mut failed = Vec::new();
    for row in &rows {
        let candidate = read::zombie_candidate(row)?;
        if let Some(zombie) = attempts::fail_zombie(store, &candidate, sweep).await? {
            failed.push(zombie);
        }
    }
    Ok(failed)
}

pub(super) async fn set_pool(
    store: &PgStore,
    pool: &PoolSlots,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO pools (name, slots, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET slots = excluded.slots, updated_at = excluded.updated_at",
    )
    .bind(&pool.name)
    .bind(read::saturating_i32(pool.slots))
    .bind(now)
    .execute(&store.pool)
    .await?;
    // this process claims within the pool from now on
    *store
        .pools_seen
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    // a pool that grew may let waiting tasks run
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(super::listen::CHANNEL)
        .execute(&store.pool)
        .await?;
    store.wakeups.wake();
    Ok(())
}

pub(super) async fn delete_pool(store: &PgStore, name: &str) -> StoreResult<bool> {
    let deleted = sqlx::query("DELETE FROM pools WHERE name = $1")
        .bind(name)
        .execute(&store.pool)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}

pub(super) async fn list_pools(store: &PgStore) -> StoreResult<Vec<PoolRecord>> {
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
