//! The identity map and the unit-of-work lists of one mapped type.
//!
//! The session keeps one [`Store<T>`] per mapped type, behind the object-safe [`AnyStore`],
//! so type erasure happens once per table rather than once per object. A store holds:
//! - `identity`: one object per primary key (`get` of a known key is one hash lookup);
//! - `new`, `dirty`, `deleted`: the objects a flush must visit, and nothing else;
//! - `inserted`, `removed`: what the current transaction flushed, for rollback.

use std::any::Any;
use std::collections::HashMap;

use orm_core::engine::Connection;
use orm_core::model::{ColumnSet, Mapped};
use orm_core::schema::Table;

use crate::error::Result;
use crate::object::Obj;
use crate::state::Status;
use crate::unit_of_work::execute;

pub(crate) struct Store<T: Mapped> {
    pub(crate) identity: HashMap<T::Key, Obj<T>>,
    pub(crate) new: Vec<Obj<T>>,
    pub(crate) dirty: Vec<Obj<T>>,
    pub(crate) deleted: Vec<Obj<T>>,
    /// Objects INSERTed by flushes of the current transaction.
    pub(crate) inserted: Vec<Obj<T>>,
    /// Objects DELETEd by flushes of the current transaction.
    pub(crate) removed: Vec<Obj<T>>,
}

impl<T: Mapped> Default for Store<T> {
    fn default() -> Self {
        Store {
            identity: HashMap::new(),
            new: Vec::new(),
            dirty: Vec::new(),
            deleted: Vec::new(),
            inserted: Vec::new(),
            removed: Vec::new(),
        }
    }
}

/// Object-safe view of a [`Store`], used by flush, commit and rollback.
pub(crate) trait AnyStore: Send {
    fn table(&self) -> &'static Table;
    fn as_any(&mut self) -> &mut dyn Any;
    fn has_changes(&self) -> bool;
    /// INSERTs the pending objects; on error, undoes what it wrote into them.
    fn flush_inserts(&mut self, conn: &Connection) -> Result<()>;
    fn flush_updates(&mut self, conn: &Connection) -> Result<()>;
    fn flush_deletes(&mut self, conn: &Connection) -> Result<()>;
    /// After every statement of a flush succeeded: move objects to their new states.
    fn finish_flush(&mut self);
    /// After a failed flush: forget generated keys handed out by the failed flush.
    fn undo_flush(&mut self);
    /// After commit: deleted objects become detached.
    fn after_commit(&mut self);
    /// After rollback: objects added in the transaction are expunged, deleted ones return to
    /// persistent, pending changes are discarded.
    fn after_rollback(&mut self);
    /// Number of objects held in the identity map.
    fn len(&self) -> usize;
}

impl<T: Mapped> AnyStore for Store<T> {
    fn table(&self) -> &'static Table {
        T::TABLE
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn has_changes(&self) -> bool {
        !(self.new.is_empty() && self.dirty.is_empty() && self.deleted.is_empty())
    }

    fn flush_inserts(&mut self, conn: &Connection) -> Result<()> {
        execute::insert(conn, &self.new)
    }

    fn flush_updates(&mut self, conn: &Connection) -> Result<()> {
        execute::update(conn, &self.dirty)
    }

    fn flush_deletes(&mut self, conn: &Connection) -> Result<()> {
        execute::delete(conn, &self.deleted)
    }

    fn finish_flush(&mut self) {
        for obj in self.new.drain(..) {
            let key = {
                let mut d = obj.lock_data();
                d.status = Status::Persistent;
                d.identity = true;
                d.changed = ColumnSet::default();
                d.mark_loaded();
                d.value.key()
            };
            if let Some(key) = key {
                self.identity.insert(key, obj.clone());
            }
            self.inserted.push(obj);
        }
        for obj in self.dirty.drain(..) {
            let mut d = obj.lock_data();
            d.queued = false;
            if d.status == Status::Persistent {
                d.changed = ColumnSet::default();
            }
        }
        for obj in self.deleted.drain(..) {
            let key = {
                let mut d = obj.lock_data();
                d.status = Status::Deleted;
                d.value.key()
            };
            if let Some(key) = key {
                self.identity.remove(&key);
            }
            self.removed.push(obj);
        }
    }

    fn undo_flush(&mut self) {
        if T::TABLE.generated_key().is_none() {
            return;
        }
        for obj in &self.new {
            obj.lock_data().value.clear_generated_key();
        }
    }

    fn after_commit(&mut self) {
        self.inserted.clear();
        for obj in self.removed.drain(..) {
            obj.lock_data().link = None;
        }
    }

    fn after_rollback(&mut self) {
        for obj in self.inserted.drain(..).chain(self.new.drain(..)) {
            let key = {
                let mut d = obj.lock_data();
                let key = if d.identity { d.value.key() } else { None };
                // A key the database generated in a rolled-back transaction never existed.
                d.value.clear_generated_key();
                d.link = None;
                d.identity = false;
                d.status = Status::Pending;
                d.changed = ColumnSet::default();
                key
            };
            if let Some(key) = key {
                self.identity.remove(&key);
            }
        }
        for obj in self.removed.drain(..).chain(self.deleted.drain(..)) {
            let key = {
                let mut d = obj.lock_data();
                d.status = Status::Persistent;
                d.value.key()
            };
            if let Some(key) = key {
                self.identity.insert(key, obj);
            }
        }
        for obj in self.dirty.drain(..) {
            let mut d = obj.lock_data();
            d.queued = false;
            d.changed = ColumnSet::default();
        }
    }

    fn len(&self) -> usize {
        self.identity.len()
    }
}
