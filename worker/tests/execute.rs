//! The worker executing real attempts, on SQLite and on PostgreSQL (each test on a fresh database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sluice_core::clock::SystemClock;
use sluice_core::{AttemptState, DataInterval, RunType, TaskState, parse_dag};
use sluice_store::testing::{TestDatabase, fresh_postgres_url};
use sluice_store::{DagSnapshot, DagSync, NewRun, NewTaskInstance, RunRecord, Store, UNMAPPED};
use sluice_worker::{Worker, WorkerConfig};

#[path = "execute/spark_submit.rs"]
mod spark_submit;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    worker: Arc<Worker>,
    // dropped last: the database outlives the store's connections
    _database: Option<TestDatabase>,
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Each test once per store: `<test>::sqlite` and `<test>::postgres`.
macro_rules! on_both_stores {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test(super::Backend::Postgres).await
            }
        }
    )+};
}

on_both_stores!(
    shell_output_is_logged_line_by_line_and_outputs_are_captured,
    a_failing_command_is_retried_then_fails_with_its_exit_code,
    a_timeout_kills_the_whole_process_group,
    an_http_step_whose_server_refuses_fails_the_attempt_naming_the_url,
    an_undefined_template_variable_fails_the_attempt_naming_the_field,
    cancelling_the_run_stops_the_running_command,
    a_shell_attempt_records_its_rendered_fields_with_secrets_masked_while_it_runs,
    a_foreach_template_expands_into_mapped_instances_and_downstream_gets_their_outputs_as_a_list,
    a_foreach_template_that_is_not_a_list_fails_naming_foreach,
    an_empty_foreach_list_skips_the_task_and_its_downstream,
    two_workers_racing_expand_a_foreach_template_once_and_run_each_item_once,
    sql_statements_run_in_one_transaction_with_outputs_from_the_last,
    a_bad_sql_statement_names_its_number_and_rolls_everything_back,
    sql_step_errors_name_the_connection_and_the_missing_output,
    a_connection_password_never_shows_in_logs_errors_or_rendered_fields,
    sql_runs_on_a_real_postgresql_connection,
);

/// `None` when PostgreSQL is not configured (the helper printed why; under CI=true it panics).
async fn fixture(backend: Backend) -> Option<Fixture> {
    fixture_with_connections(backend, &[]).await
}

/// A fixture whose worker reads `connections` (name, URL) from a secrets file.
async fn fixture_with_connections(
    backend: Backend,
    connections: &[(&str, &str)],
) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let (url, database) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("w.db").display()),
            None,
        ),
        Backend::Postgres => {
            let database = fresh_postgres_url().await?;
            (database.url().to_owned(), Some(database))
        }
    };
    let store = sluice_store::connect(&url).await.unwrap();
    let mut config = WorkerConfig::new("test-worker", 4);
    config.base_dir = dir.path().to_path_buf();
    config.heartbeat_interval = Duration::from_millis(200);
    if !connections.is_empty() {
        let path = dir.path().join("secrets.toml");
        let table: String = connections
            .iter()
            .map(|(name, url)| format!("{name} = \"{url}\"\n"))
            .collect();
        std::fs::write(&path, format!("[connections]\n{table}")).unwrap();
        config.secrets_file = Some(
            sluice_worker::connections::SecretsFile::new(&path, &dir.path().join("dags")).unwrap(),
        );
    }
    let worker = Worker::new(store.clone(), Arc::new(SystemClock), config);
    Some(Fixture {
        _dir: dir,
        store,
        worker,
        _database: database,
    })
}

/// Stores the DAG and creates a started run of it, as the scheduler would.
async fn start_run(store: &dyn Store, yaml: &str) -> RunRecord {
    let dag = parse_dag("dags/test.yaml", yaml)
        .unwrap_or_else(|e| panic!("test DAG does not parse: {e:?}"));
    let now = Utc::now();
    let snapshot = DagSnapshot {
        dag_id: dag.id.to_string(),
        fileloc: dag.fileloc.clone(),
        hash: dag.hash.clone(),
        source: yaml.to_owned(),
        schedule: None,
        timezone: "UTC".into(),
        description: None,
        tags: vec![],
    };
    store
        .sync_dags(&DagSync {
            dags: vec![snapshot],
            import_errors: vec![],
            now,
        })
        .await
        .unwrap();
    let tasks = dag
        .tasks
        .iter()
        .map(|t| NewTaskInstance {
            task_id: t.id.to_string(),
            map_index: UNMAPPED,
            upstream: t.depends_on.iter().map(ToString::to_string).collect(),
            trigger_rule: t.trigger_rule,
            retry: t.retry.clone(),
            timeout: t.timeout,
            queue: t.queue.clone(),
            pool: None,
            priority: 0,
        })
        .collect();
    let run = NewRun {
        dag_id: dag.id.to_string(),
        run_id: format!("manual__{}", now.to_rfc3339()),
        run_type: RunType::Manual,
        logical_date: now,
        data_interval: DataInterval {
            start: now,
            end: now,
        },
        dag_hash: dag.hash.clone(),
        params: dag.params.clone(),
        triggered_by: "test".into(),
        tasks,
        now,
    };
    let created = store
        .create_run_if_absent(&run)
        .await
        .unwrap()
        .expect("new run");
    store
        .start_queued_runs(dag.id.as_str(), 1, now)
        .await
        .unwrap();
    created
}

/// Claims and executes everything claimable once.
async fn work_once(f: &Fixture) -> usize {
    let claimed = f.worker.claim(10).await.unwrap();
    let n = claimed.len();
    for attempt in claimed {
        f.worker.execute(attempt).await;
    }
    n
}

async fn log(store: &dyn Store, attempt_id: i64) -> String {
    store
        .read_log(attempt_id, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.content)
        .collect()
}

async fn shell_output_is_logged_line_by_line_and_outputs_are_captured(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\nparams: { who: world }\ntasks:\n  a:\n    type: shell\n    env: { GREETING: 'hi {{ params.who }}' }\n    command: |\n      echo \"$GREETING from $SLUICE_TASK_ID\"\n      echo oops >&2\n      echo '::output answer=42'\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    assert_eq!(work_once(&f).await, 1);
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Success);
    assert_eq!(attempts[0].exit_code, Some(0));
    let text = log(f.store.as_ref(), attempts[0].id).await;
    assert!(text.contains("hi world from a\n"), "{text}");
    assert!(text.contains("oops\n"), "{text}");
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(outputs["a"]["answer"], "42");
}

async fn a_failing_command_is_retried_then_fails_with_its_exit_code(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  a:\n    type: shell\n    retries: 1\n    retry_delay: 0s\n    command: exit 4\n  b:\n    type: noop\n    depends_on: [a]\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_once(&f).await;
    let tis = f.store.task_instances(run.pk).await.unwrap();
    assert_eq!(tis[0].state, TaskState::UpForRetry);
    work_once(&f).await;
    let tis = f.store.task_instances(run.pk).await.unwrap();
    assert_eq!(tis[0].state, TaskState::Failed);
    assert_eq!(tis[1].state, TaskState::UpstreamFailed);
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a.exit_code == Some(4)));
    assert_eq!(
        attempts[1].error.as_deref(),
        Some("command exited with code 4")
    );
    let run = f.store.get_run_by_pk(run.pk).await.unwrap().unwrap();
    assert_eq!(run.state, sluice_core::RunState::Failed);
}

async fn a_timeout_kills_the_whole_process_group(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  a:\n    type: shell\n    timeout: 1s\n    command: |\n      sleep 60 &\n      echo $! > child.pid\n      sleep 60\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    let started = Instant::now();
    work_once(&f).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the attempt ended long before the sleeps"
    );
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Failed);
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("timed out after 1s"),
        "{:?}",
        attempts[0].error
    );
    let pid = std::fs::read_to_string(f._dir.path().join("child.pid")).unwrap();
    let proc_path = format!("/proc/{}", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&proc_path).exists() && !is_zombie(&proc_path) {
        assert!(
            Instant::now() < deadline,
            "the background child {pid} survived the timeout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_zombie(proc_path: &str) -> bool {
    std::fs::read_to_string(format!("{proc_path}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
}

async fn an_http_step_whose_server_refuses_fails_the_attempt_naming_the_url(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  fetch:\n    type: http\n    url: http://127.0.0.1:1/\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_once(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Failed);
    let error = attempts[0].error.clone().unwrap();
    assert!(
        error.starts_with("GET http://127.0.0.1:1/: could not connect: "),
        "{error}"
    );
    assert!(log(f.store.as_ref(), attempts[0].id).await.contains(&error));
}

async fn an_undefined_template_variable_fails_the_attempt_naming_the_field(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  a:\n    type: shell\n    command: echo {{ params.missing }}\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_once(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Failed);
    let error = attempts[0].error.clone().unwrap();
    assert!(error.contains("rendering `command`"), "{error}");
}

async fn cancelling_the_run_stops_the_running_command(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  a:\n    type: shell\n    command: sleep 60\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    let claimed = f.worker.claim(1).await.unwrap();
    let worker = f.worker.clone();
    let started = Instant::now();
    let execution = tokio::spawn(async move {
        for attempt in claimed {
            worker.execute(attempt).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f.store.cancel_run(run.pk, Utc::now()).await.unwrap());
    execution.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Cancelled);
    let tis = f.store.task_instances(run.pk).await.unwrap();
    assert_eq!(tis[0].state, TaskState::Cancelled);
}

async fn a_shell_attempt_records_its_rendered_fields_with_secrets_masked_while_it_runs(
    backend: Backend,
) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\nparams: { who: world }\ntasks:\n  a:\n    type: shell\n    env: { API_TOKEN: 'tok-{{ params.who }}-12345', REGION: eu }\n    command: echo 'auth tok-{{ params.who }}-12345' /{{ params.who }}; sleep 2\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    let claimed = f.worker.claim(1).await.unwrap();
    let worker = f.worker.clone();
    let execution = tokio::spawn(async move {
        for attempt in claimed {
            worker.execute(attempt).await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let rendered = loop {
        let rendered = f.store.rendered_fields(run.pk).await.unwrap();
        if let Some(first) = rendered.into_iter().next() {
            break first;
        }
        assert!(
            Instant::now() < deadline,
            "no rendered fields were recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(
        attempts[0].state,
        AttemptState::Running,
        "recorded before the step ran"
    );
    assert_eq!(rendered.attempt_id, attempts[0].id);
    assert_eq!(
        rendered.fields["command"],
        "echo 'auth ***' /world; sleep 2"
    );
    assert_eq!(rendered.fields["env.API_TOKEN"], "***");
    assert_eq!(rendered.fields["env.REGION"], "eu");
    execution.await.unwrap();
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Success);
}

/// Works until nothing is claimable (mapped instances are queued by their expansion).
async fn work_until_idle(f: &Fixture) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while work_once(f).await > 0 {
        assert!(Instant::now() < deadline, "work never ran out");
    }
}

/// task id and map index → state, sorted.
async fn instance_states(store: &dyn Store, run_pk: i64) -> Vec<(String, i32, TaskState)> {
    let mut states: Vec<_> = store
        .task_instances(run_pk)
        .await
        .unwrap()
        .into_iter()
        .map(|ti| (ti.task_id, ti.map_index, ti.state))
        .collect();
    states.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    states
}

fn rows(expected: &[(&str, i32, TaskState)]) -> Vec<(String, i32, TaskState)> {
    let mut rows: Vec<_> = expected
        .iter()
        .map(|(id, index, state)| ((*id).to_owned(), *index, *state))
        .collect();
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    rows
}

async fn a_foreach_template_expands_into_mapped_instances_and_downstream_gets_their_outputs_as_a_list(
    backend: Backend,
) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  list_files:\n    type: shell\n    command: echo '::output files=[\"a.csv\", \"b.csv\", \"c.csv\"]'\n  fan:\n    type: shell\n    depends_on: [list_files]\n    foreach: \"{{ outputs.list_files.files }}\"\n    command: echo \"::output upper={{ item | upper }}\"\n  after:\n    type: shell\n    depends_on: [fan]\n    command: echo \"::output all={{ outputs.fan.upper | join(',') }}\"\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_until_idle(&f).await;
    use TaskState::*;
    assert_eq!(
        instance_states(f.store.as_ref(), run.pk).await,
        rows(&[
            ("list_files", -1, Success),
            ("fan", -1, Success),
            ("fan", 0, Success),
            ("fan", 1, Success),
            ("fan", 2, Success),
            ("after", -1, Success),
        ])
    );
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(
        outputs["after"]["all"],
        serde_json::json!("A.CSV,B.CSV,C.CSV")
    );
    let attempts = f.store.attempts(run.pk).await.unwrap();
    let placeholder = attempts
        .iter()
        .find(|a| a.task_id == "fan" && a.map_index == -1)
        .unwrap();
    let log = log(f.store.as_ref(), placeholder.id).await;
    assert!(
        log.contains("`foreach` rendered to 3 items: one mapped instance each is queued"),
        "{log}"
    );
    let rendered = f.store.rendered_fields(run.pk).await.unwrap();
    let foreach = rendered
        .iter()
        .find(|r| r.attempt_id == placeholder.id)
        .unwrap();
    assert_eq!(
        foreach.fields["foreach"],
        "\"[\\\"a.csv\\\", \\\"b.csv\\\", \\\"c.csv\\\"]\""
    );
}

async fn a_foreach_template_that_is_not_a_list_fails_naming_foreach(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\nparams: { n: 3 }\ntasks:\n  fan:\n    type: shell\n    foreach: \"{{ params.n }}\"\n    command: echo {{ item }}\n  after:\n    type: noop\n    depends_on: [fan]\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_until_idle(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("`foreach` must render to a JSON list, but it rendered `3`")
    );
    use TaskState::*;
    assert_eq!(
        instance_states(f.store.as_ref(), run.pk).await,
        rows(&[("fan", -1, Failed), ("after", -1, UpstreamFailed)])
    );
}

async fn an_empty_foreach_list_skips_the_task_and_its_downstream(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  list:\n    type: shell\n    command: echo '::output files=[]'\n  fan:\n    type: noop\n    depends_on: [list]\n    foreach: \"{{ outputs.list.files }}\"\n  after:\n    type: noop\n    depends_on: [fan]\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_until_idle(&f).await;
    use TaskState::*;
    assert_eq!(
        instance_states(f.store.as_ref(), run.pk).await,
        rows(&[
            ("list", -1, Success),
            ("fan", -1, Skipped),
            ("after", -1, Skipped)
        ])
    );
    let run = f.store.get_run_by_pk(run.pk).await.unwrap().unwrap();
    assert_eq!(run.state, sluice_core::RunState::Success);
}

async fn sql_statements_run_in_one_transaction_with_outputs_from_the_last(backend: Backend) {
    let Some(f) = fixture_with_connections(backend, &[("scratch", "sqlite:scratch.db")]).await
    else {
        return;
    };
    let yaml = "dag: t\nparams: { region: kr }\ntasks:\n  q:\n    type: sql\n    connection: scratch\n    sql: |\n      CREATE TABLE sales (region TEXT, amount REAL, ok BOOLEAN);\n      INSERT INTO sales VALUES ('{{ params.region }}', 1.5, 1), ('{{ params.region }}', 2, 1), ('us', 3, 0);\n      SELECT count(*) AS n, sum(amount) AS total, max(region) AS region, ok, NULL AS empty FROM sales WHERE region = '{{ params.region }}'\n    outputs: [n, total, region, ok, empty]\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_once(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(
        attempts[0].state,
        AttemptState::Success,
        "{:?}",
        attempts[0].error
    );
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(
        serde_json::to_value(&outputs["q"]).unwrap(),
        serde_json::json!({"n": 2, "total": 3.5, "region": "kr", "ok": true, "empty": null})
    );
    let log = log(f.store.as_ref(), attempts[0].id).await;
    assert!(
        log.contains("[sql] connecting to `scratch` (sqlite:scratch.db)"),
        "{log}"
    );
    assert!(
        log.contains("[sql] statement 2/3: INSERT INTO sales VALUES ('kr', 1.5, 1)"),
        "{log}"
    );
    assert!(
        log.contains("[sql] statement 2/3: 3 rows affected"),
        "{log}"
    );
    assert!(log.contains("[sql] statement 3/3: 1 row returned"), "{log}");
}

async fn a_bad_sql_statement_names_its_number_and_rolls_everything_back(backend: Backend) {
    let Some(f) = fixture_with_connections(backend, &[("scratch", "sqlite:scratch.db")]).await
    else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  q:\n    type: sql\n    connection: scratch\n    sql: \"CREATE TABLE kept (a INTEGER); INSERT INTO kept VALUES (1); SELEC 1\"\n  check:\n    type: sql\n    connection: scratch\n    trigger_rule: all_done\n    depends_on: [q]\n    sql: \"SELECT count(*) AS n FROM sqlite_master WHERE name = 'kept'\"\n    outputs: [n]\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_until_idle(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    let failed = attempts.iter().find(|a| a.task_id == "q").unwrap();
    assert_eq!(
        failed.error.as_deref(),
        Some("statement 3 of 3 failed: near \"SELEC\": syntax error\n  in: SELEC 1")
    );
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(
        outputs["check"]["n"],
        serde_json::json!(0),
        "the CREATE was rolled back"
    );
}

async fn sql_step_errors_name_the_connection_and_the_missing_output(backend: Backend) {
    let Some(f) = fixture_with_connections(backend, &[("scratch", "sqlite:scratch.db")]).await
    else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  unknown:\n    type: sql\n    connection: warehouse\n    sql: SELECT 1\n  missing:\n    type: sql\n    connection: scratch\n    sql: SELECT 1 AS a\n    outputs: [a, b]\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_until_idle(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    let error = |task: &str| {
        attempts
            .iter()
            .find(|a| a.task_id == task)
            .and_then(|a| a.error.clone())
            .unwrap()
    };
    assert_eq!(
        error("unknown"),
        "unknown connection `warehouse` (in `connection:`): set SLUICE_CONN_WAREHOUSE=URL in the worker's environment, or add `warehouse = \"URL\"` under [connections] in the secrets file"
    );
    assert_eq!(
        error("missing"),
        "`outputs` names column `b`, which the last statement did not return (its columns: )"
    );
}

async fn a_connection_password_never_shows_in_logs_errors_or_rendered_fields(backend: Backend) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("postgres://loader:hunter2-secret@127.0.0.1:{port}/w");
    let Some(f) = fixture_with_connections(backend, &[("warehouse", &url)]).await else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  echo:\n    type: shell\n    command: echo 'pw={{ conn.warehouse.password }}'\n  q:\n    type: sql\n    connection: warehouse\n    sql: SELECT '{{ conn.warehouse.password }}'\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_until_idle(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    let mut seen = String::new();
    for attempt in &attempts {
        seen.push_str(&log(f.store.as_ref(), attempt.id).await);
        seen.push_str(attempt.error.as_deref().unwrap_or_default());
    }
    for rendered in f.store.rendered_fields(run.pk).await.unwrap() {
        seen.push_str(&format!("{:?}", rendered.fields));
    }
    assert!(!seen.contains("hunter2-secret"), "{seen}");
    assert!(seen.contains("pw=***"), "{seen}");
    assert!(seen.contains("SELECT '***'"), "{seen}");
    let q = attempts.iter().find(|a| a.task_id == "q").unwrap();
    let error = q.error.clone().unwrap();
    assert!(
        error.starts_with(&format!(
            "connection `warehouse` (postgres://loader:***@127.0.0.1:{port}/w): "
        )),
        "{error}"
    );
}

async fn sql_runs_on_a_real_postgresql_connection(backend: Backend) {
    if let Backend::Postgres = backend {
        return; // one store is enough: the user's database is what is tested here
    }
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let Some(f) = fixture_with_connections(backend, &[("warehouse", database.url())]).await else {
        return;
    };
    let yaml = "dag: t\ntasks:\n  q:\n    type: sql\n    connection: warehouse\n    sql: |\n      CREATE TABLE sales (region text, amount numeric, ok boolean, doc jsonb);\n      INSERT INTO sales VALUES ('kr', 1.5, true, '{\"a\": 1}'), ('kr', 2, true, null);\n      UPDATE sales SET amount = amount + 1 WHERE region = 'kr';\n      SELECT count(*) AS n, sum(amount) AS total, bool_and(ok) AS ok, max(doc::text)::jsonb AS doc FROM sales\n    outputs: [n, total, ok, doc]\n  bad:\n    type: sql\n    connection: warehouse\n    sql: \"INSERT INTO sales VALUES ('us', 1, true, null); SELECT nope FROM sales\"\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_until_idle(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    let q = attempts.iter().find(|a| a.task_id == "q").unwrap();
    assert_eq!(q.state, AttemptState::Success, "{:?}", q.error);
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(
        serde_json::to_value(&outputs["q"]).unwrap(),
        serde_json::json!({"n": 2, "total": 5.5, "ok": true, "doc": {"a": 1}})
    );
    let log = log(f.store.as_ref(), q.id).await;
    assert!(
        log.contains("[sql] statement 3/4: 2 rows affected"),
        "{log}"
    );
    let bad = attempts.iter().find(|a| a.task_id == "bad").unwrap();
    assert_eq!(
        bad.error.as_deref(),
        Some(
            "statement 2 of 2 failed: column \"nope\" does not exist\n  in: SELECT nope FROM sales"
        )
    );
}

async fn two_workers_racing_expand_a_foreach_template_once_and_run_each_item_once(
    backend: Backend,
) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let mut config = WorkerConfig::new("second-worker", 4);
    config.base_dir = f._dir.path().to_path_buf();
    let second = Worker::new(f.store.clone(), Arc::new(SystemClock), config);
    let yaml = "dag: t\ntasks:\n  fan:\n    type: shell\n    foreach: '[1, 2, 3, 4, 5, 6]'\n    command: echo \"::output seen={{ item }}\"\n  after:\n    type: noop\n    depends_on: [fan]\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = tokio::join!(f.worker.claim(3), second.claim(3));
        let claimed: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
        if claimed.is_empty() {
            break;
        }
        let mut running = Vec::new();
        for attempt in claimed {
            let worker = if attempt.lease.attempt_id % 2 == 0 {
                f.worker.clone()
            } else {
                second.clone()
            };
            running.push(tokio::spawn(async move { worker.execute(attempt).await }));
        }
        for handle in running {
            handle.await.unwrap();
        }
        assert!(Instant::now() < deadline, "work never ran out");
    }
    let attempts = f.store.attempts(run.pk).await.unwrap();
    let fan: Vec<_> = attempts.iter().filter(|a| a.task_id == "fan").collect();
    assert_eq!(
        fan.len(),
        7,
        "one expansion and one attempt per item: {fan:?}"
    );
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(
        outputs["fan"]["seen"],
        serde_json::json!(["1", "2", "3", "4", "5", "6"])
    );
    let run = f.store.get_run_by_pk(run.pk).await.unwrap().unwrap();
    assert_eq!(run.state, sluice_core::RunState::Success);
}
