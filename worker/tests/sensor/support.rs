//! A step context over a tempdir, test servers on free loopback ports, a worker on a fresh
//! SQLite or PostgreSQL store, and polling with a deadline.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_core::spec::SensorStep;
use sluice_core::{DataInterval, RunType, Step, parse_dag};
use sluice_store::testing::{TestDatabase, fresh_postgres_url};
use sluice_store::{DagSnapshot, DagSync, NewRun, NewTaskInstance, RunRecord, Store, UNMAPPED};
use sluice_worker::RenderedFields;
use sluice_worker::connections::Connections;
use sluice_worker::logs::LogSink;
use sluice_worker::steps::StepContext;
use sluice_worker::{Worker, WorkerConfig};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub ctx: StepContext,
    log: UnboundedReceiver<String>,
}

impl Harness {
    /// A context whose relative paths resolve in `base_dir`, with the connections the given
    /// `SLUICE_CONN_<NAME>` variables define.
    pub fn new(base_dir: &Path, env: &[(&str, &str)]) -> Harness {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let connections = Connections::load(&env, None).expect("no secrets file to read");
        let (log, receiver) = LogSink::collecting();
        Harness {
            ctx: StepContext {
                template_context: json!({
                    "ds": "2026-01-02",
                    "logical_date": "2026-01-02T00:00:00+00:00",
                    "conn": serde_json::to_value(connections.for_templates()).unwrap(),
                }),
                log,
                cancel: CancellationToken::new(),
                env: BTreeMap::new(),
                base_dir: base_dir.to_path_buf(),
                dag_folder: base_dir.to_path_buf(),
                rendered: RenderedFields::default(),
                connections,
            },
            log: receiver,
        }
    }

    /// Every log line written so far, joined.
    pub fn log(&mut self) -> String {
        let mut lines = Vec::new();
        while let Ok(line) = self.log.try_recv() {
            lines.push(line);
        }
        lines.join("\n")
    }
}

/// The sensor config of task `a` in a one-task DAG whose task `a` has these keys.
pub fn sensor(keys: &str) -> SensorStep {
    let yaml = format!("dag: s\ntasks:\n  a:\n    type: sensor\n{keys}");
    let dag = parse_dag("dags/s.yaml", &yaml).unwrap_or_else(|e| panic!("{yaml}: {e:?}"));
    match &dag.tasks[0].step {
        Step::Sensor(config) => config.clone(),
        other => panic!("not a sensor: {other:?}"),
    }
}

/// Serves `router` on 127.0.0.1 at a free port; returns `http://127.0.0.1:<port>`.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// A loopback port nothing listens on.
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Each test once per store: `<test>::sqlite` and `<test>::postgres`.
macro_rules! on_both_stores {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test(crate::support::Backend::Postgres).await
            }
        }
    )+};
}
pub(crate) use on_both_stores;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    // dropped last: the database outlives the store's connections
    _database: Option<TestDatabase>,
}

/// `None` when PostgreSQL is not configured (the helper printed why; under CI=true it panics).
pub async fn fixture(backend: Backend) -> Option<Fixture> {
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
    Some(Fixture {
        dir,
        store,
        _database: database,
    })
}

impl Fixture {
    /// A worker with `slots` slots that looks for work every 50 ms and checks leases every
    /// 100 ms, so short sensor intervals are honoured.
    pub fn worker(&self, slots: u32) -> Arc<Worker> {
        let mut config = WorkerConfig::new(format!("worker-{slots}"), slots);
        config.base_dir = self.dir.path().to_path_buf();
        config.heartbeat_interval = Duration::from_millis(200);
        config.poll_interval = Duration::from_millis(50);
        config.lease_check_interval = Duration::from_millis(100);
        Worker::new(
            self.store.clone(),
            Arc::new(sluice_core::clock::SystemClock),
            config,
        )
    }

    /// Runs `worker` until the returned sender says stop.
    pub fn spawn(&self, worker: Arc<Worker>) -> Running {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(worker.run(shutdown));
        Running { stop, handle }
    }
}

pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// Stores the DAG and creates a started run of it for `logical_date`, as the scheduler would.
pub async fn start_run(store: &dyn Store, yaml: &str, logical_date: DateTime<Utc>) -> RunRecord {
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
        run_id: format!(
            "manual__{}",
            logical_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        run_type: RunType::Manual,
        logical_date,
        data_interval: DataInterval {
            start: logical_date,
            end: logical_date,
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
        .start_queued_runs(dag.id.as_str(), 8, now)
        .await
        .unwrap();
    created
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `limit` with what `seen`
/// last described.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("{what}: not after {limit:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

pub async fn log(store: &dyn Store, attempt_id: i64) -> String {
    store
        .read_log(attempt_id, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.content)
        .collect()
}
