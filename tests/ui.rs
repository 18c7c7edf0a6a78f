//! Compile-time behaviour of `#[websocket]`: every error it reports (tests/ui/fail, with the
//! expected message in each `.stderr`), every form it accepts (tests/ui/pass), and the inputs
//! of the expansion snapshots (tests/expand), which must compile too. With the `axum` feature,
//! also what an endpoint that got axum's `State`, `Json`, `Query` or `Request` is told
//! (tests/ui/axum).
//!
//! `.stderr` files depend on the compiler version: after a toolchain update, regenerate them
//! with `TRYBUILD=overwrite cargo test --test ui` (and again with `--features axum`) and review
//! the diff.

/// Cases whose message lists a trait's implementations: the `axum` feature adds to those
/// lists (wsock's traits are implemented for axum's look-alikes, to say which type to write),
/// so these are checked without it.
const LIST_IMPLEMENTATIONS: [&str; 4] = [
    "tests/ui/fail/params/neither-segment-nor-extractor.rs",
    "tests/ui/fail/types/not-an-extractor.rs",
    "tests/ui/fail/types/unsupported-message-type.rs",
    "tests/ui/fail/types/unsupported-outbound-type.rs",
];

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    for case in fail_cases() {
        if !(cfg!(feature = "axum") && LIST_IMPLEMENTATIONS.contains(&case.as_str())) {
            cases.compile_fail(case);
        }
    }
    if cfg!(feature = "axum") {
        cases.compile_fail("tests/ui/axum/*.rs");
    }
    cases.pass("tests/ui/pass/*.rs");
    cases.pass("tests/expand/*.rs");
}

/// `tests/ui/fail/*/*.rs`, sorted.
fn fail_cases() -> Vec<String> {
    let mut cases = Vec::new();
    for area in std::fs::read_dir("tests/ui/fail").expect("tests/ui/fail exists") {
        let area = area.unwrap().path();
        for case in std::fs::read_dir(&area).unwrap() {
            let case = case.unwrap().path();
            if case.extension().is_some_and(|ext| ext == "rs") {
                cases.push(case.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    cases.sort();
    cases
}
