//! Running as a cluster: zombie workers, fast cancellation, pools and capped logs.

use sluice_core::AttemptState;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::*;

fn beat(worker_id: &str, now: DateTime<Utc>) -> WorkerBeat {
    WorkerBeat {
        worker_id: worker_id.to_owned(),
        host: "host-a".to_owned(),
        queues: vec!["default".to_owned()],
        slots: 4,
        slots_in_use: 1,
        now,
    }
}

fn pooled(task_id: &str, pool: &str) -> NewTaskInstance {
    NewTaskInstance {
        pool: Some(pool.to_owned()),
        ..task(task_id, &[])
    }
}

pub async fn zombie_attempts_fail_with_the_reason_and_retry(store: &dyn Store) {
    let retried = NewTaskInstance {
        retry: fixed_retries(1, Duration::from_secs(30)),
        ..task("long", &[])
    };
    let run = started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![retried, task("alive", &[]), task("orphan", &[])],
        ),
    )
    .await;
    let dead = store
        .claim_attempts(&claim("dead-worker", 1, t(DAY)))
        .await
        .expect("claiming")
        .remove(0);
    let alive = store
        .claim_attempts(&claim("live-worker", 1, t(DAY)))
        .await
        .expect("claiming")
        .remove(0);
    store
        .worker_heartbeat(&beat("dead-worker", t(DAY)))
        .await
        .expect("beating");
    // the live worker holds `alive` (and heartbeats it) but not `orphan`, whose claim it
    // never heard back from
    let orphan = store
        .claim_attempts(&claim("live-worker", 1, t(DAY)))
        .await
        .expect("claiming")
        .remove(0);
    store
        .worker_heartbeat(&beat("live-worker", t(DAY + 100)))
        .await
        .expect("beating");
    store
        .heartbeat_attempt(&alive.lease, t(DAY + 100))
        .await
        .expect("beating the attempt");

    let early = ZombieSweep {
        stale_before: t(DAY),
        now: t(DAY + 30),
    };
    assert!(
        store
            .fail_zombies(&early)
            .await
            .expect("sweeping")
            .is_empty(),
        "nobody is silent yet"
    );

    // the live worker's orphan waits a second window (until DAY + 30 here), so a worker that
    // just died is never named as alive
    let sweep = ZombieSweep {
        stale_before: t(DAY + 90),
        now: t(DAY + 150),
    };
    let zombies = store.fail_zombies(&sweep).await.expect("sweeping");
    assert_eq!(
        zombies.len(),
        2,
        "the silent worker's attempt and the orphan: {zombies:?}"
    );
    let zombie = &zombies[0];
    let orphaned = &zombies[1];
    assert_eq!(
        (orphaned.attempt_id, orphaned.last_heartbeat),
        (orphan.lease.attempt_id, t(DAY))
    );
    assert_eq!(
        (zombie.attempt_id, zombie.task_id.as_str()),
        (dead.lease.attempt_id, "long")
    );
    assert_eq!(
        (zombie.worker_id.as_str(), zombie.last_heartbeat),
        ("dead-worker", t(DAY))
    );
    assert_eq!(zombie.task_state, TaskState::UpForRetry);

    let expected =
        "worker dead-worker stopped heartbeating at 2026-01-02 00:00:00.000Z; marked as a zombie";
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    let failed = attempts
        .iter()
        .find(|a| a.id == dead.lease.attempt_id)
        .expect("the attempt");
    assert_eq!(
        (failed.state, failed.error.as_deref()),
        (AttemptState::Failed, Some(expected))
    );
    let log: String = store
        .read_log(dead.lease.attempt_id, 0)
        .await
        .expect("reading the log")
        .into_iter()
        .map(|c| c.content)
        .collect();
    assert!(log.contains(&format!("[sluice] {expected}")), "log: {log}");
    let orphaned = attempts
        .iter()
        .find(|a| a.id == orphan.lease.attempt_id)
        .expect("the attempt");
    assert_eq!(
        orphaned.error.as_deref(),
        Some(
            "worker live-worker is alive but stopped heartbeating this attempt at 2026-01-02 00:00:00.000Z; marked as a zombie"
        )
    );
    let still = attempts
        .iter()
        .find(|a| a.id == alive.lease.attempt_id)
        .expect("the attempt");
    assert_eq!(
        still.state,
        AttemptState::Running,
        "a live worker's attempt is left alone"
    );

    assert!(
        store
            .fail_zombies(&sweep)
            .await
            .expect("sweeping again")
            .is_empty(),
        "failed once"
    );
    assert_lease_lost(
        store.heartbeat_attempt(&dead.lease, t(DAY + 151)).await,
        "a zombie's heartbeat",
    );
    assert_eq!(
        store
            .lost_leases(&[dead.lease.clone(), alive.lease.clone()])
            .await
            .expect("checking leases"),
        [dead.lease.attempt_id]
    );
    let retry = claim_one(store, t(DAY + 180)).await;
    assert_eq!((retry.task_id.as_str(), retry.try_number), ("long", 2));
}

pub async fn cancel_run_tells_workers_to_check_their_leases(store: &dyn Store) {
    let run = started_run(store, &daily_run("sales", 0, vec![task("a", &[])])).await;
    let a = claim_one(store, t(DAY)).await;
    let mut cancels = store.wakeups().subscribe_cancels();
    cancels.borrow_and_update();
    assert!(
        store
            .cancel_run(run.pk, t(DAY + 5))
            .await
            .expect("cancelling")
    );
    assert!(
        cancels.has_changed().expect("the store keeps its wake-ups"),
        "cancelling a running attempt tells the workers"
    );
    assert_eq!(
        store
            .lost_leases(std::slice::from_ref(&a.lease))
            .await
            .expect("checking"),
        [a.lease.attempt_id]
    );
    assert!(
        store
            .lost_leases(&[])
            .await
            .expect("checking nothing")
            .is_empty()
    );
}

pub async fn find_runs_looks_across_dags(store: &dyn Store) {
    let mut other = daily_run("orders", 0, vec![task("a", &[])]);
    other.dag_hash = "orders-hash".to_owned();
    store
        .create_run_if_absent(&daily_run("sales", 0, vec![task("a", &[])]))
        .await
        .expect("creating")
        .expect("new");
    store
        .create_run_if_absent(&other)
        .await
        .expect("creating")
        .expect("new");
    let found = store.find_runs(&other.run_id).await.expect("finding");
    let dags: Vec<&str> = found.iter().map(|r| r.dag_id.as_str()).collect();
    assert_eq!(dags, ["orders", "sales"]);
    assert!(store.find_runs("nope").await.expect("finding").is_empty());
}

pub async fn pools_cap_running_instances_and_list_their_use(store: &dyn Store) {
    store
        .set_pool(
            &PoolSlots {
                name: "db".to_owned(),
                slots: 2,
            },
            t(0),
        )
        .await
        .expect("setting a pool");
    let mut tasks: Vec<NewTaskInstance> =
        (0..5).map(|i| pooled(&format!("load{i}"), "db")).collect();
    tasks.push(task("free", &[]));
    tasks.push(pooled("elsewhere", "no_such_pool"));
    started_run(store, &daily_run("sales", 0, tasks)).await;
    let first = store
        .claim_attempts(&claim("w1", 10, t(DAY)))
        .await
        .expect("claiming");
    let mut ids: Vec<&str> = first.iter().map(|a| a.task_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["elsewhere", "free", "load0", "load1"],
        "two of the pool, and the rest"
    );
    let pools = store.list_pools().await.expect("listing pools");
    assert_eq!(pools.len(), 1);
    assert_eq!(
        (
            pools[0].name.as_str(),
            pools[0].slots,
            pools[0].running,
            pools[0].queued
        ),
        ("db", 2, 2, 3)
    );
    assert!(
        store
            .claim_attempts(&claim("w2", 10, t(DAY)))
            .await
            .expect("claiming")
            .is_empty(),
        "the pool is full"
    );

    let load0 = first
        .iter()
        .find(|a| a.task_id == "load0")
        .expect("claimed");
    store
        .finish_attempt(&finished(load0, AttemptOutcome::Success, t(DAY + 10)))
        .await
        .expect("finishing");
    let next = store
        .claim_attempts(&claim("w2", 10, t(DAY + 11)))
        .await
        .expect("claiming");
    assert_eq!(next.len(), 1, "one slot came free: {next:?}");

    store
        .set_pool(
            &PoolSlots {
                name: "db".to_owned(),
                slots: 4,
            },
            t(DAY + 12),
        )
        .await
        .expect("growing");
    let more = store
        .claim_attempts(&claim("w2", 10, t(DAY + 13)))
        .await
        .expect("claiming");
    assert_eq!(more.len(), 2, "the grown pool takes the last two: {more:?}");
    assert!(store.delete_pool("db").await.expect("deleting"));
    assert!(!store.delete_pool("db").await.expect("deleting again"));
}

pub async fn log_beyond_the_cap_keeps_the_tail_and_counts_the_rest(store: &dyn Store) {
    let run = started_run(store, &daily_run("sales", 0, vec![task("chatty", &[])])).await;
    let a = claim_one(store, t(DAY)).await;
    let cap = StoreOptions::default().log_cap_bytes;
    let chunk_bytes = 1024 * 1024;
    let chunks = cap / chunk_bytes + 3;
    for i in 0..chunks {
        let line = format!(
            "{i:07} {}\n",
            "x".repeat(usize::try_from(chunk_bytes).expect("small") - 9)
        );
        store
            .append_log(&a.lease, &line, t(DAY + 1))
            .await
            .expect("appending");
    }
    let kept = store
        .read_log(a.lease.attempt_id, 0)
        .await
        .expect("reading");
    let kept_bytes: u64 = kept.iter().map(|c| c.content.len() as u64).sum();
    let attempt = store.attempts(run.pk).await.expect("reading").remove(0);
    assert_eq!(
        kept_bytes + attempt.log_dropped_bytes,
        chunks * chunk_bytes,
        "every byte kept or counted"
    );
    assert!(kept_bytes <= cap, "kept {kept_bytes} bytes, cap {cap}");
    assert!(
        attempt.log_dropped_bytes >= 3 * chunk_bytes,
        "dropped {}",
        attempt.log_dropped_bytes
    );
    let last = kept.last().expect("the newest chunk is kept");
    assert!(
        last.content.starts_with(&format!("{:07}", chunks - 1)),
        "the tail is kept"
    );
    let first = kept.first().expect("a chunk");
    assert!(
        !first.content.starts_with("0000000"),
        "the head was dropped"
    );
}

pub async fn concurrent_claims_never_overfill_a_pool(db: &dyn Connector) {
    const HANDLES: usize = 4;
    let setup = db.open().await;
    setup
        .set_pool(
            &PoolSlots {
                name: "db".to_owned(),
                slots: 3,
            },
            t(0),
        )
        .await
        .expect("setting a pool");
    let tasks: Vec<NewTaskInstance> = (0..20)
        .map(|i| pooled(&format!("load{i:02}"), "db"))
        .collect();
    started_run(setup.as_ref(), &daily_run("sales", 0, tasks)).await;
    let barrier = Arc::new(Barrier::new(HANDLES));
    let mut racers = JoinSet::new();
    for h in 0..HANDLES {
        let store = db.open().await;
        let barrier = barrier.clone();
        racers.spawn(async move {
            barrier.wait().await;
            let mut claimed = 0;
            for _ in 0..5 {
                claimed += store
                    .claim_attempts(&claim(&format!("w{h}"), 2, t(DAY)))
                    .await
                    .expect("claiming")
                    .len();
            }
            claimed
        });
    }
    let mut total = 0;
    while let Some(claimed) = racers.join_next().await {
        total += claimed.expect("a racer finished");
    }
    assert_eq!(total, 3, "racing workers filled exactly the pool's 3 slots");
}

pub async fn concurrent_zombie_sweeps_fail_each_zombie_once(db: &dyn Connector) {
    const HANDLES: usize = 3;
    let setup = db.open().await;
    let tasks: Vec<NewTaskInstance> = (0..10).map(|i| task(&format!("t{i}"), &[])).collect();
    let run = started_run(setup.as_ref(), &daily_run("sales", 0, tasks)).await;
    let claimed = setup
        .claim_attempts(&claim("dead", 10, t(DAY)))
        .await
        .expect("claiming");
    assert_eq!(claimed.len(), 10);
    let barrier = Arc::new(Barrier::new(HANDLES));
    let mut racers = JoinSet::new();
    for _ in 0..HANDLES {
        let store = db.open().await;
        let barrier = barrier.clone();
        racers.spawn(async move {
            barrier.wait().await;
            let sweep = ZombieSweep {
                stale_before: t(DAY + 60),
                now: t(DAY + 61),
            };
            store.fail_zombies(&sweep).await.expect("sweeping").len()
        });
    }
    let mut total = 0;
    while let Some(failed) = racers.join_next().await {
        total += failed.expect("a sweeper finished");
    }
    assert_eq!(total, 10, "each zombie failed by exactly one sweeper");
    let attempts = setup.attempts(run.pk).await.expect("reading");
    assert!(
        attempts.iter().all(|a| a.state == AttemptState::Failed),
        "{attempts:?}"
    );
    assert_eq!(
        run_state(setup.as_ref(), run.pk).await,
        sluice_core::RunState::Failed
    );
}

pub async fn concurrent_last_finishes_end_their_run(db: &dyn Connector) {
    const RUNS: i64 = 30;
    const WORKERS: usize = 6;
    // runs of two independent tasks, finished side by side: whichever commits last must see
    // the other settled and end the run, with no scheduler to re-evaluate it
    let setup = db.open().await;
    for day in 0..RUNS {
        let tasks = vec![task("left", &[]), task("right", &[])];
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
    let mut workers = JoinSet::new();
    for i in 0..WORKERS {
        let store = db.open().await;
        let barrier = barrier.clone();
        workers.spawn(async move {
            barrier.wait().await;
            loop {
                let batch = store
                    .claim_attempts(&claim(&format!("w{i}"), 1, t(RUNS * DAY)))
                    .await
                    .expect("claiming");
                if batch.is_empty() {
                    return;
                }
                for attempt in &batch {
                    let done = finished(attempt, AttemptOutcome::Success, t(RUNS * DAY + 1));
                    store.finish_attempt(&done).await.expect("finishing");
                }
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.expect("a worker finished");
    }
    let running = setup.running_run_pks().await.expect("reading");
    assert!(running.is_empty(), "{} runs never ended", running.len());
}

pub async fn finish_with_log_records_the_last_lines_with_the_result(store: &dyn Store) {
    let run = started_run(store, &daily_run("sales", 0, vec![task("a", &[])])).await;
    let a = claim_one(store, t(DAY)).await;
    store
        .append_log(&a.lease, "first\n", t(DAY + 1))
        .await
        .expect("appending");
    let done = finished(&a, AttemptOutcome::Success, t(DAY + 2));
    store
        .finish_attempt_with_log(&done, "last\n")
        .await
        .expect("finishing");
    let log: Vec<String> = store
        .read_log(a.lease.attempt_id, 0)
        .await
        .expect("reading")
        .into_iter()
        .map(|c| c.content)
        .collect();
    assert_eq!(log, ["first\n", "last\n"]);
    assert_eq!(
        run_state(store, run.pk).await,
        sluice_core::RunState::Success
    );
    // under a stale lease neither the lines nor the result are taken
    assert_lease_lost(
        store.finish_attempt_with_log(&done, "late\n").await,
        "a late finish",
    );
    assert_eq!(
        store
            .read_log(a.lease.attempt_id, 2)
            .await
            .expect("reading")
            .len(),
        0
    );
}
