//! Subqueries built without a session: `select_from::<Address>().filter(..).select(col)`,
//! used by [`Column::in_subquery`](super::Column::in_subquery), [`exists`](super::exists) and
//! [`scalar`](super::scalar). A subquery's conditions may read only its own tables
//! (correlated subqueries are not supported yet).

use std::marker::PhantomData;

use super::sources::{AllIn, One};
use super::{Predicate, Selectable, Subquery};
use crate::model::Mapped;
use crate::sql::ast::Select;

/// The FROM clause of a subquery over the tables `F`.
pub struct SubqueryFrom<F> {
    select: Select,
    _from: PhantomData<fn() -> F>,
}

/// A subquery selecting `Sel`.
pub struct SubquerySelect<Sel> {
    select: Select,
    _selection: PhantomData<fn() -> Sel>,
}

/// Starts a subquery over `T`.
///
/// # Examples
///
/// ```
/// # use orm_core::expr::subquery::select_from;
/// // Documented with the session in the `orm` crate, where mapped types exist.
/// ```
pub fn select_from<T: Mapped>() -> SubqueryFrom<One<T>> {
    SubqueryFrom {
        select: Select::of(T::TABLE),
        _from: PhantomData,
    }
}

impl<F> SubqueryFrom<F> {
    /// Adds a WHERE condition over the subquery's tables.
    pub fn filter<S, I>(mut self, predicate: Predicate<S>) -> Self
    where
        S: AllIn<F, I>,
    {
        self.select.and_where(predicate.into_expr());
        self
    }

    /// Selects one column or expression.
    pub fn select<Sel: Selectable, I>(mut self, selection: Sel) -> SubquerySelect<Sel>
    where
        Sel::Sources: AllIn<F, I>,
    {
        self.select.columns.clear();
        selection.columns(&mut self.select.columns);
        SubquerySelect {
            select: self.select,
            _selection: PhantomData,
        }
    }
}

/// `EXISTS` only asks whether a row exists: any subquery will do.
impl<F> Subquery<()> for SubqueryFrom<F> {
    fn into_select(self) -> Select {
        self.select
    }
}

impl<Sel: Selectable> Subquery<Sel::Output> for SubquerySelect<Sel> {
    fn into_select(self) -> Select {
        self.select
    }
}
