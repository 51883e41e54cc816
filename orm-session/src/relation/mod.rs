//! Relationships between mapped structs: the field types (`Collection<T>`, `Reference<T>`),
//! the typed handles the derive generates (`User::addresses: OneToMany<User, Address>`), and
//! what the session does with them (cascades, foreign keys filled in at flush, loading).
//!
//! A one-to-many collection holds its children strongly. A many-to-one reference holds its
//! parent strongly, except where the parent's loaded collection already holds the child and the
//! parent has a row: then the reference is weak, and falls back to the foreign key (an
//! identity-map lookup, or one SELECT) if the parent was dropped. So strong reference cycles
//! exist only among objects that were never flushed; see ARCHITECTURE.md.

mod access;
mod eager;
pub(crate) mod load;
pub(crate) mod many;
pub(crate) mod ops;

use std::fmt;

use orm_core::model::{Mapped, PrimaryKey};
use orm_core::schema::{ForeignKey, Table};
use orm_core::value::Value;

use crate::error::{Error, Result};
use crate::object::Slot;
use crate::object::{Obj, ObjData};
use ops::RelationOps;

pub use access::{Related, ToMany};
pub use load::{joined, selectin, LoadOption, Loadable};
pub use many::ManyToMany;

/// Which operations on a parent reach the objects of a relationship (SQLAlchemy's `cascade`).
///
/// Declared with `#[mapped(relationship(cascade = "all, delete-orphan"))]`; the default is
/// `save-update, merge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cascade {
    /// Adding the parent to a session adds the related objects (and appending to a collection
    /// of an attached parent adds the child).
    pub save_update: bool,
    /// Merging the parent merges the loaded related objects.
    pub merge: bool,
    /// Expunging the parent expunges the loaded related objects.
    pub expunge: bool,
    /// Deleting the parent deletes its children, loaded or not.
    pub delete: bool,
    /// A child removed from its parent's collection is deleted at flush.
    pub delete_orphan: bool,
}

/// What the derive records of one relationship field.
#[derive(Debug, Clone, Copy)]
pub struct RelationDef {
    /// The field name.
    pub name: &'static str,
    /// The cascades.
    pub cascade: Cascade,
    /// The foreign-key column (on the child), when several reference the parent's table.
    pub via: Option<&'static str>,
}

/// The children of a one-to-many relationship: a field of type `Collection<Child>` marked
/// `#[mapped(relationship(..))]`.
///
/// A collection built by the user (with [`Collection::new`] or from an iterator) is loaded; one
/// read from the database is unloaded until first accessed through
/// [`Obj::related`](crate::Obj::related) or loaded eagerly by a query option.
///
/// # Examples
///
/// ```
/// # use orm::__doc::*;
/// # fn main() -> Result<(), orm::Error> {
/// # let (_engine, factory) = setup();
/// let mut session = factory.session();
/// let ed = session.add(Author {
///     id: None,
///     name: "ed".into(),
///     books: ["Dubliners", "Ulysses"].map(Book::new).into_iter().collect(),
/// })?; // the books are added too (save-update cascade)
/// session.commit()?;
/// let books = ed.related(Author::books)?;
/// assert_eq!(books.len(), 2);
/// assert_eq!(books[0].read()?.author_id, ed.read()?.id); // filled in at flush
/// # Ok(()) }
/// ```
pub struct Collection<C> {
    pub(crate) items: Option<Vec<Obj<C>>>,
}

impl<C: Mapped> Collection<C> {
    /// An empty, loaded collection.
    pub fn new() -> Self {
        Collection {
            items: Some(Vec::new()),
        }
    }

    /// Whether the children are in memory.
    pub fn is_loaded(&self) -> bool {
        self.items.is_some()
    }

    /// The children in memory, or `None` when the collection is not loaded.
    pub fn loaded(&self) -> Option<&[Obj<C>]> {
        self.items.as_deref()
    }

    pub(crate) fn contains(&self, child: &Obj<C>) -> bool {
        self.items
            .as_ref()
            .is_some_and(|items| items.iter().any(|c| c.ptr_eq(child)))
    }

    /// Adds `child` unless it is in already (a collection not loaded becomes a loaded one
    /// holding it); whether it was added.
    pub(crate) fn insert(&mut self, child: &Obj<C>) -> bool {
        let items = self.items.get_or_insert_with(Vec::new);
        let new = !items.iter().any(|c| c.ptr_eq(child));
        if new {
            items.push(child.clone());
        }
        new
    }

    /// Removes `child` if the collection is loaded; whether it was in.
    pub(crate) fn remove(&mut self, child: &Obj<C>) -> bool {
        let Some(items) = &mut self.items else {
            return false;
        };
        let before = items.len();
        items.retain(|c| !c.ptr_eq(child));
        items.len() != before
    }
}

impl<C: Mapped> Default for Collection<C> {
    fn default() -> Self {
        Collection::new()
    }
}

impl<C: Mapped> Clone for Collection<C> {
    fn clone(&self) -> Self {
        Collection {
            items: self.items.clone(),
        }
    }
}

impl<C: Mapped, I: Into<Obj<C>>> FromIterator<I> for Collection<C> {
    fn from_iter<It: IntoIterator<Item = I>>(iter: It) -> Self {
        Collection {
            items: Some(iter.into_iter().map(Into::into).collect()),
        }
    }
}

impl<C: Mapped> fmt::Debug for Collection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.items {
            Some(items) => write!(f, "Collection({} loaded)", items.len()),
            None => f.write_str("Collection(unloaded)"),
        }
    }
}

/// The parent of a many-to-one relationship: a field of type `Reference<Parent>` marked
/// `#[mapped(relationship(..))]`, beside the foreign-key column it goes through.
///
/// [`Reference::default`] follows the foreign-key column; [`Reference::to`] names a parent
/// object, whose key is copied into the foreign key at flush (once the parent has one).
pub struct Reference<P> {
    pub(crate) target: Target<P>,
}

/// Where a reference points.
pub(crate) enum Target<P> {
    /// Not loaded: the foreign-key column says.
    Unloaded,
    /// Explicitly no parent: the foreign key is NULL.
    Empty,
    /// This parent, held.
    Strong(Obj<P>),
    /// This parent, held by its own collection (which holds the child): the foreign key
    /// says when it is gone.
    Weak(Slot<P>),
}

impl<P: Mapped> Reference<P> {
    /// A reference to `parent`.
    pub fn to(parent: impl Into<Obj<P>>) -> Self {
        Reference {
            target: Target::Strong(parent.into()),
        }
    }

    /// No parent: the foreign key is set to NULL at flush.
    pub fn none() -> Self {
        Reference {
            target: Target::Empty,
        }
    }

    /// The parent object in memory, if any (no SQL: see [`Obj::related`](crate::Obj::related)).
    pub fn get(&self) -> Option<Obj<P>> {
        self.target.get()
    }
}

impl<P: Mapped> Target<P> {
    pub(crate) fn get(&self) -> Option<Obj<P>> {
        match self {
            Target::Strong(p) => Some(p.clone()),
            Target::Weak(w) => Obj::upgrade(w),
            Target::Unloaded | Target::Empty => None,
        }
    }
}

/// Not loaded: the foreign-key column says.
impl<P: Mapped> Default for Reference<P> {
    fn default() -> Self {
        Reference {
            target: Target::Unloaded,
        }
    }
}

impl<P: Mapped> Clone for Reference<P> {
    fn clone(&self) -> Self {
        Reference {
            target: match &self.target {
                Target::Unloaded => Target::Unloaded,
                Target::Empty => Target::Empty,
                Target::Strong(p) => Target::Strong(p.clone()),
                Target::Weak(w) => Target::Weak(w.clone()),
            },
        }
    }
}

impl<P: Mapped> fmt::Debug for Reference<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Unloaded => f.write_str("Reference(unloaded)"),
            Target::Empty => f.write_str("Reference(none)"),
            Target::Strong(_) | Target::Weak(_) => match self.get() {
                Some(_) => f.write_str("Reference(loaded)"),
                None => f.write_str("Reference(unloaded)"),
            },
        }
    }
}

/// A many-to-one parent as far as memory knows it.
pub(crate) enum InMemory<P: Mapped> {
    /// The parent object, or no parent.
    Known(Option<Obj<P>>),
    /// Only the parent's key (the identity map or a SELECT finds the object).
    Key(P::Key),
}

/// The relationship field types, as the derive's generated `from_row` builds them.
#[doc(hidden)]
pub trait RelationField {
    /// The field of an object just read from the database.
    fn unloaded() -> Self;
}

impl<C: Mapped> RelationField for Collection<C> {
    fn unloaded() -> Self {
        Collection { items: None }
    }
}

impl<P: Mapped> RelationField for Reference<P> {
    fn unloaded() -> Self {
        Reference::default()
    }
}

/// A one-to-many relationship of `P` to `C`: `User::addresses`, generated by the derive for a
/// `Collection<C>` field.
pub struct OneToMany<P, C> {
    pub(crate) def: RelationDef,
    pub(crate) get: fn(&P) -> &Collection<C>,
    pub(crate) get_mut: fn(&mut P) -> &mut Collection<C>,
    /// The child's reference back to the parent (`back_populates`).
    pub(crate) back: Option<fn(&mut C) -> &mut Reference<P>>,
}

/// A many-to-one relationship of `C` to `P`: `Address::user`, generated by the derive for a
/// `Reference<P>` field.
pub struct ManyToOne<C, P> {
    pub(crate) def: RelationDef,
    pub(crate) get: fn(&C) -> &Reference<P>,
    pub(crate) get_mut: fn(&mut C) -> &mut Reference<P>,
    /// The parent's collection of children (`back_populates`).
    pub(crate) back: Option<fn(&mut P) -> &mut Collection<C>>,
}

macro_rules! handle_common {
    ($handle:ident<$owner:ident, $other:ident>, $field:ident, $back:ident) => {
        impl<$owner: Mapped, $other: Mapped> $handle<$owner, $other> {
            /// Used by the derive.
            #[doc(hidden)]
            pub const fn new(
                def: RelationDef,
                get: fn(&$owner) -> &$field<$other>,
                get_mut: fn(&mut $owner) -> &mut $field<$other>,
                back: Option<fn(&mut $other) -> &mut $back<$owner>>,
            ) -> Self {
                $handle {
                    def,
                    get,
                    get_mut,
                    back,
                }
            }
        }
        handle_common!($handle<$owner, $other>);
    };
    ($handle:ident<$owner:ident, $other:ident>) => {
        impl<$owner: Mapped, $other: Mapped> $handle<$owner, $other> {
            /// The entry of `Mapped::RELATIONS` for this relationship. Used by the derive.
            #[doc(hidden)]
            pub const fn entry(&'static self) -> RelationEntry<$owner> {
                RelationEntry(self)
            }

            /// The field name.
            pub fn name(&self) -> &'static str {
                self.def.name
            }

            /// The cascades.
            pub fn cascade(&self) -> Cascade {
                self.def.cascade
            }
        }

        impl<$owner, $other> Clone for $handle<$owner, $other> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<$owner, $other> Copy for $handle<$owner, $other> {}

        impl<$owner, $other> fmt::Debug for $handle<$owner, $other> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($handle), self.def.name)
            }
        }
    };
}
handle_common!(OneToMany<P, C>, Collection, Reference);
handle_common!(ManyToOne<C, P>, Reference, Collection);
handle_common!(ManyToMany<P, C>);

/// One relationship of `P`, as listed in `Mapped::RELATIONS`. Opaque.
#[doc(hidden)]
pub struct RelationEntry<P: 'static>(pub(crate) &'static (dyn RelationOps<P> + Send + Sync));

/// The relationships of `T`.
pub(crate) fn relations_of<T: Mapped>() -> impl Iterator<Item = &'static dyn RelationOps<T>> {
    T::RELATIONS.iter().map(|entry| {
        let entry: &'static RelationEntry<T> = entry
            .downcast_ref()
            .expect("Mapped::RELATIONS holds the entries the derive generates");
        entry.0 as &'static dyn RelationOps<T>
    })
}

/// The foreign key of `child` that references `parent`'s primary key, for the relationship
/// `owner.name` (through the column `def.via` when given), other than `except`.
pub(crate) fn foreign_key(
    child: &'static Table,
    parent: &'static Table,
    def: &RelationDef,
    owner: &'static Table,
    except: Option<&'static ForeignKey>,
) -> Result<&'static ForeignKey> {
    let candidates: Vec<&'static ForeignKey> = child
        .foreign_keys
        .iter()
        .filter(|fk| fk.ref_table == parent.name)
        .filter(|fk| except.is_none_or(|e| !std::ptr::eq(*fk, e)))
        .filter(|fk| {
            def.via
                .is_none_or(|via| child.columns[fk.columns[0]].name == via)
        })
        .collect();
    let error = |found| Error::RelationshipForeignKey {
        relationship: format!("{}.{}", owner.name, def.name),
        child: child.name,
        parent: parent.name,
        found,
    };
    match candidates[..] {
        [fk] => {
            let references_key = fk.ref_columns.len() == parent.primary_key.len()
                && fk
                    .ref_columns
                    .iter()
                    .zip(parent.primary_key)
                    .all(|(name, &pk)| parent.columns[pk].name == *name);
            if references_key {
                Ok(fk)
            } else {
                Err(error(0))
            }
        }
        _ => Err(error(candidates.len())),
    }
}

/// The parent key a child's foreign-key columns hold (`None` when NULL).
pub(crate) fn fk_key<P: Mapped, C: Mapped>(child: &C, fk: &ForeignKey) -> Option<P::Key> {
    let values: Vec<Value> = fk.columns.iter().map(|&c| child.column_value(c)).collect();
    P::Key::from_values(&values)
}

/// `Error::NotNullForeignKey` when a column of `fk` (of `C`, referencing `P`) is NOT NULL.
pub(crate) fn check_nullable<P: Mapped, C: Mapped>(fk: &ForeignKey) -> Result<()> {
    match fk.columns.iter().find(|&&c| !C::TABLE.columns[c].nullable) {
        Some(&c) => Err(Error::NotNullForeignKey {
            table: C::TABLE.name,
            column: C::TABLE.columns[c].name,
            parent: P::TABLE.name,
        }),
        None => Ok(()),
    }
}

/// Points the child's foreign key at `parent_key` (NULL when `None`); records the columns that
/// changed. Returns whether any did.
pub(crate) fn set_fk<P: Mapped, C: Mapped>(
    d: &mut ObjData<C>,
    fk: &ForeignKey,
    parent_key: Option<&P::Key>,
) -> Result<bool> {
    let values = match parent_key {
        Some(k) => k.values(),
        None => {
            check_nullable::<P, C>(fk)?;
            vec![Value::Null; fk.columns.len()]
        }
    };
    let mut changed = false;
    for (&c, v) in fk.columns.iter().zip(values) {
        if d.value.column_value(c) == v {
            continue;
        }
        d.value.set_column(c, v)?;
        d.record_change(c);
        changed = true;
    }
    Ok(changed)
}

/// Whether two objects, perhaps of different types, are the same.
pub(crate) fn same<A, B>(a: &Obj<A>, b: &Obj<B>) -> bool {
    a.addr() == b.addr()
}
