//! A backfill of 365 daily runs of a 10-task `noop` DAG, from the backfill's creation (as
//! `sluice backfill` writes it) to its end, with the scheduler loop and 4 workers (8 slots
//! each, each with its own store handle as separate processes would have) in one process.
//!
//! `SLUICE_BENCH_DATABASE_URL=postgres://…/empty_db cargo bench --bench backfill`; without it
//! on a SQLite file. Target on PostgreSQL: under 10 s end to end.
//! `SLUICE_BENCH_BACKFILL_INTERVAL_MS` sets the scheduler's `backfill_interval` (default 100).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sluice_core::BackfillState;
use sluice_core::clock::SystemClock;
use sluice_scheduler::backfill::{self, BackfillRequest};
use sluice_scheduler::{FolderLoader, Scheduler, SchedulerConfig};
use sluice_store::RunRange;
use sluice_worker::{Worker, WorkerConfig};

const WORKERS: usize = 4;
const SLOTS: u32 = 8;
const REPEATS: usize = 3;

/// `a` → `b1`…`b8` → `z`: ten tasks in three layers.
fn dag_yaml(dag_id: &str) -> String {
    let mut yaml = format!(
        "dag: {dag_id}\nschedule: '@daily'\ntimezone: UTC\nmax_active_runs: 16\ntasks:\n  a:\n    type: noop\n"
    );
    for i in 1..=8 {
        yaml.push_str(&format!("  b{i}:\n    type: noop\n    depends_on: [a]\n"));
    }
    yaml.push_str("  z:\n    type: noop\n    depends_on: [b1, b2, b3, b4, b5, b6, b7, b8]\n");
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
    let ids: Vec<String> = (0..REPEATS).map(|i| format!("year_{i}")).collect();
    for id in &ids {
        std::fs::write(dags.join(format!("{id}.yaml")), dag_yaml(id)).unwrap();
    }
    let store = sluice_store::connect(&url)
        .await
        .expect("opening the bench database");
    let clock = Arc::new(SystemClock);
    let scheduler = Arc::new(Scheduler::new(
        store.clone(),
        clock.clone(),
        FolderLoader::new(&dags),
        SchedulerConfig {
            backfill_interval: Duration::from_millis(
                std::env::var("SLUICE_BENCH_BACKFILL_INTERVAL_MS")
                    .ok()
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(100),
            ),
            ..SchedulerConfig::default()
        },
    ));
    scheduler.tick(Utc::now()).await.expect("loading the DAGs");
    // nothing to catch up: the DAGs have no start date, so each has one scheduled run
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut tasks = vec![tokio::spawn(scheduler.clone().run(shutdown.clone()))];
    for i in 0..WORKERS {
        let handle = sluice_store::connect(&url).await.expect("a worker's store");
        let mut config = WorkerConfig::new(format!("bench-worker-{i}"), SLOTS);
        config.base_dir = dir.path().to_path_buf();
        let worker = Worker::new(handle, clock.clone(), config);
        tasks.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let loaded = sluice_scheduler::load_paths(std::slice::from_ref(&dags));
    let mut times = Vec::new();
    for id in &ids {
        let dag = &loaded.dags[id.as_str()].dag;
        let request = BackfillRequest {
            range: RunRange {
                dag_id: id.clone(),
                start: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
                end: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            },
            max_active_runs: None,
            reverse: false,
            rerun_failed: false,
            tasks: None,
            triggered_by: "bench".to_owned(),
            now: Utc::now(),
        };
        let started = Instant::now();
        let plan = backfill::plan(store.as_ref(), dag, &request)
            .await
            .expect("planning");
        assert_eq!(plan.runs.len(), 365);
        let record = backfill::create(store.as_ref(), dag, &plan, &request)
            .await
            .expect("creating the backfill");
        let created = started.elapsed();
        let state = loop {
            let current = store.get_backfill(record.id).await.unwrap().unwrap();
            if current.state != BackfillState::Running {
                break current.state;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "the backfill did not end"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let total = started.elapsed();
        assert_eq!(state, BackfillState::Success);
        println!(
            "{kind}: backfill of 365 runs × 10 noop tasks, {WORKERS} workers × {SLOTS} slots, max_active_runs 16: {:.2} s (plan + create {:.0} ms)",
            total.as_secs_f64(),
            created.as_secs_f64() * 1000.0
        );
        times.push(total.as_secs_f64());
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{kind}: median {:.2} s (min {:.2}, max {:.2}) over {REPEATS} backfills",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
