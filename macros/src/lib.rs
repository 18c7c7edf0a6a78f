//! The `#[websocket]` attribute of wsock. Use it through the `wsock` crate, which documents it.

mod errors;
mod expand;
mod fallback;
mod parse;
mod paths;
mod validate;

use proc_macro::TokenStream;

/// Turns a function into a WebSocket endpoint. Documented on `wsock::websocket`.
#[proc_macro_attribute]
pub fn websocket(args: TokenStream, item: TokenStream) -> TokenStream {
    websocket_impl(args.into(), item.into()).into()
}

fn websocket_impl(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            // Give the user's tokens back untouched, with the one error that matters.
            let error = syn::Error::new_spanned(
                first_tokens(&item),
                "`#[websocket]` goes on a function: `#[websocket(\"/path\")] fn name(out: Out<String>) { .. }`",
            );
            let error = error.into_compile_error();
            return quote::quote!(#error #item);
        }
    };
    let path = syn::parse2::<parse::WebsocketArgs>(args.clone())
        .ok()
        .map(|a| a.path.lit);
    match parse::endpoint(args, &func).and_then(|e| validate::endpoint(&e).map(|()| e)) {
        Ok(endpoint) => expand::endpoint(&endpoint),
        Err(error) => fallback::endpoint(&func, path.as_ref(), error),
    }
}

/// The item's tokens up to its name (`struct Foo`, `impl Trait for X`): where the error shows.
fn first_tokens(item: &proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    item.clone()
        .into_iter()
        .skip_while(|tt| matches!(tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == '#'))
        .skip_while(|tt| matches!(tt, proc_macro2::TokenTree::Group(_)))
        .take(2)
        .collect()
}

#[cfg(test)]
mod snapshots;
