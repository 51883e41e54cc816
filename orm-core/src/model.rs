//! The `Mapped` contract between `#[derive(Mapped)]` and the rest of the ORM.

use std::fmt::Debug;
use std::hash::Hash;

use crate::engine::row::Row;
use crate::error::Result;
use crate::schema::Table;
use crate::value::{ColumnType, Value, ValueRef};

/// A struct mapped to a table. Implemented by `#[derive(Mapped)]`; not meant to be written
/// by hand.
///
/// Columns are numbered by field order; `from_row` reads them at `offset + position`.
pub trait Mapped: Sized + Send + Sync + 'static {
    /// The primary key: one column's type, or a tuple for a composite key.
    type Key: PrimaryKey;
    /// The table metadata.
    const TABLE: &'static Table;
    /// The primary key, or `None` while a database-generated key is not yet assigned.
    fn key(&self) -> Option<Self::Key>;
    /// Reads the struct from the columns of `row` starting at `offset`.
    fn from_row(row: &Row<'_>, offset: usize) -> Result<Self>;
    /// Reads only the primary key from a row laid out as for `from_row`.
    fn key_from_row(row: &Row<'_>, offset: usize) -> Result<Self::Key>;
    /// Reads the struct as `from_row` does, taking the primary key from `key` (read from the
    /// same row by `key_from_row`) rather than decoding it again.
    fn from_row_with_key(row: &Row<'_>, offset: usize, key: Self::Key) -> Result<Self> {
        let _ = key;
        Self::from_row(row, offset)
    }
    /// The value of column `column` as a bound parameter, borrowed from the field (`Null` for
    /// an out-of-range column).
    fn column_ref(&self, column: usize) -> ValueRef<'_>;
    /// The value of column `column` as a bound parameter.
    #[inline]
    fn column_value(&self, column: usize) -> Value {
        self.column_ref(column).into()
    }
    /// Stores `value` into the field of column `column` (out-of-range columns are ignored).
    fn set_column(&mut self, column: usize, value: Value) -> Result<()>;
    /// Stores a database-generated key into the key field.
    fn set_generated_key(&mut self, value: Value) -> Result<()>;
    /// Clears the database-generated key field (after a rolled-back INSERT).
    fn clear_generated_key(&mut self);
    /// The columns whose values differ between `self` and `before`.
    fn changed_columns(&self, before: &Self) -> ColumnSet;
    /// A copy of the row (the user's struct need not implement `Clone`).
    fn clone_row(&self) -> Self;
    /// The struct's relationship fields, as opaque entries the session interprets (one per
    /// `#[mapped(relationship(..))]` field, in field order).
    const RELATIONS: &'static [&'static (dyn std::any::Any + Send + Sync)] = &[];
}

/// A primary-key value: one column, or a tuple of columns.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a primary key",
    label = "not a primary-key type",
    note = "primary keys may be i16, i32, i64, bool, String, Vec<u8>, or a tuple of up to four of these"
)]
pub trait PrimaryKey: Clone + Eq + Hash + Debug + Send + Sync + 'static {
    /// The key's columns as bound parameters, in primary-key order.
    fn values(&self) -> Vec<Value>;
    /// The key whose columns hold `values` (in primary-key order), or `None` when one of them
    /// is NULL or of another type (a foreign key that references no row).
    fn from_values(values: &[Value]) -> Option<Self>;
}

macro_rules! scalar_key {
    ($($t:ty),*) => {$(
        impl PrimaryKey for $t {
            fn values(&self) -> Vec<Value> {
                vec![self.to_value()]
            }
            fn from_values(values: &[Value]) -> Option<Self> {
                match values {
                    [v] => <$t>::from_value(v.clone()).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
scalar_key!(i16, i32, i64, bool, String, Vec<u8>);

macro_rules! tuple_key {
    ($($t:ident $i:tt),+) => {
        impl<$($t: PrimaryKey + ColumnType),+> PrimaryKey for ($($t,)+) {
            fn values(&self) -> Vec<Value> {
                vec![$(self.$i.to_value()),+]
            }
            fn from_values(values: &[Value]) -> Option<Self> {
                Some(($($t::from_value(values.get($i)?.clone()).ok()?,)+))
            }
        }
    };
}
tuple_key!(A 0, B 1);
tuple_key!(A 0, B 1, C 2);
tuple_key!(A 0, B 1, C 2, D 3);

/// A set of column positions: which attributes of an object changed.
///
/// Tables of up to 64 columns use one inline word; wider tables spill to the heap.
///
/// # Examples
///
/// ```
/// use orm_core::model::ColumnSet;
/// let mut s = ColumnSet::default();
/// s.insert(3);
/// s.insert(70);
/// assert!(s.contains(3) && s.contains(70) && !s.contains(4));
/// assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 70]);
///
/// // Equality is by content, not by storage.
/// let mut wide = ColumnSet::default();
/// wide.insert(70);
/// let mut narrow = ColumnSet::default();
/// narrow.insert(5);
/// let mut a = wide.clone();
/// a.union(&narrow);
/// let mut b = narrow.clone();
/// b.union(&wide);
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone)]
pub enum ColumnSet {
    /// Up to 64 columns.
    Inline(u64),
    /// More than 64 columns.
    Heap(Box<[u64]>),
}

/// Sets are equal when they hold the same columns, however they are stored.
impl PartialEq for ColumnSet {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ColumnSet::Inline(a), ColumnSet::Inline(b)) => a == b,
            _ => self.significant() == other.significant(),
        }
    }
}
impl Eq for ColumnSet {}

impl std::hash::Hash for ColumnSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.significant().hash(state);
    }
}

impl Default for ColumnSet {
    fn default() -> Self {
        ColumnSet::Inline(0)
    }
}

impl ColumnSet {
    /// Adds column `i`.
    #[inline]
    pub fn insert(&mut self, i: usize) {
        match self {
            ColumnSet::Inline(w) if i < 64 => *w |= 1 << i,
            ColumnSet::Inline(w) => {
                let mut words = vec![0u64; i / 64 + 1];
                words[0] = *w;
                words[i / 64] |= 1 << (i % 64);
                *self = ColumnSet::Heap(words.into_boxed_slice());
            }
            ColumnSet::Heap(words) => {
                if i / 64 >= words.len() {
                    let mut grown = words.to_vec();
                    grown.resize(i / 64 + 1, 0);
                    *words = grown.into_boxed_slice();
                }
                words[i / 64] |= 1 << (i % 64);
            }
        }
    }

    /// Removes column `i`.
    #[inline]
    pub fn remove(&mut self, i: usize) {
        match self {
            ColumnSet::Inline(w) if i < 64 => *w &= !(1 << i),
            ColumnSet::Inline(_) => {}
            ColumnSet::Heap(words) => {
                if let Some(w) = words.get_mut(i / 64) {
                    *w &= !(1 << (i % 64));
                }
            }
        }
    }

    /// Whether column `i` is in the set.
    #[inline]
    pub fn contains(&self, i: usize) -> bool {
        self.words()
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Whether the set is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.words().iter().all(|w| *w == 0)
    }

    /// Adds every column of `other`.
    pub fn union(&mut self, other: &ColumnSet) {
        for i in other.iter() {
            self.insert(i);
        }
    }

    /// The column positions, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words().iter().enumerate().flat_map(|(wi, &w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| wi * 64 + b)
        })
    }

    /// The words without trailing empty ones.
    fn significant(&self) -> &[u64] {
        let w = self.words();
        let len = w.iter().rposition(|x| *x != 0).map_or(0, |i| i + 1);
        &w[..len]
    }

    fn words(&self) -> &[u64] {
        match self {
            ColumnSet::Inline(w) => std::slice::from_ref(w),
            ColumnSet::Heap(words) => words,
        }
    }
}
