//! What differs between PostgreSQL and SQLite: quoting, placeholders, types, and which
//! batching forms a flush may use.

use crate::value::SqlType;

/// A SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// Appends `name` as a quoted identifier: `"name"`, with embedded quotes doubled.
    ///
    /// # Examples
    ///
    /// ```
    /// use orm_core::dialect::Dialect;
    /// let mut s = String::new();
    /// Dialect::Postgres.quote_into(&mut s, "we\"ird");
    /// assert_eq!(s, "\"we\"\"ird\"");
    /// ```
    pub fn quote_into(self, out: &mut String, name: &str) {
        out.push('"');
        for c in name.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    }

    /// Appends the placeholder of the `n`th (one-based) parameter.
    pub fn placeholder_into(self, out: &mut String, n: usize) {
        use std::fmt::Write;
        let _ = match self {
            Dialect::Postgres => write!(out, "${n}"),
            Dialect::Sqlite => write!(out, "?{n}"),
        };
    }

    /// The column type in DDL. `generated` marks an auto-incrementing primary key.
    pub fn type_name(self, ty: SqlType, generated: bool) -> &'static str {
        match (self, ty, generated) {
            (Dialect::Postgres, SqlType::SmallInt, true) => "SMALLSERIAL",
            (Dialect::Postgres, SqlType::Integer, true) => "SERIAL",
            (Dialect::Postgres, SqlType::BigInt, true) => "BIGSERIAL",
            // Only a column declared exactly `INTEGER PRIMARY KEY` aliases SQLite's rowid.
            (Dialect::Sqlite, SqlType::SmallInt | SqlType::Integer | SqlType::BigInt, true) => {
                "INTEGER"
            }
            (_, SqlType::SmallInt, _) => "SMALLINT",
            (_, SqlType::Integer, _) => "INTEGER",
            (_, SqlType::BigInt, _) => "BIGINT",
            (_, SqlType::Real, _) => "REAL",
            (Dialect::Postgres, SqlType::Double, _) => "DOUBLE PRECISION",
            (Dialect::Sqlite, SqlType::Double, _) => "DOUBLE",
            (_, SqlType::Boolean, _) => "BOOLEAN",
            (_, SqlType::Text, _) => "TEXT",
            (Dialect::Postgres, SqlType::Blob, _) => "BYTEA",
            (Dialect::Sqlite, SqlType::Blob, _) => "BLOB",
        }
    }

    /// The PostgreSQL array type used to pass a column of values as one parameter.
    pub(crate) fn array_type(ty: SqlType) -> &'static str {
        match ty {
            SqlType::SmallInt => "int2[]",
            SqlType::Integer => "int4[]",
            SqlType::BigInt => "int8[]",
            SqlType::Real => "float4[]",
            SqlType::Double => "float8[]",
            SqlType::Boolean => "bool[]",
            SqlType::Text => "text[]",
            SqlType::Blob => "bytea[]",
        }
    }

    /// Whether a batch may be passed as arrays expanded by `unnest`: one statement and one
    /// parameter per column, whatever the number of rows.
    pub fn supports_unnest(self) -> bool {
        self == Dialect::Postgres
    }

    /// The most parameters one statement may bind.
    pub fn max_params(self) -> usize {
        match self {
            Dialect::Postgres => 65_535,
            // SQLITE_MAX_VARIABLE_NUMBER of the bundled SQLite.
            Dialect::Sqlite => 32_766,
        }
    }
}
