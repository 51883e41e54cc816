//! Batched statements for the objects of one table.
//!
//! - INSERT: one statement per table per flush on PostgreSQL (`INSERT .. SELECT FROM
//!   unnest(..) ORDER BY ordinality RETURNING key`); on SQLite, multi-row VALUES in batches
//!   of [`ROWS_PER_STATEMENT`] rows that share one prepared statement, then one statement for
//!   the rest. Generated keys come back in ascending order, which is the order rows were
//!   inserted in (sequence / rowid), and are stored into the objects in that order. A version
//!   column is inserted with the value the object holds.
//! - UPDATE: only the changed columns; objects that changed the same columns share one
//!   statement on PostgreSQL (`UPDATE .. FROM unnest(..)`), one prepared statement run once
//!   per row on SQLite. Every row must match, or the flush fails with `StaleData`.
//!
//! INSERT and UPDATE bind parameters borrowed from the objects' fields
//! ([`Mapped::column_ref`]), with no intermediate rows of values: the objects of a statement
//! stay locked while it runs.
//! - DELETE: one `DELETE .. WHERE (key) IN (..)` per table (chunked on SQLite).
//!
//! # Version columns (optimistic concurrency)
//!
//! For a table with a `#[mapped(version)]` column, every UPDATE sets the version to the
//! object's version + 1 (whatever else changed) and both UPDATE and DELETE match the primary
//! key AND the version the object holds: a row changed or deleted by another transaction since
//! it was loaded matches nothing, and the flush fails with [`Error::StaleData`]. The object's
//! version field is advanced only once the whole flush succeeded ([`after_update`], called by
//! the store's `finish_flush`), so a failed flush leaves it as it was. For a table without a
//! version column, all of this folds away at compile time (`T::TABLE.version` is a constant).
//!
//! When a batch matches fewer rows than it holds, one extra SELECT of the batch's keys (an
//! error path) finds which row is stale; see [`find_stale`] for what can and cannot be told.

use std::collections::HashMap;

use orm_core::engine::Connection;
use orm_core::error::DecodeError;
use orm_core::model::{ColumnSet, Mapped, PrimaryKey};
use orm_core::schema::Table;
use orm_core::sql::ast::{
    Delete, DeleteRows, Insert, InsertRows, Select, Statement, Update, UpdateRows,
};
use orm_core::sql::render::render;
use orm_core::value::{ArrayItems, SqlType, Value, ValueRef};
use parking_lot::RwLockWriteGuard;

use crate::error::{Error, Result};
use crate::object::{Obj, ObjData};
use crate::state::Status;

/// Column-wise arrays of `rows`, for `unnest`.
pub(crate) fn arrays(types: &[SqlType], rows: Vec<Vec<Value>>) -> Vec<(SqlType, Vec<Value>)> {
    let mut out: Vec<(SqlType, Vec<Value>)> = types
        .iter()
        .map(|&t| (t, Vec::with_capacity(rows.len())))
        .collect();
    for row in rows {
        for (col, v) in out.iter_mut().zip(row) {
            col.1.push(v);
        }
    }
    out
}

/// An object locked for as long as a statement binds values borrowed from its fields.
type Locked<'a, T> = RwLockWriteGuard<'a, ObjData<T>>;

/// Locks each of `objs`, in order.
fn lock_all<'a, T: Mapped>(objs: &[&'a Obj<T>]) -> Vec<Locked<'a, T>> {
    objs.iter().map(|o| o.lock_data()).collect()
}

/// Column-wise arrays for `unnest`, borrowed from the locked objects' fields (no value is
/// copied): array `i` of `n` holds `value(d, i)` for each object `d`.
fn unnest_arrays<'d, T: Mapped>(
    locked: &'d [Locked<'_, T>],
    n: usize,
    value: impl Fn(&'d ObjData<T>, usize) -> ValueRef<'d>,
) -> Vec<Vec<ValueRef<'d>>> {
    let mut out: Vec<Vec<ValueRef<'d>>> =
        (0..n).map(|_| Vec::with_capacity(locked.len())).collect();
    for d in locked {
        for (i, array) in out.iter_mut().enumerate() {
            array.push(value(d, i));
        }
    }
    out
}

/// The parameters of an `unnest` statement: `arrays[i]` as an array of column `columns[i]`'s
/// type.
fn array_params<'a, T: Mapped>(
    columns: impl Iterator<Item = usize>,
    arrays: &'a [Vec<ValueRef<'a>>],
) -> Vec<ValueRef<'a>> {
    columns
        .zip(arrays)
        .map(|(c, a)| ValueRef::Array(T::TABLE.columns[c].sql_type, ArrayItems::Refs(a)))
        .collect()
}

/// The SQL types of `columns` of `table`.
pub(crate) fn sql_types(table: &Table, columns: &[usize]) -> Vec<SqlType> {
    columns.iter().map(|&c| table.columns[c].sql_type).collect()
}

/// INSERTs the pending objects `new`; `check` vets each key the user chose before anything
/// is written (the session refuses a key it already holds).
pub(crate) fn insert<T: Mapped>(
    conn: &Connection,
    new: &[Obj<T>],
    check: impl Fn(&Obj<T>, &T::Key) -> Result<()>,
) -> Result<()> {
    let table = T::TABLE;
    let generated = table.generated_key();
    // Each object is locked once for the whole INSERT: its key checked, its row bound from
    // its fields and its generated key stored through this lock.
    let (mut needs_key, mut has_key) = match generated {
        Some(_) => (Vec::with_capacity(new.len()), Vec::new()),
        None => (Vec::new(), Vec::with_capacity(new.len())),
    };
    for obj in new {
        let d = obj.lock_data();
        match d.value.key() {
            None if generated.is_some() => needs_key.push(d),
            key => {
                if let Some(key) = key {
                    check(obj, &key)?;
                }
                has_key.push(d);
            }
        }
    }
    let all: Vec<usize> = (0..table.columns.len()).collect();
    insert_group(conn, &mut has_key, all.clone(), None)?;
    if let Some(g) = generated {
        let columns = all.into_iter().filter(|&c| c != g).collect();
        insert_group(conn, &mut needs_key, columns, Some(g))?;
    }
    Ok(())
}

/// Most rows one multi-row INSERT statement holds on a dialect without `unnest` (SQLite).
/// Every full batch of a flush runs the same statement text, prepared once per connection;
/// only the last, shorter batch has a text of its own (itself cached, so a flush of the same
/// size finds it). Under callgrind, 10,000 rows of three columns with RETURNING cost the
/// fewest instructions at 64 to 128 rows per statement: larger batches cost more per row
/// (SQLite holds a statement's RETURNING rows in a temporary b-tree, which then splits
/// pages: 512 rows cost 11 % more, 1,024 rows 21 %), smaller ones pay the run of a
/// statement more often (16 rows: 22 % more).
const ROWS_PER_STATEMENT: usize = 64;

/// INSERTs the rows of the locked objects `locked` (`columns` of each), storing the keys of
/// `returning` (a generated key column) into them.
fn insert_group<T: Mapped>(
    conn: &Connection,
    locked: &mut [Locked<'_, T>],
    columns: Vec<usize>,
    returning: Option<usize>,
) -> Result<()> {
    if locked.is_empty() {
        return Ok(());
    }
    let dialect = conn.dialect();
    let insert = |rows| {
        Statement::Insert(Insert {
            table: T::TABLE,
            columns: columns.clone(),
            rows,
            returning: returning.into_iter().collect(),
        })
    };
    if dialect.supports_unnest() && !columns.is_empty() {
        // One statement, one array parameter per column, borrowed from the objects' fields.
        let sql = render(dialect, insert(InsertRows::UnboundUnnest)).sql;
        let mut keys = Vec::with_capacity(locked.len());
        {
            let arrays =
                unnest_arrays(locked, columns.len(), |d, i| d.value.column_ref(columns[i]));
            let params = array_params::<T>(columns.iter().copied(), &arrays);
            conn.prepared(&sql, |stmt| match returning {
                None => stmt.execute(&params).map(drop),
                Some(g) => stmt.query(&params, |row| read_key::<T>(row, g, &mut keys)),
            })?;
        }
        return match returning.is_none() || assign_keys(locked, &mut keys)? {
            true => Ok(()),
            false => Err(short_insert::<T>(locked.len(), keys.len())),
        };
    }
    // Batches of a fixed size, then the rest: each text prepared once per connection, and
    // parameters bound straight from the objects' fields.
    let rows = if columns.is_empty() {
        1 // DEFAULT VALUES: one row per statement
    } else {
        (dialect.max_params() / columns.len()).clamp(1, ROWS_PER_STATEMENT)
    };
    let at = locked.len() - locked.len() % rows;
    let rest_len = locked.len() - at;
    let (full, rest) = locked.split_at_mut(at);
    for (batches, size) in [(full, rows), (rest, rest_len)] {
        if batches.is_empty() {
            continue;
        }
        let sql = render(dialect, insert(InsertRows::Unbound(size))).sql;
        let mut keys = Vec::with_capacity(size);
        let mut short = false;
        conn.prepared(&sql, |stmt| {
            for batch in batches.chunks_mut(size) {
                {
                    let params: Vec<ValueRef<'_>> = batch
                        .iter()
                        .flat_map(|d| columns.iter().map(|&c| d.value.column_ref(c)))
                        .collect();
                    keys.clear();
                    match returning {
                        None => stmt.execute(&params).map(drop)?,
                        Some(g) => stmt.query(&params, |row| read_key::<T>(row, g, &mut keys))?,
                    }
                }
                if returning.is_some() && !assign_keys(batch, &mut keys)? {
                    short = true;
                    break;
                }
            }
            Ok(())
        })?;
        if short {
            return Err(short_insert::<T>(size, keys.len()));
        }
    }
    Ok(())
}

/// Reads the generated key of one row of an INSERT's RETURNING (column `g` of `T`, an integer
/// of the column's own width).
fn read_key<T: Mapped>(
    row: &orm_core::engine::row::Row<'_>,
    g: usize,
    keys: &mut Vec<i64>,
) -> orm_core::error::Result<()> {
    let key = match T::TABLE.columns[g].sql_type {
        SqlType::SmallInt => row.get::<i16>(0).map(|k| k.map(i64::from)),
        SqlType::Integer => row.get::<i32>(0).map(|k| k.map(i64::from)),
        _ => row.get::<i64>(0),
    };
    match key {
        Ok(Some(key)) => {
            keys.push(key);
            Ok(())
        }
        Ok(None) => Err(key_error::<T>(g, DecodeError::UnexpectedNull)),
        Err(source) => Err(key_error::<T>(g, source)),
    }
}

#[cold]
fn key_error<T: Mapped>(g: usize, source: DecodeError) -> orm_core::error::Error {
    orm_core::error::Error::Decode {
        table: T::TABLE.name.to_owned(),
        column: T::TABLE.columns[g].name.to_owned(),
        source,
    }
}

/// Stores the keys one INSERT returned into its objects (still locked from binding their
/// fields): ascending, which is the order the rows were inserted in (see the module). False,
/// storing nothing, when the count differs.
fn assign_keys<T: Mapped>(
    locked: &mut [Locked<'_, T>],
    keys: &mut [i64],
) -> orm_core::error::Result<bool> {
    if keys.len() != locked.len() {
        return Ok(false);
    }
    keys.sort_unstable();
    for (d, &key) in locked.iter_mut().zip(keys.iter()) {
        d.value.set_generated_key(Value::I64(key))?;
        d.set_key_generated(true);
    }
    Ok(true)
}

/// An INSERT that returned fewer keys than it had rows.
fn short_insert<T: Mapped>(expected: usize, returned: usize) -> Error {
    Error::StaleData {
        table: T::TABLE.name,
        statement: "INSERT",
        key: None,
        expected: expected as u64,
        matched: returned as u64,
    }
}

/// Whether [`update`] writes this object's row: persistent, with recorded changes, and not
/// expired as a whole (expiry discards unflushed changes, as `expire_all` does in O(1)).
#[inline]
pub(crate) fn is_updated<T>(d: &ObjData<T>) -> bool {
    d.status() == Status::Persistent && d.is_modified() && !d.is_wholly_expired()
}

/// The version an UPDATE writes: the held version + 1. It wraps at the type's maximum (the
/// wrapped value still differs from the version every other writer expects).
fn next_version(held: ValueRef<'_>) -> ValueRef<'_> {
    match held {
        ValueRef::I16(n) => ValueRef::I16(n.wrapping_add(1)),
        ValueRef::I32(n) => ValueRef::I32(n.wrapping_add(1)),
        ValueRef::I64(n) => ValueRef::I64(n.wrapping_add(1)),
        // The derive accepts only i16, i32 and i64 version columns.
        other => other,
    }
}

/// Parameter `i` of an UPDATE of the object's row that sets `set` and matches `matched`: the
/// values of `set` (for the version column, the next version), then of `matched`.
#[inline]
fn update_value<'d, T: Mapped>(
    d: &'d ObjData<T>,
    set: &[usize],
    matched: &[usize],
    i: usize,
) -> ValueRef<'d> {
    match set.get(i) {
        Some(&c) if Some(c) == T::TABLE.version => next_version(d.value.column_ref(c)),
        Some(&c) => d.value.column_ref(c),
        None => d.value.column_ref(matched[i - set.len()]),
    }
}

/// After the WHOLE flush succeeded: stores the version the object's UPDATE wrote (held + 1)
/// into its version field, so that the next flush, in this transaction or a later one,
/// matches the row. The store's `finish_flush` calls this for each object of its `dirty`
/// list, before clearing its change set. Nothing happens for a table without a version column.
#[inline]
pub(crate) fn after_update<T: Mapped>(d: &mut ObjData<T>) {
    let Some(v) = T::TABLE.version else {
        return;
    };
    if is_updated(d) {
        let next = Value::from(next_version(d.value.column_ref(v)));
        d.value
            .set_column(v, next)
            .expect("a version field accepts an integer of its own type");
    }
}

/// The columns an UPDATE of an object sets: the changed ones, and the version column.
fn set_columns<T: Mapped>(changed: &ColumnSet) -> ColumnSet {
    let mut set = changed.clone();
    if let Some(v) = T::TABLE.version {
        set.insert(v);
    }
    set
}

/// The columns an UPDATE or DELETE matches in its WHERE: the primary key, then (for a
/// versioned table) the version the object holds.
fn matched_columns<T: Mapped>() -> Vec<usize> {
    T::TABLE
        .primary_key
        .iter()
        .copied()
        .chain(T::TABLE.version)
        .collect()
}

/// The objects of `dirty` that [`update`] writes, grouped by the columns their UPDATE sets
/// (see [`set_columns`]); groups keep first-seen order.
fn update_groups<T: Mapped>(dirty: &[Obj<T>]) -> Vec<(ColumnSet, Vec<&Obj<T>>)> {
    let mut groups: Vec<(ColumnSet, Vec<&Obj<T>>)> = Vec::new();
    let mut index: HashMap<ColumnSet, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut last: Option<usize> = None;
    for obj in dirty {
        let set = {
            let d = obj.lock_data();
            if !is_updated(&d) {
                continue;
            }
            set_columns::<T>(&d.changed())
        };
        // Consecutive objects usually changed the same columns: no hashing then.
        let g = match last {
            Some(g) if groups[g].0 == set => g,
            _ => *index.entry(set).or_insert_with_key(|set| {
                groups.push((set.clone(), Vec::new()));
                groups.len() - 1
            }),
        };
        groups[g].1.push(obj);
        last = Some(g);
    }
    groups
}

pub(crate) fn update<T: Mapped>(conn: &Connection, dirty: &[Obj<T>]) -> Result<()> {
    let table = T::TABLE;
    let matched = matched_columns::<T>();
    let dialect = conn.dialect();
    for (columns, objs) in update_groups(dirty) {
        let set: Vec<usize> = columns.iter().collect();
        let unnest = dialect.supports_unnest();
        let statement = Statement::Update(Update {
            table,
            set: set.clone(),
            matched: matched.clone(),
            rows: match unnest {
                true => UpdateRows::UnboundUnnest,
                false => UpdateRows::Unbound,
            },
        });
        let sql = render(dialect, statement).sql;
        let locked = lock_all(&objs);
        let n = set.len() + matched.len();
        let value = |d, i| update_value(d, &set, &matched, i);
        if unnest {
            // One statement for the group, one array parameter per column.
            let arrays = unnest_arrays(&locked, n, value);
            let params = array_params::<T>(set.iter().chain(&matched).copied(), &arrays);
            let count = conn.prepared(&sql, |stmt| stmt.execute(&params))?;
            drop(locked);
            if count != objs.len() as u64 {
                return Err(stale(conn, Verb::Update, &objs, count));
            }
        } else {
            // One prepared statement for the group, a row per execution (SQLite is
            // in-process: no round trip to save).
            let stale_row = conn.prepared(&sql, |stmt| {
                let mut params = Vec::with_capacity(n);
                for (at, d) in locked.iter().enumerate() {
                    params.clear();
                    params.extend((0..n).map(|i| value(d, i)));
                    let count = stmt.execute(&params)?;
                    if count != 1 {
                        return Ok(Some((at, count)));
                    }
                }
                Ok(None)
            })?;
            drop(locked);
            if let Some((at, count)) = stale_row {
                // One row per statement: the stale row is this one.
                return Err(Error::StaleData {
                    table: table.name,
                    statement: Verb::Update.sql(),
                    key: key_of(objs[at]),
                    expected: 1,
                    matched: count,
                });
            }
        }
    }
    Ok(())
}

pub(crate) fn delete<T: Mapped>(conn: &Connection, deleted: &[Obj<T>]) -> Result<()> {
    if deleted.is_empty() {
        return Ok(());
    }
    let table = T::TABLE;
    let matched = matched_columns::<T>();
    let rows: Vec<Vec<Value>> = deleted
        .iter()
        .filter_map(|o| {
            let d = o.lock_data();
            let mut row = d.value.key()?.values();
            if let Some(v) = table.version {
                row.push(d.value.column_value(v));
            }
            Some(row)
        })
        .collect();
    // The objects of `rows`, in order (error path only).
    let batch = || -> Vec<&Obj<T>> {
        deleted
            .iter()
            .filter(|o| o.lock_data().value.key().is_some())
            .collect()
    };
    let dialect = conn.dialect();
    if dialect.supports_unnest() {
        let n = rows.len();
        let statement = Statement::Delete(Delete {
            table,
            matched: matched.clone(),
            rows: DeleteRows::Unnest(arrays(&sql_types(T::TABLE, &matched), rows)),
        });
        let count = conn.execute_statement(statement)?;
        if count != n as u64 && !deleted_elsewhere::<T>(n, count) {
            return Err(stale(conn, Verb::Delete, &batch(), count));
        }
        return Ok(());
    }
    let per_statement = (dialect.max_params() / matched.len().max(1)).max(1);
    for (ci, chunk) in rows.chunks(per_statement).enumerate() {
        let n = chunk.len();
        let statement = Statement::Delete(Delete {
            table,
            matched: matched.clone(),
            rows: DeleteRows::Values(chunk.to_vec()),
        });
        let count = conn.execute_statement(statement)?;
        if count != n as u64 && !deleted_elsewhere::<T>(n, count) {
            let all = batch();
            let start = ci * per_statement;
            return Err(stale(conn, Verb::Delete, &all[start..start + n], count));
        }
    }
    Ok(())
}

/// Whether a DELETE that matched fewer rows than expected is acceptable: without a version
/// column, rows already deleted by someone else are what the caller wanted (SQLAlchemy warns
/// and goes on); with one, it is a stale write.
fn deleted_elsewhere<T: Mapped>(expected: usize, matched: u64) -> bool {
    if T::TABLE.version.is_some() {
        return false;
    }
    tracing::warn!(
        target: "orm::session",
        table = T::TABLE.name,
        expected,
        matched,
        "DELETE matched fewer rows than expected: rows were already deleted"
    );
    true
}

/// The statement whose row count fell short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Update,
    Delete,
}

impl Verb {
    fn sql(self) -> &'static str {
        match self {
            Verb::Update => "UPDATE",
            Verb::Delete => "DELETE",
        }
    }
}

fn key_of<T: Mapped>(obj: &Obj<T>) -> Option<String> {
    obj.lock_data().value.key().map(|k| format!("{k:?}"))
}

/// The `StaleData` error of a batch statement that matched `count` of `batch.len()` rows.
fn stale<T: Mapped>(conn: &Connection, verb: Verb, batch: &[&Obj<T>], count: u64) -> Error {
    Error::StaleData {
        table: T::TABLE.name,
        statement: verb.sql(),
        key: find_stale(conn, verb, batch, count),
        expected: batch.len() as u64,
        matched: count,
    }
}

/// What the extra SELECT says of one object of a batch that fell short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The statement cannot have touched this row: it is stale.
    Stale,
    /// This row may have been written by the statement or by another transaction.
    Unsure,
    /// The statement wrote this row.
    Written,
}

/// Most keys one diagnostic SELECT lists (an `OR` of key comparisons).
const KEYS_PER_SELECT: usize = 1000;

/// Which row of a batch that matched `count` of its `batch.len()` rows is stale: the Debug
/// form of its key, or `None` when it cannot be told.
///
/// Error path only. When the batch matched nothing, every row is stale and the first is
/// named. Otherwise ONE extra SELECT (of up to [`KEYS_PER_SELECT`] keys; more only for larger
/// batches) reads the batch's rows as the transaction now sees them, the statement's own
/// writes included:
/// - UPDATE: a row gone was deleted by someone else; a versioned row whose version is not the
///   one the statement writes (held + 1) was not written by it. Both are stale. A versioned
///   row holding held + 1 is ambiguous: the statement wrote it, or another transaction
///   committed exactly one update of it first (the usual race). An unversioned row still
///   present was written.
/// - DELETE: a row still present was not deleted by the statement: stale. A row gone is
///   ambiguous (deleted by the statement, or by someone else first).
///
/// When the ambiguous rows are exactly the missing stale ones, they are stale too. The first
/// row known to be stale is named: the first stale row of the batch when the rows can be told
/// apart, else a stale row. `None` when no row is known stale (e.g. two transactions each
/// committed one update of different rows of a PostgreSQL batch, and the batch also wrote
/// others: inside the transaction those rows look the same).
fn find_stale<T: Mapped>(
    conn: &Connection,
    verb: Verb,
    batch: &[&Obj<T>],
    count: u64,
) -> Option<String> {
    let table = T::TABLE;
    let stale = (batch.len() as u64).checked_sub(count).filter(|&s| s > 0)?;
    if count == 0 {
        return batch.first().and_then(|o| key_of(o));
    }
    // Each object's key and the version an UPDATE of it writes.
    let wanted: Vec<(T::Key, Option<i64>)> = batch
        .iter()
        .filter_map(|o| {
            let d = o.lock_data();
            let written = table
                .version
                .and_then(|v| next_version(d.value.column_ref(v)).as_i64());
            Some((d.value.key()?, written))
        })
        .collect();
    let found = select_versions::<T>(conn, &wanted).ok()?;
    let verdicts: Vec<Verdict> = wanted
        .iter()
        .map(|(key, written)| match (verb, found.get(key)) {
            (Verb::Update, None) => Verdict::Stale,
            (Verb::Update, Some(_)) if table.version.is_none() => Verdict::Written,
            (Verb::Update, Some(now)) if now == written => Verdict::Unsure,
            (Verb::Update, Some(_)) => Verdict::Stale,
            (Verb::Delete, Some(_)) => Verdict::Stale,
            (Verb::Delete, None) => Verdict::Unsure,
        })
        .collect();
    let known = verdicts.iter().filter(|v| **v == Verdict::Stale).count() as u64;
    let unsure = verdicts.iter().filter(|v| **v == Verdict::Unsure).count() as u64;
    let unsure_are_stale = known + unsure == stale;
    wanted
        .iter()
        .zip(&verdicts)
        .find(|(_, v)| **v == Verdict::Stale || (unsure_are_stale && **v == Verdict::Unsure))
        .map(|((key, _), _)| format!("{key:?}"))
}

/// The rows of `wanted`'s keys as this transaction sees them: key → version (`None` for a
/// table without a version column).
fn select_versions<T: Mapped>(
    conn: &Connection,
    wanted: &[(T::Key, Option<i64>)],
) -> Result<HashMap<T::Key, Option<i64>>> {
    let table = T::TABLE;
    let mut found = HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(KEYS_PER_SELECT) {
        let keys: Vec<T::Key> = chunk.iter().map(|(key, _)| key.clone()).collect();
        let filter = crate::core::keys_filter::<T>(&keys);
        let mut select = Select::of(table);
        select.filter = Some(filter);
        conn.query_statement(Statement::Select(select), |row| {
            let key = T::key_from_row(row, 0)?;
            let version = table
                .version
                .and_then(|v| row.value(v).ok())
                .and_then(|v| v.as_i64());
            found.insert(key, version);
            Ok(())
        })?;
    }
    Ok(found)
}
