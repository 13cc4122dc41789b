//! What only the PostgreSQL store does: wake-ups across processes (LISTEN/NOTIFY), the
//! listener's reconnection, migrations racing from several processes, connection errors.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sluice_core::spec::RetryPolicy;
use sluice_core::{DataInterval, RunType, TriggerRule};
use sluice_store::{NewRun, NewTaskInstance, UNMAPPED};
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use super::*;

const WAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Queues one root task: the transaction that does it notifies `sluice_work`.
async fn queue_work(store: &dyn Store, day: i64) {
    let logical_date = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a date")
        + chrono::Duration::days(day);
    let run = NewRun {
        dag_id: "sales".to_owned(),
        run_id: format!("manual__{day}"),
        run_type: RunType::Manual,
        logical_date,
        data_interval: DataInterval {
            start: logical_date,
            end: logical_date,
        },
        dag_hash: "h".to_owned(),
        params: BTreeMap::new(),
        triggered_by: "test".to_owned(),
        tasks: vec![NewTaskInstance {
            task_id: "a".to_owned(),
            map_index: UNMAPPED,
            upstream: vec![],
            trigger_rule: TriggerRule::AllSuccess,
            retry: RetryPolicy::default(),
            timeout: None,
            queue: "default".to_owned(),
            pool: None,
            priority: 0,
        }],
        now: logical_date,
    };
    store
        .create_run_if_absent(&run)
        .await
        .expect("creating")
        .expect("new run");
    let started = store
        .start_queued_runs("sales", 100, logical_date)
        .await
        .expect("starting");
    assert_eq!(started.len(), 1);
}

/// Ends the connection of the one listener on `database`, as a network failure would.
async fn terminate_listener(admin: &mut PgConnection, database: &str) {
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND application_name = 'sluice-listener'",
    )
    .bind(database)
    .fetch_all(admin)
    .await
    .expect("terminating the listener's connection");
    assert_eq!(terminated, [true], "one listener connection to terminate");
}

async fn expect_wake(wake: &mut watch::Receiver<u64>, why: &str) {
    let moved = tokio::time::timeout(WAKE_DEADLINE, wake.changed()).await;
    assert!(
        matches!(moved, Ok(Ok(()))),
        "no wake-up within {WAKE_DEADLINE:?} {why}"
    );
    wake.borrow_and_update();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_queued_by_one_process_wakes_the_others() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let db = PostgresDb(database);
    let scheduler = db.open().await;
    let worker = db.open().await;
    let mut wake = worker.wakeups().subscribe();
    wake.borrow_and_update();
    queue_work(scheduler.as_ref(), 0).await;
    expect_wake(&mut wake, "after another process queued work").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listener_reconnects_and_wakes_once_it_listens_again() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let db = PostgresDb(database);
    let worker = db.open().await;
    let mut wake = worker.wakeups().subscribe();
    wake.borrow_and_update();

    let mut admin = PgConnection::connect(db.0.url()).await.expect("connecting");
    terminate_listener(&mut admin, db.0.name()).await;
    expect_wake(
        &mut wake,
        "after the listener reconnected (a notification may have been missed)",
    )
    .await;

    let scheduler = db.open().await;
    queue_work(scheduler.as_ref(), 0).await;
    expect_wake(&mut wake, "for work queued after the reconnection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listener_retries_while_the_database_refuses_connections() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let server_url =
        std::env::var(sluice_store::testing::DATABASE_URL_VAR).expect("set: we have a database");
    let db = PostgresDb(database);
    let worker = db.open().await;
    let mut wake = worker.wakeups().subscribe();
    wake.borrow_and_update();

    let mut admin = PgConnection::connect(&server_url)
        .await
        .expect("connecting");
    let name = db.0.name();
    // the name is ours: `sluice_test_` and hex digits
    let allow = |yes: bool| {
        sqlx::AssertSqlSafe(format!(
            r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS {yes}"#
        ))
    };
    sqlx::query(allow(false))
        .execute(&mut admin)
        .await
        .expect("refusing connections");
    terminate_listener(&mut admin, name).await;
    // a few failed reconnections, with back-off
    tokio::time::sleep(Duration::from_millis(700)).await;
    sqlx::query(allow(true))
        .execute(&mut admin)
        .await
        .expect("accepting connections");
    expect_wake(&mut wake, "once the listener got its connection back").await;

    let scheduler = db.open().await;
    queue_work(scheduler.as_ref(), 0).await;
    expect_wake(&mut wake, "for work queued after the outage").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_migrating_at_once_apply_each_migration_once() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let url = database.url().to_owned();
    let mut processes = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let url = url.clone();
        processes.spawn(async move { sluice_store::connect(&url).await.map(|_| ()) });
    }
    while let Some(result) = processes.join_next().await {
        result
            .expect("the task ran")
            .expect("connecting and migrating");
    }
    let mut conn = PgConnection::connect(&url).await.expect("connecting");
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("reading the migrations table");
    assert_eq!(applied, [(1, true), (2, true)]);
}

#[tokio::test]
async fn unreachable_server_fails_fast_without_showing_the_password() {
    let started = std::time::Instant::now();
    let result = sluice_store::connect("postgres://sluice:s3cret@127.0.0.1:1/sluice").await;
    let Err(error) = result else {
        panic!("connected to a closed port")
    };
    let message = error.to_string();
    assert!(
        !message.contains("s3cret"),
        "the password leaked: {message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused connection took {:?}: {message}",
        started.elapsed()
    );
    assert!(
        matches!(error, sluice_store::StoreError::Database(_)),
        "{error:?}"
    );
}
