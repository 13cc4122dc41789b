//! What operators do from the pages, and what viewers may not: each action is audited.

use axum::http::StatusCode;
use sluice_core::RunState;
use sluice_store::{DagSnapshot, EventFilter, Role, RunFilter, Store};

use crate::support::{TestApp, links_containing, sync};

const ETL: &str = "\
dag: etl
schedule: null
params:
  region: kr
  limit: 10
tasks:
  extract:
    type: shell
    command: echo {{ params.region }} {{ params.limit }}
";

/// `etl` as the scheduler would mirror it: its real source, so actions can parse it.
pub async fn seed_etl(store: &dyn Store) {
    let snapshot = DagSnapshot {
        dag_id: "etl".to_owned(),
        fileloc: "dags/etl.yaml".to_owned(),
        hash: "etl-hash-1".to_owned(),
        source: ETL.to_owned(),
        schedule: None,
        timezone: "UTC".to_owned(),
        description: None,
        tags: Vec::new(),
    };
    sync(store, vec![snapshot], Vec::new()).await;
}

async fn runs(store: &dyn Store) -> Vec<sluice_store::RunRecord> {
    store
        .list_runs(&RunFilter {
            dag_id: Some("etl".to_owned()),
            state: None,
            limit: 10,
        })
        .await
        .expect("listing runs")
}

async fn actions(store: &dyn Store) -> Vec<(String, String, String)> {
    store
        .list_events(&EventFilter {
            before_id: None,
            limit: 10,
        })
        .await
        .expect("listing events")
        .into_iter()
        .map(|event| (event.actor, event.action, event.target))
        .collect()
}

#[tokio::test]
async fn operator_triggers_with_params_from_a_form_built_from_the_dag() {
    let app = TestApp::spawn_as(Role::Operator).await;
    seed_etl(app.store.as_ref()).await;

    let dag_page = app.page("/dags/etl").await;
    assert_eq!(
        links_containing(&dag_page, "/trigger"),
        ["/dags/etl/trigger"]
    );
    let form = app.page("/dags/etl/trigger").await;
    assert!(
        form.contains("name=\"param.region\" value=\"kr\""),
        "{form}"
    );
    assert!(form.contains("name=\"param.limit\" value=\"10\""), "{form}");

    let answer = app
        .post(
            "/dags/etl/trigger",
            &[
                ("param.region", "<script>alert(1)</script>"),
                ("param.limit", "3"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let runs = runs(app.store.as_ref()).await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(
        answer.location(),
        format!(
            "/dags/etl/runs/{}",
            run.run_id.replace(':', "%3A").replace('+', "%2B")
        )
    );
    assert_eq!(run.params["region"], "<script>alert(1)</script>");
    assert_eq!(run.params["limit"], 3);
    assert_eq!(run.triggered_by, "user:olga");

    let run_page = app.page(answer.location()).await;
    assert!(run_page.contains("user:olga"), "{run_page}");
    assert!(
        !run_page.contains("<script>alert"),
        "params are escaped: {run_page}"
    );

    let seen = actions(app.store.as_ref()).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("user:olga", "trigger")
    );
    let events = app.page("/events").await;
    assert!(
        events.contains("user:olga") && events.contains("trigger"),
        "{events}"
    );
    assert!(!events.contains("<script>alert"), "{events}");
}

#[tokio::test]
async fn bad_params_show_the_form_again_with_the_error_and_create_nothing() {
    let app = TestApp::spawn_as(Role::Operator).await;
    seed_etl(app.store.as_ref()).await;

    let answer = app
        .post(
            "/dags/etl/trigger",
            &[("param.region", "eu"), ("param.limit", "lots")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer
            .body
            .contains("param `limit` expects a value like `10`, got `lots`"),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("value=\"lots\""),
        "what was typed stays: {}",
        answer.body
    );
    assert!(answer.body.contains("value=\"eu\""), "{}", answer.body);

    let unknown = app
        .post("/dags/etl/trigger", &[("param.colour", "red")])
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown.body.contains("has no param `colour`"),
        "{}",
        unknown.body
    );

    assert!(runs(app.store.as_ref()).await.is_empty());
    assert!(actions(app.store.as_ref()).await.is_empty());
    let missing = app.post("/dags/nope/trigger", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn operator_pauses_and_unpauses_from_the_dag_list() {
    let app = TestApp::spawn_as(Role::Operator).await;
    seed_etl(app.store.as_ref()).await;
    let list = app.page("/").await;
    assert!(list.contains("action=\"/dags/etl/pause\""), "{list}");
    assert!(list.contains(">Pause</button>"), "{list}");

    let paused = app
        .post("/dags/etl/pause", &[("paused", "true"), ("back", "/")])
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    assert_eq!(paused.location(), "/");
    let dag = app.store.get_dag("etl").await.unwrap().expect("etl exists");
    assert!(dag.is_paused);
    assert!(app.page("/").await.contains(">Unpause</button>"));

    let unpaused = app
        .post(
            "/dags/etl/pause",
            &[("paused", "false"), ("back", "https://evil.example/")],
        )
        .await;
    assert_eq!(unpaused.location(), "/", "only local pages are returned to");
    assert!(
        !app.store
            .get_dag("etl")
            .await
            .unwrap()
            .expect("etl")
            .is_paused
    );

    let seen: Vec<String> = actions(app.store.as_ref())
        .await
        .into_iter()
        .map(|(actor, action, target)| format!("{actor} {action} {target}"))
        .collect();
    assert_eq!(seen, ["user:olga unpause etl", "user:olga pause etl"]);
    let missing = app.post("/dags/nope/pause", &[("paused", "true")]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn operator_cancels_an_unfinished_run_once() {
    let app = TestApp::spawn_as(Role::Operator).await;
    seed_etl(app.store.as_ref()).await;
    let trigger = app.post("/dags/etl/trigger", &[]).await;
    let run_url = trigger.location().to_owned();
    let run_page = app.page(&run_url).await;
    assert!(run_page.contains("Cancel run"), "{run_page}");

    let cancel = app.post(&format!("{run_url}/cancel"), &[]).await;
    assert_eq!(cancel.status, StatusCode::SEE_OTHER, "{}", cancel.body);
    assert_eq!(cancel.location(), run_url);
    let run = &runs(app.store.as_ref()).await[0];
    assert_eq!(run.state, RunState::Cancelled);
    assert!(!app.page(&run_url).await.contains("Cancel run"));

    let again = app.post(&format!("{run_url}/cancel"), &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(again.body.contains("already finished"), "{}", again.body);
    let seen = actions(app.store.as_ref()).await;
    assert_eq!(seen[0].1, "cancel_run");
    assert_eq!(seen[0].2, format!("etl/{}", run.run_id));
    let missing = app.post("/dags/etl/runs/nope/cancel", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn viewer_sees_no_action_and_cannot_post_one() {
    let app = TestApp::spawn().await;
    seed_etl(app.store.as_ref()).await;
    // a run to try cancelling, made by someone who may
    let operator = TestApp::with_store(app.store.clone(), tempfile::tempdir().unwrap());
    operator.create_user("olga", Role::Operator).await;
    operator.login("olga", crate::support::PASSWORD).await;
    let run_url = operator
        .post("/dags/etl/trigger", &[])
        .await
        .location()
        .to_owned();

    assert!(!app.page("/").await.contains("/pause"));
    assert!(!app.page("/dags/etl").await.contains("/trigger"));
    assert!(!app.page(&run_url).await.contains("Cancel run"));

    assert_eq!(
        app.get("/dags/etl/trigger").await.status,
        StatusCode::FORBIDDEN
    );
    let attempts = [
        app.post("/dags/etl/trigger", &[]).await,
        app.post("/dags/etl/pause", &[("paused", "true")]).await,
        app.post(&format!("{run_url}/cancel"), &[]).await,
    ];
    for answer in attempts {
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        assert!(
            answer.body.contains("needs the operator role"),
            "{}",
            answer.body
        );
    }
    assert_eq!(runs(app.store.as_ref()).await.len(), 1);
    assert_eq!(runs(app.store.as_ref()).await[0].state, RunState::Running);
    assert!(
        !app.store
            .get_dag("etl")
            .await
            .unwrap()
            .expect("etl")
            .is_paused
    );
    assert_eq!(
        actions(app.store.as_ref()).await.len(),
        1,
        "only olga's trigger"
    );
}

#[tokio::test]
async fn operator_marks_a_running_task_success_and_the_run_moves_on() {
    let app = TestApp::spawn_as(Role::Operator).await;
    seed_etl(app.store.as_ref()).await;
    let run_url = app
        .post("/dags/etl/trigger", &[])
        .await
        .location()
        .to_owned();
    let page = app.page(&run_url).await;
    assert!(
        page.contains("Mark success") && page.contains("Mark failed"),
        "{page}"
    );

    let marked = app
        .post(
            &format!("{run_url}/tasks/extract/mark"),
            &[("state", "success")],
        )
        .await;
    assert_eq!(marked.status, StatusCode::SEE_OTHER, "{}", marked.body);
    let run = &runs(app.store.as_ref()).await[0];
    assert_eq!(
        run.state,
        RunState::Success,
        "its only task was marked success"
    );
    let seen = actions(app.store.as_ref()).await;
    assert_eq!(seen[0].1, "mark_success");

    let bad = app
        .post(
            &format!("{run_url}/tasks/extract/mark"),
            &[("state", "pending")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let missing = app
        .post(
            &format!("{run_url}/tasks/nope/mark"),
            &[("state", "failed")],
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let failed = app
        .post(
            &format!("{run_url}/tasks/extract/mark"),
            &[("state", "failed")],
        )
        .await;
    assert_eq!(failed.status, StatusCode::SEE_OTHER);
    assert_eq!(runs(app.store.as_ref()).await[0].state, RunState::Failed);
}

#[tokio::test]
async fn operator_clears_a_failed_task_with_its_downstream_and_the_run_goes_again() {
    let app = TestApp::spawn_as(Role::Operator).await;
    let store = app.store.as_ref();
    let source = "\
dag: chain
schedule: null
tasks:
  first:
    type: noop
  second:
    type: noop
    depends_on: [first]
  other:
    type: noop
";
    let snapshot = DagSnapshot {
        dag_id: "chain".to_owned(),
        fileloc: "dags/chain.yaml".to_owned(),
        // as the registry stores it: the hash runs are pinned to
        hash: sluice_core::parse_dag("dags/chain.yaml", source)
            .expect("a valid DAG")
            .hash,
        source: source.to_owned(),
        schedule: None,
        timezone: "UTC".to_owned(),
        description: None,
        tags: Vec::new(),
    };
    sync(store, vec![snapshot], Vec::new()).await;
    let run_url = app
        .post("/dags/chain/trigger", &[])
        .await
        .location()
        .to_owned();
    // first fails (second becomes upstream_failed), other succeeds: the run fails
    for _ in 0..2 {
        let claimed = crate::support::claim(store, crate::support::at(10)).await;
        for attempt in claimed {
            let ending = if attempt.task_id == "first" {
                crate::support::Ending {
                    outcome: sluice_store::AttemptOutcome::Failed,
                    exit_code: Some(1),
                    error: Some("boom"),
                }
            } else {
                crate::support::SUCCEEDED
            };
            crate::support::finish(store, &attempt, ending, crate::support::at(11)).await;
        }
    }
    let run = runs_of(store, "chain").await;
    assert_eq!(run.state, RunState::Failed);
    let page = app.page(&run_url).await;
    assert!(page.contains("Clear run"), "{page}");

    let cleared = app
        .post(
            &format!("{run_url}/clear"),
            &[("task_id", "first"), ("downstream", "true")],
        )
        .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER, "{}", cleared.body);
    let states: Vec<(String, String)> = store
        .task_instances(runs_of(store, "chain").await.pk)
        .await
        .unwrap()
        .into_iter()
        .map(|ti| (ti.task_id, ti.state.as_str().to_owned()))
        .collect();
    let state_of = |id: &str| {
        states
            .iter()
            .find(|(t, _)| t == id)
            .map(|(_, s)| s.as_str())
    };
    assert_ne!(state_of("first"), Some("failed"), "{states:?}");
    assert_eq!(
        state_of("second"),
        Some("pending"),
        "downstream cleared: {states:?}"
    );
    assert_eq!(
        state_of("other"),
        Some("success"),
        "not downstream: {states:?}"
    );
    assert_ne!(runs_of(store, "chain").await.state, RunState::Failed);
    let seen = actions(store).await;
    assert_eq!(seen[0].1, "clear");

    let missing = app
        .post(&format!("{run_url}/clear"), &[("task_id", "nope")])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn runs_of(store: &dyn Store, dag_id: &str) -> sluice_store::RunRecord {
    store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id.to_owned()),
            state: None,
            limit: 1,
        })
        .await
        .expect("listing runs")
        .remove(0)
}
