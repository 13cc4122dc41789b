//! Separate scheduler, worker and CLI processes on one PostgreSQL database, and what happens
//! when they crash or are stopped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_core::{AttemptState, RunState, TaskState};
use sluice_store::AttemptRecord;
use sluice_store::testing::fresh_postgres_url;

use crate::cluster::{Cluster, FAST_SCHEDULER, alive, pid_in};
use crate::support::{http_client, text};

fn fan_out(dag_id: &str, tasks: usize) -> String {
    let mut yaml = format!("dag: {dag_id}\nschedule: null\ntasks:\n");
    for i in 0..tasks {
        yaml.push_str(&format!("  t{i:03}:\n    type: noop\n"));
    }
    yaml
}

/// Each task instance's attempts, by task id.
fn by_task(attempts: &[AttemptRecord]) -> BTreeMap<String, Vec<&AttemptRecord>> {
    let mut tasks: BTreeMap<String, Vec<&AttemptRecord>> = BTreeMap::new();
    for attempt in attempts {
        tasks
            .entry(attempt.task_id.clone())
            .or_default()
            .push(attempt);
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_run_a_fan_out_of_500_tasks_each_exactly_once() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let mut cluster = Cluster::new(database.url(), &[("wide.yaml", &fan_out("wide", 500))]).await;
    cluster.spawn("scheduler", FAST_SCHEDULER);
    for name in ["worker-1", "worker-2", "worker-3"] {
        cluster.worker(name, &["--slots", "8"]);
    }
    let run = cluster.trigger("wide").await;
    let run = cluster.finished(run.pk, Duration::from_secs(120)).await;
    assert_eq!(run.state, RunState::Success, "{}", cluster.logs());
    let attempts = cluster
        .store
        .attempts(run.pk)
        .await
        .expect("reading attempts");
    let tasks = by_task(&attempts);
    assert_eq!(tasks.len(), 500);
    for (task_id, tries) in &tasks {
        assert_eq!(tries.len(), 1, "{task_id} ran more than once: {tries:?}");
        assert_eq!(
            tries[0].state,
            AttemptState::Success,
            "{task_id}: {tries:?}"
        );
    }

    // every worker reported itself, with its queues and slots
    let output = cluster.cli(&["workers"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert_eq!(table.matches(" alive").count(), 3, "{table}");
    assert!(table.contains("default") && table.contains("/8"), "{table}");
}

const LONG: &str = r#"
dag: long
schedule: null
tasks:
  long:
    type: shell
    retries: 1
    retry_delay: 1s
    command: |
      echo "try $SLUICE_TRY_NUMBER on its way"
      if [ "$SLUICE_TRY_NUMBER" = 1 ]; then echo $$ > long.pid; sleep 60; fi
      echo "finished try $SLUICE_TRY_NUMBER"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_a_zombie_and_its_task_is_retried_on_another() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let mut cluster = Cluster::new(database.url(), &[("long.yaml", LONG)]).await;
    cluster.spawn("scheduler", FAST_SCHEDULER);
    let doomed = cluster.worker("doomed", &["--slots", "2"]);
    let run = cluster.trigger("long").await;
    let first = cluster.running_attempt(run.pk, "long").await;
    let task_pid = pid_in(&cluster, "long.pid").await;
    // lines reach the database in batches (every 200 ms): let the first one land
    let store = cluster.store.clone();
    cluster
        .until(
            "the first line is logged",
            Duration::from_secs(10),
            async || {
                let log: String = store
                    .read_log(first.id, 0)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|c| c.content)
                    .collect();
                if log.contains("on its way") {
                    Ok(())
                } else {
                    Err(log)
                }
            },
        )
        .await;
    cluster.worker("survivor", &["--slots", "2"]);
    cluster.signal(doomed, "-KILL");
    cluster.wait_exit(doomed, Duration::from_secs(5));

    let run = cluster.finished(run.pk, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Success, "{}", cluster.logs());
    let attempts = cluster
        .store
        .attempts(run.pk)
        .await
        .expect("reading attempts");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let (zombie, retry) = (&attempts[0], &attempts[1]);
    assert_eq!((zombie.id, zombie.state), (first.id, AttemptState::Failed));
    let error = zombie.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "worker {} stopped heartbeating at",
            first.worker_id
        )) && error.ends_with("marked as a zombie"),
        "{error}"
    );
    assert_eq!(retry.state, AttemptState::Success);
    assert_ne!(
        retry.worker_id, zombie.worker_id,
        "retried on the other worker"
    );

    // the zombie's reason is in its log, readable from the CLI
    let output = cluster.cli(&["logs", &run.run_id, "long", "--try", "1"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let log = text(&output.stdout);
    assert!(
        log.contains("try 1 on its way") && log.contains("marked as a zombie"),
        "{log}"
    );
    let output = cluster.cli(&["logs", &run.run_id, "long"]);
    assert!(
        text(&output.stdout).contains("finished try 2"),
        "the latest try by default"
    );

    // the dead worker shows as stale
    let output = cluster.cli(&["workers", "--stale-after", "2s"]);
    let table = text(&output.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&first.worker_id) && l.ends_with("stale")),
        "{table}"
    );
    // the orphaned command of the killed worker is not ours to stop, but must not linger here
    let _ = std::process::Command::new("kill")
        .arg(task_pid.to_string())
        .status();
}

const CATCHUP: &str = r#"
dag: history
schedule: "@daily"
timezone: UTC
start_date: START
catchup: true
max_active_runs: 3
tasks:
  extract:
    type: shell
    command: sleep 0.2
  load:
    type: noop
    depends_on: [extract]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_scheduler_leaves_the_other_to_finish_without_duplicates() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let start = (chrono::Utc::now() - chrono::Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    let yaml = CATCHUP.replace("START", &start);
    let mut cluster = Cluster::new(database.url(), &[("history.yaml", &yaml)]).await;
    let first = cluster.spawn("scheduler-1", FAST_SCHEDULER);
    cluster.spawn("scheduler-2", FAST_SCHEDULER);
    cluster.worker("worker", &["--slots", "4"]);
    let store = cluster.store.clone();
    cluster
        .until(
            "a first run succeeds",
            Duration::from_secs(60),
            async || {
                let runs = store
                    .list_runs(&sluice_store::RunFilter {
                        dag_id: Some("history".into()),
                        limit: 100,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                let done = runs.iter().filter(|r| r.state == RunState::Success).count();
                if done >= 1 {
                    Ok(())
                } else {
                    Err(format!("{} runs, none succeeded", runs.len()))
                }
            },
        )
        .await;
    cluster.signal(first, "-KILL");
    let runs = cluster
        .until(
            "all ten runs succeed",
            Duration::from_secs(120),
            async || {
                let runs = store
                    .list_runs(&sluice_store::RunFilter {
                        dag_id: Some("history".into()),
                        limit: 100,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                let done = runs.iter().filter(|r| r.state == RunState::Success).count();
                if done == 10 {
                    Ok(runs)
                } else {
                    Err(format!("{done} of {} runs succeeded", runs.len()))
                }
            },
        )
        .await;
    assert_eq!(runs.len(), 10, "one run per day, none twice");
    for run in &runs {
        let attempts = cluster
            .store
            .attempts(run.pk)
            .await
            .expect("reading attempts");
        for (task_id, tries) in by_task(&attempts) {
            assert_eq!(
                tries.len(),
                1,
                "{} {task_id} ran more than once: {tries:?}",
                run.run_id
            );
        }
        let states: Vec<TaskState> = cluster
            .store
            .task_instances(run.pk)
            .await
            .expect("reading")
            .iter()
            .map(|t| t.state)
            .collect();
        assert_eq!(states, [TaskState::Success, TaskState::Success]);
    }
}

const SLEEPER: &str = r#"
dag: sleeper
schedule: null
tasks:
  nap:
    type: shell
    retries: 1
    retry_delay: 1s
    command: |
      if [ "$SLUICE_TRY_NUMBER" = 1 ]; then echo $$ > nap.pid; sleep NAP; fi
      echo "woke up on try $SLUICE_TRY_NUMBER"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_task_finish_within_the_grace() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let mut cluster = Cluster::new(
        database.url(),
        &[("sleeper.yaml", &SLEEPER.replace("NAP", "2"))],
    )
    .await;
    cluster.spawn("scheduler", FAST_SCHEDULER);
    let worker = cluster.worker("worker", &["--grace", "30s"]);
    let run = cluster.trigger("sleeper").await;
    cluster.running_attempt(run.pk, "nap").await;
    pid_in(&cluster, "nap.pid").await;
    cluster.signal(worker, "-TERM");
    let status = cluster.wait_exit(worker, Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{}", cluster.logs());
    let run = cluster.finished(run.pk, Duration::from_secs(5)).await;
    assert_eq!(run.state, RunState::Success, "{}", cluster.logs());
    let attempts = cluster
        .store
        .attempts(run.pk)
        .await
        .expect("reading attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(
        cluster
            .process(worker)
            .stderr()
            .contains("stopping: no new tasks")
    );
    assert!(
        cluster
            .store
            .list_workers()
            .await
            .expect("listing")
            .is_empty(),
        "it left the list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_grace_kills_the_task_and_hands_it_back_for_retry() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let mut cluster = Cluster::new(
        database.url(),
        &[("sleeper.yaml", &SLEEPER.replace("NAP", "60"))],
    )
    .await;
    cluster.spawn("scheduler", FAST_SCHEDULER);
    let worker = cluster.worker("worker", &["--grace", "1s"]);
    let run = cluster.trigger("sleeper").await;
    cluster.running_attempt(run.pk, "nap").await;
    let task_pid = pid_in(&cluster, "nap.pid").await;
    let signalled = Instant::now();
    cluster.signal(worker, "-TERM");
    let status = cluster.wait_exit(worker, Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", cluster.logs());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(!alive(task_pid), "the task's process was killed");
    let attempts = cluster
        .store
        .attempts(run.pk)
        .await
        .expect("reading attempts");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].state, AttemptState::Failed);
    let error = attempts[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("shut down and its grace period of 1s ran out"),
        "{error}"
    );
    let ti = &cluster.store.task_instances(run.pk).await.expect("reading")[0];
    assert_eq!(ti.state, TaskState::UpForRetry);

    cluster.worker("replacement", &[]);
    let run = cluster.finished(run.pk, Duration::from_secs(30)).await;
    assert_eq!(run.state, RunState::Success, "{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_kills_its_task_on_the_worker_within_a_second() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let mut cluster = Cluster::new(
        database.url(),
        &[("sleeper.yaml", &SLEEPER.replace("NAP", "60"))],
    )
    .await;
    // a heartbeat far slower than the deadline: the cancel must not wait for it (and the
    // scheduler must not take the quiet attempt for a zombie meanwhile)
    cluster.spawn("scheduler", &["scheduler", "--tick-interval", "200ms"]);
    cluster.spawn("worker", &["worker", "--heartbeat-interval", "30s"]);
    let run = cluster.trigger("sleeper").await;
    cluster.running_attempt(run.pk, "nap").await;
    let task_pid = pid_in(&cluster, "nap.pid").await;

    let output = cluster.cli(&["runs", "cancel", &run.run_id]);
    let cancelled = Instant::now();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("cancelled run"),
        "{}",
        text(&output.stdout)
    );
    while alive(task_pid) {
        assert!(
            cancelled.elapsed() < Duration::from_secs(1),
            "the task still runs {:?} after the cancel\n{}",
            cancelled.elapsed(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = cluster
        .store
        .get_run_by_pk(run.pk)
        .await
        .expect("reading")
        .expect("the run");
    assert_eq!(run.state, RunState::Cancelled);

    let output = cluster.cli(&["runs", "cancel", &run.run_id]);
    assert!(
        text(&output.stdout).contains("already ended (cancelled)"),
        "{}",
        text(&output.stdout)
    );
    let output = cluster.cli(&["runs", "cancel", "no_such_run"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    // the run as `DAG RUN_ID` and `DAG/RUN_ID`, as `runs show` takes it
    let output = cluster.cli(&["runs", "cancel", "sleeper", &run.run_id]);
    assert!(
        text(&output.stdout).contains("already ended"),
        "{}",
        text(&output.stderr)
    );
    let output = cluster.cli(&["runs", "cancel", &format!("sleeper/{}", run.run_id)]);
    assert!(
        text(&output.stdout).contains("already ended"),
        "{}",
        text(&output.stderr)
    );
    let output = cluster.cli(&["runs", "cancel", "other_dag", &run.run_id]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_scheduler_serve_the_cluster_and_stop_cleanly_on_sigterm() {
    let Some(database) = fresh_postgres_url().await else {
        return;
    };
    let mut cluster = Cluster::new(database.url(), &[("wide.yaml", &fan_out("wide", 3))]).await;
    let scheduler = cluster.spawn("scheduler", FAST_SCHEDULER);
    let web = cluster.spawn("web", &["web", "--port", "0"]);
    cluster.worker("worker", &[]);
    let run = cluster.trigger("wide").await;
    let run = cluster.finished(run.pk, Duration::from_secs(30)).await;
    assert_eq!(run.state, RunState::Success);
    let base_url = cluster
        .until(
            "the web process says where it listens",
            Duration::from_secs(30),
            async || {
                let said = cluster.process(web).stderr();
                said.split("web UI on ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(|url| url.trim_end_matches('/').to_owned())
                    .ok_or(said)
            },
        )
        .await;
    // the web process reads what the scheduler and workers wrote (through the API: pages
    // need a login)
    let created = cluster.cli(&["tokens", "create", "scale-out", "--role", "viewer"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let page = http_client()
        .build()
        .expect("an HTTP client")
        .get(format!("{base_url}/api/v1/dags/wide/runs"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("fetching the DAG's runs");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("a body").contains(&run.run_id));

    for index in [web, scheduler] {
        cluster.signal(index, "-TERM");
        let status = cluster.wait_exit(index, Duration::from_secs(10));
        assert!(status.success(), "{status:?}\n{}", cluster.logs());
    }
    assert!(
        cluster
            .process(scheduler)
            .stderr()
            .contains("sluice scheduler: stopped")
    );
}
