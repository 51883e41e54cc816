//! A pooled connection with explicit transaction control and statement logging.

use std::sync::Arc;

use parking_lot::Mutex;

mod prepared;
mod raw;

pub use prepared::Prepared;

use super::pool::{DriverConn, Manager};
use super::row::Row;
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::sql::ast::Statement;
use crate::sql::render::{render, Rendered};
use crate::value::Value;

/// One database connection taken from an [`Engine`](super::Engine)'s pool.
///
/// Cloning gives another handle on the SAME connection (and its transaction), which is how a
/// session is bound to a connection whose transaction the caller controls. When the last
/// handle is dropped, an open transaction is rolled back and the connection returns to the
/// pool.
///
/// # Examples
///
/// ```
/// use orm_core::engine::Engine;
/// let conn = Engine::connect("sqlite::memory:")?.connection()?;
/// conn.execute("CREATE TABLE t (x INTEGER)", &[])?;
/// conn.begin()?;
/// conn.execute("INSERT INTO t VALUES (1)", &[])?;
/// conn.rollback()?;
/// let mut n = -1;
/// conn.query("SELECT count(*) FROM t", &[], |r| { n = r.get::<i64>(0).unwrap().unwrap(); Ok(()) })?;
/// assert_eq!(n, 0);
/// # Ok::<(), orm_core::error::Error>(())
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Mutex<Inner>>,
    dialect: Dialect,
}

struct Inner {
    conn: r2d2::PooledConnection<Manager>,
    in_transaction: bool,
    /// On PostgreSQL, `BEGIN` waits to go out with the transaction's first statement, in its
    /// round trip when that is a cached SELECT (see ARCHITECTURE.md, "Transactions on the
    /// wire"); a transaction that ends before any statement sends nothing.
    begin_pending: bool,
    /// Open savepoints, outermost first.
    savepoints: Vec<String>,
    /// A statement failed inside the transaction on PostgreSQL, which then refuses every
    /// statement until ROLLBACK (or ROLLBACK TO SAVEPOINT) and answers COMMIT by rolling back.
    aborted: bool,
    echo: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.in_transaction {
            self.rollback_nowait();
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

/// Logs a statement with its parameters (`Value`s or `ValueRef`s, which print alike), formatted
/// only when a subscriber records it.
fn log(echo: bool, sql: &str, params: &[impl std::fmt::Debug]) {
    if echo {
        tracing::info!(target: "orm::sql", params = ?params, "{sql}");
    } else {
        tracing::debug!(target: "orm::sql", params = ?params, "{sql}");
    }
}

impl Inner {
    /// Records that a statement failed inside a PostgreSQL transaction.
    pub(super) fn note_failure(&mut self, failed: bool) {
        if failed && self.in_transaction && matches!(&*self.conn, DriverConn::Postgres { .. }) {
            self.aborted = true;
        }
    }

    /// Ends the transaction with a ROLLBACK whose reply is not awaited (on PostgreSQL; SQLite
    /// has no round trip to save). An error in it means the connection is gone, which the
    /// pool or the next statement finds out.
    fn rollback_nowait(&mut self) {
        self.in_transaction = false;
        self.savepoints.clear();
        self.aborted = false;
        if std::mem::take(&mut self.begin_pending) {
            return; // nothing was sent
        }
        log(self.echo, "ROLLBACK", &[] as &[Value]);
        match &mut *self.conn {
            DriverConn::Postgres { client, .. } => client.send("ROLLBACK"),
            DriverConn::Sqlite(c) => {
                let _ = c.execute_batch("ROLLBACK");
            }
        }
    }

    /// Sends the `BEGIN` still pending, before a statement that cannot carry it.
    fn send_begin(&mut self) -> Result<()> {
        if std::mem::take(&mut self.begin_pending) {
            self.control("BEGIN")?;
        }
        Ok(())
    }

    fn control(&mut self, sql: &str) -> Result<()> {
        log(self.echo, sql, &[] as &[Value]);
        match &mut *self.conn {
            DriverConn::Postgres { client, .. } => {
                client.batch_execute(sql).map_err(Error::from_postgres)
            }
            DriverConn::Sqlite(c) => c.execute_batch(sql).map_err(Error::from_sqlite),
        }
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        self.send_begin()?;
        log(self.echo, sql, params);
        match &mut *self.conn {
            DriverConn::Postgres { client, statements } => {
                let stmt = DriverConn::pg_statement(client, statements, sql)?;
                client
                    .execute(&stmt, params.iter())
                    .map_err(Error::from_postgres)
            }
            DriverConn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).map_err(Error::from_sqlite)?;
                let n = stmt
                    .execute(rusqlite::params_from_iter(params.iter()))
                    .map_err(Error::from_sqlite)?;
                Ok(n as u64)
            }
        }
    }

    /// Runs a query. A `read_only` one (a SELECT) already prepared carries a pending `BEGIN`
    /// in its round trip: if that `BEGIN` failed, the SELECT ran outside a transaction, which
    /// only a statement that writes nothing may risk. Preparing (a round trip of its own) and
    /// running anything else send the `BEGIN` first.
    fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        read_only: bool,
        f: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let with_begin = self.begin_pending
            && read_only
            && matches!(&*self.conn, DriverConn::Postgres { statements, .. } if statements.contains_key(sql));
        if with_begin {
            self.begin_pending = false;
            log(self.echo, "BEGIN", &[] as &[Value]);
        } else {
            self.send_begin()?;
        }
        log(self.echo, sql, params);
        match &mut *self.conn {
            DriverConn::Postgres { client, statements } => {
                let stmt = DriverConn::pg_statement(client, statements, sql)?;
                client.query_each(with_begin, &stmt, params.iter(), |row| {
                    f(&Row::Postgres(&row))
                })?;
                Ok(())
            }
            DriverConn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).map_err(Error::from_sqlite)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(params.iter()))
                    .map_err(Error::from_sqlite)?;
                while let Some(row) = rows.next().map_err(Error::from_sqlite)? {
                    f(&Row::Sqlite(row))?;
                }
                Ok(())
            }
        }
    }
}

impl Connection {
    pub(crate) fn new(conn: r2d2::PooledConnection<Manager>, dialect: Dialect, echo: bool) -> Self {
        Connection {
            inner: Arc::new(Mutex::new(Inner {
                conn,
                in_transaction: false,
                begin_pending: false,
                savepoints: Vec::new(),
                aborted: false,
                echo,
            })),
            dialect,
        }
    }

    /// The connection's dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether two handles share one connection.
    pub fn same_as(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Executes one statement with bound parameters; returns the number of rows affected.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut inner = self.inner.lock();
        let result = inner.execute(sql, params);
        inner.note_failure(result.is_err());
        result
    }

    /// Runs a query, calling `f` for each row as it arrives.
    ///
    /// `f` must not use this connection: it is locked while rows are read.
    pub fn query(
        &self,
        sql: &str,
        params: &[Value],
        f: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        self.query_with(sql, params, false, f)
    }

    fn query_with(
        &self,
        sql: &str,
        params: &[Value],
        read_only: bool,
        mut f: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut inner = self.inner.lock();
        let result = inner.query(sql, params, read_only, &mut f);
        inner.note_failure(result.is_err());
        result
    }

    /// Renders `statement` for this connection's dialect and executes it.
    pub fn execute_statement(&self, statement: Statement) -> Result<u64> {
        let Rendered { sql, params } = render(self.dialect, statement);
        self.execute(&sql, &params)
    }

    /// Renders `statement` and runs it as a query.
    pub fn query_statement(
        &self,
        statement: Statement,
        f: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let read_only = matches!(statement, Statement::Select(_));
        let Rendered { sql, params } = render(self.dialect, statement);
        self.query_with(&sql, &params, read_only, f)
    }

    /// Whether a transaction begun with [`begin`](Self::begin) is open.
    pub fn in_transaction(&self) -> bool {
        self.inner.lock().in_transaction
    }

    /// Begins a transaction. On PostgreSQL, `BEGIN` goes out with the transaction's first
    /// statement (in the same round trip when that is a SELECT), so that every statement runs
    /// inside the transaction and a transaction without statements costs nothing.
    pub fn begin(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.in_transaction {
            return Err(Error::Transaction(
                "a transaction is already begun on this connection",
            ));
        }
        match &*inner.conn {
            DriverConn::Postgres { .. } => inner.begin_pending = true,
            DriverConn::Sqlite(_) => inner.control("BEGIN")?,
        }
        inner.in_transaction = true;
        inner.aborted = false;
        Ok(())
    }

    /// Commits the transaction.
    pub fn commit(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        if !inner.in_transaction {
            return Err(Error::Transaction(
                "no transaction is begun on this connection",
            ));
        }
        inner.savepoints.clear();
        if std::mem::take(&mut inner.begin_pending) {
            inner.in_transaction = false;
            return Ok(()); // nothing was sent
        }
        if std::mem::take(&mut inner.aborted) {
            // PostgreSQL would answer COMMIT with a silent ROLLBACK: say so instead.
            inner.in_transaction = false;
            inner.control("ROLLBACK")?;
            return Err(Error::Transaction(
                "a statement failed earlier in this transaction, so it was rolled back instead of committed",
            ));
        }
        let result = inner.control("COMMIT");
        // A failed COMMIT ends a PostgreSQL transaction, but SQLite keeps it open (deferred
        // foreign keys, a busy database): ask the driver.
        inner.in_transaction = match (&result, &*inner.conn) {
            (Err(_), DriverConn::Sqlite(c)) => !c.is_autocommit(),
            _ => false,
        };
        result
    }

    /// Rolls the transaction back; does nothing when none is open.
    pub fn rollback(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        if !inner.in_transaction {
            return Ok(());
        }
        inner.in_transaction = false;
        inner.savepoints.clear();
        inner.aborted = false;
        if std::mem::take(&mut inner.begin_pending) {
            return Ok(()); // nothing was sent
        }
        inner.control("ROLLBACK")
    }

    /// Rolls the transaction back (when one is open) without waiting for the server to
    /// confirm, as dropping the last handle does: the ROLLBACK is written to the connection
    /// before this returns, and its reply is read before the reply to the connection's next
    /// statement, saving a round trip. Errors are not reported: one means the connection is
    /// lost, which its next statement reports (or the pool finds and discards it). This is
    /// how a session's `close` ends its transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm_core::engine::Engine;
    /// let conn = Engine::connect("sqlite::memory:")?.connection()?;
    /// conn.execute("CREATE TABLE t (x INTEGER)", &[])?;
    /// conn.begin()?;
    /// conn.execute("INSERT INTO t VALUES (1)", &[])?;
    /// conn.rollback_nowait();
    /// assert!(!conn.in_transaction());
    /// let mut n = -1;
    /// conn.query("SELECT count(*) FROM t", &[], |r| { n = r.get::<i64>(0).unwrap().unwrap(); Ok(()) })?;
    /// assert_eq!(n, 0);
    /// # Ok::<(), orm_core::error::Error>(())
    /// ```
    pub fn rollback_nowait(&self) {
        let mut inner = self.inner.lock();
        if inner.in_transaction {
            inner.rollback_nowait();
        }
    }

    /// Opens a SAVEPOINT inside the current transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm_core::engine::Engine;
    /// let conn = Engine::connect("sqlite::memory:")?.connection()?;
    /// conn.execute("CREATE TABLE t (x INTEGER)", &[])?;
    /// conn.begin()?;
    /// conn.execute("INSERT INTO t VALUES (1)", &[])?;
    /// conn.savepoint("sp1")?;
    /// conn.execute("INSERT INTO t VALUES (2)", &[])?;
    /// assert!(conn.in_savepoint());
    /// conn.rollback_to_savepoint("sp1")?; // undoes only the second INSERT
    /// conn.commit()?;
    /// let mut n = 0;
    /// conn.query("SELECT count(*) FROM t", &[], |r| { n = r.get::<i64>(0).unwrap().unwrap(); Ok(()) })?;
    /// assert_eq!(n, 1);
    /// # Ok::<(), orm_core::error::Error>(())
    /// ```
    pub fn savepoint(&self, name: &str) -> Result<()> {
        let mut inner = self.inner.lock();
        if !inner.in_transaction {
            return Err(Error::Transaction("a savepoint needs a transaction"));
        }
        inner.send_begin()?;
        let mut sql = String::from("SAVEPOINT ");
        self.dialect.quote_into(&mut sql, name);
        inner.control(&sql)?;
        inner.savepoints.push(name.to_owned());
        Ok(())
    }

    /// Releases a savepoint (and every savepoint opened after it), keeping its work.
    pub fn release_savepoint(&self, name: &str) -> Result<()> {
        self.end_savepoint(name, "RELEASE SAVEPOINT ", false)
    }

    /// Rolls back to a savepoint and releases it (and every savepoint opened after it); the
    /// transaction goes on.
    pub fn rollback_to_savepoint(&self, name: &str) -> Result<()> {
        self.end_savepoint(name, "ROLLBACK TO SAVEPOINT ", true)
    }

    fn end_savepoint(&self, name: &str, verb: &str, then_release: bool) -> Result<()> {
        let mut inner = self.inner.lock();
        let Some(at) = inner.savepoints.iter().rposition(|s| s == name) else {
            return Err(Error::Transaction("no such savepoint on this connection"));
        };
        let mut sql = String::from(verb);
        self.dialect.quote_into(&mut sql, name);
        inner.control(&sql)?;
        if then_release {
            // Rolling back to a savepoint also recovers an aborted PostgreSQL transaction.
            inner.aborted = false;
            let mut sql = String::from("RELEASE SAVEPOINT ");
            self.dialect.quote_into(&mut sql, name);
            inner.control(&sql)?;
        }
        inner.savepoints.truncate(at);
        Ok(())
    }

    /// Whether a savepoint is open.
    pub fn in_savepoint(&self) -> bool {
        !self.inner.lock().savepoints.is_empty()
    }

    /// Runs statements in one transaction (used for DDL).
    pub(crate) fn run_in_transaction(&self, statements: &[Statement]) -> Result<()> {
        self.begin()?;
        for s in statements {
            if let Err(e) = self.execute_statement(s.clone()) {
                self.rollback()?;
                return Err(e);
            }
        }
        self.commit()
    }
}
