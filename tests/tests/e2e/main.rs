//! End-to-end tests: real people's paths through the real page, in Debian's Chromium, against
//! the real server binary, copied alone into an empty folder and serving the release UI built
//! into it (`dist/`, built by scripts/build-ui before the binary).
//!
//! Screenshots of each step go to `target/e2e-screenshots/`.

mod accounts;
mod cluster;
mod rooms;
mod util;

use util::{Browser, Driver, ENTER, ServerProcess};

/// The binary alone in its folder serves the UI that was built before it (its page loads
/// the wasm that `dist/index.html` names), and the page comes up ready to join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_alone_serves_the_built_ui() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let browser = driver.browser(1100, 720).await;
    let built = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/index.html"))
        .expect("dist/index.html");
    let wasm = built
        .split(|c: char| c == '"' || c == '\'' || c.is_whitespace())
        .find(|part| part.ends_with("_bg.wasm"))
        .map(|part| part.trim_start_matches('/').to_owned())
        .expect("dist/index.html names its wasm");
    browser.open(&server.url("/")).await;
    let served = browser.client.source().await.expect("page source");
    assert!(served.contains(&wasm), "the served page loads {wasm}: {served}");
    browser.find("#join-nick").await;
    browser.screenshot("one-file-join-form").await;
    browser.close().await;
}

/// axe-core finds no accessibility violation on the join form, in a chat with messages (one's
/// own and others', with links) and notices, and in a narrow window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_have_no_accessibility_violations() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (alice, bob) = tokio::join!(driver.browser(1100, 720), driver.browser(500, 844));
    alice.open(&server.url("/")).await;
    alice.find("#join-nick").await;
    alice.assert_accessible("the join form").await;

    alice.join_with_form(&server, "alice", "a11y").await;
    bob.join_with_link(&server, "a11y", "bob").await;
    alice.wait_for_text(".notice .text", "bob joined.").await;
    bob.type_into("#composer-input", &format!("hello, see https://example.com{ENTER}")).await;
    alice.wait_for_text(".message .text", "hello, see https://example.com").await;
    alice.type_into("#composer-input", &format!("mine, https://example.org{ENTER}")).await;
    alice.wait_for_text(".message.own .text", "mine, https://example.org").await;
    bob.wait_for_text(".message .text", "mine, https://example.org").await;
    alice.assert_accessible("the chat").await;
    bob.assert_accessible("the chat in a narrow window").await;
    alice.close().await;
    bob.close().await;
}

/// With the system preferring dark, the page is dark (its background and text follow), and
/// axe-core finds no violation there either (contrast included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dark_mode_follows_the_system_and_stays_accessible() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (dark, light) = tokio::join!(driver.dark_browser(1100, 720), driver.browser(1100, 720));
    let background = |browser: &Browser| {
        let client = browser.client.clone();
        async move {
            let script = "return getComputedStyle(document.documentElement).backgroundColor";
            client.execute(script, vec![]).await.expect("style").as_str().unwrap_or("").to_owned()
        }
    };
    dark.open(&server.url("/")).await;
    light.open(&server.url("/")).await;
    dark.find("#join-nick").await;
    light.find("#join-nick").await;
    let (dark_bg, light_bg) = (background(&dark).await, background(&light).await);
    assert_eq!(dark_bg, "rgb(21, 24, 29)", "dark");
    assert_eq!(light_bg, "rgb(246, 247, 249)", "light");
    dark.assert_accessible("the join form, dark").await;
    dark.screenshot("dark-1-join").await;

    dark.join_with_form(&server, "dana", "night").await;
    light.join_with_link(&server, "night", "lee").await;
    light.type_into("#composer-input", &format!("good evening, https://example.com{ENTER}")).await;
    dark.wait_for_text(".message .text", "good evening, https://example.com").await;
    dark.type_into("#composer-input", &format!("hi lee{ENTER}")).await;
    dark.wait_for_text(".message.own .text", "hi lee").await;
    dark.assert_accessible("the chat, dark").await;
    dark.screenshot("dark-2-chat").await;
    dark.close().await;
    light.close().await;
}

/// Two people join one room (one through the form, one through a shared link), see each other
/// in the member list and the notices, chat both ways with Enter and with the button, see each
/// other typing, and see the departure. Someone in another room sees none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_and_another_room_sees_nothing() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (alice, bob, carol) = tokio::join!(
        driver.browser(1100, 720),
        driver.browser(1100, 720),
        driver.browser(1100, 720)
    );

    alice.join_with_form(&server, "alice", "lobby").await;
    alice.screenshot("chat-1-alice-joined").await;
    let url = alice.client.current_url().await.expect("url");
    assert_eq!(url.query(), Some("room=lobby&nick=alice"), "the address bar is a shareable link");

    bob.join_with_link(&server, "lobby", "bob").await;
    carol.join_with_link(&server, "elsewhere", "carol").await;

    alice.wait_for_text(".notice .text", "bob joined.").await;
    alice.wait_for_text(".members li", "bob").await;
    bob.wait_for_text(".members li", "alice").await;

    alice.type_into("#composer-input", "hi bob").await;
    bob.wait_for_text(".typing", "alice is typing…").await;
    alice.type_into("#composer-input", &ENTER.to_string()).await;
    bob.wait_for_text(".message .text", "hi bob").await;
    bob.wait_for_text(".typing", "").await;

    bob.type_into("#composer-input", "hello alice, from the button").await;
    bob.find(".composer button[type=submit]").await.click().await.expect("send clicked");
    alice.wait_for_text(".message .text", "hello alice, from the button").await;
    assert_eq!(alice.texts(".message.own .text").await, ["hi bob"], "own messages stand out");
    alice.screenshot("chat-2-alice-conversation").await;
    bob.screenshot("chat-2-bob-conversation").await;

    carol.type_into("#composer-input", &format!("anyone here?{ENTER}")).await;
    carol.wait_for_text(".message .text", "anyone here?").await;
    assert_eq!(carol.texts(".message .text").await, ["anyone here?"], "nothing from #lobby");
    assert_eq!(carol.texts(".members li").await, ["carol (you)"]);
    carol.screenshot("chat-3-carol-elsewhere").await;

    bob.close().await;
    alice.wait_for_text(".notice .text", "bob left.").await;
    alice
        .wait_for("bob to leave the member list", || async {
            (alice.texts(".members li").await == ["alice (you)"]).then_some(())
        })
        .await;
    alice.screenshot("chat-4-bob-left").await;
    alice.close().await;
    carol.close().await;
}

/// Moving to another room from the page shows that room's history and members, and its
/// members see the newcomer arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_rooms_shows_history_and_members() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (dora, erin) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));

    erin.join_with_link(&server, "books", "erin").await;
    erin.type_into("#composer-input", &format!("reading Dune{ENTER}")).await;
    erin.wait_for_text(".message .text", "reading Dune").await;

    dora.join_with_link(&server, "films", "dora").await;
    dora.type_into("#room-input", &format!("books{ENTER}")).await;
    dora.wait_for_text(".topbar h1", "#books").await;
    dora.wait_for_text(".message .text", "reading Dune").await;
    assert_eq!(dora.texts(".members li").await, ["dora (you)", "erin"]);
    erin.wait_for_text(".notice .text", "dora joined.").await;
    let url = dora.client.current_url().await.expect("url");
    assert_eq!(url.query(), Some("room=books&nick=dora"));
    dora.screenshot("switch-1-dora-in-books").await;
    dora.close().await;
    erin.close().await;
}

/// The server restarts under open pages: they say they are reconnecting; a message typed
/// meanwhile shows as pending; both pages come back online by themselves in the same room under
/// the same nick, the pending message goes out, and everyone sees every message exactly once
/// (history from before the restart included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_reconnects_after_server_restart() {
    let mut server = ServerProcess::start();
    let port = server.addr.port();
    let driver = Driver::start();
    let (frank, gina) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    frank.join_with_link(&server, "ops", "frank").await;
    gina.join_with_link(&server, "ops", "gina").await;
    frank.type_into("#composer-input", &format!("before the restart{ENTER}")).await;
    gina.wait_for_text(".message .text", "before the restart").await;

    server.stop();
    frank.find(".badge.reconnecting").await;
    frank.type_into("#composer-input", &format!("typed while offline{ENTER}")).await;
    frank.wait_for_text(".message.pending .text", "typed while offline").await;
    frank.screenshot("restart-1-reconnecting-with-pending").await;

    let server = ServerProcess::start_on(port);
    frank.wait_for_online().await;
    frank.wait_for_text(".topbar h1", "#ops").await;
    frank.wait_for_text(".members li", "frank (you)").await;
    frank.type_into("#composer-input", &format!("back after the restart{ENTER}")).await;
    let expected = ["before the restart", "typed while offline", "back after the restart"];
    for viewer in [&frank, &gina] {
        viewer.wait_for_text(".message .text", "back after the restart").await;
        viewer
            .wait_for("no pending message", || async {
                viewer.texts(".message.pending").await.is_empty().then_some(())
            })
            .await;
        assert_eq!(viewer.texts(".message .text").await, expected, "each once, in order");
    }
    frank.screenshot("restart-2-online-again").await;
    frank.close().await;
    gina.close().await;
    drop(server);
}

/// Markup in a nick and in messages is shown exactly as typed and nothing in it runs, for the
/// sender and for everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_is_shown_as_text_and_never_runs() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (mallory, grace) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    let nick = "<img src=x onerror=__n=1>";
    let texts = [
        "<script>window.__s=1</script>",
        r#"<img src=y onerror="window.__i=1">"#,
        "**bold** _it_ [link](javascript:window.__l=1) `code` # heading",
    ];

    grace.join_with_link(&server, "safe", "grace").await;
    mallory.join_with_form(&server, nick, "safe").await;
    for text in texts {
        mallory.type_into("#composer-input", &format!("{text}{ENTER}")).await;
    }
    for viewer in [&mallory, &grace] {
        viewer.wait_for_text(".message .text", texts[2]).await;
        assert_eq!(viewer.texts(".message .text").await, texts, "shown exactly as typed");
        assert_eq!(viewer.texts(".message .from").await, [nick; 3]);
        let injected = viewer.client.find_all(fantoccini::Locator::Css(
            ".messages img, .messages script, .members img, .messages strong, .messages em",
        ));
        assert!(injected.await.expect("query").is_empty(), "no element was made from text");
        let ran = viewer
            .client
            .execute("return [window.__n, window.__s, window.__i, window.__l].some(v => v !== undefined)", vec![])
            .await
            .expect("script result");
        assert_eq!(ran, serde_json::Value::Bool(false), "nothing executed");
    }
    grace.wait_for_text(".members li", nick).await;
    grace.screenshot("markup-1-shown-as-text").await;
    mallory.close().await;
    grace.close().await;
}

/// On a phone (390 × 844, emulated) the messages take the screen and the input stays on it
/// (the rooms and members are in a drawer, tested in `rooms`), and axe-core finds no
/// violation; on a desktop the rooms and members sit beside the messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_fits_phone_and_desktop() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (phone, desktop) = tokio::join!(driver.phone(), driver.browser(1100, 720));
    for (browser, nick) in [(&phone, "hana"), (&desktop, "ivan")] {
        browser.join_with_link(&server, "layout", nick).await;
    }
    let (main, composer) = (phone.rect(".conversation").await, phone.rect("#composer-input").await);
    let viewport = phone.client.execute("return window.innerHeight", vec![]).await.expect("height");
    let viewport = viewport.as_f64().expect("number");
    assert!(composer.1 + composer.3 <= viewport, "phone: the input is on screen");
    let width = phone.client.execute("return window.innerWidth", vec![]).await.expect("width");
    assert_eq!(width.as_f64(), Some(390.0), "a phone's width, not the window's 500 px");
    assert!(main.0 <= 1.0 && main.2 >= 389.0, "phone: the messages take the width: {main:?}");
    phone.assert_accessible("the chat on a phone").await;
    phone.screenshot("layout-phone").await;

    let (side, main) = (desktop.rect(".sidebar").await, desktop.rect(".conversation").await);
    assert!(side.0 + side.2 <= main.0 + 1.0, "desktop: sidebar beside the messages");
    desktop.screenshot("layout-desktop").await;
    phone.close().await;
    desktop.close().await;
}

/// Keyboard only: the nick field has focus on arrival, Tab reaches the room, Enter joins; the
/// message input then has focus, Enter sends, Escape clears, and Tab reaches the Send button;
/// going back, the message list takes the focus (to scroll it) and then shows each time's
/// full date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_works_end_to_end() {
    const TAB: char = '\u{e004}';
    const ESCAPE: char = '\u{e00c}';
    const CONTROL: char = '\u{e009}';
    const RELEASE: char = '\u{e000}';
    let server = ServerProcess::start();
    let driver = Driver::start();
    let kim = driver.browser(1100, 720).await;
    let focused = || async { kim.client.active_element().await.expect("focused element") };
    let focused_id = || async { focused().await.attr("id").await.expect("id attribute") };

    kim.open(&server.url("/")).await;
    kim.wait_for("the nick field to have focus", || async {
        (focused_id().await.as_deref() == Some("join-nick")).then_some(())
    })
    .await;
    focused().await.send_keys(&format!("kim{TAB}")).await.expect("typed");
    assert_eq!(focused_id().await.as_deref(), Some("join-room"));
    focused().await.send_keys(&format!("{CONTROL}a{RELEASE}keys{ENTER}")).await.expect("typed");
    kim.wait_for_online().await;
    kim.wait_for_text(".topbar h1", "#keys").await;

    kim.wait_for("the message input to have focus", || async {
        (focused_id().await.as_deref() == Some("composer-input")).then_some(())
    })
    .await;
    focused().await.send_keys(&format!("no mouse needed{ENTER}")).await.expect("typed");
    kim.wait_for_text(".message .text", "no mouse needed").await;
    focused().await.send_keys(&format!("second thoughts{ESCAPE}")).await.expect("typed");
    assert_eq!(
        kim.find("#composer-input").await.prop("value").await.expect("value").as_deref(),
        Some("")
    );
    focused().await.send_keys(&TAB.to_string()).await.expect("tab");
    assert_eq!(focused().await.text().await.expect("text"), "Send", "Tab reaches the Send button");
    const SHIFT: char = '\u{e008}';
    for _ in 0..2 {
        focused().await.send_keys(&format!("{SHIFT}{TAB}{RELEASE}")).await.expect("shift-tab");
    }
    let class = focused().await.attr("class").await.expect("class attribute");
    assert_eq!(class.as_deref(), Some("messages"), "Shift+Tab reaches the message list");
    let full_date = kim.find(".message .full-date").await;
    assert!(full_date.is_displayed().await.expect("displayed"), "full dates while focused");
    assert!(full_date.text().await.expect("text").len() > " · 01:40".len());
    kim.close().await;
}

/// Refusals are explained in words next to where the person typed: a taken nick on the join
/// form, an over-long message under the message input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_explained_in_words() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (first, second) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    first.join_with_link(&server, "words", "lee").await;

    second.open(&server.url("/")).await;
    second.type_into("#join-nick", "LEE").await;
    let room = second.find("#join-room").await;
    room.clear().await.expect("cleared");
    room.send_keys(&format!("words{ENTER}")).await.expect("typed");
    second.wait_for_text(".join-form .error", "Someone in #words is already called LEE.").await;
    second.screenshot("errors-1-nick-taken").await;
    let nick = second.find("#join-nick").await;
    nick.clear().await.expect("cleared");
    nick.send_keys(&format!("lee2{ENTER}")).await.expect("typed");
    second.wait_for_online().await;

    let long = "x".repeat(protocol::rules::MAX_TEXT_CHARS + 1);
    let input = second.find("#composer-input").await;
    second
        .client
        .execute(
            "arguments[0].value = arguments[1]",
            vec![serde_json::to_value(&input).expect("element"), long.into()],
        )
        .await
        .expect("value set");
    input.send_keys(&ENTER.to_string()).await.expect("enter");
    second.wait_for_text("#composer-error", "A message can be at most 4096 characters long.").await;
    second.screenshot("errors-2-too-long").await;
    first.close().await;
    second.close().await;
}
