//! `sluice worker`: runs tasks of some queues, one of any number of workers on one database.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_core::clock::SystemClock;
use sluice_store::StoreOptions;
use sluice_worker::{Worker, WorkerConfig};
use tokio::sync::watch;

use super::{UsageError, duration_flag, host_name, wait_for_signal};
use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A queue this worker serves (repeatable, or comma-separated).
    #[arg(
        long = "queue",
        env = "SLUICE_QUEUES",
        value_delimiter = ',',
        default_value = "default"
    )]
    queues: Vec<String>,
    /// How many tasks run at once.
    #[arg(long, env = "SLUICE_SLOTS", default_value_t = 8)]
    slots: u32,
    /// On SIGTERM, how long running tasks may go on before they are killed and recorded as
    /// failed (retried per their retries). A second SIGTERM kills them at once.
    #[arg(long, env = "SLUICE_GRACE", default_value = "30s", value_parser = duration_flag)]
    grace: Duration,
    /// How often the worker tells the database it is alive.
    #[arg(long, env = "SLUICE_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = duration_flag)]
    heartbeat_interval: Duration,
    /// The most log text kept per attempt, in bytes; beyond it the oldest output is dropped.
    #[arg(long, env = "SLUICE_LOG_CAP_BYTES", default_value_t = StoreOptions::default().log_cap_bytes)]
    log_cap_bytes: u64,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if args.slots == 0 {
        return Err(UsageError("--slots must be at least 1".to_owned()).into());
    }
    let queues: Vec<String> = args.queues.iter().map(|q| q.trim().to_owned()).collect();
    if let Some(bad) = queues.iter().find(|q| !valid_queue(q)) {
        return Err(UsageError(format!(
            "--queue `{bad}`: a queue name is letters, digits, `_`, `.` or `-`"
        ))
        .into());
    }
    if args.heartbeat_interval.is_zero() {
        return Err(UsageError("--heartbeat-interval must be more than 0".to_owned()).into());
    }
    if args.log_cap_bytes == 0 {
        return Err(UsageError("--log-cap-bytes must be more than 0".to_owned()).into());
    }
    let options = StoreOptions {
        log_cap_bytes: args.log_cap_bytes,
    };
    let store = sluice_store::connect_with(&cli.database_url, options)
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                sluice_store::redact_url(&cli.database_url)
            )
        })?;
    let host = host_name();
    let mut config = WorkerConfig::new(super::process_id(&host), args.slots);
    config.host = host;
    config.queues = queues;
    config.shutdown_grace = args.grace;
    config.heartbeat_interval = args.heartbeat_interval;
    config.secrets_file = super::secrets_file(cli)?;
    let worker_id = config.worker_id.clone();
    eprintln!(
        "sluice worker {worker_id}: queues {} · {} slots · database {}",
        config.queues.join(","),
        config.slots,
        sluice_store::redact_url(&cli.database_url)
    );
    let worker = Worker::new(store, Arc::new(SystemClock), config);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(worker.clone().run(shutdown));
    wait_for_signal().await;
    eprintln!(
        "sluice worker {worker_id}: stopping: no new tasks; running ones may finish within {}",
        sluice_core::schedule::format_duration(args.grace)
    );
    let _ = stop.send(true);
    let second = async {
        wait_for_signal().await;
        eprintln!("sluice worker {worker_id}: second signal: stopping running tasks now");
        worker.stop_now();
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = task => {}
        _ = second => {}
    }
    eprintln!("sluice worker {worker_id}: stopped");
    Ok(ExitCode::SUCCESS)
}

fn valid_queue(queue: &str) -> bool {
    !queue.is_empty()
        && queue
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}
