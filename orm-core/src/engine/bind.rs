//! How a [`Value`] (through its borrowed form, [`ValueRef`]) is bound as a parameter by each
//! driver.

use bytes::{BufMut, BytesMut};
use rusqlite::types::{ToSqlOutput, ValueRef as SqliteRef};
use tokio_postgres::types::{IsNull, Kind, ToSql, Type};

use crate::value::{ArrayItems, Value, ValueRef};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn mismatch(v: &ValueRef<'_>, ty: &Type) -> BoxError {
    format!("cannot bind {v:?} to a parameter of type {}", ty.name()).into()
}

impl ToSql for ValueRef<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        // The server infers each parameter's type from the statement; integers and floats are
        // converted to that width (with a range check) so one Value fits any integer column.
        match self {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            ValueRef::I16(_) | ValueRef::I32(_) | ValueRef::I64(_) => {
                let v = self.as_i64().expect("an integer");
                match *ty {
                    Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                    Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                    Type::INT8 => v.to_sql(ty, out),
                    _ => Err(mismatch(self, ty)),
                }
            }
            ValueRef::F32(f) if *ty == Type::FLOAT4 => f.to_sql(ty, out),
            ValueRef::F32(f) if *ty == Type::FLOAT8 => f64::from(*f).to_sql(ty, out),
            ValueRef::F64(f) if *ty == Type::FLOAT8 => f.to_sql(ty, out),
            ValueRef::F64(f) if *ty == Type::FLOAT4 => (*f as f32).to_sql(ty, out),
            ValueRef::Text(s) if <&str as ToSql>::accepts(ty) => s.to_sql(ty, out),
            ValueRef::Bytes(b) if *ty == Type::BYTEA => b.to_sql(ty, out),
            ValueRef::Array(_, items) => {
                let Kind::Array(member) = ty.kind() else {
                    return Err(mismatch(self, ty));
                };
                match items {
                    ArrayItems::Values(v) => array_to_sql(member, v.iter().map(Value::as_ref), out),
                    ArrayItems::Refs(v) => array_to_sql(member, v.iter().copied(), out),
                }?;
                Ok(IsNull::No)
            }
            _ => Err(mismatch(self, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A one-dimensional array of `member`s, in PostgreSQL's binary array format: the number of
/// dimensions (1), whether an element is NULL, the element type, the dimension's length and
/// lower bound (1), then each element as its length (-1 for NULL) and bytes.
///
/// The usual elements of a batch's columns (text, int4, int8) are written here, as `to_sql`
/// writes them, without matching the member type again for every element (nor, for text,
/// comparing its name with those of extension types as the driver's `&str` does); the others
/// go through `to_sql`.
fn array_to_sql<'v>(
    member: &Type,
    items: impl ExactSizeIterator<Item = ValueRef<'v>>,
    out: &mut BytesMut,
) -> Result<(), BoxError> {
    out.reserve(20 + 8 * items.len());
    out.put_i32(1);
    let flags = out.len();
    out.put_i32(0);
    out.put_u32(member.oid());
    out.put_i32(i32::try_from(items.len())?);
    out.put_i32(1);
    let (text, int4, int8) = (
        *member == Type::TEXT,
        *member == Type::INT4,
        *member == Type::INT8,
    );
    let mut has_null = false;
    for item in items {
        match item {
            ValueRef::Null => {
                out.put_i32(-1);
                has_null = true;
            }
            ValueRef::Text(s) if text => {
                out.put_i32(i32::try_from(s.len())?);
                out.put_slice(s.as_bytes());
            }
            ValueRef::I32(v) if int4 => {
                out.put_i32(4);
                out.put_i32(v);
            }
            ValueRef::I64(v) if int8 => {
                out.put_i32(8);
                out.put_i64(v);
            }
            other => {
                let at = out.len();
                out.put_i32(0);
                let len = match other.to_sql(member, out)? {
                    IsNull::No => i32::try_from(out.len() - at - 4)?,
                    IsNull::Yes => {
                        has_null = true;
                        -1
                    }
                };
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
    }
    if has_null {
        out[flags..flags + 4].copy_from_slice(&1i32.to_be_bytes());
    }
    Ok(())
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.as_ref().to_sql(ty, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// SQLite's form of a parameter (SQLite has no booleans or narrow integers, and no arrays).
fn sqlite_ref(v: ValueRef<'_>) -> rusqlite::Result<ToSqlOutput<'_>> {
    Ok(ToSqlOutput::Borrowed(match v {
        ValueRef::Null => SqliteRef::Null,
        ValueRef::Bool(b) => SqliteRef::Integer(i64::from(b)),
        ValueRef::I16(v) => SqliteRef::Integer(i64::from(v)),
        ValueRef::I32(v) => SqliteRef::Integer(i64::from(v)),
        ValueRef::I64(v) => SqliteRef::Integer(v),
        ValueRef::F32(v) => SqliteRef::Real(f64::from(v)),
        ValueRef::F64(v) => SqliteRef::Real(v),
        ValueRef::Text(s) => SqliteRef::Text(s.as_bytes()),
        ValueRef::Bytes(b) => SqliteRef::Blob(b),
        ValueRef::Array(..) => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                "SQLite has no array parameters".into(),
            ))
        }
    }))
}

impl rusqlite::ToSql for ValueRef<'_> {
    #[inline]
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        sqlite_ref(*self)
    }
}

impl rusqlite::ToSql for Value {
    #[inline]
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        sqlite_ref(self.as_ref())
    }
}
