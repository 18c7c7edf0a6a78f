//! Arbitrary bytes as the upgrade request: every answer is an HTTP response, nothing panics,
//! every connection ends.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|input: &[u8]| common::run(input));
