//! The worker: claims queued task instances, runs their steps with a heartbeat and a streamed
//! log, enforces timeouts, and reports each attempt's end to the store, which decides retries
//! and downstream tasks in the same transaction.
#![forbid(unsafe_code)]

mod atomic;
pub mod connections;
mod context;
pub mod http;
mod leases;
pub mod local;
pub mod logs;
mod mapping;
mod objects;
mod rendered;
pub mod steps;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sluice_core::clock::Clock;
use sluice_core::spec::Foreach;
use sluice_core::{Dag, Step, Task, parse_dag};
use sluice_store::{
    AttemptOutcome, Claim, ClaimedAttempt, ExpandTask, FinishAttempt, RescheduleAttempt, Store,
    StoreError, WorkerBeat,
};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use connections::SecretsFile;
use leases::HeldLeases;
use logs::{LogSink, LogWriter};
pub use rendered::RenderedFields;
use steps::sensor::{self, Poke, Sensing};
use steps::{StepContext, StepError, StepOutput};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub worker_id: String,
    pub host: String,
    pub queues: Vec<String>,
    /// How many attempts run at once.
    pub slots: u32,
    /// The longest an idle worker waits before looking for work without a wake-up.
    pub poll_interval: Duration,
    /// How often the worker and each of its attempts tell the store they are alive.
    pub heartbeat_interval: Duration,
    /// How often running attempts' leases are checked without a cancel notification.
    pub lease_check_interval: Duration,
    /// On shutdown, how long running attempts may go on before they are stopped and
    /// recorded as failed (and retried if their task allows).
    pub shutdown_grace: Duration,
    /// Where relative paths in steps resolve.
    pub base_dir: PathBuf,
    /// Connections beside the `SLUICE_CONN_<NAME>` variables (which win), re-read at
    /// every attempt.
    pub secrets_file: Option<SecretsFile>,
    /// Connections (name → URL) used when neither the environment nor the secrets file
    /// defines them: `standalone` provides `local`.
    pub default_connections: BTreeMap<String, String>,
}

impl WorkerConfig {
    pub fn new(worker_id: impl Into<String>, slots: u32) -> Self {
        WorkerConfig {
            worker_id: worker_id.into(),
            host: "localhost".to_owned(),
            queues: vec!["default".to_owned()],
            slots,
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            lease_check_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            base_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            secrets_file: None,
            default_connections: BTreeMap::new(),
        }
    }
}

pub struct Worker {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    /// Parsed DAG versions by hash: a run is pinned to the version it was created with.
    dags: Mutex<HashMap<String, Arc<Dag>>>,
    /// Cancelled when the shutdown grace runs out: running attempts stop and fail.
    stopping: CancellationToken,
    /// The attempts running now, so a cancel reaches them at once.
    held: Arc<HeldLeases>,
}

impl Worker {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: WorkerConfig) -> Arc<Self> {
        Arc::new(Worker {
            store,
            clock,
            config,
            dags: Mutex::new(HashMap::new()),
            stopping: CancellationToken::new(),
            held: Arc::new(HeldLeases::default()),
        })
    }

    /// Claims and runs attempts until `shutdown` turns true, then lets running ones finish
    /// within the shutdown grace, stops the rest (recorded as failed, retried per their
    /// retries) and removes itself from the workers list.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let background = CancellationToken::new();
        let beating = tokio::spawn(self.clone().beat_until(background.clone()));
        let watching = tokio::spawn(leases::watch_leases(
            self.store.clone(),
            self.held.clone(),
            self.config.lease_check_interval,
            background.clone(),
        ));
        self.clone().dispatch(shutdown).await;
        background.cancel();
        let _ = beating.await;
        let _ = watching.await;
        if let Err(error) = self.store.remove_worker(&self.config.worker_id).await {
            tracing::warn!(%error, "removing this worker from the workers list failed");
        }
        tracing::info!(worker_id = %self.config.worker_id, "worker stopped");
    }

    async fn dispatch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut wakeups = self.store.wakeups().subscribe();
        let mut running: JoinSet<()> = JoinSet::new();
        let mut failures = 0u32;
        loop {
            wakeups.borrow_and_update();
            let free = self.config.slots.saturating_sub(running.len() as u32);
            let mut claimed_all = false;
            if free > 0 {
                match self.claim(free).await {
                    Ok(claimed) => {
                        failures = 0;
                        claimed_all = claimed.len() as u32 == free;
                        for attempt in claimed {
                            let worker = self.clone();
                            running.spawn(async move { worker.execute(attempt).await });
                        }
                    }
                    Err(error) => {
                        failures += 1;
                        let pause = Duration::from_millis(250 * u64::from(failures.min(40)));
                        tracing::error!(%error, retry_in_ms = pause.as_millis() as u64, "claiming work failed");
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = stopped(&mut shutdown) => break,
                        }
                        continue;
                    }
                }
            }
            if claimed_all {
                // there may be more: claim again as soon as a slot frees
                if running.len() as u32 >= self.config.slots {
                    tokio::select! {
                        _ = running.join_next() => {}
                        _ = stopped(&mut shutdown) => break,
                    }
                }
                continue;
            }
            tokio::select! {
                _ = wakeups.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        if running.is_empty() {
            return;
        }
        tracing::info!(
            running = running.len(),
            grace_s = self.config.shutdown_grace.as_secs(),
            "worker stopping: waiting for running attempts"
        );
        let drain = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(self.config.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace elapsed: stopping the attempts still running");
            self.stopping.cancel();
            while running.join_next().await.is_some() {}
        }
    }

    /// Stops running attempts now instead of at the end of the shutdown grace (they are
    /// recorded as failed, and retried per their retries).
    pub fn stop_now(&self) {
        self.stopping.cancel();
    }

    /// Claims up to `limit` attempts: one round of the dispatcher, for tests.
    pub async fn claim(&self, limit: u32) -> Result<Vec<ClaimedAttempt>, StoreError> {
        let claim = Claim {
            worker_id: self.config.worker_id.clone(),
            queues: self.config.queues.clone(),
            limit,
            now: self.clock.now(),
        };
        self.store.claim_attempts(&claim).await
    }

    /// The worker's own heartbeat, on its own task so a busy dispatcher never delays it.
    async fn beat_until(self: Arc<Self>, stop: CancellationToken) {
        let mut timer = tokio::time::interval(self.config.heartbeat_interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = timer.tick() => {}
                _ = stop.cancelled() => return,
            }
            let beat = WorkerBeat {
                worker_id: self.config.worker_id.clone(),
                host: self.config.host.clone(),
                queues: self.config.queues.clone(),
                slots: self.config.slots,
                slots_in_use: self.held.count(),
                now: self.clock.now(),
            };
            if let Err(error) = self.store.worker_heartbeat(&beat).await {
                tracing::warn!(%error, "worker heartbeat failed");
            }
        }
    }

    /// Runs one claimed attempt to its end and records the result.
    #[tracing::instrument(skip_all, fields(dag_id = %attempt.dag_id, run_id = %attempt.run_id, task_id = %attempt.task_id, try_number = attempt.try_number))]
    pub async fn execute(&self, attempt: ClaimedAttempt) {
        let cancel = CancellationToken::new();
        self.held.hold(&attempt.lease, cancel.clone());
        let (log, writer) =
            LogWriter::start(self.store.clone(), attempt.lease.clone(), cancel.clone());
        let heartbeat = self.spawn_heartbeat(&attempt, cancel.clone());
        let result = self.run_attempt(&attempt, &log, &cancel).await;
        heartbeat.abort();
        self.held.release(&attempt.lease);
        // an error may quote what a template rendered: mask it for the record as for the log
        let result = result.map_err(|error| StepError {
            message: log.mask(&error.message),
            ..error
        });
        if let Err(error) = &result {
            log.line(format!(
                "[sluice] attempt {} failed: {}",
                attempt.try_number, error.message
            ));
        }
        drop(log);
        let log_tail = writer.finish().await;
        if cancel.is_cancelled() {
            // the lease is gone (run cancelled or attempt taken over): nothing more to record
            tracing::info!("attempt stopped: its lease is no longer current");
            return;
        }
        let (outcome, output, error) = match result {
            Ok(Ended::Expanded(items)) => {
                let expand = ExpandTask {
                    lease: attempt.lease.clone(),
                    items,
                    log: log_tail,
                    now: self.clock.now(),
                };
                self.expand_with_retry(&expand).await;
                return;
            }
            Ok(Ended::Rescheduled { next_poke_at }) => {
                let reschedule = RescheduleAttempt {
                    lease: attempt.lease.clone(),
                    next_poke_at,
                    now: self.clock.now(),
                };
                self.reschedule_with_retry(&reschedule, &log_tail).await;
                return;
            }
            Ok(Ended::Done(output)) => (AttemptOutcome::Success, output, None),
            Err(error) => (
                AttemptOutcome::Failed,
                StepOutput {
                    exit_code: error.exit_code,
                    ..Default::default()
                },
                Some(error.message),
            ),
        };
        let finish = FinishAttempt {
            lease: attempt.lease.clone(),
            outcome,
            exit_code: output.exit_code,
            error,
            outputs: output.outputs,
            now: self.clock.now(),
        };
        self.finish_with_retry(&finish, &log_tail).await;
    }

    async fn run_attempt(
        &self,
        attempt: &ClaimedAttempt,
        log: &LogSink,
        cancel: &CancellationToken,
    ) -> Result<Ended, StepError> {
        let dag = self.dag(&attempt.dag_hash, &attempt.dag_id, cancel).await?;
        let task = dag.task(&attempt.task_id).ok_or_else(|| {
            StepError::new(format!(
                "task `{}` is not in version {} of DAG `{}`",
                attempt.task_id,
                short(&attempt.dag_hash),
                attempt.dag_id
            ))
        })?;
        log.line(format!(
            "[sluice] {} try {} of {} of {}.{}{} on {} (run {})",
            Utc::now().format("%Y-%m-%d %H:%M:%S%.3fZ"),
            attempt.try_number,
            attempt.max_tries,
            attempt.dag_id,
            attempt.task_id,
            if attempt.map_index >= 0 {
                format!("[{}]", attempt.map_index)
            } else {
                String::new()
            },
            self.config.worker_id,
            attempt.run_id
        ));
        let ctx = self
            .step_context(&dag, task, attempt, log.clone(), cancel.clone())
            .await?;
        if let (Some(Foreach::Template(template)), true) = (&task.foreach, attempt.map_index < 0) {
            // the placeholder of a `foreach` template: its work is the list of items
            let items = mapping::items(template, &ctx)?;
            ctx.record_rendered().await;
            log.line(format!(
                "[sluice] `foreach` rendered to {} item{}: {}",
                items.len(),
                if items.len() == 1 { "" } else { "s" },
                if items.is_empty() {
                    "the task is skipped"
                } else {
                    "one mapped instance each is queued"
                }
            ));
            return Ok(Ended::Expanded(items));
        }
        let step = self.run_step(task, &ctx, attempt);
        let stopped = async {
            tokio::select! {
                _ = cancel.cancelled() => Err(StepError::new("stopped: the attempt was cancelled")),
                _ = self.stopping.cancelled() => Err(StepError::new(format!(
                    "stopped: worker {} shut down and its grace period of {} ran out",
                    self.config.worker_id,
                    human(self.config.shutdown_grace)
                ))),
            }
        };
        match attempt.timeout {
            Some(limit) => tokio::select! {
                result = tokio::time::timeout(limit, step) => result.unwrap_or_else(|_| {
                    Err(StepError::new(format!("timed out after {}; the process group was killed", human(limit))))
                }),
                result = stopped => result,
            },
            None => tokio::select! {
                result = step => result,
                result = stopped => result,
            },
        }
    }

    /// Runs the task's step. A sensor is the one step the worker drives itself: it needs the
    /// store (the `task` condition) and when its try started, and in `mode: reschedule` it
    /// ends a poke by handing the task instance back instead of finishing the attempt.
    async fn run_step(
        &self,
        task: &Task,
        ctx: &StepContext,
        attempt: &ClaimedAttempt,
    ) -> Result<Ended, StepError> {
        let Step::Sensor(config) = &task.step else {
            return steps::run(&task.step, ctx).await.map(Ended::Done);
        };
        let sensing = Sensing {
            store: Some(self.store.clone()),
            logical_date: attempt.logical_date,
            first_poke_at: attempt.started_at,
        };
        if !sensor::reschedules(config) {
            return sensor::wait(config, ctx, &sensing).await.map(Ended::Done);
        }
        Ok(match sensor::poke(config, ctx, &sensing).await? {
            Poke::Met(output) => Ended::Done(output),
            Poke::NotYet { next_poke_at } => Ended::Rescheduled { next_poke_at },
        })
    }

    async fn step_context(
        &self,
        dag: &Dag,
        task: &Task,
        attempt: &ClaimedAttempt,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<StepContext, StepError> {
        // a noop renders nothing, unless it is a `foreach` template's placeholder
        let expands = matches!(task.foreach, Some(Foreach::Template(_))) && attempt.map_index < 0;
        let outputs = match task.step {
            sluice_core::Step::Noop if !expands => Default::default(),
            _ => self
                .through_outage("reading upstream outputs", &cancel, || {
                    self.store.run_outputs(attempt.run_pk)
                })
                .await
                .map_err(|e| StepError::new(format!("reading upstream outputs: {e}")))?,
        };
        let mapped_item = match (&task.foreach, attempt.map_index) {
            (Some(Foreach::Template(_)), index) if index >= 0 => self
                .through_outage("reading the mapped item", &cancel, || {
                    self.store.mapped_item(attempt.ti_id)
                })
                .await
                .map_err(|e| StepError::new(format!("reading the mapped item: {e}")))?,
            _ => None,
        };
        let sources = context::ContextSources {
            outputs: &outputs,
            mapped_item,
            secrets_file: self.config.secrets_file.as_ref(),
            default_connections: &self.config.default_connections,
            base_dir: &self.config.base_dir,
        };
        let ctx = context::build(dag, task, attempt, sources, log, cancel)?;
        Ok(StepContext {
            rendered: ctx
                .rendered
                .recording_to(self.store.clone(), attempt.lease.clone()),
            ..ctx
        })
    }

    async fn dag(
        &self,
        hash: &str,
        dag_id: &str,
        cancel: &CancellationToken,
    ) -> Result<Arc<Dag>, StepError> {
        if let Some(dag) = self.dags.lock().await.get(hash) {
            return Ok(dag.clone());
        }
        let version = self
            .through_outage("loading the DAG version", cancel, || {
                self.store.dag_version(hash)
            })
            .await
            .map_err(|e| {
                StepError::new(format!(
                    "loading version {} of DAG `{dag_id}`: {e}",
                    short(hash)
                ))
            })?
            .ok_or_else(|| {
                StepError::new(format!(
                    "version {} of DAG `{dag_id}` is not in the database",
                    short(hash)
                ))
            })?;
        let dag = parse_dag(&version.fileloc, &version.source).map_err(|errors| {
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            StepError::new(format!(
                "version {} of DAG `{dag_id}` does not parse: {first}",
                short(hash)
            ))
        })?;
        let dag = Arc::new(dag);
        self.dags.lock().await.insert(hash.to_owned(), dag.clone());
        Ok(dag)
    }

    /// A read an attempt needs before its step runs, retried while the database is away: an
    /// outage is not the task's failure. Gives up only when the attempt is stopped.
    async fn through_outage<T, F, Fut>(
        &self,
        what: &str,
        cancel: &CancellationToken,
        mut read: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut failures = 0u32;
        loop {
            match read().await {
                Err(StoreError::Database(error)) => {
                    failures += 1;
                    let pause = Duration::from_millis(250 * u64::from(failures.min(20)));
                    tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "{what} failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = cancel.cancelled() => return Err(StoreError::Database(error)),
                        _ = self.stopping.cancelled() => return Err(StoreError::Database(error)),
                    }
                }
                other => return other,
            }
        }
    }

    fn spawn_heartbeat(
        &self,
        attempt: &ClaimedAttempt,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let clock = self.clock.clone();
        let lease = attempt.lease.clone();
        let every = self.config.heartbeat_interval;
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(every);
            timer.tick().await;
            loop {
                timer.tick().await;
                match store.heartbeat_attempt(&lease, clock.now()).await {
                    Ok(()) => {}
                    Err(StoreError::LeaseLost { .. }) => {
                        cancel.cancel();
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(attempt_id = lease.attempt_id, %error, "attempt heartbeat failed")
                    }
                }
            }
        })
    }

    /// A placeholder's expansion must reach the store: retry while the database is away.
    async fn expand_with_retry(&self, expand: &ExpandTask) {
        let mut failures = 0u32;
        loop {
            match self.store.expand_mapped_task(expand).await {
                Ok(result) => {
                    tracing::info!(state = %result.task_state, mapped = expand.items.len(), "foreach expanded");
                    return;
                }
                Err(StoreError::LeaseLost { .. }) => {
                    tracing::warn!("foreach expansion dropped: its lease is no longer current");
                    return;
                }
                Err(error) => {
                    failures += 1;
                    let pause = Duration::from_millis(250 * u64::from(failures.min(40)));
                    tracing::error!(%error, retry_in_ms = pause.as_millis() as u64, "recording the foreach expansion failed; retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// A sensor's poke that frees the slot must reach the store too: retry while the
    /// database is away (the last log lines first, so the log reads in order).
    async fn reschedule_with_retry(&self, reschedule: &RescheduleAttempt, log_tail: &str) {
        let mut failures = 0u32;
        let mut logged = log_tail.is_empty();
        loop {
            let result = async {
                if !logged {
                    self.store
                        .append_log(&reschedule.lease, log_tail, reschedule.now)
                        .await?;
                    logged = true;
                }
                self.store.reschedule_attempt(reschedule).await
            }
            .await;
            match result {
                Ok(()) => {
                    tracing::info!(next_poke_at = %reschedule.next_poke_at, "sensor rescheduled");
                    return;
                }
                Err(StoreError::LeaseLost { .. }) => {
                    tracing::warn!("sensor poke dropped: its lease is no longer current");
                    return;
                }
                Err(error) => {
                    failures += 1;
                    let pause = Duration::from_millis(250 * u64::from(failures.min(40)));
                    tracing::error!(%error, retry_in_ms = pause.as_millis() as u64, "rescheduling the sensor failed; retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// The end of an attempt must reach the store: retry while the database is away.
    async fn finish_with_retry(&self, finish: &FinishAttempt, log_tail: &str) {
        let mut failures = 0u32;
        loop {
            match self.store.finish_attempt_with_log(finish, log_tail).await {
                Ok(result) => {
                    tracing::info!(state = %result.task_state, queued_downstream = result.progress.queued, "attempt finished");
                    return;
                }
                Err(StoreError::LeaseLost { .. }) => {
                    tracing::warn!("attempt result dropped: its lease is no longer current");
                    return;
                }
                Err(error) => {
                    failures += 1;
                    let pause = Duration::from_millis(250 * u64::from(failures.min(40)));
                    tracing::error!(%error, retry_in_ms = pause.as_millis() as u64, "recording the attempt's end failed; retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// How an attempt's work ended well.
enum Ended {
    Done(StepOutput),
    /// The placeholder of a `foreach` template rendered its items.
    Expanded(Vec<serde_json::Value>),
    /// A `mode: reschedule` sensor's condition is still false: the slot is freed until then.
    Rescheduled {
        next_poke_at: DateTime<Utc>,
    },
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// `1h 02m`, `3m 05s`, `42s`, `250ms`.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone). Holds no borrow of the channel
/// afterwards, so the worker loop's future stays `Send`.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
