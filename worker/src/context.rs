//! The context an attempt's templates and processes see.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sluice_core::spec::Foreach;
use sluice_core::template::{self, ContextInput};
use sluice_core::{Dag, Task};
use sluice_store::ClaimedAttempt;
use tokio_util::sync::CancellationToken;

use crate::connections::{Connections, SecretsFile};
use crate::logs::LogSink;
use crate::rendered::{RenderedFields, is_secret_name};
use crate::steps::{StepContext, StepError};

/// What an attempt's context is built from, beside the DAG, task and claimed attempt.
pub(crate) struct ContextSources<'a> {
    pub outputs: &'a BTreeMap<String, BTreeMap<String, Value>>,
    /// The item a `foreach` template gave this mapped instance (`Store::mapped_item`).
    pub mapped_item: Option<Value>,
    pub secrets_file: Option<&'a SecretsFile>,
    /// Connections used when neither the environment nor the secrets file names them.
    pub default_connections: &'a BTreeMap<String, String>,
    pub base_dir: &'a Path,
}

pub(crate) fn build(
    dag: &Dag,
    task: &Task,
    attempt: &ClaimedAttempt,
    sources: ContextSources<'_>,
    log: LogSink,
    cancel: CancellationToken,
) -> Result<StepContext, StepError> {
    let item = match (&task.foreach, attempt.map_index) {
        (None, _) => None,
        (Some(_), index) if index < 0 => None,
        (Some(Foreach::List(items)), index) => {
            let item = usize::try_from(index)
                .ok()
                .and_then(|i| items.get(i))
                .ok_or_else(|| {
                    StepError::new(format!(
                        "map index {index} is out of range: the DAG version lists {} items",
                        items.len()
                    ))
                })?;
            Some(item.clone())
        }
        (Some(Foreach::Template(_)), index) => Some(sources.mapped_item.ok_or_else(|| {
            StepError::new(format!(
                "mapped instance [{index}] of `{}` has no item: its `foreach` was not expanded",
                attempt.task_id
            ))
        })?),
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let connections = Connections::load(&env, sources.secrets_file)
        .map_err(|e| StepError::new(e.to_string()))?
        .with_defaults(sources.default_connections);
    let templates = connections.for_templates();
    let input = ContextInput {
        dag_id: &attempt.dag_id,
        task_id: &attempt.task_id,
        run_id: &attempt.run_id,
        timezone: dag.timezone,
        logical_date: attempt.logical_date,
        data_interval: attempt.data_interval,
        try_number: attempt.try_number,
        params: &attempt.params,
        outputs: sources.outputs,
        connections: &templates,
        env: &env,
        item: item.as_ref(),
    };
    let template_context = template::context(&input);
    let secrets: Vec<String> = connections
        .passwords()
        .into_iter()
        .chain(
            env.iter()
                .filter(|(name, _)| is_secret_name(name))
                .map(|(_, value)| value.clone()),
        )
        .collect();
    log.set_secrets(&secrets);
    let mut process_env = BTreeMap::new();
    for (key, name) in [
        ("dag_id", "SLUICE_DAG_ID"),
        ("task_id", "SLUICE_TASK_ID"),
        ("run_id", "SLUICE_RUN_ID"),
        ("ds", "SLUICE_DS"),
        ("ts", "SLUICE_TS"),
        ("logical_date", "SLUICE_LOGICAL_DATE"),
    ] {
        if let Some(value) = template_context.get(key).and_then(Value::as_str) {
            process_env.insert(name.to_owned(), value.to_owned());
        }
    }
    process_env.insert(
        "SLUICE_TRY_NUMBER".to_owned(),
        attempt.try_number.to_string(),
    );
    if attempt.map_index >= 0 {
        process_env.insert("SLUICE_MAP_INDEX".to_owned(), attempt.map_index.to_string());
    }
    Ok(StepContext {
        template_context,
        log,
        cancel,
        env: process_env,
        base_dir: sources.base_dir.to_path_buf(),
        dag_folder: match Path::new(&dag.fileloc).parent() {
            Some(folder) if !folder.as_os_str().is_empty() => sources.base_dir.join(folder),
            _ => sources.base_dir.to_path_buf(),
        },
        rendered: RenderedFields::new(secrets),
        connections,
    })
}
