//! Runs the benchmark: wsock's echo example against the baselines, interleaved over several
//! rounds, each server pinned to core 0 and the load to core 1 (`taskset`), and prints the
//! medians and their ratios to the naive tokio-tungstenite server.
//!
//! `cargo run --release -p wsock-bench --bin runner -- [--rounds 3] [--secs 5] [--long]
//! [--only WORD]`
//!
//! `--long` adds the 19,000-idle-connections hold (60 s, wsock only). `--only WORD` runs only
//! the workloads whose name holds WORD (any case): `--only tls` the two TLS rows, `--only
//! idle` both idle rows.
//!
//! The TLS rows are wsock only (the baselines serve no TLS: their cells show `-`, and so do
//! the ratios): the `tls` example, the same echo endpoint behind rustls (ring), with a
//! self-signed ECDSA P-256 certificate for `localhost` made once per run (in a temporary
//! directory, removed at the end), which the load trusts and checks. Every connection makes
//! a full handshake (TLS 1.3, X25519, no session resumption), so "10,000 idle conns over
//! TLS" is the server's memory per held wss:// connection (TCP, TLS session and WebSocket
//! state) and "handshakes over TLS" the TCP + TLS + WebSocket handshake, one echo and the
//! close, as in the plain row; compare each with the plain row above it. The load
//! generator's side of a full handshake (key exchange, certificate check) costs about what
//! the server's does, so watch load_cpu_pct there.
//!
//! Both examples are built with `--features tls` (the plain `echo` does not use it). The
//! idle rows need 10,000+ open files in each process (19,000+ for `--long`): the runner
//! raises its soft `ulimit -n` to the hard limit, which the servers and the load inherit.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Server {
    name: &'static str,
    binary: PathBuf,
    /// Arguments after the address.
    args: Vec<String>,
}

struct Workload {
    name: &'static str,
    args: Vec<String>,
    /// The result keys to report, with whether more is better.
    metrics: &'static [(&'static str, bool)],
    /// Over TLS: run against wsock's `tls` example only.
    tls: bool,
}

/// The self-signed certificate the TLS rows use, and its key, in a temporary directory that
/// goes when this is dropped.
struct TlsFiles {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsFiles {
    fn new() -> TlsFiles {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
        let dir = std::env::temp_dir().join(format!("wsock-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        std::fs::write(&files.cert, made.cert.pem()).expect("cert.pem written");
        std::fs::write(&files.key, made.signing_key.serialize_pem()).expect("key.pem written");
        files
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Raises the soft open-file limit to the hard one; the servers and the load inherit it.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pointer to an `rlimit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    if limit.rlim_cur < 10_100 {
        eprintln!(
            "warning: ulimit -n is {}: the idle rows need 10,000+ connections per process",
            limit.rlim_cur
        );
    }
}

fn main() {
    let mut rounds = 3;
    let mut secs = 5.0;
    let mut long = false;
    let mut only: Option<String> = None;
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
            "--only" => only = Some(args.next().expect("--only WORD").to_lowercase()),
            _ => panic!("usage: runner [--rounds N] [--secs S] [--long] [--only WORD]"),
        }
    }
    raise_open_files();
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
    build(&[
        "build",
        "--release",
        "--features",
        "tls",
        "--example",
        "echo",
        "--example",
        "tls",
    ]);
    build(&["build", "--release", "-p", "wsock-bench", "--bins"]);
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("release");
    let servers = [
        Server {
            name: "naive",
            binary: target.join("naive"),
            args: Vec::new(),
        },
        Server {
            name: "axum",
            binary: target.join("axum_echo"),
            args: Vec::new(),
        },
        Server {
            name: "wsock",
            binary: target.join("examples").join("echo"),
            args: Vec::new(),
        },
    ];
    let tls_files = TlsFiles::new();
    let tls_server = Server {
        name: "wsock",
        binary: target.join("examples").join("tls"),
        args: vec![
            tls_files.cert.display().to_string(),
            tls_files.key.display().to_string(),
        ],
    };
    let load = target.join("load");
    let s = secs.to_string();
    let w = |name, args: &[&str], metrics| Workload {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        metrics,
        tls: false,
    };
    let cert = tls_files.cert.display().to_string();
    let over_tls = |name, args: &[&str], metrics| Workload {
        tls: true,
        ..w(name, &[args, &["--tls", &cert]].concat(), metrics)
    };
    let handshake_metrics: &[(&str, bool)] = &[
        ("handshakes_per_s", true),
        ("server_cpu_us_per_hs", false),
        ("load_cpu_pct", false),
        ("failed", false),
    ];
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
        over_tls(
            "10,000 idle conns over TLS",
            &["idle", "--conns", "10000", "--secs", "1"],
            &[("kib_per_conn", false), ("dropped", false)],
        ),
        w(
            "handshakes (50 workers)",
            &["burst", "--conns", "50", "--secs", &s],
            handshake_metrics,
        ),
        over_tls(
            "handshakes over TLS (50 workers)",
            &["burst", "--conns", "50", "--secs", &s],
            handshake_metrics,
        ),
    ];
    let workloads: Vec<Workload> = workloads
        .into_iter()
        .filter(|w| {
            only.as_ref()
                .is_none_or(|word| w.name.to_lowercase().contains(word))
        })
        .collect();
    assert!(!workloads.is_empty(), "--only matches no workload");
    // results[workload][server][metric] = values over rounds
    let mut results: Results<'_> = BTreeMap::new();
    for round in 0..rounds {
        for (wi, workload) in workloads.iter().enumerate() {
            // Interleave: rotate the server order each round.
            let order: Vec<&Server> = if workload.tls {
                vec![&tls_server]
            } else {
                (0..servers.len())
                    .map(|si| &servers[(si + round) % servers.len()])
                    .collect()
            };
            for server in order {
                let (mut child, addr) = start(server);
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
        let (mut child, addr) = start(&servers[2]);
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
server. The rows over TLS are wsock only (the baselines serve no TLS): full TLS 1.3
handshakes, no resumption; compare each with the plain row above it.";

/// Starts a server on core 0 at 127.0.0.1:0; returns it and the address it printed.
fn start(server: &Server) -> (Child, String) {
    let binary = &server.binary;
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(binary)
        .arg("127.0.0.1:0")
        .args(&server.args)
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
