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

#[test]
fn users_create_hashes_the_password_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let create = |args: &[&str], password: &str| {
        let mut all = vec!["users", "create"];
        all.extend_from_slice(args);
        crate::support::sluice_with_stdin(dir.path(), &all, password)
    };

    let output = create(
        &["admin", "--role", "admin", "--password-stdin"],
        "s3cret-enough\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("created admin user admin"));

    let again = create(&["admin", "--role", "viewer"], "another-password\n");
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("already exists"));
    let short = create(&["bob", "--role", "viewer"], "short\n");
    assert_eq!(short.status.code(), Some(2));
    assert!(text(&short.stderr).contains("at least 8 characters"));
    let role = create(&["bob", "--role", "root"], "long-enough-1\n");
    assert_eq!(role.status.code(), Some(2));
    assert!(
        text(&role.stderr).contains("unknown role `root`"),
        "{}",
        text(&role.stderr)
    );
    let name = create(&["<b>", "--role", "viewer"], "long-enough-1\n");
    assert_eq!(name.status.code(), Some(2));

    let list = sluice(dir.path(), &["users", "list"]);
    let stdout = text(&list.stdout);
    assert!(
        stdout.contains("admin") && stdout.contains("admin "),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(!stdout.contains("bob"), "{stdout}");
}

#[test]
fn tokens_create_prints_the_token_once_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(
        dir.path(),
        &["tokens", "create", "ci", "--role", "operator"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let token = text(&output.stdout).trim().to_owned();
    assert!(
        token.starts_with("sluice_") && token.len() == 7 + 64,
        "{token}"
    );
    assert!(text(&output.stderr).contains("shown only this once"));

    let again = sluice(dir.path(), &["tokens", "create", "ci", "--role", "viewer"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again.stderr));
    let list = text(&sluice(dir.path(), &["tokens", "list"]).stdout);
    assert!(list.contains("ci") && list.contains("operator"), "{list}");
    assert!(!list.contains(&token[7..]), "{list}");
    // the database file and its write-ahead log hold the hash, never the token
    let mut stored = Vec::new();
    for file in ["sluice.db", "sluice.db-wal"] {
        stored.extend(std::fs::read(dir.path().join(".sluice").join(file)).unwrap_or_default());
    }
    assert!(!stored.is_empty());
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        !stored.contains(&token[7..]),
        "the token itself is never stored"
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

#[test]
fn validate_warns_that_webhook_callbacks_are_not_called_yet() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("alerts.yaml"),
        "on_failure: [{ webhook: 'http://127.0.0.1:1/hook' }]\ntasks:\n  a:\n    type: noop\n",
    )
    .unwrap();
    std::fs::write(dags.join("quiet.yaml"), "tasks:\n  a:\n    type: noop\n").unwrap();

    let output = sluice(dir.path(), &["dags", "validate"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "still valid: {}",
        text(&output.stderr)
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("alerts.yaml: `on_failure`/`on_success` webhooks are valid but not called"),
        "{stderr}"
    );
    assert!(!stderr.contains("quiet.yaml"), "{stderr}");

    let output = sluice(dir.path(), &["dags", "validate", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    assert_eq!(
        report["warnings"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
}

#[test]
fn connections_come_from_a_secrets_file_outside_the_dag_folder_and_passwords_never_show() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("p.yaml"),
        "tasks:\n  echo:\n    type: shell\n    command: echo 'pw={{ conn.warehouse.password }} host={{ conn.warehouse.host }}'\n",
    )
    .unwrap();
    let secrets =
        "[connections]\nwarehouse = \"postgres://loader:hunter2-secret@db.internal:5432/w\"\n";
    std::fs::write(dir.path().join("secrets.toml"), secrets).unwrap();

    let output = sluice(
        dir.path(),
        &[
            "tasks",
            "test",
            "p",
            "echo",
            "--secrets-file",
            "secrets.toml",
        ],
    );
    let shown = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(shown.contains("pw=*** host=db.internal"), "{shown}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");

    let output = sluice(
        dir.path(),
        &[
            "tasks",
            "render",
            "p",
            "echo",
            "--date",
            "2026-01-01",
            "--secrets-file",
            "secrets.toml",
        ],
    );
    let shown = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        shown.contains("command: echo 'pw=*** host=db.internal'"),
        "{shown}"
    );

    // the environment wins over the file
    let output = std::process::Command::new(crate::support::BIN)
        .args(["tasks", "test", "p", "echo"])
        .env("SLUICE_LOG", "warn")
        .env("SLUICE_SECRETS_FILE", "secrets.toml")
        .env(
            "SLUICE_CONN_WAREHOUSE",
            "postgres://env:other-secret@env.host/w",
        )
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_DAGS_FOLDER")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let shown = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(shown.contains("pw=*** host=env.host"), "{shown}");

    // a secrets file in the DAG folder (in Git) is refused
    std::fs::write(dags.join("secrets.toml"), secrets).unwrap();
    let output = sluice(
        dir.path(),
        &[
            "tasks",
            "test",
            "p",
            "echo",
            "--secrets-file",
            "dags/secrets.toml",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the secrets file dags/secrets.toml is inside the DAG folder dags, which is in Git: keep it outside"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}
