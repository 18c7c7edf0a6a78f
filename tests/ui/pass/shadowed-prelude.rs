//! Generated code uses absolute paths: shadowing common names changes nothing.
#![allow(dead_code, non_camel_case_types)]

use wsock::prelude::*;

struct Result;
struct Option;
struct String;
struct Box;
struct Ok;
struct Some;
mod core {}
mod std {}

#[websocket("/")]
fn shadowed(out: Out<::std::string::String>) -> ::core::result::Result<(), wsock::Error> {
    on_message(|text: ::std::string::String| out.write(text));
    ::core::result::Result::Ok(())
}

fn main() {}
