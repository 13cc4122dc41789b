//! Schedulers' loop times: each tick adds to its scheduler's totals, silent ones are forgotten.

use super::*;

fn tick(scheduler_id: &str, at: i64, seconds: f64, outcome: TickOutcome) -> SchedulerTick {
    SchedulerTick {
        scheduler_id: scheduler_id.to_owned(),
        host: "sched-host".to_owned(),
        started_at: t(0),
        at: t(at),
        seconds,
        outcome,
    }
}

pub async fn scheduler_ticks_add_up_per_scheduler_and_silent_ones_are_forgotten(store: &dyn Store) {
    assert!(
        store
            .list_schedulers()
            .await
            .expect("listing schedulers")
            .is_empty(),
        "no scheduler ticked yet"
    );
    for recorded in [
        tick("a:1:00", 1, 0.25, TickOutcome::Succeeded),
        tick("a:1:00", 2, 1.5, TickOutcome::Failed),
        tick("a:1:00", 3, 0.125, TickOutcome::Succeeded),
        tick("b:2:00", 3, 0.5, TickOutcome::Succeeded),
    ] {
        store
            .record_scheduler_tick(&recorded)
            .await
            .expect("recording a tick");
    }
    assert_eq!(
        store.list_schedulers().await.expect("listing schedulers"),
        [
            SchedulerRecord {
                scheduler_id: "a:1:00".to_owned(),
                host: "sched-host".to_owned(),
                started_at: t(0),
                last_tick_at: t(3),
                last_tick_seconds: 0.125,
                ticks: 3,
                tick_seconds_total: 1.875,
                failed_ticks: 1,
            },
            SchedulerRecord {
                scheduler_id: "b:2:00".to_owned(),
                host: "sched-host".to_owned(),
                started_at: t(0),
                last_tick_at: t(3),
                last_tick_seconds: 0.5,
                ticks: 1,
                tick_seconds_total: 0.5,
                failed_ticks: 0,
            },
        ]
    );

    // `a` goes on; `b` has been silent for more than a day and is forgotten
    store
        .record_scheduler_tick(&tick("a:1:00", DAY + 4, 0.25, TickOutcome::Succeeded))
        .await
        .expect("recording a tick a day later");
    let listed = store.list_schedulers().await.expect("listing schedulers");
    let ids: Vec<&str> = listed.iter().map(|s| s.scheduler_id.as_str()).collect();
    assert_eq!(ids, ["a:1:00"], "{listed:?}");
    assert_eq!(listed[0].ticks, 4, "{listed:?}");
}
