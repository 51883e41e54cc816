//! How a [`Value`] is bound as a parameter by each driver.

use bytes::BytesMut;
use postgres::types::{IsNull, Kind, ToSql, Type};
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::value::Value;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn mismatch(v: &Value, ty: &Type) -> BoxError {
    format!("cannot bind {v:?} to a parameter of type {}", ty.name()).into()
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        // The server infers each parameter's type from the statement; integers and floats are
        // converted to that width (with a range check) so one Value fits any integer column.
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Value::I16(_) | Value::I32(_) | Value::I64(_) => {
                let v = self.as_i64().expect("integer");
                match *ty {
                    Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                    Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                    Type::INT8 => v.to_sql(ty, out),
                    _ => Err(mismatch(self, ty)),
                }
            }
            Value::F32(f) if *ty == Type::FLOAT4 => f.to_sql(ty, out),
            Value::F32(f) if *ty == Type::FLOAT8 => f64::from(*f).to_sql(ty, out),
            Value::F64(f) if *ty == Type::FLOAT8 => f.to_sql(ty, out),
            Value::F64(f) if *ty == Type::FLOAT4 => (*f as f32).to_sql(ty, out),
            Value::Text(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            Value::Bytes(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            Value::Array(_, items) => {
                let Kind::Array(member) = ty.kind() else {
                    return Err(mismatch(self, ty));
                };
                let dim = postgres_protocol::types::ArrayDimension {
                    len: i32::try_from(items.len())?,
                    lower_bound: 1,
                };
                postgres_protocol::types::array_to_sql(
                    Some(dim),
                    member.oid(),
                    items.iter(),
                    |item, buf| match item.to_sql(member, buf)? {
                        IsNull::No => Ok(postgres_protocol::IsNull::No),
                        IsNull::Yes => Ok(postgres_protocol::IsNull::Yes),
                    },
                    out,
                )?;
                Ok(IsNull::No)
            }
            _ => Err(mismatch(self, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::I16(v) => ValueRef::Integer(i64::from(*v)),
            Value::I32(v) => ValueRef::Integer(i64::from(*v)),
            Value::I64(v) => ValueRef::Integer(*v),
            Value::F32(v) => ValueRef::Real(f64::from(*v)),
            Value::F64(v) => ValueRef::Real(*v),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Bytes(b) => ValueRef::Blob(b),
            Value::Array(..) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite has no array parameters".into(),
                ))
            }
        }))
    }
}
