//! Sensors in `mode: reschedule`: a poke that frees the slot, and the same try claimed again.

use sluice_core::AttemptState;

use super::*;

fn rescheduled(attempt: &ClaimedAttempt, next_poke_at: DateTime<Utc>) -> RescheduleAttempt {
    RescheduleAttempt {
        lease: attempt.lease.clone(),
        next_poke_at,
        now: next_poke_at - chrono::Duration::seconds(60),
    }
}

pub async fn a_rescheduled_attempt_is_claimed_again_in_the_same_try_after_its_poke_time(
    store: &dyn Store,
) {
    let run = started_run(store, &daily_run("sales", 0, vec![task("wait", &[])])).await;
    let first = claim_one(store, t(DAY)).await;
    assert_eq!(first.started_at, t(DAY));
    store
        .reschedule_attempt(&rescheduled(&first, t(DAY + 60)))
        .await
        .expect("rescheduling");

    let instance = &store.task_instances(run.pk).await.expect("reading")[0];
    assert_eq!(instance.state, TaskState::UpForReschedule);
    assert_eq!(instance.next_try_at, Some(t(DAY + 60)));
    assert_eq!(instance.try_number, 1, "a poke does not use up a try");
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, AttemptState::UpForReschedule);
    assert_eq!(attempts[0].ended_at, None);
    assert_lease_lost(
        store.heartbeat_attempt(&first.lease, t(DAY + 1)).await,
        "heartbeat after rescheduling",
    );
    assert_lease_lost(
        store
            .reschedule_attempt(&rescheduled(&first, t(DAY + 120)))
            .await,
        "rescheduling twice",
    );

    let early = store
        .claim_attempts(&claim("worker-2", 4, t(DAY + 59)))
        .await
        .expect("claiming before the poke time");
    assert!(early.is_empty(), "claimed before its poke time: {early:?}");
    let again = claim_one(store, t(DAY + 60)).await;
    assert_eq!(
        again.lease.attempt_id, first.lease.attempt_id,
        "the same attempt"
    );
    assert_ne!(again.lease.token, first.lease.token, "under a new lease");
    assert_eq!(again.try_number, 1);
    assert_eq!(
        again.started_at,
        t(DAY),
        "the try started at its first poke"
    );
    assert_lease_lost(
        store.heartbeat_attempt(&first.lease, t(DAY + 61)).await,
        "heartbeat under the first poke's lease",
    );
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].state, AttemptState::Running);
    assert_eq!(attempts[0].worker_id, "worker-1");
    assert_eq!(attempts[0].started_at, t(DAY));

    store
        .finish_attempt(&finished(&again, AttemptOutcome::Success, t(DAY + 62)))
        .await
        .expect("finishing");
    expect_states(
        &states(store, run.pk).await,
        &[("wait", TaskState::Success)],
        "after the condition held",
    );
    assert_eq!(
        run_state(store, run.pk).await,
        sluice_core::RunState::Success
    );
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(
        attempts.len(),
        1,
        "one attempt for the whole try: {attempts:?}"
    );
    assert_eq!(attempts[0].state, AttemptState::Success);
}

pub async fn a_rescheduled_attempt_frees_its_pool_slot(store: &dyn Store) {
    store
        .set_pool(
            &PoolSlots {
                name: "one".to_owned(),
                slots: 1,
            },
            t(0),
        )
        .await
        .expect("setting a pool");
    let pooled = |task_id: &str| NewTaskInstance {
        pool: Some("one".to_owned()),
        ..task(task_id, &[])
    };
    started_run(
        store,
        &daily_run("sales", 0, vec![pooled("a_wait"), pooled("b_work")]),
    )
    .await;
    let sensor = claim_one(store, t(DAY)).await;
    assert_eq!(sensor.task_id, "a_wait");
    let full = store
        .claim_attempts(&claim("worker-1", 4, t(DAY + 1)))
        .await
        .expect("claiming");
    assert!(full.is_empty(), "the pool's one slot is taken: {full:?}");
    store
        .reschedule_attempt(&rescheduled(&sensor, t(DAY + 600)))
        .await
        .expect("rescheduling");
    let other = claim_one(store, t(DAY + 2)).await;
    assert_eq!(other.task_id, "b_work", "the freed slot runs other work");
}

pub async fn a_rescheduled_try_keeps_its_retries(store: &dyn Store) {
    let run = started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![NewTaskInstance {
                retry: fixed_retries(1, Duration::from_secs(30)),
                ..task("wait", &[])
            }],
        ),
    )
    .await;
    let mut attempt = claim_one(store, t(DAY)).await;
    for poke in 1..=3 {
        store
            .reschedule_attempt(&rescheduled(&attempt, t(DAY + poke * 60)))
            .await
            .expect("rescheduling");
        attempt = claim_one(store, t(DAY + poke * 60)).await;
        assert_eq!(attempt.try_number, 1, "poke {poke}");
        assert_eq!(attempt.max_tries, 2, "poke {poke}");
    }
    let failed = store
        .finish_attempt(&finished(&attempt, AttemptOutcome::Failed, t(DAY + 200)))
        .await
        .expect("failing");
    assert_eq!(failed.task_state, TaskState::UpForRetry, "one retry left");
    let retry = claim_one(store, t(DAY + 230)).await;
    assert_eq!(retry.try_number, 2);
    assert_ne!(retry.lease.attempt_id, attempt.lease.attempt_id);
    assert_eq!(retry.started_at, t(DAY + 230), "a new try starts anew");
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts.len(), 2, "one attempt per try: {attempts:?}");
}

pub async fn cancelling_a_run_cancels_a_rescheduled_attempt(store: &dyn Store) {
    let run = started_run(store, &daily_run("sales", 0, vec![task("wait", &[])])).await;
    let attempt = claim_one(store, t(DAY)).await;
    store
        .reschedule_attempt(&rescheduled(&attempt, t(DAY + 60)))
        .await
        .expect("rescheduling");
    assert!(
        store
            .cancel_run(run.pk, t(DAY + 10))
            .await
            .expect("cancelling")
    );
    expect_states(
        &states(store, run.pk).await,
        &[("wait", TaskState::Cancelled)],
        "after cancelling",
    );
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts[0].state, AttemptState::Cancelled);
    assert_eq!(attempts[0].ended_at, Some(t(DAY + 10)));
    let late = store
        .claim_attempts(&claim("worker-1", 4, t(DAY + 60)))
        .await
        .expect("claiming");
    assert!(late.is_empty(), "a cancelled sensor was claimed: {late:?}");
}

pub async fn marking_a_rescheduled_sensor_ends_its_waiting_attempt(store: &dyn Store) {
    let run = started_run(store, &daily_run("sales", 0, vec![task("wait", &[])])).await;
    let attempt = claim_one(store, t(DAY)).await;
    store
        .reschedule_attempt(&rescheduled(&attempt, t(DAY + 60)))
        .await
        .expect("rescheduling");
    store
        .mark_task_instance(&MarkTaskInstance {
            run_pk: run.pk,
            task_id: "wait".to_owned(),
            map_index: None,
            state: TaskState::Success,
            now: t(DAY + 10),
        })
        .await
        .expect("marking");
    expect_states(
        &states(store, run.pk).await,
        &[("wait", TaskState::Success)],
        "after marking",
    );
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts[0].state, AttemptState::Cancelled);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("marked success by an operator")
    );
    assert_eq!(
        run_state(store, run.pk).await,
        sluice_core::RunState::Success
    );
    let late = store
        .claim_attempts(&claim("worker-1", 4, t(DAY + 60)))
        .await
        .expect("claiming");
    assert!(late.is_empty(), "a marked sensor was claimed: {late:?}");
}
