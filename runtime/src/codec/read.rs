//! Reading: bytes from the socket in, events out (a whole data message, a ping, a pong, the
//! peer's close), with every check RFC 6455 and RFC 7692 ask for, made as early as the bytes
//! allow: a size limit from the frame header, before the payload is read; UTF-8 as each
//! piece of a text message arrives; inflation stopped at the message limit.
//!
//! The reader owns no socket: the connection feeds it what it read ([`Reader::feed`]), or
//! reads a large payload straight into the message ([`Reader::direct`], [`Reader::filled`]).

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::Role;
use crate::codec::deflate::{self, Contexts, Deflate, InflateError};
use crate::codec::frame::{Header, HeaderError, MAX_HEADER, OpCode, apply_mask, unmask};
use crate::codec::utf8::Utf8;
use crate::message::{CloseCode, Message, Text};

/// What a read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A whole data message.
    Message(Message),
    Ping(Bytes),
    Pong(Bytes),
    /// The peer's close frame: its code and reason, if it gave one.
    Close(Option<(CloseCode, String)>),
}

/// Why the connection must be failed, and with which close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// 1002.
    Protocol(&'static str),
    /// 1009.
    TooBig(&'static str),
    /// 1007.
    Invalid(&'static str),
}

impl ReadError {
    pub(crate) fn close(self) -> (CloseCode, &'static str) {
        match self {
            ReadError::Protocol(why) => (CloseCode::PROTOCOL, why),
            ReadError::TooBig(why) => (CloseCode::TOO_BIG, why),
            ReadError::Invalid(why) => (CloseCode::INVALID_PAYLOAD, why),
        }
    }
}

/// The largest incoming frame and message.
///
/// `max_message` is the message the endpoint receives: a compressed message is held to it
/// once inflated, and its compressed bytes on the wire (frames included) may take deflate's
/// overhead beyond the limits, so that a message that does not compress (a compressor then
/// stores it, a few bytes a block longer) passes exactly as it would uncompressed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_frame: usize,
    pub(crate) max_message: usize,
}

impl Limits {
    /// The largest frame, for the frames of a compressed message or not.
    fn frame(&self, compressed: bool) -> usize {
        with_overhead(self.max_frame, compressed)
    }

    /// The most bytes a message's frames carry in all, compressed or not.
    fn wire_message(&self, compressed: bool) -> usize {
        with_overhead(self.max_message, compressed)
    }
}

/// `limit`, plus deflate's worst overhead when `compressed`: zlib's bound for any settings
/// (`deflateBound` when the window or memory level is not the default: stored blocks, or
/// fixed codes at up to 9 bits a byte, 1/8 + 1/64 more), and room for empty flush blocks.
fn with_overhead(limit: usize, compressed: bool) -> usize {
    if !compressed {
        return limit;
    }
    limit
        .saturating_add(limit >> 3)
        .saturating_add(limit >> 6)
        .saturating_add(64)
}

pub(crate) struct Reader {
    /// Frames must be masked (the server's side); otherwise they must not be.
    masked: bool,
    head_len: u8,
    /// The start of a header that has not fully arrived.
    head: [u8; MAX_HEADER],
    limits: Limits,
    /// Compression agreed, with the decompressor it keeps between messages. Boxed: a
    /// connection without compression holds a null pointer.
    inflate: Option<Box<Inflate>>,
    /// A frame or message under way. Boxed and held only meanwhile: a connection between
    /// messages, or reading whole frames, holds a null pointer.
    partial: Option<Box<Partial>>,
}

struct Inflate {
    deflate: Deflate,
    contexts: Contexts,
}

#[derive(Default)]
struct Partial {
    /// The frame whose payload is being read.
    frame: Option<Frame>,
    /// The data message being assembled.
    message: Option<Assembly>,
    /// A control frame's payload so far.
    control: Vec<u8>,
}

struct Frame {
    header: Header,
    /// Payload bytes read so far.
    read: u64,
}

struct Assembly {
    text: bool,
    compressed: bool,
    /// The payload so far (compressed, for a compressed message).
    bytes: Vec<u8>,
    utf8: Utf8,
}

const INVALID_UTF8: ReadError = ReadError::Invalid("invalid UTF-8 in a text message");

impl Assembly {
    /// Checks the bytes from `start` on as they arrive, for an uncompressed text message (a
    /// compressed one is checked as it is inflated).
    fn check_utf8(&mut self, start: usize) -> Result<(), ReadError> {
        if self.text && !self.compressed {
            self.utf8
                .feed(&self.bytes[start..])
                .map_err(|_| INVALID_UTF8)?;
        }
        Ok(())
    }
}

/// The most a message's buffer grows ahead of its bytes: a header may announce a large frame
/// and then trickle, and memory follows the bytes, not the announcement.
const AHEAD: usize = 64 << 10;

impl Reader {
    /// Changes the message limit, before the first data frame is read.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    pub(crate) fn set_max_message(&mut self, max_message: usize) {
        self.limits.max_message = max_message;
    }

    pub(crate) fn new(role: Role, limits: Limits, deflate: Option<Deflate>) -> Self {
        let masked = role == Role::Server;
        Reader {
            masked,
            head_len: 0,
            head: [0; MAX_HEADER],
            limits,
            inflate: deflate.map(|deflate| {
                Box::new(Inflate {
                    deflate,
                    contexts: Contexts::default(),
                })
            }),
            partial: None,
        }
    }

    /// The frame under way, if any.
    fn frame(&self) -> Option<&Frame> {
        self.partial.as_ref()?.frame.as_ref()
    }

    /// The message being assembled, if any.
    fn message(&self) -> Option<&Assembly> {
        self.partial.as_ref()?.message.as_ref()
    }

    /// The state of a frame or message under way, made when one starts.
    fn partial(&mut self) -> &mut Partial {
        self.partial.get_or_insert_default()
    }

    /// Lets go of the state of frames and messages once none is under way.
    fn settle(&mut self) {
        if self
            .partial
            .as_ref()
            .is_some_and(|partial| partial.frame.is_none() && partial.message.is_none())
        {
            self.partial = None;
        }
    }

    /// Reads from `input` until an event is complete; returns how many bytes it took and the
    /// event, if one completed. Bytes of an unfinished frame are kept.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Incoming>), ReadError> {
        let mut at = 0;
        loop {
            if self.frame().is_none() {
                if self.head_len == 0
                    && let Some((taken, event)) = self.whole_frame(&input[at..])?
                {
                    return Ok((at + taken, Some(event)));
                }
                let Some(taken) = self.header(&input[at..])? else {
                    return Ok((input.len(), None));
                };
                at += taken;
                if self.frame().is_some_and(|frame| frame.header.len == 0) {
                    // An empty frame ends here: it may end a message, or be an empty
                    // fragment, after which the next frame's header comes.
                    if let Some(event) = self.payload(&[])? {
                        return Ok((at, Some(event)));
                    }
                    if at == input.len() {
                        return Ok((at, None));
                    }
                    continue;
                }
            }
            let frame = self.frame().expect("a frame is under way");
            let remaining = frame.header.len - frame.read;
            let take = (input.len() - at).min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let event = self.payload(&input[at..at + take])?;
            at += take;
            if event.is_some() {
                return Ok((at, event));
            }
            if at == input.len() {
                return Ok((at, None));
            }
        }
    }

    /// Reads from `input` as [`Reader::feed`] does, taking the bytes it used off `input`'s
    /// front. A message in one whole unmasked-in-place frame is handed over as a slice of
    /// `input`'s buffer, not a copy: reading it allocates nothing.
    pub(crate) fn feed_from(
        &mut self,
        input: &mut BytesMut,
    ) -> Result<Option<Incoming>, ReadError> {
        if self.head_len == 0
            && self.partial.is_none()
            && let Some(event) = self.whole_frame_from(input)?
        {
            return Ok(Some(event));
        }
        let (taken, event) = self.feed(input)?;
        input.advance(taken);
        Ok(event)
    }

    /// A whole uncompressed unfragmented data frame at the start of `input`, unmasked where
    /// it lies and split off as the message's bytes. `None` for anything else.
    fn whole_frame_from(&mut self, input: &mut BytesMut) -> Result<Option<Incoming>, ReadError> {
        let Ok(Some((header, head_len))) = Header::parse(input) else {
            return Ok(None);
        };
        let limit = self.limits.max_frame.min(self.limits.max_message) as u64;
        let usual = header.fin
            && !header.rsv1
            && matches!(header.opcode, OpCode::Text | OpCode::Binary)
            && header.mask.is_some() == self.masked
            && header.len <= limit
            && header.len <= (input.len() - head_len) as u64;
        if !usual {
            return Ok(None);
        }
        let end = head_len + header.len as usize;
        let payload = &mut input[head_len..end];
        // Most text is ASCII, which unmasking tells on the way.
        let ascii = match header.mask {
            Some(key) => unmask(payload, key, 0),
            None => payload.is_ascii(),
        };
        let text = header.opcode == OpCode::Text;
        if text && !ascii && std::str::from_utf8(payload).is_err() {
            return Err(INVALID_UTF8);
        }
        // One split for the whole frame, then the head skipped on the shared bytes: a
        // pointer bump, where skipping it on the buffer would cost a second split's work.
        let mut bytes = input.split_to(end).freeze();
        bytes.advance(head_len);
        Ok(Some(Incoming::Message(if text {
            // Checked just above.
            Message::Text(Text::from_utf8_unchecked(bytes))
        } else {
            Message::Binary(bytes)
        })))
    }

    /// When a data frame's payload is under way with at least `min` bytes still to come:
    /// the buffer to read them into (at its end), and how many to read at most. Reading
    /// there saves a copy, and reads no further than the frame.
    pub(crate) fn direct(&mut self, min: usize) -> Option<(&mut Vec<u8>, usize)> {
        let partial = self.partial.as_mut()?;
        let frame = partial.frame.as_ref()?;
        if frame.header.opcode.is_control() {
            return None;
        }
        let remaining = usize::try_from(frame.header.len - frame.read).unwrap_or(usize::MAX);
        if remaining < min {
            return None;
        }
        let message = partial.message.as_mut()?;
        let want = remaining.min(AHEAD);
        message.bytes.reserve(want);
        Some((&mut message.bytes, want))
    }

    /// `n` bytes of the data frame under way were added at the end of its message's buffer
    /// (read straight into the buffer [`Reader::direct`] gave, or copied there).
    pub(crate) fn filled(&mut self, n: usize) -> Result<Option<Incoming>, ReadError> {
        let partial = self.partial.as_mut().expect("a frame is under way");
        let frame = partial.frame.as_mut().expect("a frame is under way");
        let message = partial.message.as_mut().expect("a data frame is under way");
        let start = message.bytes.len() - n;
        let offset = frame.read as usize;
        if let Some(key) = frame.header.mask {
            apply_mask(&mut message.bytes[start..], key, offset);
        }
        frame.read += n as u64;
        message.check_utf8(start)?;
        if frame.read == frame.header.len {
            return self.end_frame();
        }
        Ok(None)
    }

    /// A whole unfragmented data frame at the start of `input`, read in one step: the common
    /// case, without the frame-by-frame bookkeeping. `None` for anything else (a fragment, a
    /// control frame, a frame not all here, anything to refuse), which the general path takes.
    fn whole_frame(&mut self, input: &[u8]) -> Result<Option<(usize, Incoming)>, ReadError> {
        let Ok(Some((header, head_len))) = Header::parse(input) else {
            return Ok(None);
        };
        let limit = self
            .limits
            .frame(header.rsv1)
            .min(self.limits.wire_message(header.rsv1));
        let fits = header.len <= limit as u64 && header.len <= (input.len() - head_len) as u64;
        let usual = header.fin
            && matches!(header.opcode, OpCode::Text | OpCode::Binary)
            && header.mask.is_some() == self.masked
            && (!header.rsv1 || self.inflate.is_some())
            && self.message().is_none();
        if !(fits && usual) {
            return Ok(None);
        }
        let end = head_len + header.len as usize;
        let mut bytes = input[head_len..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut bytes, key, 0);
        }
        let text = header.opcode == OpCode::Text;
        let mut message = Assembly {
            text,
            compressed: header.rsv1,
            bytes,
            utf8: Utf8::default(),
        };
        message.check_utf8(0)?;
        Ok(Some((end, self.message_end(message)?)))
    }

    /// Parses a header from what was kept and `input`; returns how many bytes of `input` it
    /// took, or `None` when all of `input` was kept and more is needed.
    fn header(&mut self, input: &[u8]) -> Result<Option<usize>, ReadError> {
        let parsed = if self.head_len == 0 {
            Header::parse(input)
        } else {
            let have = usize::from(self.head_len);
            let add = (MAX_HEADER - have).min(input.len());
            self.head[have..have + add].copy_from_slice(&input[..add]);
            Header::parse(&self.head[..have + add])
        };
        let parsed = parsed.map_err(|error| match error {
            HeaderError::ReservedBits => ReadError::Protocol("reserved bits set"),
            HeaderError::UnknownOpcode => ReadError::Protocol("unknown opcode"),
        })?;
        let Some((header, len)) = parsed else {
            let have = usize::from(self.head_len);
            let add = (MAX_HEADER - have).min(input.len());
            if self.head_len == 0 {
                self.head[..add].copy_from_slice(&input[..add]);
            }
            self.head_len = (have + add) as u8;
            return Ok(None);
        };
        let taken = len - usize::from(self.head_len);
        self.head_len = 0;
        self.begin(header)?;
        Ok(Some(taken))
    }

    /// Checks a new frame's header against the state and the limits, before any payload.
    fn begin(&mut self, header: Header) -> Result<(), ReadError> {
        if header.mask.is_some() != self.masked {
            return Err(ReadError::Protocol(if self.masked {
                "a client frame must be masked"
            } else {
                "a server frame must not be masked"
            }));
        }
        // A frame of a compressed message may carry deflate's overhead beyond the limits.
        let compressed = match header.opcode {
            OpCode::Text | OpCode::Binary => header.rsv1,
            OpCode::Continuation => self.message().is_some_and(|m| m.compressed),
            OpCode::Close | OpCode::Ping | OpCode::Pong => false,
        };
        let max_message = self.limits.wire_message(compressed) as u64;
        // A message in one frame over both limits is said to be a message over the limit.
        if matches!(header.opcode, OpCode::Text | OpCode::Binary) && header.len > max_message {
            return Err(ReadError::TooBig("message over the size limit"));
        }
        if header.len > self.limits.frame(compressed) as u64 {
            return Err(ReadError::TooBig("frame over the size limit"));
        }
        match header.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                if !header.fin {
                    return Err(ReadError::Protocol("a control frame cannot be fragmented"));
                }
                if header.len > 125 {
                    return Err(ReadError::Protocol(
                        "a control frame carries at most 125 bytes",
                    ));
                }
                if header.rsv1 {
                    return Err(ReadError::Protocol("RSV1 set on a control frame"));
                }
                self.partial().control.clear();
            }
            OpCode::Continuation => {
                let Some(message) = self.message() else {
                    return Err(ReadError::Protocol(
                        "a continuation frame without a message",
                    ));
                };
                if header.rsv1 {
                    return Err(ReadError::Protocol("RSV1 set on a continuation frame"));
                }
                if message.bytes.len() as u64 + header.len > max_message {
                    return Err(ReadError::TooBig("message over the size limit"));
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.message().is_some() {
                    return Err(ReadError::Protocol(
                        "a new message before the last one ended",
                    ));
                }
                if header.rsv1 && self.inflate.is_none() {
                    return Err(ReadError::Protocol("RSV1 set without permessage-deflate"));
                }
                let ahead = usize::try_from(header.len).unwrap_or(usize::MAX).min(AHEAD);
                self.partial().message = Some(Assembly {
                    text: header.opcode == OpCode::Text,
                    compressed: header.rsv1,
                    bytes: Vec::with_capacity(ahead),
                    utf8: Utf8::default(),
                });
            }
        }
        self.partial().frame = Some(Frame { header, read: 0 });
        Ok(())
    }

    /// Takes payload bytes of the frame under way (all of them belong to it); ends the frame
    /// when they complete it.
    fn payload(&mut self, bytes: &[u8]) -> Result<Option<Incoming>, ReadError> {
        let partial = self.partial.as_mut().expect("a frame is under way");
        let frame = partial.frame.as_mut().expect("a frame is under way");
        if !frame.header.opcode.is_control() {
            let message = partial.message.as_mut().expect("a data frame is under way");
            message.bytes.extend_from_slice(bytes);
            return self.filled(bytes.len());
        }
        let offset = frame.read as usize;
        frame.read += bytes.len() as u64;
        let start = partial.control.len();
        partial.control.extend_from_slice(bytes);
        if let Some(key) = frame.header.mask {
            apply_mask(&mut partial.control[start..], key, offset);
        }
        if frame.read == frame.header.len {
            return self.end_frame();
        }
        Ok(None)
    }

    fn end_frame(&mut self) -> Result<Option<Incoming>, ReadError> {
        let partial = self.partial.as_mut().expect("a frame is under way");
        let frame = partial.frame.take().expect("a frame is under way");
        let control = &partial.control;
        let ended = match frame.header.opcode {
            OpCode::Ping => Ok(Some(Incoming::Ping(Bytes::copy_from_slice(control)))),
            OpCode::Pong => Ok(Some(Incoming::Pong(Bytes::copy_from_slice(control)))),
            OpCode::Close => close_frame(control).map(|close| Some(Incoming::Close(close))),
            OpCode::Text | OpCode::Binary | OpCode::Continuation if !frame.header.fin => Ok(None),
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let message = partial.message.take().expect("a data frame is under way");
                self.message_end(message).map(Some)
            }
        };
        self.settle();
        ended
    }

    fn message_end(&mut self, mut message: Assembly) -> Result<Incoming, ReadError> {
        let bytes = if message.compressed {
            let Inflate { deflate, contexts } = &mut **self
                .inflate
                .as_mut()
                .expect("checked when the message began");
            let mut inflated = Vec::new();
            let limit = self.limits.max_message;
            deflate::inflate(&message.bytes, limit, deflate, contexts, &mut inflated).map_err(
                |error| match error {
                    InflateError::TooBig => ReadError::TooBig("message over the size limit"),
                    InflateError::Corrupt => ReadError::Invalid("invalid compressed data"),
                },
            )?;
            if message.text {
                message.utf8.feed(&inflated).map_err(|_| INVALID_UTF8)?;
            }
            inflated
        } else {
            message.bytes
        };
        if message.text {
            message.utf8.finish().map_err(|_| INVALID_UTF8)?;
            // Checked piece by piece above.
            let text = Text::from_utf8_unchecked(Bytes::from(bytes));
            Ok(Incoming::Message(Message::Text(text)))
        } else {
            Ok(Incoming::Message(Message::Binary(Bytes::from(bytes))))
        }
    }
}

/// A close frame's payload: nothing, or a valid code and a UTF-8 reason.
fn close_frame(payload: &[u8]) -> Result<Option<(CloseCode, String)>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Protocol(
            "a close frame's payload is at least a two-byte code",
        )),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !valid_close_code(code) {
                return Err(ReadError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| ReadError::Invalid("invalid UTF-8 in a close reason"))?;
            Ok(Some((CloseCode::from(code), reason.to_owned())))
        }
    }
}

/// The codes a peer may send (RFC 6455 §7.4): the defined ones but those never sent on the
/// wire, and the ranges for libraries and applications.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame::Header;

    const LIMITS: Limits = Limits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
    };

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let key = [9, 8, 7, 6];
        let header = Header {
            fin: first & 0x80 != 0,
            rsv1: first & 0x40 != 0,
            opcode: match first & 0x0F {
                0 => OpCode::Continuation,
                1 => OpCode::Text,
                2 => OpCode::Binary,
                8 => OpCode::Close,
                9 => OpCode::Ping,
                _ => OpCode::Pong,
            },
            mask: Some(key),
            len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER];
        let n = header.encode(&mut head);
        let mut out = head[..n].to_vec();
        let mut body = payload.to_vec();
        apply_mask(&mut body, key, 0);
        out.extend(body);
        out
    }

    /// Feeds `bytes` in pieces of `step`, collecting the events.
    fn events(bytes: &[u8], step: usize) -> Result<Vec<Incoming>, ReadError> {
        let mut reader = Reader::new(Role::Server, LIMITS, None);
        let mut events = Vec::new();
        for piece in bytes.chunks(step) {
            let mut at = 0;
            while at < piece.len() {
                let (taken, event) = reader.feed(&piece[at..])?;
                at += taken;
                events.extend(event);
            }
        }
        Ok(events)
    }

    #[test]
    fn fragments_and_interleaved_controls_come_out_whole_however_the_bytes_arrive() {
        let mut stream = frame(0x01, b"Hel");
        stream.extend(frame(0x89, b"ping?"));
        // Empty fragments, allowed anywhere in a message.
        stream.extend(frame(0x00, b""));
        stream.extend(frame(0x00, b"lo, "));
        stream.extend(frame(0x00, b""));
        stream.extend(frame(0x80, "wörld".as_bytes()));
        stream.extend(frame(0x01, b""));
        stream.extend(frame(0x80, b""));
        stream.extend(frame(0x82, &[1, 2, 3]));
        stream.extend(frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']));
        for step in [1, 2, 3, 7, stream.len()] {
            assert_eq!(
                events(&stream, step).unwrap(),
                [
                    Incoming::Ping(Bytes::from_static(b"ping?")),
                    Incoming::Message(Message::text("Hello, wörld")),
                    Incoming::Message(Message::text("")),
                    Incoming::Message(Message::binary(vec![1u8, 2, 3])),
                    Incoming::Close(Some((CloseCode::NORMAL, "bye".into()))),
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn protocol_errors_are_found() {
        let cases: [(&[u8], ReadError); 9] = [
            (&frame(0x81, b"x")[..], ReadError::Protocol("")),
            (
                &[0x81, 0x01, b'x'],
                ReadError::Protocol("a client frame must be masked"),
            ),
            (
                &frame(0x80, b"x"),
                ReadError::Protocol("a continuation frame without a message"),
            ),
            (
                &frame(0x09, b"x"),
                ReadError::Protocol("a control frame cannot be fragmented"),
            ),
            (
                &frame(0x89, &[0; 126]),
                ReadError::Protocol("a control frame carries at most 125 bytes"),
            ),
            (
                &frame(0xC1, b"x"),
                ReadError::Protocol("RSV1 set without permessage-deflate"),
            ),
            (
                &frame(0x88, &[0x03]),
                ReadError::Protocol("a close frame's payload is at least a two-byte code"),
            ),
            (
                &frame(0x88, &1005u16.to_be_bytes()),
                ReadError::Protocol("invalid close code"),
            ),
            (
                &frame(0x88, &[0x03, 0xe8, 0xff]),
                ReadError::Invalid("invalid UTF-8 in a close reason"),
            ),
        ];
        for (bytes, expected) in &cases[1..] {
            assert_eq!(events(bytes, 100).unwrap_err(), *expected);
        }
        let mut two = frame(0x01, b"a");
        two.extend(frame(0x81, b"b"));
        assert_eq!(
            events(&two, 100).unwrap_err(),
            ReadError::Protocol("a new message before the last one ended")
        );
    }

    #[test]
    fn limits_are_checked_from_the_header() {
        let mut reader = Reader::new(
            Role::Server,
            Limits {
                max_frame: 100,
                max_message: 150,
            },
            None,
        );
        // The header of a 64 MiB frame is enough; a message in one frame over both limits is
        // a message over the limit.
        let header = [0x82, 0xFF, 0, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(
            reader.feed(&header),
            Err(ReadError::TooBig("message over the size limit"))
        );
        // A frame of 120 bytes: over the frame limit only.
        let mut reader = Reader::new(
            Role::Server,
            Limits {
                max_frame: 100,
                max_message: 150,
            },
            None,
        );
        assert_eq!(
            reader.feed(&frame(0x82, &[0; 120])),
            Err(ReadError::TooBig("frame over the size limit"))
        );
        let mut reader = Reader::new(
            Role::Server,
            Limits {
                max_frame: 100,
                max_message: 150,
            },
            None,
        );
        // Two frames of 100 and 60 bytes: each fits, the message does not.
        let mut stream = frame(0x02, &[0; 100]);
        stream.extend(frame(0x80, &[0; 60]));
        assert_eq!(
            reader.feed(&stream),
            Err(ReadError::TooBig("message over the size limit"))
        );
    }

    #[test]
    fn an_invalid_prefix_is_refused_before_the_frame_ends() {
        let mut reader = Reader::new(Role::Server, LIMITS, None);
        let full = frame(0x81, &[b"ok \xFF".as_slice(), &[b'x'; 1000]].concat());
        // Only the header and the first bytes have arrived.
        assert_eq!(
            reader.feed(&full[..14]),
            Err(ReadError::Invalid("invalid UTF-8 in a text message"))
        );
    }
}
