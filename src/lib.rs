//! A typed ORM with SQLAlchemy's `Session`: identity map, unit of work, the five object
//! states, and `sessionmaker` as a typed builder, on PostgreSQL and SQLite.
//!
//! ```ignore
//! use orm::prelude::*;
//!
//! #[derive(Mapped, Debug)]
//! #[mapped(table = "users")]
//! pub struct User {
//!     #[mapped(primary_key)]
//!     pub id: Option<i64>,
//!     pub name: String,
//!     pub age: i32,
//! }
//!
//! # fn main() -> Result<(), orm::Error> {
//! let engine = Engine::connect("sqlite::memory:")?;
//! Metadata::of::<(User,)>().create_all(&engine)?;
//! let factory = sessionmaker().bind(engine).build();
//!
//! let mut session = factory.session();
//! let ed = session.add(User { id: None, name: "ed".into(), age: 30 })?;
//! session.commit()?;
//! let id = ed.read()?.id.unwrap();
//! // Same primary key, same object: no SQL is issued.
//! assert!(session.get::<User>(id)?.unwrap().ptr_eq(&ed));
//! # Ok(()) }
//! ```
//!
//! See `ARCHITECTURE.md` for how the crates fit together.
#![warn(missing_docs)]

pub use orm_core::dialect::Dialect;
pub use orm_core::engine::{row::Row, Connection, Engine, EngineBuilder};
pub use orm_core::error::{ConstraintKind, DecodeError};
pub use orm_core::expr::{Column, IntoOrder, Order, Predicate};
pub use orm_core::model::{ColumnSet, Mapped, PrimaryKey};
pub use orm_core::schema::{ColumnDef, ForeignKey, Metadata, Table};
pub use orm_core::value::{ColumnType, IntoValue, SqlType, Value};
// DERIVE-REEXPORT pub use orm_derive::Mapped;
pub use orm_session::{
    sessionmaker, Bind, Error, FromSession, Info, Obj, ObjRef, ObjectState, Query, Result,
    Session, SessionMaker, SessionMakerBuilder, SessionOptions,
};

/// The core crate's error type (engine, dialects, decoding).
pub type CoreError = orm_core::error::Error;

/// Everything a typical user of the ORM needs: `use orm::prelude::*;`.
pub mod prelude {
    pub use crate::{
        sessionmaker, Connection, Engine, Mapped, Metadata, Obj, ObjectState, Session,
        SessionMaker,
    };
}

/// Items used by code that `#[derive(Mapped)]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use orm_core::engine::row::Row;
    pub use orm_core::error::{Error, Result};
    pub use orm_core::expr::Column;
    pub use orm_core::model::{ColumnSet, Mapped};
    pub use orm_core::schema::{ColumnDef, ForeignKey, Table};
    pub use orm_core::value::{ColumnType, SqlType, Value};

    /// Reads column `idx` of `row` into a field, naming the column on failure.
    #[inline]
    pub fn decode<V: ColumnType>(row: &Row<'_>, idx: usize, table: &Table, column: usize) -> Result<V> {
        V::decode(row, idx).map_err(|source| Error::Decode {
            table: table.name.to_owned(),
            column: table.columns[column].name.to_owned(),
            source,
        })
    }

    /// Converts a generated key read back at flush into the key field's type.
    pub fn from_value<V: ColumnType>(value: Value, table: &Table, column: usize) -> Result<V> {
        V::from_value(value).map_err(|source| Error::Decode {
            table: table.name.to_owned(),
            column: table.columns[column].name.to_owned(),
            source,
        })
    }

    /// The error for a model without a database-generated key asked to store one.
    pub fn no_generated_key(table: &Table) -> Error {
        Error::Decode {
            table: table.name.to_owned(),
            column: String::new(),
            source: orm_core::error::DecodeError::WrongType {
                expected: "no generated key",
                found: "a generated key".into(),
            },
        }
    }
}
