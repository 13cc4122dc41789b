//! Schedulers' loop times on SQLite.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqlitePool};

use crate::scheduler_records::{FORGET_AFTER, SchedulerRecord, SchedulerTick, count};
use crate::sqlite::micros;
use crate::{StoreError, StoreResult};

pub(crate) async fn record_scheduler_tick(
    pool: &SqlitePool,
    tick: &SchedulerTick,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO schedulers (scheduler_id, host, started_at, last_tick_at, last_tick_seconds, ticks, tick_seconds_total, failed_ticks) \
         VALUES (?, ?, ?, ?, ?, 1, ?, ?) \
         ON CONFLICT (scheduler_id) DO UPDATE SET host = excluded.host, last_tick_at = excluded.last_tick_at, \
         last_tick_seconds = excluded.last_tick_seconds, ticks = schedulers.ticks + 1, \
         tick_seconds_total = schedulers.tick_seconds_total + excluded.tick_seconds_total, \
         failed_ticks = schedulers.failed_ticks + excluded.failed_ticks",
    )
    .bind(&tick.scheduler_id)
    .bind(&tick.host)
    .bind(micros(tick.started_at))
    .bind(micros(tick.at))
    .bind(tick.seconds)
    .bind(tick.seconds)
    .bind(tick.outcome.failed_count())
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM schedulers WHERE last_tick_at < ?")
        .bind(micros(tick.at - FORGET_AFTER))
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn list_schedulers(pool: &SqlitePool) -> StoreResult<Vec<SchedulerRecord>> {
    let rows = sqlx::query("SELECT * FROM schedulers ORDER BY scheduler_id")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(SchedulerRecord {
                scheduler_id: row.try_get("scheduler_id")?,
                host: row.try_get("host")?,
                started_at: time(row.try_get("started_at")?)?,
                last_tick_at: time(row.try_get("last_tick_at")?)?,
                last_tick_seconds: row.try_get("last_tick_seconds")?,
                ticks: count("ticks", row.try_get("ticks")?)?,
                tick_seconds_total: row.try_get("tick_seconds_total")?,
                failed_ticks: count("failed_ticks", row.try_get("failed_ticks")?)?,
            })
        })
        .collect()
}

fn time(micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Corrupt {
        table: "schedulers",
        message: format!("time out of range: {micros}"),
    })
}
