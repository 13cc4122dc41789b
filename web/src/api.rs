//! `/api/v1`: JSON for what the pages show and do, behind `Authorization: Bearer TOKEN`.
//!
//! Lists answer `{"items": […], "next_cursor": "…" | null}`; pass `next_cursor` back as
//! `cursor` for the next page. Errors answer `{"error": {"code": "…", "message": "…"}}` with
//! a stable code (`not_found`, `bad_request`, `unauthorized`, `forbidden`, `conflict`,
//! `internal`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_core::RunState;
use sluice_scheduler::SchedulerError;
use sluice_store::{AttemptRecord, DagRecord, EventFilter, RunPageQuery, RunRecord, UNMAPPED};

use crate::AppState;
use crate::actions::{self, load_dag};
use crate::auth::{CurrentUser, require_token};
use crate::backfills;
use crate::cursor;
use crate::error::{ApiError, AppError};
use crate::openapi;
use crate::views::find_run;

/// Items per page unless `limit` says otherwise, and the most `limit` may ask for.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// Every route of the API, as `(method, path)` in the OpenAPI document's spelling; the
/// document is checked against it.
#[cfg(test)]
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("get", "/dags"),
    ("get", "/dags/{dag_id}"),
    ("post", "/dags/{dag_id}/pause"),
    ("get", "/dags/{dag_id}/runs"),
    ("post", "/dags/{dag_id}/runs"),
    ("get", "/dags/{dag_id}/runs/{run_id}"),
    ("post", "/dags/{dag_id}/runs/{run_id}/cancel"),
    ("get", "/dags/{dag_id}/runs/{run_id}/tasks"),
    ("get", "/dags/{dag_id}/runs/{run_id}/attempts"),
    ("get", "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"),
    ("post", "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark"),
    ("get", "/dags/{dag_id}/runs/{run_id}/outputs"),
    ("post", "/dags/{dag_id}/runs/{run_id}/clear"),
    (
        "get",
        "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/attempts/{try_number}/log",
    ),
    ("post", "/dags/{dag_id}/backfills"),
    ("get", "/backfills/{backfill_id}"),
    ("post", "/backfills/{backfill_id}/cancel"),
    ("get", "/runs"),
    ("get", "/events"),
    ("get", "/openapi.json"),
];

/// The API's routes: all behind the token check but the OpenAPI document.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/dags", get(list_dags))
        .route("/dags/{dag_id}", get(get_dag))
        .route("/dags/{dag_id}/pause", post(pause))
        .route("/dags/{dag_id}/runs", get(list_dag_runs).post(trigger))
        .route("/dags/{dag_id}/runs/{run_id}", get(get_run))
        .route("/dags/{dag_id}/runs/{run_id}/cancel", post(cancel))
        .route("/dags/{dag_id}/runs/{run_id}/tasks", get(task_instances))
        .route("/dags/{dag_id}/runs/{run_id}/attempts", get(attempts))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(task_instance),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
            post(mark),
        )
        .route("/dags/{dag_id}/runs/{run_id}/outputs", get(outputs))
        .route("/dags/{dag_id}/runs/{run_id}/clear", post(clear))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/attempts/{try_number}/log",
            get(log),
        )
        .route("/dags/{dag_id}/backfills", post(create_backfill))
        .route("/backfills/{backfill_id}", get(get_backfill))
        .route("/backfills/{backfill_id}/cancel", post(cancel_backfill))
        .route("/runs", get(list_runs))
        .route("/events", get(events))
        .route_layer(from_fn_with_state(state, require_token))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
}

/// A query string, or a JSON 400 saying what is wrong with it.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    query
        .map(|Query(value)| value)
        .map_err(|rejection| AppError::BadRequest(rejection.body_text()))
}

/// A JSON body (none at all reads as `{}`), or a JSON 400 saying what is wrong with it.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, AppError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|error| AppError::BadRequest(format!("the JSON body does not fit: {error}")))
}

/// A try number from the path; one that is not a number names no attempt.
fn try_number(text: &str, task_id: &str) -> Result<u32, AppError> {
    text.parse()
        .map_err(|_| AppError::NotFound(format!("task `{task_id}` has no try `{text}`")))
}

#[derive(Serialize)]
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    state: Option<String>,
    dag_id: Option<String>,
}

impl ListQuery {
    fn limit(&self) -> Result<u32, AppError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(limit @ 1..=MAX_LIMIT) => Ok(limit),
            Some(other) => Err(AppError::BadRequest(format!(
                "`limit` must be between 1 and {MAX_LIMIT}, not {other}"
            ))),
        }
    }

    fn state(&self) -> Result<Option<RunState>, AppError> {
        self.state
            .as_deref()
            .map(|text| text.parse().map_err(AppError::BadRequest))
            .transpose()
    }
}

async fn list_dags(
    State(state): State<AppState>,
    raw_query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page<DagRecord>>, ApiError> {
    let query = query(raw_query)?;
    let limit = query.limit()? as usize;
    // DAGs are few and ordered by id: the cursor is the last id of the previous page
    let mut dags: Vec<DagRecord> = state
        .store
        .list_dags()
        .await?
        .into_iter()
        .filter(|dag| {
            query
                .cursor
                .as_deref()
                .is_none_or(|after| dag.dag_id.as_str() > after)
        })
        .collect();
    let next_cursor = (dags.len() > limit).then(|| dags[limit - 1].dag_id.clone());
    dags.truncate(limit);
    Ok(Json(Page {
        items: dags,
        next_cursor,
    }))
}

async fn get_dag(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
) -> Result<Json<DagRecord>, ApiError> {
    Ok(Json(find_dag(&state, &dag_id).await?))
}

#[derive(Deserialize, Default)]
struct PauseBody {
    /// `true` pauses (the default), `false` unpauses.
    #[serde(default = "yes")]
    paused: bool,
}

fn yes() -> bool {
    true
}

async fn pause(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    bytes: Bytes,
) -> Result<Json<DagRecord>, ApiError> {
    let request: PauseBody = body(&bytes)?;
    actions::set_paused(state.store.as_ref(), &user, &dag_id, request.paused).await?;
    Ok(Json(find_dag(&state, &dag_id).await?))
}

async fn list_dag_runs(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    raw_query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page<RunRecord>>, ApiError> {
    let mut query = query(raw_query)?;
    find_dag(&state, &dag_id).await?;
    query.dag_id = Some(dag_id);
    runs_page(&state, &query).await
}

async fn list_runs(
    State(state): State<AppState>,
    raw_query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page<RunRecord>>, ApiError> {
    runs_page(&state, &query(raw_query)?).await
}

async fn runs_page(state: &AppState, query: &ListQuery) -> Result<Json<Page<RunRecord>>, ApiError> {
    let limit = query.limit()?;
    let mut runs = state
        .store
        .list_runs_page(&RunPageQuery {
            dag_id: query.dag_id.clone(),
            state: query.state()?,
            before: query
                .cursor
                .as_deref()
                .map(cursor::decode_run)
                .transpose()?,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = (runs.len() > limit as usize).then(|| {
        let last = &runs[limit as usize - 1];
        cursor::encode_run(sluice_store::RunCursor {
            logical_date: last.logical_date,
            pk: last.pk,
        })
    });
    runs.truncate(limit as usize);
    Ok(Json(Page {
        items: runs,
        next_cursor,
    }))
}

#[derive(Deserialize, Default)]
struct TriggerBody {
    #[serde(default)]
    params: BTreeMap<String, Value>,
}

/// 201 with the run; params are checked against the DAG's as `--param` is.
async fn trigger(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    user.require(sluice_store::Role::Operator)?;
    let request: TriggerBody = body(&bytes)?;
    let (dag, _) = load_dag(&state, &dag_id).await?;
    // the same rules as `--param key=value`: text as is, anything else as its JSON
    let pairs: Vec<String> = request
        .params
        .iter()
        .map(|(name, value)| match value {
            Value::String(text) => format!("{name}={text}"),
            other => format!("{name}={other}"),
        })
        .collect();
    let overrides = sluice_scheduler::parse_param_overrides(&dag, &pairs).map_err(|error| {
        AppError::BadRequest(match error {
            SchedulerError::BadParam(message) => message,
            other => other.to_string(),
        })
    })?;
    let run = actions::trigger_run(state.store.as_ref(), &dag, overrides, &user).await?;
    Ok((StatusCode::CREATED, Json(run)).into_response())
}

async fn get_run(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<RunRecord>, ApiError> {
    Ok(Json(
        find_run(state.store.as_ref(), &dag_id, &run_id).await?,
    ))
}

async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<RunRecord>, ApiError> {
    actions::cancel_run(state.store.as_ref(), &user, &dag_id, &run_id).await?;
    Ok(Json(
        find_run(state.store.as_ref(), &dag_id, &run_id).await?,
    ))
}

async fn task_instances(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let run = find_run(state.store.as_ref(), &dag_id, &run_id).await?;
    let items = state.store.task_instances(run.pk).await?;
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

async fn attempts(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let run = find_run(state.store.as_ref(), &dag_id, &run_id).await?;
    let items = with_rendered(&state, run.pk, state.store.attempts(run.pk).await?).await?;
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

/// An attempt with what its templates rendered to (secrets masked by the worker); `null`
/// when it recorded nothing.
#[derive(Serialize)]
struct AttemptWithRendered {
    #[serde(flatten)]
    attempt: AttemptRecord,
    rendered: Option<BTreeMap<String, String>>,
}

async fn with_rendered(
    state: &AppState,
    run_pk: i64,
    attempts: Vec<AttemptRecord>,
) -> Result<Vec<AttemptWithRendered>, AppError> {
    let mut rendered: BTreeMap<i64, BTreeMap<String, String>> = state
        .store
        .rendered_fields(run_pk)
        .await?
        .into_iter()
        .map(|record| (record.attempt_id, record.fields))
        .collect();
    Ok(attempts
        .into_iter()
        .map(|attempt| AttemptWithRendered {
            rendered: rendered.remove(&attempt.id),
            attempt,
        })
        .collect())
}

#[derive(Deserialize)]
struct TaskInstanceQuery {
    map_index: Option<i32>,
}

/// One task instance with every attempt (each with its rendered fields) and its outputs.
async fn task_instance(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    raw_query: Result<Query<TaskInstanceQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let map_index = query(raw_query)?.map_index.unwrap_or(UNMAPPED);
    let store = state.store.as_ref();
    let run = find_run(store, &dag_id, &run_id).await?;
    let instance = store
        .task_instances(run.pk)
        .await?
        .into_iter()
        .find(|instance| instance.task_id == task_id && instance.map_index == map_index)
        .ok_or_else(|| AppError::NotFound(format!("run `{run_id}` has no task `{task_id}`")))?;
    let attempts = store
        .attempts(run.pk)
        .await?
        .into_iter()
        .filter(|attempt| attempt.ti_id == instance.id)
        .collect();
    let attempts = with_rendered(&state, run.pk, attempts).await?;
    let outputs = store
        .run_outputs(run.pk)
        .await?
        .remove(&task_id)
        .unwrap_or_default();
    Ok(Json(json!({
        "task_instance": instance,
        "attempts": attempts,
        "outputs": outputs,
    })))
}

/// What each task's successful attempt returned: `{"task": {"key": value}}`.
async fn outputs(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let run = find_run(state.store.as_ref(), &dag_id, &run_id).await?;
    let outputs = state.store.run_outputs(run.pk).await?;
    Ok(Json(json!({ "outputs": outputs })))
}

#[derive(Deserialize, Default)]
struct ClearBody {
    /// The tasks to run again; every task of the run when empty.
    #[serde(default)]
    task_ids: Vec<String>,
    /// Their downstream tasks too.
    #[serde(default)]
    downstream: bool,
}

/// `{"cleared": n, "run": …}`: how many task instances will run again, and the run after.
async fn clear(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: ClearBody = body(&bytes)?;
    let clear = actions::ClearRequest {
        dag_id: &dag_id,
        run_id: &run_id,
        task_ids: request.task_ids,
        downstream: request.downstream,
    };
    let cleared = actions::clear_run_tasks(&state, &user, &clear).await?;
    let run = find_run(state.store.as_ref(), &dag_id, &run_id).await?;
    Ok(Json(json!({ "cleared": cleared, "run": run })))
}

#[derive(Deserialize, Default)]
struct MarkBody {
    /// `success` or `failed`.
    #[serde(default)]
    state: String,
    map_index: Option<i32>,
}

/// The run after the task was marked and the run decided again.
async fn mark(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    bytes: Bytes,
) -> Result<Json<RunRecord>, ApiError> {
    let request: MarkBody = body(&bytes)?;
    let mark = actions::MarkRequest {
        dag_id: &dag_id,
        run_id: &run_id,
        task_id: &task_id,
        map_index: request.map_index,
        state: &request.state,
    };
    actions::mark_task(state.store.as_ref(), &user, &mark).await?;
    Ok(Json(
        find_run(state.store.as_ref(), &dag_id, &run_id).await?,
    ))
}

#[derive(Deserialize)]
struct LogQuery {
    map_index: Option<i32>,
    /// The `next_cursor` of the previous answer: only chunks after it.
    cursor: Option<i64>,
}

/// The attempt's log chunks after `cursor`; poll with `next_cursor` to follow a running one.
async fn log(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id, try_text)): Path<(String, String, String, String)>,
    raw_query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = query(raw_query)?;
    let try_number = try_number(&try_text, &task_id)?;
    let store = state.store.as_ref();
    let run = find_run(store, &dag_id, &run_id).await?;
    let map_index = query.map_index.unwrap_or(UNMAPPED);
    let attempt = store
        .attempts(run.pk)
        .await?
        .into_iter()
        .find(|a| a.task_id == task_id && a.map_index == map_index && a.try_number == try_number)
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "task `{task_id}` of run `{run_id}` has no try {try_number}"
            ))
        })?;
    let after = query.cursor.unwrap_or(0);
    let chunks = store.read_log(attempt.id, after).await?;
    let next_cursor = chunks.last().map_or(after, |chunk| chunk.seq);
    Ok(Json(json!({
        "attempt": attempt,
        "chunks": chunks,
        "next_cursor": next_cursor.to_string(),
    })))
}

#[derive(Deserialize, Default)]
struct BackfillBody {
    #[serde(flatten)]
    input: backfills::BackfillInput,
    /// Answer the plan and change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// A dry run answers `{"dry_run": true, "plan": …}`; otherwise 201 with the created backfill
/// (`outcome: created`), or 200 with the open backfill of the same range (`resumed`) or none
/// (`nothing_to_do`), each with the plan.
async fn create_backfill(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request: BackfillBody = body(&bytes)?;
    if request.dry_run {
        let plan = backfills::plan(&state, &user, &dag_id, &request.input).await?;
        return Ok(Json(json!({ "dry_run": true, "plan": plan })).into_response());
    }
    let started = backfills::start(&state, &user, &dag_id, &request.input).await?;
    let status = if started.outcome == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(started)).into_response())
}

/// A backfill id from the path; one that is not a number names no backfill.
fn backfill_id(text: &str) -> Result<i64, AppError> {
    text.parse()
        .map_err(|_| AppError::NotFound(format!("backfill {text} not found")))
}

async fn get_backfill(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<backfills::BackfillStatus>, ApiError> {
    Ok(Json(backfills::status(&state, backfill_id(&id)?).await?))
}

async fn cancel_backfill(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<backfills::BackfillStatus>, ApiError> {
    Ok(Json(
        backfills::cancel(&state, &user, backfill_id(&id)?).await?,
    ))
}

async fn events(
    State(state): State<AppState>,
    raw_query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = query(raw_query)?;
    let limit = query.limit()?;
    let before_id = query
        .cursor
        .as_deref()
        .map(|text| {
            text.parse::<i64>().map_err(|_| {
                AppError::BadRequest(format!("`{text}` is not a cursor this server made"))
            })
        })
        .transpose()?;
    let items = state
        .store
        .list_events(&EventFilter { before_id, limit })
        .await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|event| event.id.to_string()))
        .flatten();
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}

async fn find_dag(state: &AppState, dag_id: &str) -> Result<DagRecord, AppError> {
    state
        .store
        .get_dag(dag_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("DAG `{dag_id}` not found")))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError(AppError::NotFound(format!(
        "there is no endpoint at `{}`",
        uri.path()
    )))
}
