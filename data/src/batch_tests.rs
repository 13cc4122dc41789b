use std::fs;
use std::sync::Mutex;

use datafusion::arrow::json::ArrayWriter;
use serde_json::{Value, json};

use super::*;
use crate::{read_batches, write_json_records};

/// Runs a job, returning its result and its log lines.
fn run(job: BatchJob) -> (Result<BatchSummary, DataError>, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let log: LogFn = Arc::new(move |line| sink.lock().expect("log").push(line));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(run_batch(job, log, CancellationToken::new()));
    let lines = lines.lock().expect("log").clone();
    (result, lines)
}

fn job(inputs: &[(&str, PathBuf)], sql: &[&str], output: PathBuf) -> BatchJob {
    BatchJob {
        inputs: inputs
            .iter()
            .map(|(name, path)| (name.to_string(), path.clone()))
            .collect(),
        sql: sql.iter().map(|s| s.to_string()).collect(),
        output,
        format: None,
        partition_by: Vec::new(),
        threads: Some(2),
    }
}

/// A file (any format) as JSON objects.
fn rows_of(path: &Path, format: FileFormat) -> Vec<Value> {
    let (_, batches) = read_batches(path, format).expect("readable");
    let mut writer = ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(&batch.expect("a batch")).expect("json");
    }
    writer.finish().expect("json");
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Vec::new();
    }
    serde_json::from_slice(&bytes).expect("json array")
}

fn names_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(folder)
        .expect("folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sales_csv(folder: &Path) -> PathBuf {
    let path = folder.join("sales.csv");
    fs::write(
        &path,
        "region,product,amount\nnorth,apple,10\nsouth,apple,5\nnorth,pear,7\neast,pear,1\nsouth,pear,2\n",
    )
    .expect("write");
    path
}

#[test]
fn csv_in_parquet_out() {
    let dir = tempfile::tempdir().unwrap();
    let input = sales_csv(dir.path());
    let output = dir.path().join("out/totals.parquet");
    let (result, log) = run(job(
        &[("sales", input.clone())],
        &[
            "SELECT region, sum(amount) AS total, count(*) AS n FROM sales GROUP BY region ORDER BY region",
        ],
        output.clone(),
    ));
    let summary = result.unwrap();
    assert_eq!(
        summary,
        BatchSummary {
            rows: 3,
            output: output.clone(),
            files: None
        }
    );
    assert_eq!(
        rows_of(&output, FileFormat::Parquet),
        [
            json!({"region": "east", "total": 1, "n": 1}),
            json!({"region": "north", "total": 17, "n": 2}),
            json!({"region": "south", "total": 7, "n": 2}),
        ]
    );
    assert_eq!(names_in(&dir.path().join("out")), ["totals.parquet"]);
    assert_eq!(
        log[0],
        format!("input `sales`: {} (1 file, CSV)", input.display())
    );
    assert!(
        log[1].starts_with("statement 1/1: SELECT region, sum(amount)"),
        "{log:?}"
    );
    assert!(
        log[2].starts_with(&format!(
            "statement 1/1: 3 rows written to {} in ",
            output.display()
        )),
        "{log:?}"
    );
}

#[test]
fn several_statements_run_in_order_and_the_last_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = sales_csv(dir.path());
    let output = dir.path().join("apples.csv");
    let (result, log) = run(job(
        &[("sales", input)],
        &[
            "CREATE VIEW apples AS SELECT * FROM sales WHERE product = 'apple'",
            "CREATE TABLE big AS SELECT * FROM apples WHERE amount > 6; SELECT 1 AS probe",
            "SELECT region, amount FROM big UNION ALL SELECT 'all', sum(amount) FROM apples ORDER BY region",
        ],
        output.clone(),
    ));
    assert_eq!(result.unwrap().rows, 2);
    assert_eq!(
        fs::read_to_string(&output).unwrap(),
        "region,amount\nall,15\nnorth,10\n"
    );
    let statements: Vec<&String> = log.iter().filter(|l| l.starts_with("statement")).collect();
    assert!(
        statements[0].starts_with("statement 1/4: CREATE VIEW apples"),
        "{log:?}"
    );
    assert!(
        statements[1].starts_with("statement 1/4: done in "),
        "{log:?}"
    );
    assert!(
        statements[2].starts_with("statement 2/4: CREATE TABLE big"),
        "{log:?}"
    );
    assert!(
        statements[4].starts_with("statement 3/4: SELECT 1 AS probe"),
        "{log:?}"
    );
    assert!(
        statements[5].starts_with(
            "statement 3/4: 1 rows (not written: only the last statement's result is)"
        ),
        "{log:?}"
    );
    assert!(
        statements[6].starts_with("statement 4/4: SELECT region"),
        "{log:?}"
    );
}

#[test]
fn a_glob_reads_every_matching_file() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("data/raw");
    fs::create_dir_all(&raw).unwrap();
    fs::write(raw.join("a.csv"), "id,v\n1,10\n2,20\n").unwrap();
    fs::write(raw.join("b.csv"), "id,v\n3,30\n").unwrap();
    fs::write(raw.join("notes.txt"), "not data").unwrap();
    let output = dir.path().join("sum.jsonl");
    let (result, log) = run(job(
        &[("raw", raw.join("*.csv"))],
        &["SELECT count(*) AS n, sum(v) AS total FROM raw"],
        output.clone(),
    ));
    assert_eq!(result.unwrap().rows, 1);
    assert_eq!(
        fs::read_to_string(&output).unwrap(),
        "{\"n\":3,\"total\":60}\n"
    );
    assert_eq!(
        log[0],
        format!(
            "input `raw`: {} (2 files, CSV)",
            raw.join("*.csv").display()
        )
    );
}

#[test]
fn a_hive_partitioned_folder_gives_its_partition_column() {
    let dir = tempfile::tempdir().unwrap();
    let sales = dir.path().join("sales");
    write_json_records(
        &[json!({"amount": 1}), json!({"amount": 2})],
        &sales.join("date=2026-01-01/part-0.parquet"),
        FileFormat::Parquet,
    )
    .unwrap();
    write_json_records(
        &[json!({"amount": 10})],
        &sales.join("date=2026-01-02/part-0.parquet"),
        FileFormat::Parquet,
    )
    .unwrap();
    let output = dir.path().join("daily.parquet");
    let (result, log) = run(job(
        &[("sales", sales.clone())],
        &["SELECT date, sum(amount) AS total FROM sales GROUP BY date ORDER BY date"],
        output.clone(),
    ));
    assert_eq!(result.unwrap().rows, 2);
    assert_eq!(
        rows_of(&output, FileFormat::Parquet),
        [
            json!({"date": "2026-01-01", "total": 3}),
            json!({"date": "2026-01-02", "total": 10}),
        ]
    );
    assert_eq!(
        log[0],
        format!(
            "input `sales`: {} (2 files, Parquet, partitioned by date)",
            sales.display()
        )
    );
}

#[test]
fn json_lines_inputs_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    fs::write(
        &input,
        "{\"kind\":\"a\",\"n\":1}\n{\"kind\":\"b\",\"n\":2}\n{\"kind\":\"a\",\"n\":3}\n",
    )
    .unwrap();
    let output = dir.path().join("kinds.csv");
    let (result, _) = run(job(
        &[("events", input)],
        &["SELECT kind, sum(n) AS n FROM events GROUP BY kind ORDER BY kind"],
        output.clone(),
    ));
    assert_eq!(result.unwrap().rows, 2);
    assert_eq!(fs::read_to_string(&output).unwrap(), "kind,n\na,4\nb,2\n");
}

#[test]
fn a_partitioned_output_is_a_folder_of_hive_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let input = sales_csv(dir.path());
    let output = dir.path().join("by_region");
    let mut partitioned = job(
        &[("sales", input)],
        &["SELECT region, product, amount FROM sales"],
        output.clone(),
    );
    partitioned.partition_by = vec!["region".into()];
    let (result, _) = run(partitioned.clone());
    let summary = result.unwrap();
    assert_eq!(summary.rows, 5);
    assert_eq!(summary.files, Some(3));
    assert_eq!(
        names_in(&output),
        ["region=east", "region=north", "region=south"]
    );
    let north: Vec<PathBuf> = fs::read_dir(output.join("region=north"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(north.len(), 1);
    assert!(
        north[0].extension().is_some_and(|e| e == "parquet"),
        "{north:?}"
    );
    let mut rows = rows_of(&north[0], FileFormat::Parquet);
    rows.sort_by_key(|r| r["product"].to_string());
    assert_eq!(
        rows,
        [
            json!({"product": "apple", "amount": 10}),
            json!({"product": "pear", "amount": 7})
        ]
    );

    // a rerun replaces the earlier output whole, leaving nothing beside it
    partitioned.sql = vec!["SELECT region, amount FROM sales WHERE region = 'east'".into()];
    let (result, _) = run(partitioned);
    assert_eq!(result.unwrap().files, Some(1));
    assert_eq!(names_in(&output), ["region=east"]);
    assert_eq!(names_in(dir.path()), ["by_region", "sales.csv"]);
}

#[test]
fn a_rerun_replaces_an_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("one.csv");
    fs::write(&output, "old\n").unwrap();
    let (result, _) = run(job(&[], &["SELECT 1 AS x"], output.clone()));
    assert_eq!(result.unwrap().rows, 1);
    assert_eq!(fs::read_to_string(&output).unwrap(), "x\n1\n");
    assert_eq!(names_in(dir.path()), ["one.csv"]);
}

#[test]
fn bad_sql_names_the_statement() {
    let dir = tempfile::tempdir().unwrap();
    let input = sales_csv(dir.path());
    let output = dir.path().join("out.parquet");
    let (result, _) = run(job(
        &[("sales", input)],
        &[
            "CREATE VIEW v AS SELECT * FROM sales",
            "SELEC region FROM v",
        ],
        output,
    ));
    assert_eq!(
        result.unwrap_err().to_string(),
        "statement 2: SQL error: ParserError(\"Expected: an SQL statement, found: SELEC at Line: 1, Column: 1\")"
    );
    assert_eq!(names_in(dir.path()), ["sales.csv"]);
}

#[test]
fn a_missing_input_names_the_input_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.csv");
    let (result, _) = run(job(
        &[("sales", absent.clone())],
        &["SELECT * FROM sales"],
        dir.path().join("out.parquet"),
    ));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "input `sales`: no such file or folder: {}",
            absent.display()
        )
    );
    let (result, _) = run(job(
        &[("sales", dir.path().join("*.csv"))],
        &["SELECT * FROM sales"],
        dir.path().join("out.parquet"),
    ));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "input `sales`: no file matches: {}",
            dir.path().join("*.csv").display()
        )
    );
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (result, _) = run(job(
        &[("sales", empty.clone())],
        &["SELECT * FROM sales"],
        dir.path().join("out.parquet"),
    ));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "input `sales`: the folder holds no .csv, .jsonl, .json, .ndjson or .parquet file: {}",
            empty.display()
        )
    );
    assert_eq!(names_in(dir.path()), ["empty"]);
}

#[test]
fn a_column_the_input_lacks_is_a_schema_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = sales_csv(dir.path());
    let (result, _) = run(job(
        &[("sales", input)],
        &["SELECT region, price FROM sales"],
        dir.path().join("out.parquet"),
    ));
    assert_eq!(
        result.unwrap_err().to_string(),
        "statement 1: Schema error: No field named price.\nValid fields are sales.region, sales.product, sales.amount."
    );
    assert_eq!(names_in(dir.path()), ["sales.csv"]);
}

#[test]
fn an_output_that_cannot_be_written_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = sales_csv(dir.path());
    let blocker = dir.path().join("blocked");
    fs::write(&blocker, "a file where a folder should be").unwrap();
    let output = blocker.join("out.parquet");
    let (result, _) = run(job(
        &[("sales", input)],
        &["SELECT * FROM sales"],
        output.clone(),
    ));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "writing {}: creating the folder {}: File exists (os error 17)",
            output.display(),
            blocker.display()
        )
    );
    assert_eq!(names_in(dir.path()), ["blocked", "sales.csv"]);
}

#[test]
fn a_failure_while_writing_leaves_no_output_and_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    // the schema is inferred as integers; the last row only fails when it is read
    let mut text = String::from("n\n");
    for i in 0..5000 {
        text.push_str(&format!("{i}\n"));
    }
    text.push_str("oops\n");
    fs::write(&input, text).unwrap();
    let output = dir.path().join("out.parquet");
    let (result, _) = run(job(&[("t", input)], &["SELECT n * 2 AS m FROM t"], output));
    let error = result.unwrap_err().to_string();
    assert!(error.starts_with("statement 1: "), "{error}");
    assert!(error.contains("oops"), "{error}");
    assert_eq!(names_in(dir.path()), ["bad.csv"]);
}

#[test]
fn the_last_statement_must_be_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = run(job(
        &[],
        &["CREATE VIEW v AS SELECT 1 AS x"],
        dir.path().join("out.parquet"),
    ));
    assert_eq!(
        result.unwrap_err().to_string(),
        "statement 1: the last statement must be a query (SELECT …): its result is written to `output`"
    );
    let (result, _) = run(job(&[], &[" ; "], dir.path().join("out.parquet")));
    assert_eq!(result.unwrap_err().to_string(), "`sql` holds no statement");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn an_output_without_a_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.txt");
    let (result, _) = run(job(&[], &["SELECT 1 AS x"], output.clone()));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "cannot tell the format of {}: use a .csv, .jsonl (or .json, .ndjson) or .parquet name, or set `format:`",
            output.display()
        )
    );
    let mut told = job(&[], &["SELECT 1 AS x"], output.clone());
    told.format = Some(FileFormat::Csv);
    assert_eq!(run(told).0.unwrap().rows, 1);
    assert_eq!(fs::read_to_string(&output).unwrap(), "x\n1\n");
}

#[test]
fn cancel_stops_a_long_query_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.parquet");
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    // cancel as soon as the (endless) statement is announced
    let log: LogFn = Arc::new(move |line: String| {
        if line.starts_with("statement 1/1: SELECT") {
            trigger.cancel();
        }
    });
    let long = job(
        &[],
        &[
            "SELECT sum(a.value * b.value) AS s FROM generate_series(1, 1000000) a, generate_series(1, 1000000) b",
        ],
        output,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let result = runtime.block_on(run_batch(long, log, cancel));
    assert_eq!(result.unwrap_err().to_string(), "cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(names_in(dir.path()).is_empty());
}
