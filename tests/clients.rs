//! Real clients against the examples: Python's `websockets`, Node's `ws`, and headless
//! Chromium (driven by playwright-core) on the dev console and the chat page. The scripts are
//! in `tests/clients/`.
//!
//! These need tools beyond Rust: `python3` with `websockets`, `node` with the packages of
//! `tests/clients/package.json` installed, and Chromium (`/usr/bin/chromium`, or the path in
//! `CHROMIUM`). `.ci/run` installs them all. Where one is missing, its test says so and passes,
//! except under `CI=true`, where it fails.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use common::example::Example;

/// The longest a client script may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Whether `command` runs and exits 0.
fn runs(command: &str, args: &[&str]) -> bool {
    std::process::Command::new(command)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Returns whether the test can run; when a tool is missing, says so, and fails under CI.
fn available(test: &str, missing: Option<String>) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    let install = "`.ci/run` installs everything these tests need; on your machine: \
                   `pip install websockets`, `npm install --prefix tests/clients`, \
                   `npm install --prefix client`, and Chromium (`apt-get install chromium`)";
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: cannot run, {missing} (a failure under CI=true). {install}.");
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {test}: {missing}. {install}.");
    false
}

fn missing_python() -> Option<String> {
    if !runs("python3", &["-c", "import websockets.asyncio.client"]) {
        return Some("python3 with the `websockets` package (13 or later) is missing".into());
    }
    None
}

fn missing_node(package: &str) -> Option<String> {
    if !runs("node", &["--version"]) {
        return Some("`node` is missing".into());
    }
    if !clients_dir().join("node_modules").join(package).exists() {
        return Some(format!(
            "the node package `{package}` is not installed in tests/clients"
        ));
    }
    None
}

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("client")
}

fn missing_client_tools() -> Option<String> {
    if !runs("node", &["--version"]) {
        return Some("`node` is missing".into());
    }
    // (The resume tests share topics between two servers through Redis.)
    if !runs("redis-server", &["--version"]) {
        return Some("`redis-server` is missing".into());
    }
    ["typescript", "esbuild"].into_iter().find_map(|package| {
        let installed = client_dir().join("node_modules").join(package).exists();
        (!installed).then(|| format!("the node package `{package}` is not installed in client"))
    })
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn missing_browser() -> Option<String> {
    missing_node("playwright-core").or_else(|| {
        let chromium = chromium();
        (!chromium.exists()).then(|| format!("Chromium is missing ({})", chromium.display()))
    })
}

/// Kills the client's whole process group (a browser and its helpers included) when dropped.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let group = libc::pid_t::try_from(self.0).expect("a process id");
        // SAFETY: kill(2) with a negative pid signals that process group only; no memory is
        // involved. (Not `kill -KILL -PID`: some `kill` commands read `-PID` as a signal.)
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

/// Runs a client script against `example`, echoing its output. When the script prints
/// `READY shutdown`, the example gets Ctrl-C (SIGINT), as a user stopping it; the script then
/// checks what its clients saw. `READY restart` kills the example (SIGKILL) and starts it
/// again on the same address, after which the script hears `RESTARTED` on its stdin. Panics
/// with the script's output if it fails.
async fn run_client(example: &mut Example, program: &str, args: &[&str]) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(clients_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {program}: {err}"));
    let _group = Group(child.id().expect("the client runs"));
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut text = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut output = String::new();
    let mut interrupted = false;
    let finished = tokio::time::timeout(CLIENT_TIMEOUT, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            println!("{program}: {line}");
            if line.trim() == "READY shutdown" {
                example.interrupt();
                interrupted = true;
            }
            if line.trim() == "READY restart" {
                example.restart(&[]).await;
                stdin.write_all(b"RESTARTED\n").await.unwrap();
            }
            output.push_str(&line);
            output.push('\n');
        }
        child.wait().await.unwrap()
    })
    .await;
    let errors = tokio::time::timeout(Duration::from_secs(5), errors)
        .await
        .map(Result::unwrap_or_default)
        .unwrap_or_default();
    let status = match finished {
        Ok(status) => status,
        Err(_) => panic!(
            "{program} {args:?} did not finish in {CLIENT_TIMEOUT:?}\n\
             --- stdout\n{output}--- stderr\n{errors}"
        ),
    };
    assert!(
        status.success(),
        "{program} {args:?} failed ({status})\n--- stdout\n{output}--- stderr\n{errors}"
    );
    assert!(
        interrupted,
        "the client never asked for the shutdown:\n{output}"
    );
    let exit = example.wait().await;
    assert!(
        exit.success(),
        "the example exited with {exit} after Ctrl-C"
    );
}

#[tokio::test]
async fn python_websockets_client_against_the_echo_example() {
    if !available("python websockets", missing_python()) {
        return;
    }
    let mut example = Example::start("echo").await;
    let url = format!("ws://{}/", example.addr);
    run_client(&mut example, "python3", &["echo_python.py", &url]).await;
}

#[tokio::test]
async fn node_ws_client_against_the_echo_example() {
    if !available("node ws", missing_node("ws")) {
        return;
    }
    let mut example = Example::start("echo").await;
    let url = format!("ws://{}/", example.addr);
    run_client(&mut example, "node", &["echo_node.mjs", &url]).await;
}

/// Runs `node <args>` in `dir` with `env`, bounded by `CLIENT_TIMEOUT`; panics with its
/// output if it fails, and otherwise prints its summary (the lines `summary` picks) straight
/// to stderr, so that CI's log shows it for a passing test too.
async fn run_node(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
    summary: fn(&str) -> bool,
) {
    let mut command = Command::new("node");
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start node: {err}"));
    let _group = Group(child.id().expect("node runs"));
    let output = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("node {args:?} did not finish in {CLIENT_TIMEOUT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node {args:?} failed ({})\n--- stdout\n{stdout}--- stderr\n{stderr}",
        output.status
    );
    let mut err = std::io::stderr().lock();
    for line in stdout.lines().filter(|line| summary(line)) {
        let _ = writeln!(err, "client: {line}");
    }
}

/// The client package (`client/`): built from its TypeScript sources, checked against the
/// build the server embeds (`runtime/src/client.js`) and its size budget, then its `node:test`
/// suite (client/test/) against the test server (tests/clients/server.rs) and the fault proxy.
#[tokio::test]
async fn client_package_against_wsock_servers() {
    if !available("client package", missing_client_tools()) {
        return;
    }
    let dir = client_dir();
    let tsc = ["node_modules/typescript/bin/tsc", "-p", "."];
    run_node(&dir, &tsc, &[], |_| false).await;
    run_node(&dir, &["scripts/check.mjs"], &[], |_| true).await;
    let server = common::example::binary("client-test-server");
    // Node 20 has its WebSocket behind this flag; 22 and later have it by default.
    let test = [
        "--experimental-websocket",
        "--test",
        "--test-reporter=tap",
        "test/client.test.mjs",
        "test/resume.test.mjs",
        "test/presence.test.mjs",
    ];
    let env = [("WSOCK_TEST_SERVER", server.as_os_str())];
    let summary = |line: &str| {
        line.starts_with("ok ")
            || line.starts_with("not ok ")
            || line.starts_with("# \\#")
            || ["# tests", "# pass", "# fail"]
                .iter()
                .any(|s| line.starts_with(s))
    };
    run_node(&dir, &test, &env, summary).await;
}

/// One browser at a time: two Chromiums and their pages are a lot for a small machine.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn chromium_uses_the_dev_console() {
    if !available("chromium dev console", missing_browser()) {
        return;
    }
    if !cfg!(debug_assertions) {
        // Release builds have the console off: the page is a 426.
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED chromium dev console: the dev console is off in release builds."
        );
        return;
    }
    let _browser = BROWSER.lock().await;
    let mut example = Example::start("echo").await;
    let url = format!("http://{}/", example.addr);
    run_client(&mut example, "node", &["browser.mjs", "console", &url]).await;
}

/// The chat example's console at /chat/lobby, without a name: the guard's 400 and its reason
/// show in the page, though browsers hide a refused upgrade's answer from scripts.
#[tokio::test]
async fn chromium_console_shows_why_the_upgrade_was_refused() {
    if !available("chromium console refusal", missing_browser()) {
        return;
    }
    if !cfg!(debug_assertions) {
        return; // no console in release builds
    }
    let _browser = BROWSER.lock().await;
    let mut example = Example::start("chat").await;
    let url = format!("http://{}/", example.addr);
    run_client(&mut example, "node", &["browser.mjs", "refused", &url]).await;
}

#[tokio::test]
async fn chromium_chats_between_two_tabs() {
    if !available("chromium chat", missing_browser()) {
        return;
    }
    let _browser = BROWSER.lock().await;
    let mut example = Example::start("chat").await;
    let url = format!("http://{}/", example.addr);
    run_client(&mut example, "node", &["browser.mjs", "chat", &url]).await;
}

/// The chat page on wsock's client: the server is killed and restarted on the same port while
/// two tabs are in a room; both reconnect by themselves and chat again.
#[tokio::test]
async fn chromium_chat_tabs_reconnect_after_a_server_restart() {
    if !available("chromium chat restart", missing_browser()) {
        return;
    }
    let _browser = BROWSER.lock().await;
    let mut example = Example::start("chat").await;
    let url = format!("http://{}/", example.addr);
    run_client(&mut example, "node", &["browser.mjs", "chat-restart", &url]).await;
}

/// The same chat page and endpoint, inside the axum example.
#[cfg(feature = "axum")]
#[tokio::test]
async fn chromium_chats_between_two_tabs_inside_axum() {
    if !available("chromium chat (axum)", missing_browser()) {
        return;
    }
    let _browser = BROWSER.lock().await;
    let mut example = Example::start("axum").await;
    let url = format!("http://{}/", example.addr);
    run_client(&mut example, "node", &["browser.mjs", "chat", &url]).await;
}

/// The login example's page: log in through the form (the cookie set by the axum route), the
/// endpoint greets and signs messages with that name; log out and the browser drops the cookie.
#[cfg(feature = "axum")]
#[tokio::test]
async fn chromium_logs_in_and_out_inside_axum() {
    if !available("chromium login (axum)", missing_browser()) {
        return;
    }
    let _browser = BROWSER.lock().await;
    let mut example = Example::start("login").await;
    let url = format!("http://{}/", example.addr);
    run_client(&mut example, "node", &["browser.mjs", "login", &url]).await;
}

/// Python's `websockets` over wss://, trusting the test's certificate through an SSL
/// context: the same checks as over ws://.
#[cfg(feature = "tls")]
#[tokio::test]
async fn python_websockets_client_over_tls() {
    if !available("python websockets (tls)", missing_python()) {
        return;
    }
    let cert = common::tls::Cert::new();
    let (cert_file, key_file) = (cert.cert_file(), cert.key_file());
    let mut example =
        Example::start_with("tls", &[cert_file.as_os_str(), key_file.as_os_str()]).await;
    let url = format!("wss://{}/", example.addr);
    let cafile = cert_file.to_str().expect("a UTF-8 temporary path");
    run_client(&mut example, "python3", &["echo_python.py", &url, cafile]).await;
}

/// Chromium, with the test's self-signed certificate accepted, loads the dev console over
/// https:// and uses it over wss://.
#[cfg(feature = "tls")]
#[tokio::test]
async fn chromium_uses_the_dev_console_over_tls() {
    if !available("chromium dev console (tls)", missing_browser()) {
        return;
    }
    if !cfg!(debug_assertions) {
        return; // no console in release builds
    }
    let _browser = BROWSER.lock().await;
    let cert = common::tls::Cert::new();
    let (cert_file, key_file) = (cert.cert_file(), cert.key_file());
    let mut example =
        Example::start_with("tls", &[cert_file.as_os_str(), key_file.as_os_str()]).await;
    let url = format!("https://{}/", example.addr);
    run_client(&mut example, "node", &["browser.mjs", "console", &url]).await;
}

/// Two tabs on two chat servers that share a Redis (a `redis-server` of the test's own): each
/// sees what the other types, joins and leaves cross over, and 1001 on shutdown.
#[tokio::test]
async fn chromium_chats_across_two_nodes() {
    if !available("chromium chat (two nodes)", missing_browser()) {
        return;
    }
    let Some(redis) = common::redis::RedisServer::start("chromium chat (two nodes)").await else {
        return;
    };
    let _browser = BROWSER.lock().await;
    let url = std::ffi::OsString::from(redis.url());
    let mut a = Example::start_with("chat", &[url.as_os_str()]).await;
    let b = Example::start_with("chat", &[url.as_os_str()]).await;
    let (page_a, page_b) = (format!("http://{}/", a.addr), format!("http://{}/", b.addr));
    run_client(&mut a, "node", &["browser.mjs", "chat", &page_a, &page_b]).await;
    b.stop().await;
}

#[cfg(feature = "prometheus")]
mod operations {
    //! The live operations page in Chromium: it loads, connects, and its numbers follow a
    //! load this test starts (connections subscribed to a topic, messages both ways).

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use common::{TestServer, next_text, send};
    use wsock::prelude::*;

    /// Where the load's connections echo and subscribe.
    #[websocket("/load")]
    fn load(out: Out<String>, topics: Topics) {
        topics.topic::<String>("ops-load").subscribe(&out);
        on_message(|text: String| out.write(text));
    }

    const TOKEN: &str = "chromium-operations-token";
    /// How many connections the load opens (the page must show this many).
    const LOAD: usize = 5;

    #[tokio::test]
    async fn chromium_shows_the_operations_page_following_a_load() {
        if !available("chromium operations page", missing_browser()) {
            return;
        }
        let prometheus = wsock::Prometheus::install().expect("the first recorder of this process");
        let server = TestServer::start(Server::new().route(load).operations(
            "/_ops",
            prometheus,
            wsock::Access::token(TOKEN),
        ))
        .await;
        let addr = server.addr;
        let page = format!("http://{addr}/_ops");
        let mut child = Command::new("node")
            .args(["browser.mjs", "operations", &page, TOKEN])
            .current_dir(clients_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let _group = Group(child.id().expect("the client runs"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let running = Arc::new(AtomicBool::new(true));
        let mut load = Vec::new();
        let mut output = String::new();
        let status = tokio::time::timeout(CLIENT_TIMEOUT, async {
            while let Some(line) = stdout.next_line().await.unwrap() {
                println!("browser: {line}");
                output.push_str(&line);
                output.push('\n');
                if line.trim() == "READY load" {
                    for i in 0..LOAD {
                        let running = Arc::clone(&running);
                        load.push(tokio::spawn(async move {
                            let url = format!("ws://{addr}/load");
                            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                                .await
                                .expect("a load connection");
                            let mut n = 0;
                            while running.load(Ordering::Relaxed) {
                                let text = format!("load {i} {n}");
                                send(&mut ws, &text).await;
                                assert_eq!(next_text(&mut ws).await, text);
                                n += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            drop(ws);
                        }));
                    }
                }
            }
            child.wait().await.unwrap()
        })
        .await
        .unwrap_or_else(|_| panic!("the browser did not finish in time:\n{output}"));
        running.store(false, Ordering::Relaxed);
        for task in load {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("the load stops")
                .expect("the load ran without failing");
        }
        assert!(status.success(), "the browser failed ({status}):\n{output}");
        assert!(
            output.contains("all browser operations checks passed"),
            "{output}"
        );
        server.stop().await;
    }
}
