//! The handlers: each reads its path, asks `views` for the page model, and returns it.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use chrono::Utc;
use serde::Deserialize;
use sluice_store::UNMAPPED;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::cursor;
use crate::error::AppError;
use crate::views::{
    self, AccessPage, DagListFilter, DagPage, DagsPage, EventsPage, LogPage, LogRequest,
    RunListRequest, RunPage, TaskInstancePage, TaskInstanceRequest,
};

#[derive(Deserialize)]
pub(crate) struct DagsQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    page: Option<usize>,
}

pub(crate) async fn dags(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<DagsQuery>,
) -> Result<DagsPage, AppError> {
    let filter = DagListFilter {
        search: &query.q,
        tag: &query.tag,
        page: query.page.unwrap_or(1),
    };
    let mut page = views::dags_page(&state, &filter, Utc::now()).await?;
    page.user = Some(user);
    Ok(page)
}

#[derive(Deserialize)]
pub(crate) struct DagQuery {
    /// Only runs in this state.
    state: Option<String>,
    /// The cursor where the previous page ended.
    before: Option<String>,
    /// The run whose states colour the graph.
    run: Option<String>,
}

pub(crate) async fn dag(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(query): Query<DagQuery>,
) -> Result<DagPage, AppError> {
    let request = RunListRequest {
        state: match query.state.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse().map_err(AppError::BadRequest)?),
        },
        before: query
            .before
            .as_deref()
            .map(cursor::decode_run)
            .transpose()?,
        graph_run: query.run.filter(|run_id| !run_id.is_empty()),
    };
    let mut page = views::dag_page(&state, &dag_id, &request, Utc::now()).await?;
    page.user = Some(user);
    Ok(page)
}

pub(crate) async fn run(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<RunPage, AppError> {
    let mut page = views::run_page(state.store.as_ref(), &dag_id, &run_id, Utc::now()).await?;
    page.user = Some(user);
    Ok(page)
}

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    map_index: Option<String>,
}

pub(crate) async fn attempt_log(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Result<LogPage, AppError> {
    // a try or map index that is not a number names no attempt: the same 404 as a missing one
    let no_such_attempt =
        || AppError::NotFound(format!("task `{task_id}` has no try `{try_number}`"));
    let try_number: u32 = try_number.parse().map_err(|_| no_such_attempt())?;
    let map_index: i32 = match &query.map_index {
        Some(text) => text.parse().map_err(|_| no_such_attempt())?,
        None => UNMAPPED,
    };
    let request = LogRequest {
        dag_id: &dag_id,
        run_id: &run_id,
        task_id: &task_id,
        map_index,
        try_number,
    };
    let mut page = views::attempt_log_page(state.store.as_ref(), &request, Utc::now()).await?;
    page.user = Some(user);
    Ok(page)
}

pub(crate) async fn task_instance(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Result<TaskInstancePage, AppError> {
    let map_index: i32 = match &query.map_index {
        Some(text) => text.parse().map_err(|_| {
            AppError::NotFound(format!("task `{task_id}` has no map index `{text}`"))
        })?,
        None => UNMAPPED,
    };
    let request = TaskInstanceRequest {
        dag_id: &dag_id,
        run_id: &run_id,
        task_id: &task_id,
        map_index,
    };
    let mut page = views::task_instance_page(state.store.as_ref(), &request, Utc::now()).await?;
    page.user = Some(user);
    Ok(page)
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    before: Option<i64>,
}

pub(crate) async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<EventsQuery>,
) -> Result<EventsPage, AppError> {
    let mut page = views::events_page(state.store.as_ref(), query.before).await?;
    page.user = Some(user);
    Ok(page)
}

/// Admins only.
pub(crate) async fn access(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<AccessPage, AppError> {
    user.require(sluice_store::Role::Admin)?;
    let mut page = views::access_page(state.store.as_ref()).await?;
    page.user = Some(user);
    Ok(page)
}

/// 200 `ok` while the store answers a read, 503 otherwise (for load balancers and probes).
pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.list_dags().await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(error) => {
            tracing::warn!(%error, "health check failed: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

pub(crate) async fn not_found(uri: Uri) -> AppError {
    AppError::NotFound(format!("there is no page at `{}`", uri.path()))
}
