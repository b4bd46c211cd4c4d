//! The page's components, one per file. Each renders what its props say and reports what the
//! user did through `on_*` callbacks; none of them talks to the network or changes state.

pub mod composer;
pub mod connection_badge;
pub mod join_form;
pub mod member_list;
pub mod message_list;
pub mod room_list;
pub mod room_settings;
pub mod settings;
pub mod typing_indicator;

pub use composer::{Composer, ComposerProps};
pub use connection_badge::{ConnectionBadge, ConnectionBadgeProps};
pub use join_form::{JoinForm, JoinFormProps, SignInRequest};
pub use member_list::{MemberList, MemberListProps};
pub use message_list::{MessageList, MessageListProps};
pub use room_list::{RoomList, RoomListProps};
pub use room_settings::{RoomSettings, RoomSettingsProps};
pub use settings::Settings;
pub use typing_indicator::{TypingIndicator, TypingIndicatorProps};
