//! The `Session`: identity map, unit of work and transaction, as in SQLAlchemy.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use orm_core::engine::Connection;
use orm_core::expr::sources::One;
use orm_core::expr::ColumnOf;
use orm_core::model::Mapped;
use parking_lot::Mutex;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::object::Obj;
use crate::query::Query;
use crate::sessionmaker::{Info, SessionOptions};
use crate::state::ObjectState;
use crate::transaction::Tx;
use orm_core::expr::entities::Entities;

/// The part of a session that objects reach through their link (to queue themselves as
/// dirty, or to load expired attributes).
pub(crate) struct Shared {
    core: Mutex<Core>,
}

impl Shared {
    pub(crate) fn queue_dirty<T: Mapped>(&self, obj: Obj<T>) {
        self.core.lock().store::<T>().dirty.push(obj);
    }

    pub(crate) fn refresh<T: Mapped>(&self, obj: &Obj<T>) -> Result<()> {
        self.core.lock().refresh(obj)
    }

    pub(crate) fn core(&self) -> parking_lot::MutexGuard<'_, Core> {
        self.core.lock()
    }
}

/// A conversation with the database: identity map, unit of work and one transaction at a
/// time.
///
/// Obtained from a [`SessionMaker`](crate::SessionMaker). A session is `Send` (it may move to
/// a worker thread) but not `Sync` (one thread uses it at a time). Dropping a session rolls
/// back what was not committed and returns its connection to the pool.
///
/// # Examples
///
/// ```
/// # use orm::__doc::*;
/// # fn main() -> Result<(), orm::Error> {
/// # let (_engine, factory) = setup();
/// let mut session = factory.session();
/// let ed = session.add(User::new("ed", 30))?;
/// session.commit()?;
/// let id = ed.identity_key().unwrap();
/// let again = session.get::<User>(id)?.unwrap();
/// assert!(again.ptr_eq(&ed)); // one object per primary key
/// # Ok(()) }
/// ```
pub struct Session {
    shared: Arc<Shared>,
    _not_sync: PhantomData<Cell<()>>,
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A SAVEPOINT opened by [`Session::begin_nested`]; end it with [`commit`](Self::commit) or
/// [`rollback`](Self::rollback). Ending the whole transaction ends it too.
#[must_use = "a nested transaction is ended with .commit(&mut session) or .rollback(&mut session)"]
#[derive(Debug)]
pub struct NestedTransaction {
    session_id: u64,
    depth: usize,
    serial: u64,
}

impl NestedTransaction {
    fn check(&self, session: &Session) -> Result<()> {
        if session.id() == self.session_id {
            Ok(())
        } else {
            Err(Error::InactiveSavepoint)
        }
    }

    /// Flushes and releases the savepoint: its work becomes part of the enclosing transaction.
    pub fn commit(self, session: &mut Session) -> Result<()> {
        self.check(session)?;
        session.core().commit_nested(self.depth, self.serial)
    }

    /// Rolls back to the savepoint: the database and the session return to where they were
    /// when it began (objects added in it are expunged, objects deleted in it are persistent
    /// again, objects changed in it are expired). The enclosing transaction goes on.
    pub fn rollback(self, session: &mut Session) -> Result<()> {
        self.check(session)?;
        session.core().rollback_nested(self.depth, self.serial)
    }
}

impl Session {
    pub(crate) fn new(options: SessionOptions) -> Session {
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| Shared {
            core: Mutex::new(Core::new(id, options, weak.clone())),
        });
        Session {
            shared,
            _not_sync: PhantomData,
        }
    }

    pub(crate) fn core(&self) -> parking_lot::MutexGuard<'_, Core> {
        self.shared.core.lock()
    }

    /// A number identifying this session in error messages and [`Obj::session_id`].
    pub fn id(&self) -> u64 {
        self.core().id
    }

    /// Adds an object: a transient one becomes pending, a detached one persistent again.
    /// Returns the handle the session tracks.
    pub fn add<T: Mapped>(&mut self, obj: impl Into<Obj<T>>) -> Result<Obj<T>> {
        let obj = obj.into();
        self.core().add(&obj)?;
        Ok(obj)
    }

    /// Adds every object of an iterator.
    pub fn add_all<T: Mapped, I>(&mut self, objs: I) -> Result<Vec<Obj<T>>>
    where
        I: IntoIterator,
        I::Item: Into<Obj<T>>,
    {
        let mut core = self.core();
        objs.into_iter()
            .map(|o| {
                let obj = o.into();
                core.add(&obj).map(|_| obj)
            })
            .collect()
    }

    /// The object with primary key `key`: from the identity map without SQL when it is there
    /// and not expired, else loaded with one SELECT. `None` when no such row exists.
    pub fn get<T: Mapped>(&mut self, key: impl Into<T::Key>) -> Result<Option<Obj<T>>> {
        self.core().get(key.into())
    }

    /// Marks a persistent object for deletion at the next flush.
    pub fn delete<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        self.core().delete(obj)
    }

    /// Copies the state of a detached or transient object onto the session's object with the
    /// same primary key (loading it if the session does not hold it), or onto a new pending
    /// object when there is no such row; returns the session's object. `source` itself is
    /// left as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # fn main() -> Result<(), orm::Error> {
    /// # let (_engine, factory) = setup();
    /// let mut session = factory.session();
    /// let ed = session.add(User::new("ed", 30))?;
    /// session.commit()?;
    /// // A copy arriving from elsewhere, e.g. deserialized from a request:
    /// let incoming = User { id: ed.identity_key(), name: "ed".into(), age: 31 };
    /// let merged = session.merge(incoming)?;
    /// assert!(merged.ptr_eq(&ed));
    /// assert!(ed.is_modified()); // the age change will be flushed
    /// # Ok(()) }
    /// ```
    pub fn merge<T: Mapped>(&mut self, source: impl Into<Obj<T>>) -> Result<Obj<T>> {
        self.core().merge(&source.into(), true)
    }

    /// [`merge`](Self::merge) with `load = false`: the source is trusted to be the row's
    /// current state. No SELECT is issued; when the session does not hold the key, the
    /// result is a persistent object built from the source, which must carry no changes.
    pub fn merge_without_load<T: Mapped>(&mut self, source: impl Into<Obj<T>>) -> Result<Obj<T>> {
        self.core().merge(&source.into(), false)
    }

    /// Writes all pending changes to the database, in the session's transaction.
    ///
    /// When a statement fails, the transaction is rolled back (inside a savepoint, only the
    /// savepoint), nothing of the flush remains in the database, every object keeps its
    /// state, and the session requires [`rollback`](Self::rollback).
    pub fn flush(&mut self) -> Result<()> {
        self.core().flush()
    }

    /// Begins a transaction explicitly (needed when autobegin is off).
    pub fn begin(&mut self) -> Result<()> {
        self.core().begin()
    }

    /// Flushes and opens a SAVEPOINT (SQLAlchemy's `begin_nested`). Savepoints nest to any
    /// depth.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # fn main() -> Result<(), orm::Error> {
    /// # let (_engine, factory) = setup();
    /// let mut session = factory.session();
    /// let kept = session.add(User::new("kept", 1))?;
    /// let nested = session.begin_nested()?;
    /// let undone = session.add(User::new("undone", 2))?;
    /// nested.rollback(&mut session)?;
    /// assert_eq!(undone.state(), ObjectState::Transient);
    /// session.commit()?;
    /// assert_eq!(session.query::<User>().all()?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn begin_nested(&mut self) -> Result<NestedTransaction> {
        let (depth, serial) = self.core().begin_nested()?;
        Ok(NestedTransaction {
            session_id: self.id(),
            depth,
            serial,
        })
    }

    /// Runs `f` inside a savepoint: released when `f` returns `Ok`, rolled back when it returns
    /// `Err` (the error is returned; the enclosing transaction goes on).
    pub fn nested<R>(&mut self, f: impl FnOnce(&mut Session) -> Result<R>) -> Result<R> {
        let sp = self.begin_nested()?;
        match f(self) {
            Ok(r) => sp.commit(self).map(|()| r),
            Err(e) => {
                sp.rollback(self)?;
                Err(e)
            }
        }
    }

    /// Flushes, then commits the transaction. With `expire_on_commit`, every object is
    /// expired: its next read loads the current row.
    pub fn commit(&mut self) -> Result<()> {
        self.core().commit()
    }

    /// Rolls the transaction back: objects added in it are expunged, objects deleted in it
    /// are persistent again, and every other object is expired.
    pub fn rollback(&mut self) -> Result<()> {
        self.core().rollback()
    }

    /// Expunges every object, rolls back and returns the connection to the pool. The session
    /// can be used again afterwards.
    ///
    /// Objects leave as they are, as with SQLAlchemy's `close()`: persistent ones become
    /// detached and stay readable (what they loaded is not expired), pending ones become
    /// transient, and changes not flushed stay in the objects (adding one to another session
    /// flushes them there). After a failed flush the rollback comes first, restoring what the
    /// flush changed. Dropping a session closes it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # fn main() -> Result<(), orm_session::Error> {
    /// # let (_engine, factory) = setup();
    /// # factory.begin(|s| { s.add(User::new("ed", 30))?; Ok(()) })?;
    /// let mut session = factory.session();
    /// let users = session.query::<User>().all()?;
    /// session.close()?;
    /// assert_eq!(users[0].state(), ObjectState::Detached);
    /// assert_eq!(users[0].read()?.name, "ed"); // loaded before close: no SQL
    /// # Ok(()) }
    /// ```
    pub fn close(&mut self) -> Result<()> {
        self.core().close()
    }

    /// Removes one object from the session; it becomes detached (or transient if pending).
    pub fn expunge<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        self.core().expunge(obj)
    }

    /// Removes every object from the session without touching the transaction.
    pub fn expunge_all(&mut self) {
        self.core().expunge_all();
    }

    /// Makes an object transient: out of its session (if it is in this one) and without
    /// database identity, keeping its attribute values.
    pub fn make_transient<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        self.core().make_transient(obj)
    }

    /// Makes a transient object whose primary key is set detached, as if it had been loaded
    /// and expunged; `add` then makes it persistent without an INSERT.
    pub fn make_transient_to_detached<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        self.core().make_transient_to_detached(obj)
    }

    /// Expires one object: its next read loads the current row. Unflushed changes to it are
    /// discarded.
    pub fn expire<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        self.core().expire(obj, None)
    }

    /// Expires some columns of one object: `session.expire_columns(&u, &[&User::name])`.
    /// The next read reloads them and keeps the other columns as they are.
    pub fn expire_columns<T: Mapped>(
        &mut self,
        obj: &Obj<T>,
        columns: &[&dyn ColumnOf<T>],
    ) -> Result<()> {
        let columns: Vec<usize> = columns.iter().map(|c| c.position()).collect();
        self.core().expire(obj, Some(&columns))
    }

    /// Expires every object of the session in O(1).
    pub fn expire_all(&mut self) {
        self.core().expire_all();
    }

    /// Loads the object's row now, discarding unflushed changes to it.
    /// [`Error::ObjectDeleted`] when the row no longer exists.
    pub fn refresh<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        self.core().refresh_now(obj)
    }

    /// The state of an object with respect to this session.
    pub fn state_of<T: Mapped>(&self, obj: &Obj<T>) -> ObjectState {
        let state = obj.state();
        match state {
            ObjectState::Transient | ObjectState::Detached => state,
            _ if obj.session_id() == Some(self.id()) => state,
            // Attached to another session: from this one's point of view it is not here.
            _ if obj.identity_key().is_some() => ObjectState::Detached,
            _ => ObjectState::Transient,
        }
    }

    /// Whether the object is attached to this session.
    pub fn contains<T: Mapped>(&self, obj: &Obj<T>) -> bool {
        obj.session_id() == Some(self.id())
    }

    /// A query returning objects of `E` (a mapped type, or a tuple of them joined together)
    /// through the identity map.
    pub fn query<E: Entities>(&mut self) -> Query<'_, E, One<E::First>> {
        Query::new(self)
    }

    /// The connection of the session's transaction, beginning it if needed.
    pub fn connection(&mut self) -> Result<Connection> {
        self.core().connection()
    }

    /// Whether a transaction is in progress.
    pub fn in_transaction(&self) -> bool {
        !matches!(self.core().tx, Tx::None)
    }

    /// Turns autoflush on or off for this session.
    pub fn set_autoflush(&mut self, on: bool) {
        self.core().options.autoflush = on;
    }

    /// Runs `f` with autoflush suspended (SQLAlchemy's `no_autoflush`), restoring the setting
    /// afterwards, also when `f` fails.
    pub fn no_autoflush<R>(&mut self, f: impl FnOnce(&mut Session) -> R) -> R {
        struct Restore(Arc<Shared>, bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                self.0.core.lock().options.autoflush = self.1;
            }
        }
        let before = std::mem::replace(&mut self.core().options.autoflush, false);
        let _restore = Restore(self.shared.clone(), before);
        f(self)
    }

    /// The session's options (after sessionmaker configuration and per-call overrides).
    pub fn options(&self) -> SessionOptions {
        self.core().options.clone()
    }

    /// The session's `info` dictionary.
    pub fn info(&self) -> Info {
        self.core().options.info.clone()
    }

    /// How many live objects the identity map holds.
    pub fn len(&self) -> usize {
        self.core().stores.iter().map(|s| s.len()).sum()
    }

    /// Whether the identity map holds no live object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Like leaving SQLAlchemy's `with Session() as session:` block.
        let _ = self.core().close();
    }
}
