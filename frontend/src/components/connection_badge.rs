//! The connection indicator: connecting, online, reconnecting (with the next attempt), paused,
//! closed by the server.

use yew::prelude::*;

use crate::state::ConnectionState;

#[derive(Properties, PartialEq)]
pub struct ConnectionBadgeProps {
    pub state: ConnectionState,
}

#[function_component(ConnectionBadge)]
pub fn connection_badge(props: &ConnectionBadgeProps) -> Html {
    let (class, label) = match props.state {
        ConnectionState::Idle => ("idle", "Not connected".to_owned()),
        ConnectionState::Connecting => ("connecting", "Connecting…".to_owned()),
        ConnectionState::Online => ("online", "Online".to_owned()),
        ConnectionState::Reconnecting { attempt, delay_ms } => (
            "reconnecting",
            format!("Reconnecting (attempt {attempt}, in {:.1} s)…", f64::from(delay_ms) / 1000.0),
        ),
        ConnectionState::Replaced => ("replaced", "Opened in another tab".to_owned()),
        ConnectionState::Closed => ("closed", "Disconnected".to_owned()),
    };
    html! {
        <span class={classes!("badge", class)} role="status" data-state={class}>{ label }</span>
    }
}
