//! WebSocket close codes the server sends, so clients can tell why a connection ended.
//!
//! Codes below 4000 are the standard ones (RFC 6455 §7.4.1); 4000–4999 are this protocol's own.

/// The client closed, or the server ended the session in the ordinary way.
pub const NORMAL: u16 = 1000;
/// The server is shutting down or restarting; reconnect after a pause.
pub const GOING_AWAY: u16 = 1001;
/// A text frame was not valid UTF-8 (RFC 6455's "invalid frame payload data").
pub const INVALID_PAYLOAD: u16 = 1007;
/// The client broke a rule badly enough that the server will not continue (e.g. flooding).
pub const POLICY_VIOLATION: u16 = 1008;
/// A frame, or a message reassembled from continuation frames, exceeded the size limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// A newer connection with the same client token took over this nick in this room.
/// The client should not reconnect automatically: another tab or device now holds the seat.
pub const REPLACED: u16 = 4001;
/// The server has stopped hearing from the client (no pong within the heartbeat timeout).
pub const HEARTBEAT_TIMEOUT: u16 = 4002;
/// The client stopped reading: more frames were waiting for it than the server keeps. It was
/// removed from its room; it may reconnect (and should read what it is sent).
pub const SLOW_READER: u16 = 4003;
/// The server lets only identified people in (`--auth accounts` or `--auth token`) and this
/// connection is not (an `error` with code `unauthenticated` says why, just before). Sign in or
/// get a fresh token before connecting again: the same connection attempt would be refused.
pub const UNAUTHENTICATED: u16 = 4004;
/// A moderator removed this connection from one of its rooms (a kick or a ban: the reason
/// says which room). The client should not reconnect at once: after a kick it may come back
/// when the person chooses to; after a ban its joins are refused with `banned` until it ends.
pub const REMOVED: u16 = 4005;
