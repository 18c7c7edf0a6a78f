//! The load generator: raw sockets and hand-written frames, so that it is never the
//! bottleneck, and every echo checked for content and order.
//!
//! ```text
//! load echo  --addr HOST:PORT [--conns 100] [--inflight 16] [--size 64] [--binary]
//!            [--secs 5] [--warmup 1]
//! load idle  --addr HOST:PORT --conns 10000 --pid SERVER_PID [--secs 5] [--tls CERT.pem]
//! load burst --addr HOST:PORT [--conns 50] [--secs 5] [--pid SERVER_PID] [--tls CERT.pem]
//! ```
//!
//! `echo` and `burst` run their own epoll loop on one thread, as little work per message or
//! per connection as the checks allow (`echo` connects through tokio first, then takes the
//! sockets over); `idle` runs on a one-thread tokio runtime.
//!
//! `--tls CERT.pem` (`idle` and `burst`): wss:// instead of ws://, on rustls with the ring
//! provider, trusting only that certificate and checking it for the name `localhost`, TLS
//! 1.2 or 1.3 (1.3 with a rustls server), ALPN `http/1.1`, and no session resumption: every
//! connection pays a full handshake. `burst` drives each `rustls::ClientConnection` by hand
//! in its epoll loop; `idle` uses tokio-rustls. Without the flag nothing of TLS is touched.
//!
//! Prints one line of `key=value` results (the runner parses it).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    /// `--tls`: the client configuration that trusts the given certificate.
    tls: Option<Arc<rustls::ClientConfig>>,
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
        tls: None,
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
            "--tls" => args.tls = Some(tls_config(Path::new(&value()))),
            _ => usage(),
        }
    }
    if args.tls.is_some() && args.mode == "echo" {
        eprintln!("--tls is for idle and burst only");
        std::process::exit(2);
    }
    args
}

/// The server name the certificate is checked for.
const TLS_NAME: &str = "localhost";

/// A client configuration that trusts the certificates in `cert` only (see the header).
fn tls_config(cert: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let fail = |what: String| -> ! {
        eprintln!("--tls {}: {what}", cert.display());
        std::process::exit(2)
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(cert).unwrap_or_else(|e| fail(e.to_string()));
    for der in certs {
        let der = der.unwrap_or_else(|e| fail(e.to_string()));
        roots.add(der).unwrap_or_else(|e| fail(e.to_string()));
    }
    if roots.is_empty() {
        fail("no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn usage() -> ! {
    eprintln!("usage: load echo|idle|burst --addr HOST:PORT [options]; see the source's header");
    std::process::exit(2)
}

fn main() {
    let args = args();
    match args.mode.as_str() {
        "burst" => return burst(&args),
        "echo" => return echo(&args),
        _ => {}
    }
    // One thread: the runner pins this process to one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match args.mode.as_str() {
            "idle" => idle(&args).await,
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
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    addr: SocketAddr,
) -> std::io::Result<Vec<u8>> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    // A no-op on TCP; over TLS, sends what the session still holds.
    stream.flush().await?;
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

/// The first bytes of message `seq` of connection `conn`: both numbers in hex, so that a
/// cross-wired or reordered echo is caught. The rest of the payload is `x`.
fn tag(conn: usize, seq: u64) -> [u8; 24] {
    let mut tag = [0; 24];
    tag[..8].copy_from_slice(&hex(conn as u64)[8..]);
    tag[8..].copy_from_slice(&hex(seq));
    tag
}

/// Appends message `seq` of connection `conn` as a client frame (see `encode`).
fn encode_message(out: &mut Vec<u8>, opcode: u8, conn: usize, seq: u64, size: usize) {
    let head = encode_head(opcode, size);
    out.extend_from_slice(&head.0[..head.1]);
    let tag = tag(conn, seq);
    let n = size.min(tag.len());
    out.extend_from_slice(&tag[..n]);
    out.resize(out.len() + size - n, b'x');
}

/// A client frame's header for a payload of `len` bytes, with the zero mask key.
fn encode_head(opcode: u8, len: usize) -> ([u8; 14], usize) {
    let mut head = [0u8; 14];
    head[0] = 0x80 | opcode;
    let n = match len {
        0..=125 => {
            head[1] = 0x80 | len as u8;
            2
        }
        126..=65535 => {
            head[1] = 0x80 | 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            head[1] = 0x80 | 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    // The mask key (zero) follows.
    (head, n + 4)
}

/// Whether `payload` is message `seq` of connection `conn`; `filler` holds `size` bytes of
/// `x` (compared as a slice, which is a `memcmp`).
fn is_message(payload: &[u8], conn: usize, seq: u64, size: usize, filler: &[u8]) -> bool {
    let tag = tag(conn, seq);
    let n = size.min(tag.len());
    payload.len() == size && payload[..n] == tag[..n] && payload[n..] == filler[n..size]
}

/// One connection of the echo load.
struct EchoConn {
    stream: mio::net::TcpStream,
    /// Received bytes not yet parsed.
    buf: Vec<u8>,
    /// Frames not yet taken by the socket.
    out: Vec<u8>,
    next_seq: u64,
    expected_seq: u64,
    /// When each outstanding message was sent, oldest first.
    sent_at: VecDeque<Instant>,
    rtts: Vec<u32>,
    /// The connection failed or the server closed it: what is outstanding is lost.
    dead: bool,
}

/// `conns` connections, each keeping `inflight` messages outstanding and checking every echo
/// (content and order), on one thread: non-blocking sockets on epoll, every echo already
/// received handled before one write of all the replacements, so the load costs as little
/// as the checks allow and is never the bottleneck.
fn echo(args: &Args) {
    use mio::{Events, Interest, Poll, Token};
    use std::io::{ErrorKind, Read};

    let opcode = if args.binary { 0x2 } else { 0x1 };
    let mut poll = Poll::new().expect("epoll");
    let mut conns = Vec::with_capacity(args.conns);
    let mut failed = 0;
    // Connected and upgraded on a tokio runtime, then taken over by the loop below.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let opened = runtime.block_on(async {
        let mut opened = Vec::with_capacity(args.conns);
        for n in 0..args.conns {
            let upgraded = async {
                let mut stream = connect(args.addr, n).await?;
                let rest = handshake(&mut stream, args.addr).await?;
                Ok::<_, std::io::Error>((stream.into_std()?, rest))
            };
            opened.push(upgraded.await);
        }
        opened
    });
    drop(runtime);
    for upgraded in opened {
        let Ok((stream, buf)) = upgraded else {
            failed += 1;
            continue;
        };
        let mut stream = mio::net::TcpStream::from_std(stream);
        let token = Token(conns.len());
        poll.registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .expect("register");
        conns.push(EchoConn {
            stream,
            buf,
            out: Vec::with_capacity((args.size + 14) * args.inflight),
            next_seq: 0,
            expected_seq: 0,
            sent_at: VecDeque::with_capacity(args.inflight),
            rtts: Vec::new(),
            dead: false,
        });
    }
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 << 10];
    let filler = vec![b'x'; args.size];
    let began = Instant::now();
    let measure_from = began + Duration::from_secs_f64(args.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(args.secs);
    let (mut received, mut bytes, mut mismatched, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let mut window: Option<(Instant, u64, u64)> = None;
    let mut ended: Option<(f64, u64, u64)> = None;
    // Fill every window.
    for (n, conn) in conns.iter_mut().enumerate() {
        for _ in 0..args.inflight {
            encode_message(&mut conn.out, opcode, n, conn.next_seq, args.size);
            conn.sent_at.push_back(began);
            conn.next_seq += 1;
        }
        flush(conn);
        if conn.dead {
            retire(conn, &poll, &mut lost, &mut failed);
        }
    }
    loop {
        let now = Instant::now();
        if window.is_none() && now >= measure_from {
            window = Some((now, cpu_ticks(args.pid), cpu_ticks(0)));
        }
        let measuring = window.is_some() && ended.is_none();
        if measuring && now >= measure_to {
            let (from, server, load) = window.expect("measuring");
            ended = Some((
                now.duration_since(from).as_secs_f64(),
                cpu_ticks(args.pid).saturating_sub(server),
                cpu_ticks(0).saturating_sub(load),
            ));
        }
        let stopping = ended.is_some();
        if stopping {
            // No more messages are sent; wait for the outstanding echoes, 5 s at most.
            let outstanding = conns.iter().filter(|c| !c.dead).map(|c| c.sent_at.len());
            if outstanding.sum::<usize>() == 0 {
                break;
            }
            if now >= measure_to + Duration::from_secs(5) {
                for conn in conns.iter().filter(|c| !c.dead) {
                    lost += conn.sent_at.len() as u64;
                }
                break;
            }
        }
        if poll
            .poll(&mut events, Some(Duration::from_millis(50)))
            .is_err()
        {
            continue; // interrupted
        }
        let now = Instant::now();
        for event in events.iter() {
            let n = event.token().0;
            let conn = &mut conns[n];
            if conn.dead {
                continue;
            }
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        conn.dead = true;
                        break;
                    }
                    Ok(read) => {
                        conn.buf.extend_from_slice(&chunk[..read]);
                        // A short read emptied the socket: epoll reports the next bytes.
                        if read < chunk.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        conn.dead = true;
                        break;
                    }
                }
            }
            let mut at = 0;
            while let Some((op, range, len)) = decode(&conn.buf[at..]) {
                let payload = &conn.buf[at + range.start..at + range.end];
                if op == 0x9 {
                    // A keep-alive ping: answer it, as any live client does.
                    let payload = payload.to_vec();
                    encode(&mut conn.out, 0xA, &payload);
                } else if op == opcode {
                    if !is_message(payload, n, conn.expected_seq, args.size, &filler) {
                        mismatched += 1;
                    }
                    conn.expected_seq += 1;
                    let sent = conn.sent_at.pop_front().unwrap_or(now);
                    if measuring {
                        received += 1;
                        bytes += args.size as u64;
                        conn.rtts.push(now.duration_since(sent).as_micros() as u32);
                    }
                    if !stopping {
                        encode_message(&mut conn.out, opcode, n, conn.next_seq, args.size);
                        conn.sent_at.push_back(now);
                        conn.next_seq += 1;
                    }
                } else {
                    // A close frame or anything unexpected ends the connection.
                    conn.dead = true;
                }
                at += len;
            }
            conn.buf.drain(..at);
            if !conn.dead {
                flush(conn);
            }
            if conn.dead {
                retire(conn, &poll, &mut lost, &mut failed);
            }
        }
    }
    let (elapsed, server_ticks, load_ticks) = ended.expect("measured");
    let mut rtts: Vec<u32> = conns.iter_mut().flat_map(|c| c.rtts.drain(..)).collect();
    rtts.sort_unstable();
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let tick_us = 1e6 / clock_ticks_per_s();
    // Without `--pid`, the server's CPU time is unknown: reported as 0.
    let server_cpu_per_msg = if args.pid == 0 {
        0.0
    } else {
        server_ticks as f64 * tick_us / received.max(1) as f64
    };
    println!(
        "msgs_per_s={:.0} mb_per_s={:.1} p50_us={} p99_us={} p999_us={} lost={lost} \
         mismatched={mismatched} failed_conns={failed} server_cpu_us_per_msg={:.2} \
         load_cpu_pct={:.0}",
        received as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        server_cpu_per_msg,
        load_ticks as f64 * tick_us / (elapsed * 1e6) * 100.0,
    );
}

/// A connection that failed or that the server closed: what is outstanding is lost.
fn retire(conn: &mut EchoConn, poll: &mio::Poll, lost: &mut u64, failed: &mut u64) {
    *lost += conn.sent_at.len() as u64;
    *failed += 1;
    let _ = poll.registry().deregister(&mut conn.stream);
}

/// Writes what the socket takes of `conn.out`; the rest waits for the writable event.
fn flush(conn: &mut EchoConn) {
    use std::io::{ErrorKind, Write};
    while !conn.out.is_empty() {
        match conn.stream.write(&conn.out) {
            Ok(n) => {
                conn.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                conn.dead = true;
                return;
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

/// Opens `conns` connections (over TLS with `--tls`), holds them `secs`, checks every one
/// still answers.
async fn idle(args: &Args) {
    let Some(config) = args.tls.clone() else {
        return hold(args, connect).await;
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::try_from(TLS_NAME).expect("a valid name");
    hold(args, move |addr, n| {
        let (connector, name) = (connector.clone(), name.clone());
        async move { connector.connect(name, connect(addr, n).await?).await }
    })
    .await
}

/// `idle` on the streams `open` makes: connection `n` to `addr`, ready for the HTTP request.
async fn hold<S, F, Opening>(args: &Args, open: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(SocketAddr, usize) -> Opening,
    Opening: Future<Output = std::io::Result<S>> + Send + 'static,
{
    let before = rss_kib(args.pid);
    let mut streams = Vec::with_capacity(args.conns);
    let mut failed = 0;
    let opened = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    for conn in 0..args.conns {
        let addr = args.addr;
        let opening = open(addr, conn);
        pending.spawn(async move {
            let mut stream = opening.await?;
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
                                stream.flush().await?;
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
            stream.flush().await?;
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

/// The key every burst client sends (RFC 6455's example); the server must answer with its
/// accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Where one burst client stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The request is sent (or waits for the socket to connect); the 101 is awaited.
    Response,
    /// The echo and the close frame are sent; their answers are awaited.
    Echo,
    /// The server's close frame arrived; its end of the TCP connection is awaited.
    End,
}

struct Client {
    stream: mio::net::TcpStream,
    phase: Phase,
    /// Whether the request is written (a connecting socket may refuse the first write).
    requested: bool,
    /// Whether this client's own echo came back.
    echoed: bool,
    /// This connection's echo payload: its number in hex (a text frame holds UTF-8), so a
    /// cross-wired echo is caught.
    tag: [u8; 16],
    started: Instant,
    /// With `--tls`: the session, which holds the request from the start.
    tls: Option<Box<rustls::ClientConnection>>,
}

/// What one burst step came to.
enum Step {
    Wait,
    Done,
    Failed,
}

/// Connect, handshake, one echo, close, as many times as possible with `conns` connections in
/// flight: one thread, non-blocking sockets on epoll, a request written once for all, one
/// buffer per connection slot, reused. Every 101 is checked (status and
/// `Sec-WebSocket-Accept`), every echo (payload and order before the server's close frame,
/// itself checked for code 1000), and the server must then close its end; only then does the
/// client close, with a reset (`SO_LINGER` 0), which leaves no TIME_WAIT on either side, so
/// ports never run out. Also reports the server's CPU time (user + system, from /proc) per
/// handshake in the measured window, and the load generator's own CPU use.
///
/// With `--tls`, each connection first makes a full TLS handshake (the request goes with the
/// client's Finished), the same checks apply to the decrypted bytes, and the server's end is
/// its close_notify or, without one, the end of its TCP stream.
fn burst(args: &Args) {
    use mio::{Events, Interest, Poll, Token};
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(KEY.as_bytes());
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        args.addr
    )
    .into_bytes();
    let mut poll = Poll::new().expect("epoll");
    let mut events = Events::with_capacity(1024);
    let mut clients: Vec<Option<Client>> = (0..args.conns).map(|_| None).collect();
    let mut buffers: Vec<Vec<u8>> = (0..args.conns).map(|_| Vec::with_capacity(512)).collect();
    let mut chunk = [0u8; 4096];
    let mut frames = Vec::with_capacity(32);
    let mut opened = 0u64;
    let (mut done, mut failed) = (0u64, 0u64);

    let name = rustls::pki_types::ServerName::try_from(TLS_NAME).expect("a valid name");
    let mut open = |slot: usize, clients: &mut Vec<Option<Client>>, poll: &Poll| -> bool {
        opened += 1;
        let tls = match &args.tls {
            None => None,
            Some(config) => {
                use std::io::Write;
                let Ok(mut tls) = rustls::ClientConnection::new(config.clone(), name.clone())
                else {
                    return false;
                };
                // Held until the handshake is done, then sent with the client's Finished.
                if tls.writer().write_all(&request).is_err() {
                    return false;
                }
                Some(Box::new(tls))
            }
        };
        let Ok(mut stream) = mio::net::TcpStream::connect(args.addr) else {
            return false;
        };
        if poll
            .registry()
            .register(
                &mut stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return false;
        }
        clients[slot] = Some(Client {
            stream,
            phase: Phase::Response,
            requested: tls.is_some(),
            echoed: false,
            tag: hex(opened),
            started: Instant::now(),
            tls,
        });
        true
    };

    let began = Instant::now();
    let measure_from = began + Duration::from_secs_f64(args.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(args.secs);
    let mut window: Option<(Instant, u64, u64, u64)> = None;
    let mut last_sweep = began;
    // Slots whose client is done: each gets a new one.
    let mut free: Vec<usize> = (0..args.conns).collect();
    loop {
        while let Some(slot) = free.pop() {
            if clients[slot].is_some() {
                continue; // listed twice
            }
            buffers[slot].clear();
            if !open(slot, &mut clients, &poll) {
                failed += 1;
                free.push(slot);
                continue;
            }
            let client = clients[slot].as_mut().expect("just opened");
            // A loopback connect has usually completed already: send the request at once.
            // (A fast server may even have answered everything by the following read.)
            let outcome = step(
                client,
                &mut buffers[slot],
                &request,
                &accept,
                &mut chunk,
                &mut frames,
            );
            settle(
                outcome,
                slot,
                &mut clients,
                &mut free,
                &mut done,
                &mut failed,
            );
        }
        let now = Instant::now();
        if window.is_none() && now >= measure_from {
            window = Some((now, done, cpu_ticks(args.pid), cpu_ticks(0)));
        }
        if now >= measure_to {
            break;
        }
        if poll
            .poll(&mut events, Some(Duration::from_millis(20)))
            .is_err()
        {
            continue; // interrupted
        }
        for event in events.iter() {
            let slot = event.token().0;
            let Some(client) = clients[slot].as_mut() else {
                continue;
            };
            let outcome = step(
                client,
                &mut buffers[slot],
                &request,
                &accept,
                &mut chunk,
                &mut frames,
            );
            settle(
                outcome,
                slot,
                &mut clients,
                &mut free,
                &mut done,
                &mut failed,
            );
        }
        // A client stuck for 5 s failed.
        if now.duration_since(last_sweep) >= Duration::from_millis(100) {
            last_sweep = now;
            for (slot, client) in clients.iter_mut().enumerate() {
                if client
                    .as_ref()
                    .is_some_and(|c| now.duration_since(c.started) >= Duration::from_secs(5))
                {
                    failed += 1;
                    close(client.take().expect("checked"));
                    free.push(slot);
                }
            }
        }
    }
    let (from, done_before, server_before, load_before) = window.expect("measured");
    let elapsed = from.elapsed().as_secs_f64();
    let count = done - done_before;
    let tick_us = 1e6 / clock_ticks_per_s();
    let server_us = cpu_ticks(args.pid).saturating_sub(server_before) as f64 * tick_us;
    let load_us = cpu_ticks(0).saturating_sub(load_before) as f64 * tick_us;
    println!(
        "handshakes_per_s={:.0} failed={failed} server_cpu_us_per_hs={:.1} load_cpu_pct={:.0}",
        count as f64 / elapsed,
        server_us / count.max(1) as f64,
        load_us / (elapsed * 1e4),
    );
}

/// Counts a burst client that is done or failed, closes it and frees its slot for a new one;
/// a client that waits stays.
fn settle(
    outcome: Step,
    slot: usize,
    clients: &mut [Option<Client>],
    free: &mut Vec<usize>,
    done: &mut u64,
    failed: &mut u64,
) {
    match outcome {
        Step::Wait => return,
        Step::Done => *done += 1,
        Step::Failed => *failed += 1,
    }
    close(clients[slot].take().expect("a stepped client"));
    free.push(slot);
}

/// Moves a burst client on as far as its socket allows.
fn step(
    client: &mut Client,
    buf: &mut Vec<u8>,
    request: &[u8],
    accept: &str,
    chunk: &mut [u8],
    frames: &mut Vec<u8>,
) -> Step {
    use std::io::{ErrorKind, Read, Write};
    if let Some(mut tls) = client.tls.take() {
        let outcome = step_tls(client, &mut tls, buf, accept, chunk, frames);
        client.tls = Some(tls);
        return outcome;
    }
    if !client.requested {
        match client.stream.write(request) {
            Ok(n) if n == request.len() => client.requested = true,
            Ok(_) => return Step::Failed,
            // Still connecting: the socket reports writable once it is connected.
            Err(e)
                if e.kind() == ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOTCONN) =>
            {
                return Step::Wait;
            }
            Err(_) => return Step::Failed,
        }
    }
    loop {
        let n = match client.stream.read(chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Step::Failed,
        };
        if n == 0 {
            // The server closed its end: fine once its close frame came, a failure before.
            return if client.phase == Phase::End {
                Step::Done
            } else {
                Step::Failed
            };
        }
        if client.phase == Phase::End {
            return Step::Failed; // bytes after the close frame
        }
        buf.extend_from_slice(&chunk[..n]);
        frames.clear();
        if !receive(client, buf, accept, frames) {
            return Step::Failed;
        }
        if !frames.is_empty() {
            match client.stream.write(frames) {
                Ok(n) if n == frames.len() => {}
                _ => return Step::Failed,
            }
        }
    }
}

/// `step` over TLS: what the session has to send goes to the socket, what the socket has
/// goes to the session, and the session's plaintext to the same checks as without TLS, until
/// the socket has nothing more to give.
fn step_tls(
    client: &mut Client,
    tls: &mut rustls::ClientConnection,
    buf: &mut Vec<u8>,
    accept: &str,
    chunk: &mut [u8],
    frames: &mut Vec<u8>,
) -> Step {
    use std::io::{ErrorKind, Read, Write};
    // A socket still connecting (ENOTCONN) reports writable once it is connected.
    let waits = |e: &std::io::Error| {
        e.kind() == ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOTCONN)
    };
    loop {
        while tls.wants_write() {
            match tls.write_tls(&mut client.stream) {
                Ok(_) => {}
                Err(e) if waits(&e) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Step::Failed,
            }
        }
        match tls.read_tls(&mut client.stream) {
            // The server closed its end: fine once its close frame came, a failure before.
            Ok(0) => {
                return if client.phase == Phase::End {
                    Step::Done
                } else {
                    Step::Failed
                };
            }
            Ok(_) => {}
            Err(e) if waits(&e) => return Step::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Step::Failed,
        }
        // A bad record or certificate: the session queues an alert, sent as a courtesy.
        if tls.process_new_packets().is_err() {
            let _ = tls.write_tls(&mut client.stream);
            return Step::Failed;
        }
        loop {
            let n = match tls.reader().read(chunk) {
                Ok(0) => break, // close_notify: `read_tls` reports the end from now on
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return Step::Failed,
            };
            if client.phase == Phase::End {
                return Step::Failed; // bytes after the close frame
            }
            buf.extend_from_slice(&chunk[..n]);
            frames.clear();
            if !receive(client, buf, accept, frames) {
                return Step::Failed;
            }
            // Sent at the top of the loop.
            if !frames.is_empty() && tls.writer().write_all(frames).is_err() {
                return Step::Failed;
            }
        }
    }
}

/// Takes the server's bytes in `buf` as far as they go: the 101 (checked; then `frames`
/// gets the echo and the close frame, for the caller to send), the echo (checked), the
/// close frame (checked, and nothing may follow it). `false`: a check failed.
fn receive(client: &mut Client, buf: &mut Vec<u8>, accept: &str, frames: &mut Vec<u8>) -> bool {
    if client.phase == Phase::Response {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return true;
        };
        if !switching(&buf[..end], accept) {
            return false;
        }
        buf.drain(..end + 4);
        encode(frames, 0x1, &client.tag);
        encode(frames, 0x8, &1000u16.to_be_bytes());
        client.phase = Phase::Echo;
    }
    let mut at = 0;
    while let Some((op, range, len)) = decode(&buf[at..]) {
        let payload = &buf[at + range.start..at + range.end];
        match op {
            0x1 if !client.echoed && payload == client.tag => client.echoed = true,
            0x8 if client.echoed && payload.starts_with(&1000u16.to_be_bytes()) => {
                client.phase = Phase::End;
            }
            _ => return false,
        }
        at += len;
        if client.phase == Phase::End {
            break;
        }
    }
    buf.drain(..at);
    // Nothing may follow the close frame.
    client.phase != Phase::End || buf.is_empty()
}

fn hex(n: u64) -> [u8; 16] {
    let mut tag = [0; 16];
    for (i, digit) in tag.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(n >> (60 - 4 * i)) as usize & 0xf];
    }
    tag
}

/// Whether an HTTP response head is a 101 with the expected `Sec-WebSocket-Accept`.
fn switching(head: &[u8], accept: &str) -> bool {
    let mut lines = head.split(|&b| b == b'\n');
    let status = lines.next().unwrap_or_default();
    if !status.starts_with(b"HTTP/1.1 101 ") {
        return false;
    }
    lines.any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.iter().position(|&b| b == b':').is_some_and(|colon| {
            line[..colon].eq_ignore_ascii_case(b"sec-websocket-accept")
                && line[colon + 1..].trim_ascii() == accept.as_bytes()
        })
    })
}

/// Closes a client's socket with a reset: the server closed first, so this only spares both
/// sides the TIME_WAIT state.
fn close(client: Client) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a pointer to a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            client.stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// User plus system CPU time of a process (0: this one), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let path = if pid == 0 {
        "/proc/self/stat".to_owned()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which may hold spaces: utime and stime are the 12th
    // and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let mut fields = rest.split_whitespace().skip(11);
    let mut next = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    next() + next()
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}
