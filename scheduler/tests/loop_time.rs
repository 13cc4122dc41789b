//! `Scheduler::run` records each tick's duration, where `/metrics` in another process reads it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::clock::SystemClock;
use sluice_scheduler::{FolderLoader, Scheduler, SchedulerConfig};
use tokio::sync::watch;

#[tokio::test]
async fn run_records_every_tick_under_its_scheduler_id() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("dags");
    std::fs::create_dir_all(&folder).unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = sluice_store::connect(&url).await.unwrap();
    let scheduler = Arc::new(Scheduler::new(
        store.clone(),
        Arc::new(SystemClock),
        FolderLoader::new(&folder),
        SchedulerConfig {
            tick_interval: Duration::from_millis(20),
            scheduler_id: "test-host:42:abcdef".to_owned(),
            host: "test-host".to_owned(),
            ..SchedulerConfig::default()
        },
    ));
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(scheduler.run(shutdown));

    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let schedulers = store.list_schedulers().await.unwrap();
        if schedulers.first().is_some_and(|s| s.ticks >= 3) || Instant::now() > deadline {
            break schedulers;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    stop.send(true).unwrap();
    task.await.unwrap();

    assert_eq!(seen.len(), 1, "{seen:?}");
    let recorded = &seen[0];
    assert_eq!(recorded.scheduler_id, "test-host:42:abcdef", "{seen:?}");
    assert_eq!(recorded.host, "test-host", "{seen:?}");
    assert!(recorded.ticks >= 3, "three ticks within 10 s: {seen:?}");
    assert_eq!(recorded.failed_ticks, 0, "{seen:?}");
    assert!(
        recorded.tick_seconds_total >= recorded.last_tick_seconds
            && recorded.last_tick_seconds >= 0.0,
        "{seen:?}"
    );
    assert!(recorded.last_tick_at >= recorded.started_at, "{seen:?}");
}
