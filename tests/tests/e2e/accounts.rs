//! Accounts in the page: registering, logging in to the same account from a second browser,
//! logging out, and guests told apart from signed-in members wherever names show.

use crate::util::{Browser, Driver, ENTER, ServerProcess};

const PASSWORD: &str = "correct horse battery";

/// Fills the join form as `nick` for `room` with the password, and presses `button`.
async fn sign_in(browser: &Browser, server: &ServerProcess, nick: &str, room: &str, button: &str) {
    browser.open(&server.url("/")).await;
    browser.type_into("#join-nick", nick).await;
    let room_field = browser.find("#join-room").await;
    room_field.clear().await.expect("room field cleared");
    room_field.send_keys(room).await.expect("room typed");
    browser.type_into("#join-password", PASSWORD).await;
    let css = format!(".account-buttons button:{button}");
    browser.find(&css).await.click().await.expect("button pressed");
    browser.wait_for_online().await;
}

/// Maria registers in one browser and logs in to the same account in a second: both are in
/// the room under her name, marked signed in, shown once in the list. A guest cannot take
/// her name (nor a look-alike), and the guest's own name and messages are marked as a
/// guest's. Logging out brings the page back to the join form, where the name is refused to
/// a guest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_log_in_twice_and_guests_are_marked() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (laptop, phone, guest) = tokio::join!(
        driver.browser(1100, 720),
        driver.browser(1100, 720),
        driver.browser(1100, 720)
    );
    sign_in(&laptop, &server, "Maria", "club", "last-child").await;
    laptop.find(".whoami .signed-in").await;
    laptop.screenshot("accounts-1-registered").await;
    sign_in(&phone, &server, "maria", "club", "first-child").await;
    phone
        .wait_for("the phone signed in as Maria", || async {
            let whoami = phone.texts(".topbar .whoami").await.join("");
            (whoami.starts_with("you are Maria") && whoami.contains("Log out")).then_some(())
        })
        .await;

    // "MARIA" with a Cyrillic "А": the same look.
    guest.open(&server.url("/?room=club&nick=M%D0%90RIA")).await;
    guest
        .wait_for_text(
            ".join-form .error",
            "M\u{410}RIA is a registered nick: log in to use it, or choose another.",
        )
        .await;
    let nick = guest.find("#join-nick").await;
    nick.clear().await.expect("cleared");
    nick.send_keys(&format!("mario{ENTER}")).await.expect("typed");
    guest.wait_for_online().await;

    // Maria once in the list, marked; the guest marked as a guest.
    for browser in [&laptop, &phone, &guest] {
        browser
            .wait_for("the member list with Maria once and the guest", || async {
                let shown = browser.texts(".members li").await.len();
                let signed_in = browser.texts(".members li:not(.guest)").await;
                let guests = browser.texts(".members li.guest").await;
                (shown == 2 && signed_in.len() == 1 && guests.len() == 1).then_some(())
            })
            .await;
    }
    phone.type_into("#composer-input", &format!("from my phone{ENTER}")).await;
    guest.type_into("#composer-input", &format!("hello, I am a guest{ENTER}")).await;
    for browser in [&laptop, &guest] {
        browser.wait_for_text(".message .text", "from my phone").await;
        browser.wait_for_text(".message .text", "hello, I am a guest").await;
        browser.wait_for_text(".message .from.guest", "mario").await;
        browser
            .wait_for("Maria's message marked signed in", || async {
                let marked = browser.texts(".message .signed-in").await;
                (!marked.is_empty()).then_some(())
            })
            .await;
    }
    laptop.assert_accessible("the chat with signed-in and guest members").await;
    laptop.screenshot("accounts-2-marks").await;

    // Leaving from one device is not leaving: the other is still there.
    phone.close().await;
    laptop.type_into("#composer-input", &format!("still here{ENTER}")).await;
    guest.wait_for_text(".message .text", "still here").await;
    assert!(
        !guest.texts(".notice .text").await.iter().any(|text| text.contains("Maria left")),
        "one device left, the account is still in the room"
    );

    laptop.find(".whoami .log-out").await.click().await.expect("log out pressed");
    laptop.find("#join-password").await;
    laptop.assert_accessible("the join form with its account buttons").await;
    laptop.type_into("#join-nick", &format!("Maria{ENTER}")).await;
    laptop
        .wait_for_text(
            ".join-form .error",
            "Maria is a registered nick: log in to use it, or choose another.",
        )
        .await;
    laptop.screenshot("accounts-3-logged-out").await;
    laptop.close().await;
    guest.close().await;
}

/// `--auth token`: the operator's site sends people to `/?room=R#token=JWT`; the page joins at
/// once under the token's name, marked signed in, and takes the token out of the address bar.
/// An expired token brings the join form with words that say what to do, not a reconnect loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_given_a_token_joins_under_its_name() {
    const SECRET: &str = "the operator's secret, thirty-two bytes or more";
    let server = ServerProcess::start_with(&["--auth", "token", "--auth-token-secret", SECRET]);
    let driver = Driver::start();
    let (signed, stale) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    let sign = |exp: u64| {
        let claims = serde_json::json!({"sub": "u-1", "name": "Grace", "exp": exp});
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("signed")
    };
    let now = jsonwebtoken::get_current_timestamp();

    signed.open(&server.url(&format!("/?room=team#token={}", sign(now + 300)))).await;
    signed.wait_for_online().await;
    signed
        .wait_for("Grace signed in, in the member list", || async {
            let own = signed.texts(".members li.own").await;
            let marked = signed.texts(".members li.own .signed-in").await;
            (own.iter().any(|text| text.starts_with("Grace")) && !marked.is_empty()).then_some(())
        })
        .await;
    let address = signed.client.current_url().await.expect("url");
    assert!(address.fragment().is_none(), "the token left the address bar: {address}");
    signed.find(".whoami .signed-in").await;
    signed.screenshot("accounts-4-token").await;

    stale.open(&server.url(&format!("/?room=team#token={}", sign(now - 3600)))).await;
    stale
        .wait_for("the refusal in words", || async {
            let errors = stale.texts(".join-form .error").await;
            errors
                .iter()
                .any(|e| e.starts_with("This chat is only for people signed in"))
                .then_some(())
        })
        .await;
    signed.close().await;
    stale.close().await;
}

/// The room's owner (the first signed in while it had no messages) deletes a guest's message
/// after confirming, and the guest's browser sees it disappear (a tombstone in its place);
/// she edits her own message in place (Enter saves), and the other browser shows the new
/// text, marked edited; she bans the guest from the member list, and the guest's page says
/// so. The guest is offered no action on anyone's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_deletes_and_the_other_browser_sees_it_go() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (olga, troll) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    sign_in(&olga, &server, "Olga", "mods", "last-child").await;
    olga.type_into("#composer-input", &format!("welcome, all{ENTER}")).await;
    olga.wait_for_text(".message .text", "welcome, all").await;
    troll.join_with_link(&server, "mods", "troll").await;
    troll.type_into("#composer-input", &format!("spam spam spam{ENTER}")).await;
    olga.wait_for_text(".message .text", "spam spam spam").await;
    assert!(troll.texts(".message .action").await.is_empty(), "a guest may change nothing");

    // Olga's actions on the spam: focus shows them (as hovering does); Delete asks first.
    let spam = olga
        .wait_for("the spam's id", || async {
            let script = "return [...document.querySelectorAll('.message')]
                .find(m => m.querySelector('.text')?.textContent === 'spam spam spam')
                ?.dataset.id ?? null";
            let id = olga.client.execute(script, vec![]).await.expect("script");
            id.as_str().map(str::to_owned)
        })
        .await;
    let delete = olga.find(&format!(".message[data-id='{spam}'] .action")).await;
    olga.client
        .execute("arguments[0].focus()", vec![serde_json::to_value(&delete).expect("element")])
        .await
        .expect("focused");
    olga.screenshot("moderation-1-actions").await;
    delete.click().await.expect("delete pressed");
    olga.client.accept_alert().await.expect("confirmed");
    troll.wait_for_text(&format!(".message[data-id='{spam}'] .text"), "message deleted").await;
    olga.wait_for_text(&format!(".message[data-id='{spam}'] .text"), "message deleted").await;
    troll.screenshot("moderation-2-deleted").await;

    let own = olga.find(".message:not(.notice) .action").await;
    assert_eq!(own.text().await.expect("text"), "Edit", "her own message offers Edit first");
    own.click().await.expect("edit pressed");
    // The message's text becomes a field holding it, with the keyboard in it.
    let field = olga.find(".message form.edit input").await;
    assert_eq!(field.prop("value").await.expect("value").as_deref(), Some("welcome, all"));
    let focused = olga.client.execute(
        "return document.activeElement === document.querySelector('.message form.edit input')",
        vec![],
    );
    assert_eq!(focused.await.expect("script"), serde_json::Value::Bool(true));
    field.clear().await.expect("cleared");
    field.send_keys(&format!("welcome, everyone{ENTER}")).await.expect("typed");
    troll.wait_for_text(".message .text", "welcome, everyone").await;
    troll.wait_for_text(".message .edited", "(edited)").await;

    // Then she bans the troll from the member list: the troll's page says so, and stops.
    let ban = olga.find("button[aria-label='Ban troll']").await;
    olga.client
        .execute("arguments[0].focus()", vec![serde_json::to_value(&ban).expect("element")])
        .await
        .expect("focused");
    ban.click().await.expect("ban pressed");
    olga.client.accept_alert().await.expect("confirmed");
    olga.wait_for_text(".notice .text", "Olga banned troll for 24 hours.").await;
    troll
        .wait_for("the troll told of the ban", || async {
            let page = troll.texts("body").await.join(" ");
            page.contains("Olga banned you from #mods").then_some(())
        })
        .await;
    troll.screenshot("moderation-3-banned").await;
    olga.close().await;
    troll.close().await;
}

/// `--auth accounts`: the join form offers no "Join as guest" and says why; Enter without a
/// password asks for one; logging in from the same form then joins, signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_only_server_asks_guests_to_log_in() {
    let server = ServerProcess::start_with(&["--auth", "accounts"]);
    let driver = Driver::start();
    let (first, visitor) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    sign_in(&first, &server, "Uma", "team", "last-child").await;
    first.close().await;

    visitor.open(&server.url("/?room=team")).await;
    visitor
        .wait_for("no guest button", || async {
            let buttons = visitor.texts(".join-form button").await;
            (buttons == ["Log in", "Register"]).then_some(())
        })
        .await;
    let hint = visitor.texts("#join-password-help").await;
    assert!(hint.iter().any(|h| h.contains("Only people with an account")), "{hint:?}");
    visitor.type_into("#join-nick", &format!("uma{ENTER}")).await;
    visitor
        .wait_for("a password asked for", || async {
            let errors = visitor.texts(".join-form .error").await;
            errors.iter().any(|e| e.contains("Type your password")).then_some(())
        })
        .await;
    let nick = visitor.find("#join-nick").await;
    nick.clear().await.expect("cleared");
    nick.send_keys("uma").await.expect("typed");
    visitor.type_into("#join-password", &format!("{PASSWORD}{ENTER}")).await;
    visitor.wait_for_online().await;
    visitor.find(".whoami .signed-in").await;
    visitor.close().await;
}

/// A private room in the page: its owner ticks "Private", makes an invitation link and hands
/// it on; a stranger opening the room without it is refused in words; opening the link and
/// registering joins, and the room is marked private for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_link_opens_a_private_room() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (vera, walt) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    sign_in(&vera, &server, "Vera", "hideout", "last-child").await;
    // Declined, nothing changes and the box stays as the room is; confirmed, it turns private.
    let private = || async { vera.find(".room-settings input[type=checkbox]").await };
    private().await.click().await.expect("ticked");
    vera.client.dismiss_alert().await.expect("declined");
    let ticked = private().await.prop("checked").await.expect("read");
    assert_eq!(ticked.as_deref(), Some("false"), "declined: the box shows the room as it is");
    private().await.click().await.expect("ticked");
    vera.client.accept_alert().await.expect("confirmed");
    vera.wait_for_text(".topbar h1 .private", "· private").await;
    assert_eq!(private().await.prop("checked").await.expect("read").as_deref(), Some("true"));
    vera.find(".room-settings .invitations button").await.click().await.expect("link made");
    let link = vera
        .wait_for("the invitation link", || async {
            let field =
                vera.client.find(fantoccini::Locator::Css(".invitation input")).await.ok()?;
            field.prop("value").await.ok().flatten().filter(|value| value.contains("invite="))
        })
        .await;
    assert!(link.starts_with(&server.url("/?room=hideout&invite=")), "{link}");
    vera.assert_accessible("the room settings with a link").await;
    vera.screenshot("private-1-link").await;

    walt.open(&server.url("/?room=hideout&nick=walt")).await;
    walt.wait_for("the refusal in words", || async {
        let errors = walt.texts(".join-form .error").await;
        errors.iter().any(|e| e.starts_with("#hideout is private")).then_some(())
    })
    .await;
    walt.open(&link).await;
    let nick = walt.find("#join-nick").await;
    nick.send_keys("Walt").await.expect("typed");
    walt.type_into("#join-password", PASSWORD).await;
    walt.find(".account-buttons button:last-child").await.click().await.expect("registered");
    walt.wait_for_online().await;
    walt.wait_for_text(".topbar h1 .private", "· private").await;
    vera.wait_for_text(".notice .text", "Walt joined.").await;
    walt.screenshot("private-2-invited").await;
    // Revoking every link asks first.
    vera.find(".room-settings .invitations button:nth-of-type(2)")
        .await
        .click()
        .await
        .expect("revoke");
    vera.client.accept_alert().await.expect("confirmed");
    vera.wait_for_text(".invitations .hint", "Every link is revoked; members stay members.").await;
    vera.close().await;
    walt.close().await;
}
