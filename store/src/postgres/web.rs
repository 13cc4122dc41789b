//! The web's tables on PostgreSQL: users, sessions, API tokens, audit events.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;

use crate::read::run_columns;
use crate::web_records::{self as read, taken};
use crate::*;

pub(crate) async fn create_user(pool: &PgPool, user: &NewUser) -> StoreResult<UserRecord> {
    let row = sqlx::query(
        "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4) RETURNING *",
    )
    .bind(&user.username)
    .bind(&user.password_hash)
    .bind(user.role.as_str())
    .bind(user.now)
    .fetch_one(pool)
    .await
    .map_err(|e| taken(e, format!("a user `{}` already exists", user.username)))?;
    read::user(&row)
}

pub(crate) async fn list_users(pool: &PgPool) -> StoreResult<Vec<UserRecord>> {
    let rows = sqlx::query("SELECT * FROM users ORDER BY username")
        .fetch_all(pool)
        .await?;
    rows.iter().map(read::user).collect()
}

pub(crate) async fn get_user(pool: &PgPool, username: &str) -> StoreResult<Option<UserRecord>> {
    let row = sqlx::query("SELECT * FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(read::user).transpose()
}

pub(crate) async fn create_session(pool: &PgPool, session: &NewSession) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(session.now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&session.token_hash)
    .bind(session.user_id)
    .bind(&session.csrf_token)
    .bind(session.now)
    .bind(session.expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn get_session(
    pool: &PgPool,
    token_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<SessionRecord>> {
    let row = sqlx::query(
        "SELECT s.user_id, u.username, u.role, s.csrf_token, s.expires_at FROM sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(read::session).transpose()
}

pub(crate) async fn delete_session(pool: &PgPool, token_hash: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn create_api_token(
    pool: &PgPool,
    token: &NewApiToken,
) -> StoreResult<ApiTokenRecord> {
    let row = sqlx::query(
        "INSERT INTO api_tokens (name, token_hash, role, created_at) VALUES ($1, $2, $3, $4) RETURNING *",
    )
    .bind(&token.name)
    .bind(&token.token_hash)
    .bind(token.role.as_str())
    .bind(token.now)
    .fetch_one(pool)
    .await
    .map_err(|e| taken(e, format!("an API token `{}` already exists", token.name)))?;
    read::api_token(&row)
}

pub(crate) async fn list_api_tokens(pool: &PgPool) -> StoreResult<Vec<ApiTokenRecord>> {
    let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY name")
        .fetch_all(pool)
        .await?;
    rows.iter().map(read::api_token).collect()
}

pub(crate) async fn get_api_token(
    pool: &PgPool,
    token_hash: &str,
) -> StoreResult<Option<ApiTokenRecord>> {
    let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(read::api_token).transpose()
}

pub(crate) async fn record_event(pool: &PgPool, event: &NewEvent) -> StoreResult<EventRecord> {
    let row = sqlx::query(
        "INSERT INTO events (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5) RETURNING *",
    )
    .bind(event.now)
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.target)
    .bind(Json(&event.details))
    .fetch_one(pool)
    .await?;
    read::event(&row)
}

pub(crate) async fn list_events(
    pool: &PgPool,
    filter: &EventFilter,
) -> StoreResult<Vec<EventRecord>> {
    let rows = sqlx::query("SELECT * FROM events WHERE id < $1 ORDER BY id DESC LIMIT $2")
        .bind(filter.before_id.unwrap_or(i64::MAX))
        .bind(i64::from(filter.limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(read::event).collect()
}

pub(crate) async fn list_runs_page(
    pool: &PgPool,
    query: &RunPageQuery,
) -> StoreResult<Vec<RunRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM dag_runs WHERE ($1::text IS NULL OR dag_id = $1) AND ($2::text IS NULL OR state = $2) \
         AND ($3::timestamptz IS NULL OR logical_date < $3 OR (logical_date = $3 AND pk < $4)) \
         ORDER BY logical_date DESC, pk DESC LIMIT $5"
    ))
    .bind(&query.dag_id)
    .bind(query.state.map(sluice_core::RunState::as_str))
    .bind(query.before.map(|cursor| cursor.logical_date))
    .bind(query.before.map(|cursor| cursor.pk))
    .bind(i64::from(query.limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(crate::read::run).collect()
}

pub(crate) async fn run_counts(pool: &PgPool) -> StoreResult<Vec<RunCount>> {
    let rows = sqlx::query(
        "SELECT dag_id, state, count(*) AS n FROM dag_runs GROUP BY dag_id, state ORDER BY dag_id, state",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(read::run_count).collect()
}

pub(crate) async fn task_counts(pool: &PgPool) -> StoreResult<Vec<TaskCount>> {
    let rows = sqlx::query(
        "SELECT state, count(*) AS n FROM task_instances GROUP BY state ORDER BY state",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(read::task_count).collect()
}

/// The buckets are `ATTEMPT_DURATION_BOUNDS`, written out so the SQL stays a literal.
pub(crate) async fn attempt_durations(pool: &PgPool) -> StoreResult<AttemptDurations> {
    let rows: Vec<(i64, i64, f64)> = sqlx::query_as(
        "SELECT bucket::int8, count(*) AS n, sum(seconds)::float8 AS total FROM ( \
           SELECT EXTRACT(EPOCH FROM ended_at - started_at)::float8 AS seconds, \
           CASE WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 0.1 THEN 0 WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 0.5 THEN 1 WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 1.0 THEN 2 WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 5.0 THEN 3 WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 10.0 THEN 4 WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 30.0 THEN 5 WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 60.0 THEN 6 WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 300.0 THEN 7 WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 900.0 THEN 8 WHEN EXTRACT(EPOCH FROM ended_at - started_at)::float8 <= 3600.0 THEN 9 ELSE 10 END AS bucket \
           FROM task_attempts WHERE ended_at IS NOT NULL) AS finished \
         GROUP BY bucket",
    )
    .fetch_all(pool)
    .await?;
    Ok(read::attempt_durations(&rows))
}

/// Settles the instances and cancels their running attempts (their leases end), and reopens a
/// finished run so its outcome is decided again; the run's row is locked first, as every
/// transaction deciding its tasks does. The caller then evaluates the run.
pub(crate) async fn mark_task_instance(pool: &PgPool, mark: &MarkTaskInstance) -> StoreResult<()> {
    read::check_mark(mark)?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pk FROM dag_runs WHERE pk = $1 FOR NO KEY UPDATE")
        .bind(mark.run_pk)
        .fetch_optional(&mut *tx)
        .await?;
    let matching: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_instances WHERE run_pk = $1 AND task_id = $2 AND ($3::int4 IS NULL OR map_index = $3)",
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
        "UPDATE task_attempts SET state = 'cancelled', ended_at = $1, error = $2 WHERE state IN ('running', 'up_for_reschedule') AND ti_id IN \
         (SELECT id FROM task_instances WHERE run_pk = $3 AND task_id = $4 AND ($5::int4 IS NULL OR map_index = $5))",
    )
    .bind(mark.now)
    .bind(format!("marked {} by an operator", mark.state))
    .bind(mark.run_pk)
    .bind(&mark.task_id)
    .bind(mark.map_index)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE task_instances SET state = $1, ended_at = $2, next_try_at = NULL \
         WHERE run_pk = $3 AND task_id = $4 AND ($5::int4 IS NULL OR map_index = $5)",
    )
    .bind(mark.state.as_str())
    .bind(mark.now)
    .bind(mark.run_pk)
    .bind(&mark.task_id)
    .bind(mark.map_index)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE dag_runs SET state = 'running', ended_at = NULL WHERE pk = $1 AND state IN ('success', 'failed')",
    )
    .bind(mark.run_pk)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// For each of `dag_ids`, its `per_dag` newest runs, through the `(dag_id, logical_date)` index.
pub(crate) async fn recent_runs(
    pool: &PgPool,
    dag_ids: &[String],
    per_dag: u32,
) -> StoreResult<Vec<RunRecord>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM (SELECT r.* FROM unnest($1::text[]) AS d (dag_id) CROSS JOIN LATERAL (SELECT * FROM dag_runs x \
           WHERE x.dag_id = d.dag_id ORDER BY x.logical_date DESC, x.pk DESC LIMIT $2) AS r) AS recent \
         ORDER BY dag_id, logical_date DESC, pk DESC"
    ))
    .bind(dag_ids)
    .bind(i64::from(per_dag))
    .fetch_all(pool)
    .await?;
    rows.iter().map(crate::read::run).collect()
}

pub(crate) async fn task_instances_of_runs(
    pool: &PgPool,
    run_pks: &[i64],
) -> StoreResult<Vec<TaskInstanceRecord>> {
    let rows =
        sqlx::query("SELECT * FROM task_instances WHERE run_pk = ANY($1) ORDER BY run_pk, id")
            .bind(run_pks)
            .fetch_all(pool)
            .await?;
    rows.iter().map(crate::read::task_instance).collect()
}
