//! Reading and changing relationships through an object: `related`, `append`, `remove`,
//! `set_related`. Both sides are kept consistent in memory (`back_populates`), and an object
//! attached to a session reaches it for lazy loads and cascades.

use std::sync::Arc;

use orm_core::model::Mapped;

use orm_core::value::Value;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::object::Obj;
use crate::relation::{
    check_nullable, fk_key, same, set_fk, Collection, InMemory::Known, ManyToMany, ManyToOne,
    OneToMany, Target,
};
use crate::session::Shared;

/// A relationship handle of `T` that [`Obj::related`] can read.
pub trait Related<T>: Copy + sealed::Sealed {
    /// What the relationship holds: `Vec<Obj<C>>` for a collection, `Option<Obj<P>>` for a
    /// reference.
    type Output;
    #[doc(hidden)]
    fn read(self, obj: &Obj<T>) -> Result<Self::Output>;
}

mod sealed {
    pub trait Sealed {}
    impl<P, C> Sealed for super::OneToMany<P, C> {}
    impl<C, P> Sealed for super::ManyToOne<C, P> {}
    impl<P, C> Sealed for super::ManyToMany<P, C> {}
}

/// A relationship of `P` to a collection of children: one-to-many ([`OneToMany`]) or
/// many-to-many ([`ManyToMany`]). [`Obj::append`] and [`Obj::remove`] take one.
pub trait ToMany<P: Mapped>: Copy + sealed::Sealed {
    /// The type of the children.
    type Child: Mapped;
    #[doc(hidden)]
    fn collection<'a>(&self, value: &'a P) -> &'a Collection<Self::Child>;
    #[doc(hidden)]
    fn collection_mut<'a>(&self, value: &'a mut P) -> &'a mut Collection<Self::Child>;
    /// The children of the parents with `keys`, each with its parent's key.
    #[doc(hidden)]
    #[allow(private_interfaces, clippy::type_complexity)]
    fn fetch(
        &self,
        core: &mut Core,
        keys: Vec<Vec<Value>>,
    ) -> Result<Vec<(P::Key, Obj<Self::Child>)>>;
    /// `children` were just loaded into `parent`'s collection.
    #[doc(hidden)]
    fn after_load(&self, parent: &Obj<P>, children: &[Obj<Self::Child>]);
    #[doc(hidden)]
    fn append_to(self, parent: &Obj<P>, child: &Obj<Self::Child>) -> Result<()>;
    #[doc(hidden)]
    fn remove_from(self, parent: &Obj<P>, child: &Obj<Self::Child>) -> Result<bool>;
}

macro_rules! to_many {
    ($handle:ident, $append:ident, $remove:ident, $after_load:expr) => {
        impl<P: Mapped, C: Mapped> ToMany<P> for $handle<P, C> {
            type Child = C;
            fn collection<'a>(&self, value: &'a P) -> &'a Collection<C> {
                (self.get)(value)
            }
            fn collection_mut<'a>(&self, value: &'a mut P) -> &'a mut Collection<C> {
                (self.get_mut)(value)
            }
            #[allow(private_interfaces)]
            fn fetch(
                &self,
                core: &mut Core,
                keys: Vec<Vec<Value>>,
            ) -> Result<Vec<(P::Key, Obj<C>)>> {
                $handle::fetch(self, core, keys)
            }
            fn after_load(&self, parent: &Obj<P>, children: &[Obj<C>]) {
                let after_load: fn(&Self, &Obj<P>, &[Obj<C>]) = $after_load;
                after_load(self, parent, children)
            }
            fn append_to(self, parent: &Obj<P>, child: &Obj<C>) -> Result<()> {
                parent.$append(self, child)
            }
            fn remove_from(self, parent: &Obj<P>, child: &Obj<C>) -> Result<bool> {
                parent.$remove(self, child)
            }
        }

        impl<P: Mapped, C: Mapped> Related<P> for $handle<P, C> {
            type Output = Vec<Obj<C>>;

            fn read(self, obj: &Obj<P>) -> Result<Vec<Obj<C>>> {
                obj.ensure_loaded(&self)?;
                let d = obj.read_data()?;
                Ok((self.get)(&d.value).loaded().unwrap_or_default().to_vec())
            }
        }
    };
}
to_many!(
    OneToMany,
    append_one_to_many,
    remove_one_to_many,
    OneToMany::after_load
);
to_many!(
    ManyToMany,
    append_many_to_many,
    remove_many_to_many,
    |_, _, _| {}
);

impl<C: Mapped, P: Mapped> Related<C> for ManyToOne<C, P> {
    type Output = Option<Obj<P>>;

    fn read(self, obj: &Obj<C>) -> Result<Option<Obj<P>>> {
        obj.load()?;
        if let Known(parent) = self.in_memory(&*obj.read_data()?)? {
            return Ok(parent);
        }
        let shared = obj.session().ok_or(Error::DetachedInstance {
            table: C::TABLE.name,
        })?;
        let mut core = shared.core();
        core.load_reference(&self, obj)
    }
}

impl<T: Mapped> Obj<T> {
    /// The session this object is attached to, if it is still open.
    pub(crate) fn session(&self) -> Option<Arc<Shared>> {
        self.read_data()
            .ok()?
            .attached()
            .and_then(|l| l.shared.upgrade())
    }

    /// Reads a relationship, loading it on first access through the object's session (one
    /// SELECT for a collection; for a reference, none when the identity map holds the parent).
    ///
    /// Errors with [`Error::DetachedInstance`] when it is not loaded and the object is not in
    /// a session.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # fn main() -> Result<(), orm::Error> {
    /// # let (_engine, factory) = setup();
    /// let mut session = factory.session();
    /// let ed = session.add(Author { id: None, name: "ed".into(), books: Default::default() })?;
    /// let book = ed.append(Author::books, Book::new("Ulysses"))?; // now pending too
    /// session.commit()?;
    /// let author = book.related(Book::author)?.unwrap(); // from the identity map: no SQL
    /// assert!(author.ptr_eq(&ed));
    /// assert_eq!(ed.related(Author::books)?.len(), 1); // one SELECT (expired at commit)
    /// # Ok(()) }
    /// ```
    pub fn related<R: Related<T>>(&self, relationship: R) -> Result<R::Output> {
        relationship.read(self)
    }

    /// Loads the collection `rel` if it is not loaded (an object without a row has an empty
    /// one).
    fn ensure_loaded<R: ToMany<T>>(&self, rel: &R) -> Result<()> {
        self.load()?;
        {
            let mut d = self.write()?;
            if rel.collection(&d.value).is_loaded() {
                return Ok(());
            }
            if !d.identity() {
                rel.collection_mut(&mut d.value).items = Some(Vec::new());
                return Ok(());
            }
        }
        let shared = self.session().ok_or(Error::DetachedInstance {
            table: T::TABLE.name,
        })?;
        let mut core = shared.core();
        core.load_collections(rel, std::slice::from_ref(self), true)
    }

    /// Appends `child` to the collection `rel` (loading it first if needed), and keeps the
    /// other side in step. If this object is in a session, the child joins it (save-update
    /// cascade). Returns the child's handle.
    ///
    /// One-to-many: the child's reference points here, it leaves its previous parent's
    /// loaded collection, and its foreign key takes this object's key (at flush, when this
    /// object has none yet).
    ///
    /// Many-to-many: the child's collection on the other side (if loaded) gains this object,
    /// and the flush inserts the association row. Errors with [`Error::DetachedCollection`]
    /// when this object has a row but no session to record the change in.
    pub fn append<R: ToMany<T>>(
        &self,
        rel: R,
        child: impl Into<Obj<R::Child>>,
    ) -> Result<Obj<R::Child>> {
        let child = child.into();
        rel.append_to(self, &child)?;
        Ok(child)
    }

    /// Removes `child` from the collection `rel` (loading it first if needed); returns
    /// whether it was in it.
    ///
    /// One-to-many: the child's reference is cleared and its foreign key set to NULL; with
    /// `delete-orphan` it is deleted at the next flush instead (unless appended to a parent
    /// again before). Errors with [`Error::NotNullForeignKey`], changing nothing, when the
    /// foreign key is NOT NULL and the relationship has no `delete-orphan` cascade, and with
    /// [`Error::DetachedCollection`] when the child would be an orphan of an object that has a
    /// row but no session.
    ///
    /// Many-to-many: the child leaves the other side's loaded collection, and the flush
    /// deletes the association row (the child stays).
    pub fn remove<R: ToMany<T>>(&self, rel: R, child: &Obj<R::Child>) -> Result<bool> {
        rel.remove_from(self, child)
    }

    fn append_one_to_many<C: Mapped>(&self, rel: OneToMany<T, C>, child: &Obj<C>) -> Result<()> {
        let child = child.clone();
        if same(self, &child) {
            return Err(Error::CircularRows {
                table: T::TABLE.name,
            });
        }
        self.ensure_loaded(&rel)?;
        let (key, has_row) = {
            let mut d = self.write()?;
            if !(rel.get_mut)(&mut d.value).insert(&child) {
                return Ok(());
            }
            (d.value.key(), d.identity())
        };
        if let Some(back) = rel.back {
            let old = back(&mut child.write()?.value).target.get();
            if let Some(old) = old.filter(|old| !old.ptr_eq(self)) {
                (rel.get_mut)(&mut old.write()?.value).remove(&child);
            }
        }
        let changed = rel.point_child(self, key.as_ref(), has_row, &child, true)?;
        if let Some(shared) = self.session() {
            let mut core = shared.core();
            core.forget_orphan(&child);
            if changed {
                core.queue_dirty(&child);
            }
            if rel.def.cascade.save_update {
                core.add(&child)?;
            }
        }
        Ok(())
    }

    fn remove_one_to_many<C: Mapped>(&self, rel: OneToMany<T, C>, child: &Obj<C>) -> Result<bool> {
        let fk = rel.fk()?;
        let orphan = rel.def.cascade.delete_orphan;
        if !orphan {
            check_nullable::<T, C>(fk)?;
        } else if self.session().is_none() && self.read_data()?.identity() {
            // No session to delete the orphan at its next flush.
            return Err(Error::DetachedCollection {
                relationship: format!("{}.{}", T::TABLE.name, rel.def.name),
            });
        }
        if !self.take_out(&rel, child)? {
            return Ok(false);
        }
        let changed = {
            let mut d = child.write()?;
            if let Some(back) = rel.back {
                back(&mut d.value).target = Target::Empty;
            }
            if orphan {
                false
            } else {
                set_fk::<T, C>(&mut d, fk, None)?
            }
        };
        if let Some(shared) = self.session() {
            let mut core = shared.core();
            if changed {
                core.queue_dirty(child);
            }
            if orphan {
                core.note_orphan(child);
            }
        }
        Ok(true)
    }

    /// Removes `child` from the collection `rel` (loaded first if needed); whether it was in.
    fn take_out<R: ToMany<T>>(&self, rel: &R, child: &Obj<R::Child>) -> Result<bool> {
        self.ensure_loaded(rel)?;
        let mut d = self.write()?;
        Ok(rel.collection_mut(&mut d.value).remove(child))
    }

    /// The session to record a many-to-many change of this object in: `None` for an object
    /// without a row (its links are recorded when it is added); an error for a detached one.
    fn link_session<C: Mapped>(&self, rel: &ManyToMany<T, C>) -> Result<Option<Arc<Shared>>> {
        match self.session() {
            Some(shared) => Ok(Some(shared)),
            None if self.read_data()?.identity() => Err(Error::DetachedCollection {
                relationship: format!("{}.{}", T::TABLE.name, rel.def.name),
            }),
            None => Ok(None),
        }
    }

    fn append_many_to_many<C: Mapped>(&self, rel: ManyToMany<T, C>, child: &Obj<C>) -> Result<()> {
        let session = self.link_session(&rel)?;
        self.ensure_loaded(&rel)?;
        {
            let mut d = self.write()?;
            if !(rel.get_mut)(&mut d.value).insert(child) {
                return Ok(());
            }
        }
        rel.back_add(self, child)?;
        if let Some(shared) = session {
            let mut core = shared.core();
            core.record_link(&rel, self, child, true)?;
            if rel.def.cascade.save_update {
                core.add(child)?;
            }
        }
        Ok(())
    }

    fn remove_many_to_many<C: Mapped>(
        &self,
        rel: ManyToMany<T, C>,
        child: &Obj<C>,
    ) -> Result<bool> {
        let session = self.link_session(&rel)?;
        if !self.take_out(&rel, child)? {
            return Ok(false);
        }
        rel.back_remove(self, child)?;
        if let Some(shared) = session {
            shared.core().record_link(&rel, self, child, false)?;
        }
        Ok(true)
    }

    /// Sets (or, with `None`, clears) the reference `rel`, keeping the other side in step: the
    /// object leaves its previous parent's loaded collection and joins the new one's, and its
    /// foreign key takes the parent's key (at flush, when the parent has none yet). If this
    /// object is in a session, the parent joins it (save-update cascade).
    ///
    /// Clearing errors with [`Error::NotNullForeignKey`], changing nothing, when the foreign
    /// key is NOT NULL.
    pub fn set_related<P: Mapped>(
        &self,
        rel: ManyToOne<T, P>,
        parent: Option<&Obj<P>>,
    ) -> Result<()> {
        let fk = rel.fk()?;
        if parent.is_some_and(|p| same(self, p)) {
            return Err(Error::CircularRows {
                table: T::TABLE.name,
            });
        }
        if parent.is_none() {
            check_nullable::<P, T>(fk)?;
        }
        self.load()?;
        let session = self.session();
        // The previous parent, if in memory (or in the identity map): it loses this child.
        let old = {
            let d = self.read_data()?;
            let in_memory = rel.target(&d);
            let key = fk_key::<P, T>(&d.value, fk);
            drop(d);
            in_memory.or_else(|| {
                let session = session.as_ref()?;
                session.core().store::<P>().lookup(&key?)
            })
        };
        if let (Some(old), Some(back)) = (&old, rel.back) {
            if parent.is_none_or(|p| !p.ptr_eq(old)) {
                back(&mut old.write()?.value).remove(self);
            }
        }
        let mut held_by_parent = false;
        let mut parent_key = None;
        if let Some(p) = parent {
            let mut pd = p.write()?;
            parent_key = pd.value.key();
            if let Some(back) = rel.back {
                let has_row = pd.identity();
                let collection = back(&mut pd.value);
                if collection.is_loaded() || !has_row {
                    collection.insert(self);
                    held_by_parent = has_row;
                }
            }
        }
        let queue = {
            let mut d = self.write()?;
            (rel.get_mut)(&mut d.value).target = match parent {
                None => Target::Empty,
                Some(p) if held_by_parent => Target::Weak(p.downgrade()),
                Some(p) => Target::Strong(p.clone()),
            };
            match (parent, &parent_key) {
                (None, _) => set_fk::<P, T>(&mut d, fk, None)?,
                (Some(_), Some(key)) => set_fk::<P, T>(&mut d, fk, Some(key))?,
                // The parent has no key yet: the flush fills it in; queue this object for it.
                (Some(_), None) => true,
            }
        };
        if let Some(shared) = session {
            let mut core = shared.core();
            core.forget_orphan(self);
            if queue {
                core.queue_dirty(self);
            }
            if let (Some(p), true) = (parent, rel.def.cascade.save_update) {
                core.add(p)?;
            }
        }
        Ok(())
    }
}
