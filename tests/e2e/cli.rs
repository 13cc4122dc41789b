//! The CLI commands that need no running app.

use crate::support::{sluice, text};

#[test]
fn validate_reports_each_problem_with_its_location_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join("good.yaml"), "tasks:\n  a:\n    type: noop\n").unwrap();
    std::fs::write(
        dags.join("bad.yaml"),
        "sheduel: '@daily'\ntasks:\n  a:\n    type: noop\n    depends_on: [b]\n",
    )
    .unwrap();
    // a message that itself holds `: ` must still come out whole in JSON
    std::fs::write(
        dags.join("cron.yaml"),
        "schedule: '61 * * * *'\ntasks:\n  a:\n    type: noop\n",
    )
    .unwrap();

    let output = sluice(dir.path(), &["dags", "validate"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("bad.yaml:1:1: unknown key `sheduel` (did you mean `schedule`?)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bad.yaml:5:"),
        "missing depends_on target is located: {stdout}"
    );

    let output = sluice(dir.path(), &["dags", "validate", "dags/good.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));

    let output = sluice(dir.path(), &["dags", "validate", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    assert_eq!(report["valid"], false);
    let first = &report["errors"][0];
    assert_eq!(first["line"], 1);
    assert_eq!(first["col"], 1);
    assert!(first["file"].as_str().unwrap().ends_with("bad.yaml"));
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .all(|e| e["line"].is_u64() && e["col"].is_u64()),
        "every problem is located: {errors:?}"
    );
    let cron = errors
        .iter()
        .find(|e| e["file"].as_str().unwrap().ends_with("cron.yaml"))
        .expect("the cron problem is reported");
    assert_eq!(cron["line"], 1);
    assert_eq!(
        cron["message"],
        "bad cron `61 * * * *`: minute 61 is out of range 0-59"
    );
}

#[test]
fn next_runs_prints_times_in_the_dag_timezone() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("seoul.yaml"),
        "schedule: '0 2 * * *'\ntimezone: Asia/Seoul\nstart_date: 2026-01-01\ntasks:\n  a:\n    type: noop\n",
    )
    .unwrap();
    let output = sluice(dir.path(), &["dags", "next-runs", "seoul", "-n", "3"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let times: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("02:00:00 KST"))
        .collect();
    assert_eq!(times.len(), 3, "{stdout}");

    let output = sluice(dir.path(), &["dags", "next-runs", "nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("no DAG `nope`"));
}

#[test]
fn a_bad_database_url_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(
        dir.path(),
        &["db", "migrate", "--database-url", "mysql://x@y/z"],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("unsupported database URL `mysql://x@y/z`"),
        "{stderr}"
    );
}
