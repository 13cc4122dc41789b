//! `sluice backfill DAG --start --end`, `backfill status ID`, `backfill cancel ID`.
//!
//! The CLI plans the backfill and writes it (one transaction); the scheduler starts its runs.
//! The CLI then only watches: Ctrl-C, a lost terminal or `kill -9` leave the backfill running,
//! and the same command again finds the open backfill and watches it instead of creating one.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use chrono_tz::Tz;
use clap::{Args, Subcommand};
use sluice_core::{BackfillState, Dag};
use sluice_scheduler::SchedulerError;
use sluice_scheduler::backfill::{self, Action, BackfillPlan, BackfillRequest, Bound};
use sluice_store::{BackfillRecord, RunRange, Store, StoreError};

use super::output::{self, Output, Table};
use super::{UsageError, open_store};
use crate::Cli;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackfillArgs {
    #[command(subcommand)]
    action: Option<BackfillAction>,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(Debug, Subcommand)]
enum BackfillAction {
    /// Show a backfill's state and its runs' progress.
    ///
    /// Example: sluice backfill status 3
    Status { id: i64 },
    /// Cancel a backfill: its queued and running runs are cancelled (running tasks stopped).
    ///
    /// Example: sluice backfill cancel 3
    Cancel { id: i64 },
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The DAG to backfill.
    #[arg(required = true)]
    dag_id: Option<String>,
    /// First logical date: YYYY-MM-DD (a day in the DAG's timezone), YYYY-MM-DDTHH:MM or RFC 3339.
    #[arg(long, value_name = "DATE", required = true)]
    start: Option<String>,
    /// Last logical date, included (a day means the whole day).
    #[arg(long, value_name = "DATE", required = true)]
    end: Option<String>,
    /// How many of the backfill's runs may run at once (default: the DAG's max_active_runs).
    #[arg(long, value_name = "N")]
    max_active_runs: Option<u32>,
    /// Newest logical date first.
    #[arg(long)]
    reverse: bool,
    /// Clear and rerun failed (and cancelled) runs; without it they are left alone.
    #[arg(long)]
    rerun_failed: bool,
    /// Only tasks whose id matches this regex rerun in existing runs.
    #[arg(long, value_name = "REGEX")]
    tasks: Option<String>,
    /// With --tasks: the tasks downstream of the matching ones rerun too.
    #[arg(long, requires = "tasks")]
    downstream: bool,
    /// Print the plan (dates, existing runs, what would happen) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Create the backfill and return without watching it.
    #[arg(long)]
    no_wait: bool,
}

pub async fn run(cli: &Cli, args: &BackfillArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        Some(BackfillAction::Status { id }) => status(cli, *id).await,
        Some(BackfillAction::Cancel { id }) => cancel(cli, *id).await,
        None => create(cli, &args.create).await,
    }
}

async fn create(cli: &Cli, args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let (Some(dag_id), Some(start), Some(end)) = (&args.dag_id, &args.start, &args.end) else {
        return Err(UsageError("DAG, --start and --end are required".to_owned()).into());
    };
    // the form is checked before the database is opened; the day is read in the DAG's zone
    for (flag, text) in [("--start", start), ("--end", end)] {
        backfill::parse_date(text, Tz::UTC, Bound::Start)
            .map_err(|e| UsageError(format!("{flag}: {e}")))?;
    }
    let store = open_store(&cli.database_url).await?;
    let dag = super::dags::dag_from_store(store.as_ref(), cli, dag_id).await?;
    let range = RunRange {
        dag_id: dag_id.clone(),
        start: backfill::parse_date(start, dag.timezone, Bound::Start)
            .map_err(|e| UsageError(format!("--start: {e}")))?,
        end: backfill::parse_date(end, dag.timezone, Bound::End)
            .map_err(|e| UsageError(format!("--end: {e}")))?,
    };
    let request = BackfillRequest {
        range,
        max_active_runs: args.max_active_runs,
        reverse: args.reverse,
        rerun_failed: args.rerun_failed,
        tasks: match &args.tasks {
            Some(pattern) => Some(super::tasks::select(&dag, pattern, args.downstream)?),
            None => None,
        },
        triggered_by: super::who(),
        now: Utc::now(),
    };
    let open = open_backfill_of(store.as_ref(), dag_id).await?;
    let plan = backfill::plan(store.as_ref(), &dag, &request)
        .await
        .map_err(usage)?;
    if args.dry_run {
        print_plan(cli, &dag, &plan)?;
        if let Some(open) = &open {
            eprintln!(
                "backfill {} of {dag_id} is open; running this command for its range would watch it, not create another",
                open.id
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let record = match open {
        Some(open) => resume(open, &request, &dag)?,
        None if !plan.has_work() => {
            eprintln!(
                "nothing to do: every one of the {} runs in the range exists and is kept ({} not due yet)",
                plan.runs.len(),
                plan.not_yet_due
            );
            return Ok(ExitCode::SUCCESS);
        }
        None => match backfill::create(store.as_ref(), &dag, &plan, &request).await {
            Ok(record) => {
                out!(
                    "backfill {} of {dag_id}: {} runs to create, {} to rerun, {} kept; at most {} at a time, {} first",
                    record.id,
                    plan.count(|a| *a == Action::Create),
                    plan.count(|a| matches!(a, Action::Rerun { .. })),
                    plan.count(|a| matches!(a, Action::Keep { .. })),
                    record.max_active_runs,
                    if record.reverse { "newest" } else { "oldest" }
                );
                record
            }
            // another CLI created it a moment ago: watch that one
            Err(SchedulerError::Store(StoreError::Conflict(_))) => {
                let open = open_backfill_of(store.as_ref(), dag_id)
                    .await?
                    .context("the open backfill disappeared")?;
                resume(open, &request, &dag)?
            }
            Err(error) => return Err(usage(error)),
        },
    };
    // listening before saying how to watch: a Ctrl-C from here on only stops the watching
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("listening for Ctrl-C")?;
    eprintln!(
        "watch it: sluice backfill status {id} · cancel it: sluice backfill cancel {id}",
        id = record.id
    );
    if store.get_dag(dag_id).await?.is_some_and(|d| d.is_paused) {
        eprintln!(
            "DAG {dag_id} is paused: its backfill waits until `sluice dags unpause {dag_id}`"
        );
    }
    if args.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    watch(store.as_ref(), &record, interrupt).await
}

async fn open_backfill_of(
    store: &dyn Store,
    dag_id: &str,
) -> anyhow::Result<Option<BackfillRecord>> {
    Ok(store
        .open_backfills()
        .await?
        .into_iter()
        .find(|b| b.dag_id == dag_id))
}

/// The open backfill of the same range is resumed (watched); another range is refused.
fn resume(
    open: BackfillRecord,
    request: &BackfillRequest,
    dag: &Dag,
) -> anyhow::Result<BackfillRecord> {
    if open.range_start != request.range.start || open.range_end != request.range.end {
        return Err(UsageError(format!(
            "DAG `{}` already has backfill {} running for {} → {}: watch it with `sluice backfill status {}` or cancel it with `sluice backfill cancel {}`",
            dag.id,
            open.id,
            output::time(Some(open.range_start), dag.timezone),
            output::time(Some(open.range_end), dag.timezone),
            open.id,
            open.id
        ))
        .into());
    }
    out!(
        "resuming backfill {} of {} (created {}; its options are kept)",
        open.id,
        dag.id,
        output::time(Some(open.created_at), dag.timezone)
    );
    Ok(open)
}

fn usage(error: SchedulerError) -> anyhow::Error {
    match error {
        SchedulerError::Invalid(message) => UsageError(message).into(),
        other => other.into(),
    }
}

fn print_plan(cli: &Cli, dag: &Dag, plan: &BackfillPlan) -> anyhow::Result<()> {
    if cli.output == Output::Json {
        return output::print_json(plan);
    }
    let tz = dag.timezone;
    let mut table = Table::new(&["LOGICAL DATE", "INTERVAL END", "EXISTING RUN", "ACTION"]);
    for planned in &plan.runs {
        let existing = match &planned.existing {
            Some(run) => format!("{} ({})", run.run_id, run.state),
            None => "-".to_owned(),
        };
        let action = match &planned.action {
            Action::Create => "create".to_owned(),
            Action::Rerun { tasks } => format!("rerun {}", tasks.join(",")),
            Action::Keep { reason } => format!("keep: {reason}"),
        };
        table.row(vec![
            output::time(Some(planned.interval.start), tz),
            output::time(Some(planned.interval.end), tz),
            existing,
            action,
        ]);
    }
    table.print();
    out!(
        "dry run: would create {} runs, rerun {}, keep {}; {} in the range not due yet; at most {} at a time, {} first. Nothing was changed.",
        plan.count(|a| *a == Action::Create),
        plan.count(|a| matches!(a, Action::Rerun { .. })),
        plan.count(|a| matches!(a, Action::Keep { .. })),
        plan.not_yet_due,
        plan.max_active_runs,
        if plan.reverse { "newest" } else { "oldest" }
    );
    Ok(())
}

/// Shows progress until the backfill ends; Ctrl-C stops watching, not the backfill.
async fn watch(
    store: &dyn Store,
    record: &BackfillRecord,
    mut interrupt: tokio::signal::unix::Signal,
) -> anyhow::Result<ExitCode> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} runs · {msg} · ETA {eta}",
        )
        .expect("the progress template is valid"),
    );
    let started = std::time::Instant::now();
    loop {
        let current = store
            .get_backfill(record.id)
            .await?
            .context("the backfill disappeared while watching it")?;
        let progress = store.backfill_progress(record.id).await?;
        bar.set_length(u64::from(progress.total));
        bar.set_position(u64::from(progress.finished()));
        // nothing started after a while: most likely no scheduler is running on this database
        let idle = progress.running == 0
            && progress.finished() == 0
            && started.elapsed() > Duration::from_secs(10);
        bar.set_message(if idle {
            "waiting for a scheduler to start its runs (is `sluice standalone` running on this database?)".to_owned()
        } else {
            format!(
                "{} done, {} failed, {} running",
                progress.success,
                progress.failed + progress.cancelled,
                progress.running
            )
        });
        if current.state != BackfillState::Running {
            bar.finish_and_clear();
            out!(
                "backfill {} {}: {} succeeded, {} failed, {} cancelled of {} runs in {}",
                current.id,
                current.state,
                progress.success,
                progress.failed,
                progress.cancelled,
                progress.total,
                sluice_worker::human(started.elapsed())
            );
            return Ok(exit_code(current.state));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = interrupt.recv() => {
                bar.abandon();
                eprintln!(
                    "\nstopped watching; backfill {id} goes on in the scheduler.\n  watch it:  sluice backfill status {id}\n  cancel it: sluice backfill cancel {id}",
                    id = record.id
                );
                return Ok(ExitCode::from(130));
            }
        }
    }
}

fn exit_code(state: BackfillState) -> ExitCode {
    match state {
        BackfillState::Success | BackfillState::Running => ExitCode::SUCCESS,
        BackfillState::Failed => ExitCode::FAILURE,
        BackfillState::Cancelled => ExitCode::from(3),
    }
}

async fn get(store: &dyn Store, id: i64) -> anyhow::Result<BackfillRecord> {
    store
        .get_backfill(id)
        .await?
        .ok_or_else(|| UsageError(format!("no backfill {id}")).into())
}

async fn status(cli: &Cli, id: i64) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    let record = get(store.as_ref(), id).await?;
    let progress = store.backfill_progress(id).await?;
    if cli.output == Output::Json {
        output::print_json(&serde_json::json!({ "backfill": record, "progress": progress }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let tz = match store.get_dag(&record.dag_id).await? {
        Some(dag) => output::timezone(&dag.timezone),
        None => Tz::UTC,
    };
    let mut table = Table::new(&[
        "BACKFILL",
        "DAG",
        "STATE",
        "FROM",
        "BEFORE",
        "MAX ACTIVE",
        "ORDER",
    ]);
    table.row(vec![
        record.id.to_string(),
        record.dag_id.clone(),
        record.state.to_string(),
        output::time(Some(record.range_start), tz),
        output::time(Some(record.range_end), tz),
        record.max_active_runs.to_string(),
        if record.reverse {
            "newest first"
        } else {
            "oldest first"
        }
        .to_owned(),
    ]);
    table.print();
    out!(
        "runs: {} total · {} queued · {} running · {} success · {} failed · {} cancelled",
        progress.total,
        progress.queued,
        progress.running,
        progress.success,
        progress.failed,
        progress.cancelled
    );
    out!("options: {}", record.options);
    out!(
        "created {} by {}{}",
        output::time(Some(record.created_at), tz),
        record.triggered_by,
        match record.ended_at {
            Some(at) => format!(", ended {}", output::time(Some(at), tz)),
            None => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn cancel(cli: &Cli, id: i64) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    let record = get(store.as_ref(), id).await?;
    if store.cancel_backfill(id, Utc::now()).await? {
        out!("backfill {id} of {} cancelled", record.dag_id);
    } else {
        out!(
            "backfill {id} of {} had already ended ({})",
            record.dag_id,
            record.state
        );
    }
    Ok(ExitCode::SUCCESS)
}
