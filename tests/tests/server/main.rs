//! Server integration tests: a real server on `127.0.0.1:0`, real WebSocket clients.
//!
//! One test binary (faster to build than one per file); `util` holds the shared helpers.

mod bounds;
mod chat;
mod delivery;
mod hardening;
mod lifecycle;
mod races;
mod rooms;
mod util;
mod validation;
