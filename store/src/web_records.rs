//! The web's rows: users and their roles, login sessions, API tokens and audit events.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::read::Columns;
use crate::{StoreError, StoreResult};

/// What a user or API token may do; each role can do everything the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads every page and endpoint.
    Viewer,
    /// Also triggers, pauses, cancels.
    Operator,
    /// Also manages users and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// True when this role includes everything `needed` may do.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("unknown role `{text}` (expected viewer, operator or admin)"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    /// A PHC string (argon2id), never the password.
    pub password_hash: String,
    pub role: Role,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// A login: the cookie's token is only stored hashed.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: String,
    pub user_id: i64,
    /// Put in every form of the session and checked on every POST.
    pub csrf_token: String,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A live session with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub name: String,
    pub token_hash: String,
    pub role: Role,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiTokenRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// One action someone took, for the audit log.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `user:NAME`, `token:NAME` or `cli:USER`.
    pub actor: String,
    /// `trigger`, `pause`, `unpause`, `cancel_run`, …
    pub action: String,
    /// What was acted on: a DAG id, or `DAG/RUN`.
    pub target: String,
    pub details: Value,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: Value,
}

/// Newest first; `before_id` continues a page.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// A unique-key violation becomes `Conflict` with `message`; anything else stays itself.
/// A page of runs, newest logical date first; `before` continues after the last run of the
/// previous page.
#[derive(Debug, Clone, Default)]
pub struct RunPageQuery {
    pub dag_id: Option<String>,
    pub state: Option<sluice_core::RunState>,
    pub before: Option<RunCursor>,
    pub limit: u32,
}

/// Where a page of runs ended: the last run's logical date and primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCursor {
    pub logical_date: DateTime<Utc>,
    pub pk: i64,
}

/// How many runs of a DAG are in a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunCount {
    pub dag_id: String,
    pub state: sluice_core::RunState,
    pub count: u64,
}

/// How many task instances are in a state, across all runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskCount {
    pub state: sluice_core::TaskState,
    pub count: u64,
}

/// Upper bounds (seconds) of the attempt-duration histogram's buckets; a last bucket holds
/// everything longer.
pub const ATTEMPT_DURATION_BOUNDS: [f64; 10] =
    [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// How long finished attempts took, as a histogram.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AttemptDurations {
    /// Attempts per bucket of `ATTEMPT_DURATION_BOUNDS` (not cumulative), plus one for longer.
    pub buckets: [u64; 11],
    pub count: u64,
    pub sum_seconds: f64,
}

/// An operator settles a task instance by hand (every instance of a mapped task when
/// `map_index` is `None`).
#[derive(Debug, Clone)]
pub struct MarkTaskInstance {
    pub run_pk: i64,
    pub task_id: String,
    pub map_index: Option<i32>,
    /// `Success` or `Failed`; other states are refused with `Conflict`.
    pub state: sluice_core::TaskState,
    pub now: DateTime<Utc>,
}

pub(crate) fn check_mark(mark: &MarkTaskInstance) -> StoreResult<()> {
    use sluice_core::TaskState;
    if matches!(mark.state, TaskState::Success | TaskState::Failed) {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "a task instance can be marked success or failed, not {}",
        mark.state
    )))
}

pub(crate) fn task_count(row: &impl Columns) -> StoreResult<TaskCount> {
    Ok(TaskCount {
        state: row.parse("task_instances", "state")?,
        count: u64::try_from(row.int("n")?).unwrap_or(0),
    })
}

/// From `(bucket, attempts, total seconds)` rows, the bucket an index into
/// `ATTEMPT_DURATION_BOUNDS` (its length for longer ones).
pub(crate) fn attempt_durations(rows: &[(i64, i64, f64)]) -> AttemptDurations {
    let mut durations = AttemptDurations::default();
    for &(bucket, attempts, total) in rows {
        let attempts = u64::try_from(attempts).unwrap_or(0);
        let index = usize::try_from(bucket)
            .unwrap_or(0)
            .min(ATTEMPT_DURATION_BOUNDS.len());
        durations.buckets[index] += attempts;
        durations.count += attempts;
        durations.sum_seconds += total;
    }
    durations
}

pub(crate) fn run_count(row: &impl Columns) -> StoreResult<RunCount> {
    let count = row.int("n")?;
    Ok(RunCount {
        dag_id: row.text("dag_id")?,
        state: row.parse("dag_runs", "state")?,
        count: u64::try_from(count).unwrap_or(0),
    })
}

pub(crate) fn taken(error: sqlx::Error, message: String) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message),
        _ => StoreError::Database(error),
    }
}

pub(crate) fn user(row: &impl Columns) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: row.int("id")?,
        username: row.text("username")?,
        password_hash: row.text("password_hash")?,
        role: row.parse("users", "role")?,
        created_at: row.time("users", "created_at")?,
    })
}

/// From `sessions JOIN users`.
pub(crate) fn session(row: &impl Columns) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        user_id: row.int("user_id")?,
        username: row.text("username")?,
        role: row.parse("users", "role")?,
        csrf_token: row.text("csrf_token")?,
        expires_at: row.time("sessions", "expires_at")?,
    })
}

pub(crate) fn api_token(row: &impl Columns) -> StoreResult<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: row.int("id")?,
        name: row.text("name")?,
        role: row.parse("api_tokens", "role")?,
        created_at: row.time("api_tokens", "created_at")?,
    })
}

pub(crate) fn event(row: &impl Columns) -> StoreResult<EventRecord> {
    Ok(EventRecord {
        id: row.int("id")?,
        at: row.time("events", "at")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        target: row.text("target")?,
        details: row.json_value("events", "details")?,
    })
}
