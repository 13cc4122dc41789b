//! Server time of the two heaviest pages over real HTTP against the release build: the DAG
//! list with 1,000 DAGs (14 recent runs each) and a DAG page whose grid is 100 runs × 50
//! tasks. Targets: p50 under 20 ms each.
//!
//! `cargo bench --bench web` (SQLite file in a temp dir; the web app served in-process on a
//! free port, requests one at a time from a keep-alive client, after a warm-up).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, TimeZone, Utc};
use sluice_core::spec::RetryPolicy;
use sluice_core::{DataInterval, RunType, TriggerRule};
use sluice_store::{
    DagSnapshot, DagSync, NewRun, NewSession, NewTaskInstance, NewUser, Role, Store, UNMAPPED,
};

const DAGS: usize = 1_000;
const RUNS_PER_DAG: i64 = 14;
const GRID_RUNS: i64 = 100;
const GRID_TASKS: usize = 50;
const REQUESTS: usize = 200;

fn source(dag_id: &str, tasks: usize) -> String {
    let mut yaml = format!(
        "dag: {dag_id}\nschedule: '0 2 * * *'\nstart_date: 2026-01-01\ntags: [bench]\ntasks:\n"
    );
    for i in 0..tasks {
        yaml.push_str(&format!("  t{i:02}:\n    type: noop\n"));
        if i > 0 {
            yaml.push_str(&format!("    depends_on: [t{:02}]\n", i - 1));
        }
    }
    yaml
}

fn instance(task_id: String) -> NewTaskInstance {
    NewTaskInstance {
        task_id,
        map_index: UNMAPPED,
        upstream: Vec::new(),
        trigger_rule: TriggerRule::AllSuccess,
        retry: RetryPolicy::default(),
        timeout: None,
        queue: "default".to_owned(),
        pool: None,
        priority: 0,
    }
}

async fn seed_runs(store: &dyn Store, dag_id: &str, runs: i64, tasks: usize) {
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 2, 0, 0)
        .single()
        .expect("a date");
    for day in 0..runs {
        let logical_date = start + TimeDelta::days(day);
        store
            .create_run_if_absent(&NewRun {
                dag_id: dag_id.to_owned(),
                run_id: format!("scheduled__{}", logical_date.format("%Y-%m-%dT%H:%M:%SZ")),
                run_type: RunType::Scheduled,
                logical_date,
                data_interval: DataInterval {
                    start: logical_date,
                    end: logical_date + TimeDelta::days(1),
                },
                dag_hash: format!("{dag_id}-hash"),
                params: BTreeMap::new(),
                triggered_by: "bench".to_owned(),
                tasks: (0..tasks).map(|i| instance(format!("t{i:02}"))).collect(),
                now: logical_date + TimeDelta::days(1),
            })
            .await
            .expect("creating a run");
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = sluice_store::connect(&url)
        .await
        .expect("opening the store");
    let seeding = Instant::now();
    let mut dags: Vec<DagSnapshot> = (0..DAGS)
        .map(|i| {
            let dag_id = format!("dag_{i:04}");
            DagSnapshot {
                fileloc: format!("dags/{dag_id}.yaml"),
                hash: format!("{dag_id}-hash"),
                source: source(&dag_id, 5),
                schedule: Some("0 2 * * *".to_owned()),
                timezone: "UTC".to_owned(),
                description: Some(format!("benchmark DAG {i}")),
                tags: vec!["bench".to_owned()],
                dag_id,
            }
        })
        .collect();
    dags.push(DagSnapshot {
        dag_id: "wide".to_owned(),
        fileloc: "dags/wide.yaml".to_owned(),
        hash: "wide-hash".to_owned(),
        source: source("wide", GRID_TASKS),
        schedule: Some("0 2 * * *".to_owned()),
        timezone: "UTC".to_owned(),
        description: None,
        tags: Vec::new(),
    });
    store
        .sync_dags(&DagSync {
            dags,
            import_errors: Vec::new(),
            now: Utc::now(),
        })
        .await
        .expect("syncing");
    for i in 0..DAGS {
        seed_runs(store.as_ref(), &format!("dag_{i:04}"), RUNS_PER_DAG, 2).await;
    }
    seed_runs(store.as_ref(), "wide", GRID_RUNS, GRID_TASKS).await;
    let user = store
        .create_user(&NewUser {
            username: "bench".to_owned(),
            password_hash: "unused".to_owned(),
            role: Role::Viewer,
            now: Utc::now(),
        })
        .await
        .expect("a user");
    let token = "bench-session-token";
    store
        .create_session(&NewSession {
            token_hash: sluice_web::token_hash(token),
            user_id: user.id,
            csrf_token: "csrf".to_owned(),
            now: Utc::now(),
            expires_at: Utc::now() + TimeDelta::hours(1),
        })
        .await
        .expect("a session");
    println!(
        "seeded {DAGS} DAGs × {RUNS_PER_DAG} runs and a {GRID_RUNS} × {GRID_TASKS} grid in {:.1}s",
        seeding.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(sluice_web::serve(
        listener,
        sluice_web::AppState::new(store.clone()),
        std::future::pending(),
    ));
    // sluice-worker's reqwest brings rustls without a crypto provider; cargo unifies that
    // feature into this reqwest, so install ring as the default before building a client
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    for (name, path) in [
        ("DAG list, 1,000 DAGs", "/"),
        ("DAG page, grid 100 runs × 50 tasks", "/dags/wide"),
    ] {
        let url = format!("http://{address}{path}");
        let mut times = Vec::with_capacity(REQUESTS);
        for round in 0..REQUESTS + 20 {
            let started = Instant::now();
            let response = client
                .get(&url)
                .header("cookie", format!("sluice_session={token}"))
                .send()
                .await
                .expect("a response");
            assert_eq!(response.status(), 200, "{path}");
            let body = response.text().await.expect("a body");
            let took = started.elapsed();
            if round == 0 {
                println!("{name}: {} KiB of HTML", body.len() / 1024);
            }
            if round >= 20 {
                times.push(took);
            }
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "{name}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms ({REQUESTS} requests; target p50 < 20 ms)",
            ms(at(0.5)),
            ms(at(0.9)),
            ms(at(0.99))
        );
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
