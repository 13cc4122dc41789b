//! Backfills from the web: a range of a DAG's schedule planned and created through the
//! scheduler crate's `backfill::{plan, create}` (as `sluice backfill` does), watched and
//! cancelled. Each change checks the role and is recorded in the audit log.

use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_core::Dag;
use sluice_scheduler::SchedulerError;
use sluice_scheduler::backfill::{self, Action, BackfillPlan, BackfillRequest, Bound};
use sluice_store::{BackfillProgress, BackfillRecord, Role, RunRange, StoreError};

use crate::AppState;
use crate::actions::{self, Audit, load_dag};
use crate::auth::CurrentUser;
use crate::error::AppError;

/// What a user asks for: the API's JSON body and the DAG page's form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BackfillInput {
    /// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (in the DAG's timezone) or RFC 3339; inclusive.
    #[serde(default)]
    pub start: String,
    /// As `start`; inclusive (a day means up to the next midnight).
    #[serde(default)]
    pub end: String,
    /// `None`: the DAG's.
    pub max_active_runs: Option<u32>,
    #[serde(default)]
    pub reverse: bool,
    #[serde(default)]
    pub rerun_failed: bool,
    /// A regex of task ids: only those rerun in existing runs.
    pub tasks: Option<String>,
    /// With `tasks`: every task downstream of them too.
    #[serde(default)]
    pub downstream: bool,
}

/// A backfill and how far it has come.
#[derive(Debug, Serialize)]
pub(crate) struct BackfillStatus {
    pub backfill: BackfillRecord,
    pub progress: BackfillProgress,
}

/// What asking for a backfill did.
#[derive(Debug, Serialize)]
pub(crate) struct Started {
    /// `created`, `resumed` (the DAG's open backfill of the same range) or `nothing_to_do`
    /// (every run in the range exists and is kept).
    pub outcome: &'static str,
    pub plan: BackfillPlan,
    pub backfill: Option<BackfillStatus>,
}

/// The plan for `input`, writing nothing: what a dry run shows.
pub(crate) async fn plan(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    input: &BackfillInput,
) -> Result<BackfillPlan, AppError> {
    user.require(Role::Operator)?;
    let (dag, request) = request(state, user, dag_id, input).await?;
    plan_of(state, &dag, &request).await
}

/// Creates the backfill `input` asks for, or resumes the DAG's open backfill of the same
/// range; another open backfill of the DAG is a conflict.
pub(crate) async fn start(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    input: &BackfillInput,
) -> Result<Started, AppError> {
    user.require(Role::Operator)?;
    let (dag, request) = request(state, user, dag_id, input).await?;
    let plan = plan_of(state, &dag, &request).await?;
    if let Some(open) = open_backfill_of(state, dag_id).await? {
        return resumed(state, open, &request, plan).await;
    }
    if !plan.has_work() {
        return Ok(Started {
            outcome: "nothing_to_do",
            plan,
            backfill: None,
        });
    }
    let record = match backfill::create(state.store.as_ref(), &dag, &plan, &request).await {
        Ok(record) => record,
        // another request created one a moment ago: the same range resumes it
        Err(SchedulerError::Store(StoreError::Conflict(message))) => {
            let open = open_backfill_of(state, dag_id)
                .await?
                .ok_or(AppError::Conflict(message))?;
            return resumed(state, open, &request, plan).await;
        }
        Err(error) => return Err(scheduler_error(error)),
    };
    let audit = Audit {
        action: "backfill",
        target: dag_id.to_owned(),
        details: json!({
            "backfill_id": record.id,
            "start": record.range_start,
            "end": record.range_end,
            "max_active_runs": record.max_active_runs,
            "reverse": record.reverse,
            "options": record.options,
            "create": plan.count(|a| *a == Action::Create),
            "rerun": plan.count(|a| matches!(a, Action::Rerun { .. })),
            "keep": plan.count(|a| matches!(a, Action::Keep { .. })),
        }),
        now: request.now,
    };
    actions::record(state.store.as_ref(), user, audit).await?;
    Ok(Started {
        outcome: "created",
        plan,
        backfill: Some(status_of(state, record).await?),
    })
}

/// One backfill and its progress; `NotFound` for an unknown id.
pub(crate) async fn status(state: &AppState, id: i64) -> Result<BackfillStatus, AppError> {
    let record = find(state, id).await?;
    status_of(state, record).await
}

/// Cancels an open backfill and its unfinished runs; `Conflict` when it has ended.
pub(crate) async fn cancel(
    state: &AppState,
    user: &CurrentUser,
    id: i64,
) -> Result<BackfillStatus, AppError> {
    user.require(Role::Operator)?;
    let before = find(state, id).await?;
    let now = Utc::now();
    if !state.store.cancel_backfill(id, now).await? {
        return Err(AppError::Conflict(format!(
            "backfill {id} of DAG `{}` has already ended ({})",
            before.dag_id, before.state
        )));
    }
    let audit = Audit {
        action: "cancel_backfill",
        target: before.dag_id.clone(),
        details: json!({ "backfill_id": id }),
        now,
    };
    actions::record(state.store.as_ref(), user, audit).await?;
    status(state, id).await
}

/// The dates read in the DAG's timezone and the tasks picked, as `sluice backfill` reads them.
async fn request(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    input: &BackfillInput,
) -> Result<(Arc<Dag>, BackfillRequest), AppError> {
    let (dag, _) = load_dag(state, dag_id).await?;
    let date = |field: &str, text: &str, bound: Bound| {
        if text.trim().is_empty() {
            return Err(AppError::BadRequest(format!("`{field}` is required")));
        }
        backfill::parse_date(text, dag.timezone, bound)
            .map_err(|e| AppError::BadRequest(format!("`{field}`: {e}")))
    };
    let range = RunRange {
        dag_id: dag_id.to_owned(),
        start: date("start", &input.start, Bound::Start)?,
        end: date("end", &input.end, Bound::End)?,
    };
    let tasks = match input.tasks.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(pattern) => Some(
            backfill::select_tasks(&dag, pattern, input.downstream)
                .map_err(|e| AppError::BadRequest(format!("`tasks`: {e}")))?,
        ),
    };
    let request = BackfillRequest {
        range,
        max_active_runs: input.max_active_runs,
        reverse: input.reverse,
        rerun_failed: input.rerun_failed,
        tasks,
        triggered_by: user.actor.clone(),
        now: Utc::now(),
    };
    Ok((dag, request))
}

async fn plan_of(
    state: &AppState,
    dag: &Dag,
    request: &BackfillRequest,
) -> Result<BackfillPlan, AppError> {
    backfill::plan(state.store.as_ref(), dag, request)
        .await
        .map_err(scheduler_error)
}

/// The open backfill of the same range carries on (its options are kept); another range is
/// a conflict.
async fn resumed(
    state: &AppState,
    open: BackfillRecord,
    request: &BackfillRequest,
    plan: BackfillPlan,
) -> Result<Started, AppError> {
    if open.range_start != request.range.start || open.range_end != request.range.end {
        return Err(AppError::Conflict(format!(
            "DAG `{}` already has backfill {} running for {} → {}: watch or cancel it first",
            open.dag_id, open.id, open.range_start, open.range_end
        )));
    }
    Ok(Started {
        outcome: "resumed",
        plan,
        backfill: Some(status_of(state, open).await?),
    })
}

async fn open_backfill_of(
    state: &AppState,
    dag_id: &str,
) -> Result<Option<BackfillRecord>, AppError> {
    Ok(state
        .store
        .open_backfills()
        .await?
        .into_iter()
        .find(|open| open.dag_id == dag_id))
}

async fn find(state: &AppState, id: i64) -> Result<BackfillRecord, AppError> {
    state
        .store
        .get_backfill(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("backfill {id} not found")))
}

async fn status_of(state: &AppState, backfill: BackfillRecord) -> Result<BackfillStatus, AppError> {
    let progress = state.store.backfill_progress(backfill.id).await?;
    Ok(BackfillStatus { backfill, progress })
}

/// A request the plan refuses is the user's to fix (400); the store's errors stay its own.
fn scheduler_error(error: SchedulerError) -> AppError {
    match error {
        SchedulerError::Invalid(message) | SchedulerError::BadParam(message) => {
            AppError::BadRequest(message)
        }
        SchedulerError::UnknownDag(dag_id) => {
            AppError::NotFound(format!("DAG `{dag_id}` not found"))
        }
        SchedulerError::Store(error) => AppError::Store(error),
        other => {
            tracing::error!(error = %other, "backfill failed");
            AppError::Conflict(other.to_string())
        }
    }
}
