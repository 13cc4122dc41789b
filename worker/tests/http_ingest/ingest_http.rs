//! `type: ingest` from an HTTP JSON API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::{Harness, names_in, read_jsonl, run, serve, step};

type Params = Query<HashMap<String, String>>;

#[derive(Clone, Default)]
struct Calls {
    flaky: Arc<AtomicUsize>,
    limited: Arc<AtomicUsize>,
    down: Arc<AtomicUsize>,
}

async fn cursor(Query(params): Params) -> axum::Json<Value> {
    axum::Json(match params.get("after").map(String::as_str) {
        None => json!({"data": {"items": [{"id": 1}, {"id": 2}]}, "meta": {"next": "c2"}}),
        Some("c2") => json!({"data": {"items": [{"id": 3}]}, "meta": {"next": "c3"}}),
        Some("c3") => json!({"data": {"items": [{"id": 4}]}, "meta": {"next": null}}),
        Some(other) => json!({"error": other}),
    })
}

async fn pages(Query(params): Params) -> axum::Json<Value> {
    let size = params.get("per_page").cloned().unwrap_or_default();
    let ids: Vec<u32> = match params.get("page").map(String::as_str) {
        Some("1") => vec![1, 2],
        Some("2") => vec![3],
        _ => vec![],
    };
    axum::Json(Value::Array(
        ids.into_iter()
            .map(|id| json!({"id": id, "per_page": size}))
            .collect(),
    ))
}

async fn linked(Query(params): Params) -> Response {
    let page: u32 = params.get("p").and_then(|p| p.parse().ok()).unwrap_or(1);
    let body = axum::Json(json!({"items": [{"id": page}]}));
    match page {
        1 => ([(header::LINK, r#"</linked?p=2>; rel="next""#)], body).into_response(),
        2 => (
            [(
                header::LINK,
                r#"</linked?p=1>; rel="prev", </linked?p=3>; rel="next""#,
            )],
            body,
        )
            .into_response(),
        _ => body.into_response(),
    }
}

async fn flaky(State(calls): State<Calls>) -> Response {
    if calls.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
        return (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response();
    }
    axum::Json(json!([{"id": 1}])).into_response()
}

async fn limited(State(calls): State<Calls>) -> Response {
    if calls.limited.fetch_add(1, Ordering::SeqCst) == 0 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "slow down",
        )
            .into_response();
    }
    axum::Json(json!([{"id": 1}])).into_response()
}

async fn down(State(calls): State<Calls>) -> Response {
    calls.down.fetch_add(1, Ordering::SeqCst);
    (StatusCode::INTERNAL_SERVER_ERROR, "database is down").into_response()
}

async fn endless(Query(params): Params) -> axum::Json<Value> {
    let at: u64 = params
        .get("after")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    axum::Json(json!({"items": [{"id": at}], "next": at + 1}))
}

async fn api() -> (String, Calls) {
    let calls = Calls::default();
    let router = Router::new()
        .route("/cursor", get(cursor))
        .route("/pages", get(pages))
        .route("/linked", get(linked))
        .route("/flaky", get(flaky))
        .route("/limited", get(limited))
        .route("/down", get(down))
        .route("/endless", get(endless))
        .route(
            "/object",
            get(|| async { axum::Json(json!({"data": {"items": {"id": 1}}})) }),
        )
        .with_state(calls.clone());
    (serve(router).await, calls)
}

fn ids(records: &[Value]) -> Vec<u64> {
    records.iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn cursor_pagination_follows_the_cursor_until_it_is_null() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = api().await;
    let mut harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/cursor\n    records_path: data.items\n    pagination: {{kind: cursor, param: after, cursor_path: meta.next}}\ndestination: data/raw/orders/{{{{ ds }}}}.jsonl\n"
    ));
    let outputs = run(&harness, &step).await.unwrap();
    let destination = dir.path().join("data/raw/orders/2024-05-06.jsonl");
    assert_eq!(ids(&read_jsonl(&destination)), [1, 2, 3, 4]);
    assert_eq!(outputs["rows"], json!(4));
    assert_eq!(outputs["pages"], json!(3));
    assert_eq!(outputs["path"], json!(destination.display().to_string()));
    let log = harness.log();
    assert!(
        log.contains(&format!("GET {base}/cursor?after=c3 → 200 OK")),
        "{log}"
    );
    assert!(log.contains("wrote 4 rows to "), "{log}");
}

#[tokio::test]
async fn page_pagination_counts_pages_with_their_size_until_one_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = api().await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/pages\n    pagination: {{kind: page, param: page, size_param: per_page, size: 2}}\ndestination: out.jsonl\n"
    ));
    let outputs = run(&harness, &step).await.unwrap();
    let records = read_jsonl(&dir.path().join("out.jsonl"));
    assert_eq!(ids(&records), [1, 2, 3]);
    assert!(records.iter().all(|r| r["per_page"] == "2"), "{records:?}");
    assert_eq!(outputs["pages"], json!(3), "the empty page ends it");
}

#[tokio::test]
async fn link_header_pagination_follows_rel_next() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = api().await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/linked\n    records_path: items\n    pagination: {{kind: link_header}}\ndestination: out.jsonl\n"
    ));
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(ids(&read_jsonl(&dir.path().join("out.jsonl"))), [1, 2, 3]);
    assert_eq!(outputs["pages"], json!(3));
}

#[tokio::test]
async fn a_503_is_retried_with_backoff_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (base, calls) = api().await;
    let mut harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/flaky\n    retry_delay: 20ms\ndestination: out.jsonl\n"
    ));
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(outputs["rows"], json!(1));
    assert_eq!(calls.flaky.load(Ordering::SeqCst), 3);
    let log = harness.log();
    assert!(
        log.contains(&format!(
            "try 1 of 5 failed (GET {base}/flaky answered 503 Service Unavailable: warming up); retrying in 20 ms"
        )),
        "{log}"
    );
    assert!(
        log.contains("try 2 of 5 failed") && log.contains("retrying in 40 ms"),
        "{log}"
    );
}

#[tokio::test]
async fn a_429_waits_as_retry_after_says() {
    let dir = tempfile::tempdir().unwrap();
    let (base, calls) = api().await;
    let mut harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/limited\n    retry_delay: 10ms\ndestination: out.jsonl\n"
    ));
    let started = Instant::now();
    run(&harness, &step).await.unwrap();
    assert!(
        started.elapsed().as_millis() >= 1000,
        "Retry-After: 1 was honoured"
    );
    assert_eq!(calls.limited.load(Ordering::SeqCst), 2);
    assert!(
        harness
            .log()
            .contains("429 Too Many Requests: slow down); retrying in 1.0 s")
    );
}

#[tokio::test]
async fn a_permanent_500_gives_up_after_the_tries_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (base, calls) = api().await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/down\n    retries: 3\n    retry_delay: 10ms\ndestination: out/orders.jsonl\n"
    ));
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        format!(
            "GET {base}/down answered 500 Internal Server Error: database is down (gave up after 3 tries)"
        )
    );
    assert_eq!(calls.down.load(Ordering::SeqCst), 3);
    assert!(names_in(&dir.path().join("out")).is_empty());
}

#[tokio::test]
async fn endless_pagination_stops_at_max_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = api().await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/endless\n    records_path: items\n    pagination: {{kind: cursor, param: after, cursor_path: next}}\n    max_pages: 4\ndestination: out.jsonl\n"
    ));
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        format!(
            "{base}/endless still had a next page after 4 pages (`max_pages`): stopping rather than paginating without end; raise `max_pages` if the API really has more"
        )
    );
    assert!(names_in(dir.path()).is_empty());
}

#[tokio::test]
async fn records_path_must_name_an_array() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = api().await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/object\n    records_path: data.items\ndestination: out.jsonl\n"
    ));
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        format!(
            "page 1 from {base}/object: `records_path` `data.items` is an object, not an array of records"
        )
    );
    let missing = step_with_path(&base, "data.rows");
    assert_eq!(
        run(&harness, &missing).await.unwrap_err(),
        format!("page 1 from {base}/object: `records_path` `data.rows`: `data` has no key `rows`")
    );
}

fn step_with_path(base: &str, path: &str) -> sluice_core::Step {
    step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/object\n    records_path: {path}\ndestination: out.jsonl\n"
    ))
}

#[tokio::test]
async fn an_unknown_destination_extension_needs_a_format() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::new(dir.path(), &[]);
    let step = step("type: ingest\nsource: {http: 'http://127.0.0.1:1/x'}\ndestination: out.txt\n");
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        format!(
            "cannot tell the format of `destination` `{}` from its extension: name it .jsonl, .csv or .parquet, or set `format`",
            dir.path().join("out.txt").display()
        )
    );
}

#[tokio::test]
async fn cancelling_mid_pagination_leaves_no_destination() {
    let dir = tempfile::tempdir().unwrap();
    let arrived = Arc::new(tokio::sync::Notify::new());
    let signal = arrived.clone();
    let router = Router::new()
        .route(
            "/first",
            get(|| async {
                (
                    [(header::LINK, r#"</hang>; rel="next""#)],
                    axum::Json(json!([{"id": 1}])),
                )
            }),
        )
        .route(
            "/hang",
            get(move || async move {
                signal.notify_one();
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                axum::Json(json!([]))
            }),
        );
    let base = serve(router).await;
    let harness = Harness::new(dir.path(), &[]);
    let step = step(&format!(
        "type: ingest\nsource:\n  http:\n    url: {base}/first\n    pagination: {{kind: link_header}}\ndestination: out/all.jsonl\n"
    ));
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
