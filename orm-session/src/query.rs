//! `Query<T>`: a typed SELECT whose rows come back as identity-mapped objects.

use orm_core::expr::{Assignment, IntoOrder, Predicate};
use orm_core::model::Mapped;
use orm_core::sql::ast::{Expr, OrderBy, Select};

use crate::error::{Error, Result};
use crate::object::Obj;
use crate::session::Session;

/// A query over the mapped type `T`, from [`Session::query`].
///
/// Filters and orderings accept only columns of `T` (checked by the compiler). Running the
/// query autoflushes first, and rows whose key is already in the identity map come back as
/// the object the session already holds.
///
/// # Examples
///
/// ```
/// # use orm::__doc::*;
/// # fn main() -> Result<(), orm::Error> {
/// # let (_engine, factory) = setup();
/// let mut session = factory.session();
/// session.add_all([User::new("ed", 30), User::new("wendy", 17), User::new("mary", 12)])?;
/// let young = session.query::<User>().filter(User::age.lt(18)).order_by(User::name.desc()).all()?;
/// let names: Vec<String> = young.iter().map(|u| u.read().unwrap().name.clone()).collect();
/// assert_eq!(names, ["wendy", "mary"]);
/// let ed = session.query::<User>().filter(User::name.eq("ed")).one()?;
/// assert_eq!(ed.read()?.age, 30);
/// # Ok(()) }
/// ```
#[must_use = "a query does nothing until all(), one(), one_or_none() or first() runs it"]
pub struct Query<'s, T: Mapped> {
    session: &'s mut Session,
    select: Select,
    synchronize: Synchronize,
    _table: std::marker::PhantomData<fn() -> T>,
}

/// How a bulk [`Query::update`] or [`Query::delete`] keeps the objects the session holds in
/// step with the rows it changed (SQLAlchemy's `synchronize_session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronize {
    /// `Evaluate` when the criteria can be evaluated in Rust exactly as the database would,
    /// else `Fetch`.
    #[default]
    Auto,
    /// Evaluate the criteria against the objects held (no extra SQL).
    Evaluate,
    /// Read the keys of the rows changed back with RETURNING.
    Fetch,
    /// Leave the objects held as they are.
    Off,
}

impl<'s, T: Mapped> Query<'s, T> {
    pub(crate) fn new(session: &'s mut Session) -> Self {
        Query {
            session,
            select: Select {
                table: T::TABLE,
                filter: None,
                order_by: Vec::new(),
                limit: None,
                offset: None,
            },
            synchronize: Synchronize::Auto,
            _table: std::marker::PhantomData,
        }
    }

    /// Adds a WHERE condition (ANDed with earlier ones).
    pub fn filter(mut self, predicate: Predicate<T>) -> Self {
        let e = predicate.into_expr();
        self.select.filter = Some(match self.select.filter.take() {
            None => e,
            Some(Expr::And(mut items)) => {
                items.push(e);
                Expr::And(items)
            }
            Some(prev) => Expr::And(vec![prev, e]),
        });
        self
    }

    /// Adds an ORDER BY term: a column (ascending) or `column.desc()`.
    pub fn order_by(mut self, order: impl IntoOrder<T>) -> Self {
        let o: OrderBy = order.into_order().into_order_by();
        self.select.order_by.push(o);
        self
    }

    /// LIMIT.
    pub fn limit(mut self, n: u64) -> Self {
        self.select.limit = Some(n);
        self
    }

    /// OFFSET.
    pub fn offset(mut self, n: u64) -> Self {
        self.select.offset = Some(n);
        self
    }

    /// How a bulk update or delete synchronizes the session (default [`Synchronize::Auto`]).
    pub fn synchronize(mut self, mode: Synchronize) -> Self {
        self.synchronize = mode;
        self
    }

    /// Updates every matching row with one UPDATE; objects the session holds are updated in
    /// memory too. Returns the number of rows matched. Autoflushes first.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # fn main() -> Result<(), orm::Error> {
    /// # let (_engine, factory) = setup();
    /// let mut session = factory.session();
    /// let wendy = session.add(User::new("wendy", 17))?;
    /// session.add(User::new("ed", 30))?;
    /// let n = session.query::<User>().filter(User::age.lt(18)).update([User::age.assign(18)])?;
    /// assert_eq!(n, 1);
    /// assert_eq!(wendy.read()?.age, 18); // in step, without a reload
    /// # Ok(()) }
    /// ```
    pub fn update(self, set: impl IntoIterator<Item = Assignment<T>>) -> Result<u64> {
        let set = set.into_iter().map(Assignment::into_parts).collect();
        self.bulk(Some(set))
    }

    /// Deletes every matching row with one DELETE; objects the session holds for them become
    /// deleted. Returns the number of rows matched. Autoflushes first.
    pub fn delete(self) -> Result<u64> {
        self.bulk(None)
    }

    fn bulk(self, set: Option<Vec<(usize, orm_core::value::Value)>>) -> Result<u64> {
        if self.select.limit.is_some() || self.select.offset.is_some() {
            return Err(Error::BulkWithLimit {
                table: T::TABLE.name,
            });
        }
        self.session
            .core()
            .bulk::<T>(self.select.filter, set, self.synchronize)
    }

    /// Every matching object.
    pub fn all(self) -> Result<Vec<Obj<T>>> {
        self.session.load(self.select)
    }

    /// The first object, or `None` (adds LIMIT 1).
    pub fn first(mut self) -> Result<Option<Obj<T>>> {
        self.select.limit = Some(1);
        Ok(self.session.load(self.select)?.pop())
    }

    /// Exactly one object: errors when there are none or several.
    pub fn one(self) -> Result<Obj<T>> {
        self.one_or_none()?.ok_or(Error::NoResultFound {
            table: T::TABLE.name,
        })
    }

    /// One object or `None`: errors when there are several.
    pub fn one_or_none(mut self) -> Result<Option<Obj<T>>> {
        self.select.limit = Some(2);
        let mut rows = self.session.load(self.select)?;
        if rows.len() > 1 {
            return Err(Error::MultipleResultsFound {
                table: T::TABLE.name,
            });
        }
        Ok(rows.pop())
    }
}
