//! A server's settings and their defaults, in one place. `Server`'s builder methods set them;
//! their docs say what each one means.

use std::time::Duration;

/// The largest incoming message when neither the endpoint, its inbound type nor the server
/// says otherwise.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

pub(crate) struct Config {
    pub(crate) queue_capacity: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    /// Set by `Server::max_message_size`; unset, an endpoint's inbound type decides, or
    /// `DEFAULT_MAX_MESSAGE_SIZE`.
    pub(crate) max_message_size: Option<usize>,
    pub(crate) max_frame_size: usize,
    pub(crate) max_connections: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) idle_timeout: Duration,
    /// `Server::heartbeat`: off unless set.
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) origins: Origins,
    pub(crate) hosts: Hosts,
    pub(crate) dev_console: bool,
    /// `Server::client_module`.
    pub(crate) client_module: bool,
    pub(crate) compression: Compression,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queue_capacity: 1024,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            max_message_size: None,
            max_frame_size: 16 << 20,
            max_connections: 10_000,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            heartbeat: None,
            origins: Origins::SameHost,
            hosts: Hosts::Auto,
            dev_console: cfg!(debug_assertions),
            client_module: true,
            compression: Compression::default(),
        }
    }
}

/// Compression (permessage-deflate) as a server offers it: give it to
/// [`Server::compression`](crate::Server::compression).
///
/// On by default: a client that offers permessage-deflate (browsers, Python's `websockets`,
/// Node's `ws` with `perMessageDeflate`) gets it, and messages of 1 KiB or more are sent
/// compressed at level 1; smaller ones go as they are (compressing them costs more CPU than it
/// saves bytes). Neither side keeps a compression context between messages, so a connection
/// holds no compression state between messages: an idle one costs nothing more.
///
/// ```
/// use wsock::{Compression, Server};
///
/// let server = Server::new().compression(Compression::default().threshold(256).level(6));
/// let plain = Server::new().compression(Compression::off());
/// ```
///
/// An endpoint can refuse it for itself: `#[websocket("/vault", compress = false)]`, for
/// endpoints that send secrets next to text an attacker controls (compression can leak such
/// secrets through message sizes, as in CRIME and BREACH).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    pub(crate) enabled: bool,
    pub(crate) threshold: usize,
    pub(crate) level: u32,
    pub(crate) context_takeover: bool,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            enabled: true,
            threshold: 1024,
            level: 1,
            context_takeover: false,
        }
    }
}

impl Compression {
    /// No compression: the offer is declined.
    pub fn off() -> Self {
        Compression {
            enabled: false,
            ..Compression::default()
        }
    }

    /// Messages shorter than `bytes` are sent uncompressed. Default: 1024.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The compression level, from 1 (fastest) to 9 (smallest). Default: 1, which gets most
    /// of the saving (1 KiB of JSON: about 280 bytes at 1, 215 at 6) at a third of the CPU
    /// of level 6.
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.clamp(1, 9);
        self
    }

    /// Keeps the compression context between messages, on both sides, when the client
    /// agrees: repeated text compresses far better, but each connection then holds a
    /// compressor (about 380 KiB at the default window) and a decompressor (about 48 KiB)
    /// for as long as it lives. Off by default.
    pub fn context_takeover(mut self, keep: bool) -> Self {
        self.context_takeover = keep;
        self
    }
}

/// Which browser pages may open connections: the `Origin` header a browser sends.
#[derive(Clone, Debug, Default)]
pub(crate) enum Origins {
    /// Requests without `Origin` (non-browser clients), and pages served by this same host.
    #[default]
    SameHost,
    /// Any page.
    Any,
    /// These origins (`https://app.example.com`), plus what `SameHost` allows.
    List(Vec<String>),
}

/// Which names the `Host` header may carry: a DNS name re-pointed at a loopback address
/// (DNS rebinding) must not reach a server that only listens there.
#[derive(Clone, Debug, Default)]
pub(crate) enum Hosts {
    /// Loopback names when the connection came in over loopback (see `Server::allow_host`);
    /// any name otherwise.
    #[default]
    Auto,
    /// Any name.
    Any,
    /// Loopback names and these names (lowercase, without port), wherever the connection
    /// came from.
    List(Vec<String>),
}
