//! The worker executing real attempts, on SQLite and on PostgreSQL (each test on a fresh database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sluice_core::clock::SystemClock;
use sluice_core::{AttemptState, DataInterval, RunType, TaskState, parse_dag};
use sluice_store::testing::{TestDatabase, fresh_postgres_url};
use sluice_store::{DagSnapshot, DagSync, NewRun, NewTaskInstance, RunRecord, Store, UNMAPPED};
use sluice_worker::{Worker, WorkerConfig};

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
);

/// `None` when PostgreSQL is not configured (the helper printed why; under CI=true it panics).
async fn fixture(backend: Backend) -> Option<Fixture> {
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
