//! Values that travel between Rust fields and database columns.
//!
//! [`Value`] is the owned, dialect-neutral form of one bound parameter. [`ColumnType`] is
//! implemented by every Rust type a mapped field may have; it names the SQL type, says whether
//! NULL is allowed, and converts to and from [`Value`] and driver rows.

use crate::engine::row::Row;
use crate::error::DecodeError;

/// The SQL type of a column, rendered per dialect by [`crate::dialect::Dialect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlType {
    /// 16-bit integer (`SMALLINT`).
    SmallInt,
    /// 32-bit integer (`INTEGER`).
    Integer,
    /// 64-bit integer (`BIGINT`).
    BigInt,
    /// 32-bit float (`REAL`).
    Real,
    /// 64-bit float (`DOUBLE PRECISION`).
    Double,
    /// Boolean.
    Boolean,
    /// Unbounded text.
    Text,
    /// Binary data (`BYTEA` / `BLOB`).
    Blob,
}

impl SqlType {
    /// A short lowercase name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            SqlType::SmallInt => "smallint",
            SqlType::Integer => "integer",
            SqlType::BigInt => "bigint",
            SqlType::Real => "real",
            SqlType::Double => "double",
            SqlType::Boolean => "boolean",
            SqlType::Text => "text",
            SqlType::Blob => "blob",
        }
    }
}

/// One value bound as a parameter.
///
/// Every value the ORM sends to a database travels as a `Value` in a bound parameter, never
/// spliced into SQL text.
///
/// # Examples
///
/// ```
/// use orm_core::value::{ColumnType, Value};
/// assert_eq!(42i32.to_value(), Value::I32(42));
/// assert_eq!(None::<String>.to_value(), Value::Null);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 16-bit integer.
    I16(i16),
    /// A 32-bit integer.
    I32(i32),
    /// A 64-bit integer.
    I64(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// An array of values of one SQL type (PostgreSQL only): a whole column of a batch
    /// passed as one parameter.
    Array(SqlType, Vec<Value>),
}

/// A [`Value`] borrowed from where it lives (a field of a mapped struct), so that binding it
/// as a parameter copies nothing first.
///
/// # Examples
///
/// ```
/// use orm_core::value::{ColumnType, Value, ValueRef};
/// let name = String::from("ed");
/// assert_eq!(name.value_ref(), ValueRef::Text("ed"));
/// assert_eq!(Value::from(name.value_ref()), Value::Text("ed".into()));
/// assert_eq!(Value::I32(5).as_ref(), ValueRef::I32(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 16-bit integer.
    I16(i16),
    /// A 32-bit integer.
    I32(i32),
    /// A 64-bit integer.
    I64(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
    /// An array of values of one SQL type (PostgreSQL only).
    Array(SqlType, ArrayItems<'a>),
}

/// The elements of a [`ValueRef::Array`]: owned values (those of a [`Value::Array`]), or values
/// themselves borrowed, so that a column of a batch is bound without copying its text.
///
/// Two arrays with equal elements are equal (and print alike) whichever form they take.
///
/// # Examples
///
/// ```
/// use orm_core::value::{ArrayItems, SqlType, Value, ValueRef};
/// let names = [ValueRef::Text("ed"), ValueRef::Null];
/// let borrowed = ValueRef::Array(SqlType::Text, ArrayItems::Refs(&names));
/// let owned = Value::Array(SqlType::Text, vec![Value::Text("ed".into()), Value::Null]);
/// assert_eq!(borrowed, owned.as_ref());
/// assert_eq!(Value::from(borrowed), owned);
/// assert_eq!(format!("{borrowed:?}"), format!("{owned:?}"));
/// ```
#[derive(Clone, Copy)]
pub enum ArrayItems<'a> {
    /// Owned values.
    Values(&'a [Value]),
    /// Borrowed values.
    Refs(&'a [ValueRef<'a>]),
}

impl<'a> ArrayItems<'a> {
    /// The number of elements.
    #[inline]
    pub fn len(self) -> usize {
        match self {
            ArrayItems::Values(v) => v.len(),
            ArrayItems::Refs(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The elements, borrowed.
    pub fn iter(self) -> impl Iterator<Item = ValueRef<'a>> {
        let (values, refs): (&[Value], &[ValueRef<'a>]) = match self {
            ArrayItems::Values(v) => (v, &[]),
            ArrayItems::Refs(v) => (&[], v),
        };
        values.iter().map(Value::as_ref).chain(refs.iter().copied())
    }
}

impl PartialEq for ArrayItems<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl std::fmt::Debug for ArrayItems<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<ValueRef<'_>> for Value {
    #[inline]
    fn from(v: ValueRef<'_>) -> Value {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::I16(n) => Value::I16(n),
            ValueRef::I32(n) => Value::I32(n),
            ValueRef::I64(n) => Value::I64(n),
            ValueRef::F32(f) => Value::F32(f),
            ValueRef::F64(f) => Value::F64(f),
            ValueRef::Text(s) => Value::Text(s.to_owned()),
            ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
            ValueRef::Array(t, items) => Value::Array(t, items.iter().map(Value::from).collect()),
        }
    }
}

impl Value {
    /// The value, borrowed.
    #[inline]
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::I16(n) => ValueRef::I16(*n),
            Value::I32(n) => ValueRef::I32(*n),
            Value::I64(n) => ValueRef::I64(*n),
            Value::F32(f) => ValueRef::F32(*f),
            Value::F64(f) => ValueRef::F64(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Bytes(b) => ValueRef::Bytes(b),
            Value::Array(t, items) => ValueRef::Array(*t, ArrayItems::Values(items)),
        }
    }

    /// The value as an `i64` when it is an integer of any width.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_ref().as_i64()
    }
}

impl ValueRef<'_> {
    /// The value as an `i64` when it is an integer of any width.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            ValueRef::I16(v) => Some(v.into()),
            ValueRef::I32(v) => Some(v.into()),
            ValueRef::I64(v) => Some(v),
            _ => None,
        }
    }
}

/// A Rust type that a mapped field can have.
///
/// Implemented for `i16`, `i32`, `i64`, `f32`, `f64`, `bool`, `String`, `Vec<u8>` and
/// `Option` of each (which makes the column nullable).
///
/// # Examples
///
/// ```
/// use orm_core::value::{ColumnType, SqlType};
/// assert_eq!(<Option<String> as ColumnType>::SQL_TYPE, SqlType::Text);
/// assert!(<Option<String> as ColumnType>::NULLABLE);
/// assert!(!<i64 as ColumnType>::NULLABLE);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a mapped column",
    label = "unsupported field type",
    note = "mapped fields may be i16, i32, i64, f32, f64, bool, String, Vec<u8>, or Option of one of these"
)]
pub trait ColumnType: Clone + PartialEq + Send + Sync + 'static {
    /// The column's SQL type.
    const SQL_TYPE: SqlType;
    /// Whether the column accepts NULL (true for `Option<_>`).
    const NULLABLE: bool = false;
    /// The type without `Option`: `i64` for both `i64` and `Option<i64>`.
    type Inner: ColumnType + NotNull;
    /// The value as a bound parameter, borrowed.
    fn value_ref(&self) -> ValueRef<'_>;
    /// Converts to a bound parameter.
    #[inline]
    fn to_value(&self) -> Value {
        self.value_ref().into()
    }
    /// Reads column `idx` of a driver row.
    fn decode(row: &Row<'_>, idx: usize) -> Result<Self, DecodeError>;
    /// Converts from a parameter value (used for generated keys read back at flush).
    fn from_value(value: Value) -> Result<Self, DecodeError>;
}

macro_rules! column_type {
    ($t:ty, $sql:ident, $variant:ident, |$v:ident| $borrow:expr) => {
        impl ColumnType for $t {
            const SQL_TYPE: SqlType = SqlType::$sql;
            type Inner = $t;
            #[inline]
            fn value_ref(&self) -> ValueRef<'_> {
                let $v = self;
                ValueRef::$variant($borrow)
            }
            #[inline(always)]
            fn decode(row: &Row<'_>, idx: usize) -> Result<Self, DecodeError> {
                row.get::<$t>(idx)
                    .map_err(|e| e.expecting(SqlType::$sql.name()))?
                    .ok_or(DecodeError::UnexpectedNull)
            }
            #[inline]
            fn from_value(value: Value) -> Result<Self, DecodeError> {
                match value {
                    Value::$variant(v) => Ok(v),
                    Value::Null => Err(DecodeError::UnexpectedNull),
                    other => from_other(other),
                }
            }
        }
    };
}

fn from_other<T: TryFrom<i64> + ColumnType>(value: Value) -> Result<T, DecodeError> {
    value
        .as_i64()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| DecodeError::WrongType {
            expected: T::SQL_TYPE.name(),
            found: format!("{value:?}"),
        })
}

column_type!(i16, SmallInt, I16, |v| *v);
column_type!(i32, Integer, I32, |v| *v);
column_type!(i64, BigInt, I64, |v| *v);

macro_rules! column_type_no_int {
    ($t:ty, $sql:ident, $variant:ident, |$v:ident| $borrow:expr) => {
        column_type_no_int!($t, $sql, $variant, |$v| $borrow, get::<$t>);
    };
    ($t:ty, $sql:ident, $variant:ident, |$v:ident| $borrow:expr, $($get:tt)+) => {
        impl ColumnType for $t {
            const SQL_TYPE: SqlType = SqlType::$sql;
            type Inner = $t;
            #[inline]
            fn value_ref(&self) -> ValueRef<'_> {
                let $v = self;
                ValueRef::$variant($borrow)
            }
            #[inline(always)]
            fn decode(row: &Row<'_>, idx: usize) -> Result<Self, DecodeError> {
                row.$($get)+(idx)
                    .map_err(|e| e.expecting(SqlType::$sql.name()))?
                    .ok_or(DecodeError::UnexpectedNull)
            }
            fn from_value(value: Value) -> Result<Self, DecodeError> {
                match value {
                    Value::$variant(v) => Ok(v),
                    Value::Null => Err(DecodeError::UnexpectedNull),
                    other => Err(DecodeError::WrongType {
                        expected: SqlType::$sql.name(),
                        found: format!("{other:?}"),
                    }),
                }
            }
        }
    };
}

column_type_no_int!(f32, Real, F32, |v| *v);
column_type_no_int!(f64, Double, F64, |v| *v);
column_type_no_int!(bool, Boolean, Bool, |v| *v);
column_type_no_int!(String, Text, Text, |v| v, get_text);
column_type_no_int!(Vec<u8>, Blob, Bytes, |v| v);

impl<T: ColumnType + NotNull> ColumnType for Option<T> {
    const SQL_TYPE: SqlType = T::SQL_TYPE;
    const NULLABLE: bool = true;
    type Inner = T;
    #[inline]
    fn value_ref(&self) -> ValueRef<'_> {
        match self {
            Some(v) => v.value_ref(),
            None => ValueRef::Null,
        }
    }
    #[inline(always)]
    fn decode(row: &Row<'_>, idx: usize) -> Result<Self, DecodeError> {
        match T::decode(row, idx) {
            Ok(v) => Ok(Some(v)),
            Err(DecodeError::UnexpectedNull) => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// Marks the non-`Option` column types, so that `Option<Option<T>>` is rejected.
#[diagnostic::on_unimplemented(
    message = "`Option<{Self}>` cannot be stored in a mapped column",
    label = "nested `Option`",
    note = "a nullable column is `Option<T>` where `T` is i16, i32, i64, f32, f64, bool, String or Vec<u8>"
)]
pub trait NotNull: ColumnType {}
impl NotNull for i16 {}
impl NotNull for i32 {}
impl NotNull for i64 {}
impl NotNull for f32 {}
impl NotNull for f64 {}
impl NotNull for bool {}
impl NotNull for String {}
impl NotNull for Vec<u8> {}

/// A Rust value that may be compared with (or assigned to) a column holding `V`.
///
/// This is what makes `User::age.eq("x")` fail to compile: `&str` is a value for `String`
/// columns only.
///
/// # Examples
///
/// ```
/// use orm_core::value::{IntoValue, Value};
/// fn bind<V, A: IntoValue<V>>(a: A) -> Value { a.into_value() }
/// assert_eq!(bind::<String, _>("ed"), Value::Text("ed".into()));
/// assert_eq!(bind::<Option<i32>, _>(5), Value::I32(5));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be compared with a column holding `{V}`",
    label = "expected a value of type `{V}`"
)]
pub trait IntoValue<V> {
    /// Converts into a bound parameter.
    fn into_value(self) -> Value;
}

impl<V: ColumnType> IntoValue<V> for V {
    fn into_value(self) -> Value {
        self.to_value()
    }
}
impl IntoValue<String> for &str {
    fn into_value(self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl IntoValue<Option<String>> for &str {
    fn into_value(self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl IntoValue<Vec<u8>> for &[u8] {
    fn into_value(self) -> Value {
        Value::Bytes(self.to_vec())
    }
}
macro_rules! option_into_value {
    ($($t:ty),*) => {$(
        impl IntoValue<Option<$t>> for $t {
            fn into_value(self) -> Value {
                self.to_value()
            }
        }
    )*};
}
option_into_value!(i16, i32, i64, f32, f64, bool, String, Vec<u8>);
