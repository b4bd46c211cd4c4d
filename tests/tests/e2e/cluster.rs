//! Two servers sharing rooms through one Redis (`--redis`), in real browsers.

use std::io::{Read, Write};

use testclient::redis::RedisProcess;

use crate::util::{Driver, ENTER, ServerProcess};

/// Two pages on two servers sharing one Redis are one conversation: each lists the other,
/// typing and messages cross the servers both ways. Redis is then killed (SIGKILL): a message
/// typed meanwhile is refused (`unavailable`) and stays pending on the page, goes out by
/// itself once Redis is back from its append-only file, and both pages end with every message
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_redis_are_one_chat() {
    let mut redis = RedisProcess::start(true);
    let flags = ["--redis", redis.url.as_str(), "--presence-expiry", "3s"];
    let (one, two) = (ServerProcess::start_with(&flags), ServerProcess::start_with(&flags));
    let driver = Driver::start();
    let (hana, ivan) = tokio::join!(driver.browser(1100, 720), driver.browser(1100, 720));
    hana.join_with_link(&one, "shared", "hana").await;
    ivan.join_with_link(&two, "shared", "ivan").await;
    hana.wait_for_text(".members li", "ivan").await;
    ivan.wait_for_text(".members li", "hana").await;

    hana.type_into("#composer-input", "from server one").await;
    ivan.wait_for_text(".typing", "hana is typing…").await;
    hana.type_into("#composer-input", &ENTER.to_string()).await;
    ivan.wait_for_text(".message .text", "from server one").await;
    ivan.type_into("#composer-input", &format!("from server two{ENTER}")).await;
    hana.wait_for_text(".message .text", "from server two").await;
    hana.screenshot("redis-1-two-servers").await;

    redis.kill();
    hana.type_into("#composer-input", &format!("while Redis is down{ENTER}")).await;
    hana.wait_for_text(".message.pending .text", "while Redis is down").await;
    // Refused while Redis is away (the page keeps it and tries again later).
    hana.wait_for("a post refused by server one", || async {
        (redis_failures(&one) > 0).then_some(())
    })
    .await;
    hana.screenshot("redis-2-pending-while-redis-is-down").await;
    redis.restart(true);

    let expected = ["from server one", "from server two", "while Redis is down"];
    for viewer in [&hana, &ivan] {
        viewer.wait_for_text(".message .text", "while Redis is down").await;
        viewer
            .wait_for("no pending message", || async {
                viewer.texts(".message.pending").await.is_empty().then_some(())
            })
            .await;
        assert_eq!(viewer.texts(".message .text").await, expected, "each once, in order");
    }
    hana.close().await;
    ivan.close().await;
}

/// `chat_redis_failures_total` of `server`, from its `/metrics`.
fn redis_failures(server: &ServerProcess) -> u64 {
    let mut stream = std::net::TcpStream::connect(server.addr).expect("the server answers");
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", server.addr);
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("metrics read");
    page.lines()
        .find_map(|line| line.strip_prefix("chat_redis_failures_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}
