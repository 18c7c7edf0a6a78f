//! A valid upgrade followed by arbitrary bytes as the frames a connection reads: nothing
//! panics, every connection ends.
#![no_main]

mod common;

const HANDSHAKE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The same upgrade, offering permessage-deflate, so that RSV1 frames are inflated.
const HANDSHAKE_DEFLATE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    // The first byte picks the handshake (odd: with permessage-deflate); the rest are frames.
    let Some((&choice, frames)) = input.split_first() else {
        return;
    };
    let handshake = if choice & 1 == 1 { HANDSHAKE_DEFLATE } else { HANDSHAKE };
    let mut input = handshake.to_vec();
    input.extend_from_slice(frames);
    common::run(&input);
});
