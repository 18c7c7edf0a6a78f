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
use std::marker::PhantomData;
use std::path::Path;

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::message::{Json, Message, Text};
use crate::{Bytes, Out, Query, Server};

/// Where the schemas of `Json<T>` payloads live in the AsyncAPI document.
const SCHEMAS: &str = "#/components/schemas/";

/// What a server's endpoints accept and send: [`Server::contract`].
#[derive(Debug, Clone)]
pub struct Contract {
    title: String,
    version: String,
    endpoints: Vec<EndpointContract>,
    schemas: Map<String, Value>,
}

/// One endpoint's part of the [`Contract`].
#[derive(Debug, Clone, Default)]
pub struct EndpointContract {
    /// The function's name.
    pub name: &'static str,
    /// Its name in the document and the TypeScript: the function's name, with `_2`, `_3`, ..
    /// after it when endpoints of several modules share it.
    pub id: String,
    /// The path pattern, `{name}` for each path parameter.
    pub path: &'static str,
    /// The function's doc comment.
    pub description: String,
    /// The subprotocols, preferred first.
    pub protocols: &'static [&'static str],
    /// The path parameters, in the path's order, each with its JSON Schema (a string unless
    /// the parameter's type has a schema).
    pub params: Vec<(&'static str, Value)>,
    /// The query's JSON Schema (an object), from `Query<T>`.
    pub query: Option<Payload>,
    /// What `on_message` takes; `None` when the endpoint has no `on_message`.
    pub inbound: Option<Payload>,
    /// What its `Out`s send, one entry each.
    pub outbound: Vec<Payload>,
    /// Whether it resumes its topics (`resume = true`).
    pub resume: bool,
}

/// A message's (or the query's) shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Text frames (`String`, `Text`).
    Text,
    /// Binary frames (`Vec<u8>`, `Bytes`).
    Binary,
    /// Either (`Message`).
    Any,
    /// Text frames holding JSON (`Json<T>`), or a query string deserialized with serde.
    Json {
        /// `T`'s Rust name.
        rust: &'static str,
        /// `T`'s JSON Schema; `None` when `T` has none (no `JsonSchema` impl): unknown.
        schema: Option<Value>,
    },
    /// A type the contract cannot describe (declared inside the endpoint function, or left to
    /// inference), by its Rust name.
    Unknown(&'static str),
}

impl Payload {
    /// The Rust type this payload is unknown for, if it is.
    pub fn unknown(&self) -> Option<&'static str> {
        match self {
            Payload::Json { rust, schema: None } | Payload::Unknown(rust) => Some(rust),
            _ => None,
        }
    }
}

impl Server {
    /// This server's [`Contract`]: its endpoints, in path order, with their messages' shapes.
    pub fn contract(&self) -> Contract {
        let mut generator = SchemaSettings::draft07()
            .with(|settings| {
                settings.definitions_path = SCHEMAS.into();
                settings.meta_schema = None;
            })
            .into_generator();
        let mut endpoints: Vec<EndpointContract> = self
            .described
            .iter()
            .map(|described| {
                let mut endpoint = EndpointContract {
                    name: described.name,
                    path: described.path,
                    protocols: described.protocols,
                    resume: described.resume,
                    ..EndpointContract::default()
                };
                (described.describe)(&mut Describe {
                    generator: &mut generator,
                    endpoint: &mut endpoint,
                });
                endpoint
            })
            .collect();
        endpoints.sort_by_key(|endpoint| endpoint.path);
        let mut taken = std::collections::HashSet::new();
        for endpoint in &mut endpoints {
            let mut id = endpoint.name.to_owned();
            let mut n = 1;
            while !taken.insert(id.clone()) {
                n += 1;
                id = format!("{}_{n}", endpoint.name);
            }
            endpoint.id = id;
        }
        Contract {
            title: "wsock server".to_owned(),
            version: "0.1.0".to_owned(),
            endpoints,
            schemas: generator.take_definitions(true),
        }
    }
}

/// What an endpoint's `describe` needs to say about a route: kept by `Server::route`.
#[derive(Clone, Copy)]
pub(crate) struct Described {
    pub(crate) name: &'static str,
    pub(crate) path: &'static str,
    pub(crate) protocols: &'static [&'static str],
    pub(crate) resume: bool,
    pub(crate) describe: fn(&mut Describe<'_>),
}

impl Described {
    pub(crate) fn of<E: crate::Endpoint>() -> Self {
        Described {
            name: E::NAME,
            path: E::PATH,
            protocols: E::PROTOCOLS,
            resume: E::RESUME,
            describe: E::describe,
        }
    }
}

impl Contract {
    /// Names the document (`info.title`, `info.version`); by default "wsock server", "0.1.0".
    pub fn info(mut self, title: impl Into<String>, version: impl Into<String>) -> Self {
        self.title = title.into();
        self.version = version.into();
        self
    }

    /// The endpoints, in path order.
    pub fn endpoints(&self) -> &[EndpointContract] {
        &self.endpoints
    }

    /// The Rust types the contract could not describe, as "`endpoint` `direction`: `type`"
    /// lines (direction: `inbound`, `outbound` or `query`): `Json<T>` payloads and queries whose
    /// `T` has no `JsonSchema` impl, and types declared inside an endpoint function. They are
    /// `{}` (anything) in the document, `unknown` in the TypeScript.
    pub fn unknown(&self) -> Vec<String> {
        let mut unknown = Vec::new();
        for endpoint in &self.endpoints {
            let payloads = (endpoint.query.iter().map(|p| ("query", p)))
                .chain(endpoint.inbound.iter().map(|p| ("inbound", p)))
                .chain(endpoint.outbound.iter().map(|p| ("outbound", p)));
            for (direction, payload) in payloads {
                if let Some(rust) = payload.unknown() {
                    unknown.push(format!("{} {direction}: {rust}", endpoint.name));
                }
            }
        }
        unknown
    }

    /// The AsyncAPI 3.0 document, describing the server as the application: an operation
    /// `receive` for what clients send, `send` for what it sends them.
    pub fn asyncapi(&self) -> Value {
        let mut channels = Map::new();
        let mut operations = Map::new();
        let mut messages = Map::new();
        for endpoint in &self.endpoints {
            let id = endpoint.id.as_str();
            let mut channel = Map::new();
            channel.insert("address".into(), json!(endpoint.path));
            if !endpoint.description.is_empty() {
                channel.insert("description".into(), json!(endpoint.description));
            }
            let mut channel_messages = Map::new();
            let mut add = |name: String, payload: &Payload, what: &str, action: &str| {
                channel_messages.insert(
                    name.clone(),
                    json!({ "$ref": format!("#/components/messages/{name}") }),
                );
                messages.insert(name.clone(), message(&name, payload, what));
                operations.insert(
                    format!("{id}_{action}{}", &name[id.len()..]),
                    json!({
                        "action": action,
                        "channel": { "$ref": format!("#/channels/{id}") },
                        "messages": [{ "$ref": format!("#/channels/{id}/messages/{name}") }],
                    }),
                );
            };
            if let Some(inbound) = &endpoint.inbound {
                add(format!("{id}_in"), inbound, "What clients send.", "receive");
            }
            for (i, outbound) in endpoint.outbound.iter().enumerate() {
                let name = match i {
                    0 => format!("{id}_out"),
                    _ => format!("{id}_out{}", i + 1),
                };
                add(name, outbound, "What the endpoint sends.", "send");
            }
            channel.insert("messages".into(), Value::Object(channel_messages));
            if !endpoint.params.is_empty() {
                let params = endpoint.params.iter().map(|(name, schema)| {
                    let description = match schema.get("type").and_then(Value::as_str) {
                        Some(ty) => format!("a path segment: {ty}"),
                        None => "a path segment".to_owned(),
                    };
                    (name.to_string(), json!({ "description": description }))
                });
                channel.insert("parameters".into(), Value::Object(params.collect()));
            }
            let mut ws = Map::new();
            ws.insert("method".into(), json!("GET"));
            if let Some(query) = &endpoint.query {
                let schema = match query {
                    Payload::Json {
                        schema: Some(schema),
                        ..
                    } => inline(schema, &self.schemas),
                    _ => json!({ "type": "object", "description": "unknown: no JSON Schema" }),
                };
                ws.insert("query".into(), schema);
            }
            ws.insert("bindingVersion".into(), json!("0.1.0"));
            channel.insert("bindings".into(), json!({ "ws": ws }));
            if !endpoint.protocols.is_empty() {
                channel.insert("x-wsock-subprotocols".into(), json!(endpoint.protocols));
            }
            if endpoint.resume {
                channel.insert("x-wsock-resume".into(), json!(true));
            }
            channel.insert("x-wsock-close-codes".into(), close_codes(endpoint));
            channels.insert(id.to_owned(), Value::Object(channel));
        }
        json!({
            "asyncapi": "3.0.0",
            "info": {
                "title": self.title,
                "version": self.version,
                "description": "The server's WebSocket endpoints, from their functions (wsock's contract).",
            },
            "defaultContentType": "application/json",
            "channels": channels,
            "operations": operations,
            "components": {
                "messages": messages,
                "schemas": self.schemas,
            },
        })
    }

    /// [`asyncapi`](Self::asyncapi) as pretty JSON.
    pub fn asyncapi_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.asyncapi()).expect("JSON values print");
        text.push('\n');
        text
    }

    pub(crate) fn schemas(&self) -> &Map<String, Value> {
        &self.schemas
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

/// A message of the document.
fn message(name: &str, payload: &Payload, what: &str) -> Value {
    let (content_type, payload_schema) = match payload {
        Payload::Text => ("text/plain", json!({ "type": "string" })),
        Payload::Binary => (
            "application/octet-stream",
            json!({ "type": "string", "format": "binary" }),
        ),
        Payload::Any => (
            "application/octet-stream",
            json!({ "description": "a text or a binary message" }),
        ),
        Payload::Json {
            schema: Some(schema),
            ..
        } => ("application/json", schema.clone()),
        Payload::Json { rust, schema: None } | Payload::Unknown(rust) => (
            "application/json",
            json!({ "description": format!("unknown: `{rust}` has no JSON Schema"), "x-wsock-unknown": rust }),
        ),
    };
    let mut message = json!({
        "name": name,
        "summary": what,
        "contentType": content_type,
        "payload": payload_schema,
    });
    if let Payload::Json { rust, .. } = payload {
        message["x-wsock-rust"] = json!(rust);
    }
    message
}

/// The close codes an endpoint's connections may end with, from the server.
fn close_codes(endpoint: &EndpointContract) -> Value {
    let mut codes = vec![
        (1000, "normal: the client or the endpoint closed"),
        (1001, "going away: the server shuts down"),
        (1002, "protocol error"),
    ];
    if endpoint.inbound.is_some() {
        codes.push((1003, "unsupported data: a frame of the wrong kind"));
        codes.push((1007, "invalid payload: a message that does not decode"));
    }
    codes.extend([
        (1008, "policy: a client too slow to read (full queue)"),
        (1009, "message too big"),
        (1011, "internal error: a section's Err or panic"),
    ]);
    Value::Array(
        codes
            .into_iter()
            .map(|(code, meaning)| json!({ "code": code, "meaning": meaning }))
            .collect(),
    )
}

/// `schema` with its top-level `$ref` replaced by the definition (the ws binding's query is an
/// object schema of its own).
fn inline(schema: &Value, schemas: &Map<String, Value>) -> Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix(SCHEMAS)
            .and_then(|name| schemas.get(name))
            .cloned()
            .unwrap_or_else(|| schema.clone()),
        None => schema.clone(),
    }
}

/// What generated code fills in: not public API.
#[doc(hidden)]
pub struct Describe<'a> {
    generator: &'a mut SchemaGenerator,
    endpoint: &'a mut EndpointContract,
}

impl Describe<'_> {
    pub fn description(&mut self, text: &str) {
        self.endpoint.description = text.to_owned();
    }

    pub fn inbound(&mut self, payload: Payload) {
        self.endpoint.inbound = Some(payload);
    }

    pub fn outbound(&mut self, payload: Payload) {
        if !self.endpoint.outbound.contains(&payload) {
            self.endpoint.outbound.push(payload);
        }
    }

    pub fn query(&mut self, payload: Payload) {
        self.endpoint.query = Some(payload);
    }

    pub fn path_param(&mut self, name: &'static str, schema: Value) {
        self.endpoint.params.push((name, schema));
    }

    pub fn path_param_text(&mut self, name: &'static str) {
        self.path_param(name, json!({ "type": "string" }));
    }

    pub fn schema_of<T: JsonSchema>(&mut self) -> Value {
        let schema: Schema = self.generator.subschema_for::<T>();
        schema.to_value()
    }
}

/// A type to describe, for method resolution to pick the most precise description:
/// `(&&&Probe::<T>::new()).param(d)` takes the first of `KnownParam` (a `T` fully described),
/// `PartParam` (its kind known, its payload's type without a schema), `OtherParam` (nothing to
/// say), by autoref.
#[doc(hidden)]
pub struct Probe<T: ?Sized>(PhantomData<T>);

impl<T: ?Sized> Probe<T> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Probe(PhantomData)
    }
}

/// A message type the contract describes in full.
#[doc(hidden)]
pub trait DescribeMessage {
    fn payload(d: &mut Describe<'_>) -> Payload;
}

impl DescribeMessage for String {
    fn payload(_: &mut Describe<'_>) -> Payload {
        Payload::Text
    }
}

impl DescribeMessage for Text {
    fn payload(_: &mut Describe<'_>) -> Payload {
        Payload::Text
    }
}

impl DescribeMessage for Vec<u8> {
    fn payload(_: &mut Describe<'_>) -> Payload {
        Payload::Binary
    }
}

impl DescribeMessage for Bytes {
    fn payload(_: &mut Describe<'_>) -> Payload {
        Payload::Binary
    }
}

impl DescribeMessage for Message {
    fn payload(_: &mut Describe<'_>) -> Payload {
        Payload::Any
    }
}

impl<T: JsonSchema> DescribeMessage for Json<T> {
    fn payload(d: &mut Describe<'_>) -> Payload {
        Payload::Json {
            rust: type_name::<T>(),
            schema: Some(d.schema_of::<T>()),
        }
    }
}

/// A message type whose kind is known but not its payload's schema: `Json<T>`, any `T`.
#[doc(hidden)]
pub trait DescribeMessageKind {
    fn payload(d: &mut Describe<'_>) -> Payload;
}

impl<T> DescribeMessageKind for Json<T> {
    fn payload(_: &mut Describe<'_>) -> Payload {
        Payload::Json {
            rust: type_name::<T>(),
            schema: None,
        }
    }
}

/// A parameter the contract describes in full: `Out<T>`, `Query<T>` with described `T`s.
#[doc(hidden)]
pub trait DescribeParam {
    fn describe(d: &mut Describe<'_>);
}

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

/// A parameter whose kind is known, not its type's schema.
#[doc(hidden)]
pub trait DescribeParamKind {
    fn describe(d: &mut Describe<'_>);
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

// The autoref ladder. Generated code calls `(&&&Probe::<T>::new()).method(d)` on a concrete
// `T`: the receiver `&&&Probe<T>` matches the first trait's impl, whose bound may fail; then
// `&&Probe<T>` the second's, then `&Probe<T>` the last, which always applies.

#[doc(hidden)]
pub trait KnownParam {
    fn param(&self, d: &mut Describe<'_>);
}
impl<T: DescribeParam> KnownParam for &&Probe<T> {
    fn param(&self, d: &mut Describe<'_>) {
        T::describe(d);
    }
}

#[doc(hidden)]
pub trait PartParam {
    fn param(&self, d: &mut Describe<'_>);
}
impl<T: DescribeParamKind> PartParam for &Probe<T> {
    fn param(&self, d: &mut Describe<'_>) {
        T::describe(d);
    }
}

#[doc(hidden)]
pub trait OtherParam {
    fn param(&self, d: &mut Describe<'_>);
}
impl<T: ?Sized> OtherParam for Probe<T> {
    fn param(&self, _: &mut Describe<'_>) {}
}

#[doc(hidden)]
pub trait KnownMessage {
    fn message(&self, d: &mut Describe<'_>) -> Payload;
}
impl<T: DescribeMessage> KnownMessage for &&Probe<T> {
    fn message(&self, d: &mut Describe<'_>) -> Payload {
        T::payload(d)
    }
}

#[doc(hidden)]
pub trait PartMessage {
    fn message(&self, d: &mut Describe<'_>) -> Payload;
}
impl<T: DescribeMessageKind> PartMessage for &Probe<T> {
    fn message(&self, d: &mut Describe<'_>) -> Payload {
        T::payload(d)
    }
}

#[doc(hidden)]
pub trait OtherMessage {
    fn message(&self, d: &mut Describe<'_>) -> Payload;
}
impl<T: ?Sized> OtherMessage for Probe<T> {
    fn message(&self, _: &mut Describe<'_>) -> Payload {
        Payload::Unknown(type_name::<T>())
    }
}

/// A path parameter's schema: its type's, or a string.
#[doc(hidden)]
pub trait KnownSegment {
    fn segment(&self, d: &mut Describe<'_>) -> Value;
}
impl<T: JsonSchema> KnownSegment for &&Probe<T> {
    fn segment(&self, d: &mut Describe<'_>) -> Value {
        d.schema_of::<T>()
    }
}

#[doc(hidden)]
pub trait PartSegment {
    fn segment(&self, d: &mut Describe<'_>) -> Value;
}
impl<T: ?Sized> PartSegment for &Probe<T> {
    fn segment(&self, _: &mut Describe<'_>) -> Value {
        json!({ "type": "string" })
    }
}

/// The names the generated code imports, `use ..::ladder::*`, so that the ladder's methods
/// resolve.
#[doc(hidden)]
pub mod ladder {
    pub use super::{
        KnownMessage as _, KnownParam as _, KnownSegment as _, OtherMessage as _, OtherParam as _,
        PartMessage as _, PartParam as _, PartSegment as _,
    };
}
