//! The contract: what the endpoints of a server accept and send, from the endpoint functions
//! themselves, as an [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0)
//! document and as TypeScript for [wsock's client](https://docs.rs/wsock#client).
//!
//! `#[websocket]` describes each endpoint: its path and path parameters, its query type, its
//! subprotocols, the type its `on_message` takes and the types its `Out`s send. Payloads of
//! `Json<T>` get `T`'s JSON Schema from [`schemars`] (`#[derive(schemars::JsonSchema)]` beside
//! serde's derives); a `T` without one still compiles and is marked unknown
//! ([`Contract::unknown`] says which). `String` and `Text` are text, `Vec<u8>` and `Bytes`
//! binary, `Message` either.
//!
//! ```no_run
//! use wsock::prelude::*;
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Say { text: String }
//!
//! #[websocket("/rooms/{room}")]
//! fn chat(room: String, out: Out<String>) {
//!     on_message(|Json(say): Json<Say>| out.write(format!("{room}: {}", say.text)));
//! }
//!
//! let server = Server::new().route(chat);
//! let contract = server.contract();
//! std::fs::write("asyncapi.json", contract.asyncapi_json()).unwrap();
//! // `wsock::contract::write_typescript` with wsock's `contract` feature.
//! wsock_runtime::contract::write_typescript(&server, "web/contract.ts").unwrap();
//! ```
//!
//! Without the `contract` feature none of this is compiled, and the endpoints carry nothing of
//! it: the macro's description expands to nothing.

use std::any::type_name;
use std::path::Path;

use schemars::JsonSchema;

pub use crate::asyncapi::Contract;
#[doc(hidden)]
pub use crate::describe::{
    Describe, DescribeMessage, DescribeMessageKind, DescribeParam, DescribeParamKind, KnownMessage,
    KnownParam, KnownSegment, OtherMessage, OtherParam, PartMessage, PartParam, PartSegment, Probe,
    ladder,
};
pub use crate::describe::{EndpointContract, Payload};
use crate::extract::Query;
use crate::out::Out;
use crate::server::Server;

impl Server {
    /// This server's [`Contract`]: its endpoints, in path order, with their messages' shapes.
    pub fn contract(&self) -> Contract {
        Contract::of(&self.described)
    }
}

/// Writes the TypeScript of `server`'s contract to `path` (for the client package as
/// `"wsock-client"`), unless the file already holds it; names the unknown types on stderr.
/// Keep it in a test, so that a changed Rust type changes the file, and the page's build
/// fails where it used the old shape.
pub fn write_typescript(server: &Server, path: impl AsRef<Path>) -> std::io::Result<()> {
    write_typescript_with(server, path, "wsock-client")
}

/// [`write_typescript`], importing the client from `client_module`.
pub fn write_typescript_with(
    server: &Server,
    path: impl AsRef<Path>,
    client_module: &str,
) -> std::io::Result<()> {
    let contract = server.contract();
    for unknown in contract.unknown() {
        eprintln!("wsock contract: unknown type (no JSON Schema), typed `unknown`: {unknown}");
    }
    let text = contract.typescript(client_module);
    let path = path.as_ref();
    if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    std::fs::write(path, text)
}

// `Out<T>` and `Query<T>` describe themselves here, above `out` and `extract`: `describe` stays
// below `endpoint`, which both of them import.

impl<T: DescribeMessage> DescribeParam for Out<T> {
    fn describe(d: &mut Describe<'_>) {
        let payload = T::payload(d);
        d.outbound(payload);
    }
}

impl<T: JsonSchema> DescribeParam for Query<T> {
    fn describe(d: &mut Describe<'_>) {
        let payload = Payload::Json {
            rust: type_name::<T>(),
            schema: Some(d.schema_of::<T>()),
        };
        d.query(payload);
    }
}

impl<T: DescribeMessageKind> DescribeParamKind for Out<T> {
    fn describe(d: &mut Describe<'_>) {
        let payload = T::payload(d);
        d.outbound(payload);
    }
}

impl<T> DescribeParamKind for Query<T> {
    fn describe(d: &mut Describe<'_>) {
        d.query(Payload::Json {
            rust: type_name::<T>(),
            schema: None,
        });
    }
}
