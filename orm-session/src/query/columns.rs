//! `ColumnQuery`: a query returning columns, expressions and aggregates as Rust values.

use std::marker::PhantomData;

use orm_core::expr::sources::AllIn;
use orm_core::expr::{IntoOrder, Predicate, Selectable};
use orm_core::sql::ast::Select;

use crate::error::{Error, Result};
use crate::session::Session;

/// A query returning `Sel::Output` per row, from [`Query::select`](super::Query::select).
///
/// # Examples
///
/// ```
/// # use orm::__doc::*;
/// # fn main() -> Result<(), orm::Error> {
/// # let (_engine, factory) = setup();
/// use orm::{count_all, sum};
/// let mut session = factory.session();
/// session.add_all([User::new("ed", 30), User::new("ed", 40), User::new("mary", 12)])?;
/// let names: Vec<(Option<i64>, String)> =
///     session.query::<User>().select((User::id, User::name)).order_by(User::id).all()?;
/// assert_eq!(names[2].1, "mary");
/// let per_name: Vec<(String, i64, Option<i64>)> = session
///     .query::<User>()
///     .select((User::name, count_all(), sum(User::age)))
///     .group_by(User::name)
///     .having(count_all().gt(1))
///     .all()?;
/// assert_eq!(per_name, [("ed".to_string(), 2, Some(70))]);
/// # Ok(()) }
/// ```
#[must_use = "a query does nothing until a terminal method such as all() runs it"]
pub struct ColumnQuery<'s, Sel, F> {
    session: &'s mut Session,
    select: Select,
    error: Option<Error>,
    _types: PhantomData<fn() -> (Sel, F)>,
}

impl<'s, Sel: Selectable, F> ColumnQuery<'s, Sel, F> {
    pub(crate) fn new(
        session: &'s mut Session,
        mut select: Select,
        error: Option<Error>,
        selection: Sel,
    ) -> Self {
        select.columns.clear();
        selection.columns(&mut select.columns);
        ColumnQuery {
            session,
            select,
            error,
            _types: PhantomData,
        }
    }

    clauses!();

    /// Adds a GROUP BY term: a column or expression, or a tuple of them.
    pub fn group_by<G: Selectable, I>(mut self, terms: G) -> Self
    where
        G::Sources: AllIn<F, I>,
    {
        terms.columns(&mut self.select.group_by);
        self
    }

    /// Adds a HAVING condition (ANDed with earlier ones), typically over aggregates.
    pub fn having<S, I>(mut self, predicate: Predicate<S>) -> Self
    where
        S: AllIn<F, I>,
    {
        let e = predicate.into_expr();
        self.select.having = Some(match self.select.having.take() {
            Some(prev) => orm_core::sql::ast::Expr::And(vec![prev, e]),
            None => e,
        });
        self
    }

    /// Every row.
    pub fn all(mut self) -> Result<Vec<Sel::Output>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut core = self.session.core();
        core.autoflush()?;
        core.load_with(self.select, |_, row| Sel::decode(row, &mut 0))
    }

    /// The first row, or `None` (adds LIMIT 1).
    pub fn first(mut self) -> Result<Option<Sel::Output>> {
        self.select.limit = Some(self.select.limit.map_or(1, |l| l.min(1)));
        Ok(self.all()?.pop())
    }

    /// Exactly one row: errors when there are none or several.
    pub fn one(self) -> Result<Sel::Output> {
        let table = self.select.table.name;
        self.one_or_none()?.ok_or(Error::NoResultFound { table })
    }

    /// One row or `None`: errors when there are several.
    pub fn one_or_none(mut self) -> Result<Option<Sel::Output>> {
        self.select.limit = Some(self.select.limit.map_or(2, |l| l.min(2)));
        let table = self.select.table.name;
        let mut rows = self.all()?;
        if rows.len() > 1 {
            return Err(Error::MultipleResultsFound { table });
        }
        Ok(rows.pop())
    }
}
