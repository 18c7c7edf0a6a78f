//! The load generator: raw sockets and hand-written frames, so that it is never the
//! bottleneck, and every echo checked for content and order.
//!
//! ```text
//! load echo  --addr HOST:PORT [--conns 100] [--inflight 16] [--size 64] [--binary]
//!            [--secs 5] [--warmup 1] [--pid SERVER_PID] [--json] [--deflate] [--messages N]
//! load idle  --addr HOST:PORT --conns 10000 --pid SERVER_PID [--secs 5] [--tls CERT.pem]
//!            [--deflate]
//! load burst --addr HOST:PORT [--conns 50] [--secs 5] [--pid SERVER_PID] [--tls CERT.pem]
//! load fanout --addr HOST:PORT [--subs 1000] [--rate 0] [--size 64] [--secs 5] [--warmup 1]
//!             [--drain 5] [--sub-addrs A,B] [--pub-addr A] [--pid P1,P2] [--broker-pid P]
//!             [--server-core N]
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
//! `--deflate` (`echo`, `idle`): the handshake offers permessage-deflate (RFC 7692) as
//! `permessage-deflate; server_no_context_takeover; client_no_context_takeover`, and the 101
//! must accept it with exactly those two parameters (in any order), as wsock answers; without
//! the flag, the 101 must carry no `Sec-WebSocket-Extensions` at all (in every mode that
//! upgrades with this handshake: `echo`, `idle`, `fanout`). A 101 that fails the check counts
//! as a failed connection. `echo` then compresses every message it sends, as browsers do
//! (flate2 on zlib-rs, level 1, raw deflate from a reset state for each message, sync flush,
//! the trailing `00 00 ff ff` left off, RSV1 set), and inflates every echo that has RSV1 (from
//! a reset state too: no context is kept) before checking it; an echo without RSV1 is checked
//! as it came. An RSV1 echo without `--deflate` is a mismatch.
//!
//! `--json` (`echo`, text, `--size` of 64 or more): JSON-like text instead of the tag and `x`:
//! 64 messages made once at the start, the same in every run, each exactly `--size` bytes,
//! `{"tag":"<connection and sequence number in hex>","items":[{"id":4711,"name":"sensor-17",
//! "kind":"humidity","value":512.07,"unit":"%","ok":true,"ts":1700012345},...],"note":"..."}`:
//! small objects with the same keys and numbers that vary, as many as fit, and the note's text
//! filling the rest. Message `seq` is number `seq % 64` with its own tag; every echo is still
//! checked byte for byte. Without `--json` and `--deflate`, `echo` runs its plain path as
//! before (the tag and `x`; no per-message cost from either option).
//!
//! `--messages N` (`echo`): exactly N messages in all instead of a timed run, split over the
//! connections that opened (the first ones take one more where N does not divide), each
//! connection keeping up to `--inflight` outstanding; once every echo is back, a close frame
//! (1000) goes on every connection and the load reads each until the server ends it. No
//! warm-up and no time limit: the whole run is measured (`--warmup` and `--secs` do not
//! apply); the load gives up when no echo came for 60 s (a server under valgrind is 20 to 50
//! times slower), and what is missing then shows in `lost` and `echoed`.
//!
//! `echo` reports, besides rates, latencies and CPU: `echoed`, the echoes received in the
//! whole run (warm-up included; with `--messages`, N when all came back), and
//! `wire_up_b_per_msg` / `wire_down_b_per_msg`, the WebSocket frame bytes (header, mask key,
//! payload as sent: compressed under `--deflate`; no TCP/IP headers) per message sent by the
//! load and per echo received from the server, in the measured window.
//!
//! `fanout`: `--subs` subscribers on `/sub` and one publisher on `/pub` (every 101 checked;
//! connected through tokio, then driven by one epoll loop, as `echo`), then the publisher
//! sends `--size`-byte text messages (at least 32), each carrying its sequence number and its
//! send time, `--rate` publishes per second, paced on a 1 ms tick (each tick sends what is
//! due), or with `--rate 0` as fast as its socket takes them. Every subscriber checks that
//! the sequence numbers arrive in order, without gap or duplicate (and answers pings and the
//! close frame, as a client does); the publish-to-receive latency of the messages published
//! in the measured window goes to a histogram. Before measuring, a sync phase publishes
//! every 250 ms until every subscriber got a message (so that subscriptions made after the
//! 101, or through a broker, are in place) and waits until they all got the last one (so
//! that no server starts behind); then `--warmup` seconds at the rate, `--secs` measured,
//! and up to `--drain` seconds (stopping early after 1 s without a delivery) for what is
//! still on its way. `lost` counts the gaps plus what a subscriber still misses after the
//! drain, a subscriber the server closed (`closed`; `closed_1008` with 1008, wsock's
//! "outbound queue full") included. `--sub-addrs A,B` spreads the subscribers over several
//! servers (round robin) and `--pub-addr A` sets the publisher's; both default to `--addr`.
//! `--pid` takes a comma list (or several `--pid`): the servers' CPU time is summed;
//! `--broker-pid` (a Redis) is reported on its own; `--server-core N` reports how busy core
//! N was (all of it: any process, interrupts, softirq), from /proc/stat. The publisher's
//! connection must stay served: `pub_stall_max_ms` is the longest its socket refused writes
//! while it had something to send, `pub_pong_max_ms` the slowest answer to the ping it sends
//! every 100 ms.
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
    /// `fanout`: subscribers, publishes per second (0: full speed), the longest drain, and
    /// where the subscribers (round robin) and the publisher connect.
    subs: usize,
    rate: f64,
    drain: f64,
    sub_addrs: Vec<SocketAddr>,
    pub_addr: Option<SocketAddr>,
    /// Every `--pid` (the first is `pid`), and `--broker-pid`.
    pids: Vec<u32>,
    broker_pid: u32,
    /// `--server-core`: the core the servers are pinned to, whose busy time is reported.
    server_core: Option<usize>,
    conns: usize,
    inflight: usize,
    size: usize,
    binary: bool,
    secs: f64,
    warmup: f64,
    pid: u32,
    /// `--tls`: the client configuration that trusts the given certificate.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `--deflate`: offer permessage-deflate (`echo`, `idle`); `echo` then compresses every
    /// message it sends.
    deflate: bool,
    /// `--json` (`echo`): JSON-like text of `--size` bytes instead of the tag and `x`.
    json: bool,
    /// `--stall-percent P` (`fanout`): this share of the subscribers (every `100 / P`-th)
    /// stops reading once the sync phase is over: their sockets fill and the server's queue
    /// for them backs up. They are left out of every figure but `stalled`.
    stall_percent: f64,
    /// `--messages` (`echo`): send exactly this many messages in all, then close; 0: run for
    /// `--warmup` + `--secs`.
    messages: u64,
}

fn args() -> Args {
    let mut args = Args {
        mode: String::new(),
        addr: "127.0.0.1:9000".parse().unwrap(),
        subs: 1000,
        stall_percent: 0.0,
        rate: 0.0,
        drain: 5.0,
        sub_addrs: Vec::new(),
        pub_addr: None,
        pids: Vec::new(),
        broker_pid: 0,
        server_core: None,
        conns: 100,
        inflight: 16,
        size: 64,
        binary: false,
        secs: 5.0,
        warmup: 1.0,
        pid: 0,
        tls: None,
        deflate: false,
        json: false,
        messages: 0,
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
            "--pid" => {
                for pid in value().split(',') {
                    args.pids.push(pid.parse().unwrap_or_else(|_| usage()));
                }
                args.pid = args.pids[0];
            }
            "--broker-pid" => args.broker_pid = value().parse().unwrap_or_else(|_| usage()),
            "--server-core" => args.server_core = Some(value().parse().unwrap_or_else(|_| usage())),
            "--subs" => args.subs = value().parse().unwrap_or_else(|_| usage()),
            "--stall-percent" => args.stall_percent = value().parse().unwrap_or_else(|_| usage()),
            "--rate" => args.rate = value().parse().unwrap_or_else(|_| usage()),
            "--drain" => args.drain = value().parse().unwrap_or_else(|_| usage()),
            "--sub-addrs" => {
                for addr in value().split(',') {
                    args.sub_addrs
                        .push(addr.parse().unwrap_or_else(|_| usage()));
                }
            }
            "--pub-addr" => args.pub_addr = Some(value().parse().unwrap_or_else(|_| usage())),
            "--tls" => args.tls = Some(tls_config(Path::new(&value()))),
            "--deflate" => args.deflate = true,
            "--json" => args.json = true,
            "--messages" => args.messages = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if args.tls.is_some() && (args.mode == "echo" || args.mode == "fanout") {
        eprintln!("--tls is for idle and burst only");
        std::process::exit(2);
    }
    if args.deflate && args.mode != "echo" && args.mode != "idle" {
        eprintln!("--deflate is for echo and idle only");
        std::process::exit(2);
    }
    if (args.json || args.messages > 0) && args.mode != "echo" {
        eprintln!("--json and --messages are for echo only");
        std::process::exit(2);
    }
    if args.json && (args.binary || args.size < JSON_MIN) {
        eprintln!("--json: text of --size {JSON_MIN} bytes or more");
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
    eprintln!(
        "usage: load echo|idle|burst|fanout --addr HOST:PORT [options]; see the source's header"
    );
    std::process::exit(2)
}

fn main() {
    let args = args();
    match args.mode.as_str() {
        "burst" => return burst(&args),
        "echo" => return echo(&args),
        "fanout" => return fanout::run(&args),
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

/// The opening handshake, by hand (offering permessage-deflate with `deflate`); returns
/// bytes read past the response, if any.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    addr: SocketAddr,
    deflate: bool,
) -> std::io::Result<Vec<u8>> {
    handshake_at(stream, addr, "/", deflate).await
}

/// What `--deflate` offers: no compression context kept between messages on either side,
/// which is what the load does (it resets its compressor and decompressor for every message).
const DEFLATE_OFFER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// `handshake` for the endpoint at `path`. The 101 must carry the agreement to
/// `DEFLATE_OFFER` (see `extensions_agreed`) with `deflate`, and no extension without.
async fn handshake_at<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    addr: SocketAddr,
    path: &str,
    deflate: bool,
) -> std::io::Result<Vec<u8>> {
    let offer = if deflate {
        format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n")
    } else {
        String::new()
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
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
            if !buf.starts_with(b"HTTP/1.1 101") || !extensions_agreed(&buf[..end], deflate) {
                return Err(std::io::Error::other(
                    String::from_utf8_lossy(&buf).into_owned(),
                ));
            }
            return Ok(buf.split_off(end + 4));
        }
    }
}

/// Whether a 101's head carries the expected `Sec-WebSocket-Extensions`: with `deflate`,
/// exactly one extension, permessage-deflate, with exactly the parameters
/// `server_no_context_takeover` and `client_no_context_takeover` (any order, any case), as
/// wsock answers `DEFLATE_OFFER`; without, none at all.
fn extensions_agreed(head: &[u8], deflate: bool) -> bool {
    let Ok(head) = std::str::from_utf8(head) else {
        return false;
    };
    let values: Vec<&str> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, value)| value)
        .collect();
    if !deflate {
        return values.is_empty();
    }
    let extensions: Vec<&str> = values.iter().flat_map(|v| v.split(',')).collect();
    let [extension] = extensions[..] else {
        return false;
    };
    let mut parts = extension.split(';').map(|p| p.trim().to_ascii_lowercase());
    if parts.next().as_deref() != Some("permessage-deflate") {
        return false;
    }
    let mut params: Vec<String> = parts.collect();
    params.sort_unstable();
    params == ["client_no_context_takeover", "server_no_context_takeover"]
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

/// Reads what a non-blocking socket holds into `buf`; `false` once the connection ended (end
/// of stream or an error). A short read emptied the socket: epoll reports the next bytes, so
/// no read is made only to learn that it would block.
fn read_available(stream: &mut impl std::io::Read, chunk: &mut [u8], buf: &mut Vec<u8>) -> bool {
    loop {
        match stream.read(chunk) {
            Ok(0) => return false,
            Ok(read) => {
                buf.extend_from_slice(&chunk[..read]);
                if read < chunk.len() {
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
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
    /// With `--messages`, this connection's share of them; `u64::MAX` otherwise.
    limit: u64,
    /// When each outstanding message was sent, oldest first.
    sent_at: VecDeque<Instant>,
    rtts: Vec<u32>,
    /// The connection failed or the server closed it: what is outstanding is lost.
    dead: bool,
}

/// How the echo load writes its messages and checks the echoes: `Plain` (the tag and `x`,
/// as ever), or `Rich` for `--json` and `--deflate`. `echo_with` is compiled once for each,
/// so the plain path pays nothing for the other.
trait Messages {
    /// Appends message `seq` of connection `conn` as a client frame; returns the frame's
    /// length.
    fn encode(&mut self, out: &mut Vec<u8>, conn: usize, seq: u64) -> usize;
    /// Whether an echo is message `seq` of connection `conn`: its payload, and whether RSV1
    /// (compressed) was set.
    fn check(&mut self, payload: &[u8], rsv1: bool, conn: usize, seq: u64) -> bool;
}

/// The tag and `x`, uncompressed.
struct Plain {
    opcode: u8,
    size: usize,
    /// `size` bytes of `x`.
    filler: Vec<u8>,
}

impl Messages for Plain {
    #[inline]
    fn encode(&mut self, out: &mut Vec<u8>, conn: usize, seq: u64) -> usize {
        let before = out.len();
        encode_message(out, self.opcode, conn, seq, self.size);
        out.len() - before
    }

    #[inline]
    fn check(&mut self, payload: &[u8], rsv1: bool, conn: usize, seq: u64) -> bool {
        !rsv1 && is_message(payload, conn, seq, self.size, &self.filler)
    }
}

/// `--json` and `--deflate`: each message is built in full (JSON-like text, or the tag and
/// `x`), then sent as it is or compressed; an echo is inflated if compressed and compared
/// with the message, byte for byte.
struct Rich {
    opcode: u8,
    size: usize,
    /// `--json`: the messages (see `json_messages`); empty: the tag and `x`.
    json: Vec<Vec<u8>>,
    /// `--deflate`: compresses every message sent, inflates every compressed echo.
    deflate: Option<Deflate>,
    /// The message being sent, or the one an echo must be.
    message: Vec<u8>,
    /// A compressed message, or an inflated echo.
    scratch: Vec<u8>,
}

/// permessage-deflate without context takeover: raw deflate, each message from a reset
/// state, sync-flushed, its trailing `00 00 ff ff` left off (RFC 7692 §7.2.1).
struct Deflate {
    compress: flate2::Compress,
    decompress: flate2::Decompress,
}

/// The end of a sync flush, which permessage-deflate leaves off.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// `--json`'s shortest message: the tag, an empty list and an empty note.
const JSON_MIN: usize = 64;

/// Where the tag sits in a `--json` message: after `{"tag":"`.
const JSON_TAG_AT: usize = 8;

/// How many different `--json` messages there are: message `seq` is number
/// `seq % JSON_VARIANTS`, with its own tag.
const JSON_VARIANTS: usize = 64;

/// `JSON_VARIANTS` JSON-like messages of exactly `size` bytes (`size >= JSON_MIN`), the
/// same every run: `{"tag":"<24 hex digits>","items":[...],"note":"..."}`, the items small
/// objects with the same keys and numbers that vary (a sensor feed, say), as many as fit, and
/// the note's text filling the rest. The tag (zeros here) is where each message's own goes.
fn json_messages(size: usize) -> Vec<Vec<u8>> {
    const KINDS: [(&str, &str); 4] = [
        ("temperature", "C"),
        ("humidity", "%"),
        ("pressure", "hPa"),
        ("voltage", "V"),
    ];
    const TAIL: &str = "],\"note\":\"\"}";
    const TEXT: &str = "readings from the north hall, calibrated on arrival; \
                        values outside the usual range are flagged for review. ";
    // xorshift64: deterministic, and good enough for numbers that vary.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    (0..JSON_VARIANTS)
        .map(|_| {
            let mut m = String::with_capacity(size);
            m.push_str("{\"tag\":\"");
            debug_assert_eq!(m.len(), JSON_TAG_AT);
            m.push_str(&"0".repeat(24));
            m.push_str("\",\"items\":[");
            loop {
                let (kind, unit) = KINDS[next(KINDS.len() as u64) as usize];
                let item = format!(
                    "{{\"id\":{},\"name\":\"sensor-{}\",\"kind\":\"{kind}\",\"value\":{}.{:02},\
                     \"unit\":\"{unit}\",\"ok\":{},\"ts\":{}}}",
                    1000 + next(9000),
                    next(64),
                    next(1000),
                    next(100),
                    next(10) != 0,
                    1_700_000_000 + next(86_400),
                );
                let comma = usize::from(!m.ends_with('['));
                if m.len() + comma + item.len() + TAIL.len() > size {
                    break;
                }
                if comma == 1 {
                    m.push(',');
                }
                m.push_str(&item);
            }
            m.push_str("],\"note\":\"");
            let pad = size - m.len() - 2;
            m.extend(TEXT.chars().cycle().take(pad));
            m.push_str("\"}");
            assert_eq!(m.len(), size);
            m.into_bytes()
        })
        .collect()
}

impl Rich {
    fn new(args: &Args, opcode: u8) -> Rich {
        Rich {
            opcode,
            size: args.size,
            json: if args.json {
                json_messages(args.size)
            } else {
                Vec::new()
            },
            deflate: args.deflate.then(|| Deflate {
                compress: flate2::Compress::new(flate2::Compression::fast(), false),
                decompress: flate2::Decompress::new(false),
            }),
            message: Vec::with_capacity(args.size),
            scratch: Vec::with_capacity(args.size + 64),
        }
    }

    /// Message `seq` of connection `conn` into `self.message`.
    fn fill(&mut self, conn: usize, seq: u64) {
        let tag = tag(conn, seq);
        self.message.clear();
        if self.json.is_empty() {
            let n = self.size.min(tag.len());
            self.message.extend_from_slice(&tag[..n]);
            self.message.resize(self.size, b'x');
        } else {
            self.message
                .extend_from_slice(&self.json[seq as usize % self.json.len()]);
            self.message[JSON_TAG_AT..JSON_TAG_AT + tag.len()].copy_from_slice(&tag);
        }
    }
}

impl Messages for Rich {
    fn encode(&mut self, out: &mut Vec<u8>, conn: usize, seq: u64) -> usize {
        self.fill(conn, seq);
        let before = out.len();
        let (payload, rsv1) = match &mut self.deflate {
            None => (&self.message, 0),
            Some(deflate) => {
                compress(&mut deflate.compress, &self.message, &mut self.scratch);
                (&self.scratch, 0x40)
            }
        };
        let (mut head, n) = encode_head(self.opcode, payload.len());
        head[0] |= rsv1;
        out.extend_from_slice(&head[..n]);
        out.extend_from_slice(payload);
        out.len() - before
    }

    fn check(&mut self, payload: &[u8], rsv1: bool, conn: usize, seq: u64) -> bool {
        self.fill(conn, seq);
        if !rsv1 {
            return payload == self.message;
        }
        let Some(deflate) = &mut self.deflate else {
            return false; // compressed without an agreement
        };
        inflate(
            &mut deflate.decompress,
            payload,
            &mut self.scratch,
            self.size,
        ) && self.scratch == self.message
    }
}

/// Compresses one message into `out` from a reset state, without the trailer.
fn compress(compress: &mut flate2::Compress, message: &[u8], out: &mut Vec<u8>) {
    use flate2::FlushCompress;
    compress.reset();
    out.clear();
    loop {
        out.reserve(message.len() / 2 + 64);
        let done = compress.total_in() as usize;
        compress
            .compress_vec(&message[done..], out, FlushCompress::Sync)
            .expect("deflate");
        // A sync flush is complete once all is in and the output was not filled up.
        if compress.total_in() as usize == message.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(
        out.ends_with(&TRAILER),
        "a sync flush ends with 00 00 ff ff"
    );
    out.truncate(out.len() - TRAILER.len());
}

/// Inflates one compressed message (the trailer put back) into `out` from a reset state;
/// false if it is not valid deflate or inflates to more than `limit` bytes.
fn inflate(
    decompress: &mut flate2::Decompress,
    payload: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> bool {
    use flate2::{FlushDecompress, Status};
    decompress.reset(false);
    out.clear();
    // Room for more than `limit`: output that fills it all is too long.
    out.reserve(limit + 1);
    for input in [payload, &TRAILER[..]] {
        let mut at = 0;
        loop {
            let before = decompress.total_in();
            let status = decompress.decompress_vec(&input[at..], out, FlushDecompress::Sync);
            let used = (decompress.total_in() - before) as usize;
            at += used;
            match status {
                Err(_) => return false,
                Ok(_) if out.len() > limit => return false,
                // A final block (BFINAL): nothing may follow but the trailer we added.
                Ok(Status::StreamEnd) => return at == input.len() || input == TRAILER,
                Ok(_) if at == input.len() => break,
                Ok(_) if used == 0 => return false, // stuck: truncated or corrupt
                Ok(_) => {}
            }
        }
    }
    true
}

/// `conns` connections, each keeping `inflight` messages outstanding and checking every echo
/// (content and order), on one thread: non-blocking sockets on epoll, every echo already
/// received handled before one write of all the replacements, so the load costs as little
/// as the checks allow and is never the bottleneck.
fn echo(args: &Args) {
    let opcode = if args.binary { 0x2 } else { 0x1 };
    if args.json || args.deflate {
        echo_with(args, Rich::new(args, opcode));
    } else {
        let filler = vec![b'x'; args.size];
        let plain = Plain {
            opcode,
            size: args.size,
            filler,
        };
        echo_with(args, plain);
    }
}

/// With `--messages`: the longest wait for an echo before the run gives up (the server may
/// run under valgrind, 20 to 50 times slower).
const STALL: Duration = Duration::from_secs(60);

/// `echo`, with the messages `messages` makes and checks.
fn echo_with<M: Messages>(args: &Args, mut messages: M) {
    use mio::{Events, Interest, Poll, Token};

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
                let rest = handshake(&mut stream, args.addr, args.deflate).await?;
                Ok::<_, std::io::Error>((stream.into_std()?, rest))
            };
            opened.push(upgraded.await);
        }
        opened
    });
    drop(runtime);
    let upgraded = opened.iter().filter(|o| o.is_ok()).count() as u64;
    for upgraded_conn in opened {
        let Ok((stream, buf)) = upgraded_conn else {
            failed += 1;
            continue;
        };
        let mut stream = mio::net::TcpStream::from_std(stream);
        let token = Token(conns.len());
        poll.registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .expect("register");
        // `--messages`: split evenly over the connections that opened, the first ones taking
        // one more where it does not divide.
        let limit = match args.messages {
            0 => u64::MAX,
            total => {
                let n = conns.len() as u64;
                total / upgraded + u64::from(n < total % upgraded)
            }
        };
        conns.push(EchoConn {
            stream,
            buf,
            out: Vec::with_capacity((args.size + 14) * args.inflight),
            next_seq: 0,
            expected_seq: 0,
            limit,
            sent_at: VecDeque::with_capacity(args.inflight),
            rtts: Vec::new(),
            dead: false,
        });
    }
    let counted = args.messages > 0;
    // With `--messages`, the echoes still awaited (the run ends at 0); otherwise never 0.
    let mut unanswered = if counted {
        conns.iter().map(|c| c.limit).sum()
    } else {
        u64::MAX
    };
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 << 10];
    let began = Instant::now();
    // With `--messages`, all of the run is measured, with no warm-up and no time limit.
    let measure_from = if counted {
        began
    } else {
        began + Duration::from_secs_f64(args.warmup)
    };
    let measure_to = (!counted).then(|| measure_from + Duration::from_secs_f64(args.secs));
    let (mut received, mut bytes, mut mismatched, mut lost) = (0u64, 0u64, 0u64, 0u64);
    // Frame bytes of the messages sent and of the echoes received in the window, and how many
    // messages were sent in it.
    let (mut wire_up, mut wire_down, mut sent) = (0u64, 0u64, 0u64);
    let mut window: Option<(Instant, u64, u64)> = None;
    if counted {
        window = Some((began, cpu_ticks(args.pid), cpu_ticks(0)));
    }
    let mut ended: Option<(f64, u64, u64)> = None;
    let mut last_echo = began;
    // Fill every window.
    for (n, conn) in conns.iter_mut().enumerate() {
        while conn.sent_at.len() < args.inflight && conn.next_seq < conn.limit {
            let len = messages.encode(&mut conn.out, n, conn.next_seq);
            if window.is_some() {
                wire_up += len as u64;
                sent += 1;
            }
            conn.sent_at.push_back(began);
            conn.next_seq += 1;
        }
        flush(conn);
        if conn.dead {
            unanswered = unanswered.saturating_sub(conn.limit - conn.expected_seq);
            retire(conn, &poll, &mut lost, &mut failed);
        }
    }
    loop {
        let now = Instant::now();
        if window.is_none() && now >= measure_from {
            window = Some((now, cpu_ticks(args.pid), cpu_ticks(0)));
        }
        let measuring = window.is_some() && ended.is_none();
        let stalled = counted && now.duration_since(last_echo) >= STALL;
        if measuring && (measure_to.is_some_and(|to| now >= to) || unanswered == 0 || stalled) {
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
            let waited_enough = match measure_to {
                Some(to) => now >= to + Duration::from_secs(5),
                None => stalled,
            };
            if waited_enough {
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
            if !read_available(&mut conn.stream, &mut chunk, &mut conn.buf) {
                conn.dead = true;
            }
            let mut at = 0;
            while let Some((op, range, len)) = decode(&conn.buf[at..]) {
                let payload = &conn.buf[at + range.start..at + range.end];
                if op == 0x9 {
                    // A keep-alive ping: answer it, as any live client does.
                    let payload = payload.to_vec();
                    encode(&mut conn.out, 0xA, &payload);
                } else if op == opcode {
                    let rsv1 = conn.buf[at] & 0x40 != 0;
                    if !messages.check(payload, rsv1, n, conn.expected_seq) {
                        mismatched += 1;
                    }
                    conn.expected_seq += 1;
                    unanswered = unanswered.saturating_sub(1);
                    last_echo = now;
                    let sent_at = conn.sent_at.pop_front().unwrap_or(now);
                    if measuring {
                        received += 1;
                        bytes += args.size as u64;
                        wire_down += len as u64;
                        conn.rtts
                            .push(now.duration_since(sent_at).as_micros() as u32);
                    }
                    if !stopping && conn.next_seq < conn.limit {
                        let len = messages.encode(&mut conn.out, n, conn.next_seq);
                        if measuring {
                            wire_up += len as u64;
                            sent += 1;
                        }
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
                if counted {
                    unanswered = unanswered.saturating_sub(conn.limit - conn.expected_seq);
                }
                retire(conn, &poll, &mut lost, &mut failed);
            }
        }
    }
    let (elapsed, server_ticks, load_ticks) = ended.expect("measured");
    let echoed: u64 = conns.iter().map(|c| c.expected_seq).sum();
    let mut rtts: Vec<u32> = conns.iter_mut().flat_map(|c| c.rtts.drain(..)).collect();
    rtts.sort_unstable();
    if counted {
        close_all(conns, &poll);
    }
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
         load_cpu_pct={:.0} echoed={echoed} wire_up_b_per_msg={:.1} wire_down_b_per_msg={:.1}",
        received as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        server_cpu_per_msg,
        load_ticks as f64 * tick_us / (elapsed * 1e6) * 100.0,
        wire_up as f64 / sent.max(1) as f64,
        wire_down as f64 / received.max(1) as f64,
    );
}

/// The end of a `--messages` run: a close frame (1000) on every live connection, then each
/// one read until the server ends it (its close frame is not checked), `STALL` at most.
fn close_all(conns: Vec<EchoConn>, poll: &mio::Poll) {
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let mut frame = Vec::new();
    encode(&mut frame, 0x8, &1000u16.to_be_bytes());
    let mut streams = Vec::with_capacity(conns.len());
    for conn in conns.into_iter().filter(|c| !c.dead) {
        let mut stream = conn.stream;
        let _ = poll.registry().deregister(&mut stream);
        // SAFETY: a connected socket, whose ownership moves from one wrapper to the other.
        let mut stream = unsafe { std::net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
        if stream.set_nonblocking(false).is_ok() && stream.write_all(&frame).is_ok() {
            streams.push(stream);
        }
    }
    let deadline = Instant::now() + STALL;
    let mut chunk = [0u8; 4096];
    for stream in &mut streams {
        let left = deadline.saturating_duration_since(Instant::now());
        if stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_ok()
        {
            while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
        }
    }
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
        let (addr, deflate) = (args.addr, args.deflate);
        let opening = open(addr, conn);
        pending.spawn(async move {
            let mut stream = opening.await?;
            handshake(&mut stream, addr, deflate).await?;
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

/// Core `core`'s (busy, total) time since boot, in clock ticks, from /proc/stat.
fn core_ticks(core: usize) -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let name = format!("cpu{core}");
    let Some(line) = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))
    else {
        return (0, 0);
    };
    // user nice system idle iowait irq softirq steal ...; guest time is in user already.
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The `fanout` mode (see the header): subscribers and one publisher on one epoll loop.
mod fanout {
    use std::io::{ErrorKind, Read, Write};
    use std::time::{Duration, Instant};

    use mio::{Events, Interest, Poll, Token};

    use super::{
        Args, clock_ticks_per_s, connect, core_ticks, cpu_ticks, decode, encode, handshake_at,
    };

    /// How often the sync phase publishes while a subscriber got nothing yet (gently, so
    /// that no server starts the run behind), and how long it waits for every subscriber.
    const SYNC_EVERY: Duration = Duration::from_millis(250);
    const SYNC_FOR: Duration = Duration::from_secs(15);
    /// How often the publisher pings.
    const PING_EVERY: Duration = Duration::from_millis(100);
    /// The drain ends early once nothing arrived for this long.
    const QUIET: Duration = Duration::from_secs(1);
    /// Full speed: messages encoded per write, and writes per turn of the loop (so that the
    /// subscribers are read in between).
    const BATCH: usize = 64;
    const BATCHES_PER_TURN: usize = 16;

    struct Sub {
        stream: mio::net::TcpStream,
        /// An incomplete frame, carried over to the next read.
        partial: Vec<u8>,
        /// Pongs the socket has not taken yet.
        out: Vec<u8>,
        /// The next sequence number expected; `None` before the first message.
        expected: Option<u64>,
        dead: bool,
        /// Stopped reading after the sync phase (`--stall-percent`).
        stalled: bool,
    }

    struct Publisher {
        stream: mio::net::TcpStream,
        /// Frames to send, written up to `written`.
        out: Vec<u8>,
        written: usize,
        /// The socket refused a write, and since when.
        blocked: Option<Instant>,
        stall_max: Duration,
        /// Received bytes not yet parsed (pongs; anything else is counted).
        buf: Vec<u8>,
        next_seq: u64,
        /// The ping awaiting its pong: its number and when it went.
        ping: Option<(u64, Instant)>,
        pings: u64,
        next_ping: Instant,
        pong_max: Duration,
        /// Anything but a pong from the publisher's endpoint.
        unexpected: u64,
        dead: bool,
    }

    /// Latencies in µs: exact below 128, then 64 buckets per power of two (1.6 % wide).
    struct Histogram {
        counts: Vec<u64>,
        total: u64,
        max: u64,
    }

    impl Histogram {
        fn new() -> Self {
            Histogram {
                counts: vec![0; 128 + 64 * 58],
                total: 0,
                max: 0,
            }
        }

        fn bucket(us: u64) -> usize {
            if us < 128 {
                return us as usize;
            }
            let octave = 63 - us.leading_zeros() as usize; // >= 7
            128 + (octave - 7) * 64 + ((us >> (octave - 6)) & 63) as usize
        }

        /// The smallest value of bucket `b`.
        fn floor(b: usize) -> u64 {
            if b < 128 {
                return b as u64;
            }
            let octave = (b - 128) / 64 + 7;
            ((64 + ((b - 128) % 64)) as u64) << (octave - 6)
        }

        fn record(&mut self, us: u64) {
            self.counts[Self::bucket(us)] += 1;
            self.total += 1;
            self.max = self.max.max(us);
        }

        fn percentile(&self, p: f64) -> u64 {
            if self.total == 0 {
                return 0;
            }
            let rank = ((self.total as f64 * p).ceil() as u64).clamp(1, self.total);
            let mut seen = 0;
            for (b, count) in self.counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return Self::floor(b);
                }
            }
            self.max
        }
    }

    /// What the subscribers saw, over all of them.
    struct Tally {
        /// Deliveries of messages published after the sync phase.
        deliveries: u64,
        /// Deliveries received in the measured window.
        in_window: u64,
        measuring: bool,
        /// The first sequence number after the sync phase (`u64::MAX` during it).
        base_seq: u64,
        /// Messages sent in this range of send times (ns since the start) have their latency
        /// recorded.
        stamped_from: u64,
        stamped_to: u64,
        gaps: u64,
        dup_or_reordered: u64,
        mismatched: u64,
        synced: usize,
        closed: usize,
        closed_1008: usize,
        latency: Histogram,
        last_delivery: Instant,
    }

    /// The payload of message `seq` sent at `stamp` (ns): both in hex, then `x`.
    fn payload(out: &mut Vec<u8>, seq: u64, stamp: u64, size: usize) {
        out.extend_from_slice(&super::hex(seq));
        out.extend_from_slice(&super::hex(stamp));
        out.resize(out.len() + size - 32, b'x');
    }

    fn unhex(digits: &[u8]) -> Option<u64> {
        let mut n = 0u64;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                _ => return None,
            };
            n = n << 4 | v as u64;
        }
        Some(n)
    }

    /// (sequence number, send time) of a message, if it is one of ours, whole.
    fn parse(payload: &[u8], size: usize, filler: &[u8]) -> Option<(u64, u64)> {
        if payload.len() != size || payload[32..] != filler[32..size] {
            return None;
        }
        Some((unhex(&payload[..16])?, unhex(&payload[16..32])?))
    }

    /// Takes the frames at the front of `bytes`; returns how many bytes they filled.
    fn frames(
        sub: &mut Sub,
        bytes: &[u8],
        tally: &mut Tally,
        now_ns: u64,
        size: usize,
        filler: &[u8],
    ) -> usize {
        let mut at = 0;
        while let Some((op, range, len)) = decode(&bytes[at..]) {
            let body = &bytes[at + range.start..at + range.end];
            at += len;
            match op {
                0x1 => {
                    // A resumable subscription's header (`0x1E {..} 0x1E`) is skipped, and
                    // its notice (a header alone) is not a message.
                    let body = match body.strip_prefix(&[0x1e]) {
                        None => body,
                        Some(rest) => match rest.iter().position(|&b| b == 0x1e) {
                            Some(end) if end + 1 < rest.len() => &rest[end + 1..],
                            _ => continue,
                        },
                    };
                    let Some((seq, stamp)) = parse(body, size, filler) else {
                        tally.mismatched += 1;
                        continue;
                    };
                    match sub.expected {
                        None => {
                            tally.synced += 1;
                            sub.expected = Some(seq + 1);
                        }
                        Some(next) if seq == next => sub.expected = Some(next + 1),
                        Some(next) if seq > next => {
                            tally.gaps += seq - next;
                            sub.expected = Some(seq + 1);
                        }
                        Some(_) => {
                            tally.dup_or_reordered += 1;
                            continue;
                        }
                    }
                    if seq >= tally.base_seq {
                        tally.deliveries += 1;
                    }
                    if tally.measuring {
                        tally.in_window += 1;
                    }
                    if (tally.stamped_from..tally.stamped_to).contains(&stamp) {
                        tally.latency.record(now_ns.saturating_sub(stamp) / 1000);
                    }
                }
                // A keep-alive ping: answer it, as any live client does.
                0x9 => encode(&mut sub.out, 0xA, body),
                0xA => {}
                0x8 => {
                    if body.len() >= 2 && u16::from_be_bytes([body[0], body[1]]) == 1008 {
                        tally.closed_1008 += 1;
                    }
                    // Answered with its code, as any client does, so the server can finish.
                    encode(&mut sub.out, 0x8, &body[..body.len().min(2)]);
                    sub.dead = true;
                    return at;
                }
                _ => tally.mismatched += 1,
            }
        }
        at
    }

    /// Writes what the socket takes of `out` from `*written`; `Ok(false)`: it would block.
    fn write_out(
        stream: &mut mio::net::TcpStream,
        out: &mut Vec<u8>,
        written: &mut usize,
    ) -> std::io::Result<bool> {
        while *written < out.len() {
            match stream.write(&out[*written..]) {
                Ok(n) => *written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        out.clear();
        *written = 0;
        Ok(true)
    }

    impl Publisher {
        fn publish(&mut self, count: u64, stamp: u64, size: usize) {
            let head = super::encode_head(0x1, size);
            for _ in 0..count {
                self.out.extend_from_slice(&head.0[..head.1]);
                payload(&mut self.out, self.next_seq, stamp, size);
                self.next_seq += 1;
            }
        }

        fn flush(&mut self, now: Instant) {
            if self.dead {
                return;
            }
            match write_out(&mut self.stream, &mut self.out, &mut self.written) {
                Ok(true) => {
                    if let Some(since) = self.blocked.take() {
                        self.stall_max = self.stall_max.max(now.duration_since(since));
                    }
                }
                Ok(false) => {
                    self.blocked.get_or_insert(now);
                }
                Err(_) => self.dead = true,
            }
        }

        /// Reads the pongs (and anything else the server sends the publisher).
        fn read(&mut self, chunk: &mut [u8], now: Instant) {
            if !super::read_available(&mut self.stream, chunk, &mut self.buf) {
                self.dead = true;
            }
            let mut at = 0;
            while let Some((op, range, len)) = decode(&self.buf[at..]) {
                let body = &self.buf[at + range.start..at + range.end];
                match op {
                    0xA => {
                        if let Some((id, sent)) = self.ping
                            && body == id.to_be_bytes()
                        {
                            self.pong_max = self.pong_max.max(now.duration_since(sent));
                            self.ping = None;
                        }
                    }
                    0x9 => {
                        let body = body.to_vec();
                        encode(&mut self.out, 0xA, &body);
                    }
                    0x8 => self.dead = true,
                    _ => self.unexpected += 1,
                }
                at += len;
            }
            self.buf.drain(..at);
        }
    }

    /// Counters at one end of the measured window.
    struct Snapshot {
        at: Instant,
        published: u64,
        /// CPU ticks: the servers' (summed), the broker's, the load's own.
        server: u64,
        broker: u64,
        load: u64,
        /// `--server-core`'s busy and total ticks.
        core: (u64, u64),
    }

    enum Phase {
        /// Publishing every 250 ms until every subscriber got a message.
        Sync { next: Instant, until: Instant },
        /// Publishing at the rate from `start`: warm-up, then the measured window.
        Run { start: Instant },
        /// Waiting for what is on its way.
        Drain { start: Instant },
    }

    /// An upgraded connection and the bytes read past its 101.
    type Upgraded = (std::net::TcpStream, Vec<u8>);

    /// Opens the subscribers and then the publisher (last), through tokio; `None` for a
    /// connection whose upgrade failed.
    fn open(args: &Args) -> Vec<Option<Upgraded>> {
        let sub_addrs = if args.sub_addrs.is_empty() {
            vec![args.addr]
        } else {
            args.sub_addrs.clone()
        };
        let pub_addr = args.pub_addr.unwrap_or(args.addr);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut opened: Vec<Option<_>> = (0..=args.subs).map(|_| None).collect();
            let mut pending = tokio::task::JoinSet::new();
            for n in 0..=args.subs {
                // The last one is the publisher.
                let (addr, path) = if n == args.subs {
                    (pub_addr, "/pub")
                } else {
                    (sub_addrs[n % sub_addrs.len()], "/sub")
                };
                pending.spawn(async move {
                    let upgraded = async {
                        let mut stream = connect(addr, n).await?;
                        let rest = handshake_at(&mut stream, addr, path, false).await?;
                        Ok::<_, std::io::Error>((stream.into_std()?, rest))
                    };
                    (n, upgraded.await.ok())
                });
                // Bounded concurrency, so the server's accept queue is not the test.
                while pending.len() >= 256 {
                    let (n, stream) = pending.join_next().await.unwrap().unwrap();
                    opened[n] = stream;
                }
            }
            while let Some(joined) = pending.join_next().await {
                let (n, stream) = joined.unwrap();
                opened[n] = stream;
            }
            opened
        })
    }

    pub(super) fn run(args: &Args) {
        let size = args.size;
        if size < 32 {
            eprintln!("fanout: --size is at least 32 (sequence number and send time)");
            std::process::exit(2);
        }
        let mut opened = open(args);
        let Some((pub_stream, pub_rest)) = opened.pop().flatten() else {
            eprintln!("fanout: the publisher's upgrade failed");
            std::process::exit(1);
        };
        let mut poll = Poll::new().expect("epoll");
        let mut subs: Vec<Sub> = Vec::with_capacity(args.subs);
        let mut failed = 0u64;
        let mut leftovers = Vec::new();
        for upgraded in opened {
            let Some((stream, rest)) = upgraded else {
                failed += 1;
                continue;
            };
            let mut stream = mio::net::TcpStream::from_std(stream);
            poll.registry()
                .register(
                    &mut stream,
                    Token(subs.len()),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .expect("register");
            leftovers.push(rest);
            subs.push(Sub {
                stream,
                partial: Vec::new(),
                out: Vec::new(),
                expected: None,
                dead: false,
                stalled: false,
            });
        }
        let pub_token = Token(subs.len());
        let mut publisher = Publisher {
            stream: mio::net::TcpStream::from_std(pub_stream),
            out: Vec::with_capacity(64 << 10),
            written: 0,
            blocked: None,
            stall_max: Duration::ZERO,
            buf: pub_rest,
            next_seq: 0,
            ping: None,
            pings: 0,
            next_ping: Instant::now(),
            pong_max: Duration::ZERO,
            unexpected: 0,
            dead: false,
        };
        poll.registry()
            .register(
                &mut publisher.stream,
                pub_token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register");

        let t0 = Instant::now();
        let ns = |t: Instant| t.duration_since(t0).as_nanos() as u64;
        let filler = vec![b'x'; size];
        let mut tally = Tally {
            deliveries: 0,
            in_window: 0,
            measuring: false,
            base_seq: u64::MAX,
            stamped_from: u64::MAX,
            stamped_to: u64::MAX,
            gaps: 0,
            dup_or_reordered: 0,
            mismatched: 0,
            synced: 0,
            closed: 0,
            closed_1008: 0,
            latency: Histogram::new(),
            last_delivery: t0,
        };
        // Bytes read past a 101 (a server may send at once).
        let mut chunk = vec![0u8; 64 << 10];
        for (sub, rest) in subs.iter_mut().zip(leftovers) {
            let used = frames(sub, &rest, &mut tally, ns(t0), size, &filler);
            sub.partial.extend_from_slice(&rest[used..]);
        }
        let mut events = Events::with_capacity(1024);
        let secs = Duration::from_secs_f64(args.secs);
        let warmup = Duration::from_secs_f64(args.warmup);
        let mut phase = Phase::Sync {
            next: t0,
            until: t0 + SYNC_FOR,
        };
        let snapshot = |at: Instant, published: u64| Snapshot {
            at,
            published,
            server: args.pids.iter().map(|&pid| cpu_ticks(pid)).sum(),
            broker: if args.broker_pid == 0 {
                0
            } else {
                cpu_ticks(args.broker_pid)
            },
            load: cpu_ticks(0),
            core: args.server_core.map_or((0, 0), core_ticks),
        };
        // The measured window's ends.
        let mut window_start: Option<Snapshot> = None;
        let mut window_end: Option<Snapshot> = None;
        let mut unsynced = 0usize;
        let mut last_check = t0;
        let drain_secs = loop {
            let now = Instant::now();
            let mut timeout = Duration::from_millis(10);
            match phase {
                Phase::Sync { next, until } => {
                    // Done once every subscriber got the last sync message (looked at every
                    // 10 ms): the run starts with nothing on its way.
                    let settled = tally.synced >= subs.len()
                        && now.duration_since(last_check) >= Duration::from_millis(10)
                        && {
                            last_check = now;
                            let end = publisher.next_seq;
                            subs.iter()
                                .all(|s| s.dead || s.expected.is_some_and(|e| e >= end))
                        };
                    if settled || now >= until {
                        unsynced = subs.iter().filter(|s| s.expected.is_none()).count();
                        // The stalled subscribers stop reading here: nothing polls them.
                        if args.stall_percent > 0.0 {
                            let every = (100.0 / args.stall_percent).round().max(1.0) as usize;
                            for (n, sub) in subs.iter_mut().enumerate() {
                                if n % every == 0 && !sub.dead {
                                    sub.stalled = true;
                                    let _ = poll.registry().deregister(&mut sub.stream);
                                }
                            }
                        }
                        tally.base_seq = publisher.next_seq;
                        let from = now + warmup;
                        tally.stamped_from = ns(from);
                        tally.stamped_to = ns(from + secs);
                        publisher.next_ping = now;
                        phase = Phase::Run { start: now };
                        continue;
                    }
                    if now >= next && tally.synced < subs.len() {
                        publisher.publish(1, ns(now), size);
                        phase = Phase::Sync {
                            next: now + SYNC_EVERY,
                            until,
                        };
                    }
                    timeout = timeout.min(next.saturating_duration_since(now));
                }
                Phase::Run { start } => {
                    let from = start + warmup;
                    let to = from + secs;
                    if window_start.is_none() && now >= from {
                        window_start = Some(snapshot(now, publisher.next_seq));
                        tally.measuring = true;
                    }
                    if now >= to {
                        window_end = Some(snapshot(now, publisher.next_seq));
                        tally.measuring = false;
                        tally.last_delivery = now;
                        phase = Phase::Drain { start: now };
                        continue;
                    }
                    let sent = publisher.next_seq - tally.base_seq;
                    if args.rate > 0.0 {
                        // Due: one at the start, then one every 1 / rate.
                        let elapsed = now.duration_since(start).as_secs_f64();
                        let due = (elapsed * args.rate) as u64 + 1;
                        if due > sent {
                            publisher.publish(due - sent, ns(now), size);
                        }
                        let next = start + Duration::from_secs_f64((due as f64) / args.rate);
                        timeout = timeout.min(next.saturating_duration_since(now));
                    } else if publisher.blocked.is_none() && !publisher.dead {
                        // Full speed: as much as the socket takes, a few writes per turn.
                        for _ in 0..BATCHES_PER_TURN {
                            if !publisher.out.is_empty() {
                                publisher.flush(now);
                                if publisher.blocked.is_some() || publisher.dead {
                                    break;
                                }
                            }
                            publisher.publish(BATCH as u64, ns(Instant::now()), size);
                        }
                        timeout = Duration::ZERO;
                    }
                    if publisher.ping.is_none() && now >= publisher.next_ping {
                        publisher.pings += 1;
                        let id = publisher.pings;
                        encode(&mut publisher.out, 0x9, &id.to_be_bytes());
                        publisher.ping = Some((id, now));
                        publisher.next_ping = now + PING_EVERY;
                    }
                    timeout = timeout.min(to.saturating_duration_since(now));
                    if window_start.is_none() {
                        timeout = timeout.min(from.saturating_duration_since(now));
                    }
                }
                Phase::Drain { start } => {
                    let end_seq = publisher.next_seq;
                    let done = now.duration_since(last_check) >= Duration::from_millis(10) && {
                        last_check = now;
                        subs.iter()
                            .all(|s| s.dead || s.stalled || s.expected.is_none_or(|e| e >= end_seq))
                    };
                    if done
                        || now.duration_since(tally.last_delivery) >= QUIET
                        || now.duration_since(start).as_secs_f64() >= args.drain
                    {
                        break now.duration_since(start).as_secs_f64();
                    }
                }
            }
            if !publisher.out.is_empty() && publisher.blocked.is_none() {
                publisher.flush(now);
            }
            if poll.poll(&mut events, Some(timeout)).is_err() {
                continue; // interrupted
            }
            for event in events.iter() {
                let now = Instant::now();
                if event.token() == pub_token {
                    if event.is_readable() {
                        publisher.read(&mut chunk, now);
                    }
                    if publisher.blocked.is_some() || !publisher.out.is_empty() {
                        publisher.flush(now);
                    }
                    continue;
                }
                let sub = &mut subs[event.token().0];
                if sub.dead || sub.stalled {
                    continue;
                }
                let now_ns = ns(now);
                let before = tally.deliveries;
                loop {
                    // The incomplete frame first, then what the socket has.
                    let carried = sub.partial.len();
                    chunk[..carried].copy_from_slice(&sub.partial);
                    let (n, ended) = match sub.stream.read(&mut chunk[carried..]) {
                        Ok(0) => (0, true),
                        Ok(n) => (n, false),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => (0, true),
                    };
                    let filled = carried + n;
                    let used = frames(sub, &chunk[..filled], &mut tally, now_ns, size, &filler);
                    sub.partial.clear();
                    sub.partial.extend_from_slice(&chunk[used..filled]);
                    if ended {
                        sub.dead = true;
                    }
                    // A short read emptied the socket: epoll reports the next bytes.
                    if sub.dead || filled < chunk.len() {
                        break;
                    }
                }
                if tally.deliveries != before {
                    tally.last_delivery = now;
                }
                // Pongs, or the answer to a close frame (a failed socket takes nothing).
                if !sub.out.is_empty() {
                    let mut written = 0;
                    match write_out(&mut sub.stream, &mut sub.out, &mut written) {
                        Ok(_) => {
                            sub.out.drain(..written);
                        }
                        Err(_) => sub.dead = true,
                    }
                }
                if sub.dead {
                    tally.closed += 1;
                    let _ = poll.registry().deregister(&mut sub.stream);
                }
            }
        };
        let end = Instant::now();
        if let Some(since) = publisher.blocked {
            publisher.stall_max = publisher.stall_max.max(end.duration_since(since));
        }
        if let Some((_, sent)) = publisher.ping {
            publisher.pong_max = publisher.pong_max.max(end.duration_since(sent));
        }
        let end_seq = publisher.next_seq;
        let published = end_seq - tally.base_seq;
        // What each subscriber still misses, from its first message (or from the sync phase's
        // end, for one that never got any).
        let missing: u64 = subs
            .iter()
            .filter(|s| !s.stalled)
            .map(|s| end_seq - s.expected.unwrap_or(tally.base_seq).min(end_seq))
            .sum();
        let lost = tally.gaps + missing;
        let (from, to) = (
            window_start.expect("the window started"),
            window_end.expect("the window ended"),
        );
        let elapsed = to.at.duration_since(from.at).as_secs_f64();
        let window_published = to.published - from.published;
        let server = to.server.saturating_sub(from.server);
        let broker = to.broker.saturating_sub(from.broker);
        let load = to.load.saturating_sub(from.load);
        let core_busy = match args.server_core {
            Some(_) if to.core.1 > from.core.1 => format!(
                "{:.0}",
                (to.core.0 - from.core.0) as f64 * 100.0 / (to.core.1 - from.core.1) as f64
            ),
            _ => "-".to_owned(),
        };
        let tick_us = 1e6 / clock_ticks_per_s();
        // `-` (which the runner shows as such) where there is nothing to divide by.
        let per_delivery = |ticks: u64, pid_given: bool| match (pid_given, tally.in_window) {
            (false, _) => "0".to_owned(),
            (true, 0) => "-".to_owned(),
            (true, n) => format!("{:.3}", ticks as f64 * tick_us / n as f64),
        };
        let latency = |p: f64| match tally.latency.total {
            0 => "-".to_owned(),
            _ => tally.latency.percentile(p).to_string(),
        };
        println!(
            "subs={} failed_conns={failed} unsynced={unsynced} published={published} \
             publish_per_s={:.0} deliveries={} expected={} deliveries_per_s={:.0} lost={lost} \
             gaps={} missing_at_end={missing} dup_or_reordered={} mismatched={} closed={} \
             closed_1008={} p50_us={} p99_us={} max_us={} server_cpu_us_per_delivery={} \
             server_cpu_pct={:.0} server_core_busy_pct={core_busy} \
             broker_cpu_us_per_delivery={} load_cpu_pct={:.0} \
             pub_stall_max_ms={:.1} pub_pong_max_ms={:.1} pub_unexpected={} pub_dead={} \
             drain_s={drain_secs:.1} stalled={}",
            subs.len(),
            window_published as f64 / elapsed,
            tally.deliveries,
            published * subs.len() as u64,
            tally.in_window as f64 / elapsed,
            tally.gaps,
            tally.dup_or_reordered,
            tally.mismatched,
            tally.closed,
            tally.closed_1008,
            latency(0.50),
            latency(0.99),
            tally.latency.max,
            per_delivery(server, !args.pids.is_empty()),
            server as f64 * tick_us / (elapsed * 1e4),
            per_delivery(broker, args.broker_pid != 0),
            load as f64 * tick_us / (elapsed * 1e4),
            publisher.stall_max.as_secs_f64() * 1e3,
            publisher.pong_max.as_secs_f64() * 1e3,
            publisher.unexpected,
            publisher.dead,
            subs.iter().filter(|s| s.stalled).count(),
        );
    }
}
