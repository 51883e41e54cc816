//! The `Session`: identity map, unit of work and transaction, as in SQLAlchemy.

use std::any::TypeId;
use std::cell::Cell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use orm_core::engine::row::Row;
use orm_core::engine::Connection;
use orm_core::model::{ColumnSet, Mapped, PrimaryKey};
use orm_core::sql::ast::{BinOp, Expr, Select, Statement};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::identity_map::{AnyStore, Store};
use crate::object::{Obj, ObjData, SessionLink};
use crate::query::Query;
use crate::sessionmaker::{Bind, Info, SessionOptions};
use crate::state::{ObjectState, Status};
use crate::unit_of_work;

/// The part of a session that objects reach through their [`SessionLink`] (to queue
/// themselves as dirty, or to load expired attributes).
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
}

/// Where the session's transaction stands.
enum Tx {
    None,
    /// `owned`: the session began it (else it joined a transaction begun on its Connection).
    Active {
        owned: bool,
    },
    /// A flush failed and the database transaction was rolled back; `rollback()` is required.
    Failed(String),
}

pub(crate) struct Core {
    id: u64,
    options: SessionOptions,
    link: Arc<SessionLink>,
    shared: Weak<Shared>,
    conn: Option<Connection>,
    tx: Tx,
    stores: Vec<Box<dyn AnyStore>>,
    by_type: HashMap<TypeId, usize>,
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

impl Session {
    pub(crate) fn new(options: SessionOptions) -> Session {
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| Shared {
            core: Mutex::new(Core {
                id,
                options,
                link: SessionLink::new(id, weak.clone()),
                shared: weak.clone(),
                conn: None,
                tx: Tx::None,
                stores: Vec::new(),
                by_type: HashMap::new(),
            }),
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

    /// Writes all pending changes to the database, in the session's transaction.
    ///
    /// When a statement fails, the transaction is rolled back, nothing of the flush remains in
    /// the database, every object keeps its state, and the session requires
    /// [`rollback`](Self::rollback).
    pub fn flush(&mut self) -> Result<()> {
        self.core().flush()
    }

    /// Begins a transaction explicitly (needed when autobegin is off).
    pub fn begin(&mut self) -> Result<()> {
        self.core().begin()
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

    /// Rolls back, expunges every object (they become detached) and returns the connection to
    /// the pool. The session can be used again afterwards.
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

    /// A query returning objects of `T` through the identity map.
    pub fn query<T: Mapped>(&mut self) -> Query<'_, T> {
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

    /// The session's options (after sessionmaker configuration and per-call overrides).
    pub fn options(&self) -> SessionOptions {
        self.core().options.clone()
    }

    /// The session's `info` dictionary.
    pub fn info(&self) -> Info {
        self.core().options.info.clone()
    }

    /// How many objects the identity map holds.
    pub fn len(&self) -> usize {
        self.core().stores.iter().map(|s| s.len()).sum()
    }

    /// Whether the identity map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn load<T: Mapped>(&mut self, select: Select) -> Result<Vec<Obj<T>>> {
        let mut core = self.core();
        core.autoflush()?;
        core.load(select)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Like leaving SQLAlchemy's `with Session() as session:` block.
        let _ = self.core().close();
    }
}

/// `table.pk1 = $1 AND table.pk2 = $2`
fn key_filter<T: Mapped>(key: &T::Key) -> Expr {
    let t = T::TABLE;
    let terms: Vec<Expr> = t
        .primary_key
        .iter()
        .zip(key.values())
        .map(|(&c, v)| Expr::Binary {
            op: BinOp::Eq,
            left: Box::new(Expr::Column {
                table: t.name,
                column: t.columns[c].name,
            }),
            right: Box::new(Expr::Param(v)),
        })
        .collect();
    if terms.len() == 1 {
        terms.into_iter().next().expect("one term")
    } else {
        Expr::And(terms)
    }
}

impl Core {
    pub(crate) fn store<T: Mapped>(&mut self) -> &mut Store<T> {
        let i = match self.by_type.get(&TypeId::of::<T>()) {
            Some(&i) => i,
            None => {
                self.stores.push(Box::new(Store::<T>::default()));
                self.by_type
                    .insert(TypeId::of::<T>(), self.stores.len() - 1);
                self.stores.len() - 1
            }
        };
        self.stores[i]
            .as_any()
            .downcast_mut()
            .expect("store of the right type")
    }

    fn check_usable(&self) -> Result<()> {
        match &self.tx {
            Tx::Failed(cause) => Err(Error::PendingRollback {
                cause: cause.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn begin(&mut self) -> Result<()> {
        self.check_usable()?;
        if matches!(self.tx, Tx::Active { .. }) {
            return Err(Error::TransactionAlreadyBegun);
        }
        self.begin_tx()
    }

    fn begin_tx(&mut self) -> Result<()> {
        let conn = match (&self.conn, &self.options.bind) {
            (Some(c), _) => c.clone(),
            (None, Some(Bind::Engine(e))) => e.connection()?,
            (None, Some(Bind::Connection(c))) => c.clone(),
            (None, None) => return Err(Error::Unbound),
        };
        let owned = !conn.in_transaction();
        if owned {
            conn.begin()?;
        }
        self.conn = Some(conn);
        self.tx = Tx::Active { owned };
        Ok(())
    }

    /// The transaction's connection; begins the transaction when autobegin allows.
    pub(crate) fn connection(&mut self) -> Result<Connection> {
        self.check_usable()?;
        if matches!(self.tx, Tx::None) {
            if !self.options.autobegin {
                return Err(Error::NoTransaction);
            }
            self.begin_tx()?;
        }
        Ok(self
            .conn
            .clone()
            .expect("an active transaction has a connection"))
    }

    pub(crate) fn autoflush(&mut self) -> Result<()> {
        if self.options.autoflush {
            self.flush()
        } else {
            self.check_usable()
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.check_usable()?;
        if !self.stores.iter().any(|s| s.has_changes()) {
            return Ok(());
        }
        let conn = self.connection()?;
        match unit_of_work::run(&mut self.stores, &conn) {
            Ok(()) => {
                self.stores.iter_mut().for_each(|s| s.finish_flush());
                Ok(())
            }
            Err(e) => {
                self.stores.iter_mut().for_each(|s| s.undo_flush());
                // Nothing of a failed flush may remain: the whole transaction is rolled back,
                // as SQLAlchemy does, and the session waits for rollback().
                let _ = conn.rollback();
                self.tx = Tx::Failed(e.to_string());
                Err(e)
            }
        }
    }

    fn release(&mut self) {
        if matches!(self.options.bind, Some(Bind::Engine(_))) {
            self.conn = None;
        }
    }

    fn expire_all(&mut self) {
        self.link.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn commit(&mut self) -> Result<()> {
        self.flush()?;
        if let Tx::Active { owned } = self.tx {
            let conn = self
                .conn
                .clone()
                .expect("active transaction has a connection");
            self.tx = Tx::None;
            if owned {
                if let Err(e) = conn.commit() {
                    self.stores.iter_mut().for_each(|s| s.after_rollback());
                    self.expire_all();
                    self.release();
                    return Err(e.into());
                }
            }
        }
        self.stores.iter_mut().for_each(|s| s.after_commit());
        if self.options.expire_on_commit {
            self.expire_all();
        }
        self.release();
        Ok(())
    }

    fn rollback(&mut self) -> Result<()> {
        let tx = std::mem::replace(&mut self.tx, Tx::None);
        let result = match (tx, &self.conn) {
            (Tx::Active { .. }, Some(conn)) => conn.rollback().map_err(Error::from),
            _ => Ok(()),
        };
        self.stores.iter_mut().for_each(|s| s.after_rollback());
        self.expire_all();
        self.release();
        result
    }

    fn close(&mut self) -> Result<()> {
        let result = match self.tx {
            Tx::Active { owned: true } | Tx::Failed(_) => self.rollback(),
            // A joined external transaction belongs to its owner: closing leaves it alone.
            Tx::Active { owned: false } | Tx::None => {
                self.tx = Tx::None;
                Ok(())
            }
        };
        self.expunge_all();
        self.conn = None;
        result
    }

    fn expunge_all(&mut self) {
        // Objects see their link marked detached; pending ones become transient, the others
        // detached. Expiry state is kept: the old link's epoch no longer moves.
        self.link.detached.store(true, Ordering::Release);
        self.link = SessionLink::new(self.id, self.shared.clone());
        self.stores.clear();
        self.by_type.clear();
    }

    fn add<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        let mut d = obj.lock_data();
        if let Some(other) = d.attached() {
            if other.session_id == self.id {
                return Ok(());
            }
            return Err(Error::AttachedElsewhere {
                table: T::TABLE.name,
                other: other.session_id,
                this: self.id,
            });
        }
        let expired = d.is_expired();
        d.link = Some(self.link.clone());
        d.mark_loaded();
        d.expired = expired;
        if !d.identity {
            d.status = Status::Pending;
            drop(d);
            self.store::<T>().new.push(obj.clone());
            return Ok(());
        }
        // A detached object returns to persistent, with the changes it carries.
        let key = d.value.key().expect("an object with identity has a key");
        let store = self.store::<T>();
        if store.identity.contains_key(&key) {
            d.link = None;
            return Err(Error::IdentityConflict {
                table: T::TABLE.name,
                key: format!("{key:?}"),
            });
        }
        d.status = Status::Persistent;
        let queue = !d.changed.is_empty();
        d.queued = queue;
        drop(d);
        store.identity.insert(key, obj.clone());
        if queue {
            store.dirty.push(obj.clone());
        }
        Ok(())
    }

    fn delete<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        let state = obj.state();
        match state {
            ObjectState::Transient | ObjectState::Pending => {
                return Err(Error::NotPersisted {
                    table: T::TABLE.name,
                })
            }
            ObjectState::Detached => self.add(obj)?,
            ObjectState::Deleted => return Ok(()),
            ObjectState::Persistent => {}
        }
        let mut d = obj.lock_data();
        if d.attached().map(|l| l.session_id) != Some(self.id) {
            return Err(Error::NotInSession {
                table: T::TABLE.name,
            });
        }
        if d.status == Status::Persistent {
            d.status = Status::MarkedDeleted;
            drop(d);
            self.store::<T>().deleted.push(obj.clone());
        }
        Ok(())
    }

    fn expunge<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        let (key, identity) = {
            let mut d = obj.lock_data();
            if d.attached().map(|l| l.session_id) != Some(self.id) {
                return Err(Error::NotInSession {
                    table: T::TABLE.name,
                });
            }
            d.expired = d.is_expired();
            d.link = None;
            d.queued = false;
            if d.status == Status::MarkedDeleted {
                d.status = Status::Persistent;
            }
            (d.value.key(), d.identity)
        };
        let store = self.store::<T>();
        let keep = |o: &Obj<T>| !o.ptr_eq(obj);
        store.new.retain(keep);
        store.dirty.retain(keep);
        store.deleted.retain(keep);
        store.inserted.retain(keep);
        store.removed.retain(keep);
        if let (Some(key), true) = (key, identity) {
            if store.identity.get(&key).is_some_and(|o| o.ptr_eq(obj)) {
                store.identity.remove(&key);
            }
        }
        Ok(())
    }

    fn get<T: Mapped>(&mut self, key: T::Key) -> Result<Option<Obj<T>>> {
        self.check_usable()?;
        if let Some(obj) = self.store::<T>().identity.get(&key) {
            let d = obj.read_data()?;
            if !d.is_expired() {
                return Ok(match d.status {
                    Status::Persistent | Status::MarkedDeleted => Some(obj.clone()),
                    _ => None,
                });
            }
        }
        self.autoflush()?;
        let mut found = self.load::<T>(Select {
            table: T::TABLE,
            filter: Some(key_filter::<T>(&key)),
            order_by: Vec::new(),
            limit: None,
            offset: None,
        })?;
        Ok(found.pop())
    }

    /// Loads an expired object's row again.
    fn refresh<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        let key = {
            let d = obj.read_data()?;
            if !d.is_expired() {
                return Ok(());
            }
            d.value.key().ok_or(Error::NotPersisted {
                table: T::TABLE.name,
            })?
        };
        let found = self.load::<T>(Select {
            table: T::TABLE,
            filter: Some(key_filter::<T>(&key)),
            order_by: Vec::new(),
            limit: None,
            offset: None,
        })?;
        if found.is_empty() {
            return Err(Error::ObjectDeleted {
                table: T::TABLE.name,
                key: format!("{key:?}"),
            });
        }
        if obj.is_expired() {
            // Not the object the identity map holds for this key: refresh it directly.
            let fresh = found[0].read_data()?.value.clone_row();
            let mut d = obj.lock_data();
            d.value = fresh;
            d.mark_loaded();
        }
        Ok(())
    }

    /// Runs a SELECT of all columns of `T` and returns its rows as identity-mapped objects.
    pub(crate) fn load<T: Mapped>(&mut self, select: Select) -> Result<Vec<Obj<T>>> {
        let conn = self.connection()?;
        let link = self.link.clone();
        let store = self.store::<T>();
        let mut out = Vec::new();
        conn.query_statement(Statement::Select(select), |row| {
            out.push(object_from_row(store, &link, row)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// The identity-mapped object for one row: the object already held for its key (reloaded if
/// expired), or a new persistent object.
fn object_from_row<T: Mapped>(
    store: &mut Store<T>,
    link: &Arc<SessionLink>,
    row: &Row<'_>,
) -> orm_core::error::Result<Obj<T>> {
    let key = T::key_from_row(row, 0)?;
    if let Some(obj) = store.identity.get(&key) {
        let mut d = obj.lock_data();
        if d.is_expired() {
            d.value = T::from_row(row, 0)?;
            d.changed = ColumnSet::default();
            d.mark_loaded();
        }
        drop(d);
        return Ok(obj.clone());
    }
    let obj = Obj::with_data(ObjData {
        value: T::from_row(row, 0)?,
        link: Some(link.clone()),
        status: Status::Persistent,
        identity: true,
        epoch: link.epoch(),
        expired: false,
        changed: ColumnSet::default(),
        queued: false,
    });
    store.identity.insert(key, obj.clone());
    Ok(obj)
}
