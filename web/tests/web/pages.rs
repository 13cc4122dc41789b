//! The pages as a user sees them: a real SQLite store, seeded through the `Store` trait.

use crate::support::{
    Ending, SUCCEEDED, TestApp, at, claim, claim_one, dag, finish, links_containing, log,
    start_run, sync, task,
};
use axum::http::StatusCode;
use sluice_store::{AttemptOutcome, ImportErrorRecord};

const BROKEN: &str = "dags/broken.yaml:3:5: unknown key `shedule` (did you mean `schedule`?)";

/// `etl`: `extract` fails once and succeeds on its retry; `load` is left queued.
async fn seed_retried_run(app: &TestApp) -> String {
    let store = app.store.as_ref();
    let mut etl = dag("etl", Some("0 2 * * *"));
    etl.description = Some("Orders <in>, totals out".to_owned());
    etl.tags = vec!["sales".to_owned()];
    sync(
        store,
        vec![etl, dag("adhoc", None)],
        vec![ImportErrorRecord {
            fileloc: "dags/broken.yaml".to_owned(),
            errors: vec![BROKEN.to_owned()],
        }],
    )
    .await;
    let run_id = start_run(
        store,
        "etl",
        vec![task("extract", &[], 1), task("load", &["extract"], 0)],
    )
    .await;

    let first = claim_one(store, "extract", at(10)).await;
    log(
        store,
        &first,
        "first try: fetching <orders> & \"totals\"\n",
        at(11),
    )
    .await;
    let failed = Ending {
        outcome: AttemptOutcome::Failed,
        exit_code: Some(2),
        error: Some("HTTP 503 from the orders API"),
    };
    finish(store, &first, failed, at(12)).await;

    let second = claim_one(store, "extract", at(13)).await;
    assert_eq!(second.try_number, 2);
    log(store, &second, "second try: 42 orders\n", at(14)).await;
    finish(store, &second, SUCCEEDED, at(15)).await;
    run_id
}

#[tokio::test]
async fn dag_list_shows_each_dag_and_the_import_errors() {
    let app = TestApp::spawn().await;
    seed_retried_run(&app).await;

    let html = app.page("/").await;

    assert!(html.contains(">etl</a>"), "{html}");
    assert!(html.contains(">adhoc</a>"), "{html}");
    assert!(html.contains("<code>0 2 * * *</code>"), "{html}");
    assert!(html.contains("manual only"), "{html}");
    assert!(html.contains("sales"), "{html}");
    assert!(html.contains("Orders &#60;in&#62;, totals out"), "{html}");
    assert!(
        html.contains("dags/broken.yaml:3:5: unknown key `shedule` (did you mean `schedule`?)"),
        "the banner names file:line:col: {html}"
    );
    // the running run of etl is one square linking to it, and makes the page refresh
    let run_links = links_containing(&html, "/dags/etl/runs/");
    assert_eq!(run_links.len(), 1, "{html}");
    assert!(html.contains("square state-running"), "{html}");
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
}

#[tokio::test]
async fn dag_page_lists_its_runs_and_unknown_dags_are_404() {
    let app = TestApp::spawn().await;
    let run_id = seed_retried_run(&app).await;

    let html = app.page("/dags/etl").await;
    assert!(html.contains(&run_id), "{html}");
    assert!(html.contains("scheduled"), "{html}");
    assert!(
        html.contains("2026-11-24 07:52:10Z"),
        "logical date: {html}"
    );
    assert!(
        html.contains("2026-11-25 07:52:10Z"),
        "interval end: {html}"
    );
    assert!(html.contains("2026-11-25 07:52:12Z"), "started at: {html}");

    let missing = app.get("/dags/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.body.contains("DAG `nope` not found"),
        "{}",
        missing.body
    );
    assert!(missing.body.contains("<html"), "a page, not bare text");

    let no_run = app.get("/dags/etl/runs/manual__nope").await;
    assert_eq!(no_run.status, StatusCode::NOT_FOUND);
    let no_route = app.get("/no/such/page").await;
    assert_eq!(no_route.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn retried_task_shows_every_attempt_each_with_its_own_log() {
    let app = TestApp::spawn().await;
    let run_id = seed_retried_run(&app).await;
    let run_links = links_containing(&app.page("/dags/etl").await, "/runs/");
    let run_page = app.page(&run_links[0]).await;

    assert!(run_page.contains(&run_id), "{run_page}");
    assert!(
        run_page.contains("2026-11-24 07:52:10Z → 2026-11-25 07:52:10Z"),
        "data interval: {run_page}"
    );
    assert!(
        run_page.contains("HTTP 503 from the orders API"),
        "{run_page}"
    );
    assert!(run_page.contains("state-failed"), "{run_page}");
    assert!(run_page.contains("state-success"), "{run_page}");
    assert!(run_page.contains("state-queued"), "load waits: {run_page}");
    assert!(
        run_page.contains("<code>&#34;kr&#34;</code>"),
        "params: {run_page}"
    );

    let log_links = links_containing(&run_page, "/attempts/");
    assert_eq!(log_links.len(), 2, "one link per attempt: {log_links:?}");
    assert!(
        log_links[0].ends_with("/tasks/extract/attempts/1/log"),
        "{log_links:?}"
    );
    assert!(
        log_links[1].ends_with("/tasks/extract/attempts/2/log"),
        "{log_links:?}"
    );

    let first = app.page(&log_links[0]).await;
    assert!(first.contains("first try: fetching"), "{first}");
    assert!(!first.contains("second try"), "{first}");
    assert!(first.contains("HTTP 503 from the orders API"), "{first}");
    let second = app.page(&log_links[1]).await;
    assert!(second.contains("second try: 42 orders"), "{second}");
    assert!(!second.contains("first try"), "{second}");

    let no_try = app
        .get(&log_links[1].replace("/attempts/2/", "/attempts/3/"))
        .await;
    assert_eq!(no_try.status, StatusCode::NOT_FOUND);
    let not_a_number = app
        .get(&log_links[1].replace("/attempts/2/", "/attempts/two/"))
        .await;
    assert_eq!(not_a_number.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn log_text_is_escaped() {
    let app = TestApp::spawn().await;
    seed_retried_run(&app).await;
    let run_links = links_containing(&app.page("/dags/etl").await, "/runs/");
    let log_links = links_containing(&app.page(&run_links[0]).await, "/attempts/");

    let html = app.page(&log_links[0]).await;

    assert!(
        html.contains("first try: fetching &#60;orders&#62; &#38; &#34;totals&#34;"),
        "{html}"
    );
    assert!(!html.contains("<orders>"), "{html}");
}

#[tokio::test]
async fn pages_refresh_only_while_something_runs() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    sync(store, vec![dag("once", None)], Vec::new()).await;
    start_run(store, "once", vec![task("only", &[], 0)]).await;
    let attempt = claim_one(store, "only", at(10)).await;
    log(store, &attempt, "working\n", at(11)).await;

    let run_url = links_containing(&app.page("/dags/once").await, "/runs/")[0].clone();
    let running = app.page(&run_url).await;
    let log_url = links_containing(&running, "/attempts/")[0].clone();
    assert!(running.contains("http-equiv=\"refresh\""), "{running}");
    assert!(app.page(&log_url).await.contains("http-equiv=\"refresh\""));

    finish(store, &attempt, SUCCEEDED, at(12)).await;
    assert!(claim(store, at(13)).await.is_empty());

    let done = app.page(&run_url).await;
    assert!(!done.contains("http-equiv"), "{done}");
    assert!(
        done.contains("2.0s"),
        "the run took 10s, the attempt 2s: {done}"
    );
    assert!(!app.page(&log_url).await.contains("http-equiv"));
    assert!(!app.page("/").await.contains("http-equiv"));
}

#[tokio::test]
async fn mapped_instances_link_to_their_own_attempts() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    sync(store, vec![dag("fan", None)], Vec::new()).await;
    let mut items = Vec::new();
    for index in 0..2 {
        let mut instance = task("each", &[], 0);
        instance.map_index = index;
        items.push(instance);
    }
    start_run(store, "fan", items).await;
    for attempt in claim(store, at(10)).await {
        let text = format!("item {}\n", attempt.map_index);
        log(store, &attempt, &text, at(11)).await;
        finish(store, &attempt, SUCCEEDED, at(12)).await;
    }

    let run_url = links_containing(&app.page("/dags/fan").await, "/runs/")[0].clone();
    let run_page = app.page(&run_url).await;
    assert!(
        run_page.contains("[0]") && run_page.contains("[1]"),
        "{run_page}"
    );
    let log_links = links_containing(&run_page, "/attempts/");
    assert_eq!(log_links.len(), 2, "{log_links:?}");
    for (index, link) in log_links.iter().enumerate() {
        assert!(link.ends_with(&format!("?map_index={index}")), "{link}");
        let html = app.page(link).await;
        assert!(html.contains(&format!("item {index}\n")), "{html}");
    }
}

#[tokio::test]
async fn instances_mapped_from_a_foreach_template_show_individually() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    sync(store, vec![dag("fan", None)], Vec::new()).await;
    start_run(store, "fan", vec![task("each", &[], 0)]).await;
    let placeholder = claim_one(store, "each", at(10)).await;
    store
        .expand_mapped_task(&sluice_store::ExpandTask {
            lease: placeholder.lease.clone(),
            items: vec![serde_json::json!("a.csv"), serde_json::json!("b.csv")],
            log: "[sluice] `foreach` rendered to 2 items\n".to_owned(),
            now: at(11),
        })
        .await
        .expect("expanding");
    for attempt in claim(store, at(12)).await {
        let text = format!("item {}\n", attempt.map_index);
        log(store, &attempt, &text, at(13)).await;
        finish(store, &attempt, SUCCEEDED, at(14)).await;
    }

    let dag_page = app.page("/dags/fan").await;
    assert!(dag_page.contains("×2"), "two mapped instances: {dag_page}");
    let run_url = links_containing(&dag_page, "/runs/")[0].clone();
    let run_page = app.page(&run_url).await;
    assert!(
        run_page.contains("[0]") && run_page.contains("[1]"),
        "{run_page}"
    );
    let log_links = links_containing(&run_page, "/attempts/");
    assert_eq!(
        log_links.len(),
        3,
        "the expansion and two items: {log_links:?}"
    );
    let item_page = app
        .page(&format!(
            "{}/tasks/each?map_index=1",
            run_url.trim_end_matches('/')
        ))
        .await;
    assert!(item_page.contains("[1]"), "{item_page}");
}

#[tokio::test]
async fn healthz_says_ok_while_the_store_answers() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, "ok");
}

#[tokio::test]
async fn a_store_outage_is_a_generic_500_and_a_503_health_check() {
    let app = TestApp::with_store(
        std::sync::Arc::new(crate::support::down::DownStore),
        tempfile::tempdir().expect("creating a temp dir"),
    );
    app.set_session(crate::support::down::SESSION, "csrf");

    for path in [
        "/",
        "/dags/etl",
        "/dags/etl/runs/r",
        "/dags/etl/runs/r/tasks/t/attempts/1/log",
    ] {
        let page = app.get(path).await;
        assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR, "GET {path}");
        assert!(page.body.contains("server log"), "{}", page.body);
        assert!(
            !page.body.contains(crate::support::down::DETAIL),
            "details leak: {}",
            page.body
        );
    }
    assert_eq!(
        app.get("/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn stylesheet_is_served_as_css() {
    let app = TestApp::spawn().await;
    let css = app.page("/static/style.css").await;
    assert!(css.contains(".state-up_for_retry"), "{css}");
}

#[tokio::test]
async fn times_show_in_the_timezone_the_viewer_chose() {
    let app = TestApp::spawn().await;
    let run_id = seed_retried_run(&app).await;
    let run_url = format!("/dags/etl/runs/{}", run_id.replace(':', "%3A"));
    assert!(app.page(&run_url).await.contains("2026-11-25 07:52:12Z"));
    assert!(app.page("/settings").await.contains("value=\"UTC\""));

    let bad = app
        .post("/settings", &[("timezone", "Mars/Olympus"), ("back", "/")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not an IANA timezone"), "{}", bad.body);

    let saved = app
        .post(
            "/settings",
            &[("timezone", "Asia/Seoul"), ("back", &run_url)],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), run_url);
    let cookie = saved
        .headers
        .get(axum::http::header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("a timezone cookie")
        .to_owned();
    let page = app
        .send(
            axum::http::Request::get(&run_url)
                .header(
                    axum::http::header::COOKIE,
                    format!("{}; {cookie}", app.cookie_header()),
                )
                .body(axum::body::Body::empty())
                .expect("a valid request"),
        )
        .await;
    assert!(
        page.body.contains("2026-11-25 16:52:12 KST"),
        "started at, in Seoul: {}",
        page.body
    );
    assert!(page.body.contains("Times in Asia/Seoul"), "{}", page.body);
}

#[tokio::test]
async fn run_page_and_api_show_what_tasks_returned() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    sync(store, vec![dag("out", None)], Vec::new()).await;
    let run_id = start_run(store, "out", vec![task("count", &[], 0)]).await;
    let attempt = claim_one(store, "count", at(10)).await;
    let mut outputs = std::collections::BTreeMap::new();
    outputs.insert("rows".to_owned(), serde_json::json!(3));
    outputs.insert("note".to_owned(), serde_json::json!("<b>bold</b>"));
    store
        .finish_attempt(&sluice_store::FinishAttempt {
            lease: attempt.lease.clone(),
            outcome: AttemptOutcome::Success,
            exit_code: Some(0),
            error: None,
            outputs,
            now: at(11),
        })
        .await
        .expect("finishing with outputs");

    let run_path = format!("/dags/out/runs/{}", run_id.replace(':', "%3A"));
    let html = app.page(&run_path).await;
    assert!(
        html.contains("<code>rows</code> = <code>3</code>"),
        "{html}"
    );
    assert!(html.contains("&#60;b&#62;bold"), "escaped: {html}");
    assert!(!html.contains("<b>bold"), "{html}");

    let token = app.api_token(sluice_store::Role::Viewer).await;
    let (status, body) = app
        .api(
            "GET",
            &format!("/api/v1{run_path}/outputs"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outputs"]["count"]["rows"], 3);
}

#[tokio::test]
async fn hostile_dag_ids_tags_and_descriptions_are_escaped_everywhere() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    // the parser never lets such an id through; the pages must not rely on it
    let mut hostile = dag("<script>alert(1)</script>", Some("0 2 * * *"));
    hostile.tags = vec!["<img src=x onerror=alert(2)>".to_owned()];
    hostile.description = Some("\"><script>alert(3)</script>".to_owned());
    sync(store, vec![hostile], Vec::new()).await;

    let list = app.page("/").await;
    assert!(!list.contains("<script>alert"), "{list}");
    assert!(!list.contains("<img src=x"), "{list}");
    assert!(
        list.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{list}"
    );
    let href = links_containing(&list, "/dags/%3Cscript")[0].clone();
    assert_eq!(href, "/dags/%3Cscript%3Ealert%281%29%3C%2Fscript%3E");
    let page = app.page(&href).await;
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(
        page.contains("&#34;&#62;&#60;script&#62;alert(3)"),
        "{page}"
    );
}

#[tokio::test]
async fn backfill_runs_are_marked_with_their_backfill() {
    let app = TestApp::spawn().await;
    let store = app.store.as_ref();
    sync(store, vec![dag("etl", Some("0 2 * * *"))], vec![]).await;
    let logical_date = at(0) - chrono::TimeDelta::days(30);
    let run = sluice_store::NewRun {
        dag_id: "etl".to_owned(),
        run_id: "backfill__old".to_owned(),
        run_type: sluice_core::RunType::Backfill,
        logical_date,
        data_interval: sluice_core::DataInterval {
            start: logical_date,
            end: logical_date + chrono::TimeDelta::days(1),
        },
        dag_hash: "hash-etl".to_owned(),
        params: Default::default(),
        triggered_by: "cli:test".to_owned(),
        tasks: vec![task("extract", &[], 0)],
        now: at(1),
    };
    let backfill = store
        .create_backfill(&sluice_store::NewBackfill {
            dag_id: "etl".to_owned(),
            range: sluice_store::RunRange {
                dag_id: "etl".to_owned(),
                start: logical_date,
                end: logical_date + chrono::TimeDelta::days(1),
            },
            max_active_runs: 1,
            reverse: false,
            options: serde_json::json!({}),
            triggered_by: "cli:test".to_owned(),
            create: vec![run],
            rerun: vec![],
            now: at(1),
        })
        .await
        .expect("creating a backfill");

    let html = app.page("/dags/etl").await;
    assert!(html.contains("backfill__old"), "{html}");
    assert!(
        html.contains(&format!("backfill #{}", backfill.id)),
        "{html}"
    );
}
