//! `sluice web`: the web UI alone, reading the same database as the other processes.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context;

use super::{open_store, wait_for_signal};
use crate::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, env = "SLUICE_PORT", default_value_t = 8080)]
    port: u16,
}

pub async fn run(cli: &Cli, args: &Args) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli.database_url).await?;
    let listener = tokio::net::TcpListener::bind((args.bind, args.port))
        .await
        .with_context(|| format!("listening on {}:{} (--bind, --port)", args.bind, args.port))?;
    let address = listener.local_addr().context("reading the bound address")?;
    eprintln!(
        "sluice web: web UI on http://{address}/ · database {}",
        sluice_store::redact_url(&cli.database_url)
    );
    sluice_web::serve(listener, sluice_web::AppState::new(store), async {
        wait_for_signal().await;
        eprintln!("sluice web: stopping");
    })
    .await
    .context("serving the web UI")?;
    Ok(ExitCode::SUCCESS)
}
