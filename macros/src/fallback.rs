//! What to emit when the attribute's use is wrong: the error, plus stand-ins for what the user
//! names, so the only error they see is the macro's own.
//!
//! - the endpoint struct and an `Endpoint` impl whose body is unreachable, so
//!   `Server::route(name)` still type-checks;
//! - the user's function, hidden in an anonymous const, with the section names bound to
//!   do-nothing stubs, so editors keep analysing the body while it is being written.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, ItemFn, Pat, Stmt};

use crate::errors::did_you_mean;
use crate::parse::{SECTION_NAMES, call_ident};
use crate::paths;

pub(crate) fn endpoint(
    func: &ItemFn,
    path: Option<&syn::LitStr>,
    error: syn::Error,
) -> TokenStream {
    let ident = &func.sig.ident;
    let vis = &func.vis;
    let docs = func.attrs.iter().filter(|attr| attr.path().is_ident("doc"));
    let path = path.map_or_else(|| quote!("/"), |lit| quote!(#lit));
    let name = ident.to_string();
    let (trait_path, accept, accepting, unreachable) = (
        paths::endpoint(),
        paths::accept(),
        paths::accepting(),
        paths::unreachable(),
    );
    let hidden = hidden_fn(func);
    let error = error.into_compile_error();
    if func.sig.receiver().is_some() {
        // A method: the function sits in an `impl`, where a struct cannot; keep the method only.
        return quote!(#error #hidden);
    }
    quote! {
        #error
        #(#docs)*
        #[allow(non_camel_case_types)]
        #vis struct #ident {}
        #[doc(hidden)]
        #vis fn #ident() -> #ident {
            #ident {}
        }
        impl #trait_path for #ident {
            const PATH: &'static str = #path;
            const NAME: &'static str = #name;
            fn accept(_: #accept) -> #accepting {
                #unreachable()
            }
        }
        const _: () = {
            #hidden
        };
    }
}

/// The user's function as plain Rust that compiles whatever the macro's error was.
fn hidden_fn(func: &ItemFn) -> TokenStream {
    let mut func = func.clone();
    func.attrs.retain(|attr| attr.path().is_ident("doc"));
    // Faults the macro already reported, removed so rustc does not report them again.
    func.sig.constness = None;
    func.sig.safety = syn::Safety::Default;
    func.sig.abi = None;
    func.sig.variadic = None;
    func.sig.asyncness = Some(Default::default());

    func.block.stmts.retain(|stmt| !is_faulty_section(stmt));
    for stmt in &mut func.block.stmts {
        // A `move` section, already reported, would add "use of moved value" errors.
        if let Stmt::Expr(Expr::Call(call), _) = stmt
            && call_ident(call)
                .is_some_and(|name| SECTION_NAMES.contains(&name.to_string().as_str()))
        {
            call.attrs.clear();
            for arg in &mut call.args {
                if let Expr::Closure(closure) = arg {
                    closure.capture = None;
                }
            }
        }
    }
    let stubs = paths::stubs();
    let stub_import: Stmt = syn::parse_quote! {
        #[allow(unused_imports)]
        use #stubs::{on_message, on_close, on_error};
    };
    func.block.stmts.insert(0, stub_import);
    quote! {
        #[allow(dead_code, unused, clippy::all)]
        #func
    }
}

/// A misspelled section, a section with other than one argument, or an `on_message` with
/// an untyped parameter: left in, each would be reported a second time by rustc.
fn is_faulty_section(stmt: &Stmt) -> bool {
    let Stmt::Expr(Expr::Call(call), _) = stmt else {
        return false;
    };
    let Some(ident) = call_ident(call) else {
        return false;
    };
    let name = ident.to_string();
    if !SECTION_NAMES.contains(&name.as_str()) {
        return did_you_mean(&name, &SECTION_NAMES).is_some();
    }
    call.args.len() != 1
        || call.args.iter().any(|arg| match arg {
            Expr::Closure(closure) => closure.inputs.iter().any(|p| !matches!(p, Pat::Type(_))),
            _ => false,
        })
}
