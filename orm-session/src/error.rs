//! The error type of sessions: what went wrong, naming the table and key involved.

/// Errors of the session, its objects and queries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An engine, SQL or decoding error.
    #[error(transparent)]
    Core(#[from] orm_core::error::Error),
    /// A flush failed; the database transaction was rolled back and nothing of the flush was
    /// written. The session requires [`rollback`](crate::Session::rollback) before further use.
    #[error("flush of table `{table}` failed and the transaction was rolled back: {cause}")]
    Flush {
        /// The table whose statement failed.
        table: &'static str,
        /// Why the statement failed (a constraint violation names the constraint).
        cause: orm_core::error::Error,
    },
    /// A previous flush failed; `rollback()` must be called before the session is used again.
    #[error("this session's transaction was rolled back after a failed flush ({cause}); call rollback() before using the session again")]
    PendingRollback {
        /// The message of the failure.
        cause: String,
    },
    /// An UPDATE or DELETE matched a different number of rows than expected: the row was
    /// changed or deleted by another transaction since it was loaded (for a table with a
    /// `#[mapped(version)]` column, its version moved on). Nothing of the flush was written:
    /// the transaction was rolled back and the session requires
    /// [`rollback`](crate::Session::rollback), after which the objects reload what the other
    /// transaction committed.
    #[error(
        "stale data: {statement} on table `{table}` expected to match {expected} row(s) but \
         matched {matched}; {} was changed or deleted by another transaction since it was loaded",
        .key.as_ref().map_or_else(|| "a row".to_owned(), |k| format!("the row with key {k}"))
    )]
    StaleData {
        /// The table.
        table: &'static str,
        /// `UPDATE` or `DELETE` (`INSERT` when RETURNING gave too few keys).
        statement: &'static str,
        /// The primary key (its `Debug` form) of the first stale row, when it is known: always
        /// when a single row was expected (every UPDATE on SQLite is a statement of its own)
        /// or when the batch matched nothing; for a batch that matched some of its rows, when
        /// one SELECT after the failure can tell the stale row apart (see the unit of work).
        key: Option<String>,
        /// Rows the flush expected to match.
        expected: u64,
        /// Rows the database matched.
        matched: u64,
    },
    /// The session has no engine or connection to use.
    #[error("the session is not bound to an engine or connection; set one with sessionmaker().bind(..) or configure(..)")]
    Unbound,
    /// Autobegin is off and no transaction was begun.
    #[error("autobegin is disabled and no transaction is begun; call begin() first")]
    NoTransaction,
    /// `begin()` was called while a transaction is in progress.
    #[error("a transaction is already begun on this session")]
    TransactionAlreadyBegun,
    /// The object belongs to another session.
    #[error("object of table `{table}` is attached to session {other}; expunge it there before adding it to session {this}")]
    AttachedElsewhere {
        /// The object's table.
        table: &'static str,
        /// The session the object belongs to.
        other: u64,
        /// The session it was given to.
        this: u64,
    },
    /// Another object with the same primary key is already in the session.
    #[error("another object of table `{table}` with key {key} is already in this session")]
    IdentityConflict {
        /// The table.
        table: &'static str,
        /// The primary key.
        key: String,
    },
    /// The object is not persistent (transient or pending) for an operation that needs a row.
    #[error("object of table `{table}` is not persisted")]
    NotPersisted {
        /// The table.
        table: &'static str,
    },
    /// The object is not in this session.
    #[error("object of table `{table}` is not in this session")]
    NotInSession {
        /// The table.
        table: &'static str,
    },
    /// The object is expired and detached: its attributes cannot be loaded.
    #[error("object of table `{table}` is expired and detached from its session; its attributes cannot be loaded")]
    DetachedInstance {
        /// The table.
        table: &'static str,
    },
    /// The object's row no longer exists.
    #[error("the row of table `{table}` with key {key} no longer exists")]
    ObjectDeleted {
        /// The table.
        table: &'static str,
        /// The primary key.
        key: String,
    },
    /// The object is borrowed by a guard that is still alive.
    #[error("object of table `{table}` is borrowed by a live guard; drop it first")]
    Borrowed {
        /// The table.
        table: &'static str,
    },
    /// An attempt to change the primary key of a persistent object.
    #[error("the primary key of a persistent object of table `{table}` cannot be changed")]
    PrimaryKeyChanged {
        /// The table.
        table: &'static str,
    },
    /// A nested transaction (savepoint) that already ended, or of another session.
    #[error("this nested transaction (savepoint) is no longer active")]
    InactiveSavepoint,
    /// `make_transient_to_detached` was given an object that is not transient.
    #[error("object of table `{table}` is not transient")]
    NotTransient {
        /// The table.
        table: &'static str,
    },
    /// The object has no primary key value, so it cannot have a database identity.
    #[error("object of table `{table}` has no primary key value")]
    NoIdentity {
        /// The table.
        table: &'static str,
    },
    /// `merge_without_load` was given an object carrying unflushed changes.
    #[error("merge without load needs an object of table `{table}` with no unflushed changes")]
    MergeDirtyWithoutLoad {
        /// The table.
        table: &'static str,
    },
    /// `Synchronize::Evaluate` was asked for criteria that cannot be evaluated in Rust.
    #[error("the criteria of a bulk statement on table `{table}` cannot be evaluated in Rust; use Synchronize::Fetch")]
    NotEvaluable {
        /// The table.
        table: &'static str,
    },
    /// A bulk UPDATE or DELETE was asked with LIMIT or OFFSET.
    #[error("a bulk update or delete on table `{table}` cannot have LIMIT or OFFSET")]
    BulkWithLimit {
        /// The table.
        table: &'static str,
    },
    /// `join::<T>()` found no foreign key between `T` and the tables of the query.
    #[error(
        "no foreign key joins table `{to}` to {from:?}; use join_on with an explicit condition"
    )]
    NoJoinPath {
        /// The table joined.
        to: &'static str,
        /// The tables already in the query.
        from: Vec<&'static str>,
    },
    /// `join::<T>()` found several foreign keys to join along.
    #[error(
        "several foreign keys could join table `{to}`; use join_on with an explicit condition"
    )]
    AmbiguousJoin {
        /// The table joined.
        to: &'static str,
    },
    /// A relationship found no foreign key (or several) from the child's table to the
    /// parent's primary key.
    #[error(
        "relationship `{relationship}`: {found} foreign keys of table `{child}` reference the \
         primary key of table `{parent}`; exactly one must (name it with `via = \"column\"`)"
    )]
    RelationshipForeignKey {
        /// `Struct.field` of the relationship.
        relationship: String,
        /// The table holding the foreign key.
        child: &'static str,
        /// The referenced table.
        parent: &'static str,
        /// How many foreign keys matched.
        found: usize,
    },
    /// A child's foreign key would have to be NULL (removed from its parent's collection,
    /// or its reference cleared), but the column is NOT NULL.
    #[error(
        "column `{table}.{column}` references `{parent}` and is NOT NULL: a row of `{table}` \
         cannot be left without a parent; delete it, give it another parent, or declare \
         `cascade = \"all, delete-orphan\"` on the collection"
    )]
    NotNullForeignKey {
        /// The child's table.
        table: &'static str,
        /// The foreign-key column.
        column: &'static str,
        /// The parent's table.
        parent: &'static str,
    },
    /// A row was deleted while rows of another table reference it through a NOT NULL foreign
    /// key, and the relationship has no delete cascade. Nothing was written.
    #[error(
        "cannot delete a row of `{table}`: rows of `{child}` reference it through the NOT NULL \
         column `{child}.{column}`, and the relationship has no delete cascade (declare \
         `cascade = \"all\"`, or delete or move the children first)"
    )]
    DependentRows {
        /// The parent's table.
        table: &'static str,
        /// The child's table.
        child: &'static str,
        /// The child's foreign-key column.
        column: &'static str,
    },
    /// Objects of one table reference each other in a cycle (an object that is its own
    /// parent or ancestor), so no order of INSERTs can fill in their keys.
    #[error("objects of table `{table}` reference each other in a cycle (an object is its own ancestor)")]
    CircularRows {
        /// The table.
        table: &'static str,
    },
    /// An association row of a many-to-many relationship names an object that has no row:
    /// it was never added to the session (the relationship has no save-update cascade).
    #[error(
        "relationship `{relationship}`: an object of table `{table}` is not in the session, so \
         its row of the association table `{secondary}` cannot be written; add it to the \
         session, or declare the relationship with the save-update cascade"
    )]
    UnsavedRelated {
        /// `table.field` of the relationship.
        relationship: String,
        /// The table of the object without a row.
        table: &'static str,
        /// The association table.
        secondary: &'static str,
    },
    /// A many-to-many collection (or a `delete-orphan` removal) of an object that has a row
    /// but no session was changed: there is no session to record the change in.
    #[error(
        "relationship `{relationship}`: the object is detached, so this change to its \
         collection could not be saved; add or merge it into a session first"
    )]
    DetachedCollection {
        /// `table.field` of the relationship.
        relationship: String,
    },
    /// Tables that reference each other in a cycle both have rows to insert or delete in one
    /// flush; no statement order satisfies their foreign keys. Flush them separately.
    #[error("tables {tables:?} reference each other through foreign keys in a cycle, and one flush has rows of several of them to insert or delete; flush them separately")]
    CircularDependency {
        /// The tables of the cycle.
        tables: Vec<&'static str>,
    },
    /// A query expected one row and found none.
    #[error("no row of table `{table}` was found")]
    NoResultFound {
        /// The table.
        table: &'static str,
    },
    /// A query expected one row and found several.
    #[error("more than one row of table `{table}` was found")]
    MultipleResultsFound {
        /// The table.
        table: &'static str,
    },
}

/// Shorthand for results of the session.
pub type Result<T, E = Error> = std::result::Result<T, E>;
