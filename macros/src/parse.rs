//! Tokens → model. Keeps the user's tokens (and so their spans); builds no code and judges
//! nothing that `validate` can judge on the whole model.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Expr, ExprCall, FnArg, Ident, ItemFn, LitStr, ReturnType, Stmt, Token};

/// The section names a body may use, as written.
pub(crate) const SECTION_NAMES: [&str; 3] = ["on_message", "on_close", "on_error"];

/// `#[websocket("/path")] fn name(params) -> ret { body }`, taken apart.
pub(crate) struct EndpointFn {
    pub(crate) args: WebsocketArgs,
    pub(crate) func: ItemFn,
    /// The function's attributes, by where they go: docs on the struct, `cfg` on every item,
    /// lint levels on the impl (around the user's code), `deprecated` on the struct and its
    /// constructor; any other is `unsupported` (reported by `validate`).
    pub(crate) docs: Vec<Attribute>,
    pub(crate) cfgs: Vec<Attribute>,
    pub(crate) lints: Vec<Attribute>,
    pub(crate) deprecated: Vec<Attribute>,
    pub(crate) unsupported: Vec<Attribute>,
    /// The body's statements that are not sections, in order.
    pub(crate) ready: Vec<ReadyStmt>,
    /// The body's last expression, without a semicolon, if it is not a section.
    pub(crate) tail: Option<Expr>,
    pub(crate) sections: Vec<Section>,
}

/// The attribute's arguments: `("/chat", protocol = "chat.v1", max_message_size = "4MiB",
/// compress = false, heartbeat = false, resume = true)`, parsed once into typed values.
pub(crate) struct WebsocketArgs {
    pub(crate) path: RoutePath,
    pub(crate) options: Options,
}

/// The option keys the attribute knows.
const PROTOCOL: &str = "protocol";
const MAX_MESSAGE_SIZE: &str = "max_message_size";
const COMPRESS: &str = "compress";
const HEARTBEAT: &str = "heartbeat";
const RESUME: &str = "resume";
pub(crate) const OPTION_KEYS: [&str; 5] = [PROTOCOL, MAX_MESSAGE_SIZE, COMPRESS, HEARTBEAT, RESUME];

/// The `key = value` options after the path, each value parsed into its type as it is read:
/// `expand` takes these as they are, with no text left to parse. What cannot be used is kept
/// as written, in `problems`, for `validate` to report at the user's tokens.
#[derive(Default)]
pub(crate) struct Options {
    /// `protocol = "chat.v1"`, repeatable: the subprotocols, preferred first, each once.
    pub(crate) protocols: Vec<Protocol>,
    /// `max_message_size = "4MiB"`: the endpoint's limit on incoming messages, in bytes
    /// (above zero).
    pub(crate) max_message_size: Option<usize>,
    /// `compress = false`: whether the endpoint offers permessage-deflate.
    pub(crate) compress: Option<bool>,
    /// `heartbeat = false`: whether the endpoint's connections get the server's heartbeats.
    pub(crate) heartbeat: Option<bool>,
    /// `resume = true`: whether the endpoint's connections resume their topics.
    pub(crate) resume: Option<bool>,
    /// The options that cannot be used, in the order written.
    pub(crate) problems: Vec<OptionProblem>,
}

/// `protocol = "chat.v1"`.
pub(crate) struct Protocol {
    /// The subprotocol's name, an HTTP token.
    pub(crate) name: String,
    /// The literal as written, with the user's span.
    pub(crate) lit: LitStr,
}

/// An option that cannot be used, with the tokens at fault.
pub(crate) enum OptionProblem {
    /// `protocol = <value>`, where the value is not a string holding an HTTP token.
    BadProtocol(syn::Lit),
    /// A protocol already listed.
    DuplicateProtocol(Protocol),
    /// `max_message_size = <value>`, where the value is not a size above zero.
    BadSize(syn::Lit),
    /// `compress = <value>`, where the value is not `true` or `false`.
    BadCompress(syn::Lit),
    /// `heartbeat = <value>`, where the value is not `true` or `false`.
    BadHeartbeat(syn::Lit),
    /// `resume = <value>`, where the value is not `true` or `false`.
    BadResume(syn::Lit),
    /// A second `max_message_size`, `compress`, `heartbeat` or `resume`: the key.
    Repeated(Ident),
    /// A key the attribute does not know.
    Unknown(Ident),
}

impl Options {
    /// Types the options, in the order written.
    fn new(written: Vec<(Ident, syn::Lit)>) -> Self {
        let mut options = Options::default();
        // Whether `max_message_size`, `compress`, `heartbeat` and `resume` came before, valid
        // or not.
        let (mut size_given, mut compress_given, mut heartbeat_given, mut resume_given) =
            (false, false, false, false);
        for (key, value) in written {
            let problem = match key.to_string().as_str() {
                PROTOCOL => match value {
                    syn::Lit::Str(lit) if is_token(&lit.value()) => {
                        let protocol = Protocol {
                            name: lit.value(),
                            lit,
                        };
                        if options.protocols.iter().any(|p| p.name == protocol.name) {
                            Some(OptionProblem::DuplicateProtocol(protocol))
                        } else {
                            options.protocols.push(protocol);
                            None
                        }
                    }
                    value => Some(OptionProblem::BadProtocol(value)),
                },
                MAX_MESSAGE_SIZE if size_given => Some(OptionProblem::Repeated(key)),
                MAX_MESSAGE_SIZE => {
                    size_given = true;
                    match parse_size(&value) {
                        Some(size) => {
                            options.max_message_size = Some(size);
                            None
                        }
                        None => Some(OptionProblem::BadSize(value)),
                    }
                }
                COMPRESS if compress_given => Some(OptionProblem::Repeated(key)),
                COMPRESS => {
                    compress_given = true;
                    match value {
                        syn::Lit::Bool(flag) => {
                            options.compress = Some(flag.value);
                            None
                        }
                        value => Some(OptionProblem::BadCompress(value)),
                    }
                }
                HEARTBEAT if heartbeat_given => Some(OptionProblem::Repeated(key)),
                HEARTBEAT => {
                    heartbeat_given = true;
                    match value {
                        syn::Lit::Bool(flag) => {
                            options.heartbeat = Some(flag.value);
                            None
                        }
                        value => Some(OptionProblem::BadHeartbeat(value)),
                    }
                }
                RESUME if resume_given => Some(OptionProblem::Repeated(key)),
                RESUME => {
                    resume_given = true;
                    match value {
                        syn::Lit::Bool(flag) => {
                            options.resume = Some(flag.value);
                            None
                        }
                        value => Some(OptionProblem::BadResume(value)),
                    }
                }
                _ => Some(OptionProblem::Unknown(key)),
            };
            options.problems.extend(problem);
        }
        options
    }
}

/// An HTTP token (RFC 7230), as a subprotocol name must be.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `"4MiB"`, `"64KiB"`, `"1MB"`, `"512"` or `512`: a size in bytes.
fn parse_size(value: &syn::Lit) -> Option<usize> {
    let text = match value {
        syn::Lit::Str(text) => text.value(),
        syn::Lit::Int(int) => int.base10_digits().to_owned(),
        _ => return None,
    };
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.replace('_', "").parse().ok()?;
    let unit: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(unit).filter(|size| *size > 0)
}

/// `"/rooms/{room}/seats/{seat}"`: literal segments and `{name}` parameters.
pub(crate) struct RoutePath {
    pub(crate) value: String,
    pub(crate) lit: LitStr,
    pub(crate) params: Vec<PathParam>,
    /// What is wrong with the path's syntax, for `validate` to report at the literal.
    pub(crate) problems: Vec<String>,
}

/// `{room}` in a path.
pub(crate) struct PathParam {
    pub(crate) name: String,
}

impl RoutePath {
    pub(crate) fn new(lit: LitStr) -> Self {
        let value = lit.value();
        let (params, problems) = parse_path(&value);
        RoutePath {
            value,
            lit,
            params,
            problems,
        }
    }
}

/// A character a request path carries as is (RFC 3986 `pchar`, without `%` escapes).
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
}

/// Splits a path into its `{name}` parameters, noting what is malformed.
fn parse_path(path: &str) -> (Vec<PathParam>, Vec<String>) {
    let mut params = Vec::new();
    let mut problems = Vec::new();
    let Some(rest) = path.strip_prefix('/') else {
        return (params, problems); // `validate` reports the missing `/`
    };
    if rest.is_empty() || rest.contains(['?', '#']) {
        return (params, problems); // "/", or a query that `validate` reports
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            problems.push(format!("empty segment in {path:?}: remove the extra `/`"));
        } else if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if syn::parse_str::<Ident>(name).is_ok() {
                params.push(PathParam {
                    name: name.to_owned(),
                });
            } else {
                problems.push(format!(
                    "`{{{name}}}` is not a path parameter: write `{{name}}` with a Rust identifier \
                     that names a parameter of the function"
                ));
            }
        } else if segment.contains(['{', '}']) {
            problems.push(format!(
                "malformed segment `{segment}`: a path parameter is a whole segment, like \
                 `/rooms/{{room}}`"
            ));
        } else if segment == "." || segment == ".." {
            problems.push(format!(
                "`{segment}` cannot be a path segment: no request path has it"
            ));
        } else if let Some(bad) = segment.chars().find(|c| !is_path_char(*c)) {
            problems.push(format!(
                "{bad:?} cannot appear in a path segment: use letters, digits and \
                 `-._~!$&'()*+,;=:@`"
            ));
        }
    }
    (params, problems)
}

pub(crate) struct ReadyStmt {
    pub(crate) stmt: Stmt,
    /// Whether a section comes before it in the body.
    pub(crate) after_section: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SectionKind {
    Message,
    Close,
    Error,
}

impl SectionKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SectionKind::Message => "on_message",
            SectionKind::Close => "on_close",
            SectionKind::Error => "on_error",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "on_message" => Some(SectionKind::Message),
            "on_close" => Some(SectionKind::Close),
            "on_error" => Some(SectionKind::Error),
            _ => None,
        }
    }
}

/// A top-level `on_message(<closure>);` statement.
pub(crate) struct Section {
    pub(crate) kind: SectionKind,
    /// `on_message`, with the user's span.
    pub(crate) ident: Ident,
    pub(crate) call: ExprCall,
}

impl Section {
    /// The single argument, when there is exactly one.
    pub(crate) fn argument(&self) -> Option<&Expr> {
        match self.call.args.len() {
            1 => self.call.args.first(),
            _ => None,
        }
    }
}

impl Parse for WebsocketArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        // "/chat" (`endpoint` reports empty arguments as a missing path)
        let lit: LitStr = input.parse().map_err(|err| {
            syn::Error::new(
                err.span(),
                "expected the endpoint's path as a string literal, like `\"/chat\"`",
            )
        })?;
        let mut written = Vec::new();
        while !input.is_empty() {
            input.parse::<Token![,]>().map_err(|err| {
                syn::Error::new(
                    err.span(),
                    "expected `,` before the next option: \
                     `#[websocket(\"/chat\", protocol = \"chat.v1\")]`",
                )
            })?;
            if input.is_empty() {
                break; // a trailing comma
            }
            // protocol = "chat.v1"    max_message_size = "4MiB"    (any `key = literal`)
            let key: Ident = input.parse().map_err(|err| {
                syn::Error::new(
                    err.span(),
                    "expected an option, like `protocol = \"chat.v1\"` or \
                     `max_message_size = \"4MiB\"`",
                )
            })?;
            input.parse::<Token![=]>().map_err(|_| {
                syn::Error::new_spanned(&key, format!("expected `{key} = <value>`"))
            })?;
            let value: syn::Lit = input.parse().map_err(|err| {
                syn::Error::new(
                    err.span(),
                    format!("expected a literal value, like `{key} = \"..\"`"),
                )
            })?;
            written.push((key, value));
        }
        Ok(WebsocketArgs {
            path: RoutePath::new(lit),
            options: Options::new(written),
        })
    }
}

pub(crate) fn endpoint(args: TokenStream, func: &ItemFn) -> syn::Result<EndpointFn> {
    let args: WebsocketArgs = if args.is_empty() {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "missing path: write `#[websocket(\"/path\")]`",
        ));
    } else {
        syn::parse2(args)?
    };
    let (mut docs, mut cfgs, mut lints, mut deprecated, mut unsupported) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for attr in &func.attrs {
        let path = attr.path();
        let list = if path.is_ident("doc") {
            &mut docs
        } else if path.is_ident("cfg") || path.is_ident("cfg_attr") {
            &mut cfgs
        } else if ["allow", "warn", "deny", "forbid", "expect"]
            .iter()
            .any(|l| path.is_ident(l))
        {
            &mut lints
        } else if path.is_ident("deprecated") {
            &mut deprecated
        } else {
            &mut unsupported
        };
        list.push(attr.clone());
    }
    let mut ready = Vec::new();
    let mut sections = Vec::new();
    let mut tail = None;
    let count = func.block.stmts.len();
    for (index, stmt) in func.block.stmts.iter().enumerate() {
        if let Some(section) = parse_section(stmt) {
            sections.push(section);
            continue;
        }
        match stmt {
            Stmt::Expr(expr, None) if index + 1 == count => tail = Some(expr.clone()),
            _ => ready.push(ReadyStmt {
                stmt: stmt.clone(),
                after_section: !sections.is_empty(),
            }),
        }
    }
    Ok(EndpointFn {
        args,
        func: func.clone(),
        cfgs,
        lints,
        deprecated,
        unsupported,
        docs,
        ready,
        tail,
        sections,
    })
}

/// `on_message(..);`: a call statement to a section name.
fn parse_section(stmt: &Stmt) -> Option<Section> {
    let Stmt::Expr(Expr::Call(call), _) = stmt else {
        return None;
    };
    let ident = call_ident(call)?;
    let kind = SectionKind::from_name(&ident.to_string())?;
    Some(Section {
        kind,
        ident: ident.clone(),
        call: call.clone(),
    })
}

/// The name of a call to a plain, single-segment function: `name(..)`.
pub(crate) fn call_ident(call: &ExprCall) -> Option<&Ident> {
    let Expr::Path(path) = &*call.func else {
        return None;
    };
    if path.qself.is_some() || path.path.leading_colon.is_some() || path.path.segments.len() != 1 {
        return None;
    }
    let segment = path.path.segments.first()?;
    segment.arguments.is_none().then_some(&segment.ident)
}

/// The typed parameters, skipping receivers (which `validate` reports).
pub(crate) fn typed_params(func: &ItemFn) -> impl Iterator<Item = &syn::PatType> {
    func.sig.inputs.iter().filter_map(|arg| match arg {
        FnArg::Typed(param) => Some(param),
        FnArg::Receiver(_) => None,
    })
}

/// The declared return type, if any.
pub(crate) fn declared_output(func: &ItemFn) -> Option<&syn::Type> {
    match &func.sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(ty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(args: TokenStream, func: ItemFn) -> syn::Result<EndpointFn> {
        endpoint(args, &func)
    }

    #[test]
    fn splits_body_into_ready_code_and_sections() {
        let endpoint = parse(
            quote!("/"),
            syn::parse_quote! {
                /// Says hello.
                fn index(out: Out<String>) {
                    let mut count = 0;
                    on_message(|event: String| { count += 1; });
                    on_close(|| println!("{count}"));
                    out.write("Hello!");
                }
            },
        )
        .unwrap();
        assert_eq!(endpoint.args.path.value, "/");
        assert_eq!(endpoint.docs.len(), 1);
        assert_eq!(endpoint.ready.len(), 2);
        assert!(!endpoint.ready[0].after_section);
        assert!(endpoint.ready[1].after_section);
        let kinds: Vec<_> = endpoint.sections.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [SectionKind::Message, SectionKind::Close]);
        assert!(endpoint.tail.is_none());
    }

    #[test]
    fn keeps_a_tail_expression() {
        let endpoint = parse(
            quote!("/"),
            syn::parse_quote! {
                fn f() -> Result<(), Error> { on_close(|| {}); Ok(()) }
            },
        )
        .unwrap();
        assert!(endpoint.tail.is_some());
        assert_eq!(endpoint.sections.len(), 1);
    }

    #[test]
    fn a_section_call_as_the_last_statement_is_a_section() {
        let endpoint = parse(
            quote!("/"),
            syn::parse_quote! { fn f() { on_close(|| {}) } },
        )
        .unwrap();
        assert!(endpoint.tail.is_none());
        assert_eq!(endpoint.sections.len(), 1);
    }

    #[test]
    fn parses_path_parameters() {
        let path = RoutePath::new(syn::parse_quote!("/rooms/{room}/seats/{seat}"));
        let names: Vec<_> = path.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["room", "seat"]);
        assert!(path.problems.is_empty());
        for bad in [
            "/a//b", "/a/{}", "/a/{1x}", "/a/x{y}", "/a/{b", "/a/", "/a b", "/é", "/a/..", "/%20",
        ] {
            let path = RoutePath::new(syn::parse_str(&format!("{bad:?}")).unwrap());
            assert_eq!(path.problems.len(), 1, "{bad}");
        }
    }

    #[test]
    fn rejects_missing_or_odd_arguments() {
        let func: ItemFn = syn::parse_quote! { fn f() {} };
        assert!(parse(quote!(), func.clone()).is_err());
        assert!(parse(quote!(chat), func.clone()).is_err());
        assert!(parse(quote!("/", protocol), func.clone()).is_err());
        let endpoint = parse(quote!("/", protocol = "a", protocol = "b",), func).unwrap();
        let protocols: Vec<_> = endpoint
            .args
            .options
            .protocols
            .iter()
            .map(|p| &p.name)
            .collect();
        assert_eq!(protocols, ["a", "b"]);
    }

    #[test]
    fn types_options_once() {
        let options = |args: TokenStream| syn::parse2::<WebsocketArgs>(args).unwrap().options;
        let typed = options(quote!(
            "/",
            protocol = "chat.v2",
            protocol = "chat.v1",
            max_message_size = "4MiB",
            compress = false,
            heartbeat = false,
            resume = true
        ));
        let names: Vec<_> = typed.protocols.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["chat.v2", "chat.v1"]);
        assert_eq!(typed.max_message_size, Some(4 << 20));
        assert_eq!(typed.compress, Some(false));
        assert_eq!(typed.heartbeat, Some(false));
        assert_eq!(typed.resume, Some(true));
        assert!(typed.problems.is_empty());

        let untyped = options(quote!("/"));
        assert!(untyped.protocols.is_empty());
        assert_eq!(
            (
                untyped.max_message_size,
                untyped.compress,
                untyped.heartbeat,
                untyped.resume
            ),
            (None, None, None, None)
        );

        // Unusable options are kept in order, as written; a key given again is repeated even
        // when its first value was unusable, and neither value is typed.
        let bad = options(quote!(
            "/",
            protocol = "a b",
            protocol = "x",
            protocol = "x",
            max_message_size = "0",
            max_message_size = "1KiB",
            compress = "no",
            compress = true,
            heartbeat = 1,
            heartbeat = false,
            resume = "yes",
            resume = true,
            compres = false
        ));
        let kinds: Vec<_> = bad
            .problems
            .iter()
            .map(|problem| match problem {
                OptionProblem::BadProtocol(_) => "bad protocol",
                OptionProblem::DuplicateProtocol(_) => "duplicate protocol",
                OptionProblem::BadSize(_) => "bad size",
                OptionProblem::BadCompress(_) => "bad compress",
                OptionProblem::BadHeartbeat(_) => "bad heartbeat",
                OptionProblem::BadResume(_) => "bad resume",
                OptionProblem::Repeated(_) => "repeated",
                OptionProblem::Unknown(_) => "unknown",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "bad protocol",
                "duplicate protocol",
                "bad size",
                "repeated",
                "bad compress",
                "repeated",
                "bad heartbeat",
                "repeated",
                "bad resume",
                "repeated",
                "unknown"
            ]
        );
        assert_eq!(bad.protocols.len(), 1);
        assert_eq!(
            (bad.max_message_size, bad.compress, bad.resume),
            (None, None, None)
        );
    }

    #[test]
    fn parses_sizes() {
        let size = |lit: syn::Lit| parse_size(&lit);
        assert_eq!(size(syn::parse_quote!("4MiB")), Some(4 << 20));
        assert_eq!(size(syn::parse_quote!("64 KiB")), Some(64 << 10));
        assert_eq!(size(syn::parse_quote!("1MB")), Some(1_000_000));
        assert_eq!(size(syn::parse_quote!(1_024)), Some(1024));
        assert_eq!(size(syn::parse_quote!("512")), Some(512));
        for bad in [
            syn::parse_quote!("4 MiBs"),
            syn::parse_quote!("0"),
            syn::parse_quote!("x"),
            syn::parse_quote!(true),
        ] {
            assert_eq!(size(bad), None);
        }
    }
}
