//! The room's settings, for its owner and moderators: private or public, invitation links
//! (made, shown to copy, revoked), people by name: moderators (named by the owner) and the
//! members of a private room, and the mutes and bans in force (each can be lifted).

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct RoomSettingsProps {
    pub room: String,
    pub private: bool,
    /// The last invitation link made here (`Some(None)`: all revoked).
    #[prop_or_default]
    pub invitation: Option<Option<String>>,
    /// The page's own address (`https://host`), to make links with.
    pub origin: String,
    /// Make the room private (`true`) or public.
    pub on_private: Callback<bool>,
    /// Make an invitation link (`false`) or revoke every link (`true`).
    pub on_invite: Callback<bool>,
    /// Whether you own the room (only the owner names moderators).
    #[prop_or_default]
    pub owner: bool,
    /// Give an account a place (`false`) or take it away (`true`), once confirmed.
    pub on_grant: Callback<(String, protocol::Grant, bool)>,
    /// When the last invitation link made stops working (Unix ms).
    #[prop_or_default]
    pub expires: Option<u64>,
    /// The mutes and bans in force, once asked for.
    #[prop_or_default]
    pub sanctions: Option<Vec<protocol::SanctionInfo>>,
    /// Ask for the mutes and bans.
    #[prop_or_default]
    pub on_sanctions: Callback<()>,
    /// Lift a member's mute (`Unmute`) or ban (`Unban`).
    #[prop_or_default]
    pub on_lift: Callback<(String, protocol::Sanction)>,
}

/// A time as the reader's calendar shows it.
fn local_time(ms: u64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    String::from(date.to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED))
}

/// The link an invitation code makes: the chat's page opening the room with the code.
pub fn invitation_link(origin: &str, room: &str, code: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("room", room)
        .append_pair("invite", code)
        .finish();
    format!("{origin}/?{query}")
}

#[function_component(RoomSettings)]
pub fn room_settings(props: &RoomSettingsProps) -> Html {
    // The box shows the room's setting, which changes when the server says the room did (the
    // owner may also decline the confirmation): the click only asks.
    let onchange = {
        let (on_private, private) = (props.on_private.clone(), props.private);
        Callback::from(move |event: Event| {
            let Some(input) = event.target_dyn_into::<web_sys::HtmlInputElement>() else {
                return;
            };
            let wanted = input.checked();
            input.set_checked(private);
            on_private.emit(wanted);
        })
    };
    let invite = props.on_invite.reform(|_: MouseEvent| false);
    let revoke = props.on_invite.reform(|_: MouseEvent| true);
    let person = use_node_ref();
    // Each button acts on the name typed, if any.
    let act = |grant: protocol::Grant, take: bool| {
        let (person, on_grant) = (person.clone(), props.on_grant.clone());
        Callback::from(move |_: MouseEvent| {
            let Some(input) = person.cast::<web_sys::HtmlInputElement>() else { return };
            let nick = input.value().trim().to_owned();
            if !nick.is_empty() {
                on_grant.emit((nick, grant, take));
                input.set_value("");
            }
        })
    };
    let people = props.owner || props.private;
    html! {
        <section class="room-settings" aria-labelledby="room-settings-title">
            <h2 id="room-settings-title">{ format!("#{} settings", props.room) }</h2>
            <label class="toggle">
                <input type="checkbox" checked={props.private} {onchange} />
                { " Private: only members and invited people may join" }
            </label>
            if props.private {
                <div class="invitations">
                    <button type="button" class="secondary" onclick={invite}>{ "Create invitation link" }</button>
                    <button type="button" class="secondary" onclick={revoke}>{ "Revoke all links" }</button>
                    { match &props.invitation {
                        Some(Some(code)) => {
                            let link = invitation_link(&props.origin, &props.room, code);
                            html! {
                                <label class="invitation">
                                    { "Share this link (whoever opens it and signs in becomes a member):" }
                                    <input type="text" readonly=true value={link} />
                                    if let Some(expires) = props.expires {
                                        <span class="hint">{ format!("It works until {}.", local_time(expires)) }</span>
                                    }
                                </label>
                            }
                        }
                        Some(None) => html! { <p class="hint">{ "Every link is revoked; members stay members." }</p> },
                        None => Html::default(),
                    } }
                </div>
            }
            if people {
                <div class="people">
                    <label for="room-person">{ "Someone with an account" }</label>
                    <input id="room-person" type="text" ref={person.clone()} autocomplete="off"
                        placeholder="their nick" />
                    if props.owner {
                        <button type="button" class="secondary"
                            onclick={act(protocol::Grant::Moderator, false)}>{ "Make moderator" }</button>
                        <button type="button" class="secondary"
                            onclick={act(protocol::Grant::Moderator, true)}>{ "Remove moderator" }</button>
                    }
                    if props.private {
                        <button type="button" class="secondary"
                            onclick={act(protocol::Grant::Member, false)}>{ "Add member" }</button>
                        <button type="button" class="secondary"
                            onclick={act(protocol::Grant::Member, true)}>{ "Remove member" }</button>
                    }
                </div>
            }
            <div class="sanctions">
                { match &props.sanctions {
                    None => {
                        let ask = props.on_sanctions.reform(|_: MouseEvent| ());
                        html! { <button type="button" class="secondary" onclick={ask}>{ "Show bans and mutes" }</button> }
                    }
                    Some(list) if list.is_empty() => html! { <p class="hint">{ "Nobody is muted or banned here." }</p> },
                    Some(list) => html! {
                        <ul aria-label="Bans and mutes">
                            { for list.iter().map(|held| {
                                let (what, lift) = match held.action {
                                    protocol::Sanction::Mute => ("muted", protocol::Sanction::Unmute),
                                    _ => ("banned", protocol::Sanction::Unban),
                                };
                                let nick = held.nick.clone();
                                let onclick = props.on_lift.reform(move |_: MouseEvent| (nick.clone(), lift));
                                let label = if lift == protocol::Sanction::Unmute { "Unmute" } else { "Unban" };
                                html! {
                                    <li>
                                        <span>{ format!("{} {what} until {}", held.nick, local_time(held.until)) }</span>
                                        <button type="button" class="secondary action" {onclick}
                                            aria-label={format!("{label} {}", held.nick)}>{ label }</button>
                                    </li>
                                }
                            }) }
                        </ul>
                    },
                } }
            </div>
        </section>
    }
}
