//! Runs the benchmark: wsock's echo example against the baselines, interleaved over several
//! rounds, each server pinned to core 0 and the load to core 1 (`taskset`), and prints the
//! medians and their ratios to the naive tokio-tungstenite server.
//!
//! `cargo run --release -p wsock-bench --bin runner -- [--rounds 3] [--secs 5] [--long]
//! [--only WORD] [--servers WORD,WORD] [--uws DIR]`
//!
//! `cargo run --release -p wsock-bench --bin runner -- --fanout [--step-secs 5] [--subs N]
//! [--only WORD] [--uws DIR]`
//!
//! `cargo run --release -p wsock-bench --bin runner -- --redis-flood [--step-secs 10]`
//!
//! `cargo run --release -p wsock-bench --bin runner -- --modes [--step-secs 5] [--subs N]`:
//! the delivery modes' fan-out (every, latest, droppable, at most 50/s, filter), with every
//! subscriber reading and with 10 % of them stalled.
//!
//! `cargo run --release -p wsock-bench --bin runner -- --callgrind [--messages 50000]
//! [--callgrind-dir DIR] [--only WORD] [--uws DIR]`
//!
//! `--long` adds the 19,000-idle-connections hold (60 s, wsock only). `--only WORD` runs only
//! the workloads whose name holds WORD (any case): `--only tls` the two TLS rows, `--only
//! idle` the three idle rows, `--only json` the two JSON rows, `--only compression` those
//! two too, `--only deflate` the idle row with deflate. `--servers WORD,WORD` (echo table
//! only) runs only the servers whose name holds one of the words (any case; `uws` for
//! uWebSockets, `wsock` also for the wsock-only and TLS rows): `--servers wsock,uws`; a server
//! left out shows `-`, and so do its ratios.
//!
//! uWebSockets (C++, github.com/uNetworking/uWebSockets) is an optional peer, in the echo
//! table, the fan-out ladder and the instruction count, when `--uws DIR` or the environment
//! variable `UWS_BIN=DIR` names the directory that holds its four programs (`--uws` wins);
//! without either, the runner prints one line saying its rows are skipped. Build them with
//! the peers' `uws/build.sh`, kept with `BenchEcho.cpp` and `BenchFanout.cpp` outside this
//! repository (it says what it builds): with checkouts of uWebSockets and, in its
//! `uSockets/` folder, github.com/uNetworking/uSockets,
//! `UWS_SRC=<uWebSockets checkout> OUT_DIR=DIR bash uws/build.sh` makes
//! `uws-echo` and `uws-fanout` (-O3 -march=native -flto, no TLS, no zlib; for the timed
//! runs) and `uws-echo-v3`, `uws-fanout-v3` (x86-64-v3, for callgrind, which runs no
//! AVX-512); g++ with C++20 and make. `uws-echo PORT` (BenchEcho.cpp) echoes text and binary
//! on every path; `uws-fanout PORT` (BenchFanout.cpp) subscribes `/sub` to one topic and
//! publishes every `/pub` message to it with uWebSockets' own pub/sub. Both listen on
//! 127.0.0.1 at the port they are given and print `Listening on port N`: the runner binds
//! 127.0.0.1:0 for a free port, lets it go and passes it (another try on another port if the
//! peer does not listen), then pins, measures and kills the peer as the other servers. Its
//! column is `uWebSockets` in the echo table (with `uWebSockets / naive`), where it takes part
//! in every row but the TLS and deflate ones (wsock only); its rows are `uWebSockets` in the
//! fan-out tables and the instruction count (`--only uws` picks it there).
//!
//! Compression (permessage-deflate, which wsock negotiates by default when a client offers
//! it): "1 KiB JSON text, 10 conns, 4 in flight" runs the load's `--json` messages (1,024
//! bytes of JSON-like text, an array of small objects with the same keys) twice. "compression
//! off": the load offers no deflate, against every server. "compression on": the load offers
//! permessage-deflate (`--deflate`: it compresses every message it sends, checks that the 101
//! accepted the offer and inflates the compressed echoes); wsock only, since neither
//! baseline negotiates deflate (tokio-tungstenite 0.30 and axum 0.8 have none): their cells,
//! and the ratios, show `-`; their figures for the same JSON load without deflate are in the
//! "compression off" row. Both rows report `wire_up_b_per_msg` and `wire_down_b_per_msg`, the
//! WebSocket frame bytes per message from the load and per echo from the server. "10,000
//! idle conns, deflate negotiated" is the idle row with the offer accepted on every
//! connection (wsock only): wsock keeps no compression state on a connection between
//! messages, so it should match the plain idle row.
//!
//! `--callgrind` runs the instruction count instead of the table: the server under `valgrind
//! --tool=callgrind --dump-instr=no --collect-atstart=yes` (pinned to core 0; the load runs
//! natively on core 1), the load's `echo --conns 10 --inflight 4 --size 64 --messages N`
//! (64 B text, every echo checked), then SIGINT to the server, whose callgrind file then
//! holds the instructions (Ir, user space: the server's code and the libraries it calls, not
//! the kernel) from its start to its exit. Two runs per server, one for M messages and one for
//! 2M (M: `--messages`, default 50,000), give the server's instructions per echoed message,
//! (Ir(2M) - Ir(M)) / M: start-up, the 10 handshakes and the shutdown cancel out. The servers
//! are wsock's `echo` example, the naive baseline and, with `--uws`, uWebSockets' `uws-echo-v3`
//! (`--only wsock`, `--only naive` or `--only uws` runs one); a run fails unless the load got
//! exactly N correct echoes. For wsock it also lists the 10 functions with the most self
//! instructions per message, and the 10 of wsock's own functions with the most inclusive
//! instructions per message (the same difference, per function, from `callgrind_annotate`);
//! for uWebSockets the first list. The callgrind files stay in `--callgrind-dir`
//! (default: a new directory under the system's temporary directory, printed at the end),
//! named `SERVER-N.callgrind.out`. Under valgrind a server runs 20 to 50 times slower (the
//! naive one, which zeroes a large read buffer for every read, slower still): with M =
//! 50,000, wsock's two runs take seconds, the naive server's a few minutes. The count
//! depends on how many messages a server finds per wake-up, which is more under valgrind
//! than natively: compare the servers with each other, measured the same way.
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
//!
//! `--fanout` runs the fan-out ladder instead of the echo table (the load's `fanout` mode,
//! every delivery checked; 64 B text, one publisher, one topic): 1,000 subscribers at 100,
//! 300 and 1,000 publishes/s and at full speed (100k, 300k, 1M deliveries/s, and the most),
//! then 10,000 subscribers at 10, 30, 100 publishes/s and full speed, each step against
//! four servers, each started afresh for it: `broadcast` (the tokio-tungstenite +
//! `tokio::sync::broadcast` baseline, capacity 1024), `wsock` (`wsock_fanout`, queue
//! capacity 1024), `wsock+history` (the same with `--history`: resumable subscribers, the
//! topic numbering and keeping its messages, each sent with its resume header),
//! `wsock+redis`: two `wsock_fanout` nodes linked through a
//! `redis-server` the runner starts once (`--port <free> --save '' --appendonly no --dir
//! <temporary directory>`, stopped at the end), the subscribers split between the nodes and
//! the publisher on the first, and `wsock+redis+history` (the same with `--history`: the
//! topic's history in Redis, every message numbered and kept there); with `--uws`, a sixth,
//! `uWebSockets` (`uws-fanout`, one node, as `wsock`). Every server process, Redis included, is pinned to core 0,
//! the load to core 1. Each step: sync, 1 s warm-up, `--step-secs` measured (default 5), up
//! to 5 s of drain. Prints a table per subscriber count (with each server's peak memory,
//! `VmHWM`, taken before it is stopped) and, per server, the highest rate
//! that was lossless (no gap, no message missing after the drain, no subscriber closed) and
//! kept up (deliveries/s within 5 % of the target). `--subs N` runs one subscriber count, at
//! the publish rates that target 100k, 300k and 1M deliveries/s and at full speed (the
//! ladder's own for 1,000 and 10,000; `--subs 100`: 1,000, 3,000, 10,000 publishes/s), or at
//! `--rates R,R,..` publishes/s (`--subs 10000 --rates 200`: 2M deliveries/s); `--only WORD` there picks the servers whose name holds WORD (`--only redis`); `--rounds`,
//! `--secs` and `--long` do not apply (one pass over the ladder; only the bench binaries are
//! built). The load
//! holds 10,001 connections at 10,000 subscribers, and a server as many: the raised
//! `ulimit -n` must be above that (the runner warns otherwise).
//!
//! `--redis-flood` measures one publisher at full speed through Redis, faster than Redis
//! takes publishes: two `wsock_fanout` nodes and a `redis-server` started afresh for each
//! form of publish (`publish`, which the broker refuses while its queue toward Redis is full,
//! `publish_wait`, which waits for room: `wsock_fanout --publish-wait`, and `publish_wait`
//! with the subscriber resumable, so that Redis numbers and keeps every message), the load's
//! publisher on the first node at full speed, one subscriber on the second (`load fanout
//! --subs 1 --rate 0`). It prints, per form: what the publisher published per second,
//! deliveries per second on the other node, refusals per second (the publish rate times the
//! share of the first node's publishes its broker refused, from its `/stats`), the
//! deliveries' p99, and each node's peak memory (`VmHWM`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Server {
    name: &'static str,
    binary: PathBuf,
    /// Arguments after the address.
    args: Vec<String>,
    /// Takes a port instead of an address (127.0.0.1 implied) and prints `Listening on port
    /// N` once bound, as the uWebSockets peers do: the runner picks a free port for it.
    port_arg: bool,
}

/// The uWebSockets peer's name in the tables (`--only uws` picks it too).
const UWS: &str = "uWebSockets";

/// Whether `--only WORD` (lowercase) picks the server `name`: its name holds WORD, any case;
/// `uws` also picks uWebSockets.
fn picks(name: &str, word: &str) -> bool {
    name.to_lowercase().contains(word) || (name == UWS && word == "uws")
}

/// The uWebSockets peer's binary `name` (`uws-echo`, `uws-fanout`, their `-v3` builds) in the
/// directory given by `--uws` or `UWS_BIN`; it must be there.
fn uws_binary(dir: &Path, name: &str) -> PathBuf {
    let binary = dir.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: build the uWebSockets peers with the peers' uws/build.sh \
         (see the header)",
        binary.display()
    );
    binary
}

/// The uWebSockets echo peer (`uws-echo`, or `uws-echo-v3` for callgrind).
fn uws_server(dir: &Path, binary: &str) -> Server {
    Server {
        name: UWS,
        binary: uws_binary(dir, binary),
        args: Vec::new(),
        port_arg: true,
    }
}

struct Workload {
    name: &'static str,
    args: Vec<String>,
    /// The result keys to report, with whether more is better.
    metrics: &'static [(&'static str, bool)],
    /// Over TLS: run against wsock's `tls` example only.
    tls: bool,
    /// Against wsock's `echo` example only (a workload the baselines cannot take part in).
    wsock_only: bool,
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
    let mut fanout = false;
    let mut redis_flood = false;
    let mut step_secs = 5.0;
    let mut fanout_subs: Option<usize> = None;
    let mut fanout_rates: Option<Vec<u32>> = None;
    let mut callgrind = false;
    let mut messages = 50_000u64;
    let mut callgrind_dir: Option<PathBuf> = None;
    let mut uws: Option<PathBuf> = std::env::var_os("UWS_BIN")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from);
    let mut picked_servers: Option<Vec<String>> = None;
    let mut modes = false;
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
            "--fanout" => fanout = true,
            "--redis-flood" => redis_flood = true,
            "--modes" => modes = true,
            "--step-secs" => {
                step_secs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--step-secs S")
            }
            "--subs" => {
                fanout_subs = Some(args.next().and_then(|v| v.parse().ok()).expect("--subs N"))
            }
            "--rates" => {
                let rates = args.next().expect("--rates R,R,..");
                let rates = rates
                    .split(',')
                    .map(|rate| rate.parse().expect("--rates R,R,.."));
                fanout_rates = Some(rates.collect());
            }
            "--callgrind" => callgrind = true,
            "--messages" => {
                messages = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&m| m > 0)
                    .expect("--messages M")
            }
            "--callgrind-dir" => {
                callgrind_dir = Some(args.next().expect("--callgrind-dir DIR").into())
            }
            "--uws" => uws = Some(args.next().expect("--uws DIR").into()),
            "--servers" => {
                picked_servers = Some(
                    args.next()
                        .expect("--servers WORD,WORD")
                        .to_lowercase()
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            _ => panic!(
                "usage: runner [--rounds N] [--secs S] [--long] [--only WORD] [--servers \
                 WORD,WORD] | runner --fanout [--step-secs S] [--subs N] [--only WORD] | runner \
                 --redis-flood [--step-secs S] | runner --modes [--step-secs S] [--subs N] | \
                 runner --callgrind [--messages M] \
                 [--callgrind-dir DIR] [--only WORD]; each but --redis-flood with [--uws DIR]"
            ),
        }
    }
    raise_open_files();
    // The optional uWebSockets peer: not for --redis-flood (wsock's Redis broker only).
    let uws = uws.map(|dir| std::path::absolute(&dir).unwrap_or(dir));
    if uws.is_none() && !redis_flood {
        eprintln!(
            "uWebSockets rows skipped: to add them, build its peers (UWS_SRC=<uWebSockets \
             checkout> OUT_DIR=DIR uws/build.sh, see the runner's header) and set UWS_BIN=DIR or pass \
             --uws DIR"
        );
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
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("release");
    if fanout || redis_flood || modes {
        build(&["build", "--release", "-p", "wsock-bench", "--bins"]);
        if modes {
            return fanout::modes(&target, step_secs, fanout_subs);
        }
        if redis_flood {
            return fanout::flood(&target, step_secs);
        }
        return fanout::ladder(
            &target,
            step_secs,
            fanout_subs,
            fanout_rates,
            only.as_deref(),
            uws.as_deref(),
        );
    }
    // `WSOCK_FEATURES=metrics` (or `prometheus`) builds the examples with those features too,
    // to measure what the metrics cost (the echo example serves `/metrics` with `prometheus`).
    let features = match std::env::var("WSOCK_FEATURES") {
        Ok(extra) if !extra.is_empty() => format!("tls,{extra}"),
        _ => "tls".to_owned(),
    };
    build(&[
        "build",
        "--release",
        "--features",
        &features,
        "--example",
        "echo",
        "--example",
        "tls",
    ]);
    build(&["build", "--release", "-p", "wsock-bench", "--bins"]);
    if callgrind {
        let dir = callgrind_dir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("wsock-bench-callgrind-{}", std::process::id()))
        });
        return callgrind::run(&target, messages, &dir, only.as_deref(), uws.as_deref());
    }
    let mut servers = vec![
        Server {
            name: "naive",
            binary: target.join("naive"),
            args: Vec::new(),
            port_arg: false,
        },
        Server {
            name: "axum",
            binary: target.join("axum_echo"),
            args: Vec::new(),
            port_arg: false,
        },
        Server {
            name: "wsock",
            binary: target.join("examples").join("echo"),
            args: Vec::new(),
            port_arg: false,
        },
    ];
    if let Some(dir) = &uws {
        servers.push(uws_server(dir, "uws-echo"));
    }
    let with_uws = uws.is_some();
    // `--servers`: the servers of the echo rounds (the TLS rows are wsock's).
    let picked: Vec<&Server> = servers
        .iter()
        .filter(|server| {
            picked_servers
                .as_ref()
                .is_none_or(|words| words.iter().any(|word| picks(server.name, word)))
        })
        .collect();
    assert!(!picked.is_empty(), "--servers matches no server");
    let tls_files = TlsFiles::new();
    let tls_server = Server {
        name: "wsock",
        binary: target.join("examples").join("tls"),
        args: vec![
            tls_files.cert.display().to_string(),
            tls_files.key.display().to_string(),
        ],
        port_arg: false,
    };
    let load = target.join("load");
    let s = secs.to_string();
    let w = |name, args: &[&str], metrics| Workload {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        metrics,
        tls: false,
        wsock_only: false,
    };
    let wsock_only = |name, args: &[&str], metrics| Workload {
        wsock_only: true,
        ..w(name, args, metrics)
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
    let json_metrics: &[(&str, bool)] = &[
        ("msgs_per_s", true),
        ("server_cpu_us_per_msg", false),
        ("wire_up_b_per_msg", false),
        ("wire_down_b_per_msg", false),
        ("p99_us", false),
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
            "1 KiB JSON text, 10 conns, 4 in flight, compression off",
            &[
                "echo",
                "--conns",
                "10",
                "--inflight",
                "4",
                "--size",
                "1024",
                "--json",
                "--secs",
                &s,
            ],
            json_metrics,
        ),
        wsock_only(
            "1 KiB JSON text, 10 conns, 4 in flight, compression on",
            &[
                "echo",
                "--conns",
                "10",
                "--inflight",
                "4",
                "--size",
                "1024",
                "--json",
                "--deflate",
                "--secs",
                &s,
            ],
            json_metrics,
        ),
        w(
            "10,000 idle conns",
            &["idle", "--conns", "10000", "--secs", "1"],
            &[("kib_per_conn", false), ("dropped", false)],
        ),
        wsock_only(
            "10,000 idle conns, deflate negotiated",
            &["idle", "--conns", "10000", "--secs", "1", "--deflate"],
            &[
                ("kib_per_conn", false),
                ("dropped", false),
                ("failed", false),
            ],
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
            let order: Vec<&Server> = if workload.tls || workload.wsock_only {
                // Against wsock only, and only if `--servers` keeps it.
                let server = if workload.tls {
                    &tls_server
                } else {
                    &servers[2]
                };
                if picked.iter().any(|s| s.name == "wsock") {
                    vec![server]
                } else {
                    Vec::new()
                }
            } else {
                (0..picked.len())
                    .map(|si| picked[(si + round) % picked.len()])
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
        print_table(rounds, secs, &workloads, &results, with_uws);
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

fn print_table(
    rounds: usize,
    secs: f64,
    workloads: &[Workload],
    results: &Results<'_>,
    with_uws: bool,
) {
    println!();
    println!(
        "Medians of {rounds} interleaved rounds ({secs} s each); ratio = wsock / naive (axum / naive{}).",
        if with_uws {
            ", uWebSockets / naive"
        } else {
            ""
        }
    );
    println!();
    if with_uws {
        println!(
            "| workload | metric | naive tokio-tungstenite | axum 0.8 | wsock | uWebSockets | \
             wsock / naive | axum / naive | uWebSockets / naive |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
    } else {
        println!(
            "| workload | metric | naive tokio-tungstenite | axum 0.8 | wsock | wsock / naive | axum / naive |"
        );
        println!("|---|---|---|---|---|---|---|");
    }
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
            if with_uws {
                let uws = median(UWS);
                println!(
                    "| {} | {metric} | {} | {} | {} | {} | {} | {} | {} |",
                    workload.name,
                    show(naive),
                    show(axum),
                    show(wsock),
                    show(uws),
                    ratio(wsock, naive),
                    ratio(axum, naive),
                    ratio(uws, naive)
                );
            } else {
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
    }
    println!();
    println!("{NOTES}");
    if with_uws {
        println!();
        println!("{UWS_NOTES}");
    }
}

/// What the less obvious metrics mean, printed under the table.
const NOTES: &str = "\
server_cpu_us_per_msg, server_cpu_us_per_hs: the server process's CPU time (user + system,
from /proc) per echoed message or per handshake in the measured window. On loopback the kernel's work for a packet is charged to the process
that sends it, so this holds the server's own code, its system calls and the receiving side
of what it sends, not the TCP work the client's packets cause. load_cpu_pct: the load
generator's own CPU use on its core; near 100, it sets the pace and the rates understate the
server. The rows over TLS are wsock only (the baselines serve no TLS): full TLS 1.3
handshakes, no resumption; compare each with the plain row above it. wire_up_b_per_msg,
wire_down_b_per_msg: WebSocket frame bytes (header, mask key, payload as sent) per message
from the load and per echo from the server. The compression-on row and the idle row with
deflate are wsock only (the baselines do not negotiate permessage-deflate): compare them with
the compression-off row and the plain idle row.";

/// The uWebSockets column, printed under the table when it is there.
const UWS_NOTES: &str = "\
uWebSockets: the C++ library's echo peer (uws-echo, from the peers' BenchEcho.cpp:
uWS::App, one thread, compression disabled, built -O3 -march=native -flto without TLS or
zlib), started on a free port and measured as the others. It takes part in every row but the
TLS rows and the two deflate rows (wsock only; it is built without zlib).";

/// Starts a server on core 0 at 127.0.0.1:0; returns it and the address it printed.
fn start(server: &Server) -> (Child, String) {
    start_under(&[], server)
}

/// `start`, the server run by `wrapper` (a program and its arguments, the server's path and
/// arguments following them), as valgrind runs it.
///
/// A server that takes a port (`port_arg`, the uWebSockets peers, which print the port they
/// were given, 0 included) gets a free one: bound at 127.0.0.1:0 here and let go. Another
/// process may take it in between; the peer then exits without listening, and it is started
/// again on another port (up to 5 tries).
fn start_under(wrapper: &[String], server: &Server) -> (Child, String) {
    let binary = &server.binary;
    for _ in 0..5 {
        let port = server.port_arg.then(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port()
        });
        let mut child = Command::new("taskset")
            .args(["-c", "0"])
            .args(wrapper)
            .arg(binary)
            .arg(port.map_or_else(|| "127.0.0.1:0".to_owned(), |port| port.to_string()))
            .args(&server.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                break None;
            };
            let line = line.unwrap();
            if let Some(addr) = line.split("listening addr=").nth(1) {
                break Some(addr.trim().to_owned());
            }
            if let Some(port) = port
                && line.trim() == format!("Listening on port {port}")
            {
                break Some(format!("127.0.0.1:{port}"));
            }
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                port.is_some(),
                "{} exited before listening",
                binary.display()
            );
            eprintln!(
                "{} did not listen on port {}; trying another port",
                server.name,
                port.unwrap_or(0)
            );
            continue;
        };
        // Keep draining the server's output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        return (child, addr);
    }
    panic!("{} did not listen on any of 5 free ports", binary.display());
}

/// A process's peak resident memory in KiB (`VmHWM` in `/proc/PID/status`).
fn peak_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The first text message a WebSocket endpoint sends: a minimal blocking client (the upgrade,
/// then one unmasked server frame), for the servers' `/stats`.
fn ws_text(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return None;
    }
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).ok()?;
    let len = match header[1] & 0x7f {
        126 => {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).ok()?;
            usize::from(u16::from_be_bytes(len))
        }
        127 => return None,
        len => usize::from(len),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).ok()?;
    String::from_utf8(payload).ok()
}

/// The fan-out ladder (`--fanout`; see the header).
mod fanout {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use super::{Server, UWS, picks, start, uws_binary};

    /// The servers, in the tables' order (uWebSockets after them, with `--uws`).
    const SERVERS: [&str; 5] = [
        "broadcast",
        "wsock",
        "wsock+history",
        "wsock+redis",
        "wsock+redis+history",
    ];

    /// Per subscriber count, the publish rates (0: full speed).
    const LADDER: [(usize, [u32; 4]); 2] =
        [(1_000, [100, 300, 1_000, 0]), (10_000, [10, 30, 100, 0])];

    /// `--subs N`: the publish rates that target 100k, 300k and 1M deliveries/s, and full
    /// speed (the ladder's own rates for 1,000 and 10,000).
    fn rates_for(subs: usize) -> [u32; 4] {
        let rate = |deliveries: usize| (deliveries / subs.max(1)).max(1) as u32;
        [rate(100_000), rate(300_000), rate(1_000_000), 0]
    }

    /// A deliveries/s figure within this share of the target kept up.
    const KEPT_UP: f64 = 0.95;

    /// The `redis-server` the `wsock+redis` steps share, stopped (and its directory removed)
    /// when this is dropped.
    struct Redis {
        child: Child,
        port: u16,
        dir: PathBuf,
    }

    impl Redis {
        fn start() -> Redis {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            let dir =
                std::env::temp_dir().join(format!("wsock-bench-redis-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            let child = Command::new("taskset")
                .args(["-c", "0", "redis-server", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
            let redis = Redis { child, port, dir };
            // Up to 20 s: on a busy machine a fresh redis-server has been seen to take over 5.
            for _ in 0..400 {
                if redis.answers() {
                    return redis;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("redis-server does not answer on port {port} after 20 s");
        }

        fn answers(&self) -> bool {
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut answer = [0u8; 5];
            stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut answer).is_ok()
                && &answer == b"+PONG"
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    type Figures = BTreeMap<String, f64>;

    /// One step: the server(s) started afresh, the load, the figures it printed.
    #[allow(clippy::too_many_arguments)]
    fn step(
        target: &Path,
        server: &str,
        subs: usize,
        rate: u32,
        secs: f64,
        redis: Option<&Redis>,
        uws: Option<&Path>,
        stall_percent: u32,
    ) -> Figures {
        let fanout = |args: Vec<String>| Server {
            name: "wsock",
            binary: target.join("wsock_fanout"),
            args,
            port_arg: false,
        };
        let servers = match server {
            "broadcast" => vec![Server {
                name: "broadcast",
                binary: target.join("broadcast"),
                args: Vec::new(),
                port_arg: false,
            }],
            "wsock" => vec![fanout(Vec::new())],
            "wsock+history" => vec![fanout(vec!["--history".to_owned()])],
            mode if mode.starts_with("wsock:") => {
                vec![fanout(vec![
                    "--mode".to_owned(),
                    mode["wsock:".len()..].to_owned(),
                ])]
            }
            UWS => vec![Server {
                name: UWS,
                binary: uws_binary(uws.expect("--uws"), "uws-fanout"),
                args: Vec::new(),
                port_arg: true,
            }],
            _ => {
                let url = redis.expect("Redis for wsock+redis").url();
                let mut args = vec![url];
                if server.ends_with("+history") {
                    args.push("--history".to_owned());
                }
                vec![fanout(args.clone()), fanout(args)]
            }
        };
        let (mut children, addrs): (Vec<Child>, Vec<String>) = servers.iter().map(start).unzip();
        let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
        let mut args: Vec<String> = [
            "fanout",
            "--subs",
            &subs.to_string(),
            "--rate",
            &rate.to_string(),
            "--secs",
            &secs.to_string(),
            "--warmup",
            "1",
            "--sub-addrs",
            &addrs.join(","),
            "--pub-addr",
            &addrs[0],
            "--pid",
            &pids.join(","),
            "--server-core",
            "0",
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(redis) = redis.filter(|_| server.contains("redis")) {
            args.extend(["--broker-pid".to_owned(), redis.child.id().to_string()]);
        }
        if stall_percent > 0 {
            args.extend(["--stall-percent".to_owned(), stall_percent.to_string()]);
        }
        let output = Command::new("taskset")
            .args(["-c", "1"])
            .arg(target.join("load"))
            .args(&args)
            .output()
            .expect("the load runs");
        // The server processes' peak memory over the step (not Redis's), before they go.
        let peak_kib: f64 = children
            .iter()
            .map(|child| super::peak_kib(child.id()).unwrap_or(f64::NAN))
            .sum();
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let rate_shown = if rate == 0 {
            "full speed".to_owned()
        } else {
            format!("{rate}/s")
        };
        eprintln!(
            "fanout | {subs} subs | {rate_shown} | {server} | {line} | server peak {:.1} MiB",
            peak_kib / 1024.0
        );
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr).trim());
        }
        let mut figures: Figures = line
            .split_whitespace()
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect();
        if !figures.is_empty() && peak_kib.is_finite() {
            figures.insert("server_peak_mib".to_owned(), peak_kib / 1024.0);
        }
        figures
    }

    /// Whether a step lost nothing (and every connection took part); `false` without figures.
    fn lossless(figures: &Figures) -> bool {
        let zero = |key: &str| figures.get(key) == Some(&0.0);
        [
            "lost",
            "closed",
            "dup_or_reordered",
            "mismatched",
            "failed_conns",
            "unsynced",
        ]
        .iter()
        .all(|key| zero(key))
    }

    /// Whether a fixed-rate step delivered at its target rate (full speed always does).
    fn kept_up(figures: &Figures, subs: usize, rate: u32) -> bool {
        rate == 0
            || figures
                .get("deliveries_per_s")
                .is_some_and(|&d| d >= KEPT_UP * (rate as f64 * subs as f64))
    }

    /// 1234567.8 as `1,234,568`.
    fn thousands(value: f64) -> String {
        let digits = format!("{:.0}", value.max(0.0));
        let mut out = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(digit);
        }
        out
    }

    /// One publisher at full speed through Redis (`--redis-flood`; see the header).
    pub(super) fn flood(target: &Path, secs: f64) {
        let mut rows = Vec::new();
        let forms: [(&str, &[&str]); 3] = [
            ("publish", &[]),
            ("publish_wait", &["--publish-wait"]),
            // The subscriber resumable: the topic's history in Redis, every publish numbered.
            ("publish_wait, history", &["--publish-wait", "--history"]),
        ];
        for (form, extra) in forms {
            let redis = Redis::start();
            let mut args = vec![redis.url()];
            args.extend(extra.iter().map(|arg| (*arg).to_owned()));
            let node = || Server {
                name: "wsock",
                binary: target.join("wsock_fanout"),
                args: args.clone(),
                port_arg: false,
            };
            let (mut a, a_addr) = start(&node());
            let (mut b, b_addr) = start(&node());
            let pids = format!("{},{}", a.id(), b.id());
            let output = Command::new("taskset")
                .args(["-c", "1"])
                .arg(target.join("load"))
                .args(["fanout", "--subs", "1", "--rate", "0", "--warmup", "1"])
                .args(["--secs", &secs.to_string(), "--sub-addrs", &b_addr])
                .args(["--pub-addr", &a_addr, "--pid", &pids, "--server-core", "0"])
                .args(["--broker-pid", &redis.child.id().to_string()])
                .output()
                .expect("the load runs");
            let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            let stats = super::ws_text(&a_addr, "/stats").unwrap_or_default();
            let peak = |child: &Child| super::peak_kib(child.id()).map_or(0.0, |kib| kib / 1024.0);
            let (peak_a, peak_b) = (peak(&a), peak(&b));
            for child in [&mut a, &mut b] {
                let _ = child.kill();
                let _ = child.wait();
            }
            eprintln!("redis-flood | {form} | {line} | A: {stats}");
            let mut figures: Figures = line
                .split_whitespace()
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key.to_owned(), value.parse().ok()?))
                })
                .collect();
            let stat = |name: &str| -> f64 {
                stats
                    .split(&format!("{name}: "))
                    .nth(1)
                    .and_then(|rest| rest.split([',', ' ', '}']).next()?.parse().ok())
                    .unwrap_or(0.0)
            };
            let (refused, confirmed) = (stat("refused_behind"), stat("published"));
            let share = if refused + confirmed > 0.0 {
                refused / (refused + confirmed)
            } else {
                0.0
            };
            let publish_per_s = figures.get("publish_per_s").copied().unwrap_or(0.0);
            figures.insert("refused_per_s".to_owned(), publish_per_s * share);
            figures.insert("peak_a_mb".to_owned(), peak_a);
            figures.insert("peak_b_mb".to_owned(), peak_b);
            rows.push((form, figures));
        }
        println!();
        println!(
            "One publisher at full speed through Redis: two nodes, 64 B text, the subscriber on \
             the other node, {secs} s after 1 s of warm-up."
        );
        println!();
        println!(
            "| publish | published/s | delivered/s on the other node | refused/s | dup or \
             reordered | p99 ms | peak memory, publishing node | peak memory, other node |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (form, figures) in rows {
            let get = |key: &str| figures.get(key).copied().unwrap_or(f64::NAN);
            println!(
                "| `{form}` | {} | {} | {} | {} | {:.1} | {:.1} MB | {:.1} MB |",
                thousands(get("publish_per_s")),
                thousands(get("deliveries_per_s")),
                thousands(get("refused_per_s")),
                thousands(get("dup_or_reordered")),
                get("p99_us") / 1e3,
                get("peak_a_mb"),
                get("peak_b_mb"),
            );
        }
    }

    /// The delivery modes (`--modes`; see the header): each mode at 1,000 and 10,000
    /// subscribers (or `--subs N`) at 300,000 deliveries/s, with every subscriber reading and
    /// with 10 % of them stalled.
    pub(super) fn modes(target: &Path, secs: f64, only_subs: Option<usize>) {
        const MODES: [&str; 5] = ["every", "latest", "droppable", "at_most", "filter"];
        let sizes = only_subs.map_or(vec![1_000, 10_000], |subs| vec![subs]);
        let mut rows = Vec::new();
        for &subs in &sizes {
            let rate = rates_for(subs)[1];
            for stall in [0, 10] {
                let mut turn = Vec::new();
                for mode in MODES {
                    let server = format!("wsock:{mode}");
                    let figures = step(target, &server, subs, rate, secs, None, None, stall);
                    turn.push((mode, figures));
                }
                rows.push((subs, rate, stall, turn));
            }
        }
        println!();
        println!(
            "Delivery modes: one topic, 64 B text at 300,000 deliveries/s, {secs} s after 1 s of \
             warm-up; `stalled` subscribers stop reading after the sync phase and are left out \
             of the figures (deliveries, gaps, latency: the healthy ones'). CPU per delivery is \
             the server's, per healthy delivery, and per message offered (publishes x all \
             subscribers, stalled ones included: what a mode that skips messages is asked to \
             do); `x every` compares the latter to `every` in the same row group."
        );
        println!();
        println!(
            "| subscribers x publishes/s | stalled | mode | deliveries/s | gaps | p50 / p99 ms | \
             server us/delivery | server us/offered | x every | peak MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for (subs, rate, stall, turn) in rows {
            // Server CPU per message offered: per delivery x deliveries / (publishes x subs).
            let offered = |figures: &Figures| {
                let get = |key: &str| figures.get(key).copied().unwrap_or(f64::NAN);
                get("server_cpu_us_per_delivery") * get("deliveries_per_s")
                    / (get("publish_per_s") * get("subs"))
            };
            let every = turn.first().map(|(_, figures)| offered(figures));
            for (mode, figures) in turn {
                let get = |key: &str| figures.get(key).copied().unwrap_or(f64::NAN);
                let cpu = get("server_cpu_us_per_delivery");
                let per_offered = offered(&figures);
                println!(
                    "| {} x {rate} | {stall} % | {mode} | {} | {} | {:.1} / {:.1} | {cpu:.2} | \
                     {per_offered:.2} | {:.2} | {:.1} |",
                    thousands(subs as f64),
                    thousands(get("deliveries_per_s")),
                    thousands(get("gaps")),
                    get("p50_us") / 1e3,
                    get("p99_us") / 1e3,
                    every.map_or(f64::NAN, |every| per_offered / every),
                    get("server_peak_mib"),
                );
            }
        }
    }

    pub(super) fn ladder(
        target: &Path,
        secs: f64,
        only_subs: Option<usize>,
        only_rates: Option<Vec<u32>>,
        only: Option<&str>,
        uws: Option<&Path>,
    ) {
        let servers: Vec<&str> = SERVERS
            .into_iter()
            .chain(uws.map(|_| UWS))
            .filter(|name| only.is_none_or(|word| picks(name, word)))
            .collect();
        assert!(!servers.is_empty(), "--only matches no server");
        let ladder: Vec<(usize, Vec<u32>)> = match only_subs {
            None => LADDER.map(|(subs, rates)| (subs, rates.to_vec())).to_vec(),
            Some(subs) => {
                assert!(subs > 0, "--subs N: at least 1");
                vec![(subs, only_rates.unwrap_or_else(|| rates_for(subs).to_vec()))]
            }
        };
        // Only the `wsock+redis` steps need Redis.
        let redis = servers
            .iter()
            .any(|server| server.contains("redis"))
            .then(Redis::start);
        // results[(subs, rate, server)]
        let mut results: BTreeMap<(usize, u32, &str), Figures> = BTreeMap::new();
        let mut turn = 0;
        for (subs, rates) in &ladder {
            for &rate in rates {
                // Interleaved: the order of the servers turns at every step.
                for i in 0..servers.len() {
                    let server = servers[(i + turn) % servers.len()];
                    let figures = step(target, server, *subs, rate, secs, redis.as_ref(), uws, 0);
                    results.insert((*subs, rate, server), figures);
                }
                turn += 1;
            }
        }
        drop(redis);
        print_tables(secs, &ladder, &servers, &results);
    }

    fn print_tables(
        secs: f64,
        ladder: &[(usize, Vec<u32>)],
        servers: &[&str],
        results: &BTreeMap<(usize, u32, &str), Figures>,
    ) {
        let show = |figures: &Figures, key: &str| match figures.get(key) {
            None => "-".to_owned(),
            Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => thousands(*v),
            Some(v) => format!("{v:.2}"),
        };
        for (subs, rates) in ladder {
            println!();
            println!(
                "Fan-out to {} subscribers: one topic, one publisher, 64 B text, {secs} s steps \
                 after 1 s of warm-up.",
                thousands(*subs as f64)
            );
            println!();
            println!(
                "| publishes/s | target deliveries/s | server | deliveries/s | lost | closed | \
                 p50 µs | p99 µs | server µs/delivery | Redis µs/delivery | server CPU % | \
                 core 0 busy % | load CPU % | pub stall ms | pub pong ms | server peak MiB | \
                 verdict |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            for &rate in rates {
                for &server in servers {
                    let Some(figures) = results.get(&(*subs, rate, server)) else {
                        continue;
                    };
                    let (publishes, target) = if rate == 0 {
                        ("full speed".to_owned(), "max".to_owned())
                    } else {
                        (
                            thousands(rate as f64),
                            thousands(rate as f64 * *subs as f64),
                        )
                    };
                    let verdict = if figures.is_empty() {
                        "failed"
                    } else if !lossless(figures) {
                        "LOSSY"
                    } else if !kept_up(figures, *subs, rate) {
                        "behind"
                    } else {
                        "ok"
                    };
                    let redis = if server.contains("redis") {
                        show(figures, "broker_cpu_us_per_delivery")
                    } else {
                        "-".to_owned()
                    };
                    println!(
                        "| {publishes} | {target} | {server} | {} | {} | {} | {} | {} | {} | {redis} \
                         | {} | {} | {} | {} | {} | {} | {verdict} |",
                        show(figures, "deliveries_per_s"),
                        show(figures, "lost"),
                        show(figures, "closed"),
                        show(figures, "p50_us"),
                        show(figures, "p99_us"),
                        show(figures, "server_cpu_us_per_delivery"),
                        show(figures, "server_cpu_pct"),
                        show(figures, "server_core_busy_pct"),
                        show(figures, "load_cpu_pct"),
                        show(figures, "pub_stall_max_ms"),
                        show(figures, "pub_pong_max_ms"),
                        show(figures, "server_peak_mib"),
                    );
                }
            }
        }
        println!();
        println!("Highest step lossless and kept up (verdict ok), per server:");
        println!();
        print!("| subscribers |");
        for server in servers {
            print!(" {server} |");
        }
        println!();
        println!("|---|{}", "---|".repeat(servers.len()));
        for (subs, rates) in ladder {
            print!("| {} |", thousands(*subs as f64));
            for &server in servers {
                let best = rates
                    .iter()
                    .filter_map(|&rate| {
                        let figures = results.get(&(*subs, rate, server))?;
                        let ok = lossless(figures) && kept_up(figures, *subs, rate);
                        let delivered = *figures.get("deliveries_per_s")?;
                        ok.then_some((rate, delivered))
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                match best {
                    None => print!(" none |"),
                    Some((0, delivered)) => {
                        print!(" {} deliveries/s (full speed) |", thousands(delivered))
                    }
                    Some((rate, delivered)) => print!(
                        " {} deliveries/s ({} publishes/s) |",
                        thousands(delivered),
                        thousands(rate as f64)
                    ),
                }
            }
            println!();
        }
        println!();
        println!("{NOTES}");
        if servers.contains(&UWS) {
            println!();
            println!("{UWS_NOTES}");
        }
    }

    const UWS_NOTES: &str = "\
uWebSockets = uws-fanout (the peers' BenchFanout.cpp): the C++ library's built-in \
pub/sub, one thread; /sub subscribes to one topic on open, every /pub message is \
app.publish()ed to it (queued per subscriber, each subscriber's batch written corked once per \
loop iteration); compression disabled, maxBackpressure 64 MiB without closing (a subscriber \
over it misses messages, which the load counts as lost, and is never closed). Built -O3 \
-march=native -flto without TLS or zlib; started on a free port, measured as the others.";

    const NOTES: &str = "\
deliveries/s: messages received by all subscribers together in the measured window. lost: \
gaps in a subscriber's sequence plus what it still missed after the drain (up to 5 s, \
stopping after 1 s without a delivery), a closed subscriber's included; closed: subscribers \
the server closed (wsock: 1008, outbound queue full). p50/p99: publish-to-receive latency of \
the messages published in the window. server µs/delivery: the server processes' CPU time \
(user + system, from /proc; both nodes for wsock+redis) per delivery in the window, Redis's \
own shown beside; on loopback the kernel's receive work is charged to the sender, so this \
includes the TCP work of delivering. server CPU %: the server processes' share of core 0, \
where every server process and Redis run; core 0 busy %: all of core 0's busy time (any \
process, interrupts, softirq), from /proc/stat. load CPU %: the load generator's own use of core 1 (near 100, it sets the pace). \
pub stall ms: the longest the publisher's socket refused writes while it had messages to \
send; pub pong ms: the slowest answer to the ping it sends every 100 ms (the publisher's own \
connection staying served; at full speed the ping waits behind the publishes already in the \
socket buffers, so both figures there say how far the server let the publisher run ahead). server peak MiB: \
the server processes' peak resident memory (VmHWM, from /proc) at the end of the step, both \
nodes' summed for wsock+redis, Redis's not included. verdict: ok = lossless and at least 95 % of the target rate; \
behind = lossless only because the drain caught up (a longer step would lose or close); \
LOSSY otherwise. Servers: broadcast = tokio-tungstenite + tokio::sync::broadcast (capacity \
1024, a task per subscriber, Lagged skips); wsock = wsock_fanout (queue_capacity 1024); \
wsock+history = the same, its subscribers resumable (every message numbered, kept, sent with \
its resume header); wsock+redis = two wsock_fanout nodes through one redis-server, subscribers split over both, \
the publisher on the first; wsock+redis+history = the same, its subscribers resumable: the topic's history in Redis \
(every publish numbered and kept there by a script).";
}

/// The instruction count (`--callgrind`; see the header).
mod callgrind {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use super::{Server, UWS, picks, start_under, uws_server};

    /// How long a server under valgrind may take to exit after SIGINT.
    const EXIT_WITHIN: Duration = Duration::from_secs(180);

    /// One server run under callgrind for `messages` echoes: the callgrind output file.
    fn measure(server: &Server, messages: u64, dir: &Path, target: &Path) -> PathBuf {
        let out = dir.join(format!("{}-{messages}.callgrind.out", server.name));
        let _ = std::fs::remove_file(&out);
        let valgrind = [
            "valgrind".to_owned(),
            "--tool=callgrind".to_owned(),
            "--dump-instr=no".to_owned(),
            "--collect-atstart=yes".to_owned(),
            format!("--callgrind-out-file={}", out.display()),
        ];
        let started = Instant::now();
        let (mut child, addr) = start_under(&valgrind, server);
        let args = [
            "echo",
            "--conns",
            "10",
            "--inflight",
            "4",
            "--size",
            "64",
            "--messages",
            &messages.to_string(),
            "--addr",
            &addr,
        ];
        let output = Command::new("taskset")
            .args(["-c", "1"])
            .arg(target.join("load"))
            .args(args)
            .output()
            .expect("the load runs");
        let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        eprintln!("callgrind | {} | {messages} messages | {line}", server.name);
        stop(&mut child);
        eprintln!(
            "callgrind | {} | {messages} messages | {:.1} s under valgrind, {}",
            server.name,
            started.elapsed().as_secs_f64(),
            out.display()
        );
        let figure = |key: &str| {
            line.split_whitespace()
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok())
        };
        assert!(
            figure("echoed") == Some(messages)
                && figure("lost") == Some(0)
                && figure("mismatched") == Some(0)
                && figure("failed_conns") == Some(0),
            "{}: the load did not get exactly {messages} correct echoes: {line}",
            server.name
        );
        out
    }

    /// Ends a server with SIGINT (wsock shuts down gracefully; the default action ends the
    /// others, and valgrind writes its output either way); SIGKILL after `EXIT_WITHIN`.
    fn stop(child: &mut Child) {
        // SAFETY: signals a process this runner started and has not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + EXIT_WITHIN;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server under valgrind did not exit within {EXIT_WITHIN:?} of SIGINT");
    }

    /// The total Ir of a callgrind output file (`totals:`, else `summary:`).
    fn total(file: &Path) -> u64 {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let find = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        };
        find("totals:")
            .or_else(|| find("summary:"))
            .unwrap_or_else(|| panic!("no totals in {}", file.display()))
    }

    /// Ir per function (`callgrind_annotate`, every function, self or inclusive cost).
    fn functions(file: &Path, inclusive: bool) -> HashMap<String, u64> {
        let output = Command::new("callgrind_annotate")
            .arg(format!(
                "--inclusive={}",
                if inclusive { "yes" } else { "no" }
            ))
            .arg("--threshold=100")
            .arg(file)
            .output()
            .expect("callgrind_annotate runs");
        // Lines such as `6,391,590 (12.27%)  ???:crate::function [/path/to/binary]`.
        let mut costs = HashMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let line = line.trim();
            let Some((count, rest)) = line.split_once(' ') else {
                continue;
            };
            let Ok(count) = count.replace(',', "").parse::<u64>() else {
                continue;
            };
            let Some((_, name)) = rest.split_once(')') else {
                continue;
            };
            let name = name.trim();
            if name.is_empty() || name == "PROGRAM TOTALS" {
                continue;
            }
            // Without the binary's path; the function as callgrind names it.
            let name = name.rsplit_once(" [").map_or(name, |(name, _)| name);
            let name = name.strip_prefix("???:").unwrap_or(name);
            *costs.entry(name.to_owned()).or_default() += count;
        }
        costs
    }

    /// The functions that cost the most per message, (Ir(2M) - Ir(M)) / M per function, the
    /// first `n` of those whose name holds `within` (all with "").
    fn top(
        once: &Path,
        twice: &Path,
        messages: u64,
        inclusive: bool,
        within: &str,
        n: usize,
    ) -> Vec<(f64, String)> {
        let before = functions(once, inclusive);
        let mut per_message: Vec<(f64, String)> = functions(twice, inclusive)
            .into_iter()
            .filter(|(name, _)| name.contains(within))
            .map(|(name, ir)| {
                let base = before.get(&name).copied().unwrap_or(0);
                ((ir as f64 - base as f64) / messages as f64, name)
            })
            .collect();
        per_message.sort_by(|a, b| b.0.total_cmp(&a.0));
        per_message.truncate(n);
        per_message
    }

    pub(super) fn run(
        target: &Path,
        messages: u64,
        dir: &Path,
        only: Option<&str>,
        uws: Option<&Path>,
    ) {
        std::fs::create_dir_all(dir).expect("a directory for the callgrind files");
        let mut servers = vec![
            Server {
                name: "wsock",
                binary: target.join("examples").join("echo"),
                args: Vec::new(),
                port_arg: false,
            },
            Server {
                name: "naive",
                binary: target.join("naive"),
                args: Vec::new(),
                port_arg: false,
            },
        ];
        // The x86-64-v3 build: valgrind does not run AVX-512.
        servers.extend(uws.map(|dir| uws_server(dir, "uws-echo-v3")));
        let mut per_message = Vec::new();
        let mut files = Vec::new();
        for server in servers
            .iter()
            .filter(|s| only.is_none_or(|word| picks(s.name, word)))
        {
            let once = measure(server, messages, dir, target);
            let twice = measure(server, 2 * messages, dir, target);
            let (a, b) = (total(&once), total(&twice));
            let ir = (b as f64 - a as f64) / messages as f64;
            per_message.push((server.name, a, b, ir));
            files.push((server.name, once, twice));
        }
        assert!(!per_message.is_empty(), "--only matches no server");
        println!();
        println!(
            "Server user-space instructions per echoed 64 B text message, 10 connections, 4 in \
             flight: (Ir(2M) - Ir(M)) / M under callgrind, M = {messages}."
        );
        println!();
        println!("| server | Ir(M) | Ir(2M) | instructions per message |");
        println!("|---|---|---|---|");
        for (name, a, b, ir) in &per_message {
            println!("| {name} | {a} | {b} | {ir:.0} |");
        }
        let of = |name: &str| per_message.iter().find(|p| p.0 == name).map(|p| p.3);
        if let (Some(wsock), Some(naive)) = (of("wsock"), of("naive")) {
            println!();
            println!("naive / wsock: {:.2}x", naive / wsock);
        }
        if let (Some(wsock), Some(uws)) = (of("wsock"), of(UWS)) {
            println!();
            println!("wsock / uWebSockets: {:.2}x", wsock / uws);
        }
        for (name, once, twice) in files.iter().filter(|f| f.0 == "wsock" || f.0 == UWS) {
            let total = of(name).unwrap_or(f64::NAN);
            // Inclusive, the runtime's frames hold everything: wsock's own functions only.
            // uWebSockets (-O3 -flto, inlined into a few frames): self instructions only.
            let lists = [
                (false, "", "self instructions"),
                (true, "wsock", "inclusive instructions, wsock's functions"),
            ];
            let lists = &lists[..if *name == UWS { 1 } else { 2 }];
            for &(inclusive, within, what) in lists {
                println!();
                println!(
                    "{name}: top 10 functions by {what}, per message ((Ir(2M) - Ir(M)) / M per \
                     function; share of the {total:.0}):"
                );
                println!();
                for (ir, function) in top(once, twice, messages, inclusive, within, 10) {
                    println!("{ir:>8.0} {:>5.1} %  {function}", ir * 100.0 / total);
                }
            }
        }
        println!();
        println!(
            "The callgrind files are in {} (callgrind_annotate FILE for more).",
            dir.display()
        );
    }
}
