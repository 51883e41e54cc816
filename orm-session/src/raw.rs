//! Raw SQL in the session's transaction: [`Session::execute`].

use orm_core::engine::RawRows;
use orm_core::value::Value;

use crate::error::Result;
use crate::session::Session;

impl Session {
    /// Executes one SQL statement in the session's transaction and returns its columns, rows
    /// and the number of rows it affected (SQLAlchemy's `session.execute(text(..), params)`).
    ///
    /// Autoflush runs first (when enabled), so the statement sees the objects added and
    /// changed in this session; then the statement runs on the transaction's connection,
    /// beginning the transaction if needed (autobegin). What it writes is committed by
    /// [`commit`](Self::commit) and undone by [`rollback`](Self::rollback), like the
    /// session's own writes.
    ///
    /// `params` are bound to the placeholders (`$1`, `$2`, ... on PostgreSQL; `?1`, `?2`, ...
    /// on SQLite) and never become SQL text. **The SQL text is sent as given: never build it
    /// from user input**; pass every value as a parameter. One statement per call; don't
    /// issue `BEGIN`/`COMMIT`/`ROLLBACK` through it (use the session's methods).
    ///
    /// Objects the session holds are not refreshed from what the statement changes: call
    /// `expire_all()` (or commit, with `expire_on_commit`) to read the new values.
    ///
    /// # Errors
    ///
    /// A database error is typed: [`Error::Core`](crate::Error::Core) holding, for example,
    /// `UndefinedTable { table }` for a missing table or `Database { code, .. }` for a syntax
    /// error. On PostgreSQL a failed statement aborts the transaction: call `rollback()` before
    /// using the session again.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # use orm::Value;
    /// # fn main() -> Result<(), orm::Error> {
    /// # let (_engine, factory) = setup();
    /// let mut session = factory.session();
    /// session.add(User::new("ed", 30))?; // pending: flushed before the statement
    /// let rows = session.execute(
    ///     "SELECT name, age FROM users WHERE age >= ?1", // `$1` on PostgreSQL
    ///     &[Value::I64(18)],
    /// )?;
    /// assert_eq!(rows.columns, ["name", "age"]);
    /// assert_eq!(rows.rows, [[Value::Text("ed".into()), Value::I64(30)]]);
    ///
    /// let updated = session.execute("UPDATE users SET age = age + 1", &[])?;
    /// assert_eq!(updated.rows_affected, 1);
    /// session.rollback()?; // undoes the INSERT and the UPDATE
    /// assert_eq!(session.execute("SELECT count(*) FROM users", &[])?.scalar(), Some(&Value::I64(0)));
    /// # Ok(()) }
    /// ```
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<RawRows> {
        let conn = {
            let mut core = self.core();
            core.autoflush()?;
            core.connection()?
        };
        Ok(conn.execute_raw(sql, params)?)
    }
}
