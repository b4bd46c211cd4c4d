//! The operations files in `deploy/` against the binary: every metric the Prometheus alerts
//! and the Grafana dashboard name exists in `/metrics`, the dashboard is well-formed JSON, and
//! every `CHAT_*` setting the systemd unit uses is one the server reads.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{Running, get};
use testclient::{Client, url};

fn deploy_file(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every word that starts with `prefix` and continues with letters, digits or `_`.
fn words_with_prefix(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .filter(|(at, _)| {
            // Not the middle of a longer word.
            !text[..*at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|word| word.len() > prefix.len())
        .collect()
}

/// The metric families `/metrics` declares (`# TYPE name kind`).
fn declared_families(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A sample name's family: counters are declared without their `_total`.
fn family(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

/// Labelled families appear in `/metrics` once they have a sample, so the test first makes
/// the server send an error, refuse an upgrade, refuse a room and answer an API call.
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_alerts_and_dashboard_name_exists() {
    let server = Running::start(&["--port", "0", "--max-rooms", "1"], &[]);
    let address = server.address();
    let (mut alice, _) = Client::join(&url(&address, "room=one&nick=alice")).await;
    alice.send_text("{oops").await;
    alice.error().await;
    let refused =
        Client::try_connect(&url(&address, "room=one"), Some("http://evil.example")).await;
    assert_eq!(refused.err(), Some(403));
    let (mut bob, _) = Client::join(&url(&address, "room=one&nick=bob")).await;
    bob.send_text(r#"{"type":"join","room":"two"}"#).await;
    assert_eq!(bob.error_skipping().await, protocol::ErrorCode::TooManyRooms);

    // An API call without a key: counted by call and status, and as a refused key.
    assert!(get(&address, "/api/v1/rooms").starts_with("HTTP/1.1 401"));

    let response = get(&address, "/metrics");
    let declared = declared_families(&response);
    assert!(declared.contains("chat_connections"), "{response}");
    let alerts = deploy_file("prometheus/alerts.yml");
    let dashboard = deploy_file("grafana/chat-dashboard.json");
    let named: BTreeSet<String> = words_with_prefix(&alerts, "chat_")
        .into_iter()
        .chain(words_with_prefix(&dashboard, "chat_"))
        .collect();
    assert!(named.len() >= 15, "the files name the metrics: {named:?}");
    let missing: Vec<&String> =
        named.iter().filter(|name| !declared.contains(family(name))).collect();
    assert!(missing.is_empty(), "named in deploy/ but not in /metrics: {missing:?}");
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_queries() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy_file("grafana/chat-dashboard.json")).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} queries something", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            assert_eq!(expr.matches('(').count(), expr.matches(')').count(), "{expr}");
        }
    }
}

#[test]
fn the_unit_sets_only_settings_the_server_reads() {
    let unit = deploy_file("chat.service");
    let output = Command::new(env!("CARGO_BIN_EXE_server")).arg("--help").output().expect("runs");
    let help = String::from_utf8(output.stdout).expect("UTF-8");
    let used = words_with_prefix(&unit, "CHAT_");
    assert!(used.contains("CHAT_DATA_DIR"), "{used:?}");
    let unknown: Vec<&String> = used.iter().filter(|name| !help.contains(name.as_str())).collect();
    assert!(unknown.is_empty(), "deploy/chat.service sets what the server ignores: {unknown:?}");
}
