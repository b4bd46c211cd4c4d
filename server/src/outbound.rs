//! Encoding of server messages into text frames.

use bytestring::ByteString;
use protocol::ServerMessage;

/// Serializes a message once into a frame that can be shared by every recipient (cloning a
/// `ByteString` only bumps a reference count).
pub fn encode(message: &ServerMessage) -> ByteString {
    match serde_json::to_string(message) {
        Ok(json) => json.into(),
        // Serializing our own plain structs cannot fail; if it ever did, say so on the wire
        // instead of dropping the frame silently.
        Err(error) => {
            tracing::error!(%error, "could not encode a server message");
            ByteString::from_static(
                r#"{"type":"error","code":"unavailable","message":"The server could not encode a reply."}"#,
            )
        }
    }
}

/// The current time as Unix milliseconds.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
