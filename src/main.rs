//! The `sluice` binary: reads flags, environment and the settings file, starts tracing, and
//! calls the crates.
#![forbid(unsafe_code)]

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use commands::output::Output;

/// sluice: a workflow orchestrator for data engineers. DAGs are YAML files in Git.
///
/// Settings come from flags, then `SLUICE_*` environment variables, then `sluice.toml` in
/// the working directory (or `--config PATH`); `sluice config show` prints what is in effect.
/// Exit codes: 0 ok, 1 failure, 2 bad input, 3 cancelled.
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
    /// How list and show commands print: aligned tables, or JSON for scripts.
    #[arg(long, global = true, env = "SLUICE_OUTPUT", value_enum, default_value_t = Output::Table)]
    output: Output,
    /// A TOML file of connections (`[connections] name = "url"`), outside the DAG folder;
    /// `SLUICE_CONN_<NAME>` variables win over it. Read by workers and `tasks test`.
    #[arg(long, global = true, env = "SLUICE_SECRETS_FILE", value_name = "PATH")]
    secrets_file: Option<PathBuf>,
    /// A settings file (TOML) instead of ./sluice.toml.
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
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
    ///
    /// Example: sluice dags validate
    #[command(subcommand)]
    Dags(commands::dags::DagsCommand),
    /// Run a DAG over a range of past dates (the scheduler runs it; the CLI watches).
    ///
    /// Example: sluice backfill daily_sales --start 2026-01-01 --end 2026-03-31 --max-active-runs 4
    ///
    /// Example: sluice backfill status 3
    Backfill(commands::backfill::BackfillArgs),
    /// List runs and show one run with its tasks and attempts.
    ///
    /// Example: sluice runs list daily_sales --state failed
    #[command(subcommand)]
    Runs(commands::runs::RunsCommand),
    /// Clear, render and test tasks.
    ///
    /// Example: sluice tasks test daily_sales extract --date 2026-01-01
    #[command(subcommand)]
    Tasks(commands::tasks::TasksCommand),
    /// Database maintenance.
    ///
    /// Example: sluice db migrate --database-url postgres://sluice@db/sluice
    #[command(subcommand)]
    Db(commands::db::DbCommand),
    /// Users of the web UI and their roles.
    #[command(subcommand)]
    Users(commands::users::UsersCommand),
    /// API tokens for scripts and CI.
    #[command(subcommand)]
    Tokens(commands::tokens::TokensCommand),
    /// The settings in effect.
    ///
    /// Example: sluice config show
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    ///
    /// Example: sluice completions bash > /etc/bash_completion.d/sluice
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every setting, where it came from, with secrets masked.
    ///
    /// Example: sluice config show --output json
    Show,
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (command, file) = match commands::config::command_with_file(Cli::command(), &args) {
        Ok(found) => found,
        Err(message) => return commands::config::report(message),
    };
    let matches = command.clone().get_matches_from(&args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "sluice", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Config(ConfigCommand::Show) => {
            return match commands::config::show(&cli, &command, &matches, &file) {
                Ok(code) => code,
                Err(error) => commands::report(error),
            };
        }
        _ => {}
    }
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
            Command::Backfill(ref args) => commands::backfill::run(&cli, args).await,
            Command::Runs(ref command) => commands::runs::run(&cli, command).await,
            Command::Tasks(ref command) => commands::tasks::run(&cli, command).await,
            Command::Db(ref command) => commands::db::run(&cli, command).await,
            Command::Users(ref command) => commands::users::run(&cli, command).await,
            Command::Tokens(ref command) => commands::tokens::run(&cli, command).await,
            Command::Config(_) | Command::Completions { .. } => Ok(ExitCode::SUCCESS),
            Command::Scheduler(ref args) => commands::scheduler::run(&cli, args).await,
            Command::Worker(ref args) => commands::worker::run(&cli, args).await,
            Command::Web(ref args) => commands::web::run(&cli, args).await,
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
