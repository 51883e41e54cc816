//! The five object states of the reference, and the session-internal status behind them.

/// The state of an object relative to a session, as SQLAlchemy defines it.
///
/// - `Transient`: not in a session and never saved.
/// - `Pending`: added to a session, not yet flushed.
/// - `Persistent`: in a session with a database identity.
/// - `Deleted`: its DELETE was flushed; the transaction has not committed yet.
/// - `Detached`: has a database identity but is in no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectState {
    /// Not in a session and never saved.
    Transient,
    /// Added to a session and not yet flushed.
    Pending,
    /// In a session, with a row in the database.
    Persistent,
    /// Deleted by a flush within the current transaction.
    Deleted,
    /// Has a row in the database but belongs to no session.
    Detached,
}

/// What the session knows about an attached object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Added, waiting for its INSERT.
    Pending,
    /// Has a row; may carry changes.
    Persistent,
    /// Marked for deletion; still persistent until flushed.
    MarkedDeleted,
    /// Its DELETE was flushed in the current transaction.
    Deleted,
}

impl Status {
    /// The status as stored in an object's bookkeeping word (two bits at `STATUS_SHIFT`).
    #[inline]
    pub(crate) const fn bits(self) -> u64 {
        (self as u64) << crate::object::STATUS_SHIFT
    }

    #[inline]
    pub(crate) const fn from_bits(bits: u64) -> Status {
        match (bits >> crate::object::STATUS_SHIFT) & 0b11 {
            0 => Status::Pending,
            1 => Status::Persistent,
            2 => Status::MarkedDeleted,
            _ => Status::Deleted,
        }
    }
}
