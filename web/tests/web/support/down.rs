//! A store whose database is unreachable: every call fails, as during an outage, except the
//! session check, so the pages behind the login are reached.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_store::*;

/// The session cookie `DownStore` accepts.
pub const SESSION: &str = "outage-session";

/// The secret-looking detail a failure carries; it must never reach a page.
pub const DETAIL: &str = "connection to postgres://sluice:hunter2@db.internal refused";

pub struct DownStore;

fn down() -> StoreError {
    StoreError::Conflict(DETAIL.to_owned())
}

#[async_trait]
impl Store for DownStore {
    async fn migrate(&self) -> StoreResult<()> {
        Err(down())
    }

    async fn sync_dags(&self, _sync: &DagSync) -> StoreResult<()> {
        Err(down())
    }

    async fn list_dags(&self) -> StoreResult<Vec<DagRecord>> {
        Err(down())
    }

    async fn get_dag(&self, _dag_id: &str) -> StoreResult<Option<DagRecord>> {
        Err(down())
    }

    async fn set_paused(&self, _dag_id: &str, _paused: Paused) -> StoreResult<()> {
        Err(down())
    }

    async fn dag_version(&self, _hash: &str) -> StoreResult<Option<DagVersion>> {
        Err(down())
    }

    async fn import_errors(&self) -> StoreResult<Vec<ImportErrorRecord>> {
        Err(down())
    }

    async fn create_run_if_absent(&self, _run: &NewRun) -> StoreResult<Option<RunRecord>> {
        Err(down())
    }

    async fn last_scheduled_interval_end(
        &self,
        _dag_id: &str,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        Err(down())
    }

    async fn start_queued_runs(
        &self,
        _dag_id: &str,
        _max_active_runs: u32,
        _now: DateTime<Utc>,
    ) -> StoreResult<Vec<RunRecord>> {
        Err(down())
    }

    async fn evaluate_run(&self, _run_pk: i64, _now: DateTime<Utc>) -> StoreResult<RunProgress> {
        Err(down())
    }

    async fn running_run_pks(&self) -> StoreResult<Vec<i64>> {
        Err(down())
    }

    async fn cancel_run(&self, _run_pk: i64, _now: DateTime<Utc>) -> StoreResult<bool> {
        Err(down())
    }

    async fn claim_attempts(&self, _claim: &Claim) -> StoreResult<Vec<ClaimedAttempt>> {
        Err(down())
    }

    async fn heartbeat_attempt(&self, _lease: &Lease, _now: DateTime<Utc>) -> StoreResult<()> {
        Err(down())
    }

    async fn append_log(
        &self,
        _lease: &Lease,
        _chunk: &str,
        _now: DateTime<Utc>,
    ) -> StoreResult<()> {
        Err(down())
    }

    async fn finish_attempt(&self, _finish: &FinishAttempt) -> StoreResult<FinishResult> {
        Err(down())
    }

    async fn worker_heartbeat(&self, _worker: &WorkerBeat) -> StoreResult<()> {
        Err(down())
    }

    async fn list_workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        Err(down())
    }

    async fn dags_with_queued_runs(&self) -> StoreResult<Vec<String>> {
        Err(down())
    }

    async fn remove_worker(&self, _worker_id: &str) -> StoreResult<()> {
        Err(down())
    }

    async fn lost_leases(&self, _leases: &[Lease]) -> StoreResult<Vec<i64>> {
        Err(down())
    }

    async fn fail_zombies(&self, _sweep: &ZombieSweep) -> StoreResult<Vec<ZombieAttempt>> {
        Err(down())
    }

    async fn set_pool(&self, _pool: &PoolSlots, _now: DateTime<Utc>) -> StoreResult<()> {
        Err(down())
    }

    async fn delete_pool(&self, _name: &str) -> StoreResult<bool> {
        Err(down())
    }

    async fn list_pools(&self) -> StoreResult<Vec<PoolRecord>> {
        Err(down())
    }

    async fn find_runs(&self, _run_id: &str) -> StoreResult<Vec<RunRecord>> {
        Err(down())
    }

    async fn list_runs(&self, _filter: &RunFilter) -> StoreResult<Vec<RunRecord>> {
        Err(down())
    }

    async fn get_run(&self, _dag_id: &str, _run_id: &str) -> StoreResult<Option<RunRecord>> {
        Err(down())
    }

    async fn get_run_by_pk(&self, _run_pk: i64) -> StoreResult<Option<RunRecord>> {
        Err(down())
    }

    async fn task_instances(&self, _run_pk: i64) -> StoreResult<Vec<TaskInstanceRecord>> {
        Err(down())
    }

    async fn attempts(&self, _run_pk: i64) -> StoreResult<Vec<AttemptRecord>> {
        Err(down())
    }

    async fn read_log(&self, _attempt_id: i64, _after_seq: i64) -> StoreResult<Vec<LogChunk>> {
        Err(down())
    }

    async fn run_outputs(
        &self,
        _run_pk: i64,
    ) -> StoreResult<BTreeMap<String, BTreeMap<String, serde_json::Value>>> {
        Err(down())
    }

    async fn runs_in_range(&self, _range: &RunRange) -> StoreResult<Vec<RunRecord>> {
        Err(down())
    }

    async fn clear_tasks(&self, _clear: &ClearTasks) -> StoreResult<u32> {
        Err(down())
    }

    async fn create_backfill(&self, _backfill: &NewBackfill) -> StoreResult<BackfillRecord> {
        Err(down())
    }

    async fn get_backfill(&self, _id: i64) -> StoreResult<Option<BackfillRecord>> {
        Err(down())
    }

    async fn open_backfills(&self) -> StoreResult<Vec<BackfillRecord>> {
        Err(down())
    }

    async fn backfill_progress(&self, _id: i64) -> StoreResult<BackfillProgress> {
        Err(down())
    }

    async fn start_backfill_runs(
        &self,
        _id: i64,
        _now: DateTime<Utc>,
    ) -> StoreResult<BackfillStep> {
        Err(down())
    }

    async fn cancel_backfill(&self, _id: i64, _now: DateTime<Utc>) -> StoreResult<bool> {
        Err(down())
    }

    fn wakeups(&self) -> Wakeups {
        Wakeups::default()
    }

    async fn create_user(&self, _user: &NewUser) -> StoreResult<UserRecord> {
        Err(down())
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        Err(down())
    }

    async fn get_user(&self, _username: &str) -> StoreResult<Option<UserRecord>> {
        Err(down())
    }

    async fn create_session(&self, _session: &NewSession) -> StoreResult<()> {
        Err(down())
    }

    async fn get_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRecord>> {
        Ok(
            (token_hash == sluice_web::token_hash(SESSION)).then(|| SessionRecord {
                user_id: 1,
                username: "ada".to_owned(),
                role: Role::Admin,
                csrf_token: "csrf".to_owned(),
                expires_at: now + chrono::TimeDelta::hours(1),
            }),
        )
    }

    async fn delete_session(&self, _token_hash: &str) -> StoreResult<()> {
        Err(down())
    }

    async fn create_api_token(&self, _token: &NewApiToken) -> StoreResult<ApiTokenRecord> {
        Err(down())
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>> {
        Err(down())
    }

    async fn get_api_token(&self, _token_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        Err(down())
    }

    async fn record_event(&self, _event: &NewEvent) -> StoreResult<EventRecord> {
        Err(down())
    }

    async fn list_events(&self, _filter: &EventFilter) -> StoreResult<Vec<EventRecord>> {
        Err(down())
    }

    async fn list_runs_page(&self, _query: &RunPageQuery) -> StoreResult<Vec<RunRecord>> {
        Err(down())
    }

    async fn run_counts(&self) -> StoreResult<Vec<RunCount>> {
        Err(down())
    }

    async fn task_counts(&self) -> StoreResult<Vec<TaskCount>> {
        Err(down())
    }

    async fn attempt_durations(&self) -> StoreResult<AttemptDurations> {
        Err(down())
    }

    async fn mark_task_instance(&self, _mark: &MarkTaskInstance) -> StoreResult<RunProgress> {
        Err(down())
    }

    async fn recent_runs(&self, _dag_ids: &[String], _per_dag: u32) -> StoreResult<Vec<RunRecord>> {
        Err(down())
    }

    async fn task_instances_of_runs(
        &self,
        _run_pks: &[i64],
    ) -> StoreResult<Vec<TaskInstanceRecord>> {
        Err(down())
    }

    async fn record_rendered(
        &self,
        _lease: &Lease,
        _fields: &BTreeMap<String, String>,
    ) -> StoreResult<()> {
        Err(down())
    }

    async fn rendered_fields(&self, _run_pk: i64) -> StoreResult<Vec<RenderedRecord>> {
        Err(down())
    }

    async fn record_scheduler_tick(&self, _tick: &SchedulerTick) -> StoreResult<()> {
        Err(down())
    }

    async fn list_schedulers(&self) -> StoreResult<Vec<SchedulerRecord>> {
        Err(down())
    }

    async fn expand_mapped_task(&self, _expand: &ExpandTask) -> StoreResult<FinishResult> {
        Err(down())
    }

    async fn mapped_item(&self, _ti_id: i64) -> StoreResult<Option<serde_json::Value>> {
        Err(down())
    }

    async fn reschedule_attempt(&self, _reschedule: &RescheduleAttempt) -> StoreResult<()> {
        Err(down())
    }
}
