//! Backfills planned, created and run by scheduler ticks with a manual clock, over SQLite and
//! PostgreSQL. Attempts are claimed and finished through the store, as a worker would.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use sluice_core::clock::ManualClock;
use sluice_core::{BackfillState, Dag, RunState, RunType, parse_dag};
use sluice_scheduler::backfill::{self, Action, BackfillRequest, Bound};
use sluice_scheduler::{FolderLoader, Scheduler, SchedulerConfig};
use sluice_store::testing::{TestDatabase, fresh_postgres_url};
use sluice_store::{AttemptOutcome, Claim, FinishAttempt, Paused, RunRange, RunRecord, Store};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    scheduler: Scheduler,
    dag: Dag,
    _database: Option<TestDatabase>,
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

macro_rules! on_both_stores {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test(super::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$test(super::Backend::Postgres).await
            }
        }
    )+};
}

on_both_stores!(
    backfill_across_dst_keeps_the_wall_clock_time_in_the_dag_timezone,
    monthly_backfill_across_month_ends_covers_each_month_once,
    scheduler_runs_a_backfill_within_its_max_active_runs_oldest_first,
    rerun_failed_reruns_only_the_failed_runs,
    tasks_regex_reruns_those_tasks_in_successful_runs,
    a_paused_dags_backfill_waits,
);

const NOW: (i32, u32, u32) = (2026, 12, 1);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(NOW.0, NOW.1, NOW.2, 0, 0, 0).unwrap()
}

async fn fixture(backend: Backend, yaml: &str) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("dags");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("dag.yaml"), yaml).unwrap();
    let (url, database) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("s.db").display()),
            None,
        ),
        Backend::Postgres => {
            let database = fresh_postgres_url().await?;
            (database.url().to_owned(), Some(database))
        }
    };
    let store = sluice_store::connect(&url).await.unwrap();
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(ManualClock::new(now())),
        FolderLoader::new(&folder),
        SchedulerConfig::default(),
    );
    // the first tick mirrors the folder, as a running scheduler would have
    scheduler.tick(now()).await.unwrap();
    let dag = parse_dag(folder.join("dag.yaml").to_str().unwrap(), yaml).unwrap();
    Some(Fixture {
        _dir: dir,
        store,
        scheduler,
        dag,
        _database: database,
    })
}

fn request(dag: &Dag, start: &str, end: &str) -> BackfillRequest {
    BackfillRequest {
        range: RunRange {
            dag_id: dag.id.to_string(),
            start: backfill::parse_date(start, dag.timezone, Bound::Start).unwrap(),
            end: backfill::parse_date(end, dag.timezone, Bound::End).unwrap(),
        },
        max_active_runs: None,
        reverse: false,
        rerun_failed: false,
        tasks: None,
        triggered_by: "test".to_owned(),
        now: now(),
    }
}

fn local(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, m, d, h, min, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

async fn backfill_runs(store: &dyn Store, dag: &Dag) -> Vec<RunRecord> {
    let mut runs = store
        .runs_in_range(&RunRange {
            dag_id: dag.id.to_string(),
            start: Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
            end: now(),
        })
        .await
        .unwrap();
    runs.retain(|r| r.run_type != RunType::Scheduled || r.backfill_id.is_some());
    runs
}

/// Claims and finishes every claimable attempt until none is left; `fail` decides by run.
async fn work(store: &dyn Store, fail: impl Fn(&str, &str) -> bool) {
    loop {
        let claimed = store
            .claim_attempts(&Claim {
                worker_id: "w".into(),
                queues: vec!["default".into()],
                limit: 100,
                now: now(),
            })
            .await
            .unwrap();
        if claimed.is_empty() {
            return;
        }
        for attempt in claimed {
            let failed = fail(&attempt.run_id, &attempt.task_id);
            store
                .finish_attempt(&FinishAttempt {
                    lease: attempt.lease.clone(),
                    outcome: if failed {
                        AttemptOutcome::Failed
                    } else {
                        AttemptOutcome::Success
                    },
                    exit_code: Some(i32::from(failed)),
                    error: failed.then(|| "boom".to_owned()),
                    outputs: Default::default(),
                    now: now(),
                })
                .await
                .unwrap();
        }
    }
}

/// Ticks and works until the backfill ends; returns how many runs ran at once at most.
async fn run_to_end(f: &Fixture, id: i64, fail: impl Fn(&str, &str) -> bool) -> usize {
    let mut most = 0;
    for _ in 0..200 {
        f.scheduler.tick(now()).await.unwrap();
        let record = f.store.get_backfill(id).await.unwrap().unwrap();
        if record.state != BackfillState::Running {
            return most;
        }
        let progress = f.store.backfill_progress(id).await.unwrap();
        most = most.max(progress.running as usize);
        work(f.store.as_ref(), &fail).await;
    }
    panic!("backfill {id} did not end");
}

const BERLIN: &str = "dag: berlin\nschedule: '30 2 * * *'\ntimezone: Europe/Berlin\nmax_active_runs: 2\ntasks:\n  a:\n    type: noop\n";

async fn backfill_across_dst_keeps_the_wall_clock_time_in_the_dag_timezone(backend: Backend) {
    let Some(f) = fixture(backend, BERLIN).await else {
        return;
    };
    let tz = f.dag.timezone;
    let store = f.store.as_ref();
    // spring forward on Sunday 2026-03-29: 02:30 does not exist and runs at 03:00
    let plan = backfill::plan(store, &f.dag, &request(&f.dag, "2026-03-27", "2026-03-30"))
        .await
        .unwrap();
    let starts: Vec<DateTime<Utc>> = plan.runs.iter().map(|r| r.interval.start).collect();
    assert_eq!(
        starts,
        [
            local(tz, 2026, 3, 27, 2, 30),
            local(tz, 2026, 3, 28, 2, 30),
            local(tz, 2026, 3, 29, 3, 0),
            local(tz, 2026, 3, 30, 2, 30),
        ]
    );
    assert_eq!(plan.runs[1].interval.end, local(tz, 2026, 3, 29, 3, 0));
    assert!(plan.runs.iter().all(|r| r.action == Action::Create));
    // fall back on Sunday 2026-10-25: 02:30 happens twice and runs once, on the first pass
    // (02:30 CEST), so the interval from it to Monday's 02:30 CET is 25 hours
    let autumn = backfill::plan(store, &f.dag, &request(&f.dag, "2026-10-24", "2026-10-26"))
        .await
        .unwrap();
    let lengths: Vec<i64> = autumn
        .runs
        .iter()
        .map(|r| r.interval.length().num_hours())
        .collect();
    assert_eq!(lengths, [24, 25, 24], "{:?}", autumn.runs);
    assert_eq!(
        autumn.runs[1].interval.start,
        local(tz, 2026, 10, 25, 2, 30)
    );

    let record = backfill::create(
        store,
        &f.dag,
        &plan,
        &request(&f.dag, "2026-03-27", "2026-03-30"),
    )
    .await
    .unwrap();
    run_to_end(&f, record.id, |_, _| false).await;
    let runs = backfill_runs(store, &f.dag).await;
    let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "backfill__2026-03-27T01:30:00Z",
            "backfill__2026-03-28T01:30:00Z",
            "backfill__2026-03-29T01:00:00Z",
            "backfill__2026-03-30T00:30:00Z",
        ]
    );
    assert!(runs.iter().all(|r| r.state == RunState::Success));
}

async fn monthly_backfill_across_month_ends_covers_each_month_once(backend: Backend) {
    let yaml = "dag: monthly\nschedule: '@monthly'\ntimezone: Europe/Berlin\ntasks:\n  a:\n    type: noop\n";
    let Some(f) = fixture(backend, yaml).await else {
        return;
    };
    let tz = f.dag.timezone;
    // from Jan 31: the January run (logical date Jan 1) is before the range
    let plan = backfill::plan(
        f.store.as_ref(),
        &f.dag,
        &request(&f.dag, "2026-01-31", "2026-03-31"),
    )
    .await
    .unwrap();
    let intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = plan
        .runs
        .iter()
        .map(|r| (r.interval.start, r.interval.end))
        .collect();
    assert_eq!(
        intervals,
        [
            (local(tz, 2026, 2, 1, 0, 0), local(tz, 2026, 3, 1, 0, 0)),
            (local(tz, 2026, 3, 1, 0, 0), local(tz, 2026, 4, 1, 0, 0)),
        ]
    );
    // February has 28 days; March loses an hour to DST
    assert_eq!(plan.runs[0].interval.length().num_hours(), 28 * 24);
    assert_eq!(plan.runs[1].interval.length().num_hours(), 31 * 24 - 1);
    // a range ending on the last day of a month covers that month's run
    let plan = backfill::plan(
        f.store.as_ref(),
        &f.dag,
        &request(&f.dag, "2026-01-01", "2026-01-31"),
    )
    .await
    .unwrap();
    assert_eq!(plan.runs.len(), 1);
    assert_eq!(plan.runs[0].interval.start, local(tz, 2026, 1, 1, 0, 0));
}

async fn scheduler_runs_a_backfill_within_its_max_active_runs_oldest_first(backend: Backend) {
    let yaml = BERLIN.replace("max_active_runs: 2", "max_active_runs: 16");
    let Some(f) = fixture(backend, &yaml).await else {
        return;
    };
    let store = f.store.as_ref();
    let mut asked = request(&f.dag, "2026-05-01", "2026-05-10");
    asked.max_active_runs = Some(3);
    let plan = backfill::plan(store, &f.dag, &asked).await.unwrap();
    assert_eq!(plan.max_active_runs, 3);
    let record = backfill::create(store, &f.dag, &plan, &asked)
        .await
        .unwrap();
    f.scheduler.tick(now()).await.unwrap();
    let running: Vec<RunRecord> = backfill_runs(store, &f.dag)
        .await
        .into_iter()
        .filter(|r| r.state == RunState::Running)
        .collect();
    let days: Vec<u32> = running
        .iter()
        .map(|r| chrono::Datelike::day(&r.logical_date))
        .collect();
    assert_eq!(days, [1, 2, 3], "the three oldest start first");
    let most = run_to_end(&f, record.id, |_, _| false).await;
    assert_eq!(most, 3);
    let done = f.store.get_backfill(record.id).await.unwrap().unwrap();
    assert_eq!(done.state, BackfillState::Success);
    assert_eq!(backfill_runs(store, &f.dag).await.len(), 10);
}

const TWO_TASKS: &str = "dag: pair\nschedule: '@daily'\ntimezone: UTC\nmax_active_runs: 4\ntasks:\n  extract:\n    type: noop\n  load:\n    type: noop\n    depends_on: [extract]\n  report:\n    type: noop\n";

async fn rerun_failed_reruns_only_the_failed_runs(backend: Backend) {
    let Some(f) = fixture(backend, TWO_TASKS).await else {
        return;
    };
    let store = f.store.as_ref();
    let asked = request(&f.dag, "2026-06-01", "2026-06-04");
    let plan = backfill::plan(store, &f.dag, &asked).await.unwrap();
    let first = backfill::create(store, &f.dag, &plan, &asked)
        .await
        .unwrap();
    // `load` fails on June 2 and 4
    let bad = |run_id: &str, task_id: &str| {
        task_id == "load" && (run_id.contains("06-02") || run_id.contains("06-04"))
    };
    run_to_end(&f, first.id, bad).await;
    assert_eq!(
        store.get_backfill(first.id).await.unwrap().unwrap().state,
        BackfillState::Failed
    );
    let attempts_before = attempts_by_run(store, &f.dag).await;

    // without --rerun-failed there is nothing to do
    let again = backfill::plan(store, &f.dag, &asked).await.unwrap();
    assert!(!again.has_work(), "{:?}", again.runs);

    let mut rerun = asked.clone();
    rerun.rerun_failed = true;
    let plan = backfill::plan(store, &f.dag, &rerun).await.unwrap();
    let actions: Vec<&Action> = plan.runs.iter().map(|r| &r.action).collect();
    let keep = Action::Keep {
        reason: "succeeded",
    };
    let load = Action::Rerun {
        tasks: vec!["load".to_owned()],
    };
    assert_eq!(actions, [&keep, &load, &keep, &load]);
    let second = backfill::create(store, &f.dag, &plan, &rerun)
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    run_to_end(&f, second.id, |_, _| false).await;

    let runs = backfill_runs(store, &f.dag).await;
    assert_eq!(runs.len(), 4, "no run was duplicated");
    assert!(runs.iter().all(|r| r.state == RunState::Success));
    let attempts_after = attempts_by_run(store, &f.dag).await;
    for ((run_id, before), (_, after)) in attempts_before.iter().zip(&attempts_after) {
        if run_id.contains("06-02") || run_id.contains("06-04") {
            assert_eq!(
                after.len(),
                before.len() + 1,
                "{run_id}: one more try of load"
            );
        } else {
            assert_eq!(after, before, "{run_id}: a successful run is left alone");
        }
    }
}

/// Run id → (task id, try number) of every attempt.
async fn attempts_by_run(store: &dyn Store, dag: &Dag) -> Vec<(String, Vec<(String, u32)>)> {
    let mut all = Vec::new();
    for run in backfill_runs(store, dag).await {
        let attempts = store.attempts(run.pk).await.unwrap();
        all.push((
            run.run_id,
            attempts
                .into_iter()
                .map(|a| (a.task_id, a.try_number))
                .collect(),
        ));
    }
    all
}

async fn tasks_regex_reruns_those_tasks_in_successful_runs(backend: Backend) {
    let Some(f) = fixture(backend, TWO_TASKS).await else {
        return;
    };
    let store = f.store.as_ref();
    let asked = request(&f.dag, "2026-06-01", "2026-06-02");
    let plan = backfill::plan(store, &f.dag, &asked).await.unwrap();
    let first = backfill::create(store, &f.dag, &plan, &asked)
        .await
        .unwrap();
    run_to_end(&f, first.id, |_, _| false).await;

    let mut only = asked.clone();
    only.tasks = Some(backfill::TaskSelection {
        pattern: "^extract$".to_owned(),
        downstream: true,
        task_ids: backfill::with_downstream(&f.dag, &["extract".to_owned()]),
    });
    let plan = backfill::plan(store, &f.dag, &only).await.unwrap();
    let expected = Action::Rerun {
        tasks: vec!["extract".to_owned(), "load".to_owned()],
    };
    assert!(
        plan.runs.iter().all(|r| r.action == expected),
        "{:?}",
        plan.runs
    );
    let second = backfill::create(store, &f.dag, &plan, &only).await.unwrap();
    run_to_end(&f, second.id, |_, _| false).await;
    for (_, attempts) in attempts_by_run(store, &f.dag).await {
        let tries = |task: &str| attempts.iter().filter(|(t, _)| t == task).count();
        assert_eq!(
            (tries("extract"), tries("load"), tries("report")),
            (2, 2, 1)
        );
    }
}

async fn a_paused_dags_backfill_waits(backend: Backend) {
    let Some(f) = fixture(backend, BERLIN).await else {
        return;
    };
    let store = f.store.as_ref();
    let asked = request(&f.dag, "2026-05-01", "2026-05-02");
    let plan = backfill::plan(store, &f.dag, &asked).await.unwrap();
    let record = backfill::create(store, &f.dag, &plan, &asked)
        .await
        .unwrap();
    store.set_paused("berlin", Paused::Paused).await.unwrap();
    f.scheduler.tick(now()).await.unwrap();
    let progress = store.backfill_progress(record.id).await.unwrap();
    assert_eq!((progress.queued, progress.running), (2, 0));
    store.set_paused("berlin", Paused::Active).await.unwrap();
    run_to_end(&f, record.id, |_, _| false).await;
    let progress = store.backfill_progress(record.id).await.unwrap();
    assert_eq!(progress.success, 2);
}
