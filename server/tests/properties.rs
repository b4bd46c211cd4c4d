//! Property tests of the decoder and the naming rules: whatever arrives from the network, the
//! answer is a valid command or a typed error, never a panic; valid messages round-trip.

use proptest::prelude::*;
use protocol::rules::{self, MAX_NICK_CHARS, MAX_ROOM_CHARS, MAX_TEXT_CHARS};
use protocol::{ChatMessage, ClientMessage, ErrorCode, RoomInfo, ServerMessage};
use server::config::Limits;
use server::inbound::{Command, decode};
use server::names;

/// Strings that look like our JSON more often than random text does.
fn jsonish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[{}\\[\\]\":,a-z0-9 \\\\]{0,40}",
        ("(send|join|leave|list_rooms|typing|history|x)", any::<String>(), any::<String>())
            .prop_map(|(kind, a, b)| format!(r#"{{"type":"{kind}","text":{a:?},"room":{b:?}}}"#)),
        (any::<String>(), any::<u32>(), any::<u32>()).prop_map(
            |(room, days, uses)| format!(r#"{{"type":"invite","room":{room:?},"days":{days},"uses":{uses}}}"#)
        ),
        any::<String>().prop_map(|room| format!(r#"{{"type":"sanctions","room":{room:?}}}"#)),
        ("(kick|mute|ban|unmute|unban|x)", any::<String>(), any::<String>(), any::<u32>()).prop_map(
            |(action, nick, room, minutes)| format!(r#"{{"type":"moderate","action":"{action}","nick":{nick:?},"room":{room:?},"minutes":{minutes}}}"#)
        ),
        ("(moderator|member|x)", any::<String>(), any::<String>(), any::<bool>()).prop_map(
            |(grant, nick, room, revoke)| format!(r#"{{"type":"grant","grant":"{grant}","nick":{nick:?},"room":{room:?},"revoke":{revoke}}}"#)
        ),
        ("(edit|delete)", any::<String>(), any::<String>(), any::<u64>()).prop_map(
            |(kind, a, b, id)| format!(
                r#"{{"type":"{kind}","text":{a:?},"room":{b:?},"id":{id}}}"#
            )
        ),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            any::<String>(),
            proptest::option::of("[A-Za-z0-9_-]{0,70}|.{0,8}"),
            proptest::option::of(any::<String>())
        )
            .prop_map(|(text, client_id, room)| ClientMessage::Send {
                text,
                client_id,
                room
            }),
        (
            any::<String>(),
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            proptest::option::of("[A-Za-z0-9_-]{1,64}|.{0,8}")
        )
            .prop_map(|(room, nick, since, add, epoch)| ClientMessage::Join {
                room,
                nick,
                since,
                epoch,
                add
            }),
        any::<String>().prop_map(|room| ClientMessage::Leave { room }),
        Just(ClientMessage::ListRooms),
        proptest::option::of(any::<String>()).prop_map(|room| ClientMessage::Typing { room }),
        (
            any::<String>(),
            any::<u64>(),
            proptest::option::of(any::<String>()),
            proptest::option::of("[A-Za-z0-9_-]{0,70}|.{0,8}")
        )
            .prop_map(|(room, id, text, client_id)| match text {
                Some(text) => ClientMessage::Edit { room, id, text, client_id },
                None => ClientMessage::Delete { room, id, client_id },
            }),
        (
            any::<String>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(room, before, after, limit)| ClientMessage::History {
                room,
                before,
                after,
                limit
            }),
    ]
}

fn chat_message() -> impl Strategy<Value = ChatMessage> {
    let marks = (any::<bool>(), any::<bool>());
    (any::<u64>(), any::<String>(), any::<String>(), any::<String>(), any::<u64>(), marks).prop_map(
        |(id, room, from, text, ts, (bot, signed_in))| ChatMessage {
            id,
            room,
            from,
            text,
            ts,
            bot,
            signed_in,
            ..Default::default()
        },
    )
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        chat_message().prop_map(ServerMessage::Message),
        (any::<String>(), any::<String>(), proptest::collection::vec(chat_message(), 0..3))
            .prop_map(|(room, nick, history)| ServerMessage::Welcome {
                members: vec![nick.clone()],
                signed_in: vec![nick.clone()],
                rooms: vec![RoomInfo { name: room.clone(), members: 1 }],
                room,
                nick,
                history,
                since: None,
                truncated: false,
                more: false,
                epoch: "e".into(),
                role: None,
                private: false,
            }),
        (any::<String>(), any::<String>())
            .prop_map(|(room, epoch)| ServerMessage::Reset { room, epoch }),
        (any::<String>(), proptest::collection::vec(chat_message(), 0..3), any::<bool>()).prop_map(
            |(room, messages, more)| ServerMessage::History {
                room,
                messages,
                before: Some(3),
                after: None,
                more,
            }
        ),
        (any::<String>(), any::<u64>()).prop_map(|(client_id, id)| ServerMessage::Ack {
            client_id,
            id,
            room: "r".into()
        }),
        (any::<String>(), any::<String>(), any::<u64>())
            .prop_map(|(room, nick, ts)| ServerMessage::Left { room, nick, ts }),
        (
            any::<String>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<String>())
        )
            .prop_map(|(message, retry, room)| ServerMessage::Error {
                code: ErrorCode::RateLimited,
                message,
                retry_after_ms: retry,
                client_id: None,
                room,
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Arbitrary bytes: invalid UTF-8 never reaches the decoder (the session closes with
    /// 1007), and any text yields a command or an error with a code and an explanation.
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Err(rejection) = decode(text, &Limits::default())
        {
            prop_assert!(!rejection.message.is_empty());
        }
    }

    /// Arbitrary JSON-like text yields a command or a typed, explained error.
    #[test]
    fn decoder_answers_any_text(text in jsonish()) {
        match decode(&text, &Limits::default()) {
            Ok(Command::Send { text, .. }) => prop_assert!(rules::check_text(&text, MAX_TEXT_CHARS).is_ok()),
            Ok(Command::Join { room, nick, .. }) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(room.clone()));
                if let Some(nick) = nick {
                    prop_assert_eq!(names::check_nick(&nick, MAX_NICK_CHARS), Ok(nick.clone()));
                }
            }
            Ok(Command::History { room, before, after, .. }) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(room.clone()));
                prop_assert!(before.is_none() || after.is_none());
            }
            Ok(Command::Leave { room } | Command::Typing { room: Some(room) }) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(room.clone()));
            }
            Ok(Command::Configure { room, .. } | Command::Sanctions { room }) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(room.clone()));
            }
            Ok(Command::Invite { room, days, uses, .. }) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(room.clone()));
                prop_assert!((1..=protocol::MAX_INVITATION_DAYS).contains(&days));
                prop_assert!(uses.is_none_or(|uses| (1..=protocol::MAX_INVITATION_USES).contains(&uses)));
            }
            Ok(Command::Grant { room, nick, .. }) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(room.clone()));
                prop_assert_eq!(names::check_nick(&nick, MAX_NICK_CHARS), Ok(nick.clone()));
            }
            Ok(Command::Moderate { room, nick, minutes, .. }) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(room.clone()));
                prop_assert_eq!(names::check_nick(&nick, MAX_NICK_CHARS), Ok(nick.clone()));
                prop_assert!((1..=protocol::MAX_SANCTION_MINUTES).contains(&minutes));
            }
            Ok(Command::Amend { room, text, .. }) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(room.clone()));
                if let Some(text) = text {
                    prop_assert!(rules::check_text(&text, MAX_TEXT_CHARS).is_ok());
                }
            }
            Ok(Command::ListRooms | Command::Typing { room: None }) => {}
            Err(rejection) => prop_assert!(!rejection.message.is_empty()),
        }
    }

    /// Any client message, serialized, decodes to the same request or to the rule it breaks.
    #[test]
    fn client_messages_decode_or_break_a_rule(message in client_message()) {
        let json = serde_json::to_string(&message).expect("serializes");
        let decoded = decode(&json, &Limits::default());
        match (message, decoded) {
            (ClientMessage::Send { text, client_id, room }, Ok(Command::Send { text: got, client_id: got_id, room: got_room })) => {
                prop_assert_eq!(text, got);
                prop_assert_eq!(client_id, got_id);
                prop_assert_eq!(room.map(|r| rules::check_room(&r, MAX_ROOM_CHARS)), got_room.map(Ok));
            }
            (ClientMessage::Send { text, client_id, room }, Err(e)) => {
                let id_error = client_id.and_then(|id| rules::check_client_id(&id).err()).map(|r| r.code);
                let text_error = rules::check_text(&text, MAX_TEXT_CHARS).err().map(|r| r.code);
                let room_error = room.and_then(|r| rules::check_room(&r, MAX_ROOM_CHARS).err()).map(|r| r.code);
                prop_assert_eq!(Some(e.code), id_error.or(text_error).or(room_error));
            }
            (ClientMessage::Leave { room }, Ok(Command::Leave { room: got }))
            | (ClientMessage::Typing { room: Some(room) }, Ok(Command::Typing { room: Some(got) })) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(got));
            }
            (ClientMessage::Leave { room } | ClientMessage::Typing { room: Some(room) }, Err(e)) => {
                prop_assert_eq!(Some(e.code), rules::check_room(&room, MAX_ROOM_CHARS).err().map(|r| r.code));
            }
            (ClientMessage::Join { room, since, .. }, Ok(Command::Join { room: got, since: got_since, .. })) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(got));
                prop_assert_eq!(since, got_since);
            }
            (ClientMessage::Join { room, nick, epoch, .. }, Err(e)) => {
                let room_error = rules::check_room(&room, MAX_ROOM_CHARS).err().map(|r| r.code);
                let nick_error = nick.and_then(|n| names::check_nick(&n, MAX_NICK_CHARS).err()).map(|r| r.code);
                let valid_epoch = |e: &str| !e.is_empty() && e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                let epoch_error = epoch.filter(|e| !e.is_empty() && !valid_epoch(e)).map(|_| ErrorCode::InvalidMessage);
                prop_assert_eq!(Some(e.code), room_error.or(nick_error).or(epoch_error));
            }
            (ClientMessage::History { room, before, after, limit }, Ok(Command::History { room: got, before: b, after: a, limit: l })) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(got));
                prop_assert_eq!((before, after, limit), (b, a, l));
            }
            (ClientMessage::History { room, before, after, .. }, Err(e)) => {
                let room_error = rules::check_room(&room, MAX_ROOM_CHARS).err().map(|r| r.code);
                let both = (before.is_some() && after.is_some()).then_some(ErrorCode::InvalidMessage);
                prop_assert_eq!(Some(e.code), room_error.or(both));
            }
            (ClientMessage::Edit { room, id, text, client_id }, Ok(Command::Amend { room: got, target, text: got_text, client_id: got_id })) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(got));
                prop_assert_eq!((id, Some(text), client_id), (target, got_text, got_id));
            }
            (ClientMessage::Delete { room, id, client_id }, Ok(Command::Amend { room: got, target, text: None, client_id: got_id })) => {
                prop_assert_eq!(rules::check_room(&room, MAX_ROOM_CHARS), Ok(got));
                prop_assert_eq!((id, client_id), (target, got_id));
            }
            (ClientMessage::Edit { room, text, client_id, .. }, Err(e)) => {
                let id_error = client_id.and_then(|id| rules::check_client_id(&id).err()).map(|r| r.code);
                let text_error = rules::check_text(&text, MAX_TEXT_CHARS).err().map(|r| r.code);
                let room_error = rules::check_room(&room, MAX_ROOM_CHARS).err().map(|r| r.code);
                prop_assert_eq!(Some(e.code), id_error.or(text_error).or(room_error));
            }
            (ClientMessage::Delete { room, client_id, .. }, Err(e)) => {
                let id_error = client_id.and_then(|id| rules::check_client_id(&id).err()).map(|r| r.code);
                let room_error = rules::check_room(&room, MAX_ROOM_CHARS).err().map(|r| r.code);
                prop_assert_eq!(Some(e.code), id_error.or(room_error));
            }
            (ClientMessage::ListRooms, Ok(Command::ListRooms)) | (ClientMessage::Typing { room: None }, Ok(Command::Typing { room: None })) => {}
            (sent, got) => prop_assert!(false, "{:?} decoded as {:?}", sent, got),
        }
    }

    /// Every server message survives serialization, whatever its strings hold.
    #[test]
    fn server_messages_round_trip(message in server_message()) {
        let json = serde_json::to_string(&message).expect("serializes");
        let back: ServerMessage = serde_json::from_str(&json).expect("parses");
        prop_assert_eq!(back, message);
    }

    /// The naming rules accept only what they promise: trimmed, bounded, clean names.
    #[test]
    fn naming_rules_hold_their_promises(input in any::<String>()) {
        if let Ok(nick) = names::check_nick(&input, MAX_NICK_CHARS) {
            prop_assert_eq!(nick.trim(), nick.as_str());
            prop_assert!(!nick.is_empty() && nick.chars().count() <= MAX_NICK_CHARS);
            prop_assert!(!nick.chars().any(char::is_control));
            prop_assert!(!names::nick_key(&nick).trim().is_empty(), "something visible");
        }
        if let Ok(room) = rules::check_room(&input, MAX_ROOM_CHARS) {
            prop_assert!(!room.is_empty() && room.len() <= MAX_ROOM_CHARS);
            prop_assert!(room.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
        }
        match rules::check_text(&input, MAX_TEXT_CHARS) {
            Ok(()) => prop_assert!(!input.trim().is_empty()),
            Err(e) => prop_assert!(matches!(
                e.code,
                ErrorCode::EmptyText | ErrorCode::TextTooLong | ErrorCode::InvalidMessage
            )),
        }
    }
}
