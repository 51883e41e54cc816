//! One result row, read without copying from the driver's own row type.

use crate::error::DecodeError;

/// A row of a result set, as returned by either driver.
///
/// Generated `from_row` code reads fields from it by position through
/// [`ColumnType::decode`](crate::value::ColumnType::decode).
pub enum Row<'a> {
    /// A PostgreSQL row.
    Postgres(&'a tokio_postgres::Row),
    /// A SQLite row.
    Sqlite(&'a rusqlite::Row<'a>),
}

/// A base type both drivers can decode.
pub trait DriverValue:
    Sized + for<'a> tokio_postgres::types::FromSql<'a> + rusqlite::types::FromSql
{
}
impl<T> DriverValue for T where
    T: for<'a> tokio_postgres::types::FromSql<'a> + rusqlite::types::FromSql
{
}

/// A SQLite value that `T` cannot hold.
#[cold]
fn sqlite_error<T>(
    v: rusqlite::types::ValueRef<'_>,
    e: rusqlite::types::FromSqlError,
) -> DecodeError {
    use rusqlite::types::FromSqlError;
    DecodeError::WrongType {
        expected: std::any::type_name::<T>(),
        found: match e {
            FromSqlError::InvalidType => v.data_type().to_string(),
            FromSqlError::OutOfRange(i) => format!("integer {i}, out of range"),
            other => other.to_string(),
        },
    }
}

/// A PostgreSQL value of a built-in text type (checked by the caller), as the UTF-8 it is.
struct Utf8<'a>(Option<&'a str>);

impl<'a> tokio_postgres::types::FromSql<'a> for Utf8<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Utf8(Some(std::str::from_utf8(raw)?)))
    }

    fn from_sql_null(
        _: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Utf8(None))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

impl Row<'_> {
    /// Reads column `idx`; `Ok(None)` for NULL.
    // Always inlined, as are the `ColumnType::decode` impls over it: a generated `from_row`
    // calls them once per field of every row, and out of line each call moved its `Result`
    // through a prologue and an epilogue (W2 under callgrind: 83 instructions per row less).
    #[inline(always)]
    pub fn get<T: DriverValue>(&self, idx: usize) -> Result<Option<T>, DecodeError> {
        match self {
            Row::Postgres(row) => row.try_get::<_, Option<T>>(idx).map_err(|e| {
                let found = row
                    .columns()
                    .get(idx)
                    .map(|c| c.type_().name().to_owned())
                    .unwrap_or_else(|| e.to_string());
                DecodeError::WrongType {
                    expected: std::any::type_name::<T>(),
                    found,
                }
            }),
            // `get_ref` and the conversion rather than `get::<Option<T>>`: the same work,
            // without building the driver's error (with the column name) on the way.
            Row::Sqlite(row) => match row.get_ref(idx) {
                Ok(rusqlite::types::ValueRef::Null) => Ok(None),
                Ok(v) => T::column_result(v)
                    .map(Some)
                    .map_err(|e| sqlite_error::<T>(v, e)),
                Err(e) => Err(DecodeError::WrongType {
                    expected: std::any::type_name::<T>(),
                    found: e.to_string(),
                }),
            },
        }
    }

    /// Reads a text column, as [`get`](Self::get)`::<String>` does. On PostgreSQL a column of
    /// a built-in text type is taken as the UTF-8 it is, without the driver's tests for the
    /// extension types whose binary form differs (`ltree`, ...), which cost a fifth of
    /// decoding the value.
    #[inline(always)]
    pub(crate) fn get_text(&self, idx: usize) -> Result<Option<String>, DecodeError> {
        use tokio_postgres::types::Type;
        if let Row::Postgres(row) = self {
            let builtin = row.columns().get(idx).is_some_and(|c| {
                matches!(
                    *c.type_(),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME
                )
            });
            if builtin {
                return match row.try_get::<_, Utf8<'_>>(idx) {
                    Ok(Utf8(text)) => Ok(text.map(str::to_owned)),
                    Err(e) => Err(DecodeError::WrongType {
                        expected: "text",
                        found: std::error::Error::source(&e)
                            .map_or_else(|| e.to_string(), ToString::to_string),
                    }),
                };
            }
        }
        self.get::<String>(idx)
    }

    /// The number of columns in the row.
    pub fn len(&self) -> usize {
        match self {
            Row::Postgres(row) => row.len(),
            Row::Sqlite(row) => row.as_ref().column_count(),
        }
    }

    /// True when the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads column `idx` as a dialect-neutral [`Value`](crate::value::Value).
    pub fn value(&self, idx: usize) -> Result<crate::value::Value, DecodeError> {
        use crate::value::Value;
        match self {
            Row::Sqlite(row) => {
                use rusqlite::types::ValueRef;
                let v = row.get_ref(idx).map_err(|e| DecodeError::WrongType {
                    expected: "a column",
                    found: e.to_string(),
                })?;
                Ok(match v {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::I64(i),
                    ValueRef::Real(f) => Value::F64(f),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                })
            }
            Row::Postgres(r) => {
                use tokio_postgres::types::Type;
                let ty = r.columns()[idx].type_().clone();
                let v = match ty {
                    Type::BOOL => self.get::<bool>(idx)?.map(Value::Bool),
                    Type::INT2 => self.get::<i16>(idx)?.map(Value::I16),
                    Type::INT4 => self.get::<i32>(idx)?.map(Value::I32),
                    Type::INT8 => self.get::<i64>(idx)?.map(Value::I64),
                    Type::FLOAT4 => self.get::<f32>(idx)?.map(Value::F32),
                    Type::FLOAT8 => self.get::<f64>(idx)?.map(Value::F64),
                    Type::BYTEA => self.get::<Vec<u8>>(idx)?.map(Value::Bytes),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                        self.get_text(idx)?.map(Value::Text)
                    }
                    other => {
                        return Err(DecodeError::WrongType {
                            expected: "a supported type",
                            found: other.name().to_owned(),
                        })
                    }
                };
                Ok(v.unwrap_or(Value::Null))
            }
        }
    }
}

/// What one raw SQL statement produced: its column names, every row read as
/// [`Value`](crate::value::Value)s, and the number of rows it affected.
///
/// Returned by [`Connection::execute_raw`](super::Connection::execute_raw) (and by the
/// session's `execute`). `rows_affected` means the same on both dialects:
///
/// | statement | PostgreSQL (the command tag) | SQLite |
/// | --- | --- | --- |
/// | `SELECT` (anything returning rows) | rows returned | rows returned |
/// | `INSERT`/`UPDATE`/`DELETE` | rows written | `changes()`: rows written, not counting triggers or foreign-key actions |
/// | the same with `RETURNING` | rows written (= rows returned) | rows returned (= rows written) |
/// | DDL and other commands (`CREATE`, `DROP`, `SET`, ...) | 0 | 0 |
///
/// Values come back as the database typed them: an integer column is `I16`, `I32` or `I64` on
/// PostgreSQL depending on its type, always `I64` on SQLite (compare with
/// [`as_i64`](crate::value::Value::as_i64)). On PostgreSQL only the types a mapped field can
/// have are read (integers, floats, booleans, text, bytea): any other type is a
/// [`Decode`](crate::error::Error::Decode) error naming the column, so cast it in the SQL
/// (`now()::text`).
///
/// # Examples
///
/// ```
/// use orm_core::engine::{Engine, RawRows};
/// use orm_core::value::Value;
/// let conn = Engine::connect("sqlite::memory:")?.connection()?;
/// conn.execute_raw("CREATE TABLE t (name TEXT, n INTEGER)", &[])?;
/// let inserted = conn.execute_raw("INSERT INTO t VALUES (?1, 1), (?2, 2)", &["a".into(), "b".into()])?;
/// assert_eq!(inserted.rows_affected, 2);
/// assert!(inserted.columns.is_empty());
///
/// let rows: RawRows = conn.execute_raw("SELECT name, n FROM t ORDER BY n", &[])?;
/// assert_eq!(rows.columns, ["name", "n"]);
/// assert_eq!(rows.rows[1], [Value::Text("b".into()), Value::I64(2)]);
/// assert_eq!(rows.rows_affected, 2);
/// assert_eq!(rows.column_index("n"), Some(1));
/// assert_eq!(conn.execute_raw("SELECT count(*) FROM t", &[])?.scalar(), Some(&Value::I64(2)));
/// # Ok::<(), orm_core::error::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RawRows {
    /// The names of the result columns, in order (empty for a statement returning no rows).
    pub columns: Vec<String>,
    /// Every row returned, each with one value per column.
    pub rows: Vec<Vec<crate::value::Value>>,
    /// The number of rows the statement affected (see the table above).
    pub rows_affected: u64,
}

impl RawRows {
    /// The number of rows returned.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row was returned.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The position of the first column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The first column of the first row (`SELECT count(*) ...`), if there is one.
    pub fn scalar(&self) -> Option<&crate::value::Value> {
        self.rows.first().and_then(|r| r.first())
    }
}
