//! Whole DAG files: the shipped examples parse, and a file using every key round-trips into
//! the spec values it means.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_core::parse_dag;
use sluice_core::spec::{
    Backoff, FileFormat, Foreach, IngestSource, LoadMode, Pagination, SensorCondition, SensorMode,
    SignedDuration, Step,
};
use sluice_core::{Dag, Task, TriggerRule};

const FULL: &str = include_str!("fixtures/full.yaml");

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a test timestamp")
        .with_timezone(&Utc)
}

fn full() -> Dag {
    parse_dag("dags/full.yaml", FULL).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("the full fixture does not parse:\n{}", lines.join("\n"))
    })
}

fn task<'a>(dag: &'a Dag, id: &str) -> &'a Task {
    dag.task(id).unwrap_or_else(|| panic!("no task `{id}`"))
}

fn minutes(count: u64) -> Duration {
    Duration::from_secs(count * 60)
}

#[test]
fn every_example_dag_parses() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags");
    let mut parsed = 0;
    for entry in std::fs::read_dir(&folder).expect("the dags folder") {
        let path = entry.expect("a directory entry").path();
        if path
            .extension()
            .is_none_or(|ext| ext != "yaml" && ext != "yml")
        {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("a readable example");
        let file = path.display().to_string();
        let dag = parse_dag(&file, &source).unwrap_or_else(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("{file} does not parse:\n{}", lines.join("\n"))
        });
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("a stem");
        assert_eq!(
            dag.id.as_str(),
            stem,
            "the examples name their DAG after the file"
        );
        assert!(!dag.tasks.is_empty());
        parsed += 1;
    }
    assert!(parsed >= 3, "expected the shipped examples, found {parsed}");
}

#[test]
fn top_level_keys_round_trip() {
    let dag = full();
    assert_eq!(dag.id.as_str(), "full_format");
    assert_eq!(
        dag.description.as_deref(),
        Some("Every key the DAG format knows")
    );
    assert_eq!(
        dag.schedule.as_ref().map(|s| s.expression()),
        Some("0 2 * * *")
    );
    assert_eq!(dag.timezone.name(), "Asia/Seoul");
    // midnight and 23:00 in Seoul (+09:00), stored as UTC
    assert_eq!(dag.start_date, Some(utc("2025-12-31T15:00:00Z")));
    assert_eq!(dag.end_date, Some(utc("2026-12-31T14:00:00Z")));
    assert!(dag.catchup);
    assert_eq!(dag.max_active_runs, 3);
    assert_eq!(dag.tags, ["sales", "nightly"]);
    assert_eq!(dag.params["region"], json!("kr"));
    assert_eq!(dag.params["limit"], json!(100));
    assert_eq!(dag.params["ratio"], json!(0.5));
    assert_eq!(dag.params["dry_run"], json!(false));
    assert_eq!(dag.params["regions"], json!(["kr", "jp"]));
    assert_eq!(dag.params["nested"], json!({ "a": null }));
    assert_eq!(dag.on_failure[0].webhook, "{{ conn.alerts.url }}");
    assert_eq!(dag.on_success.len(), 1);
    assert_eq!(dag.fileloc, "dags/full.yaml");
    assert_eq!(dag.hash.len(), 64);
    let ids: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids[..4],
        ["start", "extract", "count_rows", "ingest_api"],
        "file order"
    );
}

#[test]
fn hash_is_the_sha256_of_the_bytes() {
    let source = "tasks:\n  a:\n    type: noop\n";
    let dag = parse_dag("dags/x.yaml", source).expect("a minimal DAG");
    // `printf 'tasks:\n  a:\n    type: noop\n' | sha256sum`
    assert_eq!(
        dag.hash,
        "932a5015d964d65aefb038ea2a3985a733e1b194dc08602fda2097db0296f699"
    );
    let other = parse_dag("dags/x.yaml", &format!("{source}# changed\n")).expect("still valid");
    assert_ne!(dag.hash, other.hash);
}

#[test]
fn a_minimal_dag_gets_the_documented_defaults() {
    let dag = parse_dag("dags/minimal.yaml", "tasks:\n  a:\n    type: noop\n").expect("valid");
    assert_eq!(dag.id.as_str(), "minimal");
    assert!(dag.schedule.is_none());
    assert_eq!(dag.timezone, chrono_tz::Tz::UTC);
    assert!(!dag.catchup);
    assert_eq!(dag.max_active_runs, 16);
    let a = &dag.tasks[0];
    assert_eq!(a.trigger_rule, TriggerRule::AllSuccess);
    assert_eq!(a.retry.retries, 0);
    assert_eq!(a.retry.delay, Duration::from_secs(30));
    assert_eq!(a.retry.backoff, Backoff::Fixed);
    assert_eq!(a.retry.max_delay, None);
    assert_eq!(a.timeout, None);
    assert_eq!(a.queue, "default");
    assert_eq!(a.pool, None);
    assert_eq!(a.priority, 0);
    assert!(a.foreach.is_none());
    assert!(matches!(a.step, Step::Noop));
}

#[test]
fn tasks_inherit_defaults_and_override_them() {
    let dag = full();
    let start = task(&dag, "start");
    assert_eq!(
        start.description.as_deref(),
        Some("the join point everything hangs off")
    );
    assert_eq!(start.retry.retries, 3);
    assert_eq!(start.retry.delay, Duration::from_secs(30));
    assert_eq!(start.retry.backoff, Backoff::Exponential);
    assert_eq!(start.retry.max_delay, Some(minutes(10)));
    assert_eq!(start.timeout, Some(minutes(60)));
    assert_eq!(start.queue, "etl");
    assert_eq!(start.pool.as_deref(), Some("warehouse"));
    assert_eq!(start.priority, 5);

    assert_eq!(
        task(&dag, "count_rows").retry.retries,
        0,
        "a task's own value wins"
    );
    // `pool: ~` means "not set", so the default applies
    assert_eq!(task(&dag, "train").pool.as_deref(), Some("warehouse"));

    let per_region = task(&dag, "per_region");
    assert_eq!(
        per_region.retry.retries, 1,
        "an explicit key wins over a merged one"
    );
    assert_eq!(per_region.priority, -2);
    assert_eq!(per_region.queue, "reports");
    assert_eq!(per_region.retry.max_delay, Some(minutes(10)));
    let ids: Vec<&str> = per_region.depends_on.iter().map(|id| id.as_str()).collect();
    assert_eq!(
        ids,
        ["wait_upstream", "wait_file", "wait_api", "wait_db", "train"]
    );
    assert!(
        matches!(&per_region.foreach, Some(Foreach::List(items)) if *items == [json!("kr"), json!("jp"), json!("us")])
    );

    let fan_out = task(&dag, "fan_out");
    assert_eq!(fan_out.trigger_rule, TriggerRule::AllDone);
    assert!(
        matches!(&fan_out.foreach, Some(Foreach::Template(t)) if t == "{{ outputs.count_rows.rows }}")
    );
    assert_eq!(
        task(&dag, "extract").depends_on[0].as_str(),
        "start",
        "a single id stands alone"
    );
}

#[test]
fn shell_http_and_sql_steps_round_trip() {
    let dag = full();
    let Step::Shell(shell) = &task(&dag, "per_region").step else {
        panic!("a shell step")
    };
    assert_eq!(
        shell.command,
        "echo \"region {{ item }}\"\n./report.sh {{ ds }}\n"
    );
    assert_eq!(shell.env["REGION"], "{{ item }}");
    assert_eq!(shell.env["LIMIT"], "100");
    assert_eq!(shell.working_dir.as_deref(), Some("/srv/reports"));

    let extract = task(&dag, "extract");
    assert_eq!(extract.timeout, Some(minutes(2)));
    let Step::Http(http) = &extract.step else {
        panic!("an http step")
    };
    assert_eq!(http.url, "https://api.example.com/orders?date={{ ds }}");
    assert_eq!(http.method, "POST");
    assert_eq!(
        http.headers["Authorization"],
        "Bearer {{ conn.api.password }}"
    );
    let body: serde_json::Value =
        serde_json::from_str(http.body.as_deref().expect("a body")).expect("JSON");
    assert_eq!(body, json!({ "date": "{{ ds }}", "limit": 100 }));
    assert_eq!(http.expect_status, [200, 201]);
    assert_eq!(http.timeout, Some(minutes(2)));
    assert_eq!(
        http.save_to.as_deref(),
        Some("data/raw/orders/{{ ds }}.json")
    );
    assert_eq!(http.outputs["count"], "data.total");

    let Step::Sql(sql) = &task(&dag, "count_rows").step else {
        panic!("a sql step")
    };
    assert_eq!(sql.connection, "warehouse");
    assert!(sql.sql.starts_with("SELECT count(*) AS n FROM orders"));
    assert_eq!(sql.outputs, ["n"]);
}

#[test]
fn ingest_steps_round_trip() {
    let dag = full();
    let Step::Ingest(api) = &task(&dag, "ingest_api").step else {
        panic!("an ingest step")
    };
    assert_eq!(api.format, Some(FileFormat::Jsonl));
    assert_eq!(api.destination, "data/raw/events/{{ ds }}.jsonl");
    let IngestSource::Http {
        url,
        headers,
        records_path,
        pagination,
        max_pages,
        retries,
        retry_delay,
    } = &api.source
    else {
        panic!("an http source")
    };
    assert_eq!(url, "https://api.example.com/events");
    assert_eq!(headers["Accept"], "application/json");
    assert_eq!(records_path.as_deref(), Some("data.items"));
    assert_eq!(*max_pages, Some(50));
    assert_eq!(*retries, Some(3));
    assert_eq!(*retry_delay, Some(std::time::Duration::from_secs(2)));
    assert!(
        matches!(pagination, Some(Pagination::Cursor { param, cursor_path }) if param == "after" && cursor_path == "meta.next")
    );

    let Step::Ingest(files) = &task(&dag, "ingest_files").step else {
        panic!("an ingest step")
    };
    assert!(
        matches!(&files.source, IngestSource::Files { glob } if glob == "s3://bucket/drops/{{ ds_nodash }}/*.csv")
    );
    assert_eq!(
        files.format, None,
        "the format is not guessed by the parser"
    );

    let Step::Ingest(db) = &task(&dag, "ingest_db").step else {
        panic!("an ingest step")
    };
    assert!(
        matches!(&db.source, IngestSource::Sql { connection, query } if connection == "crm" && query == "SELECT * FROM customers")
    );
}

#[test]
fn batch_load_and_spark_steps_round_trip() {
    let dag = full();
    let Step::Batch(batch) = &task(&dag, "aggregate").step else {
        panic!("a batch step")
    };
    assert_eq!(batch.inputs["orders"], "data/raw/orders/{{ ds }}.json");
    assert_eq!(batch.inputs["events"], "data/raw/events");
    assert_eq!(batch.sql.len(), 2);
    assert_eq!(batch.output, "data/marts/sales/{{ ds }}.parquet");
    assert_eq!(batch.format, Some(FileFormat::Parquet));
    assert_eq!(batch.partition_by, ["region"]);

    let Step::Load(load) = &task(&dag, "load").step else {
        panic!("a load step")
    };
    assert_eq!(load.from, "data/marts/sales/{{ ds }}.parquet");
    assert_eq!(
        (load.connection.as_str(), load.table.as_str()),
        ("warehouse", "daily_sales")
    );
    assert_eq!(load.mode, LoadMode::Upsert);
    assert_eq!(load.key, ["region", "ds"]);
    assert_eq!(load.format, Some(FileFormat::Parquet));

    let Step::SparkSubmit(spark) = &task(&dag, "train").step else {
        panic!("a spark step")
    };
    assert_eq!(spark.application, "jobs/train.py");
    assert_eq!(spark.master, "local[*]");
    assert_eq!(spark.deploy_mode.as_deref(), Some("cluster"));
    assert_eq!(spark.name.as_deref(), Some("train-{{ ds }}"));
    assert_eq!(spark.conf["spark.executor.memory"], "4g");
    assert_eq!(spark.packages, ["org.apache.spark:spark-avro_2.12:3.5.0"]);
    assert_eq!(spark.py_files, ["jobs/lib.zip"]);
    assert_eq!(spark.args, ["--date", "{{ ds }}"]);
    assert_eq!(spark.spark_home.as_deref(), Some("/opt/spark"));
    assert_eq!(spark.env["PYSPARK_PYTHON"], "python3");
}

#[test]
fn sensors_round_trip_and_keep_their_own_timeout() {
    let dag = full();
    let upstream = task(&dag, "wait_upstream");
    assert_eq!(
        upstream.timeout, None,
        "defaults.timeout does not cut a sensor's wait short"
    );
    let Step::Sensor(sensor) = &upstream.step else {
        panic!("a sensor")
    };
    assert_eq!(sensor.poke_interval, minutes(5));
    assert_eq!(sensor.timeout, minutes(360));
    assert_eq!(sensor.mode, SensorMode::Reschedule);
    let SensorCondition::Task {
        dag: other,
        task: other_task,
        offset,
    } = &sensor.condition
    else {
        panic!("a task condition")
    };
    assert_eq!(
        (other.as_str(), other_task.as_str()),
        ("upstream_dag", "publish")
    );
    assert_eq!(
        *offset,
        SignedDuration {
            negative: true,
            magnitude: minutes(24 * 60)
        }
    );

    let Step::Sensor(file) = &task(&dag, "wait_file").step else {
        panic!("a sensor")
    };
    assert!(
        matches!(&file.condition, SensorCondition::File { path } if path == "/landing/{{ ds }}/_SUCCESS")
    );
    assert_eq!(file.poke_interval, Duration::from_secs(60));
    assert_eq!(file.timeout, minutes(24 * 60));
    assert_eq!(file.mode, SensorMode::Poke);

    let Step::Sensor(api) = &task(&dag, "wait_api").step else {
        panic!("a sensor")
    };
    assert!(
        matches!(&api.condition, SensorCondition::Http { url, expect_status } if url == "https://status.example.com" && *expect_status == [204])
    );

    let Step::Sensor(db) = &task(&dag, "wait_db").step else {
        panic!("a sensor")
    };
    assert!(
        matches!(&db.condition, SensorCondition::Sql { connection, .. } if connection == "warehouse")
    );
}
