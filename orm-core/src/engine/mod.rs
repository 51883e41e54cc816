//! Engine, pool and connections: where statements are executed.
//!
//! An [`Engine`] owns a pool of driver connections for one database URL and hands out
//! [`Connection`]s. Every statement is logged through `tracing` under the target `orm::sql`
//! (at DEBUG, or INFO when the engine was built with `echo(true)`).

mod bind;
mod connection;
mod pg_client;
mod pool;
pub mod row;
mod url;

use std::sync::Arc;
use std::time::Duration;

pub use connection::{Connection, Prepared};
pub use row::RawRows;

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use pool::{DriverConn, Manager};
use url::Target;

/// A source of connections to one database.
///
/// Cloning an engine is cheap; clones share the pool. `sqlite::memory:` is one database per
/// engine: every pooled connection sees the same data, and it lives as long as the engine.
///
/// # Examples
///
/// ```
/// use orm_core::engine::Engine;
/// let engine = Engine::connect("sqlite::memory:")?;
/// let conn = engine.connection()?;
/// conn.execute("CREATE TABLE t (x INTEGER)", &[])?;
/// conn.execute("INSERT INTO t VALUES (?1)", &[7i64.into()])?;
/// // Another pooled connection sees the same in-memory database.
/// let other = engine.connection()?;
/// let mut seen = 0;
/// other.query("SELECT x FROM t", &[], |row| { seen = row.get::<i64>(0).unwrap().unwrap(); Ok(()) })?;
/// assert_eq!(seen, 7);
/// # Ok::<(), orm_core::error::Error>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    pool: r2d2::Pool<Manager>,
    dialect: Dialect,
    target: String,
    echo: bool,
    /// Keeps an in-memory SQLite database alive while the engine exists.
    _anchor: Option<parking_lot::Mutex<DriverConn>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("target", &self.inner.target)
            .finish()
    }
}

/// Options of an [`Engine`], from [`Engine::builder`].
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    url: String,
    pool_size: u32,
    timeout: Duration,
    echo: bool,
}

impl EngineBuilder {
    /// Most connections the pool opens (default 10).
    pub fn pool_size(mut self, n: u32) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// How long [`Engine::connection`] waits for a free connection (default 30 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Logs every statement at INFO level instead of DEBUG (SQLAlchemy's `echo=True`).
    pub fn echo(mut self, on: bool) -> Self {
        self.echo = on;
        self
    }

    /// Opens one connection to check the URL and the server, then builds the pool.
    pub fn connect(self) -> Result<Engine> {
        let target = Target::parse(&self.url)?;
        let dialect = target.dialect();
        let description = target.describe();
        let first = DriverConn::open(&target)?;
        let anchor =
            matches!(target, Target::SqliteMemory(_)).then(|| parking_lot::Mutex::new(first));
        let pool = r2d2::Pool::builder()
            .max_size(self.pool_size)
            .min_idle(Some(0))
            .connection_timeout(self.timeout)
            .test_on_check_out(false)
            .build_unchecked(Manager { target });
        Ok(Engine {
            inner: Arc::new(EngineInner {
                pool,
                dialect,
                target: description,
                echo: self.echo,
                _anchor: anchor,
            }),
        })
    }
}

impl Engine {
    /// Connects to `postgresql://user@host:port/db`, `sqlite://path` or `sqlite::memory:`.
    pub fn connect(url: &str) -> Result<Engine> {
        Engine::builder(url).connect()
    }

    /// An engine with options.
    ///
    /// # Examples
    ///
    /// ```
    /// let engine = orm_core::engine::Engine::builder("sqlite::memory:").pool_size(2).echo(true).connect()?;
    /// # Ok::<(), orm_core::error::Error>(())
    /// ```
    pub fn builder(url: &str) -> EngineBuilder {
        EngineBuilder {
            url: url.to_owned(),
            pool_size: 10,
            timeout: Duration::from_secs(30),
            echo: false,
        }
    }

    /// A connection from the pool; it returns to the pool (rolled back) when the last clone
    /// of the [`Connection`] is dropped.
    pub fn connection(&self) -> Result<Connection> {
        let pooled = self.inner.pool.get().map_err(|e| Error::PoolTimeout {
            target: self.inner.target.clone(),
            reason: e.to_string(),
        })?;
        Ok(Connection::new(pooled, self.inner.dialect, self.inner.echo))
    }

    /// The engine's dialect.
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// Where the engine connects, without credentials.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Whether two handles are clones of the same engine.
    pub fn same_as(&self, other: &Engine) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
