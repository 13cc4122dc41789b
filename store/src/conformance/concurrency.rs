//! Races: several handles on one database, as several schedulers and workers would be.
//!
//! Each test opens its handles first, then lets spawned tasks start together at a barrier, so
//! the database sees the calls at the same time rather than one after another.

use std::collections::BTreeSet;
use std::time::Instant;

use sluice_core::RunState;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::*;

/// How long a race may take before the test gives up and says what it saw.
const DEADLINE: Duration = Duration::from_secs(30);

async fn handles(db: &dyn Connector, count: usize) -> Vec<Arc<dyn Store>> {
    let mut handles = Vec::with_capacity(count);
    for _ in 0..count {
        handles.push(db.open().await);
    }
    handles
}

async fn join_all<T: 'static>(mut tasks: JoinSet<T>) -> Vec<T> {
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(value) => results.push(value),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("a racing task did not finish: {error}"),
        }
    }
    results
}

pub async fn concurrent_run_creation_creates_one_run(db: &dyn Connector) {
    const HANDLES: usize = 4;
    const TASKS_PER_HANDLE: usize = 8;
    let tasks = vec![task("a", &[]), task("b", &["a"]), task("c", &["a"])];
    let contested = daily_run("sales", 0, tasks.clone());
    let barrier = Arc::new(Barrier::new(HANDLES * TASKS_PER_HANDLE));
    let mut racers = JoinSet::new();
    for (h, store) in handles(db, HANDLES).await.into_iter().enumerate() {
        for i in 0..TASKS_PER_HANDLE {
            let (store, barrier, contested) = (store.clone(), barrier.clone(), contested.clone());
            let day = 1 + i64::try_from(h * TASKS_PER_HANDLE + i).expect("small");
            let own = daily_run("sales", day, tasks.clone());
            racers.spawn(async move {
                barrier.wait().await;
                let won = store
                    .create_run_if_absent(&contested)
                    .await
                    .expect("creating the contested run");
                let own = store
                    .create_run_if_absent(&own)
                    .await
                    .expect("creating an own run");
                (won.map(|r| r.pk), own.is_some())
            });
        }
    }
    let results = join_all(racers).await;
    let winners: Vec<i64> = results.iter().filter_map(|(won, _)| *won).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one racer creates the contested run: {winners:?}"
    );
    assert!(
        results.iter().all(|(_, own)| *own),
        "every racer creates its own run"
    );
    let store = db.open().await;
    let runs = store
        .list_runs(&RunFilter {
            dag_id: Some("sales".to_owned()),
            state: None,
            limit: 1000,
        })
        .await
        .expect("listing");
    assert_eq!(runs.len(), 1 + HANDLES * TASKS_PER_HANDLE);
    assert_eq!(
        store
            .task_instances(winners[0])
            .await
            .expect("reading")
            .len(),
        3,
        "the contested run has its task instances once"
    );
}

pub async fn concurrent_claims_never_claim_an_instance_twice(db: &dyn Connector) {
    const FAN_OUT: i32 = 200;
    const CLAIMERS: usize = 8;
    let mut tasks: Vec<NewTaskInstance> = (0..FAN_OUT)
        .map(|map_index| NewTaskInstance {
            map_index,
            priority: map_index % 3,
            ..task("fan", &[])
        })
        .collect();
    tasks.push(task("join", &["fan"]));
    let setup = db.open().await;
    let run = started_run(setup.as_ref(), &daily_run("sales", 0, tasks)).await;
    let barrier = Arc::new(Barrier::new(CLAIMERS));
    let mut claimers = JoinSet::new();
    for (i, store) in handles(db, CLAIMERS).await.into_iter().enumerate() {
        let barrier = barrier.clone();
        claimers.spawn(async move {
            let worker_id = format!("worker-{i}");
            let limit = 1 + u32::try_from(i % 4).expect("small");
            let mut claimed = Vec::new();
            barrier.wait().await;
            loop {
                let batch = store
                    .claim_attempts(&claim(&worker_id, limit, t(DAY)))
                    .await
                    .expect("claiming");
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(batch.into_iter().map(|c| (worker_id.clone(), c)));
            }
        });
    }
    let claimed: Vec<(String, ClaimedAttempt)> =
        join_all(claimers).await.into_iter().flatten().collect();
    let ti_ids: BTreeSet<i64> = claimed.iter().map(|(_, c)| c.ti_id).collect();
    let map_indexes: BTreeSet<i32> = claimed.iter().map(|(_, c)| c.map_index).collect();
    assert_eq!(
        claimed.len(),
        200,
        "every queued instance is claimed once, no more"
    );
    assert_eq!(ti_ids.len(), 200, "no task instance is claimed twice");
    assert_eq!(map_indexes, (0..FAN_OUT).collect::<BTreeSet<_>>());
    assert!(
        claimed
            .iter()
            .all(|(_, c)| c.try_number == 1 && c.task_id == "fan")
    );

    let attempts = setup.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts.len(), 200, "one attempt row per claim");
    let by_id: BTreeMap<i64, &AttemptRecord> = attempts.iter().map(|a| (a.id, a)).collect();
    for (worker_id, c) in &claimed {
        let attempt = by_id
            .get(&c.lease.attempt_id)
            .unwrap_or_else(|| panic!("no attempt row for claim {c:?}"));
        assert_eq!(
            (attempt.ti_id, attempt.worker_id.as_str()),
            (c.ti_id, worker_id.as_str())
        );
    }
    let running = setup
        .task_instances(run.pk)
        .await
        .expect("reading")
        .iter()
        .filter(|ti| ti.state == TaskState::Running)
        .count();
    assert_eq!(running, 200);
}

pub async fn concurrent_finishes_queue_every_join(db: &dyn Connector) {
    const RUNS: i64 = 40;
    const WORKERS: usize = 6;
    // many small runs whose two roots are claimed side by side, so they often finish at the
    // same time: each finish must see the other's result, or the join is never queued (and in
    // a run of its own, no later finish would notice)
    let setup = db.open().await;
    for day in 0..RUNS {
        let tasks = vec![
            task("left", &[]),
            task("right", &[]),
            task("join", &["left", "right"]),
        ];
        setup
            .create_run_if_absent(&daily_run("sales", day, tasks))
            .await
            .expect("creating")
            .expect("new run");
    }
    let max_active = u32::try_from(RUNS).expect("small");
    setup
        .start_queued_runs("sales", max_active, t(RUNS * DAY))
        .await
        .expect("starting");
    let barrier = Arc::new(Barrier::new(WORKERS));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for (i, store) in handles(db, WORKERS).await.into_iter().enumerate() {
        let barrier = barrier.clone();
        workers.spawn(async move {
            let worker_id = format!("worker-{i}");
            let mut wake = store.wakeups().subscribe();
            barrier.wait().await;
            loop {
                wake.borrow_and_update();
                let batch = store
                    .claim_attempts(&claim(&worker_id, 1, t(RUNS * DAY)))
                    .await
                    .expect("claiming");
                for attempt in &batch {
                    let done = finished(attempt, AttemptOutcome::Success, t(RUNS * DAY + 1));
                    store.finish_attempt(&done).await.expect("finishing");
                }
                if !batch.is_empty() {
                    continue;
                }
                let running = store.running_run_pks().await.expect("reading");
                if running.is_empty() {
                    return;
                }
                if started.elapsed() > DEADLINE {
                    let seen = states(store.as_ref(), running[0]).await;
                    panic!(
                        "{} runs did not finish within {DEADLINE:?}, e.g. {seen:?}",
                        running.len()
                    );
                }
                // another process's finish is not announced to this one on every backend
                let _ = tokio::time::timeout(Duration::from_millis(20), wake.changed()).await;
            }
        });
    }
    join_all(workers).await;
    let runs = setup
        .list_runs(&RunFilter {
            dag_id: Some("sales".to_owned()),
            state: Some(RunState::Success),
            limit: 1000,
        })
        .await
        .expect("listing");
    assert_eq!(runs.len(), 40, "every run succeeded");
    for run in runs {
        let attempts = setup.attempts(run.pk).await.expect("reading attempts");
        let tries: BTreeSet<i64> = attempts.iter().map(|a| a.ti_id).collect();
        assert_eq!(
            (attempts.len(), tries.len()),
            (3, 3),
            "every task ran exactly once"
        );
    }
}

pub async fn concurrent_starts_respect_max_active_runs(db: &dyn Connector) {
    const SCHEDULERS: usize = 6;
    let setup = db.open().await;
    for day in 0..6 {
        setup
            .create_run_if_absent(&daily_run("sales", day, vec![task("a", &[])]))
            .await
            .expect("creating")
            .expect("new run");
    }
    let barrier = Arc::new(Barrier::new(SCHEDULERS));
    let mut schedulers = JoinSet::new();
    for store in handles(db, SCHEDULERS).await {
        let barrier = barrier.clone();
        schedulers.spawn(async move {
            barrier.wait().await;
            store
                .start_queued_runs("sales", 2, t(7 * DAY))
                .await
                .expect("starting")
                .into_iter()
                .map(|r| r.logical_date)
                .collect::<Vec<_>>()
        });
    }
    let mut started: Vec<DateTime<Utc>> =
        join_all(schedulers).await.into_iter().flatten().collect();
    started.sort();
    assert_eq!(
        started,
        [t(0), t(DAY)],
        "two runs start, the oldest, once each"
    );
    assert_eq!(setup.running_run_pks().await.expect("reading").len(), 2);
}

pub async fn concurrent_syncs_all_succeed(db: &dyn Connector) {
    const SCHEDULERS: usize = 4;
    // the folder as it is, and as it is while every file is broken: the two kinds of sync
    // share no DAG rows, so nothing but the store itself orders them
    let broken = |id: &str| ImportErrorRecord {
        fileloc: format!("dags/{id}.yaml"),
        errors: vec![format!("dags/{id}.yaml:1:1: unknown key `dga`")],
    };
    let healthy = DagSync {
        dags: ["a", "b", "c"]
            .map(|id| DagSnapshot {
                dag_id: id.to_owned(),
                fileloc: format!("dags/{id}.yaml"),
                hash: format!("{id}-1"),
                source: format!("dag: {id}\n"),
                schedule: None,
                timezone: "UTC".to_owned(),
                description: None,
                tags: vec![],
            })
            .to_vec(),
        import_errors: vec![broken("d")],
        now: t(0),
    };
    let all_broken = DagSync {
        dags: vec![],
        import_errors: ["a", "b", "c", "d"].map(broken).to_vec(),
        now: t(0),
    };
    let barrier = Arc::new(Barrier::new(SCHEDULERS));
    let mut schedulers = JoinSet::new();
    for (i, store) in handles(db, SCHEDULERS).await.into_iter().enumerate() {
        let barrier = barrier.clone();
        let folders = [healthy.clone(), all_broken.clone()];
        schedulers.spawn(async move {
            barrier.wait().await;
            for round in 0..6 {
                store
                    .sync_dags(&folders[(i + round) % 2])
                    .await
                    .expect("syncing");
            }
        });
    }
    join_all(schedulers).await;
    let store = db.open().await;
    let errors = store.import_errors().await.expect("reading");
    assert!(
        errors == healthy.import_errors || errors == all_broken.import_errors,
        "the import errors of one whole sync, not a mix: {errors:?}"
    );
    assert_eq!(store.list_dags().await.expect("listing").len(), 3);
}
