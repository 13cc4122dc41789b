//! `sluice users …`: the people who may log in to the web UI, and their roles.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use sluice_store::{NewUser, Role, StoreError};

use super::{UsageError, open_store};
use crate::Cli;

/// Shorter passwords are refused.
const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user who can log in to the web UI.
    ///
    /// The password is asked for on the terminal, or read as one line from stdin with
    /// --password-stdin (or when stdin is not a terminal).
    /// Example: sluice users create admin --role admin
    Create {
        username: String,
        /// viewer (reads), operator (also triggers, pauses, cancels) or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from the first line of stdin instead of asking for it.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users and their roles.
    ///
    /// Example: sluice users list
    List,
}

pub(crate) fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

pub async fn run(cli: &Cli, command: &UsersCommand) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::Create {
            username,
            role,
            password_stdin,
        } => create(cli, username, *role, *password_stdin).await,
        UsersCommand::List => list(cli).await,
    }
}

async fn create(
    cli: &Cli,
    username: &str,
    role: Role,
    password_stdin: bool,
) -> anyhow::Result<ExitCode> {
    check_username(username)?;
    let password = read_password(password_stdin)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UsageError(format!(
            "the password needs at least {MIN_PASSWORD_CHARS} characters"
        ))
        .into());
    }
    let password_hash = sluice_web::hash_password(&password).map_err(anyhow::Error::msg)?;
    let store = open_store(&cli.database_url).await?;
    let created = store
        .create_user(&NewUser {
            username: username.to_owned(),
            password_hash,
            role,
            now: Utc::now(),
        })
        .await;
    match created {
        Ok(user) => {
            out!("created {} user {}", user.role, user.username);
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::Conflict(message)) => Err(UsageError(message).into()),
        Err(error) => Err(error.into()),
    }
}

async fn list(cli: &Cli) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    let users = store.list_users().await?;
    if users.is_empty() {
        out!("no users yet: create one with `sluice users create admin --role admin`");
        return Ok(ExitCode::SUCCESS);
    }
    out!("{:<24} {:<9} CREATED", "USER", "ROLE");
    for user in users {
        out!(
            "{:<24} {:<9} {}",
            user.username,
            user.role,
            user.created_at.format("%Y-%m-%d %H:%M:%SZ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Names show on pages and in the audit log: letters, digits and `_.-@`, up to 64.
pub(crate) fn check_username(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@'));
    if valid {
        return Ok(());
    }
    Err(UsageError(format!(
        "`{name}` is not a valid name: use 1 to 64 letters, digits, `_`, `.`, `-` or `@`"
    ))
    .into())
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let interactive = !from_stdin && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if !interactive {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("password: ").context("reading the password")?;
    let second = rpassword::prompt_password("again: ").context("reading the password")?;
    if first != second {
        return Err(UsageError("the two passwords differ".to_owned()).into());
    }
    Ok(first)
}
