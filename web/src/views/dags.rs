//! The DAG list (search, tags, counts, next run, recent runs, import errors) and one DAG's
//! page (grid, upcoming runs, run history with a filter, the YAML source).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use chrono::{DateTime, Utc};
use sluice_core::{Dag, RunState, Schedule, TaskState, Timetable};
use sluice_store::{
    DagRecord, ImportErrorRecord, RunCursor, RunFilter, RunPageQuery, RunRecord, Store,
    TaskInstanceRecord,
};

use super::RunRow;
use super::charts::{self, Graph};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::cursor;
use crate::error::AppError;
use crate::format::time;
use crate::paths;

/// Runs shown as squares per DAG on the list.
const RECENT_RUNS: u32 = 14;
/// DAGs per page of the list.
const DAGS_PER_PAGE: usize = 100;
/// Runs (columns) in a DAG's grid.
const GRID_RUNS: u32 = 25;
/// Runs per page of a DAG's run list.
const RUN_PAGE: u32 = 25;
/// Upcoming runs shown on a DAG's page.
const UPCOMING: usize = 5;

#[derive(Template, WebTemplate)]
#[template(path = "dags.html")]
pub(crate) struct DagsPage {
    refresh: bool,
    pub(crate) user: Option<CurrentUser>,
    import_errors: Vec<ImportErrorRecord>,
    dags: Vec<DagListRow>,
    /// Every tag of every DAG, for the filter.
    tags: Vec<String>,
    search: String,
    tag: String,
    /// DAGs before the search and tag filter.
    total: usize,
    /// DAGs the filter matches, on every page.
    matching: usize,
    previous_href: Option<String>,
    next_href: Option<String>,
}

/// What the DAG list is narrowed to.
pub(crate) struct DagListFilter<'a> {
    /// Part of the id or description, any case.
    pub search: &'a str,
    /// An exact tag.
    pub tag: &'a str,
    /// From 1.
    pub page: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "dag.html")]
pub(crate) struct DagPage {
    refresh: bool,
    pub(crate) user: Option<CurrentUser>,
    dag: DagSummary,
    grid: Grid,
    /// The DAG's tasks, coloured by the selected run's states.
    graph: Option<Graph>,
    /// The run whose states colour the graph.
    graph_run: Option<String>,
    /// When the next runs fire and the logical date each covers, in the DAG's timezone.
    upcoming: Vec<(String, String)>,
    /// The stored YAML and why it could not be read, if it could not.
    source: Option<String>,
    problem: Option<String>,
    runs: Vec<RunRow>,
    /// The run list's state filter, empty for all.
    state_filter: String,
    states: Vec<&'static str>,
    older_href: Option<String>,
    /// Back to the newest runs, when this is a later page.
    newest_href: Option<String>,
}

/// Which runs a DAG page lists.
pub(crate) struct RunListRequest {
    pub state: Option<RunState>,
    pub before: Option<RunCursor>,
    /// The run whose states colour the graph; the newest when `None`.
    pub graph_run: Option<String>,
}

pub(crate) async fn dags_page(
    state: &AppState,
    filter: &DagListFilter<'_>,
    now: DateTime<Utc>,
) -> Result<DagsPage, AppError> {
    let store = state.store.as_ref();
    let import_errors = store.import_errors().await?;
    let dags = store.list_dags().await?;
    let tags: BTreeSet<String> = dags.iter().flat_map(|dag| dag.tags.clone()).collect();
    let mut counts: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for count in store.run_counts().await? {
        counts.insert((count.dag_id, count.state.as_str()), count.count);
    }
    let search = filter.search.trim().to_lowercase();
    let matching: Vec<&DagRecord> = dags
        .iter()
        .filter(|dag| matches(dag, &search, filter.tag))
        .collect();
    let page = filter.page.max(1);
    let shown: Vec<&DagRecord> = matching
        .iter()
        .skip((page - 1) * DAGS_PER_PAGE)
        .take(DAGS_PER_PAGE)
        .copied()
        .collect();
    // the page's recent runs in one query, newest first within a DAG
    let ids: Vec<String> = shown.iter().map(|dag| dag.dag_id.clone()).collect();
    let mut recent: BTreeMap<String, Vec<RunRecord>> = BTreeMap::new();
    for run in store.recent_runs(&ids, RECENT_RUNS).await? {
        recent.entry(run.dag_id.clone()).or_default().push(run);
    }
    let mut rows = Vec::with_capacity(shown.len());
    for dag in shown {
        let runs = recent.remove(&dag.dag_id).unwrap_or_default();
        let count = |state: RunState| {
            counts
                .get(&(dag.dag_id.clone(), state.as_str()))
                .copied()
                .unwrap_or(0)
        };
        rows.push(DagListRow {
            dag: DagSummary::new(dag),
            running: count(RunState::Running),
            failed: count(RunState::Failed),
            next_run: next_run(state, dag, now).await,
            // oldest first, so the newest run sits at the right end
            recent_runs: runs.iter().rev().map(Square::new).collect(),
        });
    }
    let page_href = |page: usize| {
        let mut query: Vec<(&str, String)> = Vec::new();
        if !filter.search.is_empty() {
            query.push(("q", filter.search.to_owned()));
        }
        if !filter.tag.is_empty() {
            query.push(("tag", filter.tag.to_owned()));
        }
        query.push(("page", page.to_string()));
        format!(
            "/?{}",
            serde_urlencoded::to_string(&query).expect("text pairs encode")
        )
    };
    Ok(DagsPage {
        refresh: rows
            .iter()
            .any(|row| row.recent_runs.iter().any(|run| run.unfinished)),
        user: None,
        import_errors,
        total: dags.len(),
        matching: matching.len(),
        previous_href: (page > 1).then(|| page_href(page - 1)),
        next_href: (page * DAGS_PER_PAGE < matching.len()).then(|| page_href(page + 1)),
        dags: rows,
        tags: tags.into_iter().collect(),
        search: filter.search.to_owned(),
        tag: filter.tag.to_owned(),
    })
}

/// One recent run on the DAG list: a coloured square linking to it.
struct Square {
    run_id: String,
    href: String,
    state: &'static str,
    unfinished: bool,
}

impl Square {
    fn new(run: &RunRecord) -> Self {
        Square {
            run_id: run.run_id.clone(),
            href: paths::run(&run.dag_id, &run.run_id),
            state: run.state.as_str(),
            unfinished: !run.state.is_terminal(),
        }
    }
}

pub(crate) async fn dag_page(
    state: &AppState,
    dag_id: &str,
    request: &RunListRequest,
    now: DateTime<Utc>,
) -> Result<DagPage, AppError> {
    let store = state.store.as_ref();
    let Some(record) = store.get_dag(dag_id).await? else {
        return Err(AppError::NotFound(format!("DAG `{dag_id}` not found")));
    };
    let parsed = state.dags.get(store, &record).await;
    let (dag, problem) = match parsed {
        Ok(dag) => (Some(dag), None),
        // the page still shows the runs; it says why the definition is missing
        Err(AppError::Conflict(message)) => (None, Some(message)),
        Err(error) => return Err(error),
    };
    let source = store
        .dag_version(&record.hash)
        .await?
        .map(|version| version.source);

    let grid_runs = store.list_runs(&runs_of(dag_id, GRID_RUNS)).await?;
    let grid = Grid::build(store, dag.as_deref(), &grid_runs).await?;
    let selected = match &request.graph_run {
        Some(run_id) => store.get_run(dag_id, run_id).await?,
        None => grid_runs.first().cloned(),
    };
    let graph = match &dag {
        Some(dag) => Some(graph_of(store, dag, selected.as_ref()).await?),
        None => None,
    };
    let page = store
        .list_runs_page(&RunPageQuery {
            dag_id: Some(dag_id.to_owned()),
            state: request.state,
            before: request.before,
            limit: RUN_PAGE + 1,
        })
        .await?;
    let has_more = page.len() > RUN_PAGE as usize;
    let shown = &page[..page.len().min(RUN_PAGE as usize)];
    let state_filter = request.state.map_or("", RunState::as_str);
    let list_href = |before: Option<String>| {
        let mut query = Vec::new();
        if !state_filter.is_empty() {
            query.push(format!("state={state_filter}"));
        }
        if let Some(before) = before {
            query.push(format!("before={before}"));
        }
        let base = paths::dag(dag_id);
        if query.is_empty() {
            format!("{base}#runs")
        } else {
            format!("{base}?{}#runs", query.join("&"))
        }
    };
    let rows: Vec<RunRow> = shown.iter().map(|run| RunRow::new(run, now)).collect();
    let upcoming = match (&dag, record.is_active) {
        (Some(dag), true) => upcoming(dag, now),
        _ => Vec::new(),
    };
    Ok(DagPage {
        refresh: rows.iter().any(|run| run.unfinished)
            || grid.runs.iter().any(|run| run.unfinished),
        user: None,
        dag: DagSummary::new(&record),
        grid,
        graph,
        graph_run: selected.map(|run| run.run_id),
        upcoming,
        source,
        problem,
        older_href: has_more
            .then(|| shown.last())
            .flatten()
            .map(|last| list_href(Some(cursor::encode_run(run_cursor(last))))),
        newest_href: request.before.is_some().then(|| list_href(None)),
        runs: rows,
        state_filter: state_filter.to_owned(),
        states: RUN_STATES.iter().map(|state| state.as_str()).collect(),
    })
}

const RUN_STATES: [RunState; 5] = [
    RunState::Queued,
    RunState::Running,
    RunState::Success,
    RunState::Failed,
    RunState::Cancelled,
];

/// The graph of `dag`, each task coloured by its state in `run` and linked to it there.
async fn graph_of(
    store: &dyn Store,
    dag: &Dag,
    run: Option<&RunRecord>,
) -> Result<Graph, AppError> {
    let mut states = HashMap::new();
    if let Some(run) = run {
        let instances = store.task_instances(run.pk).await?;
        for task in &dag.tasks {
            let id = task.id.as_str();
            let mine: Vec<&TaskInstanceRecord> =
                instances.iter().filter(|ti| ti.task_id == id).collect();
            if let Some(shown) = mine.iter().max_by_key(|ti| urgency(ti.state)) {
                let href = format!("{}#task-{id}", paths::run(&run.dag_id, &run.run_id));
                states.insert(id.to_owned(), (shown.state.as_str(), href));
            }
        }
    }
    Ok(charts::graph(dag, &states))
}

fn run_cursor(run: &RunRecord) -> RunCursor {
    RunCursor {
        logical_date: run.logical_date,
        pk: run.pk,
    }
}

fn matches(dag: &DagRecord, search: &str, tag: &str) -> bool {
    let found = search.is_empty()
        || dag.dag_id.to_lowercase().contains(search)
        || dag
            .description
            .as_deref()
            .is_some_and(|text| text.to_lowercase().contains(search));
    found && (tag.is_empty() || dag.tags.iter().any(|t| t == tag))
}

/// When the DAG's next scheduled run fires, if it is scheduled, active and not paused.
async fn next_run(state: &AppState, dag: &DagRecord, now: DateTime<Utc>) -> Option<String> {
    if dag.is_paused || !dag.is_active || dag.schedule.is_none() {
        return None;
    }
    // a DAG whose stored version does not parse has no next run to show
    let parsed = state.dags.get(state.store.as_ref(), dag).await.ok()?;
    let next = timetable_upcoming(&parsed, now, 1).into_iter().next()?;
    Some(time(next.end))
}

fn upcoming(dag: &Dag, now: DateTime<Utc>) -> Vec<(String, String)> {
    let tz = dag.timezone;
    timetable_upcoming(dag, now, UPCOMING)
        .into_iter()
        .map(|interval| {
            let local = |at: DateTime<Utc>| {
                at.with_timezone(&tz)
                    .format("%Y-%m-%d %H:%M %Z")
                    .to_string()
            };
            (local(interval.end), local(interval.start))
        })
        .collect()
}

fn timetable_upcoming(dag: &Dag, now: DateTime<Utc>, n: usize) -> Vec<sluice_core::DataInterval> {
    let Some(schedule) = &dag.schedule else {
        return Vec::new();
    };
    Timetable {
        schedule,
        timezone: dag.timezone,
        start_date: dag.start_date,
        end_date: dag.end_date,
    }
    .upcoming(now, n)
}

fn runs_of(dag_id: &str, limit: u32) -> RunFilter {
    RunFilter {
        dag_id: Some(dag_id.to_owned()),
        state: None,
        limit,
    }
}

/// Runs as columns (oldest left), tasks as rows, one cell per task instance.
struct Grid {
    runs: Vec<GridRun>,
    rows: Vec<GridRow>,
}

struct GridRun {
    run_id: String,
    href: String,
    state: &'static str,
    /// `11-24 02:00`: the logical date, short.
    label: String,
    unfinished: bool,
}

struct GridRow {
    task_id: String,
    /// One per run, in the runs' order; `None` where the run has no such task.
    cells: Vec<Option<GridCell>>,
}

struct GridCell {
    state: &'static str,
    /// Tries so far, shown when more than one.
    tries: u32,
    /// Instances of a mapped task.
    mapped: usize,
    href: String,
    title: String,
}

impl Grid {
    async fn build(
        store: &dyn Store,
        dag: Option<&Dag>,
        newest_first: &[RunRecord],
    ) -> Result<Grid, AppError> {
        let runs: Vec<&RunRecord> = newest_first.iter().rev().collect();
        let pks: Vec<i64> = runs.iter().map(|run| run.pk).collect();
        // every run's instances in one query, then split by run
        let mut by_run: HashMap<i64, Vec<TaskInstanceRecord>> = HashMap::new();
        for instance in store.task_instances_of_runs(&pks).await? {
            by_run.entry(instance.run_pk).or_default().push(instance);
        }
        let instances: Vec<Vec<TaskInstanceRecord>> = pks
            .iter()
            .map(|pk| by_run.remove(pk).unwrap_or_default())
            .collect();
        // the DAG's own task order, then tasks only older runs had
        let mut task_ids: Vec<String> = dag
            .map(|dag| dag.tasks.iter().map(|task| task.id.to_string()).collect())
            .unwrap_or_default();
        for instance in instances.iter().flatten() {
            if !task_ids.contains(&instance.task_id) {
                task_ids.push(instance.task_id.clone());
            }
        }
        let rows = task_ids
            .into_iter()
            .map(|task_id| GridRow {
                cells: runs
                    .iter()
                    .zip(&instances)
                    .map(|(run, of_run)| GridCell::new(run, of_run, &task_id))
                    .collect(),
                task_id,
            })
            .collect();
        Ok(Grid {
            runs: runs
                .iter()
                .map(|run| GridRun {
                    run_id: run.run_id.clone(),
                    href: paths::run(&run.dag_id, &run.run_id),
                    state: run.state.as_str(),
                    label: run.logical_date.format("%m-%d %H:%M").to_string(),
                    unfinished: !run.state.is_terminal(),
                })
                .collect(),
            rows,
        })
    }
}

impl GridCell {
    fn new(run: &RunRecord, instances: &[TaskInstanceRecord], task_id: &str) -> Option<Self> {
        let mut mine: Vec<&TaskInstanceRecord> = instances
            .iter()
            .filter(|instance| instance.task_id == task_id)
            .collect();
        // once a `foreach` template expanded, its mapped instances are the task
        if mine.iter().any(|instance| instance.map_index >= 0) {
            mine.retain(|instance| instance.map_index >= 0);
        }
        // a mapped task shows its most pressing state
        let shown = mine.iter().max_by_key(|instance| urgency(instance.state))?;
        let tries = mine.iter().map(|instance| instance.try_number).max()?;
        Some(GridCell {
            state: shown.state.as_str(),
            tries,
            mapped: if mine.len() > 1 { mine.len() } else { 0 },
            // one instance opens its own page; a mapped task's instances are listed on the run's
            href: match mine.as_slice() {
                [only] => paths::task_instance(&run.dag_id, &run.run_id, task_id, only.map_index),
                _ => format!("{}#task-{}", paths::run(&run.dag_id, &run.run_id), task_id),
            },
            title: format!(
                "{task_id} · {} · {} · try {tries}",
                run.run_id,
                shown.state.as_str()
            ),
        })
    }
}

/// Which state of a mapped task's instances the grid shows: trouble first.
fn urgency(state: TaskState) -> u8 {
    match state {
        TaskState::Failed => 9,
        TaskState::UpstreamFailed => 8,
        TaskState::UpForRetry => 7,
        TaskState::Running | TaskState::UpForReschedule => 6,
        TaskState::Queued => 5,
        TaskState::Pending => 4,
        TaskState::Cancelled => 3,
        TaskState::Skipped => 2,
        TaskState::Success => 1,
    }
}

struct DagListRow {
    dag: DagSummary,
    running: u64,
    failed: u64,
    next_run: Option<String>,
    /// Oldest first.
    recent_runs: Vec<Square>,
}

struct DagSummary {
    dag_id: String,
    href: String,
    trigger_href: String,
    backfill_href: String,
    pause_href: String,
    description: Option<String>,
    fileloc: String,
    hash: String,
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
            backfill_href: paths::backfill(&dag.dag_id),
            pause_href: paths::pause(&dag.dag_id),
            description: dag
                .description
                .clone()
                .filter(|text| !text.trim().is_empty()),
            fileloc: dag.fileloc.clone(),
            hash: dag.hash.clone(),
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
