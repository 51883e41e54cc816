//! Loading relationships: lazily on first access, or eagerly for every object a query
//! returns (`selectin`: one more SELECT per relationship, whatever the number of parents;
//! `joined`: a LEFT OUTER JOIN in the query itself, see `eager`).

use std::any::Any;

use orm_core::engine::row::Row;
use std::collections::HashMap;

use orm_core::model::{Mapped, PrimaryKey};
use orm_core::schema::Table;
use orm_core::sql::ast::{BinOp, Expr, OrderBy, Select};
use orm_core::value::Value;

use crate::core::Core;
use crate::error::Result;
use crate::object::Obj;
use crate::relation::eager::{CollectionLoader, ReferenceLoader};
use crate::relation::ops::holds;
use crate::relation::{fk_key, InMemory, ManyToMany, ManyToOne, OneToMany, Target, ToMany};

/// Most keys in one eager-loading statement (SQLite allows 32,766 parameters).
pub(crate) const KEYS_PER_STATEMENT: usize = 30_000;

/// `table.col IN (keys)` over the columns `columns` of `table`, for keys given as values in
/// column order.
pub(crate) fn in_keys(table: &'static Table, columns: &[usize], keys: Vec<Vec<Value>>) -> Expr {
    let column = |c: usize| Expr::Column {
        table: table.name,
        column: table.columns[c].name,
    };
    if let [c] = columns {
        return Expr::InArray {
            expr: Box::new(column(*c)),
            sql_type: table.columns[*c].sql_type,
            values: keys.into_iter().flatten().collect(),
        };
    }
    Expr::Or(
        keys.into_iter()
            .map(|values| {
                Expr::And(
                    columns
                        .iter()
                        .zip(values)
                        .map(|(&c, v)| Expr::Binary {
                            op: BinOp::Eq,
                            left: Box::new(column(c)),
                            right: Box::new(Expr::Param(v)),
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

/// ORDER BY the primary key, so that collections come back in a stable order.
pub(crate) fn by_key(table: &'static Table) -> Vec<OrderBy> {
    table
        .primary_key
        .iter()
        .map(|&c| OrderBy {
            expr: Expr::Column {
                table: table.name,
                column: table.columns[c].name,
            },
            descending: false,
            nulls: None,
        })
        .collect()
}

impl Core {
    /// Loads the unloaded collections `rel` of `parents` that have rows, in one SELECT per
    /// 30,000 parents. `autoflush` first (not from inside a flush).
    pub(crate) fn load_collections<P: Mapped, R: ToMany<P>>(
        &mut self,
        rel: &R,
        parents: &[Obj<P>],
        autoflush: bool,
    ) -> Result<()> {
        let mut targets: Vec<(P::Key, Obj<P>)> = Vec::new();
        for parent in parents {
            let d = parent.read_data()?;
            if d.identity() && !rel.collection(&d.value).is_loaded() {
                if let Some(key) = d.value.key() {
                    targets.push((key, parent.clone()));
                }
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        if autoflush {
            self.autoflush()?;
        }
        let mut groups: HashMap<P::Key, Vec<Obj<R::Child>>> = HashMap::new();
        for chunk in targets.chunks(KEYS_PER_STATEMENT) {
            let keys = chunk.iter().map(|(k, _)| k.values()).collect();
            for (key, child) in rel.fetch(self, keys)? {
                groups.entry(key).or_default().push(child);
            }
        }
        for (key, parent) in targets {
            let children = groups.remove(&key).unwrap_or_default();
            rel.after_load(&parent, &children);
            rel.collection_mut(&mut parent.lock_data().value).items = Some(children);
        }
        Ok(())
    }

    /// The parent of `child` through `rel`, from memory, the identity map, or one SELECT;
    /// the reference keeps it.
    pub(crate) fn load_reference<C: Mapped, P: Mapped>(
        &mut self,
        rel: &ManyToOne<C, P>,
        child: &Obj<C>,
    ) -> Result<Option<Obj<P>>> {
        let key = match rel.in_memory(&*child.read_data()?)? {
            InMemory::Known(parent) => return Ok(parent),
            InMemory::Key(key) => key,
        };
        let parent = self.get::<P>(key)?;
        if let Some(parent) = &parent {
            remember_parent(rel, child, parent);
        }
        Ok(parent)
    }

    /// Loads the parents of `children` through `rel` in one SELECT per 30,000 keys (those
    /// the identity map does not hold already).
    pub(crate) fn load_references<C: Mapped, P: Mapped>(
        &mut self,
        rel: &ManyToOne<C, P>,
        children: &[Obj<C>],
    ) -> Result<()> {
        let fk = rel.fk()?;
        let mut wanted: Vec<(P::Key, &Obj<C>)> = Vec::new();
        for child in children {
            let d = child.read_data()?;
            if matches!((rel.get)(&d.value).target, Target::Unloaded) {
                if let Some(key) = fk_key::<P, C>(&d.value, fk) {
                    wanted.push((key, child));
                }
            }
        }
        let mut missing: Vec<P::Key> = Vec::new();
        let mut found: HashMap<P::Key, Option<Obj<P>>> = HashMap::new();
        for (key, _) in &wanted {
            if found.contains_key(key) {
                continue;
            }
            match self.store::<P>().lookup(key) {
                Some(p) if !p.read_data()?.is_expired() => {
                    found.insert(key.clone(), Some(p));
                }
                _ => {
                    found.insert(key.clone(), None);
                    missing.push(key.clone());
                }
            }
        }
        for chunk in missing.chunks(KEYS_PER_STATEMENT) {
            let mut select = Select::of(P::TABLE);
            let keys: Vec<_> = chunk.iter().map(PrimaryKey::values).collect();
            select.filter = Some(in_keys(P::TABLE, P::TABLE.primary_key, keys));
            for parent in self.load::<P>(select)? {
                let key = parent.read_data()?.value.key();
                if let Some(key) = key {
                    found.insert(key, Some(parent));
                }
            }
        }
        for (key, child) in wanted {
            if let Some(Some(parent)) = found.get(&key) {
                remember_parent(rel, child, parent);
            }
        }
        Ok(())
    }
}

impl<P: Mapped, C: Mapped> OneToMany<P, C> {
    /// `SELECT c.* FROM c WHERE c.fk IN (keys)`: the children of the parents with `keys`,
    /// each with its parent's key.
    pub(crate) fn fetch(
        &self,
        core: &mut Core,
        keys: Vec<Vec<Value>>,
    ) -> Result<Vec<(P::Key, Obj<C>)>> {
        let fk = self.fk()?;
        let mut select = Select::of(C::TABLE);
        select.filter = Some(in_keys(C::TABLE, fk.columns, keys));
        select.order_by = by_key(C::TABLE);
        let mut out = Vec::new();
        for child in core.load::<C>(select)? {
            let key = fk_key::<P, C>(&child.read_data()?.value, fk);
            if let Some(key) = key {
                out.push((key, child));
            }
        }
        Ok(out)
    }

    /// The collection of `parent` holds `children` now: their references to it turn weak.
    pub(crate) fn after_load(&self, parent: &Obj<P>, children: &[Obj<C>]) {
        let Some(back) = self.back else { return };
        for child in children {
            let mut d = child.lock_data();
            let slot = &mut back(&mut d.value).target;
            if let Target::Strong(p) = slot {
                if p.ptr_eq(parent) {
                    *slot = Target::Weak(parent.downgrade());
                }
            }
        }
    }
}

/// Stores a loaded parent in the child's reference: strongly, unless the parent's loaded
/// collection holds the child (then weakly, which avoids a reference cycle).
pub(crate) fn remember_parent<C: Mapped, P: Mapped>(
    rel: &ManyToOne<C, P>,
    child: &Obj<C>,
    parent: &Obj<P>,
) {
    let held_by_parent = match rel.back {
        Some(back) if !crate::relation::same(child, parent) => {
            holds(back, &mut parent.lock_data(), child)
        }
        _ => false,
    };
    let mut d = child.lock_data();
    let slot = &mut (rel.get_mut)(&mut d.value).target;
    if matches!(slot, Target::Unloaded) || slot.get().is_none() {
        *slot = if held_by_parent {
            Target::Weak(parent.downgrade())
        } else {
            Target::Strong(parent.clone())
        };
    }
}

/// An eager-loading option for [`Query::options`](crate::Query::options): load a relationship
/// of every `P` the query returns in one more statement. Made by [`selectin`].
pub struct LoadOption<P> {
    pub(crate) loader: Box<dyn EagerLoad>,
    _owner: std::marker::PhantomData<fn() -> P>,
}

impl<P> std::fmt::Debug for LoadOption<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadOption")
    }
}

/// Collects the objects a query returns, then loads one relationship of all of them.
pub(crate) trait EagerLoad: Send {
    /// Before the query runs: a joined loader adds its LEFT OUTER JOINs and columns to
    /// `select` (as the `n`th joined loader) and returns whether it repeats rows (a
    /// collection). A select-in loader (or a joined collection under LIMIT or OFFSET, which
    /// a JOIN would skew) leaves `select` alone.
    fn join(&mut self, _select: &mut Select, _n: usize) -> Result<bool> {
        Ok(false)
    }
    /// Offered every object decoded (of any type); keeps those of its type.
    fn collect(&mut self, obj: &dyn Any);
    /// After the entities of a row: a joined loader reads its columns.
    fn decode_row(&mut self, _core: &mut Core, _row: &Row<'_>) -> orm_core::error::Result<()> {
        Ok(())
    }
    /// Loads the relationship of the objects collected.
    fn run(&mut self, core: &mut Core) -> Result<()>;
}

/// SQLAlchemy's `selectinload`: after the query, ONE more SELECT loads the relationship of
/// every object it returned (`WHERE fk IN (SELECT unnest($1))` on PostgreSQL, an `IN` list
/// on SQLite), instead of one lazy load per object.
///
/// # Examples
///
/// ```
/// # use orm::__doc::*;
/// # fn main() -> Result<(), orm::Error> {
/// # let (_engine, factory) = setup();
/// let mut session = factory.session();
/// for name in ["ed", "wendy"] {
///     session.add(Author { id: None, name: name.into(), books: [Book::new("A"), Book::new("B")].into_iter().collect() })?;
/// }
/// session.commit()?;
/// let authors = session.query::<Author>().options(selectin(Author::books)).all()?;
/// // Both collections are loaded: no SQL below.
/// assert!(authors.iter().all(|a| a.read().unwrap().books.is_loaded()));
/// # Ok(()) }
/// ```
pub fn selectin<P: Mapped, R: Loadable<P>>(rel: R) -> LoadOption<P> {
    LoadOption {
        loader: rel.loader(false),
        _owner: std::marker::PhantomData,
    }
}

/// SQLAlchemy's `joinedload`: the query itself loads the relationship, with a LEFT OUTER JOIN
/// of the related table (and of the association table, for a many-to-many one) and its
/// columns beside the entities': ONE statement in all. Rows repeated by a collection's join
/// come back once.
///
/// A LIMIT or OFFSET counts rows, which the JOIN of a collection repeats: a query with one
/// (as `first` and `one` add) loads collections with [`selectin`] instead. References join
/// in any query.
///
/// # Examples
///
/// ```
/// # use orm::__doc::*;
/// # fn main() -> Result<(), orm::Error> {
/// # let (_engine, factory) = setup();
/// let mut session = factory.session();
/// for name in ["ed", "wendy"] {
///     session.add(Author { id: None, name: name.into(), books: [Book::new("A"), Book::new("B")].into_iter().collect() })?;
/// }
/// session.commit()?;
/// // One SELECT .. FROM authors LEFT OUTER JOIN books AS orm_j1 ..
/// let authors = session.query::<Author>().options(joined(Author::books)).all()?;
/// assert_eq!(authors.len(), 2); // each author once
/// assert!(authors.iter().all(|a| a.read().unwrap().books.loaded().unwrap().len() == 2));
/// # Ok(()) }
/// ```
pub fn joined<P: Mapped, R: Loadable<P>>(rel: R) -> LoadOption<P> {
    LoadOption {
        loader: rel.loader(true),
        _owner: std::marker::PhantomData,
    }
}

/// A relationship of `P` that [`selectin`] and [`joined`] can load.
pub trait Loadable<P>: sealed::Sealed {
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn loader(self, joined: bool) -> Box<dyn EagerLoad>;
}

mod sealed {
    pub trait Sealed {}
    impl<P, C> Sealed for super::OneToMany<P, C> {}
    impl<C, P> Sealed for super::ManyToOne<C, P> {}
    impl<P, C> Sealed for super::ManyToMany<P, C> {}
}

impl<P: Mapped, C: Mapped> Loadable<P> for OneToMany<P, C> {
    #[allow(private_interfaces)]
    fn loader(self, joined: bool) -> Box<dyn EagerLoad> {
        Box::new(CollectionLoader::new(self, joined))
    }
}

impl<P: Mapped, C: Mapped> Loadable<P> for ManyToMany<P, C> {
    #[allow(private_interfaces)]
    fn loader(self, joined: bool) -> Box<dyn EagerLoad> {
        Box::new(CollectionLoader::new(self, joined))
    }
}

impl<C: Mapped, P: Mapped> Loadable<C> for ManyToOne<C, P> {
    #[allow(private_interfaces)]
    fn loader(self, joined: bool) -> Box<dyn EagerLoad> {
        Box::new(ReferenceLoader::new(self, joined))
    }
}
