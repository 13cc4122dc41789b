//! The DAG list (with import errors and recent runs) and one DAG's run history.

use askama::Template;
use askama_web::WebTemplate;
use chrono::{DateTime, Utc};
use sluice_core::Schedule;
use sluice_store::{DagRecord, ImportErrorRecord, RunFilter, Store};

use super::RunRow;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::format::time;
use crate::paths;

/// Runs shown as squares per DAG on the list.
const RECENT_RUNS: u32 = 12;
/// Runs listed on a DAG's page.
const RUN_HISTORY: u32 = 100;

#[derive(Template, WebTemplate)]
#[template(path = "dags.html")]
pub(crate) struct DagsPage {
    refresh: bool,
    pub(crate) user: Option<CurrentUser>,
    import_errors: Vec<ImportErrorRecord>,
    dags: Vec<DagListRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "dag.html")]
pub(crate) struct DagPage {
    refresh: bool,
    pub(crate) user: Option<CurrentUser>,
    dag: DagSummary,
    runs: Vec<RunRow>,
    /// The history was cut at `RUN_HISTORY` runs.
    truncated: bool,
}

pub(crate) async fn dags_page(store: &dyn Store, now: DateTime<Utc>) -> Result<DagsPage, AppError> {
    let import_errors = store.import_errors().await?;
    let dags = store.list_dags().await?;
    let mut rows = Vec::with_capacity(dags.len());
    for dag in &dags {
        let runs = store.list_runs(&runs_of(&dag.dag_id, RECENT_RUNS)).await?;
        rows.push(DagListRow {
            dag: DagSummary::new(dag),
            // oldest first, so the newest run sits at the right end
            recent_runs: runs.iter().rev().map(|run| RunRow::new(run, now)).collect(),
        });
    }
    Ok(DagsPage {
        user: None,
        refresh: rows
            .iter()
            .any(|row| row.recent_runs.iter().any(|run| run.unfinished)),
        import_errors,
        dags: rows,
    })
}

pub(crate) async fn dag_page(
    store: &dyn Store,
    dag_id: &str,
    now: DateTime<Utc>,
) -> Result<DagPage, AppError> {
    let Some(dag) = store.get_dag(dag_id).await? else {
        return Err(AppError::NotFound(format!("DAG `{dag_id}` not found")));
    };
    let runs = store.list_runs(&runs_of(dag_id, RUN_HISTORY)).await?;
    let rows: Vec<RunRow> = runs.iter().map(|run| RunRow::new(run, now)).collect();
    Ok(DagPage {
        user: None,
        refresh: rows.iter().any(|run| run.unfinished),
        truncated: rows.len() >= RUN_HISTORY as usize,
        dag: DagSummary::new(&dag),
        runs: rows,
    })
}

fn runs_of(dag_id: &str, limit: u32) -> RunFilter {
    RunFilter {
        dag_id: Some(dag_id.to_owned()),
        state: None,
        limit,
    }
}

struct DagListRow {
    dag: DagSummary,
    /// Oldest first.
    recent_runs: Vec<RunRow>,
}

struct DagSummary {
    dag_id: String,
    href: String,
    trigger_href: String,
    pause_href: String,
    description: Option<String>,
    fileloc: String,
    schedule: ScheduleView,
    timezone: String,
    paused: bool,
    /// False once the DAG's file is gone.
    active: bool,
    tags: Vec<String>,
    updated_at: String,
}

impl DagSummary {
    fn new(dag: &DagRecord) -> Self {
        DagSummary {
            dag_id: dag.dag_id.clone(),
            href: paths::dag(&dag.dag_id),
            trigger_href: paths::trigger(&dag.dag_id),
            pause_href: paths::pause(&dag.dag_id),
            description: dag
                .description
                .clone()
                .filter(|text| !text.trim().is_empty()),
            fileloc: dag.fileloc.clone(),
            schedule: ScheduleView::new(dag.schedule.as_deref()),
            timezone: dag.timezone.clone(),
            paused: dag.is_paused,
            active: dag.is_active,
            tags: dag.tags.clone(),
            updated_at: time(dag.updated_at),
        }
    }
}

struct ScheduleView {
    /// As written in the DAG file; `None` for a DAG that only runs when triggered.
    expression: Option<String>,
    /// In words ("every day at 02:00"); empty when the words would only repeat the expression.
    description: String,
}

impl ScheduleView {
    fn new(expression: Option<&str>) -> Self {
        let Some(text) = expression else {
            return ScheduleView {
                expression: None,
                description: "manual only".to_owned(),
            };
        };
        // the registry stored it after parsing, so a failure here means an older format:
        // show the text as it is rather than failing the page
        let description = Schedule::parse(text)
            .map(|schedule| schedule.describe())
            .unwrap_or_default();
        ScheduleView {
            description: if description == text.trim() {
                String::new()
            } else {
                description
            },
            expression: Some(text.to_owned()),
        }
    }
}
