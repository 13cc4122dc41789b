//! A store whose database is unreachable: every call fails, as during an outage.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_store::*;

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

    fn wakeups(&self) -> Wakeups {
        Wakeups::default()
    }
}
