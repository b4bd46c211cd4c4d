//! The server binary: flags and environment → [`server::Config`], logging, bind, run.

use std::net::TcpListener;

use anyhow::Context;
use clap::Parser;
use server::Config;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();
    let address = (config.host.as_str(), config.port);
    let listener = TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    server::run(listener, config)?.await.context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}
