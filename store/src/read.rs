//! Records read out of rows, written once for both databases.
//!
//! Each backend says how it reads a kind of column (`Columns`): timestamps are integer
//! microseconds on SQLite and `timestamptz` on PostgreSQL, JSON is text on one and `jsonb` on
//! the other. Everything built on top of that (the records, the retry policy, a claimed
//! attempt) lives here, so the two stores cannot drift apart in what a row means.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_core::spec::{Backoff, RetryPolicy};
use sluice_core::{AttemptState, DataInterval};

use crate::*;

/// The columns every record query selects from `dag_runs`, as a literal so queries built with
/// `concat!` stay `&'static str`.
macro_rules! run_columns {
    () => {
        "pk, dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, \
         dag_hash, params, triggered_by, queued_at, started_at, ended_at, backfill_id"
    };
}
pub(crate) use run_columns;

/// A `dag_runs` condition: the run is not held by an open backfill, so the DAG's own
/// `max_active_runs` governs it (an open backfill starts its runs within its own limit).
macro_rules! not_in_open_backfill {
    () => {
        "NOT EXISTS (SELECT 1 FROM backfills b WHERE b.id = dag_runs.backfill_id AND b.state = 'running')"
    };
}
pub(crate) use not_in_open_backfill;

/// How one database reads each kind of column. The plain kinds are the same code for both
/// backends (`plain_columns!`); timestamps and JSON differ.
pub(crate) trait Columns {
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>>;
    fn int32(&self, column: &str) -> StoreResult<i32>;
    fn opt_int32(&self, column: &str) -> StoreResult<Option<i32>>;
    fn text(&self, column: &str) -> StoreResult<String>;
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
    fn opt_time(&self, table: &'static str, column: &str) -> StoreResult<Option<DateTime<Utc>>>;
    fn json_value(&self, table: &'static str, column: &str) -> StoreResult<Value>;

    fn time(&self, table: &'static str, column: &str) -> StoreResult<DateTime<Utc>> {
        self.opt_time(table, column)?
            .ok_or_else(|| corrupt(table, format!("`{column}` is NULL")))
    }

    fn json<T: DeserializeOwned>(&self, table: &'static str, column: &str) -> StoreResult<T> {
        serde_json::from_value(self.json_value(table, column)?)
            .map_err(|e| corrupt(table, format!("`{column}`: {e}")))
    }

    /// A state, rule or type stored as its text.
    fn parse<T: FromStr<Err = String>>(&self, table: &'static str, column: &str) -> StoreResult<T> {
        self.text(column)?
            .parse()
            .map_err(|message| corrupt(table, message))
    }

    /// A count stored as a signed integer (try numbers, slots).
    fn count(&self, table: &'static str, column: &str) -> StoreResult<u32> {
        let value = self.int32(column)?;
        u32::try_from(value).map_err(|_| corrupt(table, format!("`{column}` is negative: {value}")))
    }

    /// Milliseconds stored as a signed integer.
    fn duration(&self, table: &'static str, column: &str) -> StoreResult<Duration> {
        self.opt_duration(table, column)?
            .ok_or_else(|| corrupt(table, format!("`{column}` is NULL")))
    }

    fn opt_duration(&self, table: &'static str, column: &str) -> StoreResult<Option<Duration>> {
        self.opt_int(column)?
            .map(|ms| {
                u64::try_from(ms)
                    .map(Duration::from_millis)
                    .map_err(|_| corrupt(table, format!("`{column}` is negative: {ms}")))
            })
            .transpose()
    }
}

/// The `Columns` methods whose code is the same for every sqlx row type.
macro_rules! plain_columns {
    () => {
        fn int(&self, column: &str) -> StoreResult<i64> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn int32(&self, column: &str) -> StoreResult<i32> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn opt_int32(&self, column: &str) -> StoreResult<Option<i32>> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn text(&self, column: &str) -> StoreResult<String> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
        fn flag(&self, column: &str) -> StoreResult<bool> {
            Ok(sqlx::Row::try_get(self, column)?)
        }
    };
}
pub(crate) use plain_columns;

pub(crate) fn corrupt(table: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        message: message.into(),
    }
}

/// A count for an `INTEGER` column (PostgreSQL has no unsigned types).
pub(crate) fn saturating_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn run(row: &impl Columns) -> StoreResult<RunRecord> {
    const T: &str = "dag_runs";
    Ok(RunRecord {
        pk: row.int("pk")?,
        dag_id: row.text("dag_id")?,
        run_id: row.text("run_id")?,
        run_type: row.parse(T, "run_type")?,
        state: row.parse(T, "state")?,
        logical_date: row.time(T, "logical_date")?,
        data_interval: DataInterval {
            start: row.time(T, "data_interval_start")?,
            end: row.time(T, "data_interval_end")?,
        },
        dag_hash: row.text("dag_hash")?,
        params: row.json(T, "params")?,
        triggered_by: row.text("triggered_by")?,
        queued_at: row.time(T, "queued_at")?,
        started_at: row.opt_time(T, "started_at")?,
        ended_at: row.opt_time(T, "ended_at")?,
        backfill_id: row.opt_int("backfill_id")?,
    })
}

pub(crate) fn backfill(row: &impl Columns) -> StoreResult<BackfillRecord> {
    const T: &str = "backfills";
    Ok(BackfillRecord {
        id: row.int("id")?,
        dag_id: row.text("dag_id")?,
        range_start: row.time(T, "range_start")?,
        range_end: row.time(T, "range_end")?,
        max_active_runs: row.count(T, "max_active_runs")?,
        reverse: row.flag("reverse")?,
        options: row.json_value(T, "options")?,
        state: row.parse(T, "state")?,
        triggered_by: row.text("triggered_by")?,
        created_at: row.time(T, "created_at")?,
        ended_at: row.opt_time(T, "ended_at")?,
    })
}

/// `(state, n)` rows of a backfill's runs.
pub(crate) fn backfill_progress(rows: &[impl Columns]) -> StoreResult<BackfillProgress> {
    let mut progress = BackfillProgress::default();
    for row in rows {
        let state: sluice_core::RunState = row.parse("dag_runs", "state")?;
        let n = u32::try_from(row.int("n")?).unwrap_or(u32::MAX);
        progress.total += n;
        match state {
            sluice_core::RunState::Queued => progress.queued += n,
            sluice_core::RunState::Running => progress.running += n,
            sluice_core::RunState::Success => progress.success += n,
            sluice_core::RunState::Failed => progress.failed += n,
            sluice_core::RunState::Cancelled => progress.cancelled += n,
        }
    }
    Ok(progress)
}

pub(crate) fn dag(row: &impl Columns) -> StoreResult<DagRecord> {
    const T: &str = "dags";
    Ok(DagRecord {
        dag_id: row.text("dag_id")?,
        fileloc: row.text("fileloc")?,
        hash: row.text("hash")?,
        is_paused: row.flag("is_paused")?,
        is_active: row.flag("is_active")?,
        schedule: row.opt_text("schedule")?,
        timezone: row.text("timezone")?,
        description: row.opt_text("description")?,
        tags: row.json(T, "tags")?,
        updated_at: row.time(T, "updated_at")?,
    })
}

pub(crate) fn dag_version(row: &impl Columns) -> StoreResult<DagVersion> {
    Ok(DagVersion {
        hash: row.text("hash")?,
        dag_id: row.text("dag_id")?,
        fileloc: row.text("fileloc")?,
        source: row.text("source")?,
        created_at: row.time("dag_versions", "created_at")?,
    })
}

pub(crate) fn import_error(row: &impl Columns) -> StoreResult<ImportErrorRecord> {
    Ok(ImportErrorRecord {
        fileloc: row.text("fileloc")?,
        errors: row.json("import_errors", "errors")?,
    })
}

pub(crate) fn task_instance(row: &impl Columns) -> StoreResult<TaskInstanceRecord> {
    const T: &str = "task_instances";
    Ok(TaskInstanceRecord {
        id: row.int("id")?,
        run_pk: row.int("run_pk")?,
        task_id: row.text("task_id")?,
        map_index: row.int32("map_index")?,
        state: row.parse(T, "state")?,
        try_number: row.count(T, "try_number")?,
        max_tries: row.count(T, "max_tries")?,
        queue: row.text("queue")?,
        priority: row.int32("priority")?,
        next_try_at: row.opt_time(T, "next_try_at")?,
        started_at: row.opt_time(T, "started_at")?,
        ended_at: row.opt_time(T, "ended_at")?,
    })
}

/// An attempt joined with its task instance's `task_id` and `map_index`.
pub(crate) fn attempt(row: &impl Columns) -> StoreResult<AttemptRecord> {
    const T: &str = "task_attempts";
    Ok(AttemptRecord {
        id: row.int("id")?,
        ti_id: row.int("ti_id")?,
        task_id: row.text("task_id")?,
        map_index: row.int32("map_index")?,
        try_number: row.count(T, "try_number")?,
        state: row.parse(T, "state")?,
        worker_id: row.text("worker_id")?,
        started_at: row.time(T, "started_at")?,
        ended_at: row.opt_time(T, "ended_at")?,
        heartbeat_at: row.time(T, "heartbeat_at")?,
        exit_code: row.opt_int32("exit_code")?,
        error: row.opt_text("error")?,
        log_dropped_bytes: u64::try_from(row.int("log_dropped_bytes")?).unwrap_or(0),
    })
}

pub(crate) fn log_chunk(row: &impl Columns) -> StoreResult<LogChunk> {
    Ok(LogChunk {
        seq: row.int("seq")?,
        content: row.text("content")?,
        created_at: row.time("task_logs", "created_at")?,
    })
}

pub(crate) fn worker(row: &impl Columns) -> StoreResult<WorkerRecord> {
    const T: &str = "workers";
    Ok(WorkerRecord {
        worker_id: row.text("worker_id")?,
        host: row.text("host")?,
        queues: row.json(T, "queues")?,
        slots: row.count(T, "slots")?,
        slots_in_use: row.count(T, "slots_in_use")?,
        started_at: row.time(T, "started_at")?,
        heartbeat_at: row.time(T, "heartbeat_at")?,
    })
}

/// The retry policy a task instance was created with (its `retries` live on as `max_tries`).
pub(crate) fn retry_policy(row: &impl Columns) -> StoreResult<RetryPolicy> {
    const T: &str = "task_instances";
    Ok(RetryPolicy {
        retries: 0,
        delay: row.duration(T, "retry_delay_ms")?,
        backoff: if row.flag("retry_exponential")? {
            Backoff::Exponential
        } else {
            Backoff::Fixed
        },
        max_delay: row.opt_duration(T, "max_retry_delay_ms")?,
    })
}

/// A claimed task instance (`id, task_id, map_index, try_number, max_tries, timeout_ms`) with
/// its run and the lease of the attempt just created for it.
pub(crate) fn claimed_attempt(
    row: &impl Columns,
    run: &RunRecord,
    lease: Lease,
) -> StoreResult<ClaimedAttempt> {
    const T: &str = "task_instances";
    Ok(ClaimedAttempt {
        lease,
        ti_id: row.int("id")?,
        run_pk: run.pk,
        run_id: run.run_id.clone(),
        dag_id: run.dag_id.clone(),
        dag_hash: run.dag_hash.clone(),
        task_id: row.text("task_id")?,
        map_index: row.int32("map_index")?,
        try_number: row.count(T, "try_number")?,
        max_tries: row.count(T, "max_tries")?,
        timeout: row.opt_duration(T, "timeout_ms")?,
        started_at: row.time(T, "try_started_at")?,
        logical_date: run.logical_date,
        data_interval: run.data_interval,
        params: run.params.clone(),
    })
}

/// Folds `(task_id, key, value)` rows, oldest attempt first, into task → key → value: a later
/// attempt's value wins.
pub(crate) fn outputs(
    rows: &[impl Columns],
    mapped: &[impl Columns],
) -> StoreResult<BTreeMap<String, BTreeMap<String, Value>>> {
    // rows (`task_id, map_index, key, value`) come oldest attempt first: a later success wins
    let mut outputs: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut by_index: BTreeMap<(String, String), BTreeMap<i32, Value>> = BTreeMap::new();
    for row in rows {
        let task_id = row.text("task_id")?;
        let value = row.json_value("task_outputs", "value")?;
        let map_index = row.int32("map_index")?;
        if map_index < 0 {
            outputs
                .entry(task_id)
                .or_default()
                .insert(row.text("key")?, value);
        } else {
            by_index
                .entry((task_id, row.text("key")?))
                .or_default()
                .insert(map_index, value);
        }
    }
    // a mapped task's output is the list of its instances' values in map-index order, `null`
    // where an instance has none (it failed, or did not return that key)
    let mut counts = BTreeMap::new();
    for row in mapped {
        counts.insert(row.text("task_id")?, row.int32("last_index")?);
    }
    // (skipped instances are not counted: a new expansion after a clear no longer has them)
    for ((task_id, key), values) in by_index {
        let list = match counts.get(&task_id) {
            Some(last) => (0..=*last)
                .map(|index| values.get(&index).cloned().unwrap_or(Value::Null))
                .collect(),
            None => Vec::new(),
        };
        outputs
            .entry(task_id)
            .or_default()
            .insert(key, Value::Array(list));
    }
    Ok(outputs)
}

/// The attempt a current lease holds.
pub(crate) struct Leased {
    pub ti_id: i64,
    pub run_pk: i64,
    pub try_number: u32,
}

/// Checks an attempt row (`ti_id, run_pk, try_number, state, lease_token`) against a lease:
/// `LeaseLost` unless the attempt exists and is running under this token.
pub(crate) fn leased(row: Option<&impl Columns>, lease: &Lease) -> StoreResult<Leased> {
    const T: &str = "task_attempts";
    let lost = || StoreError::LeaseLost {
        attempt_id: lease.attempt_id,
    };
    let Some(row) = row else { return Err(lost()) };
    let state: AttemptState = row.parse(T, "state")?;
    if state != AttemptState::Running || row.text("lease_token")? != lease.token {
        return Err(lost());
    }
    Ok(Leased {
        ti_id: row.int("ti_id")?,
        run_pk: row.int("run_pk")?,
        try_number: row.count(T, "try_number")?,
    })
}

pub(crate) fn pool(row: &impl Columns) -> StoreResult<PoolRecord> {
    const T: &str = "pools";
    let count = |column: &str| -> StoreResult<u32> {
        let value = row.int(column)?;
        u32::try_from(value).map_err(|_| corrupt(T, format!("`{column}` out of range: {value}")))
    };
    Ok(PoolRecord {
        name: row.text("name")?,
        slots: row.count(T, "slots")?,
        running: count("running")?,
        queued: count("queued")?,
        updated_at: row.time(T, "updated_at")?,
    })
}

/// A running attempt the zombie sweep looks at (`id, run_pk, lease_token, worker_id, task_id,
/// map_index`); whether it is a zombie is decided again under its locks.
pub(crate) struct ZombieCandidate {
    pub attempt_id: i64,
    pub run_pk: i64,
    pub token: String,
    pub worker_id: String,
    pub task_id: String,
    pub map_index: i32,
}

pub(crate) fn zombie_candidate(row: &impl Columns) -> StoreResult<ZombieCandidate> {
    Ok(ZombieCandidate {
        attempt_id: row.int("id")?,
        run_pk: row.int("run_pk")?,
        token: row.text("lease_token")?,
        worker_id: row.text("worker_id")?,
        task_id: row.text("task_id")?,
        map_index: row.int32("map_index")?,
    })
}

/// Whether a running attempt with these last heartbeats is a zombie for this sweep: its own
/// heartbeat is stale and, while its worker still heartbeats, stale for twice as long. A worker
/// beats for itself and for each attempt at different moments, so just after it dies its own
/// beat can look fresh for up to one interval while the attempt's is already stale; the second
/// window lets the sweep name such a worker as dead rather than as "alive but silent".
pub(crate) fn is_zombie(
    attempt_beat: DateTime<Utc>,
    worker_beat: Option<DateTime<Utc>>,
    sweep: &crate::ZombieSweep,
) -> bool {
    if attempt_beat >= sweep.stale_before {
        return false;
    }
    let worker_alive = worker_beat.is_some_and(|beat| beat >= sweep.stale_before);
    if !worker_alive {
        return true;
    }
    let window = sweep.now - sweep.stale_before;
    sweep
        .stale_before
        .checked_sub_signed(window)
        .is_some_and(|second_window| attempt_beat < second_window)
}

/// The line a zombie attempt's log and error carry, and the last sign of life it names: the
/// worker's, or, when the worker still heartbeats but no longer this attempt (it lost it,
/// e.g. a claim whose answer never reached it), the attempt's.
pub(crate) fn zombie_message(
    worker_id: &str,
    attempt_beat: DateTime<Utc>,
    worker_beat: Option<DateTime<Utc>>,
    stale_before: DateTime<Utc>,
) -> (String, DateTime<Utc>) {
    let at = |time: DateTime<Utc>| time.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string();
    match worker_beat {
        Some(worker_beat) if worker_beat >= stale_before => (
            format!(
                "worker {worker_id} is alive but stopped heartbeating this attempt at {}; marked as a zombie",
                at(attempt_beat)
            ),
            attempt_beat,
        ),
        _ => {
            let last = worker_beat.map_or(attempt_beat, |w| w.max(attempt_beat));
            (
                format!(
                    "worker {worker_id} stopped heartbeating at {}; marked as a zombie",
                    at(last)
                ),
                last,
            )
        }
    }
}

/// The line a log starts with when its oldest chunks were dropped.
pub fn dropped_log_line(bytes: u64) -> String {
    format!(
        "[sluice] {} bytes of earlier output dropped",
        thousands(bytes)
    )
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dropped_bytes_read_with_thousands_separators() {
        assert_eq!(
            super::dropped_log_line(0),
            "[sluice] 0 bytes of earlier output dropped"
        );
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1_000), "1,000");
        assert_eq!(super::thousands(123_456), "123,456");
        assert_eq!(super::thousands(10_485_760), "10,485,760");
    }
}
