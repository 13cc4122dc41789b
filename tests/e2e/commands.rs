//! `runs`, `tasks`, `dags show`, `config show` and `completions` as a user runs them.

use std::path::Path;

use crate::support::{TestApp, sluice, text};

const PIPELINE: &str = r#"
dag: pipeline
schedule: "0 2 * * *"
timezone: Asia/Seoul
params:
  region: kr
tasks:
  extract:
    type: shell
    command: echo "extract {{ ds }} {{ params.region }}"
    env:
      TARGET: "data/{{ ds_nodash }}.jsonl"
  fail:
    type: shell
    command: echo "about to fail on {{ ds }}"; exit 4
  load:
    type: noop
    depends_on: [extract]
  report:
    type: shell
    depends_on: [load, fail]
    trigger_rule: all_done
    command: echo report
"#;

fn write_dags(dir: &Path) {
    let dags = dir.join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(dags.join("pipeline.yaml"), PIPELINE).unwrap();
}

#[test]
fn tasks_render_prints_every_templated_field_for_the_date() {
    let dir = tempfile::tempdir().unwrap();
    write_dags(dir.path());
    let output = sluice(
        dir.path(),
        &[
            "tasks",
            "render",
            "pipeline",
            "extract",
            "--date",
            "2026-03-01",
        ],
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("command: echo \"extract 2026-03-01 kr\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("env.TARGET: data/20260301.jsonl"),
        "{stdout}"
    );
    assert!(stdout.contains("2026-03-01 02:00 KST"), "{stdout}");

    let output = sluice(
        dir.path(),
        &[
            "tasks",
            "render",
            "pipeline",
            "nope",
            "--date",
            "2026-03-01",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("has no task `nope` (tasks: extract, fail, load, report)")
    );
}

#[test]
fn tasks_test_runs_one_task_without_a_database_and_exits_with_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    write_dags(dir.path());
    let args = [
        "tasks",
        "test",
        "pipeline",
        "extract",
        "--date",
        "2026-03-01",
        "--param",
        "region=eu",
    ];
    let output = sluice(dir.path(), &args);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("extract 2026-03-01 eu"),
        "{}",
        text(&output.stdout)
    );

    let output = sluice(
        dir.path(),
        &["tasks", "test", "pipeline", "fail", "--date", "2026-03-01"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("about to fail on 2026-03-01"));
    assert!(text(&output.stderr).contains("command exited with code 4"));
    assert!(
        !dir.path().join(".sluice").exists(),
        "no database was created"
    );
}

#[test]
fn dags_show_prints_the_graph_in_layers() {
    let dir = tempfile::tempdir().unwrap();
    write_dags(dir.path());
    let output = sluice(dir.path(), &["dags", "show", "pipeline"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["0", "extract", "shell"]);
    assert_eq!(rows[1][..3], ["0", "fail", "shell"]);
    assert_eq!(rows[2][..3], ["1", "load", "noop"]);
    assert_eq!(rows[3][..4], ["2", "report", "shell", "all_done"]);
    assert!(stdout.contains("← load, fail"), "{stdout}");

    let output = sluice(
        dir.path(),
        &["dags", "show", "pipeline", "--output", "json"],
    );
    let graph: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(graph["tasks"][3]["layer"], 2);
}

#[test]
fn config_show_follows_flag_env_file_precedence_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "database_url = \"postgres://sluice:hunter2@db.internal/sluice\"\ndags_folder = \"from-file\"\n[standalone]\nport = 9999\nslots = 2\n",
    )
    .unwrap();
    let output = std::process::Command::new(crate::support::BIN)
        .args([
            "config",
            "show",
            "--dags-folder",
            "from-flag",
            "--output",
            "json",
        ])
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_DAGS_FOLDER")
        .env("SLUICE_SLOTS", "6")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let settings: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let get = |name: &str| {
        let s = settings.iter().find(|s| s["name"] == name).unwrap();
        (
            s["value"].as_str().unwrap().to_owned(),
            s["source"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        get("database_url"),
        (
            "postgres://sluice:***@db.internal/sluice".into(),
            "file sluice.toml".into()
        )
    );
    assert_eq!(get("dags_folder"), ("from-flag".into(), "flag".into()));
    assert_eq!(
        get("standalone.slots"),
        ("6".into(), "env SLUICE_SLOTS".into())
    );
    assert_eq!(
        get("standalone.port"),
        ("9999".into(), "file sluice.toml".into())
    );
    assert!(!text(&output.stdout).contains("hunter2"));

    std::fs::write(dir.path().join("sluice.toml"), "[standalone]\nprot = 1\n").unwrap();
    let output = sluice(dir.path(), &["config", "show"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("unknown setting `prot` in [standalone]"));
}

#[test]
fn completions_and_help_examples() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let output = sluice(dir.path(), &["completions", shell]);
        assert!(output.status.success());
        assert!(text(&output.stdout).contains("backfill"), "{shell}");
    }
    for command in [
        &["backfill", "--help"][..],
        &["runs", "list", "--help"],
        &["runs", "show", "--help"],
        &["tasks", "clear", "--help"],
        &["tasks", "render", "--help"],
        &["tasks", "test", "--help"],
        &["dags", "show", "--help"],
        &["config", "show", "--help"],
        &["completions", "--help"],
    ] {
        let output = sluice(dir.path(), command);
        assert!(
            text(&output.stdout).contains("Example: sluice"),
            "{command:?}"
        );
    }
}

#[tokio::test]
async fn runs_show_and_tasks_clear_keep_every_attempt() {
    let app = TestApp::spawn(&[("pipeline.yaml", PIPELINE)], None);
    let args = [
        "backfill",
        "pipeline",
        "--start",
        "2026-03-01",
        "--end",
        "2026-03-02",
    ];
    let output = app.cli_until(&args, |o| o.status.code() != Some(2));
    // `fail` fails, so the backfill fails
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));

    let output = app.cli(&[
        "runs", "list", "pipeline", "--state", "failed", "--output", "json",
    ]);
    let mut runs: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    // the scheduler's own latest run fails too; the backfill's two are the ones of interest
    runs.retain(|r| r["backfill_id"] == 1);
    assert_eq!(runs.len(), 2);
    let run_id = runs[1]["run_id"].as_str().unwrap().to_owned();
    let output = app.cli(&["runs", "show", &format!("pipeline/{run_id}")]);
    let shown = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        shown.contains("backfill #1") && shown.contains("command exited with code 4"),
        "{shown}"
    );

    // --since is a day in the DAG's timezone
    let output = app.cli(&[
        "runs",
        "list",
        "pipeline",
        "--since",
        "2026-03-02",
        "--output",
        "json",
    ]);
    let mut since: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    since.retain(|r| r["backfill_id"] == 1);
    assert_eq!(since.len(), 1, "{since:?}");
    assert_ne!(since[0]["run_id"], run_id.as_str());

    // clearing needs --yes without a terminal, and then keeps the first attempt
    let clear = [
        "tasks",
        "clear",
        "pipeline",
        "--start",
        "2026-03-01",
        "--end",
        "2026-03-01",
        "--tasks",
        "^fail$",
    ];
    let output = app.cli(&clear);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("pass --yes"));
    let mut with_yes = clear.to_vec();
    with_yes.push("--yes");
    let output = app.cli(&with_yes);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("cleared 1 task instances in 1 runs"));
    let shown = app.cli_until(
        &["runs", "show", "pipeline", &run_id, "--output", "json"],
        |o| {
            let run: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            run["run"]["state"] == "failed"
                && run["attempts"].as_array().is_some_and(|a| a.len() == 5)
        },
    );
    let run: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let fail_tries: Vec<&serde_json::Value> = run["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["task_id"] == "fail")
        .map(|a| &a["try_number"])
        .collect();
    assert_eq!(fail_tries, [1, 2], "both tries of `fail` are kept: {run}");
}
