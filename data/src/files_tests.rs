use std::path::Path;

use datafusion::arrow::json::ArrayWriter;
use serde_json::{Value, json};

use super::*;

fn records() -> Vec<Value> {
    vec![
        json!({"id": 1, "name": "ada", "score": 1.5, "ok": true, "tags": ["a", "b"]}),
        json!({"id": 2, "name": "grace", "score": 2.0, "ok": false, "tags": []}),
        json!({"id": 3, "name": null, "score": 3.25, "ok": true, "tags": ["c"]}),
    ]
}

/// Reads a file back as JSON objects (nulls left out, as Arrow's JSON writer does).
fn read_back(path: &Path, format: FileFormat) -> (SchemaRef, Vec<Value>) {
    let (schema, batches) = read_batches(path, format).expect("readable");
    let mut writer = ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(&batch.expect("a batch")).expect("json");
    }
    writer.finish().expect("json");
    let bytes = writer.into_inner();
    let rows = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice::<Vec<Value>>(&bytes).expect("json array")
    };
    (schema, rows)
}

fn names_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(folder)
        .expect("folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn format_for_reads_the_extension_unless_told() {
    for (name, format) in [
        ("a.csv", FileFormat::Csv),
        ("a.CSV", FileFormat::Csv),
        ("a.jsonl", FileFormat::Jsonl),
        ("a.ndjson", FileFormat::Jsonl),
        ("a.json", FileFormat::Jsonl),
        ("dir/a.parquet", FileFormat::Parquet),
        ("a.pq", FileFormat::Parquet),
    ] {
        assert_eq!(format_for(Path::new(name), None).unwrap(), format, "{name}");
    }
    assert_eq!(
        format_for(Path::new("out/day.txt"), Some(FileFormat::Csv)).unwrap(),
        FileFormat::Csv
    );
    assert_eq!(
        format_for(Path::new("a.csv"), Some(FileFormat::Parquet)).unwrap(),
        FileFormat::Parquet
    );
}

#[test]
fn an_unknown_extension_is_an_error_naming_the_path() {
    let error = format_for(Path::new("out/day.txt"), None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot tell the format of out/day.txt: use a .csv, .jsonl (or .json, .ndjson) or .parquet name, or set `format:`"
    );
    let error = format_for(Path::new("out/noextension"), None).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot tell the format of out/noextension:")
    );
}

#[test]
fn jsonl_is_written_as_is_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("new/folder/out.jsonl");
    let summary = write_json_records(&records(), &dest, FileFormat::Jsonl).unwrap();
    assert_eq!(summary.rows, 3);
    assert_eq!(summary.path, dest);
    let text = fs::read_to_string(&dest).unwrap();
    assert_eq!(summary.bytes, text.len() as u64);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, records());

    let (schema, rows) = read_back(&dest, FileFormat::Jsonl);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    // serde_json keeps an object's keys sorted, so columns come in name order
    assert_eq!(names, ["id", "name", "ok", "score", "tags"]);
    assert_eq!(rows[0], records()[0]);
    assert_eq!(
        rows[2],
        json!({"id": 3, "score": 3.25, "ok": true, "tags": ["c"]})
    );
}

#[test]
fn csv_goes_through_arrow_with_nested_values_as_json_text() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.csv");
    let summary = write_json_records(&records(), &dest, FileFormat::Csv).unwrap();
    assert_eq!(summary.rows, 3);
    let text = fs::read_to_string(&dest).unwrap();
    assert_eq!(summary.bytes, text.len() as u64);
    assert_eq!(
        text,
        "id,name,ok,score,tags\n\
         1,ada,true,1.5,\"[\"\"a\"\",\"\"b\"\"]\"\n\
         2,grace,false,2.0,[]\n\
         3,,true,3.25,\"[\"\"c\"\"]\"\n"
    );

    let (schema, rows) = read_back(&dest, FileFormat::Csv);
    use datafusion::arrow::datatypes::DataType;
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        [
            &DataType::Int64,
            &DataType::Utf8,
            &DataType::Boolean,
            &DataType::Float64,
            &DataType::Utf8
        ]
    );
    assert_eq!(
        rows[0],
        json!({"id": 1, "name": "ada", "score": 1.5, "ok": true, "tags": "[\"a\",\"b\"]"})
    );
    assert_eq!(
        rows[2],
        json!({"id": 3, "score": 3.25, "ok": true, "tags": "[\"c\"]"})
    );
}

#[test]
fn parquet_round_trips_with_nested_values() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.parquet");
    let summary = write_json_records(&records(), &dest, FileFormat::Parquet).unwrap();
    assert_eq!(summary.rows, 3);
    assert_eq!(summary.bytes, fs::metadata(&dest).unwrap().len());
    let (schema, rows) = read_back(&dest, FileFormat::Parquet);
    assert_eq!(schema.fields().len(), 5);
    assert_eq!(rows[0], records()[0]);
    assert_eq!(rows[1], records()[1]);
    assert_eq!(
        rows[2],
        json!({"id": 3, "score": 3.25, "ok": true, "tags": ["c"]})
    );
}

#[test]
fn mixed_scalar_types_become_strings() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("mixed.parquet");
    let records = vec![json!({"v": 1}), json!({"v": "two"}), json!({"w": 3})];
    write_json_records(&records, &dest, FileFormat::Parquet).unwrap();
    let (_, rows) = read_back(&dest, FileFormat::Parquet);
    assert_eq!(
        rows,
        [json!({"v": "1"}), json!({"v": "two"}), json!({"w": 3})]
    );
}

#[test]
fn many_records_are_written_in_several_batches() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Value> = (0..20_000)
        .map(|i| json!({"i": i, "s": format!("row {i}")}))
        .collect();
    for (name, format) in [
        ("big.csv", FileFormat::Csv),
        ("big.parquet", FileFormat::Parquet),
        ("big.jsonl", FileFormat::Jsonl),
    ] {
        let dest = dir.path().join(name);
        assert_eq!(
            write_json_records(&records, &dest, format).unwrap().rows,
            20_000
        );
        let (_, batches) = read_batches(&dest, format).unwrap();
        let counts: Vec<usize> = batches.map(|b| b.unwrap().num_rows()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 20_000, "{name}");
        assert!(counts.len() >= 3, "{name}: {counts:?}");
    }
}

#[test]
fn zero_records_make_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [
        ("none.csv", FileFormat::Csv),
        ("none.jsonl", FileFormat::Jsonl),
        ("none.parquet", FileFormat::Parquet),
    ] {
        let dest = dir.path().join(name);
        let summary = write_json_records(&[], &dest, format).unwrap();
        assert_eq!(summary.rows, 0, "{name}");
        assert!(dest.exists(), "{name}");
    }
    assert_eq!(fs::read(dir.path().join("none.csv")).unwrap(), b"");
    let (schema, rows) = read_back(&dir.path().join("none.parquet"), FileFormat::Parquet);
    assert_eq!(schema.fields().len(), 0);
    assert!(rows.is_empty());
}

#[test]
fn write_batches_writes_what_read_batches_reads() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("in.jsonl");
    write_json_records(&records(), &source, FileFormat::Jsonl).unwrap();
    let (schema, batches) = read_batches(&source, FileFormat::Jsonl).unwrap();
    let dest = dir.path().join("copy.parquet");
    let summary = write_batches(schema, batches, &dest, FileFormat::Parquet).unwrap();
    assert_eq!(summary.rows, 3);
    let (_, rows) = read_back(&dest, FileFormat::Parquet);
    assert_eq!(rows[1], records()[1]);
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.csv");
    for format in [FileFormat::Csv, FileFormat::Jsonl, FileFormat::Parquet] {
        let error = read_batches(&path, format).err().expect("an error");
        assert_eq!(
            error.to_string(),
            format!(
                "{}: opening: No such file or directory (os error 2)",
                path.display()
            )
        );
    }
}

#[test]
fn a_file_that_does_not_parse_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ragged.csv");
    fs::write(&csv, "a,b\n1,2\n3\n").unwrap();
    let error = read_batches(&csv, FileFormat::Csv)
        .err()
        .expect("an error")
        .to_string();
    assert_eq!(
        error,
        format!(
            "{}: Csv error: Encountered unequal lengths between records on CSV file. Expected 2 records, found 1 records at line 3",
            csv.display()
        )
    );

    let parquet = dir.path().join("not.parquet");
    fs::write(&parquet, "id\n1\n").unwrap();
    let error = read_batches(&parquet, FileFormat::Parquet)
        .err()
        .expect("an error")
        .to_string();
    assert!(
        error.starts_with(&format!("{}: ", parquet.display())),
        "{error}"
    );

    let jsonl = dir.path().join("bad.jsonl");
    fs::write(&jsonl, "{\"a\": 1}\nnot json\n").unwrap();
    let error = read_batches(&jsonl, FileFormat::Jsonl)
        .err()
        .expect("an error")
        .to_string();
    assert!(
        error.starts_with(&format!("{}: ", jsonl.display())),
        "{error}"
    );
}

#[test]
fn a_record_that_is_not_an_object_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.jsonl");
    let error =
        write_json_records(&[json!({"a": 1}), json!([1])], &dest, FileFormat::Jsonl).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{}: record 2 is not a JSON object", dest.display())
    );
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn a_failed_write_leaves_no_file_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.parquet");
    write_json_records(&records(), &dest, FileFormat::Parquet).unwrap();
    let before = fs::read(&dest).unwrap();
    // an object in one record and a number in another cannot share a column
    let clash = vec![json!({"a": {"x": 1}}), json!({"a": 2})];
    let error = write_json_records(&clash, &dest, FileFormat::Parquet).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: inferring a schema", dest.display())),
        "{error}"
    );
    assert_eq!(names_in(dir.path()), ["out.parquet"]);
    assert_eq!(fs::read(&dest).unwrap(), before);
}

#[test]
fn a_failed_rename_removes_the_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    // a folder (not empty) where the file should go: the rename fails after the data is written
    let dest = dir.path().join("taken.csv");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), "x").unwrap();
    let error = write_json_records(&records(), &dest, FileFormat::Csv).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "{}: renaming the temp file into place: ",
            dest.display()
        )),
        "{error}"
    );
    assert_eq!(names_in(dir.path()), ["taken.csv"]);
}
