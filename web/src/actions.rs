//! What operators do from the pages: trigger a DAG with params, pause or unpause it, cancel a
//! run. Each action checks the role, does one store call, and is recorded in the audit log.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::Dag;
use sluice_core::TaskState;
use sluice_scheduler::SchedulerError;
use sluice_store::{ClearTasks, MarkTaskInstance, NewEvent, Paused, Role, RunRecord, Store};

use crate::AppState;
use crate::auth::{CurrentUser, safe_next};
use crate::error::AppError;
use crate::paths;

#[derive(Template, WebTemplate)]
#[template(path = "trigger.html")]
pub(crate) struct TriggerPage {
    refresh: bool,
    user: Option<CurrentUser>,
    dag_id: String,
    dag_href: String,
    action: String,
    paused: bool,
    fields: Vec<ParamField>,
    error: Option<String>,
}

/// One of the DAG's params as a form field, holding its default or what was typed.
struct ParamField {
    name: String,
    /// `param.NAME`, so a param can never collide with the form's own fields.
    input: String,
    value: String,
    /// The kind of value expected: `text`, `number`, `true or false`, `JSON list`, `JSON map`.
    kind: &'static str,
    default: String,
}

pub(crate) async fn trigger_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<TriggerPage, AppError> {
    user.require(Role::Operator)?;
    let (dag, paused) = load_dag(&state, &dag_id).await?;
    Ok(trigger_page(user, &dag, paused, &BTreeMap::new(), None))
}

/// Validates the params as `sluice dags trigger --param` does; a bad value shows the form
/// again with the message and creates nothing.
pub(crate) async fn trigger(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    user.require(Role::Operator)?;
    let store = state.store.as_ref();
    let (dag, paused) = load_dag(&state, &dag_id).await?;
    let typed: BTreeMap<String, String> = fields
        .into_iter()
        .filter_map(|(name, value)| Some((name.strip_prefix("param.")?.to_owned(), value)))
        .collect();
    let pairs: Vec<String> = typed
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let overrides = match sluice_scheduler::parse_param_overrides(&dag, &pairs) {
        Ok(overrides) => overrides,
        Err(SchedulerError::BadParam(message)) => {
            let page = trigger_page(user, &dag, paused, &typed, Some(message));
            return Ok((StatusCode::BAD_REQUEST, page).into_response());
        }
        Err(error) => return Err(AppError::BadRequest(error.to_string())),
    };
    let run = trigger_run(store, &dag, overrides, &user).await?;
    Ok(Redirect::to(&paths::run(&run.dag_id, &run.run_id)).into_response())
}

/// A manual run of `dag` now, as `user`, recorded in the audit log. Shared with the API.
pub(crate) async fn trigger_run(
    store: &dyn Store,
    dag: &Dag,
    params: BTreeMap<String, Value>,
    user: &CurrentUser,
) -> Result<RunRecord, AppError> {
    let now = Utc::now();
    let run = sluice_scheduler::trigger(store, dag, params.clone(), &user.actor, now)
        .await
        .map_err(|error| match error {
            SchedulerError::Store(sluice_store::StoreError::Conflict(message)) => {
                AppError::Conflict(message)
            }
            SchedulerError::Store(error) => AppError::Store(error),
            other => AppError::BadRequest(other.to_string()),
        })?;
    record(
        store,
        user,
        Audit {
            action: "trigger",
            target: format!("{}/{}", run.dag_id, run.run_id),
            details: json!({ "params": params }),
            now,
        },
    )
    .await?;
    Ok(run)
}

#[derive(Deserialize)]
pub(crate) struct PauseForm {
    /// `true` pauses, `false` unpauses.
    paused: bool,
    /// The page to return to.
    back: Option<String>,
}

pub(crate) async fn pause(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Form(form): Form<PauseForm>,
) -> Result<Response, AppError> {
    set_paused(state.store.as_ref(), &user, &dag_id, form.paused).await?;
    let back = form.back.unwrap_or_else(|| paths::dag(&dag_id));
    Ok(Redirect::to(&safe_next(Some(&back))).into_response())
}

/// Pauses or unpauses, as `user`, recorded in the audit log. Shared with the API.
pub(crate) async fn set_paused(
    store: &dyn Store,
    user: &CurrentUser,
    dag_id: &str,
    paused: bool,
) -> Result<(), AppError> {
    user.require(Role::Operator)?;
    let state = if paused {
        Paused::Paused
    } else {
        Paused::Active
    };
    store.set_paused(dag_id, state).await?;
    let audit = Audit {
        action: if paused { "pause" } else { "unpause" },
        target: dag_id.to_owned(),
        details: json!({}),
        now: Utc::now(),
    };
    record(store, user, audit).await
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    cancel_run(state.store.as_ref(), &user, &dag_id, &run_id).await?;
    Ok(Redirect::to(&paths::run(&dag_id, &run_id)).into_response())
}

/// Cancels an unfinished run, as `user`, recorded in the audit log. Shared with the API.
pub(crate) async fn cancel_run(
    store: &dyn Store,
    user: &CurrentUser,
    dag_id: &str,
    run_id: &str,
) -> Result<(), AppError> {
    user.require(Role::Operator)?;
    let run = crate::views::find_run(store, dag_id, run_id).await?;
    let now = Utc::now();
    if !store.cancel_run(run.pk, now).await? {
        return Err(AppError::Conflict(format!(
            "run `{run_id}` of DAG `{dag_id}` has already finished ({})",
            run.state
        )));
    }
    let audit = Audit {
        action: "cancel_run",
        target: format!("{dag_id}/{run_id}"),
        details: json!({ "state_before": run.state.as_str() }),
        now,
    };
    record(store, user, audit).await
}

#[derive(Deserialize)]
pub(crate) struct MarkForm {
    /// `success` or `failed`.
    state: String,
    /// One instance of a mapped task; every instance of the task when absent.
    map_index: Option<i32>,
}

pub(crate) async fn mark(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Form(form): Form<MarkForm>,
) -> Result<Response, AppError> {
    let request = MarkRequest {
        dag_id: &dag_id,
        run_id: &run_id,
        task_id: &task_id,
        map_index: form.map_index,
        state: &form.state,
    };
    mark_task(state.store.as_ref(), &user, &request).await?;
    Ok(Redirect::to(&paths::run(&dag_id, &run_id)).into_response())
}

/// Which task instance to mark, and as what.
pub(crate) struct MarkRequest<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub map_index: Option<i32>,
    /// `success` or `failed`, as typed.
    pub state: &'a str,
}

/// Marks a task success or failed, as `user`, recorded in the audit log. Shared with the API.
pub(crate) async fn mark_task(
    store: &dyn Store,
    user: &CurrentUser,
    request: &MarkRequest<'_>,
) -> Result<(), AppError> {
    user.require(Role::Operator)?;
    let new_state = match request.state {
        "success" => TaskState::Success,
        "failed" => TaskState::Failed,
        other => {
            return Err(AppError::BadRequest(format!(
                "a task can be marked `success` or `failed`, not `{other}`"
            )));
        }
    };
    let run = crate::views::find_run(store, request.dag_id, request.run_id).await?;
    let now = Utc::now();
    store
        .mark_task_instance(&MarkTaskInstance {
            run_pk: run.pk,
            task_id: request.task_id.to_owned(),
            map_index: request.map_index,
            state: new_state,
            now,
        })
        .await?;
    let audit = Audit {
        action: if new_state == TaskState::Success {
            "mark_success"
        } else {
            "mark_failed"
        },
        target: format!("{}/{}", request.dag_id, request.run_id),
        details: json!({ "task_id": request.task_id, "map_index": request.map_index }),
        now,
    };
    record(store, user, audit).await
}

#[derive(Deserialize)]
pub(crate) struct ClearForm {
    /// One task; the whole run when absent.
    task_id: Option<String>,
    /// `true`: the task's downstream tasks too.
    #[serde(default)]
    downstream: bool,
}

pub(crate) async fn clear(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    Form(form): Form<ClearForm>,
) -> Result<Response, AppError> {
    let request = ClearRequest {
        dag_id: &dag_id,
        run_id: &run_id,
        task_ids: form.task_id.into_iter().collect(),
        downstream: form.downstream,
    };
    clear_run_tasks(&state, &user, &request).await?;
    Ok(Redirect::to(&paths::run(&dag_id, &run_id)).into_response())
}

/// Which task instances of a run to run again.
pub(crate) struct ClearRequest<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    /// Empty: every task of the run.
    pub task_ids: Vec<String>,
    pub downstream: bool,
}

/// Clears tasks of a run (with their downstream tasks, from the DAG version the run is pinned
/// to) through the store's `clear_tasks`, as `user`, audited. Shared with the API. Returns
/// how many task instances were cleared.
pub(crate) async fn clear_run_tasks(
    state: &AppState,
    user: &CurrentUser,
    request: &ClearRequest<'_>,
) -> Result<u32, AppError> {
    user.require(Role::Operator)?;
    let store = state.store.as_ref();
    let run = crate::views::find_run(store, request.dag_id, request.run_id).await?;
    let instances = store.task_instances(run.pk).await?;
    let in_run = |task_id: &str| instances.iter().any(|ti| ti.task_id == task_id);
    let mut task_ids: Vec<String> = if request.task_ids.is_empty() {
        instances.iter().map(|ti| ti.task_id.clone()).collect()
    } else {
        request.task_ids.clone()
    };
    if let Some(unknown) = task_ids.iter().find(|id| !in_run(id)) {
        return Err(AppError::NotFound(format!(
            "run `{}` has no task `{unknown}`",
            request.run_id
        )));
    }
    if request.downstream && !request.task_ids.is_empty() {
        let dag = state
            .dags
            .version(store, &run.dag_id, &run.dag_hash)
            .await?;
        task_ids = with_downstream(&dag, &task_ids);
    }
    task_ids.sort();
    task_ids.dedup();
    let now = Utc::now();
    let cleared = store
        .clear_tasks(&ClearTasks {
            run_pk: run.pk,
            task_ids: task_ids.clone(),
            now,
        })
        .await?;
    let audit = Audit {
        action: "clear",
        target: format!("{}/{}", request.dag_id, request.run_id),
        details: json!({ "task_ids": task_ids, "downstream": request.downstream, "cleared": cleared }),
        now,
    };
    record(store, user, audit).await?;
    Ok(cleared)
}

/// `selected` and every task that depends on one of them, directly or not.
fn with_downstream(dag: &Dag, selected: &[String]) -> Vec<String> {
    let mut chosen: Vec<String> = selected.to_vec();
    let mut changed = true;
    while changed {
        changed = false;
        for task in &dag.tasks {
            let id = task.id.as_str();
            if chosen.iter().any(|c| c == id) {
                continue;
            }
            if task
                .depends_on
                .iter()
                .any(|up| chosen.iter().any(|c| c == up.as_str()))
            {
                chosen.push(id.to_owned());
                changed = true;
            }
        }
    }
    chosen
}

/// The DAG as the scheduler last loaded it, and whether it is paused; only a DAG whose file
/// is still in the folder can be acted on.
pub(crate) async fn load_dag(state: &AppState, dag_id: &str) -> Result<(Arc<Dag>, bool), AppError> {
    let Some(record) = state.store.get_dag(dag_id).await? else {
        return Err(AppError::NotFound(format!("DAG `{dag_id}` not found")));
    };
    if !record.is_active {
        return Err(AppError::Conflict(format!(
            "DAG `{dag_id}` is no longer in the DAG folder (its file {} is gone)",
            record.fileloc
        )));
    }
    let dag = state.dags.get(state.store.as_ref(), &record).await?;
    Ok((dag, record.is_paused))
}

/// One entry of the audit log.
pub(crate) struct Audit {
    pub action: &'static str,
    pub target: String,
    pub details: Value,
    pub now: DateTime<Utc>,
}

pub(crate) async fn record(
    store: &dyn Store,
    user: &CurrentUser,
    audit: Audit,
) -> Result<(), AppError> {
    tracing::info!(actor = %user.actor, action = audit.action, target = %audit.target, "action");
    store
        .record_event(&NewEvent {
            actor: user.actor.clone(),
            action: audit.action.to_owned(),
            target: audit.target,
            details: audit.details,
            now: audit.now,
        })
        .await?;
    Ok(())
}

fn trigger_page(
    user: CurrentUser,
    dag: &Dag,
    paused: bool,
    typed: &BTreeMap<String, String>,
    error: Option<String>,
) -> TriggerPage {
    let dag_id = dag.id.to_string();
    TriggerPage {
        refresh: false,
        user: Some(user),
        dag_href: paths::dag(&dag_id),
        action: paths::trigger(&dag_id),
        paused,
        fields: dag
            .params
            .iter()
            .map(|(name, default)| ParamField {
                name: name.clone(),
                input: format!("param.{name}"),
                value: typed
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| as_typed(default)),
                kind: kind_of(default),
                default: default.to_string(),
            })
            .collect(),
        dag_id,
        error,
    }
}

/// A param's default as a person would type it: text bare, anything else as JSON.
fn as_typed(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::String(_) | Value::Null => "text",
        Value::Number(_) => "number",
        Value::Bool(_) => "true or false",
        Value::Array(_) => "JSON list",
        Value::Object(_) => "JSON map",
    }
}
