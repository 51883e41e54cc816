//! One result row, read without copying from the driver's own row type.

use crate::error::DecodeError;

/// A row of a result set, as returned by either driver.
///
/// Generated `from_row` code reads fields from it by position through
/// [`ColumnType::decode`](crate::value::ColumnType::decode).
pub enum Row<'a> {
    /// A PostgreSQL row.
    Postgres(&'a postgres::Row),
    /// A SQLite row.
    Sqlite(&'a rusqlite::Row<'a>),
}

/// A base type both drivers can decode.
pub trait DriverValue:
    Sized + for<'a> postgres::types::FromSql<'a> + rusqlite::types::FromSql
{
}
impl<T> DriverValue for T where T: for<'a> postgres::types::FromSql<'a> + rusqlite::types::FromSql {}

impl Row<'_> {
    /// Reads column `idx`; `Ok(None)` for NULL.
    #[inline]
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
            Row::Sqlite(row) => row.get::<_, Option<T>>(idx).map_err(|e| {
                let found = match e {
                    rusqlite::Error::InvalidColumnType(_, _, ty) => ty.to_string(),
                    other => other.to_string(),
                };
                DecodeError::WrongType {
                    expected: std::any::type_name::<T>(),
                    found,
                }
            }),
        }
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
                use postgres::types::Type;
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
                        self.get::<String>(idx)?.map(Value::Text)
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
