//! The server binary: flags and environment → [`server::Config`], logging, bind, run.

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
    let listener = server::listen(&config.host, config.port)
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

/// A room named on the command line, normalised as joins normalise it.
fn checked_room(room: &str) -> anyhow::Result<String> {
    protocol::rules::check_room(room, usize::MAX).map_err(|error| anyhow::anyhow!(error.message))
}

/// `server admin ...`: the API's keys and the accounts, in the data folder's database.
#[allow(clippy::print_stdout)] // a command's result is its output
fn admin(action: &Admin, config: &Config) -> anyhow::Result<()> {
    let now = server::outbound::now_millis();
    let db = || server::db::Db::open_existing(config.storage.options());
    // With --redis the accounts are the shared Redis's, as the servers read them.
    // Refused where the servers on this data folder keep them elsewhere: an operator's shell
    // without the unit's CHAT_REDIS would otherwise read and change a database no server reads.
    let accounts = || -> anyhow::Result<server::accounts::Accounts> {
        let existing = db();
        let noted = existing.as_ref().ok().and_then(|db| db.accounts_in_redis().ok().flatten());
        Ok(match &config.redis.url {
            Some(url) => {
                anyhow::ensure!(
                    noted != Some(false),
                    "the server on this data folder keeps its accounts in its database, not in \
                     Redis: run server admin without --redis (and without CHAT_REDIS)"
                );
                let store = server::redis_accounts::RedisAccounts::connect(url)?;
                server::accounts::Accounts::over(Box::new(store))?
            }
            None => {
                anyhow::ensure!(
                    noted != Some(true),
                    "the server on this data folder keeps its accounts in Redis (it runs with \
                     --redis): give server admin the same --redis URL, or CHAT_REDIS"
                );
                // Only an existing database of this release's schema (no new file in a
                // mistyped folder).
                existing?;
                server::accounts::Accounts::open(&config.storage.data_dir)?
            }
        })
    };
    // What the operator did to accounts, kept beside the moderators' actions.
    let audit = |accounts: &server::accounts::Accounts, action, room: &str, subject: String| {
        let entry =
            server::accounts::Audit { actor: "admin".into(), action, room: room.into(), subject };
        if let Err(error) = accounts.audit(&entry, now) {
            eprintln!("warning: not kept in the audit log: {error}");
        }
    };
    match action {
        Admin::ListAccounts => {
            for (nick, created, roles) in accounts()?.list()? {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(created);
                let at = humantime::format_rfc3339_seconds(at);
                println!("{nick}\tregistered {at}\t{}", roles.join(" "));
            }
        }
        Admin::DeleteAccount { nick } => {
            let accounts = accounts()?;
            let deleted = accounts.delete(nick)?;
            let nick = deleted.ok_or_else(|| anyhow::anyhow!("no account looks like {nick:?}"))?;
            audit(&accounts, "delete-account", "", nick.clone());
            println!("deleted {nick}");
        }
        Admin::ResetPassword { nick } => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let accounts = accounts()?;
            let reset = accounts.reset_password(nick, password)?;
            let nick = reset.ok_or_else(|| anyhow::anyhow!("no account looks like {nick:?}"))?;
            audit(&accounts, "reset-password", "", nick.clone());
            println!("password of {nick} reset; its sessions ended");
        }
        Admin::GrantModerator { nick, room } => {
            let room = room.as_deref().map(checked_room).transpose()?;
            let accounts = accounts()?;
            let granted = accounts.grant_moderator(nick, room.as_deref(), now)?;
            let nick = granted.ok_or_else(|| anyhow::anyhow!("no account looks like {nick:?}"))?;
            let place = room.clone().unwrap_or_else(|| "*".into());
            audit(&accounts, "grant-moderator", &place, nick.clone());
            println!("{nick} moderates {place} (their page offers the tools from its next join)");
        }
        Admin::RevokeModerator { nick, room } => {
            let room = room.as_deref().map(checked_room).transpose()?;
            let accounts = accounts()?;
            anyhow::ensure!(
                accounts.revoke_moderator(nick, room.as_deref())?.is_some(),
                "{nick:?} is no moderator there"
            );
            let place = room.unwrap_or_else(|| "*".into());
            audit(&accounts, "revoke-moderator", &place, nick.clone());
            println!("{nick} no longer moderates {place}: their next action there is refused");
        }
        Admin::Ban { nick, days } => {
            let until = now.saturating_add(u64::from(*days) * 86_400_000);
            let accounts = accounts()?;
            let banned = accounts.ban_everywhere(nick, until)?;
            let nick = banned.ok_or_else(|| anyhow::anyhow!("no account looks like {nick:?}"))?;
            audit(&accounts, "ban", "", format!("{nick} everywhere for {days} days"));
            println!("{nick} is banned from every room for {days} days; their sessions ended");
        }
        Admin::AddMember { room, nick } => {
            let room = checked_room(room)?;
            let accounts = accounts()?;
            anyhow::ensure!(accounts.is_private(&room)?, "#{room} is not private");
            let added = accounts.add_member(&room, nick)?;
            let nick = added.ok_or_else(|| anyhow::anyhow!("no account looks like {nick:?}"))?;
            audit(&accounts, "add-member", &room, nick.clone());
            println!("{nick} is a member of #{room}");
        }
        Admin::Unban { nick, room } => {
            let room = room.as_deref().map(checked_room).transpose()?;
            let accounts = accounts()?;
            // A guest's bans name it as written; an account's as registered (`ban ALICE`
            // banned "Alice"): both are lifted.
            let mut names = vec![nick.clone()];
            names.extend(accounts.registered_nick(nick)?.filter(|registered| registered != nick));
            let place = room.clone().unwrap_or_else(|| "every room".into());
            let mut lifted = Vec::new();
            for name in names {
                let unban = protocol::Sanction::Unban;
                if accounts.lift_sanctions(room.as_deref(), &name, unban)? {
                    audit(&accounts, "unban", room.as_deref().unwrap_or(""), name.clone());
                    lifted.push(name);
                }
            }
            anyhow::ensure!(!lifted.is_empty(), "{nick:?} is not banned from {place}");
            for name in lifted {
                println!("{name} is no longer banned from {place}");
            }
        }
        Admin::RemoveMember { room, nick } => {
            let room = checked_room(room)?;
            let accounts = accounts()?;
            let removed = accounts.remove_member(&room, nick)?;
            let nick =
                removed.ok_or_else(|| anyhow::anyhow!("{nick:?} is no member of #{room}"))?;
            audit(&accounts, "remove-member", &room, nick.clone());
            println!("{nick} is no longer a member of #{room}");
        }
        Admin::RevokeOwner { room } => {
            let room = checked_room(room)?;
            let accounts = accounts()?;
            let owner = accounts.revoke_owner(&room)?;
            let owner = owner.ok_or_else(|| anyhow::anyhow!("#{room} has no owner"))?;
            audit(&accounts, "revoke-owner", &room, owner.clone());
            println!("{owner} no longer owns #{room} (from their next join)");
        }
        Admin::AuditLog { limit } => {
            for (ts, entry) in accounts()?.audit_log(*limit)? {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts);
                let at = humantime::format_rfc3339_seconds(at);
                let room = if entry.room.is_empty() { "-" } else { entry.room.as_str() };
                println!("{at}\t{}\t{}\t{room}\t{}", entry.actor, entry.action, entry.subject);
            }
        }
        Admin::CreateKey { name } => {
            protocol::rules::check_client_id(name)
                .map_err(|_| anyhow::anyhow!("a key name is 1 to 64 of A-Z a-z 0-9 - _"))?;
            let key = server::api::new_key().context("no random numbers from the OS")?;
            db()?.create_key(name, &server::api::key_hash(&key), now)?;
            println!("{key}");
            eprintln!("API key {name:?} created; it is shown only this once.");
        }
        Admin::RevokeKey { name } => {
            anyhow::ensure!(
                db()?.revoke_key(name, now)?,
                "no key named {name:?} that is not revoked"
            );
            println!("revoked {name}");
        }
        Admin::ListKeys => {
            let when = |ms: u64| {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                humantime::format_rfc3339_seconds(at).to_string()
            };
            for key in db()?.list_keys()? {
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
