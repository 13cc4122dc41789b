//! The one-statement claim: while no pool has a size, a claim is a single data-modifying
//! statement (pick, mark running, insert the attempts with fresh leases, read their runs) in
//! one round trip, instead of a transaction of five.
//!
//! The pick walks the `task_instances_claimable` index (`state, queue, priority DESC, id`) in
//! order, once per queue and once for due retries, and stops after `limit` rows: its cost does
//! not grow with the number of queued instances. (A pick over `queue = ANY(…)` with `state =
//! 'queued' OR state = 'up_for_retry'`, joined to the runs, read and sorted every queued row
//! on each claim: about 1 ms per claim with 1,000 queued, n² over a wide fan-out.) The run's
//! state is a per-row sub-select so the planner keeps the ordered index scan. Due retries
//! locked but not picked (the limit taken by queued ones) are released when the statement
//! commits.

use std::time::{Duration, Instant};

use sqlx::postgres::PgRow;

use super::PgStore;
use crate::read::{self, Columns, run_columns};
use crate::*;

/// Claims up to `claim.limit` task instances when the `pools` table is empty; claims nothing
/// when it is not (the caller then takes the path that counts pool slots under their locks).
pub(super) async fn claim_without_pools(
    store: &PgStore,
    claim: &Claim,
) -> StoreResult<Vec<ClaimedAttempt>> {
    let rows: Vec<PgRow> = sqlx::query(concat!(
        "WITH fresh AS ( \
            SELECT x.id, x.priority FROM UNNEST($2::text[]) AS q(name) CROSS JOIN LATERAL ( \
                SELECT ti.id, ti.priority FROM task_instances ti \
                WHERE ti.state = 'queued' AND ti.queue = q.name \
                  AND (SELECT r.state FROM dag_runs r WHERE r.pk = ti.run_pk) = 'running' \
                  AND NOT EXISTS (SELECT 1 FROM pools) \
                ORDER BY ti.priority DESC, ti.id LIMIT $3 \
                FOR UPDATE OF ti SKIP LOCKED) x \
         ), retried AS ( \
            SELECT x.id, x.priority FROM UNNEST($2::text[]) AS q(name) CROSS JOIN LATERAL ( \
                SELECT ti.id, ti.priority FROM task_instances ti \
                WHERE ti.state IN ('up_for_retry', 'up_for_reschedule') AND ti.queue = q.name AND ti.next_try_at <= $1 \
                  AND (SELECT r.state FROM dag_runs r WHERE r.pk = ti.run_pk) = 'running' \
                  AND NOT EXISTS (SELECT 1 FROM pools) \
                ORDER BY ti.priority DESC, ti.id LIMIT $3 \
                FOR UPDATE OF ti SKIP LOCKED) x \
         ), picked AS ( \
            SELECT p.id FROM (SELECT * FROM fresh UNION ALL SELECT * FROM retried) p \
            ORDER BY p.priority DESC, p.id LIMIT $3 \
         ), claimed AS ( \
            UPDATE task_instances ti SET state = 'running', \
                try_number = ti.try_number + CASE WHEN ti.state = 'up_for_reschedule' THEN 0 ELSE 1 END, \
                started_at = CASE WHEN ti.state = 'up_for_reschedule' THEN ti.started_at ELSE $1 END, \
                ended_at = NULL, next_try_at = NULL \
            FROM picked WHERE ti.id = picked.id \
            RETURNING ti.id, ti.run_pk, ti.task_id, ti.map_index, ti.try_number, ti.max_tries, ti.timeout_ms, ti.priority, ti.started_at AS try_started_at \
         ), leased AS ( \
            INSERT INTO task_attempts (ti_id, run_pk, try_number, state, worker_id, lease_token, started_at, heartbeat_at) \
            SELECT c.id, c.run_pk, c.try_number, 'running', $4, gen_random_uuid()::text, $1, $1 FROM claimed c \
            ON CONFLICT (ti_id, try_number) DO UPDATE SET state = 'running', worker_id = EXCLUDED.worker_id, \
                lease_token = EXCLUDED.lease_token, heartbeat_at = EXCLUDED.heartbeat_at \
            RETURNING ti_id, id AS attempt_id, lease_token \
         ) \
         SELECT c.id, c.task_id, c.map_index, c.try_number, c.max_tries, c.timeout_ms, c.try_started_at, \
                l.attempt_id, l.lease_token, ",
        run_columns!(),
        " FROM claimed c JOIN leased l ON l.ti_id = c.id JOIN dag_runs ON dag_runs.pk = c.run_pk \
         ORDER BY c.priority DESC, c.id"
    ))
    .bind(claim.now)
    .bind(&claim.queues)
    .bind(i64::from(claim.limit))
    .bind(&claim.worker_id)
    .fetch_all(&store.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let run = read::run(row)?;
            let lease = Lease {
                attempt_id: row.int("attempt_id")?,
                token: row.text("lease_token")?,
            };
            read::claimed_attempt(row, &run, lease)
        })
        .collect()
}

/// How long a look at the `pools` table is trusted. The one-statement claim checks the table
/// itself and never exceeds a pool; this only decides whether a short claim also tries the
/// pool-counting path, so a pool sized meanwhile is honoured within this delay.
const POOLS_SEEN_FOR: Duration = Duration::from_secs(1);

/// Whether any pool has a size, looked up at most once per `POOLS_SEEN_FOR`: an idle worker's
/// empty claim then costs one statement, not a transaction more.
pub(super) async fn pools_exist(store: &PgStore) -> StoreResult<bool> {
    let seen = *store
        .pools_seen
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((at, exist)) = seen
        && at.elapsed() < POOLS_SEEN_FOR
    {
        return Ok(exist);
    }
    let exist: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pools)")
        .fetch_one(&store.pool)
        .await?;
    *store
        .pools_seen
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((Instant::now(), exist));
    Ok(exist)
}
