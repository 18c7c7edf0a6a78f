//! The load generator: raw sockets and hand-written frames, so that it is never the
//! bottleneck, and every echo checked for content and order.
//!
//! ```text
//! load echo  --addr HOST:PORT [--conns 100] [--inflight 16] [--size 64] [--binary]
//!            [--secs 5] [--warmup 1]
//! load idle  --addr HOST:PORT --conns 10000 --pid SERVER_PID [--secs 5]
//! load burst --addr HOST:PORT [--conns 50] [--secs 5]
//! ```
//!
//! Prints one line of `key=value` results (the runner parses it).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

struct Args {
    mode: String,
    addr: SocketAddr,
    conns: usize,
    inflight: usize,
    size: usize,
    binary: bool,
    secs: f64,
    warmup: f64,
    pid: u32,
}

fn args() -> Args {
    let mut args = Args {
        mode: String::new(),
        addr: "127.0.0.1:9000".parse().unwrap(),
        conns: 100,
        inflight: 16,
        size: 64,
        binary: false,
        secs: 5.0,
        warmup: 1.0,
        pid: 0,
    };
    let mut it = std::env::args().skip(1);
    args.mode = it.next().unwrap_or_else(|| usage());
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--addr" => args.addr = value().parse().unwrap_or_else(|_| usage()),
            "--conns" => args.conns = value().parse().unwrap_or_else(|_| usage()),
            "--inflight" => args.inflight = value().parse().unwrap_or_else(|_| usage()),
            "--size" => args.size = value().parse().unwrap_or_else(|_| usage()),
            "--binary" => args.binary = true,
            "--secs" => args.secs = value().parse().unwrap_or_else(|_| usage()),
            "--warmup" => args.warmup = value().parse().unwrap_or_else(|_| usage()),
            "--pid" => args.pid = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    args
}

fn usage() -> ! {
    eprintln!("usage: load echo|idle|burst --addr HOST:PORT [options]; see the source's header");
    std::process::exit(2)
}

fn main() {
    let args = args();
    // One thread: the runner pins this process to one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match args.mode.as_str() {
            "echo" => echo(&args).await,
            "idle" => idle(&args).await,
            "burst" => burst(&args).await,
            _ => usage(),
        }
    });
}

/// Connects from 127.0.0.x (x cycling through 1..=250), so tens of thousands of connections
/// do not run out of source ports.
async fn connect(addr: SocketAddr, n: usize) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if addr.ip().is_loopback() {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (n % 250) as u8));
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The opening handshake, by hand; returns bytes read past the response, if any.
async fn handshake(stream: &mut TcpStream, addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other(
                    String::from_utf8_lossy(&buf).into_owned(),
                ));
            }
            return Ok(buf.split_off(end + 4));
        }
    }
}

/// A client frame (FIN, masked with a zero key, which leaves the payload as is).
fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

/// Parses one server frame from the front of `buf`: (opcode, payload range, frame length).
fn decode(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, start) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        len => (len as usize, 2),
    };
    (buf.len() >= start + len).then_some((opcode, start..start + len, start + len))
}

/// The payload of message `seq` of connection `conn`: recognisable, and cheap to check.
fn payload(conn: usize, seq: u64, size: usize, into: &mut Vec<u8>) {
    into.clear();
    let tag = format!("{conn:08x}{seq:016x}");
    into.extend_from_slice(&tag.as_bytes()[..tag.len().min(size)]);
    into.resize(size, b'x');
}

struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    received: AtomicU64,
    bytes: AtomicU64,
    mismatched: AtomicU64,
    lost: AtomicU64,
}

async fn echo(args: &Args) {
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        received: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        mismatched: AtomicU64::new(0),
        lost: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for conn in 0..args.conns {
        let shared = Arc::clone(&shared);
        let (addr, inflight, size, binary) = (args.addr, args.inflight, args.size, args.binary);
        tasks.push(tokio::spawn(async move {
            echo_connection(conn, addr, inflight, size, binary, &shared).await
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    let mut rtts: Vec<u32> = Vec::new();
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(samples)) => rtts.extend(samples),
            _ => failed += 1,
        }
    }
    rtts.sort_unstable();
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let received = shared.received.load(Ordering::Relaxed);
    println!(
        "msgs_per_s={:.0} mb_per_s={:.1} p50_us={} p99_us={} p999_us={} lost={} mismatched={} failed_conns={}",
        received as f64 / elapsed,
        shared.bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        shared.lost.load(Ordering::Relaxed),
        shared.mismatched.load(Ordering::Relaxed),
        failed,
    );
}

/// One connection of the echo load: keeps `inflight` messages outstanding, checks each echo.
async fn echo_connection(
    conn: usize,
    addr: SocketAddr,
    inflight: usize,
    size: usize,
    binary: bool,
    shared: &Shared,
) -> std::io::Result<Vec<u32>> {
    let mut stream = connect(addr, conn).await?;
    let mut buf = handshake(&mut stream, addr).await?;
    let opcode = if binary { 0x2 } else { 0x1 };
    let (mut next_seq, mut expected_seq) = (0u64, 0u64);
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(inflight);
    let mut out = Vec::with_capacity((size + 14) * inflight);
    let mut body = Vec::with_capacity(size);
    let mut expected = Vec::with_capacity(size);
    let mut rtts = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    // Fill the window.
    for _ in 0..inflight {
        payload(conn, next_seq, size, &mut body);
        encode(&mut out, opcode, &body);
        sent_at.push_back(Instant::now());
        next_seq += 1;
    }
    stream.write_all(&out).await?;
    out.clear();
    loop {
        // Every echo already buffered, then one write for all the replacements.
        let mut at = 0;
        while let Some((op, range, len)) = decode(&buf[at..]) {
            let range = range.start + at..range.end + at;
            if op == opcode {
                payload(conn, expected_seq, size, &mut expected);
                if buf[range] != expected[..] {
                    shared.mismatched.fetch_add(1, Ordering::Relaxed);
                }
                expected_seq += 1;
                let rtt = sent_at
                    .pop_front()
                    .map_or(0, |t| t.elapsed().as_micros() as u32);
                if shared.measuring.load(Ordering::Relaxed) {
                    shared.received.fetch_add(1, Ordering::Relaxed);
                    shared.bytes.fetch_add(size as u64, Ordering::Relaxed);
                    rtts.push(rtt);
                }
                if !shared.stop.load(Ordering::Relaxed) {
                    payload(conn, next_seq, size, &mut body);
                    encode(&mut out, opcode, &body);
                    sent_at.push_back(Instant::now());
                    next_seq += 1;
                }
            }
            at += len;
        }
        buf.drain(..at);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if shared.stop.load(Ordering::Relaxed) && sent_at.is_empty() {
            return Ok(rtts);
        }
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => {
                // No echo for 5 s, or the server hung up: what is outstanding is lost.
                shared
                    .lost
                    .fetch_add(sent_at.len() as u64, Ordering::Relaxed);
                return Ok(rtts);
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Opens `conns` connections, holds them `secs`, checks every one still answers.
async fn idle(args: &Args) {
    let before = rss_kib(args.pid);
    let mut streams = Vec::with_capacity(args.conns);
    let mut failed = 0;
    let opened = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for conn in 0..args.conns {
        let addr = args.addr;
        pending.spawn(async move {
            let mut stream = connect(addr, conn).await?;
            handshake(&mut stream, addr).await?;
            Ok::<_, std::io::Error>(stream)
        });
        // Bounded concurrency, so the server's accept queue is not the test.
        while pending.len() >= 256 {
            match pending.join_next().await.unwrap().unwrap() {
                Ok(stream) => streams.push(stream),
                Err(_) => failed += 1,
            }
        }
    }
    while let Some(result) = pending.join_next().await {
        match result.unwrap() {
            Ok(stream) => streams.push(stream),
            Err(_) => failed += 1,
        }
    }
    let open_secs = opened.elapsed().as_secs_f64();
    let held = streams.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(args.pid);
    // Hold them, answering the server's keep-alive pings as any live client does.
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(args.secs);
    let mut holders = tokio::task::JoinSet::new();
    for mut stream in streams.drain(..) {
        holders.spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 256];
            let held = async {
                loop {
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Err::<(), std::io::Error>(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some((op, range, len)) = decode(&buf) {
                        match op {
                            0x9 => {
                                let mut pong = Vec::new();
                                encode(&mut pong, 0xA, &buf[range]);
                                stream.write_all(&pong).await?;
                            }
                            0x8 => return Err(std::io::ErrorKind::ConnectionAborted.into()),
                            _ => {}
                        }
                        buf.drain(..len);
                    }
                }
            };
            match tokio::time::timeout_at(until, held).await {
                Err(_) => Some(stream), // held until the end
                Ok(_) => None,          // closed by the server
            }
        });
    }
    let mut dropped = 0;
    while let Some(held) = holders.join_next().await {
        match held.unwrap() {
            Some(stream) => streams.push(stream),
            None => dropped += 1,
        }
    }
    // Every connection still held must answer: one echo each.
    let mut frame = Vec::new();
    encode(&mut frame, 0x1, b"alive?");
    for stream in &mut streams {
        let alive = async {
            stream.write_all(&frame).await?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64];
            loop {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
                // Skip pings; stop at the echo.
                while let Some((op, range, len)) = decode(&buf) {
                    if op == 0x1 {
                        return Ok::<_, std::io::Error>(buf[range] == *b"alive?");
                    }
                    buf.drain(..len);
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), alive).await {
            Ok(Ok(true)) => {}
            _ => dropped += 1,
        }
    }
    println!(
        "conns={held} failed={failed} dropped={dropped} open_secs={open_secs:.1} rss_before_kib={before} rss_after_kib={after} kib_per_conn={:.2}",
        after.saturating_sub(before) as f64 / held.max(1) as f64
    );
}

/// Connect, handshake, one echo, close: as many times as possible with `conns` workers.
async fn burst(args: &Args) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..args.conns {
        let (done, failed, stop, addr) = (done.clone(), failed.clone(), stop.clone(), args.addr);
        workers.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                n += 1000;
                let round = async {
                    let mut stream = connect(addr, n).await?;
                    let mut buf = handshake(&mut stream, addr).await?;
                    let mut frames = Vec::new();
                    encode(&mut frames, 0x1, b"hi");
                    encode(&mut frames, 0x8, &1000u16.to_be_bytes());
                    stream.write_all(&frames).await?;
                    let mut chunk = [0u8; 256];
                    let mut echoed = false;
                    loop {
                        while let Some((op, range, len)) = decode(&buf) {
                            echoed |= op == 0x1 && buf[range] == *b"hi";
                            if op == 0x8 {
                                return Ok::<_, std::io::Error>(echoed);
                            }
                            buf.drain(..len);
                        }
                        let read = stream.read(&mut chunk).await?;
                        if read == 0 {
                            return Ok(false);
                        }
                        buf.extend_from_slice(&chunk[..read]);
                    }
                };
                match tokio::time::timeout(Duration::from_secs(5), round).await {
                    Ok(Ok(true)) => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let start = done.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    let count = done.load(Ordering::Relaxed) - start;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    println!(
        "handshakes_per_s={:.0} failed={}",
        count as f64 / elapsed,
        failed.load(Ordering::Relaxed)
    );
}
