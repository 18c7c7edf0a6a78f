//! What the multi-node tests share: a `redis-server` of their own, the `node` example in a
//! process of its own, clients, and what Redis and the kernel say about them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const WAIT: Duration = Duration::from_secs(15);

#[path = "../../../tests/common/presence.rs"]
pub mod presence;
#[path = "../../../tests/common/redis.rs"]
mod redis_server;
#[path = "../../../tests/common/resume.rs"]
pub mod resume;

pub use redis_server::RedisServer;

/// What the tests ask Redis itself.
pub trait Ask {
    async fn subscribers(&self, channel: &str) -> usize;
    async fn channels(&self) -> Vec<String>;
    async fn await_subscribers(&self, channel: &str, count: usize);
}

impl Ask for RedisServer {
    /// How many connections subscribe to `channel`, as Redis counts them.
    async fn subscribers(&self, channel: &str) -> usize {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut connection)
            .await
            .unwrap();
        count
    }

    /// The channels with subscribers.
    async fn channels(&self) -> Vec<String> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    /// Waits until `channel` has `count` subscribing connections.
    async fn await_subscribers(&self, channel: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.subscribers(channel).await;
            if now == count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel} has {now} subscribing connections, not {count}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A node: the `node` example, in a process of its own, on 127.0.0.1:0.
pub struct Node {
    pub child: Child,
    pub lines: tokio::io::Lines<BufReader<ChildStdout>>,
    pub addr: SocketAddr,
    /// What it printed before it listened.
    pub banner: Vec<String>,
}

impl Node {
    pub async fn start(redis_url: &str, lazy: bool) -> Node {
        // Queues that hold a whole run: what these tests check is the way through Redis, not
        // how fast their own clients read (under load, a 1024-message queue can overflow).
        let mut args = vec!["--queue", "100000"];
        if lazy {
            args.push("--lazy");
        }
        Node::start_with(redis_url, &args).await
    }

    /// A node with these arguments after its address and Redis URL.
    pub async fn start_with(redis_url: &str, args: &[&str]) -> Node {
        let examples = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples");
        let mut command = Command::new(examples.join("node"));
        command.args(["127.0.0.1:0", redis_url]).args(args);
        let mut child = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the node example is built by `cargo test`");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        let addr = tokio::time::timeout(WAIT, async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("the node exited before listening: {seen:#?}"));
                if let Some(addr) = line.split("listening addr=").nth(1) {
                    break addr.trim().parse().unwrap();
                }
                seen.push(line);
            }
        })
        .await
        .expect("the node did not listen in time");
        Node {
            child,
            lines,
            addr,
            banner: seen,
        }
    }

    pub async fn expect_output(&mut self, text: &str) {
        if let Some(at) = self.banner.iter().position(|line| line.contains(text)) {
            self.banner.drain(..=at);
            return;
        }
        self.banner.clear();
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                if line.contains(text) {
                    return;
                }
            }
            panic!("the node exited without printing {text:?}");
        });
        found
            .await
            .unwrap_or_else(|_| panic!("the node never printed {text:?}"));
    }

    /// The lines it prints from now until it is quiet for `quiet`.
    pub async fn output(&mut self, quiet: Duration) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.banner);
        while let Ok(Ok(Some(line))) = tokio::time::timeout(quiet, self.lines.next_line()).await {
            lines.push(line);
        }
        lines
    }

    /// The process's resident memory now, and its peak, in KiB (`/proc/PID/status`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let pid = self.child.id().expect("the node runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Stops the process (SIGSTOP) or lets it go on (SIGCONT), as a machine that stalls.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id().expect("the node runs")).unwrap();
        // SAFETY: kill(2) on the node's own process; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// The broker's counts, as `/stats` shows them (`RedisStats { .. }`).
    pub async fn stats(&self) -> String {
        let mut client = self.connect("/stats").await;
        next_text(&mut client).await
    }

    pub async fn connect(&self, path: &str) -> Client {
        let url = format!("ws://{}{path}", self.addr);
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect failed")
            .0
    }
}

pub async fn next_text(client: &mut Client) -> String {
    next_text_within(client, WAIT).await
}

pub async fn next_text_within(client: &mut Client, wait: Duration) -> String {
    loop {
        match tokio::time::timeout(wait, client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return text.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Reads `count` messages and checks that each publisher's (`name:i`) came in order from 0,
/// with none missing or twice; returns how many came from each.
pub async fn check_sequences(client: &mut Client, count: usize) -> HashMap<String, usize> {
    let mut next: HashMap<String, usize> = HashMap::new();
    for _ in 0..count {
        let text = next_text(client).await;
        let (publisher, seq) = text.rsplit_once(':').expect("name:seq");
        let seq: usize = seq.parse().unwrap();
        let expected = next.entry(publisher.to_owned()).or_default();
        assert_eq!(
            seq, *expected,
            "from {publisher}: lost, duplicated or reordered"
        );
        *expected += 1;
    }
    next
}

/// Publishes `name:i` for each `i`, in batches of 50 a millisecond apart: fast, but not a
/// flood that would outrun the test's own readers (whose queues close them with 1008).
pub async fn publish_all(publisher: &mut Client, name: &str, range: std::ops::Range<usize>) {
    for i in range {
        publisher
            .feed(Message::text(format!("{name}:{i}")))
            .await
            .unwrap();
        if i % 50 == 49 {
            publisher.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    publisher.flush().await.unwrap();
}

/// A number in a `RedisStats { .. }` line: `stat(&line, "refused_behind")`.
pub fn stat(stats: &str, name: &str) -> u64 {
    stats
        .split(&format!("{name}: "))
        .nth(1)
        .and_then(|rest| rest.split([',', ' ', '}']).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

/// A TCP proxy in front of `target` that passes at most `bytes_per_sec` toward it (and all
/// that comes back): Redis behind a slow link, slower than a publisher. Stops when dropped.
pub struct Throttle {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Throttle {
    pub async fn start(target: SocketAddr, bytes_per_sec: usize) -> Throttle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                links.spawn(link(client, server, bytes_per_sec));
            }
        });
        Throttle { addr, task }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One proxied connection: toward the target in slices of a hundredth of a second's worth.
async fn link(client: TcpStream, server: TcpStream, bytes_per_sec: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let toward = async move {
        let slice = (bytes_per_sec / 100).max(1);
        let mut buf = vec![0u8; slice];
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            match client_in.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if server_out.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server_out.shutdown().await;
    };
    let back = async move {
        let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
        let _ = client_out.shutdown().await;
    };
    tokio::join!(toward, back);
}
