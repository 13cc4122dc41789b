//! `sluice pools …`: caps on how many tasks of a pool (`pool:` in the DAG file) run at once.

use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;
use sluice_store::PoolSlots;

use super::{UsageError, open_store};
use crate::Cli;

#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// Create or resize a pool: at most SLOTS of its tasks run at once, across all workers.
    ///
    /// Example: sluice pools set warehouse --slots 4
    Set {
        name: String,
        #[arg(long)]
        slots: u32,
    },
    /// List pools with their slots, running and waiting tasks.
    ///
    /// Example: sluice pools list
    List,
    /// Remove a pool: its tasks then run without a cap.
    ///
    /// Example: sluice pools delete warehouse
    Delete { name: String },
}

pub async fn run(cli: &Cli, command: &PoolsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PoolsCommand::Set { name, slots } => {
            check_name(name)?;
            let store = open_store(&cli.database_url).await?;
            let pool = PoolSlots {
                name: name.clone(),
                slots: *slots,
            };
            store.set_pool(&pool, Utc::now()).await?;
            out!("pool {name}: {slots} slots");
        }
        PoolsCommand::List => {
            let store = open_store(&cli.database_url).await?;
            let pools = store.list_pools().await?;
            if pools.is_empty() {
                eprintln!(
                    "no pools: tasks run without a pool cap (`sluice pools set NAME --slots N`)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            out!(
                "{:<28} {:>6} {:>8} {:>8}",
                "POOL",
                "SLOTS",
                "RUNNING",
                "WAITING"
            );
            for pool in pools {
                out!(
                    "{:<28} {:>6} {:>8} {:>8}",
                    pool.name,
                    pool.slots,
                    pool.running,
                    pool.queued
                );
            }
        }
        PoolsCommand::Delete { name } => {
            let store = open_store(&cli.database_url).await?;
            if !store.delete_pool(name).await? {
                return Err(UsageError(format!("no pool `{name}`")).into());
            }
            out!("pool {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(UsageError(format!(
            "pool name `{name}`: use letters, digits, `_`, `.` or `-`"
        ))
        .into())
    }
}
