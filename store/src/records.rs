//! The rows the store reads and writes, as typed values.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sluice_core::spec::RetryPolicy;
use sluice_core::{
    AttemptState, BackfillState, DataInterval, RunState, RunType, TaskState, TriggerRule,
};

/// Map index of a task instance that is not mapped (`foreach`).
pub const UNMAPPED: i32 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paused {
    Paused,
    Active,
}

#[derive(Debug, Clone)]
pub struct DagSync {
    pub dags: Vec<DagSnapshot>,
    pub import_errors: Vec<ImportErrorRecord>,
    pub now: DateTime<Utc>,
}

/// One parsed DAG as the registry mirrors it.
#[derive(Debug, Clone)]
pub struct DagSnapshot {
    pub dag_id: String,
    pub fileloc: String,
    pub hash: String,
    pub source: String,
    pub schedule: Option<String>,
    pub timezone: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DagRecord {
    pub dag_id: String,
    pub fileloc: String,
    pub hash: String,
    pub is_paused: bool,
    /// False once the file is gone; its runs stay in the history.
    pub is_active: bool,
    pub schedule: Option<String>,
    pub timezone: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DagVersion {
    pub hash: String,
    pub dag_id: String,
    pub fileloc: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportErrorRecord {
    pub fileloc: String,
    /// One `file:line:col: message` per problem.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewRun {
    pub dag_id: String,
    pub run_id: String,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub data_interval: DataInterval,
    pub dag_hash: String,
    /// The DAG's params merged with the trigger's.
    pub params: BTreeMap<String, Value>,
    pub triggered_by: String,
    pub tasks: Vec<NewTaskInstance>,
    pub now: DateTime<Utc>,
}

/// A task instance as created with its run: a snapshot of what the scheduler and the store
/// need from the task's definition, so decisions never re-read the DAG file.
#[derive(Debug, Clone)]
pub struct NewTaskInstance {
    pub task_id: String,
    pub map_index: i32,
    pub upstream: Vec<String>,
    pub trigger_rule: TriggerRule,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub queue: String,
    pub pool: Option<String>,
    pub priority: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub pk: i64,
    pub dag_id: String,
    pub run_id: String,
    pub run_type: RunType,
    pub state: RunState,
    pub logical_date: DateTime<Utc>,
    pub data_interval: DataInterval,
    pub dag_hash: String,
    pub params: BTreeMap<String, Value>,
    pub triggered_by: String,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The backfill that created or reran the run.
    pub backfill_id: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub dag_id: Option<String>,
    pub state: Option<RunState>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunProgress {
    /// Task instances whose state this evaluation changed.
    pub changed: u32,
    pub queued: u32,
    /// Set when this evaluation finished the run.
    pub finished: Option<RunState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskInstanceRecord {
    pub id: i64,
    pub run_pk: i64,
    pub task_id: String,
    pub map_index: i32,
    pub state: TaskState,
    /// Tries started so far.
    pub try_number: u32,
    pub max_tries: u32,
    pub queue: String,
    pub priority: i32,
    pub next_try_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Claim {
    pub worker_id: String,
    pub queues: Vec<String>,
    pub limit: u32,
    pub now: DateTime<Utc>,
}

/// Proof that a worker holds an attempt; writes under a stale lease are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub attempt_id: i64,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct ClaimedAttempt {
    pub lease: Lease,
    pub ti_id: i64,
    pub run_pk: i64,
    pub run_id: String,
    pub dag_id: String,
    pub dag_hash: String,
    pub task_id: String,
    pub map_index: i32,
    pub try_number: u32,
    pub max_tries: u32,
    pub timeout: Option<Duration>,
    /// When this try started: the claim's time, or for a `mode: reschedule` sensor claimed
    /// again, its first poke (the sensor's `timeout` counts from there).
    pub started_at: DateTime<Utc>,
    pub logical_date: DateTime<Utc>,
    pub data_interval: DataInterval,
    pub params: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Success,
    Failed,
}

#[derive(Debug, Clone)]
pub struct FinishAttempt {
    pub lease: Lease,
    pub outcome: AttemptOutcome,
    pub exit_code: Option<i32>,
    /// Why it failed, in words a user can act on.
    pub error: Option<String>,
    pub outputs: BTreeMap<String, Value>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinishResult {
    pub task_state: TaskState,
    pub progress: RunProgress,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub id: i64,
    pub ti_id: i64,
    pub task_id: String,
    pub map_index: i32,
    pub try_number: u32,
    pub state: AttemptState,
    pub worker_id: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub heartbeat_at: DateTime<Utc>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// Bytes of the oldest log chunks dropped to keep the log within its cap.
    pub log_dropped_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogChunk {
    pub seq: i64,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct WorkerBeat {
    pub worker_id: String,
    pub host: String,
    pub queues: Vec<String>,
    pub slots: u32,
    pub slots_in_use: u32,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerRecord {
    pub worker_id: String,
    pub host: String,
    pub queues: Vec<String>,
    pub slots: u32,
    pub slots_in_use: u32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// The runs of a DAG whose logical date is in `[start, end)`.
#[derive(Debug, Clone)]
pub struct RunRange {
    pub dag_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Task instances of a finished (or running) run to run again. Instances in a terminal state
/// among `task_ids` become `pending` with a new set of tries; their attempts and logs stay.
#[derive(Debug, Clone)]
pub struct ClearTasks {
    pub run_pk: i64,
    /// Every map index of these tasks is cleared.
    pub task_ids: Vec<String>,
    pub now: DateTime<Utc>,
}

/// A backfill as created: its row, the runs it creates and the existing runs it reruns, all in
/// one transaction.
#[derive(Debug, Clone)]
pub struct NewBackfill {
    pub dag_id: String,
    pub range: RunRange,
    pub max_active_runs: u32,
    /// Newest logical date first.
    pub reverse: bool,
    /// The options as given, shown by `backfill status`.
    pub options: Value,
    pub triggered_by: String,
    pub create: Vec<NewRun>,
    pub rerun: Vec<ClearTasks>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackfillRecord {
    pub id: i64,
    pub dag_id: String,
    /// Logical dates in `[range_start, range_end)`.
    pub range_start: DateTime<Utc>,
    pub range_end: DateTime<Utc>,
    pub max_active_runs: u32,
    pub reverse: bool,
    pub options: Value,
    pub state: BackfillState,
    pub triggered_by: String,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// How many of a backfill's runs are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackfillProgress {
    pub total: u32,
    pub queued: u32,
    pub running: u32,
    pub success: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl BackfillProgress {
    pub fn finished(&self) -> u32 {
        self.success + self.failed + self.cancelled
    }
}

/// What one `start_backfill_runs` did.
#[derive(Debug, Clone, Default)]
pub struct BackfillStep {
    pub started: Vec<RunRecord>,
    /// Set when this call finished the backfill (none of its runs left to run).
    pub finished: Option<BackfillState>,
}
/// Running attempts whose worker went silent: the attempt's heartbeat and its worker's are
/// both older than `stale_before`.
#[derive(Debug, Clone)]
pub struct ZombieSweep {
    pub stale_before: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// An attempt the zombie sweep failed (and handed to the retry policy).
#[derive(Debug, Clone, Serialize)]
pub struct ZombieAttempt {
    pub attempt_id: i64,
    pub run_pk: i64,
    pub task_id: String,
    pub map_index: i32,
    pub try_number: u32,
    pub worker_id: String,
    /// The worker's last sign of life.
    pub last_heartbeat: DateTime<Utc>,
    /// The task instance's state afterwards: `up_for_retry` or `failed`.
    pub task_state: TaskState,
}

/// A pool's size: at most `slots` task instances of the pool run at once, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolSlots {
    pub name: String,
    pub slots: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolRecord {
    pub name: String,
    pub slots: u32,
    /// Task instances of the pool running now.
    pub running: u32,
    /// Task instances of the pool waiting to be claimed (queued or due for a retry).
    pub queued: u32,
    pub updated_at: DateTime<Utc>,
}

/// How a store behaves, beyond where it connects.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The most log text kept per attempt, in bytes: beyond it the oldest chunks are dropped
    /// and counted in the attempt's `log_dropped_bytes`.
    pub log_cap_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            log_cap_bytes: 10 * 1024 * 1024,
        }
    }
}
