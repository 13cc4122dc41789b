//! `sluice runs …`: act on runs.

use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;
use sluice_store::{RunRecord, Store};

use super::{UsageError, open_store};
use crate::Cli;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Cancel a run: its waiting tasks never start, and running ones are killed on whichever
    /// worker holds them within about a second.
    ///
    /// RUN is `DAG RUN_ID`, `DAG/RUN_ID`, or a run id alone when only one DAG has it.
    /// Example: sluice runs cancel daily_sales manual__2026-11-25T08:00:00Z
    Cancel {
        /// The DAG, `DAG/RUN_ID`, or the run id alone.
        run: String,
        /// The run id, after the DAG.
        run_id: Option<String>,
        /// The run's DAG (another way to say it).
        #[arg(long = "dag")]
        dag_id: Option<String>,
    },
}

pub async fn run(cli: &Cli, command: &RunsCommand) -> anyhow::Result<ExitCode> {
    match command {
        RunsCommand::Cancel {
            run,
            run_id,
            dag_id,
        } => {
            // `DAG RUN_ID`, or one argument: `DAG/RUN_ID` or the run id (with `--dag`)
            let (dag_id, run_id) = match run_id {
                Some(run_id) => (Some(run.as_str()), run_id.as_str()),
                None => (dag_id.as_deref(), run.as_str()),
            };
            let store = open_store(&cli.database_url).await?;
            let run = resolve_run(store.as_ref(), run_id, dag_id).await?;
            if store.cancel_run(run.pk, Utc::now()).await? {
                println!("cancelled run {} of DAG {}", run.run_id, run.dag_id);
            } else {
                let state = store
                    .get_run_by_pk(run.pk)
                    .await?
                    .map_or(run.state, |r| r.state);
                println!(
                    "run {} of DAG {} had already ended ({state}): nothing to cancel",
                    run.run_id, run.dag_id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The run a user named by its run id (also as `DAG/RUN_ID`) and, when ambiguous, its DAG:
/// a usage error (exit code 2) when there is none or more than one.
pub async fn resolve_run(
    store: &dyn Store,
    run_id: &str,
    dag_id: Option<&str>,
) -> anyhow::Result<RunRecord> {
    let (dag_id, run_id) = match (dag_id, run_id.split_once('/')) {
        (None, Some((dag_id, run_id))) => (Some(dag_id), run_id),
        _ => (dag_id, run_id),
    };
    let mut runs = store.find_runs(run_id).await?;
    if let Some(dag_id) = dag_id {
        runs.retain(|r| r.dag_id == dag_id);
    }
    match runs.len() {
        1 => Ok(runs.remove(0)),
        0 => Err(UsageError(match dag_id {
            Some(dag_id) => format!("no run `{run_id}` of DAG `{dag_id}` (--dag)"),
            None => format!("no run `{run_id}`"),
        })
        .into()),
        _ => {
            let dags: Vec<&str> = runs.iter().map(|r| r.dag_id.as_str()).collect();
            Err(UsageError(format!(
                "run id `{run_id}` exists in DAGs {}: say which with --dag",
                dags.join(", ")
            ))
            .into())
        }
    }
}
