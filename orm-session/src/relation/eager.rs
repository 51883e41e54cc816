//! The eager loaders of a query: they collect the objects it returns and load a relationship
//! of all of them, with one more SELECT (`selectin`), or within the query itself (`joined`,
//! SQLAlchemy's `joinedload`): a LEFT OUTER JOIN of the related table, under an alias so that
//! a table may appear twice, whose columns follow the entities' in each row.

use std::any::Any;
use std::collections::HashMap;

use orm_core::engine::row::Row;
use orm_core::model::Mapped;
use orm_core::schema::Table;
use orm_core::sql::ast::{BinOp, Expr, Join, OrderBy, Select};
use orm_core::value::Value;

use crate::core::Core;
use crate::error::Result;
use crate::object::Obj;
use crate::relation::load::{remember_parent, EagerLoad};
use crate::relation::{ManyToMany, ManyToOne, OneToMany, ToMany};

/// The aliases of the joined loads of one query (the second for an association table). A
/// query with more joined loads loads the rest with selectin.
const ALIASES: [[&str; 2]; 8] = [
    ["orm_j1", "orm_s1"],
    ["orm_j2", "orm_s2"],
    ["orm_j3", "orm_s3"],
    ["orm_j4", "orm_s4"],
    ["orm_j5", "orm_s5"],
    ["orm_j6", "orm_s6"],
    ["orm_j7", "orm_s7"],
    ["orm_j8", "orm_s8"],
];

/// `left.lc1 = right.rc1 AND ..` for columns of `lt` (as `left`) and `rt` (as `right`).
fn on(
    left: &'static str,
    lt: &'static Table,
    lc: &[usize],
    right: &'static str,
    rt: &'static Table,
    rc: &[usize],
) -> Expr {
    Expr::And(
        lc.iter()
            .zip(rc)
            .map(|(&l, &r)| Expr::Binary {
                op: BinOp::Eq,
                left: Box::new(Expr::Column {
                    table: left,
                    column: lt.columns[l].name,
                }),
                right: Box::new(Expr::Column {
                    table: right,
                    column: rt.columns[r].name,
                }),
            })
            .collect(),
    )
}

/// The LEFT OUTER JOIN of a table, as `alias`.
fn outer(table: &'static Table, alias: &'static str, on: Expr) -> Join {
    Join {
        table,
        alias: Some(alias),
        outer: true,
        on,
    }
}

impl<P: Mapped, C: Mapped> OneToMany<P, C> {
    /// `LEFT OUTER JOIN c AS alias ON alias.fk = p.pk`.
    pub(crate) fn joins(&self, alias: &'static str, _: &'static str) -> Result<Vec<Join>> {
        let fk = self.fk()?;
        let (p, c) = (P::TABLE, C::TABLE);
        let cond = on(alias, c, fk.columns, p.name, p, p.primary_key);
        Ok(vec![outer(c, alias, cond)])
    }
}

impl<P: Mapped, C: Mapped> ManyToMany<P, C> {
    /// `LEFT OUTER JOIN secondary AS alias2 ON alias2.local = p.pk LEFT OUTER JOIN c AS alias
    /// ON alias.pk = alias2.remote`.
    pub(crate) fn joins(&self, alias: &'static str, alias2: &'static str) -> Result<Vec<Join>> {
        let (local, remote) = self.keys()?;
        let (p, c, s) = (P::TABLE, C::TABLE, self.secondary);
        Ok(vec![
            outer(
                s,
                alias2,
                on(alias2, s, local.columns, p.name, p, p.primary_key),
            ),
            outer(
                c,
                alias,
                on(alias, c, c.primary_key, alias2, s, remote.columns),
            ),
        ])
    }
}

/// Adds the columns of `table` as `alias` to `select`, and orders by its key last; returns
/// where the columns start.
fn select_joined(select: &mut Select, table: &'static Table, alias: &'static str) -> usize {
    let at = select.columns.len();
    select
        .columns
        .extend(table.columns.iter().map(|c| Expr::Column {
            table: alias,
            column: c.name,
        }));
    select
        .order_by
        .extend(table.primary_key.iter().map(|&c| OrderBy {
            expr: Expr::Column {
                table: alias,
                column: table.columns[c].name,
            },
            descending: false,
            nulls: None,
        }));
    at
}

/// The object of `T` whose columns start at `at`, unless the outer join found none.
fn joined_object<T: Mapped>(
    core: &mut Core,
    row: &Row<'_>,
    at: usize,
) -> orm_core::error::Result<Option<Obj<T>>> {
    if row
        .value(at + T::TABLE.primary_key[0])
        .is_ok_and(|v| v == Value::Null)
    {
        return Ok(None);
    }
    core.entity_at::<T>(row, at).map(Some)
}

/// Eager loading of a collection (one-to-many or many-to-many).
pub(crate) struct CollectionLoader<R, P, C> {
    rel: R,
    /// With a JOIN, rather than selectin.
    joined: bool,
    /// Where the child's columns start in a row; `None` when loading with selectin instead.
    at: Option<usize>,
    /// The parent of the row being decoded.
    current: Option<Obj<P>>,
    /// Every parent returned, with the children its rows carried.
    parents: Vec<(Obj<P>, Vec<Obj<C>>)>,
    index: HashMap<usize, usize>,
}

impl<R, P, C> CollectionLoader<R, P, C> {
    pub(crate) fn new(rel: R, joined: bool) -> Self {
        CollectionLoader {
            rel,
            joined,
            at: None,
            current: None,
            parents: Vec::new(),
            index: HashMap::new(),
        }
    }
}

/// The joins of a collection relationship, for [`CollectionLoader`].
pub(crate) trait CollectionJoins {
    fn joins(&self, alias: &'static str, alias2: &'static str) -> Result<Vec<Join>>;
}

impl<P: Mapped, C: Mapped> CollectionJoins for OneToMany<P, C> {
    fn joins(&self, alias: &'static str, alias2: &'static str) -> Result<Vec<Join>> {
        OneToMany::joins(self, alias, alias2)
    }
}

impl<P: Mapped, C: Mapped> CollectionJoins for ManyToMany<P, C> {
    fn joins(&self, alias: &'static str, alias2: &'static str) -> Result<Vec<Join>> {
        ManyToMany::joins(self, alias, alias2)
    }
}

impl<P, R> EagerLoad for CollectionLoader<R, P, R::Child>
where
    P: Mapped,
    R: ToMany<P> + CollectionJoins + Send + 'static,
{
    fn join(&mut self, select: &mut Select, n: usize) -> Result<bool> {
        // A LIMIT would count the repeated rows: load with selectin instead.
        let limited = select.limit.is_some() || select.offset.is_some();
        if !self.joined || limited || n >= ALIASES.len() {
            return Ok(false);
        }
        let [alias, alias2] = ALIASES[n];
        select.joins.extend(self.rel.joins(alias, alias2)?);
        self.at = Some(select_joined(select, R::Child::TABLE, alias));
        Ok(true)
    }

    fn collect(&mut self, obj: &dyn Any) {
        if let Some(obj) = obj.downcast_ref::<Obj<P>>() {
            self.current = Some(obj.clone());
            let parents = &mut self.parents;
            self.index.entry(obj.addr()).or_insert_with(|| {
                parents.push((obj.clone(), Vec::new()));
                parents.len() - 1
            });
        }
    }

    fn decode_row(&mut self, core: &mut Core, row: &Row<'_>) -> orm_core::error::Result<()> {
        let (Some(parent), Some(at)) = (self.current.take(), self.at) else {
            return Ok(());
        };
        if let Some(child) = joined_object::<R::Child>(core, row, at)? {
            let children = &mut self.parents[self.index[&parent.addr()]].1;
            if !children.iter().any(|c| c.ptr_eq(&child)) {
                children.push(child);
            }
        }
        Ok(())
    }

    fn run(&mut self, core: &mut Core) -> Result<()> {
        let parents = std::mem::take(&mut self.parents);
        self.index.clear();
        if self.at.is_none() {
            let objs: Vec<Obj<P>> = parents.into_iter().map(|(p, _)| p).collect();
            return core.load_collections(&self.rel, &objs, false);
        }
        for (parent, children) in parents {
            {
                let d = parent.read_data()?;
                // A collection in memory keeps its unflushed changes.
                if !d.identity() || self.rel.collection(&d.value).is_loaded() {
                    continue;
                }
            }
            self.rel.after_load(&parent, &children);
            self.rel.collection_mut(&mut parent.lock_data().value).items = Some(children);
        }
        Ok(())
    }
}

/// Eager loading of a many-to-one reference.
pub(crate) struct ReferenceLoader<C, P> {
    rel: ManyToOne<C, P>,
    /// With a JOIN, rather than selectin.
    joined: bool,
    at: Option<usize>,
    current: Option<Obj<C>>,
    objs: Vec<Obj<C>>,
}

impl<C, P> ReferenceLoader<C, P> {
    pub(crate) fn new(rel: ManyToOne<C, P>, joined: bool) -> Self {
        ReferenceLoader {
            rel,
            joined,
            at: None,
            current: None,
            objs: Vec::new(),
        }
    }
}

impl<C: Mapped, P: Mapped> EagerLoad for ReferenceLoader<C, P> {
    fn join(&mut self, select: &mut Select, n: usize) -> Result<bool> {
        if !self.joined || n >= ALIASES.len() {
            return Ok(false);
        }
        let alias = ALIASES[n][0];
        let fk = self.rel.fk()?;
        let (c, p) = (C::TABLE, P::TABLE);
        let cond = on(alias, p, p.primary_key, c.name, c, fk.columns);
        select.joins.push(outer(p, alias, cond));
        self.at = Some(select_joined(select, p, alias));
        // One parent per row: rows are not repeated.
        Ok(false)
    }

    fn collect(&mut self, obj: &dyn Any) {
        if let Some(obj) = obj.downcast_ref::<Obj<C>>() {
            self.current = Some(obj.clone());
            self.objs.push(obj.clone());
        }
    }

    fn decode_row(&mut self, core: &mut Core, row: &Row<'_>) -> orm_core::error::Result<()> {
        let (Some(child), Some(at)) = (self.current.take(), self.at) else {
            return Ok(());
        };
        if let Some(parent) = joined_object::<P>(core, row, at)? {
            remember_parent(&self.rel, &child, &parent);
        }
        Ok(())
    }

    fn run(&mut self, core: &mut Core) -> Result<()> {
        let objs = std::mem::take(&mut self.objs);
        if self.at.is_none() {
            return core.load_references(&self.rel, &objs);
        }
        Ok(())
    }
}
