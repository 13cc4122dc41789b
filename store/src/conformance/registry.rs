//! The DAG registry: what `sync_dags` mirrors of the DAG folder.

use super::*;

fn snapshot(dag_id: &str, hash: &str) -> DagSnapshot {
    DagSnapshot {
        dag_id: dag_id.to_owned(),
        fileloc: format!("dags/{dag_id}.yaml"),
        hash: hash.to_owned(),
        source: format!("dag: {dag_id}\n# {hash}\n"),
        schedule: Some("0 2 * * *".to_owned()),
        timezone: "Asia/Seoul".to_owned(),
        description: Some(format!("the {dag_id} pipeline")),
        tags: vec!["sales".to_owned(), "daily".to_owned()],
    }
}

fn sync(
    dags: Vec<DagSnapshot>,
    import_errors: Vec<ImportErrorRecord>,
    now: DateTime<Utc>,
) -> DagSync {
    DagSync {
        dags,
        import_errors,
        now,
    }
}

async fn dag(store: &dyn Store, dag_id: &str) -> DagRecord {
    store
        .get_dag(dag_id)
        .await
        .expect("reading the DAG")
        .unwrap_or_else(|| panic!("DAG {dag_id} is missing"))
}

pub async fn migrate_is_idempotent(store: &dyn Store) {
    store
        .migrate()
        .await
        .expect("migrating a migrated database");
    store.migrate().await.expect("migrating it once more");
    assert!(store.list_dags().await.expect("listing DAGs").is_empty());
}

pub async fn sync_dags_upserts_and_keeps_paused(store: &dyn Store) {
    store
        .sync_dags(&sync(
            vec![snapshot("sales", "h1"), snapshot("ads", "a1")],
            vec![],
            t(0),
        ))
        .await
        .expect("first sync");
    let first = dag(store, "sales").await;
    assert_eq!(
        (first.hash.as_str(), first.is_paused, first.is_active),
        ("h1", false, true)
    );
    assert_eq!(first.schedule.as_deref(), Some("0 2 * * *"));
    assert_eq!(first.timezone, "Asia/Seoul");
    assert_eq!(first.description.as_deref(), Some("the sales pipeline"));
    assert_eq!(first.tags, ["sales", "daily"]);
    assert_eq!(first.updated_at, t(0));

    store
        .set_paused("sales", Paused::Paused)
        .await
        .expect("pausing");
    // the same file again changes nothing, not even the time of the last change
    store
        .sync_dags(&sync(
            vec![snapshot("sales", "h1"), snapshot("ads", "a1")],
            vec![],
            t(10),
        ))
        .await
        .expect("unchanged sync");
    assert_eq!(dag(store, "sales").await.updated_at, t(0));

    let mut changed = snapshot("sales", "h2");
    changed.schedule = None;
    changed.tags = vec![];
    store
        .sync_dags(&sync(vec![changed, snapshot("ads", "a1")], vec![], t(20)))
        .await
        .expect("sync of a changed file");
    let second = dag(store, "sales").await;
    assert_eq!(second.hash, "h2");
    assert!(second.is_paused, "a sync must keep the DAG paused");
    assert_eq!(second.schedule, None);
    assert!(second.tags.is_empty());
    assert_eq!(second.updated_at, t(20));

    // every hash keeps its exact source, so old runs still find the version they pinned
    for hash in ["h1", "h2"] {
        let version = store
            .dag_version(hash)
            .await
            .expect("reading a version")
            .unwrap_or_else(|| panic!("version {hash} is missing"));
        assert_eq!(version.dag_id, "sales");
        assert_eq!(version.fileloc, "dags/sales.yaml");
        assert_eq!(version.source, format!("dag: sales\n# {hash}\n"));
    }
    assert!(store.dag_version("nope").await.expect("reading").is_none());

    let ids: Vec<String> = store
        .list_dags()
        .await
        .expect("listing")
        .into_iter()
        .map(|d| d.dag_id)
        .collect();
    assert_eq!(ids, ["ads", "sales"], "DAGs are listed by id");

    store
        .set_paused("sales", Paused::Active)
        .await
        .expect("unpausing");
    assert!(!dag(store, "sales").await.is_paused);
}

pub async fn sync_dags_marks_missing_dags_inactive(store: &dyn Store) {
    store
        .sync_dags(&sync(
            vec![snapshot("a", "a1"), snapshot("b", "b1")],
            vec![],
            t(0),
        ))
        .await
        .expect("first sync");
    store
        .sync_dags(&sync(vec![snapshot("a", "a1")], vec![], t(60)))
        .await
        .expect("sync without b");
    let gone = dag(store, "b").await;
    assert!(!gone.is_active, "a DAG whose file is gone is inactive");
    assert_eq!(gone.updated_at, t(60));
    assert!(dag(store, "a").await.is_active);
    assert_eq!(
        store.list_dags().await.expect("listing").len(),
        2,
        "inactive DAGs stay listed"
    );

    store
        .sync_dags(&sync(
            vec![snapshot("a", "a1"), snapshot("b", "b1")],
            vec![],
            t(120),
        ))
        .await
        .expect("sync with b back");
    let back = dag(store, "b").await;
    assert!(back.is_active, "a DAG whose file is back is active again");
    assert_eq!(back.updated_at, t(120));

    store
        .sync_dags(&sync(vec![], vec![], t(180)))
        .await
        .expect("sync of an empty folder");
    assert!(
        store
            .list_dags()
            .await
            .expect("listing")
            .iter()
            .all(|d| !d.is_active)
    );
}

pub async fn sync_dags_replaces_import_errors(store: &dyn Store) {
    let broken = |file: &str, message: &str| ImportErrorRecord {
        fileloc: file.to_owned(),
        errors: vec![format!("{file}:3:5: {message}")],
    };
    store
        .sync_dags(&sync(
            vec![snapshot("a", "a1")],
            vec![
                broken("dags/b.yaml", "unknown key `shedule`"),
                broken("dags/c.yaml", "cycle a -> a"),
            ],
            t(0),
        ))
        .await
        .expect("sync with errors");
    assert_eq!(
        store.import_errors().await.expect("reading errors"),
        vec![
            broken("dags/b.yaml", "unknown key `shedule`"),
            broken("dags/c.yaml", "cycle a -> a")
        ]
    );
    store
        .sync_dags(&sync(
            vec![snapshot("a", "a1")],
            vec![broken("dags/c.yaml", "cycle c -> c")],
            t(60),
        ))
        .await
        .expect("sync with other errors");
    assert_eq!(
        store.import_errors().await.expect("reading errors"),
        vec![broken("dags/c.yaml", "cycle c -> c")],
        "errors are replaced, not added"
    );
    store
        .sync_dags(&sync(vec![snapshot("a", "a1")], vec![], t(120)))
        .await
        .expect("clean sync");
    assert!(
        store
            .import_errors()
            .await
            .expect("reading errors")
            .is_empty()
    );
}

pub async fn set_paused_of_unknown_dag_is_not_found(store: &dyn Store) {
    let result = store.set_paused("ghost", Paused::Paused).await;
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "pausing an unknown DAG: {result:?}"
    );
    assert!(store.get_dag("ghost").await.expect("reading").is_none());
}

pub async fn worker_heartbeat_upserts_and_lists(store: &dyn Store) {
    let beat = |worker_id: &str, slots_in_use: u32, now: DateTime<Utc>| WorkerBeat {
        worker_id: worker_id.to_owned(),
        host: "node-1".to_owned(),
        queues: vec!["default".to_owned(), "spark".to_owned()],
        slots: 4,
        slots_in_use,
        now,
    };
    store
        .worker_heartbeat(&beat("w-b", 0, t(0)))
        .await
        .expect("beat");
    store
        .worker_heartbeat(&beat("w-a", 1, t(5)))
        .await
        .expect("beat");
    store
        .worker_heartbeat(&beat("w-b", 3, t(30)))
        .await
        .expect("second beat");
    let workers = store.list_workers().await.expect("listing workers");
    let ids: Vec<&str> = workers.iter().map(|w| w.worker_id.as_str()).collect();
    assert_eq!(ids, ["w-a", "w-b"], "workers are listed by id, once each");
    let b = &workers[1];
    assert_eq!(b.host, "node-1");
    assert_eq!(b.queues, ["default", "spark"]);
    assert_eq!((b.slots, b.slots_in_use), (4, 3));
    assert_eq!(b.started_at, t(0), "a heartbeat keeps the start time");
    assert_eq!(b.heartbeat_at, t(30));
}
