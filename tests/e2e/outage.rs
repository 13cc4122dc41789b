//! PostgreSQL restarted under a running cluster: every process says so, retries, carries on,
//! and nothing is lost or done twice.

use std::time::Duration;

use sluice_core::{AttemptState, RunState};

use crate::cluster::{Cluster, FAST_SCHEDULER};
use crate::own_postgres::OwnPostgres;

const PIPELINE: &str = r#"
dag: pipeline
schedule: null
tasks:
  extract:
    type: shell
    command: sleep 1
  transform:
    type: shell
    depends_on: [extract]
    foreach: [a, b, c, d, e, f]
    command: sleep 1
  load:
    type: shell
    depends_on: [transform]
    command: sleep 1
  report:
    type: noop
    depends_on: [load]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_and_duplicates_nothing() {
    let Some(server) = OwnPostgres::start() else {
        return;
    };
    let mut cluster = Cluster::new(&server.url(), &[("pipeline.yaml", PIPELINE)]).await;
    cluster.spawn("scheduler", FAST_SCHEDULER);
    cluster.worker("worker-1", &["--slots", "4"]);
    cluster.worker("worker-2", &["--slots", "4"]);
    let run = cluster.trigger("pipeline").await;
    cluster.running_attempt(run.pk, "transform").await;

    server.stop();
    // long enough for every process to notice: ticks, claims and heartbeats fail meanwhile
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.restart();

    let run = cluster.finished(run.pk, Duration::from_secs(120)).await;
    assert_eq!(run.state, RunState::Success, "{}", cluster.logs());
    let attempts = cluster
        .store
        .attempts(run.pk)
        .await
        .expect("reading attempts");
    let instances = cluster.store.task_instances(run.pk).await.expect("reading");
    assert_eq!(instances.len(), 9);
    for ti in &instances {
        let tries: Vec<_> = attempts.iter().filter(|a| a.ti_id == ti.id).collect();
        assert_eq!(
            tries.len(),
            1,
            "{}[{}] ran more than once: {tries:?}",
            ti.task_id,
            ti.map_index
        );
        assert_eq!(tries[0].state, AttemptState::Success);
    }
    let runs = cluster.runs("pipeline").await;
    assert_eq!(runs.len(), 1, "one run");
    let logs = cluster.logs();
    for name in ["scheduler", "worker-1", "worker-2"] {
        let said = logs
            .split(&format!("--- {name} ---"))
            .nth(1)
            .and_then(|rest| rest.split("--- ").next())
            .unwrap_or_default();
        assert!(
            said.contains("failed") || said.contains("dropped"),
            "{name} said nothing about the outage:\n{said}"
        );
    }
}
