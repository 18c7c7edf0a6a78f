//! wsock's own message types and the codec traits that map them to Rust types.
//!
//! Payloads are `Bytes`: a received message shares the buffer it was read into, and a message
//! sent to many connections shares one buffer among all of them.

use std::fmt;

use bytes::Bytes;

use crate::error::Error;

/// A data message as received or sent: text or binary.
///
/// Use it as the `on_message` type of an endpoint that takes both kinds:
///
/// ```
/// use wsock::Message;
///
/// fn describe(message: &Message) -> String {
///     match message {
///         Message::Text(text) => format!("text: {text}"),
///         Message::Binary(bytes) => format!("{} bytes", bytes.len()),
///     }
/// }
/// assert_eq!(describe(&Message::text("hi")), "text: hi");
/// assert_eq!(describe(&Message::binary(vec![1, 2, 3])), "3 bytes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (always valid UTF-8).
    Text(Text),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Text>) -> Self {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Message::Binary(bytes.into())
    }

    /// The payload's bytes, whatever the kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_str().as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }
}

/// The payload of a text message: UTF-8 text that shares the received frame's buffer.
///
/// Dereferences to `str`; converting into a `String` copies. As the `on_message` type it
/// hands the frame's text over without a copy, and `Out<Text>` sends it back the same way:
///
/// ```no_run
/// use wsock::prelude::*;
/// use wsock::Text;
///
/// #[websocket("/shout")]
/// fn shout(out: Out<Text>) {
///     on_message(|text: Text| {
///         if text.ends_with('!') {
///             out.write(text); // no copy
///         } else {
///             out.write(Text::from(format!("{text}!")));
///         }
///     });
/// }
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Bytes);

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: a `Text` holds UTF-8 only: every constructor checks it or takes a `str`.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The text's bytes, shared (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Text from bytes already checked to be UTF-8.
    pub(crate) fn from_utf8_unchecked(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Text(bytes)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text(Bytes::from(text))
    }
}

impl TryFrom<Bytes> for Text {
    type Error = std::str::Utf8Error;

    /// Text from bytes that must be UTF-8; no copy.
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<Text> for String {
    fn from(text: Text) -> Self {
        text.as_str().to_owned()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A WebSocket close code (RFC 6455 §7.4).
///
/// ```
/// use wsock::CloseCode;
/// assert_eq!(u16::from(CloseCode::NORMAL), 1000);
/// assert_eq!(CloseCode::from(4000).as_u16(), 4000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled (`out.close()`, a client's close).
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is shutting down, or the browser left the page.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: a message of a kind the endpoint does not accept (binary on a text endpoint).
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no code was given (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection dropped without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a payload that does not decode (invalid UTF-8, bad JSON).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a policy violation, such as a client too slow to read what it is sent.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message over the size limit.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: an error or panic in endpoint code.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl PartialEq<u16> for CloseCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An inbound message that the section's message type cannot accept.
///
/// Without an `on_error` section the connection is closed with [`DecodeError::close_code`]
/// (1003 for a frame of the wrong kind, 1007 for a payload that does not decode) and the
/// message as the close reason.
///
/// ```no_run
/// use wsock::prelude::*;
///
/// /// Answers bad JSON with an explanation instead of closing.
/// #[websocket("/numbers")]
/// fn numbers(out: Out<String>) {
///     on_message(|Json(numbers): Json<Vec<i64>>| out.write(numbers.iter().sum::<i64>().to_string()));
///     on_error(|error: DecodeError| {
///         out.write(format!("could not read that ({}): {error}", error.close_code()));
///     });
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    code: CloseCode,
    message: String,
}

impl DecodeError {
    /// A frame of the wrong kind: binary where text is expected, or the reverse (1003).
    pub fn wrong_kind(message: impl Into<String>) -> Self {
        DecodeError {
            code: CloseCode::UNSUPPORTED,
            message: message.into(),
        }
    }

    /// A payload of the right kind that does not decode (1007).
    pub fn invalid(message: impl Into<String>) -> Self {
        DecodeError {
            code: CloseCode::INVALID_PAYLOAD,
            message: message.into(),
        }
    }

    /// The close code the connection gets when no `on_error` section handles this error.
    pub fn close_code(&self) -> CloseCode {
        self.code
    }

    /// What was wrong, as sent in the close reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// A type that an `on_message` section can receive.
///
/// Implemented for `String` and [`Text`] (text frames), `Vec<u8>` and `Bytes` (binary frames),
/// [`Json<T>`] (text frames holding JSON) and [`Message`] (either). A frame of the wrong kind,
/// or a payload that does not decode, is a [`DecodeError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be received as a websocket message",
    label = "not a websocket message type",
    note = "use `String`, `Vec<u8>`, `wsock::Bytes`, `wsock::Json<T>` or `wsock::Message`"
)]
pub trait FromMessage: Sized + Send + 'static {
    /// The largest message an endpoint whose `on_message` takes this type accepts, when
    /// neither the endpoint (`max_message_size = ".."`) nor the server
    /// ([`Server::max_message_size`](crate::Server::max_message_size)) sets one; `None` for
    /// the server's default, 16 MiB. [`Json<T>`] says 64 KiB.
    const MAX_MESSAGE_SIZE: Option<usize> = None;

    /// Converts a received message, or says why it cannot.
    fn from_message(message: Message) -> Result<Self, DecodeError>;
}

/// A type that [`Out`](crate::Out) can send.
///
/// Implemented for `String`, `&'static str` and [`Text`] (text frames), `Vec<u8>` and `Bytes`
/// (binary frames), [`Json<T>`] (text frames holding JSON) and [`Message`] (either).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent as a websocket message",
    label = "not a websocket message type",
    note = "use `String`, `Vec<u8>`, `wsock::Bytes`, `wsock::Json<T>` or `wsock::Message`"
)]
pub trait IntoMessage: Send + 'static {
    /// Converts into the message to send, or says why it cannot (a value that does not
    /// serialize): the connection is then closed with 1011.
    fn into_message(self) -> Result<Message, Error>;
}

fn expected_text() -> DecodeError {
    DecodeError::wrong_kind("expected a text message, got a binary one")
}

fn expected_binary() -> DecodeError {
    DecodeError::wrong_kind("expected a binary message, got a text one")
}

impl FromMessage for Message {
    fn from_message(message: Message) -> Result<Self, DecodeError> {
        Ok(message)
    }
}

impl FromMessage for Text {
    fn from_message(message: Message) -> Result<Self, DecodeError> {
        match message {
            Message::Text(text) => Ok(text),
            Message::Binary(_) => Err(expected_text()),
        }
    }
}

impl FromMessage for String {
    fn from_message(message: Message) -> Result<Self, DecodeError> {
        Text::from_message(message).map(String::from)
    }
}

impl FromMessage for Bytes {
    fn from_message(message: Message) -> Result<Self, DecodeError> {
        match message {
            Message::Binary(bytes) => Ok(bytes),
            Message::Text(_) => Err(expected_binary()),
        }
    }
}

impl FromMessage for Vec<u8> {
    fn from_message(message: Message) -> Result<Self, DecodeError> {
        Bytes::from_message(message).map(Vec::from)
    }
}

impl IntoMessage for Message {
    fn into_message(self) -> Result<Message, Error> {
        Ok(self)
    }
}

impl IntoMessage for Text {
    fn into_message(self) -> Result<Message, Error> {
        Ok(Message::Text(self))
    }
}

impl IntoMessage for String {
    fn into_message(self) -> Result<Message, Error> {
        Ok(Message::Text(self.into()))
    }
}

impl IntoMessage for &'static str {
    fn into_message(self) -> Result<Message, Error> {
        Ok(Message::Text(Text(Bytes::from_static(self.as_bytes()))))
    }
}

impl IntoMessage for Bytes {
    fn into_message(self) -> Result<Message, Error> {
        Ok(Message::Binary(self))
    }
}

impl IntoMessage for Vec<u8> {
    fn into_message(self) -> Result<Message, Error> {
        Ok(Message::Binary(self.into()))
    }
}

/// A message holding JSON: `Json<T>` receives text frames that deserialize as `T` and sends
/// `T` serialized, as a text frame (serde).
///
/// A binary frame closes the connection with 1003, text that is not a `T` with 1007 (the close
/// reason says what was wrong), unless an `on_error` section takes them. An endpoint whose
/// `on_message` takes `Json<T>` accepts messages of up to 64 KiB, unless the endpoint
/// (`max_message_size = ".."`) or the server sets a limit: a larger one closes with 1009.
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use wsock::prelude::*;
///
/// #[derive(Deserialize)]
/// #[serde(tag = "op", rename_all = "snake_case")]
/// enum Command {
///     Add { a: i64, b: i64 },
///     Negate { x: i64 },
/// }
///
/// #[derive(Serialize)]
/// struct Answer {
///     result: i64,
/// }
///
/// // {"op":"add","a":2,"b":3} gets {"result":5}
/// #[websocket("/calc")]
/// fn calc(out: Out<Json<Answer>>) {
///     on_message(|Json(command): Json<Command>| {
///         let result = match command {
///             Command::Add { a, b } => a + b,
///             Command::Negate { x } => -x,
///         };
///         out.write(Json(Answer { result }));
///     });
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Json<T>(pub T);

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + Send + 'static> FromMessage for Json<T> {
    /// JSON protocols send small messages (a command, a vote, a chat line): 64 KiB holds a
    /// thousand times more, and keeps what one client can make the server buffer and parse
    /// small. Set `max_message_size` on the endpoint or the server for larger documents.
    const MAX_MESSAGE_SIZE: Option<usize> = Some(64 << 10);

    fn from_message(message: Message) -> Result<Self, DecodeError> {
        match message {
            Message::Text(text) => serde_json::from_str(text.as_str())
                .map(Json)
                .map_err(|error| DecodeError::invalid(format!("invalid JSON: {error}"))),
            Message::Binary(_) => Err(DecodeError::wrong_kind(
                "expected a JSON text message, got a binary one",
            )),
        }
    }
}

impl<T: serde::Serialize + Send + 'static> IntoMessage for Json<T> {
    fn into_message(self) -> Result<Message, Error> {
        Ok(Message::Text(serde_json::to_string(&self.0)?.into()))
    }
}
