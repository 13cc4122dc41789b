//! Trigger-to-success time of a chain of 40 tasks, and the gap between an upstream attempt's
//! end and its downstream attempt's start, with the real store, scheduler and worker in one
//! process (as `standalone` runs them).
//!
//! `cargo bench --bench latency` runs on a SQLite file; with
//! `SLUICE_BENCH_DATABASE_URL=postgres://…/empty_db` it runs on PostgreSQL.
//! Targets: noop chain < 0.4 s, `shell: true` chain < 1 s, gap p50 < 5 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::clock::SystemClock;
use sluice_scheduler::{FolderLoader, Scheduler, SchedulerConfig, trigger};
use sluice_store::Store;
use sluice_worker::{Worker, WorkerConfig};

const CHAIN: usize = 40;
const REPEATS: usize = 10;

fn chain_dag(dag_id: &str, step: &str) -> String {
    let mut yaml = format!("dag: {dag_id}\nschedule: null\nmax_active_runs: 1\ntasks:\n");
    for i in 0..CHAIN {
        yaml.push_str(&format!("  t{i:02}:\n    {step}\n"));
        if i > 0 {
            yaml.push_str(&format!("    depends_on: [t{:02}]\n", i - 1));
        }
    }
    yaml
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::env::var("SLUICE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let kind = if url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("noop_chain.yaml"),
        chain_dag("noop_chain", "type: noop"),
    )
    .unwrap();
    std::fs::write(
        dags.join("shell_chain.yaml"),
        chain_dag("shell_chain", "type: shell\n    command: \"true\""),
    )
    .unwrap();

    let store = sluice_store::connect(&url)
        .await
        .expect("opening the bench database");
    let clock = Arc::new(SystemClock);
    let scheduler = Scheduler::new(
        store.clone(),
        clock.clone(),
        FolderLoader::new(&dags),
        SchedulerConfig::default(),
    );
    scheduler
        .tick(chrono::Utc::now())
        .await
        .expect("loading the DAGs");
    let loaded = sluice_scheduler::load_paths(std::slice::from_ref(&dags));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut config = WorkerConfig::new("bench-worker", 8);
    config.base_dir = dir.path().to_path_buf();
    let worker = Worker::new(store.clone(), clock, config);
    let worker_task = tokio::spawn(worker.run(shutdown));

    for dag_id in ["noop_chain", "shell_chain"] {
        let dag = &loaded.dags[dag_id].dag;
        let mut totals = Vec::new();
        let mut gaps = Vec::new();
        for _ in 0..REPEATS {
            let started = Instant::now();
            let run = trigger(
                store.as_ref(),
                dag,
                Default::default(),
                "bench",
                chrono::Utc::now(),
            )
            .await
            .unwrap();
            let run = loop {
                let current = store.get_run_by_pk(run.pk).await.unwrap().unwrap();
                if current.state.is_terminal() {
                    break current;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            totals.push(started.elapsed());
            assert_eq!(run.state, sluice_core::RunState::Success);
            gaps.extend(chain_gaps(store.as_ref(), run.pk).await);
        }
        totals.sort();
        gaps.sort_by(f64::total_cmp);
        println!(
            "{kind} {dag_id} ({CHAIN} tasks), trigger to run success over {REPEATS} runs: median {:.0} ms, min {:.0} ms, max {:.0} ms",
            ms(totals[REPEATS / 2]),
            ms(totals[0]),
            ms(totals[REPEATS - 1])
        );
        println!(
            "{kind} {dag_id} upstream end -> downstream start gap over {} pairs: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
            gaps.len(),
            percentile(&gaps, 50.0),
            percentile(&gaps, 90.0),
            percentile(&gaps, 99.0)
        );
    }
    let _ = stop.send(true);
    let _ = worker_task.await;
}

async fn chain_gaps(store: &dyn Store, run_pk: i64) -> Vec<f64> {
    let attempts = store.attempts(run_pk).await.unwrap();
    let mut by_task: Vec<_> = attempts.iter().collect();
    by_task.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    by_task
        .windows(2)
        .map(|pair| {
            let end = pair[0].ended_at.expect("finished");
            (pair[1].started_at - end).num_microseconds().unwrap_or(0) as f64 / 1000.0
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
