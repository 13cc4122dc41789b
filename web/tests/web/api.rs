//! `/api/v1` and `/metrics` as a script sees them: bearer tokens, JSON, cursors.

use axum::http::StatusCode;
use serde_json::json;
use sluice_store::Role;

use crate::actions::seed_etl;
use crate::support::{
    Ending, SUCCEEDED, TestApp, at, claim_one, dag, finish, log, start_run, sync, task,
};

#[tokio::test]
async fn the_api_needs_a_valid_token_and_answers_json_errors() {
    let app = TestApp::anonymous().await;
    let token = app.api_token(Role::Viewer).await;

    let (status, body) = app.api("GET", "/api/v1/dags", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = app
        .api("GET", "/api/v1/dags", Some("sluice_wrong"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // a session cookie is not enough for the API, nor a token for the pages
    assert_eq!(
        app.send(
            axum::http::Request::get("/")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap()
        )
        .await
        .status,
        StatusCode::SEE_OTHER
    );

    let (status, body) = app
        .api("GET", "/api/v1/dags/nope", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["message"], "DAG `nope` not found");
    let (status, body) = app
        .api("GET", "/api/v1/nothing/here", Some(&token), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = app
        .api("GET", "/api/v1/runs?limit=0", Some(&token), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (status, body) = app
        .api("GET", "/api/v1/runs?limit=many", Some(&token), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (status, _) = app
        .api("GET", "/api/v1/runs?cursor=junk", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn operators_trigger_pause_and_cancel_and_viewers_may_not() {
    let app = TestApp::anonymous().await;
    seed_etl(app.store.as_ref()).await;
    let viewer = app.api_token(Role::Viewer).await;
    let operator = app.api_token(Role::Operator).await;

    let (status, body) = app
        .api(
            "POST",
            "/api/v1/dags/etl/runs",
            Some(&viewer),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, body) = app
        .api(
            "POST",
            "/api/v1/dags/etl/runs",
            Some(&operator),
            Some(json!({ "params": { "limit": "lots" } })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("param `limit`"),
        "{body}"
    );
    let (status, body) = app
        .api(
            "POST",
            "/api/v1/dags/etl/runs",
            Some(&operator),
            Some(json!({ "params": { "region": "eu", "limit": 3 } })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["params"], json!({ "region": "eu", "limit": 3 }));
    assert_eq!(body["triggered_by"], "token:operator-token");
    let run_id = body["run_id"].as_str().expect("a run id").to_owned();
    let run_path = format!(
        "/api/v1/dags/etl/runs/{}",
        run_id.replace(':', "%3A").replace('+', "%2B")
    );

    let (status, body) = app.api("GET", &run_path, Some(&viewer), None).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("running"))
    );
    let (status, body) = app
        .api("GET", &format!("{run_path}/tasks"), Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"][0]["task_id"], "extract");
    assert_eq!(body["items"][0]["state"], "queued");

    let (status, _) = app
        .api("POST", &format!("{run_path}/cancel"), Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .api("POST", &format!("{run_path}/cancel"), Some(&operator), None)
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{body}"
    );
    let (status, body) = app
        .api("POST", &format!("{run_path}/cancel"), Some(&operator), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );

    let (status, body) = app
        .api(
            "POST",
            "/api/v1/dags/etl/pause",
            Some(&operator),
            Some(json!({ "paused": true })),
        )
        .await;
    assert_eq!(
        (status, body["is_paused"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{body}"
    );
    let (status, body) = app
        .api(
            "POST",
            "/api/v1/dags/etl/pause",
            Some(&operator),
            Some(json!({ "paused": false })),
        )
        .await;
    assert_eq!(
        (status, body["is_paused"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/dags/etl/pause",
            Some(&viewer),
            Some(json!({ "paused": true })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .api(
            "POST",
            "/api/v1/dags/etl/pause",
            Some(&operator),
            Some(json!({ "paused": "yes" })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );

    let (_, events) = app.api("GET", "/api/v1/events", Some(&viewer), None).await;
    let actions: Vec<&str> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|event| event["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(actions, ["unpause", "pause", "cancel_run", "trigger"]);

    // marking a task in a finished (cancelled) run still records it; the run stays cancelled
    let (status, body) = app
        .api(
            "POST",
            &format!("{run_path}/tasks/extract/mark"),
            Some(&operator),
            Some(json!({ "state": "success" })),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{body}"
    );
    assert_eq!(events["items"][0]["actor"], "token:operator-token");
}

#[tokio::test]
async fn runs_page_by_cursor_and_attempt_logs_follow_by_cursor() {
    let app = TestApp::anonymous().await;
    let store = app.store.as_ref();
    let token = app.api_token(Role::Viewer).await;
    sync(
        store,
        vec![dag("etl", None), dag("other", None)],
        Vec::new(),
    )
    .await;
    let run_id = start_run(store, "etl", vec![task("extract", &[], 1)]).await;
    let first = claim_one(store, "extract", at(10)).await;
    log(store, &first, "try one <script>\n", at(11)).await;
    let failed = Ending {
        outcome: sluice_store::AttemptOutcome::Failed,
        exit_code: Some(1),
        error: Some("boom"),
    };
    finish(store, &first, failed, at(12)).await;
    let second = claim_one(store, "extract", at(13)).await;
    log(store, &second, "try two, part 1\n", at(14)).await;

    let (status, dags) = app
        .api("GET", "/api/v1/dags?limit=1", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dags["items"][0]["dag_id"], "etl");
    let cursor = dags["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, rest) = app
        .api(
            "GET",
            &format!("/api/v1/dags?limit=1&cursor={cursor}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(rest["items"][0]["dag_id"], "other");
    assert!(rest["next_cursor"].is_null());

    let run_path = format!("/api/v1/dags/etl/runs/{}", run_id.replace(':', "%3A"));
    let (_, attempts) = app
        .api("GET", &format!("{run_path}/attempts"), Some(&token), None)
        .await;
    assert_eq!(attempts["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(attempts["items"][0]["error"], "boom");

    let (status, first_log) = app
        .api(
            "GET",
            &format!("{run_path}/tasks/extract/attempts/1/log"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first_log}");
    assert_eq!(first_log["chunks"][0]["content"], "try one <script>\n");
    let log_path = format!("{run_path}/tasks/extract/attempts/2/log");
    let (_, second_log) = app.api("GET", &log_path, Some(&token), None).await;
    assert_eq!(second_log["chunks"].as_array().map(Vec::len), Some(1));
    let cursor = second_log["next_cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    log(store, &second, "try two, part 2\n", at(15)).await;
    finish(store, &second, SUCCEEDED, at(16)).await;
    let (_, more) = app
        .api(
            "GET",
            &format!("{log_path}?cursor={cursor}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(more["chunks"].as_array().map(Vec::len), Some(1), "{more}");
    assert_eq!(more["chunks"][0]["content"], "try two, part 2\n");
    let (status, _) = app
        .api(
            "GET",
            &format!("{run_path}/tasks/extract/attempts/3/log"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .api(
            "GET",
            &format!("{run_path}/tasks/extract/attempts/two/log"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, runs) = app
        .api("GET", "/api/v1/runs?state=running", Some(&token), None)
        .await;
    assert_eq!(
        runs["items"].as_array().map(Vec::len),
        Some(0),
        "the run succeeded: {runs}"
    );
    let (_, runs) = app
        .api(
            "GET",
            "/api/v1/dags/etl/runs?state=success",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(runs["items"][0]["run_id"], run_id.as_str());
}

#[tokio::test]
async fn openapi_document_is_public_and_every_path_in_it_is_routed() {
    let app = TestApp::anonymous().await;
    let token = app.api_token(Role::Viewer).await;
    let (status, document) = app.api("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12, "{paths:?}");
    for (path, methods) in paths {
        let concrete = path
            .replace("{dag_id}", "etl")
            .replace("{run_id}", "r")
            .replace("{task_id}", "t")
            .replace("{try_number}", "1");
        for method in methods.as_object().expect("methods").keys() {
            let (_, body) = app
                .api(
                    &method.to_uppercase(),
                    &format!("/api/v1{concrete}"),
                    Some(&token),
                    None,
                )
                .await;
            let message = body["error"]["message"].as_str().unwrap_or("");
            assert!(
                !message.starts_with("there is no endpoint"),
                "{method} {path} is documented but not routed"
            );
        }
    }
}

#[tokio::test]
async fn metrics_count_runs_queued_tasks_and_attempt_durations() {
    let app = TestApp::anonymous().await;
    let store = app.store.as_ref();
    sync(
        store,
        vec![dag("etl", None), dag("later", None)],
        Vec::new(),
    )
    .await;
    start_run(
        store,
        "etl",
        vec![task("extract", &[], 0), task("other", &[], 0)],
    )
    .await;
    let attempt = claim(store).await;
    finish(store, &attempt, SUCCEEDED, at(12)).await;
    // one task left waiting in the queue
    start_run(store, "later", vec![task("waits", &[], 0)]).await;

    let anonymous = app.get("/metrics").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let token = app.api_token(Role::Viewer).await;
    let answer = app
        .send(
            axum::http::Request::get("/metrics")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let text = answer.body;
    assert!(
        text.contains("sluice_runs{dag_id=\"etl\",state=\"running\"} 1"),
        "{text}"
    );
    assert!(text.contains("sluice_queued_tasks 1"), "{text}");
    assert!(
        text.contains("sluice_task_instances{state=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sluice_attempt_duration_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE sluice_attempt_duration_seconds histogram"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_show_each_schedulers_loop_time() {
    let app = TestApp::anonymous().await;
    let now = chrono::Utc::now();
    for (seconds, outcome) in [
        (0.5, sluice_store::TickOutcome::Succeeded),
        (0.25, sluice_store::TickOutcome::Failed),
    ] {
        app.store
            .record_scheduler_tick(&sluice_store::SchedulerTick {
                scheduler_id: "sched-1:77:abc123".to_owned(),
                host: "sched-1".to_owned(),
                started_at: now,
                at: now,
                seconds,
                outcome,
            })
            .await
            .unwrap();
    }

    let token = app.api_token(Role::Viewer).await;
    let answer = app
        .send(
            axum::http::Request::get("/metrics")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let text = answer.body;
    for line in [
        "sluice_scheduler_loop_seconds{scheduler_id=\"sched-1:77:abc123\"} 0.25",
        "sluice_scheduler_ticks_total{scheduler_id=\"sched-1:77:abc123\"} 2",
        "sluice_scheduler_tick_seconds_total{scheduler_id=\"sched-1:77:abc123\"} 0.75",
        "sluice_scheduler_failed_ticks_total{scheduler_id=\"sched-1:77:abc123\"} 1",
        "# TYPE sluice_scheduler_last_tick_age_seconds gauge",
        "sluice_scheduler_last_tick_age_seconds{scheduler_id=\"sched-1:77:abc123\"} ",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

async fn claim(store: &dyn sluice_store::Store) -> sluice_store::ClaimedAttempt {
    let mut claimed = crate::support::claim(store, at(10)).await;
    assert_eq!(claimed.len(), 2);
    claimed.remove(0)
}
