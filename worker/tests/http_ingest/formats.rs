//! Each destination format, read back (CSV as text, Parquet through sluice-data).

use serde_json::json;
use sluice_data::arrow::array::{Array, Float64Array, Int64Array, StringArray};
use sluice_data::{FileFormat, read_batches};

use crate::support::{Harness, names_in, run, step};

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn orders(dir: &std::path::Path) {
    write(
        dir,
        "in/a.jsonl",
        "{\"id\": 1, \"amount\": 2.5, \"region\": \"kr\"}\n{\"id\": 2, \"amount\": 4.0, \"region\": \"jp\"}\n",
    );
    write(
        dir,
        "in/b.jsonl",
        "{\"id\": 3, \"amount\": 1.25, \"region\": null}\n",
    );
}

#[tokio::test]
async fn records_are_written_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    orders(dir.path());
    let harness = Harness::new(dir.path(), &[]);
    let step = step("type: ingest\nsource: {files: 'in/*.jsonl'}\ndestination: out/{{ ds }}.csv\n");
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(outputs["rows"], json!(3));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/2024-05-06.csv")).unwrap(),
        "amount,id,region\n2.5,1,kr\n4.0,2,jp\n1.25,3,\n"
    );
    assert_eq!(names_in(&dir.path().join("out")), ["2024-05-06.csv"]);
}

#[tokio::test]
async fn records_are_written_as_parquet_with_inferred_types() {
    let dir = tempfile::tempdir().unwrap();
    orders(dir.path());
    let harness = Harness::new(dir.path(), &[]);
    let step = step(
        "type: ingest\nsource: {files: 'in/*.jsonl'}\ndestination: out/orders.data\nformat: parquet\n",
    );
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(outputs["rows"], json!(3));
    let (schema, batches) =
        read_batches(&dir.path().join("out/orders.data"), FileFormat::Parquet).unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["amount", "id", "region"]);
    let batches: Vec<_> = batches.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let batch = &batches[0];
    let amounts = batch
        .column(0)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    let ids = batch
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let regions = batch
        .column(2)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(amounts.value(0), 2.5);
    assert_eq!(ids.value(2), 3);
    assert_eq!(regions.value(1), "jp");
    assert!(regions.is_null(2));
}

#[tokio::test]
async fn a_single_parquet_file_is_copied_with_its_row_count() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("in/part-0.parquet");
    sluice_data::write_json_records(
        &[json!({"id": 1}), json!({"id": 2})],
        &source,
        FileFormat::Parquet,
    )
    .unwrap();
    let harness = Harness::new(dir.path(), &[]);
    let step =
        step("type: ingest\nsource: {files: 'in/*.parquet'}\ndestination: out/copy.parquet\n");
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(outputs["rows"], json!(2));
    assert_eq!(
        std::fs::read(dir.path().join("out/copy.parquet")).unwrap(),
        std::fs::read(&source).unwrap()
    );
}

#[tokio::test]
async fn a_record_that_is_not_an_object_fails_a_csv_destination_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in/a.jsonl", "{\"id\": 1}\n[1, 2]\n");
    let harness = Harness::new(dir.path(), &[]);
    let step = step("type: ingest\nsource: {files: 'in/*.jsonl'}\ndestination: out/x.csv\n");
    let error = run(&harness, &step).await.unwrap_err();
    assert!(error.contains("record 2 is not a JSON object"), "{error}");
    assert!(names_in(&dir.path().join("out")).is_empty());
}

#[tokio::test]
async fn csv_and_parquet_files_combine_into_parquet_keeping_their_types() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "in/a.csv",
        "id,amount,day\n1,2.5,2024-05-06\n2,4.0,2024-05-06\n",
    );
    sluice_data::write_batches(
        {
            let (schema, _) = read_batches(&dir.path().join("in/a.csv"), FileFormat::Csv).unwrap();
            schema
        },
        read_batches(&dir.path().join("in/a.csv"), FileFormat::Csv)
            .unwrap()
            .1,
        &dir.path().join("in/b.parquet"),
        FileFormat::Parquet,
    )
    .unwrap();
    let mut harness = Harness::new(dir.path(), &[]);
    let step = step("type: ingest\nsource: {files: 'in/*'}\ndestination: out/all.parquet\n");
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(outputs["rows"], json!(4));
    let (schema, batches) =
        read_batches(&dir.path().join("out/all.parquet"), FileFormat::Parquet).unwrap();
    assert_eq!(
        schema
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect::<Vec<_>>(),
        ["Int64", "Float64", "Date32"]
    );
    let total: usize = batches.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(total, 4);
    let log = harness.log();
    assert!(
        log.contains("read 4 rows of (id Int64, amount Float64, day Date32) from 2 files"),
        "{log}"
    );
}

#[tokio::test]
async fn files_of_different_columns_are_not_combined() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in/a.csv", "id,amount\n1,2.5\n");
    write(dir.path(), "in/b.csv", "id,name\n2,two\n");
    let harness = Harness::new(dir.path(), &[]);
    let step = step("type: ingest\nsource: {files: 'in/*.csv'}\ndestination: out/all.csv\n");
    let root = dir.path().display().to_string();
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        format!(
            "`{root}/in/b.csv` has columns (id Int64, name Utf8) but `{root}/in/a.csv` has (id Int64, amount Float64): ingest combines files of one schema only (a `batch` step can reconcile them)"
        )
    );
    assert!(names_in(dir.path()).iter().all(|name| name == "in"));
}
