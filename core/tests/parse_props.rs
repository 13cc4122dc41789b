//! The parser never panics: not on arbitrary text, not on a valid file with random damage.

use proptest::prelude::*;
use sluice_core::{DagError, parse_dag};

const FULL: &str = include_str!("fixtures/full.yaml");
const EXAMPLE: &str = include_str!("../../dags/fan_out_in.yaml");

/// A failed parse explains itself: at least one error, each located, in file order.
fn check(source: &str) -> Result<(), TestCaseError> {
    let Err(errors) = parse_dag("dags/fuzz.yaml", source) else {
        return Ok(());
    };
    prop_assert!(!errors.is_empty(), "an error result without errors");
    for error in &errors {
        prop_assert!(error.line >= 1 && error.col >= 1, "unlocated: {error}");
        prop_assert!(!error.message.is_empty());
        prop_assert!(
            !error.message.contains("a bug"),
            "a reader gave up silently: {error}"
        );
    }
    let positions: Vec<(usize, usize)> =
        errors.iter().map(|e: &DagError| (e.line, e.col)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    prop_assert_eq!(positions, sorted);
    Ok(())
}

/// Fields whose values go through a dedicated parser (cron, timezone, dates, durations,
/// templates, ids); `~` stands in for the ones not under test.
const FIELDS: &[&str] = &[
    "dag", "schedule", "timezone", "start", "end", "runs", "delay", "command", "upstream",
    "trigger", "offset", "status", "method",
];

const FIELD_TEMPLATE: &str = "\
dag: <dag>
schedule: <schedule>
timezone: <timezone>
start_date: <start>
end_date: <end>
max_active_runs: <runs>
defaults: { retry_delay: <delay> }
tasks:
  a:
    type: shell
    command: <command>
    depends_on: <upstream>
    trigger_rule: <trigger>
  b:
    type: sensor
    task: { dag: x, task: y, offset: <offset> }
  c:
    type: http
    url: x
    expect_status: <status>
    method: <method>
";

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, u8),
    Replace(usize, u8),
    Truncate(usize),
}

/// Bytes that mean something to YAML or to the DAG format, and a few that do not.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b":-[]{},&*!|>#'\"\n \t%@`?~<".to_vec()),
        any::<u8>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), interesting_byte()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
        (any::<usize>(), interesting_byte()).prop_map(|(at, byte)| Edit::Replace(at, byte)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn damaged(original: &str, edits: &[Edit]) -> String {
    let mut bytes = original.as_bytes().to_vec();
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            Edit::Delete(at) if !bytes.is_empty() => {
                bytes.remove(at % len);
            }
            Edit::Insert(at, byte) => bytes.insert(at % (bytes.len() + 1), byte),
            Edit::Replace(at, byte) if !bytes.is_empty() => bytes[at % len] = byte,
            Edit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        check(&source)?;
    }

    #[test]
    fn yaml_shaped_text_never_panics(source in "([a-z_]{1,8}|[ :\\-\\[\\]{},&*!|>#'\"\n0-9~<.]){0,120}") {
        check(&source)?;
    }

    #[test]
    fn any_value_in_any_field_never_panics(
        field in prop::sample::select(FIELDS.to_vec()),
        value in "[^\n\r]{0,40}",
    ) {
        let quoted = format!("'{}'", value.replace('\'', "''"));
        let source = FIELD_TEMPLATE.replace(&format!("<{field}>"), &quoted);
        let source = FIELDS.iter().fold(source, |source, other| source.replace(&format!("<{other}>"), "~"));
        check(&source)?;
    }

    #[test]
    fn damaged_full_files_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        check(&damaged(FULL, &edits))?;
    }

    #[test]
    fn damaged_examples_never_panic(edits in prop::collection::vec(edit(), 1..4)) {
        check(&damaged(EXAMPLE, &edits))?;
    }
}

#[test]
fn extreme_dates_are_errors_or_values() {
    for date in [
        "262143-12-31T23:59:59",
        "-262143-01-01",
        "262143-12-31",
        "9999-12-31T23:59:59+14:00",
    ] {
        let source = format!(
            "timezone: Pacific/Kiritimati\nstart_date: '{date}'\ntasks:\n  a:\n    type: noop\n"
        );
        let _ = parse_dag("dags/x.yaml", &source);
    }
}

#[test]
fn deleting_or_nulling_any_line_is_explained() {
    let lines: Vec<&str> = FULL.lines().collect();
    for skip in 0..lines.len() {
        let mut without = lines.clone();
        without.remove(skip);
        check(&without.join("\n")).unwrap_or_else(|e| panic!("without line {}: {e}", skip + 1));
        let mut nulled = lines.clone();
        let emptied;
        if let Some((key, _)) = lines[skip].split_once(": ") {
            emptied = format!("{key}: ~");
            nulled[skip] = &emptied;
        }
        check(&nulled.join("\n")).unwrap_or_else(|e| panic!("null at line {}: {e}", skip + 1));
    }
}

#[test]
fn every_prefix_of_the_full_file_is_handled() {
    let mut end = 0;
    while end <= FULL.len() {
        if FULL.is_char_boundary(end) {
            check(&FULL[..end]).unwrap_or_else(|e| panic!("prefix of {end} bytes: {e}"));
        }
        end += 1;
    }
}
