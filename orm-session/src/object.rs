//! `Obj<T>`: the handle through which users and the session share one mapped object.
//!
//! An `Obj` is a cheap-to-clone, thread-safe handle (`Arc`) on the object's row and its
//! bookkeeping. Two handles are the same object when [`Obj::ptr_eq`] says so; the identity
//! map guarantees one object per primary key per session.
//!
//! Writes go through [`Obj::set`] or [`Obj::modify`], which record WHICH columns changed and
//! queue the object once in its session's dirty list, so a flush visits changed objects only.
//! Expiry is a comparison of epochs: the session bumps one counter at commit, and an object
//! loaded under an older epoch reloads on its next read. No operation walks every object.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use orm_core::expr::Column;
use orm_core::model::{ColumnSet, Mapped};
use orm_core::value::ColumnType;
use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::session::Shared;
use crate::state::{ObjectState, Status};

/// What an object knows of the session it is attached to. A session replaces its link when it
/// is closed, so detaching every object is one store of `detached`.
pub(crate) struct SessionLink {
    pub(crate) session_id: u64,
    pub(crate) shared: Weak<Shared>,
    /// Bumped when the session expires all objects (commit, rollback).
    pub(crate) epoch: AtomicU64,
    /// Set when the session is closed or all objects are expunged.
    pub(crate) detached: AtomicBool,
}

impl SessionLink {
    pub(crate) fn new(session_id: u64, shared: Weak<Shared>) -> Arc<Self> {
        Arc::new(SessionLink {
            session_id,
            shared,
            epoch: AtomicU64::new(0),
            detached: AtomicBool::new(false),
        })
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
}

/// The object's row and its session bookkeeping, behind one lock.
pub(crate) struct ObjData<T> {
    pub(crate) value: T,
    pub(crate) link: Option<Arc<SessionLink>>,
    pub(crate) status: Status,
    /// Whether the object has a row in the database (persistent, deleted or detached).
    pub(crate) identity: bool,
    /// The link epoch at which `value` was loaded.
    pub(crate) epoch: u64,
    /// Expired explicitly (or while being detached).
    pub(crate) expired: bool,
    /// Columns expired explicitly, when not the whole row (`Session::expire_columns`).
    pub(crate) expired_columns: Option<Box<ColumnSet>>,
    /// Columns changed since the last flush.
    pub(crate) changed: ColumnSet,
    /// Whether the object is in its session's dirty list.
    pub(crate) queued: bool,
}

impl<T> ObjData<T> {
    pub(crate) fn attached(&self) -> Option<&Arc<SessionLink>> {
        self.link
            .as_ref()
            .filter(|l| !l.detached.load(Ordering::Acquire))
    }

    pub(crate) fn is_expired(&self) -> bool {
        self.identity && (self.expired_columns.is_some() || self.is_wholly_expired())
    }

    /// Expired as a whole (not only some columns).
    pub(crate) fn is_wholly_expired(&self) -> bool {
        self.identity
            && (self.expired || self.link.as_ref().is_some_and(|l| self.epoch < l.epoch()))
    }

    pub(crate) fn state(&self) -> ObjectState {
        match (self.attached(), self.identity) {
            (None, true) => ObjectState::Detached,
            (None, false) => ObjectState::Transient,
            (Some(_), _) => match self.status {
                Status::Pending => ObjectState::Pending,
                Status::Persistent | Status::MarkedDeleted => ObjectState::Persistent,
                Status::Deleted => ObjectState::Deleted,
            },
        }
    }

    /// Marks the object fresh as of the link's current epoch.
    pub(crate) fn mark_loaded(&mut self) {
        self.expired = false;
        self.expired_columns = None;
        self.epoch = self.link.as_ref().map_or(0, |l| l.epoch());
    }
}

/// A handle on a mapped object, shared between the user and the session.
///
/// # Examples
///
/// ```
/// # use orm::__doc::*;
/// # fn main() -> Result<(), orm_session::Error> {
/// # let (_engine, factory) = setup();
/// let mut session = factory.session();
/// let ed = session.add(User::new("ed", 30))?;
/// assert_eq!(ed.state(), ObjectState::Pending);
/// session.flush()?;
/// assert_eq!(ed.state(), ObjectState::Persistent);
/// ed.set(User::age, 31)?;                 // records that `age` changed
/// ed.modify(|u| u.name.push_str("die"))?; // records that `name` changed
/// assert_eq!(ed.read()?.name, "eddie");
/// # Ok(()) }
/// ```
pub struct Obj<T> {
    pub(crate) inner: Arc<RwLock<ObjData<T>>>,
}

impl<T> Clone for Obj<T> {
    fn clone(&self) -> Self {
        Obj {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Mapped + fmt::Debug> fmt::Debug for Obj<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.try_read() {
            Some(d) => f
                .debug_struct("Obj")
                .field("state", &d.state())
                .field("value", &d.value)
                .finish(),
            None => f.write_str("Obj(<borrowed>)"),
        }
    }
}

/// A read guard on an object's row, from [`Obj::read`]. Drop it before calling the session.
pub struct ObjRef<'a, T>(MappedRwLockReadGuard<'a, T>);

impl<T> Deref for ObjRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Mapped> From<T> for Obj<T> {
    fn from(value: T) -> Self {
        Obj::new(value)
    }
}

impl<T: Mapped> From<&Obj<T>> for Obj<T> {
    fn from(obj: &Obj<T>) -> Self {
        obj.clone()
    }
}

impl<T: Mapped> Obj<T> {
    /// A transient object: in no session, never saved.
    pub fn new(value: T) -> Self {
        Obj::with_data(ObjData {
            value,
            link: None,
            status: Status::Pending,
            identity: false,
            epoch: 0,
            expired: false,
            expired_columns: None,
            changed: ColumnSet::default(),
            queued: false,
        })
    }

    pub(crate) fn with_data(data: ObjData<T>) -> Self {
        Obj {
            inner: Arc::new(RwLock::new(data)),
        }
    }

    pub(crate) fn downgrade(&self) -> Weak<RwLock<ObjData<T>>> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(slot: &Weak<RwLock<ObjData<T>>>) -> Option<Obj<T>> {
        slot.upgrade().map(|inner| Obj { inner })
    }

    /// Whether two handles are the same object.
    pub fn ptr_eq(&self, other: &Obj<T>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The object's state (transient, pending, persistent, deleted, detached).
    pub fn state(&self) -> ObjectState {
        self.inner.read().state()
    }

    /// The identity key: the primary key of the object's row, once it has one.
    /// Never issues SQL, even for an expired object.
    pub fn identity_key(&self) -> Option<T::Key> {
        let d = self.inner.read();
        if d.identity {
            d.value.key()
        } else {
            None
        }
    }

    /// The id of the session the object is attached to, if any.
    pub fn session_id(&self) -> Option<u64> {
        self.inner.read().attached().map(|l| l.session_id)
    }

    /// Whether the object's attributes will be reloaded on the next read.
    pub fn is_expired(&self) -> bool {
        self.inner.read().is_expired()
    }

    /// Whether the object has changes not yet flushed.
    pub fn is_modified(&self) -> bool {
        !self.inner.read().changed.is_empty()
    }

    pub(crate) fn write(&self) -> Result<RwLockWriteGuard<'_, ObjData<T>>> {
        self.inner.try_write().ok_or(Error::Borrowed {
            table: T::TABLE.name,
        })
    }

    /// Locks the object for session bookkeeping. Session operations run on the session's
    /// thread; a guard from [`Obj::read`] held across a session call would deadlock, so this
    /// panics with a clear message instead of waiting forever.
    pub(crate) fn lock_data(&self) -> RwLockWriteGuard<'_, ObjData<T>> {
        self.inner
            .try_write_for(std::time::Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "object of table `{}` stayed borrowed during a session operation: \
                 drop guards from Obj::read before calling the session",
                    T::TABLE.name
                )
            })
    }

    pub(crate) fn read_data(&self) -> Result<RwLockReadGuard<'_, ObjData<T>>> {
        self.inner.try_read().ok_or(Error::Borrowed {
            table: T::TABLE.name,
        })
    }

    /// Reads the object's row, loading it first if it is expired.
    ///
    /// Errors with [`Error::DetachedInstance`] when the object is expired and detached, and
    /// with [`Error::Borrowed`] while a [`modify`](Self::modify) closure runs on it.
    pub fn read(&self) -> Result<ObjRef<'_, T>> {
        self.load()?;
        let guard = self.read_data()?;
        Ok(ObjRef(RwLockReadGuard::map(guard, |d| &d.value)))
    }

    /// A copy of one column's value.
    pub fn get<V: ColumnType>(&self, column: Column<T, V>) -> Result<V> {
        Ok(column.get(&*self.read()?).clone())
    }

    /// Sets one column, recording the change when the value differs.
    pub fn set<V: ColumnType>(&self, column: Column<T, V>, value: impl Into<V>) -> Result<()> {
        self.load()?;
        let value = value.into();
        let mut d = self.write()?;
        if *column.get(&d.value) == value {
            return Ok(());
        }
        if d.identity && T::TABLE.primary_key.contains(&column.index()) {
            return Err(Error::PrimaryKeyChanged {
                table: T::TABLE.name,
            });
        }
        *column.get_mut(&mut d.value) = value;
        let mut changed = ColumnSet::default();
        changed.insert(column.index());
        self.record(d, &changed)
    }

    /// Changes the row in a closure; the columns that differ afterwards are recorded.
    ///
    /// The closure must not call the session (the object is locked while it runs).
    pub fn modify<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        self.load()?;
        let mut d = self.write()?;
        let before = d.value.clone_row();
        let r = f(&mut d.value);
        let changed = d.value.changed_columns(&before);
        if changed.is_empty() {
            return Ok(r);
        }
        if d.identity && T::TABLE.primary_key.iter().any(|&c| changed.contains(c)) {
            d.value = before;
            return Err(Error::PrimaryKeyChanged {
                table: T::TABLE.name,
            });
        }
        self.record(d, &changed)?;
        Ok(r)
    }

    /// Adds `changed` to the object's change set and queues it in its session's dirty list the
    /// first time it changes after a flush. The object lock is released before the session's.
    fn record(&self, mut d: RwLockWriteGuard<'_, ObjData<T>>, changed: &ColumnSet) -> Result<()> {
        d.changed.union(changed);
        if d.queued || d.status != Status::Persistent {
            return Ok(());
        }
        let Some(shared) = d.attached().and_then(|l| l.shared.upgrade()) else {
            return Ok(());
        };
        d.queued = true;
        drop(d);
        shared.queue_dirty(self.clone());
        Ok(())
    }

    /// Loads the row if the object is expired, through the session it is attached to.
    fn load(&self) -> Result<()> {
        let link = {
            let d = self.read_data()?;
            if !d.is_expired() {
                return Ok(());
            }
            d.attached().cloned()
        };
        let shared = link
            .and_then(|l| l.shared.upgrade())
            .ok_or(Error::DetachedInstance {
                table: T::TABLE.name,
            })?;
        shared.refresh(self)
    }
}
