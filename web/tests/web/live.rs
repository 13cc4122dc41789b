//! A running attempt's log follows itself: server-sent events, and the script that reads them.

use std::time::Duration;

use axum::http::{StatusCode, header};
use sluice_store::AttemptOutcome;

use crate::support::{
    Ending, SUCCEEDED, TestApp, at, claim_one, dag, finish, links_containing, log, start_run, sync,
    task,
};

#[tokio::test]
async fn running_log_streams_new_chunks_then_ends_with_the_attempts_state() {
    let app = TestApp::spawn().await;
    let store = app.store.clone();
    sync(store.as_ref(), vec![dag("live", None)], Vec::new()).await;
    start_run(store.as_ref(), "live", vec![task("work", &[], 0)]).await;
    let attempt = claim_one(store.as_ref(), "work", at(10)).await;
    log(store.as_ref(), &attempt, "line one <b>\n", at(11)).await;

    let run_url = links_containing(&app.page("/dags/live").await, "/runs/")[0].clone();
    let log_url = links_containing(&app.page(&run_url).await, "/attempts/")[0].clone();
    let page = app.page(&log_url).await;
    let stream = page
        .split("data-stream=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a running log names its stream")
        .replace("&#38;", "&");
    assert!(stream.ends_with("/log/stream?after=1"), "{stream}");
    assert!(
        page.contains("<script src=\"/static/live.js\" defer></script>"),
        "{page}"
    );
    assert!(
        page.contains("<noscript><meta http-equiv=\"refresh\""),
        "{page}"
    );

    // the attempt writes one more line and ends while the stream is open
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            log(store.as_ref(), &attempt, "line two\n", at(12)).await;
            finish(store.as_ref(), &attempt, SUCCEEDED, at(13)).await;
        })
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), app.get(&stream))
        .await
        .expect("the stream ends once the attempt has ended");
    writer.await.expect("the writer finished");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let body = answer.body;
    assert!(
        !body.contains("line one"),
        "after=1 skips what the page shows: {body}"
    );
    assert!(
        body.contains("event: chunk\nid: 2\ndata: \"line two\\n\""),
        "{body}"
    );
    assert!(body.ends_with("event: end\ndata: success\n\n"), "{body}");

    // a reconnecting browser resumes after the last id it saw
    let resumed = app
        .send(
            axum::http::Request::get(stream.replace("after=1", "after=0"))
                .header(header::COOKIE, app.cookie_header())
                .header("last-event-id", "1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert!(!resumed.body.contains("line one"), "{}", resumed.body);
    assert!(resumed.body.contains("line two"), "{}", resumed.body);

    // finished: a plain page again, no stream, no script
    let done = app.page(&log_url).await;
    assert!(
        !done.contains("data-stream") && !done.contains("live.js"),
        "{done}"
    );
    assert!(done.contains("line one &#60;b&#62;"), "{done}");
}

#[tokio::test]
async fn a_failed_attempts_stream_ends_at_once_and_unknown_tries_are_404() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    sync(store, vec![dag("live", None)], Vec::new()).await;
    let run_id = start_run(store, "live", vec![task("work", &[], 0)]).await;
    let attempt = claim_one(store, "work", at(10)).await;
    log(store, &attempt, "only line\n", at(11)).await;
    let failed = Ending {
        outcome: AttemptOutcome::Failed,
        exit_code: Some(3),
        error: Some("exit 3"),
    };
    finish(store, &attempt, failed, at(12)).await;
    let base = format!(
        "/dags/live/runs/{}/tasks/work/attempts",
        run_id.replace(':', "%3A")
    );

    let answer = app.get(&format!("{base}/1/log/stream")).await;
    assert!(
        answer.body.contains("data: \"only line\\n\""),
        "{}",
        answer.body
    );
    assert!(
        answer.body.ends_with("event: end\ndata: failed\n\n"),
        "{}",
        answer.body
    );
    assert_eq!(
        app.get(&format!("{base}/2/log/stream")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("{base}/x/log/stream")).await.status,
        StatusCode::NOT_FOUND
    );
    let anonymous = TestApp::with_store(app.store.clone(), tempfile::tempdir().unwrap());
    assert_eq!(
        anonymous.get(&format!("{base}/1/log/stream")).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn the_live_script_is_served_and_appends_text_not_html() {
    let app = TestApp::anonymous().await;
    let script = app.get("/static/live.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.body.contains("createTextNode"), "{}", script.body);
    assert!(!script.body.contains("innerHTML"), "{}", script.body);
}
