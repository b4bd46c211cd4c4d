//! Who is in the room, you marked.

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct MemberListProps {
    pub members: Vec<String>,
    #[prop_or_default]
    pub own: Option<String>,
}

#[function_component(MemberList)]
pub fn member_list(props: &MemberListProps) -> Html {
    html! {
        <section class="members" aria-labelledby="members-title">
            <h2 id="members-title">{ format!("Members ({})", props.members.len()) }</h2>
            <ul>
                { for props.members.iter().map(|member| {
                    let own = props.own.as_deref() == Some(member.as_str());
                    html! {
                        <li key={member.clone()} class={classes!(own.then_some("own"))}>
                            { member }
                            if own { <span class="you">{ " (you)" }</span> }
                        </li>
                    }
                }) }
            </ul>
        </section>
    }
}
