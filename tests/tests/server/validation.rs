//! Bad input: every kind gets a typed error frame and the connection stays usable, except
//! oversized and corrupt frames, which close with a documented code.

use protocol::{ErrorCode, close};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::util::{Client, TestServer, config};

/// Each malformed request is answered with its own error code, and afterwards the same
/// connection still chats normally.
#[tokio::test]
async fn bad_frames_get_typed_errors_and_connection_stays() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("bad", "alice").await;
    let cases: [(&str, ErrorCode); 9] = [
        ("{oops", ErrorCode::MalformedJson),
        ("", ErrorCode::MalformedJson),
        (r#"{"type":"shout","text":"x"}"#, ErrorCode::UnknownType),
        (r#"{"type":"send"}"#, ErrorCode::InvalidMessage),
        (r#"{"type":"send","text":["a"]}"#, ErrorCode::InvalidMessage),
        (r#"{"type":"send","text":"  \n "}"#, ErrorCode::EmptyText),
        (r#"{"type":"join","room":"has space"}"#, ErrorCode::InvalidRoom),
        (r#"{"type":"join","room":"ok","nick":""}"#, ErrorCode::InvalidNick),
        (r#"{"type":"join","room":"ok","nick":"bell\u0007"}"#, ErrorCode::InvalidNick),
    ];
    for (frame, code) in cases {
        alice.send_text(frame).await;
        assert_eq!(alice.error().await, code, "for {frame:?}");
    }
    let too_long = "x".repeat(protocol::rules::MAX_TEXT_CHARS + 1);
    alice.say(&too_long).await;
    assert_eq!(alice.error().await, ErrorCode::TextTooLong);
    alice.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(alice.error().await, ErrorCode::BinaryUnsupported);

    alice.say(&"y".repeat(protocol::rules::MAX_TEXT_CHARS)).await;
    assert_eq!(alice.message().await.text.len(), protocol::rules::MAX_TEXT_CHARS);
}

/// Invalid room or nick in the connect URL: the upgrade succeeds, the error is explained, and
/// the client can still join properly.
#[tokio::test]
async fn bad_connect_parameters_are_explained() {
    let server = TestServer::start();
    let mut bad_room = Client::connect(&server.url("room=no%20spaces&nick=a")).await;
    assert_eq!(bad_room.error().await, ErrorCode::InvalidRoom);
    let long_nick = "n".repeat(protocol::rules::MAX_NICK_CHARS + 1);
    let mut bad_nick = Client::connect(&server.url(&format!("room=r&nick={long_nick}"))).await;
    assert_eq!(bad_nick.error().await, ErrorCode::InvalidNick);

    bad_room.send_text(r#"{"type":"join","room":"fine","nick":"a"}"#).await;
    assert_eq!(bad_room.welcome().await.room, "fine");
}

/// A frame larger than the frame limit closes the connection with 1009, and nobody else in the
/// room is affected.
#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let server = TestServer::with_config(server::Config {
        limits: server::config::Limits { max_frame_bytes: 1024, ..Default::default() },
        ..config()
    });
    let (mut bystander, _) = server.join("big", "bystander").await;
    let (mut sender, _) = server.join("big", "sender").await;
    bystander.recv().await; // sender joined
    sender.say(&"z".repeat(2000)).await;
    assert_eq!(sender.close_code().await, close::MESSAGE_TOO_BIG);

    bystander.say("still here").await;
    assert_eq!(bystander.message().await.text, "still here");
}

/// A message split into continuation frames is reassembled and delivered like any other.
#[tokio::test]
async fn continuation_frames_are_reassembled() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("frag", "alice").await;
    let parts = [r#"{"type":"send","#, r#""text":"split "#, r#"in three"}"#];
    alice.send_raw(Message::Frame(Frame::message(parts[0], OpCode::Data(Data::Text), false))).await;
    alice
        .send_raw(Message::Frame(Frame::message(parts[1], OpCode::Data(Data::Continue), false)))
        .await;
    alice
        .send_raw(Message::Frame(Frame::message(parts[2], OpCode::Data(Data::Continue), true)))
        .await;
    assert_eq!(alice.message().await.text, "split in three");

    // Fragmented binary is reassembled too, then refused as binary.
    alice
        .send_raw(Message::Frame(Frame::message(vec![1], OpCode::Data(Data::Binary), false)))
        .await;
    alice
        .send_raw(Message::Frame(Frame::message(vec![2], OpCode::Data(Data::Continue), true)))
        .await;
    assert_eq!(alice.error().await, ErrorCode::BinaryUnsupported);
}

/// Fragments that add up to more than the message limit close with 1009, even though each
/// frame is under the frame limit.
#[tokio::test]
async fn oversized_reassembly_closes_with_1009() {
    let server = TestServer::with_config(server::Config {
        limits: server::config::Limits { max_message_bytes: 1000, ..Default::default() },
        ..config()
    });
    let (mut alice, _) = server.join("frag", "alice").await;
    let chunk = "a".repeat(600);
    alice
        .send_raw(Message::Frame(Frame::message(chunk.clone(), OpCode::Data(Data::Text), false)))
        .await;
    alice.send_raw(Message::Frame(Frame::message(chunk, OpCode::Data(Data::Continue), true))).await;
    assert_eq!(alice.close_code().await, close::MESSAGE_TOO_BIG);
}

/// A text frame that is not UTF-8 closes with 1007 (invalid payload data).
#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start();
    let (mut alice, _) = server.join("utf8", "alice").await;
    let invalid = vec![b'{', 0xff, 0xfe, b'}'];
    alice.send_raw(Message::Frame(Frame::message(invalid, OpCode::Data(Data::Text), true))).await;
    assert_eq!(alice.close_code().await, 1007);
}
