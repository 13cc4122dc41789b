//! Turning a DAG and a logical date into a run: its id, params and task instances.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sluice_core::spec::Foreach;
use sluice_core::{Dag, DataInterval, RunType};
use sluice_store::{NewRun, NewTaskInstance, UNMAPPED};

use crate::SchedulerError;

/// What kind of run to build and for which interval.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub data_interval: DataInterval,
    /// Overrides of the DAG's params, already checked by `parse_param_overrides`.
    pub params: BTreeMap<String, Value>,
    pub triggered_by: String,
    pub now: DateTime<Utc>,
}

/// `scheduled__2026-01-01T02:00:00Z`, as Airflow names runs.
pub fn run_id(run_type: RunType, logical_date: DateTime<Utc>) -> String {
    let precision = if run_type == RunType::Manual {
        SecondsFormat::Micros
    } else {
        SecondsFormat::Secs
    };
    format!(
        "{}__{}",
        run_type.as_str(),
        logical_date.to_rfc3339_opts(precision, true)
    )
}

pub fn build_run(dag: &Dag, request: RunRequest) -> NewRun {
    let mut params = dag.params.clone();
    params.extend(request.params);
    let mut tasks = Vec::with_capacity(dag.tasks.len());
    for task in &dag.tasks {
        let map_indexes: Vec<i32> = match &task.foreach {
            Some(Foreach::List(items)) => {
                (0..i32::try_from(items.len()).unwrap_or(i32::MAX)).collect()
            }
            _ => vec![UNMAPPED],
        };
        for map_index in map_indexes {
            tasks.push(NewTaskInstance {
                task_id: task.id.to_string(),
                map_index,
                upstream: task.depends_on.iter().map(ToString::to_string).collect(),
                trigger_rule: task.trigger_rule,
                retry: task.retry.clone(),
                timeout: task.timeout,
                queue: task.queue.clone(),
                pool: task.pool.clone(),
                priority: task.priority,
            });
        }
    }
    NewRun {
        dag_id: dag.id.to_string(),
        run_id: run_id(request.run_type, request.logical_date),
        run_type: request.run_type,
        logical_date: request.logical_date,
        data_interval: request.data_interval,
        dag_hash: dag.hash.clone(),
        params,
        triggered_by: request.triggered_by,
        tasks,
        now: request.now,
    }
}

/// Reads `--param key=value` pairs against the DAG's declared params. A value takes the type
/// of the param's default: text stays text; numbers, booleans, lists and maps are read as JSON.
pub fn parse_param_overrides(
    dag: &Dag,
    pairs: &[String],
) -> Result<BTreeMap<String, Value>, SchedulerError> {
    let mut overrides = BTreeMap::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            return Err(SchedulerError::BadParam(format!(
                "`{pair}` is not of the form key=value"
            )));
        };
        let Some(default) = dag.params.get(key) else {
            let known: Vec<&str> = dag.params.keys().map(String::as_str).collect();
            return Err(SchedulerError::BadParam(format!(
                "DAG `{}` has no param `{key}` (declared: {})",
                dag.id,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        };
        let value = match default {
            Value::String(_) | Value::Null => Value::String(raw.to_owned()),
            _ => {
                let parsed: Value = serde_json::from_str(raw).map_err(|_| {
                    SchedulerError::BadParam(format!(
                        "param `{key}` expects a value like `{default}`, got `{raw}`"
                    ))
                })?;
                if std::mem::discriminant(&parsed) != std::mem::discriminant(default)
                    && !(parsed.is_number() && default.is_number())
                {
                    return Err(SchedulerError::BadParam(format!(
                        "param `{key}` expects a value like `{default}`, got `{raw}`"
                    )));
                }
                parsed
            }
        };
        overrides.insert(key.to_owned(), value);
    }
    Ok(overrides)
}
