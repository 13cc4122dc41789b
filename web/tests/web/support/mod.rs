//! Test helpers: a fresh SQLite store behind the router, seeded only through the `Store` trait.

pub mod down;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use sluice_core::spec::RetryPolicy;
use sluice_core::{DataInterval, RunType, TriggerRule};
use sluice_store::{
    AttemptOutcome, Claim, ClaimedAttempt, DagSnapshot, DagSync, FinishAttempt, ImportErrorRecord,
    NewRun, NewTaskInstance, NewUser, Role, Store, UNMAPPED,
};
use tower::ServiceExt;

pub struct TestApp {
    pub store: Arc<dyn Store>,
    router: Router,
    /// The session cookie's value and the session's CSRF token, once logged in.
    session: Mutex<Option<(String, String)>>,
    _dir: tempfile::TempDir,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Where a redirect points.
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

/// Every test user's password.
pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// A fresh store, logged in as `vic`, a viewer.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_as(Role::Viewer).await
    }

    /// A fresh store, logged in as a user with `role` (`vic`, `olga` or `ada`).
    pub async fn spawn_as(role: Role) -> TestApp {
        let app = TestApp::anonymous().await;
        let username = match role {
            Role::Viewer => "vic",
            Role::Operator => "olga",
            Role::Admin => "ada",
        };
        app.create_user(username, role).await;
        let answer = app.login(username, PASSWORD).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        app
    }

    /// A fresh store and nobody logged in.
    pub async fn anonymous() -> TestApp {
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
            session: Mutex::new(None),
            _dir: dir,
        }
    }

    pub async fn create_user(&self, username: &str, role: Role) {
        self.store
            .create_user(&NewUser {
                username: username.to_owned(),
                password_hash: sluice_web::hash_password(PASSWORD).expect("hashing"),
                role,
                now: at(0),
            })
            .await
            .expect("creating a user");
    }

    /// Opens the login form and posts it as a browser would (with the form's token and its
    /// cookie); on success the session is kept for the next requests.
    pub async fn login(&self, username: &str, password: &str) -> Page {
        let (cookie, csrf) = self.login_form().await;
        let form = [
            ("username", username),
            ("password", password),
            ("next", "/"),
            ("csrf", &csrf),
        ];
        let mut request = form_request("/login", &form, None);
        request.headers_mut().insert(
            header::COOKIE,
            format!("sluice_login={cookie}")
                .parse()
                .expect("a valid header"),
        );
        let answer = self.send(request).await;
        let cookie = answer
            .headers
            .get(header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .and_then(|pair| pair.strip_prefix("sluice_session="))
            .map(str::to_owned);
        if let Some(cookie) = cookie {
            self.set_session(&cookie, "");
            let html = self.page("/").await;
            let csrf = html
                .split("name=\"csrf\" value=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("every page carries the CSRF token")
                .to_owned();
            self.set_session(&cookie, &csrf);
        }
        answer
    }

    /// A new API token with `role`, named after it.
    pub async fn api_token(&self, role: Role) -> String {
        let token = sluice_web::new_api_token();
        self.store
            .create_api_token(&sluice_store::NewApiToken {
                name: format!("{role}-token"),
                token_hash: sluice_web::token_hash(&token),
                role,
                now: at(0),
            })
            .await
            .expect("creating an API token");
        token
    }

    /// An API call: `token` as the bearer (if any), `body` as JSON (if any).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        let answer = self
            .send(request.body(body).expect("a valid request"))
            .await;
        let json = serde_json::from_str(&answer.body)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {}", answer.body));
        (answer.status, json)
    }

    /// The login page's token cookie and the same token from its form.
    pub async fn login_form(&self) -> (String, String) {
        let form = self
            .send(
                Request::get("/login")
                    .body(Body::empty())
                    .expect("a request"),
            )
            .await;
        let cookie = form
            .headers
            .get(header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .and_then(|pair| pair.strip_prefix("sluice_login="))
            .expect("the login page sets its token cookie")
            .to_owned();
        let csrf = form
            .body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the login form carries its token")
            .to_owned();
        (cookie, csrf)
    }

    /// Posts a form as is: no session cookie, no CSRF token.
    pub async fn send_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(form_request(path, fields, None)).await
    }

    /// Uses this session cookie and CSRF token from now on.
    pub fn set_session(&self, cookie: &str, csrf: &str) {
        *self.session.lock().expect("not poisoned") = Some((cookie.to_owned(), csrf.to_owned()));
    }

    pub fn csrf(&self) -> String {
        self.session
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|(_, csrf)| csrf.clone())
            .unwrap_or_default()
    }

    /// The `Cookie` header of this session.
    pub fn cookie_header(&self) -> String {
        format!("sluice_session={}", self.cookie().unwrap_or_default())
    }

    fn cookie(&self) -> Option<String> {
        self.session
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|(cookie, _)| cookie.clone())
    }

    pub async fn get(&self, path: &str) -> Page {
        let mut request = Request::get(path);
        if let Some(cookie) = self.cookie() {
            request = request.header(header::COOKIE, format!("sluice_session={cookie}"));
        }
        self.send(request.body(Body::empty()).expect("a valid request"))
            .await
    }

    /// Posts a form with this session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf();
        let mut with_token = fields.to_vec();
        with_token.push(("csrf", &csrf));
        self.post_without_csrf(path, &with_token).await
    }

    pub async fn post_without_csrf(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(form_request(path, fields, self.cookie().as_deref()))
            .await
    }

    pub async fn send(&self, request: Request<Body>) -> Page {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("reading the body");
        Page {
            status,
            headers,
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

fn form_request(path: &str, fields: &[(&str, &str)], cookie: Option<&str>) -> Request<Body> {
    let body = serde_urlencoded::to_string(fields).expect("a form encodes");
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("sluice_session={cookie}"));
    }
    request.body(Body::from(body)).expect("a valid request")
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
