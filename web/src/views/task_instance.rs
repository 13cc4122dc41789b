//! One task instance of a run: every attempt with its facts, log link and rendered fields, and
//! the task's outputs.

use askama::Template;
use askama_web::WebTemplate;
use chrono::{DateTime, Utc};
use sluice_store::Store;

use super::find_run;
use super::runs::{AttemptRow, map_suffix, mapped};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::format::time;
use crate::paths;

#[derive(Template, WebTemplate)]
#[template(path = "task_instance.html")]
pub(crate) struct TaskInstancePage {
    refresh: bool,
    pub(crate) user: Option<CurrentUser>,
    dag_id: String,
    dag_href: String,
    run_id: String,
    run_href: String,
    task_id: String,
    map_index: Option<i32>,
    state: &'static str,
    try_number: u32,
    max_tries: u32,
    next_try_at: Option<String>,
    /// Oldest try first.
    attempts: Vec<AttemptView>,
    /// What the task's successful attempt returned: key and JSON value.
    outputs: Vec<(String, String)>,
}

struct AttemptView {
    row: AttemptRow,
    /// Field name and rendered text, secrets masked by the worker; `None` when the attempt
    /// recorded nothing (it failed before rendering, or its step renders nothing).
    rendered: Option<Vec<(String, String)>>,
}

/// Which task instance a request asks for.
pub(crate) struct TaskInstanceRequest<'a> {
    pub dag_id: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub map_index: i32,
}

pub(crate) async fn task_instance_page(
    store: &dyn Store,
    request: &TaskInstanceRequest<'_>,
    now: DateTime<Utc>,
) -> Result<TaskInstancePage, AppError> {
    let run = find_run(store, request.dag_id, request.run_id).await?;
    let instance = store
        .task_instances(run.pk)
        .await?
        .into_iter()
        .find(|instance| {
            instance.task_id == request.task_id && instance.map_index == request.map_index
        })
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "run `{}` has no task `{}`{}",
                request.run_id,
                request.task_id,
                map_suffix(request.map_index)
            ))
        })?;
    let attempts = store.attempts(run.pk).await?;
    let rendered = store.rendered_fields(run.pk).await?;
    let outputs = store
        .run_outputs(run.pk)
        .await?
        .remove(&instance.task_id)
        .unwrap_or_default();
    Ok(TaskInstancePage {
        user: None,
        refresh: !instance.state.is_terminal(),
        dag_id: run.dag_id.clone(),
        dag_href: paths::dag(&run.dag_id),
        run_id: run.run_id.clone(),
        run_href: paths::run(&run.dag_id, &run.run_id),
        task_id: instance.task_id.clone(),
        map_index: mapped(instance.map_index),
        state: instance.state.as_str(),
        try_number: instance.try_number,
        max_tries: instance.max_tries,
        next_try_at: instance.next_try_at.map(time),
        attempts: attempts
            .iter()
            .filter(|attempt| attempt.ti_id == instance.id)
            .map(|attempt| AttemptView {
                row: AttemptRow::new(&run, attempt, now),
                rendered: rendered
                    .iter()
                    .find(|record| record.attempt_id == attempt.id)
                    .map(|record| record.fields.clone().into_iter().collect()),
            })
            .collect(),
        outputs: outputs
            .into_iter()
            .map(|(key, value)| (key, value.to_string()))
            .collect(),
    })
}
