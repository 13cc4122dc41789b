//! Schedulers' loop times on PostgreSQL.

use sqlx::{PgPool, Row};

use crate::StoreResult;
use crate::scheduler_records::{FORGET_AFTER, SchedulerRecord, SchedulerTick, count};

pub(crate) async fn record_scheduler_tick(pool: &PgPool, tick: &SchedulerTick) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO schedulers (scheduler_id, host, started_at, last_tick_at, last_tick_seconds, ticks, tick_seconds_total, failed_ticks) \
         VALUES ($1, $2, $3, $4, $5, 1, $5, $6) \
         ON CONFLICT (scheduler_id) DO UPDATE SET host = excluded.host, last_tick_at = excluded.last_tick_at, \
         last_tick_seconds = excluded.last_tick_seconds, ticks = schedulers.ticks + 1, \
         tick_seconds_total = schedulers.tick_seconds_total + excluded.tick_seconds_total, \
         failed_ticks = schedulers.failed_ticks + excluded.failed_ticks",
    )
    .bind(&tick.scheduler_id)
    .bind(&tick.host)
    .bind(tick.started_at)
    .bind(tick.at)
    .bind(tick.seconds)
    .bind(tick.outcome.failed_count())
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM schedulers WHERE last_tick_at < $1")
        .bind(tick.at - FORGET_AFTER)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn list_schedulers(pool: &PgPool) -> StoreResult<Vec<SchedulerRecord>> {
    let rows = sqlx::query("SELECT * FROM schedulers ORDER BY scheduler_id")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(SchedulerRecord {
                scheduler_id: row.try_get("scheduler_id")?,
                host: row.try_get("host")?,
                started_at: row.try_get("started_at")?,
                last_tick_at: row.try_get("last_tick_at")?,
                last_tick_seconds: row.try_get("last_tick_seconds")?,
                ticks: count("ticks", row.try_get("ticks")?)?,
                tick_seconds_total: row.try_get("tick_seconds_total")?,
                failed_ticks: count("failed_ticks", row.try_get("failed_ticks")?)?,
            })
        })
        .collect()
}
