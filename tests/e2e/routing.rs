//! Queues, pools and logs across separate worker processes on PostgreSQL.

use std::time::Duration;

use sluice_core::RunState;
use sluice_store::testing::fresh_postgres_url;

use crate::cluster::{Cluster, FAST_SCHEDULER};
use crate::support::text;

const ROUTED: &str = r#"
dag: routed
schedule: null
tasks:
  plain:
    type: shell
    command: "true"
  heavy:
    type: shell
    queue: spark
    command: "true"
  loads:
    type: shell
    pool: warehouse
    foreach: [0, 1, 2, 3, 4, 5, 6, 7]
    command: sleep 0.4
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_route_tasks_and_a_pool_caps_them_across_workers() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let mut cluster = Cluster::new(database.url(), &[("routed.yaml", ROUTED)]).await;
    let output = cluster.cli(&["pools", "set", "warehouse", "--slots", "2"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    cluster.spawn("scheduler", FAST_SCHEDULER);
    cluster.worker("default-1", &["--slots", "4"]);
    cluster.worker("default-2", &["--slots", "4"]);
    cluster.worker("spark", &["--queue", "spark", "--slots", "4"]);
    let run = cluster.trigger("routed").await;
    let run = cluster.finished(run.pk, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Success, "{}", cluster.logs());

    let attempts = cluster
        .store
        .attempts(run.pk)
        .await
        .expect("reading attempts");
    let workers = cluster.store.list_workers().await.expect("listing workers");
    let spark_worker = workers
        .iter()
        .find(|w| w.queues == ["spark"])
        .expect("the spark worker reported");
    for attempt in &attempts {
        let on_spark = attempt.worker_id == spark_worker.worker_id;
        assert_eq!(on_spark, attempt.task_id == "heavy", "{attempt:?}");
    }
    // at no moment did more than two `loads` run at once, though eight slots were free. The
    // recorded times are taken just before each transaction, so a claim may carry a time a
    // few milliseconds before the end of the attempt whose slot it took: allow 100 ms (a
    // third task running alongside would overlap by the whole 400 ms).
    let margin = chrono::Duration::milliseconds(100);
    let loads: Vec<_> = attempts.iter().filter(|a| a.task_id == "loads").collect();
    assert_eq!(loads.len(), 8);
    let mut most = 0;
    for a in &loads {
        let overlapping = loads
            .iter()
            .filter(|b| {
                b.started_at <= a.started_at
                    && b.ended_at.is_some_and(|end| end > a.started_at + margin)
            })
            .count();
        most = most.max(overlapping);
    }
    assert_eq!(most, 2, "at most two of the pool ran together: {loads:?}");
    let output = cluster.cli(&["pools", "list"]);
    assert!(
        text(&output.stdout).contains("warehouse"),
        "{}",
        text(&output.stdout)
    );

    let output = cluster.cli(&["pools", "set", "bad name", "--slots", "1"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let output = cluster.cli(&["logs", &run.run_id, "loads"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a mapped task needs --map-index"
    );
    assert!(
        text(&output.stderr).contains("--map-index"),
        "{}",
        text(&output.stderr)
    );
    let output = cluster.cli(&[
        "logs",
        &format!("routed/{}", run.run_id),
        "loads",
        "--map-index",
        "3",
    ]);
    assert!(
        text(&output.stdout).contains("sleep 0.4"),
        "{}",
        text(&output.stdout)
    );
}

const CHATTY: &str = r#"
dag: chatty
schedule: null
tasks:
  talk:
    type: shell
    command: for i in $(seq 1 2000); do echo "line $i of some chatter"; done
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_over_its_cap_keeps_the_tail_and_says_what_was_dropped() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let mut cluster = Cluster::new(database.url(), &[("chatty.yaml", CHATTY)]).await;
    cluster.spawn("scheduler", FAST_SCHEDULER);
    cluster.worker("worker", &["--log-cap-bytes", "4096"]);
    let run = cluster.trigger("chatty").await;
    // --follow prints as the lines come and returns once the attempt ended
    let output = cluster.cli(&["logs", &run.run_id, "talk", "--follow"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let followed = text(&output.stdout);
    assert!(followed.contains("line 2000 of some chatter"), "{followed}");
    let run = cluster.finished(run.pk, Duration::from_secs(10)).await;
    assert_eq!(run.state, RunState::Success);

    let output = cluster.cli(&["logs", &run.run_id, "talk"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let log = text(&output.stdout);
    let first = log.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("[sluice] ") && first.ends_with(" bytes of earlier output dropped"),
        "{first}"
    );
    assert!(
        log.contains("line 2000 of some chatter"),
        "the tail is kept"
    );
    assert!(
        !log.contains("line 1 of some chatter\n"),
        "the head is dropped"
    );
    assert!(
        log.len() < 4096 * 3,
        "about the cap is kept: {} bytes",
        log.len()
    );
}
