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

#[test]
fn service_commands_name_the_bad_flag_and_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["worker", "--slots", "0"], "--slots must be at least 1"),
        (&["worker", "--queue", "a b"], "--queue `a b`"),
        (&["worker", "--grace", "soon"], "--grace"),
        (
            &["scheduler", "--zombie-after", "0s"],
            "--zombie-after must be at least 1s",
        ),
        (&["scheduler", "--tick-interval", "fast"], "--tick-interval"),
        (&["pools", "set", "x y", "--slots", "1"], "pool name `x y`"),
        (&["workers", "--stale-after", "a while"], "--stale-after"),
    ];
    for (args, expected) in cases {
        let output = sluice(dir.path(), args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains(expected),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}
