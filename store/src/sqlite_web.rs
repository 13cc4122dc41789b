//! The web's tables on SQLite: users, sessions, API tokens, audit events.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::read::run_columns;
use crate::web_records::{self as read, taken};
use crate::*;

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) async fn create_user(pool: &SqlitePool, user: &NewUser) -> StoreResult<UserRecord> {
    let row = sqlx::query(
        "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?) RETURNING *",
    )
    .bind(&user.username)
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(micros(user.now))
    .fetch_one(pool)
    .await
    .map_err(|e| taken(e, format!("a user `{}` already exists", user.username)))?;
    read::user(&row)
}

pub(crate) async fn list_users(pool: &SqlitePool) -> StoreResult<Vec<UserRecord>> {
    let rows = sqlx::query("SELECT * FROM users ORDER BY username")
        .fetch_all(pool)
        .await?;
    rows.iter().map(read::user).collect()
}

pub(crate) async fn get_user(pool: &SqlitePool, username: &str) -> StoreResult<Option<UserRecord>> {
    let row = sqlx::query("SELECT * FROM users WHERE username = ?")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(read::user).transpose()
}

pub(crate) async fn create_session(pool: &SqlitePool, session: &NewSession) -> StoreResult<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
        .bind(micros(session.now))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&session.token_hash)
    .bind(session.user_id)
    .bind(&session.csrf_token)
    .bind(micros(session.now))
    .bind(micros(session.expires_at))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn get_session(
    pool: &SqlitePool,
    token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<SessionRecord>> {
    let row = sqlx::query(
        "SELECT s.user_id, u.username, u.role, s.csrf_token, s.expires_at FROM sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.expires_at > ?",
    )
    .bind(token_hash)
    .bind(micros(now))
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(read::session).transpose()
}

pub(crate) async fn delete_session(pool: &SqlitePool, token_hash: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn create_api_token(
    pool: &SqlitePool,
    token: &NewApiToken,
) -> StoreResult<ApiTokenRecord> {
    let row = sqlx::query(
        "INSERT INTO api_tokens (name, token_hash, role, created_at) VALUES (?, ?, ?, ?) RETURNING *",
    )
    .bind(&token.name)
    .bind(&token.token_hash)
    .bind(token.role.as_str())
    .bind(micros(token.now))
    .fetch_one(pool)
    .await
    .map_err(|e| taken(e, format!("an API token `{}` already exists", token.name)))?;
    read::api_token(&row)
}

pub(crate) async fn list_api_tokens(pool: &SqlitePool) -> StoreResult<Vec<ApiTokenRecord>> {
    let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY name")
        .fetch_all(pool)
        .await?;
    rows.iter().map(read::api_token).collect()
}

pub(crate) async fn get_api_token(
    pool: &SqlitePool,
    token_hash: &str,
) -> StoreResult<Option<ApiTokenRecord>> {
    let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ?")
        .bind(token_hash)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(read::api_token).transpose()
}

pub(crate) async fn record_event(pool: &SqlitePool, event: &NewEvent) -> StoreResult<EventRecord> {
    let row = sqlx::query(
        "INSERT INTO events (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(micros(event.now))
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.target)
    .bind(event.details.to_string())
    .fetch_one(pool)
    .await?;
    read::event(&row)
}

pub(crate) async fn list_events(
    pool: &SqlitePool,
    filter: &EventFilter,
) -> StoreResult<Vec<EventRecord>> {
    let rows = sqlx::query("SELECT * FROM events WHERE id < ? ORDER BY id DESC LIMIT ?")
        .bind(filter.before_id.unwrap_or(i64::MAX))
        .bind(i64::from(filter.limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(read::event).collect()
}

pub(crate) async fn list_runs_page(
    pool: &SqlitePool,
    query: &RunPageQuery,
) -> StoreResult<Vec<RunRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_runs WHERE (?1 IS NULL OR dag_id = ?1) AND (?2 IS NULL OR state = ?2) \
         AND (?3 IS NULL OR logical_date < ?3 OR (logical_date = ?3 AND pk < ?4)) \
         ORDER BY logical_date DESC, pk DESC LIMIT ?5"
    ))
    .bind(&query.dag_id)
    .bind(query.state.map(sluice_core::RunState::as_str))
    .bind(query.before.map(|cursor| micros(cursor.logical_date)))
    .bind(query.before.map(|cursor| cursor.pk))
    .bind(i64::from(query.limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(crate::read::run).collect()
}

pub(crate) async fn run_counts(pool: &SqlitePool) -> StoreResult<Vec<RunCount>> {
    let rows = sqlx::query(
        "SELECT dag_id, state, count(*) AS n FROM dag_runs GROUP BY dag_id, state ORDER BY dag_id, state",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(read::run_count).collect()
}

pub(crate) async fn task_counts(pool: &SqlitePool) -> StoreResult<Vec<TaskCount>> {
    let rows = sqlx::query(
        "SELECT state, count(*) AS n FROM task_instances GROUP BY state ORDER BY state",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(read::task_count).collect()
}

/// The buckets are `ATTEMPT_DURATION_BOUNDS`, written out so the SQL stays a literal.
pub(crate) async fn attempt_durations(pool: &SqlitePool) -> StoreResult<AttemptDurations> {
    let rows: Vec<(i64, i64, f64)> = sqlx::query_as(
        "SELECT bucket, count(*) AS n, sum(seconds) AS total FROM ( \
           SELECT (ended_at - started_at) / 1000000.0 AS seconds, \
           CASE WHEN (ended_at - started_at) / 1000000.0 <= 0.1 THEN 0 WHEN (ended_at - started_at) / 1000000.0 <= 0.5 THEN 1 WHEN (ended_at - started_at) / 1000000.0 <= 1.0 THEN 2 WHEN (ended_at - started_at) / 1000000.0 <= 5.0 THEN 3 WHEN (ended_at - started_at) / 1000000.0 <= 10.0 THEN 4 WHEN (ended_at - started_at) / 1000000.0 <= 30.0 THEN 5 WHEN (ended_at - started_at) / 1000000.0 <= 60.0 THEN 6 WHEN (ended_at - started_at) / 1000000.0 <= 300.0 THEN 7 WHEN (ended_at - started_at) / 1000000.0 <= 900.0 THEN 8 WHEN (ended_at - started_at) / 1000000.0 <= 3600.0 THEN 9 ELSE 10 END AS bucket \
           FROM task_attempts WHERE ended_at IS NOT NULL) AS finished \
         GROUP BY bucket",
    )
    .fetch_all(pool)
    .await?;
    Ok(read::attempt_durations(&rows))
}

/// Settles the instances and cancels their running attempts (their leases end), and reopens a
/// finished run so its outcome is decided again. The caller then evaluates the run.
pub(crate) async fn mark_task_instance(
    pool: &SqlitePool,
    mark: &MarkTaskInstance,
) -> StoreResult<()> {
    read::check_mark(mark)?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let now = micros(mark.now);
    let matching: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_instances WHERE run_pk = ?1 AND task_id = ?2 AND (?3 IS NULL OR map_index = ?3)",
    )
    .bind(mark.run_pk)
    .bind(&mark.task_id)
    .bind(mark.map_index)
    .fetch_one(&mut *tx)
    .await?;
    if matching == 0 {
        return Err(StoreError::NotFound {
            what: "task instance",
            id: mark.task_id.clone(),
        });
    }
    sqlx::query(
        "UPDATE task_attempts SET state = 'cancelled', ended_at = ?1, error = ?2 WHERE state IN ('running', 'up_for_reschedule') AND ti_id IN \
         (SELECT id FROM task_instances WHERE run_pk = ?3 AND task_id = ?4 AND (?5 IS NULL OR map_index = ?5))",
    )
    .bind(now)
    .bind(format!("marked {} by an operator", mark.state))
    .bind(mark.run_pk)
    .bind(&mark.task_id)
    .bind(mark.map_index)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE task_instances SET state = ?1, ended_at = ?2, next_try_at = NULL \
         WHERE run_pk = ?3 AND task_id = ?4 AND (?5 IS NULL OR map_index = ?5)",
    )
    .bind(mark.state.as_str())
    .bind(now)
    .bind(mark.run_pk)
    .bind(&mark.task_id)
    .bind(mark.map_index)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE dag_runs SET state = 'running', ended_at = NULL WHERE pk = ? AND state IN ('success', 'failed')",
    )
    .bind(mark.run_pk)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// For each of `dag_ids`, its `per_dag` newest runs, through the `(dag_id, logical_date)` index.
pub(crate) async fn recent_runs(
    pool: &SqlitePool,
    dag_ids: &[String],
    per_dag: u32,
) -> StoreResult<Vec<RunRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM (SELECT r.* FROM json_each(?1) d JOIN dag_runs r ON r.pk IN (SELECT x.pk FROM dag_runs x \
           WHERE x.dag_id = d.value ORDER BY x.logical_date DESC, x.pk DESC LIMIT ?2)) AS recent \
         ORDER BY dag_id, logical_date DESC, pk DESC"
    ))
    .bind(serde_json::to_string(dag_ids).expect("strings serialize"))
    .bind(i64::from(per_dag))
    .fetch_all(pool)
    .await?;
    rows.iter().map(crate::read::run).collect()
}

pub(crate) async fn task_instances_of_runs(
    pool: &SqlitePool,
    run_pks: &[i64],
) -> StoreResult<Vec<TaskInstanceRecord>> {
    let rows = sqlx::query(
        "SELECT * FROM task_instances WHERE run_pk IN (SELECT value FROM json_each(?)) ORDER BY run_pk, id",
    )
    .bind(serde_json::to_string(run_pks).expect("integers serialize"))
    .fetch_all(pool)
    .await?;
    rows.iter().map(crate::read::task_instance).collect()
}
