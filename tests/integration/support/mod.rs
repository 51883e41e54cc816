//! The integration-test harness: every behaviour runs on both PostgreSQL and SQLite.
//!
//! # Databases
//!
//! [`for_each_db`] runs a test body once per database, each time on a fresh, isolated
//! [`TestDb`]; a failure names the database. [`databases`] gives the same [`TestDb`]s for
//! tests that need to drive them by hand.
//!
//! - SQLite: a new file in the temporary directory per [`TestDb`], deleted (with its
//!   `-wal`, `-shm` and `-journal` files) on drop.
//! - PostgreSQL: a new schema `orm_test_<pid>_<counter>_<nanos>` per [`TestDb`]; the engine's
//!   URL carries `options=-csearch_path%3D<schema>`, so unqualified names land in it. The
//!   schema is dropped (`CASCADE`) on drop.
//!
//! Tests may run in parallel: no two [`TestDb`]s share tables.
//!
//! # Environment
//!
//! - `DATABASE_URL`: the PostgreSQL server to use (a `postgresql://` URL). When it is set
//!   and the server does not answer, PostgreSQL tests fail: they are never skipped.
//! - Otherwise `postgresql://postgres@127.0.0.1:5432/postgres` is used if it answers, else a
//!   throwaway cluster is started with `initdb`/`pg_ctl` (see [`pg`]) and stopped when the
//!   test process exits.
//! - `ORM_TEST_PG_FORCE_LOCAL_CLUSTER=1`: skip 127.0.0.1:5432 and start the throwaway
//!   cluster (when `DATABASE_URL` is not set), to test that path.
//!
//! # SQL capture
//!
//! [`capture`] returns the statements the engine ran on the current thread during a closure;
//! [`without_transaction_control`], [`count_prefix`] and [`with_prefix`] filter them. The
//! harness installs a process-wide `tracing` subscriber for this (see [`capture`]'s module):
//! don't set another global default in tests; a scoped `with_default` is fine.
#![allow(dead_code)] // Helpers for the other test modules; not all are used by every one.

mod capture;
pub mod pg;

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[allow(unused_imports)] // Re-exported for the other test modules.
pub use capture::{
    capture, capture_events, count_prefix, is_transaction_control, shape, starts_with, with_prefix,
    without_transaction_control, SqlEvent, SQL_TARGET,
};

use orm::{Connection, CoreError, Dialect, Engine, Value};

/// What a test body returns; any error fails the test with its message and sources.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The names of the databases every behaviour runs on, in the order they run.
pub const DATABASE_NAMES: [&str; 2] = ["sqlite", "postgres"];

/// A fresh, isolated database for one test, removed on drop.
pub struct TestDb {
    name: &'static str,
    url: String,
    engine: Option<Engine>,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteFile(PathBuf),
    PgSchema { admin_url: String, schema: String },
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `<pid>_<counter>_<nanos>`: unique among the tests of all processes on this machine.
fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}_{n}_{nanos}", std::process::id())
}

impl TestDb {
    /// A new database of the given kind: `"sqlite"` or `"postgres"`.
    pub fn new(name: &str) -> TestDb {
        match name {
            "sqlite" => TestDb::sqlite(),
            "postgres" => TestDb::postgres(),
            other => panic!("unknown test database `{other}`; expected one of {DATABASE_NAMES:?}"),
        }
    }

    /// A new SQLite database in a temporary file.
    pub fn sqlite() -> TestDb {
        capture::install();
        let path = std::env::temp_dir().join(format!("orm_test_{}.db", unique_suffix()));
        let url = format!("sqlite://{}", path.display());
        let engine = Engine::connect(&url)
            .unwrap_or_else(|e| panic!("[sqlite] cannot open {url}: {}", pg::chain(&e)));
        TestDb {
            name: "sqlite",
            url,
            engine: Some(engine),
            cleanup: Cleanup::SqliteFile(path),
        }
    }

    /// A new schema on the test PostgreSQL server, which is the search path of the engine.
    pub fn postgres() -> TestDb {
        capture::install();
        let server = pg::server();
        let schema = format!("orm_test_{}", unique_suffix());
        let mut admin = admin_client(&server.url).unwrap_or_else(|e| {
            panic!(
                "[postgres] cannot connect to {} ({}): {e}",
                pg::redact(&server.url),
                server.origin
            )
        });
        admin
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .unwrap_or_else(|e| {
                panic!(
                    "[postgres] cannot create schema {schema}: {}",
                    pg::chain(&e)
                )
            });
        let separator = if server.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}options=-csearch_path%3D{schema}", server.url);
        let cleanup = Cleanup::PgSchema {
            admin_url: server.url.clone(),
            schema,
        };
        let engine = Engine::connect(&url).unwrap_or_else(|e| {
            panic!(
                "[postgres] cannot connect to {}: {}",
                pg::redact(&url),
                pg::chain(&e)
            )
        });
        TestDb {
            name: "postgres",
            url,
            engine: Some(engine),
            cleanup,
        }
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The engine of this database (a clone: clones share one pool).
    pub fn engine(&self) -> Engine {
        self.engine.clone().expect("engine is present until drop")
    }

    /// The URL of this database, to open a second, independent engine on the same data
    /// (as another process would).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The dialect of this database.
    pub fn dialect(&self) -> Dialect {
        if self.is_postgres() {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    /// Whether this is the PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.name == "postgres"
    }

    /// Whether this is the SQLite database.
    pub fn is_sqlite(&self) -> bool {
        self.name == "sqlite"
    }

    /// The PostgreSQL schema holding this database's tables.
    pub fn schema(&self) -> Option<&str> {
        match &self.cleanup {
            Cleanup::PgSchema { schema, .. } => Some(schema),
            Cleanup::SqliteFile(_) => None,
        }
    }

    /// The SQLite file of this database.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.cleanup {
            Cleanup::SqliteFile(path) => Some(path),
            Cleanup::PgSchema { .. } => None,
        }
    }

    /// The placeholder of the `n`th (one-based) parameter: `$n` or `?n`.
    pub fn param(&self, n: usize) -> String {
        let mut s = String::new();
        self.dialect().placeholder_into(&mut s, n);
        s
    }

    /// The placeholders of parameters `1..=n`, comma-separated: `$1, $2, $3`.
    pub fn params(&self, n: usize) -> String {
        (1..=n)
            .map(|i| self.param(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The binary column type: `BYTEA` or `BLOB`.
    pub fn blob_type(&self) -> &'static str {
        if self.is_postgres() {
            "BYTEA"
        } else {
            "BLOB"
        }
    }
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("name", &self.name)
            .field("url", &pg::redact(&self.url))
            .finish()
    }
}

fn admin_client(url: &str) -> Result<postgres::Client, String> {
    let mut config: postgres::Config = url.parse().map_err(|e| pg::chain(&e))?;
    config.connect_timeout(Duration::from_secs(10));
    config.connect(postgres::NoTls).map_err(|e| pg::chain(&e))
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Close the pool first (unless the test still holds clones of the engine).
        drop(self.engine.take());
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                let _ = std::fs::remove_file(path);
                for suffix in ["-wal", "-shm", "-journal"] {
                    let mut side = path.clone().into_os_string();
                    side.push(suffix);
                    let _ = std::fs::remove_file(side);
                }
            }
            Cleanup::PgSchema { admin_url, schema } => {
                let dropped = admin_client(admin_url).and_then(|mut c| {
                    c.batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                    ))
                    .map_err(|e| pg::chain(&e))
                });
                if let Err(e) = dropped {
                    // Never panic in drop (it may run while a failed test unwinds).
                    eprintln!("[postgres] warning: cannot drop test schema {schema}: {e}");
                }
            }
        }
    }
}

/// A fresh database of each kind, in [`DATABASE_NAMES`] order.
pub fn databases() -> Vec<TestDb> {
    DATABASE_NAMES.iter().map(|n| TestDb::new(n)).collect()
}

/// Runs `test` on a fresh database of each kind, one after the other.
///
/// An error returned by `test` or a panic inside it fails the test with a message naming the
/// database (`[postgres] ...`). Each database is removed before the next one is created.
pub fn for_each_db(test: impl Fn(&TestDb) -> TestResult) {
    for name in DATABASE_NAMES {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let db = TestDb::new(name);
            test(&db)
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("[{name}] test failed: {}", error_chain(&*e)),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied());
                match message {
                    Some(m) if m.starts_with(&format!("[{name}]")) => resume_unwind(payload),
                    Some(m) => panic!("[{name}] {m}"),
                    None => resume_unwind(payload),
                }
            }
        }
    }
}

/// An error with its sources, joined by `: `, plus its `Debug` form.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    format!("{}\n  debug: {e:?}", pg::chain(e))
}

// ---------------------------------------------------------------------------------------------
// Small query helpers.

/// The single integer value (of any width) of the first row of a query, e.g.
/// `SELECT count(*) ...`.
///
/// # Panics
///
/// When the query returns no row, NULL, or a value that is not an integer.
pub fn query_i64(conn: &Connection, sql: &str, params: &[Value]) -> Result<i64, CoreError> {
    let rows = query_values(conn, sql, params)?;
    match rows.first().and_then(|r| r.first()) {
        Some(v) => Ok(v
            .as_i64()
            .unwrap_or_else(|| panic!("`{sql}` returned {v:?}, not an integer"))),
        None => panic!("`{sql}` returned no row"),
    }
}

/// Every row of a query, each column read as a [`Value`].
pub fn query_values(
    conn: &Connection,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Vec<Value>>, CoreError> {
    let mut rows = Vec::new();
    conn.query(sql, params, |row| {
        let values = (0..row.len())
            .map(|i| {
                row.value(i).map_err(|source| CoreError::Decode {
                    table: "<query>".into(),
                    column: i.to_string(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(values);
        Ok(())
    })?;
    Ok(rows)
}

/// `SELECT count(*) FROM "<table>"` (quoted) on a new connection of `engine`.
pub fn count_rows(engine: &Engine, table: &str) -> Result<i64, CoreError> {
    let mut sql = "SELECT count(*) FROM ".to_owned();
    engine.dialect().quote_into(&mut sql, table);
    query_i64(&engine.connection()?, &sql, &[])
}
