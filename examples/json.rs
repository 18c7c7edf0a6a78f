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

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wsock::prelude::*;

/// What a client can ask.
#[derive(Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Command {
    Add { text: String },
    Done { id: u32 },
    List,
}

#[derive(Clone, Serialize, JsonSchema)]
struct Item {
    id: u32,
    text: String,
    done: bool,
}

/// What the server answers.
#[derive(Serialize, JsonSchema)]
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
    server().serve(addr).await
}

pub(crate) fn server() -> Server {
    Server::new().route(todo)
}

/// The endpoint, tested in process with wsock's test kit (`cargo test --features test`).
#[cfg(all(test, feature = "test"))]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use wsock::test::TestServer;

    #[tokio::test]
    async fn keeps_a_list_per_connection_and_answers_bad_input() {
        let app = TestServer::new(Server::new().route(todo));
        let mut client = app.connect("/todo").await.unwrap();
        let mut ask = async |command: Value| {
            client.send(Json(command)).await;
            client.recv::<Json<Value>>().await.0
        };
        let milk = json!({"id": 1, "text": "buy milk", "done": false});
        assert_eq!(
            ask(json!({"op": "add", "text": "buy milk"})).await,
            json!({"added": milk})
        );
        let done = json!({"id": 1, "text": "buy milk", "done": true});
        assert_eq!(
            ask(json!({"op": "done", "id": 1})).await,
            json!({"updated": done})
        );
        assert_eq!(ask(json!({"op": "list"})).await, json!({"items": [done]}));
        assert_eq!(
            ask(json!({"op": "done", "id": 7})).await,
            json!({"error": "no item 7"})
        );
        client.send("hello").await;
        let Json(error) = client.recv::<Json<Value>>().await;
        assert!(
            error["error"].as_str().unwrap().starts_with("invalid JSON"),
            "{error}"
        );

        // Another connection has its own list.
        let mut other = app.connect("/todo").await.unwrap();
        other.send(Json(json!({"op": "list"}))).await;
        assert_eq!(other.recv::<Json<Value>>().await.0, json!({"items": []}));
    }
}
