//! `foreach` from a template: a placeholder expands once into queued mapped instances, and
//! downstream sees them all.

use super::*;

fn mapped_run(day: i64) -> NewRun {
    daily_run(
        "fanout",
        day,
        vec![
            task("start", &[]),
            task("fan", &["start"]),
            task("after", &["fan"]),
        ],
    )
}

/// task id and map index → state.
async fn mapped_states(store: &dyn Store, run_pk: i64) -> Vec<(String, i32, TaskState)> {
    let mut states: Vec<_> = store
        .task_instances(run_pk)
        .await
        .expect("reading task instances")
        .into_iter()
        .map(|ti| (ti.task_id, ti.map_index, ti.state))
        .collect();
    states.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    states
}

fn expected(rows: &[(&str, i32, TaskState)]) -> Vec<(String, i32, TaskState)> {
    let mut rows: Vec<_> = rows
        .iter()
        .map(|(id, index, state)| ((*id).to_owned(), *index, *state))
        .collect();
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    rows
}

/// Starts the run, finishes `start`, and claims `fan`'s placeholder.
async fn claimed_placeholder(store: &dyn Store) -> (RunRecord, ClaimedAttempt) {
    let run = started_run(store, &mapped_run(0)).await;
    let start = claim_one(store, t(DAY)).await;
    store
        .finish_attempt(&finished(&start, AttemptOutcome::Success, t(DAY + 1)))
        .await
        .expect("finishing start");
    let placeholder = claim_one(store, t(DAY + 2)).await;
    assert_eq!(
        (placeholder.task_id.as_str(), placeholder.map_index),
        ("fan", UNMAPPED)
    );
    (run, placeholder)
}

pub async fn a_template_placeholder_expands_once_into_queued_mapped_instances(store: &dyn Store) {
    use TaskState::*;
    let (run, placeholder) = claimed_placeholder(store).await;
    let expand = ExpandTask {
        lease: placeholder.lease.clone(),
        items: vec![json!("a.csv"), json!({"path": "b.csv"}), json!(3)],
        log: "foreach rendered to 3 items\n".to_owned(),
        now: t(DAY + 3),
    };
    let result = store.expand_mapped_task(&expand).await.expect("expanding");
    assert_eq!(result.task_state, Success);
    assert_lease_lost(
        store.expand_mapped_task(&expand).await,
        "a second expansion",
    );
    assert_eq!(
        mapped_states(store, run.pk).await,
        expected(&[
            ("start", -1, Success),
            ("fan", -1, Success),
            ("fan", 0, Queued),
            ("fan", 1, Queued),
            ("fan", 2, Queued),
            ("after", -1, Pending),
        ])
    );
    let log = store
        .read_log(placeholder.lease.attempt_id, 0)
        .await
        .expect("reading the placeholder's log");
    assert_eq!(log[0].content, "foreach rendered to 3 items\n");
    let mut claimed = store
        .claim_attempts(&claim("worker-1", 10, t(DAY + 4)))
        .await
        .expect("claiming the mapped instances");
    claimed.sort_by_key(|c| c.map_index);
    assert_eq!(
        claimed.iter().map(|c| c.map_index).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        store.mapped_item(claimed[1].ti_id).await.expect("reading"),
        Some(json!({"path": "b.csv"}))
    );
    assert_eq!(
        store.mapped_item(placeholder.ti_id).await.expect("reading"),
        None
    );
    for attempt in [&claimed[2], &claimed[0]] {
        let mut finish = finished(attempt, AttemptOutcome::Success, t(DAY + 5));
        finish
            .outputs
            .insert("rows".to_owned(), json!(attempt.map_index * 10));
        store.finish_attempt(&finish).await.expect("finishing");
    }
    assert_eq!(
        states(store, run.pk).await.get("after"),
        Some(&Pending),
        "after waits for every mapped instance"
    );
    store
        .finish_attempt(&finished(&claimed[1], AttemptOutcome::Success, t(DAY + 6)))
        .await
        .expect("finishing the last");
    assert_eq!(states(store, run.pk).await.get("after"), Some(&Queued));
    let outputs = store.run_outputs(run.pk).await.expect("reading outputs");
    assert_eq!(
        outputs["fan"]["rows"],
        json!([0, null, 20]),
        "a mapped task's output is the list of its instances' values, by map index"
    );
}

pub async fn an_empty_expansion_skips_the_task_and_its_downstream(store: &dyn Store) {
    use TaskState::*;
    let (run, placeholder) = claimed_placeholder(store).await;
    let result = store
        .expand_mapped_task(&ExpandTask {
            lease: placeholder.lease.clone(),
            items: vec![],
            log: String::new(),
            now: t(DAY + 3),
        })
        .await
        .expect("expanding");
    assert_eq!(result.task_state, Skipped);
    assert_eq!(
        mapped_states(store, run.pk).await,
        expected(&[
            ("start", -1, Success),
            ("fan", -1, Skipped),
            ("after", -1, Skipped),
        ])
    );
    assert_eq!(
        run_state(store, run.pk).await,
        sluice_core::RunState::Success
    );
}

pub async fn a_failed_expansion_is_retried_and_fails_downstream(store: &dyn Store) {
    use TaskState::*;
    let (run, placeholder) = claimed_placeholder(store).await;
    let mut failed = finished(&placeholder, AttemptOutcome::Failed, t(DAY + 3));
    failed.error = Some("`foreach` rendered `3`, not a list".to_owned());
    store.finish_attempt(&failed).await.expect("failing");
    assert_eq!(
        mapped_states(store, run.pk).await,
        expected(&[
            ("start", -1, Success),
            ("fan", -1, Failed),
            ("after", -1, UpstreamFailed),
        ])
    );
}

pub async fn a_cleared_template_task_expands_again_and_drops_the_items_it_no_longer_has(
    store: &dyn Store,
) {
    use TaskState::*;
    let (run, placeholder) = claimed_placeholder(store).await;
    store
        .expand_mapped_task(&ExpandTask {
            lease: placeholder.lease.clone(),
            items: vec![json!("a"), json!("b"), json!("c")],
            log: String::new(),
            now: t(DAY + 3),
        })
        .await
        .expect("expanding");
    let mut now = DAY + 4;
    work_all(store, &mut now).await;
    assert_eq!(
        run_state(store, run.pk).await,
        sluice_core::RunState::Success
    );
    let cleared = store
        .clear_tasks(&ClearTasks {
            run_pk: run.pk,
            task_ids: vec!["fan".to_owned(), "after".to_owned()],
            now: t(DAY + 20),
        })
        .await
        .expect("clearing");
    assert_eq!(cleared, 5);
    store
        .start_queued_runs("fanout", 16, t(DAY + 20))
        .await
        .expect("starting the cleared run again");
    assert_eq!(
        mapped_states(store, run.pk).await,
        expected(&[
            ("start", -1, Success),
            ("fan", -1, Queued),
            ("fan", 0, Pending),
            ("fan", 1, Pending),
            ("fan", 2, Pending),
            ("after", -1, Pending),
        ]),
        "the mapped instances wait for the placeholder to expand again"
    );
    let placeholder = claim_one(store, t(DAY + 21)).await;
    assert_eq!(placeholder.map_index, UNMAPPED);
    store
        .expand_mapped_task(&ExpandTask {
            lease: placeholder.lease.clone(),
            items: vec![json!("x"), json!("y")],
            log: String::new(),
            now: t(DAY + 22),
        })
        .await
        .expect("expanding again");
    let instances = store.task_instances(run.pk).await.expect("reading");
    let second = instances
        .iter()
        .find(|ti| ti.task_id == "fan" && ti.map_index == 1)
        .expect("fan[1]");
    assert_eq!(
        store.mapped_item(second.id).await.expect("reading"),
        Some(json!("y"))
    );
    assert_eq!(
        mapped_states(store, run.pk).await,
        expected(&[
            ("start", -1, Success),
            ("fan", -1, Success),
            ("fan", 0, Queued),
            ("fan", 1, Queued),
            ("fan", 2, Skipped),
            ("after", -1, Pending),
        ])
    );
    now = DAY + 30;
    work_all(store, &mut now).await;
    assert_eq!(
        states(store, run.pk).await.get("after"),
        Some(&Success),
        "the dropped item does not skip downstream"
    );
    assert_eq!(
        run_state(store, run.pk).await,
        sluice_core::RunState::Success
    );
    let outputs = store.run_outputs(run.pk).await.expect("reading outputs");
    assert_eq!(outputs["fan"]["n"], json!([0, 1]));
}

/// Claims and finishes (in success, with output `n` = map index) until nothing is claimable.
async fn work_all(store: &dyn Store, now: &mut i64) {
    loop {
        *now += 1;
        let claimed = store
            .claim_attempts(&claim("worker-1", 10, t(*now)))
            .await
            .expect("claiming");
        if claimed.is_empty() {
            return;
        }
        for attempt in claimed {
            let mut finish = finished(&attempt, AttemptOutcome::Success, t(*now));
            if attempt.map_index >= 0 {
                finish
                    .outputs
                    .insert("n".to_owned(), json!(attempt.map_index));
            }
            store.finish_attempt(&finish).await.expect("finishing");
        }
    }
}
