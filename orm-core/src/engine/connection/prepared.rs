//! A statement prepared once and run many times with its parameters bound one by one:
//! [`Connection::prepared`].

use super::{log, Connection, Inner};
use crate::engine::pool::DriverConn;
use crate::engine::row::Row;
use crate::error::{Error, Result};
use crate::value::{Value, ValueRef};

/// A statement prepared on a connection (through its statement cache), given by
/// [`Connection::prepared`]. Parameters are bound by position from borrowed values, so that a
/// batch of rows reaches the driver without first being copied into rows of [`Value`]s; each
/// [`execute`](Self::execute) or [`query`](Self::query) runs the statement with the
/// parameters bound since the previous run.
///
/// Every parameter must be bound before each run: on SQLite a parameter left unbound keeps
/// the value of the previous run (or NULL).
pub struct Prepared<'c> {
    sql: &'c str,
    echo: bool,
    /// The parameters bound for the next run, kept only when statements are logged (always
    /// on PostgreSQL, whose driver takes them all at once).
    params: Option<Vec<Value>>,
    stmt: Stmt<'c>,
    /// A run or a bind failed in the database.
    failed: bool,
}

enum Stmt<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres {
        client: &'c mut postgres::Client,
        statement: postgres::Statement,
    },
}

/// Whether statements logged at the connection's level reach a subscriber.
fn logged(echo: bool) -> bool {
    if echo {
        tracing::enabled!(target: "orm::sql", tracing::Level::INFO)
    } else {
        tracing::enabled!(target: "orm::sql", tracing::Level::DEBUG)
    }
}

impl Prepared<'_> {
    /// Binds parameter `index` (counted from 0: the placeholder `?{index + 1}` / `${index + 1}`).
    #[inline]
    pub fn bind(&mut self, index: usize, value: ValueRef<'_>) -> Result<()> {
        if let Some(params) = &mut self.params {
            if params.len() <= index {
                params.resize(index + 1, Value::Null);
            }
            params[index] = value.into();
        }
        if let Stmt::Sqlite(stmt) = &mut self.stmt {
            let bound = stmt.raw_bind_parameter(index + 1, value);
            self.failed |= bound.is_err();
            bound.map_err(Error::from_sqlite)?;
        }
        Ok(())
    }

    /// Runs the statement; returns the number of rows it affected.
    pub fn execute(&mut self) -> Result<u64> {
        self.log();
        let result = match &mut self.stmt {
            Stmt::Sqlite(stmt) => stmt
                .raw_execute()
                .map(|n| n as u64)
                .map_err(Error::from_sqlite),
            Stmt::Postgres { client, statement } => {
                let params = self.params.as_deref().unwrap_or_default();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as _).collect();
                client
                    .execute(&*statement, &refs)
                    .map_err(Error::from_postgres)
            }
        };
        self.failed |= result.is_err();
        result
    }

    /// Runs the statement as a query, calling `f` for each row.
    pub fn query(&mut self, mut f: impl FnMut(&Row<'_>) -> Result<()>) -> Result<()> {
        self.log();
        let mut failed = false;
        let result = match &mut self.stmt {
            Stmt::Sqlite(stmt) => {
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
            Stmt::Postgres { client, statement } => {
                let params = self.params.as_deref().unwrap_or_default();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(|p| p as _).collect();
                match client.query(&*statement, &refs) {
                    Ok(rows) => rows.iter().try_for_each(|row| f(&Row::Postgres(row))),
                    Err(e) => {
                        failed = true;
                        Err(Error::from_postgres(e))
                    }
                }
            }
        };
        self.failed |= failed;
        result
    }

    fn log(&self) {
        if let Some(params) = &self.params {
            log(self.echo, self.sql, params);
        }
    }
}

impl Inner {
    fn prepared<R>(
        &mut self,
        sql: &str,
        f: impl FnOnce(&mut Prepared<'_>) -> Result<R>,
    ) -> (Result<R>, bool) {
        let echo = self.echo;
        let (stmt, params) = match &mut *self.conn {
            DriverConn::Sqlite(c) => match c.prepare_cached(sql) {
                Ok(stmt) => (Stmt::Sqlite(stmt), logged(echo).then(Vec::new)),
                Err(e) => return (Err(Error::from_sqlite(e)), true),
            },
            DriverConn::Postgres { client, statements } => {
                match DriverConn::pg_statement(client, statements, sql) {
                    Ok(statement) => (Stmt::Postgres { client, statement }, Some(Vec::new())),
                    Err(e) => return (Err(e), true),
                }
            }
        };
        let mut prepared = Prepared {
            sql,
            echo,
            params,
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
    ///         stmt.bind(0, ValueRef::Text(name))?;
    ///         stmt.query(|row| {
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
