//! `sessionmaker`: a configured factory of sessions, built once at application level.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use orm_core::engine::{Connection, Engine};
use parking_lot::RwLock;

use crate::error::Result;
use crate::session::Session;

/// What a session uses for connections: an engine (a pooled connection per transaction), or
/// one specific connection (whose transaction, if already begun, the session joins).
#[derive(Clone, Debug)]
pub enum Bind {
    /// Take a connection from this engine's pool for each transaction.
    Engine(Engine),
    /// Use this connection.
    Connection(Connection),
}

impl From<Engine> for Bind {
    fn from(e: Engine) -> Self {
        Bind::Engine(e)
    }
}
impl From<&Engine> for Bind {
    fn from(e: &Engine) -> Self {
        Bind::Engine(e.clone())
    }
}
impl From<Connection> for Bind {
    fn from(c: Connection) -> Self {
        Bind::Connection(c)
    }
}
impl From<&Connection> for Bind {
    fn from(c: &Connection) -> Self {
        Bind::Connection(c.clone())
    }
}

/// The session's `info` dictionary: values of any type under string keys.
///
/// # Examples
///
/// ```
/// use orm_session::Info;
/// let mut info = Info::default();
/// info.insert("request_id", 42u64);
/// assert_eq!(info.get::<u64>("request_id"), Some(&42));
/// assert_eq!(info.get::<String>("request_id"), None); // wrong type
/// ```
#[derive(Clone, Default)]
pub struct Info(HashMap<String, Arc<dyn Any + Send + Sync>>);

impl Info {
    /// Stores a value under `key`, replacing any previous one.
    pub fn insert<V: Any + Send + Sync>(&mut self, key: impl Into<String>, value: V) {
        self.0.insert(key.into(), Arc::new(value));
    }

    /// The value under `key`, if there is one of type `V`.
    pub fn get<V: Any>(&self, key: &str) -> Option<&V> {
        self.0.get(key).and_then(|v| v.downcast_ref())
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Copies every entry of `other` into `self` (entries of `other` win).
    pub fn merge(&mut self, other: &Info) {
        self.0
            .extend(other.0.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.0.keys().collect();
        keys.sort();
        f.debug_set().entries(keys).finish()
    }
}

/// How a session bound to a [`Connection`] that is already in a transaction joins it
/// (SQLAlchemy 2.x's `join_transaction_mode`). A connection without a transaction is simply
/// used: the session begins, commits and rolls back its own transaction on it.
///
/// # Examples
///
/// The test-fixture pattern: an outer transaction the test rolls back, a session whose
/// commits only release savepoints inside it.
///
/// ```
/// # use orm::__doc::*;
/// # fn main() -> Result<(), orm::Error> {
/// # let (engine, factory) = setup();
/// use orm::JoinTransactionMode;
/// let conn = engine.connection()?;
/// conn.begin()?;
/// let mut session = factory.session_with(|o| {
///     o.bind(&conn).join_transaction_mode(JoinTransactionMode::CreateSavepoint);
/// });
/// session.add(User::new("ed", 30))?;
/// session.commit()?;          // releases the session's savepoint only
/// drop(session);
/// conn.rollback()?;           // nothing is left behind
/// assert!(factory.session().query::<User>().all()?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinTransactionMode {
    /// The default: `CreateSavepoint` when the connection is inside a savepoint, else
    /// `RollbackOnly`.
    #[default]
    ConservativeSavepoint,
    /// The session opens its own SAVEPOINT: commit releases it, rollback and close roll back
    /// to it; the caller's transaction is never ended by the session.
    CreateSavepoint,
    /// Commit only flushes; rollback rolls back the caller's transaction; close leaves it.
    RollbackOnly,
    /// The session treats the transaction as its own: commit commits it, rollback and close
    /// roll it back.
    ControlFully,
}

/// The arguments of a session, as in SQLAlchemy's `sessionmaker(...)`.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub(crate) bind: Option<Bind>,
    pub(crate) autoflush: bool,
    pub(crate) expire_on_commit: bool,
    pub(crate) autobegin: bool,
    pub(crate) join_transaction_mode: JoinTransactionMode,
    pub(crate) info: Info,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            bind: None,
            autoflush: true,
            expire_on_commit: true,
            autobegin: true,
            join_transaction_mode: JoinTransactionMode::default(),
            info: Info::default(),
        }
    }
}

impl SessionOptions {
    /// The engine or connection sessions use.
    pub fn bind(&mut self, bind: impl Into<Bind>) -> &mut Self {
        self.bind = Some(bind.into());
        self
    }
    /// Flush before queries (default true).
    pub fn autoflush(&mut self, on: bool) -> &mut Self {
        self.autoflush = on;
        self
    }
    /// Expire every object at commit (default true).
    pub fn expire_on_commit(&mut self, on: bool) -> &mut Self {
        self.expire_on_commit = on;
        self
    }
    /// Begin a transaction on first use (default true); when false, `begin()` is required.
    pub fn autobegin(&mut self, on: bool) -> &mut Self {
        self.autobegin = on;
        self
    }
    /// How to join a transaction already begun on a bound connection.
    pub fn join_transaction_mode(&mut self, mode: JoinTransactionMode) -> &mut Self {
        self.join_transaction_mode = mode;
        self
    }
    /// Adds an entry to `info`; entries given per call are merged into the factory's.
    pub fn info<V: Any + Send + Sync>(&mut self, key: impl Into<String>, value: V) -> &mut Self {
        self.info.insert(key, value);
        self
    }
    /// The configured bind.
    pub fn get_bind(&self) -> Option<&Bind> {
        self.bind.as_ref()
    }
    /// The autoflush setting.
    pub fn get_autoflush(&self) -> bool {
        self.autoflush
    }
    /// The expire_on_commit setting.
    pub fn get_expire_on_commit(&self) -> bool {
        self.expire_on_commit
    }
    /// The autobegin setting.
    pub fn get_autobegin(&self) -> bool {
        self.autobegin
    }
    /// The join_transaction_mode setting.
    pub fn get_join_transaction_mode(&self) -> JoinTransactionMode {
        self.join_transaction_mode
    }
    /// The info dictionary.
    pub fn get_info(&self) -> &Info {
        &self.info
    }
}

/// A session type a factory can produce: [`Session`] itself, or an application's own type
/// wrapping one (SQLAlchemy's `class_` argument).
///
/// # Examples
///
/// ```
/// use orm_session::{FromSession, Session, sessionmaker};
/// struct AuditedSession { inner: Session, actor: String }
/// impl FromSession for AuditedSession {
///     fn from_session(inner: Session) -> Self { AuditedSession { inner, actor: "system".into() } }
///     fn session_mut(&mut self) -> &mut Session { &mut self.inner }
/// }
/// let factory = sessionmaker().class::<AuditedSession>().build();
/// let s: AuditedSession = factory.session();
/// assert_eq!(s.actor, "system");
/// ```
pub trait FromSession: Sized {
    /// Wraps a newly configured session.
    fn from_session(session: Session) -> Self;
    /// The wrapped session.
    fn session_mut(&mut self) -> &mut Session;
}

impl FromSession for Session {
    fn from_session(session: Session) -> Self {
        session
    }
    fn session_mut(&mut self) -> &mut Session {
        self
    }
}

/// Starts building a session factory: SQLAlchemy's `sessionmaker(...)`.
///
/// # Examples
///
/// ```
/// use std::sync::LazyLock;
/// use orm_session::{sessionmaker, SessionMaker};
/// use orm_core::engine::Engine;
///
/// // Once, at application level; bound to an engine later, when configuration is known.
/// static SESSION: LazyLock<SessionMaker> = LazyLock::new(|| sessionmaker().build());
///
/// let engine = Engine::connect("sqlite::memory:")?;
/// SESSION.configure(|c| { c.bind(engine).autoflush(false); });
/// let session = SESSION.session();
/// assert!(!session.options().get_autoflush());
/// # Ok::<(), orm_session::Error>(())
/// ```
pub fn sessionmaker() -> SessionMakerBuilder<Session> {
    SessionMakerBuilder {
        options: SessionOptions::default(),
        _class: PhantomData,
    }
}

/// The typed builder returned by [`sessionmaker`].
#[must_use = "call .build() to get the session factory"]
pub struct SessionMakerBuilder<S = Session> {
    options: SessionOptions,
    _class: PhantomData<fn() -> S>,
}

impl<S: FromSession> SessionMakerBuilder<S> {
    /// The engine or connection sessions use.
    pub fn bind(mut self, bind: impl Into<Bind>) -> Self {
        self.options.bind(bind);
        self
    }
    /// Flush before queries (default true).
    pub fn autoflush(mut self, on: bool) -> Self {
        self.options.autoflush(on);
        self
    }
    /// Expire every object at commit (default true).
    pub fn expire_on_commit(mut self, on: bool) -> Self {
        self.options.expire_on_commit(on);
        self
    }
    /// Begin a transaction on first use (default true).
    pub fn autobegin(mut self, on: bool) -> Self {
        self.options.autobegin(on);
        self
    }
    /// How to join a transaction already begun on a bound connection.
    pub fn join_transaction_mode(mut self, mode: JoinTransactionMode) -> Self {
        self.options.join_transaction_mode(mode);
        self
    }
    /// Adds an entry to the sessions' `info`.
    pub fn info<V: Any + Send + Sync>(mut self, key: impl Into<String>, value: V) -> Self {
        self.options.info(key, value);
        self
    }
    /// Produces sessions of type `C` instead (SQLAlchemy's `class_`).
    pub fn class<C: FromSession>(self) -> SessionMakerBuilder<C> {
        SessionMakerBuilder {
            options: self.options,
            _class: PhantomData,
        }
    }
    /// The factory.
    pub fn build(self) -> SessionMaker<S> {
        SessionMaker {
            options: RwLock::new(self.options),
            _class: PhantomData,
        }
    }
}

/// A configured factory of sessions (SQLAlchemy's `Session = sessionmaker(...)`).
///
/// `Sync`: hold one in a `static` (`LazyLock`) and create sessions from any thread.
pub struct SessionMaker<S = Session> {
    options: RwLock<SessionOptions>,
    _class: PhantomData<fn() -> S>,
}

impl<S> fmt::Debug for SessionMaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionMaker")
            .field("options", &*self.options.read())
            .finish()
    }
}

impl<S: FromSession> SessionMaker<S> {
    /// Changes the configuration; affects sessions created afterwards.
    pub fn configure(&self, f: impl FnOnce(&mut SessionOptions)) {
        f(&mut self.options.write());
    }

    /// The current configuration.
    pub fn options(&self) -> SessionOptions {
        self.options.read().clone()
    }

    /// A new session: SQLAlchemy's `Session()`.
    pub fn session(&self) -> S {
        S::from_session(Session::new(self.options()))
    }

    /// A new session with per-call overrides: SQLAlchemy's `Session(bind=conn, ...)`.
    /// `info` entries given here are merged into the factory's, not replacing them.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm_session::sessionmaker;
    /// # use orm_core::engine::Engine;
    /// let engine = Engine::connect("sqlite::memory:")?;
    /// let factory = sessionmaker().bind(engine.clone()).info("app", "shop").build();
    /// let conn = engine.connection()?;
    /// let session = factory.session_with(|o| { o.bind(&conn).info("request", 7u32); });
    /// let info = session.info();
    /// assert_eq!(info.get::<&str>("app"), Some(&"shop"));
    /// assert_eq!(info.get::<u32>("request"), Some(&7));
    /// # Ok::<(), orm_session::Error>(())
    /// ```
    pub fn session_with(&self, overrides: impl FnOnce(&mut SessionOptions)) -> S {
        let mut options = self.options();
        overrides(&mut options);
        S::from_session(Session::new(options))
    }

    /// Runs `f` in a new session and transaction: commits when `f` returns `Ok`, rolls back
    /// when it returns `Err` (or commit fails), and always closes the session.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # fn main() -> Result<(), orm::Error> {
    /// # let (_engine, factory) = setup();
    /// factory.begin(|s| {
    ///     s.add(User::new("ed", 30))?;
    ///     Ok(())
    /// })?;
    /// let failed: Result<(), orm::Error> = factory.begin(|s| {
    ///     s.add(User::new("wendy", 25))?;
    ///     Err(orm::Error::NoTransaction) // any error: nothing is committed
    /// });
    /// assert!(failed.is_err());
    /// assert_eq!(factory.session().query::<User>().all()?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn begin<R>(&self, f: impl FnOnce(&mut S) -> Result<R>) -> Result<R> {
        let mut s = self.session();
        s.session_mut().begin()?;
        let result = f(&mut s).and_then(|r| s.session_mut().commit().map(|()| r));
        // Closing rolls back whatever was not committed.
        let closed = s.session_mut().close();
        let r = result?;
        closed?;
        Ok(r)
    }
}
