//! `Server`: the builder. Routes, pages and settings; then binding and serving, or turning into
//! a tower `Service`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};

use crate::app::App;
use crate::checks;
use crate::config::Compression;
use crate::config::{Config, Hosts, Origins};
use crate::endpoint::Endpoint;
use crate::history::History;
use crate::listen::{self, Bound, Handle, Transport};
use crate::pages::Pages;
use crate::registry::Registry;
use crate::request::Context;
use crate::router::Router;
use crate::session::{SessionKey, Sessions};
use crate::states::States;
use crate::topics::{Broker, Topics};

/// A WebSocket server: endpoints by path, settings, and serving.
///
/// ```no_run
/// use wsock::prelude::*;
///
/// #[websocket("/")]
/// fn hello(out: Out<String>) {
///     out.write("Hello!");
///     out.close();
/// }
///
/// #[tokio::main]
/// async fn main() -> std::io::Result<()> {
///     // Serves until Ctrl-C, then shuts down gracefully.
///     Server::new().route(hello).serve("127.0.0.1:9000").await
/// }
/// ```
pub struct Server {
    router: Router,
    pages: Pages,
    config: Config,
    states: States,
    /// Made with the server, so that cookies can be issued before it serves.
    sessions: Sessions,
    /// Made with the server, so that a [`Handle`] can be taken before it serves.
    registry: Arc<Registry>,
    /// Made with the server, so that it can publish before it serves.
    topics: Topics,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::Tls>,
    /// The routes' descriptions, for the contract.
    #[cfg(feature = "contract")]
    pub(crate) described: Vec<crate::asyncapi::Described>,
    #[cfg(feature = "prometheus")]
    metrics: Option<(&'static str, crate::prometheus::Prometheus)>,
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// A server with no endpoints and the default settings.
    pub fn new() -> Self {
        Server {
            router: Router::default(),
            pages: Pages::default(),
            config: Config::default(),
            states: States::default(),
            sessions: Sessions::default(),
            registry: Arc::default(),
            topics: Topics::default(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "contract")]
            described: Vec::new(),
            #[cfg(feature = "prometheus")]
            metrics: None,
        }
    }

    /// Serves an endpoint, a function annotated with `#[websocket]`, at its path:
    /// `Server::new().route(chat)`.
    ///
    /// # Panics
    /// If another endpoint already has the same path.
    pub fn route<E: Endpoint>(mut self, _endpoint: fn() -> E) -> Self {
        self.router.add::<E>();
        #[cfg(feature = "contract")]
        self.described.push(crate::asyncapi::Described::of::<E>());
        self
    }

    /// Serves a static HTML page at `path` to plain `GET` (and `HEAD`) requests: the page of
    /// a chat app, say, at `/`.
    ///
    /// A page may share its path with an endpoint: browsers that load the URL get the page,
    /// WebSocket clients get the endpoint (the page replaces the dev console there). Pages
    /// are for a few small static pages next to the endpoints, not a web framework: no
    /// parameters, no other methods (they get 405), no other content types.
    ///
    /// ```no_run
    /// # use wsock::prelude::*;
    /// # #[websocket("/chat")] fn chat(out: Out<String>) { on_message(|m: String| out.write(m)); }
    /// # async fn demo() -> std::io::Result<()> {
    /// Server::new()
    ///     .page("/", "<!doctype html><title>chat</title><script>/* .. */</script>")
    ///     .route(chat)
    ///     .serve("127.0.0.1:9000")
    ///     .await
    /// # }
    /// ```
    ///
    /// # Panics
    /// If `path` does not start with `/`, or another page already has it.
    pub fn page(mut self, path: &'static str, html: impl Into<String>) -> Self {
        assert!(
            path.starts_with('/'),
            "page path {path:?} must start with `/`"
        );
        if !self.pages.insert(path, html.into()) {
            panic!("two pages at the same path {path:?}");
        }
        self
    }

    /// Serves the metrics at `path` (feature `prometheus`), in Prometheus's text format, for
    /// Prometheus to scrape: `GET` and `HEAD` only, after the `Host` check and under
    /// `max_connections` as every request, and in the router `into_router` makes. Anyone who
    /// can reach the server can read them: endpoint names and counts, nothing about a
    /// connection's peer or data. To keep them private, serve them on another listener or
    /// from a route of your own behind your guard, with [`Prometheus::render`].
    ///
    /// [`Prometheus::render`]: crate::Prometheus::render
    ///
    /// # Panics
    /// If `path` does not start with `/`, or a page has it.
    #[cfg(feature = "prometheus")]
    pub fn metrics(
        mut self,
        path: &'static str,
        prometheus: crate::prometheus::Prometheus,
    ) -> Self {
        assert!(
            path.starts_with('/'),
            "metrics path {path:?} must start with `/`"
        );
        assert!(
            !self.pages.contains(path),
            "the metrics path {path:?} is a page's"
        );
        self.metrics = Some((path, prometheus));
        self
    }

    /// Serves the live operations page at `path` (feature `prometheus`): connections per
    /// endpoint, messages per second in and out, closes by code, the topics of this node
    /// with their subscriber counts (the 50 largest) and the broker's state, as charts that
    /// move, from `prometheus`'s recorder and the server's topics. The page is one
    /// self-contained HTML file (no external assets); its WebSocket, at the same path, gets
    /// a JSON snapshot every second. Off unless mounted, in every build.
    ///
    /// Both the page and its WebSocket are refused (401 or 403 with the reason, before any
    /// upgrade) unless `access` lets the request in: [`Access::token`] (`?token=` in the
    /// URL, compared in constant time) or [`Access::guard`], a check of your own. It also
    /// works in the router [`into_router`](Self::into_router) makes.
    ///
    /// ```no_run
    /// # use wsock::prelude::*;
    /// # #[websocket("/echo")] fn echo() {}
    /// # async fn run() -> std::io::Result<()> {
    /// let prometheus = wsock::Prometheus::install().expect("the process's first recorder");
    /// let token = std::env::var("OPS_TOKEN").expect("a long random token");
    /// Server::new()
    ///     .route(echo)
    ///     .operations("/_ops", prometheus, wsock::Access::token(token))
    ///     .serve("0.0.0.0:9000")
    ///     .await
    /// # }
    /// ```
    ///
    /// [`Access::token`]: crate::Access::token
    /// [`Access::guard`]: crate::Access::guard
    ///
    /// # Panics
    /// If `path` does not start with `/`, has a `{parameter}`, or is another route's or a
    /// page's.
    #[cfg(feature = "prometheus")]
    pub fn operations(
        mut self,
        path: &'static str,
        prometheus: crate::prometheus::Prometheus,
        access: crate::operations::Access,
    ) -> Self {
        assert!(
            path.starts_with('/') && !path.contains('{'),
            "operations path {path:?} must start with `/` and have no parameters"
        );
        assert!(
            !self.pages.contains(path),
            "the operations path {path:?} is a page's"
        );
        self.router.insert(path, crate::operations::route(path));
        self.state(crate::operations::Operations {
            path,
            prometheus,
            access,
        })
    }

    /// Turns the dev console on or off. When on, a browser that opens an endpoint's URL
    /// (a plain `GET`, no upgrade) gets a small self-contained page that connects to that
    /// endpoint, sends text, JSON or binary messages, and shows every message received and
    /// the close code and reason. When off, such a request gets
    /// `426 Upgrade Required`.
    ///
    /// On by default in debug builds (`cfg!(debug_assertions)`), off in release builds.
    /// The console talks to the endpoint like any client would: guards, origins and limits
    /// apply. It connects by itself only when the user opened it (typed or bookmarked, or
    /// from a page of this site, per the browser's `Sec-Fetch-Site`); opened from another
    /// site it waits for a click on Connect, and other sites cannot frame it. When a
    /// connection fails before it opens, the console shows why: browsers hide a refused
    /// upgrade's answer from pages, so it repeats the request as a plain same-origin `GET`
    /// marked `X-Wsock-Console: probe`, which the server checks as it checked the upgrade
    /// (guards and extractors included, the endpoint's own code never) and answers with the
    /// refusal's status and body. Only with the console on, and only for the console's own
    /// origin (`Sec-Fetch-Site`, `Origin`; no CORS). It shows
    /// anyone who can reach the URL the endpoint's name, path pattern and subprotocols,
    /// before any guard runs: keep it off on servers others can reach.
    pub fn dev_console(mut self, enabled: bool) -> Self {
        self.config.dev_console = enabled;
        self
    }

    /// Serves wsock's JavaScript client at `/_wsock/client.js`, so that a page of this server
    /// can `import { connect } from "/_wsock/client.js"` with no bundler and no npm (the same
    /// module as the npm package `wsock-client`; see the README's "Client" section), and
    /// answers the client's probe: when a connection fails before it opens, the client asks
    /// why with a plain same-origin `GET` of the endpoint's URL marked
    /// `X-Wsock-Console: probe` (browsers hide a refused upgrade's answer from pages), and gets
    /// the refusal's status and body, as the dev console does.
    ///
    /// On by default, in every build: the client is meant for production pages. The module
    /// is served with `Content-Type: text/javascript`, an `ETag` and a one-hour
    /// `Cache-Control`, after the `Host` check and the admission rule, like every page; a
    /// page added with [`Server::page`] at the same path wins. Turned off, the path is
    /// answered like any other (404), unless the dev console is on (it uses the module).
    pub fn client_module(mut self, enabled: bool) -> Self {
        self.config.client_module = enabled;
        self
    }

    /// Adds shared state that endpoints take as [`State<T>`](crate::State): one value per type.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Signs and verifies session cookies with a key derived from `secret` (at least 32 bytes).
    /// Default: a random key per process, with a warning the first time a session is read.
    ///
    /// # Panics
    /// If the secret is shorter than 32 bytes.
    ///
    /// The session cookie's lifetime and attributes are the key's: for other settings than the
    /// defaults, use [`Server::session_key`] with a configured [`SessionKey`].
    pub fn secret(self, secret: impl AsRef<[u8]>) -> Self {
        self.session_key(SessionKey::derive_from(secret))
    }

    /// Signs and verifies session cookies with this key; give the same key to whatever issues
    /// the cookies ([`SessionKey::cookie`]).
    pub fn session_key(self, key: SessionKey) -> Self {
        self.sessions.set_key(key);
        self
    }

    /// The server's sessions, to issue, clear and read session cookies in HTTP routes (an
    /// axum app's login and logout) with the server's key and cookie settings. See
    /// [`Sessions`].
    pub fn sessions(&self) -> Sessions {
        self.sessions.clone()
    }

    /// How many messages each connection's outbound queue holds before
    /// [`Out::write`](crate::Out::write) closes a client that does not read with 1008, and
    /// [`Out::send`](crate::Out::send) waits. Default: 1024.
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.config.queue_capacity = messages.max(1);
        self
    }

    /// How long a client may take to send its upgrade request and be answered. Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long a closing connection waits for the peer's close frame, and for its last
    /// writes, before it is dropped. Default: 5 s. Kept to a tick (see
    /// [`ping_interval`](Self::ping_interval)).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for connections to close before dropping them.
    /// Default: 10 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// The largest message a client may send, in bytes; a larger one closes the connection
    /// with 1009. Default: 16 MiB, and 64 KiB for endpoints whose `on_message` takes
    /// [`Json<T>`](crate::Json) (see [`FromMessage::MAX_MESSAGE_SIZE`](crate::FromMessage)).
    /// Set here, it applies to every endpoint, JSON or not; an endpoint's own
    /// `max_message_size = ".."` wins over it.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = Some(bytes);
        self
    }

    /// The largest frame a client may send, in bytes; a larger one closes the connection with
    /// 1009. Default: 16 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// The most TCP connections served at once, handshakes included; a client over the limit
    /// gets 503 before any upgrade. Default: 10,000 (mind the process's open-file limit).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections;
        self
    }

    /// How long a connection may stay silent before the server pings it. Default: 30 s.
    ///
    /// The connections' timers (this one, [`idle_timeout`](Self::idle_timeout),
    /// [`close_timeout`](Self::close_timeout), [`heartbeat`](Self::heartbeat)) are one sweep
    /// per server, not a timer per connection. Its tick is a tenth of the shortest of the
    /// four, within 5 and 250 ms (250 ms with the defaults): a timer fires no earlier than it
    /// is due, and at most a tick later.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// How long a connection may stay silent (no message, no pong) before the server closes
    /// it with 1001. Default: 60 s. Time spent in the endpoint's own sections does not count.
    /// Kept to a tick (see [`ping_interval`](Self::ping_interval)).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Sends every connection a heartbeat each `interval`: an empty text message. Off by
    /// default.
    ///
    /// Browsers answer the server's pings themselves and never show them, or their absence,
    /// to page code: a page whose network went away keeps an "open" WebSocket for minutes. A
    /// heartbeat is a message page code does see, so a client that hears nothing for a while
    /// knows the connection is dead and reconnects: wsock's client does, with its `heartbeat`
    /// option (set it to two intervals or more). An empty text message can never be JSON, so
    /// no JSON message is mistaken for one; a client that is not wsock's sees an empty text
    /// message each interval, and ignores it, or fails to decode it where it expects JSON.
    /// Turn it on only for servers whose clients expect it; an endpoint whose clients do not
    /// opts out with `#[websocket("/feed", heartbeat = false)]`. It is sent whatever else the
    /// connection sends, at most once an interval (kept to a tick, see
    /// [`ping_interval`](Self::ping_interval)), and never after the close began.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wsock::Server;
    ///
    /// let server = Server::new().heartbeat(Duration::from_secs(15));
    /// ```
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.config.heartbeat = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// Also accepts upgrades from browser pages of this origin (`"https://app.example.com"`).
    ///
    /// By default a browser page may connect only if it was served by the same host the
    /// WebSocket request is sent to (its `Origin` matches `Host`); clients that send no
    /// `Origin` (not browsers) are always accepted. Other pages get 403: this stops a
    /// malicious site from using a visitor's cookies to open connections on their behalf.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into().trim_end_matches('/').to_owned();
        match &mut self.config.origins {
            Origins::List(list) => list.push(origin),
            Origins::Any => {}
            same_host => *same_host = Origins::List(vec![origin]),
        }
        self
    }

    /// Accepts upgrades from any browser page (a public API without cookies, say).
    pub fn allow_any_origin(mut self) -> Self {
        self.config.origins = Origins::Any;
        self
    }

    /// Compression (permessage-deflate) for clients that offer it: on by default, with
    /// [`Compression::default`](crate::Compression); [`Compression::off`](crate::Compression::off)
    /// declines every offer. An endpoint can refuse it with `compress = false`.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.config.compression = compression;
        self
    }

    /// Accepts requests whose `Host` names `host` (`"chat.example.com"`; a port is ignored),
    /// on top of the names accepted by default.
    ///
    /// By default a server that listens on a loopback address (`127.0.0.1`, `[::1]`) answers
    /// only requests for `localhost` (and `*.localhost`) or an IP address, and refuses others
    /// with 403: a web page whose DNS name is re-pointed at 127.0.0.1 (DNS rebinding) could
    /// otherwise reach a server meant for this machine alone, and the origin check, which
    /// compares `Origin` with `Host`, would let it in. Behind a reverse proxy on the same
    /// machine, allow the public name here. Once a name is allowed, the check applies
    /// wherever the server listens. A tower [`Service`](crate::WsService) has no listening
    /// address: it applies the loopback rule to requests whose peer is a loopback address
    /// (known with axum's `ConnectInfo`).
    pub fn allow_host(mut self, host: impl AsRef<str>) -> Self {
        let name = checks::host_name(host.as_ref());
        match &mut self.config.hosts {
            Hosts::List(list) => list.push(name),
            Hosts::Any => {}
            auto => *auto = Hosts::List(vec![name]),
        }
        self
    }

    /// Answers requests whatever their `Host` names, even on a loopback address (see
    /// [`Server::allow_host`]).
    pub fn allow_any_host(mut self) -> Self {
        self.config.hosts = Hosts::Any;
        self
    }

    /// Serves over TLS: wss:// for the endpoints, https:// for pages and the dev console
    /// (the `tls` feature). See [`Tls`](crate::Tls).
    #[cfg(feature = "tls")]
    ///
    /// Session cookies issued through [`Server::sessions`] are then `Secure`, unless the key
    /// says otherwise ([`SessionKey::secure`]).
    pub fn tls(mut self, tls: crate::tls::Tls) -> Self {
        self.sessions.set_over_tls(true);
        self.tls = Some(tls);
        self
    }

    /// The server's topics, to publish from outside any endpoint: a spawned task, an axum
    /// handler. Endpoints take them as a parameter (`topics: Topics`).
    ///
    /// ```
    /// # use wsock::prelude::*;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let server = Server::new();
    /// let news = server.topics().topic::<String>("news");
    /// tokio::spawn(async move {
    ///     // Every connection subscribed to "news" gets it, on every node.
    ///     news.publish("extra, extra").ok();
    /// });
    /// # }
    /// ```
    pub fn topics(&self) -> Topics {
        self.topics.clone()
    }

    /// Links the server's topics to other nodes through `broker` (`wsock_redis::Redis`): a
    /// message published on any node reaches the subscribers of every node. Without a broker,
    /// topics reach this process only.
    ///
    /// # Panics
    /// If the server has a broker already.
    pub fn broker(self, broker: impl Broker) -> Self {
        self.topics.set_broker(Arc::new(broker));
        self
    }

    /// How much history the topics that `resume = true` endpoints subscribe to keep, and how
    /// much one resume may replay (see the README's "Resume"). The default,
    /// `History::default()`, keeps each such topic's last 256 messages of the last 5
    /// minutes, up to 1 MiB, all topics' together up to 64 MiB, and replays up to 256.
    pub fn history(self, history: History) -> Self {
        self.topics.set_history(history);
        self
    }

    /// A handle that shuts the server down gracefully, wherever it serves: the built-in
    /// server, or a [`Service`](crate::WsService) inside another one.
    pub fn handle(&self) -> Handle {
        Handle::new(&self.registry, self.config.shutdown_timeout)
    }

    /// Binds the address; the returned [`Bound`] tells the real address (for port 0) and
    /// serves when awaited through [`Bound::run`].
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Bound> {
        let mut failed = None;
        for addr in tokio::net::lookup_host(addr).await? {
            match listen::listen_on(addr) {
                Ok(listener) => {
                    let mut bound = self.listen(listener)?;
                    bound.nodelay_inherited = cfg!(target_os = "linux");
                    return Ok(bound);
                }
                Err(err) => failed = Some(err),
            }
        }
        Err(failed.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to no address",
            )
        }))
    }

    /// Serves on a listener bound by the caller.
    pub fn listen(mut self, listener: TcpListener) -> io::Result<Bound> {
        let addr = listener.local_addr()?;
        let transport = self.transport();
        let scheme = if matches!(transport, Transport::Plain) {
            "http"
        } else {
            "https"
        };
        self.log_startup(&format!("{scheme}://{addr}"));
        Ok(Bound {
            listener,
            nodelay_inherited: false,
            addr,
            transport,
            app: self.into_app(),
        })
    }

    #[cfg(feature = "tls")]
    fn transport(&mut self) -> Transport {
        match self.tls.take() {
            Some(tls) => Transport::Tls(tls.acceptor()),
            None => Transport::Plain,
        }
    }

    #[cfg(not(feature = "tls"))]
    fn transport(&mut self) -> Transport {
        Transport::Plain
    }

    /// Warns about a server with nothing to serve, and logs the dev console's URLs.
    pub(crate) fn log_startup(&self, base: &str) {
        if self.router.is_empty() && self.pages.is_empty() {
            tracing::warn!("the server has no endpoints: every request gets 404");
        }
        if self.config.dev_console {
            for (path, name) in self.router.paths() {
                if self.pages.contains(path) {
                    continue;
                }
                let hint = if path.contains('{') {
                    " (with the {parameters} filled in)"
                } else {
                    ""
                };
                tracing::info!(endpoint = name, "dev console at {base}{path}{hint}");
            }
        }
    }

    /// Every path the server answers: its endpoints' patterns, its pages, and the client's
    /// module when it serves it.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn paths(&self) -> Vec<&'static str> {
        let mut paths: Vec<_> = self.router.paths().map(|(path, _)| path).collect();
        paths.extend(self.pages.paths());
        #[cfg(feature = "prometheus")]
        paths.extend(self.metrics.as_ref().map(|(path, _)| *path));
        if self.config.client_module || self.config.dev_console {
            paths.push(crate::pages::CLIENT_PATH);
        }
        paths.sort_unstable();
        paths.dedup();
        paths
    }

    pub(crate) fn into_app(self) -> Arc<App> {
        #[cfg(feature = "contract")]
        let contract = self
            .config
            .dev_console
            .then(|| crate::asyncapi::Contract::of(&self.described).asyncapi_json());
        #[cfg(not(feature = "contract"))]
        let contract = None;
        Arc::new(App {
            contract,
            router: self.router,
            pages: self.pages,
            config: self.config,
            context: Arc::new(Context {
                states: self.states,
                sessions: self.sessions,
                topics: self.topics,
            }),
            registry: self.registry,
            #[cfg(feature = "prometheus")]
            metrics: self.metrics,
        })
    }

    /// Binds the address and serves until Ctrl-C, then shuts down gracefully: every
    /// connection is closed with 1001 and its `on_close` runs. A second Ctrl-C while they
    /// close drops the remaining ones at once, and `serve` returns.
    pub async fn serve(self, addr: impl ToSocketAddrs) -> io::Result<()> {
        // Ctrl-C is caught from before the server listens: a client that connects at once and
        // is followed by a Ctrl-C still gets its 1001, not a killed process.
        let ctrl_c = crate::listen::ctrl_c();
        let bound = self.bind(addr).await?;
        tracing::info!(addr = %bound.local_addr(), "wsock listening");
        // Made when the first Ctrl-C came (the hurry is polled only after it), so it waits
        // for the next one.
        let again = async { crate::listen::ctrl_c().await };
        bound.run_until_hurried(ctrl_c, again).await
    }
}
