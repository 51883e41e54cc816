//! The session's state behind its lock: options, transaction, stores; and what it does to
//! objects (add, delete, expunge, merge, expire, refresh) and to rows it loads.

use std::any::TypeId;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use orm_core::engine::row::Row;
use orm_core::engine::Connection;
use orm_core::model::{ColumnSet, Mapped, PrimaryKey};
use orm_core::sql::ast::{BinOp, DeleteWhere, Expr, Select, Statement, UpdateWhere};
use orm_core::sql::evaluate::{evaluable, evaluate};
use orm_core::value::Value;

use crate::error::{Error, Result};
use crate::identity_map::{AnyStore, Store};
use crate::object::{Link, Obj, ObjData, SessionLink};
use crate::query::Synchronize;
use crate::relation::many::{Cleanup, LinkChange};
use crate::relation::relations_of;
use crate::session::Shared;
use crate::sessionmaker::SessionOptions;
use crate::state::{ObjectState, Status};
use crate::transaction::{Frame, Tx};
use crate::unit_of_work::relations::Orphan;

pub(crate) struct Core {
    pub(crate) id: u64,
    pub(crate) options: SessionOptions,
    /// The link of the objects loaded in the current epoch (its session is this session's).
    pub(crate) link: Arc<Link>,
    pub(crate) shared: Weak<Shared>,
    pub(crate) conn: Option<Connection>,
    pub(crate) tx: Tx,
    /// Open savepoints of the session, outermost first.
    pub(crate) frames: Vec<Frame>,
    /// Serial number of the last savepoint opened.
    pub(crate) savepoint_serial: u64,
    pub(crate) stores: Vec<Box<dyn AnyStore>>,
    /// The mapped type of each store, by position: a linear scan beats hashing for the few
    /// types one session uses.
    pub(crate) types: Vec<TypeId>,
    /// Children removed from `delete-orphan` collections since the last flush.
    pub(crate) orphans: Vec<Box<dyn Orphan>>,
    /// Association rows to insert or delete at the next flush.
    pub(crate) links: Vec<LinkChange>,
    /// During a flush: association rows of deleted objects, per association table and
    /// foreign key.
    pub(crate) link_cleanup: Vec<Cleanup>,
}

/// The objects merged so far by one `merge`: the source's address, and its copy.
pub(crate) type Merged = Vec<(usize, Box<dyn std::any::Any + Send>)>;

/// `table.pk1 = $1 AND table.pk2 = $2`
pub(crate) fn key_filter<T: Mapped>(key: &T::Key) -> Expr {
    let t = T::TABLE;
    let mut terms: Vec<Expr> = t
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
        terms.pop().expect("one term")
    } else {
        Expr::And(terms)
    }
}

/// `table.pk IN ($1, $2, ..)`, or an OR of key filters for a composite key.
pub(crate) fn keys_filter<T: Mapped>(keys: &[T::Key]) -> Expr {
    let t = T::TABLE;
    if let [pk] = t.primary_key {
        return Expr::InList {
            expr: Box::new(Expr::Column {
                table: t.name,
                column: t.columns[*pk].name,
            }),
            list: keys
                .iter()
                .flat_map(|k| k.values())
                .map(Expr::Param)
                .collect(),
            negated: false,
        };
    }
    Expr::Or(keys.iter().map(key_filter::<T>).collect())
}

fn select_by_key<T: Mapped>(key: &T::Key) -> Select {
    let mut select = Select::of(T::TABLE);
    select.filter = Some(key_filter::<T>(key));
    select
}

impl Core {
    pub(crate) fn new(id: u64, options: SessionOptions, shared: Weak<Shared>) -> Core {
        Core {
            id,
            options,
            link: Link::current(&SessionLink::new(id, shared.clone())),
            shared,
            conn: None,
            tx: Tx::None,
            frames: Vec::new(),
            savepoint_serial: 0,
            stores: Vec::new(),
            types: Vec::new(),
            orphans: Vec::new(),
            links: Vec::new(),
            link_cleanup: Vec::new(),
        }
    }

    pub(crate) fn store<T: Mapped>(&mut self) -> &mut Store<T> {
        store_in(&mut self.types, &mut self.stores)
    }

    /// What objects know of this session.
    pub(crate) fn session_link(&self) -> &Arc<SessionLink> {
        self.link.session().expect("a session's link has a session")
    }

    /// Whether `obj` is attached to this session.
    fn owns<T: Mapped>(&self, d: &ObjData<T>) -> bool {
        d.attached().is_some_and(|l| l.session_id == self.id)
    }

    pub(crate) fn expunge_all(&mut self) {
        // Objects see their link marked detached; pending ones become transient, the others
        // detached. Expiry state is kept: the old link's epoch no longer moves.
        self.session_link().detached.store(true, Ordering::Release);
        self.link = Link::current(&SessionLink::new(self.id, self.shared.clone()));
        for i in 0..self.stores.len() {
            self.stores[i].ops().release(self);
        }
        self.stores.clear();
        self.types.clear();
        self.orphans.clear();
        self.links.clear();
    }

    /// Adds `obj`, and what its relationships reach (save-update cascade).
    pub(crate) fn add<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        if self.add_one(obj)? {
            for rel in relations_of::<T>() {
                rel.cascade_add(obj, self)?;
            }
        }
        Ok(())
    }

    /// Queues a persistent object whose columns (or relationships) changed for the next
    /// flush, once.
    pub(crate) fn queue_dirty<T: Mapped>(&mut self, obj: &Obj<T>) {
        {
            let mut d = obj.lock_data();
            if d.queued() || d.status() != Status::Persistent || !self.owns(&d) {
                return;
            }
            d.set_queued(true);
        }
        self.store::<T>().dirty.push(obj.clone());
    }

    /// Adds `obj` alone; whether it was not in the session before.
    fn add_one<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<bool> {
        let mut d = obj.lock_data();
        if let Some(other) = d.attached() {
            if other.session_id == self.id {
                return Ok(false);
            }
            return Err(Error::AttachedElsewhere {
                table: T::TABLE.name,
                other: other.session_id,
                this: self.id,
            });
        }
        let expired = d.is_wholly_expired();
        d.relink(Some(&self.link));
        d.set_expired(expired);
        if !d.identity() {
            d.set_status(Status::Pending);
            drop(d);
            self.store::<T>().new.push(obj.clone());
            return Ok(true);
        }
        // A detached object returns to persistent, with the changes it carries.
        let key = d.value.key().expect("an object with identity has a key");
        let store = self.store::<T>();
        if store.lookup(&key).is_some() {
            d.relink(None);
            return Err(Error::IdentityConflict {
                table: T::TABLE.name,
                key: format!("{key:?}"),
            });
        }
        d.set_status(Status::Persistent);
        let queue = d.is_modified();
        d.set_queued(queue);
        drop(d);
        store.map(key, obj);
        if queue {
            store.dirty.push(obj.clone());
        }
        Ok(true)
    }

    pub(crate) fn delete<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        match obj.state() {
            ObjectState::Transient | ObjectState::Pending => {
                return Err(Error::NotPersisted {
                    table: T::TABLE.name,
                })
            }
            ObjectState::Detached => self.add(obj)?,
            ObjectState::Deleted | ObjectState::Persistent => {}
        }
        let mut d = obj.lock_data();
        if !self.owns(&d) {
            return Err(Error::NotInSession {
                table: T::TABLE.name,
            });
        }
        if d.status() == Status::Persistent {
            d.set_status(Status::MarkedDeleted);
            drop(d);
            self.store::<T>().deleted.push(obj.clone());
        }
        Ok(())
    }

    pub(crate) fn expunge<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        let key = {
            let mut d = obj.lock_data();
            if !self.owns(&d) {
                return Err(Error::NotInSession {
                    table: T::TABLE.name,
                });
            }
            let expired = d.is_wholly_expired();
            d.set_expired(expired);
            d.relink(None);
            d.set_queued(false);
            if d.status() == Status::MarkedDeleted {
                d.set_status(Status::Persistent);
            }
            if d.identity() {
                d.value.key()
            } else {
                None
            }
        };
        self.store::<T>().forget(obj, key.as_ref());
        self.forget_orphan(obj);
        for rel in relations_of::<T>() {
            rel.cascade_expunge(obj, self)?;
        }
        Ok(())
    }

    /// SQLAlchemy's `make_transient`: out of the session, and without database identity.
    pub(crate) fn make_transient<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        if obj.session_id() == Some(self.id) {
            self.expunge(obj)?;
        }
        let mut d = obj.lock_data();
        if d.attached().is_some() {
            return Err(Error::AttachedElsewhere {
                table: T::TABLE.name,
                other: d.attached().map_or(0, |l| l.session_id),
                this: self.id,
            });
        }
        d.set_identity(false);
        d.set_expired(false);
        d.take_expired_columns();
        d.clear_changes();
        d.relink(None);
        d.set_status(Status::Pending);
        Ok(())
    }

    /// SQLAlchemy's `make_transient_to_detached`: a transient object whose key is set becomes
    /// detached, as if loaded and then expunged.
    pub(crate) fn make_transient_to_detached<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        let mut d = obj.lock_data();
        if d.identity() || d.attached().is_some() {
            return Err(Error::NotTransient {
                table: T::TABLE.name,
            });
        }
        if d.value.key().is_none() {
            return Err(Error::NoIdentity {
                table: T::TABLE.name,
            });
        }
        d.set_identity(true);
        d.set_status(Status::Persistent);
        d.clear_changes();
        d.mark_loaded(None);
        Ok(())
    }

    /// Expires the object, or only `columns` of it; their unflushed changes are discarded.
    pub(crate) fn expire<T: Mapped>(
        &mut self,
        obj: &Obj<T>,
        columns: Option<&[usize]>,
    ) -> Result<()> {
        let mut d = obj.lock_data();
        if !self.owns(&d) || !d.identity() {
            return Err(Error::NotInSession {
                table: T::TABLE.name,
            });
        }
        match columns {
            None => {
                d.set_expired(true);
                d.clear_changes();
            }
            Some(columns) => d.expire_columns(columns),
        }
        Ok(())
    }

    /// Reloads the object's row now, discarding unflushed changes.
    pub(crate) fn refresh_now<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        self.expire(obj, None)?;
        self.refresh(obj)
    }

    pub(crate) fn get<T: Mapped>(&mut self, key: T::Key) -> Result<Option<Obj<T>>> {
        self.check_usable()?;
        if let Some(obj) = self.store::<T>().lookup(&key) {
            let d = obj.read_data()?;
            if !d.is_expired() {
                return Ok(match d.status() {
                    Status::Persistent | Status::MarkedDeleted => Some(obj.clone()),
                    _ => None,
                });
            }
        }
        self.autoflush()?;
        Ok(self.load::<T>(select_by_key::<T>(&key))?.pop())
    }

    /// Loads an expired object's row again; `ObjectDeleted` when the row is gone.
    pub(crate) fn refresh<T: Mapped>(&mut self, obj: &Obj<T>) -> Result<()> {
        let key = {
            let d = obj.read_data()?;
            if !d.is_expired() {
                return Ok(());
            }
            d.value.key().ok_or(Error::NotPersisted {
                table: T::TABLE.name,
            })?
        };
        let found = self.load::<T>(select_by_key::<T>(&key))?;
        let Some(row_obj) = found.into_iter().next() else {
            return Err(Error::ObjectDeleted {
                table: T::TABLE.name,
                key: format!("{key:?}"),
            });
        };
        if !row_obj.ptr_eq(obj) {
            // The identity map holds another object for this key: never two objects per key.
            return Err(Error::IdentityConflict {
                table: T::TABLE.name,
                key: format!("{key:?}"),
            });
        }
        Ok(())
    }

    /// SQLAlchemy's `merge`: copies the state of `source` onto the session's object with the
    /// same key (loaded when `load` and not held), or onto a new pending object; returns it.
    /// Relationships with the merge cascade take the merged copies of the source's loaded
    /// related objects.
    pub(crate) fn merge<T: Mapped>(&mut self, source: &Obj<T>, load: bool) -> Result<Obj<T>> {
        self.merge_cascade(source, load, &mut Vec::new())
    }

    /// `merge`, remembering in `merged` the copy of every object merged (a graph may reach
    /// an object twice).
    pub(crate) fn merge_cascade<T: Mapped>(
        &mut self,
        source: &Obj<T>,
        load: bool,
        merged: &mut Merged,
    ) -> Result<Obj<T>> {
        let at = source.addr();
        if let Some((_, copy)) = merged.iter().find(|(a, _)| *a == at) {
            if let Some(copy) = copy.downcast_ref::<Obj<T>>() {
                return Ok(copy.clone());
            }
        }
        let target = self.merge_one(source, load)?;
        merged.push((at, Box::new(target.clone())));
        if !target.ptr_eq(source) {
            for rel in relations_of::<T>() {
                rel.merge(source, &target, self, load, merged)?;
            }
        }
        Ok(target)
    }

    /// `merge` of the object alone: its relationships are left unloaded.
    fn merge_one<T: Mapped>(&mut self, source: &Obj<T>, load: bool) -> Result<Obj<T>> {
        if source.session_id() == Some(self.id) {
            return Ok(source.clone());
        }
        // Only loaded attributes are copied: an expired source contributes its key alone.
        let (value, key, clean, unloaded) = {
            let d = source.read_data()?;
            let unloaded: Option<ColumnSet> = if d.is_wholly_expired() {
                let mut all = ColumnSet::default();
                (0..T::TABLE.columns.len()).for_each(|c| all.insert(c));
                Some(all)
            } else {
                d.expired_columns().cloned()
            };
            (
                d.value.clone_row(),
                d.value.key(),
                !d.is_modified(),
                unloaded,
            )
        };
        // The copy shares no related objects with the source: the merge cascade fills in
        // copies; relationships without it reload.
        let mut value = value;
        for rel in relations_of::<T>() {
            rel.unload(&mut value);
        }
        let Some(key) = key else {
            let obj = Obj::new(value);
            self.add(&obj)?;
            return Ok(obj);
        };
        let held = match self.store::<T>().lookup(&key) {
            Some(obj) => Some(obj),
            None if load => {
                self.autoflush()?;
                self.load::<T>(select_by_key::<T>(&key))?.pop()
            }
            None if unloaded.is_some() => {
                return Err(Error::DetachedInstance {
                    table: T::TABLE.name,
                })
            }
            None if !clean => {
                return Err(Error::MergeDirtyWithoutLoad {
                    table: T::TABLE.name,
                })
            }
            None => {
                // Trusted as the row's current state: persistent without a SELECT.
                let obj = Obj::with_data(ObjData::persistent(value, &self.link));
                self.store::<T>().map(key, &obj);
                return Ok(obj);
            }
        };
        let Some(target) = held else {
            if unloaded.is_some() {
                return Err(Error::ObjectDeleted {
                    table: T::TABLE.name,
                    key: format!("{key:?}"),
                });
            }
            let obj = Obj::new(value);
            self.add(&obj)?;
            return Ok(obj);
        };
        // Not `Obj::modify`: it would take this session's lock, which is held here.
        self.refresh(&target)?;
        let queue = {
            let mut d = target.lock_data();
            let mut changed = value.changed_columns(&d.value);
            if let Some(unloaded) = &unloaded {
                unloaded.iter().for_each(|c| changed.remove(c));
            }
            for c in changed.iter() {
                d.value.set_column(c, value.column_value(c))?;
            }
            let queue = !changed.is_empty() && d.status() == Status::Persistent && !d.queued();
            d.record_changes(&changed);
            if queue {
                d.set_queued(true);
            }
            queue
        };
        if queue {
            self.store::<T>().dirty.push(target.clone());
        }
        Ok(target)
    }

    /// A bulk UPDATE (`set` is `Some`) or DELETE by criteria; the identity map is kept in step
    /// as `sync` says. Returns the number of rows matched.
    pub(crate) fn bulk<T: Mapped>(
        &mut self,
        filter: Option<Expr>,
        set: Option<Vec<(usize, Value)>>,
        sync: Synchronize,
    ) -> Result<u64> {
        let table = T::TABLE;
        let can_evaluate = filter.as_ref().is_none_or(|f| evaluable(f, table));
        if matches!(sync, Synchronize::Evaluate) && !can_evaluate {
            return Err(Error::NotEvaluable { table: table.name });
        }
        self.autoflush()?;
        let conn = self.connection()?;
        // Evaluate against the objects as they are before the statement changes them. An
        // expired object cannot be evaluated: `Auto` then fetches the keys instead, and
        // `Evaluate` leaves it to reload on its next read.
        let mut affected: Vec<Obj<T>> = Vec::new();
        let mut evaluated =
            matches!(sync, Synchronize::Evaluate | Synchronize::Auto) && can_evaluate;
        if evaluated {
            for obj in self.store::<T>().live() {
                let d = obj.read_data()?;
                if d.is_expired() {
                    if matches!(sync, Synchronize::Auto) {
                        evaluated = false;
                        affected.clear();
                        break;
                    }
                    continue;
                }
                let hit = filter
                    .as_ref()
                    .is_none_or(|f| evaluate(f, table, &|c| d.value.column_value(c)) == Some(true));
                drop(d);
                if hit {
                    affected.push(obj);
                }
            }
        }
        let fetch = matches!(sync, Synchronize::Fetch | Synchronize::Auto) && !evaluated;
        let returning: Vec<usize> = if fetch {
            (0..table.columns.len()).collect()
        } else {
            Vec::new()
        };
        let statement = match &set {
            Some(set) => Statement::UpdateWhere(UpdateWhere {
                table,
                set: set.clone(),
                filter,
                returning,
            }),
            None => Statement::DeleteWhere(DeleteWhere {
                table,
                filter,
                returning,
            }),
        };
        let rows = if fetch {
            let mut keys = Vec::new();
            conn.query_statement(statement, |row| {
                keys.push(T::key_from_row(row, 0)?);
                Ok(())
            })?;
            let store = self.store::<T>();
            affected = keys.iter().filter_map(|k| store.lookup(k)).collect();
            keys.len() as u64
        } else {
            conn.execute_statement(statement)?
        };
        let in_savepoint = !self.frames.is_empty();
        let store = self.store::<T>();
        for obj in &affected {
            match &set {
                Some(set) => {
                    let mut d = obj.lock_data();
                    for (c, v) in set {
                        d.value.set_column(*c, v.clone())?;
                        d.forget_change(*c);
                    }
                    drop(d);
                    if in_savepoint {
                        // A savepoint rollback must expire what the statement changed.
                        store.note_updated(obj);
                    }
                }
                None => store.deleted_in_bulk(obj),
            }
        }
        Ok(rows)
    }

    /// Runs a SELECT and decodes each row with `decode`, which may reach the session's stores.
    pub(crate) fn load_with<R>(
        &mut self,
        select: Select,
        mut decode: impl FnMut(&mut Core, &Row<'_>) -> orm_core::error::Result<R>,
    ) -> Result<Vec<R>> {
        let conn = self.connection()?;
        let mut out = Vec::new();
        conn.query_statement(Statement::Select(select), |row| {
            out.push(decode(self, row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The identity-mapped object of `T` whose columns start at `at` in `row`.
    #[inline]
    pub(crate) fn entity_at<T: Mapped>(
        &mut self,
        row: &Row<'_>,
        at: usize,
    ) -> orm_core::error::Result<Obj<T>> {
        let store = store_in::<T>(&mut self.types, &mut self.stores);
        object_from_row(store, &self.link, row, at)
    }

    /// Runs a SELECT of all columns of `T` and returns its rows as identity-mapped objects.
    pub(crate) fn load<T: Mapped>(&mut self, select: Select) -> Result<Vec<Obj<T>>> {
        self.load_as(select, |obj| obj)
    }

    /// Runs a SELECT of all columns of `T` and returns `wrap` of each row's identity-mapped
    /// object. The store is found once, not per row as through the query's `Loader`: this is
    /// the path of queries of one entity with nothing loaded along.
    pub(crate) fn load_as<T: Mapped, R>(
        &mut self,
        select: Select,
        wrap: impl Fn(Obj<T>) -> R,
    ) -> Result<Vec<R>> {
        let conn = self.connection()?;
        let mut out = Vec::new();
        let store = store_in::<T>(&mut self.types, &mut self.stores);
        if !store.is_unmapped() || !select.joins.is_empty() {
            conn.query_statement(Statement::Select(select), |row| {
                out.push(wrap(object_from_row(store, &self.link, row, 0)?));
                Ok(())
            })?;
            return Ok(out);
        }
        // Into an empty identity map (a fresh session's first load of `T`), the rows of a
        // query without joins are new objects: they are entered together at the end, in a
        // map sized once, rather than each probed for and inserted into a map that grows and
        // rehashes as it goes (a row repeating a key is still caught, when entered).
        let mut loaded = Vec::new();
        conn.query_statement(Statement::Select(select), |row| {
            let key = T::key_from_row(row, 0)?;
            let value = T::from_row_with_key(row, 0, key.clone())?;
            let (obj, slot) = store.new_loaded(ObjData::persistent(value, &self.link));
            loaded.push((key, slot));
            out.push(wrap(obj));
            Ok(())
        })?;
        store.map_loaded(loaded, |i, first| out[i] = wrap(first));
        Ok(out)
    }
}

/// The store of `T` among `stores` (created when missing). A linear scan of the types beats
/// hashing for the few types one session uses.
#[inline]
fn store_in<'a, T: Mapped>(
    types: &mut Vec<TypeId>,
    stores: &'a mut Vec<Box<dyn AnyStore>>,
) -> &'a mut Store<T> {
    let ty = TypeId::of::<T>();
    let i = match types.iter().position(|t| *t == ty) {
        Some(i) => i,
        None => {
            stores.push(Box::new(Store::<T>::default()));
            types.push(ty);
            stores.len() - 1
        }
    };
    stores[i]
        .as_any()
        .downcast_mut()
        .expect("store of the right type")
}

/// The identity-mapped object for one row: the object already held for its key (reloaded if
/// expired), or a new persistent object loaded under `link` (the session's current link).
fn object_from_row<T: Mapped>(
    store: &mut Store<T>,
    link: &Arc<Link>,
    row: &Row<'_>,
    at: usize,
) -> orm_core::error::Result<Obj<T>> {
    let key = T::key_from_row(row, at)?;
    store.load_row(
        key,
        |obj| {
            let mut d = obj.lock_data();
            if d.is_wholly_expired() {
                d.value = T::from_row(row, at)?;
                d.clear_changes();
                d.mark_loaded(Some(link));
            } else if let Some(columns) = d.take_expired_columns() {
                let fresh = T::from_row(row, at)?;
                for c in columns.iter() {
                    d.value.set_column(c, fresh.column_value(c))?;
                }
                d.mark_loaded(Some(link));
            }
            Ok(())
        },
        |key| {
            Ok(ObjData::persistent(
                T::from_row_with_key(row, at, key)?,
                link,
            ))
        },
    )
}
