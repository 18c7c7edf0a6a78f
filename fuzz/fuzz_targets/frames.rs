//! A valid upgrade followed by arbitrary bytes as the frames a connection reads: nothing
//! panics, every connection ends.
#![no_main]

mod common;

const HANDSHAKE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

libfuzzer_sys::fuzz_target!(|frames: &[u8]| {
    let mut input = HANDSHAKE.to_vec();
    input.extend_from_slice(frames);
    common::run(&input);
});
