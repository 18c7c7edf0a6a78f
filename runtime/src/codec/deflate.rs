//! permessage-deflate (RFC 7692): the negotiation, and compressing and inflating one message.
//!
//! By default neither side keeps a compression context between messages (the server adds
//! `server_no_context_takeover` and `client_no_context_takeover` to every agreement), so a
//! connection holds no compression state at all: one compressor and one decompressor per
//! thread serve every connection of that thread, reset after each message. Context takeover
//! is an opt-in, at the price of a compressor and a decompressor per connection.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

use crate::config::Compression;

/// The end of a sync-flushed deflate block, which permessage-deflate leaves off (§7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What was agreed with one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Deflate {
    /// The window this server compresses with (9 to 15: 8 is done as 9, which an 8-bit
    /// window decodes).
    pub(crate) window: u8,
    /// This server keeps its compression context between messages.
    pub(crate) server_takeover: bool,
    /// The client keeps its context: this server must keep its decompressor.
    pub(crate) client_takeover: bool,
    pub(crate) threshold: usize,
    pub(crate) level: u32,
}

/// One offer's parameters, or why it is declined.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
}

/// Picks the first permessage-deflate offer this server can accept from the
/// `Sec-WebSocket-Extensions` values, and the response header value that accepts it. Offers
/// with unknown, repeated or malformed parameters are declined (RFC 7692 §5), as are other
/// extensions; the handshake goes on without them.
pub(crate) fn negotiate<'a>(
    values: impl Iterator<Item = &'a str>,
    config: &Compression,
) -> Option<(Deflate, String)> {
    if !config.enabled {
        return None;
    }
    for value in values {
        for extension in split_outside_quotes(value, ',') {
            let mut parts = split_outside_quotes(extension, ';');
            if !parts
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("permessage-deflate"))
            {
                continue;
            }
            if let Some(offer) = parse_offer(parts) {
                return Some(accept(&offer, config));
            }
        }
    }
    None
}

fn parse_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut client_max_window_bits = false;
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param.trim(), None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                offer.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                offer.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(bits)) if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(bits)?);
            }
            ("client_max_window_bits", bits) if !client_max_window_bits => {
                // The client's own limit on what it sends: any window decodes with ours.
                if let Some(bits) = bits {
                    window_bits(bits)?;
                }
                client_max_window_bits = true;
            }
            _ => return None, // unknown, repeated, or a value where none belongs
        }
    }
    Some(offer)
}

fn accept(offer: &Offer, config: &Compression) -> (Deflate, String) {
    let server_takeover = config.context_takeover && !offer.server_no_context_takeover;
    let client_takeover = config.context_takeover && !offer.client_no_context_takeover;
    let mut response = String::from("permessage-deflate");
    if !server_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if !client_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = offer.server_max_window_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    let deflate = Deflate {
        window: offer.server_max_window_bits.unwrap_or(15).max(9),
        server_takeover,
        client_takeover,
        threshold: config.threshold,
        level: config.level,
    };
    (deflate, response)
}

/// The client's side of an agreement, from the server's `Sec-WebSocket-Extensions` answer
/// (for the test kit's client): it compresses what it sends with its own window, and keeps a
/// context on either side where the answer does not forbid it.
#[cfg_attr(not(feature = "test"), allow(dead_code))]
pub(crate) fn client_side(answer: &str) -> Option<Deflate> {
    let mut parts = split_outside_quotes(answer, ';');
    if !parts
        .next()
        .is_some_and(|name| name.trim().eq_ignore_ascii_case("permessage-deflate"))
    {
        return None;
    }
    let answer = parse_offer(parts)?;
    Some(Deflate {
        window: 15,
        // Seen from the client: its own takeover is what it compresses with, the server's
        // what it inflates with.
        server_takeover: !answer.client_no_context_takeover,
        client_takeover: !answer.server_no_context_takeover,
        threshold: 0,
        level: 1,
    })
}

/// 8 to 15, written as digits with no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [digit @ b'8'..=b'9'] => Some(digit - b'0'),
        [b'1', digit @ b'0'..=b'5'] => Some(10 + digit - b'0'),
        _ => None,
    }
}

/// A parameter value, unquoted (`"10"` is `10`); `None` for a broken quoted string.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('"')),
        None => Some(value),
    }
}

/// Splits at `separator`, except inside double quotes.
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut quoted = false;
    let mut pieces = Vec::new();
    for (at, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                pieces.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    pieces.push(&text[start..]);
    pieces.into_iter()
}

thread_local! {
    /// The thread's compressor for connections without context takeover, with its window
    /// and level (one per thread: a server has one level, and clients rarely limit windows).
    static COMPRESSOR: RefCell<Option<(u8, u32, Compress)>> = const { RefCell::new(None) };
    /// The thread's decompressor for connections whose client keeps no context.
    static DECOMPRESSOR: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// The contexts of a connection that keeps them between messages (context takeover).
#[derive(Default)]
pub(crate) struct Contexts {
    // Boxed: a connection without context takeover holds two null pointers, not the structs.
    compress: Option<Box<Compress>>,
    decompress: Option<Box<Decompress>>,
}

/// Compresses a whole message; `None` if compressing would not make it smaller.
pub(crate) fn compress(
    payload: &[u8],
    deflate: &Deflate,
    contexts: &mut Contexts,
) -> Option<Bytes> {
    let out = deflate_message(payload, deflate, contexts);
    // With the context kept, the compressor moved on: what it made must be sent.
    (deflate.server_takeover || out.len() < payload.len()).then(|| out.into())
}

/// Compresses a whole message, whether or not that makes it smaller (as browsers send every
/// message once deflate is agreed: the test kit's client does too).
pub(crate) fn deflate_message(
    payload: &[u8],
    deflate: &Deflate,
    contexts: &mut Contexts,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    if deflate.server_takeover {
        let compress = contexts.compress.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(
                flate2::Compression::new(deflate.level),
                false,
                deflate.window,
            ))
        });
        deflate_into(compress, payload, &mut out);
        return out;
    }
    COMPRESSOR.with_borrow_mut(|slot| {
        let fits = matches!(slot, Some((window, level, _)) if *window == deflate.window && *level == deflate.level);
        if !fits {
            let compress = Compress::new_with_window_bits(
                flate2::Compression::new(deflate.level),
                false,
                deflate.window,
            );
            *slot = Some((deflate.window, deflate.level, compress));
        }
        let (_, _, compress) = slot.as_mut().expect("made above");
        deflate_into(compress, payload, &mut out);
        compress.reset();
    });
    out
}

/// Sync-flushes `input` through `compress` into `out`, without the trailer.
fn deflate_into(compress: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    let start = compress.total_in();
    loop {
        out.reserve(input.len() / 2 + 64);
        let consumed = (compress.total_in() - start) as usize;
        compress
            .compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .expect("compressing into a Vec does not fail");
        // Done when all input is in and the flush left output room unused.
        if (compress.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    debug_assert!(out.ends_with(&TRAILER));
    out.truncate(out.len() - TRAILER.len());
}

/// Why a compressed message was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the limit (1009); inflation stopped there.
    TooBig,
    /// Not a deflate stream (1007).
    Corrupt,
}

/// Inflates a whole compressed message (its frames' payloads, joined) into `out`, stopping as
/// soon as the output passes `limit`.
pub(crate) fn inflate(
    compressed: &[u8],
    limit: usize,
    deflate: &Deflate,
    contexts: &mut Contexts,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    if compressed.is_empty() {
        // An empty message; inflating the bare trailer would leave a context mid-block.
        return Ok(());
    }
    if deflate.client_takeover {
        let decompress = contexts
            .decompress
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, 15)));
        return inflate_with(decompress, compressed, limit, out, false);
    }
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompress = slot.get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
        inflate_with(decompress, compressed, limit, out, true)
    })
}

fn inflate_with(
    decompress: &mut Decompress,
    compressed: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
    reset: bool,
) -> Result<(), InflateError> {
    const CHUNK: usize = 16 << 10;
    let result = (|| {
        let mut ended = false;
        for input in [compressed, &TRAILER[..]] {
            let mut at = 0;
            loop {
                // One byte past the limit tells a message over it from one that meets it.
                let past_limit = limit.saturating_add(1);
                let room = CHUNK.min(past_limit - out.len().min(past_limit));
                let len = out.len();
                out.reserve(room);
                let (before_in, before_out) = (decompress.total_in(), decompress.total_out());
                // Into the vector's spare room, unfilled: zeroing 16 KiB for every message
                // would cost more than inflating a small one.
                let spare = &mut out.spare_capacity_mut()[..room];
                let status =
                    decompress.decompress_uninit(&input[at..], spare, FlushDecompress::Sync);
                let produced = (decompress.total_out() - before_out) as usize;
                at += (decompress.total_in() - before_in) as usize;
                // SAFETY: the decompressor initialised the first `produced` bytes of the spare
                // room (at most `room`, which `reserve` made sure of).
                unsafe { out.set_len(len + produced) };
                match status {
                    Err(_) => return Err(InflateError::Corrupt),
                    Ok(Status::StreamEnd) => {
                        ended = true;
                        break;
                    }
                    Ok(Status::Ok | Status::BufError) => {}
                }
                if out.len() > limit {
                    return Err(InflateError::TooBig);
                }
                if at == input.len() && produced < room {
                    break;
                }
                if produced == 0 && at == input.len() {
                    break;
                }
            }
            if ended {
                break;
            }
        }
        Ok(ended)
    })();
    match result {
        Ok(ended) => {
            if reset || ended {
                decompress.reset(false);
            }
            Ok(())
        }
        Err(error) => {
            decompress.reset(false);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<String> {
        negotiate(std::iter::once(value), &Compression::default()).map(|(_, response)| response)
    }

    #[test]
    fn offers_are_accepted_or_declined_per_the_rfc() {
        let plain = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        // Chromium's and Python's offer.
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits").as_deref(),
            Some(plain)
        );
        assert_eq!(offer("permessage-deflate").as_deref(), Some(plain));
        assert_eq!(
            offer("permessage-deflate; server_max_window_bits=10").as_deref(),
            Some(format!("{plain}; server_max_window_bits=10").as_str())
        );
        assert_eq!(
            offer("permessage-deflate; server_max_window_bits=\"8\"; client_max_window_bits=9")
                .as_deref(),
            Some(format!("{plain}; server_max_window_bits=8").as_str())
        );
        // Declined: unknown, repeated or malformed parameters, other extensions.
        for bad in [
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_max_window_bits=7",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(offer(bad), None, "{bad}");
        }
        // The first acceptable offer wins.
        assert_eq!(
            offer("permessage-deflate; bogus, permessage-deflate; server_max_window_bits=12")
                .as_deref(),
            Some(format!("{plain}; server_max_window_bits=12").as_str())
        );
        assert_eq!(
            negotiate(std::iter::once("permessage-deflate"), &Compression::off()),
            None
        );
        // With context takeover allowed, what the client did not forbid is kept.
        let keep = Compression::default().context_takeover(true);
        let (deflate, response) = negotiate(
            std::iter::once("permessage-deflate; client_no_context_takeover"),
            &keep,
        )
        .unwrap();
        assert_eq!(response, "permessage-deflate; client_no_context_takeover");
        assert!(deflate.server_takeover && !deflate.client_takeover);
    }

    fn agreed(window: u8, takeover: bool) -> Deflate {
        Deflate {
            window,
            server_takeover: takeover,
            client_takeover: takeover,
            threshold: 0,
            level: 6,
        }
    }

    #[test]
    fn messages_round_trip_at_every_window() {
        let text = "{\"user\":\"ada\",\"text\":\"hello hello hello\"},".repeat(100);
        for window in 9..=15 {
            let deflate = agreed(window, false);
            let mut contexts = Contexts::default();
            let compressed = compress(text.as_bytes(), &deflate, &mut contexts).unwrap();
            assert!(compressed.len() < text.len() / 4, "{window}");
            let mut out = Vec::new();
            inflate(&compressed, 1 << 20, &deflate, &mut contexts, &mut out).unwrap();
            assert_eq!(out, text.as_bytes());
        }
        // An empty message inflates from an empty payload, or from a single 0x00.
        let mut out = Vec::new();
        inflate(
            &[],
            10,
            &agreed(15, false),
            &mut Contexts::default(),
            &mut out,
        )
        .unwrap();
        inflate(
            &[0x00],
            10,
            &agreed(15, false),
            &mut Contexts::default(),
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn context_takeover_keeps_the_window_between_messages() {
        let deflate = agreed(15, true);
        let mut server = Contexts::default();
        let mut client = Contexts::default();
        let message = "the same long text, again and again, ".repeat(20);
        let first = compress(message.as_bytes(), &deflate, &mut server).unwrap();
        let second = compress(message.as_bytes(), &deflate, &mut server).unwrap();
        assert!(
            second.len() * 3 < first.len(),
            "{} then {}",
            first.len(),
            second.len()
        );
        for compressed in [first, second] {
            let mut out = Vec::new();
            inflate(&compressed, 1 << 20, &deflate, &mut client, &mut out).unwrap();
            assert_eq!(out, message.as_bytes());
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_corrupt() {
        let zeros = vec![0u8; 10 << 20];
        let deflate = agreed(15, false);
        let bomb = compress(&zeros, &deflate, &mut Contexts::default()).unwrap();
        assert!(bomb.len() < 20_000);
        let mut out = Vec::new();
        let limit = 64 << 10;
        let result = inflate(&bomb, limit, &deflate, &mut Contexts::default(), &mut out);
        assert_eq!(result, Err(InflateError::TooBig));
        assert!(out.len() <= limit + 1, "inflated {} bytes", out.len());
        let mut out = Vec::new();
        let garbage = inflate(
            &[0xff, 0xff, 0xff, 0xff],
            limit,
            &deflate,
            &mut Contexts::default(),
            &mut out,
        );
        assert_eq!(garbage, Err(InflateError::Corrupt));
        // The thread's decompressor is fine afterwards.
        let small = compress(&[b'x'; 2000], &deflate, &mut Contexts::default()).unwrap();
        let mut out = Vec::new();
        inflate(&small, limit, &deflate, &mut Contexts::default(), &mut out).unwrap();
        assert_eq!(out.len(), 2000);
    }
}
