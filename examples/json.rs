//! A to-do list over JSON: a serde enum of commands, typed replies.
//!
//! Run: `cargo run --example json [ADDRESS]` (default 127.0.0.1:9000), connect a client to
//! ws://127.0.0.1:9000/todo (for example `python3 -m websockets ws://127.0.0.1:9000/todo`, after
//! `pip install websockets`) and send one JSON command per message:
//!
//! ```text
//! > {"op":"add","text":"buy milk"}      < {"added":{"id":1,"text":"buy milk","done":false}}
//! > {"op":"done","id":1}                < {"updated":{"id":1,"text":"buy milk","done":true}}
//! > {"op":"list"}                       < {"items":[{"id":1,"text":"buy milk","done":true}]}
//! > {"op":"done","id":7}                < {"error":"no item 7"}
//! > hello                               < {"error":"invalid JSON: expected value at line 1 column 1"}
//! ```
//!
//! The list lives in the ready code and the sections borrow it: each connection has its own.

use serde::{Deserialize, Serialize};
use wsock::prelude::*;

/// What a client can ask.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Command {
    Add { text: String },
    Done { id: u32 },
    List,
}

#[derive(Clone, Serialize)]
struct Item {
    id: u32,
    text: String,
    done: bool,
}

/// What the server answers.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Added(Item),
    Updated(Item),
    Items(Vec<Item>),
    Error(String),
}

/// A to-do list per connection.
#[websocket("/todo")]
fn todo(out: Out<Json<Reply>>) {
    let mut items: Vec<Item> = Vec::new();
    on_message(|Json(command): Json<Command>| {
        let reply = match command {
            Command::Add { text } => {
                let item = Item {
                    id: items.len() as u32 + 1,
                    text,
                    done: false,
                };
                items.push(item.clone());
                Reply::Added(item)
            }
            Command::Done { id } => match items.iter_mut().find(|item| item.id == id) {
                Some(item) => {
                    item.done = true;
                    Reply::Updated(item.clone())
                }
                None => Reply::Error(format!("no item {id}")),
            },
            Command::List => Reply::Items(items.clone()),
        };
        out.write(Json(reply));
    });
    // A message that is not a command gets an error reply; the connection stays open.
    on_error(|error| out.write(Json(Reply::Error(error.to_string()))));
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    Server::new().route(todo).serve(addr).await
}
