//! Each scheduler process's loop time, as its ticks recorded it, for `/metrics`.

use chrono::{DateTime, Utc};

use crate::{StoreError, StoreResult};

/// One finished tick of a scheduler's loop.
#[derive(Debug, Clone)]
pub struct SchedulerTick {
    /// `host:pid:random`, unique per scheduler process.
    pub scheduler_id: String,
    pub host: String,
    /// When the scheduler process began its loop.
    pub started_at: DateTime<Utc>,
    /// When the tick ended.
    pub at: DateTime<Utc>,
    /// How long the tick took.
    pub seconds: f64,
    pub outcome: TickOutcome,
}

/// Whether a tick did its work or failed (database away, a store error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    Succeeded,
    Failed,
}

impl TickOutcome {
    /// The tick's contribution to `failed_ticks`.
    pub(crate) fn failed_count(self) -> i64 {
        match self {
            TickOutcome::Succeeded => 0,
            TickOutcome::Failed => 1,
        }
    }
}

/// A scheduler's loop so far: its last tick and the running totals.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerRecord {
    pub scheduler_id: String,
    pub host: String,
    pub started_at: DateTime<Utc>,
    pub last_tick_at: DateTime<Utc>,
    pub last_tick_seconds: f64,
    pub ticks: u64,
    pub tick_seconds_total: f64,
    pub failed_ticks: u64,
}

/// Schedulers silent for this long (stopped or gone) are forgotten by the next record, so
/// restarts do not leave a series per old process in `/metrics` for ever.
pub(crate) const FORGET_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// A total stored as a signed integer.
pub(crate) fn count(column: &str, value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        table: "schedulers",
        message: format!("`{column}` is negative: {value}"),
    })
}
