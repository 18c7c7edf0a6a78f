//! A server's settings and their defaults, in one place. `Server`'s builder methods set them;
//! their docs say what each one means.

use std::time::Duration;

use crate::codec::deflate::Compression;

pub(crate) struct Config {
    pub(crate) queue_capacity: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) max_frame_size: usize,
    pub(crate) max_connections: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) origins: Origins,
    pub(crate) hosts: Hosts,
    pub(crate) dev_console: bool,
    pub(crate) compression: Compression,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queue_capacity: 1024,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            max_connections: 10_000,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            origins: Origins::SameHost,
            hosts: Hosts::Auto,
            dev_console: cfg!(debug_assertions),
            compression: Compression::default(),
        }
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
