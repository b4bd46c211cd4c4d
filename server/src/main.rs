//! The server binary: flags and environment → [`server::Config`], logging, bind, run.

use std::net::TcpListener;

use anyhow::Context;
use clap::Parser;
use server::Config;
use server::config::Command;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();
    if let Some(command) = &config.command {
        return run_command(command, &config);
    }
    // Every connection is a file: allow as many as the hard limit permits.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit raised to the hard limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }
    let address = (config.host.as_str(), config.port);
    let listener = TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    server::run(listener, config, server::shutdown_signal())?.await.context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs a command other than serving.
#[allow(clippy::print_stdout)] // a command's result is its output
fn run_command(command: &Command, config: &Config) -> anyhow::Result<()> {
    match command {
        Command::Backup { file } => {
            let data_dir = &config.storage.data_dir;
            let summary = server::db::backup(data_dir, file)
                .with_context(|| format!("backup of {} failed", data_dir.display()))?;
            println!(
                "backed up {} messages in {} rooms (last id {}) to {}",
                summary.messages,
                summary.rooms,
                summary.last_id,
                file.display()
            );
            Ok(())
        }
    }
}
