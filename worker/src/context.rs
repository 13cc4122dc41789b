//! The context an attempt's templates and processes see.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sluice_core::spec::Foreach;
use sluice_core::template::{self, Connection, ContextInput};
use sluice_core::{Dag, Task};
use sluice_store::ClaimedAttempt;
use tokio_util::sync::CancellationToken;

use crate::logs::LogSink;
use crate::rendered::{RenderedFields, is_secret_name};
use crate::steps::{StepContext, StepError};

pub(crate) fn build(
    dag: &Dag,
    task: &Task,
    attempt: &ClaimedAttempt,
    outputs: &BTreeMap<String, BTreeMap<String, Value>>,
    log: LogSink,
    cancel: CancellationToken,
    base_dir: &Path,
) -> Result<StepContext, StepError> {
    let item = match (&task.foreach, attempt.map_index) {
        (None, _) => None,
        (Some(Foreach::List(items)), index) if index >= 0 => {
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
        (Some(_), _) => {
            return Err(StepError::new(
                "`foreach` from a template cannot run yet: this build expands literal `foreach` lists only",
            ));
        }
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let connections = connections_from_env(&env);
    let input = ContextInput {
        dag_id: &attempt.dag_id,
        task_id: &attempt.task_id,
        run_id: &attempt.run_id,
        timezone: dag.timezone,
        logical_date: attempt.logical_date,
        data_interval: attempt.data_interval,
        try_number: attempt.try_number,
        params: &attempt.params,
        outputs,
        connections: &connections,
        env: &env,
        item: item.as_ref(),
    };
    let template_context = template::context(&input);
    let secrets = connections
        .values()
        .filter_map(|connection| connection.password.clone())
        .chain(
            env.iter()
                .filter(|(name, _)| is_secret_name(name))
                .map(|(_, value)| value.clone()),
        )
        .collect();
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
        base_dir: base_dir.to_path_buf(),
        dag_folder: match Path::new(&dag.fileloc).parent() {
            Some(folder) if !folder.as_os_str().is_empty() => base_dir.join(folder),
            _ => base_dir.to_path_buf(),
        },
        rendered: RenderedFields::new(secrets),
    })
}

/// Connections named by `SLUICE_CONN_<NAME>=url` variables; `<NAME>` lower-cased is the name
/// templates use (`{{ conn.warehouse.host }}`). Variables that are not valid URLs are skipped
/// with a warning naming the variable, never its value.
pub fn connections_from_env(env: &BTreeMap<String, String>) -> BTreeMap<String, Connection> {
    let mut connections = BTreeMap::new();
    for (key, value) in env {
        let Some(name) = key.strip_prefix("SLUICE_CONN_") else {
            continue;
        };
        match Connection::parse_url(value) {
            Ok(connection) => {
                connections.insert(name.to_ascii_lowercase(), connection);
            }
            Err(_) => {
                tracing::warn!(variable = %key, "ignoring a connection that is not a valid URL")
            }
        }
    }
    connections
}
