//! Editing and deleting against the binary: an author edits and deletes their own messages,
//! the room's owner and the server's moderators (named with `server admin grant-moderator`)
//! delete anyone's, everyone sees it live, and history, catch-up after `since` and a restart
//! all show the edit and the tombstone; every moderation action is in the audit log.

mod common;

use std::process::Command;

use common::{Running, request};
use protocol::{ErrorCode, Role, Sanction, ServerMessage};
use serde_json::json;
use testclient::{Client, url};

const PASSWORD: &str = "correct horse battery";

/// Registers `nick`; the session cookie (`chat_session=...`).
fn register(address: &str, nick: &str) -> String {
    let origin = format!("http://{address}");
    let headers = [("Origin", origin.as_str()), ("Content-Type", "application/json")];
    let body = json!({"nick": nick, "password": PASSWORD}).to_string();
    let answer = request(address, "POST", "/account/register", &headers, &body);
    assert_eq!(answer.status, 201, "{answer:?}");
    let cookie = answer.header("set-cookie").expect("cookie");
    cookie.split(';').next().expect("the pair").to_owned()
}

async fn signed_in(address: &str, cookie: &str, query: &str) -> (Client, testclient::Welcome) {
    let origin = format!("http://{address}");
    let headers = [("Origin", origin.as_str()), ("Cookie", cookie)];
    let mut client = Client::open_with(&url(address, query), &headers).await.expect("connected");
    let welcome = client.welcome().await;
    (client, welcome)
}

fn admin(data: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--data-dir")
        .arg(data)
        .arg("admin")
        .args(args)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The next amendment a client sees: (its id, the message it amends, its text, deleted).
async fn amendment(client: &mut Client) -> (u64, u64, String, bool) {
    client
        .recv_until(|m| match m {
            ServerMessage::Message(m) if m.amends.is_some() => {
                Some((m.id, m.amends.unwrap_or_default(), m.text, m.deleted))
            }
            _ => None,
        })
        .await
}

fn edit(room: &str, id: u64, text: &str, client_id: &str) -> String {
    json!({"type": "edit", "room": room, "id": id, "text": text, "client_id": client_id})
        .to_string()
}

fn delete(room: &str, id: u64) -> String {
    json!({"type": "delete", "room": room, "id": id}).to_string()
}

/// The audit log once it holds `line` (within the deadline).
async fn audit_log_with(data: &std::path::Path, line: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = admin(data, &["audit-log"]);
        if log.contains(line) {
            return log;
        }
        assert!(std::time::Instant::now() < deadline, "no {line:?} in {log}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_edit_moderators_delete_and_history_keeps_tombstones() {
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (ann, bob, mo) =
        (register(&address, "ann"), register(&address, "bob"), register(&address, "mo"));
    admin(data.path(), &["grant-moderator", "MO"]);

    // Ann is first in the empty room, signed in: she owns it. Mo moderates every room.
    let (mut ann, welcome) = signed_in(&address, &ann, "room=club").await;
    assert_eq!(welcome.role, Some(Role::Owner));
    let (mut bob, welcome) = signed_in(&address, &bob, "room=club").await;
    assert_eq!(welcome.role, None);
    let (mut mo, welcome) = signed_in(&address, &mo, "room=club").await;
    assert_eq!(welcome.role, Some(Role::Moderator));
    let (mut gus, _) = Client::join(&url(&address, "room=club&nick=gus")).await;

    bob.say("frist").await;
    let bobs = gus.message().await.id;
    gus.say("buy cheap watches").await;
    let spam = bob
        .recv_until(|m| match m {
            ServerMessage::Message(m) if m.text == "buy cheap watches" => Some(m.id),
            _ => None,
        })
        .await;

    // Bob fixes his typo: acknowledged (under the edit's own id, once however often it is
    // sent), and everyone sees the new text for his message.
    bob.send_text(&edit("club", bobs, "first", "e-1")).await;
    let (_, edit_id) = bob.ack().await;
    bob.send_text(&edit("club", bobs, "first", "e-1")).await;
    assert_eq!(bob.ack().await.1, edit_id, "a repeated edit is the same edit");
    for client in [&mut ann, &mut gus] {
        assert_eq!(amendment(client).await, (edit_id, bobs, "first".to_owned(), false));
    }

    // The guest may not touch anyone's message, nor an unknown one.
    for (frame, expected) in [
        (delete("club", bobs), ErrorCode::Forbidden),
        (edit("club", spam, "fine", "e-2"), ErrorCode::Forbidden),
        (delete("club", 9_999), ErrorCode::NotFound),
    ] {
        gus.send_text(&frame).await;
        assert_eq!(gus.error_skipping().await, expected, "{frame}");
    }
    // Bob may not delete the guest's message; the moderator may.
    bob.send_text(&delete("club", spam)).await;
    assert_eq!(bob.error_skipping().await, ErrorCode::Forbidden);
    mo.send_text(&delete("club", spam)).await;
    let (deletion, target, text, deleted) = amendment(&mut ann).await;
    assert_eq!((target, text.as_str(), deleted), (spam, "", true));
    let metrics = request(&address, "GET", "/metrics", &[], "").body;
    assert!(metrics.contains("chat_moderation_actions_total{reason=\"delete\"} 1"), "{metrics}");

    // Someone coming back after Bob's first message gets both changes, in order; a newcomer
    // sees the edit and the tombstone in place.
    let (_, welcome) =
        Client::join(&url(&address, &format!("room=club&nick=late&since={bobs}"))).await;
    let ids: Vec<u64> = welcome.history.iter().map(|m| m.id).collect();
    assert_eq!(ids, [spam, edit_id, deletion]);
    let shown = |history: &[protocol::ChatMessage]| -> Vec<(String, bool, bool)> {
        history
            .iter()
            .filter(|m| m.amends.is_none())
            .map(|m| (m.text.clone(), m.edited, m.deleted))
            .collect()
    };
    let expected = [("first".to_owned(), true, false), (String::new(), false, true)];
    let (_, welcome) = Client::join(&url(&address, "room=club&nick=new")).await;
    assert_eq!(shown(&welcome.history), expected);

    // Kept off the room's thread: polled for.
    let deleted = format!("mo\tdelete\tclub\tmessage {spam} by gus");
    let log = audit_log_with(data.path(), &deleted).await;
    assert!(log.contains("admin\tgrant-moderator\t*\tmo"), "{log}");

    // After a restart, from the database.
    drop(server);
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let (_, welcome) = Client::join(&url(server.address(), "room=club&nick=again")).await;
    assert_eq!(shown(&welcome.history), expected);
}

/// The next `moderated` a client sees: who, what, by whom, until when.
async fn told(client: &mut Client) -> (String, protocol::Sanction, String, Option<u64>) {
    client
        .recv_until(|m| match m {
            ServerMessage::Moderated { nick, action, by, until, .. } => {
                Some((nick, action, by, until))
            }
            _ => None,
        })
        .await
}

/// A moderator mutes, kicks and bans over the wire: the room is told each time; a muted guest
/// cannot send; a kicked or banned one is closed with 4005; a ban holds against the guest's
/// next connection under another nick, and across a restart of the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_kick_and_ban_hold() {
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let olga = register(&address, "olga");
    let (mut olga, welcome) = signed_in(&address, &olga, "room=den").await;
    assert_eq!(welcome.role, Some(Role::Owner));
    let (mut troll, _) = Client::join(&url(&address, "room=den&nick=troll")).await;
    let moderate = |action: &str, minutes: u32| {
        json!({"type": "moderate", "room": "den", "nick": "troll", "action": action, "minutes": minutes})
            .to_string()
    };

    troll.send_text(&moderate("ban", 5)).await;
    assert_eq!(troll.error_skipping().await, ErrorCode::Forbidden, "a guest moderates nothing");
    olga.send_text(&moderate("mute", 5)).await;
    let (nick, action, by, until) = told(&mut troll).await;
    assert_eq!((nick.as_str(), action, by.as_str()), ("troll", protocol::Sanction::Mute, "olga"));
    assert!(until.is_some());
    troll.say("still talking").await;
    assert_eq!(troll.error_skipping().await, ErrorCode::Muted);

    assert_eq!(told(&mut olga).await.1, protocol::Sanction::Mute, "olga saw the mute too");
    olga.send_text(&moderate("ban", 60)).await;
    assert_eq!(told(&mut olga).await.1, protocol::Sanction::Ban);
    let closed = troll.closed().await.expect("a close frame");
    assert_eq!(u16::from(closed.code), protocol::close::REMOVED);
    assert_eq!(closed.reason.as_str(), "olga banned you from #den");
    let mut back = Client::connect(&url(&address, "room=den&nick=troll2")).await;
    assert_eq!(back.error_skipping().await, ErrorCode::Banned, "the same address, another nick");

    drop(server);
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let mut back = Client::connect(&url(server.address(), "room=den&nick=troll3")).await;
    assert_eq!(back.error_skipping().await, ErrorCode::Banned, "kept in the database");
    audit_log_with(data.path(), "olga\tban\tden\ttroll until").await;
}

/// `server admin ban` bans an account from every room: its open connection closes (its
/// session ended) and, logged in again, it is refused in any room; the audit log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_bans_an_account_everywhere() {
    let data = tempfile::tempdir().expect("data folder");
    let args = ["--port", "0", "--session-check-interval", "200ms"];
    let server = Running::start_storing(data.path(), &args);
    let address = server.address();
    let cookie = register(&address, "vandal");
    let (mut vandal, _) = signed_in(&address, &cookie, "room=a").await;
    assert!(admin(data.path(), &["ban", "VANDAL", "--days", "2"]).contains("vandal is banned"));
    assert_eq!(vandal.close_code().await, protocol::close::UNAUTHENTICATED, "session ended");

    let origin = format!("http://{address}");
    let headers = [("Origin", origin.as_str()), ("Content-Type", "application/json")];
    let body = json!({"nick": "vandal", "password": PASSWORD}).to_string();
    let login = request(&address, "POST", "/account/login", &headers, &body);
    let cookie = login.header("set-cookie").expect("cookie").split(';').next().expect("pair");
    for room in ["a", "elsewhere"] {
        let headers = [("Origin", origin.as_str()), ("Cookie", cookie)];
        let mut again = Client::open_with(&url(&address, &format!("room={room}")), &headers)
            .await
            .expect("connected");
        assert_eq!(again.error_skipping().await, ErrorCode::Banned, "#{room}");
    }
    audit_log_with(data.path(), "admin\tban\t-\tvandal everywhere for 2 days").await;
    assert!(admin(data.path(), &["unban", "VANDAL"]).contains("vandal is no longer banned"));
    let headers = [("Origin", origin.as_str()), ("Cookie", cookie)];
    let mut back = Client::open_with(&url(&address, "room=a"), &headers).await.expect("connected");
    assert_eq!(back.welcome().await.nick, "vandal", "lifted");
    audit_log_with(data.path(), "admin\tunban\t-\tvandal").await;
}

/// A private room: its owner makes it so; it leaves the room lists; guests and signed-in
/// strangers are refused; an invitation code makes a signed-in person a member for good;
/// revoked codes admit nobody new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_rooms_admit_members_and_the_invited() {
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (olga, quinn, pat) =
        (register(&address, "olga"), register(&address, "quinn"), register(&address, "pat"));
    let (mut owner, _) = signed_in(&address, &olga, "room=vault").await;
    let (mut early, _) = Client::join(&url(&address, "room=vault&nick=early")).await;
    owner
        .send_text(&json!({"type": "configure", "room": "vault", "private": true}).to_string())
        .await;
    assert_eq!(early.close_code().await, protocol::close::REMOVED, "a guest does not stay");
    let private = owner
        .recv_until(|m| match m {
            ServerMessage::RoomSettings { private, by, .. } => Some((private, by)),
            _ => None,
        })
        .await;
    assert_eq!(private, (true, "olga".to_owned()));
    let (mut lister, _) = Client::join(&url(&address, "room=lobby&nick=lister")).await;
    let listed: Vec<String> = lister.list_rooms().await.into_iter().map(|r| r.name).collect();
    assert!(!listed.contains(&"vault".to_owned()), "{listed:?}");

    let mut guest = Client::connect(&url(&address, "room=vault&nick=snoop")).await;
    assert_eq!(guest.error_skipping().await, ErrorCode::Forbidden);
    let origin = format!("http://{address}");
    let refused = |cookie: String, query: String| {
        let (origin, address) = (origin.clone(), address.clone());
        async move {
            let headers = [("Origin", origin.as_str()), ("Cookie", cookie.as_str())];
            let mut client =
                Client::open_with(&url(&address, &query), &headers).await.expect("connected");
            client.error_skipping().await
        }
    };
    assert_eq!(refused(quinn.clone(), "room=vault".into()).await, ErrorCode::Forbidden);

    owner.send_text(&json!({"type": "invite", "room": "vault"}).to_string()).await;
    let code = owner
        .recv_until(|m| match m {
            ServerMessage::Invitation { code, .. } => Some(code),
            _ => None,
        })
        .await
        .expect("a code");
    let (_, welcome) = signed_in(&address, &quinn, &format!("room=vault&invite={code}")).await;
    assert!(welcome.private);
    let (_, _) = signed_in(&address, &quinn, "room=vault").await;

    owner.send_text(&json!({"type": "invite", "room": "vault", "revoke": true}).to_string()).await;
    let revoked = owner
        .recv_until(|m| match m {
            ServerMessage::Invitation { code, .. } => Some(code),
            _ => None,
        })
        .await;
    assert_eq!(revoked, None);
    let late = refused(pat.clone(), format!("room=vault&invite={code}")).await;
    assert_eq!(late, ErrorCode::Forbidden, "a revoked code");
    // The operator adds a member by name.
    assert!(admin(data.path(), &["add-member", "vault", "PAT"]).contains("pat is a member"));
    let (_, welcome) = signed_in(&address, &pat, "room=vault").await;
    assert!(welcome.private);
}

/// The next `granted` a client sees: who, what, whether taken away, by whom.
async fn granted(client: &mut Client) -> (String, protocol::Grant, bool, String) {
    client
        .recv_until(|m| match m {
            ServerMessage::Granted { nick, grant, revoke, by, .. } => {
                Some((nick, grant, revoke, by))
            }
            _ => None,
        })
        .await
}

/// The owner names moderators and members over the wire: a new moderator kicks at once and
/// stops at once when taken away; nobody else names moderators; a member named joins the
/// private room, and taken away is closed with 4005 and refused; `server admin
/// remove-member` takes a membership away too; the audit log keeps each change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_name_moderators_and_members() {
    use protocol::Grant::{Member, Moderator};
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (olga, bob, cy) =
        (register(&address, "olga"), register(&address, "bob"), register(&address, "cy"));
    let (mut owner, welcome) = signed_in(&address, &olga, "room=hall").await;
    assert_eq!(welcome.role, Some(Role::Owner));
    let (mut bob, _) = signed_in(&address, &bob, "room=hall").await;
    let (mut troll, _) = Client::join(&url(&address, "room=hall&nick=troll")).await;
    let grant = |nick: &str, grant: &str, revoke: bool| {
        json!({"type": "grant", "room": "hall", "nick": nick, "grant": grant, "revoke": revoke})
            .to_string()
    };
    let kick = |nick: &str| {
        json!({"type": "moderate", "room": "hall", "nick": nick, "action": "kick"}).to_string()
    };

    bob.send_text(&grant("cy", "moderator", false)).await;
    assert_eq!(bob.error_skipping().await, ErrorCode::Forbidden, "only the owner");
    owner.send_text(&grant("nobody", "moderator", false)).await;
    assert_eq!(owner.error_skipping().await, ErrorCode::NotFound);
    owner.send_text(&grant("BOB", "moderator", false)).await;
    assert_eq!(granted(&mut bob).await, ("bob".into(), Moderator, false, "olga".into()));
    bob.send_text(&kick("troll")).await;
    assert_eq!(troll.close_code().await, protocol::close::REMOVED, "a moderator at once");
    owner.send_text(&grant("bob", "moderator", true)).await;
    assert_eq!(granted(&mut bob).await, ("bob".into(), Moderator, true, "olga".into()));
    let (_, _) = Client::join(&url(&address, "room=hall&nick=troll2")).await;
    bob.send_text(&kick("troll2")).await;
    assert_eq!(bob.error_skipping().await, ErrorCode::Forbidden, "and stops at once");

    owner.send_text(&grant("cy", "member", false)).await;
    assert_eq!(owner.error_skipping().await, ErrorCode::Forbidden, "a public room has none");
    owner
        .send_text(&json!({"type": "configure", "room": "hall", "private": true}).to_string())
        .await;
    owner.send_text(&grant("cy", "member", false)).await;
    assert_eq!(granted(&mut owner).await, ("cy".into(), Member, false, "olga".into()));
    let (mut member, welcome) = signed_in(&address, &cy, "room=hall").await;
    assert!(welcome.private);
    owner.send_text(&grant("cy", "member", true)).await;
    let closed = member.closed().await.expect("a close frame");
    assert_eq!(u16::from(closed.code), protocol::close::REMOVED);
    assert_eq!(closed.reason.as_str(), "olga removed you from the members of #hall");
    let origin = format!("http://{address}");
    let headers = [("Origin", origin.as_str()), ("Cookie", cy.as_str())];
    let mut again =
        Client::open_with(&url(&address, "room=hall"), &headers).await.expect("connected");
    assert_eq!(again.error_skipping().await, ErrorCode::Forbidden);
    // The operator takes a membership away too (bob became one when the room turned private).
    assert!(admin(data.path(), &["remove-member", "hall", "bob"]).contains("bob is no longer"));
    let log = audit_log_with(data.path(), "olga\tremove-member\thall\tcy").await;
    assert!(log.contains("olga\tgrant-moderator\thall\tbob"), "{log}");
    assert!(log.contains("admin\tremove-member\thall\tbob"), "{log}");
}

/// The room's mutes and bans, as a moderator asks for them.
async fn listed(client: &mut Client) -> Vec<protocol::SanctionInfo> {
    client.send_text(&json!({"type": "sanctions", "room": "den"}).to_string()).await;
    client
        .recv_until(|m| match m {
            ServerMessage::Sanctions { sanctions, .. } => Some(sanctions),
            _ => None,
        })
        .await
}

/// Bans over the wire are listed to the room's moderators and lifted by nick (the guest's
/// address is let in again, across a restart of the server too); an invitation made for one
/// person admits one; out-of-range invitations are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_lifted_and_invitations_are_limited() {
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (olga, pat, quinn) =
        (register(&address, "olga"), register(&address, "pat"), register(&address, "quinn"));
    let (mut owner, _) = signed_in(&address, &olga, "room=den").await;
    let (mut troll, _) = Client::join(&url(&address, "room=den&nick=troll")).await;
    let moderate = |action: &str| {
        json!({"type": "moderate", "room": "den", "nick": "troll", "action": action, "minutes": 60})
            .to_string()
    };
    owner.send_text(&moderate("ban")).await;
    assert_eq!(troll.close_code().await, protocol::close::REMOVED);
    let sanctions = listed(&mut owner).await;
    assert_eq!(sanctions.len(), 1, "{sanctions:?}");
    assert_eq!((sanctions[0].nick.as_str(), sanctions[0].action), ("troll", Sanction::Ban));

    drop(server);
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (mut owner, _) = signed_in(&address, &olga, "room=den").await;
    assert_eq!(listed(&mut owner).await.len(), 1, "kept in the database");
    let mut back = Client::connect(&url(&address, "room=den&nick=troll")).await;
    assert_eq!(back.error_skipping().await, ErrorCode::Banned);
    owner.send_text(&moderate("unban")).await;
    assert_eq!(told(&mut owner).await.1, Sanction::Unban);
    let (_, welcome) = Client::join(&url(&address, "room=den&nick=troll")).await;
    assert_eq!(welcome.nick, "troll", "let in again");
    assert!(listed(&mut owner).await.is_empty());
    owner.send_text(&moderate("unban")).await;
    assert_eq!(owner.error_skipping().await, ErrorCode::NotFound, "nothing to lift");
    // The operator lifts a ban of the open room: it holds there at once.
    let (mut pest, _) = Client::join(&url(&address, "room=den&nick=pest")).await;
    let ban = json!({"type": "moderate", "room": "den", "nick": "pest", "action": "ban"});
    owner.send_text(&ban.to_string()).await;
    assert_eq!(pest.close_code().await, protocol::close::REMOVED);
    let mut refused = Client::connect(&url(&address, "room=den&nick=pest2")).await;
    assert_eq!(refused.error_skipping().await, ErrorCode::Banned);
    // An account registered since under a look-alike name does not hide the guest's ban.
    register(&address, "Pest");
    assert!(admin(data.path(), &["unban", "pest", "--room", "den"]).contains("pest is no longer"));
    let (_, welcome) = Client::join(&url(&address, "room=den&nick=pest2")).await;
    assert_eq!(welcome.nick, "pest2");

    owner.send_text(&json!({"type": "invite", "room": "den"}).to_string()).await;
    assert_eq!(owner.error_skipping().await, ErrorCode::Forbidden, "a public room has none");
    owner
        .send_text(&json!({"type": "configure", "room": "den", "private": true}).to_string())
        .await;
    for (days, uses) in [(0, 1), (31, 1), (7, 0), (7, 1001)] {
        let invite = json!({"type": "invite", "room": "den", "days": days, "uses": uses});
        owner.send_text(&invite.to_string()).await;
        assert_eq!(owner.error_skipping().await, ErrorCode::InvalidMessage, "{days} {uses}");
    }
    owner.send_text(&json!({"type": "invite", "room": "den", "uses": 1}).to_string()).await;
    let (code, expires, uses) = owner
        .recv_until(|m| match m {
            ServerMessage::Invitation { code: Some(code), expires, uses, .. } => {
                Some((code, expires, uses))
            }
            _ => None,
        })
        .await;
    let week = 7 * 86_400_000;
    let now = server::outbound::now_millis();
    assert!(expires.is_some_and(|at| at > now + week - 60_000 && at <= now + week), "{expires:?}");
    assert_eq!(uses, Some(1));
    let (_, welcome) = signed_in(&address, &pat, &format!("room=den&invite={code}")).await;
    assert!(welcome.private);
    let origin = format!("http://{address}");
    let headers = [("Origin", origin.as_str()), ("Cookie", quinn.as_str())];
    let query = format!("room=den&invite={code}");
    let mut late = Client::open_with(&url(&address, &query), &headers).await.expect("connected");
    assert_eq!(late.error_skipping().await, ErrorCode::Forbidden, "used up");
    audit_log_with(data.path(), "olga\tunban\tden\ttroll").await;
}

/// Behind a trusted reverse proxy (`--trusted-proxy`), a guest's ban holds for the client's
/// address the proxy forwarded for, not for the proxy's (everyone else behind it still
/// joins), and the session cookie is `Secure` when the browser spoke HTTPS to the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_bans_hold_for_the_client() {
    let data = tempfile::tempdir().expect("data folder");
    let server =
        Running::start_storing(data.path(), &["--port", "0", "--trusted-proxy", "127.0.0.1"]);
    let address = server.address();
    let origin = format!("http://{address}");
    let headers = [
        ("Origin", origin.as_str()),
        ("Content-Type", "application/json"),
        ("X-Forwarded-Proto", "https"),
    ];
    let body = json!({"nick": "olga", "password": PASSWORD}).to_string();
    let answer = request(&address, "POST", "/account/register", &headers, &body);
    let cookie = answer.header("set-cookie").expect("cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    let (mut owner, _) =
        signed_in(&address, cookie.split(';').next().expect("pair"), "room=den").await;

    let from = |client: &'static str, nick: &str| {
        let (origin, query) = (origin.clone(), format!("room=den&nick={nick}"));
        let url = url(&address, &query);
        async move {
            let headers = [("Origin", origin.as_str()), ("X-Forwarded-For", client)];
            Client::open_with(&url, &headers).await.expect("connected")
        }
    };
    let mut troll = from("198.51.100.1, 203.0.113.5", "troll").await;
    troll.welcome().await;
    let ban = json!({"type": "moderate", "room": "den", "nick": "troll", "action": "ban"});
    owner.send_text(&ban.to_string()).await;
    assert_eq!(troll.close_code().await, protocol::close::REMOVED);
    let mut again = from("203.0.113.5", "troll2").await;
    assert_eq!(again.error_skipping().await, ErrorCode::Banned, "the client's address");
    let mut spoofed = from("198.51.100.9, 203.0.113.5", "troll3").await;
    assert_eq!(spoofed.error_skipping().await, ErrorCode::Banned, "its own claims are ignored");
    let mut neighbour = from("203.0.113.77", "neighbour").await;
    assert_eq!(neighbour.welcome().await.nick, "neighbour", "not everyone behind the proxy");
}

/// Everything a client has received until the first error: that error's code, and whether
/// any frame before it carried `secret`.
async fn refused_without(client: &mut Client, secret: &str) -> ErrorCode {
    loop {
        let text = client.recv_text().await;
        assert!(!text.contains(secret), "leaked before the refusal: {text}");
        if let Ok(ServerMessage::Error { code, .. }) = serde_json::from_str(&text) {
            return code;
        }
    }
}

/// A private room's history reaches nobody outside it, whichever way they ask: connecting with
/// `since`, a guest or a signed-in stranger; joining from another room with `since`; asking
/// for a history page (before or after) without a seat. And only its owner and moderators,
/// signed in, may change a room: a signed-in member or a guest asking to make it private, to
/// invite, to list its sanctions or to mute someone is refused with `forbidden`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_reach_no_private_history_and_members_change_no_settings() {
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (olga, quinn) = (register(&address, "olga"), register(&address, "quinn"));
    let secret = "the combination is 4-8-15";
    let (mut owner, _) = signed_in(&address, &olga, "room=vault").await;
    for n in 0..3 {
        owner.say_with_id(&format!("{secret} ({n})"), &format!("s{n}")).await;
        owner.ack_of(&format!("s{n}")).await;
    }
    owner
        .send_text(&json!({"type": "configure", "room": "vault", "private": true}).to_string())
        .await;
    owner.recv_until(|m| matches!(m, ServerMessage::RoomSettings { .. }).then_some(())).await;

    let mut guest = Client::connect(&url(&address, "room=vault&nick=snoop&since=0")).await;
    assert_eq!(refused_without(&mut guest, secret).await, ErrorCode::Forbidden, "guest, since");
    let origin = format!("http://{address}");
    let headers = [("Origin", origin.as_str()), ("Cookie", quinn.as_str())];
    let mut stranger =
        Client::open_with(&url(&address, "room=vault&since=0"), &headers).await.expect("open");
    assert_eq!(refused_without(&mut stranger, secret).await, ErrorCode::Forbidden, "stranger");

    let (mut lurker, _) = Client::join(&url(&address, "room=lobby&nick=lurker")).await;
    let join = json!({"type": "join", "room": "vault", "since": 0, "add": true});
    lurker.send_text(&join.to_string()).await;
    assert_eq!(refused_without(&mut lurker, secret).await, ErrorCode::Forbidden, "join, since");
    for page in [json!({"before": 3}), json!({"after": 0}), json!({})] {
        let mut ask = json!({"type": "history", "room": "vault"});
        ask.as_object_mut().expect("object").extend(page.as_object().expect("object").clone());
        lurker.send_text(&ask.to_string()).await;
        assert_eq!(refused_without(&mut lurker, secret).await, ErrorCode::NotJoined, "{ask}");
    }
    let listed: Vec<String> = lurker.list_rooms().await.into_iter().map(|r| r.name).collect();
    assert!(!listed.contains(&"vault".to_owned()), "{listed:?}");

    // In a public room of olga's: quinn (signed in, no role) and a guest change nothing.
    let (_owner_here, welcome) = signed_in(&address, &olga, "room=square").await;
    assert_eq!(welcome.role, Some(protocol::Role::Owner), "the first signed-in joiner owns it");
    let (mut member, _) = signed_in(&address, &quinn, "room=square").await;
    let (mut passer, _) = Client::join(&url(&address, "room=square&nick=passer")).await;
    let asks = [
        json!({"type": "configure", "room": "square", "private": true}),
        json!({"type": "invite", "room": "square"}),
        json!({"type": "invite", "room": "square", "revoke": true}),
        json!({"type": "sanctions", "room": "square"}),
        json!({"type": "moderate", "room": "square", "nick": "olga", "action": "mute"}),
        json!({"type": "grant", "room": "square", "nick": "quinn", "grant": "moderator"}),
    ];
    for (who, client) in [("quinn", &mut member), ("passer", &mut passer)] {
        for ask in &asks {
            client.send_text(&ask.to_string()).await;
            assert_eq!(client.error_skipping().await, ErrorCode::Forbidden, "{who}: {ask}");
        }
    }
    // Nothing changed: the room is still listed, and its owner is not muted.
    let listed: Vec<String> = lurker.list_rooms().await.into_iter().map(|r| r.name).collect();
    assert!(listed.contains(&"square".to_owned()), "{listed:?}");
}

/// `server admin` with `input` on its standard input: (whether it succeeded, its output).
fn admin_with_input(data: &std::path::Path, args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--data-dir")
        .arg(data)
        .arg("admin")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("written");
    let output = child.wait_with_output().expect("ends");
    let said = [output.stdout, output.stderr].concat();
    (output.status.success(), String::from_utf8_lossy(&said).into_owned())
}

/// The operator's account commands against a running server: `reset-password` (the new one
/// read from standard input) ends the account's sessions and only the new password logs in;
/// `revoke-moderator` stops a moderator's next action without a rejoin; `delete-account` frees
/// the nick for a guest; each is in the audit log, and a nick with no account is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_reset_passwords_revoke_moderators_and_delete_accounts() {
    let data = tempfile::tempdir().expect("data folder");
    let server = Running::start_storing(data.path(), &["--port", "0"]);
    let address = server.address();
    let (frank, mo) = (register(&address, "frank"), register(&address, "mo"));
    let origin = format!("http://{address}");
    let me = |cookie: &str| {
        let headers = [("Cookie", cookie)];
        request(&address, "GET", "/account", &headers, "").status
    };
    let log_in = |password: &str| {
        let headers = [("Origin", origin.as_str()), ("Content-Type", "application/json")];
        let body = json!({"nick": "frank", "password": password}).to_string();
        request(&address, "POST", "/account/login", &headers, &body).status
    };
    assert_eq!(me(&frank), 200);

    let (done, said) =
        admin_with_input(data.path(), &["reset-password", "FRANK"], "a brand new password\n");
    assert!(done && said.contains("password of frank reset"), "{said}");
    assert_eq!(me(&frank), 401, "the old session ended");
    assert_eq!(log_in(PASSWORD), 401, "the old password");
    assert_eq!(log_in("a brand new password"), 200, "the new one");

    admin(data.path(), &["grant-moderator", "mo", "--room", "club"]);
    let (mut mo, welcome) = signed_in(&address, &mo, "room=club").await;
    assert_eq!(welcome.role, Some(Role::Moderator));
    let (mut gus, _) = Client::join(&url(&address, "room=club&nick=gus")).await;
    gus.say_with_id("spam", "g1").await;
    let spam = gus.ack_of("g1").await;
    let said = admin(data.path(), &["revoke-moderator", "mo", "--room", "club"]);
    assert!(said.contains("mo no longer moderates club"), "{said}");
    mo.send_text(&delete("club", spam)).await;
    assert_eq!(mo.error_skipping().await, ErrorCode::Forbidden, "revoked without a rejoin");

    let said = admin(data.path(), &["delete-account", "Frank"]);
    assert!(said.contains("deleted frank"), "{said}");
    assert_eq!(log_in("a brand new password"), 401, "no account any more");
    let (_, welcome) = Client::join(&url(&address, "room=club&nick=frank")).await;
    assert_eq!(welcome.nick, "frank", "the nick is free for a guest");
    let (done, said) = admin_with_input(data.path(), &["delete-account", "frank"], "");
    assert!(!done && said.contains("no account looks like"), "{said}");
    let (done, said) =
        admin_with_input(data.path(), &["reset-password", "nobody"], "long enough password\n");
    assert!(!done && said.contains("no account looks like"), "{said}");

    let log = audit_log_with(data.path(), "delete-account").await;
    for action in ["reset-password", "revoke-moderator", "delete-account"] {
        assert!(log.contains(action), "{action} missing from {log}");
    }
}
