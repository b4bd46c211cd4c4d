//! `RoomState`: the rules of one chat room as plain data. Its methods take an event (a join, a
//! post, the store's answer...) and return [`Effect`]s: frames for members, messages for the
//! store, notices for a replaced session. No actors, no sockets, no clock of its own: the
//! `Room` actor (room.rs) feeds it events and carries its effects out, and the tests below
//! drive it directly.
//!
//! The rules are those of docs/PROTOCOL.md: unique nicks compared on how they look, takeover
//! by a newer connection of the same client, renames at most every `rename_interval`, typing
//! relayed at most every 2 s, messages acknowledged and relayed only once durable, repeated
//! client ids recognised per sender, and history served in bounded pages.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use protocol::{
    ChatMessage, ClientId, ErrorCode, Grant, MessageId, Role, RoomInfo, Sanction, SanctionInfo,
    ServerMessage, UnixMillis, rules,
};

use crate::accounts::{Audit, SanctionRecord, sanction_name};
use crate::db::StoreOptions;
use crate::history::{Loaded, PageLimit, RoomHistory, Stored};
use crate::ids::{ConnId, MessageIds};
use crate::inbound::Rejection;
use crate::names::{Likeness, sender_key};

/// Least time between two edits of one member (Unix ms).
pub const AMEND_INTERVAL_MS: u64 = 1_000;

/// The most mutes and bans one `sanctions` answer lists (by nick): well under a welcome's 1 MiB.
pub const MAX_LISTED_SANCTIONS: usize = 1_000;

/// Least time between two `typing` notices of one member that the room relays.
pub const TYPING_INTERVAL: Duration = Duration::from_millis(protocol::TYPING_SEND_INTERVAL_MS);

/// What every room of a server is run with.
#[derive(Debug, Clone)]
pub struct RoomRules {
    /// Messages a newcomer without `since` gets.
    pub recent: usize,
    /// The most bytes of messages one welcome or history page carries.
    pub page_bytes: usize,
    /// Least time between two renames of one member.
    pub rename_interval: Duration,
    pub retention: StoreOptions,
    /// The history the ids belong to (the store's epoch): a client whose `since` comes from
    /// another is told to start over.
    pub epoch: String,
    /// The registered nicks, which guests may not take.
    pub registry: Registry,
}

/// The registered nicks (none without a data folder).
#[derive(Clone, Default)]
pub struct Registry(pub Option<std::sync::Arc<crate::accounts::Accounts>>);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Registry(accounts)" } else { "Registry(none)" })
    }
}

impl Registry {
    /// The role of the account `nick` in `room`: owner, moderator, or none. With `claim` (the
    /// room has no messages yet) and no owner yet, the account becomes its owner. A failed
    /// read grants nothing.
    fn role(&self, room: &str, nick: &str, claim: bool) -> Option<Role> {
        self.try_role(room, nick, claim).unwrap_or(None)
    }

    /// [`Registry::role`], or `Err` if it could not be read: for what must not pass as "no
    /// role" (a member's admission to a private room, a moderator's immunity).
    fn try_role(&self, room: &str, nick: &str, claim: bool) -> Result<Option<Role>, ()> {
        let Some(accounts) = &self.0 else { return Ok(None) };
        accounts.role(room, nick, claim).map_err(|error| {
            crate::redis_keys::warn_now_and_then(|| {
                tracing::error!(%error, room, "could not read the room's roles");
            });
        })
    }

    /// Until when `subject` is under `action` in `room`, from the store; `Err` if that could
    /// not be read.
    fn sanction_until(
        &self,
        room: &str,
        subject: &str,
        action: Sanction,
        now: UnixMillis,
    ) -> Result<Option<UnixMillis>, ()> {
        let Some(accounts) = &self.0 else { return Ok(None) };
        accounts.sanction_until(room, subject, action, now).map_err(|error| {
            crate::redis_keys::warn_now_and_then(|| {
                tracing::error!(%error, room, "could not read the room's bans and mutes");
            });
        })
    }

    /// Keeps a mute or ban in the store (a failure is logged: it holds while the room is
    /// open). On the room's thread, as its lifting is: a ban lifted right after it was made
    /// must not be written after the lifting.
    fn keep_sanction(&self, record: &SanctionRecord) -> bool {
        let Some(accounts) = &self.0 else { return false };
        accounts
            .keep_sanction(record)
            .map_err(|error| tracing::error!(%error, ?record, "could not keep a ban or mute"))
            .is_ok()
    }

    /// Makes `room` private (its signed-in `members` kept as members) or public; whether it
    /// was saved.
    fn set_private(&self, room: &str, private: bool, members: &[String]) -> bool {
        let Some(accounts) = &self.0 else { return false };
        let now = crate::outbound::now_millis();
        let saved = accounts.set_private(room, private, members, now);
        saved
            .map_err(|error| tracing::error!(%error, room, "could not change a room's privacy"))
            .is_ok()
    }

    /// A new invitation code to `room` working until `expires` for `uses` people, if it
    /// could be saved.
    fn new_invitation(
        &self,
        room: &str,
        ts: UnixMillis,
        expires: UnixMillis,
        uses: Option<u32>,
    ) -> Option<String> {
        let accounts = self.0.as_ref()?;
        accounts
            .new_invitation(room, ts, expires, uses)
            .map_err(|error| tracing::error!(%error, room, "could not make an invitation"))
            .ok()
    }

    /// Lifts `nick`'s mutes or bans kept for `room`: whether there were any (`Err`: the store
    /// failed).
    fn lift_sanctions(&self, room: &str, nick: &str, action: Sanction) -> Result<bool, ()> {
        let Some(accounts) = &self.0 else { return Ok(false) };
        accounts
            .lift_sanctions(Some(room), nick, action)
            .map_err(|error| tracing::error!(%error, room, "could not lift a ban or mute"))
    }

    /// The mutes and bans kept for `room` (`Err`: the store failed).
    fn sanctions(&self, room: &str, now: UnixMillis) -> Result<Vec<SanctionInfo>, ()> {
        let Some(accounts) = &self.0 else { return Ok(Vec::new()) };
        accounts
            .sanctions(Some(room), now)
            .map_err(|error| tracing::error!(%error, room, "could not read the bans and mutes"))
    }

    /// Gives the account `nick` (or a look-alike) the place `grant` in `room`, or takes it
    /// away: its nick as registered (`Ok(None)`: no such account, or it had no such place),
    /// `Err` if it could not be saved.
    fn grant(
        &self,
        room: &str,
        nick: &str,
        grant: Grant,
        revoke: bool,
    ) -> Result<Option<String>, ()> {
        let Some(accounts) = &self.0 else { return Ok(None) };
        let now = crate::outbound::now_millis();
        let done = match (grant, revoke) {
            (Grant::Moderator, false) => accounts.grant_moderator(nick, Some(room), now),
            (Grant::Moderator, true) => accounts.revoke_moderator(nick, Some(room)),
            (Grant::Member, false) => accounts.add_member(room, nick),
            (Grant::Member, true) => accounts.remove_member(room, nick),
        };
        done.map_err(|error| tracing::error!(%error, room, "could not change a role"))
    }

    /// Revokes every invitation code to `room`; whether it was saved.
    fn revoke_invitations(&self, room: &str) -> bool {
        self.0.as_ref().is_some_and(|accounts| {
            accounts
                .revoke_invitations(room)
                .map_err(|error| tracing::error!(%error, room, "could not revoke invitations"))
                .is_ok()
        })
    }

    /// The private rooms (none without accounts); `None` if they could not be read.
    pub fn private_rooms(&self) -> Option<Vec<String>> {
        let Some(accounts) = &self.0 else { return Some(Vec::new()) };
        accounts
            .private_rooms()
            .map_err(|error| {
                static UNREAD: crate::throttle::Throttle = crate::throttle::Throttle::new();
                UNREAD.run(|| {
                    tracing::error!(%error, "could not read the private rooms");
                });
            })
            .ok()
    }

    /// Whether `room` is private; `None` if that could not be read (the room's joins are then
    /// refused as unavailable, and it is read again at the next).
    fn is_private(&self, room: &str) -> Option<bool> {
        let Some(accounts) = &self.0 else { return Some(false) };
        accounts
            .is_private(room)
            .map_err(|error| {
                crate::redis_keys::warn_now_and_then(|| {
                    tracing::error!(%error, room, "could not read whether a room is private");
                });
            })
            .ok()
    }

    /// Whether the account `nick` may join the private `room` (a member, or made one by the
    /// invitation `code`). A failed read lets nobody in.
    fn admits(&self, room: &str, nick: &str, code: Option<&str>) -> Result<bool, ()> {
        let Some(accounts) = &self.0 else { return Ok(false) };
        accounts.admits(room, nick, code).map_err(|error| {
            crate::redis_keys::warn_now_and_then(|| {
                tracing::error!(%error, room, "could not read a private room's members");
            });
        })
    }

    /// Keeps `audit` in the audit log, on a blocking thread (the room goes on; a failure is
    /// logged: the action stands).
    pub fn audit(&self, audit: &Audit, ts: UnixMillis) {
        let Some(accounts) = self.0.clone() else { return };
        let audit = audit.clone();
        actix_web::rt::task::spawn_blocking(move || {
            if let Err(error) = accounts.audit(&audit, ts) {
                tracing::error!(%error, ?audit, "could not keep a moderation action in the audit log");
            }
        });
    }

    /// Whether a registered nick looks like `likeness`; `Err` if that could not be read (the
    /// guest is then refused as `unavailable`, to try again, rather than let pass as someone
    /// or told the nick is taken).
    fn holds(&self, likeness: &Likeness) -> Result<bool, ()> {
        let Some(accounts) = &self.0 else { return Ok(false) };
        accounts.is_registered(likeness).map_err(|error| {
            crate::redis_keys::warn_now_and_then(|| {
                tracing::error!(%error, "could not read the registered nicks");
            });
        })
    }
}

/// Something the room's owner must do for the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Queue `message` for one member.
    Send { to: ConnId, message: ServerMessage },
    /// Queue `message` for every member but `except`.
    Broadcast { message: ServerMessage, except: Option<ConnId> },
    /// Hand a message to the store; the answer comes back as [`RoomState::durable`] or
    /// [`RoomState::not_stored`].
    Store(Stored),
    /// A newer connection of the same client took this member's seat: tell its session.
    Replaced { conn: ConnId },
    /// Something worth counting happened.
    Count(Counted),
    /// The room's first message was not stored after all: give back the place it claimed
    /// among the rooms the database holds.
    ReleaseStoredRoom,
    /// Answer an API post (see [`RoomState::post_bot`]): the durable message, or why not.
    Answer { ticket: Ticket, outcome: Result<ChatMessage, ErrorCode> },
    /// (`--redis`) A join here took over the seat `nick` held on another server (the same
    /// client): tell the other servers, whose members see no change.
    SeatTakenOver { nick: String },
    /// A moderator acted on someone else's message or seat: keep it in the audit log.
    Audit(Audit),
    /// A moderator removed this member (kick, ban): its session closes, saying `reason`.
    Removed { conn: ConnId, reason: String },
    /// A mute or ban to keep beyond the room's life (in the database, when there is one).
    Sanctioned(SanctionRecord),
    /// The room became private (left out of room lists) or public: tell the lobby.
    Privacy { private: bool },
}

/// Names one API post waiting for its answer, within a room.
pub type Ticket = u64;

/// Who waits for a message to become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    /// A member's connection: acknowledged by an `ack` frame (if the send had a client id).
    Member(ConnId),
    /// An API post: answered by [`Effect::Answer`].
    Api(Ticket),
}

/// What the room counts for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// A send repeated a stored or pending client id.
    Duplicate,
    /// A `typing` notice came within [`TYPING_INTERVAL`] of the last one relayed.
    TypingDropped,
    /// A room without messages could not store its first: the database holds its maximum.
    StoredRoomsFull,
}

/// What a page of history is asked for: before `before`, after `after` (both: between them),
/// or the newest; at most `limit` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageRequest {
    pub before: Option<MessageId>,
    pub after: Option<MessageId>,
    pub limit: Option<u32>,
}

/// A bound on the bytes of a welcome besides its lists, messages, room name, nick and epoch:
/// its field names, `since`, the flags, the role.
const WELCOME_FIXED_BYTES: usize = 176;

/// A bound on the bytes of a welcome to `room` as `nick` under `epoch`, its lists and
/// messages aside (a name takes at most twice its bytes, escaped; an epoch is plain).
fn welcome_fixed_bytes(room: &str, nick: &str, epoch: &str) -> usize {
    WELCOME_FIXED_BYTES + 2 * (room.len() + nick.len()) + epoch.len()
}

/// A connection asking to enter the room (or to be renamed in it).
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub conn: ConnId,
    /// The nick asked for; `None` keeps the current one, or generates one for a newcomer.
    pub nick: Option<String>,
    /// The client's token: a newer connection with the same token may take over its nick.
    pub client: Option<String>,
    /// Who the connection is signed in as: its nick is the identity's, whatever it asks for.
    pub account: Option<SignedIn>,
    /// The last message id the client saw in this room.
    pub since: Option<MessageId>,
    /// The epoch `since` comes from.
    pub epoch: Option<String>,
    /// The active rooms, for the welcome.
    pub rooms: Vec<RoomInfo>,
    /// Where the connection comes from (an IPv6 address's /64): a guest's bans and mutes
    /// hold for its address.
    pub address: Option<std::net::IpAddr>,
    /// An invitation code, for a private room.
    pub invite: Option<String>,
}

/// Someone identified: signed in to an account of this server, or named by a token the
/// operator's site signed (`--auth token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// Names them among every identity: the account's nick (unique by its look), or
    /// `token:` and the token's subject.
    pub id: String,
    /// The nick they chat under.
    pub nick: String,
    /// When the identity began (an account's registration; 0 for a token's): only messages
    /// sent under the nick since then can be its own (an account deleted frees its nick, and
    /// whoever registers it next must not edit the old one's messages).
    pub since: UnixMillis,
    /// (Tokens) The rooms its site lets it moderate (`*`: every room). Accounts' roles are
    /// this server's, in its database.
    pub moderates: Vec<String>,
}

pub use crate::accounts::TOKEN_ID;

impl SignedIn {
    /// Whether it is a token's holder (no account of this server).
    pub fn is_token(&self) -> bool {
        self.id.starts_with(TOKEN_ID)
    }

    /// Signed in to this server's account `nick`, registered at `since`.
    pub fn account(nick: String, since: UnixMillis) -> Self {
        SignedIn { id: nick.clone(), nick, since, moderates: Vec::new() }
    }
}

/// A join the room accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub nick: String,
    /// Older connections of the same client whose seats this join took (usually none or one).
    pub replaced: Vec<ConnId>,
}

/// One chat room's members, history and messages waiting to be durable.
#[derive(Debug)]
pub struct RoomState {
    name: String,
    /// Boxed: a `Member` is about 250 bytes, and a hash table keeps up to twice the slots it
    /// fills, so inline members cost a room of ten about 4 KB of slots; boxed, 16 bytes each.
    members: HashMap<ConnId, Box<Member>>,
    /// The durable messages (empty until loaded).
    history: RoomHistory,
    /// Messages handed to the store and not yet durable, in id order.
    pending: VecDeque<Pending>,
    /// Whether the history was loaded; until then joins are refused.
    loaded: bool,
    /// This room holds a place among the rooms the database keeps, claimed for its first
    /// message: not claimed again, and given back if that message is not stored.
    claimed: bool,
    rules: RoomRules,
    /// The history the ids belong to: the store's, or with `--redis` the room's own (empty
    /// until its first message).
    epoch: String,
    /// With `--redis`: the members on other servers, by nick.
    remote: HashMap<String, Remote>,
    /// Mutes and bans made while the room was open, by subject (also kept in the database,
    /// when there is one, for after it closes): until when.
    mutes: HashMap<String, Held>,
    bans: HashMap<String, Held>,
    /// Only its members (accounts), owner and moderators may join, and it is left out of
    /// room lists. `None`: not known (the read failed; joins are refused until it succeeds).
    private: Option<bool>,
}

/// Holds `subject` until `until` for `nick` in `kept`, unless it is held longer already (a
/// ban of a puppet nick behind the same address must not shorten the ban).
fn hold(kept: &mut HashMap<String, Held>, subject: &str, until: UnixMillis, nick: &str) {
    let held = Held { until, nick: nick.to_owned() };
    match kept.get_mut(subject) {
        Some(known) if known.until >= until => {}
        Some(known) => *known = held,
        None => {
            kept.insert(subject.to_owned(), held);
        }
    }
}

/// A mute or ban made while the room was open: until when, and on whom (by nick).
#[derive(Debug, Clone)]
struct Held {
    until: UnixMillis,
    nick: String,
}

/// A member of the room on another server (`--redis`).
#[derive(Debug)]
struct Remote {
    server: String,
    /// Its client's tag ([`client_tag`]; empty: none).
    tag: String,
    /// Whether it is signed in there.
    signed_in: bool,
    likeness: Likeness,
}

/// What names a client among servers without giving its token away: the first 16 bytes of the
/// token's SHA-256, in hex. Another server's member with the same tag is the same client, whose
/// seat a newer connection may take over.
pub fn client_tag(client: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(client.as_bytes());
    digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

/// What presence and events say of a member to the other servers: its client's tag, with
/// [`SIGNED_IN_MARK`] after it when it is signed in (accounts are shared through Redis, so a
/// registered nick elsewhere is its holder's).
fn presence_tag(member: &Member) -> String {
    let tag = member.client.as_deref().map(client_tag).unwrap_or_default();
    if member.account.is_some() { tag + SIGNED_IN_MARK } else { tag }
}

/// Ends a presence tag of a signed-in member (client tags are hex).
const SIGNED_IN_MARK: &str = "~";

impl Remote {
    /// A member on `server`, as its presence tag ([`presence_tag`]) describes it.
    fn new(server: String, nick: &str, presence: &str) -> Self {
        let (tag, signed_in) = match presence.strip_suffix(SIGNED_IN_MARK) {
            Some(tag) => (tag.to_owned(), true),
            None => (presence.to_owned(), false),
        };
        Remote { server, tag, signed_in, likeness: Likeness::of(nick) }
    }
}

impl Member {
    /// When the member's mute ends, if it is muted at `ts`.
    fn muted_at(&self, ts: UnixMillis) -> Option<UnixMillis> {
        self.muted_until.filter(|until| *until > ts)
    }

    /// Signed in to an account of this server (not a guest, not a token's holder): the one
    /// kind of identity with roles and memberships in the database.
    fn has_account(&self) -> bool {
        self.account.as_ref().is_some_and(|id| !id.starts_with(TOKEN_ID))
    }
}

#[derive(Debug)]
struct Member {
    nick: String,
    /// How `nick` looks, for uniqueness.
    likeness: Likeness,
    client: Option<String>,
    /// The identity it joined under ([`SignedIn::id`]; `None`: a guest): its messages say it
    /// is signed in.
    account: Option<String>,
    /// What it may do here beyond chatting (owner, moderator).
    role: Option<Role>,
    /// Who it is, for its seats: its identity (every device of it), or (a guest) its address
    /// and nick.
    subject: String,
    /// Where it comes from (an IPv6 address's /64): bans and mutes hold for it too.
    address: Option<std::net::IpAddr>,
    /// Muted until then (Unix ms).
    muted_until: Option<UnixMillis>,
    /// When its identity began ([`SignedIn::since`]).
    since: UnixMillis,
    /// When it last edited a message (Unix ms), for the pace of edits.
    amended: Option<UnixMillis>,
    /// When the room last relayed this member's `typing`, and when it last renamed.
    typed: Option<Instant>,
    renamed: Option<Instant>,
}

/// A message waiting to become durable.
#[derive(Debug)]
struct Pending {
    stored: Stored,
    /// Who to acknowledge (or tell of a failure): the sender, and any that repeated its client
    /// id meanwhile.
    senders: Vec<Waiter>,
}

impl RoomState {
    /// An empty room that refuses joins until [`RoomState::load`].
    pub fn new(name: String, rules: RoomRules) -> Self {
        let retention = &rules.retention;
        let history =
            RoomHistory::new(Loaded::default(), retention.retain_messages, retention.retain_bytes);
        RoomState {
            name,
            members: HashMap::new(),
            history,
            pending: VecDeque::new(),
            loaded: false,
            claimed: false,
            epoch: rules.epoch.clone(),
            rules,
            remote: HashMap::new(),
            mutes: HashMap::new(),
            bans: HashMap::new(),
            private: Some(false),
        }
    }

    /// The store's answer to the load: the room opens.
    pub fn load(&mut self, loaded: Loaded) {
        let retention = &self.rules.retention;
        self.history = RoomHistory::new(loaded, retention.retain_messages, retention.retain_bytes);
        self.loaded = true;
        self.private = self.rules.registry.is_private(&self.name);
    }

    /// Whether the room is private, as last read (`None`: not known).
    pub fn privacy(&self) -> Option<bool> {
        self.private
    }

    /// The room's history read from Redis, with its own `epoch` (`--redis`).
    pub fn load_shared(&mut self, loaded: Loaded, epoch: String) {
        self.load(loaded);
        self.epoch = epoch;
    }

    pub fn is_member(&self, conn: ConnId) -> bool {
        self.members.contains_key(&conn)
    }

    /// The members' connections.
    pub fn members(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.members.keys().copied()
    }

    /// The newest stored message's time, if any.
    pub fn last_ts(&self) -> Option<UnixMillis> {
        self.history.last_ts()
    }

    /// Admits `request.conn` (or renames it, or hands it the seat of an older connection of the
    /// same client) and welcomes it, or says why not. The welcome takes at most `space` bytes
    /// (what may still wait for the joiner) besides the room's page size; `now` and `ts` are
    /// the time.
    pub fn join(
        &mut self,
        request: JoinRequest,
        space: usize,
        now: Instant,
        ts: UnixMillis,
    ) -> (Result<Joined, Rejection>, Vec<Effect>) {
        let mut effects = Vec::new();
        let joined = self.admit(request, space, now, ts, &mut effects);
        (joined, effects)
    }

    fn admit(
        &mut self,
        request: JoinRequest,
        space: usize,
        now: Instant,
        ts: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Result<Joined, Rejection> {
        if !self.loaded {
            return Err(Rejection::new(
                ErrorCode::Unavailable,
                format!("The history of #{} could not be loaded; try again shortly.", self.name),
            ));
        }
        let current = self.members.get(&request.conn);
        let previous = current.map(|member| member.nick.clone());
        let nick = match (&request.account, request.nick, &previous) {
            (Some(account), _, _) => account.nick.clone(),
            (None, Some(nick), _) => nick,
            (None, None, Some(current)) => current.clone(),
            (None, None, None) => self.generated_nick(request.conn),
        };
        let likeness = Likeness::of(&nick);
        let subject = subject_of(request.account.as_ref(), request.address, &likeness);
        let address = request.address.map(address_subject);
        // Refused if banned as who it is or from where it comes: logging out (or in) does
        // not escape a ban, nor does another nick.
        // Not by an address it shares with someone sanctioned, if it moderates the room (those
        // cannot be sanctioned here, and a guest banned behind the same NAT must not lock the
        // owner out); read only when such a sanction is found.
        let moderates = |room: &Self| {
            request.account.as_ref().is_some_and(|account| {
                account.moderates.iter().any(|named| named == "*" || *named == room.name)
                    || (!account.is_token()
                        && room.rules.registry.role(&room.name, &account.nick, false).is_some())
            })
        };
        // A store that cannot be read refuses the join (to try again) rather than let a
        // banned member in.
        let bound = |room: &Self, action| -> Result<Option<UnixMillis>, Rejection> {
            let unreadable = |()| {
                let words = format!(
                    "The bans of #{} cannot be read right now; try again shortly.",
                    room.name
                );
                Rejection::new(ErrorCode::Unavailable, words)
            };
            let by_id = match subject.starts_with("id:") {
                true => room.sanction_until(action, &subject, ts).map_err(unreadable)?,
                false => None,
            };
            let by_address = match &address {
                Some(held) => room.sanction_until(action, held, ts).map_err(unreadable)?,
                None => None,
            };
            Ok(by_id.max(by_address.filter(|_| !moderates(room))))
        };
        if let Some(until) = bound(self, Sanction::Ban)? {
            return Err(Rejection {
                retry_after_ms: Some(until - ts),
                ..Rejection::new(
                    ErrorCode::Banned,
                    format!("A moderator banned you from #{} for now.", self.name),
                )
            });
        }
        let muted_until = bound(self, Sanction::Mute)?;
        // A private room: a member (or one its invitation makes so), its owner or a moderator,
        // signed in to an account here (a renaming member is in already).
        if self.private.is_none() {
            self.private = self.rules.registry.is_private(&self.name);
            // The lobby's lists follow what the store says (another server may have made it
            // private since this one started).
            if let Some(private) = self.private {
                effects.push(Effect::Privacy { private });
            }
        }
        let Some(private) = self.private else {
            let words = format!("#{} cannot be opened right now; try again shortly.", self.name);
            return Err(Rejection::new(ErrorCode::Unavailable, words));
        };
        // The account's role as read here (kept for below, not read twice).
        let mut read_role: Option<Option<Role>> = None;
        if private && current.is_none() {
            let registry = &self.rules.registry;
            // A member is refused as `unavailable` (to try again), not as a stranger, while
            // the store cannot say.
            let allowed = match request.account.as_ref().filter(|account| !account.is_token()) {
                None => Ok(false),
                Some(account) => {
                    registry.try_role(&self.name, &account.nick, false).and_then(|role| {
                        read_role = Some(role);
                        match role {
                            Some(_) => Ok(true),
                            None => registry.admits(
                                &self.name,
                                &account.nick,
                                request.invite.as_deref(),
                            ),
                        }
                    })
                }
            };
            let Ok(allowed) = allowed else {
                let words = format!(
                    "The members of #{} cannot be read right now; try again shortly.",
                    self.name
                );
                return Err(Rejection::new(ErrorCode::Unavailable, words));
            };
            if !allowed {
                let words = format!(
                    "#{} is private: only its members may join (sign in, with an invitation).",
                    self.name
                );
                return Err(Rejection::new(ErrorCode::Forbidden, words));
            }
        }
        if request.account.is_none() {
            match self.rules.registry.holds(&likeness) {
                Ok(false) => {}
                Ok(true) => {
                    return Err(Rejection::new(
                        ErrorCode::NickTaken,
                        format!(
                            "{nick} is a registered nick: log in to use it, or choose another."
                        ),
                    ));
                }
                Err(()) => {
                    let words = "The registered nicks cannot be read right now; try again shortly.";
                    return Err(Rejection::new(ErrorCode::Unavailable, words));
                }
            }
        }
        let (typed, mut renamed) = current.map_or((None, None), |m| (m.typed, m.renamed));
        if previous.as_ref().is_some_and(|old| *old != nick) {
            // A rename is announced to the room: not a way around a mute.
            if let Some(until) = current.and_then(|m| m.muted_at(ts)) {
                return Err(Rejection {
                    retry_after_ms: Some(until - ts),
                    ..Rejection::new(ErrorCode::Muted, "You cannot rename while muted.")
                });
            }
            let wait = renamed.map_or(Duration::ZERO, |at| {
                (at + self.rules.rename_interval).saturating_duration_since(now)
            });
            if !wait.is_zero() {
                return Err(Rejection::rename_too_soon(wait));
            }
            renamed = Some(now);
        }

        // Every member the nick looks like must be this connection, an older connection of
        // the same client, or (signed in) another device of the same account, which keeps its
        // seat beside this one: a nick can look like two members at once (`AIice` like both
        // `aiice` and `Alice`), and matching only the first found would let it pass as the
        // other.
        let mut replaced = Vec::new();
        let mut beside = false;
        for (holder, member) in self.members.iter() {
            if !member.likeness.looks_like(&likeness) || *holder == request.conn {
                continue;
            }
            let same_client = request.client.is_some() && member.client == request.client;
            let same_account = request.account.as_ref().is_some_and(|account| {
                member.account.as_ref() == Some(&account.id) && member.nick == nick
            });
            if same_account && !same_client {
                beside = true;
                continue;
            }
            if !same_client {
                return Err(Rejection::new(
                    ErrorCode::NickTaken,
                    format!("Someone in #{} is already called {nick}.", self.name),
                ));
            }
            replaced.push(*holder);
        }
        // Members on other servers count the same; the same client (by its tag) takes its seat
        // over from there (that server is told by the `joined` event).
        let tag = request.client.as_deref().map(client_tag);
        let mut taken_over = Vec::new();
        for (holder, remote) in &self.remote {
            if !remote.likeness.looks_like(&likeness) {
                continue;
            }
            if tag.as_deref().is_none_or(|tag| tag != remote.tag) {
                return Err(Rejection::new(
                    ErrorCode::NickTaken,
                    format!("Someone in #{} is already called {nick}.", self.name),
                ));
            }
            taken_over.push(holder.clone());
        }
        for holder in &taken_over {
            self.remote.remove(holder);
        }
        // The same browser tab reconnected before we noticed its old connection die: hand the
        // seat to the new connection without announcing a leave and a join, unless the nick is
        // now written differently (`kim` as `Kim`) or the takeover took several seats: the
        // others are told of every nick that is gone and of the new one.
        let mut gone = Vec::new();
        for holder in &replaced {
            if let Some(old) = self.members.remove(holder) {
                gone.push(old.nick);
            }
            effects.push(Effect::Replaced { conn: *holder });
        }
        if !taken_over.is_empty() {
            effects.push(Effect::SeatTakenOver { nick: nick.clone() });
        }
        gone.extend(taken_over);
        let kept_seat = gone.contains(&nick);
        gone.retain(|old| *old != nick);
        let announce_join = match &previous {
            Some(old) if *old != nick => {
                gone.insert(0, old.clone());
                true
            }
            Some(_) => false,
            None => !kept_seat && !beside,
        };
        let room = self.name.clone();
        for old in gone {
            let left = ServerMessage::Left { room: room.clone(), nick: old, ts };
            effects.push(Effect::Broadcast { message: left, except: None });
        }
        let signed_in = request.account.is_some();
        let since = request.account.as_ref().map_or(0, |account| account.since);
        let token_moderates = request.account.as_ref().is_some_and(|account| {
            account.moderates.iter().any(|room| room == "*" || *room == self.name)
        });
        let account = request.account.map(|account| account.id);
        if announce_join {
            let joined =
                ServerMessage::Joined { room: room.clone(), nick: nick.clone(), ts, signed_in };
            effects.push(Effect::Broadcast { message: joined, except: Some(request.conn) });
        }
        let client = request.client;
        // Roles belong to accounts of this server: the room's owner (the first signed in
        // before it had messages) and the moderators the operator named.
        let role = match &account {
            _ if token_moderates => Some(Role::Moderator),
            Some(_) => {
                // A room that never had a message (not one whose messages expired).
                let fresh = self.history.last_id() == 0 && self.pending.is_empty() && !self.claimed;
                match read_role {
                    Some(Some(role)) => Some(role),
                    Some(None) if !fresh => None,
                    _ => self.rules.registry.role(&self.name, &nick, fresh),
                }
            }
            None => None,
        };
        let member = Member {
            nick: nick.clone(),
            likeness,
            client,
            account,
            role,
            subject,
            address: request.address,
            muted_until,
            since,
            amended: None,
            typed,
            renamed,
        };
        self.members.insert(request.conn, Box::new(member));

        self.expire_by_age(ts);
        // The member and room lists travel in the welcome too: the page of history gets what
        // is left of the budget, so the whole frame stays within it.
        let (members, signed_in) = self.member_lists();
        let lists = lists_bytes(&members, &signed_in, &request.rooms);
        let page = self.rules.page_bytes.saturating_sub(lists);
        // A `since` from another epoch (the store started over since the client saw it) means
        // nothing here: the joiner is told so (a `reset`) and welcomed afresh.
        let stale = request.epoch.as_ref().is_some_and(|epoch| *epoch != self.epoch);
        // Beside what already waits for the joiner (the reset included), the whole frame must
        // fit: then even the first message is left out if it does not (the welcome says more
        // exist).
        let reset_bytes = if stale { 64 + 2 * self.name.len() + self.epoch.len() } else { 0 };
        let fixed = welcome_fixed_bytes(&self.name, &nick, &self.epoch) + reset_bytes;
        let room_left = space.saturating_sub(lists + fixed);
        let strict = room_left < page;
        let since = if stale {
            let reset = ServerMessage::Reset { room: room.clone(), epoch: self.epoch.clone() };
            effects.push(Effect::Send { to: request.conn, message: reset });
            None
        } else {
            request.since
        };
        let catchup = self.history.catchup(since, self.rules.recent, page.min(room_left), strict);
        let welcome = ServerMessage::Welcome {
            room,
            nick: nick.clone(),
            members,
            signed_in,
            history: catchup.history,
            rooms: request.rooms,
            since: catchup.since,
            truncated: catchup.truncated,
            more: catchup.more,
            epoch: self.epoch.clone(),
            role,
            private: self.private == Some(true),
        };
        effects.push(Effect::Send { to: request.conn, message: welcome });
        Ok(Joined { nick, replaced })
    }

    /// `conn` is gone (it left, closed, or was dropped as not reading): the others are told.
    /// Returns whether it was a member.
    pub fn leave(&mut self, conn: ConnId, ts: UnixMillis) -> (bool, Vec<Effect>) {
        let Some(member) = self.members.remove(&conn) else { return (false, Vec::new()) };
        // (`--redis`) Its client took the seat over on another server: still in the room.
        if self.remote.contains_key(&member.nick) {
            return (true, Vec::new());
        }
        // Its account is still here on another device.
        if self.members.values().any(|other| other.nick == member.nick) {
            return (true, Vec::new());
        }
        let left = ServerMessage::Left { room: self.name.clone(), nick: member.nick, ts };
        (true, vec![Effect::Broadcast { message: left, except: None }])
    }

    /// `conn` says `text`. A repeat of a client id the sender stored (or is storing) is
    /// acknowledged again, or once the original is durable, and never stored twice. Otherwise
    /// the message gets the next id and goes to the store; it is acknowledged and relayed once
    /// durable. A room without messages stores its first only if `claim_stored_room` gives it
    /// a place in the database (which holds a bounded number of rooms).
    pub fn post(
        &mut self,
        conn: ConnId,
        text: String,
        client_id: Option<ClientId>,
        ids: &MessageIds,
        ts: UnixMillis,
        claim_stored_room: impl FnOnce() -> bool,
    ) -> Vec<Effect> {
        if let Some(answer) = self.answered_before(conn, client_id.as_ref(), ts) {
            return answer;
        }
        let Some(member) = self.members.get(&conn) else { return Vec::new() };
        let first = self.history.is_empty() && self.pending.is_empty() && !self.claimed;
        if first && !claim_stored_room() {
            let refusal = rooms_full(client_id, &self.name);
            return vec![
                Effect::Count(Counted::StoredRoomsFull),
                Effect::Send { to: conn, message: refusal },
            ];
        }
        self.claimed |= first;
        let message = ChatMessage {
            id: ids.next(),
            room: self.name.clone(),
            from: member.nick.clone(),
            text,
            ts,
            bot: false,
            signed_in: member.account.is_some(),
            ..Default::default()
        };
        let stored = Stored { message, client_id };
        self.pending
            .push_back(Pending { stored: stored.clone(), senders: vec![Waiter::Member(conn)] });
        vec![Effect::Store(stored)]
    }

    /// What a `send`, `edit` or `delete` of `conn` gets before anything is made of it, if it
    /// ends there: nothing from a non-member (it was meant for a room the session has left
    /// since), the answer to a repeated client id, or a muted member's refusal.
    fn answered_before(
        &mut self,
        conn: ConnId,
        client_id: Option<&ClientId>,
        ts: UnixMillis,
    ) -> Option<Vec<Effect>> {
        if !self.members.contains_key(&conn) {
            return Some(Vec::new());
        }
        if let Some(repeat) = self.repeated(conn, client_id) {
            return Some(repeat);
        }
        let member = self.members.get(&conn)?;
        let refusal = muted(member, &self.name, client_id, ts)?;
        Some(vec![Effect::Send { to: conn, message: refusal }])
    }

    /// The answer to a `send`, `edit` or `delete` whose client id `conn`'s sender used before:
    /// acknowledged again (the original is stored) or once the original is (it is waiting).
    /// `None`: not a repeat.
    fn repeated(&mut self, conn: ConnId, client_id: Option<&ClientId>) -> Option<Vec<Effect>> {
        let client_id = client_id?;
        let key = self.members.get(&conn)?.likeness.key().to_owned();
        if let Some(id) = self.history.id_for(&key, client_id) {
            let ack = self.ack(client_id, id);
            return Some(vec![
                Effect::Count(Counted::Duplicate),
                Effect::Send { to: conn, message: ack },
            ]);
        }
        let same = |pending: &&mut Pending| {
            pending.stored.client_id.as_ref() == Some(client_id)
                && sender_key(&pending.stored.message) == key
        };
        let pending = self.pending.iter_mut().find(same)?;
        pending.senders.push(Waiter::Member(conn));
        Some(vec![Effect::Count(Counted::Duplicate)])
    }

    /// `conn` edits (`text`) or deletes (`None`) the retained message `target`: its own
    /// message, signed in (a guest's nick may have been someone else's before), or with
    /// `delete` anyone's if it moderates the room. The change is a log entry of its own (the
    /// next id, `amends: target`): stored, acknowledged and relayed like a message, and applied
    /// to the target in history once durable, so pages and catch-ups show the target as it is
    /// now and a client resuming after the target gets the change.
    pub fn amend(
        &mut self,
        conn: ConnId,
        target: MessageId,
        text: Option<String>,
        client_id: Option<ClientId>,
        ids: &MessageIds,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        if let Some(answer) = self.answered_before(conn, client_id.as_ref(), ts) {
            return answer;
        }
        let Some(member) = self.members.get(&conn) else { return Vec::new() };
        let refuse = |code, message: String| self.refusal(conn, code, message, client_id.clone());
        let Some(original) = self.history.message(target).filter(|m| m.amends.is_none()) else {
            return refuse(
                ErrorCode::NotFound,
                format!("#{} keeps no message {target}.", self.name),
            );
        };
        // Deleted, or being deleted (a deletion of it waits for the store).
        let deleting_already = self.pending.iter().any(|pending| {
            pending.stored.message.amends == Some(target) && pending.stored.message.deleted
        });
        if original.deleted || deleting_already {
            return refuse(ErrorCode::NotFound, format!("Message {target} is deleted already."));
        }
        let own = member.account.is_some()
            && original.signed_in
            && !original.bot
            && original.from == member.nick
            && original.ts >= member.since;
        let deleting = text.is_none();
        let moderated = deleting && !own && self.current_role(member).is_some();
        if !own && !moderated {
            let words = match (deleting, member.account.is_some()) {
                (_, false) => "Sign in to edit or delete your messages.",
                (true, true) => "You may delete only your own messages here.",
                (false, true) => "You may edit only your own messages.",
            };
            return refuse(ErrorCode::Forbidden, words.into());
        }
        // One edit a second per member: every edit is an entry that counts against the room's
        // retention, and one message can be edited without end, so a flood of them would push
        // the history out. (A message is deleted once: deletions need no pace.)
        if let Some(wait) = member.amended.map(|at| (at + AMEND_INTERVAL_MS).saturating_sub(ts))
            && wait > 0
            && !deleting
        {
            let error = ServerMessage::Error {
                code: ErrorCode::RateLimited,
                message: format!("You are changing messages too fast; wait {wait} ms."),
                retry_after_ms: Some(wait),
                client_id: client_id.clone(),
                room: Some(self.name.clone()),
            };
            return vec![Effect::Send { to: conn, message: error }];
        }
        let mut effects = Vec::new();
        if moderated {
            effects.push(Effect::Audit(Audit {
                actor: member.nick.clone(),
                action: "delete",
                room: self.name.clone(),
                subject: format!("message {target} by {}", original.from),
            }));
        }
        let message = ChatMessage {
            id: ids.next(),
            room: self.name.clone(),
            from: member.nick.clone(),
            text: text.unwrap_or_default(),
            ts,
            signed_in: member.account.is_some(),
            amends: Some(target),
            deleted: deleting,
            ..Default::default()
        };
        let stored = Stored { message, client_id };
        self.pending
            .push_back(Pending { stored: stored.clone(), senders: vec![Waiter::Member(conn)] });
        effects.push(Effect::Store(stored));
        if let Some(member) = self.members.get_mut(&conn).filter(|_| !deleting) {
            member.amended = Some(ts);
        }
        effects
    }

    /// Another system posts `text` as the bot `nick` through the HTTP API (no membership; the
    /// message is marked `bot`). `idempotency_key` works as a client id of that bot: a repeat
    /// is answered with the message first stored, never stored twice. The answer
    /// ([`Effect::Answer`] for `ticket`) comes once the message is durable, when it is relayed.
    #[allow(clippy::too_many_arguments)] // the event and what a post needs from the room's owner
    pub fn post_bot(
        &mut self,
        ticket: Ticket,
        nick: String,
        text: String,
        idempotency_key: Option<ClientId>,
        ids: &MessageIds,
        ts: UnixMillis,
        claim_stored_room: impl FnOnce() -> bool,
    ) -> Vec<Effect> {
        if !self.loaded {
            return vec![Effect::Answer { ticket, outcome: Err(ErrorCode::Unavailable) }];
        }
        let message = ChatMessage {
            id: 0,
            room: self.name.clone(),
            from: nick,
            text,
            ts,
            bot: true,
            signed_in: false,
            ..Default::default()
        };
        let sender = sender_key(&message);
        if let Some(key) = &idempotency_key {
            if let Some(id) = self.history.id_for(&sender, key) {
                let outcome = self.history.message(id).cloned().ok_or(ErrorCode::Unavailable);
                return vec![Effect::Count(Counted::Duplicate), Effect::Answer { ticket, outcome }];
            }
            let same = |pending: &&mut Pending| {
                pending.stored.client_id.as_ref() == Some(key)
                    && sender_key(&pending.stored.message) == sender
            };
            if let Some(pending) = self.pending.iter_mut().find(same) {
                pending.senders.push(Waiter::Api(ticket));
                return vec![Effect::Count(Counted::Duplicate)];
            }
        }
        let first = self.history.is_empty() && self.pending.is_empty() && !self.claimed;
        if first && !claim_stored_room() {
            return vec![
                Effect::Count(Counted::StoredRoomsFull),
                Effect::Answer { ticket, outcome: Err(ErrorCode::TooManyRooms) },
            ];
        }
        self.claimed |= first;
        let stored = Stored {
            message: ChatMessage { id: ids.next(), ..message },
            client_id: idempotency_key,
        };
        self.pending
            .push_back(Pending { stored: stored.clone(), senders: vec![Waiter::Api(ticket)] });
        vec![Effect::Store(stored)]
    }

    /// The store made every message of this room up to `upto` durable: acknowledge each to
    /// its senders, then relay it, in id order.
    pub fn durable(&mut self, upto: MessageId) -> Vec<Effect> {
        let mut effects = Vec::new();
        while self.pending.front().is_some_and(|p| p.stored.message.id <= upto) {
            let Some(Pending { stored, senders }) = self.pending.pop_front() else { break };
            effects.extend(self.settle(&stored, senders));
            let message = ServerMessage::Message(stored.message.clone());
            self.history.push(stored);
            effects.push(Effect::Broadcast { message, except: None });
        }
        effects
    }

    /// Acknowledges `stored` (with its final id) to those waiting for it.
    fn settle(&self, stored: &Stored, senders: Vec<Waiter>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for waiter in senders {
            match (waiter, &stored.client_id) {
                (Waiter::Member(conn), Some(client_id)) => {
                    let ack = self.ack(client_id, stored.message.id);
                    effects.push(Effect::Send { to: conn, message: ack });
                }
                (Waiter::Member(_), None) => {}
                (Waiter::Api(ticket), _) => {
                    effects.push(Effect::Answer { ticket, outcome: Ok(stored.message.clone()) })
                }
            }
        }
        effects
    }

    /// (`--redis`) The shared log took the post whose ticket (its id in [`Effect::Store`]) is
    /// `ticket` under `id`: its senders are acknowledged now, unless the message already came
    /// back through the follower (which acknowledged them then). It is relayed when it comes
    /// back, as every server's messages are, so that all are relayed in id order.
    pub fn posted(&mut self, ticket: MessageId, id: MessageId) -> Vec<Effect> {
        let Some(at) = self.pending.iter().position(|p| p.stored.message.id == ticket) else {
            return Vec::new();
        };
        let Some(Pending { mut stored, senders }) = self.pending.remove(at) else {
            return Vec::new();
        };
        stored.message.id = id;
        // A repeat's original, if this server has it: its text and time are the stored ones.
        if let Some(original) = self.history.message(id) {
            stored.message = original.clone();
        }
        self.settle(&stored, senders)
    }

    /// (`--redis`) The next message of the room's shared log, in id order, each once: a post
    /// of this server still waiting for the log's answer is acknowledged first; then it is
    /// kept and relayed.
    pub fn followed(&mut self, stored: Stored) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Some(client_id) = &stored.client_id {
            let sender = sender_key(&stored.message);
            let same = |p: &Pending| {
                p.stored.client_id.as_ref() == Some(client_id)
                    && sender_key(&p.stored.message) == sender
            };
            if let Some(at) = self.pending.iter().position(same)
                && let Some(pending) = self.pending.remove(at)
            {
                effects.extend(self.settle(&stored, pending.senders));
            }
        }
        if stored.message.id <= self.history.last_id() {
            return effects;
        }
        let message = ServerMessage::Message(stored.message.clone());
        self.history.push(stored);
        effects.push(Effect::Broadcast { message, except: None });
        effects
    }

    /// (`--redis`) The room's first message made its epoch: joins are welcomed with it from
    /// now on. (Another epoch than a known one comes as [`RoomState::reset`].)
    pub fn adopt_epoch(&mut self, epoch: String) {
        if self.epoch.is_empty() {
            self.epoch = epoch;
        }
    }

    /// (`--redis`) Messages up to `upto` left the shared log (its retention) before this
    /// server relayed them: a catch-up from before them says `truncated`.
    pub fn lost(&mut self, upto: MessageId) {
        self.history.forget_upto(upto);
    }

    /// (`--redis`) The room's history in Redis is another now, `loaded` under `epoch` (Redis
    /// lost the room, or failed over to a replica that lacked the latest writes): the room
    /// takes it, and every member is told (`reset`) and welcomed afresh with its newest page.
    pub fn reset(&mut self, loaded: Loaded, epoch: String) -> Vec<Effect> {
        self.load_shared(loaded, epoch);
        let (members, signed_in) = self.member_lists();
        let lists = lists_bytes(&members, &signed_in, &[]);
        let page = self.rules.page_bytes.saturating_sub(lists);
        let catchup = self.history.catchup(None, self.rules.recent, page, true);
        let mut effects = Vec::new();
        for (conn, member) in &self.members {
            let room = self.name.clone();
            let reset = ServerMessage::Reset { room: room.clone(), epoch: self.epoch.clone() };
            effects.push(Effect::Send { to: *conn, message: reset });
            let welcome = ServerMessage::Welcome {
                room,
                nick: member.nick.clone(),
                members: members.clone(),
                signed_in: signed_in.clone(),
                history: catchup.history.clone(),
                // Not the last joiner's list: it may hold rooms this member may not see.
                rooms: Vec::new(),
                since: None,
                truncated: catchup.truncated,
                more: false,
                epoch: self.epoch.clone(),
                role: member.role,
                private: self.private == Some(true),
            };
            effects.push(Effect::Send { to: *conn, message: welcome });
        }
        effects
    }

    /// (`--redis`) `nick` joined on `server` with the client tag `tag`. A member here of the
    /// same client, looking alike, has been taken over there: its session is told. The
    /// members here are told of a nick they do not see yet.
    pub fn remote_joined(
        &mut self,
        server: String,
        nick: String,
        tag: String,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        let remote = Remote::new(server, &nick, &tag);
        let mut effects = Vec::new();
        // Shown already (here, or elsewhere): nobody needs to be told of it.
        let announce = !self.shown(&nick);
        if !remote.tag.is_empty() {
            let taken: Vec<ConnId> = self
                .members
                .iter()
                .filter(|(_, m)| {
                    m.likeness.looks_like(&remote.likeness)
                        && m.client.as_deref().map(client_tag).as_deref()
                            == Some(remote.tag.as_str())
                })
                .map(|(conn, _)| *conn)
                .collect();
            for conn in taken {
                if let Some(old) = self.members.remove(&conn)
                    && old.nick != nick
                {
                    let left = ServerMessage::Left { room: self.name.clone(), nick: old.nick, ts };
                    effects.push(Effect::Broadcast { message: left, except: None });
                }
                effects.push(Effect::Replaced { conn });
            }
        }
        let signed_in = remote.signed_in;
        self.remote.insert(nick.clone(), remote);
        if announce {
            let joined = ServerMessage::Joined { room: self.name.clone(), nick, ts, signed_in };
            effects.push(Effect::Broadcast { message: joined, except: None });
        }
        effects
    }

    /// (`--redis`) `nick` left on `server`.
    pub fn remote_left(&mut self, server: &str, nick: &str, ts: UnixMillis) -> Vec<Effect> {
        if self.remote.get(nick).is_none_or(|remote| remote.server != server) {
            return Vec::new();
        }
        self.remote.remove(nick);
        if self.shown(nick) {
            return Vec::new();
        }
        let left = ServerMessage::Left { room: self.name.clone(), nick: nick.to_owned(), ts };
        vec![Effect::Broadcast { message: left, except: None }]
    }

    /// (`--redis`) `nick`, on another server, is typing (that server spaced its notices).
    pub fn remote_typing(&self, nick: &str) -> Vec<Effect> {
        if !self.remote.contains_key(nick) {
            return Vec::new();
        }
        let notice = ServerMessage::Typing { room: self.name.clone(), nick: nick.to_owned() };
        vec![Effect::Broadcast { message: notice, except: None }]
    }

    /// (`--redis`) The members on the other servers are `others` (server, nick, client tag),
    /// as presence read them: the members here are told of every change the events missed (a
    /// server that died, an event lost).
    pub fn remote_members(
        &mut self,
        others: Vec<(String, String, String)>,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        let before: Vec<String> = self.remote.keys().cloned().collect();
        self.remote = others
            .into_iter()
            .map(|(server, nick, tag)| {
                let remote = Remote::new(server, &nick, &tag);
                (nick, remote)
            })
            .collect();
        let mut effects = Vec::new();
        let here = |room: &Self, nick: &str| room.members.values().any(|m| m.nick == nick);
        for nick in &before {
            if !self.remote.contains_key(nick) && !here(self, nick) {
                let left = ServerMessage::Left { room: self.name.clone(), nick: nick.clone(), ts };
                effects.push(Effect::Broadcast { message: left, except: None });
            }
        }
        let mut arrived: Vec<&String> =
            self.remote.keys().filter(|nick| !before.contains(nick) && !here(self, nick)).collect();
        arrived.sort();
        for nick in arrived {
            let signed_in = self.remote.get(nick).is_some_and(|remote| remote.signed_in);
            let nick = nick.clone();
            let joined = ServerMessage::Joined { room: self.name.clone(), nick, ts, signed_in };
            effects.push(Effect::Broadcast { message: joined, except: None });
        }
        effects
    }

    /// The store could not write these messages: their senders are told to send them again.
    pub fn not_stored(&mut self, ids: &[MessageId]) -> Vec<Effect> {
        self.refuse(ids, ErrorCode::Unavailable)
    }

    /// (`--redis`) Redis holds the most rooms with messages it may, and this room has none:
    /// the post `ticket` is refused (`too_many_rooms`).
    pub fn room_refused(&mut self, ticket: MessageId) -> Vec<Effect> {
        let mut effects = self.refuse(&[ticket], ErrorCode::TooManyRooms);
        effects.push(Effect::Count(Counted::StoredRoomsFull));
        effects
    }

    /// Refuses the pending messages `ids` with `code`, telling their senders.
    fn refuse(&mut self, ids: &[MessageId], code: ErrorCode) -> Vec<Effect> {
        let (failed, kept): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| ids.contains(&p.stored.message.id));
        self.pending = kept.into();
        let mut effects = Vec::new();
        for pending in failed {
            for waiter in pending.senders {
                let client_id = pending.stored.client_id.clone();
                effects.push(match waiter {
                    Waiter::Member(conn) if code == ErrorCode::TooManyRooms => {
                        Effect::Send { to: conn, message: rooms_full(client_id, &self.name) }
                    }
                    Waiter::Member(conn) => {
                        Effect::Send { to: conn, message: store_refusal(client_id, &self.name) }
                    }
                    Waiter::Api(ticket) => Effect::Answer { ticket, outcome: Err(code) },
                });
            }
        }
        if self.claimed && self.history.is_empty() && self.pending.is_empty() {
            self.claimed = false;
            effects.push(Effect::ReleaseStoredRoom);
        }
        effects
    }

    /// `conn` is typing: the others are told, at most once per [`TYPING_INTERVAL`].
    pub fn typing(&mut self, conn: ConnId, now: Instant, ts: UnixMillis) -> Vec<Effect> {
        let Some(member) = self.members.get_mut(&conn) else { return Vec::new() };
        // A muted member's typing is dropped like a too-frequent one (no error: a client
        // types without waiting for answers).
        if member.typed.is_some_and(|at| now.duration_since(at) < TYPING_INTERVAL)
            || member.muted_at(ts).is_some()
        {
            return vec![Effect::Count(Counted::TypingDropped)];
        }
        member.typed = Some(now);
        let notice = ServerMessage::Typing { room: self.name.clone(), nick: member.nick.clone() };
        vec![Effect::Broadcast { message: notice, except: Some(conn) }]
    }

    /// `conn` asks for a page of history: before `before`, after `after`, or the newest, at
    /// most `limit` messages (the room's page size if larger or absent), `page_bytes`, and
    /// `space` (what may still wait for the member; at least one message all the same, so
    /// paging moves on).
    pub fn history_page(
        &mut self,
        conn: ConnId,
        request: PageRequest,
        space: usize,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        if !self.members.contains_key(&conn) {
            return Vec::new();
        }
        let PageRequest { before, after, .. } = request;
        let (messages, more) = self.page(request, space, ts);
        let answer =
            ServerMessage::History { room: self.name.clone(), messages, before, after, more };
        vec![Effect::Send { to: conn, message: answer }]
    }

    /// A page of the room's history: before `before`, after `after` (both: between them), or
    /// the newest, at most
    /// `limit` messages (the room's page size if absent or larger) and
    /// `page_bytes`; and whether there are more that way. Empty until the history is loaded.
    pub fn page(
        &mut self,
        request: PageRequest,
        space: usize,
        ts: UnixMillis,
    ) -> (Vec<ChatMessage>, bool) {
        let PageRequest { before, after, limit } = request;
        self.expire_by_age(ts);
        // Never more than the page size (PROTOCOL.md's `limit`), nor than the room keeps.
        let most = self.rules.recent.min(self.rules.retention.retain_messages).max(1);
        let messages = limit.map_or(most, |limit| limit as usize).clamp(1, most);
        let bytes = self.rules.page_bytes.min(space);
        let limit = PageLimit { messages, bytes, strict: false };
        let page = match after {
            Some(after) => self.history.after(after, limit),
            None => self.history.before(before, limit),
        };
        let (mut messages, mut more) = (page.messages, page.more);
        // Both (the HTTP API allows it): the messages between the two.
        if let (Some(before), Some(_)) = (before, after)
            && let Some(cut) = messages.iter().position(|message| message.id >= before)
        {
            messages.truncate(cut);
            more = false;
        }
        (messages, more)
    }

    /// Whether the room's history is loaded (joins and API calls are refused until it is).
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    fn ack(&self, client_id: &ClientId, id: MessageId) -> ServerMessage {
        ServerMessage::Ack { client_id: client_id.clone(), id, room: self.name.clone() }
    }

    fn member_like(&self, likeness: &Likeness) -> Option<(ConnId, &Member)> {
        self.members
            .iter()
            .map(|(conn, member)| (*conn, &**member))
            .find(|(_, member)| member.likeness.looks_like(likeness))
    }

    /// The nick a member without one gets: `guest-<connection id>`, made unique if someone
    /// already chose it.
    fn generated_nick(&self, conn: ConnId) -> String {
        let base = format!("guest-{conn}");
        let mut nick = base.clone();
        let mut suffix = 1;
        while self.member_like(&Likeness::of(&nick)).is_some()
            // (Accounts cannot be registered under `guest-` names: an unreadable store
            // holds none of them.)
            || self.rules.registry.holds(&Likeness::of(&nick)) == Ok(true)
        {
            suffix += 1;
            nick = format!("{base}-{suffix}");
        }
        nick
    }

    /// Forgets messages past `--retain-for`, as the store deletes them, before serving history.
    fn expire_by_age(&mut self, ts: UnixMillis) {
        if let Some(cutoff) = self.rules.retention.age_cutoff(ts) {
            self.history.expire(cutoff);
        }
    }

    /// Everyone in the room, here and (`--redis`) on the other servers, each nick once.
    /// The welcome's lists: every member's nick (here and on other servers), and those signed
    /// in, both sorted case-insensitively.
    fn member_lists(&self) -> (Vec<String>, Vec<String>) {
        let mut nicks: Vec<String> = self.members.values().map(|m| m.nick.clone()).collect();
        nicks.extend(self.remote.keys().cloned());
        nicks.sort_by_key(|nick| rules::nick_key(nick));
        nicks.dedup();
        let mut signed_in: Vec<String> =
            self.members.values().filter(|m| m.account.is_some()).map(|m| m.nick.clone()).collect();
        let elsewhere = self.remote.iter().filter(|(_, remote)| remote.signed_in);
        signed_in.extend(elsewhere.map(|(nick, _)| nick.clone()));
        signed_in.sort_by_key(|nick| rules::nick_key(nick));
        signed_in.dedup();
        (nicks, signed_in)
    }

    /// Whether `nick` is in the member lists the room has sent (here or elsewhere).
    fn shown(&self, nick: &str) -> bool {
        self.remote.contains_key(nick) || self.members.values().any(|m| m.nick == nick)
    }

    /// The presence tag ([`presence_tag`]) of the member here called `nick` (empty: none, or
    /// no such member), for the other servers.
    pub fn local_tag(&self, nick: &str) -> String {
        self.members.values().find(|m| m.nick == nick).map(|m| presence_tag(m)).unwrap_or_default()
    }

    /// The members here, with their presence tags, as presence keeps them.
    pub fn local_members(&self) -> Vec<(String, String)> {
        self.members.values().map(|m| (m.nick.clone(), presence_tag(m))).collect()
    }

    /// The highest id the room has (kept or trimmed).
    pub fn last_id(&self) -> MessageId {
        self.history.last_id()
    }

    /// `conn` (who must own or moderate the room) makes it private or public. Making it
    /// private keeps its signed-in members as members; public again forgets members and codes.
    pub fn configure(&mut self, conn: ConnId, private: bool, ts: UnixMillis) -> Vec<Effect> {
        let Some(actor) = self.members.get(&conn) else { return Vec::new() };
        if self.current_role(actor).is_none() || !actor.has_account() {
            let words =
                "Only the room's owner and its moderators (with an account here) may do that.";
            return self.refusal(conn, ErrorCode::Forbidden, words, None);
        }
        let by = actor.nick.clone();
        let members: Vec<String> =
            self.members.values().filter(|m| m.has_account()).map(|m| m.nick.clone()).collect();
        if !self.rules.registry.set_private(&self.name, private, &members) {
            let error =
                ServerMessage::error(ErrorCode::Unavailable, "That could not be saved; try again.");
            return vec![Effect::Send { to: conn, message: error }];
        }
        let mut effects = vec![Effect::Audit(Audit {
            actor: by.clone(),
            action: if private { "private" } else { "public" },
            room: self.name.clone(),
            subject: self.name.clone(),
        })];
        effects.extend(self.turned(private, &by, ts));
        effects
    }

    /// (`--redis`) `by` made the room private or public on another server, which kept its own
    /// signed-in people as members: those signed in here become members too (they were in
    /// it), and the room turns as [`RoomState::configure`] turns it.
    pub fn remote_configured(&mut self, private: bool, by: &str, ts: UnixMillis) -> Vec<Effect> {
        if private {
            let members: Vec<String> =
                self.members.values().filter(|m| m.has_account()).map(|m| m.nick.clone()).collect();
            for nick in members {
                if let Err(()) = self.rules.registry.grant(&self.name, &nick, Grant::Member, false)
                {
                    tracing::warn!(room = %self.name, nick, "a member of a room turned private elsewhere was not kept");
                }
            }
        }
        self.turned(private, by, ts)
    }

    /// (`--redis`) Reads the room's privacy again: if another server changed it and its event
    /// was missed, the room turns now (as for the event).
    pub fn recheck_privacy(&mut self, ts: UnixMillis) -> Vec<Effect> {
        match self.rules.registry.is_private(&self.name) {
            Some(private) if self.private != Some(private) => {
                self.remote_configured(private, "a moderator", ts)
            }
            _ => Vec::new(),
        }
    }

    /// The room turned private or public: it is told, the lobby's lists follow, and guests
    /// and token holders leave a room that turned private.
    fn turned(&mut self, private: bool, by: &str, ts: UnixMillis) -> Vec<Effect> {
        self.private = Some(private);
        let told =
            ServerMessage::RoomSettings { room: self.name.clone(), private, by: by.to_owned() };
        let mut effects =
            vec![Effect::Privacy { private }, Effect::Broadcast { message: told, except: None }];
        if private {
            // Those who could not join it now (guests, tokens) do not stay to read it.
            let reason = format!("#{} became private: only its members may stay", self.name);
            effects.extend(self.remove_seats(|m| !m.has_account(), &reason, ts));
        }
        effects
    }

    /// `conn` (who must own or moderate the room, with an account here) gets a new
    /// invitation code, or revokes every code.
    pub fn invite(
        &mut self,
        conn: ConnId,
        revoke: bool,
        days: u32,
        uses: Option<u32>,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        let Some(actor) = self.members.get(&conn) else { return Vec::new() };
        let answer = |message: ServerMessage| vec![Effect::Send { to: conn, message }];
        if self.current_role(actor).is_none() || !actor.has_account() {
            let words =
                "Only the room's owner and its moderators (with an account here) may invite.";
            return self.refusal(conn, ErrorCode::Forbidden, words, None);
        }
        if self.private != Some(true) && !revoke {
            let words =
                format!("#{} is open to everyone: only private rooms have invitations.", self.name);
            return self.refusal(conn, ErrorCode::Forbidden, words, None);
        }
        let expires = ts.saturating_add(u64::from(days) * 86_400_000);
        let code = if revoke {
            self.rules.registry.revoke_invitations(&self.name).then_some(None)
        } else {
            self.rules.registry.new_invitation(&self.name, ts, expires, uses).map(Some)
        };
        match code {
            Some(code) => answer(ServerMessage::Invitation {
                room: self.name.clone(),
                expires: code.is_some().then_some(expires),
                uses: uses.filter(|_| code.is_some()),
                code,
            }),
            None => answer(ServerMessage::error(
                ErrorCode::Unavailable,
                "That could not be saved; try again.",
            )),
        }
    }

    /// `conn` gives the account `nick` the place `grant` here, or takes it away (`revoke`):
    /// moderators are the owner's to name, members of a private room its owner's and
    /// moderators' (with an account here). The room is told; a new or former moderator here
    /// acts as such at once, and a former member here is removed.
    pub fn grant(
        &mut self,
        conn: ConnId,
        nick: &str,
        grant: Grant,
        revoke: bool,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        let Some(actor) = self.members.get(&conn) else { return Vec::new() };
        let role = self.current_role(actor).filter(|_| actor.has_account());
        let allowed = match grant {
            Grant::Moderator => role == Some(Role::Owner),
            Grant::Member => role.is_some(),
        };
        if !allowed {
            let words = match grant {
                Grant::Moderator => "Only the room's owner names its moderators.",
                Grant::Member => {
                    "Only the room's owner and its moderators (with an account here) may do that."
                }
            };
            return self.refusal(conn, ErrorCode::Forbidden, words, None);
        }
        if grant == Grant::Member && self.private != Some(true) {
            let words =
                format!("#{} is open to everyone: only private rooms have members.", self.name);
            return self.refusal(conn, ErrorCode::Forbidden, words, None);
        }
        let by = actor.nick.clone();
        let registered = match self.rules.registry.grant(&self.name, nick, grant, revoke) {
            Ok(Some(registered)) => registered,
            Ok(None) => {
                let words = match (grant, revoke) {
                    (Grant::Moderator, true) => {
                        format!("{nick} is no moderator of #{}.", self.name)
                    }
                    (Grant::Member, true) => format!("{nick} is no member of #{}.", self.name),
                    _ => format!("No account is called {nick}."),
                };
                return self.refusal(conn, ErrorCode::NotFound, words, None);
            }
            Err(()) => {
                return self.refusal(
                    conn,
                    ErrorCode::Unavailable,
                    "That could not be saved; try again.",
                    None,
                );
            }
        };
        let action = match (grant, revoke) {
            (Grant::Moderator, false) => "grant-moderator",
            (Grant::Moderator, true) => "revoke-moderator",
            (Grant::Member, false) => "add-member",
            (Grant::Member, true) => "remove-member",
        };
        let audit = Audit {
            actor: by.clone(),
            action,
            room: self.name.clone(),
            subject: registered.clone(),
        };
        let mut effects = vec![Effect::Audit(audit)];
        effects.extend(self.remote_granted(&registered, grant, revoke, &by, ts));
        effects
    }

    /// The account `nick` was given the place `grant` here, or had it taken away (`revoke`),
    /// by `by` (on this server, or with `--redis` on another): the room is told, the role of
    /// its seats here is read again, and a member taken away leaves (its owner and moderators
    /// stay).
    pub fn remote_granted(
        &mut self,
        nick: &str,
        grant: Grant,
        revoke: bool,
        by: &str,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        let told = ServerMessage::Granted {
            room: self.name.clone(),
            nick: nick.to_owned(),
            grant,
            revoke,
            by: by.to_owned(),
        };
        let mut effects = vec![Effect::Broadcast { message: told, except: None }];
        let seats: Vec<ConnId> = self
            .members
            .iter()
            .filter(|(_, m)| m.has_account() && m.nick == nick)
            .map(|(conn, _)| *conn)
            .collect();
        if seats.is_empty() {
            return effects;
        }
        let role = self.rules.registry.role(&self.name, nick, false);
        for conn in &seats {
            if let Some(member) = self.members.get_mut(conn) {
                member.role = role;
            }
        }
        if grant == Grant::Member && revoke && role.is_none() && self.private == Some(true) {
            let reason = format!("{by} removed you from the members of #{}", self.name);
            let theirs = |m: &Member| m.has_account() && m.nick == nick;
            effects.extend(self.remove_seats(theirs, &reason, ts));
        }
        effects
    }

    /// `conn` (who must own or moderate the room) kicks, mutes or bans the member `nick` for
    /// `minutes`. Nobody who moderates the room may be sanctioned (nor oneself). Everyone in
    /// the room, the member included, is told; a kick or ban then removes every seat of the
    /// member's (its other devices too), whose sessions close; a ban or mute holds for the
    /// member's identity, or a guest's address, until it ends, across rejoins. (`--redis`) A
    /// member on another server is told there, by the broadcast's event, and that server
    /// removes or mutes its seats ([`RoomState::remote_moderated`]).
    pub fn moderate(
        &mut self,
        conn: ConnId,
        nick: &str,
        action: Sanction,
        minutes: u32,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        let Some(actor) = self.members.get(&conn) else { return Vec::new() };
        let actor_role = self.current_role(actor);
        let refuse = |code, message: String| self.refusal(conn, code, message, None);
        if actor_role.is_none() {
            let words = "Only the room's owner and its moderators may do that.";
            return refuse(ErrorCode::Forbidden, words.into());
        }
        if action.lifts() {
            let by = actor.nick.clone();
            return self.lift(conn, nick, action, by);
        }
        let exempt = "Those who moderate the room cannot be kicked, muted or banned here.";
        match self.members.values().find(|m| m.nick == nick) {
            Some(target) if self.protected(target) || target.subject == actor.subject => {
                return refuse(ErrorCode::Forbidden, exempt.into());
            }
            Some(_) => {}
            // Elsewhere: its server holds its seats (and its token's roles, if it has one);
            // an account's roles are the shared store's.
            None if self.remote.contains_key(nick) => {
                if self.rules.registry.try_role(&self.name, nick, false) != Ok(None) {
                    return refuse(ErrorCode::Forbidden, exempt.into());
                }
            }
            None => {
                return refuse(
                    ErrorCode::NotFound,
                    format!("Nobody in #{} is called {nick}.", self.name),
                );
            }
        }
        let by = actor.nick.clone();
        let until =
            (action != Sanction::Kick).then(|| ts.saturating_add(u64::from(minutes) * 60_000));
        let mut effects = vec![Effect::Audit(Audit {
            actor: by.clone(),
            action: sanction_name(action),
            room: self.name.clone(),
            subject: match until {
                Some(until) => format!("{nick} until {until}"),
                None => nick.to_owned(),
            },
        })];
        let told = ServerMessage::Moderated {
            room: self.name.clone(),
            nick: nick.to_owned(),
            action,
            by: by.clone(),
            until,
        };
        effects.push(Effect::Broadcast { message: told, except: None });
        // An account elsewhere is held here too (the event to its server is sent at most
        // once): its identity's ban or mute is kept in the shared store either way.
        let elsewhere = self.remote.get(nick).filter(|_| self.rules.registry.0.is_some());
        if let (Some(until), Some(remote)) = (until, elsewhere)
            && remote.signed_in
            && !self.members.values().any(|m| m.nick == nick)
        {
            let subject = format!("id:{nick}");
            let kept = if action == Sanction::Ban { &mut self.bans } else { &mut self.mutes };
            hold(kept, &subject, until, nick);
            let nick = nick.to_owned();
            let record = SanctionRecord { room: self.name.clone(), subject, action, until, nick };
            effects.push(Effect::Sanctioned(record));
        }
        effects.extend(self.enforce(nick, action, &by, until, ts));
        effects
    }

    /// `by` (who moderates the room) lifts `nick`'s mutes (`Unmute`) or bans (`Unban`) here,
    /// made while the room was open or kept in the store; the room is told.
    fn lift(&mut self, conn: ConnId, nick: &str, action: Sanction, by: String) -> Vec<Effect> {
        let here = self.release(nick, action);
        let kept = match self.rules.registry.lift_sanctions(&self.name, nick, action) {
            Ok(kept) => kept,
            Err(()) => {
                let words = "That could not be saved; try again.";
                return self.refusal(conn, ErrorCode::Unavailable, words, None);
            }
        };
        if !here && !kept {
            let what = if action == Sanction::Unmute { "muted" } else { "banned" };
            let words = format!("{nick} is not {what} in #{}.", self.name);
            return self.refusal(conn, ErrorCode::NotFound, words, None);
        }
        let audit = Audit {
            actor: by.clone(),
            action: sanction_name(action),
            room: self.name.clone(),
            subject: nick.to_owned(),
        };
        let told = ServerMessage::Moderated {
            room: self.name.clone(),
            nick: nick.to_owned(),
            action,
            by,
            until: None,
        };
        vec![Effect::Audit(audit), Effect::Broadcast { message: told, except: None }]
    }

    /// Forgets the mutes (`Unmute`) or bans (`Unban`) on `nick` made while the room was open,
    /// and a mute's hold on its seats here: whether there were any.
    fn release(&mut self, nick: &str, action: Sanction) -> bool {
        let kept = if action == Sanction::Unban { &mut self.bans } else { &mut self.mutes };
        let before = kept.len();
        kept.retain(|_, held| held.nick != nick);
        let mut released = kept.len() < before;
        if action == Sanction::Unmute {
            for member in self.members.values_mut().filter(|m| m.nick == nick) {
                released |= member.muted_until.take().is_some();
            }
        }
        released
    }

    /// `conn` (who moderates the room) asks for the mutes and bans in force here.
    pub fn sanctions(&self, conn: ConnId, ts: UnixMillis) -> Vec<Effect> {
        let Some(actor) = self.members.get(&conn) else { return Vec::new() };
        if self.current_role(actor).is_none() {
            let words = "Only the room's owner and its moderators may see its bans and mutes.";
            return self.refusal(conn, ErrorCode::Forbidden, words, None);
        }
        let Ok(stored) = self.rules.registry.sanctions(&self.name, ts) else {
            let words = "The bans and mutes could not be read; try again.";
            return self.refusal(conn, ErrorCode::Unavailable, words, None);
        };
        // Those made while the room was open (the only ones without a store), one per member
        // and kind, at their latest end.
        let mut latest: BTreeMap<(String, &'static str), SanctionInfo> = BTreeMap::new();
        let here = [(Sanction::Mute, &self.mutes), (Sanction::Ban, &self.bans)];
        let open = here.into_iter().flat_map(|(action, kept)| {
            kept.values().filter(|held| held.until > ts).map(move |held| SanctionInfo {
                nick: held.nick.clone(),
                action,
                until: held.until,
            })
        });
        for info in stored.into_iter().chain(open) {
            let key = (info.nick.clone(), sanction_name(info.action));
            match latest.get_mut(&key) {
                Some(known) => known.until = known.until.max(info.until),
                None => {
                    latest.insert(key, info);
                }
            }
        }
        // Bounded, as every frame is: the first [`MAX_LISTED_SANCTIONS`] by nick.
        let sanctions = latest.into_values().take(MAX_LISTED_SANCTIONS).collect();
        let message = ServerMessage::Sanctions { room: self.name.clone(), sanctions };
        vec![Effect::Send { to: conn, message }]
    }

    /// (`--redis`) A moderator on another server kicked, muted or banned `nick` here: the
    /// members here are told, and its seats here are removed or muted (unless it moderates
    /// the room: a token's roles are known only where it connected).
    pub fn remote_moderated(
        &mut self,
        nick: &str,
        action: Sanction,
        by: &str,
        until: Option<UnixMillis>,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        let told = ServerMessage::Moderated {
            room: self.name.clone(),
            nick: nick.to_owned(),
            action,
            by: by.to_owned(),
            until,
        };
        let mut effects = vec![Effect::Broadcast { message: told, except: None }];
        if action.lifts() {
            self.release(nick, action);
            return effects;
        }
        let exempt = self.members.values().any(|m| m.nick == nick && self.protected(m));
        if !exempt {
            effects.extend(self.enforce(nick, action, by, until, ts));
        }
        effects
    }

    /// Holds `action` until `until` on the member here called `nick`: its identity and the
    /// addresses of its seats here are kept (a signed-in member does not escape by logging
    /// out, nor a guest by another nick); a mute silences its seats, a kick or ban removes
    /// them (every device of it).
    fn enforce(
        &mut self,
        nick: &str,
        action: Sanction,
        by: &str,
        until: Option<UnixMillis>,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        let Some(subject) =
            self.members.values().find(|m| m.nick == nick).map(|m| m.subject.clone())
        else {
            return Vec::new();
        };
        let mut held: Vec<String> = self
            .members
            .values()
            .filter(|m| m.subject == subject)
            .filter_map(|m| m.address.map(address_subject))
            .collect();
        held.sort();
        held.dedup();
        if subject.starts_with("id:") {
            held.push(subject.clone());
        }
        let mut effects = Vec::new();
        if let Some(until) = until {
            let kept = match action {
                Sanction::Ban => &mut self.bans,
                _ => &mut self.mutes,
            };
            for subject in held {
                hold(kept, &subject, until, nick);
                let nick = nick.to_owned();
                let record =
                    SanctionRecord { room: self.name.clone(), subject, action, until, nick };
                effects.push(Effect::Sanctioned(record));
            }
        }
        if action == Sanction::Mute {
            for member in self.members.values_mut().filter(|m| m.subject == subject) {
                member.muted_until = until;
            }
            return effects;
        }
        let verb = if action == Sanction::Ban { "banned" } else { "kicked" };
        let reason = format!("{by} {verb} you from #{}", self.name);
        effects.extend(self.remove_seats(|m| m.subject == subject, &reason, ts));
        effects
    }

    /// A refusal of `conn`'s request about this room (with the `client_id` it named).
    fn refusal(
        &self,
        conn: ConnId,
        code: ErrorCode,
        message: impl Into<String>,
        client_id: Option<ClientId>,
    ) -> Vec<Effect> {
        let error = ServerMessage::Error {
            code,
            message: message.into(),
            retry_after_ms: None,
            client_id,
            room: Some(self.name.clone()),
        };
        vec![Effect::Send { to: conn, message: error }]
    }

    /// Removes the seats of the members `which` picks by a moderator's hand (their sessions
    /// close, saying `reason`); the room sees each leave unless its nick stays (another
    /// device).
    fn remove_seats(
        &mut self,
        which: impl Fn(&Member) -> bool,
        reason: &str,
        ts: UnixMillis,
    ) -> Vec<Effect> {
        let seats: Vec<ConnId> =
            self.members.iter().filter(|(_, m)| which(m)).map(|(conn, _)| *conn).collect();
        let mut effects = Vec::new();
        for conn in seats {
            let Some(removed) = self.members.remove(&conn) else { continue };
            effects.push(Effect::Removed { conn, reason: reason.to_owned() });
            if !self.shown(&removed.nick) {
                let left = ServerMessage::Left { room: self.name.clone(), nick: removed.nick, ts };
                effects.push(Effect::Broadcast { message: left, except: None });
            }
        }
        effects
    }

    /// Whether `member` moderates the room now, as far as can be read: one whose role cannot
    /// be read (the store away) keeps the immunity it joined with.
    fn protected(&self, member: &Member) -> bool {
        if member.role.is_none() {
            return false;
        }
        match &self.rules.registry.0 {
            Some(_) if member.has_account() => {
                self.rules.registry.try_role(&self.name, &member.nick, false) != Ok(None)
            }
            _ => true,
        }
    }

    /// What `member` may do now: its role as read at its join, read again (a role the operator
    /// took away since must not keep acting until the holder rejoins).
    fn current_role(&self, member: &Member) -> Option<Role> {
        let held = member.role?;
        // Accounts' roles live in the database; a token's come with it (and so last as long
        // as its connection).
        match &self.rules.registry.0 {
            Some(_) if member.has_account() => {
                self.rules.registry.role(&self.name, &member.nick, false)
            }
            _ => Some(held),
        }
    }

    /// Until when `subject` is under `action` here (made while the room was open, or kept in
    /// the store), if that is later than `ts`; `Err` if the store could not be read.
    fn sanction_until(
        &self,
        action: Sanction,
        subject: &str,
        ts: UnixMillis,
    ) -> Result<Option<UnixMillis>, ()> {
        let kept = match action {
            Sanction::Ban => &self.bans,
            _ => &self.mutes,
        };
        let here = kept.get(subject).map(|held| held.until);
        let stored = self.rules.registry.sanction_until(&self.name, subject, action, ts)?;
        Ok(here.max(stored).filter(|until| *until > ts))
    }

    /// Keeps a mute or ban beyond the room's life. Once the store holds it, the room reads it
    /// from there only (so that a lifting by the operator, or by another server, holds here
    /// at once); until then, or without a store, the room holds it itself.
    pub fn keep_sanction(&mut self, record: &SanctionRecord) {
        if self.rules.registry.keep_sanction(record) {
            let kept =
                if record.action == Sanction::Ban { &mut self.bans } else { &mut self.mutes };
            if kept.get(&record.subject).is_some_and(|held| held.until == record.until) {
                kept.remove(&record.subject);
            }
        }
    }

    /// Keeps a moderation action in the audit log.
    pub fn audit(&self, audit: &Audit, ts: UnixMillis) {
        self.rules.registry.audit(audit, ts);
    }

    /// The room's epoch (empty: none yet).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }
}

/// An upper bound on the bytes a welcome's member and room lists take: a JSON string takes at
/// most twice its bytes and its quotes; a room entry a few more for its count.
fn lists_bytes(members: &[String], signed_in: &[String], rooms: &[RoomInfo]) -> usize {
    members.iter().chain(signed_in).map(|nick| 2 * nick.len() + 3).sum::<usize>()
        + rooms.iter().map(|room| 2 * room.name.len() + 32).sum::<usize>()
}

/// Who a member is, for its seats and bans: a signed-in identity (`id:`), or a guest by its
/// address and nick.
fn subject_of(
    account: Option<&SignedIn>,
    address: Option<std::net::IpAddr>,
    likeness: &Likeness,
) -> String {
    match (account, address) {
        (Some(account), _) => format!("id:{}", account.id),
        (None, Some(address)) => format!("guest:{address}:{}", likeness.key()),
        (None, None) => format!("guest::{}", likeness.key()),
    }
}

/// What bans and mutes of an address name (a guest can change nicks at will; a ban on an
/// address holds for everyone behind it).
fn address_subject(address: std::net::IpAddr) -> String {
    format!("address:{address}")
}

/// The refusal a muted member gets for a send or an edit, if it is muted at `ts`.
fn muted(
    member: &Member,
    room: &str,
    client_id: Option<&ClientId>,
    ts: UnixMillis,
) -> Option<ServerMessage> {
    let until = member.muted_at(ts)?;
    Some(ServerMessage::Error {
        code: ErrorCode::Muted,
        message: format!("A moderator muted you in #{room} for now."),
        retry_after_ms: Some(until - ts),
        client_id: client_id.cloned(),
        room: Some(room.to_owned()),
    })
}

/// The error a sender gets when its message would be the first of a room and the store holds
/// the most rooms it may.
fn rooms_full(client_id: Option<ClientId>, room: &str) -> ServerMessage {
    ServerMessage::Error {
        code: ErrorCode::TooManyRooms,
        message: "This server keeps as many rooms as it allows: write in a room that already \
                  has messages."
            .into(),
        retry_after_ms: None,
        client_id,
        room: Some(room.to_owned()),
    }
}

/// The error a sender gets when its message could not be stored.
pub fn store_refusal(client_id: Option<ClientId>, room: &str) -> ServerMessage {
    ServerMessage::Error {
        code: ErrorCode::Unavailable,
        message: "Your message could not be stored; send it again.".into(),
        retry_after_ms: None,
        client_id,
        room: Some(room.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SyncMode;

    const T: UnixMillis = 1_700_000_000_000;

    fn rules() -> RoomRules {
        RoomRules {
            recent: 100,
            page_bytes: 1 << 20,
            rename_interval: Duration::from_secs(2),
            retention: StoreOptions {
                data_dir: None,
                retain_messages: 1000,
                retain_bytes: 1 << 20,
                retain_for: None,
                sync: SyncMode::Full,
                max_pending_writes: 100,
                max_stored_rooms: 100,
            },
            epoch: "e1".into(),
            registry: Registry::default(),
        }
    }

    fn room() -> RoomState {
        let mut room = RoomState::new("r".into(), rules());
        room.load(Loaded::default());
        room
    }

    fn request(conn: ConnId, nick: Option<&str>, client: Option<&str>) -> JoinRequest {
        JoinRequest {
            conn,
            nick: nick.map(str::to_owned),
            client: client.map(str::to_owned),
            account: None,
            since: None,
            epoch: None,
            rooms: Vec::new(),
            address: None,
            invite: None,
        }
    }

    /// A join signed in to the account `nick` (registered at 0).
    fn signed(conn: ConnId, nick: &str) -> JoinRequest {
        JoinRequest {
            account: Some(SignedIn::account(nick.into(), 0)),
            ..request(conn, None, None)
        }
    }

    /// A guest's join as `nick` from `address`.
    fn guest_at(conn: ConnId, nick: &str, address: [u8; 4]) -> JoinRequest {
        let address = Some(std::net::IpAddr::from(address));
        JoinRequest { address, ..request(conn, Some(nick), None) }
    }

    /// Joins `conn` as `nick`, expecting success; returns the effects.
    fn enter(room: &mut RoomState, conn: ConnId, nick: &str, now: Instant) -> Vec<Effect> {
        let (joined, effects) = room.join(request(conn, Some(nick), None), usize::MAX, now, T);
        assert_eq!(joined.map(|j| j.nick), Ok(nick.to_owned()));
        effects
    }

    fn code(result: Result<Joined, Rejection>) -> Option<ErrorCode> {
        result.err().map(|rejection| rejection.code)
    }

    /// The frames sent to one connection (not broadcasts), by kind.
    fn sent_to(effects: &[Effect], conn: ConnId) -> Vec<&ServerMessage> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Send { to, message } if *to == conn => Some(message),
                _ => None,
            })
            .collect()
    }

    fn broadcasts(effects: &[Effect]) -> Vec<(&ServerMessage, Option<ConnId>)> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Broadcast { message, except } => Some((message, *except)),
                _ => None,
            })
            .collect()
    }

    /// A newcomer is welcomed with the members, itself included, sorted case-insensitively;
    /// the others are told it joined, it is not.
    #[test]
    fn a_join_welcomes_and_announces() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "bob", now);
        let effects = enter(&mut room, 2, "Alice", now);
        match sent_to(&effects, 2).as_slice() {
            [ServerMessage::Welcome { nick, members, .. }] => {
                assert_eq!(nick, "Alice");
                assert_eq!(members, &["Alice", "bob"]);
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
        assert!(matches!(
            broadcasts(&effects).as_slice(),
            [(ServerMessage::Joined { nick, .. }, Some(2))] if nick == "Alice"
        ));
    }

    /// A member signed in to an account is marked so in the welcome's list, in the `joined`
    /// the others see and on every message it sends; a guest nowhere.
    #[test]
    fn signed_in_members_and_their_messages_are_marked() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "guest", now);
        let signed_in = JoinRequest {
            account: Some(SignedIn::account("Ann".into(), 0)),
            ..request(2, None, None)
        };
        let (joined, effects) = room.join(signed_in, usize::MAX, now, T);
        assert_eq!(joined.map(|j| j.nick), Ok("Ann".to_owned()));
        match sent_to(&effects, 2).as_slice() {
            [ServerMessage::Welcome { members, signed_in, .. }] => {
                assert_eq!(members, &["Ann", "guest"]);
                assert_eq!(signed_in, &["Ann"]);
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
        assert!(matches!(
            broadcasts(&effects).as_slice(),
            [(ServerMessage::Joined { nick, signed_in: true, .. }, Some(2))] if nick == "Ann"
        ));
        let guest_joins = enter(&mut room, 3, "cy", now);
        assert!(matches!(
            broadcasts(&guest_joins).as_slice(),
            [(ServerMessage::Joined { signed_in: false, .. }, Some(3))]
        ));

        let ids = MessageIds::starting_after(0);
        let marks: Vec<(String, bool)> = [1, 2]
            .into_iter()
            .map(|conn| match room.post(conn, "hi".into(), None, &ids, T, || true).as_slice() {
                [Effect::Store(stored)] => (stored.message.from.clone(), stored.message.signed_in),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(marks, [("guest".to_owned(), false), ("Ann".to_owned(), true)]);
    }

    /// One account on two devices (two clients) holds one seat: both are admitted, the room
    /// is told of it once, and of its leaving when the last device leaves. A guest of another
    /// client still cannot take the nick.
    #[test]
    fn an_account_may_be_in_a_room_from_several_devices() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "bob", now);
        let device = |conn, client: &str| JoinRequest {
            account: Some(SignedIn::account("Ann".into(), 0)),
            ..request(conn, None, Some(client))
        };
        let (first, effects) = room.join(device(2, "laptop"), usize::MAX, now, T);
        assert!(first.is_ok());
        assert_eq!(broadcasts(&effects).len(), 1, "joined once");
        let (second, effects) = room.join(device(3, "phone"), usize::MAX, now, T);
        assert_eq!(second, Ok(Joined { nick: "Ann".into(), replaced: vec![] }), "both stay");
        assert!(broadcasts(&effects).is_empty(), "not announced again: {effects:?}");
        match sent_to(&effects, 3).as_slice() {
            [ServerMessage::Welcome { members, .. }] => assert_eq!(members, &["Ann", "bob"]),
            other => panic!("{other:?}"),
        }
        let (guest, _) = room.join(request(4, Some("ann"), Some("tablet")), usize::MAX, now, T);
        assert_eq!(code(guest), Some(ErrorCode::NickTaken));

        let (was_member, effects) = room.leave(2, T);
        assert!(was_member && effects.is_empty(), "still here on the phone: {effects:?}");
        let (_, effects) = room.leave(3, T);
        assert!(matches!(
            broadcasts(&effects).as_slice(),
            [(ServerMessage::Left { nick, .. }, None)] if nick == "Ann"
        ));
    }

    /// Accounts `nicks` in an in-memory database, `moderator` a moderator of every room.
    fn registry(nicks: &[&str], moderator: &str) -> Registry {
        let mut connection = rusqlite::Connection::open_in_memory().expect("in memory");
        crate::db::migrate_for_tests(&mut connection).expect("migrated");
        for nick in nicks {
            let likeness = Likeness::of(nick);
            connection
                .execute(
                    "INSERT INTO accounts (nick, nick_key, nick_cased, password, created)
                     VALUES (?1, ?2, ?3, 'x', 0)",
                    rusqlite::params![nick, likeness.key(), likeness.cased()],
                )
                .expect("account");
        }
        let accounts = crate::accounts::Accounts::with(connection).expect("accounts");
        accounts.grant_moderator(moderator, None, 0).expect("granted");
        Registry(Some(std::sync::Arc::new(accounts)))
    }

    /// Who may edit and delete what, as a table: authors (signed in) edit and delete their
    /// own messages; the room's owner (the first signed in before it had messages) and the
    /// server's moderators delete anyone's, and are audited for it; guests touch nothing, not
    /// even messages under their nick; nobody edits someone else's; a message that is not
    /// kept, or is deleted, is `not_found`.
    #[test]
    fn who_may_edit_and_delete_what() {
        let rules = RoomRules { registry: registry(&["Ann", "Bob", "Mod"], "mod"), ..rules() };
        let mut room = RoomState::new("r".into(), rules);
        room.load(Loaded::default());
        let now = Instant::now();
        let roles: Vec<Option<Role>> = [(1, "Ann"), (2, "Bob"), (4, "Mod")]
            .into_iter()
            .map(|(conn, nick)| {
                let join = JoinRequest {
                    account: Some(SignedIn::account(nick.into(), 0)),
                    ..request(conn, None, None)
                };
                let (_, effects) = room.join(join, usize::MAX, now, T);
                match sent_to(&effects, conn).as_slice() {
                    [ServerMessage::Welcome { role, .. }] => *role,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(roles, [Some(Role::Owner), None, Some(Role::Moderator)]);
        enter(&mut room, 3, "gus", now);
        let ids = MessageIds::starting_after(0);
        for (conn, text) in [(1, "a1"), (2, "b1"), (3, "g1")] {
            room.post(conn, text.into(), None, &ids, T, || true);
        }
        room.durable(3);

        let outcome = |effects: &[Effect]| -> String {
            let audited = effects.iter().any(|e| matches!(e, Effect::Audit(_)));
            match effects {
                [.., Effect::Store(_)] => {
                    format!("stored{}", if audited { "+audit" } else { "" })
                }
                [Effect::Send { message: ServerMessage::Error { code, .. }, .. }] => {
                    format!("{code:?}")
                }
                other => panic!("{other:?}"),
            }
        };
        let edit = Some("new".to_owned());
        let cases: [(ConnId, MessageId, Option<String>, &str); 11] = [
            (2, 2, edit.clone(), "stored"),
            (2, 1, edit.clone(), "Forbidden"),
            (2, 1, None, "Forbidden"),
            (3, 3, edit.clone(), "Forbidden"),
            (3, 3, None, "Forbidden"),
            (1, 2, edit.clone(), "Forbidden"),
            (1, 99, None, "NotFound"),
            (1, 3, None, "stored+audit"),
            (4, 1, None, "stored+audit"),
            (1, 1, None, "NotFound"),
            (2, 2, None, "stored"),
        ];
        for (at, (conn, target, text, expected)) in (0..).zip(cases) {
            // Apart by more than the pace of changes.
            let effects = room.amend(conn, target, text.clone(), None, &ids, T + at * 2_000);
            assert_eq!(outcome(&effects), expected, "{conn} on {target} with {text:?}");
        }
        // Once durable: the edit shown, the deletions as tombstones; a resuming client gets
        // the changes as entries after the originals.
        room.durable(ids.next());
        let page =
            room.history.after(0, PageLimit { messages: 100, bytes: usize::MAX, strict: false });
        let originals: Vec<(&str, bool, bool)> = page
            .messages
            .iter()
            .filter(|m| m.amends.is_none())
            .map(|m| (m.text.as_str(), m.edited, m.deleted))
            .collect();
        assert_eq!(originals, [("", false, true), ("", true, true), ("", false, true)]);
        let changes: Vec<Option<MessageId>> =
            page.messages.iter().filter(|m| m.amends.is_some()).map(|m| m.amends).collect();
        assert_eq!(changes, [Some(2), Some(3), Some(1), Some(2)], "one delete of #1, not two");
        let again = room.amend(4, 1, None, None, &ids, T);
        assert_eq!(outcome(&again), "NotFound", "deleted already");
        // Edits are paced, one a second per member.
        room.post(2, "b2".into(), None, &ids, T, || true);
        let b2 = ids.next() - 1;
        room.durable(b2);
        let at = T + 100_000;
        assert_eq!(outcome(&room.amend(2, b2, Some("x".into()), None, &ids, at)), "stored");
        assert_eq!(
            outcome(&room.amend(2, b2, Some("y".into()), None, &ids, at + 10)),
            "RateLimited"
        );
        assert_eq!(outcome(&room.amend(2, b2, Some("y".into()), None, &ids, at + 1_000)), "stored");
    }

    /// A message sent under a nick before its account was registered (a deleted account's,
    /// whose nick was registered again) is not the new account's own: it may not edit or
    /// delete it.
    #[test]
    fn an_account_owns_only_messages_since_it_was_registered() {
        let mut room = room();
        let now = Instant::now();
        let first = JoinRequest {
            account: Some(SignedIn::account("Ann".into(), 0)),
            ..request(1, None, None)
        };
        assert!(room.join(first, usize::MAX, now, T).0.is_ok());
        let ids = MessageIds::starting_after(0);
        room.post(1, "old".into(), None, &ids, T, || true);
        room.durable(1);
        room.leave(1, T);
        let again = JoinRequest {
            account: Some(SignedIn::account("Ann".into(), T + 1_000)),
            ..request(2, None, None)
        };
        assert!(room.join(again, usize::MAX, now, T + 2_000).0.is_ok());
        let effects = room.amend(2, 1, None, None, &ids, T + 2_000);
        assert!(
            matches!(
                effects.as_slice(),
                [Effect::Send {
                    message: ServerMessage::Error { code: ErrorCode::Forbidden, .. },
                    ..
                }]
            ),
            "{effects:?}"
        );
    }

    /// Kick, mute and ban, as a table of who may: only the owner and moderators, never on
    /// each other; a mute refuses sends until it ends; a kick removes every seat of the member
    /// (the room is told, then sees it leave); a ban also refuses the member's rejoins (a
    /// guest's from its address, under any nick) until it ends.
    #[test]
    fn kick_mute_and_ban() {
        let rules = RoomRules { registry: registry(&["Ann", "Bob", "Mod"], "mod"), ..rules() };
        let mut room = RoomState::new("r".into(), rules);
        room.load(Loaded::default());
        let now = Instant::now();
        let guest = guest_at;
        for join in
            [signed(1, "Ann"), signed(2, "Bob"), signed(4, "Mod"), guest(3, "gus", [10, 0, 0, 1])]
        {
            assert!(room.join(join, usize::MAX, now, T).0.is_ok());
        }
        let error = |effects: &[Effect]| match effects {
            [Effect::Send { message: ServerMessage::Error { code, .. }, .. }] => Some(*code),
            _ => None,
        };
        assert_eq!(
            error(&room.moderate(2, "gus", Sanction::Kick, 1, T)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            error(&room.moderate(1, "Mod", Sanction::Ban, 1, T)),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            error(&room.moderate(1, "nobody", Sanction::Ban, 1, T)),
            Some(ErrorCode::NotFound)
        );

        let muted = room.moderate(1, "gus", Sanction::Mute, 10, T);
        assert!(muted.iter().any(|e| matches!(e, Effect::Sanctioned(r) if r.until == T + 600_000)));
        let renamed = room.join(guest(3, "gus-again", [10, 0, 0, 1]), usize::MAX, now, T + 1).0;
        assert_eq!(code(renamed), Some(ErrorCode::Muted), "a rename is no way around a mute");
        let ids = MessageIds::starting_after(0);
        assert_eq!(
            error(&room.post(3, "hi".into(), None, &ids, T + 1, || true)),
            Some(ErrorCode::Muted)
        );
        assert!(matches!(
            room.post(3, "hi".into(), None, &ids, T + 600_001, || true).as_slice(),
            [Effect::Store(_)]
        ));

        let kicked = room.moderate(4, "Bob", Sanction::Kick, 1, T);
        let kinds: Vec<&str> = kicked
            .iter()
            .map(|e| match e {
                Effect::Audit(_) => "audit",
                Effect::Broadcast { message: ServerMessage::Moderated { .. }, .. } => "told",
                Effect::Removed { conn: 2, .. } => "removed",
                Effect::Broadcast { message: ServerMessage::Left { .. }, .. } => "left",
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["audit", "told", "removed", "left"]);
        assert!(
            room.join(signed(2, "Bob"), usize::MAX, now, T + 1).0.is_ok(),
            "a kick is not a ban"
        );

        // A banned account is refused as a guest from the same address too.
        let from = |conn, nick: &str, address: [u8; 4]| JoinRequest {
            address: Some(std::net::IpAddr::from(address)),
            ..signed(conn, nick)
        };
        assert!(room.join(from(8, "Bob", [10, 0, 0, 9]), usize::MAX, now, T).0.is_ok());
        let seats = room.moderate(1, "Bob", Sanction::Ban, 60, T);
        let removed: Vec<ConnId> = seats
            .iter()
            .filter_map(|e| match e {
                Effect::Removed { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        assert_eq!(removed.len(), 2, "every device of his: {removed:?}");
        let as_guest = room.join(guest(9, "notbob", [10, 0, 0, 9]), usize::MAX, now, T + 1).0;
        assert_eq!(code(as_guest), Some(ErrorCode::Banned), "logged out, the same address");

        let banned = room.moderate(1, "gus", Sanction::Ban, 60, T);
        assert!(banned.iter().any(|e| matches!(e, Effect::Removed { conn: 3, .. })));
        let again = room.join(guest(5, "gus2", [10, 0, 0, 1]), usize::MAX, now, T + 1).0;
        assert_eq!(code(again), Some(ErrorCode::Banned), "another nick, the same address");
        assert!(room.join(guest(6, "gus3", [10, 0, 0, 2]), usize::MAX, now, T + 1).0.is_ok());
        assert!(
            room.join(guest(7, "gus", [10, 0, 0, 1]), usize::MAX, now, T + 3_600_001).0.is_ok()
        );
        // A moderator the operator revoked stops at once, without rejoining.
        let accounts = room.rules.registry.0.clone().expect("accounts");
        assert!(accounts.revoke_moderator("mod", None).expect("revoked").is_some());
        let late = room.moderate(4, "gus3", Sanction::Mute, 1, T);
        assert_eq!(error(&late), Some(ErrorCode::Forbidden));
    }

    /// A store that cannot be read (Redis away) refuses a guest's join as `unavailable`, to try
    /// again: not as `nick_taken`, which would send it to pick another nick for nothing.
    #[test]
    fn an_unreadable_store_refuses_guests_as_unavailable() {
        let rules = RoomRules { registry: registry(&["Ann"], "nobody"), ..rules() };
        let accounts = rules.registry.0.clone().expect("accounts");
        let mut room = RoomState::new("r".into(), rules);
        room.load(Loaded::default());
        assert!(room.join(signed(9, "Ann"), usize::MAX, Instant::now(), T).0.is_ok());
        accounts.close();
        // The owner, whose role cannot be read now, keeps the immunity she joined with.
        let kicked = room.remote_moderated("Ann", Sanction::Kick, "someone", None, T);
        assert!(!kicked.iter().any(|e| matches!(e, Effect::Removed { .. })), "{kicked:?}");
        let refused = room.join(request(1, Some("bob"), None), usize::MAX, Instant::now(), T).0;
        assert_eq!(code(refused), Some(ErrorCode::Unavailable));
        let unnamed = room.join(request(2, None, None), usize::MAX, Instant::now(), T).0;
        assert_eq!(code(unnamed), Some(ErrorCode::Unavailable), "no endless search for a name");
        // Nor is a signed-in member let in whose bans cannot be read.
        let ann = room.join(signed(3, "Ann"), usize::MAX, Instant::now(), T).0;
        assert_eq!(code(ann), Some(ErrorCode::Unavailable), "bans fail closed");
    }

    /// Bans and mutes are listed to moderators (only) and lifted by nick: a lifted mute lets
    /// the member send at once, a lifted ban lets it rejoin from the same address; lifting
    /// what is not there is `not_found`; a lifting from another server applies here too.
    #[test]
    fn bans_and_mutes_are_listed_and_lifted() {
        // The real time: the store forgets what ended by the clock.
        let t = crate::outbound::now_millis();
        let rules = RoomRules { registry: registry(&["Ann", "Bob"], "nobody"), ..rules() };
        let mut room = RoomState::new("r".into(), rules);
        room.load(Loaded::default());
        let now = Instant::now();
        let guest = |conn, nick: &str| guest_at(conn, nick, [10, 0, 0, 3]);
        for join in [signed(1, "Ann"), signed(2, "Bob"), guest(3, "gus")] {
            assert!(room.join(join, usize::MAX, now, t).0.is_ok());
        }
        // As the room's actor does: what the store keeps, it keeps (and the room then reads
        // it from there).
        let kept = |room: &mut RoomState, effects: Vec<Effect>| {
            for effect in &effects {
                if let Effect::Sanctioned(record) = effect {
                    room.keep_sanction(record);
                }
            }
            effects
        };
        let banned = room.moderate(1, "gus", Sanction::Ban, 60, t);
        kept(&mut room, banned);
        let muted = room.moderate(1, "Bob", Sanction::Mute, 10, t);
        kept(&mut room, muted);
        assert!(room.bans.is_empty() && room.mutes.is_empty(), "held by the store now");
        // The owner behind the same address as the banned guest is let in; a guest is not.
        room.leave(1, t);
        let owner = JoinRequest {
            address: Some(std::net::IpAddr::from([10, 0, 0, 3])),
            ..signed(1, "Ann")
        };
        assert!(room.join(owner, usize::MAX, now, t).0.is_ok(), "the owner");
        assert_eq!(
            code(room.join(guest(9, "other"), usize::MAX, now, t).0),
            Some(ErrorCode::Banned)
        );
        let listed = |room: &RoomState, conn| match room.sanctions(conn, t + 1).as_slice() {
            [Effect::Send { message: ServerMessage::Sanctions { sanctions, .. }, .. }] => {
                Ok(sanctions.iter().map(|s| (s.nick.clone(), s.action, s.until)).collect())
            }
            [Effect::Send { message: ServerMessage::Error { code, .. }, .. }] => Err(*code),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            listed(&room, 1),
            Ok(vec![
                ("Bob".to_owned(), Sanction::Mute, t + 600_000),
                ("gus".to_owned(), Sanction::Ban, t + 3_600_000)
            ])
        );
        assert_eq!(listed(&room, 2), Err(ErrorCode::Forbidden), "not a moderator");

        let error = |effects: &[Effect]| match effects {
            [Effect::Send { message: ServerMessage::Error { code, .. }, .. }] => Some(*code),
            _ => None,
        };
        assert_eq!(
            error(&room.moderate(2, "gus", Sanction::Unban, 1, t)),
            Some(ErrorCode::Forbidden)
        );
        let unmuted = room.moderate(1, "Bob", Sanction::Unmute, 1, t + 1);
        assert!(unmuted.iter().any(|e| matches!(
            e,
            Effect::Broadcast {
                message: ServerMessage::Moderated { action: Sanction::Unmute, until: None, .. },
                ..
            }
        )));
        assert!(unmuted.iter().any(|e| matches!(e, Effect::Audit(a) if a.action == "unmute")));
        let ids = MessageIds::starting_after(0);
        let post = room.post(2, "free".into(), None, &ids, t + 2, || true);
        assert!(matches!(post.as_slice(), [Effect::Store(_)]), "{post:?}");
        assert_eq!(
            code(room.join(guest(4, "gus2"), usize::MAX, now, t + 2).0),
            Some(ErrorCode::Banned)
        );
        assert!(error(&room.moderate(1, "gus", Sanction::Unban, 1, t + 2)).is_none());
        assert!(room.join(guest(4, "gus2"), usize::MAX, now, t + 3).0.is_ok(), "lifted");
        assert_eq!(
            error(&room.moderate(1, "gus", Sanction::Unban, 1, t + 3)),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(listed(&room, 1), Ok(vec![]));

        // Lifted on another server (which lifted it in the shared store): the room here
        // lets it in again.
        let banned = room.moderate(1, "gus2", Sanction::Ban, 60, t + 3);
        kept(&mut room, banned);
        assert_eq!(
            code(room.join(guest(5, "gus3"), usize::MAX, now, t + 4).0),
            Some(ErrorCode::Banned)
        );
        let accounts = room.rules.registry.0.clone().expect("accounts");
        assert!(accounts.lift_sanctions(Some("r"), "gus2", Sanction::Unban).expect("lifted"));
        let lifted = room.remote_moderated("gus2", Sanction::Unban, "Mod", None, t + 4);
        assert!(matches!(lifted.as_slice(), [Effect::Broadcast { .. }]));
        assert!(room.join(guest(5, "gus3"), usize::MAX, now, t + 4).0.is_ok());
    }

    /// The `sanctions` answer is bounded like every frame: the first
    /// [`MAX_LISTED_SANCTIONS`] by nick, however many are held.
    #[test]
    fn the_sanctions_answer_is_bounded() {
        let rules = RoomRules { registry: registry(&["Ann"], "nobody"), ..rules() };
        let mut room = RoomState::new("r".into(), rules);
        room.load(Loaded::default());
        assert!(room.join(signed(1, "Ann"), usize::MAX, Instant::now(), T).0.is_ok());
        let until = crate::outbound::now_millis() + 3_600_000;
        for n in 0..=MAX_LISTED_SANCTIONS {
            hold(&mut room.bans, &format!("addr:{n}"), until, &format!("g{n:04}"));
        }
        match room.sanctions(1, until - 3_600_000).as_slice() {
            [Effect::Send { message: ServerMessage::Sanctions { sanctions, .. }, .. }] => {
                assert_eq!(sanctions.len(), MAX_LISTED_SANCTIONS);
                assert_eq!(sanctions[0].nick, "g0000", "the first by nick");
            }
            other => panic!("{other:?}"),
        }
    }

    /// (`--redis`) A room made private on another server whose event was missed turns private
    /// here when it reads its privacy again: its guests leave, its signed-in people stay.
    #[test]
    fn a_missed_privacy_event_is_caught_up() {
        let rules = RoomRules { registry: registry(&["Ann"], "nobody"), ..rules() };
        let accounts = rules.registry.0.clone().expect("accounts");
        let mut room = RoomState::new("r".into(), rules);
        room.load(Loaded::default());
        let now = Instant::now();
        assert!(room.join(signed(1, "Ann"), usize::MAX, now, T).0.is_ok());
        assert!(room.join(request(2, Some("gus"), None), usize::MAX, now, T).0.is_ok());
        assert!(room.recheck_privacy(T).is_empty(), "nothing changed");
        accounts.set_private("r", true, &[], T).expect("made private elsewhere");
        let effects = room.recheck_privacy(T);
        assert!(effects.iter().any(|e| matches!(e, Effect::Privacy { private: true })));
        assert!(
            effects.iter().any(|e| matches!(e, Effect::Removed { conn: 2, .. })),
            "{effects:?}"
        );
        assert!(!effects.iter().any(|e| matches!(e, Effect::Removed { conn: 1, .. })));
        assert!(accounts.admits("r", "Ann", None).expect("read"), "kept as a member");
        assert!(room.recheck_privacy(T).is_empty(), "once");
    }

    /// Who names moderators and members, as a table: the owner names moderators, who may act
    /// at once and stop at once when taken away; the owner and moderators name the members of
    /// a private room (only a private room has members), and a member taken away leaves.
    #[test]
    fn owners_name_moderators_and_members() {
        let rules = RoomRules { registry: registry(&["Ann", "Bob", "Cy"], "nobody"), ..rules() };
        let mut room = RoomState::new("r".into(), rules);
        room.load(Loaded::default());
        let now = Instant::now();
        for join in [signed(1, "Ann"), signed(2, "Bob"), request(3, Some("gus"), None)] {
            assert!(room.join(join, usize::MAX, now, T).0.is_ok());
        }
        let error = |effects: &[Effect]| match effects {
            [Effect::Send { message: ServerMessage::Error { code, .. }, .. }] => Some(*code),
            _ => None,
        };
        let granted = |effects: &[Effect]| {
            effects.iter().find_map(|e| match e {
                Effect::Broadcast {
                    message: ServerMessage::Granted { nick, grant, revoke, by, .. },
                    ..
                } => Some((nick.clone(), *grant, *revoke, by.clone())),
                _ => None,
            })
        };
        let forbidden = Some(ErrorCode::Forbidden);
        assert_eq!(error(&room.grant(2, "Cy", Grant::Moderator, false, T)), forbidden);
        assert_eq!(error(&room.grant(3, "Cy", Grant::Moderator, false, T)), forbidden);
        assert_eq!(error(&room.grant(1, "Cy", Grant::Member, false, T)), forbidden, "public");
        assert_eq!(
            error(&room.grant(1, "zed", Grant::Moderator, false, T)),
            Some(ErrorCode::NotFound)
        );

        let made = room.grant(1, "bob", Grant::Moderator, false, T);
        assert_eq!(granted(&made), Some(("Bob".into(), Grant::Moderator, false, "Ann".into())));
        assert!(
            made.iter().any(|e| matches!(e, Effect::Audit(a) if a.action == "grant-moderator"))
        );
        let kicked = room.moderate(2, "gus", Sanction::Kick, 1, T);
        assert!(kicked.iter().any(|e| matches!(e, Effect::Removed { conn: 3, .. })), "at once");
        assert_eq!(error(&room.grant(2, "Cy", Grant::Moderator, false, T)), forbidden);
        assert!(granted(&room.grant(1, "Bob", Grant::Moderator, true, T)).is_some());
        assert!(room.join(request(4, Some("hal"), None), usize::MAX, now, T).0.is_ok());
        assert_eq!(error(&room.moderate(2, "hal", Sanction::Kick, 1, T)), forbidden, "at once");
        assert_eq!(
            error(&room.grant(1, "Bob", Grant::Moderator, true, T)),
            Some(ErrorCode::NotFound),
            "no longer one"
        );

        // Private: members by name, and taken away.
        assert!(matches!(room.configure(1, true, T).as_slice(), [Effect::Audit(_), ..]));
        assert_eq!(error(&room.grant(2, "Cy", Grant::Member, false, T)), forbidden, "no role");
        assert!(granted(&room.grant(1, "cy", Grant::Member, false, T)).is_some());
        assert!(room.join(signed(5, "Cy"), usize::MAX, now, T).0.is_ok(), "a member now");
        let removed = room.grant(1, "Cy", Grant::Member, true, T);
        assert!(
            removed.iter().any(|e| matches!(e, Effect::Removed { conn: 5, .. })),
            "{removed:?}"
        );
        let again = room.join(signed(6, "Cy"), usize::MAX, now, T).0;
        assert_eq!(code(again), forbidden);
        assert_eq!(error(&room.grant(1, "Cy", Grant::Member, true, T)), Some(ErrorCode::NotFound));
        // Taken away on another server: Bob (a member, made so by the room turning private)
        // leaves here.
        let elsewhere = room.remote_granted("Bob", Grant::Member, true, "Ann", T);
        assert!(elsewhere.iter().any(|e| matches!(e, Effect::Removed { conn: 2, .. })));
    }

    /// (`--redis`) Moderation across servers: a member on another server may be kicked or
    /// banned from here (the broadcast's event tells its server, and an account's ban is kept
    /// here as well, the event being sent at most once); a moderation event from another
    /// server removes or mutes the seats here, but not a moderator's. Other servers' members
    /// keep their signed-in marks.
    #[test]
    fn moderation_reaches_members_on_other_servers() {
        let rules = RoomRules { registry: registry(&["Ann", "Bob", "Mod"], "mod"), ..rules() };
        let mut room = RoomState::new("r".into(), rules);
        room.load(Loaded::default());
        let now = Instant::now();
        let guest = |conn, nick: &str| JoinRequest {
            client: Some("c3".into()),
            ..guest_at(conn, nick, [10, 0, 0, 1])
        };
        for join in [signed(1, "Ann"), signed(2, "Mod"), guest(3, "gus")] {
            assert!(room.join(join, usize::MAX, now, T).0.is_ok());
        }
        assert_eq!(room.local_tag("Ann"), "~", "signed in, no client id");
        assert_eq!(room.local_tag("gus"), client_tag("c3"));
        let joined = room.remote_joined("s2".into(), "Bob".into(), "~".into(), T);
        assert!(
            matches!(
                joined.as_slice(),
                [Effect::Broadcast { message: ServerMessage::Joined { signed_in: true, .. }, .. }]
            ),
            "{joined:?}"
        );
        room.remote_joined("s2".into(), "eve".into(), String::new(), T);
        let (_, signed_in) = room.member_lists();
        assert_eq!(signed_in, ["Ann", "Bob", "Mod"]);

        let banned = room.moderate(1, "Bob", Sanction::Ban, 60, T);
        let until = T + 3_600_000;
        assert!(
            banned.iter().any(|e| matches!(e, Effect::Sanctioned(r)
                if r.subject == "id:Bob" && r.until == until && r.action == Sanction::Ban)),
            "{banned:?}"
        );
        assert!(banned.iter().any(|e| matches!(e,
            Effect::Broadcast { message: ServerMessage::Moderated { nick, .. }, .. } if nick == "Bob")));
        assert!(!banned.iter().any(|e| matches!(e, Effect::Removed { .. })), "not here");
        let kicked = room.moderate(1, "eve", Sanction::Kick, 1, T);
        assert!(
            kicked.iter().any(|e| matches!(e, Effect::Broadcast {
                message: ServerMessage::Moderated { nick, action: Sanction::Kick, .. }, ..
            } if nick == "eve")),
            "{kicked:?}"
        );
        let nobody = room.moderate(1, "zed", Sanction::Kick, 1, T);
        assert!(matches!(
            nobody.as_slice(),
            [Effect::Send { message: ServerMessage::Error { code: ErrorCode::NotFound, .. }, .. }]
        ));

        // From another server: gus is removed here, Mod is not.
        let effects = room.remote_moderated("gus", Sanction::Ban, "Bob", Some(until), T);
        assert!(effects.iter().any(|e| matches!(e, Effect::Removed { conn: 3, .. })));
        assert!(effects.iter().any(|e| matches!(e, Effect::Sanctioned(_))));
        let again = room.join(guest(4, "gus2"), usize::MAX, now, T + 1).0;
        assert_eq!(code(again), Some(ErrorCode::Banned), "its address is held here");
        let spared = room.remote_moderated("Mod", Sanction::Kick, "Bob", None, T);
        assert!(
            matches!(spared.as_slice(), [Effect::Broadcast { .. }]),
            "told, not removed: {spared:?}"
        );
        let owner = room.remote_moderated("Ann", Sanction::Kick, "Mod", None, T);
        assert_eq!(owner.len(), 1, "the first signed-in joiner owns the room: {owner:?}");
        assert!(room.join(request(5, Some("hal"), None), usize::MAX, now, T).0.is_ok());
        let muted = room.remote_moderated("hal", Sanction::Mute, "Mod", Some(until), T);
        assert!(!muted.iter().any(|e| matches!(e, Effect::Removed { .. })));
        let ids = MessageIds::starting_after(0);
        let post = room.post(5, "hi".into(), None, &ids, T + 1, || true);
        assert!(matches!(
            post.as_slice(),
            [Effect::Send { message: ServerMessage::Error { code: ErrorCode::Muted, .. }, .. }]
        ));
    }

    /// The bound on a welcome holds for the longest: every field present, the largest `since`
    /// and count, the longest role and epoch, quotes to escape in the names.
    #[test]
    fn welcome_bound_covers_every_field() {
        let (room, nick, epoch) = ("r".repeat(32), "\"".repeat(32), "e".repeat(64));
        let welcome = ServerMessage::Welcome {
            room: room.clone(),
            nick: nick.clone(),
            members: vec![nick.clone()],
            signed_in: vec![nick.clone()],
            history: Vec::new(),
            rooms: vec![RoomInfo { name: room.clone(), members: u32::MAX }],
            since: Some(u64::MAX),
            truncated: true,
            more: true,
            epoch: epoch.clone(),
            role: Some(Role::Moderator),
            private: true,
        };
        let encoded = serde_json::to_string(&welcome).expect("encodes");
        let listed = [RoomInfo { name: room.clone(), members: u32::MAX }];
        let lists = lists_bytes(std::slice::from_ref(&nick), std::slice::from_ref(&nick), &listed);
        let bound = welcome_fixed_bytes(&room, &nick, &epoch) + lists;
        assert!(encoded.len() <= bound, "{} > {bound}: {encoded}", encoded.len());
    }

    /// A nick that looks like a member's is taken; another client's token does not help; a
    /// newcomer without a nick gets a generated one.
    #[test]
    fn nicks_are_unique_by_looks() {
        let mut room = room();
        let now = Instant::now();
        room.join(request(1, Some("alice"), Some("tab-1")), usize::MAX, now, T).0.expect("first");
        for (conn, nick) in [(2, "ALICE"), (3, "\u{430}lice"), (4, "AIice")] {
            let (joined, effects) =
                room.join(request(conn, Some(nick), Some("tab-2")), usize::MAX, now, T);
            assert_eq!(code(joined), Some(ErrorCode::NickTaken), "{nick}");
            assert!(effects.is_empty(), "a refused join changes nothing");
        }
        let (joined, _) = room.join(request(5, None, None), usize::MAX, now, T);
        assert_eq!(joined.map(|j| j.nick), Ok("guest-5".to_owned()));
    }

    /// A nick that looks like two members at once is refused even when one of them is the
    /// joiner itself: `aiice` cannot rename to `AIice`, which passes for `Alice`.
    #[test]
    fn a_rename_may_not_look_like_anyone_else() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "Alice", now);
        enter(&mut room, 2, "aiice", now);
        let (refused, _) = room.join(request(2, Some("AIice"), None), usize::MAX, now, T);
        assert_eq!(code(refused), Some(ErrorCode::NickTaken));
    }

    /// A newer connection with the same client token takes the seat at once: the old one is
    /// told it was replaced, and nobody sees a leave or a join.
    #[test]
    fn the_same_client_takes_over_its_seat() {
        let mut room = room();
        let now = Instant::now();
        room.join(request(1, Some("kim"), Some("tab")), usize::MAX, now, T).0.expect("first");
        let (joined, effects) = room.join(request(2, Some("kim"), Some("tab")), usize::MAX, now, T);
        assert_eq!(joined, Ok(Joined { nick: "kim".into(), replaced: vec![1] }));
        assert!(effects.contains(&Effect::Replaced { conn: 1 }));
        assert!(broadcasts(&effects).is_empty(), "no leave, no join");
        assert!(!room.is_member(1) && room.is_member(2));
    }

    /// A takeover under a nick written differently (`kim` as `Kim`), or one that takes two
    /// seats at once, tells the others what changed: each nick that is gone leaves, the new
    /// one joins, so their member lists stay true.
    #[test]
    fn a_takeover_that_changes_the_nick_is_announced() {
        let announced = |effects: &[Effect]| -> Vec<(&'static str, String)> {
            broadcasts(effects)
                .into_iter()
                .map(|(message, _)| match message {
                    ServerMessage::Left { nick, .. } => ("left", nick.clone()),
                    ServerMessage::Joined { nick, .. } => ("joined", nick.clone()),
                    other => panic!("unexpected {other:?}"),
                })
                .collect()
        };
        let mut room = room();
        let now = Instant::now();
        room.join(request(1, Some("kim"), Some("tab")), usize::MAX, now, T).0.expect("first");
        let (_, effects) = room.join(request(2, Some("Kim"), Some("tab")), usize::MAX, now, T);
        assert_eq!(announced(&effects), [("left", "kim".into()), ("joined", "Kim".into())]);

        let mut room = super::tests::room();
        room.join(request(1, Some("Alice"), Some("tab")), usize::MAX, now, T).0.expect("first");
        room.join(request(2, Some("aiice"), Some("tab")), usize::MAX, now, T).0.expect("second");
        // `AIice` looks like both.
        let (joined, effects) =
            room.join(request(3, Some("AIice"), Some("tab")), usize::MAX, now, T);
        assert_eq!(joined.map(|j| j.replaced.len()), Ok(2));
        let mut told = announced(&effects);
        told[..2].sort();
        assert_eq!(
            told,
            [("left", "Alice".into()), ("left", "aiice".into()), ("joined", "AIice".into())]
        );
        assert_eq!(room.member_lists().0, ["AIice"]);
    }

    /// A history page holds at most the page size (100 here), whatever `limit` asks for.
    #[test]
    fn a_history_page_is_at_most_the_page_size() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "ann", now);
        let ids = MessageIds::starting_after(0);
        for i in 0..150 {
            let _ = room.post(1, format!("m{i}"), None, &ids, T, || true);
        }
        room.durable(150);
        let request = PageRequest { limit: Some(1_000), ..PageRequest::default() };
        let (page, more) = room.page(request, usize::MAX, T);
        assert_eq!((page.len(), more), (100, true));
        let (page, _) = room.page(PageRequest::default(), usize::MAX, T);
        assert_eq!(page.len(), 100);
    }

    /// A rename is announced as a leave and a join; a second one within the interval is
    /// refused with a retry hint and changes nothing; after the interval it works.
    #[test]
    fn renames_are_announced_and_spaced() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "ann", now);
        let effects = enter(&mut room, 1, "anna", now);
        let kinds: Vec<_> = broadcasts(&effects)
            .into_iter()
            .map(|(message, except)| match message {
                ServerMessage::Left { nick, .. } => ("left", nick.clone(), except),
                ServerMessage::Joined { nick, .. } => ("joined", nick.clone(), except),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, [("left", "ann".into(), None), ("joined", "anna".into(), Some(1))]);
        let soon = now + Duration::from_millis(500);
        let (refused, effects) = room.join(request(1, Some("annie"), None), usize::MAX, soon, T);
        let refused = refused.expect_err("too soon");
        assert_eq!((refused.code, refused.retry_after_ms), (ErrorCode::RateLimited, Some(1_500)));
        assert!(effects.is_empty());
        enter(&mut room, 1, "annie", now + Duration::from_secs(2));
    }

    /// A refused rename keeps the member as it was: its nick, its seat.
    #[test]
    fn a_refused_rename_keeps_the_member() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "ann", now);
        enter(&mut room, 2, "bob", now);
        let (refused, _) = room.join(request(1, Some("BOB"), None), usize::MAX, now, T);
        assert_eq!(code(refused), Some(ErrorCode::NickTaken));
        assert!(room.is_member(1));
        let (left, effects) = room.leave(2, T);
        assert!(left);
        let ids = MessageIds::starting_after(0);
        let effects2 = room.post(1, "still here".into(), None, &ids, T, || true);
        assert!(
            matches!(effects2.as_slice(), [Effect::Store(stored)] if stored.message.from == "ann")
        );
        assert!(matches!(
            broadcasts(&effects).as_slice(),
            [(ServerMessage::Left { nick, .. }, None)] if nick == "bob"
        ));
    }

    /// Until its history is loaded a room refuses joins with `unavailable`.
    #[test]
    fn an_unloaded_room_refuses_joins() {
        let mut room = RoomState::new("r".into(), rules());
        let (joined, effects) =
            room.join(request(1, Some("a"), None), usize::MAX, Instant::now(), T);
        assert_eq!(code(joined), Some(ErrorCode::Unavailable));
        assert!(effects.is_empty());
    }

    /// A message goes to the store first; once durable, its sender is acknowledged and then
    /// the room gets it, in id order. A repeat of its client id while it waits is
    /// acknowledged with it, once stored is acknowledged again, and never stored twice.
    #[test]
    fn delivery_acknowledges_then_relays_once_durable() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "ann", now);
        let ids = MessageIds::starting_after(40);
        let effects = room.post(1, "hi".into(), Some("c1".into()), &ids, T, || true);
        let [Effect::Store(stored)] = effects.as_slice() else { panic!("{effects:?}") };
        assert_eq!(stored.message.id, 41);
        let repeat = room.post(1, "hi".into(), Some("c1".into()), &ids, T, || true);
        assert_eq!(repeat, [Effect::Count(Counted::Duplicate)], "waits with the original");

        let effects = room.durable(41);
        let ack = ServerMessage::Ack { client_id: "c1".into(), id: 41, room: "r".into() };
        assert_eq!(sent_to(&effects, 1), [&ack, &ack], "both sends are acknowledged");
        let relayed: Vec<_> = broadcasts(&effects);
        assert!(matches!(relayed.as_slice(), [(ServerMessage::Message(m), None)] if m.id == 41));
        assert!(matches!(effects.last(), Some(Effect::Broadcast { .. })), "ack before relay");

        let again = room.post(1, "hi".into(), Some("c1".into()), &ids, T, || true);
        assert_eq!(sent_to(&again, 1), [&ack]);
        assert_eq!(ids.next(), 42, "no id spent on repeats");
    }

    /// A room on the shared log (`--redis`).
    fn shared_room() -> RoomState {
        let mut room = RoomState::new("r".into(), rules());
        room.load_shared(Loaded::default(), String::new());
        room
    }

    /// What the shared log hands back for a post: the message under its id in the room.
    fn from_log(stored: &Stored, id: MessageId) -> Stored {
        let mut stored = stored.clone();
        stored.message.id = id;
        stored
    }

    /// With `--redis`, a post is acknowledged once, before its message is relayed, whichever
    /// of the log's answer and the follower's copy comes first; the message is relayed only
    /// when the follower hands it on (in the room's order), under the log's id.
    #[test]
    fn a_shared_post_is_acknowledged_once_before_it_is_relayed() {
        let now = Instant::now();
        let ids = MessageIds::starting_after(500);
        let ack = |id| ServerMessage::Ack { client_id: "c1".into(), id, room: "r".into() };
        // The log answers first.
        let mut room = shared_room();
        enter(&mut room, 1, "ann", now);
        let effects = room.post(1, "hi".into(), Some("c1".into()), &ids, T, || true);
        let [Effect::Store(stored)] = effects.as_slice() else { panic!("{effects:?}") };
        let stored = stored.clone();
        let answered = room.posted(stored.message.id, 7);
        assert_eq!(answered, [Effect::Send { to: 1, message: ack(7) }]);
        let relayed = room.followed(from_log(&stored, 7));
        assert!(sent_to(&relayed, 1).is_empty(), "acknowledged once");
        assert!(
            matches!(broadcasts(&relayed)[..], [(ServerMessage::Message(m), None)] if m.id == 7)
        );
        // The follower's copy comes first.
        let mut room = shared_room();
        enter(&mut room, 1, "ann", now);
        let effects = room.post(1, "hi".into(), Some("c1".into()), &ids, T, || true);
        let [Effect::Store(stored)] = effects.as_slice() else { panic!("{effects:?}") };
        let stored = stored.clone();
        let relayed = room.followed(from_log(&stored, 7));
        assert_eq!(relayed.first(), Some(&Effect::Send { to: 1, message: ack(7) }));
        assert!(matches!(relayed.last(), Some(Effect::Broadcast { .. })), "ack before relay");
        assert!(room.posted(stored.message.id, 7).is_empty(), "acknowledged once");
        // A repeat of a relayed client id is acknowledged here without the log.
        let again = room.post(1, "hi".into(), Some("c1".into()), &ids, T, || true);
        assert_eq!(sent_to(&again, 1), [&ack(7)]);
        // A copy handed on twice is relayed once.
        assert!(broadcasts(&room.followed(from_log(&stored, 7))).is_empty());
    }

    /// With `--redis`, the room takes its epoch from its first message; a new one (Redis lost
    /// the room) forgets the history and tells every member (`reset`, then a fresh welcome),
    /// and a joiner with the old epoch gets a reset too.
    #[test]
    fn a_shared_room_takes_its_epoch_and_starts_over_on_a_new_one() {
        let now = Instant::now();
        let mut room = shared_room();
        enter(&mut room, 1, "ann", now);
        room.adopt_epoch("e1".into());
        let message = ChatMessage {
            id: 1,
            room: "r".into(),
            from: "ann".into(),
            text: "old".into(),
            ts: T,
            bot: false,
            signed_in: false,
            ..Default::default()
        };
        room.followed(Stored { message: message.clone(), client_id: None });
        room.adopt_epoch("ignored".into());
        assert_eq!(room.epoch(), "e1", "an epoch is adopted once; another comes as a reset");
        let kept = ChatMessage { text: "kept".into(), ..message };
        let loaded =
            Loaded { messages: vec![Stored { message: kept, client_id: None }], trimmed_upto: 0 };
        let effects = room.reset(loaded, "e2".into());
        let sent = sent_to(&effects, 1);
        assert!(matches!(sent[0], ServerMessage::Reset { epoch, .. } if epoch == "e2"));
        assert!(matches!(
            sent[1],
            ServerMessage::Welcome { history, epoch, since: None, .. }
                if history.len() == 1 && history[0].text == "kept" && epoch == "e2"
        ));
        let mut join = request(2, Some("bob"), None);
        (join.since, join.epoch) = (Some(1), Some("e1".into()));
        let (_, effects) = room.join(join, usize::MAX, now, T);
        assert!(matches!(sent_to(&effects, 2)[0], ServerMessage::Reset { .. }));
    }

    /// With `--redis`, members on other servers are in the welcome's list and hold their nick
    /// (by looks), except against a newer connection of the same client; presence reads and
    /// events tell the members here of every change once.
    #[test]
    fn members_on_other_servers_count() {
        let now = Instant::now();
        let mut room = shared_room();
        enter(&mut room, 1, "ann", now);
        let effects = room.remote_joined("s2".into(), "bob".into(), client_tag("tb"), T);
        assert!(
            matches!(broadcasts(&effects)[..], [(ServerMessage::Joined { nick, .. }, None)] if nick == "bob")
        );
        assert!(room.remote_joined("s2".into(), "bob".into(), client_tag("tb"), T).is_empty());
        let (joined, _) = room.join(request(2, Some("B0B"), Some("other")), usize::MAX, now, T);
        assert_eq!(code(joined), Some(ErrorCode::NickTaken), "looks like bob elsewhere");
        let (joined, effects) = room.join(request(2, Some("cy"), None), usize::MAX, now, T);
        assert!(joined.is_ok());
        let welcome = sent_to(&effects, 2);
        assert!(
            matches!(welcome[..], [ServerMessage::Welcome { members, .. }] if members == &["ann", "bob", "cy"])
        );
        // Bob's client comes here: it takes the seat, and nobody is told of a leave and a join;
        // the other servers are.
        let (joined, effects) = room.join(request(3, Some("bob"), Some("tb")), usize::MAX, now, T);
        assert!(joined.is_ok());
        assert!(broadcasts(&effects).is_empty(), "{effects:?}");
        assert!(effects.contains(&Effect::SeatTakenOver { nick: "bob".into() }));
        // Presence: dan arrived elsewhere, nobody left (bob is here now).
        let others = vec![("s2".into(), "dan".into(), String::new())];
        let effects = room.remote_members(others, T);
        assert!(
            matches!(broadcasts(&effects)[..], [(ServerMessage::Joined { nick, .. }, None)] if nick == "dan")
        );
        // The other server died: dan leaves every list.
        let effects = room.remote_members(Vec::new(), T);
        assert!(
            matches!(broadcasts(&effects)[..], [(ServerMessage::Left { nick, .. }, None)] if nick == "dan")
        );
        assert!(room.remote_left("s2", "dan", T).is_empty(), "told once");
        // A member here whose client joined elsewhere is replaced.
        let effects = room.remote_joined("s3".into(), "ann".into(), String::new(), T);
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Replaced { .. })),
            "no tag, no takeover"
        );
        let effects = room.remote_joined("s3".into(), "bob".into(), client_tag("tb"), T);
        assert!(effects.contains(&Effect::Replaced { conn: 3 }));
        assert!(broadcasts(&effects).is_empty(), "bob is still in the room, elsewhere");
        // A member here whose nick is also held elsewhere leaves without a `left`.
        room.remote_joined("s3".into(), "cy".into(), String::new(), T);
        let (was_member, effects) = room.leave(2, T);
        assert!(was_member && broadcasts(&effects).is_empty(), "{effects:?}");
    }

    /// A client id names a message together with its sender: the same id from someone else
    /// is another message.
    #[test]
    fn client_ids_belong_to_their_sender() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "ann", now);
        enter(&mut room, 2, "bob", now);
        let ids = MessageIds::starting_after(0);
        room.post(1, "from ann".into(), Some("same".into()), &ids, T, || true);
        let effects = room.post(2, "from bob".into(), Some("same".into()), &ids, T, || true);
        assert!(matches!(effects.as_slice(), [Effect::Store(stored)] if stored.message.id == 2));
    }

    /// A message the store could not write is refused to its sender, naming its client id,
    /// and is not relayed when later ones become durable.
    #[test]
    fn messages_not_stored_are_refused() {
        let mut room = room();
        enter(&mut room, 1, "ann", Instant::now());
        let ids = MessageIds::starting_after(0);
        room.post(1, "lost".into(), Some("c1".into()), &ids, T, || true);
        room.post(1, "kept".into(), Some("c2".into()), &ids, T, || true);
        let effects = room.not_stored(&[1]);
        assert!(matches!(
            sent_to(&effects, 1).as_slice(),
            [ServerMessage::Error { code: ErrorCode::Unavailable, client_id: Some(id), .. }] if id == "c1"
        ));
        let relayed = room.durable(2);
        assert!(matches!(
            broadcasts(&relayed).as_slice(),
            [(ServerMessage::Message(m), None)] if m.text == "kept"
        ));
    }

    /// A room's first message claims a place among the rooms the database holds once, and
    /// gives it back if it is not stored, so failed writes do not use the places up.
    #[test]
    fn a_first_message_not_stored_gives_its_place_back() {
        let mut room = room();
        enter(&mut room, 1, "ann", Instant::now());
        let ids = MessageIds::starting_after(0);
        let claims = std::cell::Cell::new(0);
        let claim = || {
            claims.set(claims.get() + 1);
            true
        };
        room.post(1, "first".into(), Some("c1".into()), &ids, T, claim);
        room.post(1, "again".into(), Some("c2".into()), &ids, T, claim);
        assert_eq!(claims.get(), 1, "claimed once");
        let effects = room.not_stored(&[1]);
        assert!(!effects.contains(&Effect::ReleaseStoredRoom), "message 2 still waits");
        let effects = room.not_stored(&[2]);
        assert!(effects.contains(&Effect::ReleaseStoredRoom));
        room.post(1, "retry".into(), Some("c1".into()), &ids, T, claim);
        assert_eq!(claims.get(), 2, "claimed again for the retry");
    }

    /// One client's connections holding two look-alike seats are all replaced by a newer
    /// connection of that client, not one of them.
    #[test]
    fn a_takeover_replaces_every_seat_of_the_client() {
        let mut room = room();
        let now = Instant::now();
        room.join(request(1, Some("Alice"), Some("tab")), usize::MAX, now, T).0.expect("first");
        room.join(request(2, Some("aiice"), Some("tab")), usize::MAX, now, T).0.expect("second");
        let (joined, effects) =
            room.join(request(3, Some("AIice"), Some("tab")), usize::MAX, now, T);
        let mut replaced = joined.expect("takes over").replaced;
        replaced.sort_unstable();
        assert_eq!(replaced, [1, 2]);
        assert!(effects.contains(&Effect::Replaced { conn: 1 }));
        assert!(effects.contains(&Effect::Replaced { conn: 2 }));
        assert!(!room.is_member(1) && !room.is_member(2) && room.is_member(3));
    }

    /// With the database full of rooms, a room without messages refuses its first one;
    /// a room with messages goes on.
    #[test]
    fn a_full_database_refuses_new_rooms_only() {
        let mut room = room();
        enter(&mut room, 1, "ann", Instant::now());
        let ids = MessageIds::starting_after(0);
        let refused = room.post(1, "first".into(), Some("c1".into()), &ids, T, || false);
        assert!(matches!(
            sent_to(&refused, 1).as_slice(),
            [ServerMessage::Error { code: ErrorCode::TooManyRooms, .. }]
        ));
        room.post(1, "first".into(), None, &ids, T, || true);
        room.durable(1);
        let effects = room.post(1, "second".into(), None, &ids, T, || false);
        assert!(matches!(effects.as_slice(), [Effect::Store(_)]));
    }

    /// Typing reaches the others at most once per interval, never the typist.
    #[test]
    fn typing_is_relayed_once_per_interval() {
        let mut room = room();
        let now = Instant::now();
        enter(&mut room, 1, "ann", now);
        assert!(matches!(
            room.typing(1, now, T).as_slice(),
            [Effect::Broadcast { message: ServerMessage::Typing { .. }, except: Some(1) }]
        ));
        assert_eq!(
            room.typing(1, now + Duration::from_secs(1), T),
            [Effect::Count(Counted::TypingDropped)]
        );
        assert_eq!(room.typing(1, now + TYPING_INTERVAL, T).len(), 1);
        assert!(room.typing(9, now, T).is_empty(), "not a member");

        // A muted member's typing reaches no one: it would be a way to keep talking.
        enter(&mut room, 2, "bob", now);
        room.members.get_mut(&2).expect("bob").muted_until = Some(T + 60_000);
        assert_eq!(room.typing(2, now, T), [Effect::Count(Counted::TypingDropped)]);
        assert_eq!(room.typing(2, now + TYPING_INTERVAL, T + 60_000).len(), 1, "once it ends");
    }

    /// The welcome's member and room lists count against its page: with many members, fewer
    /// messages come in the welcome (and `more` says the rest follow), so the frame stays
    /// within the page size.
    #[test]
    fn the_welcome_stays_within_its_page() {
        let mut rules = rules();
        rules.page_bytes = 2_000;
        let mut room = RoomState::new("r".into(), rules);
        room.load(Loaded::default());
        let now = Instant::now();
        let ids = MessageIds::starting_after(0);
        enter(&mut room, 1, "writer", now);
        for i in 0..20 {
            room.post(1, format!("message {i:02} {}", "x".repeat(40)), None, &ids, T, || true);
        }
        room.durable(20);
        for conn in 2..40 {
            enter(&mut room, conn, &format!("member-with-a-long-nick-{conn:02}"), now);
        }
        let mut back = request(99, Some("late"), None);
        back.since = Some(0);
        let (_, effects) = room.join(back, usize::MAX, now, T);
        let [welcome] = sent_to(&effects, 99)[..] else { panic!("one welcome") };
        let frame = serde_json::to_string(welcome).expect("encodes");
        assert!(frame.len() <= 2_000, "a welcome of {} bytes", frame.len());
        assert!(matches!(welcome, ServerMessage::Welcome { more: true, .. }), "the rest follow");
    }

    /// The welcome also fits beside what already waits for the joiner (its other rooms'
    /// welcomes): with little space left, it carries fewer messages and says more exist.
    #[test]
    fn the_welcome_fits_beside_what_waits() {
        let mut room = room();
        let now = Instant::now();
        let ids = MessageIds::starting_after(0);
        enter(&mut room, 1, "writer", now);
        for i in 0..50 {
            room.post(1, format!("message {i:02} {}", "x".repeat(200)), None, &ids, T, || true);
        }
        room.durable(50);
        for (conn, space) in [(2, usize::MAX), (3, 3_000), (4, 700)] {
            let (_, effects) =
                room.join(request(conn, Some(&format!("n{conn}")), None), space, now, T);
            let [welcome] = sent_to(&effects, conn)[..] else { panic!("one welcome") };
            let frame = serde_json::to_string(welcome).expect("encodes");
            let ServerMessage::Welcome { history, truncated, .. } = welcome else { panic!() };
            match space {
                usize::MAX => assert_eq!(history.len(), 50, "the whole history fits the page"),
                3_000 => assert!(!history.is_empty() && *truncated, "some, and older exist"),
                _ => assert!(history.is_empty() && *truncated, "none fits: all left out"),
            }
            assert!(frame.len() <= space, "a welcome of {} bytes in {space}", frame.len());
        }
    }

    /// A room where `ann` (connection 1) stored `n` messages, `m0` on.
    fn with_stored(n: u64, now: Instant) -> RoomState {
        let mut room = room();
        enter(&mut room, 1, "ann", now);
        let ids = MessageIds::starting_after(0);
        for i in 0..n {
            room.post(1, format!("m{i}"), None, &ids, T, || true);
        }
        room.durable(n);
        room
    }

    /// A `since` from another epoch (the store started over since the client saw it) is not
    /// honoured: the joiner is told to reset, then welcomed afresh; a `since` of this epoch
    /// (or one with no epoch, from an older client) resumes.
    #[test]
    fn a_since_of_another_epoch_resets() {
        let now = Instant::now();
        let mut room = with_stored(5, now);
        let join = |conn, epoch: Option<&str>| {
            let mut back = request(conn, Some(&format!("n{conn}")), None);
            (back.since, back.epoch) = (Some(3), epoch.map(str::to_owned));
            back
        };
        let (_, effects) = room.join(join(2, Some("old")), usize::MAX, now, T);
        match sent_to(&effects, 2).as_slice() {
            [
                ServerMessage::Reset { epoch, .. },
                ServerMessage::Welcome { since: None, history, .. },
            ] => {
                assert_eq!((epoch.as_str(), history.len()), ("e1", 5), "afresh: all of the room");
            }
            other => panic!("expected a reset, then a welcome, got {other:?}"),
        }
        for (conn, epoch) in [(3, Some("e1")), (4, None)] {
            let (_, effects) = room.join(join(conn, epoch), usize::MAX, now, T);
            assert!(
                matches!(sent_to(&effects, conn).as_slice(), [ServerMessage::Welcome { since: Some(3), epoch, .. }] if epoch == "e1"),
                "{epoch:?} resumes"
            );
        }
    }

    /// A catch-up resumes after `since` with what was stored, and a history page answers
    /// members only.
    #[test]
    fn catch_up_and_pages() {
        let now = Instant::now();
        let mut room = with_stored(5, now);
        let mut back = request(2, Some("bob"), None);
        back.since = Some(3);
        let (_, effects) = room.join(back, usize::MAX, now, T);
        match sent_to(&effects, 2).as_slice() {
            [ServerMessage::Welcome { history, since, more, .. }] => {
                let got: Vec<MessageId> = history.iter().map(|m| m.id).collect();
                assert_eq!((got, *since, *more), (vec![4, 5], Some(3), false));
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
        let request = PageRequest { before: Some(3), after: None, limit: Some(1) };
        let page = room.history_page(2, request, usize::MAX, T);
        assert!(matches!(
            sent_to(&page, 2).as_slice(),
            [ServerMessage::History { messages, more: true, .. }] if messages[0].id == 2
        ));
        assert!(
            room.history_page(9, PageRequest::default(), usize::MAX, T).is_empty(),
            "not a member"
        );
    }
}
