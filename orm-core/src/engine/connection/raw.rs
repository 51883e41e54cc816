//! Raw SQL statements that hand back everything they produce: [`Connection::execute_raw`].

use super::{log, Connection, Inner};
use crate::engine::pool::DriverConn;
use crate::engine::row::{RawRows, Row};
use crate::error::{Error, Result};
use crate::value::Value;

/// The table named in a decode error of a raw statement's value.
const RAW: &str = "<raw sql>";

impl Connection {
    /// Executes one SQL statement with bound parameters and returns its column names, its
    /// rows (each column read as a [`Value`]) and the number of rows it affected (see
    /// [`RawRows`] for what each dialect reports).
    ///
    /// `params` are bound to the placeholders (`$1`, `$2`, ... on PostgreSQL; `?1`, `?2`, ...
    /// or `?` on SQLite): they never become SQL text. The SQL text itself is sent as given, so
    /// it must never be built from user input. It must hold exactly one statement: more than
    /// one is an error on both databases. Statements are prepared once per connection and
    /// cached (on SQLite, text holding a `;` is first checked for a second statement).
    ///
    /// # Examples
    ///
    /// ```
    /// use orm_core::engine::Engine;
    /// use orm_core::value::Value;
    /// let conn = Engine::connect("sqlite::memory:")?.connection()?;
    /// conn.execute_raw("CREATE TABLE t (name TEXT)", &[])?;
    /// let hostile = "x'); DROP TABLE t; --";
    /// conn.execute_raw("INSERT INTO t (name) VALUES (?1)", &[hostile.into()])?;
    /// let rows = conn.execute_raw("SELECT name FROM t", &[])?;
    /// assert_eq!(rows.rows, [[Value::Text(hostile.into())]]);
    /// assert!(conn.execute_raw("SELECT 1; SELECT 2", &[]).is_err()); // one statement only
    /// # Ok::<(), orm_core::error::Error>(())
    /// ```
    pub fn execute_raw(&self, sql: &str, params: &[Value]) -> Result<RawRows> {
        let mut inner = self.inner.lock();
        let result = inner.execute_raw(sql, params);
        inner.note_failure(result.is_err());
        result
    }
}

/// One row as values; a value the dialect cannot read names its column.
fn values(row: &Row<'_>, columns: &[String]) -> Result<Vec<Value>> {
    (0..row.len())
        .map(|i| {
            row.value(i).map_err(|source| Error::Decode {
                table: RAW.to_owned(),
                column: columns.get(i).cloned().unwrap_or_else(|| i.to_string()),
                source,
            })
        })
        .collect()
}

impl Inner {
    fn execute_raw(&mut self, sql: &str, params: &[Value]) -> Result<RawRows> {
        self.send_begin()?;
        log(self.echo, sql, params);
        match &mut *self.conn {
            DriverConn::Postgres { client, statements } => {
                // The extended protocol itself refuses several statements in one text.
                let stmt = DriverConn::pg_statement(client, statements, sql)?;
                let columns: Vec<String> =
                    stmt.columns().iter().map(|c| c.name().to_owned()).collect();
                let mut rows = Vec::new();
                let tag = client.query_each(false, &stmt, params.iter(), |row| {
                    rows.push(values(&Row::Postgres(&row), &columns)?);
                    Ok(())
                })?;
                // From the command tag (`SELECT 3`, `UPDATE 2`, `INSERT 0 1`; 0 for commands
                // without a count), known once every row was read.
                let rows_affected = tag.unwrap_or(rows.len() as u64);
                Ok(RawRows {
                    columns,
                    rows,
                    rows_affected,
                })
            }
            DriverConn::Sqlite(c) => {
                // SQLite compiles the first statement and would silently ignore the rest.
                // Without a `;` there can be no second statement.
                if sql.contains(';') {
                    let mut batch = rusqlite::Batch::new(c, sql);
                    batch.next().map_err(Error::from_sqlite)?;
                    if !matches!(batch.next(), Ok(None)) {
                        return Err(Error::Database {
                            code: None,
                            message: "the SQL text holds more than one statement; execute one \
                                      statement at a time"
                                .to_owned(),
                        });
                    }
                }
                let mut stmt = c.prepare_cached(sql).map_err(Error::from_sqlite)?;
                let columns: Vec<String> =
                    stmt.column_names().into_iter().map(str::to_owned).collect();
                let before = c.total_changes();
                let mut rows = Vec::new();
                let mut it = stmt
                    .query(rusqlite::params_from_iter(params.iter()))
                    .map_err(Error::from_sqlite)?;
                while let Some(row) = it.next().map_err(Error::from_sqlite)? {
                    rows.push(values(&Row::Sqlite(row), &columns)?);
                }
                drop(it);
                let rows_affected = if !columns.is_empty() {
                    rows.len() as u64
                } else if c.total_changes() != before {
                    // `changes()` is only updated by INSERT, UPDATE and DELETE: after any
                    // other statement it still holds the previous one's count.
                    c.changes()
                } else {
                    0
                };
                Ok(RawRows {
                    columns,
                    rows,
                    rows_affected,
                })
            }
        }
    }
}
