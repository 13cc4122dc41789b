//! `type: batch`: SQL over files, in-process with DataFusion (through `sluice-data`, the only
//! crate that links it). Named inputs become tables, the statements run in order, and the
//! last one's result is written to `output` (Parquet, CSV or JSON lines; hive partitions with
//! `partition_by`), atomically.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use sluice_core::spec::BatchStep;
use sluice_data::DataError;
use sluice_data::batch::{BatchJob, LogFn, run_batch};

use super::{StepContext, StepError, StepOutput};

pub async fn run(step: &BatchStep, ctx: &StepContext) -> Result<StepOutput, StepError> {
    let mut inputs = BTreeMap::new();
    for (name, template) in &step.inputs {
        let path = ctx.render(&format!("inputs.{name}"), template)?;
        inputs.insert(name.clone(), ctx.base_dir.join(Path::new(&path)));
    }
    let mut sql = Vec::with_capacity(step.sql.len());
    for (index, template) in step.sql.iter().enumerate() {
        let field = if step.sql.len() == 1 {
            "sql".to_string()
        } else {
            format!("sql[{index}]")
        };
        sql.push(ctx.render(&field, template)?);
    }
    let output = ctx.base_dir.join(ctx.render("output", &step.output)?);
    ctx.record_rendered().await;

    let job = BatchJob {
        inputs,
        sql,
        output,
        format: step.format,
        partition_by: step.partition_by.clone(),
        threads: None,
    };
    let sink = ctx.log.clone();
    let log: LogFn = Arc::new(move |line| sink.line(line));
    let summary = run_batch(job, log, ctx.cancel.clone())
        .await
        .map_err(|error| match error {
            DataError::Cancelled => StepError::new("stopped: the attempt was cancelled"),
            other => StepError::new(other.to_string()),
        })?;

    let mut outputs = BTreeMap::new();
    outputs.insert("rows".to_string(), Value::from(summary.rows));
    outputs.insert(
        "output".to_string(),
        Value::from(summary.output.display().to_string()),
    );
    if let Some(files) = summary.files {
        outputs.insert("files".to_string(), Value::from(files));
    }
    Ok(StepOutput {
        outputs,
        exit_code: None,
    })
}
