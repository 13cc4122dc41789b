//! One module per step type. Adding a step type means a module here and one line in `run`.

pub mod batch;
pub mod http;
pub mod ingest;
pub mod load;
pub mod noop;
mod process;
pub mod sensor;
pub mod shell;
pub mod spark_submit;
pub mod sql;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use sluice_core::Step;
use sluice_core::template::{self, TemplateError};
use tokio_util::sync::CancellationToken;

use crate::connections::Connections;
use crate::logs::LogSink;
use crate::rendered::RenderedFields;

/// What a step gets to do its work.
pub struct StepContext {
    /// The template context (`ds`, `params`, `outputs`, …) for this attempt.
    pub template_context: Value,
    pub log: LogSink,
    /// Cancelled when the attempt must stop (run cancelled, lease lost, worker stopping).
    pub cancel: CancellationToken,
    /// Extra environment for processes the step starts (`SLUICE_DAG_ID`, …).
    pub env: BTreeMap<String, String>,
    /// Where relative paths resolve; the worker's working directory.
    pub base_dir: PathBuf,
    /// The folder of the DAG's file (its path as the scheduler named it, resolved against
    /// `base_dir`), where a step may also look for files shipped beside the DAG.
    pub dag_folder: PathBuf,
    /// What `render` produced, for the task instance page.
    pub rendered: RenderedFields,
    /// The connections this attempt may open (`connections::Connections::open`).
    pub connections: Connections,
}

impl StepContext {
    /// Renders one templated field, naming the field in the error, and keeps the result for
    /// `record_rendered`.
    pub fn render(&self, field: &str, source: &str) -> Result<String, StepError> {
        let text = template::render(source, &self.template_context)
            .map_err(|e: TemplateError| StepError::new(format!("rendering `{field}`: {e}")))?;
        self.rendered.insert(field, &text);
        Ok(text)
    }

    /// Records what the step rendered (secrets masked), so it shows while the step runs. A
    /// step calls it once it has rendered every field, before it starts its work.
    pub async fn record_rendered(&self) {
        self.rendered.record().await;
    }
}

/// A finished step's results.
#[derive(Debug, Default)]
pub struct StepOutput {
    pub outputs: BTreeMap<String, Value>,
    pub exit_code: Option<i32>,
}

/// Why a step failed, in words the user can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    pub exit_code: Option<i32>,
}

impl StepError {
    pub fn new(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            exit_code: None,
        }
    }
}

/// Runs the step a task defines.
pub async fn run(step: &Step, ctx: &StepContext) -> Result<StepOutput, StepError> {
    match step {
        Step::Noop => noop::run(ctx).await,
        Step::Shell(config) => shell::run(config, ctx).await,
        Step::Batch(config) => batch::run(config, ctx).await,
        Step::Http(config) => http::run(config, ctx).await,
        Step::Ingest(config) => ingest::run(config, ctx).await,
        Step::Load(config) => load::run(config, ctx).await,
        Step::Sql(config) => sql::run(config, ctx).await,
        Step::Sensor(config) => sensor::run(config, ctx).await,
        Step::SparkSubmit(config) => spark_submit::run(config, ctx).await,
    }
}
