//! Table-driven checks of every rule the parser enforces, each at its exact line and column.

use super::parse_dag;

/// (DAG file, expected `line:col: message` where the message part may be a prefix or any
/// part of the real message).
const CASES: &[(&str, &str)] = &[
    // --- YAML itself
    (
        "a: [1, 2\nb: 3\n",
        "2:2: YAML syntax error: illegal placement",
    ),
    (
        "tasks:\n  a:\n    type: noop\n---\nb: 1\n",
        "4:1: a second YAML document starts here",
    ),
    ("", "1:1: the file is empty; a DAG needs at least `tasks:`"),
    (
        "- a\n- b\n",
        "1:1: a DAG file is a mapping of keys (dag, schedule, tasks, …), got a list",
    ),
    (
        "tag: !custom x\ntasks:\n  a:\n    type: noop\n",
        "1:6: unsupported YAML tag `!custom`",
    ),
    (
        "? [a]\n: 1\ntasks:\n  a:\n    type: noop\n",
        "1:3: keys must be plain text",
    ),
    // --- unknown keys, at every level, with and without a near match
    (
        "sheduel: '@daily'\ntasks:\n  a:\n    type: noop\n",
        "1:1: unknown key `sheduel` (did you mean `schedule`?)",
    ),
    (
        "timezome: UTC\ntasks:\n  a:\n    type: noop\n",
        "1:1: unknown key `timezome` (did you mean `timezone`?)",
    ),
    (
        "owner: me\ntasks:\n  a:\n    type: noop\n",
        "1:1: unknown key `owner` (known keys: dag, description, schedule,",
    ),
    (
        "defaults:\n  retris: 2\ntasks:\n  a:\n    type: noop\n",
        "2:3: unknown key `retris` in `defaults` (did you mean `retries`?)",
    ),
    (
        "tasks:\n  a:\n    type: shell\n    comand: ls\n",
        "4:5: unknown key `comand` in task `a` (did you mean `command`?)",
    ),
    (
        "tasks:\n  a:\n    type: noop\n    command: ls\n",
        "4:5: unknown key `command` in task `a` (known keys: type, description,",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source:\n      http: {urll: 'https://x'}\n    destination: out\n",
        "5:14: unknown key `urll` in `source.http` (did you mean `url`?)",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source: {ftp: x}\n    destination: out\n",
        "4:14: unknown key `ftp` in `source`",
    ),
    (
        "tasks:\n  a:\n    type: sensor\n    sql:\n      connection: db\n      sql: select 1\n      wait: 1\n",
        "7:7: unknown key `wait` in `sql`",
    ),
    (
        "on_failure:\n  - webhok: http://x\ntasks:\n  a:\n    type: noop\n",
        "2:5: unknown key `webhok` in `on_failure` (did you mean `webhook`?)",
    ),
    // --- duplicate keys and ids
    (
        "schedule: '@daily'\nschedule: '@hourly'\ntasks:\n  a:\n    type: noop\n",
        "2:1: duplicate key `schedule` (first defined at line 1)",
    ),
    (
        "tasks:\n  a:\n    type: noop\n  a:\n    type: noop\n",
        "4:3: duplicate key `a` (first defined at line 2)",
    ),
    (
        "dag: Daily\ntasks:\n  a:\n    type: noop\n",
        "1:6: dag id `Daily` contains `D`",
    ),
    (
        "dag: _x\ntasks:\n  a:\n    type: noop\n",
        "1:6: dag id `_x` must start with a letter or a digit",
    ),
    (
        "tasks:\n  bad id:\n    type: noop\n",
        "2:3: task id `bad id` contains ` `",
    ),
    // --- wrong value types
    (
        "tasks:\n  a:\n    type: noop\n    retries: abc\n",
        "4:14: `retries` must be a non-negative integer, got `abc`",
    ),
    (
        "defaults:\n  retries: -1\ntasks:\n  a:\n    type: noop\n",
        "2:12: `retries` must be a non-negative integer, got `-1`",
    ),
    (
        "catchup: yes\ntasks:\n  a:\n    type: noop\n",
        "1:10: `catchup` must be true or false, got `yes`",
    ),
    (
        "max_active_runs: 0\ntasks:\n  a:\n    type: noop\n",
        "1:18: `max_active_runs` must be at least 1, got `0`",
    ),
    (
        "tags: {a: 1}\ntasks:\n  a:\n    type: noop\n",
        "1:7: `tags` must be a list, got a mapping",
    ),
    (
        "params: [1]\ntasks:\n  a:\n    type: noop\n",
        "1:9: `params` must be a mapping (key: value), got a list",
    ),
    (
        "params: {x: .nan}\ntasks:\n  a:\n    type: noop\n",
        "1:13: `params`: JSON has no `.nan`",
    ),
    (
        "description: [a]\ntasks:\n  a:\n    type: noop\n",
        "1:14: `description` must be a string, got a list",
    ),
    (
        "tasks:\n  a:\n    type: noop\n    priority: high\n",
        "4:15: `priority` must be an integer, got `high`",
    ),
    (
        "tasks:\n  a:\n    type: noop\n    retry_backoff: exponental\n",
        "4:20: `retry_backoff` must be one of fixed, exponential, got `exponental` (did you mean `exponential`?)",
    ),
    (
        "tasks:\n  a:\n    type: noop\n    trigger_rule: all_sucess\n",
        "4:19: `trigger_rule` must be one of all_success, all_failed, all_done,",
    ),
    (
        "tasks:\n  a:\n    type: noop\n    foreach: {a: 1}\n",
        "4:14: `foreach` must be a list or a template that renders to a list, got a mapping",
    ),
    (
        "tasks:\n  a: [1]\n",
        "2:6: task `a` must be a mapping of its keys (type, depends_on, …), got a list",
    ),
    (
        "tasks:\n  a:\n",
        "2:3: task `a` is empty; it needs at least `type`",
    ),
    (
        "tasks:\n  a:\n    type: shell\n    command: ls\n    env: {X: ~}\n",
        "5:14: `env.X` has no value",
    ),
    (
        "tasks:\n  a:\n    type: http\n    url: http://x\n    method: FETCH\n",
        "5:13: `method` must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, got `FETCH`",
    ),
    (
        "tasks:\n  a:\n    type: http\n    url: http://x\n    expect_status: [200, 700]\n",
        "5:26: `expect_status` must hold HTTP status codes (100 to 599), got `700`",
    ),
    (
        "tasks:\n  a:\n    type: load\n    from: f\n    connection: c\n    table: t\n    mode: merge\n",
        "7:11: `mode` must be one of append, replace, upsert, got `merge`",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source: {files: x}\n    destination: out\n    format: xml\n",
        "6:13: `format` must be one of csv, jsonl, parquet, got `xml`",
    ),
    (
        "tasks:\n  a:\n    type: sensor\n    file: x\n    mode: wait\n",
        "5:11: `mode` must be one of poke, reschedule, got `wait`",
    ),
    (
        "tasks:\n  a:\n    type: sensor\n    task: {dag: Other, task: t}\n",
        "4:17: `dag`: dag id `Other` contains `O`",
    ),
    (
        "tasks:\n  a:\n    type: sensor\n    task: {dag: other, task: t, offset: -1x}\n",
        "4:41: `offset`: bad duration `1x`",
    ),
    (
        "tasks:\n  a:\n    type: sensor\n    file: x\n    poke_interval: 0s\n",
        "5:20: `poke_interval` must be longer than 0s",
    ),
    // --- the dependency graph
    (
        "tasks:\n  a:\n    type: noop\n  b:\n    type: noop\n    depends_on: [a, x]\n",
        "6:21: task `b` depends on `x`, which is not a task in this DAG",
    ),
    (
        "tasks:\n  extract:\n    type: noop\n  b:\n    type: noop\n    depends_on: extrct\n",
        "6:17: task `b` depends on `extrct`, which is not a task in this DAG (did you mean `extract`?)",
    ),
    (
        "tasks:\n  a:\n    type: noop\n    depends_on: [a]\n",
        "4:18: task `a` depends on itself",
    ),
    (
        "tasks:\n  x:\n    type: noop\n  b:\n    type: noop\n    depends_on: [a]\n  c:\n    type: noop\n    depends_on: [b]\n  a:\n    type: noop\n    depends_on: [c, x]\n",
        "4:3: tasks depend on each other in a cycle: b -> c -> a -> b",
    ),
    // --- schedules, timezones, durations, dates
    (
        "schedule: '0 25 * * *'\ntasks:\n  a:\n    type: noop\n",
        "1:11: bad cron `0 25 * * *`: hour 25 is out of range 0-23",
    ),
    (
        "schedule: '@dayly'\ntasks:\n  a:\n    type: noop\n",
        "1:11: unknown schedule preset `@dayly`",
    ),
    (
        "schedule: every 0s\ntasks:\n  a:\n    type: noop\n",
        "1:11: bad schedule `every 0s`: the step must be at least 1s",
    ),
    (
        "timezone: Asia/Seol\ntasks:\n  a:\n    type: noop\n",
        "1:11: unknown timezone `Asia/Seol` (did you mean `Asia/Seoul`?)",
    ),
    (
        "timezone: Mars/Base\ntasks:\n  a:\n    type: noop\n",
        "1:11: unknown timezone `Mars/Base` (use an IANA name",
    ),
    (
        "defaults:\n  retry_delay: 10x\ntasks:\n  a:\n    type: noop\n",
        "2:16: `retry_delay`: bad duration `10x`: unknown unit `x` (use ms, s, m, h, d or w)",
    ),
    (
        "tasks:\n  a:\n    type: noop\n    timeout: 0s\n",
        "4:14: `timeout` must be longer than 0s",
    ),
    (
        "start_date: 2026-02-30\ntasks:\n  a:\n    type: noop\n",
        "1:13: `start_date`: bad date `2026-02-30`: there is no such day",
    ),
    (
        "end_date: soon\ntasks:\n  a:\n    type: noop\n",
        "1:11: `end_date`: bad date `soon`: write a day",
    ),
    (
        "start_date: 2026-02-01\nend_date: 2026-01-01\ntasks:\n  a:\n    type: noop\n",
        "2:11: `end_date` is before `start_date`",
    ),
    // --- templates
    (
        "tasks:\n  a:\n    type: shell\n    command: echo {{ ds\n",
        "4:14: the template in `command` does not compile: syntax error: ",
    ),
    (
        "tasks:\n  a:\n    type: shell\n    command: |\n      echo start\n      echo {% if x %}\n",
        "6:7: the template in `command` does not compile: syntax error: unexpected end of input",
    ),
    (
        "on_success: [{webhook: '{{ oops }'}]\ntasks:\n  a:\n    type: noop\n",
        "1:24: the template in `webhook` does not compile",
    ),
    (
        "tasks:\n  a:\n    type: http\n    url: x\n    headers: {Auth: '{{ conn.api.password'}\n",
        "5:21: the template in `headers.Auth` does not compile",
    ),
    (
        "tasks:\n  a:\n    type: batch\n    inputs: {o: x}\n    sql: ['select 1', '{% endfor %}']\n    output: y\n",
        "5:23: the template in `sql` does not compile",
    ),
    (
        "tasks:\n  a:\n    type: spark_submit\n    application: app.py\n    name: 'train-{{ ds'\n",
        "5:11: the template in `name` does not compile",
    ),
    // --- types and required fields
    (
        "tasks:\n  a:\n    type: shel\n    command: ls\n",
        "3:11: unknown step type `shel` (did you mean `shell`? types are shell, http,",
    ),
    (
        "tasks:\n  a:\n    command: ls\n",
        "2:3: task `a` has no `type` (one of shell, http, sql,",
    ),
    (
        "tasks:\n  a:\n    type: shell\n",
        "2:3: task `a` (type shell) is missing `command`",
    ),
    (
        "tasks:\n  a:\n    type: http\n",
        "2:3: task `a` (type http) is missing `url`",
    ),
    (
        "tasks:\n  a:\n    type: sql\n    sql: select 1\n",
        "2:3: task `a` (type sql) is missing `connection`",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source: {files: x}\n",
        "2:3: task `a` (type ingest) is missing `destination`",
    ),
    (
        "tasks:\n  a:\n    type: batch\n    inputs: {o: x}\n    output: y\n",
        "2:3: task `a` (type batch) is missing `sql`",
    ),
    (
        "tasks:\n  a:\n    type: batch\n    inputs: {}\n    sql: select 1\n    output: y\n",
        "4:13: task `a`: `inputs` is empty",
    ),
    (
        "tasks:\n  a:\n    type: load\n    from: f\n    connection: c\n",
        "2:3: task `a` (type load) is missing `table`",
    ),
    (
        "tasks:\n  a:\n    type: load\n    from: f\n    connection: c\n    table: t\n    mode: upsert\n",
        "2:3: task `a` (type load) has `mode: upsert` but no `key`",
    ),
    (
        "tasks:\n  a:\n    type: spark_submit\n",
        "2:3: task `a` (type spark_submit) is missing `application`",
    ),
    (
        "tasks:\n  a:\n    type: sensor\n    poke_interval: 5m\n",
        "2:3: task `a` (type sensor) is missing a condition: one of `file`, `http`, `sql` or `task`",
    ),
    (
        "tasks:\n  a:\n    type: sensor\n    file: x\n    http: http://x\n",
        "5:5: `http` and `file` are both given; write exactly one of them",
    ),
    (
        "tasks:\n  a:\n    type: sensor\n    task: {task: t}\n",
        "4:5: `task` is missing `dag`",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source: {}\n    destination: out\n",
        "4:13: `source` needs one of `http`, `files` or `sql`",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source: {files: x, sql: {connection: c, query: q}}\n    destination: out\n",
        "4:24: `sql` and `files` are both given; write exactly one of them",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source:\n      http:\n        url: x\n        pagination: {kind: cursor, param: after}\n    destination: out\n",
        "7:9: `source.http.pagination` is missing `cursor_path`",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source:\n      http:\n        url: x\n        pagination: {kind: link_header, size: 10}\n    destination: out\n",
        "7:41: `size` does not apply to `kind` link_header",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source:\n      http:\n        url: x\n        retry_delay: soon\n    destination: out\n",
        "7:22: `retry_delay`: bad duration `soon`: expected a number and a unit (ms, s, m, h, d, w), like `30s` or `1h30m`",
    ),
    (
        "tasks:\n  a:\n    type: ingest\n    source:\n      http:\n        url: x\n        max_pages: -1\n    destination: out\n",
        "7:20: `max_pages` must be a non-negative integer, got `-1`",
    ),
    (
        "on_failure: [{}]\ntasks:\n  a:\n    type: noop\n",
        "1:14: `on_failure` entry is missing `webhook`",
    ),
    // --- tasks themselves
    (
        "dag: x\n",
        "1:1: the DAG has no `tasks:`; it needs at least one task",
    ),
    (
        "tasks:\n",
        "1:1: `tasks` is empty; a DAG needs at least one task",
    ),
    (
        "tasks: {}\n",
        "1:1: `tasks` is empty; a DAG needs at least one task",
    ),
    (
        "tasks: [a, b]\n",
        "1:8: `tasks` must be a mapping from task id to task, got a list",
    ),
    // --- merge keys and aliases
    (
        "base: &b {x: 1}\ntasks:\n  a:\n    type: noop\n",
        "1:1: unknown key `base`",
    ),
    (
        "tasks:\n  a:\n    type: noop\n    <<: 3\n",
        "4:9: a merge key `<<` takes a mapping or a list of mappings",
    ),
];

#[test]
fn every_rule_is_reported_at_its_line_and_column() {
    let mut failures = Vec::new();
    for (source, expected) in CASES {
        let (location, message) = split_expected(expected);
        let errors = match parse_dag("dags/test.yaml", source) {
            Ok(_) => {
                failures.push(format!("{source:?}\n  parsed, expected {expected}"));
                continue;
            }
            Err(errors) => errors,
        };
        let found = errors.iter().any(|error| {
            format!("{}:{}", error.line, error.col) == location && error.message.contains(message)
        });
        if !found {
            let got: Vec<String> = errors
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
                .collect();
            failures.push(format!("{source:?}\n  expected {expected}\n  got {got:#?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

fn split_expected(expected: &str) -> (String, &str) {
    let mut parts = expected.splitn(3, ':');
    let line = parts.next().unwrap_or_default();
    let col = parts.next().unwrap_or_default();
    let message = parts.next().unwrap_or_default().trim_start();
    (format!("{line}:{col}"), message)
}

#[test]
fn every_problem_comes_back_at_once_sorted_by_position() {
    let source = "\
dag: Bad
schedule: '0 2 * *'
timezone: Nowhere
tasks:
  a:
    type: shell
    retries: many
  b:
    type: nope
    depends_on: [a, ghost]
";
    let errors = parse_dag("dags/x.yaml", source).unwrap_err();
    let located: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(
        located,
        [(1, 6), (2, 11), (3, 11), (5, 3), (7, 14), (9, 11), (10, 21)],
        "{errors:#?}"
    );
    assert_eq!(errors[0].file, "dags/x.yaml");
    assert_eq!(
        errors[3].to_string(),
        "dags/x.yaml:5:3: task `a` (type shell) is missing `command`"
    );
}

#[test]
fn the_dag_id_defaults_to_the_file_stem_and_must_be_valid() {
    let source = "tasks:\n  a:\n    type: noop\n";
    let dag = parse_dag("dags/nightly.v2.yaml", source).unwrap();
    assert_eq!(dag.id.as_str(), "nightly.v2");
    let errors = parse_dag("dags/My DAG.yaml", source).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].col), (1, 1));
    assert!(
        errors[0]
            .message
            .contains("add `dag: <id>` or rename the file"),
        "{errors:?}"
    );
}

#[test]
fn step_kinds_are_the_documented_step_types() {
    for name in crate::spec::STEP_TYPES {
        let kind = super::steps::StepKind::parse(name).expect("a documented type parses");
        assert_eq!(kind.name(), *name);
    }
}

#[test]
fn extension_keys_hold_anchors_for_merging() {
    let source = "\
x-retrying: &retrying
  retries: 4
  retry_delay: 1m
tasks:
  a:
    <<: *retrying
    type: noop
";
    let dag = parse_dag("dags/x.yaml", source).expect("x- keys are allowed");
    assert_eq!(dag.tasks[0].retry.retries, 4);
    assert_eq!(dag.tasks[0].retry.delay, std::time::Duration::from_secs(60));
}

#[test]
fn an_aliased_problem_is_reported_once() {
    let source = "\
defaults: &d
  retries: lots
tasks:
  a:
    type: noop
    <<: *d
  b:
    type: noop
    <<: *d
";
    let errors = parse_dag("dags/x.yaml", source).unwrap_err();
    let retries: Vec<_> = errors
        .iter()
        .filter(|e| e.message.contains("`retries`"))
        .collect();
    assert_eq!(retries.len(), 1, "{errors:#?}");
    assert_eq!((retries[0].line, retries[0].col), (2, 12));
}
