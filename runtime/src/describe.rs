//! What `#[websocket]` says about an endpoint for the contract: the generated `describe` fills
//! in an [`EndpointContract`] through [`Describe`], each type going down the autoref ladder
//! ([`Probe`]) to the most precise description it has. This is the contract's low half, all
//! that `Endpoint` needs; the `Contract` is made of these descriptions in `asyncapi`, and the
//! public module is `contract`, which also describes the parameters `Out<T>` and `Query<T>`.

use std::any::type_name;
use std::marker::PhantomData;

use bytes::Bytes;
use schemars::generate::SchemaGenerator;
use schemars::{JsonSchema, Schema};
use serde_json::{Value, json};

use crate::message::{Json, Message, Text};

/// One endpoint's part of the [`Contract`](crate::contract::Contract).
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

/// What generated code fills in: not public API.
#[doc(hidden)]
pub struct Describe<'a> {
    generator: &'a mut SchemaGenerator,
    endpoint: &'a mut EndpointContract,
}

impl<'a> Describe<'a> {
    /// A description of `endpoint`, its schemas kept by `generator`.
    pub(crate) fn new(
        generator: &'a mut SchemaGenerator,
        endpoint: &'a mut EndpointContract,
    ) -> Self {
        Describe {
            generator,
            endpoint,
        }
    }

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

/// A parameter whose kind is known, not its type's schema.
#[doc(hidden)]
pub trait DescribeParamKind {
    fn describe(d: &mut Describe<'_>);
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
