//! Compile-time behaviour of `#[websocket]`: every error it reports (tests/ui/fail, with the
//! expected message in each `.stderr`), every form it accepts (tests/ui/pass), and the inputs
//! of the expansion snapshots (tests/expand), which must compile too.
//!
//! `.stderr` files depend on the compiler version: after a toolchain update, regenerate them
//! with `TRYBUILD=overwrite cargo test --test ui` and review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*/*.rs");
    cases.pass("tests/ui/pass/*.rs");
    cases.pass("tests/expand/*.rs");
}
