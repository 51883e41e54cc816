//! The identity map and the unit-of-work lists of one mapped type.
//!
//! The session keeps one [`Store<T>`] per mapped type, behind the object-safe [`AnyStore`],
//! so type erasure happens once per table rather than once per object. A store holds:
//! - `identity`: one object per primary key, held WEAKLY: a clean object the user no longer
//!   references is freed (dead entries are swept, amortized O(1) per insertion);
//! - `new`, `dirty`, `deleted`: what the next flush must write, held strongly until then;
//! - `inserted`, `updated`, `removed`: what flushes of the current transaction wrote, held
//!   weakly (an object nobody holds needs no rollback bookkeeping). `updated` is only kept
//!   while a savepoint is open, to expire what a rolled-back savepoint changed.
//!
//! A [`Mark`] records the lengths of those logs when a savepoint begins; rolling back to the
//! mark undoes, in the session, what happened after it.

use std::any::Any;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use orm_core::engine::Connection;
use orm_core::model::Mapped;
use orm_core::schema::Table;

use crate::error::Result;
use crate::object::{Link, Obj, ObjData, ObjSlab, Slot, Weak32};
use crate::state::Status;
use crate::unit_of_work::execute;
use crate::unit_of_work::relations::{self, TypeOps};

/// Fewest entries before the identity map is swept of dead entries.
const MIN_SWEEP: usize = 1024;

/// The identity map's hasher: keys come from the database, and a loaded row is hashed once,
/// so a fast seeded hash (foldhash, hashbrown's default) rather than SipHash.
type Hasher = foldhash::fast::RandomState;

pub(crate) struct Store<T: Mapped> {
    identity: HashMap<T::Key, Slot<T>, Hasher>,
    /// Sweep dead entries when the map reaches this size.
    sweep_at: usize,
    pub(crate) new: Vec<Obj<T>>,
    pub(crate) dirty: Vec<Obj<T>>,
    pub(crate) deleted: Vec<Obj<T>>,
    inserted: Vec<Slot<T>>,
    updated: Vec<Slot<T>>,
    removed: Vec<Slot<T>>,
    /// Where loaded objects are allocated.
    slab: ObjSlab<T>,
}

impl<T: Mapped> Default for Store<T> {
    fn default() -> Self {
        Store {
            identity: HashMap::default(),
            sweep_at: MIN_SWEEP,
            new: Vec::new(),
            dirty: Vec::new(),
            deleted: Vec::new(),
            inserted: Vec::new(),
            updated: Vec::new(),
            removed: Vec::new(),
            slab: ObjSlab::default(),
        }
    }
}

impl<T: Mapped> Store<T> {
    /// The live object held for `key`.
    #[inline]
    pub(crate) fn lookup(&self, key: &T::Key) -> Option<Obj<T>> {
        self.identity.get(key).and_then(Obj::upgrade)
    }

    /// Enters `obj` as THE object for `key`.
    pub(crate) fn map(&mut self, key: T::Key, obj: &Obj<T>) {
        self.sweep();
        self.identity.insert(key, obj.downgrade());
    }

    /// Makes room for `n` more objects about to be loaded or inserted (at most: rows of
    /// objects already held take none). They stay alive until the load (or flush) ends, so no
    /// sweep is due before.
    pub(crate) fn reserve(&mut self, n: usize) {
        if n == 0 {
            return; // and no sweep: a commit with nothing new must not walk the map
        }
        self.sweep();
        let n = n.saturating_sub(self.identity.len());
        self.identity.reserve(n);
        self.sweep_at = self.sweep_at.max(self.identity.len() + n);
    }

    /// Drops dead entries when the map has doubled since the last sweep (amortized O(1)).
    fn sweep(&mut self) {
        if self.identity.len() >= self.sweep_at {
            self.identity.retain(|_, slot| slot.strong_count() > 0);
            self.sweep_at = (self.identity.len() * 2).max(MIN_SWEEP);
        }
    }

    /// The object for a loaded row's key, hashing the key once: the held object (passed to
    /// `found`, e.g. to reload it if expired) or a new one made of what `create` returns (it is
    /// given the key), entered in the map.
    #[inline]
    pub(crate) fn load_row<E>(
        &mut self,
        key: T::Key,
        found: impl FnOnce(&Obj<T>) -> Result<(), E>,
        create: impl FnOnce(T::Key) -> Result<ObjData<T>, E>,
    ) -> Result<Obj<T>, E> {
        self.sweep();
        match self.identity.entry(key) {
            Entry::Occupied(mut e) => match Obj::upgrade(e.get()) {
                Some(obj) => {
                    found(&obj)?;
                    Ok(obj)
                }
                None => {
                    let data = create(e.key().clone())?;
                    let (obj, slot) = Obj::with_slot(data, &mut self.slab);
                    e.insert(slot);
                    Ok(obj)
                }
            },
            Entry::Vacant(e) => {
                let data = create(e.key().clone())?;
                let (obj, slot) = Obj::with_slot(data, &mut self.slab);
                e.insert(slot);
                Ok(obj)
            }
        }
    }

    /// Whether the identity map has no entry at all.
    pub(crate) fn is_unmapped(&self) -> bool {
        self.identity.is_empty()
    }

    /// A new object made of a loaded row's `data`, to be entered in the map by
    /// [`map_loaded`](Self::map_loaded).
    pub(crate) fn new_loaded(&mut self, data: ObjData<T>) -> (Obj<T>, Slot<T>) {
        Obj::with_slot(data, &mut self.slab)
    }

    /// Enters the objects of one load, made by [`new_loaded`](Self::new_loaded) in row order,
    /// into the map, reserved for all of them at once. A key met again (a table whose key
    /// is not unique in the database) keeps its first object, which `duplicate` is given
    /// with the row's position, as a load one row at a time would have returned it.
    pub(crate) fn map_loaded(
        &mut self,
        loaded: Vec<(T::Key, Slot<T>)>,
        mut duplicate: impl FnMut(usize, Obj<T>),
    ) {
        self.reserve(loaded.len());
        for (i, (key, slot)) in loaded.into_iter().enumerate() {
            match self.identity.entry(key) {
                Entry::Vacant(e) => {
                    e.insert(slot);
                }
                Entry::Occupied(mut e) => match Obj::upgrade(e.get()) {
                    Some(first) => duplicate(i, first),
                    None => {
                        e.insert(slot);
                    }
                },
            }
        }
    }

    /// Removes the entry for `key` if it is `obj` (or dead).
    pub(crate) fn unmap(&mut self, key: &T::Key, obj: &Obj<T>) {
        if self.lookup(key).is_none_or(|o| o.ptr_eq(obj)) {
            self.identity.remove(key);
        }
    }

    /// Forgets `obj` in every list of the store (for `expunge`).
    pub(crate) fn forget(&mut self, obj: &Obj<T>, key: Option<&T::Key>) {
        let strong = |o: &Obj<T>| !o.ptr_eq(obj);
        self.new.retain(strong);
        self.dirty.retain(strong);
        self.deleted.retain(strong);
        // The logs keep their length: savepoint marks are positions in them.
        let me = obj.downgrade();
        for log in [&mut self.inserted, &mut self.updated, &mut self.removed] {
            log.iter_mut()
                .filter(|s| s.ptr_eq(&me))
                .for_each(|s| *s = Weak32::new());
        }
        if let Some(key) = key {
            self.unmap(key, obj);
        }
    }

    /// INSERTs `objs` (pending objects of this store).
    pub(crate) fn insert(&self, conn: &Connection, objs: &[Obj<T>]) -> Result<()> {
        // One object per key: a new object may not take the key of one the session holds
        // (held objects are never pending, so none of `objs` is locked twice).
        execute::insert(conn, objs, |obj, key| match self.lookup(key) {
            Some(held) if !held.ptr_eq(obj) && held.lock_data().status() != Status::Deleted => {
                Err(crate::error::Error::IdentityConflict {
                    table: T::TABLE.name,
                    key: format!("{key:?}"),
                })
            }
            _ => Ok(()),
        })
    }

    /// Logs an object changed in memory by a bulk UPDATE inside a savepoint.
    pub(crate) fn note_updated(&mut self, obj: &Obj<T>) {
        self.updated.push(obj.downgrade());
    }

    /// Every live object of the identity map.
    pub(crate) fn live(&self) -> Vec<Obj<T>> {
        self.identity.values().filter_map(Obj::upgrade).collect()
    }

    /// Records that a bulk DELETE removed `obj`'s row: it is deleted, out of the identity
    /// map, and persistent again if the transaction rolls back.
    pub(crate) fn deleted_in_bulk(&mut self, obj: &Obj<T>) {
        let key = {
            let mut d = obj.lock_data();
            if d.status() == Status::Deleted {
                return;
            }
            d.set_status(Status::Deleted);
            d.set_queued(false);
            d.clear_changes();
            d.value.key()
        };
        self.dirty.retain(|o| !o.ptr_eq(obj));
        self.deleted.retain(|o| !o.ptr_eq(obj));
        if let Some(key) = key {
            self.unmap(&key, obj);
        }
        self.removed.push(obj.downgrade());
    }

    /// Turns an object added or inserted after the mark back into a transient one.
    fn expunge_new(&mut self, obj: &Obj<T>) {
        let key = {
            let mut d = obj.lock_data();
            let key = if d.identity() { d.value.key() } else { None };
            // A key the database generated in a rolled-back transaction never existed; a key
            // the user chose stays.
            if d.take_key_generated() {
                d.value.clear_generated_key();
            }
            d.set_identity(false);
            d.set_status(Status::Pending);
            d.clear_changes();
            d.set_queued(false);
            d.relink(None);
            key
        };
        if let Some(key) = key {
            self.unmap(&key, obj);
        }
    }
}

/// Lengths of a store's transaction logs at the start of a savepoint.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mark {
    inserted: usize,
    updated: usize,
    removed: usize,
}

/// Object-safe view of a [`Store`], used by flush, commit and rollback.
pub(crate) trait AnyStore: Send {
    fn table(&self) -> &'static Table;
    fn as_any(&mut self) -> &mut dyn Any;
    fn has_changes(&self) -> bool;
    /// Whether the next flush inserts or deletes rows of the table.
    fn has_inserts_or_deletes(&self) -> bool;
    /// The flush operations of the store's type that reach the whole session.
    fn ops(&self) -> &'static dyn TypeOps;
    fn flush_updates(&mut self, conn: &Connection) -> Result<()>;
    fn flush_deletes(&mut self, conn: &Connection) -> Result<()>;
    /// After every statement of a flush succeeded: move objects to their new states.
    /// `in_savepoint`: remember updated objects, for a savepoint rollback to expire them.
    /// `link`: the session's current link.
    fn finish_flush(&mut self, in_savepoint: bool, link: &Arc<Link>);
    /// After a failed flush: forget generated keys handed out by the failed flush.
    fn undo_flush(&mut self);
    /// The current lengths of the transaction logs.
    fn mark(&self) -> Mark;
    /// Undoes in the session what happened after `mark`: objects added or inserted are
    /// expunged, objects deleted are persistent again, objects changed are expired.
    /// `Mark::default()` rolls back the whole transaction.
    /// `expire`: whether objects changed since the mark lose their changes and are expired
    /// (a rollback) or keep them (closing the session, which lets them go as they are).
    fn rollback_to(&mut self, mark: Mark, expire: bool);
    /// After commit: deleted objects become detached; the logs are cleared.
    fn after_commit(&mut self);
    /// Number of live objects in the identity map.
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

    fn has_inserts_or_deletes(&self) -> bool {
        !(self.new.is_empty() && self.deleted.is_empty())
    }

    fn ops(&self) -> &'static dyn TypeOps {
        relations::ops::<T>()
    }

    fn flush_updates(&mut self, conn: &Connection) -> Result<()> {
        execute::update(conn, &self.dirty)
    }

    fn flush_deletes(&mut self, conn: &Connection) -> Result<()> {
        execute::delete(conn, &self.deleted)
    }

    fn finish_flush(&mut self, in_savepoint: bool, link: &Arc<Link>) {
        self.reserve(self.new.len());
        for obj in std::mem::take(&mut self.new) {
            let key = {
                let mut d = obj.lock_data();
                d.set_status(Status::Persistent);
                d.set_identity(true);
                d.clear_changes();
                d.mark_loaded(Some(link));
                d.value.key()
            };
            if let Some(key) = key {
                self.map(key, &obj);
            }
            self.inserted.push(obj.downgrade());
        }
        for obj in self.dirty.drain(..) {
            let mut d = obj.lock_data();
            d.set_queued(false);
            // The version the UPDATE wrote (no-op without a version column).
            execute::after_update(&mut d);
            if d.status() == Status::Persistent && d.is_modified() {
                d.clear_changes();
                if in_savepoint {
                    self.updated.push(obj.downgrade());
                }
            }
        }
        for obj in std::mem::take(&mut self.deleted) {
            let key = {
                let mut d = obj.lock_data();
                d.set_status(Status::Deleted);
                // Changes made before the delete were not written, and never will be.
                d.clear_changes();
                d.set_queued(false);
                d.value.key()
            };
            if let Some(key) = key {
                self.unmap(&key, &obj);
            }
            self.removed.push(obj.downgrade());
        }
    }

    fn undo_flush(&mut self) {
        if T::TABLE.generated_key().is_none() {
            return;
        }
        for obj in &self.new {
            let mut d = obj.lock_data();
            if d.take_key_generated() {
                d.value.clear_generated_key();
            }
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            inserted: self.inserted.len(),
            updated: self.updated.len(),
            removed: self.removed.len(),
        }
    }

    fn rollback_to(&mut self, mark: Mark, expire: bool) {
        let added: Vec<Obj<T>> = std::mem::take(&mut self.new)
            .into_iter()
            .chain(
                self.inserted
                    .drain(mark.inserted.min(self.inserted.len())..)
                    .filter_map(|s| Obj::upgrade(&s)),
            )
            .collect();
        for obj in &added {
            self.expunge_new(obj);
        }
        let restored: Vec<Obj<T>> = std::mem::take(&mut self.deleted)
            .into_iter()
            .chain(
                self.removed
                    .drain(mark.removed.min(self.removed.len())..)
                    .filter_map(|s| Obj::upgrade(&s)),
            )
            .collect();
        for obj in restored {
            let key = {
                let mut d = obj.lock_data();
                d.set_status(Status::Persistent);
                // Its row is back as it was: reload rather than trust what is in memory.
                d.set_expired(true);
                d.clear_changes();
                d.set_queued(false);
                d.value.key()
            };
            if let Some(key) = key {
                self.map(key, &obj);
            }
        }
        let changed: Vec<Obj<T>> = std::mem::take(&mut self.dirty)
            .into_iter()
            .chain(
                self.updated
                    .drain(mark.updated.min(self.updated.len())..)
                    .filter_map(|s| Obj::upgrade(&s)),
            )
            .collect();
        for obj in changed {
            let mut d = obj.lock_data();
            d.set_queued(false);
            if expire {
                d.clear_changes();
                d.set_expired(true);
            }
        }
    }

    fn after_commit(&mut self) {
        // Committed keys are for good.
        for obj in self.inserted.drain(..).filter_map(|s| Obj::upgrade(&s)) {
            obj.lock_data().set_key_generated(false);
        }
        self.updated.clear();
        for obj in self.removed.drain(..).filter_map(|s| Obj::upgrade(&s)) {
            obj.lock_data().relink(None);
        }
    }

    fn len(&self) -> usize {
        self.identity
            .values()
            .filter(|s| s.strong_count() > 0)
            .count()
    }
}
