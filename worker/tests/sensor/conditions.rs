//! Each condition through `sensor::run` (poke mode, short intervals): true at once, true
//! after a few pokes, timing out with the exact message, and the failures waiting cannot fix.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use sluice_store::testing::fresh_postgres_url;
use sluice_worker::steps::sensor;

use crate::support::{Harness, closed_port, sensor, serve};

#[tokio::test]
async fn file_that_exists_is_met_at_once_and_its_path_is_an_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/2026-01-02.csv"), "x\n").unwrap();
    let mut h = Harness::new(dir.path(), &[]);
    let config = sensor("    file: in/{{ ds }}.csv\n");
    let output = sensor::run(&config, &h.ctx).await.unwrap();
    assert_eq!(
        output.outputs["path"],
        dir.path()
            .join("in/2026-01-02.csv")
            .to_string_lossy()
            .as_ref()
    );
    assert!(
        h.log()
            .contains("[sensor] poke 1: file `in/2026-01-02.csv` holds")
    );
    assert_eq!(h.ctx.rendered.masked()["file"], "in/2026-01-02.csv");
}

#[tokio::test]
async fn file_glob_and_file_url_are_met_once_a_file_appears() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new(dir.path(), &[]);
    let config = sensor(&format!(
        "    file: file://{}/out/part-*.parquet\n    poke_interval: 100ms\n    timeout: 10s\n",
        dir.path().display()
    ));
    let late = dir.path().join("out");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(350)).await;
        std::fs::create_dir(&late).unwrap();
        std::fs::write(late.join("part-0.parquet"), "x").unwrap();
    });
    let output = sensor::run(&config, &h.ctx).await.unwrap();
    assert!(
        output.outputs["path"]
            .as_str()
            .unwrap()
            .ends_with("out/part-0.parquet")
    );
    let log = h.log();
    assert!(
        log.contains("[sensor] poke 1: not yet (no file matches "),
        "{log}"
    );
    assert!(log.contains("next poke in 100ms"), "{log}");
    assert!(log.contains("[sensor] poke 3:"), "several pokes: {log}");
}

#[tokio::test]
async fn file_that_never_appears_times_out_with_the_last_check() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), &[]);
    let config = sensor("    file: ready.flag\n    poke_interval: 100ms\n    timeout: 300ms\n");
    let error = sensor::run(&config, &h.ctx).await.unwrap_err();
    assert_eq!(
        error.message,
        format!(
            "condition file `ready.flag` still false after 300ms; last check: no file matches {}",
            dir.path().join("ready.flag").display()
        )
    );
}

#[tokio::test]
async fn unsupported_object_urls_are_refused_by_the_file_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), &[]);
    let error = sensor::run(&sensor("    file: ftp://host/ready.flag\n"), &h.ctx)
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        "`file` `ftp://host/ready.flag`: `ftp://` is not supported; use a local path or a file://, s3:// or gs:// URL"
    );
}

/// Objects in the fake S3's bucket `drops`.
const OBJECTS: &[(&str, &str)] = &[("exports/2026-01-02/part-0.csv", "x\n1\n")];

/// `object_store` reads S3 settings from `AWS_*` variables only, and tests may not set
/// variables in their own process: the test runs itself again with them, against a fake S3.
#[tokio::test]
async fn an_s3_object_is_met_once_it_exists_and_a_missing_one_times_out() {
    const CHILD: &str = "SLUICE_TEST_FAKE_S3_CHILD";
    if std::env::var(CHILD).is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::new(dir.path(), &[]);
        let met = sensor(
            "    file: s3://drops/exports/{{ ds }}/*.csv\n    poke_interval: 50ms\n    timeout: 5s\n",
        );
        let output = sensor::run(&met, &h.ctx).await.unwrap();
        assert_eq!(
            output.outputs["path"],
            "s3://drops/exports/2026-01-02/part-0.csv"
        );
        let missing = sensor(
            "    file: s3://drops/exports/2026-01-03/*.csv\n    poke_interval: 50ms\n    timeout: 300ms\n",
        );
        let error = sensor::run(&missing, &h.ctx).await.unwrap_err();
        assert!(
            error
                .message
                .contains("no object matches s3://drops/exports/2026-01-03/*.csv"),
            "{}\n{}",
            error.message,
            h.log()
        );
        return;
    }
    let endpoint = crate::fake_s3::serve(OBJECTS).await;
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "conditions::an_s3_object_is_met_once_it_exists_and_a_missing_one_times_out",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .envs(crate::fake_s3::child_env(&endpoint))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn http_answering_2xx_is_met_at_once() {
    let base = serve(Router::new().route("/health", get(|| async { "ok" }))).await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), &[]);
    let output = sensor::run(&sensor(&format!("    http: {base}/health\n")), &h.ctx)
        .await
        .unwrap();
    assert_eq!(output.outputs["status"], 200);
}

#[tokio::test]
async fn http_is_met_once_it_answers_an_expected_status() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let base = serve(Router::new().route(
        "/export",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new(dir.path(), &[]);
    let config = sensor(&format!(
        "    http:\n      url: {base}/export\n      expect_status: [204]\n    poke_interval: 100ms\n    timeout: 10s\n"
    ));
    let output = sensor::run(&config, &h.ctx).await.unwrap();
    assert_eq!(output.outputs["status"], 204);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let log = h.log();
    assert!(
        log.contains(&format!(
            "not yet ({base}/export answered 503 (expected 204))"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn http_connection_refused_is_not_yet_then_times_out() {
    let port = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new(dir.path(), &[]);
    let config = sensor(&format!(
        "    http: http://user:hunter2@127.0.0.1:{port}/ready\n    poke_interval: 100ms\n    timeout: 250ms\n"
    ));
    let error = sensor::run(&config, &h.ctx).await.unwrap_err();
    let prefix = format!(
        "condition http `http://user:***@127.0.0.1:{port}/ready` still false after 250ms; last check: could not reach http://user:***@127.0.0.1:{port}/ready: "
    );
    assert!(error.message.starts_with(&prefix), "{}", error.message);
    let log = h.log();
    assert!(
        log.contains("[sensor] poke 2: not yet (could not reach"),
        "{log}"
    );
    assert!(!error.message.contains("hunter2") && !log.contains("hunter2"));
}

#[tokio::test]
async fn sql_on_sqlite_is_met_once_the_query_turns_true() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wh.db").display());
    {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE loads (ds TEXT NOT NULL)")
            .execute(&mut db)
            .await
            .unwrap();
    }
    let mut h = Harness::new(dir.path(), &[("SLUICE_CONN_WAREHOUSE", url.as_str())]);
    let config = sensor(
        "    sql:\n      connection: warehouse\n      sql: \"SELECT count(*) FROM loads WHERE ds = '{{ ds }}'\"\n    poke_interval: 100ms\n    timeout: 10s\n",
    );
    let writer_url = url.clone();
    tokio::spawn(async move {
        use sqlx::Connection;
        tokio::time::sleep(Duration::from_millis(350)).await;
        let mut db = sqlx::SqliteConnection::connect(&writer_url).await.unwrap();
        sqlx::query("INSERT INTO loads VALUES ('2026-01-02')")
            .execute(&mut db)
            .await
            .unwrap();
    });
    let output = sensor::run(&config, &h.ctx).await.unwrap();
    assert_eq!(output.outputs["value"], 1);
    let log = h.log();
    assert!(log.contains("not yet (the query returned 0)"), "{log}");
    assert_eq!(
        h.ctx.rendered.masked()["sql.sql"],
        "SELECT count(*) FROM loads WHERE ds = '2026-01-02'"
    );
}

#[tokio::test]
async fn sql_with_no_rows_or_false_or_empty_is_not_yet() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wh.db").display());
    let h = Harness::new(dir.path(), &[("SLUICE_CONN_WH", url.as_str())]);
    for (sql, last) in [
        ("SELECT 1 WHERE 0", "the query returned no rows"),
        ("SELECT NULL", "the query returned null"),
        ("SELECT ''", "the query returned \"\""),
        ("SELECT 0.0", "the query returned 0.0"),
    ] {
        let config = sensor(&format!(
            "    sql:\n      connection: wh\n      sql: \"{sql}\"\n    poke_interval: 50ms\n    timeout: 50ms\n"
        ));
        let error = sensor::run(&config, &h.ctx).await.unwrap_err();
        assert_eq!(
            error.message,
            format!("condition sql on connection `wh` still false after 50ms; last check: {last}")
        );
    }
    let config = sensor("    sql:\n      connection: wh\n      sql: SELECT 'yes'\n");
    let output = sensor::run(&config, &h.ctx).await.unwrap();
    assert_eq!(output.outputs["value"], "yes");
}

#[tokio::test]
async fn bad_sql_fails_at_once_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("wh.db").display());
    let h = Harness::new(dir.path(), &[("SLUICE_CONN_WH", url.as_str())]);
    let config = sensor(
        "    sql:\n      connection: wh\n      sql: SELECT count(*) FROM missing_table\n    poke_interval: 1h\n",
    );
    let error = tokio::time::timeout(Duration::from_secs(10), sensor::run(&config, &h.ctx))
        .await
        .expect("bad SQL must not wait for the next poke")
        .unwrap_err();
    assert_eq!(
        error.message,
        "`sql.sql` failed on connection `wh`: no such table: missing_table"
    );
}

#[tokio::test]
async fn an_undefined_connection_fails_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), &[]);
    let config = sensor("    sql:\n      connection: nowhere\n      sql: SELECT 1\n");
    let error = sensor::run(&config, &h.ctx).await.unwrap_err();
    assert_eq!(
        error.message,
        "`sql.connection`: connection `nowhere` is not defined: set SLUICE_CONN_NOWHERE to its URL on the worker"
    );
}

#[tokio::test]
async fn sql_on_postgres_is_met_and_bad_sql_never_shows_the_password() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    // trust authentication ignores the password, so the URL can carry one to hide
    let url = database
        .url()
        .replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    assert!(
        url.contains("hunter2"),
        "unexpected test database URL shape"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new(dir.path(), &[("SLUICE_CONN_PG", url.as_str())]);
    let config = sensor("    sql:\n      connection: pg\n      sql: SELECT 2 > 1\n");
    let output = sensor::run(&config, &h.ctx).await.unwrap();
    assert_eq!(output.outputs["value"], true);
    let config = sensor("    sql:\n      connection: pg\n      sql: SELEC 1\n");
    let error = sensor::run(&config, &h.ctx).await.unwrap_err();
    assert_eq!(
        error.message,
        "`sql.sql` failed on connection `pg`: syntax error at or near \"SELEC\""
    );
    let config = sensor(
        "    sql:\n      connection: pg\n      sql: SELECT false\n    poke_interval: 50ms\n    timeout: 120ms\n",
    );
    let error = sensor::run(&config, &h.ctx).await.unwrap_err();
    assert_eq!(
        error.message,
        "condition sql on connection `pg` still false after 120ms; last check: the query returned false"
    );
    assert!(!h.log().contains("hunter2"));
    assert!(
        !h.ctx
            .rendered
            .masked()
            .values()
            .any(|v| v.contains("hunter2"))
    );
}

#[tokio::test]
async fn an_unreachable_database_is_not_yet_and_its_password_never_shows() {
    let port = closed_port().await;
    let url = format!("postgres://loader:hunter2@127.0.0.1:{port}/warehouse");
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new(dir.path(), &[("SLUICE_CONN_WH", url.as_str())]);
    let config = sensor(
        "    sql:\n      connection: wh\n      sql: SELECT 1\n    poke_interval: 100ms\n    timeout: 250ms\n",
    );
    let error = sensor::run(&config, &h.ctx).await.unwrap_err();
    assert!(
        error.message.starts_with(
            "condition sql on connection `wh` still false after 250ms; last check: could not query connection `wh`: "
        ),
        "{}",
        error.message
    );
    let log = h.log();
    assert!(
        log.contains("[sensor] poke 2: not yet (could not query"),
        "{log}"
    );
    assert!(!error.message.contains("hunter2") && !log.contains("hunter2"));
}

#[tokio::test]
async fn the_task_condition_needs_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), &[]);
    let config = sensor("    task: {dag: upstream, task: extract}\n");
    let error = sensor::run(&config, &h.ctx).await.unwrap_err();
    assert_eq!(
        error.message,
        "the `task` condition reads other runs from the database: it runs on a worker, not in `sluice tasks test`"
    );
}

#[tokio::test]
async fn cancel_stops_a_poking_sensor_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(dir.path(), &[]);
    let config = sensor("    file: never\n    poke_interval: 1h\n");
    let cancel = h.ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let error = tokio::time::timeout(Duration::from_secs(5), sensor::run(&config, &h.ctx))
        .await
        .expect("cancel stops the wait")
        .unwrap_err();
    assert_eq!(error.message, "stopped: the attempt was cancelled");
}
