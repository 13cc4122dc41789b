//! The short paths a busy cluster takes: a successful attempt's end recorded in one go, the
//! claim that stops at its limit, and the run that ends with its last attempt.

use std::collections::BTreeSet;
use std::time::Instant;

use sluice_core::RunState;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::*;

pub async fn finish_beyond_the_log_cap_keeps_the_tail(store: &dyn Store) {
    let run = started_run(store, &daily_run("sales", 0, vec![task("chatty", &[])])).await;
    let a = claim_one(store, t(DAY)).await;
    let cap = StoreOptions::default().log_cap_bytes;
    let chunk_bytes: u64 = 1024 * 1024;
    let line = |i: u64| {
        format!(
            "{i:07} {}\n",
            "x".repeat(usize::try_from(chunk_bytes).expect("small") - 9)
        )
    };
    let written = cap / chunk_bytes;
    for i in 0..written {
        store
            .append_log(&a.lease, &line(i), t(DAY + 1))
            .await
            .expect("appending");
    }
    // the last lines go with the result and overflow the cap
    let mut done = finished(&a, AttemptOutcome::Success, t(DAY + 2));
    done.outputs.insert("rows".to_owned(), json!(3));
    store
        .finish_attempt_with_log(&done, &line(written))
        .await
        .expect("finishing");
    let kept = store
        .read_log(a.lease.attempt_id, 0)
        .await
        .expect("reading");
    let kept_bytes: u64 = kept.iter().map(|c| c.content.len() as u64).sum();
    let attempt = store.attempts(run.pk).await.expect("reading").remove(0);
    assert_eq!(attempt.state, sluice_core::AttemptState::Success);
    assert_eq!(
        kept_bytes + attempt.log_dropped_bytes,
        (written + 1) * chunk_bytes,
        "every byte kept or counted"
    );
    assert!(kept_bytes <= cap, "kept {kept_bytes} bytes, cap {cap}");
    assert!(attempt.log_dropped_bytes > 0, "the head was dropped");
    let last = kept.last().expect("the newest chunk is kept");
    assert!(
        last.content.starts_with(&format!("{written:07}")),
        "the last lines, written with the result, are kept"
    );
    let outputs = store.run_outputs(run.pk).await.expect("reading outputs");
    assert_eq!(outputs["chatty"]["rows"], json!(3));
    assert_eq!(run_state(store, run.pk).await, RunState::Success);
}

pub async fn a_success_after_the_task_was_marked_is_refused_and_writes_nothing(store: &dyn Store) {
    let run = started_run(
        store,
        &daily_run("sales", 0, vec![task("a", &[]), task("b", &["a"])]),
    )
    .await;
    let a = claim_one(store, t(DAY)).await;
    store
        .mark_task_instance(&MarkTaskInstance {
            run_pk: run.pk,
            task_id: "a".to_owned(),
            map_index: None,
            state: TaskState::Failed,
            now: t(DAY + 1),
        })
        .await
        .expect("marking");
    let mut late = finished(&a, AttemptOutcome::Success, t(DAY + 2));
    late.outputs.insert("rows".to_owned(), json!(3));
    assert_lease_lost(
        store.finish_attempt_with_log(&late, "late\n").await,
        "a success after the operator marked the task",
    );
    let seen = states(store, run.pk).await;
    expect_states(
        &seen,
        &[("a", TaskState::Failed), ("b", TaskState::UpstreamFailed)],
        "after the refused success",
    );
    assert!(
        store
            .read_log(a.lease.attempt_id, 0)
            .await
            .expect("reading")
            .iter()
            .all(|chunk| !chunk.content.contains("late")),
        "the late lines were not stored"
    );
    assert!(
        store
            .run_outputs(run.pk)
            .await
            .expect("reading outputs")
            .is_empty(),
        "the late outputs were not stored"
    );
    let attempt = store.attempts(run.pk).await.expect("reading").remove(0);
    assert_eq!(attempt.state, sluice_core::AttemptState::Cancelled);
    assert_eq!(run_state(store, run.pk).await, RunState::Failed);
}

pub async fn claims_take_due_retries_and_queued_work_by_priority_across_queues(store: &dyn Store) {
    retries_and_priorities_across_queues(store, None).await;
}

/// The same through the claim that counts pool slots: every task in a pool with room for all.
pub async fn claims_within_pools_take_due_retries_and_queued_work_by_priority(store: &dyn Store) {
    store
        .set_pool(
            &PoolSlots {
                name: "roomy".to_owned(),
                slots: 10,
            },
            t(0),
        )
        .await
        .expect("setting a pool");
    retries_and_priorities_across_queues(store, Some("roomy")).await;
}

async fn retries_and_priorities_across_queues(store: &dyn Store, pool: Option<&str>) {
    let on = |task_id: &str, queue: &str, priority: i32| NewTaskInstance {
        queue: queue.to_owned(),
        priority,
        retry: fixed_retries(1, Duration::from_secs(10)),
        pool: pool.map(str::to_owned),
        ..task(task_id, &[])
    };
    started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![
                on("flaky", "spark", 1),
                on("late_retry", "default", 20),
                on("a", "default", 0),
                on("b", "spark", 5),
                on("c", "gpu", 50),
                on("d", "default", 5),
            ],
        ),
    )
    .await;
    let first = store
        .claim_attempts(&Claim {
            worker_id: "w".to_owned(),
            queues: vec!["default".to_owned(), "spark".to_owned()],
            limit: 1,
            now: t(DAY),
        })
        .await
        .expect("claiming");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].task_id, "late_retry");
    // fails at DAY + 1: its retry is due at DAY + 11, after everything else was claimed
    store
        .finish_attempt(&finished(&first[0], AttemptOutcome::Failed, t(DAY + 1)))
        .await
        .expect("failing");
    let mut flaky = store
        .claim_attempts(&Claim {
            worker_id: "w".to_owned(),
            queues: vec!["spark".to_owned()],
            limit: 1,
            now: t(DAY + 2),
        })
        .await
        .expect("claiming");
    assert_eq!(flaky.len(), 1);
    assert_eq!(flaky[0].task_id, "b", "priority first within a queue");
    store
        .finish_attempt(&finished(
            &flaky.remove(0),
            AttemptOutcome::Success,
            t(DAY + 3),
        ))
        .await
        .expect("finishing");
    let flaky = store
        .claim_attempts(&Claim {
            worker_id: "w".to_owned(),
            queues: vec!["spark".to_owned()],
            limit: 1,
            now: t(DAY + 3),
        })
        .await
        .expect("claiming")
        .remove(0);
    assert_eq!(flaky.task_id, "flaky");
    // fails at DAY + 4: due again at DAY + 14
    store
        .finish_attempt(&finished(&flaky, AttemptOutcome::Failed, t(DAY + 4)))
        .await
        .expect("failing");
    let before_due = store
        .claim_attempts(&Claim {
            worker_id: "w".to_owned(),
            queues: vec!["default".to_owned(), "spark".to_owned()],
            limit: 10,
            now: t(DAY + 5),
        })
        .await
        .expect("claiming");
    let ids: Vec<&str> = before_due.iter().map(|a| a.task_id.as_str()).collect();
    assert_eq!(
        ids,
        ["d", "a"],
        "retries not yet due wait; gpu is not asked for"
    );
    let due = store
        .claim_attempts(&Claim {
            worker_id: "w".to_owned(),
            queues: vec!["spark".to_owned(), "default".to_owned()],
            limit: 10,
            now: t(DAY + 20),
        })
        .await
        .expect("claiming");
    let tries: Vec<(&str, u32)> = due
        .iter()
        .map(|a| (a.task_id.as_str(), a.try_number))
        .collect();
    assert_eq!(
        tries,
        [("late_retry", 2), ("flaky", 2)],
        "due retries, by priority across queues"
    );
}

pub async fn a_wide_fan_out_ends_its_run_with_its_last_attempt(db: &dyn Connector) {
    const TASKS: usize = 300;
    const WORKERS: usize = 6;
    let setup = db.open().await;
    let tasks = (0..TASKS).map(|i| task(&format!("t{i:04}"), &[])).collect();
    let run = started_run(setup.as_ref(), &daily_run("wide", 0, tasks)).await;
    let barrier = Arc::new(Barrier::new(WORKERS));
    let mut workers = JoinSet::new();
    for i in 0..WORKERS {
        let store = db.open().await;
        let barrier = barrier.clone();
        workers.spawn(async move {
            let worker_id = format!("worker-{i}");
            let mut finished_here = Vec::new();
            barrier.wait().await;
            loop {
                let batch = store
                    .claim_attempts(&claim(&worker_id, 2, t(DAY)))
                    .await
                    .expect("claiming");
                if batch.is_empty() {
                    return finished_here;
                }
                for attempt in &batch {
                    let done = finished(attempt, AttemptOutcome::Success, t(DAY + 1));
                    let result = store
                        .finish_attempt_with_log(&done, "done\n")
                        .await
                        .expect("finishing");
                    finished_here.push((attempt.task_id.clone(), result.progress.finished));
                }
            }
        });
    }
    let mut seen = BTreeSet::new();
    let mut endings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(result) = workers.join_next().await {
        let finished_here = match result {
            Ok(value) => value,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("a worker did not finish: {error}"),
        };
        for (task_id, ended) in finished_here {
            assert!(seen.insert(task_id.clone()), "{task_id} finished twice");
            endings.extend(ended);
        }
        assert!(Instant::now() < deadline, "the fan-out took over a minute");
    }
    assert_eq!(seen.len(), TASKS, "every task ran");
    // no scheduler here: the run must have been ended by the finish that settled it last
    assert_eq!(
        endings,
        [RunState::Success],
        "exactly one finish ended the run"
    );
    assert_eq!(run_state(setup.as_ref(), run.pk).await, RunState::Success);
    let attempts = setup.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts.len(), TASKS, "one attempt per task");
}

/// Claims and finishes attempts on `WORKERS` handles until nothing is claimable and no run is
/// running; `outcome` says how each task's attempt ends. No scheduler: every downstream task
/// and every run's end must be decided by the finishes themselves.
async fn drain(db: &dyn Connector, workers: usize, outcome: fn(&str) -> AttemptOutcome) {
    let barrier = Arc::new(Barrier::new(workers));
    let started = Instant::now();
    let mut running = JoinSet::new();
    for i in 0..workers {
        let store = db.open().await;
        let barrier = barrier.clone();
        running.spawn(async move {
            let worker_id = format!("worker-{i}");
            barrier.wait().await;
            loop {
                let batch = store
                    .claim_attempts(&claim(&worker_id, 2, t(DAY)))
                    .await
                    .expect("claiming");
                for attempt in &batch {
                    let done = finished(attempt, outcome(&attempt.task_id), t(DAY + 1));
                    store
                        .finish_attempt_with_log(&done, "done\n")
                        .await
                        .expect("finishing");
                }
                if !batch.is_empty() {
                    continue;
                }
                let open = store.running_run_pks().await.expect("reading");
                if open.is_empty() {
                    return;
                }
                if started.elapsed() > Duration::from_secs(60) {
                    let seen = states(store.as_ref(), open[0]).await;
                    panic!(
                        "{} runs did not finish within a minute, e.g. {seen:?}",
                        open.len()
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    while let Some(result) = running.join_next().await {
        if let Err(error) = result {
            if error.is_panic() {
                std::panic::resume_unwind(error.into_panic());
            }
            panic!("a worker did not finish: {error}");
        }
    }
}

pub async fn a_join_after_a_wide_fan_out_runs_once_when_its_last_upstream_ends(db: &dyn Connector) {
    const TASKS: usize = 300;
    let setup = db.open().await;
    let mut tasks: Vec<NewTaskInstance> =
        (0..TASKS).map(|i| task(&format!("t{i:04}"), &[])).collect();
    let upstream: Vec<String> = tasks.iter().map(|t| t.task_id.clone()).collect();
    let upstream: Vec<&str> = upstream.iter().map(String::as_str).collect();
    tasks.push(task("join", &upstream));
    let run = started_run(setup.as_ref(), &daily_run("wide", 0, tasks)).await;
    drain(db, 6, |_| AttemptOutcome::Success).await;
    assert_eq!(run_state(setup.as_ref(), run.pk).await, RunState::Success);
    let attempts = setup.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts.len(), TASKS + 1, "one attempt per task");
    assert_eq!(
        attempts.iter().filter(|a| a.task_id == "join").count(),
        1,
        "the join ran once"
    );
}

pub async fn a_failure_and_a_success_ending_together_decide_every_all_done_join(
    db: &dyn Connector,
) {
    const RUNS: i64 = 30;
    // `left` fails (no retries) and `right` succeeds side by side in every run: whichever
    // commits last must see the other's end and queue `join`
    let setup = db.open().await;
    for day in 0..RUNS {
        let tasks = vec![
            task("left", &[]),
            task("right", &[]),
            NewTaskInstance {
                trigger_rule: TriggerRule::AllDone,
                ..task("join", &["left", "right"])
            },
        ];
        setup
            .create_run_if_absent(&daily_run("sales", day, tasks))
            .await
            .expect("creating")
            .expect("new run");
    }
    setup
        .start_queued_runs("sales", u32::try_from(RUNS).expect("small"), t(RUNS * DAY))
        .await
        .expect("starting");
    drain(db, 6, |task_id| {
        if task_id == "left" {
            AttemptOutcome::Failed
        } else {
            AttemptOutcome::Success
        }
    })
    .await;
    let runs = setup
        .list_runs(&RunFilter {
            dag_id: Some("sales".to_owned()),
            state: None,
            limit: 1000,
        })
        .await
        .expect("listing");
    assert_eq!(runs.len(), 30);
    for run in runs {
        assert_eq!(run.state, RunState::Failed, "left failed");
        let seen = states(setup.as_ref(), run.pk).await;
        assert_eq!(
            seen["join"],
            TaskState::Success,
            "the all_done join ran: {seen:?}"
        );
    }
}
