//! `sluice workers`: who is running tasks, and who went silent.

use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;

use super::{duration_flag, open_store};
use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A worker silent for longer than this shows as `stale` (match the scheduler's
    /// --zombie-after).
    #[arg(long, env = "SLUICE_ZOMBIE_AFTER", default_value = "60s", value_parser = duration_flag)]
    stale_after: Duration,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    let workers = store.list_workers().await?;
    if workers.is_empty() {
        eprintln!("no workers have reported to this database");
        return Ok(ExitCode::SUCCESS);
    }
    let now = Utc::now();
    let stale_after = chrono::Duration::from_std(args.stale_after).unwrap_or(chrono::Duration::MAX);
    out!(
        "{:<40} {:<24} {:<20} {:>9}  {:<25} STATE",
        "WORKER",
        "HOST",
        "QUEUES",
        "SLOTS",
        "LAST HEARTBEAT"
    );
    for worker in workers {
        let age = now - worker.heartbeat_at;
        let state = if age > stale_after { "stale" } else { "alive" };
        out!(
            "{:<40} {:<24} {:<20} {:>9}  {:<25} {state}",
            worker.worker_id,
            worker.host,
            worker.queues.join(","),
            format!("{}/{}", worker.slots_in_use, worker.slots),
            format!(
                "{} ({}s ago)",
                worker.heartbeat_at.format("%Y-%m-%d %H:%M:%SZ"),
                age.num_seconds().max(0)
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}
