//! Rendering, errors, filters and the context, as a task's templates meet them.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::*;
use crate::schedule::DataInterval;

const SEOUL: chrono_tz::Tz = chrono_tz::Asia::Seoul;

fn seoul(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
    SEOUL
        .with_ymd_and_hms(y, mo, d, h, 0, 0)
        .single()
        .expect("a Seoul time")
        .with_timezone(&Utc)
}

struct Fixture {
    params: BTreeMap<String, Value>,
    outputs: BTreeMap<String, BTreeMap<String, Value>>,
    connections: BTreeMap<String, Connection>,
    env: BTreeMap<String, String>,
    item: Value,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            params: BTreeMap::from([
                ("region".to_owned(), json!("kr")),
                ("limit".to_owned(), json!(10)),
            ]),
            outputs: BTreeMap::from([(
                "extract".to_owned(),
                BTreeMap::from([
                    ("rows".to_owned(), json!(42)),
                    ("files".to_owned(), json!(["a.csv", "b.csv"])),
                ]),
            )]),
            connections: BTreeMap::from([(
                "warehouse".to_owned(),
                Connection::parse_url(
                    "postgres://loader:s3cret@dw.internal:5432/sales?sslmode=require",
                )
                .expect("valid URL"),
            )]),
            env: BTreeMap::from([("HOME".to_owned(), "/home/sluice".to_owned())]),
            item: json!({"table": "orders"}),
        }
    }

    /// A Seoul DAG's run for [02:00 2026-01-01, 02:00 2026-01-02) local, which in UTC starts
    /// on 2025-12-31: `ds` must still be 2026-01-01.
    fn context(&self, with_item: bool) -> Value {
        let interval = DataInterval {
            start: seoul(2026, 1, 1, 2),
            end: seoul(2026, 1, 2, 2),
        };
        context(&ContextInput {
            dag_id: "daily_sales",
            task_id: "load",
            run_id: "scheduled__2026-01-01T02:00:00+09:00",
            timezone: SEOUL,
            logical_date: interval.start,
            data_interval: interval,
            try_number: 2,
            params: &self.params,
            outputs: &self.outputs,
            connections: &self.connections,
            env: &self.env,
            item: with_item.then_some(&self.item),
        })
    }
}

#[test]
fn context_dates_are_in_the_dag_timezone() {
    let context = Fixture::new().context(false);
    let cases = [
        ("{{ ds }}", "2026-01-01"),
        ("{{ ds_nodash }}", "20260101"),
        ("{{ ts }}", "2026-01-01T02:00:00+09:00"),
        ("{{ ts_nodash }}", "20260101T020000"),
        ("{{ logical_date }}", "2026-01-01T02:00:00+09:00"),
        ("{{ data_interval_start }}", "2026-01-01T02:00:00+09:00"),
        ("{{ data_interval_end }}", "2026-01-02T02:00:00+09:00"),
        ("{{ prev_ds }}", "2025-12-31"),
        ("{{ next_ds }}", "2026-01-02"),
        ("{{ timezone }}", "Asia/Seoul"),
    ];
    for (source, expected) in cases {
        assert_eq!(
            render(source, &context).as_deref(),
            Ok(expected),
            "{source}"
        );
    }
}

#[test]
fn context_has_ids_params_outputs_connections_env_and_item() {
    let fixture = Fixture::new();
    let context = fixture.context(true);
    let cases = [
        ("{{ dag_id }}.{{ task_id }}", "daily_sales.load"),
        ("{{ run_id }}", "scheduled__2026-01-01T02:00:00+09:00"),
        ("{{ try_number + 1 }}", "3"),
        ("{{ params.region }}/{{ params.limit * 2 }}", "kr/20"),
        (
            "{{ outputs.extract.rows }} {{ outputs.extract.files | join(',') }}",
            "42 a.csv,b.csv",
        ),
        (
            "{{ conn.warehouse.host }}:{{ conn.warehouse.port }}",
            "dw.internal:5432",
        ),
        (
            "{{ conn.warehouse.user }}/{{ conn.warehouse.login }}",
            "loader/loader",
        ),
        ("{{ conn.warehouse.password }}", "s3cret"),
        (
            "{{ conn.warehouse.database }}={{ conn.warehouse.schema }}",
            "sales=sales",
        ),
        ("{{ conn.warehouse.extra.sslmode }}", "require"),
        ("{{ env.HOME }}", "/home/sluice"),
        ("{{ item.table }}", "orders"),
    ];
    for (source, expected) in cases {
        assert_eq!(
            render(source, &context).as_deref(),
            Ok(expected),
            "{source}"
        );
    }
    let without_item = fixture.context(false);
    assert!(without_item.get("item").is_none());
    let probe = "{% if item is defined %}mapped{% else %}single{% endif %}";
    assert_eq!(render(probe, &without_item).as_deref(), Ok("single"));
    assert_eq!(render(probe, &context).as_deref(), Ok("mapped"));
}

#[test]
fn text_without_template_syntax_is_returned_as_is() {
    let text = "echo } { 100% $HOME\n";
    assert_eq!(render(text, &Value::Null).as_deref(), Ok(text));
    assert_eq!(check(text), Ok(()));
    assert!(!is_template(text));
    assert!(is_template("{# note #}"));
}

#[test]
fn trailing_newline_is_kept_and_nothing_is_escaped() {
    let context = json!({"name": "<a & 'b'>"});
    assert_eq!(
        render("{{ name }}\n", &context).as_deref(),
        Ok("<a & 'b'>\n")
    );
}

#[test]
fn undefined_values_are_errors_that_name_them() {
    let context = Fixture::new().context(false);
    let cases = [
        (
            "{{ params.regio }}",
            1,
            "undefined value `params.regio` (did you mean `params.region`?)",
        ),
        (
            "a\nb\n{{ dss }}",
            3,
            "undefined value `dss` (did you mean `ds`?)",
        ),
        (
            "{{ params.country }}",
            1,
            "undefined value `params.country` (`params` has `limit`, `region`)",
        ),
        (
            "{{ params.region.code }}",
            1,
            "undefined value `params.region.code` (`params.region` is a string and has no `code`)",
        ),
        (
            "{{ conn.warehous.host }}",
            1,
            "undefined value `conn.warehous` (did you mean `conn.warehouse`?)",
        ),
        (
            "{{ nothing_like_it }}",
            1,
            "undefined value `nothing_like_it`",
        ),
        (
            "{% if missing %}x{% endif %}",
            1,
            "undefined value `missing`",
        ),
        (
            "x\n{{ missing | shell_quote }}",
            2,
            "undefined value in `{{ missing | shell_quote }}`",
        ),
        ("{{ missing | upper }}", 1, "undefined value `missing`"),
    ];
    for (source, line, message) in cases {
        let error = render(source, &context).unwrap_err();
        assert_eq!(
            error,
            TemplateError {
                line,
                message: message.to_owned()
            },
            "{source}"
        );
    }
    assert_eq!(
        render("{{ params.country | default('us') }}", &context).as_deref(),
        Ok("us")
    );
    assert_eq!(
        render("{{ params.country is defined | string | lower }}", &context).as_deref(),
        Ok("false")
    );
}

#[test]
fn syntax_errors_carry_their_line() {
    let error = check("line one\nline two\n{% if %}").unwrap_err();
    assert_eq!(error.line, 3);
    assert!(
        error.message.starts_with("syntax error: "),
        "{}",
        error.message
    );
    let error = check("{{ 1 + }}").unwrap_err();
    assert_eq!(
        (error.line, error.message.as_str()),
        (1, "syntax error: unexpected end of variable block")
    );
    assert_eq!(
        error.to_string(),
        "line 1: syntax error: unexpected end of variable block"
    );
    let error = render("x\n{% for a in b %}", &json!({"b": []})).unwrap_err();
    assert_eq!(error.line, 2);
    assert_eq!(check("{{ ds }} {% if x %}{{ y }}{% endif %}"), Ok(()));
}

#[test]
fn unknown_filters_are_named() {
    let error = render("{{ ds | nope }}", &json!({"ds": "2026-01-01"})).unwrap_err();
    assert_eq!(error.message, "unknown filter `nope`");
}

#[test]
fn filters_for_dates_json_and_shell() {
    let context = json!({"ds": "2026-03-01", "rows": [1, {"a": "<b>"}], "name": "it's", "n": 7});
    let cases = [
        ("{{ ds | ds_add(-1) }}", "2026-02-28"),
        ("{{ ds | ds_add(31) }}", "2026-04-01"),
        ("{{ ds | ds_format('%Y/%m/%d') }}", "2026/03/01"),
        ("{{ rows | tojson }}", r#"[1,{"a":"<b>"}]"#),
        ("{{ rows | json }}", r#"[1,{"a":"<b>"}]"#),
        ("{{ name | tojson }}", r#""it's""#),
        ("echo {{ name | shell_quote }}", r"echo 'it'\''s'"),
        ("{{ n | shell_quote }}", "'7'"),
    ];
    for (source, expected) in cases {
        assert_eq!(
            render(source, &context).as_deref(),
            Ok(expected),
            "{source}"
        );
    }
    let error = render("{{ 'yesterday' | ds_add(1) }}", &context).unwrap_err();
    assert_eq!(
        error.message,
        "invalid operation: ds_add expects a YYYY-MM-DD date, got `yesterday`"
    );
    assert!(
        render("{{ ds | ds_format('%Q') }}", &context)
            .unwrap_err()
            .message
            .contains("bad format")
    );
}
