//! Results: what an attempt's end does to its task, its downstream and its run; retries,
//! trigger rules, logs and outputs.

use sluice_core::{AttemptState, RunState};

use super::*;

pub async fn success_queues_downstream_and_wakes_workers(store: &dyn Store) {
    let run = started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![task("a", &[]), task("b", &["a"]), task("c", &["a", "b"])],
        ),
    )
    .await;
    let a = claim_one(store, t(DAY)).await;
    let mut wake = store.wakeups().subscribe();
    wake.borrow_and_update();
    let mut done = finished(&a, AttemptOutcome::Success, t(DAY + 60));
    done.outputs = BTreeMap::from([("rows".to_owned(), json!(42))]);
    let result = store.finish_attempt(&done).await.expect("finishing a");
    assert_eq!(result.task_state, TaskState::Success);
    assert_eq!(
        result.progress,
        RunProgress {
            changed: 1,
            queued: 1,
            finished: None
        }
    );
    assert!(
        wake.has_changed().expect("the store keeps its wake-ups"),
        "queueing downstream wakes idle workers"
    );
    expect_states(
        &states(store, run.pk).await,
        &[
            ("a", TaskState::Success),
            ("b", TaskState::Queued),
            ("c", TaskState::Pending),
        ],
        "after a succeeded",
    );
    let instances = store.task_instances(run.pk).await.expect("reading");
    assert_eq!(instances[0].ended_at, Some(t(DAY + 60)));
    let attempt = &store.attempts(run.pk).await.expect("reading")[0];
    assert_eq!(attempt.state, AttemptState::Success);
    assert_eq!(
        (
            attempt.ended_at,
            attempt.exit_code,
            attempt.error.as_deref()
        ),
        (Some(t(DAY + 60)), Some(0), None)
    );

    let b = claim_one(store, t(DAY + 61)).await;
    assert_eq!(b.task_id, "b");
    store
        .finish_attempt(&finished(&b, AttemptOutcome::Success, t(DAY + 90)))
        .await
        .expect("finishing b");
    let c = claim_one(store, t(DAY + 91)).await;
    let result = store
        .finish_attempt(&finished(&c, AttemptOutcome::Success, t(DAY + 120)))
        .await
        .expect("finishing c");
    assert_eq!(result.progress.finished, Some(RunState::Success));
    let ended = store
        .get_run_by_pk(run.pk)
        .await
        .expect("reading")
        .expect("the run");
    assert_eq!(
        (ended.state, ended.ended_at),
        (RunState::Success, Some(t(DAY + 120)))
    );
    assert!(store.running_run_pks().await.expect("reading").is_empty());
}

pub async fn failure_with_fixed_retry_waits_until_next_try_at(store: &dyn Store) {
    let retried = NewTaskInstance {
        retry: fixed_retries(1, Duration::from_secs(30)),
        ..task("a", &[])
    };
    let run = started_run(
        store,
        &daily_run("sales", 0, vec![retried, task("b", &["a"])]),
    )
    .await;
    let first = claim_one(store, t(DAY)).await;
    let mut wake = store.wakeups().subscribe();
    wake.borrow_and_update();
    let result = store
        .finish_attempt(&finished(&first, AttemptOutcome::Failed, t(DAY + 10)))
        .await
        .expect("failing the first try");
    assert_eq!(result.task_state, TaskState::UpForRetry);
    assert_eq!(
        result.progress,
        RunProgress::default(),
        "downstream waits for the retry"
    );
    assert!(
        wake.has_changed().expect("wake-ups"),
        "a retry wakes workers"
    );
    let instance = &store.task_instances(run.pk).await.expect("reading")[0];
    assert_eq!(instance.state, TaskState::UpForRetry);
    assert_eq!(instance.next_try_at, Some(t(DAY + 40)));
    assert_eq!(instance.ended_at, None);
    assert_eq!(run_state(store, run.pk).await, RunState::Running);

    assert!(
        store
            .claim_attempts(&claim("w", 5, t(DAY + 39)))
            .await
            .expect("claiming")
            .is_empty(),
        "not claimable before next_try_at"
    );
    let second = claim_one(store, t(DAY + 40)).await;
    assert_eq!((second.task_id.as_str(), second.try_number), ("a", 2));
    assert_ne!(second.lease, first.lease);
    let instance = &store.task_instances(run.pk).await.expect("reading")[0];
    assert_eq!(
        (instance.state, instance.next_try_at),
        (TaskState::Running, None)
    );

    let result = store
        .finish_attempt(&finished(&second, AttemptOutcome::Failed, t(DAY + 50)))
        .await
        .expect("failing the last try");
    assert_eq!(result.task_state, TaskState::Failed, "no tries left");
    assert_eq!(result.progress.finished, Some(RunState::Failed));
    expect_states(
        &states(store, run.pk).await,
        &[("a", TaskState::Failed), ("b", TaskState::UpstreamFailed)],
        "after the last try failed",
    );
}

pub async fn failure_with_exponential_retry_doubles_and_caps(store: &dyn Store) {
    let retried = NewTaskInstance {
        retry: RetryPolicy {
            retries: 3,
            delay: Duration::from_secs(10),
            backoff: Backoff::Exponential,
            max_delay: Some(Duration::from_secs(25)),
        },
        ..task("a", &[])
    };
    let run = started_run(store, &daily_run("sales", 0, vec![retried])).await;
    let mut now = t(DAY);
    // waits before tries 2, 3 and 4: 10 s, 20 s, then 40 s capped at 25 s
    for (try_number, wait) in [(1, 10), (2, 20), (3, 25)] {
        let attempt = claim_one(store, now).await;
        assert_eq!(attempt.try_number, try_number);
        now += chrono::Duration::seconds(5);
        let result = store
            .finish_attempt(&finished(&attempt, AttemptOutcome::Failed, now))
            .await
            .expect("failing");
        assert_eq!(result.task_state, TaskState::UpForRetry);
        let next = store.task_instances(run.pk).await.expect("reading")[0].next_try_at;
        assert_eq!(
            next,
            Some(now + chrono::Duration::seconds(wait)),
            "next try after try {try_number}"
        );
        now += chrono::Duration::seconds(wait);
    }
    let last = claim_one(store, now).await;
    assert_eq!(last.try_number, 4);
    let result = store
        .finish_attempt(&finished(&last, AttemptOutcome::Failed, now))
        .await
        .expect("failing");
    assert_eq!(result.task_state, TaskState::Failed);
    assert_eq!(store.attempts(run.pk).await.expect("reading").len(), 4);
}

pub async fn failure_without_retries_fails_downstream_and_run(store: &dyn Store) {
    let run = started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![
                task("a", &[]),
                task("b", &["a"]),
                task("c", &["b"]),
                task("side", &[]),
            ],
        ),
    )
    .await;
    let a = claim_one(store, t(DAY)).await;
    let result = store
        .finish_attempt(&finished(&a, AttemptOutcome::Failed, t(DAY + 5)))
        .await
        .expect("failing a");
    assert_eq!(result.task_state, TaskState::Failed);
    assert_eq!(
        result.progress,
        RunProgress {
            changed: 2,
            queued: 0,
            finished: None
        },
        "b and c are upstream_failed; side still runs"
    );
    let side = claim_one(store, t(DAY + 6)).await;
    let result = store
        .finish_attempt(&finished(&side, AttemptOutcome::Success, t(DAY + 7)))
        .await
        .expect("finishing side");
    assert_eq!(result.progress.finished, Some(RunState::Failed));
    expect_states(
        &states(store, run.pk).await,
        &[
            ("a", TaskState::Failed),
            ("b", TaskState::UpstreamFailed),
            ("c", TaskState::UpstreamFailed),
            ("side", TaskState::Success),
        ],
        "after a failed",
    );
    let attempt = &store.attempts(run.pk).await.expect("reading")[0];
    assert_eq!(attempt.state, AttemptState::Failed);
    assert_eq!(
        (attempt.exit_code, attempt.error.as_deref()),
        (Some(1), Some("exit status 1"))
    );
    let ended = store
        .get_run_by_pk(run.pk)
        .await
        .expect("reading")
        .expect("the run");
    assert_eq!(
        (ended.state, ended.ended_at),
        (RunState::Failed, Some(t(DAY + 7)))
    );
}

pub async fn all_done_cleanup_runs_after_failure_and_run_still_fails(store: &dyn Store) {
    let cleanup = NewTaskInstance {
        trigger_rule: TriggerRule::AllDone,
        ..task("cleanup", &["load"])
    };
    let run = started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![task("extract", &[]), task("load", &["extract"]), cleanup],
        ),
    )
    .await;
    let extract = claim_one(store, t(DAY)).await;
    let result = store
        .finish_attempt(&finished(&extract, AttemptOutcome::Failed, t(DAY + 5)))
        .await
        .expect("failing extract");
    assert_eq!(result.progress.queued, 1, "the clean-up is queued at once");
    expect_states(
        &states(store, run.pk).await,
        &[
            ("cleanup", TaskState::Queued),
            ("extract", TaskState::Failed),
            ("load", TaskState::UpstreamFailed),
        ],
        "after extract failed",
    );
    let cleanup = claim_one(store, t(DAY + 6)).await;
    assert_eq!(cleanup.task_id, "cleanup");
    let result = store
        .finish_attempt(&finished(&cleanup, AttemptOutcome::Success, t(DAY + 9)))
        .await
        .expect("finishing the clean-up");
    assert_eq!(result.task_state, TaskState::Success);
    assert_eq!(
        result.progress.finished,
        Some(RunState::Failed),
        "a successful clean-up does not make a failed run succeed"
    );
    assert_eq!(run_state(store, run.pk).await, RunState::Failed);
}

pub async fn skipped_branch_cascades_and_run_succeeds(store: &dyn Store) {
    let on_failure = NewTaskInstance {
        trigger_rule: TriggerRule::AllFailed,
        ..task("alert", &["load"])
    };
    let run = started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![task("load", &[]), on_failure, task("page", &["alert"])],
        ),
    )
    .await;
    let load = claim_one(store, t(DAY)).await;
    let result = store
        .finish_attempt(&finished(&load, AttemptOutcome::Success, t(DAY + 5)))
        .await
        .expect("finishing load");
    assert_eq!(
        result.progress,
        RunProgress {
            changed: 2,
            queued: 0,
            finished: Some(RunState::Success)
        }
    );
    expect_states(
        &states(store, run.pk).await,
        &[
            ("alert", TaskState::Skipped),
            ("load", TaskState::Success),
            ("page", TaskState::Skipped),
        ],
        "after load succeeded",
    );
    assert_eq!(run_state(store, run.pk).await, RunState::Success);
}

pub async fn retried_task_keeps_every_attempt_and_its_log(store: &dyn Store) {
    let retried = NewTaskInstance {
        retry: fixed_retries(1, Duration::from_secs(1)),
        ..task("a", &[])
    };
    let run = started_run(store, &daily_run("sales", 0, vec![retried])).await;
    let first = claim_one(store, t(DAY)).await;
    store
        .append_log(&first.lease, "try one: starting\n", t(DAY + 1))
        .await
        .expect("log");
    store
        .append_log(&first.lease, "try one: boom\n", t(DAY + 2))
        .await
        .expect("log");
    let mut failed = finished(&first, AttemptOutcome::Failed, t(DAY + 3));
    failed.exit_code = Some(2);
    failed.error = Some("exit status 2".to_owned());
    store.finish_attempt(&failed).await.expect("failing");
    let second = store
        .claim_attempts(&claim("worker-2", 1, t(DAY + 10)))
        .await
        .expect("claiming")
        .pop()
        .expect("the retry is claimable");
    store
        .append_log(&second.lease, "try two: fine\n", t(DAY + 11))
        .await
        .expect("log");
    store
        .finish_attempt(&finished(&second, AttemptOutcome::Success, t(DAY + 12)))
        .await
        .expect("finishing");

    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    type Try<'a> = (u32, AttemptState, &'a str, Option<i32>, Option<&'a str>);
    let seen: Vec<Try<'_>> = attempts
        .iter()
        .map(|a| {
            (
                a.try_number,
                a.state,
                a.worker_id.as_str(),
                a.exit_code,
                a.error.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                1,
                AttemptState::Failed,
                "worker-1",
                Some(2),
                Some("exit status 2")
            ),
            (2, AttemptState::Success, "worker-2", Some(0), None),
        ],
        "each try is its own attempt"
    );
    assert_eq!(attempts[0].id, first.lease.attempt_id);
    assert_eq!(attempts[1].id, second.lease.attempt_id);
    assert_eq!(
        (attempts[0].started_at, attempts[0].ended_at),
        (t(DAY), Some(t(DAY + 3)))
    );
    let log = |attempt_id| async move {
        store
            .read_log(attempt_id, 0)
            .await
            .expect("reading the log")
            .into_iter()
            .map(|c| c.content)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        log(first.lease.attempt_id).await,
        ["try one: starting\n", "try one: boom\n"]
    );
    assert_eq!(log(second.lease.attempt_id).await, ["try two: fine\n"]);
    let instance = &store.task_instances(run.pk).await.expect("reading")[0];
    assert_eq!(
        (instance.state, instance.try_number, instance.max_tries),
        (TaskState::Success, 2, 2)
    );
}

pub async fn read_log_returns_chunks_after_seq(store: &dyn Store) {
    started_run(store, &daily_run("sales", 0, vec![task("a", &[])])).await;
    let attempt = claim_one(store, t(DAY)).await;
    for (i, line) in ["one\n", "two\nthree\n", "four\n"].iter().enumerate() {
        let at = t(DAY + i64::try_from(i).expect("small"));
        store
            .append_log(&attempt.lease, line, at)
            .await
            .expect("log");
    }
    let all = store
        .read_log(attempt.lease.attempt_id, 0)
        .await
        .expect("reading");
    let seqs: Vec<i64> = all.iter().map(|c| c.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "increasing seq: {seqs:?}"
    );
    assert_eq!(all[0].created_at, t(DAY));
    let after_first = store
        .read_log(attempt.lease.attempt_id, seqs[0])
        .await
        .expect("reading");
    assert_eq!(
        after_first
            .iter()
            .map(|c| c.content.as_str())
            .collect::<Vec<_>>(),
        ["two\nthree\n", "four\n"]
    );
    assert!(
        store
            .read_log(attempt.lease.attempt_id, seqs[2])
            .await
            .expect("reading")
            .is_empty()
    );
    assert!(
        store
            .read_log(attempt.lease.attempt_id + 99, 0)
            .await
            .expect("reading")
            .is_empty()
    );
}

pub async fn run_outputs_come_from_successful_attempts(store: &dyn Store) {
    let retried = NewTaskInstance {
        retry: fixed_retries(1, Duration::from_secs(1)),
        ..task("extract", &[])
    };
    let run = started_run(
        store,
        &daily_run("sales", 0, vec![retried, task("load", &["extract"])]),
    )
    .await;
    let first = claim_one(store, t(DAY)).await;
    let mut failed = finished(&first, AttemptOutcome::Failed, t(DAY + 1));
    failed.outputs = BTreeMap::from([
        ("rows".to_owned(), json!(1)),
        ("partial".to_owned(), json!(true)),
    ]);
    store.finish_attempt(&failed).await.expect("failing");
    let second = claim_one(store, t(DAY + 5)).await;
    let mut done = finished(&second, AttemptOutcome::Success, t(DAY + 6));
    done.outputs = BTreeMap::from([
        ("rows".to_owned(), json!(1200)),
        ("path".to_owned(), json!("data/raw/2026-01-01.jsonl")),
        (
            "stats".to_owned(),
            json!({"regions": ["kr", "jp"], "nulls": null}),
        ),
    ]);
    store.finish_attempt(&done).await.expect("finishing");
    let load = claim_one(store, t(DAY + 7)).await;
    store
        .finish_attempt(&finished(&load, AttemptOutcome::Success, t(DAY + 8)))
        .await
        .expect("finishing load");

    let outputs = store.run_outputs(run.pk).await.expect("reading outputs");
    let expected = BTreeMap::from([(
        "extract".to_owned(),
        BTreeMap::from([
            ("path".to_owned(), json!("data/raw/2026-01-01.jsonl")),
            ("rows".to_owned(), json!(1200)),
            (
                "stats".to_owned(),
                json!({"regions": ["kr", "jp"], "nulls": null}),
            ),
        ]),
    )]);
    assert_eq!(
        outputs, expected,
        "only the successful attempt's outputs count"
    );
}
