//! Claims and leases: who gets which task instance, and whose writes count.

use sluice_core::AttemptState;

use super::*;

pub async fn claims_follow_priority_then_age(store: &dyn Store) {
    let prioritized = |task_id: &str, priority: i32| NewTaskInstance {
        priority,
        ..task(task_id, &[])
    };
    started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![
                prioritized("low", 0),
                prioritized("high", 10),
                prioritized("mid", 5),
            ],
        ),
    )
    .await;
    started_run(
        store,
        &daily_run(
            "sales",
            1,
            vec![prioritized("high_later", 10), prioritized("lowest", -1)],
        ),
    )
    .await;
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(claim_one(store, t(2 * DAY)).await.task_id);
    }
    assert_eq!(order, ["high", "high_later", "mid", "low", "lowest"]);
    assert!(
        store
            .claim_attempts(&claim("w", 5, t(2 * DAY)))
            .await
            .expect("claiming")
            .is_empty()
    );
}

pub async fn claims_only_from_requested_queues(store: &dyn Store) {
    let on = |task_id: &str, queue: &str| NewTaskInstance {
        queue: queue.to_owned(),
        ..task(task_id, &[])
    };
    started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![on("a", "default"), on("b", "spark"), on("c", "gpu")],
        ),
    )
    .await;
    // a queued run's tasks are not claimable: they are not queued yet
    store
        .create_run_if_absent(&daily_run("sales", 1, vec![on("d", "spark")]))
        .await
        .expect("creating");
    let on_queues = |queues: &[&str], limit: u32| Claim {
        worker_id: "w".to_owned(),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        limit,
        now: t(DAY),
    };
    let none = store
        .claim_attempts(&on_queues(&["other"], 10))
        .await
        .expect("claiming");
    assert!(none.is_empty());
    let zero = store
        .claim_attempts(&on_queues(&["spark"], 0))
        .await
        .expect("claiming");
    assert!(zero.is_empty(), "a limit of zero claims nothing");
    let mut got: Vec<String> = store
        .claim_attempts(&on_queues(&["spark", "gpu"], 10))
        .await
        .expect("claiming")
        .into_iter()
        .map(|c| c.task_id)
        .collect();
    got.sort();
    assert_eq!(got, ["b", "c"]);
    let rest = store
        .claim_attempts(&on_queues(&["default", "spark"], 10))
        .await
        .expect("claiming");
    assert_eq!(
        rest.iter().map(|c| c.task_id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
}

pub async fn claim_carries_the_run_context(store: &dyn Store) {
    let timed = NewTaskInstance {
        timeout: Some(Duration::from_secs(600)),
        retry: RetryPolicy {
            retries: 2,
            ..task("a", &[]).retry
        },
        ..task("a", &[])
    };
    let run_spec = daily_run("sales", 0, vec![timed]);
    let run = started_run(store, &run_spec).await;
    let claimed = claim_one(store, t(DAY)).await;
    assert_eq!(claimed.run_pk, run.pk);
    assert_eq!(claimed.run_id, run_spec.run_id);
    assert_eq!(claimed.dag_id, "sales");
    assert_eq!(claimed.dag_hash, "sales-hash-1");
    assert_eq!(
        (claimed.task_id.as_str(), claimed.map_index),
        ("a", UNMAPPED)
    );
    assert_eq!((claimed.try_number, claimed.max_tries), (1, 3));
    assert_eq!(claimed.timeout, Some(Duration::from_secs(600)));
    assert_eq!(claimed.logical_date, run_spec.logical_date);
    assert_eq!(claimed.data_interval, run_spec.data_interval);
    assert_eq!(claimed.params, run_spec.params);
    assert!(!claimed.lease.token.is_empty());

    let instance = &store.task_instances(run.pk).await.expect("reading")[0];
    assert_eq!(instance.id, claimed.ti_id);
    assert_eq!(
        (instance.state, instance.try_number),
        (TaskState::Running, 1)
    );
    assert_eq!(instance.started_at, Some(t(DAY)));
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert_eq!(attempt.id, claimed.lease.attempt_id);
    assert_eq!((attempt.ti_id, attempt.try_number), (claimed.ti_id, 1));
    assert_eq!(attempt.state, AttemptState::Running);
    assert_eq!(attempt.worker_id, "worker-1");
    assert_eq!((attempt.started_at, attempt.heartbeat_at), (t(DAY), t(DAY)));

    store
        .heartbeat_attempt(&claimed.lease, t(DAY + 30))
        .await
        .expect("heartbeat");
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts[0].heartbeat_at, t(DAY + 30));
}

pub async fn stale_lease_is_refused(store: &dyn Store) {
    started_run(store, &daily_run("sales", 0, vec![task("a", &[])])).await;
    let claimed = claim_one(store, t(DAY)).await;
    let forged = Lease {
        attempt_id: claimed.lease.attempt_id,
        token: "not-the-token".to_owned(),
    };
    let unknown = Lease {
        attempt_id: claimed.lease.attempt_id + 1000,
        token: claimed.lease.token.clone(),
    };
    for lease in [&forged, &unknown] {
        assert_lease_lost(
            store.heartbeat_attempt(lease, t(DAY + 1)).await,
            "heartbeat",
        );
        assert_lease_lost(store.append_log(lease, "line\n", t(DAY + 1)).await, "log");
        let finish = FinishAttempt {
            lease: lease.clone(),
            ..finished(&claimed, AttemptOutcome::Success, t(DAY + 1))
        };
        assert_lease_lost(store.finish_attempt(&finish).await, "finish");
    }
    store
        .finish_attempt(&finished(&claimed, AttemptOutcome::Success, t(DAY + 2)))
        .await
        .expect("finishing under the real lease");
    // once finished, the lease is spent
    assert_lease_lost(
        store.heartbeat_attempt(&claimed.lease, t(DAY + 3)).await,
        "heartbeat",
    );
    assert_lease_lost(
        store.append_log(&claimed.lease, "late\n", t(DAY + 3)).await,
        "log",
    );
    assert_lease_lost(
        store
            .finish_attempt(&finished(&claimed, AttemptOutcome::Failed, t(DAY + 3)))
            .await,
        "second finish",
    );
    assert!(
        store
            .read_log(claimed.lease.attempt_id, 0)
            .await
            .expect("reading")
            .is_empty()
    );
}
