//! Who is in a room across the servers sharing one Redis (part of the Redis engine,
//! `--redis`).
//!
//! Each server has an id and keeps a key `chat:server:<id>` alive (set with an expiry, renewed
//! by [`Presence::refresh`] well within it). A room's members are the fields of the hash
//! `chat:{room}:members`, `<server id>:<nick>`. A room's member list is the union of the fields
//! whose server is alive: the members of a server that died (and stopped renewing its key)
//! disappear from every list within the expiry, and the first list read after that removes
//! them for good.

use std::collections::BTreeSet;
use std::time::Duration;

use redis::aio::ConnectionManager;

/// One server's part of the presence in the shared Redis.
#[derive(Clone)]
pub struct Presence {
    connection: ConnectionManager,
    server: String,
    /// How long the server counts as alive after its last refresh.
    expiry: Duration,
}

impl Presence {
    /// Presence for the server `server`, alive for `expiry` after each refresh. The id must be
    /// unique among the servers and to each start of one (a host name and a random part, no
    /// `:`): a server restarted under its old id would bring back members of its last life
    /// that the others have not removed yet. A refresh that lapses past the expiry (a stall)
    /// lets the others remove this server's members for good; the wiring must then join them
    /// again.
    pub fn new(connection: ConnectionManager, server: &str, expiry: Duration) -> Self {
        Presence { connection, server: server.replace(':', "_"), expiry }
    }

    /// Keeps this server alive for another expiry; call it at least every third of it.
    pub async fn refresh(&self) -> redis::RedisResult<()> {
        let millis = u64::try_from(self.expiry.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(server_key(&self.server))
            .arg(1)
            .arg("PX")
            .arg(millis)
            .query_async(&mut self.connection.clone())
            .await
    }

    /// This server's id.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// `nick` is in `room` on this server; `tag` names its client (see
    /// `room_state::client_tag`; empty for none), so that the same client may take the seat
    /// over from another server.
    pub async fn join(&self, room: &str, nick: &str, tag: &str) -> redis::RedisResult<()> {
        redis::cmd("HSET")
            .arg(members_key(room))
            .arg(self.field(nick))
            .arg(tag)
            .query_async(&mut self.connection.clone())
            .await
    }

    /// `nick` left `room` on this server.
    pub async fn leave(&self, room: &str, nick: &str) -> redis::RedisResult<()> {
        redis::cmd("HDEL")
            .arg(members_key(room))
            .arg(self.field(nick))
            .query_async(&mut self.connection.clone())
            .await
    }

    /// Everyone in `room` on a server that is alive, each nick once, sorted case-insensitively;
    /// the members of servers that are not alive are removed.
    pub async fn members(&self, room: &str) -> redis::RedisResult<Vec<String>> {
        let mut connection = self.connection.clone();
        let fields: Vec<String> =
            redis::cmd("HKEYS").arg(members_key(room)).query_async(&mut connection).await?;
        let servers: BTreeSet<&str> = fields
            .iter()
            .filter_map(|field| field.split_once(':').map(|(server, _)| server))
            .collect();
        let mut alive = BTreeSet::new();
        for server in servers {
            let exists: bool =
                redis::cmd("EXISTS").arg(server_key(server)).query_async(&mut connection).await?;
            if exists {
                alive.insert(server.to_owned());
            }
        }
        let mut members = Vec::new();
        let mut dead = Vec::new();
        for field in &fields {
            match field.split_once(':') {
                Some((server, nick)) if alive.contains(server) => members.push(nick.to_owned()),
                _ => dead.push(field.clone()),
            }
        }
        // As member lists are sorted everywhere: case-insensitively.
        members.sort_by_key(|nick| (nick.to_lowercase(), nick.clone()));
        members.dedup();
        if !dead.is_empty() {
            redis::cmd("HDEL")
                .arg(members_key(room))
                .arg(&dead)
                .query_async::<()>(&mut connection)
                .await?;
        }
        Ok(members)
    }

    /// Makes this server's part of `room` exactly `mine` (nick, client tag): adds what is
    /// missing (a refresh that lapsed let others remove it) and removes what is no longer here
    /// (a leave whose removal failed); then returns the members on the other servers that are
    /// alive, removing those of servers that are not.
    pub async fn sync(
        &self,
        room: &str,
        mine: &[(String, String)],
    ) -> redis::RedisResult<Vec<RemoteMember>> {
        let mut connection = self.connection.clone();
        let key = members_key(room);
        let all: Vec<(String, String)> =
            redis::cmd("HGETALL").arg(&key).query_async(&mut connection).await?;
        let prefix = format!("{}:", self.server);
        let mut stale = Vec::new();
        let mut others = Vec::new();
        for (field, tag) in &all {
            match field.strip_prefix(&prefix) {
                Some(nick) => {
                    if !mine.iter().any(|(mine, _)| mine == nick) {
                        stale.push(field.clone());
                    }
                }
                None => {
                    if let Some((server, nick)) = field.split_once(':') {
                        others.push(RemoteMember {
                            server: server.to_owned(),
                            nick: nick.to_owned(),
                            tag: tag.clone(),
                        });
                    } else {
                        stale.push(field.clone());
                    }
                }
            }
        }
        let servers: BTreeSet<String> = others.iter().map(|m| m.server.clone()).collect();
        let mut dead = BTreeSet::new();
        for server in servers {
            let exists: bool =
                redis::cmd("EXISTS").arg(server_key(&server)).query_async(&mut connection).await?;
            if !exists {
                dead.insert(server);
            }
        }
        for member in others.iter().filter(|m| dead.contains(&m.server)) {
            stale.push(format!("{}:{}", member.server, member.nick));
        }
        others.retain(|m| !dead.contains(&m.server));
        let mut write = redis::pipe();
        if !stale.is_empty() {
            write.cmd("HDEL").arg(&key).arg(&stale).ignore();
        }
        let missing: Vec<(String, String)> = mine
            .iter()
            .filter(|(nick, _)| !all.iter().any(|(field, _)| *field == self.field(nick)))
            .map(|(nick, tag)| (self.field(nick), tag.clone()))
            .collect();
        if !missing.is_empty() {
            write.cmd("HSET").arg(&key).arg(&missing).ignore();
        }
        if !stale.is_empty() || !missing.is_empty() {
            write.query_async::<()>(&mut connection).await?;
        }
        Ok(others)
    }

    fn field(&self, nick: &str) -> String {
        format!("{}:{nick}", self.server)
    }
}

/// A member of a room on another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMember {
    pub server: String,
    pub nick: String,
    /// Its client's tag (empty: none).
    pub tag: String,
}

fn server_key(server: &str) -> String {
    format!("chat:server:{server}")
}

fn members_key(room: &str) -> String {
    format!("chat:{{{room}}}:members")
}
