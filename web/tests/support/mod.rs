//! Test helpers: a fresh SQLite store behind the router, seeded only through the `Store` trait.

pub mod down;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use sluice_core::spec::RetryPolicy;
use sluice_core::{DataInterval, RunType, TriggerRule};
use sluice_store::{
    AttemptOutcome, Claim, ClaimedAttempt, DagSnapshot, DagSync, FinishAttempt, ImportErrorRecord,
    NewRun, NewTaskInstance, Store, UNMAPPED,
};
use tower::ServiceExt;

pub struct TestApp {
    pub store: Arc<dyn Store>,
    router: Router,
    _dir: tempfile::TempDir,
}

pub struct Page {
    pub status: StatusCode,
    pub body: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = sluice_store::connect(&url)
            .await
            .expect("opening the test store");
        TestApp::with_store(store, dir)
    }

    pub fn with_store(store: Arc<dyn Store>, dir: tempfile::TempDir) -> TestApp {
        let router = sluice_web::app(sluice_web::AppState::new(store.clone()));
        TestApp {
            store,
            router,
            _dir: dir,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        let request = Request::get(path)
            .body(Body::empty())
            .expect("a valid request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("reading the body");
        Page {
            status,
            body: String::from_utf8(bytes.to_vec()).expect("a UTF-8 body"),
        }
    }

    /// `get` that insists on a 200.
    pub async fn page(&self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "GET {path}:\n{}", page.body);
        page.body
    }
}

/// 2026-11-25 07:52:10Z plus `seconds`.
pub fn at(seconds: i64) -> DateTime<Utc> {
    let start = DateTime::parse_from_rfc3339("2026-11-25T07:52:10Z")
        .expect("valid literal")
        .with_timezone(&Utc);
    start + TimeDelta::seconds(seconds)
}

pub fn dag(dag_id: &str, schedule: Option<&str>) -> DagSnapshot {
    DagSnapshot {
        dag_id: dag_id.to_owned(),
        fileloc: format!("dags/{dag_id}.yaml"),
        hash: format!("hash-{dag_id}"),
        source: format!("dag: {dag_id}\n"),
        schedule: schedule.map(str::to_owned),
        timezone: "UTC".to_owned(),
        description: None,
        tags: Vec::new(),
    }
}

pub async fn sync(
    store: &dyn Store,
    dags: Vec<DagSnapshot>,
    import_errors: Vec<ImportErrorRecord>,
) {
    store
        .sync_dags(&DagSync {
            dags,
            import_errors,
            now: at(0),
        })
        .await
        .expect("syncing DAGs");
}

pub fn task(task_id: &str, upstream: &[&str], retries: u32) -> NewTaskInstance {
    NewTaskInstance {
        task_id: task_id.to_owned(),
        map_index: UNMAPPED,
        upstream: upstream.iter().map(|id| (*id).to_owned()).collect(),
        trigger_rule: TriggerRule::AllSuccess,
        retry: RetryPolicy {
            retries,
            delay: Duration::ZERO,
            ..RetryPolicy::default()
        },
        timeout: None,
        queue: "default".to_owned(),
        pool: None,
        priority: 0,
    }
}

/// Creates a scheduled run of `dag_id` for the day before `at(0)` and starts it.
pub async fn start_run(store: &dyn Store, dag_id: &str, tasks: Vec<NewTaskInstance>) -> String {
    let logical_date = at(0) - TimeDelta::days(1);
    let run_id = format!(
        "scheduled__{}",
        logical_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let mut params = BTreeMap::new();
    params.insert("region".to_owned(), serde_json::json!("kr"));
    let created = store
        .create_run_if_absent(&NewRun {
            dag_id: dag_id.to_owned(),
            run_id: run_id.clone(),
            run_type: RunType::Scheduled,
            logical_date,
            data_interval: DataInterval {
                start: logical_date,
                end: at(0),
            },
            dag_hash: format!("hash-{dag_id}"),
            params,
            triggered_by: "scheduler".to_owned(),
            tasks,
            now: at(1),
        })
        .await
        .expect("creating the run");
    assert!(created.is_some(), "the run already existed");
    store
        .start_queued_runs(dag_id, 16, at(2))
        .await
        .expect("starting the run");
    run_id
}

pub async fn claim(store: &dyn Store, now: DateTime<Utc>) -> Vec<ClaimedAttempt> {
    store
        .claim_attempts(&Claim {
            worker_id: "worker-1".to_owned(),
            queues: vec!["default".to_owned()],
            limit: 16,
            now,
        })
        .await
        .expect("claiming attempts")
}

/// Claims exactly one attempt, of `task_id`.
pub async fn claim_one(store: &dyn Store, task_id: &str, now: DateTime<Utc>) -> ClaimedAttempt {
    let mut claimed = claim(store, now).await;
    assert_eq!(claimed.len(), 1, "expected one claim, got {claimed:?}");
    let attempt = claimed.remove(0);
    assert_eq!(attempt.task_id, task_id);
    attempt
}

pub async fn log(store: &dyn Store, attempt: &ClaimedAttempt, text: &str, now: DateTime<Utc>) {
    store
        .append_log(&attempt.lease, text, now)
        .await
        .expect("appending a log chunk");
}

pub struct Ending {
    pub outcome: AttemptOutcome,
    pub exit_code: Option<i32>,
    pub error: Option<&'static str>,
}

pub const SUCCEEDED: Ending = Ending {
    outcome: AttemptOutcome::Success,
    exit_code: Some(0),
    error: None,
};

pub async fn finish(
    store: &dyn Store,
    attempt: &ClaimedAttempt,
    ending: Ending,
    now: DateTime<Utc>,
) {
    store
        .finish_attempt(&FinishAttempt {
            lease: attempt.lease.clone(),
            outcome: ending.outcome,
            exit_code: ending.exit_code,
            error: ending.error.map(str::to_owned),
            outputs: BTreeMap::new(),
            now,
        })
        .await
        .expect("finishing the attempt");
}

/// The `href`s in `html` that contain `part`, in document order.
pub fn links_containing(html: &str, part: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.contains(part))
        .map(str::to_owned)
        .collect()
}
