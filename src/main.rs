//! The `sluice` binary: reads flags and environment, starts tracing, and calls the crates.
#![forbid(unsafe_code)]

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sluice: a workflow orchestrator for data engineers. DAGs are YAML files in Git.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
pub struct Cli {
    /// Where run state lives: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "SLUICE_DATABASE_URL",
        default_value = "sqlite://.sluice/sluice.db"
    )]
    database_url: String,
    /// The folder holding the DAG files (*.yaml, *.yml), searched recursively.
    #[arg(
        long,
        global = true,
        env = "SLUICE_DAGS_FOLDER",
        default_value = "dags"
    )]
    dags_folder: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scheduler, a local worker pool and the web UI in one process.
    ///
    /// Example: sluice standalone --port 8080 --slots 8
    Standalone(commands::standalone::Args),
    /// The scheduler alone: creates and starts runs, fails zombie attempts. Run one or more.
    ///
    /// Example: sluice scheduler --database-url postgres://sluice@db/sluice
    Scheduler(commands::scheduler::Args),
    /// A worker: runs tasks of the given queues. Run as many as needed, on any host.
    ///
    /// Example: sluice worker --queue default,spark --slots 8 --database-url postgres://sluice@db/sluice
    Worker(commands::worker::Args),
    /// The web UI alone.
    ///
    /// Example: sluice web --bind 0.0.0.0 --port 8080 --database-url postgres://sluice@db/sluice
    Web(commands::web::Args),
    /// Act on runs.
    #[command(subcommand)]
    Runs(commands::runs::RunsCommand),
    /// Print a task's log from the database, from whichever worker ran it.
    ///
    /// Example: sluice logs daily_sales/manual__2026-11-25T08:00:00Z extract --try 2 --follow
    Logs(commands::logs::Args),
    /// List the workers with their queues, slots in use and last heartbeat.
    ///
    /// Example: sluice workers
    Workers(commands::workers::Args),
    /// Pools: caps on how many tasks of a pool run at once across all workers.
    #[command(subcommand)]
    Pools(commands::pools::PoolsCommand),
    /// Check, list, inspect and trigger DAGs.
    #[command(subcommand)]
    Dags(commands::dags::DagsCommand),
    /// Database maintenance.
    #[command(subcommand)]
    Db(commands::db::DbCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_tracing(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Standalone(ref args) => commands::standalone::run(&cli, args).await,
            Command::Dags(ref command) => commands::dags::run(&cli, command).await,
            Command::Db(ref command) => commands::db::run(&cli, command).await,
            Command::Scheduler(ref args) => commands::scheduler::run(&cli, args).await,
            Command::Worker(ref args) => commands::worker::run(&cli, args).await,
            Command::Web(ref args) => commands::web::run(&cli, args).await,
            Command::Runs(ref command) => commands::runs::run(&cli, command).await,
            Command::Logs(ref args) => commands::logs::run(&cli, args).await,
            Command::Workers(ref args) => commands::workers::run(&cli, args).await,
            Command::Pools(ref command) => commands::pools::run(&cli, command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => commands::report(error),
    }
}
