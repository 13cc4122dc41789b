//! Runs the store conformance suite on SQLite and on PostgreSQL, one fresh database per test.
//!
//! Each suite function becomes `<function>::sqlite` and `<function>::postgres`, so a failure
//! names the behaviour and the backend. The PostgreSQL tests follow `sluice_store::testing`:
//! without `SLUICE_TEST_DATABASE_URL` they print `skipped: …` and pass (under `CI=true`, fail).

// in a folder, so cargo does not take it for a test binary of its own
#[path = "conformance/postgres_only.rs"]
mod postgres_only;

use std::sync::Arc;

use async_trait::async_trait;
use sluice_store::Store;
use sluice_store::conformance::{self, Connector};
use sluice_store::testing::{TestDatabase, fresh_postgres_url};

/// A SQLite file in a directory of its own, removed with it.
struct SqliteDb {
    _dir: tempfile::TempDir,
    url: String,
}

impl SqliteDb {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
        SqliteDb { _dir: dir, url }
    }
}

#[async_trait]
impl Connector for SqliteDb {
    async fn open(&self) -> Arc<dyn Store> {
        sluice_store::connect(&self.url)
            .await
            .expect("opening the SQLite store")
    }
}

struct PostgresDb(TestDatabase);

#[async_trait]
impl Connector for PostgresDb {
    async fn open(&self) -> Arc<dyn Store> {
        sluice_store::connect(self.0.url())
            .await
            .expect("opening the PostgreSQL store")
    }
}

/// `store: f, …;` suite functions over one handle, `connector: g, …;` over several.
macro_rules! suite {
    (store: $($store_test:ident),* $(,)?; connector: $($connector_test:ident),* $(,)?;) => {
        $(
            mod $store_test {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let db = SqliteDb::new();
                    let store = db.open().await;
                    conformance::$store_test(store.as_ref()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    let Some(database) = fresh_postgres_url().await else { return };
                    let db = PostgresDb(database);
                    let store = db.open().await;
                    conformance::$store_test(store.as_ref()).await;
                }
            }
        )*
        $(
            mod $connector_test {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    conformance::$connector_test(&SqliteDb::new()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    let Some(database) = fresh_postgres_url().await else { return };
                    conformance::$connector_test(&PostgresDb(database)).await;
                }
            }
        )*
    };
}

suite! {
    store:
        migrate_is_idempotent,
        sync_dags_upserts_and_keeps_paused,
        sync_dags_marks_missing_dags_inactive,
        sync_dags_replaces_import_errors,
        set_paused_of_unknown_dag_is_not_found,
        worker_heartbeat_upserts_and_lists,
        create_run_if_absent_is_idempotent,
        last_scheduled_interval_end_ignores_manual_runs,
        start_queued_runs_respects_max_active_runs_and_queues_roots_only,
        run_without_tasks_succeeds_when_started,
        evaluate_run_changes_nothing_when_nothing_happened,
        cancel_run_cancels_unfinished_work_and_leases,
        list_runs_filters_newest_first,
        claims_follow_priority_then_age,
        claims_only_from_requested_queues,
        claim_carries_the_run_context,
        stale_lease_is_refused,
        success_queues_downstream_and_wakes_workers,
        failure_with_fixed_retry_waits_until_next_try_at,
        failure_with_exponential_retry_doubles_and_caps,
        failure_without_retries_fails_downstream_and_run,
        all_done_cleanup_runs_after_failure_and_run_still_fails,
        skipped_branch_cascades_and_run_succeeds,
        retried_task_keeps_every_attempt_and_its_log,
        read_log_returns_chunks_after_seq,
        run_outputs_come_from_successful_attempts,
        backfill_runs_start_within_its_limit_oldest_first_and_it_finishes,
        reverse_backfill_starts_newest_first,
        one_open_backfill_per_dag,
        cleared_tasks_run_again_and_keep_every_attempt,
        a_backfill_reruns_existing_runs_within_its_limit,
        cancel_backfill_cancels_its_unfinished_runs,
        zombie_attempts_fail_with_the_reason_and_retry,
        cancel_run_tells_workers_to_check_their_leases,
        find_runs_looks_across_dags,
        pools_cap_running_instances_and_list_their_use,
        log_beyond_the_cap_keeps_the_tail_and_counts_the_rest,
        finish_with_log_records_the_last_lines_with_the_result,
        finish_beyond_the_log_cap_keeps_the_tail,
        a_success_after_the_task_was_marked_is_refused_and_writes_nothing,
        claims_take_due_retries_and_queued_work_by_priority_across_queues,
        claims_within_pools_take_due_retries_and_queued_work_by_priority;
    connector:
        concurrent_run_creation_creates_one_run,
        concurrent_claims_never_claim_an_instance_twice,
        concurrent_finishes_queue_every_join,
        a_wide_fan_out_ends_its_run_with_its_last_attempt,
        a_join_after_a_wide_fan_out_runs_once_when_its_last_upstream_ends,
        a_failure_and_a_success_ending_together_decide_every_all_done_join,
        concurrent_starts_respect_max_active_runs,
        concurrent_syncs_all_succeed,
        concurrent_backfill_steps_respect_its_limit,
        concurrent_claims_never_overfill_a_pool,
        concurrent_zombie_sweeps_fail_each_zombie_once,
        concurrent_last_finishes_end_their_run;
}

// the web's tables (users, sessions, API tokens, audit events)
suite! {
    store:
        users_are_unique_by_name_and_listed_by_name,
        sessions_expire_and_end_on_logout,
        api_tokens_are_found_by_hash_only,
        events_are_listed_newest_first_in_pages,
        run_pages_continue_from_a_cursor_and_filter_by_state,
        task_counts_and_attempt_durations_cover_every_attempt,
        marking_a_task_settles_it_ends_its_lease_and_decides_the_run_again,
        recent_runs_and_instances_of_runs_read_many_at_once;
    connector: ;
}

// attempts' rendered fields (the task instance page)
suite! {
    store:
        rendered_fields_are_recorded_under_the_lease_and_read_per_run;
    connector: ;
}

// schedulers' loop times (`/metrics`)
suite! {
    store:
        scheduler_ticks_add_up_per_scheduler_and_silent_ones_are_forgotten;
    connector: ;
}

// `foreach` from a template: expansion into mapped instances
suite! {
    store:
        a_template_placeholder_expands_once_into_queued_mapped_instances,
        an_empty_expansion_skips_the_task_and_its_downstream,
        a_failed_expansion_is_retried_and_fails_downstream,
        a_cleared_template_task_expands_again_and_drops_the_items_it_no_longer_has;
    connector: ;
}

// sensors in `mode: reschedule`
suite! {
    store:
        a_rescheduled_attempt_is_claimed_again_in_the_same_try_after_its_poke_time,
        a_rescheduled_attempt_frees_its_pool_slot,
        a_rescheduled_try_keeps_its_retries,
        cancelling_a_run_cancels_a_rescheduled_attempt,
        marking_a_rescheduled_sensor_ends_its_waiting_attempt;
    connector: ;
}
