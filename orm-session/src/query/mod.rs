//! Typed queries: `Query<E, F>` returns identity-mapped objects, [`ColumnQuery`] returns
//! columns and aggregates.
//!
//! `E` is what a row yields (an entity or a tuple of entities) and `F` the type-level list of
//! tables in the FROM clause. `filter`, `order_by`, `select` and the terminal methods accept
//! only expressions over tables of `F`: a filter on a column of a table that was not joined
//! does not compile.

/// The clauses every query has, over the FROM list `F`: `filter`, `order_by`, `limit`,
/// `offset`, `distinct`. Expanded inside `impl` blocks of types with a `select: Select` field.
macro_rules! clauses {
    () => {
        /// Adds a WHERE condition (ANDed with earlier ones) over tables of the query.
        pub fn filter<S, I>(mut self, predicate: Predicate<S>) -> Self
        where
            S: AllIn<F, I>,
        {
            self.select.and_where(predicate.into_expr());
            self
        }

        /// Adds an ORDER BY term: a column (ascending), `column.desc()`, `.nulls_last()`...
        pub fn order_by<O: IntoOrder, I>(mut self, order: O) -> Self
        where
            O::Sources: AllIn<F, I>,
        {
            self.select
                .order_by
                .push(order.into_order().into_order_by());
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

        /// SELECT DISTINCT.
        pub fn distinct(mut self) -> Self {
            self.select.distinct = true;
            self
        }
    };
}

mod columns;
mod entities;

use std::collections::HashSet;
use std::marker::PhantomData;

use orm_core::expr::sources::{AllIn, HCons, InFrom, One, Outer};
use orm_core::expr::{Assignment, IntoOrder, Predicate, Selectable};
use orm_core::model::Mapped;
use orm_core::schema::Table;
use orm_core::sql::ast::{BinOp, Expr, Join, Select};
use orm_core::value::Value;

pub use columns::ColumnQuery;
use entities::Loader;
pub use entities::ObjHandles;
use orm_core::expr::entities::{Entities, SelectedIn};

use crate::error::{Error, Result};
use crate::relation::load::EagerLoad;
use crate::relation::LoadOption;
use crate::session::Session;

/// How a bulk [`Query::update`] or [`Query::delete`] keeps the objects the session holds in
/// step with the rows it changed (SQLAlchemy's `synchronize_session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronize {
    /// `Evaluate` when the criteria can be evaluated in Rust exactly as the database would and
    /// no held object is expired, else `Fetch`.
    #[default]
    Auto,
    /// Evaluate the criteria against the objects held (no extra SQL).
    Evaluate,
    /// Read the keys of the rows changed back with RETURNING.
    Fetch,
    /// Leave the objects held as they are.
    Off,
}

/// A query returning entities `E` from the tables `F`, from [`Session::query`].
///
/// Running it autoflushes first, and rows whose key is already in the identity map come
/// back as the object the session already holds.
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
/// assert_eq!(session.query::<User>().filter(User::age.between(10, 20)).count()?, 2);
/// # Ok(()) }
/// ```
#[must_use = "a query does nothing until a terminal method such as all() runs it"]
pub struct Query<'s, E, F> {
    session: &'s mut Session,
    select: Select,
    /// Tables of the FROM clause, in join order (for finding join conditions).
    tables: Vec<&'static Table>,
    /// An error found while building (e.g. no foreign key to join along), reported when the
    /// query runs.
    error: Option<Error>,
    synchronize: Synchronize,
    /// Relationships to load eagerly for the objects returned.
    eager: Vec<Box<dyn EagerLoad>>,
    _types: PhantomData<fn() -> (E, F)>,
}

impl<'s, E: Entities> Query<'s, E, One<E::First>> {
    pub(crate) fn new(session: &'s mut Session) -> Self {
        let mut select = Select::of(E::First::TABLE);
        select.columns = E::columns();
        Query {
            session,
            select,
            tables: vec![E::First::TABLE],
            error: None,
            synchronize: Synchronize::Auto,
            eager: Vec::new(),
            _types: PhantomData,
        }
    }
}

/// The ON condition joining `joined` to one of `tables` along a declared foreign key.
fn join_condition(tables: &[&'static Table], joined: &'static Table) -> Result<Expr> {
    let pairs = |child: &'static Table, parent: &'static Table| {
        child
            .foreign_keys
            .iter()
            .filter(move |fk| fk.ref_table == parent.name)
            .map(move |fk| {
                let terms: Vec<Expr> = fk
                    .columns
                    .iter()
                    .zip(fk.ref_columns)
                    .map(|(&c, r)| Expr::Binary {
                        op: BinOp::Eq,
                        left: Box::new(Expr::Column {
                            table: child.name,
                            column: child.columns[c].name,
                        }),
                        right: Box::new(Expr::Column {
                            table: parent.name,
                            column: r,
                        }),
                    })
                    .collect();
                Expr::And(terms)
            })
    };
    let mut found: Vec<Expr> = Vec::new();
    for &t in tables.iter().filter(|t| t.name != joined.name) {
        found.extend(pairs(joined, t));
        found.extend(pairs(t, joined));
    }
    match found.len() {
        1 => Ok(found.pop().expect("one condition")),
        0 => Err(Error::NoJoinPath {
            to: joined.name,
            from: tables.iter().map(|t| t.name).collect(),
        }),
        _ => Err(Error::AmbiguousJoin { to: joined.name }),
    }
}

impl<'s, E: Entities, F> Query<'s, E, F> {
    fn retype<F2>(self) -> Query<'s, E, F2> {
        Query {
            session: self.session,
            select: self.select,
            tables: self.tables,
            error: self.error,
            synchronize: self.synchronize,
            eager: self.eager,
            _types: PhantomData,
        }
    }

    fn add_join(&mut self, table: &'static Table, outer: bool, on: Option<Expr>) {
        let on = match on {
            Some(on) => Ok(on),
            None => join_condition(&self.tables, table),
        };
        match on {
            Ok(on) => self.select.joins.push(Join {
                table,
                alias: None,
                outer,
                on,
            }),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self.tables.push(table);
    }

    clauses!();

    /// INNER JOIN `J` along the foreign key between it and a table already in the query.
    pub fn join<J: Mapped>(mut self) -> Query<'s, E, HCons<J, F>> {
        self.add_join(J::TABLE, false, None);
        self.retype()
    }

    /// LEFT OUTER JOIN `J` along a foreign key; `J` can then be selected as `Option<J>`.
    pub fn outer_join<J: Mapped>(mut self) -> Query<'s, E, HCons<Outer<J>, F>> {
        self.add_join(J::TABLE, true, None);
        self.retype()
    }

    /// INNER JOIN `J` on an explicit condition over `J` and the tables already joined.
    pub fn join_on<J: Mapped, S, I>(mut self, on: Predicate<S>) -> Query<'s, E, HCons<J, F>>
    where
        S: AllIn<HCons<J, F>, I>,
    {
        self.add_join(J::TABLE, false, Some(on.into_expr()));
        self.retype()
    }

    /// LEFT OUTER JOIN `J` on an explicit condition.
    pub fn outer_join_on<J: Mapped, S, I>(
        mut self,
        on: Predicate<S>,
    ) -> Query<'s, E, HCons<Outer<J>, F>>
    where
        S: AllIn<HCons<Outer<J>, F>, I>,
    {
        self.add_join(J::TABLE, true, Some(on.into_expr()));
        self.retype()
    }

    /// Selects columns or aggregates instead of entities:
    /// `.select((User::name, count_all()))`.
    pub fn select<Sel: Selectable, I>(self, selection: Sel) -> ColumnQuery<'s, Sel, F>
    where
        Sel::Sources: AllIn<F, I>,
    {
        ColumnQuery::new(self.session, self.select, self.error, selection)
    }

    fn run<I>(mut self) -> Result<Vec<E::Output<ObjHandles>>>
    where
        E: SelectedIn<F, I>,
    {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut eager = std::mem::take(&mut self.eager);
        // Joined loads add to the statement; a joined collection repeats rows.
        let mut repeats = false;
        for (n, loader) in eager.iter_mut().enumerate() {
            repeats |= loader.join(&mut self.select, n)?;
        }
        let mut core = self.session.core();
        core.autoflush()?;
        if let (true, Some(wrap)) = (eager.is_empty(), E::single::<ObjHandles>()) {
            // One entity and nothing loaded along: the rows go straight to its store.
            return core.load_as(self.select, wrap);
        }
        // A row repeated by a joined collection comes back once: rows are told apart by the
        // objects they hold, recorded only then.
        let mut seen: HashSet<Vec<usize>> = HashSet::new();
        let mut repeated: Vec<usize> = Vec::new();
        let mut index = 0;
        let mut rows = core.load_with(self.select, |core, row| {
            let mut loader = Loader {
                core,
                eager: &mut eager,
                objects: repeats.then(Vec::new),
            };
            let out = E::decode(&mut loader, row)?;
            if let Some(objects) = loader.objects {
                if !seen.insert(objects) {
                    repeated.push(index);
                }
            }
            index += 1;
            for loader in eager.iter_mut() {
                loader.decode_row(core, row)?;
            }
            Ok(out)
        })?;
        for loader in &mut eager {
            loader.run(&mut core)?;
        }
        if !repeated.is_empty() {
            let mut next = repeated.into_iter().peekable();
            let mut i = 0;
            rows.retain(|_| {
                let keep = next.peek() != Some(&i);
                if !keep {
                    next.next();
                }
                i += 1;
                keep
            });
        }
        Ok(rows)
    }

    /// Loads a relationship of every `P` the query returns eagerly, with [`selectin`] (one
    /// more SELECT in all) or [`joined`] (a LEFT OUTER JOIN in this query), rather than one
    /// lazy load per object.
    ///
    /// [`selectin`]: crate::selectin
    /// [`joined`]: crate::joined
    pub fn options<P, I>(mut self, option: LoadOption<P>) -> Self
    where
        P: Mapped + InFrom<F, I>,
    {
        self.eager.push(option.loader);
        self
    }

    /// Every matching row.
    pub fn all<I>(self) -> Result<Vec<E::Output<ObjHandles>>>
    where
        E: SelectedIn<F, I>,
    {
        self.run()
    }

    /// The first row, or `None` (adds LIMIT 1).
    pub fn first<I>(mut self) -> Result<Option<E::Output<ObjHandles>>>
    where
        E: SelectedIn<F, I>,
    {
        self.select.limit = Some(self.select.limit.map_or(1, |l| l.min(1)));
        Ok(self.run()?.pop())
    }

    /// Exactly one row: errors when there are none or several.
    pub fn one<I>(self) -> Result<E::Output<ObjHandles>>
    where
        E: SelectedIn<F, I>,
    {
        let table = E::First::TABLE.name;
        self.one_or_none()?.ok_or(Error::NoResultFound { table })
    }

    /// One row or `None`: errors when there are several.
    pub fn one_or_none<I>(mut self) -> Result<Option<E::Output<ObjHandles>>>
    where
        E: SelectedIn<F, I>,
    {
        self.select.limit = Some(self.select.limit.map_or(2, |l| l.min(2)));
        let table = E::First::TABLE.name;
        let mut rows = self.run()?;
        if rows.len() > 1 {
            return Err(Error::MultipleResultsFound { table });
        }
        Ok(rows.pop())
    }

    /// The number of matching rows, counted by the database (`SELECT count(*)`).
    pub fn count(mut self) -> Result<u64> {
        if self.select.distinct || self.select.limit.is_some() || self.select.offset.is_some() {
            // count(*) would ignore them: count the rows of the query itself.
            return self.count_rows();
        }
        self.select.columns = vec![orm_core::expr::count_all().into_expr()];
        self.select.order_by.clear();
        self.scalar_i64().map(|n| n as u64)
    }

    fn count_rows(mut self) -> Result<u64> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut core = self.session.core();
        core.autoflush()?;
        Ok(core.load_with(self.select, |_, _| Ok(()))?.len() as u64)
    }

    fn scalar_i64(mut self) -> Result<i64> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut core = self.session.core();
        core.autoflush()?;
        let rows = core.load_with(self.select, |_, row| {
            row.get::<i64>(0)
                .map_err(|source| orm_core::error::Error::Decode {
                    table: String::new(),
                    column: "count(*)".into(),
                    source,
                })
                .map(Option::unwrap_or_default)
        })?;
        Ok(rows.first().copied().unwrap_or(0))
    }

    /// Whether any row matches (reads at most one row).
    pub fn exists(mut self) -> Result<bool> {
        self.select.limit = Some(self.select.limit.map_or(1, |l| l.min(1)));
        self.select.order_by.clear();
        self.count_rows().map(|n| n > 0)
    }
}

impl<'s, T: Mapped, F> Query<'s, T, F> {
    /// Streams the matching objects without holding them all: the keys of the matching rows
    /// are read first (in the query's order), then the objects are loaded `batch` at a time
    /// as the iterator advances. Objects the caller drops are released (the identity map
    /// holds clean objects weakly). A row deleted by another transaction between the two
    /// steps is skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # fn main() -> Result<(), orm::Error> {
    /// # let (_engine, factory) = setup();
    /// let mut session = factory.session();
    /// session.add_all((0..10).map(|i| User::new(&format!("u{i}"), i)))?;
    /// let mut total = 0;
    /// for user in session.query::<User>().order_by(User::age).iter(4)? {
    ///     total += user?.read()?.age;
    /// }
    /// assert_eq!(total, 45);
    /// # Ok(()) }
    /// ```
    pub fn iter(mut self, batch: usize) -> Result<QueryIter<'s, T>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let table = T::TABLE;
        // Only the key columns carry data; the others are typed NULLs, so the row keeps the
        // layout `key_from_row` reads.
        self.select.columns = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if table.primary_key.contains(&i) {
                    Expr::Column {
                        table: table.name,
                        column: c.name,
                    }
                } else {
                    Expr::Cast(Box::new(Expr::Null), c.sql_type)
                }
            })
            .collect();
        let keys = {
            let mut core = self.session.core();
            core.autoflush()?;
            core.load_with(self.select, |_, row| T::key_from_row(row, 0))?
        };
        Ok(QueryIter {
            session: self.session,
            keys: keys.into_iter(),
            batch: batch.max(1),
            buffer: std::collections::VecDeque::new(),
        })
    }
}

/// Most keys one SELECT of [`Query::iter`] lists (4 columns each stay under SQLite's limit).
const KEYS_PER_SELECT: usize = 1000;

/// The iterator of [`Query::iter`]: objects loaded a batch at a time.
pub struct QueryIter<'s, T: Mapped> {
    session: &'s mut Session,
    keys: std::vec::IntoIter<T::Key>,
    batch: usize,
    buffer: std::collections::VecDeque<crate::object::Obj<T>>,
}

impl<T: Mapped> Iterator for QueryIter<'_, T> {
    type Item = Result<crate::object::Obj<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.buffer.is_empty() {
            let keys: Vec<T::Key> = self.keys.by_ref().take(self.batch).collect();
            if keys.is_empty() {
                return None;
            }
            // Keys repeat when a join repeats a row; they come back as often as `all()` would.
            let mut by_key: std::collections::HashMap<T::Key, crate::object::Obj<T>> =
                std::collections::HashMap::new();
            // Under every dialect's parameter limit, whatever the batch size.
            for chunk in keys.chunks(KEYS_PER_SELECT) {
                let mut select = Select::of(T::TABLE);
                select.filter = Some(crate::core::keys_filter::<T>(chunk));
                match self.session.core().load::<T>(select) {
                    Ok(objs) => by_key.extend(
                        objs.into_iter()
                            .filter_map(|o| Some((o.identity_key()?, o))),
                    ),
                    Err(e) => return Some(Err(e)),
                }
            }
            self.buffer
                .extend(keys.iter().filter_map(|k| by_key.get(k).cloned()));
        }
        self.buffer.pop_front().map(Ok)
    }
}

impl<'s, T: Mapped> Query<'s, T, One<T>> {
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

    fn bulk(self, set: Option<Vec<(usize, Value)>>) -> Result<u64> {
        if self.select.limit.is_some() || self.select.offset.is_some() {
            return Err(Error::BulkWithLimit {
                table: T::TABLE.name,
            });
        }
        self.session
            .core()
            .bulk::<T>(self.select.filter, set, self.synchronize)
    }
}
