//! A step context over a tempdir, a test server on a free loopback port, the log read back.

use std::collections::BTreeMap;
use std::path::Path;

use axum::Router;
use serde_json::{Value, json};
use sluice_worker::RenderedFields;
use sluice_worker::connections::Connections;
use sluice_worker::logs::LogSink;
use sluice_worker::steps::StepContext;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub ctx: StepContext,
    log: UnboundedReceiver<String>,
}

impl Harness {
    /// A context whose relative paths resolve in `base_dir`, with `ds = 2024-05-06` and the
    /// connections the given `SLUICE_CONN_<NAME>` variables define.
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
                    "ds": "2024-05-06",
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

/// The lines of a JSONL file as values.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The names in a folder (temp files included), sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The step of the only task of a DAG whose task is `task_yaml` (indented under `tasks: t:`).
pub fn step(task_yaml: &str) -> sluice_core::Step {
    let indented: String = task_yaml
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    let source = format!("dag: t\ntasks:\n  t:\n{indented}");
    let mut dag = sluice_core::parse_dag("t.yaml", &source)
        .unwrap_or_else(|errors| panic!("{source}\n{errors:?}"));
    dag.tasks.remove(0).step
}

/// Runs the step; the error message when it fails.
pub async fn run(
    harness: &Harness,
    step: &sluice_core::Step,
) -> Result<BTreeMap<String, Value>, String> {
    sluice_worker::steps::run(step, &harness.ctx)
        .await
        .map(|output| output.outputs)
        .map_err(|error| error.message)
}
