//! The integration tests of the `orm` crate: ONE test binary, every behaviour on both
//! PostgreSQL and SQLite (see `support` for how the databases are found and isolated).
//!
//! Run with `cargo test --test integration`. PostgreSQL comes from `DATABASE_URL`, a server on
//! 127.0.0.1:5432, or a throwaway cluster the harness starts; it is never skipped.

mod support;

mod bulk;
mod engine;
mod golden;
mod hostile;
mod many_to_many;
mod models;
mod query;
mod raw_sql;
mod regressions;
mod relationships;
mod scoped;
mod semantics;
mod session;
mod sessionmaker;
mod versioning;
// Further test modules (session, query, unit of work, ...) are declared here by their
// authors, one `mod <name>;` per file of tests/integration/.
