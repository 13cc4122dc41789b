//! `type: http`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, get};
use serde_json::json;

use crate::support::{Harness, closed_port, names_in, run, serve, step};

async fn echo(method: Method, headers: HeaderMap, body: Bytes) -> axum::Json<serde_json::Value> {
    axum::Json(json!({
        "method": method.as_str(),
        "token": headers.get("x-token").and_then(|v| v.to_str().ok()),
        "body": String::from_utf8_lossy(&body),
        "data": {"items": [{"id": 41}, {"id": 42}]},
    }))
}

fn app() -> Router {
    Router::new()
        .route("/echo", any(echo))
        .route(
            "/fail",
            get(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("boom {}", "x".repeat(2000)),
                )
            }),
        )
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such thing") }),
        )
        .route("/text", get(|| async { "plain words" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
}

#[tokio::test]
async fn http_step_sends_method_headers_and_body_and_captures_json_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(app()).await;
    let mut harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: http\nurl: {base}/echo?day={{{{ ds }}}}\nmethod: POST\nheaders: {{X-Token: abc}}\nbody: '{{\"day\": \"{{{{ ds }}}}\"}}'\noutputs:\n  first_id: data.items.0.id\n  method: method\n  token: token\n  body: body\n"
    ));
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(outputs["first_id"], json!(41));
    assert_eq!(outputs["method"], json!("POST"));
    assert_eq!(outputs["token"], json!("abc"));
    assert_eq!(outputs["body"], json!("{\"day\": \"2024-05-06\"}"));
    assert_eq!(outputs["status"], json!(200));
    let log = harness.log();
    assert!(
        log.contains(&format!("POST {base}/echo?day=2024-05-06 → 200 OK, "))
            && log.contains(" bytes in "),
        "{log}"
    );
}

#[tokio::test]
async fn http_step_saves_the_body_to_a_file_creating_its_folders() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(app()).await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: http\nurl: {base}/text\nsave_to: out/{{{{ ds }}}}/page.txt\n"
    ));
    let outputs = run(&harness, &step).await.unwrap();
    let saved = dir.path().join("out/2024-05-06/page.txt");
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), "plain words");
    assert_eq!(outputs["path"], json!(saved.display().to_string()));
    assert_eq!(names_in(&dir.path().join("out/2024-05-06")), ["page.txt"]);
}

#[tokio::test]
async fn http_step_fails_on_an_unexpected_status_showing_it_and_the_start_of_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(app()).await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!("type: http\nurl: {base}/fail\nsave_to: out.txt\n"));
    let error = run(&harness, &step).await.unwrap_err();
    let expected = format!(
        "GET {base}/fail answered 500 Internal Server Error (expected 2xx): boom {}…",
        "x".repeat(495)
    );
    assert_eq!(error, expected);
    assert!(names_in(dir.path()).is_empty(), "nothing saved");
}

#[tokio::test]
async fn expect_status_lists_the_accepted_codes() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(app()).await;
    let harness = Harness::new(dir.path(), &[]);
    let accepted = step(&format!(
        "type: http\nurl: {base}/missing\nexpect_status: [404]\n"
    ));
    let outputs = run(&harness, &accepted).await.unwrap();
    assert_eq!(outputs["status"], json!(404));

    let refused = step(&format!(
        "type: http\nurl: {base}/text\nexpect_status: [201, 202]\n"
    ));
    assert_eq!(
        run(&harness, &refused).await.unwrap_err(),
        format!("GET {base}/text answered 200 OK (expected 201, 202): plain words")
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_url_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().await;
    let mut harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: http\nurl: http://user:secret@127.0.0.1:{port}/hook\n"
    ));
    let error = run(&harness, &step).await.unwrap_err();
    assert!(
        error.starts_with(&format!(
            "GET http://127.0.0.1:{port}/hook: could not connect: "
        )),
        "{error}"
    );
    assert!(error.contains("refused"), "{error}");
    assert!(!error.contains("secret"), "{error}");
    assert!(!harness.log().contains("secret"));
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(app()).await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!("type: http\nurl: {base}/slow\ntimeout: 300ms\n"));
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        format!("GET {base}/slow: timed out after 300 ms")
    );
}

#[tokio::test]
async fn a_missing_json_path_names_the_output_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(app()).await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: http\nurl: {base}/echo\noutputs:\n  fourth: data.items.3.id\n"
    ));
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        format!(
            "output `fourth`: path `data.items.3.id` is not in the response of {base}/echo: `data.items` has 2 elements, no index 3"
        )
    );
}

#[tokio::test]
async fn outputs_from_a_body_that_is_not_json_fail() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(app()).await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: http\nurl: {base}/text\noutputs:\n  id: id\n"
    ));
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        format!(
            "the response of GET {base}/text is not JSON (expected value at line 1 column 1), so `outputs` cannot be read from it: plain words"
        )
    );
}

#[tokio::test]
async fn cancelling_stops_a_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let arrived = Arc::new(Notify::new());
    let signal = arrived.clone();
    let base = serve(Router::new().route(
        "/hang",
        get(move || async move {
            signal.notify_one();
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    ))
    .await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!("type: http\nurl: {base}/hang\nsave_to: out.txt\n"));
    let cancel = harness.ctx.cancel.clone();
    tokio::spawn(async move {
        arrived.notified().await;
        cancel.cancel();
    });
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        "stopped: the attempt was cancelled"
    );
    assert!(names_in(dir.path()).is_empty());
}

#[tokio::test]
async fn a_connection_password_in_a_templated_url_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().await;
    let conn = format!("http://hooks:secret@127.0.0.1:{port}");
    let mut harness = Harness::new(dir.path(), &[("SLUICE_CONN_X", conn.as_str())]);
    let step = step("type: http\nmethod: DELETE\nurl: '{{ conn.x.url }}/hook?day={{ ds }}'\n");
    let error = run(&harness, &step).await.unwrap_err();
    assert!(
        error.starts_with(&format!(
            "DELETE http://127.0.0.1:{port}/hook?day=2024-05-06: could not connect: "
        )),
        "{error}"
    );
    assert!(!error.contains("secret"), "{error}");
    assert!(!harness.log().contains("secret"));
}
