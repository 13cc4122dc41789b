//! `sluice db …`: schema maintenance.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use indicatif::ProgressBar;

use super::open_store;
use crate::Cli;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or upgrade the database schema (every process also does this at start).
    ///
    /// Example: sluice db migrate --database-url postgres://sluice@db/sluice
    Migrate,
}

pub async fn run(cli: &Cli, command: &DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Migrate => {
            let url = sluice_store::redact_url(&cli.database_url);
            let spinner = ProgressBar::new_spinner().with_message(format!("migrating {url}"));
            spinner.enable_steady_tick(Duration::from_millis(100));
            let result = open_store(&cli.database_url).await;
            spinner.finish_and_clear();
            result?;
            out!("database {url} is up to date");
            Ok(ExitCode::SUCCESS)
        }
    }
}
