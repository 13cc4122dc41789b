//! A cluster of real processes on one PostgreSQL database: schedulers, workers and web, each
//! started and stopped (SIGTERM, `kill -9`) the way an operator or a crash would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_store::{AttemptRecord, RunRecord, Store};

use crate::support::{BIN, text};

/// Flags that make failures show up in seconds rather than a minute.
pub const FAST_SCHEDULER: &[&str] = &[
    "scheduler",
    "--tick-interval",
    "200ms",
    "--zombie-after",
    "3s",
];
pub const FAST_WORKER: &[&str] = &["--heartbeat-interval", "500ms"];

pub struct Process {
    pub name: String,
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .expect("no panics while holding the lock")
            .join("\n")
    }
}

/// A database of its own, a DAG folder and the processes started on them; every process is
/// killed when the cluster is dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub store: Arc<dyn Store>,
    processes: Vec<Process>,
}

impl Cluster {
    pub async fn new(database_url: &str, dags: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let folder = dir.path().join("dags");
        std::fs::create_dir_all(&folder).expect("creating the DAG folder");
        for (name, yaml) in dags {
            std::fs::write(folder.join(name), yaml).expect("writing a DAG file");
        }
        let store = sluice_store::connect(database_url)
            .await
            .expect("opening the test database");
        Cluster {
            dir,
            database_url: database_url.to_owned(),
            store,
            processes: Vec::new(),
        }
    }

    pub fn dags_folder(&self) -> PathBuf {
        self.dir.path().join("dags")
    }

    /// Starts `sluice ARGS…` in the background; returns its index.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> usize {
        let mut child = Command::new(BIN)
            .args(args)
            .env("SLUICE_DATABASE_URL", &self.database_url)
            .env("SLUICE_DAGS_FOLDER", self.dags_folder())
            .env("SLUICE_LOG", "info,sqlx=warn")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sluice");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let reader = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                lines
                    .lock()
                    .expect("no panics while holding the lock")
                    .push(line);
            }
        });
        self.processes.push(Process {
            name: name.to_owned(),
            child,
            stderr,
        });
        self.processes.len() - 1
    }

    pub fn worker(&mut self, name: &str, extra: &[&str]) -> usize {
        let mut args = vec!["worker"];
        args.extend_from_slice(FAST_WORKER);
        args.extend_from_slice(extra);
        self.spawn(name, &args)
    }

    pub fn process(&self, index: usize) -> &Process {
        &self.processes[index]
    }

    pub fn signal(&self, index: usize, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.processes[index].pid().to_string()])
            .status()
            .expect("running kill");
        assert!(
            status.success(),
            "kill {signal} {}",
            self.processes[index].name
        );
    }

    /// Waits for a process to exit; panics with everything seen after `within`.
    pub fn wait_exit(&mut self, index: usize, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.processes[index].child.try_wait().expect("waiting") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}\n{}",
                self.processes[index].name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a CLI command against this cluster's database and DAG folder.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("SLUICE_DATABASE_URL", &self.database_url)
            .env("SLUICE_DAGS_FOLDER", self.dags_folder())
            .env("SLUICE_LOG", "warn")
            .current_dir(self.dir.path())
            .output()
            .expect("running the sluice CLI")
    }

    /// Triggers a DAG once a scheduler has loaded it; returns the run.
    pub async fn trigger(&self, dag_id: &str) -> RunRecord {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = self.cli(&["dags", "trigger", dag_id]);
            if output.status.success() {
                break;
            }
            assert!(
                output.status.code() == Some(2) && Instant::now() < deadline,
                "trigger failed: {}\n{}",
                text(&output.stderr),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.runs(dag_id)
            .await
            .into_iter()
            .next()
            .expect("the triggered run")
    }

    /// The DAG's runs, newest first.
    pub async fn runs(&self, dag_id: &str) -> Vec<RunRecord> {
        self.store
            .list_runs(&sluice_store::RunFilter {
                dag_id: Some(dag_id.to_owned()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("listing runs")
    }

    /// Polls until `check` returns a value, failing with what it last saw and the logs.
    pub async fn until<T, F>(&self, what: &str, within: Duration, mut check: F) -> T
    where
        F: AsyncFnMut() -> Result<T, String>,
    {
        let deadline = Instant::now() + within;
        loop {
            let seen = match check().await {
                Ok(value) => return value,
                Err(seen) => seen,
            };
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last seen: {seen}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the run to end and returns it.
    pub async fn finished(&self, run_pk: i64, within: Duration) -> RunRecord {
        let store = self.store.clone();
        self.until("the run ends", within, async || {
            let run = store
                .get_run_by_pk(run_pk)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no run")?;
            if run.state.is_terminal() {
                Ok(run)
            } else {
                let tis = store
                    .task_instances(run_pk)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut counts = std::collections::BTreeMap::new();
                for ti in tis {
                    *counts.entry(ti.state.as_str()).or_insert(0) += 1;
                }
                Err(format!("run {} with tasks {counts:?}", run.state))
            }
        })
        .await
    }

    /// Waits for an attempt of `task_id` in the run to be running and returns it.
    pub async fn running_attempt(&self, run_pk: i64, task_id: &str) -> AttemptRecord {
        let store = self.store.clone();
        self.until("the attempt starts", Duration::from_secs(30), async || {
            let attempts = store.attempts(run_pk).await.map_err(|e| e.to_string())?;
            attempts
                .iter()
                .find(|a| a.task_id == task_id && a.state == sluice_core::AttemptState::Running)
                .cloned()
                .ok_or_else(|| format!("{attempts:?}"))
        })
        .await
    }

    /// Every process's stderr, for failure messages.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.name, p.stderr()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in &mut self.processes {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }
}

/// True while a process with this id exists (and is not a zombie awaiting its parent).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Reads a pid a task wrote into a file of the cluster's folder, once it is there.
pub async fn pid_in(cluster: &Cluster, file: &str) -> u32 {
    let path = cluster.dir.path().join(file);
    cluster
        .until(
            "the task writes its pid",
            Duration::from_secs(30),
            async || {
                std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .ok_or_else(|| format!("no pid in {}", path.display()))
            },
        )
        .await
}
