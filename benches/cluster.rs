//! sluice as production runs it: a scheduler and workers as separate processes (the release
//! binary) on one PostgreSQL database.
//!
//! `SLUICE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench cluster`
//! (each scenario gets a fresh database on that server; `SLUICE_BENCH_ONLY=throughput|gap|idle`
//! runs one). Targets: 2,000 `noop` tasks of one fan-out on 4 workers × 8 slots at over 1,000
//! attempts/s; upstream end → downstream start across processes p50 < 10 ms, p99 < 50 ms; a
//! scheduler idle with 1,000 DAGs under 2 % of a core and 100 MB RSS.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::RunState;
use sluice_store::Store;
use sluice_store::testing::fresh_postgres_url;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const FAN_OUT: usize = 2_000;
const THROUGHPUT_RUNS: usize = 3;
const CHAIN: usize = 40;
const GAP_RUNS: usize = 10;
const IDLE_DAGS: usize = 1_000;
const IDLE_SECONDS: u64 = 30;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only = std::env::var("SLUICE_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "throughput" {
        throughput().await;
    }
    if only.is_empty() || only == "gap" {
        gap().await;
    }
    if only.is_empty() || only == "idle" {
        idle().await;
    }
}

/// Processes started for one scenario, killed when it ends.
struct Processes {
    dir: tempfile::TempDir,
    url: String,
    children: Vec<Child>,
}

impl Processes {
    fn new(url: &str, dags: &[(String, String)]) -> Processes {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("dags")).expect("dags folder");
        for (name, yaml) in dags {
            std::fs::write(dir.path().join("dags").join(name), yaml).expect("writing a DAG");
        }
        Processes {
            dir,
            url: url.to_owned(),
            children: Vec::new(),
        }
    }

    fn spawn(&mut self, name: &str, args: &[&str]) -> u32 {
        let log =
            std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log file");
        let child = Command::new(BIN)
            .args(args)
            .env("SLUICE_DATABASE_URL", &self.url)
            .env("SLUICE_DAGS_FOLDER", self.dir.path().join("dags"))
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sluice");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    async fn store_with_dags(&self, count: usize) -> Arc<dyn Store> {
        let store = sluice_store::connect(&self.url)
            .await
            .expect("opening the store");
        let deadline = Instant::now() + Duration::from_secs(120);
        while store.list_dags().await.expect("listing DAGs").len() < count {
            assert!(
                Instant::now() < deadline,
                "the scheduler did not load {count} DAGs"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        store
    }

    fn dag(&self, dag_id: &str) -> sluice_core::Dag {
        let loaded = sluice_scheduler::load_paths(&[self.dir.path().join("dags")]);
        (*loaded.dags[dag_id].dag).clone()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn run_to_end(store: &dyn Store, dag: &sluice_core::Dag) -> (Duration, i64) {
    let started = Instant::now();
    let run =
        sluice_scheduler::trigger(store, dag, Default::default(), "bench", chrono::Utc::now())
            .await
            .expect("triggering");
    loop {
        let current = store
            .get_run_by_pk(run.pk)
            .await
            .expect("reading")
            .expect("the run");
        if current.state.is_terminal() {
            assert_eq!(current.state, RunState::Success);
            return (started.elapsed(), run.pk);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn throughput() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let mut yaml = "dag: wide\nschedule: null\nmax_active_runs: 1\ntasks:\n".to_owned();
    for i in 0..FAN_OUT {
        yaml.push_str(&format!("  t{i:04}:\n    type: noop\n"));
    }
    let mut processes = Processes::new(database.url(), &[("wide.yaml".to_owned(), yaml)]);
    processes.spawn("scheduler", &["scheduler"]);
    for i in 0..4 {
        processes.spawn(&format!("worker-{i}"), &["worker", "--slots", "8"]);
    }
    let store = processes.store_with_dags(1).await;
    let dag = processes.dag("wide");
    let mut rates = Vec::new();
    for _ in 0..THROUGHPUT_RUNS {
        let (took, run_pk) = run_to_end(store.as_ref(), &dag).await;
        let attempts = store.attempts(run_pk).await.expect("reading attempts");
        assert_eq!(attempts.len(), FAN_OUT, "one attempt per task");
        rates.push(FAN_OUT as f64 / took.as_secs_f64());
        println!(
            "throughput: {FAN_OUT} noop tasks, 4 workers x 8 slots: {:.2} s, {:.0} attempts/s",
            took.as_secs_f64(),
            FAN_OUT as f64 / took.as_secs_f64()
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "throughput: median {:.0} attempts/s (min {:.0}, max {:.0}) over {THROUGHPUT_RUNS} runs",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
}

async fn gap() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    // tasks alternate between two queues served by two worker processes: every hop is a
    // finish in one process and a claim, woken by NOTIFY, in the other
    let mut yaml = "dag: chain\nschedule: null\nmax_active_runs: 1\ntasks:\n".to_owned();
    for i in 0..CHAIN {
        yaml.push_str(&format!(
            "  t{i:02}:\n    type: noop\n    queue: q{}\n",
            i % 2
        ));
        if i > 0 {
            yaml.push_str(&format!("    depends_on: [t{:02}]\n", i - 1));
        }
    }
    let mut processes = Processes::new(database.url(), &[("chain.yaml".to_owned(), yaml)]);
    processes.spawn("scheduler", &["scheduler"]);
    processes.spawn("worker-a", &["worker", "--queue", "q0"]);
    processes.spawn("worker-b", &["worker", "--queue", "q1"]);
    let store = processes.store_with_dags(1).await;
    let dag = processes.dag("chain");
    let mut gaps = Vec::new();
    let mut totals = Vec::new();
    for _ in 0..GAP_RUNS {
        let (took, run_pk) = run_to_end(store.as_ref(), &dag).await;
        totals.push(took.as_secs_f64() * 1000.0);
        let mut attempts = store.attempts(run_pk).await.expect("reading attempts");
        attempts.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        for pair in attempts.windows(2) {
            assert_ne!(
                pair[0].worker_id, pair[1].worker_id,
                "each hop crosses processes"
            );
            let end = pair[0].ended_at.expect("finished");
            gaps.push((pair[1].started_at - end).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
    }
    gaps.sort_by(f64::total_cmp);
    totals.sort_by(f64::total_cmp);
    println!(
        "gap across processes over {} hops: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        gaps.len(),
        percentile(&gaps, 50.0),
        percentile(&gaps, 90.0),
        percentile(&gaps, 99.0),
        gaps[gaps.len() - 1]
    );
    println!(
        "chain of {CHAIN} noop tasks alternating between two worker processes: median {:.0} ms (min {:.0}, max {:.0})",
        totals[totals.len() / 2],
        totals[0],
        totals[totals.len() - 1]
    );
}

async fn idle() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let dags: Vec<(String, String)> = (0..IDLE_DAGS)
        .map(|i| {
            let mut yaml = format!(
                "dag: idle_{i:04}\nschedule: \"0 2 * * *\"\ntimezone: UTC\nstart_date: 2030-01-01\ntasks:\n"
            );
            for t in 0..5 {
                yaml.push_str(&format!("  t{t}:\n    type: noop\n"));
            }
            (format!("idle_{i:04}.yaml"), yaml)
        })
        .collect();
    let mut processes = Processes::new(database.url(), &dags);
    let pid = processes.spawn("scheduler", &["scheduler"]);
    let _store = processes.store_with_dags(IDLE_DAGS).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ticks = clock_ticks_per_second();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(IDLE_SECONDS)).await;
    let used = (cpu_ticks(pid) - before) as f64 / ticks;
    let share = used / started.elapsed().as_secs_f64() * 100.0;
    println!(
        "idle scheduler with {IDLE_DAGS} DAGs over {IDLE_SECONDS} s: {share:.2} % of one core, RSS {:.1} MB",
        rss_kib(pid) as f64 / 1024.0
    );
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // after the command name: state is field 3, utime 14 and stime 15 (1-based)
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

fn rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
