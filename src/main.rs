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
    /// Check, list, inspect and trigger DAGs.
    #[command(subcommand)]
    Dags(commands::dags::DagsCommand),
    /// Database maintenance.
    #[command(subcommand)]
    Db(commands::db::DbCommand),
    /// Users of the web UI and their roles.
    #[command(subcommand)]
    Users(commands::users::UsersCommand),
    /// API tokens for scripts and CI.
    #[command(subcommand)]
    Tokens(commands::tokens::TokensCommand),
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
            Command::Users(ref command) => commands::users::run(&cli, command).await,
            Command::Tokens(ref command) => commands::tokens::run(&cli, command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => commands::report(error),
    }
}
