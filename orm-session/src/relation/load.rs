//! Loading relationships: lazily on first access, or eagerly for every object a query
//! returns (`selectin`: one more SELECT per relationship, whatever the number of parents).

use std::any::Any;
use std::collections::HashMap;

use orm_core::model::{Mapped, PrimaryKey};
use orm_core::schema::Table;
use orm_core::sql::ast::{BinOp, Expr, OrderBy, Select};
use orm_core::value::Value;

use crate::core::Core;
use crate::error::Result;
use crate::object::Obj;
use crate::relation::ops::holds;
use crate::relation::{fk_key, InMemory, ManyToOne, OneToMany, Target};

/// Most keys in one eager-loading statement (SQLite allows 32,766 parameters).
const KEYS_PER_STATEMENT: usize = 30_000;

/// `table.col IN (keys)` over the columns `columns` of `table`, for keys given as values in
/// column order.
fn in_keys(table: &'static Table, columns: &[usize], keys: Vec<Vec<Value>>) -> Expr {
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
fn by_key(table: &'static Table) -> Vec<OrderBy> {
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
    pub(crate) fn load_collections<P: Mapped, C: Mapped>(
        &mut self,
        rel: &OneToMany<P, C>,
        parents: &[Obj<P>],
        autoflush: bool,
    ) -> Result<()> {
        let fk = rel.fk()?;
        let mut targets: Vec<(P::Key, Obj<P>)> = Vec::new();
        for parent in parents {
            let d = parent.read_data()?;
            if d.identity() && !(rel.get)(&d.value).is_loaded() {
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
        let mut groups: HashMap<P::Key, Vec<Obj<C>>> = HashMap::new();
        for chunk in targets.chunks(KEYS_PER_STATEMENT) {
            let mut select = Select::of(C::TABLE);
            let keys = chunk.iter().map(|(k, _)| k.values()).collect();
            select.filter = Some(in_keys(C::TABLE, fk.columns, keys));
            select.order_by = by_key(C::TABLE);
            for child in self.load::<C>(select)? {
                let key = fk_key::<P, C>(&child.read_data()?.value, fk);
                if let Some(key) = key {
                    groups.entry(key).or_default().push(child);
                }
            }
        }
        for (key, parent) in targets {
            let children = groups.remove(&key).unwrap_or_default();
            if let Some(back) = rel.back {
                // The collection holds the children now: their references to it turn weak.
                for child in &children {
                    let mut d = child.lock_data();
                    let slot = &mut back(&mut d.value).target;
                    if let Target::Strong(p) = slot {
                        if p.ptr_eq(&parent) {
                            *slot = Target::Weak(parent.downgrade());
                        }
                    }
                }
            }
            (rel.get_mut)(&mut parent.lock_data().value).items = Some(children);
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
            remember_parent(rel, child, parent)?;
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
                remember_parent(rel, child, parent)?;
            }
        }
        Ok(())
    }
}

/// Stores a loaded parent in the child's reference: strongly, unless the parent's loaded
/// collection holds the child (then weakly, which avoids a reference cycle).
fn remember_parent<C: Mapped, P: Mapped>(
    rel: &ManyToOne<C, P>,
    child: &Obj<C>,
    parent: &Obj<P>,
) -> Result<()> {
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
    Ok(())
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
    /// Offered every object decoded (of any type); keeps those of its type.
    fn collect(&mut self, obj: &dyn Any);
    /// Loads the relationship of the objects collected.
    fn run(&mut self, core: &mut Core) -> Result<()>;
}

struct Eager<R, P> {
    rel: R,
    objs: Vec<Obj<P>>,
}

impl<P: Mapped, C: Mapped> EagerLoad for Eager<OneToMany<P, C>, P> {
    fn collect(&mut self, obj: &dyn Any) {
        if let Some(obj) = obj.downcast_ref::<Obj<P>>() {
            self.objs.push(obj.clone());
        }
    }
    fn run(&mut self, core: &mut Core) -> Result<()> {
        let objs = std::mem::take(&mut self.objs);
        core.load_collections(&self.rel, &objs, false)
    }
}

impl<C: Mapped, P: Mapped> EagerLoad for Eager<ManyToOne<C, P>, C> {
    fn collect(&mut self, obj: &dyn Any) {
        if let Some(obj) = obj.downcast_ref::<Obj<C>>() {
            self.objs.push(obj.clone());
        }
    }
    fn run(&mut self, core: &mut Core) -> Result<()> {
        let objs = std::mem::take(&mut self.objs);
        core.load_references(&self.rel, &objs)
    }
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
pub fn selectin<P: Mapped, R: SelectIn<P>>(rel: R) -> LoadOption<P> {
    LoadOption {
        loader: rel.eager(),
        _owner: std::marker::PhantomData,
    }
}

/// A relationship of `P` that [`selectin`] can load.
pub trait SelectIn<P>: sealed::Sealed {
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn eager(self) -> Box<dyn EagerLoad>;
}

mod sealed {
    pub trait Sealed {}
    impl<P, C> Sealed for super::OneToMany<P, C> {}
    impl<C, P> Sealed for super::ManyToOne<C, P> {}
}

impl<P: Mapped, C: Mapped> SelectIn<P> for OneToMany<P, C> {
    #[allow(private_interfaces)]
    fn eager(self) -> Box<dyn EagerLoad> {
        Box::new(Eager {
            rel: self,
            objs: Vec::new(),
        })
    }
}

impl<C: Mapped, P: Mapped> SelectIn<C> for ManyToOne<C, P> {
    #[allow(private_interfaces)]
    fn eager(self) -> Box<dyn EagerLoad> {
        Box::new(Eager {
            rel: self,
            objs: Vec::<Obj<C>>::new(),
        })
    }
}
