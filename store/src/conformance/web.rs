//! The web's rows: users, login sessions, API tokens and the audit log.

use super::*;

fn new_user(username: &str, role: Role) -> NewUser {
    NewUser {
        username: username.to_owned(),
        password_hash: format!("$argon2id$hash-of-{username}"),
        role,
        now: t(0),
    }
}

pub async fn users_are_unique_by_name_and_listed_by_name(store: &dyn Store) {
    let zoe = store
        .create_user(&new_user("zoe", Role::Operator))
        .await
        .expect("creating zoe");
    assert_eq!((zoe.username.as_str(), zoe.role), ("zoe", Role::Operator));
    store
        .create_user(&new_user("ada", Role::Admin))
        .await
        .expect("creating ada");
    let again = store.create_user(&new_user("zoe", Role::Viewer)).await;
    assert!(
        matches!(again, Err(StoreError::Conflict(ref message)) if message.contains("zoe")),
        "a second zoe: {again:?}"
    );
    let names: Vec<String> = store
        .list_users()
        .await
        .expect("listing users")
        .into_iter()
        .map(|user| user.username)
        .collect();
    assert_eq!(names, ["ada", "zoe"]);
    let found = store
        .get_user("zoe")
        .await
        .expect("reading zoe")
        .expect("zoe exists");
    assert_eq!(found.password_hash, "$argon2id$hash-of-zoe");
    assert_eq!(found.created_at, t(0));
    assert!(store.get_user("nobody").await.expect("reading").is_none());
}

pub async fn sessions_expire_and_end_on_logout(store: &dyn Store) {
    let user = store
        .create_user(&new_user("ada", Role::Viewer))
        .await
        .expect("creating ada");
    let session = |hash: &str, now: i64| NewSession {
        token_hash: hash.to_owned(),
        user_id: user.id,
        csrf_token: format!("csrf-{hash}"),
        now: t(now),
        expires_at: t(now + 100),
    };
    store
        .create_session(&session("first", 0))
        .await
        .expect("first login");
    let live = store
        .get_session("first", t(50))
        .await
        .expect("reading the session")
        .expect("the session is live");
    assert_eq!(
        live,
        SessionRecord {
            user_id: user.id,
            username: "ada".to_owned(),
            role: Role::Viewer,
            csrf_token: "csrf-first".to_owned(),
            expires_at: t(100),
        }
    );
    assert!(
        store
            .get_session("first", t(100))
            .await
            .expect("reading")
            .is_none(),
        "expired at its expiry time"
    );
    assert!(
        store
            .get_session("other", t(50))
            .await
            .expect("reading")
            .is_none()
    );

    store
        .create_session(&session("second", 200))
        .await
        .expect("second login, which drops the expired first one");
    store.delete_session("second").await.expect("logging out");
    store
        .delete_session("second")
        .await
        .expect("logging out twice is fine");
    assert!(
        store
            .get_session("second", t(201))
            .await
            .expect("reading")
            .is_none()
    );
}

pub async fn api_tokens_are_found_by_hash_only(store: &dyn Store) {
    let token = store
        .create_api_token(&NewApiToken {
            name: "ci".to_owned(),
            token_hash: "hash-ci".to_owned(),
            role: Role::Operator,
            now: t(5),
        })
        .await
        .expect("creating a token");
    assert_eq!((token.name.as_str(), token.role), ("ci", Role::Operator));
    let same_name = store
        .create_api_token(&NewApiToken {
            name: "ci".to_owned(),
            token_hash: "hash-other".to_owned(),
            role: Role::Viewer,
            now: t(6),
        })
        .await;
    assert!(
        matches!(same_name, Err(StoreError::Conflict(_))),
        "{same_name:?}"
    );
    assert_eq!(
        store.get_api_token("hash-ci").await.expect("reading"),
        Some(token.clone())
    );
    assert_eq!(store.get_api_token("ci").await.expect("reading"), None);
    assert_eq!(store.list_api_tokens().await.expect("listing"), [token]);
}

pub async fn events_are_listed_newest_first_in_pages(store: &dyn Store) {
    for (index, action) in ["trigger", "pause", "cancel_run"].iter().enumerate() {
        store
            .record_event(&NewEvent {
                actor: "user:ada".to_owned(),
                action: (*action).to_owned(),
                target: "sales".to_owned(),
                details: json!({ "n": index }),
                now: t(i64::try_from(index).expect("small")),
            })
            .await
            .expect("recording an event");
    }
    let first_page = store
        .list_events(&EventFilter {
            before_id: None,
            limit: 2,
        })
        .await
        .expect("listing events");
    let actions: Vec<&str> = first_page.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["cancel_run", "pause"]);
    assert_eq!(first_page[0].details, json!({ "n": 2 }));
    assert_eq!(first_page[0].at, t(2));
    let rest = store
        .list_events(&EventFilter {
            before_id: Some(first_page[1].id),
            limit: 2,
        })
        .await
        .expect("listing the next page");
    let actions: Vec<&str> = rest.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["trigger"]);
}

pub async fn run_pages_continue_from_a_cursor_and_filter_by_state(store: &dyn Store) {
    for day in 0..5 {
        let created = store
            .create_run_if_absent(&daily_run("sales", day, vec![task("a", &[])]))
            .await
            .expect("creating a run")
            .expect("a new run");
        if day == 1 {
            store
                .cancel_run(created.pk, t(10 * DAY))
                .await
                .expect("cancelling");
        }
    }
    store
        .create_run_if_absent(&daily_run("ads", 0, vec![task("a", &[])]))
        .await
        .expect("creating a run");
    let page = |before: Option<RunCursor>, state: Option<sluice_core::RunState>| RunPageQuery {
        dag_id: Some("sales".to_owned()),
        state,
        before,
        limit: 2,
    };
    let days = |runs: &[RunRecord]| -> Vec<i64> {
        runs.iter()
            .map(|run| (run.logical_date - t(0)).num_days())
            .collect()
    };
    let first = store
        .list_runs_page(&page(None, None))
        .await
        .expect("page 1");
    assert_eq!(days(&first), [4, 3]);
    let cursor = |run: &RunRecord| RunCursor {
        logical_date: run.logical_date,
        pk: run.pk,
    };
    let second = store
        .list_runs_page(&page(Some(cursor(&first[1])), None))
        .await
        .expect("page 2");
    assert_eq!(days(&second), [2, 1]);
    let third = store
        .list_runs_page(&page(Some(cursor(&second[1])), None))
        .await
        .expect("page 3");
    assert_eq!(days(&third), [0]);
    let cancelled = store
        .list_runs_page(&page(None, Some(sluice_core::RunState::Cancelled)))
        .await
        .expect("cancelled runs");
    assert_eq!(days(&cancelled), [1]);

    let counts = store.run_counts().await.expect("counting runs");
    let seen: Vec<(String, &str, u64)> = counts
        .iter()
        .map(|c| (c.dag_id.clone(), c.state.as_str(), c.count))
        .collect();
    assert_eq!(
        seen,
        [
            ("ads".to_owned(), "queued", 1),
            ("sales".to_owned(), "cancelled", 1),
            ("sales".to_owned(), "queued", 4),
        ]
    );
}

pub async fn task_counts_and_attempt_durations_cover_every_attempt(store: &dyn Store) {
    let empty = store.attempt_durations().await.expect("no attempts yet");
    assert_eq!(empty, AttemptDurations::default());
    let run = started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![task("a", &[]), task("b", &[]), task("c", &["a"])],
        ),
    )
    .await;
    let now = t(DAY);
    let first = claim_one(store, now).await;
    store
        .finish_attempt(&finished(
            &first,
            AttemptOutcome::Success,
            now + chrono::Duration::seconds(2),
        ))
        .await
        .expect("finishing after 2s");
    let second = claim_one(store, now).await;
    store
        .finish_attempt(&finished(
            &second,
            AttemptOutcome::Failed,
            now + chrono::Duration::seconds(120),
        ))
        .await
        .expect("finishing after 120s");

    let durations = store.attempt_durations().await.expect("reading durations");
    assert_eq!(durations.count, 2);
    assert!(
        (durations.sum_seconds - 122.0).abs() < 1e-6,
        "{durations:?}"
    );
    // 2s is in the `<= 5` bucket (index 3), 120s in `<= 300` (index 7)
    let mut expected = [0u64; 11];
    expected[3] = 1;
    expected[7] = 1;
    assert_eq!(durations.buckets, expected);

    let counts: Vec<(&str, u64)> = store
        .task_counts()
        .await
        .expect("counting task instances")
        .iter()
        .map(|c| (c.state.as_str(), c.count))
        .collect();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 3, "{counts:?} in run {}", run.run_id);
    assert!(counts.iter().all(|(_, n)| *n > 0), "{counts:?}");
}

pub async fn marking_a_task_settles_it_ends_its_lease_and_decides_the_run_again(store: &dyn Store) {
    use sluice_core::RunState;
    let run = started_run(
        store,
        &daily_run(
            "sales",
            0,
            vec![task("extract", &[]), task("load", &["extract"])],
        ),
    )
    .await;
    let now = t(DAY);
    let running = claim_one(store, now).await;
    let mark = |task_id: &str, state: TaskState| MarkTaskInstance {
        run_pk: run.pk,
        task_id: task_id.to_owned(),
        map_index: None,
        state,
        now: now + chrono::Duration::seconds(5),
    };

    store
        .mark_task_instance(&mark("extract", TaskState::Success))
        .await
        .expect("marking extract success");
    expect_states(
        &states(store, run.pk).await,
        &[("extract", TaskState::Success), ("load", TaskState::Queued)],
        "after marking extract success while it ran",
    );
    assert_lease_lost(
        store.heartbeat_attempt(&running.lease, now).await,
        "a heartbeat of the marked attempt",
    );
    let attempts = store.attempts(run.pk).await.expect("reading attempts");
    assert_eq!(attempts[0].state, sluice_core::AttemptState::Cancelled);

    let load = claim_one(store, now).await;
    store
        .finish_attempt(&finished(&load, AttemptOutcome::Failed, now))
        .await
        .expect("load fails");
    assert_eq!(run_state(store, run.pk).await, RunState::Failed);

    // marking the failure away reopens the run and lets it succeed
    store
        .mark_task_instance(&mark("load", TaskState::Success))
        .await
        .expect("marking load success");
    assert_eq!(run_state(store, run.pk).await, RunState::Success);

    let missing = store
        .mark_task_instance(&mark("nope", TaskState::Success))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    let pending = store
        .mark_task_instance(&mark("load", TaskState::Pending))
        .await;
    assert!(
        matches!(pending, Err(StoreError::Conflict(_))),
        "{pending:?}"
    );
}

pub async fn recent_runs_and_instances_of_runs_read_many_at_once(store: &dyn Store) {
    let mut pks = Vec::new();
    for day in 0..4 {
        let run = store
            .create_run_if_absent(&daily_run(
                "sales",
                day,
                vec![task("a", &[]), task("b", &["a"])],
            ))
            .await
            .expect("creating a run")
            .expect("a new run");
        pks.push(run.pk);
    }
    store
        .create_run_if_absent(&daily_run("ads", 0, vec![task("only", &[])]))
        .await
        .expect("creating a run");
    store
        .sync_dags(&DagSync {
            dags: ["ads", "sales", "idle"]
                .iter()
                .map(|id| DagSnapshot {
                    dag_id: (*id).to_owned(),
                    fileloc: format!("dags/{id}.yaml"),
                    hash: format!("{id}-hash"),
                    source: String::new(),
                    schedule: None,
                    timezone: "UTC".to_owned(),
                    description: None,
                    tags: Vec::new(),
                })
                .collect(),
            import_errors: Vec::new(),
            now: t(0),
        })
        .await
        .expect("syncing");

    let ids = ["ads", "sales", "idle"].map(str::to_owned);
    let recent: Vec<(String, i64)> = store
        .recent_runs(&ids, 2)
        .await
        .expect("reading recent runs")
        .iter()
        .map(|run| (run.dag_id.clone(), (run.logical_date - t(0)).num_days()))
        .collect();
    assert_eq!(
        recent,
        [
            ("ads".to_owned(), 0),
            ("sales".to_owned(), 3),
            ("sales".to_owned(), 2)
        ]
    );

    let only_ads = store
        .recent_runs(&["ads".to_owned()], 5)
        .await
        .expect("reading one DAG's runs");
    assert_eq!(only_ads.len(), 1);

    let instances = store
        .task_instances_of_runs(&pks[1..3])
        .await
        .expect("reading instances");
    let seen: Vec<(i64, &str)> = instances
        .iter()
        .map(|ti| (ti.run_pk, ti.task_id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [(pks[1], "a"), (pks[1], "b"), (pks[2], "a"), (pks[2], "b")]
    );
    assert!(
        store
            .task_instances_of_runs(&[])
            .await
            .expect("none")
            .is_empty()
    );
}
