//! The relationship work of a flush, per mapped type: delete and delete-orphan cascades before
//! any statement, foreign keys copied from parents just inserted, and the order of rows within
//! a self-referential table.

use std::collections::HashMap;
use std::marker::PhantomData;

use orm_core::engine::Connection;
use orm_core::model::Mapped;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::object::Obj;
use crate::relation::ops::RelationOps;
use crate::relation::relations_of;
use crate::state::Status;

/// A flush's work for one mapped type that needs the whole session (its relationships reach
/// objects of other types). Reached through `AnyStore::ops`.
pub(crate) trait TypeOps: Sync {
    /// Runs the relationship cascades of the objects deleted at positions `from..` of the
    /// type's `deleted` list; returns the list's length when done.
    fn cascade_deletes(&self, core: &mut Core, from: usize) -> Result<usize>;
    /// INSERTs the pending objects: foreign keys from their parents first; within a
    /// self-referential table, parents in an earlier statement than their children.
    fn insert(&self, core: &mut Core, conn: &Connection) -> Result<()>;
    /// Before the UPDATEs: foreign keys of changed objects from their parents.
    fn prepare_updates(&self, core: &mut Core) -> Result<()>;
    /// The session lets go of its objects of this type: see `RelationOps::release`.
    fn release(&self, core: &mut Core);
}

struct Ops<T>(PhantomData<fn() -> T>);

/// The flush operations of `T`.
pub(crate) fn ops<T: Mapped>() -> &'static dyn TypeOps {
    &Ops::<T>(PhantomData)
}

impl<T: Mapped> TypeOps for Ops<T> {
    fn cascade_deletes(&self, core: &mut Core, from: usize) -> Result<usize> {
        let deleted = &core.store::<T>().deleted;
        let len = deleted.len();
        if T::RELATIONS.is_empty() || from >= len {
            return Ok(len);
        }
        let batch: Vec<Obj<T>> = deleted[from..].to_vec();
        for rel in relations_of::<T>() {
            rel.on_delete(&batch, core)?;
        }
        Ok(len)
    }

    fn insert(&self, core: &mut Core, conn: &Connection) -> Result<()> {
        if T::RELATIONS.is_empty() {
            let store = core.store::<T>();
            return store.insert(conn, &store.new);
        }
        let rels: Vec<&dyn RelationOps<T>> = relations_of::<T>().collect();
        let fks: Vec<&dyn RelationOps<T>> = rels
            .iter()
            .copied()
            .filter(|r| r.has_foreign_key())
            .collect();
        let new = core.store::<T>().new.clone();
        for level in levels(new, &rels)? {
            if !fks.is_empty() {
                for obj in &level {
                    let mut d = obj.lock_data();
                    for rel in &fks {
                        rel.sync_foreign_key(&mut d)?;
                    }
                }
            }
            core.store::<T>().insert(conn, &level)?;
            for rel in &rels {
                rel.fill_children(&level, core)?;
            }
        }
        Ok(())
    }

    fn prepare_updates(&self, core: &mut Core) -> Result<()> {
        let fks: Vec<&dyn RelationOps<T>> = relations_of::<T>()
            .filter(|r| r.has_foreign_key())
            .collect();
        if fks.is_empty() {
            return Ok(());
        }
        let dirty = core.store::<T>().dirty.clone();
        for obj in &dirty {
            let mut d = obj.lock_data();
            if d.status() != Status::Persistent {
                continue;
            }
            for rel in &fks {
                rel.sync_foreign_key(&mut d)?;
            }
        }
        Ok(())
    }

    fn release(&self, core: &mut Core) {
        // Only many-to-many collections hold cycles: other types are not walked.
        let rels: Vec<_> = relations_of::<T>().filter(|r| r.holds_cycles()).collect();
        if rels.is_empty() {
            return;
        }
        let store = core.store::<T>();
        let mut objs = store.live();
        objs.extend(store.new.iter().cloned());
        for obj in objs {
            let mut d = obj.lock_data();
            for rel in &rels {
                rel.release(&mut d.value);
            }
        }
    }
}

/// The pending objects of one table in INSERT statements: one statement unless a
/// self-referential relationship links some of them, then parents in a statement before
/// their children's. A row that is its own ancestor is an error.
fn levels<T: Mapped>(new: Vec<Obj<T>>, rels: &[&dyn RelationOps<T>]) -> Result<Vec<Vec<Obj<T>>>> {
    if !rels.iter().any(|r| r.is_self_referential()) {
        return Ok(vec![new]);
    }
    let index: HashMap<usize, usize> = new.iter().enumerate().map(|(i, o)| (o.addr(), i)).collect();
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); new.len()];
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (i, obj) in new.iter().enumerate() {
        before.clear();
        after.clear();
        let mut d = obj.lock_data();
        for rel in rels {
            rel.same_table_edges(&mut d, &mut before, &mut after);
        }
        for &b in &before {
            if let Some(&j) = index.get(&b) {
                parents[i].push(j);
            }
        }
        for &a in &after {
            if let Some(&j) = index.get(&a) {
                parents[j].push(i);
            }
        }
    }
    let mut level_of: Vec<Option<usize>> = vec![None; new.len()];
    let mut out: Vec<Vec<Obj<T>>> = Vec::new();
    let mut placed = 0;
    while placed < new.len() {
        let ready: Vec<usize> = (0..new.len())
            .filter(|&i| level_of[i].is_none())
            .filter(|&i| {
                parents[i]
                    .iter()
                    .all(|&p| level_of[p].is_some_and(|l| l < out.len()))
            })
            .collect();
        if ready.is_empty() {
            return Err(Error::CircularRows {
                table: T::TABLE.name,
            });
        }
        for &i in &ready {
            level_of[i] = Some(out.len());
        }
        placed += ready.len();
        out.push(ready.into_iter().map(|i| new[i].clone()).collect());
    }
    Ok(out)
}

/// A child removed from a `delete-orphan` collection, deleted at the next flush unless it was
/// appended to a parent again.
pub(crate) trait Orphan: Send {
    fn addr(&self) -> usize;
    fn resolve(self: Box<Self>, core: &mut Core) -> Result<()>;
}

impl<T: Mapped> Orphan for Obj<T> {
    fn addr(&self) -> usize {
        Obj::addr(self)
    }

    fn resolve(self: Box<Self>, core: &mut Core) -> Result<()> {
        if self.session_id() != Some(core.id) {
            return Ok(());
        }
        let (status, identity) = {
            let d = self.lock_data();
            (d.status(), d.identity())
        };
        match status {
            Status::Persistent if identity => core.delete(&self),
            Status::Pending => core.expunge(&self),
            _ => Ok(()),
        }
    }
}

impl Core {
    /// Queues `child` as a `delete-orphan` candidate.
    pub(crate) fn note_orphan<C: Mapped>(&mut self, child: &Obj<C>) {
        self.forget_orphan(child);
        self.orphans.push(Box::new(child.clone()));
    }

    /// `child` has a parent again.
    pub(crate) fn forget_orphan<C: Mapped>(&mut self, child: &Obj<C>) {
        if !self.orphans.is_empty() {
            let a = child.addr();
            self.orphans.retain(|o| o.addr() != a);
        }
    }

    /// Runs the cascades a flush needs before its statements: orphans are deleted, then the
    /// delete cascade (or the nulling of foreign keys) of every deleted object, until no
    /// cascade deletes anything more.
    pub(crate) fn cascade_for_flush(&mut self) -> Result<()> {
        for orphan in std::mem::take(&mut self.orphans) {
            orphan.resolve(self)?;
        }
        let mut done: Vec<usize> = Vec::new();
        loop {
            let mut progressed = false;
            for i in 0..self.stores.len() {
                if done.len() <= i {
                    done.push(0);
                }
                let ops = self.stores[i].ops();
                let len = ops.cascade_deletes(self, done[i])?;
                if len != done[i] {
                    done[i] = len;
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }
}
