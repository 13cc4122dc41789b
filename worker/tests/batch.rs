//! The `batch` step run by a real worker on a SQLite store: a DAG's task reads files with
//! DataFusion and writes its result; outputs, the attempt log and each failure are checked
//! through the store, as a user would see them. (The engine's finer cases are unit tests in
//! `sluice-data`; this binary is the one worker test that links DataFusion.)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use sluice_core::clock::SystemClock;
use sluice_core::{AttemptState, DataInterval, RunType, TaskState, parse_dag};
use sluice_data::arrow::array::{Array, Int64Array, StringArray};
use sluice_data::{FileFormat, read_batches};
use sluice_store::{DagSnapshot, DagSync, NewRun, NewTaskInstance, RunRecord, Store, UNMAPPED};
use sluice_worker::{Worker, WorkerConfig};

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    worker: Arc<Worker>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let store = sluice_store::connect(&url).await.unwrap();
    let mut config = WorkerConfig::new("test-worker", 4);
    config.base_dir = dir.path().to_path_buf();
    config.heartbeat_interval = Duration::from_millis(200);
    let worker = Worker::new(store.clone(), Arc::new(SystemClock), config);
    std::fs::create_dir_all(dir.path().join("data/raw")).unwrap();
    std::fs::write(
        dir.path().join("data/raw/2026-01-01.csv"),
        "region,product,amount\nnorth,apple,10\nsouth,apple,5\nnorth,pear,7\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("data/raw/2026-01-02.csv"),
        "region,product,amount\neast,pear,1\nsouth,pear,2\n",
    )
    .unwrap();
    Fixture { dir, store, worker }
}

/// Stores the DAG and creates a started run of it, as the scheduler would.
async fn start_run(store: &dyn Store, yaml: &str) -> RunRecord {
    let dag = parse_dag("dags/test.yaml", yaml)
        .unwrap_or_else(|e| panic!("test DAG does not parse: {e:?}"));
    let now = Utc::now();
    let snapshot = DagSnapshot {
        dag_id: dag.id.to_string(),
        fileloc: dag.fileloc.clone(),
        hash: dag.hash.clone(),
        source: yaml.to_owned(),
        schedule: None,
        timezone: "UTC".into(),
        description: None,
        tags: vec![],
    };
    store
        .sync_dags(&DagSync {
            dags: vec![snapshot],
            import_errors: vec![],
            now,
        })
        .await
        .unwrap();
    let tasks = dag
        .tasks
        .iter()
        .map(|t| NewTaskInstance {
            task_id: t.id.to_string(),
            map_index: UNMAPPED,
            upstream: t.depends_on.iter().map(ToString::to_string).collect(),
            trigger_rule: t.trigger_rule,
            retry: t.retry.clone(),
            timeout: t.timeout,
            queue: t.queue.clone(),
            pool: None,
            priority: 0,
        })
        .collect();
    let run = NewRun {
        dag_id: dag.id.to_string(),
        run_id: format!("manual__{}", now.to_rfc3339()),
        run_type: RunType::Manual,
        logical_date: now,
        data_interval: DataInterval {
            start: now,
            end: now,
        },
        dag_hash: dag.hash.clone(),
        params: dag.params.clone(),
        triggered_by: "test".into(),
        tasks,
        now,
    };
    let created = store
        .create_run_if_absent(&run)
        .await
        .unwrap()
        .expect("new run");
    store
        .start_queued_runs(dag.id.as_str(), 1, now)
        .await
        .unwrap();
    created
}

/// Claims and executes everything claimable once.
async fn work_once(f: &Fixture) -> usize {
    let claimed = f.worker.claim(10).await.unwrap();
    let n = claimed.len();
    for attempt in claimed {
        f.worker.execute(attempt).await;
    }
    n
}

async fn log(store: &dyn Store, attempt_id: i64) -> String {
    store
        .read_log(attempt_id, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.content)
        .collect()
}

/// Runs a one-task batch DAG and returns the attempt's error (it must fail).
async fn failed_batch(f: &Fixture, step: &str) -> String {
    let yaml = format!("dag: t\ntasks:\n  agg:\n    type: batch\n{step}");
    let run = start_run(f.store.as_ref(), &yaml).await;
    assert_eq!(work_once(f).await, 1);
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Failed);
    let error = attempts[0].error.clone().expect("an error");
    assert!(log(f.store.as_ref(), attempts[0].id).await.contains(&error));
    error
}

/// Every file and folder under `folder`, relative, sorted (the store's files left out).
fn tree(folder: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(folder).unwrap().display().to_string();
            if relative.starts_with("w.db") {
                continue;
            }
            if path.is_dir() {
                pending.push(path.clone());
                found.push(format!("{relative}/"));
            } else {
                found.push(relative);
            }
        }
    }
    found.sort();
    found
}

fn raw_files() -> Vec<String> {
    [
        "data/",
        "data/raw/",
        "data/raw/2026-01-01.csv",
        "data/raw/2026-01-02.csv",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_in_parquet_out_with_outputs_for_downstream_tasks() {
    let f = fixture().await;
    let yaml = "dag: t\nparams: { min: 2 }\ntasks:\n  agg:\n    type: batch\n    inputs:\n      sales: data/raw/2026-01-01.csv\n    sql: |\n      SELECT region, sum(amount) AS total\n      FROM sales WHERE amount >= {{ params.min }}\n      GROUP BY region ORDER BY region\n    output: out/{{ ds }}/totals.parquet\n  report:\n    type: shell\n    depends_on: [agg]\n    command: echo \"rows={{ outputs.agg.rows }} at {{ outputs.agg.output }}\"\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    assert_eq!(work_once(&f).await, 1);
    assert_eq!(work_once(&f).await, 1);
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(
        attempts[0].state,
        AttemptState::Success,
        "{:?}",
        attempts[0].error
    );
    let ds = run.logical_date.format("%Y-%m-%d").to_string();
    let output = f.dir.path().join(format!("out/{ds}/totals.parquet"));

    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(outputs["agg"]["rows"], json!(2));
    assert_eq!(
        outputs["agg"]["output"],
        json!(output.display().to_string())
    );
    assert!(!outputs["agg"].contains_key("files"));
    let report = log(f.store.as_ref(), attempts[1].id).await;
    assert!(
        report.contains(&format!("rows=2 at {}\n", output.display())),
        "{report}"
    );

    let (_, batches) = read_batches(&output, FileFormat::Parquet).unwrap();
    let batch = batches.map(Result::unwrap).next().unwrap();
    let regions = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let totals = batch
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(
        regions.iter().collect::<Vec<_>>(),
        [Some("north"), Some("south")]
    );
    assert_eq!(totals.iter().collect::<Vec<_>>(), [Some(17), Some(5)]);

    let text = log(f.store.as_ref(), attempts[0].id).await;
    let input = f.dir.path().join("data/raw/2026-01-01.csv");
    assert!(
        text.contains(&format!(
            "input `sales`: {} (1 file, CSV)\n",
            input.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "statement 1/1: SELECT region, sum(amount) AS total FROM sales WHERE amount >= 2"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "statement 1/1: 2 rows written to {} in ",
            output.display()
        )),
        "{text}"
    );
    let mut expected = raw_files();
    expected.extend([
        "out/".to_string(),
        format!("out/{ds}/"),
        format!("out/{ds}/totals.parquet"),
    ]);
    assert_eq!(tree(f.dir.path()), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_statements_over_a_glob_into_a_partitioned_folder() {
    let f = fixture().await;
    let yaml = "dag: t\ntasks:\n  agg:\n    type: batch\n    inputs:\n      sales: data/raw/*.csv\n    sql:\n      - CREATE VIEW pears AS SELECT * FROM sales WHERE product = 'pear'\n      - SELECT region, product, amount FROM pears\n    output: out/pears\n    partition_by: [region]\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    assert_eq!(work_once(&f).await, 1);
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(
        attempts[0].state,
        AttemptState::Success,
        "{:?}",
        attempts[0].error
    );
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(outputs["agg"]["rows"], json!(3));
    assert_eq!(outputs["agg"]["files"], json!(3));
    let out = f.dir.path().join("out/pears");
    assert_eq!(outputs["agg"]["output"], json!(out.display().to_string()));
    let folders: Vec<String> = tree(&out)
        .into_iter()
        .filter(|p| p.ends_with('/'))
        .collect();
    assert_eq!(folders, ["region=east/", "region=north/", "region=south/"]);

    let text = log(f.store.as_ref(), attempts[0].id).await;
    let glob = f.dir.path().join("data/raw/*.csv");
    assert!(
        text.contains(&format!(
            "input `sales`: {} (2 files, CSV)\n",
            glob.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("statement 1/2: CREATE VIEW pears AS SELECT"),
        "{text}"
    );
    assert!(
        text.contains("statement 2/2: SELECT region, product, amount FROM pears\n"),
        "{text}"
    );
    assert!(text.contains("statement 2/2: 3 rows written to"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sql_fails_naming_the_statement() {
    let f = fixture().await;
    let error = failed_batch(
        &f,
        "    inputs: { sales: data/raw/*.csv }\n    sql: ['SELECT 1 AS x', 'SELEC region FROM sales']\n    output: out/x.parquet\n",
    )
    .await;
    assert_eq!(
        error,
        "statement 2: SQL error: ParserError(\"Expected: an SQL statement, found: SELEC at Line: 1, Column: 1\")"
    );
    assert_eq!(tree(f.dir.path()), raw_files());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_fails_naming_the_input_and_path() {
    let f = fixture().await;
    let error = failed_batch(
        &f,
        "    inputs: { sales: data/raw/2026-01-01.csv, refunds: data/refunds.csv }\n    sql: SELECT * FROM sales\n    output: out/x.parquet\n",
    )
    .await;
    assert_eq!(
        error,
        format!(
            "input `refunds`: no such file or folder: {}",
            f.dir.path().join("data/refunds.csv").display()
        )
    );
    assert_eq!(tree(f.dir.path()), raw_files());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_the_input_lacks_fails_with_the_schema_error() {
    let f = fixture().await;
    let error = failed_batch(
        &f,
        "    inputs: { sales: data/raw/2026-01-01.csv }\n    sql: SELECT region, price FROM sales\n    output: out/x.parquet\n",
    )
    .await;
    assert_eq!(
        error,
        "statement 1: Schema error: No field named price.\nValid fields are sales.region, sales.product, sales.amount."
    );
    assert_eq!(tree(f.dir.path()), raw_files());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_folder_that_cannot_be_written_fails() {
    let f = fixture().await;
    std::fs::write(
        f.dir.path().join("out"),
        "a file where the folder should be",
    )
    .unwrap();
    let error = failed_batch(
        &f,
        "    inputs: { sales: data/raw/2026-01-01.csv }\n    sql: SELECT * FROM sales\n    output: out/x.parquet\n",
    )
    .await;
    let out = f.dir.path().join("out");
    assert_eq!(
        error,
        format!(
            "writing {}: creating the folder {}: File exists (os error 17)",
            out.join("x.parquet").display(),
            out.display()
        )
    );
    let mut expected = raw_files();
    expected.push("out".into());
    assert_eq!(tree(f.dir.path()), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_run_stops_the_query_and_leaves_nothing() {
    let f = fixture().await;
    let yaml = "dag: t\ntasks:\n  agg:\n    type: batch\n    inputs: { sales: data/raw/*.csv }\n    sql: SELECT sum(a.value * b.value) AS s FROM generate_series(1, 1000000) a, generate_series(1, 1000000) b\n    output: out/never.parquet\n";
    let run = start_run(f.store.as_ref(), yaml).await;
    let claimed = f.worker.claim(1).await.unwrap();
    let worker = f.worker.clone();
    let execution = tokio::spawn(async move {
        for attempt in claimed {
            worker.execute(attempt).await;
        }
    });
    // wait until the statement is running (its line is in the attempt log)
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempts = f.store.attempts(run.pk).await.unwrap();
        if log(f.store.as_ref(), attempts[0].id)
            .await
            .contains("statement 1/1: SELECT")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the statement never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled_at = Instant::now();
    assert!(f.store.cancel_run(run.pk, Utc::now()).await.unwrap());
    execution.await.unwrap();
    assert!(cancelled_at.elapsed() < Duration::from_secs(10));
    let attempts = f.store.attempts(run.pk).await.unwrap();
    assert_eq!(attempts[0].state, AttemptState::Cancelled);
    let tis = f.store.task_instances(run.pk).await.unwrap();
    assert_eq!(tis[0].state, TaskState::Cancelled);
    // the batch thread removes its temp folder once its runtime has stopped
    let deadline = Instant::now() + Duration::from_secs(10);
    while tree(f.dir.path()) != raw_files() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            tree(f.dir.path())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The example in README.md's `batch` section runs as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_runs() {
    let f = fixture().await;
    // the example makes its own data
    std::fs::remove_dir_all(f.dir.path().join("data")).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("```yaml\ndag: batch_example\n")
        .expect("the README's batch example")
        + "```yaml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let run = start_run(f.store.as_ref(), &readme[start..end]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tis = f.store.task_instances(run.pk).await.unwrap();
        if tis.iter().all(|ti| ti.state == TaskState::Success) {
            break;
        }
        assert!(
            tis.iter().all(|ti| ti.state != TaskState::Failed) && Instant::now() < deadline,
            "{:?}",
            f.store.attempts(run.pk).await.unwrap()
        );
        work_once(&f).await;
    }
    let outputs = f.store.run_outputs(run.pk).await.unwrap();
    assert_eq!(outputs["totals"]["rows"], json!(2));
    assert_eq!(outputs["by_day"]["rows"], json!(4));
    assert_eq!(outputs["by_day"]["files"], json!(2));
    let attempts = f.store.attempts(run.pk).await.unwrap();
    let report = attempts.iter().find(|a| a.task_id == "report").unwrap();
    let text = log(f.store.as_ref(), report.id).await;
    let ds = run.logical_date.format("%Y-%m-%d").to_string();
    let totals = f.dir.path().join(format!("out/totals/{ds}.parquet"));
    assert!(
        text.contains(&format!("2 regions in {}, 2 day files\n", totals.display())),
        "{text}"
    );
    let days: Vec<String> = tree(&f.dir.path().join("out/by_day"))
        .into_iter()
        .filter(|p| p.ends_with('/'))
        .collect();
    assert_eq!(days, ["day=2026-01-01/", "day=2026-01-02/"]);
}
