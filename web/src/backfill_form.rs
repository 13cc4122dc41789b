//! The backfill form on a DAG's page (operators): the range and options, then the plan (what
//! happens to each date, nothing written yet), then the backfill created from it.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sluice_scheduler::backfill::{Action, BackfillPlan};
use sluice_store::Role;

use crate::AppState;
use crate::actions::load_dag;
use crate::auth::CurrentUser;
use crate::backfills::{self, BackfillInput, BackfillStatus};
use crate::error::AppError;
use crate::format::time;
use crate::paths;

#[derive(Template, WebTemplate)]
#[template(path = "backfill.html")]
pub(crate) struct BackfillPage {
    refresh: bool,
    user: Option<CurrentUser>,
    dag_id: String,
    dag_href: String,
    action: String,
    paused: bool,
    /// What was typed, shown again.
    fields: BackfillFields,
    error: Option<String>,
    plan: Option<PlanView>,
    created: Option<CreatedView>,
}

/// The form as posted: every field text, a checkbox present only when ticked.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BackfillFields {
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    max_active_runs: String,
    #[serde(default)]
    tasks: String,
    reverse: Option<String>,
    rerun_failed: Option<String>,
    downstream: Option<String>,
    /// `plan` (the first button) or `create` (the button under the plan).
    #[serde(default)]
    intent: String,
}

struct PlanView {
    rows: Vec<PlanRow>,
    create: usize,
    rerun: usize,
    keep: usize,
    not_yet_due: usize,
    max_active_runs: u32,
    has_work: bool,
}

struct PlanRow {
    logical_date: String,
    existing: Option<(String, String, &'static str)>,
    action: String,
}

struct CreatedView {
    id: i64,
    outcome: &'static str,
    total: u32,
    max_active_runs: u32,
}

pub(crate) async fn form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<BackfillPage, AppError> {
    user.require(Role::Operator)?;
    let (_, paused) = load_dag(&state, &dag_id).await?;
    Ok(page(user, &dag_id, paused, BackfillFields::default()))
}

/// `intent=plan` shows the plan; `intent=create` creates (or resumes) the backfill. A bad
/// date, regex or limit shows the form again with the reason, and nothing is created.
pub(crate) async fn submit(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Form(fields): Form<BackfillFields>,
) -> Result<Response, AppError> {
    user.require(Role::Operator)?;
    let (_, paused) = load_dag(&state, &dag_id).await?;
    let input = match input(&fields) {
        Ok(input) => input,
        Err(message) => return Ok(refused(user, &dag_id, paused, fields, message)),
    };
    let result = if fields.intent == "create" {
        backfills::start(&state, &user, &dag_id, &input)
            .await
            .map(|started| (started.plan, started.backfill.map(|b| (started.outcome, b))))
    } else {
        backfills::plan(&state, &user, &dag_id, &input)
            .await
            .map(|plan| (plan, None))
    };
    let (plan, created) = match result {
        Ok(done) => done,
        Err(AppError::BadRequest(message) | AppError::Conflict(message)) => {
            return Ok(refused(user, &dag_id, paused, fields, message));
        }
        Err(error) => return Err(error),
    };
    let mut page = page(user, &dag_id, paused, fields);
    page.plan = Some(plan_view(&plan));
    page.created = created.map(|(outcome, status)| created_view(outcome, &status));
    Ok(page.into_response())
}

fn input(fields: &BackfillFields) -> Result<BackfillInput, String> {
    let max_active_runs =
        match fields.max_active_runs.trim() {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                format!("`max_active_runs`: `{text}` is not a whole number of runs")
            })?),
        };
    Ok(BackfillInput {
        start: fields.start.clone(),
        end: fields.end.clone(),
        max_active_runs,
        reverse: fields.reverse.is_some(),
        rerun_failed: fields.rerun_failed.is_some(),
        tasks: Some(fields.tasks.clone()).filter(|tasks| !tasks.trim().is_empty()),
        downstream: fields.downstream.is_some(),
    })
}

fn refused(
    user: CurrentUser,
    dag_id: &str,
    paused: bool,
    fields: BackfillFields,
    message: String,
) -> Response {
    let mut page = page(user, dag_id, paused, fields);
    page.error = Some(message);
    (StatusCode::BAD_REQUEST, page).into_response()
}

fn page(user: CurrentUser, dag_id: &str, paused: bool, fields: BackfillFields) -> BackfillPage {
    BackfillPage {
        refresh: false,
        user: Some(user),
        dag_id: dag_id.to_owned(),
        dag_href: paths::dag(dag_id),
        action: paths::backfill(dag_id),
        paused,
        fields,
        error: None,
        plan: None,
        created: None,
    }
}

fn plan_view(plan: &BackfillPlan) -> PlanView {
    PlanView {
        rows: plan
            .runs
            .iter()
            .map(|planned| PlanRow {
                logical_date: time(planned.interval.start),
                existing: planned.existing.as_ref().map(|run| {
                    (
                        run.run_id.clone(),
                        paths::run(&run.dag_id, &run.run_id),
                        run.state.as_str(),
                    )
                }),
                action: match &planned.action {
                    Action::Create => "create".to_owned(),
                    Action::Rerun { tasks } => format!("rerun {}", tasks.join(", ")),
                    Action::Keep { reason } => format!("keep: {reason}"),
                },
            })
            .collect(),
        create: plan.count(|a| *a == Action::Create),
        rerun: plan.count(|a| matches!(a, Action::Rerun { .. })),
        keep: plan.count(|a| matches!(a, Action::Keep { .. })),
        not_yet_due: plan.not_yet_due,
        max_active_runs: plan.max_active_runs,
        has_work: plan.has_work(),
    }
}

fn created_view(outcome: &'static str, status: &BackfillStatus) -> CreatedView {
    CreatedView {
        id: status.backfill.id,
        outcome,
        total: status.progress.total,
        max_active_runs: status.backfill.max_active_runs,
    }
}
