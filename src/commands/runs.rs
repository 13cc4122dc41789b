//! `sluice runs list|show|cancel`.

use std::process::ExitCode;

use chrono::Utc;
use chrono_tz::Tz;
use clap::Subcommand;
use sluice_core::RunState;
use sluice_scheduler::backfill::{self, Bound};
use sluice_store::{RunFilter, RunRecord, Store};

use super::output::{self, Output, Table};
use super::{UsageError, open_store};
use crate::Cli;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest logical date first; backfill runs show their backfill's id.
    ///
    /// Example: sluice runs list daily_sales --state failed --since 2026-01-01
    List {
        /// Only this DAG's runs.
        dag_id: Option<String>,
        /// Only runs in this state: queued, running, success, failed, cancelled.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// Only runs with a logical date on or after this date (the DAG's timezone, else UTC).
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one run: its tasks with their state and tries, and every attempt.
    ///
    /// RUN is `DAG RUN_ID` or `DAG/RUN_ID` (as `runs list` prints them).
    /// Example: sluice runs show daily_sales scheduled__2026-01-01T02:00:00Z
    Show {
        /// The DAG, or `DAG/RUN_ID`.
        run: String,
        run_id: Option<String>,
    },
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
        RunsCommand::List {
            dag_id,
            state,
            since,
            limit,
        } => {
            list(
                cli,
                dag_id.as_deref(),
                state.as_deref(),
                since.as_deref(),
                *limit,
            )
            .await
        }
        RunsCommand::Show { run, run_id } => show(cli, run, run_id.as_deref()).await,
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
            cancel(cli, run_id, dag_id).await
        }
    }
}

async fn cancel(cli: &Cli, run_id: &str, dag_id: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    let run = resolve_run(store.as_ref(), run_id, dag_id).await?;
    if store.cancel_run(run.pk, Utc::now()).await? {
        out!("cancelled run {} of DAG {}", run.run_id, run.dag_id);
    } else {
        let state = store
            .get_run_by_pk(run.pk)
            .await?
            .map_or(run.state, |r| r.state);
        out!(
            "run {} of DAG {} had already ended ({state}): nothing to cancel",
            run.run_id,
            run.dag_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(
    cli: &Cli,
    dag_id: Option<&str>,
    state: Option<&str>,
    since: Option<&str>,
    limit: u32,
) -> anyhow::Result<ExitCode> {
    let state = state
        .map(|s| s.parse::<RunState>())
        .transpose()
        .map_err(|e| UsageError(format!("--state: {e}")))?;
    if let Some(since) = since {
        backfill::parse_date(since, Tz::UTC, Bound::Start)
            .map_err(|e| UsageError(format!("--since: {e}")))?;
    }
    let store = open_store(&cli.database_url).await?;
    let tz = zone_of(store.as_ref(), dag_id).await?;
    let since = since
        .map(|s| backfill::parse_date(s, tz, Bound::Start))
        .transpose()
        .map_err(|e| UsageError(format!("--since: {e}")))?;
    let runs = store
        .list_runs(&RunFilter {
            dag_id: dag_id.map(str::to_owned),
            state,
            limit,
        })
        .await?;
    // newest first: the runs since the date are a prefix of the list
    let runs: Vec<RunRecord> = runs
        .into_iter()
        .take_while(|r| since.is_none_or(|since| r.logical_date >= since))
        .collect();
    if cli.output == Output::Json {
        output::print_json(&runs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        "DAG",
        "RUN ID",
        "TYPE",
        "STATE",
        "LOGICAL DATE",
        "STARTED",
        "DURATION",
    ]);
    for run in &runs {
        table.row(vec![
            run.dag_id.clone(),
            run.run_id.clone(),
            run_type(run),
            run.state.to_string(),
            output::time(Some(run.logical_date), tz),
            output::time(run.started_at, tz),
            output::duration(run.started_at, run.ended_at),
        ]);
    }
    if table.is_empty() {
        eprintln!("no runs");
    } else {
        table.print();
    }
    Ok(ExitCode::SUCCESS)
}

/// `backfill #3` for a backfill's run, else the run type.
pub fn run_type(run: &RunRecord) -> String {
    match run.backfill_id {
        Some(id) => format!("{} #{id}", sluice_core::RunType::Backfill),
        None => run.run_type.to_string(),
    }
}

async fn zone_of(store: &dyn Store, dag_id: Option<&str>) -> anyhow::Result<Tz> {
    Ok(match dag_id {
        Some(dag_id) => match store.get_dag(dag_id).await? {
            Some(dag) => output::timezone(&dag.timezone),
            None => Tz::UTC,
        },
        None => Tz::UTC,
    })
}

async fn show(cli: &Cli, run: &str, run_id: Option<&str>) -> anyhow::Result<ExitCode> {
    let (dag_id, run_id) = match (run_id, run.split_once('/')) {
        (Some(run_id), _) => (run, run_id),
        (None, Some((dag_id, run_id))) => (dag_id, run_id),
        (None, None) => {
            return Err(UsageError(format!(
                "give the run as `DAG RUN_ID` or `DAG/RUN_ID`, not only `{run}`"
            ))
            .into());
        }
    };
    let store = open_store(&cli.database_url).await?;
    let Some(record) = store.get_run(dag_id, run_id).await? else {
        return Err(UsageError(format!("no run `{run_id}` of DAG `{dag_id}`")).into());
    };
    let tasks = store.task_instances(record.pk).await?;
    let attempts = store.attempts(record.pk).await?;
    if cli.output == Output::Json {
        output::print_json(&serde_json::json!({
            "run": record,
            "task_instances": tasks,
            "attempts": attempts,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let tz = zone_of(store.as_ref(), Some(dag_id)).await?;
    out!(
        "{} {} · {} · {}",
        record.dag_id,
        record.run_id,
        run_type(&record),
        record.state
    );
    out!(
        "logical date {} · interval {} → {}",
        output::time(Some(record.logical_date), tz),
        output::time(Some(record.data_interval.start), tz),
        output::time(Some(record.data_interval.end), tz)
    );
    out!(
        "started {} · ended {} · took {} · triggered by {}",
        output::time(record.started_at, tz),
        output::time(record.ended_at, tz),
        output::duration(record.started_at, record.ended_at),
        record.triggered_by
    );
    out!();
    let mut table = Table::new(&["TASK", "STATE", "TRIES", "STARTED", "DURATION"]);
    for ti in &tasks {
        table.row(vec![
            task_label(&ti.task_id, ti.map_index),
            ti.state.to_string(),
            format!("{}/{}", ti.try_number, ti.max_tries),
            output::time(ti.started_at, tz),
            output::duration(ti.started_at, ti.ended_at),
        ]);
    }
    table.print();
    if !attempts.is_empty() {
        out!();
        let mut table = Table::new(&[
            "ATTEMPT", "TASK", "TRY", "STATE", "WORKER", "DURATION", "ERROR",
        ]);
        for attempt in &attempts {
            table.row(vec![
                attempt.id.to_string(),
                task_label(&attempt.task_id, attempt.map_index),
                attempt.try_number.to_string(),
                attempt.state.to_string(),
                attempt.worker_id.clone(),
                output::duration(Some(attempt.started_at), attempt.ended_at),
                attempt.error.clone().unwrap_or_default(),
            ]);
        }
        table.print();
    }
    Ok(ExitCode::SUCCESS)
}

pub fn task_label(task_id: &str, map_index: i32) -> String {
    if map_index >= 0 {
        format!("{task_id}[{map_index}]")
    } else {
        task_id.to_owned()
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
