//! `sluice tokens …`: API tokens for scripts and CI (`Authorization: Bearer TOKEN`).

use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;
use sluice_store::{NewApiToken, Role, StoreError};

use super::users::{check_username, parse_role};
use super::{UsageError, open_store};
use crate::Cli;

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token; it is printed once and only its hash is stored.
    ///
    /// Example: sluice tokens create ci --role operator
    Create {
        name: String,
        /// viewer (reads), operator (also triggers, pauses, cancels) or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List the API tokens by name and role (never the tokens themselves).
    ///
    /// Example: sluice tokens list
    List,
}

pub async fn run(cli: &Cli, command: &TokensCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Create { name, role } => create(cli, name, *role).await,
        TokensCommand::List => list(cli).await,
    }
}

async fn create(cli: &Cli, name: &str, role: Role) -> anyhow::Result<ExitCode> {
    check_username(name)?;
    let store = open_store(&cli.database_url).await?;
    let token = sluice_web::new_api_token();
    let created = store
        .create_api_token(&NewApiToken {
            name: name.to_owned(),
            token_hash: sluice_web::token_hash(&token),
            role,
            now: Utc::now(),
        })
        .await;
    match created {
        Ok(record) => {
            eprintln!(
                "created {} API token {}; it is shown only this once:",
                record.role, record.name
            );
            out!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::Conflict(message)) => Err(UsageError(message).into()),
        Err(error) => Err(error.into()),
    }
}

async fn list(cli: &Cli) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    let tokens = store.list_api_tokens().await?;
    if tokens.is_empty() {
        out!("no API tokens yet: create one with `sluice tokens create NAME --role viewer`");
        return Ok(ExitCode::SUCCESS);
    }
    out!("{:<24} {:<9} CREATED", "NAME", "ROLE");
    for token in tokens {
        out!(
            "{:<24} {:<9} {}",
            token.name,
            token.role,
            token.created_at.format("%Y-%m-%d %H:%M:%SZ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
