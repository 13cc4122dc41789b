//! Running one task locally, outside any run: `sluice tasks render` and `sluice tasks test`.
//! Nothing touches the database: there is no lease, no heartbeat, and the log goes to the
//! given sink; upstream outputs are empty.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_core::spec::Foreach;
use sluice_core::{Dag, DataInterval, Task};
use sluice_store::{ClaimedAttempt, Lease};
use tokio_util::sync::CancellationToken;

use crate::connections::SecretsFile;
use crate::logs::LogSink;
use crate::steps::{self, StepContext, StepError, StepOutput};
use crate::{context, mapping};

/// One task of a DAG for one logical date, as a test run.
pub struct LocalRun<'a> {
    pub dag: &'a Dag,
    pub task: &'a Task,
    pub logical_date: DateTime<Utc>,
    pub data_interval: DataInterval,
    /// The DAG's params with the overrides applied.
    pub params: BTreeMap<String, Value>,
    /// Which item of a `foreach` list; ignored for unmapped tasks.
    pub map_index: i32,
    /// Where relative paths resolve.
    pub base_dir: PathBuf,
    /// Connections beside the `SLUICE_CONN_<NAME>` variables.
    pub secrets_file: Option<SecretsFile>,
    /// Connections used when neither the environment nor the secrets file names them.
    pub default_connections: BTreeMap<String, String>,
}

impl LocalRun<'_> {
    /// The context the task's templates and processes would see in a real run.
    pub fn context(
        &self,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<StepContext, StepError> {
        let attempt = ClaimedAttempt {
            lease: Lease {
                attempt_id: 0,
                token: String::new(),
            },
            ti_id: 0,
            run_pk: 0,
            run_id: format!(
                "test__{}",
                self.logical_date
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            dag_id: self.dag.id.to_string(),
            dag_hash: self.dag.hash.clone(),
            task_id: self.task.id.to_string(),
            map_index: if self.task.foreach.is_some() {
                self.map_index
            } else {
                sluice_store::UNMAPPED
            },
            try_number: 1,
            max_tries: 1,
            timeout: self.task.timeout,
            started_at: Utc::now(),
            logical_date: self.logical_date,
            data_interval: self.data_interval,
            params: self.params.clone(),
        };
        let outputs = BTreeMap::new();
        let sources = |mapped_item| context::ContextSources {
            outputs: &outputs,
            mapped_item,
            secrets_file: self.secrets_file.as_ref(),
            default_connections: &self.default_connections,
            base_dir: &self.base_dir,
        };
        let mapped_item = match &self.task.foreach {
            // a `foreach` template is rendered here as its placeholder would render it
            Some(Foreach::Template(template)) if attempt.map_index >= 0 => {
                let placeholder = ClaimedAttempt {
                    map_index: sluice_store::UNMAPPED,
                    ..attempt.clone()
                };
                let ctx = context::build(
                    self.dag,
                    self.task,
                    &placeholder,
                    sources(None),
                    log.clone(),
                    cancel.clone(),
                )?;
                let items = mapping::items(template, &ctx)?;
                let index = usize::try_from(attempt.map_index).unwrap_or(usize::MAX);
                Some(items.get(index).cloned().ok_or_else(|| {
                    StepError::new(format!(
                        "map index {} is out of range: `foreach` rendered {} items",
                        attempt.map_index,
                        items.len()
                    ))
                })?)
            }
            _ => None,
        };
        context::build(
            self.dag,
            self.task,
            &attempt,
            sources(mapped_item),
            log,
            cancel,
        )
    }

    /// Runs the task's step under its timeout; `cancel` stops it (its process group is killed).
    pub async fn run(
        &self,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<StepOutput, StepError> {
        let ctx = self.context(log, cancel)?;
        let step = steps::run(&self.task.step, &ctx);
        match self.task.timeout {
            Some(limit) => tokio::time::timeout(limit, step).await.unwrap_or_else(|_| {
                Err(StepError::new(format!(
                    "timed out after {}; the process group was killed",
                    crate::human(limit)
                )))
            }),
            None => step.await,
        }
    }
}
