//! The DAG list's filters and counts, and a DAG's grid, run list, schedule and source.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::TimeDelta;
use sluice_core::{DataInterval, RunType};
use sluice_store::{DagSnapshot, NewRun, NewTaskInstance, Store};

use crate::support::{
    Ending, SUCCEEDED, TestApp, at, claim_one, finish, links_containing, sync, task,
};

const SALES: &str = "\
dag: sales
description: Orders per region
schedule: '0 2 * * *'
start_date: 2026-01-01
tags: [sales, '<script>x</script>']
tasks:
  extract:
    type: shell
    command: echo extract
  load:
    type: shell
    depends_on: [extract]
    command: echo load
";

const ADS: &str = "\
dag: ads
schedule: null
tags: [marketing]
tasks:
  only:
    type: noop
";

fn snapshot(dag_id: &str, source: &str, schedule: Option<&str>, tags: &[&str]) -> DagSnapshot {
    DagSnapshot {
        dag_id: dag_id.to_owned(),
        fileloc: format!("dags/{dag_id}.yaml"),
        hash: format!("{dag_id}-hash-0123456789abcdef"),
        source: source.to_owned(),
        schedule: schedule.map(str::to_owned),
        timezone: "UTC".to_owned(),
        description: None,
        tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
    }
}

async fn seed(store: &dyn Store) {
    let mut sales = snapshot(
        "sales",
        SALES,
        Some("0 2 * * *"),
        &["sales", "<script>x</script>"],
    );
    sales.description = Some("Orders per region".to_owned());
    sync(
        store,
        vec![sales, snapshot("ads", ADS, None, &["marketing"])],
        Vec::new(),
    )
    .await;
}

/// The scheduled run of `dag_id` for `days` days before `at(0)`, not started.
async fn create_run(
    store: &dyn Store,
    dag_id: &str,
    days: i64,
    tasks: Vec<NewTaskInstance>,
) -> String {
    let logical_date = at(0) - TimeDelta::days(days);
    let run_id = format!("scheduled__{}", logical_date.format("%Y-%m-%dT%H:%M:%SZ"));
    store
        .create_run_if_absent(&NewRun {
            dag_id: dag_id.to_owned(),
            run_id: run_id.clone(),
            run_type: RunType::Scheduled,
            logical_date,
            data_interval: DataInterval {
                start: logical_date,
                end: logical_date + TimeDelta::days(1),
            },
            dag_hash: format!("{dag_id}-hash-0123456789abcdef"),
            params: BTreeMap::new(),
            triggered_by: "scheduler".to_owned(),
            tasks,
            now: at(1),
        })
        .await
        .expect("creating a run")
        .expect("a new run");
    run_id
}

#[tokio::test]
async fn dag_page_shows_the_grid_with_retries_the_source_and_the_next_runs() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    seed(store).await;
    let run_id = create_run(
        store,
        "sales",
        1,
        vec![task("extract", &[], 1), task("load", &["extract"], 0)],
    )
    .await;
    store
        .start_queued_runs("sales", 16, at(2))
        .await
        .expect("starting");
    let first = claim_one(store, "extract", at(3)).await;
    let failed = Ending {
        outcome: sluice_store::AttemptOutcome::Failed,
        exit_code: Some(1),
        error: Some("boom"),
    };
    finish(store, &first, failed, at(4)).await;
    let second = claim_one(store, "extract", at(5)).await;
    finish(store, &second, SUCCEEDED, at(6)).await;

    let html = app.page("/dags/sales").await;

    // the grid: extract took two tries, load is queued; each cell opens its task instance
    // (and each node of the graph below it the task in its run)
    let cells = links_containing(&html, "/tasks/");
    assert_eq!(cells.len(), 2, "{cells:?}");
    assert!(cells[0].ends_with("/tasks/extract"), "{cells:?}");
    assert!(cells[0].contains(&run_id.replace(':', "%3A")), "{cells:?}");
    let nodes = links_containing(&html, "#task-");
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert!(html.contains("class=\"cell state-success\""), "{html}");
    assert!(html.contains("class=\"cell state-queued\""), "{html}");
    assert!(html.contains("try 2"), "the retry shows: {html}");
    // the source and its version
    assert!(html.contains("sales-hash-0123456789abcdef"), "{html}");
    assert!(html.contains("command: echo extract"), "{html}");
    assert!(!html.contains("'<script>"), "the source is escaped: {html}");
    // five next runs, at 02:00 UTC
    assert_eq!(html.matches("(logical date ").count(), 5, "{html}");
    assert!(html.contains("02:00 UTC"), "{html}");

    let task_page = app.page(&cells[0]).await;
    assert!(task_page.contains("try 2"), "{task_page}");
    let run_page = app.page(&nodes[0].replace("#task-extract", "")).await;
    assert!(run_page.contains("id=\"task-extract\""), "{run_page}");
}

#[tokio::test]
async fn run_list_pages_by_cursor_and_filters_by_state() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    seed(store).await;
    for days in 1..=30 {
        create_run(store, "sales", days, vec![task("extract", &[], 0)]).await;
    }
    let oldest = store
        .get_run("sales", "scheduled__2026-10-26T07:52:10Z")
        .await
        .unwrap()
        .expect("the oldest run");
    store
        .cancel_run(oldest.pk, at(9))
        .await
        .expect("cancelling");

    let first = app.page("/dags/sales").await;
    // the rows of the run list (the grid always shows the latest runs)
    let listed = |html: &str| html.matches("<td class=\"nowrap\">").count();
    assert_eq!(listed(&first), 25, "{first}");
    let older = links_containing(&first, "before=");
    assert_eq!(older.len(), 1, "{older:?}");
    let second = app.page(&older[0].replace("&amp;", "&")).await;
    assert_eq!(listed(&second), 5, "{second}");
    assert!(second.contains("Newest runs"), "{second}");
    assert!(
        second.contains("scheduled__2026-10-26T07:52:10Z"),
        "{second}"
    );
    assert!(links_containing(&second, "before=").is_empty());

    let cancelled = app.page("/dags/sales?state=cancelled").await;
    assert_eq!(listed(&cancelled), 1, "{cancelled}");
    assert!(
        cancelled.contains("<option value=\"cancelled\" selected>"),
        "{cancelled}"
    );

    assert_eq!(
        app.get("/dags/sales?state=bogus").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/dags/sales?before=junk").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn dag_list_searches_filters_by_tag_and_counts_runs() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    seed(store).await;
    create_run(store, "sales", 1, vec![task("extract", &[], 0)]).await;
    store
        .start_queued_runs("sales", 16, at(2))
        .await
        .expect("starting");

    let all = app.page("/").await;
    assert!(
        all.contains(">sales</a>") && all.contains(">ads</a>"),
        "{all}"
    );
    assert!(all.contains("count count-running\">1<"), "{all}");
    assert!(
        all.contains("every day at 02:00"),
        "schedule in words: {all}"
    );
    assert!(!all.contains("<script>x"), "tags are escaped: {all}");
    assert!(all.contains("&#60;script&#62;x"), "{all}");
    assert!(
        all.matches("<td class=\"time\">20").count() == 1,
        "a next run for the scheduled DAG only: {all}"
    );

    let searched = app.page("/?q=REGION").await;
    assert!(
        searched.contains(">sales</a>") && !searched.contains(">ads</a>"),
        "{searched}"
    );
    assert!(searched.contains("1 of 2"), "{searched}");
    let tagged = app.page("/?tag=marketing").await;
    assert!(
        tagged.contains(">ads</a>") && !tagged.contains(">sales</a>"),
        "{tagged}"
    );
    let none = app.page("/?q=nothing-like-this").await;
    assert!(none.contains("No DAG matches."), "{none}");
}

#[tokio::test]
async fn dag_graph_is_coloured_by_the_chosen_run_and_the_run_has_a_gantt_chart() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    seed(store).await;
    let older = create_run(
        store,
        "sales",
        2,
        vec![task("extract", &[], 1), task("load", &["extract"], 0)],
    )
    .await;
    store
        .start_queued_runs("sales", 16, at(2))
        .await
        .expect("starting");
    let first = claim_one(store, "extract", at(3)).await;
    let failed = Ending {
        outcome: sluice_store::AttemptOutcome::Failed,
        exit_code: Some(1),
        error: Some("boom"),
    };
    finish(store, &first, failed, at(4)).await;
    let second = claim_one(store, "extract", at(5)).await;
    finish(store, &second, SUCCEEDED, at(15)).await;
    let newer = create_run(
        store,
        "sales",
        1,
        vec![task("extract", &[], 0), task("load", &["extract"], 0)],
    )
    .await;

    // the newest run colours the graph by default: nothing ran in it yet
    let html = app.page("/dags/sales").await;
    assert!(html.contains("<svg class=\"graph\""), "{html}");
    assert_eq!(
        html.matches("<path class=\"edge\"").count(),
        1,
        "extract → load: {html}"
    );
    assert!(
        html.contains(&format!("Coloured by run <code>{newer}</code>")),
        "{html}"
    );
    assert!(html.contains("<rect class=\"state-pending\""), "{html}");

    let chosen = app
        .page(&format!("/dags/sales?run={}", older.replace(':', "%3A")))
        .await;
    assert!(
        chosen.contains(&format!("Coloured by run <code>{older}</code>")),
        "{chosen}"
    );
    assert!(
        chosen.contains("<rect class=\"state-success\""),
        "extract succeeded: {chosen}"
    );
    assert!(
        chosen.contains("<rect class=\"state-queued\""),
        "load is queued: {chosen}"
    );
    assert!(
        chosen.contains("<title>extract: success</title>"),
        "{chosen}"
    );

    let run_page = app
        .page(&format!("/dags/sales/runs/{}", older.replace(':', "%3A")))
        .await;
    assert!(run_page.contains("<svg class=\"gantt\""), "{run_page}");
    assert!(run_page.contains(">extract try 1</text>"), "{run_page}");
    assert!(run_page.contains(">extract try 2</text>"), "{run_page}");
    assert!(
        run_page.contains("class=\"bar state-failed\""),
        "{run_page}"
    );
    assert!(
        run_page.contains("class=\"bar state-success\""),
        "{run_page}"
    );
    assert!(
        run_page.contains("(10.0s)"),
        "the second try took 10s: {run_page}"
    );

    let not_started = app
        .page(&format!("/dags/sales/runs/{}", newer.replace(':', "%3A")))
        .await;
    assert!(
        !not_started.contains("<svg class=\"gantt\""),
        "no attempts, no chart"
    );
}

#[tokio::test]
async fn dag_list_pages_by_a_hundred_keeping_the_filter() {
    let app = TestApp::spawn().await;
    let dags = (0..105)
        .map(|i| crate::support::dag(&format!("d{i:03}"), None))
        .collect();
    sync(app.store.as_ref(), dags, Vec::new()).await;
    let rows = |html: &str| html.matches("class=\"dag-id\"").count();

    let first = app.page("/").await;
    assert_eq!(rows(&first), 100);
    let next = links_containing(&first, "page=2");
    assert_eq!(next, ["/?page=2"], "{first}");
    let second = app.page("/?page=2").await;
    assert_eq!(rows(&second), 5, "{second}");
    assert!(second.contains(">d104</a>"), "{second}");
    assert_eq!(links_containing(&second, "page=1"), ["/?page=1"]);

    let filtered = app.page("/?q=d1").await;
    assert_eq!(rows(&filtered), 5, "d100 to d104: {filtered}");
    assert!(filtered.contains("5 of 105"), "{filtered}");
    assert!(links_containing(&filtered, "page=").is_empty());
}
