//! `type: ingest` from files matched by a glob.

use serde_json::json;

use crate::support::{Harness, names_in, read_jsonl, run, step};

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_local_glob_concatenates_jsonl_and_csv_files_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "drops/2024-05-06/a.jsonl",
        "{\"id\": 1}\n\n{\"id\": 2}\n",
    );
    write(
        dir.path(),
        "drops/2024-05-06/b.csv",
        "id,name\n3,three\n4,\n",
    );
    write(dir.path(), "drops/2024-05-06/notes.txt", "not matched");
    write(dir.path(), "drops/2024-05-05/c.jsonl", "{\"id\": 0}\n");
    let mut harness = Harness::new(dir.path(), &[]);
    let braces = step(
        "type: ingest\nsource: {files: 'drops/{{ ds }}/*.{jsonl,csv}'}\ndestination: out/all.jsonl\n",
    );
    assert_eq!(
        run(&harness, &braces).await.unwrap_err(),
        "`source.files` `drops/2024-05-06/*.{jsonl,csv}`: braces (`{a,b}`) are not supported; match several names with `*`, `?` or `[ab]`"
    );

    let step = step(
        "type: ingest\nsource: {files: 'drops/{{ ds }}/[ab].*'}\ndestination: out/all.jsonl\n",
    );
    let outputs = run(&harness, &step).await.unwrap();
    let records = read_jsonl(&dir.path().join("out/all.jsonl"));
    assert_eq!(
        records,
        [
            json!({"id": 1}),
            json!({"id": 2}),
            json!({"id": "3", "name": "three"}),
            json!({"id": "4", "name": null}),
        ]
    );
    assert_eq!(outputs["rows"], json!(4));
    assert_eq!(outputs["files"], json!(2));
    let log = harness.log();
    assert!(log.contains("2 files match"), "{log}");
}

#[tokio::test]
async fn a_file_url_glob_reads_through_object_store() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in/x-1.jsonl", "{\"id\": 1}\n");
    write(dir.path(), "in/x-2.jsonl", "{\"id\": 2}\n");
    write(dir.path(), "in/deeper/x-3.jsonl", "{\"id\": 3}\n");
    let harness = Harness::new(dir.path(), &[]);
    let glob = format!("file://{}/in/x-*.jsonl", dir.path().display());
    let step = step(&format!(
        "type: ingest\nsource: {{files: '{glob}'}}\ndestination: out.jsonl\n"
    ));
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(
        read_jsonl(&dir.path().join("out.jsonl")),
        [json!({"id": 1}), json!({"id": 2})],
        "`*` does not cross folders"
    );
    assert_eq!(outputs["rows"], json!(2));
}

#[tokio::test]
async fn a_single_file_of_the_destination_format_is_copied_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let original = "id,amount\n1,2.50\n2,003\n";
    write(dir.path(), "in/orders.csv", original);
    let harness = Harness::new(dir.path(), &[]);
    let step = step("type: ingest\nsource: {files: in/orders.csv}\ndestination: out/orders.csv\n");
    let outputs = run(&harness, &step).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/orders.csv")).unwrap(),
        original
    );
    assert_eq!(outputs["rows"], json!(2));
}

#[tokio::test]
async fn a_glob_that_matches_nothing_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::new(dir.path(), &[]);
    let step =
        step("type: ingest\nsource: {files: 'missing/{{ ds }}/*.csv'}\ndestination: out.jsonl\n");
    assert_eq!(
        run(&harness, &step).await.unwrap_err(),
        "no file matches `source.files` `missing/2024-05-06/*.csv`"
    );
    assert!(names_in(dir.path()).is_empty());
}

#[tokio::test]
async fn a_bad_line_fails_the_step_and_leaves_no_destination() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in/a.jsonl", "{\"id\": 1}\n");
    write(dir.path(), "in/b.jsonl", "{\"id\": 2}\n{oops\n");
    let harness = Harness::new(dir.path(), &[]);
    let step = step("type: ingest\nsource: {files: 'in/*.jsonl'}\ndestination: out/all.jsonl\n");
    let error = run(&harness, &step).await.unwrap_err();
    assert!(
        error.starts_with(&format!(
            "`/{}/in/b.jsonl` line 2: not JSON: ",
            dir.path().display().to_string().trim_start_matches('/')
        )),
        "{error}"
    );
    assert!(!dir.path().join("out").exists());
}

/// Objects of a fake S3 bucket `drops`: key → body.
const OBJECTS: &[(&str, &str)] = &[
    ("2024-05-06/a.jsonl", "{\"id\": 1}\n"),
    ("2024-05-06/b.jsonl", "{\"id\": 2}\n"),
    ("2024-05-06/skip.csv", "id\n9\n"),
    ("2024-05-05/a.jsonl", "{\"id\": 0}\n"),
];

/// `object_store` reads S3 settings from `AWS_*` variables only, and tests may not set
/// variables in their own process: the test runs itself again with them, against a fake S3.
#[tokio::test]
async fn an_s3_glob_lists_and_reads_objects_through_object_store() {
    const CHILD: &str = "SLUICE_TEST_FAKE_S3_CHILD";
    if std::env::var(CHILD).is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::new(dir.path(), &[]);
        let step = step(
            "type: ingest\nsource: {files: 's3://drops/{{ ds }}/*.jsonl'}\ndestination: out.jsonl\n",
        );
        let outputs = run(&harness, &step).await.unwrap();
        assert_eq!(
            read_jsonl(&dir.path().join("out.jsonl")),
            [json!({"id": 1}), json!({"id": 2})]
        );
        assert_eq!(outputs["files"], json!(2));
        return;
    }
    let endpoint = crate::fake_s3::serve(OBJECTS).await;
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "ingest_files::an_s3_glob_lists_and_reads_objects_through_object_store",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .envs(crate::fake_s3::child_env(&endpoint))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
