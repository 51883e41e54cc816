//! Compile-fail cases: every `tests/ui/*.rs` must fail to compile with the error recorded in
//! its `.stderr` file. Regenerate the files with `TRYBUILD=overwrite cargo test --test
//! compile_fail`, then read each one.

#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
