//! One module per top-level command.

/// `println!` for command output that ends the process quietly when stdout is closed early
/// (`sluice dags validate | head`) instead of panicking, as line-oriented tools do.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::commands::stdout_failed(error);
        }
    }};
}

pub mod backfill;
pub mod config;
pub mod dags;
pub mod db;
pub mod graph;
pub mod logs;
pub mod output;
pub mod pools;
pub mod runs;
pub mod scheduler;
pub mod standalone;
pub mod tasks;
pub mod tokens;
pub mod users;
pub mod web;
pub mod worker;
pub mod workers;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sluice_store::Store;

use crate::Command;

/// Bad input from the user (an unknown DAG, a malformed flag): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// stdout is gone: a closed pipe is the reader's choice (exit quietly, as `head` expects);
/// anything else (a full disk) is an error worth saying.
pub fn stdout_failed(error: std::io::Error) -> ! {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {error}");
    std::process::exit(1);
}

pub fn report(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    if error.downcast_ref::<UsageError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Who a CLI action is recorded as: `cli:$USER`.
pub fn who() -> String {
    std::env::var("USER")
        .map(|u| format!("cli:{u}"))
        .unwrap_or_else(|_| "cli".to_owned())
}

pub fn init_tracing(command: &Command) {
    // services log at info; one-shot commands only say what went wrong
    let default = match command {
        Command::Standalone(_) | Command::Scheduler(_) | Command::Worker(_) | Command::Web(_) => {
            "info,sqlx=warn"
        }
        _ => "warn,sqlx=warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colour codes only for a person at a terminal, not in files and journald
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Opens (and migrates) the store, creating the folder of a SQLite file if needed.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(path) = sqlite_path(url)
        && let Some(parent) = std::path::Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    sluice_store::connect(url)
        .await
        .with_context(|| format!("opening the database {}", sluice_store::redact_url(url)))
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

/// A duration flag (`500ms`, `30s`, `10m`): clap names the flag when it does not parse.
pub fn duration_flag(text: &str) -> Result<std::time::Duration, String> {
    sluice_core::schedule::parse_duration(text)
}

/// This host's name, as workers and logs show it.
pub fn host_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// `host:pid:random`: names a worker or scheduler process, unique per process, and says
/// where to look.
pub fn process_id(host: &str) -> String {
    format!(
        "{host}:{}:{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Resolves at the first SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// The connections `standalone` and `tasks test|render` provide when neither the environment
/// nor the secrets file defines them: `local`, a SQLite file beside the default database,
/// so the example pipelines run on the quick start with no set-up.
pub fn default_connections() -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([("local".to_owned(), "sqlite:.sluice/local.db".to_owned())])
}

/// The secrets file named by `--secrets-file`, checked to be readable and outside the DAG
/// folder (which is in Git).
pub fn secrets_file(
    cli: &crate::Cli,
) -> Result<Option<sluice_worker::connections::SecretsFile>, UsageError> {
    cli.secrets_file
        .as_deref()
        .map(|path| sluice_worker::connections::SecretsFile::new(path, &cli.dags_folder))
        .transpose()
        .map_err(|e| UsageError(e.to_string()))
}
