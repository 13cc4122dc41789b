//! `sluice standalone`: scheduler, a worker pool and the web UI in one process.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sluice_core::clock::SystemClock;
use sluice_scheduler::{FolderLoader, Scheduler, SchedulerConfig};
use sluice_worker::{Worker, WorkerConfig};
use tokio::sync::watch;

use super::{open_store, wait_for_signal};
use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address the web UI listens on.
    #[arg(long, env = "SLUICE_BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port of the web UI (0 picks a free one and prints it).
    #[arg(long, env = "SLUICE_PORT", default_value_t = 8080)]
    port: u16,
    /// How many tasks the local worker runs at once.
    #[arg(long, env = "SLUICE_SLOTS", default_value_t = 8)]
    slots: u32,
    /// Queues the local worker serves (comma-separated).
    #[arg(
        long,
        env = "SLUICE_QUEUES",
        value_delimiter = ',',
        default_value = "default"
    )]
    queues: Vec<String>,
    /// Mark the session cookie `Secure`: set it when the UI is reached over HTTPS (a
    /// TLS-terminating proxy in front).
    #[arg(long, env = "SLUICE_SECURE_COOKIES")]
    secure_cookies: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    if args.slots == 0 {
        return Err(super::UsageError("--slots must be at least 1".to_owned()).into());
    }
    let store = open_store(&cli.database_url).await?;
    let listener = tokio::net::TcpListener::bind((args.bind, args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.bind, args.port))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let clock = Arc::new(SystemClock);
    let (stop, shutdown) = watch::channel(false);

    let host = super::host_name();
    let scheduler = Arc::new(Scheduler::new(
        store.clone(),
        clock.clone(),
        FolderLoader::new(&cli.dags_folder),
        SchedulerConfig {
            scheduler_id: super::process_id(&host),
            host: host.clone(),
            ..SchedulerConfig::default()
        },
    ));
    let mut worker_config = WorkerConfig::new(
        format!("{host}:{}:standalone", std::process::id()),
        args.slots,
    );
    worker_config.host = host;
    worker_config.queues = args.queues.clone();
    worker_config.secrets_file = super::secrets_file(cli)?;
    worker_config.default_connections = super::default_connections();
    let worker = Worker::new(store.clone(), clock, worker_config);

    let scheduler_task = tokio::spawn(scheduler.run(shutdown.clone()));
    let worker_task = tokio::spawn(worker.run(shutdown.clone()));
    let mut web_shutdown = shutdown.clone();
    let mut web_state = sluice_web::AppState::new(store.clone());
    if args.secure_cookies {
        web_state = web_state.with_secure_cookies();
    }
    let web_task = tokio::spawn(sluice_web::serve(listener, web_state, async move {
        let _ = web_shutdown.wait_for(|stop| *stop).await;
    }));
    eprintln!(
        "sluice standalone: web UI on http://{address}/ · DAGs from {} · database {}",
        cli.dags_folder.display(),
        sluice_store::redact_url(&cli.database_url)
    );
    tracing::info!(%address, "listening");
    if store.list_users().await?.is_empty() {
        eprintln!(
            "sluice standalone: no users yet: create the first admin with `sluice users create admin --role admin`, then log in"
        );
    }

    wait_for_signal().await;
    eprintln!("sluice standalone: stopping (waiting for running tasks)");
    let _ = stop.send(true);
    let _ = scheduler_task.await;
    let _ = worker_task.await;
    match web_task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "web server stopped with an error"),
        Err(error) => tracing::error!(%error, "web server task failed"),
    }
    Ok(ExitCode::SUCCESS)
}
