//! `spark_submit` attempts: real PySpark in `local[2]` (a spark-submit from
//! `SLUICE_TEST_SPARK_SUBMIT`; `.ci/run` installs PySpark and sets it), and the errors that
//! stop an attempt before spark-submit starts. Each Spark test costs a JVM start (~6 s), so
//! there are three of them, on SQLite only: the step does not touch the store itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use sluice_core::{AttemptState, TaskState};

use super::{Backend, fixture, log, start_run, work_once};

/// The spark-submit to test with and its home (for `spark_home`); `None` (after saying so)
/// when it is not configured, a panic under `CI=true`.
fn spark_home() -> Option<PathBuf> {
    let spark_submit = match std::env::var("SLUICE_TEST_SPARK_SUBMIT") {
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "SLUICE_TEST_SPARK_SUBMIT is not set and CI=true: .ci/run installs PySpark and sets it"
        ),
        _ => {
            println!(
                "skipped: SLUICE_TEST_SPARK_SUBMIT is not set (the spark-submit of `pip install pyspark`, e.g. /root/.cache/sluice-pyspark/bin/spark-submit)"
            );
            return None;
        }
    };
    let home = spark_submit
        .parent()
        .and_then(Path::parent)
        .filter(|home| home.join("bin/spark-submit") == spark_submit && spark_submit.is_file())
        .unwrap_or_else(|| {
            panic!(
                "SLUICE_TEST_SPARK_SUBMIT `{}` is not an existing <home>/bin/spark-submit",
                spark_submit.display()
            )
        });
    Some(home.to_path_buf())
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Settings every test job shares: no web UI to start, few shuffle partitions, and a JVM that
/// does not spend its few seconds compiling with C2 (this halves a job's time on a busy CI).
const QUIET_CONF: &str = "      spark.ui.enabled: 'false'\n      spark.sql.shuffle.partitions: '2'\n      spark.driver.extraJavaOptions: '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC'\n";

const COUNT_REGIONS: &str = r#"
import sys
from pyspark.sql import SparkSession, functions as F

source, destination, column = sys.argv[1:4]
spark = SparkSession.builder.getOrCreate()
orders = spark.read.option("header", True).schema(f"{column} STRING, amount INT").csv(source)
totals = orders.groupBy(column).agg(F.sum("amount").alias("total")).orderBy(column)
totals.coalesce(1).write.mode("overwrite").option("header", True).csv(destination)
rows = totals.collect()
for row in rows:
    print(f"region {row[column]} total {row['total']}")
print(f"::output rows={len(rows)}")
spark.stop()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pyspark_job_runs_in_local_mode_with_its_driver_output_logged_and_outputs_stored() {
    let Some(home) = spark_home() else { return };
    let Some(f) = fixture(Backend::Sqlite).await else {
        return;
    };
    let dir = f._dir.path();
    // beside the DAG file (`dags/test.yaml`), not in the base folder
    write(&dir.join("dags/jobs/count_regions.py"), COUNT_REGIONS);
    write(
        &dir.join("data/orders.csv"),
        "region,amount\nkr,1\nus,10\nkr,2\neu,5\nus,20\n",
    );
    let yaml = format!(
        "dag: t\nparams: {{ column: region }}\ntasks:\n  count:\n    type: spark_submit\n    application: jobs/count_regions.py\n    master: local[2]\n    name: 'count-{{{{ dag_id }}}}'\n    spark_home: {}\n    conf:\n{QUIET_CONF}      spark.hadoop.fs.s3a.secret.key: s3cr3t-value\n    args: [data/orders.csv, out/regions, '{{{{ params.column }}}}']\n",
        home.display()
    );
    let run = start_run(f.store.as_ref(), &yaml).await;
    assert_eq!(work_once(&f).await, 1);

    let attempts = f.store.attempts(run.pk).await.unwrap();
    let text = log(f.store.as_ref(), attempts[0].id).await;
    assert_eq!(attempts[0].state, AttemptState::Success, "{text}");
    assert_eq!(attempts[0].exit_code, Some(0));
    for line in [
        "region eu total 5\n",
        "region kr total 3\n",
        "region us total 30\n",
        "[sluice] SPARK_LOCAL_IP=127.0.0.1",
        "--master 'local[2]' --name count-t --conf 'spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC' --conf spark.hadoop.fs.s3a.secret.key=*** ",
        &format!(
            "{} data/orders.csv out/regions region\n",
            dir.join("dags/jobs/count_regions.py").display()
        ),
    ] {
        assert!(text.contains(line), "`{line}` is not in the log:\n{text}");
    }
    assert!(!text.contains("s3cr3t-value"), "{text}");
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(outputs["count"]["rows"], "3");
    let rendered = f.store.rendered_fields(run.pk).await.unwrap();
    assert_eq!(
        rendered[0].fields["conf.spark.hadoop.fs.s3a.secret.key"],
        "***"
    );
    assert_eq!(rendered[0].fields["args.2"], "region");

    let part = std::fs::read_dir(dir.join("out/regions"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "csv"))
        .expect("the job wrote a CSV part file");
    assert_eq!(
        std::fs::read_to_string(part).unwrap(),
        "region,total\neu,5\nkr,3\nus,30\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pyspark_app_fails_the_attempt_with_its_exit_code_and_traceback_in_the_log() {
    let Some(home) = spark_home() else { return };
    let Some(f) = fixture(Backend::Sqlite).await else {
        return;
    };
    // in the base folder; it fails before starting a SparkContext, which keeps the test short
    write(
        &f._dir.path().join("fail.py"),
        "def check(orders):\n    raise ValueError(f'no orders for {orders}')\n\ncheck('2026-01-01')\n",
    );
    let yaml = format!(
        "dag: t\ntasks:\n  fail:\n    type: spark_submit\n    application: fail.py\n    master: local[2]\n    spark_home: {}\n    conf:\n{QUIET_CONF}",
        home.display()
    );
    let run = start_run(f.store.as_ref(), &yaml).await;
    work_once(&f).await;

    let attempts = f.store.attempts(run.pk).await.unwrap();
    let text = log(f.store.as_ref(), attempts[0].id).await;
    assert_eq!(attempts[0].state, AttemptState::Failed, "{text}");
    assert_eq!(attempts[0].exit_code, Some(1));
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("spark-submit exited with code 1 (the driver's output is in the log)")
    );
    assert!(
        text.contains("Traceback (most recent call last):"),
        "{text}"
    );
    assert!(
        text.contains("ValueError: no orders for 2026-01-01\n"),
        "{text}"
    );
    let tis = f.store.task_instances(run.pk).await.unwrap();
    assert_eq!(tis[0].state, TaskState::Failed);
}

/// Writes the driver's and the JVM's pids and process group, then runs a job whose tasks
/// write their own pids (Python workers, outside the group) and sleep.
const SLEEPING_JOB: &str = r#"
import os, sys, time
from pyspark.sql import SparkSession

folder = sys.argv[1]
spark = SparkSession.builder.getOrCreate()
with open(os.path.join(folder, "driver.pids.tmp"), "w") as f:
    f.write(f"{os.getpid()} {os.getppid()} {os.getpgid(0)}\n")
os.rename(os.path.join(folder, "driver.pids.tmp"), os.path.join(folder, "driver.pids"))

def sleep(_):
    with open(os.path.join(folder, f"task.{os.getpid()}.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)

spark.sparkContext.parallelize(range(2), 2).foreach(sleep)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_spark_job_kills_the_jvm_the_driver_and_its_python_workers() {
    let Some(home) = spark_home() else { return };
    let Some(f) = fixture(Backend::Sqlite).await else {
        return;
    };
    let pids = f._dir.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    write(&f._dir.path().join("sleep.py"), SLEEPING_JOB);
    let yaml = format!(
        "dag: t\ntasks:\n  sleep:\n    type: spark_submit\n    application: sleep.py\n    master: local[2]\n    spark_home: {}\n    conf:\n{QUIET_CONF}    args: [{}]\n",
        home.display(),
        pids.display()
    );
    let run = start_run(f.store.as_ref(), &yaml).await;
    let claimed = f.worker.claim(1).await.unwrap();
    let worker = f.worker.clone();
    let execution = tokio::spawn(async move {
        for attempt in claimed {
            worker.execute(attempt).await;
        }
    });

    // the job is running once a task has written its pid
    let deadline = Instant::now() + Duration::from_secs(180);
    let task_pids = loop {
        let task_pids: Vec<i32> = std::fs::read_dir(&pids)
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                name.strip_prefix("task.")?
                    .strip_suffix(".pid")?
                    .parse()
                    .ok()
            })
            .collect();
        if !task_pids.is_empty() && pids.join("driver.pids").exists() {
            break task_pids;
        }
        if execution.is_finished() || Instant::now() > deadline {
            let attempts = f.store.attempts(run.pk).await.unwrap();
            panic!(
                "the Spark job did not start (attempt {:?}):\n{}",
                attempts[0].state,
                log(f.store.as_ref(), attempts[0].id).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let driver = std::fs::read_to_string(pids.join("driver.pids")).unwrap();
    let [driver_pid, jvm_pid, group]: [i32; 3] = driver
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!(
        jvm_pid, group,
        "spark-submit execs the JVM as the group's leader"
    );

    let cancelled_at = Instant::now();
    assert!(f.store.cancel_run(run.pk, Utc::now()).await.unwrap());
    execution.await.unwrap();
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Cancelled);

    // SIGTERM at once, SIGKILL after 5 s: everything is gone well within 15 s
    let deadline = cancelled_at + Duration::from_secs(15);
    loop {
        let mut alive: Vec<String> = [("driver", driver_pid), ("JVM", jvm_pid)]
            .into_iter()
            .chain(task_pids.iter().map(|pid| ("Python worker", *pid)))
            .filter(|(_, pid)| is_alive(*pid))
            .map(|(what, pid)| format!("{what} {pid}"))
            .collect();
        alive.extend(
            members_of_group(group)
                .into_iter()
                .map(|pid| format!("{pid} of group {group}")),
        );
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still alive {:?} after the cancel: {alive:?}",
            cancelled_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Alive and not a zombie (a zombie waits for a parent to reap it; it runs nothing).
fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat_is_zombie(&stat))
}

fn stat_is_zombie(stat: &str) -> bool {
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'))
}

/// Live processes whose process group is `group`.
fn members_of_group(group: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok()?.parse().ok())
        .filter(|pid: &i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // fields after the command: state, ppid, pgrp, …
                let Some((_, rest)) = stat.rsplit_once(") ") else {
                    return false;
                };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.get(2) == Some(&group.to_string().as_str()) && !stat_is_zombie(&stat)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_application_file_fails_before_spark_submit_starts() {
    let Some(f) = fixture(Backend::Sqlite).await else {
        return;
    };
    let dir = f._dir.path();
    let yaml = "dag: t\ntasks:\n  count:\n    type: spark_submit\n    application: jobs/{{ dag_id }}.py\n    spark_home: /nowhere/spark\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_once(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Failed);
    assert_eq!(
        attempts[0].error.clone().unwrap(),
        format!(
            "`application` file `jobs/t.py` was not found in the base folder `{}` nor in the DAG's folder `{}`",
            dir.display(),
            dir.join("dags").display()
        )
    );
    let text = log(f.store.as_ref(), attempts[0].id).await;
    assert!(!text.contains("\n$ "), "nothing was started: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spark_home_without_spark_submit_fails_before_anything_starts() {
    let Some(f) = fixture(Backend::Sqlite).await else {
        return;
    };
    write(&f._dir.path().join("job.py"), "print('never')\n");
    let yaml = "dag: t\ntasks:\n  count:\n    type: spark_submit\n    application: job.py\n    spark_home: /nowhere/spark\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    work_once(&f).await;
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Failed);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some(
            "`spark_home` `/nowhere/spark` has no executable bin/spark-submit: point it at a Spark installation or at a Python environment with PySpark installed"
        )
    );
    let text = log(f.store.as_ref(), attempts[0].id).await;
    assert!(!text.contains("\n$ "), "nothing was started: {text}");
}
