//! Backfills and clearing: one open backfill per DAG, its runs started within its own limit
//! and order, cleared task instances that try again while every earlier attempt stays.

use sluice_core::{AttemptState, BackfillState, RunState};

use super::*;

/// The backfill run of `dag_id` for day `day`.
fn backfill_run(dag_id: &str, day: i64) -> NewRun {
    let mut run = daily_run(dag_id, day, vec![task("a", &[]), task("b", &["a"])]);
    run.run_type = RunType::Backfill;
    run.run_id = run.run_id.replace("scheduled", "backfill");
    run.triggered_by = "cli:test".to_owned();
    run.now = t(100 * DAY);
    run
}

fn new_backfill(dag_id: &str, days: std::ops::Range<i64>, max_active_runs: u32) -> NewBackfill {
    NewBackfill {
        dag_id: dag_id.to_owned(),
        range: RunRange {
            dag_id: dag_id.to_owned(),
            start: t(days.start * DAY),
            end: t(days.end * DAY),
        },
        max_active_runs,
        reverse: false,
        options: serde_json::json!({}),
        triggered_by: "cli:test".to_owned(),
        create: days.map(|day| backfill_run(dag_id, day)).collect(),
        rerun: Vec::new(),
        now: t(100 * DAY),
    }
}

/// Claims and finishes every claimable attempt with `outcome` until nothing is claimable.
async fn finish_all(store: &dyn Store, outcome: AttemptOutcome, now: DateTime<Utc>) {
    loop {
        let claimed = store
            .claim_attempts(&claim("w", 100, now))
            .await
            .expect("claiming");
        if claimed.is_empty() {
            return;
        }
        for attempt in &claimed {
            store
                .finish_attempt(&finished(attempt, outcome, now))
                .await
                .expect("finishing");
        }
    }
}

pub async fn backfill_runs_start_within_its_limit_oldest_first_and_it_finishes(store: &dyn Store) {
    let now = t(100 * DAY);
    let backfill = store
        .create_backfill(&new_backfill("sales", 0..5, 2))
        .await
        .expect("creating the backfill");
    assert_eq!(backfill.state, BackfillState::Running);
    let runs = store
        .runs_in_range(&backfill_range("sales", 0..5))
        .await
        .expect("listing");
    assert_eq!(runs.len(), 5);
    assert!(runs.iter().all(|r| r.backfill_id == Some(backfill.id)
        && r.state == RunState::Queued
        && r.run_type == RunType::Backfill));

    // the DAG's own start leaves an open backfill's runs alone
    let started = store
        .start_queued_runs("sales", 16, now)
        .await
        .expect("starting");
    assert!(started.is_empty(), "{started:?}");

    let mut order = Vec::new();
    for _ in 0..10 {
        let step = store
            .start_backfill_runs(backfill.id, now)
            .await
            .expect("stepping");
        assert!(step.started.len() <= 2);
        order.extend(step.started.iter().map(|r| r.logical_date));
        let progress = store
            .backfill_progress(backfill.id)
            .await
            .expect("progress");
        assert!(progress.running <= 2, "{progress:?}");
        if let Some(state) = step.finished {
            assert_eq!(state, BackfillState::Success);
            break;
        }
        finish_all(store, AttemptOutcome::Success, now).await;
    }
    assert_eq!(order, (0..5).map(|d| t(d * DAY)).collect::<Vec<_>>());
    let record = store
        .get_backfill(backfill.id)
        .await
        .expect("reading")
        .expect("exists");
    assert_eq!(record.state, BackfillState::Success);
    assert_eq!(record.ended_at, Some(now));
    assert!(store.open_backfills().await.expect("listing").is_empty());
    let progress = store
        .backfill_progress(backfill.id)
        .await
        .expect("progress");
    assert_eq!((progress.total, progress.success), (5, 5));
}

fn backfill_range(dag_id: &str, days: std::ops::Range<i64>) -> RunRange {
    RunRange {
        dag_id: dag_id.to_owned(),
        start: t(days.start * DAY),
        end: t(days.end * DAY),
    }
}

pub async fn reverse_backfill_starts_newest_first(store: &dyn Store) {
    let mut new = new_backfill("sales", 0..3, 1);
    new.reverse = true;
    let backfill = store.create_backfill(&new).await.expect("creating");
    let mut order = Vec::new();
    for _ in 0..5 {
        let step = store
            .start_backfill_runs(backfill.id, t(100 * DAY))
            .await
            .expect("stepping");
        order.extend(step.started.iter().map(|r| r.logical_date));
        finish_all(store, AttemptOutcome::Success, t(100 * DAY)).await;
    }
    assert_eq!(order, vec![t(2 * DAY), t(DAY), t(0)]);
}

pub async fn one_open_backfill_per_dag(store: &dyn Store) {
    store
        .create_backfill(&new_backfill("sales", 0..2, 1))
        .await
        .expect("creating");
    let second = store.create_backfill(&new_backfill("sales", 5..6, 1)).await;
    assert!(
        matches!(second, Err(StoreError::Conflict(_))),
        "a second open backfill of one DAG: {second:?}"
    );
    let runs = store
        .runs_in_range(&backfill_range("sales", 0..10))
        .await
        .expect("listing");
    assert_eq!(runs.len(), 2, "the refused backfill created nothing");
    store
        .create_backfill(&new_backfill("other", 0..2, 1))
        .await
        .expect("another DAG's backfill");
}

pub async fn cleared_tasks_run_again_and_keep_every_attempt(store: &dyn Store) {
    let now = t(100 * DAY);
    let run = started_run(
        store,
        &daily_run("sales", 0, vec![task("a", &[]), task("b", &["a"])]),
    )
    .await;
    finish_all(store, AttemptOutcome::Success, now).await;
    assert_eq!(run_state(store, run.pk).await, RunState::Success);

    let cleared = store
        .clear_tasks(&ClearTasks {
            run_pk: run.pk,
            task_ids: vec!["b".to_owned()],
            now,
        })
        .await
        .expect("clearing");
    assert_eq!(cleared, 1);
    assert_eq!(run_state(store, run.pk).await, RunState::Queued);
    expect_states(
        &states(store, run.pk).await,
        &[("a", TaskState::Success), ("b", TaskState::Pending)],
        "after clearing b",
    );
    store
        .start_queued_runs("sales", 16, now)
        .await
        .expect("starting");
    finish_all(store, AttemptOutcome::Failed, now).await;
    assert_eq!(run_state(store, run.pk).await, RunState::Failed);
    // cleared again: a failed task with no retries gets one more try each time
    store
        .clear_tasks(&ClearTasks {
            run_pk: run.pk,
            task_ids: vec!["b".to_owned()],
            now,
        })
        .await
        .expect("clearing again");
    store
        .start_queued_runs("sales", 16, now)
        .await
        .expect("starting");
    finish_all(store, AttemptOutcome::Success, now).await;
    assert_eq!(run_state(store, run.pk).await, RunState::Success);
    let b: Vec<(u32, AttemptState)> = store
        .attempts(run.pk)
        .await
        .expect("attempts")
        .into_iter()
        .filter(|a| a.task_id == "b")
        .map(|a| (a.try_number, a.state))
        .collect();
    assert_eq!(
        b,
        [
            (1, AttemptState::Success),
            (2, AttemptState::Failed),
            (3, AttemptState::Success)
        ]
    );
    let tis = store.task_instances(run.pk).await.expect("reading");
    let b = tis.iter().find(|ti| ti.task_id == "b").expect("b");
    assert_eq!((b.try_number, b.max_tries), (3, 3));
}

pub async fn a_backfill_reruns_existing_runs_within_its_limit(store: &dyn Store) {
    let now = t(100 * DAY);
    let run = started_run(
        store,
        &daily_run("sales", 0, vec![task("a", &[]), task("b", &["a"])]),
    )
    .await;
    finish_all(store, AttemptOutcome::Failed, now).await;
    assert_eq!(run_state(store, run.pk).await, RunState::Failed);
    let mut new = new_backfill("sales", 1..2, 1);
    new.range.start = t(0);
    new.rerun = vec![ClearTasks {
        run_pk: run.pk,
        task_ids: vec!["a".to_owned(), "b".to_owned()],
        now,
    }];
    let backfill = store.create_backfill(&new).await.expect("creating");
    let rerun = store
        .get_run_by_pk(run.pk)
        .await
        .expect("reading")
        .expect("exists");
    assert_eq!(
        (rerun.state, rerun.backfill_id, rerun.run_type),
        (RunState::Queued, Some(backfill.id), RunType::Scheduled),
        "a rerun keeps its type and joins the backfill"
    );
    for _ in 0..4 {
        store
            .start_backfill_runs(backfill.id, now)
            .await
            .expect("stepping");
        finish_all(store, AttemptOutcome::Success, now).await;
    }
    assert_eq!(run_state(store, run.pk).await, RunState::Success);
    let progress = store
        .backfill_progress(backfill.id)
        .await
        .expect("progress");
    assert_eq!((progress.total, progress.success), (2, 2));
}

pub async fn cancel_backfill_cancels_its_unfinished_runs(store: &dyn Store) {
    let now = t(100 * DAY);
    let backfill = store
        .create_backfill(&new_backfill("sales", 0..3, 1))
        .await
        .expect("creating");
    store
        .start_backfill_runs(backfill.id, now)
        .await
        .expect("stepping");
    let attempt = claim_one(store, now).await;
    assert!(
        store
            .cancel_backfill(backfill.id, now)
            .await
            .expect("cancelling")
    );
    assert!(
        !store
            .cancel_backfill(backfill.id, now)
            .await
            .expect("again")
    );
    let progress = store
        .backfill_progress(backfill.id)
        .await
        .expect("progress");
    assert_eq!((progress.total, progress.cancelled), (3, 3), "{progress:?}");
    assert_lease_lost(
        store
            .finish_attempt(&finished(&attempt, AttemptOutcome::Success, now))
            .await,
        "finishing an attempt of a cancelled backfill",
    );
    let record = store.get_backfill(backfill.id).await.expect("reading");
    assert_eq!(record.map(|b| b.state), Some(BackfillState::Cancelled));
}

pub async fn concurrent_backfill_steps_respect_its_limit(db: &dyn Connector) {
    const SCHEDULERS: usize = 6;
    let setup = db.open().await;
    let backfill = setup
        .create_backfill(&new_backfill("sales", 0..6, 2))
        .await
        .expect("creating");
    let barrier = Arc::new(tokio::sync::Barrier::new(SCHEDULERS));
    let mut schedulers = tokio::task::JoinSet::new();
    for _ in 0..SCHEDULERS {
        let store = db.open().await;
        let barrier = barrier.clone();
        schedulers.spawn(async move {
            barrier.wait().await;
            store
                .start_backfill_runs(backfill.id, t(100 * DAY))
                .await
                .expect("stepping")
                .started
                .into_iter()
                .map(|r| r.logical_date)
                .collect::<Vec<_>>()
        });
    }
    let mut started = Vec::new();
    while let Some(result) = schedulers.join_next().await {
        started.extend(result.expect("a scheduler task"));
    }
    started.sort();
    assert_eq!(
        started,
        [t(0), t(DAY)],
        "two runs start, the oldest, once each"
    );
    let progress = setup
        .backfill_progress(backfill.id)
        .await
        .expect("progress");
    assert_eq!((progress.running, progress.queued), (2, 4));
}
