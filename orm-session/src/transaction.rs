//! The session's transaction: how it began (on its own connection, or joined to a caller's
//! transaction), nested savepoints, and flush / commit / rollback / close.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use orm_core::engine::Connection;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::identity_map::Mark;
use crate::sessionmaker::{Bind, JoinTransactionMode};
use crate::unit_of_work;

/// Where the session's transaction stands.
pub(crate) enum Tx {
    None,
    Active(TxKind),
    /// A flush failed and the database transaction was rolled back; `rollback()` is required.
    Failed(String),
}

/// How the session's transaction relates to its connection's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxKind {
    /// The session began the transaction: commit commits, rollback rolls back.
    Owned,
    /// Joined a caller's transaction: commit only flushes, rollback rolls it back, close
    /// leaves it alone.
    RollbackOnly,
    /// Joined a caller's transaction and controls it: commit commits, rollback and close
    /// roll back.
    ControlFully,
    /// Joined a caller's transaction through a SAVEPOINT of its own: commit releases it,
    /// rollback and close roll back to it; the caller's transaction goes on.
    Savepoint(String),
}

/// A SAVEPOINT of the session, from [`Session::begin_nested`](crate::Session::begin_nested).
pub(crate) struct Frame {
    pub(crate) name: String,
    /// Unique within the session, so a token can only end its own savepoint.
    pub(crate) serial: u64,
    /// Each store's log lengths when the savepoint began.
    pub(crate) marks: HashMap<TypeId, Mark>,
}

impl Core {
    pub(crate) fn check_usable(&self) -> Result<()> {
        match &self.tx {
            Tx::Failed(cause) => Err(Error::PendingRollback {
                cause: cause.clone(),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn begin(&mut self) -> Result<()> {
        self.check_usable()?;
        if matches!(self.tx, Tx::Active(_)) {
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
        let kind = if !conn.in_transaction() {
            conn.begin()?;
            TxKind::Owned
        } else {
            use JoinTransactionMode as M;
            match self.options.join_transaction_mode {
                M::ConservativeSavepoint if conn.in_savepoint() => self.join_savepoint(&conn)?,
                M::ConservativeSavepoint | M::RollbackOnly => TxKind::RollbackOnly,
                M::CreateSavepoint => self.join_savepoint(&conn)?,
                M::ControlFully => TxKind::ControlFully,
            }
        };
        self.conn = Some(conn);
        self.tx = Tx::Active(kind);
        Ok(())
    }

    fn join_savepoint(&self, conn: &Connection) -> Result<TxKind> {
        let name = format!("orm_session_{}", self.id);
        conn.savepoint(&name)?;
        Ok(TxKind::Savepoint(name))
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

    pub(crate) fn flush(&mut self) -> Result<()> {
        self.check_usable()?;
        if self.orphans.is_empty()
            && self.links.is_empty()
            && !self.stores.iter().any(|s| s.has_changes())
        {
            return Ok(());
        }
        let conn = self.connection()?;
        let result = unit_of_work::run(self, &conn);
        if let Err(e) = result {
            self.stores.iter_mut().for_each(|s| s.undo_flush());
            return Err(self.flush_failed(&conn, e));
        }
        let in_savepoint = !self.frames.is_empty();
        self.stores
            .iter_mut()
            .for_each(|s| s.finish_flush(in_savepoint, &self.link));
        Ok(())
    }

    /// Nothing of a failed flush may remain. Inside a savepoint, the savepoint is rolled back
    /// (in the database and in the session) and the transaction goes on; otherwise the whole
    /// transaction is rolled back, as SQLAlchemy does, and the session waits for rollback().
    fn flush_failed(&mut self, conn: &Connection, e: Error) -> Error {
        if let Some(frame) = self.frames.pop() {
            return match conn.rollback_to_savepoint(&frame.name) {
                Ok(()) => {
                    self.rollback_stores_to(&frame.marks, true);
                    e
                }
                Err(db) => {
                    self.fail(conn, &e);
                    Error::from(db)
                }
            };
        }
        self.fail(conn, &e);
        e
    }

    fn fail(&mut self, conn: &Connection, e: &Error) {
        let _ = match &self.tx {
            Tx::Active(TxKind::Savepoint(name)) => conn.rollback_to_savepoint(name),
            _ => conn.rollback(),
        };
        self.frames.clear();
        self.tx = Tx::Failed(e.to_string());
    }

    fn rollback_stores_to(&mut self, marks: &HashMap<TypeId, Mark>, expire: bool) {
        // Removals from collections are undone with everything else (the parents reload).
        self.orphans.clear();
        self.links.clear();
        for (ty, store) in self.types.iter().zip(self.stores.iter_mut()) {
            store.rollback_to(marks.get(ty).copied().unwrap_or_default(), expire);
        }
    }

    /// Returns a connection the session took from an engine to its pool.
    fn release(&mut self) {
        if matches!(self.options.bind, Some(Bind::Engine(_))) {
            self.conn = None;
        }
    }

    pub(crate) fn expire_all(&mut self) {
        let session = self.session_link().clone();
        session.epoch.fetch_add(1, Ordering::AcqRel);
        self.link = crate::object::Link::current(&session);
    }

    pub(crate) fn commit(&mut self) -> Result<()> {
        self.flush()?;
        if let Tx::Active(kind) = std::mem::replace(&mut self.tx, Tx::None) {
            let conn = self
                .conn
                .clone()
                .expect("active transaction has a connection");
            self.frames.clear();
            let done = match kind {
                TxKind::Owned | TxKind::ControlFully => conn.commit(),
                TxKind::RollbackOnly => Ok(()),
                TxKind::Savepoint(name) => conn.release_savepoint(&name),
            };
            if let Err(e) = done {
                self.rollback_stores_to(&HashMap::new(), true);
                self.expire_all();
                self.release();
                return Err(e.into());
            }
        }
        self.stores.iter_mut().for_each(|s| s.after_commit());
        if self.options.expire_on_commit {
            self.expire_all();
        }
        self.release();
        Ok(())
    }

    pub(crate) fn rollback(&mut self) -> Result<()> {
        self.rollback_then(true)
    }

    /// Rolls back; `confirm: false` does not wait for the database's reply to a ROLLBACK of
    /// the whole transaction (see `Connection::rollback_nowait`), as `close` does.
    fn rollback_then(&mut self, confirm: bool) -> Result<()> {
        let tx = std::mem::replace(&mut self.tx, Tx::None);
        self.frames.clear();
        let result = match (tx, &self.conn) {
            (Tx::Active(TxKind::Savepoint(name)), Some(conn)) => conn.rollback_to_savepoint(&name),
            (Tx::Active(_), Some(conn)) if confirm => conn.rollback(),
            (Tx::Active(_), Some(conn)) => {
                conn.rollback_nowait();
                Ok(())
            }
            _ => Ok(()),
        };
        self.rollback_stores_to(&HashMap::new(), true);
        self.expire_all();
        self.release();
        result.map_err(Error::from)
    }

    pub(crate) fn close(&mut self) -> Result<()> {
        // As SQLAlchemy's close(), objects leave as they are: what they loaded is not expired
        // and unflushed changes stay in them. What the transaction wrote is undone in the
        // session as the rollback undoes it in the database: objects it inserted become
        // transient, objects it deleted are persistent (then detached) again. After a failed
        // flush the full rollback below comes first: it restores what the flush changed.
        let failed = matches!(self.tx, Tx::Failed(_));
        if !failed {
            self.rollback_stores_to(&HashMap::new(), false);
            self.expunge_all();
        }
        let result = match self.tx {
            Tx::Active(TxKind::RollbackOnly) => {
                // The caller's transaction is the caller's to end, but the session's own
                // savepoints inside it are undone.
                self.tx = Tx::None;
                match (self.frames.first(), &self.conn) {
                    (Some(outermost), Some(conn)) => {
                        let result = conn.rollback_to_savepoint(&outermost.name);
                        self.frames.clear();
                        result.map_err(Error::from)
                    }
                    _ => Ok(()),
                }
            }
            // Like SQLAlchemy's reset on return to the pool, whose errors close() does not
            // raise either; the reply comes with the connection's next statement.
            Tx::Active(_) | Tx::Failed(_) => self.rollback_then(false),
            Tx::None => Ok(()),
        };
        if failed {
            self.expunge_all();
        }
        self.conn = None;
        result
    }

    /// Opens a SAVEPOINT (flushing first); returns its depth and serial number.
    pub(crate) fn begin_nested(&mut self) -> Result<(usize, u64)> {
        self.flush()?;
        let conn = self.connection()?;
        self.savepoint_serial += 1;
        let serial = self.savepoint_serial;
        let name = format!("orm_sp_{}_{}", self.id, serial);
        conn.savepoint(&name)?;
        let marks = self
            .types
            .iter()
            .zip(&self.stores)
            .map(|(ty, store)| (*ty, store.mark()))
            .collect();
        self.frames.push(Frame {
            name,
            serial,
            marks,
        });
        Ok((self.frames.len(), serial))
    }

    /// Whether the savepoint at `depth` is still the one numbered `serial`.
    fn is_open(&self, depth: usize, serial: u64) -> bool {
        depth >= 1
            && self
                .frames
                .get(depth - 1)
                .is_some_and(|f| f.serial == serial)
            && self.conn.is_some()
    }

    /// Releases the savepoint at `depth` (and any opened inside it), flushing first.
    pub(crate) fn commit_nested(&mut self, depth: usize, serial: u64) -> Result<()> {
        if !self.is_open(depth, serial) {
            return Err(Error::InactiveSavepoint);
        }
        self.flush()?;
        if !self.is_open(depth, serial) {
            // The flush failed inside it and rolled it back already.
            return Err(Error::InactiveSavepoint);
        }
        let name = self.frames[depth - 1].name.clone();
        self.frames.truncate(depth - 1);
        let conn = self.conn.clone().ok_or(Error::InactiveSavepoint)?;
        conn.release_savepoint(&name).map_err(Error::from)
    }

    /// Rolls back to the savepoint at `depth`, in the database and in the session.
    pub(crate) fn rollback_nested(&mut self, depth: usize, serial: u64) -> Result<()> {
        if !self.is_open(depth, serial) {
            // Already ended (by a failed flush, the end of the transaction, or close).
            return Ok(());
        }
        let frame = self
            .frames
            .drain(depth - 1..)
            .next()
            .expect("frame at depth");
        let conn = self.conn.clone().ok_or(Error::InactiveSavepoint)?;
        conn.rollback_to_savepoint(&frame.name)?;
        self.rollback_stores_to(&frame.marks, true);
        Ok(())
    }
}
