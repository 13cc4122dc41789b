//! `sluice backfill` as a user runs it against `sluice standalone`.

use crate::support::{TestApp, sluice, text};

/// Six daily runs of one short shell task, one at a time: long enough to kill the CLI
/// while it waits.
const SLOW: &str = r#"
dag: slow
schedule: "0 2 * * *"
timezone: Europe/Berlin
max_active_runs: 1
tasks:
  work:
    type: shell
    command: sleep 0.5; echo "worked on {{ ds }}"
"#;

const RANGE: [&str; 5] = ["slow", "--start", "2026-03-26", "--end", "2026-03-31"];

fn backfill_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["backfill"];
    args.extend(RANGE);
    args.extend(extra);
    args
}

fn runs_json(app: &TestApp) -> Vec<serde_json::Value> {
    let output = app.cli(&["runs", "list", "slow", "--output", "json", "--limit", "100"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("runs list prints JSON")
}

async fn backfill_resumes_after_the_cli_is_killed(app: TestApp) {
    // the scheduler has loaded the DAG once the dry run stops answering "not in the database"
    let dry = app.cli_until(&backfill_args(&["--dry-run"]), |o| {
        o.status.code() != Some(2)
    });
    assert!(dry.status.success(), "{}", text(&dry.stderr));

    let mut first = app.spawn_cli(&backfill_args(&[]));
    let status = app.cli_until(&["backfill", "status", "1", "--output", "json"], |o| {
        o.status.success()
    });
    assert!(
        status.status.success(),
        "the backfill was created: {}",
        text(&status.stderr)
    );
    first.kill().expect("kill -9 the waiting CLI");
    let _ = first.wait();
    let seen: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(seen["backfill"]["state"], "running", "{seen}");

    let again = app.cli(&backfill_args(&[]));
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}\n{}", text(&again.stderr));
    assert!(stdout.contains("resuming backfill 1 of slow"), "{stdout}");
    assert!(
        stdout.contains("backfill 1 success: 6 succeeded"),
        "{stdout}"
    );

    let runs = runs_json(&app);
    let mut dates: Vec<&str> = runs
        .iter()
        .filter(|r| r["backfill_id"] == 1)
        .map(|r| r["logical_date"].as_str().unwrap())
        .collect();
    assert_eq!(dates.len(), 6, "six runs, none duplicated: {runs:?}");
    dates.dedup();
    assert_eq!(dates.len(), 6);
    assert!(
        runs.iter()
            .filter(|r| r["backfill_id"] == 1)
            .all(|r| r["run_type"] == "backfill" && r["state"] == "success")
    );
    let table = text(&app.cli(&["runs", "list", "slow"]).stdout);
    assert!(table.contains("backfill #1"), "{table}");

    // once it is done, the same command finds nothing to do
    let done = app.cli(&backfill_args(&[]));
    assert!(done.status.success());
    assert!(
        text(&done.stderr).contains("nothing to do"),
        "{}",
        text(&done.stderr)
    );
}

#[tokio::test]
async fn sqlite_backfill_resumes_after_the_cli_is_killed() {
    backfill_resumes_after_the_cli_is_killed(TestApp::spawn(&[("slow.yaml", SLOW)], None)).await;
}

#[tokio::test]
async fn postgres_backfill_resumes_after_the_cli_is_killed() {
    let Some(database) = sluice_store::testing::fresh_postgres_url().await else {
        return;
    };
    let app = TestApp::spawn(&[("slow.yaml", SLOW)], Some(database.url().to_owned()));
    backfill_resumes_after_the_cli_is_killed(app).await;
}

/// Every table's rows, as text, in a stable order.
async fn dump(url: &str) -> Vec<(String, Vec<String>)> {
    use sqlx::Connection;
    let mut tables = Vec::new();
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        for name in names {
            let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{name}')"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let row = columns
                .iter()
                .map(|c| format!("quote(\"{c}\")"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT {row} FROM \"{name}\" ORDER BY 1"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            tables.push((name, rows));
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for name in names {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text FROM \"{name}\" t ORDER BY 1"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            tables.push((name, rows));
        }
    }
    tables
}

async fn dry_run_changes_nothing(mut app: TestApp) {
    let first = app.cli_until(&backfill_args(&[]), |o| o.status.code() != Some(2));
    assert!(first.status.success(), "{}", text(&first.stderr));
    // stop the scheduler and workers: from here on only the CLI could write
    app.stop();
    let before = dump(&app.database_url).await;
    assert!(
        before
            .iter()
            .any(|(name, rows)| name == "backfills" && rows.len() == 1)
    );
    for extra in [
        &["--dry-run"][..],
        &["--dry-run", "--rerun-failed"],
        &["--dry-run", "--tasks", "work", "--max-active-runs", "3"],
        &["--dry-run", "--reverse", "--output", "json"],
    ] {
        let output = app.cli(&backfill_args(extra));
        assert!(
            output.status.success(),
            "{extra:?}: {}",
            text(&output.stderr)
        );
    }
    let plan = text(
        &app.cli(&backfill_args(&["--dry-run", "--tasks", "work"]))
            .stdout,
    );
    assert!(plan.contains("rerun work"), "{plan}");
    assert!(plan.contains("Nothing was changed"), "{plan}");
    let after = dump(&app.database_url).await;
    assert_eq!(before, after, "a dry run changed the database");
}

#[tokio::test]
async fn sqlite_dry_run_changes_nothing() {
    dry_run_changes_nothing(TestApp::spawn(&[("slow.yaml", SLOW)], None)).await;
}

#[tokio::test]
async fn postgres_dry_run_changes_nothing() {
    let Some(database) = sluice_store::testing::fresh_postgres_url().await else {
        return;
    };
    let app = TestApp::spawn(&[("slow.yaml", SLOW)], Some(database.url().to_owned()));
    dry_run_changes_nothing(app).await;
}

#[test]
fn a_bad_date_or_dag_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (
            &[
                "backfill",
                "slow",
                "--start",
                "2026-02-30",
                "--end",
                "2026-03-01",
            ][..],
            "--start: `2026-02-30` is not a date",
        ),
        (
            &[
                "backfill",
                "slow",
                "--start",
                "2026-02-01",
                "--end",
                "yesterday",
            ],
            "--end: `yesterday` is not a date",
        ),
        (
            &[
                "backfill",
                "nope",
                "--start",
                "2026-02-01",
                "--end",
                "2026-02-02",
            ],
            "DAG `nope` is not in the database",
        ),
        (&["backfill", "status", "42"], "no backfill 42"),
    ] {
        let output = sluice(dir.path(), args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, got {stderr}"
        );
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn cancelling_a_backfill_cancels_its_runs_and_the_watcher_exits_3() {
    let app = TestApp::spawn(&[("slow.yaml", SLOW)], None);
    let dry = app.cli_until(&backfill_args(&["--dry-run"]), |o| {
        o.status.code() != Some(2)
    });
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let watcher = app.spawn_cli(&backfill_args(&[]));
    let status = app.cli_until(&["backfill", "status", "1"], |o| o.status.success());
    assert!(status.status.success());
    let cancel = app.cli(&["backfill", "cancel", "1"]);
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    assert!(text(&cancel.stdout).contains("backfill 1 of slow cancelled"));
    let output = watcher.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stdout));
    let status = text(&app.cli(&["backfill", "status", "1"]).stdout);
    assert!(status.contains("cancelled"), "{status}");
}

#[tokio::test]
async fn ctrl_c_stops_watching_and_the_backfill_goes_on() {
    use std::io::{BufRead, BufReader};

    let app = TestApp::spawn(&[("slow.yaml", SLOW)], None);
    let dry = app.cli_until(&backfill_args(&["--dry-run"]), |o| {
        o.status.code() != Some(2)
    });
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let mut watcher = app.spawn_cli(&backfill_args(&[]));
    let mut stderr = BufReader::new(watcher.stderr.take().expect("stderr is piped"));
    let mut line = String::new();
    while !line.contains("watch it:") {
        line.clear();
        let read = stderr
            .read_line(&mut line)
            .expect("reading the watcher's stderr");
        assert!(read > 0, "the watcher ended before watching");
    }
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &watcher.id().to_string()])
        .status()
        .expect("sending SIGINT");
    assert!(interrupted.success());
    let status = watcher.wait().expect("waiting for the watcher");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(
        rest.contains("backfill 1 goes on in the scheduler"),
        "{rest}"
    );
    assert!(rest.contains("sluice backfill cancel 1"), "{rest}");
    let done = app.cli_until(&["backfill", "status", "1", "--output", "json"], |o| {
        let seen: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        seen["backfill"]["state"] == "success"
    });
    let seen: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(seen["progress"]["success"], 6, "{seen}");
}
