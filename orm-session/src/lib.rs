//! Sessions for the `orm` crate: identity map, unit of work, object states and
//! `sessionmaker`, following SQLAlchemy's `Session`.
//!
//! Users depend on the `orm` facade, which re-exports everything here.
//!
//! Services that handle each request on a thread use a [`ScopedSession`] (SQLAlchemy's
//! `scoped_session`): its documentation shows the per-request pattern. Raw SQL runs in a
//! session's transaction with [`Session::execute`].
//!
//! # Code map
//! - [`sessionmaker()`](sessionmaker()): the typed factory builder, options, `info`, `bind`.
//! - `session`: [`Session`], its transaction and the identity-map-aware loading of rows.
//! - `object`: [`Obj`], the handle users hold; change recording and expiry.
//! - `state`: the five [`ObjectState`]s.
//! - `identity_map`: per-type identity map and unit-of-work lists.
//! - `unit_of_work`: flush ordering (`plan`) and batched statements (`execute`).
//! - `query`: [`Query`].
//! - `relation`: relationships ([`Collection`], [`Reference`], [`OneToMany`], [`ManyToOne`], [`ManyToMany`]):
//!   cascades, foreign keys filled in at flush, lazy and `selectin` loading.
//! - `raw`: [`Session::execute`], raw SQL in the session's transaction.
//! - `scoped`: [`ScopedSession`], one session per thread (SQLAlchemy's `scoped_session`).
//! - `error`: [`Error`].
#![warn(missing_docs)]

mod core;
mod error;
mod identity_map;
mod object;
mod query;
mod raw;
mod relation;
mod scoped;
mod session;
mod sessionmaker;
mod state;
mod transaction;
mod unit_of_work;

pub use error::{Error, Result};
pub use object::{Obj, ObjRef};
pub use query::{ColumnQuery, ObjHandles, Query, QueryIter, Synchronize};
pub use relation::{
    joined, selectin, Cascade, Collection, LoadOption, Loadable, ManyToMany, ManyToOne, OneToMany,
    Reference, Related, RelationDef, RelationEntry, RelationField, ToMany,
};
pub use scoped::{CurrentSession, ScopedSession, SessionInUse};
pub use session::{NestedTransaction, Session};
pub use sessionmaker::{
    sessionmaker, Bind, FromSession, Info, JoinTransactionMode, SessionMaker, SessionMakerBuilder,
    SessionOptions,
};
pub use state::ObjectState;
