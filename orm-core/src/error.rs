//! The error type of `orm-core`: every failure names what it is about.

use std::fmt;

/// A boxed driver error kept as the `source()` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The kind of integrity constraint a statement violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConstraintKind {
    /// A UNIQUE or PRIMARY KEY constraint.
    Unique,
    /// A FOREIGN KEY constraint.
    ForeignKey,
    /// A NOT NULL constraint.
    NotNull,
    /// A CHECK constraint.
    Check,
}

impl fmt::Display for ConstraintKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConstraintKind::Unique => "unique",
            ConstraintKind::ForeignKey => "foreign key",
            ConstraintKind::NotNull => "not null",
            ConstraintKind::Check => "check",
        })
    }
}

/// Why a column value could not be read into its Rust field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The database returned NULL for a field that is not an `Option`.
    #[error("NULL read into a non-Option field")]
    UnexpectedNull,
    /// The database column holds a type the field cannot hold.
    #[error("expected {expected}, the database returned {found}")]
    WrongType {
        /// The SQL type the model declares.
        expected: &'static str,
        /// What the database sent.
        found: String,
    },
}

impl DecodeError {
    /// The same error, naming `expected` as the type the model declares.
    pub fn expecting(self, expected: &'static str) -> Self {
        match self {
            DecodeError::WrongType { found, .. } => DecodeError::WrongType { expected, found },
            other => other,
        }
    }
}

/// Errors of the engine, the dialects and row decoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database URL could not be understood.
    #[error("invalid database url `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, with any password removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be opened.
    #[error("cannot connect to {target}")]
    Connect {
        /// Host and database (or file) the engine tried.
        target: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The pool gave no connection in time.
    #[error("no connection available from the pool of {target}: {reason}")]
    PoolTimeout {
        /// Host and database (or file) of the pool.
        target: String,
        /// The pool's explanation, which includes the last connection error.
        reason: String,
    },
    /// A statement violated an integrity constraint.
    #[error("{kind} constraint violated{}{}{}: {message}",
        table.as_deref().map(|t| format!(" on table `{t}`")).unwrap_or_default(),
        column.as_deref().map(|c| format!(", column `{c}`")).unwrap_or_default(),
        constraint.as_deref().map(|c| format!(" (constraint `{c}`)")).unwrap_or_default())]
    Constraint {
        /// Which kind of constraint.
        kind: ConstraintKind,
        /// The table, when the database names it.
        table: Option<String>,
        /// The column, when the database names it.
        column: Option<String>,
        /// The constraint, when the database names it.
        constraint: Option<String>,
        /// The database's own message.
        message: String,
    },
    /// A statement referred to a table that does not exist.
    #[error("table `{table}` does not exist")]
    UndefinedTable {
        /// The missing table.
        table: String,
    },
    /// Any other error reported by the database for a statement.
    #[error("database error{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Database {
        /// The SQLSTATE (PostgreSQL) or result code name (SQLite).
        code: Option<String>,
        /// The database's message.
        message: String,
    },
    /// The connection broke while a statement ran.
    #[error("connection to the database was lost")]
    ConnectionLost {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A value read from the database does not fit its field.
    #[error("cannot read column `{table}.{column}`: {source}")]
    Decode {
        /// The table of the column.
        table: String,
        /// The column.
        column: String,
        /// What went wrong.
        #[source]
        source: DecodeError,
    },
    /// A value cannot be bound for this database (e.g. an integer out of the column's range).
    #[error("cannot bind parameter ${index}: {reason}")]
    Bind {
        /// One-based parameter position.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A database-generated key was read back for a table that has none.
    #[error("table `{table}` has no database-generated key to store")]
    NoGeneratedKey {
        /// The table.
        table: String,
    },
    /// The operation needs a transaction and none is in progress, or one is already begun.
    #[error("{0}")]
    Transaction(&'static str),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The constraint kind, when this error is a constraint violation.
    ///
    /// # Examples
    ///
    /// ```
    /// use orm_core::error::{ConstraintKind, Error};
    /// let e = Error::Constraint { kind: ConstraintKind::Unique, table: Some("users".into()),
    ///     column: None, constraint: Some("users_name_key".into()), message: "dup".into() };
    /// assert_eq!(e.constraint_kind(), Some(ConstraintKind::Unique));
    /// ```
    pub fn constraint_kind(&self) -> Option<ConstraintKind> {
        match self {
            Error::Constraint { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn from_postgres(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            if e.is_closed()
                || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
            {
                return Error::ConnectionLost {
                    source: Box::new(e),
                };
            }
            return Error::Database {
                code: None,
                message: e.to_string(),
            };
        };
        use tokio_postgres::error::SqlState;
        let kind = match *db.code() {
            SqlState::UNIQUE_VIOLATION => Some(ConstraintKind::Unique),
            SqlState::FOREIGN_KEY_VIOLATION => Some(ConstraintKind::ForeignKey),
            SqlState::NOT_NULL_VIOLATION => Some(ConstraintKind::NotNull),
            SqlState::CHECK_VIOLATION => Some(ConstraintKind::Check),
            SqlState::UNDEFINED_TABLE => {
                let table =
                    undefined_relation(db.message()).unwrap_or_else(|| db.message().to_owned());
                return Error::UndefinedTable { table };
            }
            _ => None,
        };
        match kind {
            Some(kind) => {
                let column = db
                    .column()
                    .map(str::to_owned)
                    .or_else(|| detail_column(db.detail()));
                Error::Constraint {
                    kind,
                    table: db.table().map(str::to_owned),
                    column,
                    constraint: db.constraint().map(str::to_owned),
                    message: db.message().to_owned(),
                }
            }
            None => Error::Database {
                code: Some(db.code().code().to_owned()),
                message: db.message().to_owned(),
            },
        }
    }

    pub(crate) fn from_sqlite(e: rusqlite::Error) -> Self {
        use rusqlite::ffi;
        let rusqlite::Error::SqliteFailure(code, msg) = &e else {
            return Error::Database {
                code: None,
                message: e.to_string(),
            };
        };
        let message = msg.clone().unwrap_or_else(|| code.to_string());
        let kind = match code.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                Some(ConstraintKind::Unique)
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(ConstraintKind::ForeignKey),
            ffi::SQLITE_CONSTRAINT_NOTNULL => Some(ConstraintKind::NotNull),
            ffi::SQLITE_CONSTRAINT_CHECK => Some(ConstraintKind::Check),
            _ => None,
        };
        if let Some(kind) = kind {
            // SQLite names the columns as "table.column[, table.column]" after the colon,
            // or the constraint name for CHECK constraints.
            let named = message.split_once(": ").map(|(_, rest)| rest.trim());
            let first = named.and_then(|n| n.split(", ").next());
            let (table, column, constraint) = match (kind, first) {
                (ConstraintKind::Check, Some(name)) => (None, None, Some(name.to_owned())),
                (_, Some(tc)) => match tc.split_once('.') {
                    Some((t, c)) => (Some(t.to_owned()), Some(c.to_owned()), None),
                    None => (None, None, None),
                },
                _ => (None, None, None),
            };
            return Error::Constraint {
                kind,
                table,
                column,
                constraint,
                message,
            };
        }
        if let Some(table) = message.strip_prefix("no such table: ") {
            return Error::UndefinedTable {
                table: table.to_owned(),
            };
        }
        Error::Database {
            code: Some(format!("{:?}", code.code)),
            message,
        }
    }
}

/// The table in PostgreSQL's `relation "name" does not exist` (the name may itself hold
/// quotes, so it is what lies between the fixed prefix and suffix).
fn undefined_relation(message: &str) -> Option<String> {
    let start = message.find("relation \"")? + "relation \"".len();
    let end = message.rfind("\" does not exist")?;
    (end >= start).then(|| message[start..end].to_owned())
}

/// The column named in a PostgreSQL detail such as `Key (name)=(ed) already exists.`
fn detail_column(detail: Option<&str>) -> Option<String> {
    let detail = detail?;
    let start = detail.find("Key (")? + 5;
    let len = detail[start..].find(')')?;
    Some(detail[start..start + len].to_owned())
}
