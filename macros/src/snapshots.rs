//! Expansion snapshots: every `tests/expand/NAME.rs` of the workspace, with its
//! `#[websocket]` items expanded through this crate's own entry point and pretty-printed,
//! must equal `tests/expand/NAME.expanded.rs`. Set `WSOCK_BLESS=1` to rewrite the snapshots
//! (a missing one is written on first run), then review the diff.

use std::path::{Path, PathBuf};

use quote::ToTokens;

fn expand_file(source: &str) -> String {
    let file: syn::File = syn::parse_str(source).expect("snapshot input parses");
    let mut out = file.clone();
    out.items.clear();
    for item in file.items {
        let syn::Item::Fn(mut func) = item else {
            out.items.push(item);
            continue;
        };
        let Some(index) = func
            .attrs
            .iter()
            .position(|a| a.path().is_ident("websocket"))
        else {
            out.items.push(syn::Item::Fn(func));
            continue;
        };
        let attr = func.attrs.remove(index);
        let args = match attr.meta {
            syn::Meta::List(list) => list.tokens,
            _ => proc_macro2::TokenStream::new(),
        };
        let expanded = crate::websocket_impl(args, func.into_token_stream());
        let expanded: syn::File = syn::parse2(expanded).expect("the expansion parses");
        out.items.extend(expanded.items);
    }
    prettyplease::unparse(&out)
}

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/expand")
}

#[test]
fn expansions_match_their_snapshots() {
    let bless = std::env::var_os("WSOCK_BLESS").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(snapshot_dir())
        .expect("tests/expand exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with(".expanded.rs")
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no snapshot inputs in tests/expand");
    let mut stale = Vec::new();
    for input in inputs {
        let expanded = expand_file(&std::fs::read_to_string(&input).unwrap());
        let snapshot = input.with_extension("expanded.rs");
        match std::fs::read_to_string(&snapshot) {
            Ok(existing) if existing == expanded => {}
            Ok(_) if !bless => stale.push(snapshot.display().to_string()),
            _ => std::fs::write(&snapshot, expanded).unwrap(),
        }
    }
    assert!(
        stale.is_empty(),
        "expansions changed: {stale:?}; run with WSOCK_BLESS=1 and review the diff"
    );
}
