//! Play's session: a string map in a cookie signed with the server's secret.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use cookie::{Cookie, CookieJar, Key, SameSite};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "WSOCK_SESSION";

/// Starts every signed session value, so that no other value signed with the same key is
/// taken for a session.
const SIGNED_PREFIX: &str = "wsock-session:";

/// The session: a string map the client keeps in a cookie signed by the server, as in Play.
///
/// Take it as an endpoint parameter (`session: Session`) to read who the client is. The
/// signature is checked with the server's [`SessionKey`]: a missing, malformed, tampered or
/// foreign cookie gives an empty session, never an error (and a `debug` log).
///
/// A login page, or a test, issues the cookie with [`SessionKey::cookie`]:
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

    /// Sets a value (for issuing a cookie).
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

/// The key that signs and verifies session cookies (HMAC-SHA256).
///
/// Give the same key to the server ([`Server::session_key`](crate::Server::session_key), or
/// [`Server::secret`](crate::Server::secret)) and to whatever issues the cookies.
///
/// ```no_run
/// use wsock::{Server, Session, SessionKey};
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let key = SessionKey::derive_from(std::env::var("WSOCK_SECRET")?);
/// // A login page sets this header once the user is known:
/// let set_cookie = key.cookie(&[("user", "ada")].into_iter().collect::<Session>());
/// # let _ = set_cookie;
/// let server = Server::new().session_key(key);
/// # let _ = server; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SessionKey {
    key: Key,
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
        SessionKey {
            key: Key::derive_from(secret),
        }
    }

    /// A random key: sessions signed with it do not survive a restart of the process.
    pub fn generate() -> Self {
        SessionKey {
            key: Key::generate(),
        }
    }

    /// The `Set-Cookie` header value that gives a client this session: `WSOCK_SESSION=..;
    /// Path=/; HttpOnly; SameSite=Lax`.
    pub fn cookie(&self, session: &Session) -> String {
        let data = serde_urlencoded::to_string(&session.data)
            .expect("a map of strings always encodes as a query string");
        let value = format!("{SIGNED_PREFIX}{data}");
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key).add(
            Cookie::build((SESSION_COOKIE, value))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax),
        );
        let cookie = jar.get(SESSION_COOKIE).expect("the cookie was just added");
        cookie.encoded().to_string()
    }

    /// Reads the session from `Cookie` header values; anything wrong gives an empty session.
    pub(crate) fn verify<'a>(&self, cookie_headers: impl Iterator<Item = &'a str>) -> Session {
        // A request may carry several cookies of this name (another path or domain, or one
        // planted by a sibling site): the first that verifies counts.
        let mut seen = false;
        for cookie in cookie_headers
            .flat_map(Cookie::split_parse_encoded)
            .flatten()
        {
            if cookie.name() != SESSION_COOKIE {
                continue;
            }
            seen = true;
            let mut jar = CookieJar::new();
            jar.add_original(cookie.into_owned());
            let Some(verified) = jar.signed(&self.key).get(SESSION_COOKIE) else {
                continue;
            };
            // The prefix binds the signature to sessions: another cookie signed with the
            // same key cannot pass for one.
            let Some(data) = verified.value().strip_prefix(SIGNED_PREFIX) else {
                continue;
            };
            match serde_urlencoded::from_str(data) {
                Ok(data) => return Session { data },
                Err(error) => tracing::debug!(%error, "malformed session cookie"),
            }
        }
        if seen {
            tracing::debug!("no valid session cookie (bad signature or format): empty session");
        }
        Session::new()
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// The session key a server uses: the configured one, or a random one (with a warning the
/// first time a session is read).
pub(crate) struct ServerKey {
    key: SessionKey,
    random: bool,
    warned: AtomicBool,
}

impl ServerKey {
    pub(crate) fn new(key: Option<SessionKey>) -> Self {
        let random = key.is_none();
        ServerKey {
            key: key.unwrap_or_else(SessionKey::generate),
            random,
            warned: AtomicBool::new(false),
        }
    }

    /// The key, without the warning about a random one (for signing in the test kit).
    #[cfg_attr(not(feature = "test"), allow(dead_code))]
    pub(crate) fn key(&self) -> &SessionKey {
        &self.key
    }

    pub(crate) fn get(&self) -> &SessionKey {
        if self.random && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "no session secret set (Server::secret): sessions are checked with a random key, \
                 so no cookie issued elsewhere or before a restart is accepted"
            );
        }
        &self.key
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
        assert_eq!(key.verify([header.as_str()].into_iter()), original);
        // Among other cookies, in any header.
        let headers = ["theme=dark", &format!("a=b; {header}; c=d")];
        assert_eq!(key.verify(headers.iter().copied()), original);
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
            assert!(key.verify([bad].into_iter()).is_empty(), "{bad}");
        }
        assert!(key.verify(std::iter::empty()).is_empty());
        // A bad cookie of the same name does not hide a good one, before or after it.
        let both = format!("WSOCK_SESSION=garbage; {header}");
        assert_eq!(
            key.verify([both.as_str()].into_iter()).get("user"),
            Some("ada")
        );
        let both = format!("{header}; WSOCK_SESSION=garbage");
        assert_eq!(
            key.verify([both.as_str()].into_iter()).get("user"),
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
        assert!(key.verify([forged.as_str()].into_iter()).is_empty());
    }

    #[test]
    #[should_panic(expected = "at least 32 bytes")]
    fn a_short_secret_is_refused() {
        SessionKey::derive_from("short");
    }
}
