//! `sluice standalone` as a user runs it: trigger a DAG, watch it retry, read both attempts.

use sluice_core::{AttemptState, RunState, TaskState};

use crate::support::{TestApp, http_client, text};

const FLAKY: &str = r#"
dag: flaky
schedule: null
params:
  who: world
defaults:
  retries: 1
  retry_delay: 1s
tasks:
  extract:
    type: shell
    command: |
      echo "hello {{ params.who }}, try {{ try_number }}"
      if [ "{{ try_number }}" -lt 2 ]; then echo "simulated outage" >&2; exit 7; fi
      echo "::output rows=3"
  load:
    type: shell
    depends_on: [extract]
    command: echo "loading {{ outputs.extract.rows }} rows"
"#;

async fn retried_task_keeps_every_attempt_and_log(app: TestApp) {
    let output = app.trigger_when_loaded(&[
        "dags",
        "trigger",
        "flaky",
        "--param",
        "who=sluice",
        "--wait",
    ]);
    assert!(
        output.status.success(),
        "trigger --wait failed: {}\n{}\nserver:\n{}",
        text(&output.stdout),
        text(&output.stderr),
        app.stderr()
    );
    assert!(
        text(&output.stdout).contains("success"),
        "{}",
        text(&output.stdout)
    );

    let store = sluice_store::connect(&app.database_url)
        .await
        .expect("opening the app's database");
    let runs = store
        .list_runs(&sluice_store::RunFilter {
            dag_id: Some("flaky".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("listing runs");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.state, RunState::Success);
    assert_eq!(run.params["who"], "sluice");

    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    let extract: Vec<_> = attempts.iter().filter(|a| a.task_id == "extract").collect();
    assert_eq!(
        extract.len(),
        2,
        "both tries of extract are kept: {attempts:?}"
    );
    assert_eq!(extract[0].state, AttemptState::Failed);
    assert_eq!(extract[0].exit_code, Some(7));
    assert_eq!(
        extract[0].error.as_deref(),
        Some("command exited with code 7")
    );
    assert_eq!(extract[1].state, AttemptState::Success);

    let first_log = log_of(store.as_ref(), extract[0].id).await;
    assert!(first_log.contains("hello sluice, try 1"), "{first_log}");
    assert!(first_log.contains("simulated outage"), "{first_log}");
    assert!(
        first_log.contains("command exited with code 7"),
        "the error is in the log too: {first_log}"
    );
    let second_log = log_of(store.as_ref(), extract[1].id).await;
    assert!(second_log.contains("hello sluice, try 2"), "{second_log}");

    let load = attempts
        .iter()
        .find(|a| a.task_id == "load")
        .expect("load ran");
    assert!(
        log_of(store.as_ref(), load.id)
            .await
            .contains("loading 3 rows")
    );
    let states: Vec<TaskState> = store
        .task_instances(run.pk)
        .await
        .unwrap()
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(states, vec![TaskState::Success, TaskState::Success]);

    // the web UI asks for a login; the first admin is made with the CLI
    let anonymous = http_client()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let refused = anonymous
        .get(format!("{}/", app.base_url))
        .send()
        .await
        .expect("fetching the DAG list");
    assert_eq!(
        refused.status(),
        303,
        "anonymous visitors go to the login page"
    );
    assert!(
        app.stderr()
            .contains("sluice users create admin --role admin"),
        "standalone says how to make the first user: {}",
        app.stderr()
    );
    let created = app.cli_with_stdin(
        &[
            "users",
            "create",
            "admin",
            "--role",
            "admin",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    // the login form carries a token that must come back with its cookie
    let form = anonymous
        .get(format!("{}/login", app.base_url))
        .send()
        .await
        .expect("opening the login form");
    let login_cookie = form
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("a login token cookie")
        .to_owned();
    let html = form.text().await.expect("the login page");
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's token")
        .to_owned();
    let login = anonymous
        .post(format!("{}/login", app.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", login_cookie)
        .body(format!(
            "username=admin&password=correct+horse+battery&next=%2F&csrf={token}"
        ))
        .send()
        .await
        .expect("logging in");
    assert_eq!(login.status(), 303);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = anonymous
        .get(format!("{}/", app.base_url))
        .header("cookie", cookie)
        .send()
        .await
        .expect("fetching the DAG list");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("flaky"));
}

async fn log_of(store: &dyn sluice_store::Store, attempt_id: i64) -> String {
    store
        .read_log(attempt_id, 0)
        .await
        .expect("reading a log")
        .into_iter()
        .map(|c| c.content)
        .collect()
}

#[tokio::test]
async fn sqlite_retried_task_keeps_every_attempt_and_log() {
    retried_task_keeps_every_attempt_and_log(TestApp::spawn(&[("flaky.yaml", FLAKY)], None)).await;
}

#[tokio::test]
async fn postgres_retried_task_keeps_every_attempt_and_log() {
    let Some(database) = sluice_store::testing::fresh_postgres_url().await else {
        return;
    };
    let app = TestApp::spawn(&[("flaky.yaml", FLAKY)], Some(database.url().to_owned()));
    retried_task_keeps_every_attempt_and_log(app).await;
}

const FAILING: &str = r#"
dag: failing
params:
  code: 5
tasks:
  boom:
    type: shell
    command: exit {{ params.code }}
  cleanup:
    type: shell
    depends_on: [boom]
    trigger_rule: all_done
    command: echo cleaned
"#;

#[tokio::test]
async fn cli_exit_codes_follow_the_run_and_bad_input_changes_nothing() {
    let app = TestApp::spawn(&[("failing.yaml", FAILING)], None);

    // a failed run is exit code 1 even though its all_done clean-up succeeded
    let output = app.trigger_when_loaded(&["dags", "trigger", "failing", "--wait"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("boom") && stdout.contains("failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("cleanup") && stdout.contains("success"),
        "{stdout}"
    );

    // bad input: one clear line, exit code 2, no run created
    let output = app.cli(&["dags", "trigger", "failing", "--param", "code=abc"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("param `code` expects a value like `5`, got `abc`"),
        "{}",
        text(&output.stderr)
    );
    let output = app.cli(&["dags", "trigger", "failing", "--param", "colour=red"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("has no param `colour`"));
    let output = app.cli(&["dags", "pause", "nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("DAG `nope` is not in the database"));

    let store = sluice_store::connect(&app.database_url).await.unwrap();
    let runs = store
        .list_runs(&sluice_store::RunFilter {
            dag_id: Some("failing".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "bad triggers created no run");

    // pause and unpause
    let output = app.cli(&["dags", "pause", "failing"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(store.get_dag("failing").await.unwrap().unwrap().is_paused);
    let output = app.cli(&["dags", "unpause", "failing"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!store.get_dag("failing").await.unwrap().unwrap().is_paused);
}
