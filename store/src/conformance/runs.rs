//! Runs: creation, start within `max_active_runs`, cancellation and the read models.

use sluice_core::{AttemptState, RunState};

use super::*;

pub async fn create_run_if_absent_is_idempotent(store: &dyn Store) {
    let mut fan = task("fan", &["extract"]);
    fan.map_index = 0;
    let mut fan_1 = task("fan", &["extract"]);
    fan_1.map_index = 1;
    let run = daily_run(
        "sales",
        0,
        vec![task("extract", &[]), fan, fan_1, task("load", &["fan"])],
    );
    let created = store
        .create_run_if_absent(&run)
        .await
        .expect("creating")
        .expect("the first creation creates");
    assert_eq!(created.dag_id, "sales");
    assert_eq!(created.run_id, run.run_id);
    assert_eq!(created.run_type, RunType::Scheduled);
    assert_eq!(created.state, RunState::Queued);
    assert_eq!(created.logical_date, run.logical_date);
    assert_eq!(created.data_interval, run.data_interval);
    assert_eq!(created.dag_hash, "sales-hash-1");
    assert_eq!(created.params, run.params);
    assert_eq!(created.triggered_by, "scheduler");
    assert_eq!(created.queued_at, run.now);
    assert_eq!((created.started_at, created.ended_at), (None, None));

    let instances = store.task_instances(created.pk).await.expect("reading");
    let seen: Vec<(&str, i32, TaskState, u32, u32)> = instances
        .iter()
        .map(|ti| {
            (
                ti.task_id.as_str(),
                ti.map_index,
                ti.state,
                ti.try_number,
                ti.max_tries,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("extract", UNMAPPED, TaskState::Pending, 0, 1),
            ("fan", 0, TaskState::Pending, 0, 1),
            ("fan", 1, TaskState::Pending, 0, 1),
            ("load", UNMAPPED, TaskState::Pending, 0, 1),
        ],
        "one pending instance per task and map index, in the file's order"
    );

    let same_date = NewRun {
        run_id: "manual__other".to_owned(),
        ..run.clone()
    };
    assert!(
        store
            .create_run_if_absent(&same_date)
            .await
            .expect("creating")
            .is_none(),
        "a second run for the same logical date"
    );
    let same_id = NewRun {
        logical_date: run.logical_date + chrono::Duration::hours(1),
        ..run.clone()
    };
    assert!(
        store
            .create_run_if_absent(&same_id)
            .await
            .expect("creating")
            .is_none(),
        "a second run with the same run id"
    );
    let other_dag = NewRun {
        dag_id: "ads".to_owned(),
        ..run.clone()
    };
    assert!(
        store
            .create_run_if_absent(&other_dag)
            .await
            .expect("creating")
            .is_some(),
        "the same date and run id in another DAG is another run"
    );
    assert_eq!(
        store
            .task_instances(created.pk)
            .await
            .expect("reading")
            .len(),
        4
    );
    let fetched = store
        .get_run("sales", &run.run_id)
        .await
        .expect("reading")
        .expect("the run by its id");
    assert_eq!(fetched.pk, created.pk);
    assert!(
        store
            .get_run("sales", "nope")
            .await
            .expect("reading")
            .is_none()
    );
    assert!(
        store
            .get_run_by_pk(created.pk + 1000)
            .await
            .expect("reading")
            .is_none()
    );
}

pub async fn last_scheduled_interval_end_ignores_manual_runs(store: &dyn Store) {
    assert_eq!(
        store
            .last_scheduled_interval_end("sales")
            .await
            .expect("reading"),
        None
    );
    for day in [0, 2, 1] {
        store
            .create_run_if_absent(&daily_run("sales", day, vec![task("a", &[])]))
            .await
            .expect("creating");
    }
    let mut backfill = daily_run("sales", 5, vec![task("a", &[])]);
    backfill.run_type = RunType::Backfill;
    backfill.run_id = "backfill__5".to_owned();
    store
        .create_run_if_absent(&backfill)
        .await
        .expect("creating");
    let mut manual = daily_run("sales", 9, vec![task("a", &[])]);
    manual.run_type = RunType::Manual;
    manual.run_id = "manual__9".to_owned();
    store.create_run_if_absent(&manual).await.expect("creating");
    store
        .create_run_if_absent(&daily_run("ads", 20, vec![task("a", &[])]))
        .await
        .expect("creating");
    assert_eq!(
        store
            .last_scheduled_interval_end("sales")
            .await
            .expect("reading"),
        Some(t(6 * DAY)),
        "the schedule continues after the latest scheduled or backfill interval"
    );
}

pub async fn start_queued_runs_respects_max_active_runs_and_queues_roots_only(store: &dyn Store) {
    let tasks = || {
        vec![
            task("extract", &[]),
            task("transform", &["extract"]),
            task("report", &[]),
        ]
    };
    let mut pks = Vec::new();
    for day in [2, 0, 1] {
        let run = store
            .create_run_if_absent(&daily_run("sales", day, tasks()))
            .await
            .expect("creating")
            .expect("new run");
        pks.push((day, run.pk));
    }
    pks.sort();
    let mut wake = store.wakeups().subscribe();
    wake.borrow_and_update();

    let started = store
        .start_queued_runs("sales", 2, t(3 * DAY))
        .await
        .expect("starting");
    let days: Vec<DateTime<Utc>> = started.iter().map(|r| r.logical_date).collect();
    assert_eq!(days, [t(0), t(DAY)], "the oldest queued runs start first");
    assert!(started.iter().all(|r| r.state == RunState::Running));
    assert!(started.iter().all(|r| r.started_at == Some(t(3 * DAY))));
    assert!(
        wake.has_changed().expect("the store keeps its wake-ups"),
        "queueing roots wakes idle workers"
    );
    for (_, pk) in &pks[..2] {
        expect_states(
            &states(store, *pk).await,
            &[
                ("extract", TaskState::Queued),
                ("report", TaskState::Queued),
                ("transform", TaskState::Pending),
            ],
            "after the run started",
        );
    }
    expect_states(
        &states(store, pks[2].1).await,
        &[
            ("extract", TaskState::Pending),
            ("report", TaskState::Pending),
            ("transform", TaskState::Pending),
        ],
        "of the run still queued",
    );
    assert!(
        store
            .start_queued_runs("sales", 2, t(3 * DAY))
            .await
            .expect("starting")
            .is_empty(),
        "no room while two runs are running"
    );
    assert_eq!(run_state(store, pks[2].1).await, RunState::Queued);

    assert!(
        store
            .cancel_run(pks[0].1, t(3 * DAY + 10))
            .await
            .expect("cancelling")
    );
    let next = store
        .start_queued_runs("sales", 2, t(3 * DAY + 20))
        .await
        .expect("starting");
    assert_eq!(next.iter().map(|r| r.pk).collect::<Vec<_>>(), [pks[2].1]);
    assert!(
        store
            .start_queued_runs("ads", 2, t(3 * DAY))
            .await
            .expect("starting")
            .is_empty()
    );
}

pub async fn run_without_tasks_succeeds_when_started(store: &dyn Store) {
    let created = store
        .create_run_if_absent(&daily_run("empty", 0, vec![]))
        .await
        .expect("creating")
        .expect("new run");
    let started = store
        .start_queued_runs("empty", 1, t(DAY))
        .await
        .expect("starting");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].state, RunState::Success, "nothing to do is done");
    assert_eq!(started[0].ended_at, Some(t(DAY)));
    assert_eq!(run_state(store, created.pk).await, RunState::Success);
}

pub async fn evaluate_run_changes_nothing_when_nothing_happened(store: &dyn Store) {
    let run = started_run(
        store,
        &daily_run("sales", 0, vec![task("a", &[]), task("b", &["a"])]),
    )
    .await;
    let queued_run = store
        .create_run_if_absent(&daily_run("sales", 1, vec![task("a", &[])]))
        .await
        .expect("creating")
        .expect("new run");
    assert_eq!(store.running_run_pks().await.expect("reading"), [run.pk]);
    let progress = store
        .evaluate_run(run.pk, t(DAY))
        .await
        .expect("evaluating");
    assert_eq!(progress, RunProgress::default());
    let progress = store
        .evaluate_run(queued_run.pk, t(DAY))
        .await
        .expect("evaluating");
    assert_eq!(
        progress,
        RunProgress::default(),
        "a queued run is not evaluated"
    );
    expect_states(
        &states(store, queued_run.pk).await,
        &[("a", TaskState::Pending)],
        "of a queued run",
    );
}

pub async fn cancel_run_cancels_unfinished_work_and_leases(store: &dyn Store) {
    let run = started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![task("a", &[]), task("b", &[]), task("c", &["a"])],
        ),
    )
    .await;
    let running = claim_one(store, t(DAY)).await;
    assert_eq!(running.task_id, "a");
    let done = claim_one(store, t(DAY)).await;
    store
        .finish_attempt(&finished(&done, AttemptOutcome::Success, t(DAY + 5)))
        .await
        .expect("finishing b");

    assert!(
        store
            .cancel_run(run.pk, t(DAY + 10))
            .await
            .expect("cancelling")
    );
    let cancelled = store
        .get_run_by_pk(run.pk)
        .await
        .expect("reading")
        .expect("the run");
    assert_eq!(cancelled.state, RunState::Cancelled);
    assert_eq!(cancelled.ended_at, Some(t(DAY + 10)));
    expect_states(
        &states(store, run.pk).await,
        &[
            ("a", TaskState::Cancelled),
            ("b", TaskState::Success),
            ("c", TaskState::Cancelled),
        ],
        "after the cancel",
    );
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    let a = attempts
        .iter()
        .find(|a| a.task_id == "a")
        .expect("a's attempt");
    assert_eq!(a.state, AttemptState::Cancelled);
    assert_eq!(a.ended_at, Some(t(DAY + 10)));
    assert!(a.error.is_some(), "a cancelled attempt says why");
    assert_lease_lost(
        store.heartbeat_attempt(&running.lease, t(DAY + 11)).await,
        "heartbeat",
    );
    assert_lease_lost(
        store
            .finish_attempt(&finished(&running, AttemptOutcome::Success, t(DAY + 12)))
            .await,
        "finish",
    );
    assert!(
        store
            .claim_attempts(&claim("w", 10, t(2 * DAY)))
            .await
            .expect("claiming")
            .is_empty(),
        "nothing of a cancelled run is claimable"
    );
    assert!(
        !store
            .cancel_run(run.pk, t(DAY + 20))
            .await
            .expect("cancelling again"),
        "a finished run is not cancelled again"
    );
    assert!(store.running_run_pks().await.expect("reading").is_empty());
}

pub async fn list_runs_filters_newest_first(store: &dyn Store) {
    for day in 0..5 {
        store
            .create_run_if_absent(&daily_run("sales", day, vec![task("a", &[])]))
            .await
            .expect("creating");
    }
    store
        .create_run_if_absent(&daily_run("ads", 7, vec![task("a", &[])]))
        .await
        .expect("creating");
    store
        .start_queued_runs("sales", 2, t(10 * DAY))
        .await
        .expect("starting");
    let list = |dag_id: Option<&str>, state: Option<RunState>, limit: u32| RunFilter {
        dag_id: dag_id.map(str::to_owned),
        state,
        limit,
    };
    let days = |runs: Vec<RunRecord>| -> Vec<(String, i64)> {
        runs.into_iter()
            .map(|r| (r.dag_id, (r.logical_date - t(0)).num_days()))
            .collect()
    };
    let all = store
        .list_runs(&list(None, None, 0))
        .await
        .expect("listing");
    assert_eq!(
        days(all),
        [
            ("ads", 7),
            ("sales", 4),
            ("sales", 3),
            ("sales", 2),
            ("sales", 1),
            ("sales", 0)
        ]
        .map(|(d, n)| (d.to_owned(), n)),
        "newest logical date first; limit 0 means the default"
    );
    let sales = store
        .list_runs(&list(Some("sales"), None, 2))
        .await
        .expect("listing");
    assert_eq!(
        days(sales),
        [("sales".to_owned(), 4), ("sales".to_owned(), 3)]
    );
    let running = store
        .list_runs(&list(Some("sales"), Some(RunState::Running), 10))
        .await
        .expect("listing");
    assert_eq!(
        days(running),
        [("sales".to_owned(), 1), ("sales".to_owned(), 0)]
    );
    let queued = store
        .list_runs(&list(None, Some(RunState::Queued), 10))
        .await
        .expect("listing");
    assert_eq!(queued.len(), 4);
    assert!(
        store
            .list_runs(&list(Some("ads"), Some(RunState::Failed), 10))
            .await
            .expect("listing")
            .is_empty()
    );
}
