//! The [`Contract`] a server's routes make, from what each endpoint says of itself
//! (`describe`), and its AsyncAPI document: what `Server::contract` returns and the dev console
//! serves. Its TypeScript is `contract_ts`; the public module is `contract`.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::describe::{Describe, EndpointContract, Payload};
use crate::endpoint::Endpoint;

/// Where the schemas of `Json<T>` payloads live in the AsyncAPI document.
const SCHEMAS: &str = "#/components/schemas/";

/// What a server's endpoints accept and send: [`Server::contract`](crate::Server::contract).
#[derive(Debug, Clone)]
pub struct Contract {
    title: String,
    version: String,
    endpoints: Vec<EndpointContract>,
    schemas: Map<String, Value>,
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
    pub(crate) fn of<E: Endpoint>() -> Self {
        Described {
            name: E::NAME,
            path: E::PATH,
            protocols: E::PROTOCOLS,
            resume: E::RESUME,
            describe: E::describe,
        }
    }

    /// The endpoint's part of the contract: the route's own facts, then what its `describe`
    /// says, with the schemas it names kept by `generator`.
    fn endpoint(&self, generator: &mut SchemaGenerator) -> EndpointContract {
        let mut endpoint = EndpointContract {
            name: self.name,
            path: self.path,
            protocols: self.protocols,
            resume: self.resume,
            ..EndpointContract::default()
        };
        (self.describe)(&mut Describe::new(generator, &mut endpoint));
        endpoint
    }
}

impl Contract {
    /// The contract of these routes: their endpoints, in path order, with their messages'
    /// shapes.
    pub(crate) fn of(described: &[Described]) -> Self {
        let mut generator = SchemaSettings::draft07()
            .with(|settings| {
                settings.definitions_path = SCHEMAS.into();
                settings.meta_schema = None;
            })
            .into_generator();
        let mut endpoints: Vec<EndpointContract> = described
            .iter()
            .map(|described| described.endpoint(&mut generator))
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
