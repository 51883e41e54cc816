//! A statement prepared once and run many times with borrowed parameters:
//! [`Connection::prepared`].

use super::{log, Connection, Inner};
use crate::engine::pg_client::PgClient;
use crate::engine::pool::DriverConn;
use crate::engine::row::Row;
use crate::error::{Error, Result};
use crate::value::ValueRef;

/// A statement prepared on a connection (through its statement cache), given by
/// [`Connection::prepared`]. Each [`execute`](Self::execute) or [`query`](Self::query) runs it
/// with parameters borrowed from where they live ([`ValueRef`]s), so that a batch of rows, or
/// a whole column of one as an array ([`ArrayItems::Refs`](crate::value::ArrayItems::Refs)),
/// reaches the driver without first being copied into [`Value`](crate::value::Value)s.
pub struct Prepared<'c> {
    sql: &'c str,
    echo: bool,
    stmt: Stmt<'c>,
    /// A run failed in the database.
    failed: bool,
}

enum Stmt<'c> {
    /// The statement and its number of placeholders.
    Sqlite(rusqlite::CachedStatement<'c>, usize),
    Postgres {
        client: &'c mut PgClient,
        statement: tokio_postgres::Statement,
    },
}

impl Prepared<'_> {
    /// Binds `params` (the placeholders `?1..` / `$1..` in order) on SQLite.
    fn bind_sqlite(
        stmt: &mut rusqlite::CachedStatement<'_>,
        expected: usize,
        params: &[ValueRef<'_>],
    ) -> Result<()> {
        // A placeholder left unbound would keep the value of the previous run.
        if params.len() != expected {
            let e = rusqlite::Error::InvalidParameterCount(params.len(), expected);
            return Err(Error::from_sqlite(e));
        }
        for (i, &p) in params.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, p)
                .map_err(Error::from_sqlite)?;
        }
        Ok(())
    }

    /// Runs the statement with `params` (one per placeholder, in order); returns the number
    /// of rows it affected.
    pub fn execute(&mut self, params: &[ValueRef<'_>]) -> Result<u64> {
        log(self.echo, self.sql, params);
        let result = match &mut self.stmt {
            Stmt::Sqlite(stmt, expected) => {
                Self::bind_sqlite(stmt, *expected, params).and_then(|()| {
                    stmt.raw_execute()
                        .map(|n| n as u64)
                        .map_err(Error::from_sqlite)
                })
            }
            Stmt::Postgres { client, statement } => client
                .execute(statement, params.iter())
                .map_err(Error::from_postgres),
        };
        self.failed |= result.is_err();
        result
    }

    /// Runs the statement as a query with `params` (one per placeholder, in order), calling
    /// `f` for each row.
    pub fn query(
        &mut self,
        params: &[ValueRef<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        log(self.echo, self.sql, params);
        let mut failed = false;
        let result = match &mut self.stmt {
            Stmt::Sqlite(stmt, expected) => match Self::bind_sqlite(stmt, *expected, params) {
                Err(e) => {
                    failed = true;
                    Err(e)
                }
                Ok(()) => {
                    let mut rows = stmt.raw_query();
                    loop {
                        match rows.next() {
                            Ok(Some(row)) => f(&Row::Sqlite(row))?,
                            Ok(None) => break Ok(()),
                            Err(e) => {
                                failed = true;
                                break Err(Error::from_sqlite(e));
                            }
                        }
                    }
                }
            },
            Stmt::Postgres { client, statement } => {
                let mut refused = false; // by `f`, not by the database
                let result = client.query_each(false, statement, params.iter(), |row| {
                    f(&Row::Postgres(&row)).inspect_err(|_| refused = true)
                });
                failed = result.is_err() && !refused;
                result.map(drop)
            }
        };
        self.failed |= failed;
        result
    }
}

impl Inner {
    fn prepared<R>(
        &mut self,
        sql: &str,
        f: impl FnOnce(&mut Prepared<'_>) -> Result<R>,
    ) -> (Result<R>, bool) {
        if let Err(e) = self.send_begin() {
            return (Err(e), true);
        }
        let echo = self.echo;
        let stmt = match &mut *self.conn {
            DriverConn::Sqlite(c) => match c.prepare_cached(sql) {
                Ok(stmt) => {
                    let expected = stmt.parameter_count();
                    Stmt::Sqlite(stmt, expected)
                }
                Err(e) => return (Err(Error::from_sqlite(e)), true),
            },
            DriverConn::Postgres { client, statements } => {
                match DriverConn::pg_statement(client, statements, sql) {
                    Ok(statement) => Stmt::Postgres { client, statement },
                    Err(e) => return (Err(e), true),
                }
            }
        };
        let mut prepared = Prepared {
            sql,
            echo,
            stmt,
            failed: false,
        };
        let result = f(&mut prepared);
        (result, prepared.failed)
    }
}

impl Connection {
    /// Prepares `sql` (once per connection: statements are cached by their text) and hands
    /// `f` the [`Prepared`] statement, to bind and run as many times as it likes.
    ///
    /// `f` must not use this connection otherwise: it is locked meanwhile.
    ///
    /// # Examples
    ///
    /// ```
    /// use orm_core::engine::Engine;
    /// use orm_core::value::ValueRef;
    /// let conn = Engine::connect("sqlite::memory:")?.connection()?;
    /// conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)", &[])?;
    /// let names = ["ed", "wendy"];
    /// let ids = conn.prepared("INSERT INTO t (name) VALUES (?1) RETURNING id", |stmt| {
    ///     let mut ids = Vec::new();
    ///     for name in names {
    ///         stmt.query(&[ValueRef::Text(name)], |row| {
    ///             ids.push(row.get::<i64>(0).unwrap().unwrap());
    ///             Ok(())
    ///         })?;
    ///     }
    ///     Ok(ids)
    /// })?;
    /// assert_eq!(ids, [1, 2]);
    /// # Ok::<(), orm_core::error::Error>(())
    /// ```
    pub fn prepared<R>(
        &self,
        sql: &str,
        f: impl FnOnce(&mut Prepared<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut inner = self.inner.lock();
        let (result, failed) = inner.prepared(sql, f);
        inner.note_failure(failed);
        result
    }
}
