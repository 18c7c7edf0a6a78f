//! Play's session: a string map in a cookie signed with the server's secret.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie::{Cookie, CookieBuilder, CookieJar, Key};
use http::HeaderMap;

/// The session cookie's name. A `Secure` session cookie is named `__Host-WSOCK_SESSION`
/// instead: browsers then accept it only from this very host over https, so a sibling
/// subdomain cannot plant one of its own.
pub const SESSION_COOKIE: &str = "WSOCK_SESSION";

/// The name of a `Secure` session cookie.
const SECURE_SESSION_COOKIE: &str = "__Host-WSOCK_SESSION";

/// Starts every signed session value, so that no other value signed with the same key is
/// taken for a session. The value goes on with the expiry (seconds since 1970), a `:`, and
/// the data as a query string.
const SIGNED_PREFIX: &str = "wsock-session:";

/// The session: a string map the client keeps in a cookie signed by the server, as in Play.
///
/// Take it as an endpoint parameter (`session: Session`) to read who the client is. The
/// signature is checked with the server's [`SessionKey`]: a missing, malformed, tampered,
/// foreign or expired cookie gives an empty session, never an error (and a `debug` log).
///
/// In an endpoint the session is read-only: it came with the upgrade request, and nothing
/// an endpoint does reaches the client's cookie (a `mut session: Session` parameter is a
/// compile error that says so). A login route, or a test, issues the cookie with
/// [`SessionKey::cookie`] or the server's [`Sessions::cookie`], and a logout route removes
/// it with `clear_cookie`:
///
/// ```
/// use wsock::{Session, SessionKey};
///
/// let key = SessionKey::derive_from(b"a secret of at least thirty-two bytes");
/// let mut session = Session::new();
/// session.insert("user", "ada");
/// let set_cookie = key.cookie(&session); // the value of a `Set-Cookie` header
/// assert!(set_cookie.starts_with("WSOCK_SESSION="));
/// // The server built with `Server::new().session_key(key)` reads `user` = `ada` back.
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Session {
    data: BTreeMap<String, String>,
}

impl Session {
    /// An empty session.
    pub fn new() -> Self {
        Session::default()
    }

    /// A value of the session.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// Sets a value, for a session to issue as a cookie ([`SessionKey::cookie`]).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.data.insert(key.into(), value.into());
    }

    /// Removes a value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.data.remove(key)
    }

    /// Every `(key, value)` pair, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.data
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// Whether the session holds nothing (as it does when the cookie is missing or invalid).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.data.len()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Session {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Session {
            data: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The `SameSite` attribute of the session cookie: when a browser sends it along with a request
/// that another site started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// Only with requests this site starts.
    Strict,
    /// Also when the user follows a link from another site (the default): a WebSocket that
    /// another site's page opens gets no cookie either way.
    Lax,
    /// With every request, from any site; browsers then require `Secure`, which the cookie
    /// gets whatever [`SessionKey::secure`] says.
    None,
}

/// How long a session lasts by default: 14 days.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 3600);

/// The key that signs and verifies session cookies (HMAC-SHA256), and how the cookie is
/// issued: its lifetime and the attributes browsers read.
///
/// Give the same key to the server ([`Server::session_key`](crate::Server::session_key), or
/// [`Server::secret`](crate::Server::secret)) and to whatever issues the cookies, or issue
/// them through the server's own [`Sessions`](crate::Sessions) handle.
///
/// Each cookie carries its expiry inside what is signed, and the server refuses it after that
/// (an empty session), whatever the browser does with `Max-Age`: a copied cookie stops
/// working when it expires, not only when the key changes.
///
/// ```no_run
/// use std::time::Duration;
/// use wsock::{SameSite, Server, Session, SessionKey};
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let key = SessionKey::derive_from(std::env::var("WSOCK_SECRET")?)
///     .max_age(Duration::from_secs(8 * 3600)) // a working day
///     .same_site(SameSite::Strict)
///     .secure(true); // the site is served over https (TLS in front of this process)
/// // A login route sets this header once the user is known:
/// let set_cookie = key.cookie(&[("user", "ada")].into_iter().collect::<Session>());
/// # let _ = set_cookie;
/// let server = Server::new().session_key(key);
/// # let _ = server; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionKey {
    key: Key,
    max_age: Duration,
    same_site: SameSite,
    /// `None`: decided by where the cookie is issued (see [`SessionKey::secure`]).
    secure: Option<bool>,
}

impl SessionKey {
    /// Derives a key from a secret of at least 32 bytes (keep it out of the source code: an
    /// environment variable or a secrets store).
    ///
    /// # Panics
    /// If the secret is shorter than 32 bytes.
    pub fn derive_from(secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        assert!(
            secret.len() >= 32,
            "a session secret needs at least 32 bytes, this one has {}",
            secret.len()
        );
        SessionKey::with_key(Key::derive_from(secret))
    }

    /// A random key: sessions signed with it do not survive a restart of the process.
    pub fn generate() -> Self {
        SessionKey::with_key(Key::generate())
    }

    fn with_key(key: Key) -> Self {
        SessionKey {
            key,
            max_age: DEFAULT_MAX_AGE,
            same_site: SameSite::Lax,
            secure: None,
        }
    }

    /// How long a session issued with this key lasts: the cookie's `Max-Age`, and the expiry
    /// signed into it, which the server enforces. Default: 14 days.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The cookie's `SameSite` attribute. Default: [`SameSite::Lax`].
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Whether the cookie has the `Secure` attribute (browsers then send it over https and
    /// wss only). When not set: on for the cookies of a server that serves TLS itself
    /// ([`Sessions::cookie`](crate::Sessions::cookie) after `Server::tls`), off for
    /// [`SessionKey::cookie`], which cannot know: behind a TLS proxy, say `secure(true)`.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = Some(secure);
        self
    }

    /// The `Set-Cookie` header value that gives a client this session:
    /// `WSOCK_SESSION=..; HttpOnly; SameSite=Lax; Path=/; Max-Age=1209600` (and `Secure` when
    /// the key says so).
    pub fn cookie(&self, session: &Session) -> String {
        self.issue(session, false, SystemTime::now())
    }

    /// The `Set-Cookie` header value that removes the session cookie from a browser (at
    /// logout): an empty value that expired long ago, with the same path and attributes.
    pub fn clear_cookie(&self) -> String {
        self.clear(false)
    }

    /// The session in a request's `Cookie` headers, checked as the server checks it: empty if
    /// there is none, or it is not valid or has expired. For HTTP routes beside the endpoints
    /// (an axum handler's `HeaderMap`).
    pub fn read(&self, headers: &HeaderMap) -> Session {
        let cookies = headers.get_all(http::header::COOKIE).iter();
        self.verify(cookies.filter_map(|v| v.to_str().ok()), SystemTime::now())
    }

    /// Whether the cookie is `Secure`, where the issuer knows whether TLS is served.
    fn is_secure(&self, over_tls: bool) -> bool {
        self.same_site == SameSite::None || self.secure.unwrap_or(over_tls)
    }

    /// The cookie's name: with the `__Host-` prefix when it is `Secure`.
    fn name(&self, over_tls: bool) -> &'static str {
        if self.is_secure(over_tls) {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    fn attributes<'c>(&self, cookie: CookieBuilder<'c>, over_tls: bool) -> CookieBuilder<'c> {
        let same_site = match self.same_site {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::None => cookie::SameSite::None,
        };
        cookie
            .path("/")
            .http_only(true)
            .same_site(same_site)
            .secure(self.is_secure(over_tls))
    }

    fn issue(&self, session: &Session, over_tls: bool, now: SystemTime) -> String {
        let data = serde_urlencoded::to_string(&session.data)
            .expect("a map of strings always encodes as a query string");
        let expires = now
            .checked_add(self.max_age)
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(u64::MAX, |since| since.as_secs());
        let value = format!("{SIGNED_PREFIX}{expires}:{data}");
        let max_age = i64::try_from(self.max_age.as_secs()).unwrap_or(i64::MAX);
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(
            self.attributes(Cookie::build((self.name(over_tls), value)), over_tls)
                .max_age(cookie::time::Duration::seconds(max_age)),
        );
        let cookie = jar
            .get(self.name(over_tls))
            .expect("the cookie was just added");
        cookie.encoded().to_string()
    }

    fn clear(&self, over_tls: bool) -> String {
        let cookie = self
            .attributes(Cookie::build((self.name(over_tls), "")), over_tls)
            .max_age(cookie::time::Duration::ZERO)
            .expires(cookie::time::OffsetDateTime::UNIX_EPOCH)
            .build();
        cookie.encoded().to_string()
    }

    /// Reads the session from `Cookie` header values; anything wrong gives an empty session.
    fn verify<'a>(
        &self,
        cookie_headers: impl Iterator<Item = &'a str>,
        now: SystemTime,
    ) -> Session {
        self.verify_as(cookie_headers, now, false)
    }

    /// `verify`, for an issuer that serves TLS (`over_tls`) or not: the cookie's name says
    /// which it is.
    fn verify_as<'a>(
        &self,
        cookie_headers: impl Iterator<Item = &'a str>,
        now: SystemTime,
        over_tls: bool,
    ) -> Session {
        let name = self.name(over_tls);
        // A request may carry several cookies of this name (another path or domain, or one
        // planted by a sibling site): the first that verifies counts.
        let mut seen = false;
        for cookie in cookie_headers
            .flat_map(Cookie::split_parse_encoded)
            .flatten()
        {
            if cookie.name() != name {
                continue;
            }
            seen = true;
            let mut jar = CookieJar::new();
            jar.add_original(cookie.into_owned());
            let Some(verified) = jar.signed(&self.key).get(name) else {
                continue;
            };
            // The prefix binds the signature to sessions: another cookie signed with the
            // same key cannot pass for one.
            let Some(rest) = verified.value().strip_prefix(SIGNED_PREFIX) else {
                continue;
            };
            let Some((expires, data)) = rest
                .split_once(':')
                .and_then(|(expires, data)| Some((expires.parse::<u64>().ok()?, data)))
            else {
                continue;
            };
            let now = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            if now >= expires {
                tracing::debug!("expired session cookie: empty session");
                continue;
            }
            match serde_urlencoded::from_str(data) {
                Ok(data) => return Session { data },
                Err(error) => tracing::debug!(%error, "malformed session cookie"),
            }
        }
        if seen {
            tracing::debug!(
                "no valid session cookie (bad signature, format or expired): empty session"
            );
        }
        Session::new()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("max_age", &self.max_age)
            .field("same_site", &self.same_site)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

/// A server's sessions: its key and cookie settings, to issue, clear and read session cookies
/// in HTTP routes exactly as the server's endpoints check them (`Server::sessions()`).
///
/// It follows the server's configuration, whenever that is set: its key
/// ([`Server::session_key`](crate::Server::session_key) or a random one) and whether the
/// server serves TLS (then cookies are `Secure` unless the key says otherwise).
///
/// ```
/// use wsock::prelude::*;
///
/// # #[websocket("/me")] fn me(out: Out<String>, session: Session) {
/// #     out.write(session.get("user").unwrap_or("nobody").to_owned());
/// # }
/// let server = Server::new().secret([7u8; 32]).route(me);
/// let sessions = server.sessions();
/// // In a login route:
/// let set_cookie = sessions.cookie(&[("user", "ada")].into_iter().collect());
/// assert!(set_cookie.starts_with("WSOCK_SESSION="));
/// // In a logout route:
/// assert!(sessions.clear_cookie().contains("Max-Age=0"));
/// ```
#[derive(Clone)]
pub struct Sessions {
    shared: Arc<SessionsShared>,
}

struct SessionsShared {
    key: RwLock<SessionKey>,
    /// No key was given: a random one is used, with a warning the first time.
    random: AtomicBool,
    warned: AtomicBool,
    /// The server serves TLS itself.
    over_tls: AtomicBool,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            shared: Arc::new(SessionsShared {
                key: RwLock::new(SessionKey::generate()),
                random: AtomicBool::new(true),
                warned: AtomicBool::new(false),
                over_tls: AtomicBool::new(false),
            }),
        }
    }
}

impl Sessions {
    /// The `Set-Cookie` header value that gives a client this session (see
    /// [`SessionKey::cookie`]); `Secure` when the server serves TLS, unless the key says.
    pub fn cookie(&self, session: &Session) -> String {
        self.with_key(|key| key.issue(session, self.over_tls(), SystemTime::now()))
    }

    /// The `Set-Cookie` header value that removes the session cookie (at logout).
    pub fn clear_cookie(&self) -> String {
        self.with_key(|key| key.clear(self.over_tls()))
    }

    /// The session in a request's `Cookie` headers, as the server's endpoints see it.
    pub fn read(&self, headers: &HeaderMap) -> Session {
        let cookies = headers.get_all(http::header::COOKIE).iter();
        self.verify(cookies.filter_map(|v| v.to_str().ok()))
    }

    pub(crate) fn set_key(&self, key: SessionKey) {
        *self
            .shared
            .key
            .write()
            .unwrap_or_else(PoisonError::into_inner) = key;
        self.shared.random.store(false, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn set_over_tls(&self, over_tls: bool) {
        self.shared.over_tls.store(over_tls, Ordering::Relaxed);
    }

    fn over_tls(&self) -> bool {
        self.shared.over_tls.load(Ordering::Relaxed)
    }

    fn with_key<R>(&self, f: impl FnOnce(&SessionKey) -> R) -> R {
        f(&self
            .shared
            .key
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the session from `Cookie` header values, warning once when the key is random.
    pub(crate) fn verify<'a>(&self, cookie_headers: impl Iterator<Item = &'a str>) -> Session {
        let shared = &self.shared;
        if shared.random.load(Ordering::Relaxed) && !shared.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "no session secret set (Server::secret): sessions are checked with a random key, \
                 so no cookie issued elsewhere or before a restart is accepted"
            );
        }
        let over_tls = self.over_tls();
        self.with_key(|key| key.verify_as(cookie_headers, SystemTime::now(), over_tls))
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_key(|key| {
            f.debug_struct("Sessions")
                .field("key", key)
                .field("over_tls", &self.over_tls())
                .finish()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(pairs: &[(&str, &str)]) -> Session {
        pairs.iter().copied().collect()
    }

    fn cookie_header(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn a_cookie_round_trips() {
        let key = SessionKey::derive_from([7u8; 32]);
        let original = session(&[("user", "ada"), ("role", "admin & co=1")]);
        let header = cookie_header(&key.cookie(&original));
        assert_eq!(
            key.verify([header.as_str()].into_iter(), SystemTime::now()),
            original
        );
        // Among other cookies, in any header.
        let headers = ["theme=dark", &format!("a=b; {header}; c=d")];
        assert_eq!(
            key.verify(headers.iter().copied(), SystemTime::now()),
            original
        );
    }

    #[test]
    fn a_bad_cookie_gives_an_empty_session() {
        let key = SessionKey::derive_from([7u8; 32]);
        let header = cookie_header(&key.cookie(&session(&[("user", "ada")])));
        let tampered = header.replace("ada", "eve");
        assert_ne!(tampered, header);
        let foreign =
            cookie_header(&SessionKey::derive_from([8u8; 32]).cookie(&session(&[("user", "ada")])));
        for bad in [
            tampered.as_str(),
            &foreign,
            "WSOCK_SESSION=garbage",
            "WSOCK_SESSION=",
            "",
        ] {
            assert!(
                key.verify([bad].into_iter(), SystemTime::now()).is_empty(),
                "{bad}"
            );
        }
        assert!(key.verify(std::iter::empty(), SystemTime::now()).is_empty());
        // A bad cookie of the same name does not hide a good one, before or after it.
        let both = format!("WSOCK_SESSION=garbage; {header}");
        assert_eq!(
            key.verify([both.as_str()].into_iter(), SystemTime::now())
                .get("user"),
            Some("ada")
        );
        let both = format!("{header}; WSOCK_SESSION=garbage");
        assert_eq!(
            key.verify([both.as_str()].into_iter(), SystemTime::now())
                .get("user"),
            Some("ada")
        );
    }

    #[test]
    fn another_cookie_signed_with_the_key_is_not_a_session() {
        let key = SessionKey::derive_from([7u8; 32]);
        let mut jar = CookieJar::new();
        jar.signed_mut(&key.key)
            .add(Cookie::new(SESSION_COOKIE, "user=ada"));
        let forged = jar.get(SESSION_COOKIE).unwrap().encoded().to_string();
        assert!(
            key.verify([forged.as_str()].into_iter(), SystemTime::now())
                .is_empty()
        );
    }

    /// The expiry is inside what is signed: past it the cookie is no session, whatever the
    /// browser keeps; and a cookie without one (or with one edited) is none either.
    #[test]
    fn an_expired_cookie_gives_an_empty_session() {
        let hour = Duration::from_secs(3600);
        let key = SessionKey::derive_from([7u8; 32]).max_age(hour);
        let ada = session(&[("user", "ada")]);
        let issued = SystemTime::now();
        let header = cookie_header(&key.issue(&ada, false, issued));
        let read_at = |at: SystemTime| key.verify([header.as_str()].into_iter(), at);
        assert_eq!(read_at(issued), ada);
        assert_eq!(read_at(issued + hour - Duration::from_secs(2)), ada);
        assert!(read_at(issued + hour + Duration::from_secs(1)).is_empty());

        // Signed by the key, but without an expiry (as cookies were once) or with one that
        // does not parse.
        for value in ["wsock-session:user=ada", "wsock-session:soon:user=ada"] {
            let mut jar = CookieJar::new();
            jar.signed_mut(&key.key)
                .add(Cookie::new(SESSION_COOKIE, value));
            let cookie = jar.get(SESSION_COOKIE).unwrap().encoded().to_string();
            assert!(
                key.verify([cookie.as_str()].into_iter(), issued).is_empty(),
                "{value}"
            );
        }
    }

    /// What a browser is told: lifetime, scope and attributes; and a clearing cookie that
    /// replaces it with nothing, already expired.
    #[test]
    fn the_cookie_says_how_long_where_and_how() {
        let ada = session(&[("user", "ada")]);
        let key = SessionKey::derive_from([7u8; 32]);
        let cookie = key.cookie(&ada);
        let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
        assert_eq!(
            attributes,
            ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1209600"],
            "{cookie}"
        );

        let strict = key
            .clone()
            .max_age(Duration::from_secs(60))
            .same_site(SameSite::Strict)
            .secure(true);
        let cookie = strict.cookie(&ada);
        for attribute in ["SameSite=Strict", "Secure", "Max-Age=60"] {
            assert!(cookie.split("; ").any(|a| a == attribute), "{cookie}");
        }
        // Browsers refuse `SameSite=None` without `Secure`.
        let cookie = key
            .clone()
            .same_site(SameSite::None)
            .secure(false)
            .cookie(&ada);
        assert!(cookie.split("; ").any(|a| a == "Secure"), "{cookie}");

        let cleared = key.clear_cookie();
        assert!(cleared.starts_with("WSOCK_SESSION=;"), "{cleared}");
        for attribute in [
            "Path=/",
            "Max-Age=0",
            "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        ] {
            assert!(cleared.split("; ").any(|a| a == attribute), "{cleared}");
        }
    }

    /// A server's sessions follow its key, set before or after the handle was taken, and its
    /// TLS: then cookies are `Secure`, unless the key says otherwise.
    #[test]
    fn the_servers_sessions_follow_its_key_and_its_tls() {
        let sessions = Sessions::default();
        let key = SessionKey::derive_from([7u8; 32]);
        sessions.set_key(key.clone());
        let ada = session(&[("user", "ada")]);
        let cookie = sessions.cookie(&ada);
        assert!(!cookie.contains("Secure"), "{cookie}");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            cookie_header(&cookie).parse().unwrap(),
        );
        assert_eq!(key.read(&headers), ada);
        assert_eq!(sessions.read(&headers), ada);

        sessions.set_over_tls(true);
        let secure = sessions.cookie(&ada);
        assert!(secure.starts_with("__Host-WSOCK_SESSION="), "{secure}");
        assert!(secure.contains("; Secure"), "{secure}");
        assert!(
            sessions
                .clear_cookie()
                .starts_with("__Host-WSOCK_SESSION=;")
        );
        // Over TLS only the `__Host-` cookie counts: a plain one (planted by a sibling
        // subdomain, or left from plain http) is no session.
        let mut secure_headers = HeaderMap::new();
        secure_headers.insert(
            http::header::COOKIE,
            cookie_header(&secure).parse().unwrap(),
        );
        assert_eq!(sessions.read(&secure_headers), ada);
        assert!(sessions.read(&headers).is_empty());
        sessions.set_key(key.secure(false));
        assert!(!sessions.cookie(&ada).contains("Secure"));
        assert_eq!(sessions.read(&headers), ada);
    }

    #[test]
    #[should_panic(expected = "at least 32 bytes")]
    fn a_short_secret_is_refused() {
        SessionKey::derive_from("short");
    }
}
