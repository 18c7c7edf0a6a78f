//! The little of RESP3 a subscriber connection speaks: commands out, and in, the pushes a
//! connection in subscribe mode gets (messages, subscribe and unsubscribe confirmations) and
//! the answers to its commands (`HELLO`, `PING`, and the scripts that say where a topic's
//! history stands), in the order Redis sent them. Parsed from a buffer as bytes arrive; a
//! message's payload is a slice of the bytes read, not a copy.

use bytes::{Bytes, BytesMut};

/// What Redis said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A message published to a channel this connection subscribes to.
    Message { channel: Bytes, payload: Bytes },
    /// A subscription confirmed.
    Subscribed(Bytes),
    /// An unsubscription confirmed.
    Unsubscribed(Bytes),
    /// Another push, which this connection does not act on.
    Push,
    /// The answer to the oldest command not answered yet.
    Answer(Answer),
}

/// An answer to a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `+OK`, `+PONG` or another simple string.
    Simple(Bytes),
    /// `-ERR ..`: what Redis refused, and why.
    Error(String),
    /// An array of strings and numbers (numbers as their text): what the scripts return.
    List(Vec<Bytes>),
    /// Anything else (`HELLO`'s map, a number, a null).
    Other,
}

/// Bytes that are not RESP, or RESP this connection never asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// Nesting deeper than this is not something Redis sends to a subscriber.
const MAX_DEPTH: usize = 4;
/// Redis's own limit on a bulk string (`proto-max-bulk-len`); a longer one is not Redis.
const MAX_BULK: i64 = 512 << 20;
/// More items than a subscriber's replies hold.
const MAX_ITEMS: i64 = 1 << 20;

/// A value's place in the frame being parsed.
enum Value {
    Simple(std::ops::Range<usize>),
    Error(std::ops::Range<usize>),
    /// A number's text.
    Integer(std::ops::Range<usize>),
    Bulk(Option<std::ops::Range<usize>>),
    Array(Option<Vec<Value>>),
    Push(Vec<Value>),
    /// A map, a set, a null, a boolean, a double, a big number: nothing this connection reads.
    Other,
}

/// Takes the next whole reply off the front of `buffer`; `None` until all of it is there.
pub(crate) fn parse(buffer: &mut BytesMut) -> Result<Option<Reply>, Malformed> {
    let Some((value, end)) = value(buffer, 0, 0)? else {
        return Ok(None);
    };
    let frame = buffer.split_to(end).freeze();
    Ok(Some(reply(&frame, value)))
}

/// What a parsed value means to a subscriber.
fn reply(frame: &Bytes, value: Value) -> Reply {
    let bulk = |value: &Value| match value {
        Value::Bulk(Some(range)) | Value::Simple(range) | Value::Integer(range) => {
            Some(frame.slice(range.clone()))
        }
        _ => None,
    };
    match value {
        Value::Push(items) => {
            let kind = items.first().and_then(bulk);
            match (kind.as_deref(), &items[..]) {
                (Some(b"message"), [_, channel, payload]) => match (bulk(channel), bulk(payload)) {
                    (Some(channel), Some(payload)) => Reply::Message { channel, payload },
                    _ => Reply::Push,
                },
                (Some(b"subscribe"), [_, channel, ..]) => {
                    bulk(channel).map_or(Reply::Push, Reply::Subscribed)
                }
                (Some(b"unsubscribe"), [_, channel, ..]) => {
                    bulk(channel).map_or(Reply::Push, Reply::Unsubscribed)
                }
                _ => Reply::Push,
            }
        }
        Value::Simple(range) => Reply::Answer(Answer::Simple(frame.slice(range))),
        Value::Error(range) => Reply::Answer(Answer::Error(
            String::from_utf8_lossy(&frame[range]).into_owned(),
        )),
        Value::Array(Some(items)) => match items.iter().map(bulk).collect() {
            Some(list) => Reply::Answer(Answer::List(list)),
            None => Reply::Answer(Answer::Other),
        },
        _ => Reply::Answer(Answer::Other),
    }
}

/// The value starting at `at`, and where it ends; `None` if it has not all arrived.
fn value(buffer: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, Malformed> {
    let Some((kind, line, next)) = line(buffer, at)? else {
        return Ok(None);
    };
    let text = &buffer[line.clone()];
    Ok(match kind {
        b'+' => Some((Value::Simple(line), next)),
        b'-' => Some((Value::Error(line), next)),
        b':' => {
            number(text)?;
            Some((Value::Integer(line), next))
        }
        // A null, a boolean, a double, a big number: one line.
        b'_' | b'#' | b',' | b'(' => Some((Value::Other, next)),
        b'$' | b'=' => match number(text)? {
            -1 => Some((Value::Bulk(None), next)),
            len if len < 0 => return Err(Malformed("a negative bulk length")),
            len if len > MAX_BULK => return Err(Malformed("a bulk string over 512 MiB")),
            len => {
                let end = next + len as usize;
                if buffer.len() < end + 2 {
                    return Ok(None);
                }
                if &buffer[end..end + 2] != b"\r\n" {
                    return Err(Malformed("a bulk string without its CRLF"));
                }
                Some((Value::Bulk(Some(next..end)), end + 2))
            }
        },
        b'*' | b'>' | b'~' | b'%' => match number(text)? {
            -1 if kind == b'*' => Some((Value::Array(None), next)),
            len if len < 0 => return Err(Malformed("a negative array length")),
            len if len > MAX_ITEMS => return Err(Malformed("an array of too many items")),
            _ if depth >= MAX_DEPTH => return Err(Malformed("arrays nested too deep")),
            len => {
                // A map's length counts pairs.
                let len = if kind == b'%' { 2 * len } else { len };
                let mut items = Vec::with_capacity((len as usize).min(16));
                let mut at = next;
                for _ in 0..len {
                    let Some((item, end)) = value(buffer, at, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = end;
                }
                let value = match kind {
                    b'*' => Value::Array(Some(items)),
                    b'>' => Value::Push(items),
                    _ => Value::Other,
                };
                Some((value, at))
            }
        },
        _ => return Err(Malformed("an unknown RESP type")),
    })
}

/// A line's type byte, its text (without CRLF) and where the next line starts.
#[allow(clippy::type_complexity)]
fn line(
    buffer: &[u8],
    at: usize,
) -> Result<Option<(u8, std::ops::Range<usize>, usize)>, Malformed> {
    let Some(&kind) = buffer.get(at) else {
        return Ok(None);
    };
    // A type line is short; one that runs on without a CRLF is not RESP.
    let Some(cr) = buffer[at..].iter().position(|&b| b == b'\r') else {
        return if buffer.len() - at > 4096 {
            Err(Malformed("a line without its CRLF"))
        } else {
            Ok(None)
        };
    };
    let cr = at + cr;
    match buffer.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((kind, at + 1..cr, cr + 2))),
        Some(_) => Err(Malformed("a CR without LF")),
    }
}

fn number(text: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(Malformed("not a number"))
}

/// A command as RESP: an array of bulk strings.
pub(crate) fn command<'a>(args: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Result<Vec<Reply>, Malformed> {
        let mut buffer = BytesMut::from(input);
        let mut replies = Vec::new();
        while let Some(reply) = parse(&mut buffer)? {
            replies.push(reply);
        }
        assert!(buffer.is_empty(), "left over: {buffer:?}");
        Ok(replies)
    }

    #[test]
    fn what_a_subscriber_gets_whole_and_in_any_pieces() {
        let stream: &[u8] = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n\
            >3\r\n$9\r\nsubscribe\r\n$7\r\nwsock:a\r\n:1\r\n\
            >3\r\n$7\r\nmessage\r\n$7\r\nwsock:a\r\n$5\r\nh\r\nlo\r\n\
            *4\r\n$2\r\nab\r\n:41\r\n:1\r\n$4\r\nx\r\ny\r\n\
            >3\r\n$11\r\nunsubscribe\r\n$7\r\nwsock:a\r\n:0\r\n\
            +PONG\r\n-ERR unknown command\r\n_\r\n>2\r\n$4\r\npong\r\n$0\r\n\r\n";
        let expected = vec![
            Reply::Answer(Answer::Other),
            Reply::Subscribed(Bytes::from_static(b"wsock:a")),
            Reply::Message {
                channel: Bytes::from_static(b"wsock:a"),
                payload: Bytes::from_static(b"h\r\nlo"),
            },
            Reply::Answer(Answer::List(vec![
                Bytes::from_static(b"ab"),
                Bytes::from_static(b"41"),
                Bytes::from_static(b"1"),
                Bytes::from_static(b"x\r\ny"),
            ])),
            Reply::Unsubscribed(Bytes::from_static(b"wsock:a")),
            Reply::Answer(Answer::Simple(Bytes::from_static(b"PONG"))),
            Reply::Answer(Answer::Error("ERR unknown command".to_owned())),
            Reply::Answer(Answer::Other),
            Reply::Push,
        ];
        assert_eq!(all(stream).unwrap(), expected);
        // Byte by byte: nothing is taken before it is whole.
        let mut buffer = BytesMut::new();
        let mut replies = Vec::new();
        for &byte in stream {
            buffer.extend_from_slice(&[byte]);
            while let Some(reply) = parse(&mut buffer).unwrap() {
                replies.push(reply);
            }
        }
        assert_eq!(replies, expected);
    }

    #[test]
    fn what_is_not_resp_is_refused() {
        for bad in [
            &b"?what\r\n"[..],
            b"$3\r\nabcd\r\n",
            b"$-5\r\n",
            b":12x\r\n",
            b"+OK\rX",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"$9223372036854775807\r\n",
            b"$536870913\r\n",
            b"*9223372036854775807\r\n",
        ] {
            assert!(all(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(all(&[b'+'; 5000]).is_err());
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let args: [&[u8]; 3] = [b"SUBSCRIBE", b"wsock:a", b""];
        assert_eq!(
            command(args.into_iter()),
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$7\r\nwsock:a\r\n$0\r\n\r\n"
        );
    }
}
