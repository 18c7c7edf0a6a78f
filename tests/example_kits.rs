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

/// The examples' contracts against their snapshots in `tests/contract/`: the AsyncAPI document
/// and the TypeScript (`WSOCK_BLESS=1` rewrites them; a missing one is written). The
/// documents' validity and the TypeScript's compiling are checked by `tests/contract.rs`.
#[cfg(feature = "contract")]
mod contract {
    use std::path::PathBuf;

    fn snapshot(name: &str, server: wsock::Server) {
        let contract = server
            .contract()
            .info(format!("wsock example {name}"), "0.1.0");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
        let files = [
            (format!("{name}.asyncapi.json"), contract.asyncapi_json()),
            (format!("{name}.ts"), contract.typescript("wsock-client")),
        ];
        let bless = std::env::var_os("WSOCK_BLESS").is_some();
        for (file, text) in files {
            let path = dir.join(&file);
            match std::fs::read_to_string(&path) {
                Ok(old) if old == text => {}
                Ok(_) if !bless => panic!(
                    "tests/contract/{file} differs from what the example generates; \
                     WSOCK_BLESS=1 rewrites it:\n{text}"
                ),
                _ => std::fs::write(&path, text).unwrap(),
            }
        }
    }

    #[test]
    fn json() {
        snapshot("json", super::json::server());
    }

    #[test]
    fn echo() {
        snapshot("echo", super::echo::server());
    }

    #[test]
    fn rooms() {
        snapshot("rooms", super::rooms::server());
    }

    #[test]
    fn chat() {
        snapshot("chat", super::chat::server());
    }

    /// The chat page's types, beside the page (`examples/chat/contract.ts`): the page's
    /// TypeScript imports them, so a changed `Event` fails here, then in tsc.
    #[test]
    fn chat_page_types() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/chat/contract.ts");
        let text = super::chat::server().contract().typescript("wsock-client");
        match std::fs::read_to_string(&path) {
            Ok(old) if old == text => {}
            Ok(_) if std::env::var_os("WSOCK_BLESS").is_none() => panic!(
                "examples/chat/contract.ts differs from what the chat generates; WSOCK_BLESS=1 \
                 rewrites it (then check the page: see examples/chat/main.rs):\n{text}"
            ),
            _ => std::fs::write(&path, text).unwrap(),
        }
    }
}
