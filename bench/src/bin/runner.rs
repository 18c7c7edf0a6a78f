//! Runs the benchmark: wsock's echo example against the baselines, interleaved over several
//! rounds, each server pinned to core 0 and the load to core 1 (`taskset`), and prints the
//! medians and their ratios to the naive tokio-tungstenite server.
//!
//! `cargo run --release -p wsock-bench --bin runner -- [--rounds 3] [--secs 5] [--long]`
//!
//! `--long` adds the 19,000-idle-connections hold (60 s, wsock only).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Server {
    name: &'static str,
    binary: PathBuf,
}

struct Workload {
    name: &'static str,
    args: Vec<String>,
    /// The result keys to report, with whether more is better.
    metrics: &'static [(&'static str, bool)],
}

fn main() {
    let mut rounds = 3;
    let mut secs = 5.0;
    let mut long = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds N")
            }
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).expect("--secs S"),
            "--long" => long = true,
            _ => panic!("usage: runner [--rounds N] [--secs S] [--long]"),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = |args: &[&str]| {
        let status = Command::new(&cargo)
            .args(args)
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(status.success(), "cargo {args:?} failed");
    };
    build(&["build", "--release", "--example", "echo"]);
    build(&["build", "--release", "-p", "wsock-bench", "--bins"]);
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("release");
    let servers = [
        Server {
            name: "naive",
            binary: target.join("naive"),
        },
        Server {
            name: "axum",
            binary: target.join("axum_echo"),
        },
        Server {
            name: "wsock",
            binary: target.join("examples").join("echo"),
        },
    ];
    let load = target.join("load");
    let s = secs.to_string();
    let w = |name, args: &[&str], metrics| Workload {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        metrics,
    };
    let echo_metrics: &[(&str, bool)] = &[
        ("msgs_per_s", true),
        ("p50_us", false),
        ("p99_us", false),
        ("server_cpu_us_per_msg", false),
        ("load_cpu_pct", false),
        ("lost", false),
        ("mismatched", false),
    ];
    let workloads = [
        w(
            "64 B text, 100 conns, 16 in flight",
            &[
                "echo",
                "--conns",
                "100",
                "--inflight",
                "16",
                "--size",
                "64",
                "--secs",
                &s,
            ],
            echo_metrics,
        ),
        w(
            "64 B text, 100 conns, 1 in flight",
            &[
                "echo",
                "--conns",
                "100",
                "--inflight",
                "1",
                "--size",
                "64",
                "--secs",
                &s,
            ],
            echo_metrics,
        ),
        w(
            "16 KiB binary, 10 conns, 4 in flight",
            &[
                "echo",
                "--conns",
                "10",
                "--inflight",
                "4",
                "--size",
                "16384",
                "--binary",
                "--secs",
                &s,
            ],
            &[
                ("msgs_per_s", true),
                ("mb_per_s", true),
                ("p99_us", false),
                ("server_cpu_us_per_msg", false),
                ("load_cpu_pct", false),
                ("lost", false),
                ("mismatched", false),
            ],
        ),
        w(
            "10,000 idle conns",
            &["idle", "--conns", "10000", "--secs", "1"],
            &[("kib_per_conn", false), ("dropped", false)],
        ),
        w(
            "handshakes (50 workers)",
            &["burst", "--conns", "50", "--secs", &s],
            &[
                ("handshakes_per_s", true),
                ("server_cpu_us_per_hs", false),
                ("load_cpu_pct", false),
                ("failed", false),
            ],
        ),
    ];
    // results[workload][server][metric] = values over rounds
    let mut results: Results<'_> = BTreeMap::new();
    for round in 0..rounds {
        for (wi, workload) in workloads.iter().enumerate() {
            // Interleave: rotate the server order each round.
            for si in 0..servers.len() {
                let server = &servers[(si + round) % servers.len()];
                let (mut child, addr) = start(&server.binary);
                let mut args = workload.args.clone();
                args.extend([
                    "--addr".into(),
                    addr.clone(),
                    "--pid".into(),
                    child.id().to_string(),
                ]);
                let output = Command::new("taskset")
                    .args(["-c", "1"])
                    .arg(&load)
                    .args(&args)
                    .output()
                    .unwrap();
                let _ = child.kill();
                let _ = child.wait();
                let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                eprintln!(
                    "round {round} | {} | {} | {line}",
                    workload.name, server.name
                );
                for pair in line.split_whitespace() {
                    if let Some((key, value)) = pair.split_once('=')
                        && let Ok(value) = value.parse::<f64>()
                    {
                        let key: &str = workload
                            .metrics
                            .iter()
                            .find(|(k, _)| *k == key)
                            .map(|(k, _)| *k)
                            .unwrap_or("");
                        if !key.is_empty() {
                            results
                                .entry(wi)
                                .or_default()
                                .entry(server.name)
                                .or_default()
                                .entry(key)
                                .or_default()
                                .push(value);
                        }
                    }
                }
            }
        }
    }
    if rounds > 0 {
        print_table(rounds, secs, &workloads, &results);
    }
    if long {
        let (mut child, addr) = start(&servers[2].binary);
        let args = [
            "idle",
            "--conns",
            "19000",
            "--secs",
            "60",
            "--addr",
            &addr,
            "--pid",
            &child.id().to_string(),
        ];
        let output = Command::new("taskset")
            .args(["-c", "1"])
            .arg(&load)
            .args(args)
            .output()
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        println!();
        println!(
            "19,000 idle connections held 60 s (wsock): {}",
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
}

type Results<'a> = BTreeMap<usize, BTreeMap<&'a str, BTreeMap<&'a str, Vec<f64>>>>;

fn print_table(rounds: usize, secs: f64, workloads: &[Workload], results: &Results<'_>) {
    println!();
    println!(
        "Medians of {rounds} interleaved rounds ({secs} s each); ratio = wsock / naive (axum / naive)."
    );
    println!();
    println!(
        "| workload | metric | naive tokio-tungstenite | axum 0.8 | wsock | wsock / naive | axum / naive |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (wi, workload) in workloads.iter().enumerate() {
        for (metric, _) in workload.metrics {
            let median = |server: &str| -> Option<f64> {
                let mut values = results.get(&wi)?.get(server)?.get(metric)?.clone();
                values.sort_by(f64::total_cmp);
                Some(values[values.len() / 2])
            };
            let (naive, axum, wsock) = (median("naive"), median("axum"), median("wsock"));
            let show = |v: Option<f64>| {
                v.map_or("-".into(), |v| {
                    if v >= 100.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.2}")
                    }
                })
            };
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
                _ => "-".into(),
            };
            println!(
                "| {} | {metric} | {} | {} | {} | {} | {} |",
                workload.name,
                show(naive),
                show(axum),
                show(wsock),
                ratio(wsock, naive),
                ratio(axum, naive)
            );
        }
    }
    println!();
    println!("{NOTES}");
}

/// What the less obvious metrics mean, printed under the table.
const NOTES: &str = "\
server_cpu_us_per_msg, server_cpu_us_per_hs: the server process's CPU time (user + system,
from /proc) per echoed message or per handshake in the measured window. On loopback the kernel's work for a packet is charged to the process
that sends it, so this holds the server's own code, its system calls and the receiving side
of what it sends, not the TCP work the client's packets cause. load_cpu_pct: the load
generator's own CPU use on its core; near 100, it sets the pace and the rates understate the
server.";

/// Starts a server on core 0 at 127.0.0.1:0; returns it and the address it printed.
fn start(binary: &Path) -> (Child, String) {
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(binary)
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server exited before listening")
            .unwrap();
        if let Some(addr) = line.split("listening addr=").nth(1) {
            break addr.trim().to_owned();
        }
    };
    // Keep draining the server's output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}
