//! The core of the `orm` crate: table metadata, typed expressions, SQL building, dialects,
//! and the engine that executes statements.
//!
//! Users depend on the `orm` facade, which re-exports what they need from here.
//!
//! # Code map
//! - [`value`]: the Rust types a field may have and the [`value::Value`] bound for them.
//! - [`schema`]: tables, columns, keys; `create_all` / `drop_all`.
//! - [`model`]: the [`model::Mapped`] contract the derive implements.
//! - [`expr`]: typed column handles and predicates.
//! - [`sql`]: statements as data ([`sql::ast`]) and their rendering ([`sql::render`]).
//! - [`dialect`]: what differs between PostgreSQL and SQLite.
//! - [`engine`]: URL, pool, connections, rows, logging.
//! - [`error`]: the typed errors.
#![warn(missing_docs)]

pub mod dialect;
pub mod engine;
pub mod error;
pub mod expr;
pub mod model;
pub mod schema;
pub mod sql;
pub mod value;

impl From<i64> for value::Value {
    fn from(v: i64) -> Self {
        value::Value::I64(v)
    }
}
impl From<i32> for value::Value {
    fn from(v: i32) -> Self {
        value::Value::I32(v)
    }
}
impl From<&str> for value::Value {
    fn from(v: &str) -> Self {
        value::Value::Text(v.to_owned())
    }
}
impl From<String> for value::Value {
    fn from(v: String) -> Self {
        value::Value::Text(v)
    }
}
