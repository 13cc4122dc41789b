//! `sluice scheduler`: the scheduler alone, one of possibly several on one database.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::clock::SystemClock;
use sluice_scheduler::{FolderLoader, Scheduler, SchedulerConfig};
use tokio::sync::watch;

use super::{UsageError, duration_flag, host_name, open_store, process_id, wait_for_signal};
use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pause between two passes over the DAGs and runs.
    #[arg(long, env = "SLUICE_TICK_INTERVAL", default_value = "1s", value_parser = duration_flag)]
    tick_interval: Duration,
    /// A running task whose worker has not heartbeaten for this long is failed (as a zombie)
    /// and retried per its retries. Keep it well above the workers' --heartbeat-interval.
    #[arg(long, env = "SLUICE_ZOMBIE_AFTER", default_value = "60s", value_parser = duration_flag)]
    zombie_after: Duration,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if args.tick_interval.is_zero() {
        return Err(UsageError("--tick-interval must be more than 0".to_owned()).into());
    }
    if args.zombie_after < Duration::from_secs(1) {
        return Err(UsageError("--zombie-after must be at least 1s".to_owned()).into());
    }
    let store = open_store(&cli.database_url).await?;
    let host = host_name();
    let config = SchedulerConfig {
        tick_interval: args.tick_interval,
        zombie_after: args.zombie_after,
        scheduler_id: process_id(&host),
        host,
        ..SchedulerConfig::default()
    };
    let scheduler_id = config.scheduler_id.clone();
    let scheduler = Arc::new(Scheduler::new(
        store,
        Arc::new(SystemClock),
        FolderLoader::new(&cli.dags_folder),
        config,
    ));
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(scheduler.run(shutdown));
    eprintln!(
        "sluice scheduler {scheduler_id}: DAGs from {} · database {} · zombies after {}",
        cli.dags_folder.display(),
        sluice_store::redact_url(&cli.database_url),
        sluice_core::schedule::format_duration(args.zombie_after)
    );
    wait_for_signal().await;
    eprintln!("sluice scheduler: stopping");
    let _ = stop.send(true);
    let _ = task.await;
    eprintln!("sluice scheduler: stopped");
    Ok(ExitCode::SUCCESS)
}
