//! Backfills through `/api/v1`: planned (a dry run changes nothing), created or resumed,
//! watched and cancelled, each change audited; bad input answers stable JSON errors.

use axum::http::StatusCode;
use serde_json::{Value, json};
use sluice_store::{DagSnapshot, EventFilter, Role, RunFilter, Store};

use crate::support::{TestApp, links_containing, sync};

const DAILY: &str = "dag: daily
schedule: '@daily'
start_date: 2026-01-01
tasks:
  extract:
    type: shell
    command: echo {{ ds }}
  load:
    type: shell
    depends_on: [extract]
    command: echo load
";

async fn seed_daily(store: &dyn Store) {
    let snapshot = DagSnapshot {
        dag_id: "daily".to_owned(),
        fileloc: "dags/daily.yaml".to_owned(),
        hash: "daily-hash-1".to_owned(),
        source: DAILY.to_owned(),
        schedule: Some("@daily".to_owned()),
        timezone: "UTC".to_owned(),
        description: None,
        tags: Vec::new(),
    };
    sync(store, vec![snapshot], Vec::new()).await;
}

async fn run_count(store: &dyn Store) -> usize {
    store
        .list_runs(&RunFilter {
            dag_id: Some("daily".to_owned()),
            state: None,
            limit: 100,
        })
        .await
        .expect("listing runs")
        .len()
}

async fn actions(store: &dyn Store) -> Vec<String> {
    store
        .list_events(&EventFilter {
            before_id: None,
            limit: 20,
        })
        .await
        .expect("listing events")
        .into_iter()
        .map(|event| event.action)
        .collect()
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.api("POST", path, Some(token), Some(body)).await
}

#[tokio::test]
async fn a_dry_run_answers_the_plan_and_changes_nothing() {
    let app = TestApp::anonymous().await;
    let store = app.store.as_ref();
    seed_daily(store).await;
    let token = app.api_token(Role::Operator).await;

    let (status, body) = post(
        &app,
        &token,
        "/api/v1/dags/daily/backfills",
        json!({ "start": "2026-01-01", "end": "2026-01-03", "dry_run": true, "max_active_runs": 2 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dry_run"], true);
    let runs = body["plan"]["runs"].as_array().expect("planned runs");
    assert_eq!(runs.len(), 3, "{body}");
    assert!(runs.iter().all(|run| run["action"] == "create"), "{body}");
    assert_eq!(runs[0]["interval"]["start"], "2026-01-01T00:00:00Z");
    assert_eq!(body["plan"]["max_active_runs"], 2);

    assert_eq!(run_count(store).await, 0, "a dry run creates no run");
    assert!(store.open_backfills().await.expect("reading").is_empty());
    assert!(
        actions(store).await.is_empty(),
        "a dry run is not an action"
    );
}

#[tokio::test]
async fn operators_create_watch_resume_and_cancel_a_backfill() {
    let app = TestApp::anonymous().await;
    let store = app.store.as_ref();
    seed_daily(store).await;
    let token = app.api_token(Role::Operator).await;
    let range = json!({ "start": "2026-01-01", "end": "2026-01-03", "tasks": "^extract$", "downstream": true });

    let (status, body) = post(&app, &token, "/api/v1/dags/daily/backfills", range.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["outcome"], "created");
    let id = body["backfill"]["backfill"]["id"].as_i64().expect("an id");
    assert_eq!(body["backfill"]["backfill"]["state"], "running");
    assert_eq!(body["backfill"]["progress"]["total"], 3);
    assert_eq!(
        body["backfill"]["backfill"]["options"]["tasks"],
        "^extract$"
    );
    assert_eq!(run_count(store).await, 3);
    assert_eq!(actions(store).await, ["backfill"]);

    // the same range again watches the open one; another range is refused while it runs
    let (status, body) = post(&app, &token, "/api/v1/dags/daily/backfills", range).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "resumed");
    assert_eq!(body["backfill"]["backfill"]["id"], id);
    let (status, body) = post(
        &app,
        &token,
        "/api/v1/dags/daily/backfills",
        json!({ "start": "2026-01-05", "end": "2026-01-06" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(run_count(store).await, 3);

    let viewer = app.api_token(Role::Viewer).await;
    let (status, body) = app
        .api(
            "GET",
            &format!("/api/v1/backfills/{id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backfill"]["dag_id"], "daily");
    assert_eq!(body["progress"]["queued"], 3);

    let cancel = format!("/api/v1/backfills/{id}/cancel");
    let (status, body) = post(&app, &viewer, &cancel, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = post(&app, &token, &cancel, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backfill"]["state"], "cancelled");
    assert_eq!(body["progress"]["cancelled"], 3);
    let (status, body) = post(&app, &token, &cancel, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(actions(store).await, ["cancel_backfill", "backfill"]);

    for missing in ["/api/v1/backfills/999", "/api/v1/backfills/abc"] {
        let (status, body) = app.api("GET", missing, Some(&viewer), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn backfill_requests_answer_stable_errors_and_viewers_may_not_backfill() {
    let app = TestApp::anonymous().await;
    let store = app.store.as_ref();
    seed_daily(store).await;
    let token = app.api_token(Role::Operator).await;
    let path = "/api/v1/dags/daily/backfills";

    let cases = [
        (
            json!({ "start": "yesterday", "end": "2026-01-03" }),
            "`start`",
        ),
        (json!({ "start": "2026-01-01" }), "`end` is required"),
        (
            json!({ "start": "2026-01-03", "end": "2026-01-01" }),
            "on or before",
        ),
        (
            json!({ "start": "2026-01-01", "end": "2026-01-03", "tasks": "(" }),
            "not a valid regex",
        ),
        (
            json!({ "start": "2026-01-01", "end": "2026-01-03", "tasks": "nothing" }),
            "matches no task",
        ),
        (
            json!({ "start": "2026-01-01", "end": "2026-01-03", "max_active_runs": 0 }),
            "at least 1",
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = post(&app, &token, path, request.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{request}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{request}: {message}");
    }

    let (status, body) = post(
        &app,
        &token,
        "/api/v1/dags/nope/backfills",
        json!({ "start": "2026-01-01", "end": "2026-01-03" }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");

    let viewer = app.api_token(Role::Viewer).await;
    let (status, body) = post(
        &app,
        &viewer,
        path,
        json!({ "start": "2026-01-01", "end": "2026-01-03", "dry_run": true }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");

    assert_eq!(run_count(store).await, 0);
    assert!(actions(store).await.is_empty());
}

#[tokio::test]
async fn operators_plan_then_create_a_backfill_from_the_dag_page() {
    let app = TestApp::spawn_as(Role::Operator).await;
    let store = app.store.as_ref();
    seed_daily(store).await;

    let dag_page = app.page("/dags/daily").await;
    assert_eq!(
        links_containing(&dag_page, "/backfill"),
        ["/dags/daily/backfill"]
    );
    let form = app.page("/dags/daily/backfill").await;
    assert!(form.contains("name=\"csrf\""), "{form}");
    assert!(
        !form.contains("Create this backfill"),
        "no plan yet: {form}"
    );

    let range = [
        ("start", "2026-01-01"),
        ("end", "2026-01-03"),
        ("tasks", ""),
    ];
    let plan = app
        .post(
            "/dags/daily/backfill",
            &[&range[..], &[("intent", "plan")]].concat(),
        )
        .await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    assert_eq!(
        plan.body.matches("<td>create</td>").count(),
        3,
        "{}",
        plan.body
    );
    assert!(plan.body.contains("Create this backfill"), "{}", plan.body);
    assert_eq!(run_count(store).await, 0, "the plan changes nothing");

    let bad = app
        .post(
            "/dags/daily/backfill",
            &[
                ("start", "<script>"),
                ("end", "2026-01-03"),
                ("intent", "plan"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is not a date"), "{}", bad.body);
    assert!(!bad.body.contains("<script>"), "escaped: {}", bad.body);

    let unchecked = app
        .post_without_csrf(
            "/dags/daily/backfill",
            &[&range[..], &[("intent", "create")]].concat(),
        )
        .await;
    assert_eq!(unchecked.status, StatusCode::FORBIDDEN);
    assert_eq!(run_count(store).await, 0);

    let created = app
        .post(
            "/dags/daily/backfill",
            &[&range[..], &[("intent", "create")]].concat(),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert!(
        created.body.contains("Backfill #1 created: 3 runs"),
        "{}",
        created.body
    );
    assert_eq!(run_count(store).await, 3);
    assert_eq!(actions(store).await, ["backfill"]);
}

#[tokio::test]
async fn viewers_get_no_backfill_form() {
    let app = TestApp::spawn().await;
    seed_daily(app.store.as_ref()).await;
    assert!(links_containing(&app.page("/dags/daily").await, "/backfill").is_empty());
    assert_eq!(
        app.get("/dags/daily/backfill").await.status,
        StatusCode::FORBIDDEN
    );
    let refused = app
        .post(
            "/dags/daily/backfill",
            &[
                ("start", "2026-01-01"),
                ("end", "2026-01-03"),
                ("intent", "create"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(run_count(app.store.as_ref()).await, 0);
}
