//! Several rooms on one page: the sidebar with unread counts and mentions, the rooms coming
//! back after a reload, scrolling back to the beginning of a room, and the phone's drawer.

use std::time::Duration;

use crate::util::{Browser, Driver, ENTER, ServerProcess};

/// The unread badge of `room` in the sidebar ("" when there is none).
async fn unread(browser: &Browser, room: &str) -> String {
    let css = format!(".rooms li[data-room={room}] .unread");
    browser.texts(&css).await.join("")
}

/// Clicks the sidebar button that opens `room`.
async fn open_room(browser: &Browser, room: &str) {
    let css = format!(".rooms li[data-room={room}] .room");
    browser.find(&css).await.click().await.expect("room opened");
    browser.wait_for_text(".topbar h1", &format!("#{room}")).await;
}

/// Joins `room` from the sidebar's field; the page opens it.
async fn join_from_sidebar(browser: &Browser, room: &str) {
    browser.type_into("#room-input", &format!("{room}{ENTER}")).await;
    browser.wait_for_text(".topbar h1", &format!("#{room}")).await;
    browser
        .wait_for("the welcome of the new room", || async {
            let joining = browser.texts(&format!(".rooms li[data-room={room}] .joining")).await;
            joining.is_empty().then_some(())
        })
        .await;
}

/// Alice in #main and #side, reading #main; and a second window, for bob, not joined yet.
async fn alice_in_two_rooms(server: &ServerProcess, driver: &Driver) -> (Browser, Browser) {
    let (alice, bob) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    alice.join_with_link(server, "main", "alice").await;
    join_from_sidebar(&alice, "side").await;
    open_room(&alice, "main").await;
    (alice, bob)
}

async fn title(browser: &Browser) -> String {
    browser.client.title().await.expect("title")
}

/// One page in two rooms: while it shows one, messages in the other raise that room's unread
/// count (and the title's), a message naming it with `@` marks a mention; opening the room
/// reads them and highlights the mention. Nothing of the other room shows in the open one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_and_mentions_rise_in_rooms_not_open() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (alice, bob) = alice_in_two_rooms(&server, &driver).await;
    bob.join_with_link(&server, "side", "bob").await;

    bob.type_into("#composer-input", &format!("hello side{ENTER}")).await;
    alice
        .wait_for("one unread in #side", || async {
            (unread(&alice, "side").await == "1").then_some(())
        })
        .await;
    bob.type_into("#composer-input", &format!("ping @alice, are you there?{ENTER}")).await;
    alice
        .wait_for("two unread in #side", || async {
            (unread(&alice, "side").await == "2").then_some(())
        })
        .await;
    alice.find(".rooms li[data-room=side] .mention-mark").await;
    assert_eq!(title(&alice).await, "(2, 1 @) #main · Chat");
    assert!(alice.texts(".message .text").await.is_empty(), "nothing of #side in #main");
    alice.assert_accessible("the sidebar with unread rooms").await;
    alice.screenshot("rooms-1-unread").await;

    open_room(&alice, "side").await;
    alice.wait_for_text(".message.mention .text", "ping @alice, are you there?").await;
    assert_eq!(unread(&alice, "side").await, "", "read once open");
    assert!(alice.texts(".rooms .mention-mark").await.is_empty());
    assert_eq!(title(&alice).await, "#side · Chat");
    alice.screenshot("rooms-2-mention").await;

    // Leaving a room takes it out of the sidebar, and its members see the page go.
    alice.find(".rooms li[data-room=side] .leave").await.click().await.expect("left");
    alice.wait_for_text(".topbar h1", "#main").await;
    bob.wait_for_text(".notice .text", "alice left.").await;
    let rooms = alice.texts(".rooms .joined li .name").await;
    assert_eq!(rooms, ["#main"]);
    alice.close().await;
    bob.close().await;
}

/// A reload brings back every room the page was in, in order, on one connection, and the
/// room that was open; so does a restart of the server under the open page, each room
/// resuming where it was (what arrived unread stays counted, nothing twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_brings_the_rooms_back() {
    let mut server = ServerProcess::start();
    let driver = Driver::start();
    let (cleo, dan) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    cleo.join_with_link(&server, "one", "cleo").await;
    join_from_sidebar(&cleo, "two").await;
    join_from_sidebar(&cleo, "three").await;
    open_room(&cleo, "two").await;

    cleo.client.refresh().await.expect("reloaded");
    cleo.wait_for_online().await;
    cleo.wait_for_text(".topbar h1", "#two").await;
    cleo.wait_for("every room back", || async {
        let names = cleo.texts(".rooms .joined li .name").await;
        let joining = cleo.texts(".rooms .joining").await;
        (names == ["#one", "#two", "#three"] && joining.is_empty()).then_some(())
    })
    .await;
    // Back in #three for real: a message there counts as unread.
    dan.join_with_link(&server, "three", "dan").await;
    dan.type_into("#composer-input", &format!("welcome back{ENTER}")).await;
    cleo.wait_for("an unread in #three", || async {
        (unread(&cleo, "three").await == "1").then_some(())
    })
    .await;

    let port = server.addr.port();
    server.stop();
    cleo.find(".badge.reconnecting").await;
    let _server = ServerProcess::start_on(port);
    cleo.wait_for_online().await;
    cleo.wait_for("every room back after the restart", || async {
        let names = cleo.texts(".rooms .joined li .name").await;
        let joining = cleo.texts(".rooms .joining").await;
        (names == ["#one", "#two", "#three"] && joining.is_empty()).then_some(())
    })
    .await;
    dan.wait_for_online().await;
    dan.type_into("#composer-input", &format!("after the restart{ENTER}")).await;
    cleo.wait_for("two unread in #three", || async {
        (unread(&cleo, "three").await == "2").then_some(())
    })
    .await;
    open_room(&cleo, "three").await;
    cleo.wait_for_text(".message .text", "after the restart").await;
    assert_eq!(cleo.texts(".message .text").await, ["welcome back", "after the restart"]);
    cleo.close().await;
    dan.close().await;
}

/// Scrolling up loads older messages page by page, down to the first message of a room with
/// 1,000 messages, and then says it is the beginning of the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrolling_up_reaches_the_first_of_a_thousand_messages() {
    const MESSAGES: usize = 1_000;
    let server =
        ServerProcess::start_with(&["--rate-per-second", "10000", "--rate-burst", "10000"]);
    let url = testclient::url(server.addr, "room=long&nick=writer");
    let mut writer = testclient::Client::connect(&url).await;
    writer.welcome().await;
    let frames = (0..MESSAGES).map(|i| {
        let frame = serde_json::json!({
            "type": "send", "text": format!("message {i:04}"), "client_id": format!("k{i}")
        });
        testclient::Message::text(frame.to_string())
    });
    writer.send_burst(frames).await;
    for _ in 0..MESSAGES {
        writer.ack().await;
    }
    writer.close().await;

    let driver = Driver::start();
    let reader = driver.browser(1100, 720).await;
    reader.join_with_link(&server, "long", "reader").await;
    reader.wait_for_text(".message .text", "message 0999").await;
    assert!(reader.texts(".message").await.len() < MESSAGES, "the welcome brings recent ones");
    let scroll_to_top = "document.querySelector('.messages').scrollTop = 0";
    let started = std::time::Instant::now();
    reader
        .wait_for("the beginning of the room", || async {
            if reader.texts(".older .beginning").await.is_empty() {
                reader.client.execute(scroll_to_top, vec![]).await.expect("scrolled");
                tokio::time::sleep(Duration::from_millis(50)).await;
                return None;
            }
            Some(())
        })
        .await;
    let texts = reader.texts(".message .text").await;
    assert_eq!(texts.len(), MESSAGES, "every message, once");
    assert_eq!((texts[0].as_str(), texts[MESSAGES - 1].as_str()), ("message 0000", "message 0999"));
    assert_eq!(reader.texts(".older .beginning").await, ["This is the beginning of #long."]);
    eprintln!("scrolled back through {MESSAGES} messages in {:?}", started.elapsed());
    reader.screenshot("rooms-3-beginning").await;
    reader.close().await;
}

/// On a phone the messages fill the screen; the rooms, members and settings open from a
/// button as a drawer over them (axe-core finds no violation there), and choosing a room
/// closes it. Screenshots of the phone in light and dark mode go to docs/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_drawer_holds_rooms_and_members() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (phone, dark_phone) = tokio::join!(driver.phone(), driver.dark_phone());
    phone.join_with_link(&server, "pocket", "hana").await;
    dark_phone.join_with_link(&server, "pocket", "ivo").await;
    dark_phone.type_into("#composer-input", &format!("hi from the dark side{ENTER}")).await;
    phone.wait_for_text(".message .text", "hi from the dark side").await;
    phone.type_into("#composer-input", &format!("hi @ivo{ENTER}")).await;
    dark_phone.wait_for_text(".message.mention .text", "hi @ivo").await;

    let conversation = phone.rect(".conversation").await;
    assert!(conversation.2 >= 389.0, "the messages take the whole width: {conversation:?}");
    assert!(!phone.displayed(".sidebar").await, "the drawer is closed");
    phone.screenshot("phone-1-chat").await;

    phone.find(".drawer-toggle").await.click().await.expect("drawer opened");
    phone
        .wait_for("the drawer", || async { phone.displayed(".sidebar").await.then_some(()) })
        .await;
    let toggle = phone.find(".drawer-toggle").await;
    assert_eq!(toggle.attr("aria-expanded").await.expect("attr").as_deref(), Some("true"));
    assert_eq!(phone.texts(".members li").await, ["hana (you)", "ivo"]);
    phone.assert_accessible("the drawer and settings on a phone").await;
    phone.screenshot("phone-2-drawer").await;

    // Escape closes it, the button opens it again.
    phone.type_into("#room-input", "\u{e00c}").await;
    phone
        .wait_for("Escape to close the drawer", || async {
            (!phone.displayed(".sidebar").await).then_some(())
        })
        .await;
    phone.find(".drawer-toggle").await.click().await.expect("drawer opened again");
    phone
        .wait_for("the drawer", || async { phone.displayed(".sidebar").await.then_some(()) })
        .await;
    phone.type_into("#room-input", &format!("elsewhere{ENTER}")).await;
    phone.wait_for_text(".topbar h1", "#elsewhere").await;
    phone
        .wait_for("the drawer to close", || async {
            (!phone.displayed(".sidebar").await).then_some(())
        })
        .await;
    dark_phone.assert_accessible("the chat on a dark phone").await;
    for (browser, name) in
        [(&phone, "screenshot-phone.png"), (&dark_phone, "screenshot-phone-dark.png")]
    {
        let png = browser.client.screenshot().await.expect("screenshot");
        std::fs::write(docs().join(name), png).expect("docs screenshot");
    }
    phone.close().await;
    dark_phone.close().await;
}

/// The README's screenshots: two people in a room, light and dark, with a second room
/// waiting in the sidebar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_screenshots_for_the_docs() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (light, dark, other) = tokio::join!(
        driver.browser(1100, 720),
        driver.dark_browser(1100, 720),
        driver.browser(1100, 720)
    );
    light.join_with_link(&server, "lobby", "alice").await;
    join_from_sidebar(&light, "rust").await;
    open_room(&light, "lobby").await;
    dark.join_with_link(&server, "lobby", "bob").await;
    dark.type_into(
        "#composer-input",
        &format!("morning! notes are at https://example.com/notes{ENTER}"),
    )
    .await;
    light.type_into("#composer-input", &format!("thanks @bob, reading them now{ENTER}")).await;
    other.join_with_link(&server, "rust", "carol").await;
    other
        .type_into("#composer-input", &format!("anyone tried the new borrow checker?{ENTER}"))
        .await;
    light
        .wait_for("an unread in #rust", || async {
            (unread(&light, "rust").await == "1").then_some(())
        })
        .await;
    dark.wait_for_text(".message.mention .text", "thanks @bob, reading them now").await;
    for (browser, name) in [(&light, "screenshot.png"), (&dark, "screenshot-dark.png")] {
        let png = browser.client.screenshot().await.expect("screenshot");
        std::fs::write(docs().join(name), png).expect("docs screenshot");
    }
    light.close().await;
    dark.close().await;
    other.close().await;
}

fn docs() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// First load of the release UI as the server serves it, in fresh browsers (cold cache):
/// the time from navigation to a join form that takes typing (`chat:join-form`), and, through
/// a shared link into a room with 100 messages, to the first message shown
/// (`chat:first-message`); with the wasm's bytes on the wire. The page marks both moments in
/// the browser's performance timeline; the figures are printed (and written to
/// `target/e2e-screenshots/load-times.txt`) for BENCHMARKS.md, not compared with a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_load_times_are_marked() {
    const LOADS: usize = 3;
    let server = ServerProcess::start_with(&["--rate-per-second", "1000", "--rate-burst", "1000"]);
    let mut writer =
        testclient::Client::connect(&testclient::url(server.addr, "room=perf&nick=writer")).await;
    writer.welcome().await;
    for i in 0..100 {
        writer.say_with_id(&format!("message {i}"), &format!("k{i}")).await;
    }
    for _ in 0..100 {
        writer.ack().await;
    }
    let driver = Driver::start();
    let mark = |browser: &Browser, name: &'static str| {
        let client = browser.client.clone();
        async move {
            let script = format!(
                "const m = performance.getEntriesByName('{name}'); return m.length ? m[0].startTime : null"
            );
            client.execute(&script, vec![]).await.expect("mark").as_f64()
        }
    };
    let wasm_bytes = |browser: &Browser| {
        let client = browser.client.clone();
        async move {
            let script = "const w = performance.getEntriesByType('resource').find(r => r.name.endsWith('.wasm')); return w ? w.transferSize : null";
            client.execute(script, vec![]).await.expect("resource").as_f64()
        }
    };
    let mut lines = Vec::new();
    for load in 0..LOADS {
        let browser = driver.browser(1100, 720).await;
        browser.open(&server.url("/")).await;
        browser.find("#join-nick").await;
        let form =
            browser.wait_for("the join form's mark", || mark(&browser, "chat:join-form")).await;
        let bytes = wasm_bytes(&browser).await.unwrap_or(0.0);
        browser.close().await;

        let browser = driver.browser(1100, 720).await;
        browser.open(&server.url(&format!("/?room=perf&nick=reader{load}"))).await;
        browser.wait_for_text(".message .text", "message 99").await;
        let first = browser
            .wait_for("the first message's mark", || mark(&browser, "chat:first-message"))
            .await;
        browser.close().await;
        assert!(form > 0.0 && first > 0.0);
        lines.push(format!(
            "load {load}: join form {form:.0} ms, first message {first:.0} ms, wasm {bytes:.0} bytes on the wire"
        ));
    }
    let report = lines.join("\n");
    eprintln!("{report}");
    std::fs::write(crate::util::screenshot_dir().join("load-times.txt"), report).expect("report");
}

/// The page keeps answering the keyboard while 10,000 messages pour into its room. It records,
/// for each key typed into the composer during the flood, how long the key waited before its
/// handler ran (`performance.now() - event.timeStamp`: the main thread busy with messages), and
/// the Event Timing API's key events slower than 16 ms (input to the next paint). The figures
/// are printed and written to `target/e2e-screenshots/input-latency.txt` for BENCHMARKS.md, not
/// compared with a bound (speed is for `bench`); the test asserts that typing overlapped the
/// flood, that no key was lost, and that the last message was shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_while_ten_thousand_messages_arrive() {
    const MESSAGES: usize = 10_000;
    // The writer sends as fast as it can, and the page's queue may hold the whole flood.
    let server = ServerProcess::start_with(&[
        "--rate-per-second",
        "100000",
        "--rate-burst",
        "100000",
        "--max-queued-frames",
        "20000",
        "--max-queued-bytes",
        "16000000",
    ]);
    let driver = Driver::start();
    let browser = driver.browser(1100, 720).await;
    browser.join_with_link(&server, "flood", "reader").await;
    let setup = r#"
        window.chatKeyDelays = [];
        window.chatSlowEvents = [];
        document.querySelector('#composer-input').addEventListener('keydown',
            e => window.chatKeyDelays.push(performance.now() - e.timeStamp));
        new PerformanceObserver(list => {
            for (const e of list.getEntries()) {
                window.chatSlowEvents.push([e.name, e.duration, e.processingStart - e.startTime]);
            }
        }).observe({type: 'event', durationThreshold: 16});
        return true;"#;
    browser.client.execute(setup, vec![]).await.expect("recorders installed");
    let mut writer =
        testclient::Client::connect(&testclient::url(server.addr, "room=flood&nick=writer")).await;
    writer.welcome().await;
    let began = std::time::Instant::now();
    // In bursts of 100 every 20 ms (about 5,000 a second), so the flood lasts long enough to
    // type into.
    let flood = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for burst in 0..MESSAGES / 100 {
            tick.tick().await;
            for i in burst * 100..(burst + 1) * 100 {
                writer.say(&format!("flood {i}")).await;
            }
        }
        writer
    });
    let last = format!("flood {}", MESSAGES - 1);
    let shown = || async {
        let script = format!(
            "const t = document.querySelectorAll('.message .text'); return t.length > 0 && t[t.length - 1].textContent === '{last}'"
        );
        browser.client.execute(&script, vec![]).await.ok().and_then(|v| v.as_bool())
    };
    let input = browser.find("#composer-input").await;
    let mut typed = String::new();
    let deadline = began + Duration::from_secs(120);
    loop {
        // Ten keys a call (chromedriver takes a few hundred ms per call here, yet dispatches
        // the keys of one call one by one, each timed by the page), until the last message is
        // on the page.
        let keys: String =
            (0..10).map(|k| char::from(b'a' + ((typed.len() + k) % 26) as u8)).collect();
        input.send_keys(&keys).await.expect("keys typed");
        typed.push_str(&keys);
        if flood.is_finished() && shown().await == Some(true) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the last message was never shown");
    }
    let rendered = began.elapsed();
    let _writer = flood.await.expect("the writer sent everything");
    let value = input.prop("value").await.expect("composer value").unwrap_or_default();
    assert_eq!(value, typed, "every key reached the composer, in order");
    assert!(typed.len() >= 10, "typing overlapped the flood ({} keys)", typed.len());

    let delays =
        browser.client.execute("return window.chatKeyDelays", vec![]).await.expect("delays read");
    let mut delays: Vec<f64> = delays
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    assert_eq!(delays.len(), typed.len(), "each key was timed");
    delays.sort_by(f64::total_cmp);
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    let slow = browser
        .client
        .execute("return window.chatSlowEvents", vec![])
        .await
        .expect("slow events read");
    let slow_keys: Vec<(f64, f64)> = slow
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e[0].as_str().is_some_and(|name| name.starts_with("key")))
                .filter_map(|e| Some((e[1].as_f64()?, e[2].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let worst = slow_keys.iter().map(|(duration, _)| *duration).fold(0.0, f64::max);
    let report = format!(
        "{MESSAGES} messages shown in {:.1} s; {} keys typed meanwhile; key wait before its handler: \
         median {:.1} ms, p90 {:.1} ms, max {:.1} ms; key events over 16 ms from input to next paint: {} \
         (longest {worst:.0} ms)",
        rendered.as_secs_f64(),
        typed.len(),
        at(0.5),
        at(0.9),
        at(1.0),
        slow_keys.len(),
    );
    eprintln!("{report}");
    std::fs::write(crate::util::screenshot_dir().join("input-latency.txt"), report)
        .expect("report");
}

/// Notifications of mentions: the page never asks for the permission by itself; turning them
/// on in the settings asks once; then a mention in a room not in view shows one, with who and
/// where. (A headless browser shows no notifications, so the page's `Notification` is replaced
/// by a recorder once it has loaded.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_notify_once_turned_on() {
    let server = ServerProcess::start();
    let driver = Driver::start();
    let (alice, bob) = alice_in_two_rooms(&server, &driver).await;
    let permission = alice.client.execute("return Notification.permission", vec![]).await;
    assert_eq!(permission.expect("permission"), "default", "never asked on load");
    let recorder = r#"
        window.__asked = 0; window.__shown = []; window.__permission = "default";
        window.Notification = class {
            constructor(title, options) { window.__shown.push([title, options.body]); }
            static get permission() { return window.__permission; }
            static requestPermission() {
                window.__asked += 1; window.__permission = "granted";
                return Promise.resolve("granted");
            }
        };"#;
    alice.client.execute(recorder, vec![]).await.expect("recorder installed");
    let recorded = || async {
        let script = "return [window.__asked, window.__shown]";
        alice.client.execute(script, vec![]).await.expect("recorded")
    };

    bob.join_with_link(&server, "side", "bob").await;
    bob.type_into("#composer-input", &format!("@alice before{ENTER}")).await;
    alice
        .wait_for("the mention's unread", || async {
            (unread(&alice, "side").await == "1").then_some(())
        })
        .await;
    assert_eq!(recorded().await, serde_json::json!([0, []]), "off: nothing asked, nothing shown");

    alice.find(".settings input[type=checkbox]").await.click().await.expect("turned on");
    alice
        .wait_for("the setting on", || async {
            let checkbox = alice.find(".settings input[type=checkbox]").await;
            (checkbox.prop("checked").await.ok()?.as_deref() == Some("true")).then_some(())
        })
        .await;
    bob.type_into("#composer-input", &format!("@alice after{ENTER}")).await;
    let shown = serde_json::json!([1, [["bob mentioned you in #side", "@alice after"]]]);
    alice
        .wait_for("one notification", || async { (recorded().await == shown).then_some(()) })
        .await;
    alice.close().await;
    bob.close().await;
}

/// A server that lost its data folder comes back under an open page: the page is told the
/// room's history started over (ids now name other messages), drops what it showed, and shows
/// the new history; nothing of the old one is mixed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_its_data_starts_the_page_afresh() {
    let mut server = ServerProcess::start();
    let port = server.addr.port();
    let driver = Driver::start();
    let (frank, gina) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    frank.join_with_link(&server, "wipe", "frank").await;
    for text in ["before one", "before two", "before three"] {
        frank.type_into("#composer-input", &format!("{text}{ENTER}")).await;
        frank.wait_for_text(".message .text", text).await;
    }
    server.stop();
    frank.find(".badge.reconnecting").await;
    let server = ServerProcess::start_afresh_on(port);
    // More messages than the page saw before: their ids pass the page's last one, so without
    // epochs the page would take the fourth for the one after "before three".
    gina.join_with_link(&server, "wipe", "gina").await;
    let after = ["after 1", "after 2", "after 3", "after 4"];
    for text in after {
        gina.type_into("#composer-input", &format!("{text}{ENTER}")).await;
        gina.wait_for_text(".message .text", text).await;
    }
    frank.wait_for_online().await;
    frank.wait_for_text(".notice .text", "The server's history of #wipe started over.").await;
    frank.wait_for_text(".message .text", "after 4").await;
    assert_eq!(frank.texts(".message .text").await, after, "nothing of the old history");
    frank.close().await;
    gina.close().await;
}
