//! Helpers for the end-to-end tests: the real server binary serving the release UI, Debian's
//! Chromium driven through chromedriver, and waits that poll with a deadline. Every process
//! started here is killed when its guard is dropped, whether the test passed or not.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// How long any single expectation may take.
pub const DEADLINE: Duration = Duration::from_secs(15);
/// The WebDriver key code for Enter.
pub const ENTER: char = '\u{e007}';

/// `target/` (or `$CARGO_TARGET_DIR`): the directory two levels above this test binary.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors().nth(3).expect("target/<profile>/deps/<binary>").to_path_buf()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// Waits until something accepts connections on `addr`.
fn wait_for_port(addr: SocketAddr, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < DEADLINE, "{what} did not start listening on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server binary (`target/<profile>/server`, built by `cargo test --workspace` after
/// scripts/build-ui) copied alone into an empty folder and started there with no `--ui-dir`, as
/// an operator deploys it: the release UI it serves is the one built into it. On a fixed port,
/// so it can be restarted at the same address.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: Option<Child>,
}

/// Where the server on `port` keeps its database.
fn data_dir(port: u16) -> PathBuf {
    screenshot_dir().join(format!("data-{port}"))
}

impl ServerProcess {
    /// A server with an empty database.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with an empty database and these flags besides the usual ones.
    pub fn start_with(flags: &[&str]) -> Self {
        let port = free_port();
        // A port is only reused by a restart (`start_on`), which must find the same data.
        let _ = std::fs::remove_dir_all(data_dir(port));
        Self::spawn(port, flags)
    }

    /// A server on `port`, with the database a server on that port had before.
    pub fn start_on(port: u16) -> Self {
        Self::spawn(port, &[])
    }

    /// A server on `port` with an empty database, as after a data folder was lost.
    pub fn start_afresh_on(port: u16) -> Self {
        let _ = std::fs::remove_dir_all(data_dir(port));
        Self::spawn(port, &[])
    }

    fn spawn(port: u16, flags: &[&str]) -> Self {
        let binary = lone_binary();
        let log = std::fs::File::create(screenshot_dir().join(format!("server-{port}.log")))
            .expect("server log file");
        let child = Command::new(binary)
            .current_dir(binary.parent().expect("the binary's folder"))
            .args(["--port", &port.to_string()])
            .arg("--data-dir")
            .arg(data_dir(port))
            .args([
                "--heartbeat-interval",
                "1s",
                "--client-timeout",
                "3s",
                "--shutdown-grace",
                "2s",
            ])
            .args(flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("server starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_port(addr, "the server");
        ServerProcess { addr, child: Some(child) }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// Stops the process the way an operator would (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }
}

/// The server binary copied alone into a folder of its own (once per test run), after checking
/// that the release UI it should carry has been built.
fn lone_binary() -> &'static PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        let profile = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.ancestors().nth(2).map(|p| p.to_path_buf()))
            .expect("profile directory");
        let built = profile.join("server");
        assert!(built.is_file(), "{} is missing: run `cargo test --workspace`", built.display());
        let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist");
        assert!(
            dist.join("index.html").is_file(),
            "no release UI in {}: run scripts/build-ui before building the server (scripts/test does)",
            dist.display()
        );
        let folder = screenshot_dir().join("one-file");
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).expect("a folder for the binary");
        let binary = folder.join("server");
        std::fs::copy(&built, &binary).expect("binary copied");
        binary
    })
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// axe-core's script, from the tools folder where `scripts/setup --test` installs it (npm).
fn axe_source() -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let tools = std::env::var_os("CHAT_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| {
            let cache =
                std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache")
                });
            cache.join("chat-tools")
        });
        let script = tools.join("axe-core/node_modules/axe-core/axe.min.js");
        std::fs::read_to_string(&script)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup --test)", script.display()))
    })
}

/// Blink's preferred colour scheme: 0 is dark.
const DARK: &str = "--blink-settings=preferredColorScheme=0";

/// 390 × 844 CSS pixels at 3 device pixels each: an iPhone 13's screen.
fn phone_metrics() -> serde_json::Value {
    serde_json::json!({
        "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0, "touch": true }
    })
}

/// One chromedriver process; each [`Browser`] is a session in it.
pub struct Driver {
    url: String,
    child: Child,
    /// A folder unique to this driver; every browser it starts keeps its profile under it,
    /// so they can all be found and killed even when a test panicked before closing them.
    profiles: PathBuf,
    browsers: std::sync::atomic::AtomicUsize,
}

impl Driver {
    pub fn start() -> Self {
        let port = free_port();
        let binary =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} ({e}): run scripts/setup --test"));
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), "chromedriver");
        let profiles = std::env::temp_dir().join(format!("chat-e2e-{}-{port}", std::process::id()));
        Driver {
            url: format!("http://127.0.0.1:{port}"),
            child,
            profiles,
            browsers: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A new headless Chromium window of the given size.
    pub async fn browser(&self, width: u32, height: u32) -> Browser {
        self.browser_with(width, height, &[], None).await
    }

    /// A phone: 390 × 844 CSS pixels at 3 device pixels each (an iPhone 13's screen), through
    /// Chromium's device-metrics emulation, since a headless window is at least 500 px wide.
    pub async fn phone(&self) -> Browser {
        self.browser_with(500, 900, &[], Some(phone_metrics())).await
    }

    /// A window whose system prefers the dark colour scheme.
    pub async fn dark_browser(&self, width: u32, height: u32) -> Browser {
        self.browser_with(width, height, &[DARK], None).await
    }

    /// A phone (as [`Driver::phone`]) whose system prefers the dark colour scheme.
    pub async fn dark_phone(&self) -> Browser {
        self.browser_with(500, 900, &[DARK], Some(phone_metrics())).await
    }

    async fn browser_with(
        &self,
        width: u32,
        height: u32,
        extra: &[&str],
        mobile_emulation: Option<serde_json::Value>,
    ) -> Browser {
        let n = self.browsers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile = format!("--user-data-dir={}", self.profiles.join(n.to_string()).display());
        let size = format!("--window-size={width},{height}");
        let args = [
            profile.as_str(),
            "--disable-breakpad",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            size.as_str(),
        ];
        let args: Vec<&str> = args.iter().chain(extra).copied().collect();
        let mut capabilities = serde_json::Map::new();
        let mut options = serde_json::json!({ "binary": "/usr/bin/chromium", "args": args });
        if let Some(metrics) = mobile_emulation {
            options["mobileEmulation"] = metrics;
        }
        capabilities.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session");
        Browser { client }
    }
}

impl Drop for Driver {
    /// Kills chromedriver and every browser it started: Chromium outlives a killed chromedriver,
    /// and a test that panicked never closed its sessions.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let marker = format!("--user-data-dir={}", self.profiles.display());
        let _ = Command::new("pkill").args(["-KILL", "-f", "--", &marker]).status();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

/// One browser window with the waits the tests need.
pub struct Browser {
    pub client: Client,
}

impl Browser {
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("page opens");
    }

    /// Runs axe-core on the page as it is now and fails, naming each rule and element, on any
    /// violation.
    pub async fn assert_accessible(&self, what: &str) {
        self.client.execute(axe_source(), vec![]).await.expect("axe-core injected");
        let run = r#"
            const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ["violations"] })
              .then(result => done(result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(node => node.target.join(" ") + ": " + node.any.map(a => a.message).join("; "))
              }))))
              .catch(error => done([{ id: "axe-error", help: String(error) }]));
        "#;
        let violations = self.client.execute_async(run, vec![]).await.expect("axe-core ran");
        let violations = violations.as_array().cloned().unwrap_or_default();
        assert!(violations.is_empty(), "{what}: {}", serde_json::Value::Array(violations));
    }

    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(&format!("element {css}"), || async {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    /// Where the element matching `css` is: x, y, width and height in CSS pixels.
    pub async fn rect(&self, css: &str) -> (f64, f64, f64, f64) {
        self.find(css).await.rectangle().await.expect("rectangle")
    }

    /// Whether the element matching `css` is shown.
    pub async fn displayed(&self, css: &str) -> bool {
        self.find(css).await.is_displayed().await.expect("displayed")
    }

    /// The text of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.unwrap_or_default() {
            texts.push(element.text().await.unwrap_or_default());
        }
        texts
    }

    /// Waits until some element matching `css` has exactly the text `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str) {
        self.wait_for(&format!("{css} showing {text:?}"), || async {
            self.texts(css).await.iter().any(|t| t == text).then_some(())
        })
        .await
    }

    /// Waits until `check` yields `Some`, polling; panics after [`DEADLINE`] naming `what`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(found) = check().await {
                return found;
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types into the element matching `css`, as key presses.
    pub async fn type_into(&self, css: &str, keys: &str) {
        self.find(css).await.send_keys(keys).await.expect("keys typed");
    }

    /// Joins from the join form, as a first-time visitor would.
    pub async fn join_with_form(&self, server: &ServerProcess, nick: &str, room: &str) {
        self.open(&server.url("/")).await;
        self.type_into("#join-nick", nick).await;
        let room_field = self.find("#join-room").await;
        room_field.clear().await.expect("room field cleared");
        room_field.send_keys(&format!("{room}{ENTER}")).await.expect("room typed");
        self.wait_for_online().await;
    }

    /// Joins through a shared link (`/?room=R&nick=N`), as someone who was sent one would.
    pub async fn join_with_link(&self, server: &ServerProcess, room: &str, nick: &str) {
        self.open(&server.url(&format!("/?room={room}&nick={nick}"))).await;
        self.wait_for_online().await;
    }

    pub async fn wait_for_online(&self) {
        self.find(".badge.online").await;
    }

    /// Saves a screenshot as `target/e2e-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png)
            .expect("write screenshot");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Where screenshots and server logs go: `target/e2e-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = target_dir().join("e2e-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}
