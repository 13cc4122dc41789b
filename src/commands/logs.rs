//! `sluice logs RUN TASK`: an attempt's log from the database, whichever worker ran it.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use sluice_core::AttemptState;
use sluice_store::{AttemptRecord, RunRecord, Store};

use super::runs::resolve_run;
use super::{UsageError, open_store};
use crate::Cli;

/// How often `--follow` looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(300);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: its id, or `DAG/RUN_ID`.
    run_id: String,
    /// The task id.
    task_id: String,
    /// The run's DAG, needed when several DAGs have a run with this id.
    #[arg(long = "dag")]
    dag_id: Option<String>,
    /// Which try (1 is the first); the latest by default.
    #[arg(long = "try")]
    try_number: Option<u32>,
    /// Which mapped instance of a `foreach` task.
    #[arg(long)]
    map_index: Option<i32>,
    /// Keep printing new lines until the attempt ends (waits for it to start).
    #[arg(long, short = 'f')]
    follow: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    let run = resolve_run(store.as_ref(), &args.run_id, args.dag_id.as_deref()).await?;
    let map_index = map_index(store.as_ref(), &run, args).await?;
    let mut attempt = loop {
        match pick_attempt(store.as_ref(), &run, args, map_index).await? {
            Some(attempt) => break attempt,
            None if args.follow => tokio::time::sleep(FOLLOW_EVERY).await,
            None => {
                let which = args
                    .try_number
                    .map_or_else(|| "any try".to_owned(), |n| format!("try {n}"));
                eprintln!(
                    "task `{}` of run {} has no log for {which} yet (--follow waits for it)",
                    args.task_id, run.run_id
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    let mut dropped_shown = 0;
    let mut after_seq = 0;
    let mut stdout = std::io::stdout().lock();
    loop {
        if attempt.log_dropped_bytes > dropped_shown {
            writeln!(
                stdout,
                "{}",
                sluice_store::dropped_log_line(attempt.log_dropped_bytes)
            )?;
            dropped_shown = attempt.log_dropped_bytes;
        }
        for chunk in store.read_log(attempt.id, after_seq).await? {
            stdout.write_all(chunk.content.as_bytes())?;
            after_seq = chunk.seq;
        }
        stdout.flush()?;
        if !args.follow || attempt.state != AttemptState::Running {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
        // re-read the attempt: once it ended, one last read gets its final lines
        attempt = store
            .attempts(run.pk)
            .await?
            .into_iter()
            .find(|a| a.id == attempt.id)
            .unwrap_or(attempt);
    }
}

/// The map index to read: the one given, the task's only one, or a usage error naming the
/// choices.
async fn map_index(store: &dyn Store, run: &RunRecord, args: &Args) -> anyhow::Result<i32> {
    let mut indexes: Vec<i32> = store
        .task_instances(run.pk)
        .await?
        .into_iter()
        .filter(|ti| ti.task_id == args.task_id)
        .map(|ti| ti.map_index)
        .collect();
    indexes.sort_unstable();
    if indexes.is_empty() {
        return Err(UsageError(format!(
            "run {} of DAG {} has no task `{}`",
            run.run_id, run.dag_id, args.task_id
        ))
        .into());
    }
    match args.map_index {
        Some(index) if indexes.contains(&index) => Ok(index),
        Some(index) => Err(UsageError(format!(
            "--map-index {index}: task `{}` has map indexes {}",
            args.task_id,
            list(&indexes)
        ))
        .into()),
        None if indexes.len() == 1 => Ok(indexes[0]),
        None => Err(UsageError(format!(
            "task `{}` is mapped: pass --map-index (one of {})",
            args.task_id,
            list(&indexes)
        ))
        .into()),
    }
}

async fn pick_attempt(
    store: &dyn Store,
    run: &RunRecord,
    args: &Args,
    map_index: i32,
) -> anyhow::Result<Option<AttemptRecord>> {
    let attempts = store.attempts(run.pk).await?;
    let mut tries = attempts
        .into_iter()
        .filter(|a| a.task_id == args.task_id && a.map_index == map_index);
    Ok(match args.try_number {
        Some(number) => tries.find(|a| a.try_number == number),
        None => tries.max_by_key(|a| a.try_number),
    })
}

fn list(indexes: &[i32]) -> String {
    indexes
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
