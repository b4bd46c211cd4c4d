//! The server binary: flags and environment → [`server::Config`], logging, bind, run.

use std::net::TcpListener;

use anyhow::Context;
use clap::Parser;
use server::Config;
use server::config::{Admin, Command};
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
    server::check_settings(&config).map_err(anyhow::Error::msg)?;
    // Every connection is a file: allow as many as the hard limit permits.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit raised to the hard limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }
    let address = (config.host.as_str(), config.port);
    let listener = TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    let shared = server::connect_shared(&config).await?;
    server::run_shared(listener, config, shared, server::shutdown_signal())?
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs a command other than serving.
#[allow(clippy::print_stdout)] // a command's result is its output
fn run_command(command: &Command, config: &Config) -> anyhow::Result<()> {
    match command {
        Command::Admin { action } => admin(action, config),
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

/// `server admin ...`: the API's keys, in the data folder's database.
#[allow(clippy::print_stdout)] // a command's result is its output
fn admin(action: &Admin, config: &Config) -> anyhow::Result<()> {
    let now = server::outbound::now_millis();
    let db = server::db::Db::open_existing(config.storage.options())?;
    match action {
        Admin::CreateKey { name } => {
            protocol::rules::check_client_id(name)
                .map_err(|_| anyhow::anyhow!("a key name is 1 to 64 of A-Z a-z 0-9 - _"))?;
            let key = server::api::new_key().context("no random numbers from the OS")?;
            db.create_key(name, &server::api::key_hash(&key), now)?;
            println!("{key}");
            eprintln!("API key {name:?} created; it is shown only this once.");
        }
        Admin::RevokeKey { name } => {
            anyhow::ensure!(db.revoke_key(name, now)?, "no key named {name:?} that is not revoked");
            println!("revoked {name}");
        }
        Admin::ListKeys => {
            let when = |ms: u64| {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                humantime::format_rfc3339_seconds(at).to_string()
            };
            for key in db.list_keys()? {
                let state = match key.revoked {
                    Some(at) => format!("revoked {}", when(at)),
                    None => "active".to_owned(),
                };
                println!("{}\tcreated {}\t{state}", key.name, when(key.created));
            }
        }
    }
    Ok(())
}
