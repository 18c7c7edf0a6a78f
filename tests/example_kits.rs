//! Each example's own tests, written with the test kit, run here: the example files are compiled
//! as modules of this test crate (their `main` goes unused), so `cargo test` still builds each
//! example as the binary a newcomer runs.
#![cfg(feature = "test")]
#![allow(dead_code)]
// The axum example includes the chat example's `room.rs`, as its own binary does.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/hello.rs"]
mod hello;

#[path = "../examples/echo.rs"]
mod echo;

#[path = "../examples/json.rs"]
mod json;

#[path = "../examples/rooms.rs"]
mod rooms;

#[path = "../examples/auth.rs"]
mod auth;

#[path = "../examples/chat/main.rs"]
mod chat;

#[cfg(feature = "axum")]
#[path = "../examples/axum.rs"]
mod axum_app;

#[cfg(feature = "axum")]
#[path = "../examples/login.rs"]
mod login;

#[cfg(feature = "tls")]
#[path = "../examples/tls.rs"]
mod tls;
