//! The r2d2 connection manager: opens driver connections and tells the pool which are broken.

use std::collections::HashMap;

use crate::engine::pg_client::PgClient;
use crate::engine::url::Target;
use crate::error::{Error, Result};

/// An open driver connection, with PostgreSQL's prepared-statement cache.
pub(crate) enum DriverConn {
    Postgres {
        /// Boxed: a client is far larger than a SQLite handle.
        client: Box<PgClient>,
        /// Statements prepared on this connection, by SQL text: preparing costs a round trip.
        statements: HashMap<String, tokio_postgres::Statement>,
    },
    Sqlite(rusqlite::Connection),
}

/// Most prepared statements kept per PostgreSQL connection before the cache is cleared.
const STATEMENT_CACHE: usize = 256;

impl DriverConn {
    pub(crate) fn open(target: &Target) -> Result<DriverConn> {
        let connect_err = |source: crate::error::BoxError| Error::Connect {
            target: target.describe(),
            source,
        };
        match target {
            Target::Postgres(config) => {
                let client = PgClient::connect(config).map_err(connect_err)?;
                Ok(DriverConn::Postgres {
                    client: Box::new(client),
                    statements: HashMap::new(),
                })
            }
            Target::SqliteFile(path) | Target::SqliteMemory(path) => {
                use rusqlite::OpenFlags;
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = rusqlite::Connection::open_with_flags(path, flags)
                    .map_err(|e| connect_err(Box::new(e)))?;
                conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = ON")
                    .map_err(|e| connect_err(Box::new(e)))?;
                conn.busy_timeout(std::time::Duration::from_secs(10))
                    .map_err(|e| connect_err(Box::new(e)))?;
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Ok(DriverConn::Sqlite(conn))
            }
        }
    }

    /// The prepared statement for `sql`, from the cache or prepared now.
    pub(crate) fn pg_statement(
        client: &mut PgClient,
        statements: &mut HashMap<String, tokio_postgres::Statement>,
        sql: &str,
    ) -> Result<tokio_postgres::Statement> {
        if let Some(s) = statements.get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql).map_err(Error::from_postgres)?;
        if statements.len() >= STATEMENT_CACHE {
            statements.clear();
        }
        statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

pub(crate) struct Manager {
    pub(crate) target: Target,
}

impl r2d2::ManageConnection for Manager {
    type Connection = DriverConn;
    type Error = Error;

    fn connect(&self) -> Result<DriverConn> {
        DriverConn::open(&self.target)
    }

    fn is_valid(&self, conn: &mut DriverConn) -> Result<()> {
        match conn {
            DriverConn::Postgres { client, .. } => {
                client.batch_execute("").map_err(Error::from_postgres)
            }
            DriverConn::Sqlite(c) => c.execute_batch("").map_err(Error::from_sqlite),
        }
    }

    fn has_broken(&self, conn: &mut DriverConn) -> bool {
        match conn {
            DriverConn::Postgres { client, .. } => client.is_closed(),
            // A connection still inside a transaction was not cleaned up: never reuse it.
            DriverConn::Sqlite(c) => !c.is_autocommit(),
        }
    }
}
