//! The task instance page and its API: every attempt with its facts, log and rendered fields.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use sluice_store::{AttemptOutcome, ClaimedAttempt, FinishAttempt, Role, Store};

use crate::support::{
    Ending, TestApp, at, claim_one, dag, finish, links_containing, start_run, sync, task,
};

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

async fn record(store: &dyn Store, attempt: &ClaimedAttempt, pairs: &[(&str, &str)]) {
    store
        .record_rendered(&attempt.lease, &fields(pairs))
        .await
        .expect("recording rendered fields");
}

/// `etl`: `extract` renders a hostile command, fails, and succeeds on its retry with an output.
/// Returns the run's path.
async fn seed(app: &TestApp) -> String {
    let store = app.store.as_ref();
    sync(store, vec![dag("etl", Some("0 2 * * *"))], Vec::new()).await;
    let run_id = start_run(store, "etl", vec![task("extract", &[], 1)]).await;
    let first = claim_one(store, "extract", at(10)).await;
    record(
        store,
        &first,
        &[
            (
                "command",
                "echo '<script>alert(1)</script>' --day 2026-11-24",
            ),
            ("env.API_TOKEN", "***"),
        ],
    )
    .await;
    let failed = Ending {
        outcome: AttemptOutcome::Failed,
        exit_code: Some(3),
        error: Some("command exited with code 3"),
    };
    finish(store, &first, failed, at(12)).await;
    let second = claim_one(store, "extract", at(13)).await;
    record(store, &second, &[("command", "echo second try")]).await;
    let mut outputs = BTreeMap::new();
    outputs.insert("rows".to_owned(), serde_json::json!(42));
    store
        .finish_attempt(&FinishAttempt {
            lease: second.lease.clone(),
            outcome: AttemptOutcome::Success,
            exit_code: Some(0),
            error: None,
            outputs,
            now: at(15),
        })
        .await
        .expect("finishing with outputs");
    format!("/dags/etl/runs/{}", run_id.replace(':', "%3A"))
}

#[tokio::test]
async fn task_instance_page_shows_both_attempts_with_their_rendered_fields_escaped() {
    let app = TestApp::spawn().await;
    let run_path = seed(&app).await;

    let run_page = app.page(&run_path).await;
    let task_links = links_containing(&run_page, "/tasks/extract");
    let task_path = format!("{run_path}/tasks/extract");
    assert!(task_links.contains(&task_path), "{task_links:?}");

    let html = app.page(&task_path).await;
    assert!(html.contains("try 1"), "{html}");
    assert!(html.contains("try 2"), "{html}");
    assert!(html.contains("command exited with code 3"), "{html}");
    assert!(html.contains("worker-1"), "{html}");
    let logs = links_containing(&html, "/log");
    assert!(
        logs.iter()
            .any(|href| href.ends_with("/tasks/extract/attempts/1/log")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|href| href.ends_with("/tasks/extract/attempts/2/log")),
        "{logs:?}"
    );
    assert!(
        html.contains(
            "<pre>echo &#39;&#60;script&#62;alert(1)&#60;/script&#62;&#39; --day 2026-11-24</pre>"
        ),
        "the rendered command, escaped: {html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("<code>env.API_TOKEN</code>"), "{html}");
    assert!(html.contains("<pre>***</pre>"), "{html}");
    assert!(html.contains("<pre>echo second try</pre>"), "{html}");
    assert!(
        html.contains("<code>rows</code> = <code>42</code>"),
        "outputs: {html}"
    );

    let missing = app.get(&format!("{run_path}/tasks/nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad_index = app.get(&format!("{task_path}?map_index=x")).await;
    assert_eq!(bad_index.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn grid_cells_open_the_task_instance_page() {
    let app = TestApp::spawn().await;
    let run_path = seed(&app).await;
    let cells = links_containing(&app.page("/dags/etl").await, "/tasks/");
    assert_eq!(cells, [format!("{run_path}/tasks/extract")]);
}

#[tokio::test]
async fn task_instance_api_answers_attempts_with_rendered_fields_and_outputs() {
    let app = TestApp::spawn().await;
    let run_path = seed(&app).await;
    let token = app.api_token(Role::Viewer).await;

    let (status, body) = app
        .api(
            "GET",
            &format!("/api/v1{run_path}/tasks/extract"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["task_instance"]["state"], "success");
    let attempts = body["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{body}");
    assert_eq!(attempts[0]["try_number"], 1);
    assert_eq!(attempts[0]["exit_code"], 3);
    assert_eq!(
        attempts[0]["rendered"]["command"],
        "echo '<script>alert(1)</script>' --day 2026-11-24"
    );
    assert_eq!(attempts[0]["rendered"]["env.API_TOKEN"], "***");
    assert_eq!(attempts[1]["rendered"]["command"], "echo second try");
    assert_eq!(body["outputs"]["rows"], 42);

    let (status, body) = app
        .api(
            "GET",
            &format!("/api/v1{run_path}/attempts"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"][1]["rendered"]["command"], "echo second try");

    let (status, body) = app
        .api(
            "GET",
            &format!("/api/v1{run_path}/tasks/nope"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_rescheduled_sensor_shows_its_state_and_next_poke_on_its_pages() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    sync(store, vec![dag("gated", None)], Vec::new()).await;
    let run_id = start_run(store, "gated", vec![task("wait", &[], 0)]).await;
    let attempt = claim_one(store, "wait", at(10)).await;
    store
        .reschedule_attempt(&sluice_store::RescheduleAttempt {
            lease: attempt.lease.clone(),
            next_poke_at: at(70),
            now: at(11),
        })
        .await
        .expect("rescheduling");
    let run_path = format!("/dags/gated/runs/{}", run_id.replace(':', "%3A"));
    for path in [run_path.clone(), format!("{run_path}/tasks/wait")] {
        let html = app.page(&path).await;
        assert!(html.contains("state-up_for_reschedule"), "{path}: {html}");
        assert!(html.contains("next poke at"), "{path}: {html}");
        assert!(!html.contains("next try at"), "{path}: {html}");
    }
    let css = app.page("/static/style.css").await;
    assert!(css.contains(".state-up_for_reschedule"), "{css}");
}
