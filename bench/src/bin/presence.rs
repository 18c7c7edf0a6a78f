//! Presence at scale: 10,000 members join one presence as fast as one client process can
//! connect them, while watchers watch; on one node, and split over two nodes sharing a Redis.
//!
//! `presence [--members 10000] [--watchers 10] [--redis URL]` starts the server(s) as processes
//! of this binary (`presence serve ADDRESS [REDIS_URL]`), connects the watchers (spread over the
//! nodes), then the members (alternating between the nodes), and prints one line of
//! `key=value` results per setup (one node; with `--redis`, two nodes too):
//!
//! - `join_ms`: from the first member's connect to the last one's upgrade;
//! - `complete_ms`: from the first connect until every watcher's list holds every member;
//! - `frames_per_watcher`: presence frames each watcher got (the largest);
//! - `server_cpu_ms`: the server processes' CPU time (user + system, from /proc) over the run;
//! - `redis_commands`: commands Redis processed over the run (`INFO stats`), with two nodes.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wsock::prelude::*;

#[derive(serde::Serialize)]
struct Who {
    name: String,
}

#[websocket("/presence/{room}")]
fn presence(room: String, req: Request, out: Out<String>, topics: Topics) {
    let here = topics.presence::<Who>(room);
    if req.query_param("watch").is_some() {
        here.watch(&out);
    }
    if let Some(name) = req.query_param("name") {
        let _ = here.track(&out, name.clone(), &Who { name });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve(&args[1..]);
    }
    let value = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|at| args.get(at + 1))
            .cloned()
    };
    let members: usize = value("--members").map_or(10_000, |n| n.parse().expect("a number"));
    let watchers: usize = value("--watchers").map_or(10, |n| n.parse().expect("a number"));
    let redis = value("--redis");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        run("one node", &[None], members, watchers, None).await;
        if let Some(url) = redis {
            let nodes = [Some(url.clone()), Some(url.clone())];
            run("two nodes", &nodes, members, watchers, Some(&url)).await;
        }
    });
}

fn serve(args: &[String]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut server = Server::new().route(presence).max_connections(30_000);
        if let Some(url) = args.get(1) {
            server = server.broker(wsock_redis::Redis::connect(url).await.unwrap());
        }
        let bound = server.bind(args[0].as_str()).await.unwrap();
        println!("listening addr={}", bound.local_addr());
        bound.run().await.unwrap();
    });
}

/// A server process of this binary, and its address.
async fn start(redis: Option<&String>) -> (Child, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["serve", "127.0.0.1:0"]).args(redis);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().unwrap()).unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(addr) = line.split("addr=").nth(1) {
            return (child, addr.trim().to_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start");
}

/// A WebSocket client connection to `url` at `addr`.
async fn open(addr: &str, url: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(url, tcp).await.unwrap().0
}

/// A process's CPU time so far (user + system), from /proc.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
    });
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks * 1000.0 / hz
}

/// Redis's `total_commands_processed`.
fn redis_commands(url: &str) -> u64 {
    let port = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("redis://host:port");
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "stats"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn run(
    setup: &str,
    nodes: &[Option<String>],
    members: usize,
    watchers: usize,
    redis: Option<&String>,
) {
    let mut servers = Vec::new();
    for node in nodes {
        servers.push(start(node.as_ref()).await);
    }
    let room = format!("hall-{}", std::process::id());
    // The watchers, spread over the nodes, each reading its frames into its own list.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..watchers {
        let addr = servers[i % servers.len()].1.clone();
        let url = format!("ws://{addr}/presence/{room}?watch");
        let mut ws = open(&addr, &url).await;
        let done = done_tx.clone();
        tokio::spawn(async move {
            let mut seen: HashSet<String> = HashSet::new();
            let mut frames = 0;
            while let Some(Ok(message)) = ws.next().await {
                let WsMessage::Text(text) = message else {
                    continue;
                };
                let frame: Value = serde_json::from_str(text.trim_matches('\u{1e}')).unwrap();
                frames += 1;
                for kind in ["state", "join"] {
                    for member in frame[kind].as_array().into_iter().flatten() {
                        seen.insert(member["key"].as_str().unwrap().to_owned());
                    }
                }
                for key in frame["leave"].as_array().into_iter().flatten() {
                    seen.remove(key.as_str().unwrap());
                }
                if seen.len() == members {
                    let _ = done.send((Instant::now(), frames));
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_before: f64 = servers.iter().map(|(child, _)| cpu_ms(child.id())).sum();
    let commands_before = redis.map(|url| redis_commands(url));
    let start = Instant::now();
    let mut held = Vec::with_capacity(members);
    for i in 0..members {
        let addr = &servers[i % servers.len()].1;
        let url = format!("ws://{addr}/presence/{room}?name=m{i}");
        held.push(open(addr, &url).await);
    }
    let joined = start.elapsed();
    let mut complete = Duration::ZERO;
    let mut frames = 0;
    let mut finished = HashSet::new();
    let deadline = start + Duration::from_secs(60);
    while finished.len() < watchers {
        let wait = deadline.saturating_duration_since(Instant::now());
        let (at, seen_frames) = tokio::time::timeout(wait, done_rx.recv())
            .await
            .expect("every watcher's list completes within a minute")
            .unwrap();
        finished.insert(finished.len());
        complete = complete.max(at - start);
        frames = frames.max(seen_frames);
    }
    // Settled: what the servers spent on it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu: f64 = servers
        .iter()
        .map(|(child, _)| cpu_ms(child.id()))
        .sum::<f64>()
        - cpu_before;
    let commands = match (redis, commands_before) {
        (Some(url), Some(before)) => (redis_commands(url) - before).to_string(),
        _ => "-".to_owned(),
    };
    println!(
        "{setup} members={members} watchers={watchers} join_ms={:.0} complete_ms={:.0} \
         frames_per_watcher={frames} server_cpu_ms={cpu:.0} redis_commands={commands}",
        joined.as_secs_f64() * 1e3,
        complete.as_secs_f64() * 1e3,
    );
    drop(held);
    for (mut child, _) in servers {
        let _ = child.kill();
        let _ = child.wait();
    }
}
