//! The rules over the whole model. Reports every broken rule at the user's tokens; builds no
//! code.

use quote::ToTokens;
use syn::visit::{self, Visit};
use syn::{Expr, ExprClosure, FnArg, Pat, Stmt};

use crate::errors::{Errors, did_you_mean};
use crate::parse::{
    EndpointFn, OPTION_KEYS, OptionProblem, SECTION_NAMES, Section, SectionKind, call_ident,
};

pub(crate) fn endpoint(endpoint: &EndpointFn) -> syn::Result<()> {
    let mut errors = Errors::default();
    check_path(endpoint, &mut errors);
    check_path_params(endpoint, &mut errors);
    check_options(endpoint, &mut errors);
    check_signature(endpoint, &mut errors);
    check_session(endpoint, &mut errors);
    check_attributes(endpoint, &mut errors);
    check_sections(endpoint, &mut errors);
    check_ready_code(endpoint, &mut errors);
    errors.finish()
}

/// The path is absolute: it starts with `/`.
fn check_path(endpoint: &EndpointFn, errors: &mut Errors) {
    let path = &endpoint.args.path;
    if !path.value.starts_with('/') {
        errors.spanned(
            &path.lit,
            format!("expected a path starting with '/', found {:?}", path.value),
        );
    } else if path.value.contains(['?', '#']) {
        errors.spanned(
            &path.lit,
            "the path cannot hold a query or a fragment: endpoints match the path alone; \
             read query parameters with `Query<T>` or `Request::query_param`",
        );
    }
}

/// Options are known keys with valid values, each given once (`protocol` may repeat): `parse`
/// typed the usable ones and kept the rest, as written and in order.
fn check_options(endpoint: &EndpointFn, errors: &mut Errors) {
    for problem in &endpoint.args.options.problems {
        match problem {
            OptionProblem::BadProtocol(value) => errors.spanned(
                value,
                "expected a subprotocol name as a string, like `protocol = \"chat.v1\"` \
                 (letters, digits and `!#$%&'*+-.^_`|~`)",
            ),
            OptionProblem::DuplicateProtocol(protocol) => errors.spanned(
                &protocol.lit,
                format!("the protocol {:?} is listed twice", protocol.name),
            ),
            OptionProblem::BadSize(value) => errors.spanned(
                value,
                "expected a size above zero, like `max_message_size = \"4MiB\"` (units: \
                 B, KiB, MiB, GiB, KB, MB, GB) or a number of bytes",
            ),
            // compress = false
            OptionProblem::BadCompress(value) => errors.spanned(
                value,
                "expected `true` or `false`, like `compress = false` (no compression \
                 for this endpoint)",
            ),
            // heartbeat = false
            OptionProblem::BadHeartbeat(value) => errors.spanned(
                value,
                "expected `true` or `false`, like `heartbeat = false` (no heartbeats for this \
                 endpoint's connections, when the server sends them)",
            ),
            // resume = true
            OptionProblem::BadResume(value) => errors.spanned(
                value,
                "expected `true` or `false`, like `resume = true` (this endpoint's connections \
                 resume their topics after a reconnect)",
            ),
            OptionProblem::Repeated(key) => errors.spanned(key, format!("`{key}` is given twice")),
            OptionProblem::Unknown(key) => {
                let name = key.to_string();
                let hint = did_you_mean(&name, &OPTION_KEYS)
                    .map(|known| format!(", did you mean `{known}`?"))
                    .unwrap_or_else(|| {
                        ": the options are `protocol`, `max_message_size`, `compress`, \
                         `heartbeat` and `resume`"
                            .to_owned()
                    });
                errors.spanned(key, format!("unknown argument `{name}`{hint}"));
            }
        }
    }
}

/// Each `{name}` appears once, and names a parameter of the function.
fn check_path_params(endpoint: &EndpointFn, errors: &mut Errors) {
    let path = &endpoint.args.path;
    for problem in &path.problems {
        errors.spanned(&path.lit, problem);
    }
    let names: Vec<String> = crate::parse::typed_params(&endpoint.func)
        .filter_map(|param| match &*param.pat {
            Pat::Ident(ident) => Some(ident.ident.to_string()),
            _ => None,
        })
        .collect();
    for (index, param) in path.params.iter().enumerate() {
        let name = &param.name;
        if path.params[..index]
            .iter()
            .any(|earlier| earlier.name == *name)
        {
            errors.spanned(
                &path.lit,
                format!(
                    "the path parameter `{{{name}}}` appears twice: give each one its own name"
                ),
            );
        } else if !names.contains(name) {
            errors.spanned(
                &path.lit,
                format!("the path parameter `{{{name}}}` has no function parameter `{name}`"),
            );
            let sig = &endpoint.func.sig;
            let (paren, inputs) = (&sig.paren_token, &sig.inputs);
            let mut args = proc_macro2::TokenStream::new();
            paren.surround(&mut args, |tokens| inputs.to_tokens(tokens));
            errors.spanned(
                args,
                format!(
                    "add a parameter `{name}: T` for the path's `{{{name}}}`, with `T` parsed \
                     from the segment (`String`, `u32`, any `FromStr` type) or resolved from it \
                     (a type of yours implementing `FromPathParam`)"
                ),
            );
        }
    }
}

/// The function's attributes are ones that make sense on the generated items; sections carry
/// none.
fn check_attributes(endpoint: &EndpointFn, errors: &mut Errors) {
    for attr in &endpoint.unsupported {
        let name = attr.path().to_token_stream().to_string().replace(' ', "");
        errors.spanned(
            attr,
            format!(
                "`#[{name}]` is not supported on a `#[websocket]` function, which becomes a \
                 struct and its `Endpoint` impl: use docs, `#[cfg(..)]`, lint levels \
                 (`#[allow(..)]`, ..) or `#[deprecated]`"
            ),
        );
    }
    for section in &endpoint.sections {
        for attr in &section.call.attrs {
            errors.spanned(
                attr,
                format!(
                    "attributes on a section are not supported: put the condition inside \
                     `{}`, or on the whole function",
                    section.kind.name()
                ),
            );
        }
    }
}

/// A plain function: not const, unsafe, extern, generic, variadic or a method.
fn check_signature(endpoint: &EndpointFn, errors: &mut Errors) {
    let sig = &endpoint.func.sig;
    if let Some(constness) = &sig.constness {
        errors.spanned(constness, "a websocket endpoint cannot be a `const fn`");
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        errors.spanned(unsafety, "a websocket endpoint cannot be an `unsafe fn`");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "a websocket endpoint cannot have an `extern` ABI");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            "a websocket endpoint cannot be generic: the server creates it with no type \
             arguments; use concrete types, or `State<T>` for shared data",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "a websocket endpoint cannot be variadic");
    }
    // `()` or a `Result`: what the connection's end is decided by.
    if let syn::ReturnType::Type(_, ty) = &sig.output
        && !is_unit_or_result(ty)
    {
        errors.spanned(
            ty,
            "a websocket endpoint returns `()` or `Result<(), wsock::Error>` (to use `?` in the \
             ready code)",
        );
    }
    for arg in &sig.inputs {
        if let FnArg::Receiver(receiver) = arg {
            errors.spanned(
                receiver,
                "a websocket endpoint cannot take `self`: it must be a free function, not a \
                 method; keep shared data in a `static` or in server state",
            );
        }
    }
}

/// The session an endpoint takes is read-only: it came with the upgrade request, and a change
/// to it reaches no cookie, so a `mut` binding of one is a mistake (a `Session` type named by
/// its last path segment, as written).
fn check_session(endpoint: &EndpointFn, errors: &mut Errors) {
    for param in crate::parse::typed_params(&endpoint.func) {
        let (Pat::Ident(ident), syn::Type::Path(ty)) = (&*param.pat, &*param.ty) else {
            continue;
        };
        let is_session = ty.qself.is_none()
            && ty
                .path
                .segments
                .last()
                .is_some_and(|last| last.ident == "Session" && last.arguments.is_none());
        if let (true, Some(mutability)) = (is_session, &ident.mutability) {
            errors.spanned(
                mutability,
                format!(
                    "remove `mut`: the session came with the upgrade request, and a change to \
                     `{}` would reach no cookie; issue a new cookie from an HTTP route with \
                     `Sessions::cookie` (the server's `sessions()`) or `SessionKey::cookie`",
                    ident.ident
                ),
            );
        }
    }
}

fn is_unit_or_result(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Tuple(tuple) => tuple.elems.is_empty(),
        syn::Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Result"),
        syn::Type::Paren(inner) => is_unit_or_result(&inner.elem),
        _ => false,
    }
}

fn check_sections(endpoint: &EndpointFn, errors: &mut Errors) {
    // Each section appears at most once.
    for (index, section) in endpoint.sections.iter().enumerate() {
        if endpoint.sections[..index]
            .iter()
            .any(|earlier| earlier.kind == section.kind)
        {
            errors.spanned(
                &section.ident,
                format!(
                    "duplicate `{name}` section: an endpoint has at most one; handle every case \
                     in the first `{name}`",
                    name = section.kind.name()
                ),
            );
        }
    }
    for section in &endpoint.sections {
        check_section(section, errors);
    }
}

/// A section is a call with one closure argument, of the right arity, that borrows.
fn check_section(section: &Section, errors: &mut Errors) {
    let name = section.kind.name();
    let example = match section.kind {
        SectionKind::Message => "on_message(|event: String| { .. })",
        SectionKind::Close => "on_close(|| { .. })",
        SectionKind::Error => "on_error(|error: wsock::DecodeError| { .. })",
    };
    let Some(argument) = section.argument() else {
        // At the extra arguments, or at the empty call.
        let message = format!("`{name}` takes one closure: `{example}`");
        let extra: Vec<_> = section.call.args.iter().skip(1).collect();
        match (extra.first(), extra.last()) {
            (Some(first), Some(last)) => errors.spanned(quote::quote!(#first #last), message),
            _ => errors.spanned(&section.call, message),
        }
        return;
    };
    let Expr::Closure(closure) = argument else {
        errors.spanned(
            argument,
            format!(
                "expected a closure: `{example}`; sections are written in place, not passed \
                     as variables or functions"
            ),
        );
        return;
    };
    // Sections borrow the ready code's variables: `move` would take them from the others.
    // (`|m| async move { .. }` is fine: the section runs the block in place, borrowing.)
    if let Some(capture) = &closure.capture {
        errors.spanned(
            capture,
            format!(
                "remove `move`: sections borrow the ready code's variables, so that every \
                 section shares them; `move` would take them from the other sections and from \
                 the next call of `{name}`"
            ),
        );
    }
    let (arity, wanted) = (closure.inputs.len(), expected_arity(section.kind));
    if arity != wanted {
        let message = match section.kind {
            SectionKind::Message => {
                "an `on_message` closure takes one parameter, the message: `|event: String|`"
            }
            SectionKind::Close => "an `on_close` closure takes no parameters: `|| { .. }`",
            SectionKind::Error => {
                "an `on_error` closure takes one parameter, the error: `|error: wsock::DecodeError|`"
            }
        };
        let (begin, inputs, end) = (&closure.inputs_begin, &closure.inputs, &closure.inputs_end);
        errors.spanned(quote::quote!(#begin #inputs #end), message);
        return;
    }
    // The message type decides how frames decode: it must be written.
    if section.kind == SectionKind::Message
        && let Some(param) = closure.inputs.first()
        && !matches!(param, Pat::Type(_))
    {
        errors.spanned(
            param,
            "the `on_message` parameter needs its type, which says how messages decode: \
             `|event: String|` (or `Vec<u8>`, `Bytes`, `wsock::Message`)",
        );
    }
}

fn expected_arity(kind: SectionKind) -> usize {
    match kind {
        SectionKind::Message | SectionKind::Error => 1,
        SectionKind::Close => 0,
    }
}

fn check_ready_code(endpoint: &EndpointFn, errors: &mut Errors) {
    let first_section = endpoint.sections.first().map(|s| s.kind.name());
    for ready in &endpoint.ready {
        // Sections see the ready code's variables as they are when the ready code ends; a `let`
        // after a section would silently shadow what the section uses.
        if let (true, Stmt::Local(local)) = (ready.after_section, &ready.stmt) {
            errors.spanned(
                local.let_token,
                format!(
                    "move this `let` above the first section (`{}`): sections see the ready \
                     code's variables as they are when the ready code ends, so a later `let` \
                     would shadow them unseen",
                    first_section.unwrap_or("on_message")
                ),
            );
        }
        // `on_mesage(..)`: a misspelled section.
        if let Stmt::Expr(Expr::Call(call), _) = &ready.stmt
            && let Some(ident) = call_ident(call)
            && let Some(section) = did_you_mean(&ident.to_string(), &SECTION_NAMES)
        {
            errors.spanned(
                ident,
                format!("unknown section `{ident}`, did you mean `{section}`?"),
            );
        }
    }
    // Sections are top-level statements; one inside a block, an `if` or a closure is a mistake.
    let mut nested = NestedSections {
        errors,
        is_async: endpoint.func.sig.asyncness.is_some(),
        depth: 0,
    };
    for ready in &endpoint.ready {
        nested.visit_stmt(&ready.stmt);
    }
    if let Some(tail) = &endpoint.tail {
        nested.visit_expr(tail);
    }
    for section in &endpoint.sections {
        for arg in &section.call.args {
            nested.depth += 1;
            nested.visit_expr(arg);
            nested.depth -= 1;
        }
    }
}

/// Finds section calls below the top level, and `.await` in the ready code of a plain `fn`.
struct NestedSections<'a> {
    errors: &'a mut Errors,
    is_async: bool,
    /// How many closures or async blocks enclose the current expression.
    depth: usize,
}

impl<'ast> Visit<'ast> for NestedSections<'_> {
    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let Some(ident) = call_ident(call)
            && SECTION_NAMES.contains(&ident.to_string().as_str())
        {
            self.errors.spanned(
                ident,
                format!(
                    "`{ident}` must be a top-level statement of the `#[websocket]` function, \
                     not inside a block, an `if`, a loop or a closure; to act on a condition, \
                     test it inside the section"
                ),
            );
        }
        visit::visit_expr_call(self, call);
    }

    fn visit_expr_await(&mut self, expr: &'ast syn::ExprAwait) {
        if !self.is_async && self.depth == 0 {
            self.errors.spanned(
                expr,
                "`.await` in the ready code of a plain `fn`: make the endpoint an `async fn`",
            );
        }
        visit::visit_expr_await(self, expr);
    }

    fn visit_expr_closure(&mut self, closure: &'ast ExprClosure) {
        self.depth += 1;
        visit::visit_expr_closure(self, closure);
        self.depth -= 1;
    }

    fn visit_expr_async(&mut self, block: &'ast syn::ExprAsync) {
        self.depth += 1;
        visit::visit_expr_async(self, block);
        self.depth -= 1;
    }

    // Items in the body are their own scope: their contents are not the endpoint's.
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}
