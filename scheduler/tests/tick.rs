//! The scheduler driven tick by tick with a manual clock, over SQLite and over PostgreSQL.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use sluice_core::RunState;
use sluice_core::clock::ManualClock;
use sluice_scheduler::{FolderLoader, Scheduler, SchedulerConfig};
use sluice_store::testing::{TestDatabase, fresh_postgres_url};
use sluice_store::{Paused, RunFilter, Store};

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    scheduler: Scheduler,
    // dropped last: the database outlives the store's connections
    _database: Option<TestDatabase>,
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Each test once per store: `<test>::sqlite` and `<test>::postgres`.
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
    catchup_creates_missed_intervals_oldest_first_within_max_active_runs,
    without_catchup_only_the_latest_interval_runs,
    a_paused_dag_gets_no_new_runs_until_unpaused,
    edited_and_removed_dag_files_are_picked_up_without_restart,
    a_broken_file_is_an_import_error_and_the_others_still_load,
    two_files_claiming_one_dag_id_report_the_second,
    a_tick_fails_a_silent_workers_attempt_as_a_zombie_and_it_is_retried,
    a_quiet_dag_gets_its_next_run_when_its_schedule_ticks,
);

/// `None` when PostgreSQL is not configured (the helper printed why; under CI=true it panics).
async fn fixture(backend: Backend, dags: &[(&str, &str)]) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("dags");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, yaml) in dags {
        std::fs::write(folder.join(name), yaml).unwrap();
    }
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
    let clock = Arc::new(ManualClock::new(at(2026, 1, 1, 0)));
    let scheduler = Scheduler::new(
        store.clone(),
        clock,
        FolderLoader::new(&folder),
        SchedulerConfig::default(),
    );
    Some(Fixture {
        dir,
        store,
        scheduler,
        _database: database,
    })
}

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

async fn runs(store: &dyn Store, dag_id: &str) -> Vec<sluice_store::RunRecord> {
    let mut runs = store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id.into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    runs.reverse();
    runs
}

const DAILY: &str = "dag: daily\nschedule: '0 2 * * *'\ntimezone: UTC\nstart_date: 2026-01-01\ncatchup: true\nmax_active_runs: 2\ntasks:\n  a:\n    type: noop\n";

async fn catchup_creates_missed_intervals_oldest_first_within_max_active_runs(backend: Backend) {
    let Some(f) = fixture(backend, &[("daily.yaml", DAILY)]).await else {
        return;
    };
    let report = f.scheduler.tick(at(2026, 1, 5, 12)).await.unwrap();
    assert!(report.dags_changed);
    // four intervals are complete (Jan 1-2 … Jan 4-5) but only two may be active
    let created = runs(f.store.as_ref(), "daily").await;
    assert_eq!(
        created.len(),
        2,
        "{:?}",
        created.iter().map(|r| &r.run_id).collect::<Vec<_>>()
    );
    assert_eq!(created[0].logical_date, at(2026, 1, 1, 2));
    assert_eq!(created[0].data_interval.end, at(2026, 1, 2, 2));
    assert_eq!(created[0].run_id, "scheduled__2026-01-01T02:00:00Z");
    assert!(created.iter().all(|r| r.state == RunState::Running));

    // a second tick at the same time changes nothing
    let report = f.scheduler.tick(at(2026, 1, 5, 12)).await.unwrap();
    assert!(report.created.is_empty());
    assert!(!report.dags_changed);
}

async fn without_catchup_only_the_latest_interval_runs(backend: Backend) {
    let yaml = DAILY.replace("catchup: true", "catchup: false");
    let Some(f) = fixture(backend, &[("daily.yaml", &yaml)]).await else {
        return;
    };
    f.scheduler.tick(at(2026, 1, 5, 12)).await.unwrap();
    let created = runs(f.store.as_ref(), "daily").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].logical_date, at(2026, 1, 4, 2));
}

async fn a_paused_dag_gets_no_new_runs_until_unpaused(backend: Backend) {
    let Some(f) = fixture(backend, &[("daily.yaml", DAILY)]).await else {
        return;
    };
    f.scheduler.tick(at(2025, 12, 31, 0)).await.unwrap();
    f.store.set_paused("daily", Paused::Paused).await.unwrap();
    f.scheduler.tick(at(2026, 1, 3, 3)).await.unwrap();
    assert!(runs(f.store.as_ref(), "daily").await.is_empty());
    f.store.set_paused("daily", Paused::Active).await.unwrap();
    f.scheduler.tick(at(2026, 1, 3, 3)).await.unwrap();
    assert_eq!(runs(f.store.as_ref(), "daily").await.len(), 2);
}

async fn edited_and_removed_dag_files_are_picked_up_without_restart(backend: Backend) {
    let Some(f) = fixture(backend, &[("daily.yaml", DAILY)]).await else {
        return;
    };
    f.scheduler.tick(at(2025, 12, 31, 0)).await.unwrap();
    let before = f.store.get_dag("daily").await.unwrap().unwrap();
    assert_eq!(before.schedule.as_deref(), Some("0 2 * * *"));

    let path = f.dir.path().join("dags/daily.yaml");
    std::fs::write(&path, DAILY.replace("0 2 * * *", "0 3 * * *")).unwrap();
    let report = f.scheduler.tick(at(2025, 12, 31, 0)).await.unwrap();
    assert!(report.dags_changed);
    let after = f.store.get_dag("daily").await.unwrap().unwrap();
    assert_eq!(after.schedule.as_deref(), Some("0 3 * * *"));
    assert_ne!(before.hash, after.hash);

    std::fs::remove_file(&path).unwrap();
    f.scheduler.tick(at(2025, 12, 31, 0)).await.unwrap();
    assert!(!f.store.get_dag("daily").await.unwrap().unwrap().is_active);
}

async fn a_broken_file_is_an_import_error_and_the_others_still_load(backend: Backend) {
    let Some(f) = fixture(
        backend,
        &[
            ("daily.yaml", DAILY),
            ("broken.yaml", "tasks:\n  a:\n    type: teleport\n"),
        ],
    )
    .await
    else {
        return;
    };
    f.scheduler.tick(at(2025, 12, 31, 0)).await.unwrap();
    assert!(f.store.get_dag("daily").await.unwrap().is_some());
    let errors = f.store.import_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].fileloc.ends_with("broken.yaml"));
    assert!(
        errors[0].errors[0].contains("broken.yaml:3:"),
        "{:?}",
        errors[0].errors
    );

    // fixing the file clears the error
    std::fs::write(
        f.dir.path().join("dags/broken.yaml"),
        "tasks:\n  a:\n    type: noop\n",
    )
    .unwrap();
    f.scheduler.tick(at(2025, 12, 31, 0)).await.unwrap();
    assert!(f.store.import_errors().await.unwrap().is_empty());
    assert!(f.store.get_dag("broken").await.unwrap().is_some());
}

async fn two_files_claiming_one_dag_id_report_the_second(backend: Backend) {
    let Some(f) = fixture(backend, &[("a.yaml", DAILY), ("b.yaml", DAILY)]).await else {
        return;
    };
    f.scheduler.tick(at(2025, 12, 31, 0)).await.unwrap();
    let errors = f.store.import_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].errors[0].contains("DAG id `daily` is already defined in"),
        "{:?}",
        errors
    );
    assert!(errors[0].fileloc.ends_with("b.yaml"));
}

async fn a_tick_fails_a_silent_workers_attempt_as_a_zombie_and_it_is_retried(backend: Backend) {
    let yaml = DAILY.replace(
        "    type: noop\n",
        "    type: noop\n    retries: 1\n    retry_delay: 10s\n",
    );
    let Some(f) = fixture(backend, &[("daily.yaml", &yaml)]).await else {
        return;
    };
    let start = at(2026, 1, 2, 3);
    f.scheduler.tick(start).await.unwrap();
    let claim = |worker: &str, now| sluice_store::Claim {
        worker_id: worker.to_owned(),
        queues: vec!["default".to_owned()],
        limit: 1,
        now,
    };
    let claimed = f.store.claim_attempts(&claim("gone", start)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // within zombie_after (60 s by default) nothing happens
    let report = f
        .scheduler
        .tick(start + chrono::Duration::seconds(59))
        .await
        .unwrap();
    assert!(report.zombies.is_empty(), "{:?}", report.zombies);
    let report = f
        .scheduler
        .tick(start + chrono::Duration::seconds(61))
        .await
        .unwrap();
    assert_eq!(report.zombies.len(), 1, "{:?}", report.zombies);
    assert_eq!(
        report.zombies[0].task_state,
        sluice_core::TaskState::UpForRetry
    );
    let retried = f
        .store
        .claim_attempts(&claim("other", start + chrono::Duration::seconds(72)))
        .await
        .unwrap();
    assert_eq!((retried.len(), retried[0].try_number), (1, 2));
    let attempts = f.store.attempts(retried[0].run_pk).await.unwrap();
    let error = attempts[0].error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("worker gone stopped heartbeating at"),
        "{error}"
    );
}

async fn a_quiet_dag_gets_its_next_run_when_its_schedule_ticks(backend: Backend) {
    let yaml = DAILY.replace("catchup: true", "catchup: false");
    let Some(f) = fixture(backend, &[("daily.yaml", &yaml)]).await else {
        return;
    };
    f.scheduler.tick(at(2026, 1, 5, 12)).await.unwrap();
    // nothing is due until 02:00 tomorrow: these ticks find nothing (and skip the DAG)
    for hour in [13, 18, 23] {
        let report = f.scheduler.tick(at(2026, 1, 5, hour)).await.unwrap();
        assert!(report.created.is_empty(), "{:?}", report.created);
    }
    let report = f.scheduler.tick(at(2026, 1, 6, 2)).await.unwrap();
    assert_eq!(report.created, ["scheduled__2026-01-05T02:00:00Z"]);
    assert_eq!(runs(f.store.as_ref(), "daily").await.len(), 2);
}
