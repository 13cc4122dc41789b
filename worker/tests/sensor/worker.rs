//! Sensors run by a real worker: the `task` condition, `mode: reschedule` freeing the slot,
//! timeouts counted from the first poke, and cancel in either mode.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sluice_core::{AttemptState, RunState, TaskState};
use sluice_store::{AttemptRecord, Store, TaskInstanceRecord};

use crate::support::{Backend, eventually, fixture, log, on_both_stores, start_run};

on_both_stores!(
    task_condition_waits_for_another_dags_task_at_the_offset_date,
    reschedule_frees_the_slot_for_other_work_then_succeeds,
    reschedule_times_out_counting_from_the_first_poke,
    cancelling_the_run_stops_a_sensor_in_either_mode,
);

fn day(n: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, n, 0, 0, 0).unwrap()
}

async fn instance(store: &dyn Store, run_pk: i64, task_id: &str) -> TaskInstanceRecord {
    store
        .task_instances(run_pk)
        .await
        .unwrap()
        .into_iter()
        .find(|ti| ti.task_id == task_id)
        .unwrap_or_else(|| panic!("no task instance `{task_id}`"))
}

async fn attempts_of(store: &dyn Store, run_pk: i64, task_id: &str) -> Vec<AttemptRecord> {
    store
        .attempts(run_pk)
        .await
        .unwrap()
        .into_iter()
        .filter(|attempt| attempt.task_id == task_id)
        .collect()
}

/// Waits until the task instance is in one of `states`.
async fn reaches(store: &dyn Store, run_pk: i64, task_id: &str, states: &[TaskState]) {
    eventually(
        &format!("task `{task_id}` in {states:?}"),
        Duration::from_secs(20),
        || async {
            let ti = instance(store, run_pk, task_id).await;
            if states.contains(&ti.state) {
                Ok(())
            } else {
                Err(format!("{:?}", ti.state))
            }
        },
    )
    .await
}

const UPSTREAM: &str = "dag: upstream\ntasks:\n  extract:\n    type: noop\n";

async fn task_condition_waits_for_another_dags_task_at_the_offset_date(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let running = f.spawn(f.worker(4));
    let yesterday = start_run(f.store.as_ref(), UPSTREAM, day(1)).await;
    reaches(
        f.store.as_ref(),
        yesterday.pk,
        "extract",
        &[TaskState::Success],
    )
    .await;

    let report = "dag: report\ntasks:\n  \
        after_yesterday:\n    type: sensor\n    task: {dag: upstream, task: extract, offset: -1d}\n    poke_interval: 100ms\n    timeout: 20s\n  \
        after_today:\n    type: sensor\n    task: {dag: upstream, task: extract}\n    poke_interval: 100ms\n    timeout: 20s\n  \
        after_two_days_ago:\n    type: sensor\n    task: {dag: upstream, task: extract, offset: -2d}\n    poke_interval: 100ms\n    timeout: 300ms\n";
    let run = start_run(f.store.as_ref(), report, day(2)).await;
    reaches(
        f.store.as_ref(),
        run.pk,
        "after_yesterday",
        &[TaskState::Success],
    )
    .await;
    reaches(
        f.store.as_ref(),
        run.pk,
        "after_two_days_ago",
        &[TaskState::Failed],
    )
    .await;
    let failed = attempts_of(f.store.as_ref(), run.pk, "after_two_days_ago").await;
    assert_eq!(
        failed[0].error.as_deref(),
        Some(
            "condition task `upstream.extract` for 2025-12-31T00:00:00Z still false after 300ms; \
             last check: DAG `upstream` has no run for 2025-12-31T00:00:00Z"
        )
    );
    // today's upstream run does not exist yet: the sensor keeps poking until it succeeds
    let waiting = instance(f.store.as_ref(), run.pk, "after_today").await;
    assert_eq!(waiting.state, TaskState::Running);
    let today = start_run(f.store.as_ref(), UPSTREAM, day(2)).await;
    reaches(f.store.as_ref(), today.pk, "extract", &[TaskState::Success]).await;
    reaches(
        f.store.as_ref(),
        run.pk,
        "after_today",
        &[TaskState::Success],
    )
    .await;
    let attempt = &attempts_of(f.store.as_ref(), run.pk, "after_today").await[0];
    let text = log(f.store.as_ref(), attempt.id).await;
    assert!(
        text.contains("not yet (DAG `upstream` has no run for 2026-01-02T00:00:00Z)"),
        "{text}"
    );
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(outputs["after_today"]["run_id"], today.run_id.as_str());
    running.stop().await;
}

async fn reschedule_frees_the_slot_for_other_work_then_succeeds(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: gated\ntasks:\n  \
        a_wait:\n    type: sensor\n    file: ready.flag\n    mode: reschedule\n    poke_interval: 100ms\n    timeout: 30s\n  \
        b_work:\n    type: shell\n    command: echo working\n";
    let run = start_run(f.store.as_ref(), yaml, day(2)).await;
    // one slot: `b_work` can only run while the sensor has handed its slot back
    let running = f.spawn(f.worker(1));
    reaches(f.store.as_ref(), run.pk, "b_work", &[TaskState::Success]).await;
    let sensor = instance(f.store.as_ref(), run.pk, "a_wait").await;
    assert!(
        matches!(
            sensor.state,
            TaskState::UpForReschedule | TaskState::Running
        ),
        "the sensor still waits: {:?}",
        sensor.state
    );
    let work = &attempts_of(f.store.as_ref(), run.pk, "b_work").await[0];
    let waits = &attempts_of(f.store.as_ref(), run.pk, "a_wait").await[0];
    assert!(
        waits.started_at < work.started_at,
        "the sensor was claimed first"
    );

    std::fs::write(f.dir.path().join("ready.flag"), "").unwrap();
    reaches(f.store.as_ref(), run.pk, "a_wait", &[TaskState::Success]).await;
    let attempts = attempts_of(f.store.as_ref(), run.pk, "a_wait").await;
    assert_eq!(
        attempts.len(),
        1,
        "every poke continues one attempt: {attempts:?}"
    );
    assert_eq!(attempts[0].state, AttemptState::Success);
    assert_eq!(attempts[0].try_number, 1);
    let sensor = instance(f.store.as_ref(), run.pk, "a_wait").await;
    assert_eq!((sensor.try_number, sensor.max_tries), (1, 1));
    let text = log(f.store.as_ref(), attempts[0].id).await;
    assert!(
        text.contains("condition not met, next poke at")
            && text.contains("(the worker slot is freed until then)"),
        "{text}"
    );
    assert!(
        text.contains("[sensor] poke: file `ready.flag` holds"),
        "{text}"
    );
    eventually("the run succeeds", Duration::from_secs(10), || async {
        match f.store.get_run_by_pk(run.pk).await.unwrap().unwrap().state {
            RunState::Success => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    running.stop().await;
}

async fn reschedule_times_out_counting_from_the_first_poke(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: gated\ntasks:\n  wait:\n    type: sensor\n    file: never.flag\n    mode: reschedule\n    poke_interval: 100ms\n    timeout: 400ms\n    retries: 1\n    retry_delay: 1h\n";
    let run = start_run(f.store.as_ref(), yaml, day(2)).await;
    let running = f.spawn(f.worker(1));
    reaches(f.store.as_ref(), run.pk, "wait", &[TaskState::UpForRetry]).await;
    running.stop().await;
    let attempts = attempts_of(f.store.as_ref(), run.pk, "wait").await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let attempt = &attempts[0];
    assert_eq!(attempt.state, AttemptState::Failed);
    assert_eq!(
        attempt.error.as_deref(),
        Some(&*format!(
            "condition file `never.flag` still false after 400ms; last check: no file matches {}",
            f.dir.path().join("never.flag").display()
        ))
    );
    let waited = attempt.ended_at.unwrap() - attempt.started_at;
    assert!(
        waited >= chrono::Duration::milliseconds(400),
        "the timeout counts from the first poke: {waited}"
    );
    let text = log(f.store.as_ref(), attempt.id).await;
    assert!(
        text.matches("condition not met, next poke at").count() >= 2,
        "{text}"
    );
    let announced: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("[sensor] waiting for file `never.flag`"))
        .collect();
    assert!(
        announced.len() >= 2 && announced.iter().all(|line| *line == announced[0]),
        "every poke names the same first poke and deadline: {announced:?}"
    );
    let ti = instance(f.store.as_ref(), run.pk, "wait").await;
    assert_eq!(
        ti.try_number, 1,
        "the pokes used one try; the retry is left"
    );
}

async fn cancelling_the_run_stops_a_sensor_in_either_mode(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    let yaml = "dag: gated\ntasks:\n  \
        poking:\n    type: sensor\n    file: never.flag\n    poke_interval: 100ms\n  \
        waiting:\n    type: sensor\n    file: never.flag\n    mode: reschedule\n    poke_interval: 300ms\n";
    let run = start_run(f.store.as_ref(), yaml, day(2)).await;
    let running = f.spawn(f.worker(2));
    reaches(
        f.store.as_ref(),
        run.pk,
        "waiting",
        &[TaskState::UpForReschedule],
    )
    .await;
    reaches(f.store.as_ref(), run.pk, "poking", &[TaskState::Running]).await;
    assert!(f.store.cancel_run(run.pk, Utc::now()).await.unwrap());
    for task in ["poking", "waiting"] {
        reaches(f.store.as_ref(), run.pk, task, &[TaskState::Cancelled]).await;
        let attempts = attempts_of(f.store.as_ref(), run.pk, task).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].state, AttemptState::Cancelled, "{task}");
    }
    // both slots are free again: another run's two tasks run at once
    let other = "dag: other\ntasks:\n  one:\n    type: noop\n  two:\n    type: noop\n";
    let next = start_run(f.store.as_ref(), other, day(2)).await;
    reaches(f.store.as_ref(), next.pk, "one", &[TaskState::Success]).await;
    reaches(f.store.as_ref(), next.pk, "two", &[TaskState::Success]).await;
    running.stop().await;
    // the stopped poke wrote nothing after the cancel
    let attempt = &attempts_of(f.store.as_ref(), run.pk, "poking").await[0];
    let text = log(f.store.as_ref(), attempt.id).await;
    assert!(!text.contains("holds"), "{text}");
}
