//! What the session does with each relationship: cascades, and the foreign keys it fills in.
//!
//! [`RelationOps<P>`] is implemented once for [`OneToMany`] and once for [`ManyToOne`]; the
//! session reaches a type's relationships through `Mapped::RELATIONS` as trait objects.

use std::any::TypeId;

use orm_core::model::Mapped;

use crate::core::{Core, Merged};
use crate::error::{Error, Result};
use crate::object::{Obj, ObjData};
use crate::relation::{
    fk_key, foreign_key, same, set_fk, Collection, InMemory, ManyToOne, OneToMany, Target, ToMany,
};
use crate::state::Status;

/// One relationship of objects of type `P`, type-erased over the other side.
pub(crate) trait RelationOps<P: Mapped>: Send + Sync {
    /// Save-update cascade: adds the related objects in memory to the session.
    fn cascade_add(&self, obj: &Obj<P>, core: &mut Core) -> Result<()>;
    /// Expunge cascade.
    fn cascade_expunge(&self, obj: &Obj<P>, core: &mut Core) -> Result<()>;
    /// `parents` are being deleted: delete their children (delete cascade) or point the
    /// children's foreign key at nothing. One-to-many only.
    fn on_delete(&self, parents: &[Obj<P>], core: &mut Core) -> Result<()>;
    /// Whether [`sync_foreign_key`](Self::sync_foreign_key) has anything to do (many-to-one
    /// only).
    fn has_foreign_key(&self) -> bool {
        false
    }
    /// Copies the key of the referenced parent into the foreign key. Many-to-one only.
    fn sync_foreign_key(&self, d: &mut ObjData<P>) -> Result<()>;
    /// `parents` were just inserted: their loaded children's foreign keys take their keys.
    /// One-to-many only.
    fn fill_children(&self, parents: &[Obj<P>], core: &mut Core) -> Result<()>;
    /// Whether the relationship relates rows of one table.
    fn is_self_referential(&self) -> bool;
    /// Objects of the same table that must be inserted before (`before`) or after (`after`)
    /// this one: its parent, or its children, through a self-referential relationship.
    fn same_table_edges(&self, d: &mut ObjData<P>, before: &mut Vec<usize>, after: &mut Vec<usize>);
    /// Forgets what is loaded (a copy made by `merge` must not share the source's objects).
    fn unload(&self, value: &mut P);
    /// Merge cascade: `target` (the merged copy of `source`) takes the merged copies of the
    /// related objects loaded in `source`.
    fn merge(
        &self,
        source: &Obj<P>,
        target: &Obj<P>,
        core: &mut Core,
        load: bool,
        merged: &mut Merged,
    ) -> Result<()>;
    /// Whether [`release`](Self::release) has anything to do (many-to-many only).
    fn holds_cycles(&self) -> bool {
        false
    }
    /// The session is letting go of the object: drops what would keep objects alive in a
    /// cycle (many-to-many collections, which hold each other).
    fn release(&self, _value: &mut P) {}
}

/// What the session does alike with both kinds of collection.
pub(crate) trait Children<P: Mapped>: ToMany<P> {
    /// The loaded children in `d` (none when not loaded).
    fn children(&self, d: &ObjData<P>) -> Vec<Obj<Self::Child>> {
        self.collection(&d.value)
            .loaded()
            .map(<[Obj<Self::Child>]>::to_vec)
            .unwrap_or_default()
    }

    /// Expunges the loaded children this session holds (expunge cascade).
    fn expunge_children(&self, obj: &Obj<P>, core: &mut Core) -> Result<()> {
        let children = self.children(&obj.lock_data());
        children
            .iter()
            .try_for_each(|child| expunge_if_held(child, core))
    }
}

impl<P: Mapped, R: ToMany<P>> Children<P> for R {}

/// Expunges `obj` if this session holds it (expunge cascade).
pub(crate) fn expunge_if_held<T: Mapped>(obj: &Obj<T>, core: &mut Core) -> Result<()> {
    if obj.session_id() == Some(core.id) {
        core.expunge(obj)?;
    }
    Ok(())
}

/// Delete cascade: deletes `obj`, or expunges it if it never had a row.
pub(crate) fn delete_cascaded<T: Mapped>(obj: &Obj<T>, core: &mut Core) -> Result<()> {
    if obj.lock_data().identity() {
        core.delete(obj)
    } else {
        expunge_if_held(obj, core)
    }
}

impl<P: Mapped, C: Mapped> OneToMany<P, C> {
    pub(crate) fn fk(&self) -> Result<&'static orm_core::schema::ForeignKey> {
        foreign_key(C::TABLE, P::TABLE, &self.def, P::TABLE, None)
    }

    /// Makes `child` point at `parent` in memory: its back reference (held weakly once the
    /// parent has a row, since the parent's collection holds the child) and, when the parent
    /// has a key, its foreign key. Returns whether the child must be queued as dirty.
    pub(crate) fn point_child(
        &self,
        parent: &Obj<P>,
        parent_key: Option<&P::Key>,
        parent_has_row: bool,
        child: &Obj<C>,
        overwrite: bool,
    ) -> Result<bool> {
        let mut d = child.lock_data();
        if let Some(back) = self.back {
            let slot = &mut back(&mut d.value).target;
            let unset = matches!(slot, Target::Unloaded | Target::Empty);
            let already = slot.get().is_some_and(|p| p.ptr_eq(parent));
            if overwrite || unset || already {
                *slot = if parent_has_row {
                    Target::Weak(parent.downgrade())
                } else {
                    Target::Strong(parent.clone())
                };
            }
        }
        let mut changed = false;
        if let Some(key) = parent_key {
            changed = set_fk::<P, C>(&mut d, self.fk()?, Some(key))?;
        }
        Ok(changed && d.status() == Status::Persistent && !d.queued())
    }
}

impl<P: Mapped, C: Mapped> RelationOps<P> for OneToMany<P, C> {
    fn cascade_add(&self, obj: &Obj<P>, core: &mut Core) -> Result<()> {
        if !self.def.cascade.save_update {
            return Ok(());
        }
        let (children, key, has_row) = {
            let d = obj.lock_data();
            let children = self.children(&d);
            if children.is_empty() {
                return Ok(());
            }
            (children, d.value.key(), d.identity())
        };
        for child in children {
            if same(obj, &child) {
                return Err(Error::CircularRows {
                    table: P::TABLE.name,
                });
            }
            if self.point_child(obj, key.as_ref(), has_row, &child, false)? {
                core.queue_dirty(&child);
            }
            core.add(&child)?;
        }
        Ok(())
    }

    fn cascade_expunge(&self, obj: &Obj<P>, core: &mut Core) -> Result<()> {
        if !self.def.cascade.expunge {
            return Ok(());
        }
        self.expunge_children(obj, core)
    }

    fn on_delete(&self, parents: &[Obj<P>], core: &mut Core) -> Result<()> {
        let fk = self.fk()?;
        core.load_collections(self, parents, false)?;
        for parent in parents {
            let children = self.children(&parent.lock_data());
            for child in children {
                let status = child.lock_data().status();
                if matches!(status, Status::MarkedDeleted | Status::Deleted) {
                    continue;
                }
                if self.def.cascade.delete {
                    delete_cascaded(&child, core)?;
                    continue;
                }
                // No delete cascade: the child stays, referencing nothing.
                let queue = {
                    let mut d = child.lock_data();
                    if let Some(back) = self.back {
                        back(&mut d.value).target = Target::Empty;
                    }
                    let changed = set_fk::<P, C>(&mut d, fk, None).map_err(|e| match e {
                        Error::NotNullForeignKey { table, column, .. } => Error::DependentRows {
                            table: P::TABLE.name,
                            child: table,
                            column,
                        },
                        e => e,
                    })?;
                    changed && d.status() == Status::Persistent && !d.queued()
                };
                if queue {
                    core.queue_dirty(&child);
                }
            }
        }
        Ok(())
    }

    fn sync_foreign_key(&self, _: &mut ObjData<P>) -> Result<()> {
        Ok(())
    }

    fn fill_children(&self, parents: &[Obj<P>], core: &mut Core) -> Result<()> {
        for parent in parents {
            let (children, key) = {
                let d = parent.lock_data();
                let children = self.children(&d);
                if children.is_empty() {
                    continue;
                }
                (children, d.value.key())
            };
            for child in children {
                if self.point_child(parent, key.as_ref(), true, &child, false)? {
                    core.queue_dirty(&child);
                }
            }
        }
        Ok(())
    }

    fn is_self_referential(&self) -> bool {
        TypeId::of::<C>() == TypeId::of::<P>()
    }

    fn same_table_edges(&self, d: &mut ObjData<P>, _: &mut Vec<usize>, after: &mut Vec<usize>) {
        if self.is_self_referential() {
            after.extend(self.children(d).iter().map(Obj::addr));
        }
    }

    fn unload(&self, value: &mut P) {
        (self.get_mut)(value).items = None;
    }

    fn merge(
        &self,
        source: &Obj<P>,
        target: &Obj<P>,
        core: &mut Core,
        load: bool,
        merged: &mut Merged,
    ) -> Result<()> {
        let Some(children) =
            merged_collection(self.def.cascade.merge, self.get, source, core, load, merged)?
        else {
            return Ok(());
        };
        let (key, has_row, old) = {
            let d = target.lock_data();
            (d.value.key(), d.identity(), self.children(&d))
        };
        for child in &children {
            if self.point_child(target, key.as_ref(), has_row, child, true)? {
                core.queue_dirty(child);
            }
        }
        // Children the copy held that the source does not: removed from the collection.
        let fk = self.fk()?;
        for child in old.iter().filter(|o| !children.iter().any(|c| c.ptr_eq(o))) {
            if self.def.cascade.delete_orphan {
                core.note_orphan(child);
                continue;
            }
            let queue = {
                let mut d = child.lock_data();
                if let Some(back) = self.back {
                    back(&mut d.value).target = Target::Empty;
                }
                set_fk::<P, C>(&mut d, fk, None)? && d.status() == Status::Persistent && !d.queued()
            };
            if queue {
                core.queue_dirty(child);
            }
        }
        (self.get_mut)(&mut target.lock_data().value).items = Some(children);
        Ok(())
    }
}

/// The merged copies of the objects of the collection `get` loaded in `source` (`None` when
/// `cascade` is off or the collection is not loaded).
pub(crate) fn merged_collection<P: Mapped, C: Mapped>(
    cascade: bool,
    get: fn(&P) -> &Collection<C>,
    source: &Obj<P>,
    core: &mut Core,
    load: bool,
    merged: &mut Merged,
) -> Result<Option<Vec<Obj<C>>>> {
    if !cascade {
        return Ok(None);
    }
    let Some(children) = get(&source.read_data()?.value)
        .loaded()
        .map(<[Obj<C>]>::to_vec)
    else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(children.len());
    for child in &children {
        out.push(core.merge_cascade(child, load, merged)?);
    }
    Ok(Some(out))
}

impl<C: Mapped, P: Mapped> ManyToOne<C, P> {
    pub(crate) fn fk(&self) -> Result<&'static orm_core::schema::ForeignKey> {
        foreign_key(C::TABLE, P::TABLE, &self.def, C::TABLE, None)
    }

    /// The parent in memory.
    pub(crate) fn target(&self, d: &ObjData<C>) -> Option<Obj<P>> {
        (self.get)(&d.value).target.get()
    }

    /// What memory alone says of the parent: known (an object, or none: cleared or a NULL
    /// foreign key), or only its key.
    pub(crate) fn in_memory(&self, d: &ObjData<C>) -> Result<InMemory<P>> {
        let target = &(self.get)(&d.value).target;
        if let Target::Empty = target {
            return Ok(InMemory::Known(None));
        }
        if let Some(parent) = target.get() {
            return Ok(InMemory::Known(Some(parent)));
        }
        Ok(match fk_key::<P, C>(&d.value, self.fk()?) {
            Some(key) => InMemory::Key(key),
            None => InMemory::Known(None),
        })
    }
}

impl<C: Mapped, P: Mapped> RelationOps<C> for ManyToOne<C, P> {
    fn cascade_add(&self, obj: &Obj<C>, core: &mut Core) -> Result<()> {
        if !self.def.cascade.save_update {
            return Ok(());
        }
        let parent = self.target(&obj.lock_data());
        match parent {
            Some(parent) if same(obj, &parent) => Err(Error::CircularRows {
                table: C::TABLE.name,
            }),
            Some(parent) => core.add(&parent),
            None => Ok(()),
        }
    }

    fn cascade_expunge(&self, obj: &Obj<C>, core: &mut Core) -> Result<()> {
        if !self.def.cascade.expunge {
            return Ok(());
        }
        let parent = self.target(&obj.lock_data());
        match parent {
            Some(parent) if parent.session_id() == Some(core.id) => core.expunge(&parent),
            _ => Ok(()),
        }
    }

    fn on_delete(&self, _: &[Obj<C>], _: &mut Core) -> Result<()> {
        Ok(())
    }

    fn has_foreign_key(&self) -> bool {
        true
    }

    fn sync_foreign_key(&self, d: &mut ObjData<C>) -> Result<()> {
        let fk = self.fk()?;
        let parent = match &(self.get)(&d.value).target {
            Target::Unloaded => return Ok(()),
            Target::Empty => {
                set_fk::<P, C>(d, fk, None)?;
                return Ok(());
            }
            target => target.get(),
        };
        // A weak parent that is gone: the foreign key already says where it was.
        let Some(parent) = parent else { return Ok(()) };
        let (key, has_row) = {
            let p = parent.read_data().map_err(|_| Error::CircularRows {
                table: C::TABLE.name,
            })?;
            (p.value.key(), p.identity())
        };
        // A parent without a key yet is inserted later in this flush (its table comes first,
        // or its row is ordered first within the table); its insert fills this key in.
        if let Some(key) = key {
            set_fk::<P, C>(d, fk, Some(&key))?;
        }
        if has_row && self.back.is_some() {
            // The parent's collection may hold this object: a weak reference avoids a cycle.
            let slot = &mut (self.get_mut)(&mut d.value).target;
            if let Target::Strong(p) = slot {
                *slot = Target::Weak(p.downgrade());
            }
        }
        Ok(())
    }

    fn fill_children(&self, _: &[Obj<C>], _: &mut Core) -> Result<()> {
        Ok(())
    }

    fn is_self_referential(&self) -> bool {
        TypeId::of::<C>() == TypeId::of::<P>()
    }

    fn same_table_edges(&self, d: &mut ObjData<C>, before: &mut Vec<usize>, _: &mut Vec<usize>) {
        if self.is_self_referential() {
            before.extend(self.target(d).as_ref().map(Obj::addr));
        }
    }

    fn unload(&self, value: &mut C) {
        (self.get_mut)(value).target = Target::Unloaded;
    }

    fn merge(
        &self,
        source: &Obj<C>,
        target: &Obj<C>,
        core: &mut Core,
        load: bool,
        merged: &mut Merged,
    ) -> Result<()> {
        if !self.def.cascade.merge {
            return Ok(());
        }
        let parent = match &(self.get)(&source.read_data()?.value).target {
            Target::Unloaded => return Ok(()),
            Target::Empty => None,
            loaded => match loaded.get() {
                Some(parent) => Some(parent),
                None => return Ok(()),
            },
        };
        let parent = match parent {
            Some(p) => Some(core.merge_cascade(&p, load, merged)?),
            None => None,
        };
        let (key, held) = match &parent {
            Some(p) if !same(p, target) => {
                let mut pd = p.lock_data();
                let held = pd.identity() && self.back.is_some_and(|b| holds(b, &mut pd, target));
                (pd.value.key(), held)
            }
            Some(p) => (p.lock_data().value.key(), false),
            None => (None, false),
        };
        let queue = {
            let mut d = target.lock_data();
            (self.get_mut)(&mut d.value).target = match &parent {
                None => Target::Empty,
                Some(p) if held => Target::Weak(p.downgrade()),
                Some(p) => Target::Strong(p.clone()),
            };
            let changed = match (&parent, &key) {
                (None, _) => set_fk::<P, C>(&mut d, self.fk()?, None)?,
                (Some(_), Some(key)) => set_fk::<P, C>(&mut d, self.fk()?, Some(key))?,
                // The parent is new: the flush fills the key in.
                (Some(_), None) => true,
            };
            changed && d.status() == Status::Persistent && !d.queued()
        };
        if queue {
            core.queue_dirty(target);
        }
        Ok(())
    }
}

/// Whether the loaded collection of `parent` holds `child`.
pub(crate) fn holds<P: Mapped, C: Mapped>(
    back: fn(&mut P) -> &mut Collection<C>,
    parent: &mut ObjData<P>,
    child: &Obj<C>,
) -> bool {
    back(&mut parent.value).contains(child)
}
