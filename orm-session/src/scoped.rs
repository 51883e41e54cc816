//! [`ScopedSession`]: one session per thread, created on first use: SQLAlchemy's
//! `scoped_session`. Its documentation shows the per-request pattern.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

use crate::error::Result;
use crate::session::Session;
use crate::sessionmaker::{FromSession, SessionMaker};

/// A registry of one session per thread, created from a factory on first use: SQLAlchemy's
/// `scoped_session`.
///
/// It owns its [`SessionMaker`] (reach it with [`factory`](Self::factory), e.g. to
/// `configure` the bind at start-up). It is `Send + Sync`, so a
/// `static LazyLock<ScopedSession>` is the natural global; the sessions it hands out never
/// leave their thread.
///
/// A web service handles each request on one thread at a time. The reference's pattern is to
/// tie the session's scope to the request: the application's code asks for "the current
/// session" wherever it needs one, without passing it around or managing its lifecycle, and
/// the framework's end-of-request hook tears it down. A global `ScopedSession` provides both
/// halves: [`current`](ScopedSession::current) returns this thread's session, creating it from
/// the factory on first use, and [`remove`](ScopedSession::remove) closes it (rolling back what
/// was not committed, returning the connection to the pool) and discards it, so the next
/// request on the thread starts with a fresh session.
///
/// # The per-request pattern
///
/// ```
/// use std::sync::LazyLock;
/// use orm::prelude::*;
/// # use orm::__doc::{setup, User};
///
/// // Once, at application level, like the factory itself.
/// static SESSION: LazyLock<ScopedSession> =
///     LazyLock::new(|| ScopedSession::new(sessionmaker().build()));
///
/// // Application code: uses "the current session", never creates or closes one.
/// fn register(name: &str) -> orm::Result<Obj<User>> {
///     SESSION.current().add(User::new(name, 30))
/// }
/// fn count_users() -> orm::Result<usize> {
///     Ok(SESSION.current().query::<User>().all()?.len())
/// }
///
/// // A request handler: commits when the work succeeded.
/// fn handle_signup(name: &str) -> orm::Result<usize> {
///     register(name)?;
///     SESSION.current().commit()?;
///     count_users()
/// }
///
/// // The framework's hook around every request: whatever the handler did, the session is
/// // removed at the end (uncommitted work is rolled back, the connection goes back).
/// fn serve<R>(handler: impl FnOnce() -> orm::Result<R>) -> orm::Result<R> {
///     let result = handler();
///     SESSION.remove()?;
///     result
/// }
///
/// # fn main() -> orm::Result<()> {
/// let (engine, _) = setup();
/// SESSION.factory().configure(|o| { o.bind(engine); }); // at start-up
///
/// assert_eq!(serve(|| handle_signup("ed"))?, 1);
/// let failed = serve(|| {
///     register("wendy")?;
///     Err::<(), _>(orm::Error::NoTransaction) // the handler fails before committing
/// });
/// assert!(failed.is_err());
/// // Another worker thread has its own session; the failed request left nothing behind.
/// std::thread::spawn(|| serve(count_users)).join().unwrap().map(|n| assert_eq!(n, 1))?;
/// # Ok(()) }
/// ```
///
/// # Borrowing
///
/// `current()` hands out a guard ([`CurrentSession`]) that derefs to the session. At most one
/// guard per registry is alive on a thread: asking again while one is held panics (like
/// `RefCell::borrow_mut`), and [`try_current`](ScopedSession::try_current) returns
/// [`SessionInUse`] instead. Keep guards short-lived (`SESSION.current().add(..)?` drops its
/// guard at the end of the statement), or use [`with`](ScopedSession::with).
///
/// # When threads exit
///
/// A thread's sessions live in its thread-local storage. When the thread exits, they are
/// closed (uncommitted work is rolled back and the connection returns to the pool) shortly
/// after, by a background thread the registry starts with the first session: an exiting
/// thread cannot run statements itself, because the thread-locals the PostgreSQL driver and
/// `tracing` layers use may already be destroyed by then. Call `remove()` at the end of each
/// request to close the session at a point you choose.
///
/// Dropping a `ScopedSession` closes the calling thread's session; the sessions other threads
/// hold for it are closed when those threads next use any `ScopedSession`, or exit.
///
/// # Examples
///
/// ```
/// # use orm::__doc::*;
/// use orm::ScopedSession;
/// # fn main() -> Result<(), orm::Error> {
/// # let (_engine, factory) = setup();
/// let registry = ScopedSession::new(factory);
/// let ed = registry.current().add(User::new("ed", 30))?;
/// assert!(registry.current().contains(&ed)); // the same session again on this thread
/// let here = registry.with(|s| s.id());
/// let there = std::thread::scope(|t| t.spawn(|| registry.current().id()).join().unwrap());
/// assert_ne!(here, there); // another thread, another session
///
/// registry.remove()?; // closes this thread's session: `ed` was pending, it is transient again
/// assert_eq!(ed.state(), ObjectState::Transient);
/// assert_ne!(registry.current().id(), here); // a new session
/// # Ok(()) }
/// ```
pub struct ScopedSession<S = Session> {
    id: u64,
    /// Entries in threads' storage hold a `Weak` of this: once it is gone, they are stale.
    alive: Arc<()>,
    factory: SessionMaker<S>,
}

static NEXT_REGISTRY: AtomicU64 = AtomicU64::new(1);

impl<S> fmt::Debug for ScopedSession<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedSession")
            .field("id", &self.id)
            .field("factory", &self.factory)
            .finish()
    }
}

impl<S: FromSession + Send + 'static> From<SessionMaker<S>> for ScopedSession<S> {
    fn from(factory: SessionMaker<S>) -> Self {
        ScopedSession::new(factory)
    }
}

impl<S: FromSession + Send + 'static> ScopedSession<S> {
    /// A registry creating each thread's session with `factory`.
    pub fn new(factory: SessionMaker<S>) -> Self {
        ScopedSession {
            id: NEXT_REGISTRY.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            factory,
        }
    }

    /// The factory sessions are created with. Configuring it affects sessions created
    /// afterwards, not the ones threads already hold.
    pub fn factory(&self) -> &SessionMaker<S> {
        &self.factory
    }

    /// This thread's session, created from the factory if the thread has none: SQLAlchemy's
    /// `Session()` on a `scoped_session`.
    ///
    /// # Panics
    ///
    /// When this thread already holds a [`CurrentSession`] of this registry (see
    /// [`try_current`](Self::try_current)), or during the thread's exit.
    #[track_caller]
    pub fn current(&self) -> CurrentSession<'_, S> {
        match self.try_current() {
            Ok(guard) => guard,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`current`](Self::current), but returns [`SessionInUse`] instead of panicking
    /// when this thread already holds a guard of this registry.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # let (_engine, factory) = setup();
    /// let registry = orm::ScopedSession::new(factory);
    /// let guard = registry.current();
    /// assert!(registry.try_current().is_err()); // no second, aliasing borrow
    /// drop(guard);
    /// assert!(registry.try_current().is_ok());
    /// ```
    pub fn try_current(&self) -> std::result::Result<CurrentSession<'_, S>, SessionInUse> {
        let (taken, stale) = SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            let stale = slots.take_stale();
            (slots.take(self.id, &self.alive), stale)
        });
        // User code (closing, dropping, creating sessions) runs with the slots released.
        stale.into_iter().for_each(close_stored);
        let taken = taken?;
        // From here the slot is marked in use; the guard frees it even if creation panics.
        let mut guard = CurrentSession {
            registry: self,
            session: None,
            _not_send: PhantomData,
        };
        guard.session = Some(match taken {
            Some(stored) => stored
                .into_any()
                .downcast::<S>()
                .expect("a registry stores sessions of its own type"),
            None => {
                start_reaper();
                Box::new(self.factory.session())
            }
        });
        Ok(guard)
    }

    /// Runs `f` with this thread's session (created if needed).
    ///
    /// # Panics
    ///
    /// Like [`current`](Self::current), when this thread already holds a guard.
    ///
    /// # Examples
    ///
    /// ```
    /// # use orm::__doc::*;
    /// # fn main() -> Result<(), orm::Error> {
    /// # let (_engine, factory) = setup();
    /// let registry = orm::ScopedSession::new(factory);
    /// registry.with(|s| {
    ///     s.add(User::new("ed", 30))?;
    ///     s.commit()
    /// })?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn with<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.current())
    }

    /// Whether this thread has a session in this registry (created by `current` and not
    /// removed since).
    pub fn has(&self) -> bool {
        SLOTS.with(|slots| slots.borrow().find(self.id).is_some())
    }

    /// Closes this thread's session and discards it: uncommitted work is rolled back, its
    /// objects become detached (pending ones transient), and its connection returns to the
    /// pool. The next [`current`](Self::current) creates a new session. Does nothing when the
    /// thread has none. Call it at the end of every request.
    ///
    /// # Errors
    ///
    /// The error of closing the session (the session is discarded all the same).
    ///
    /// # Panics
    ///
    /// When this thread holds a [`CurrentSession`] of this registry: drop it first.
    #[track_caller]
    pub fn remove(&self) -> Result<()> {
        let (removed, stale) = SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            let stale = slots.take_stale();
            (slots.remove(self.id), stale)
        });
        stale.into_iter().for_each(close_stored);
        match removed {
            Removed::Nothing => Ok(()),
            Removed::Session(mut stored) => stored.close(),
            Removed::InUse => panic!(
                "ScopedSession::remove() called while this thread holds the session \
                 (a CurrentSession guard is alive): drop the guard first"
            ),
        }
    }
}

impl<S> Drop for ScopedSession<S> {
    fn drop(&mut self) {
        // No guard can be alive (a guard borrows the registry). Other threads' entries become
        // stale with `alive`. During the thread's exit the storage may already be gone.
        let removed = SLOTS.try_with(|slots| slots.borrow_mut().remove(self.id));
        if let Ok(Removed::Session(stored)) = removed {
            close_stored(stored);
        }
    }
}

/// The error of [`ScopedSession::try_current`]: this thread already holds the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInUse;

impl fmt::Display for SessionInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "this thread's scoped session is already borrowed (a CurrentSession guard is \
             alive): use the guard you hold, or drop it first",
        )
    }
}

impl std::error::Error for SessionInUse {}

/// This thread's session of a [`ScopedSession`], from [`ScopedSession::current`]: derefs to
/// the session.
///
/// While it is alive, the registry refuses to hand this thread's session out again, so the
/// session is never aliased. It is neither `Send` nor `Sync`: the session stays on its thread.
/// Dropping it gives the session back to the registry (it is not closed).
#[must_use = "the guard gives access to the session; dropping it at once does nothing useful"]
pub struct CurrentSession<'r, S: FromSession + Send + 'static = Session> {
    registry: &'r ScopedSession<S>,
    /// `Some` from creation until drop.
    session: Option<Box<S>>,
    _not_send: PhantomData<*const ()>,
}

impl<S: FromSession + Send + 'static> Deref for CurrentSession<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.session.as_deref().expect("present until drop")
    }
}

impl<S: FromSession + Send + 'static> DerefMut for CurrentSession<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        self.session.as_deref_mut().expect("present until drop")
    }
}

impl<S: FromSession + Send + 'static> fmt::Debug for CurrentSession<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentSession")
            .field("registry", &self.registry.id)
            .finish_non_exhaustive()
    }
}

impl<S: FromSession + Send + 'static> Drop for CurrentSession<'_, S> {
    fn drop(&mut self) {
        let mut session = self.session.take().map(|s| s as Box<dyn Stored>);
        let id = self.registry.id;
        // `try_with` fails only when the guard is dropped during the thread's exit, after the
        // storage: the session is closed then, as the storage would have done.
        let leftover = SLOTS
            .try_with(|slots| slots.borrow_mut().put_back(id, session.take()))
            .unwrap_or_else(|_| session.take());
        if let Some(stored) = leftover {
            close_on_exit(stored);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-thread storage.
//
// std's `thread_local!` rather than the `thread_local` crate: the crate's per-thread values
// are dropped only with the whole `ThreadLocal` (never, for a static registry), and a thread
// id freed by an exiting thread is reused by the next, which would inherit the previous
// thread's session and its open transaction. std runs a destructor at each thread's exit,
// which is what closes the sessions of threads that end. One storage serves every registry:
// entries are keyed by the registry's id.

/// A session of any type, closable without knowing it.
trait Stored: Any + Send {
    fn close(&mut self) -> Result<()>;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<S: FromSession + Send + 'static> Stored for S {
    fn close(&mut self) -> Result<()> {
        self.session_mut().close()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Closes and drops a session nobody can receive the outcome of: a failure is logged, a panic
/// (of a custom session type's code) is contained.
fn close_stored(mut stored: Box<dyn Stored>) {
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let result = stored.close();
        drop(stored);
        result
    }));
    if let Ok(Err(e)) = outcome {
        tracing::warn!(target: "orm::session", "closing a scoped session failed: {e}");
    }
}

/// Closes the sessions of exiting threads, on a thread of its own.
///
/// An exiting thread cannot close them itself: its thread-local destructors run in an
/// unspecified order, and by the time the registry's storage is destroyed, the PostgreSQL
/// driver's runtime context (a thread-local of `tokio`) or a `tracing` layer's buffer may be
/// gone; a statement run then panics before it is sent, leaving the connection in its
/// transaction. Handing the session over touches no thread-local (a mutex and a condvar).
struct Reaper {
    queue: Mutex<Vec<Box<dyn Stored>>>,
    ready: Condvar,
}

static REAPER: OnceLock<Option<Arc<Reaper>>> = OnceLock::new();

impl Reaper {
    fn run(&self) {
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                while queue.is_empty() {
                    queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
                std::mem::take(&mut *queue)
            };
            batch.into_iter().for_each(close_stored);
        }
    }
}

/// Starts the reaper (once): called when a thread creates its first scoped session, in an
/// ordinary context.
fn start_reaper() {
    REAPER.get_or_init(|| {
        let reaper = Arc::new(Reaper {
            queue: Mutex::new(Vec::new()),
            ready: Condvar::new(),
        });
        let worker = reaper.clone();
        std::thread::Builder::new()
            .name("orm-scoped-session-reaper".into())
            .spawn(move || worker.run())
            .ok()
            .map(|_| reaper)
    });
}

/// Closes the session of an exiting thread: on the reaper, or (if it could not be started)
/// here, as well as the thread's state allows.
fn close_on_exit(stored: Box<dyn Stored>) {
    match REAPER.get() {
        Some(Some(reaper)) => {
            reaper
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(stored);
            reaper.ready.notify_one();
        }
        _ => close_stored(stored),
    }
}

enum Slot {
    /// The thread's session, not borrowed.
    Idle(Box<dyn Stored>),
    /// A `CurrentSession` holds it (or is creating it).
    InUse,
}

struct Entry {
    registry: u64,
    alive: Weak<()>,
    slot: Slot,
}

enum Removed {
    Nothing,
    Session(Box<dyn Stored>),
    InUse,
}

/// The entries of one thread: one per registry it used (a handful at most, so a `Vec`).
struct Slots(Vec<Entry>);

thread_local! {
    static SLOTS: RefCell<Slots> = const { RefCell::new(Slots(Vec::new())) };
}

impl Slots {
    fn find(&self, registry: u64) -> Option<usize> {
        self.0.iter().position(|e| e.registry == registry)
    }

    /// Marks the registry's session in use and returns it (`None`: there is none yet).
    fn take(
        &mut self,
        registry: u64,
        alive: &Arc<()>,
    ) -> std::result::Result<Option<Box<dyn Stored>>, SessionInUse> {
        let Some(i) = self.find(registry) else {
            self.0.push(Entry {
                registry,
                alive: Arc::downgrade(alive),
                slot: Slot::InUse,
            });
            return Ok(None);
        };
        match std::mem::replace(&mut self.0[i].slot, Slot::InUse) {
            Slot::Idle(stored) => Ok(Some(stored)),
            Slot::InUse => Err(SessionInUse),
        }
    }

    /// Ends a borrow: stores the session, or forgets the entry when there is none (its
    /// creation failed). Returns the session if the entry is gone.
    fn put_back(
        &mut self,
        registry: u64,
        stored: Option<Box<dyn Stored>>,
    ) -> Option<Box<dyn Stored>> {
        let Some(i) = self.find(registry) else {
            return stored;
        };
        match stored {
            Some(stored) => self.0[i].slot = Slot::Idle(stored),
            None => {
                self.0.swap_remove(i);
            }
        }
        None
    }

    fn remove(&mut self, registry: u64) -> Removed {
        let Some(i) = self.find(registry) else {
            return Removed::Nothing;
        };
        if matches!(self.0[i].slot, Slot::InUse) {
            return Removed::InUse;
        }
        match self.0.swap_remove(i).slot {
            Slot::Idle(stored) => Removed::Session(stored),
            Slot::InUse => unreachable!("checked above"),
        }
    }

    /// Takes the sessions of registries that were dropped.
    fn take_stale(&mut self) -> Vec<Box<dyn Stored>> {
        if self.0.iter().all(|e| e.alive.strong_count() > 0) {
            return Vec::new();
        }
        let mut stale = Vec::new();
        self.0.retain_mut(|e| {
            if e.alive.strong_count() > 0 {
                return true;
            }
            if let Slot::Idle(stored) = std::mem::replace(&mut e.slot, Slot::InUse) {
                stale.push(stored);
            }
            false
        });
        stale
    }
}

impl Drop for Slots {
    /// The thread is exiting: close every session it still holds.
    fn drop(&mut self) {
        for entry in self.0.drain(..) {
            if let Slot::Idle(stored) = entry.slot {
                close_on_exit(stored);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn the_registry_is_send_and_sync() {
        assert_send_sync::<ScopedSession>();
        assert_send_sync::<SessionInUse>();
    }

    #[test]
    fn unbound_sessions_per_thread_without_a_database() {
        let registry = ScopedSession::new(crate::sessionmaker().build());
        assert!(!registry.has());
        let id = registry.current().id();
        assert!(registry.has());
        assert_eq!(registry.with(|s| s.id()), id);
        let other = std::thread::scope(|t| t.spawn(|| registry.current().id()).join().unwrap());
        assert_ne!(other, id);
        registry.remove().unwrap();
        assert!(!registry.has());
        assert_ne!(registry.current().id(), id);
    }

    #[test]
    fn a_panicking_factory_leaves_no_borrow_behind() {
        struct Fragile(Session);
        static FAIL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
        impl FromSession for Fragile {
            fn from_session(s: Session) -> Self {
                if FAIL.swap(false, Ordering::SeqCst) {
                    panic!("factory failed");
                }
                Fragile(s)
            }
            fn session_mut(&mut self) -> &mut Session {
                &mut self.0
            }
        }
        let registry = ScopedSession::new(crate::sessionmaker().class::<Fragile>().build());
        assert!(catch_unwind(AssertUnwindSafe(|| registry.current().0.id())).is_err());
        assert!(!registry.has());
        assert!(registry.try_current().is_ok());
    }

    #[test]
    fn sessions_of_a_dropped_registry_are_purged_from_other_threads() {
        use std::sync::mpsc::channel;
        let first = Arc::new(ScopedSession::new(crate::sessionmaker().build()));
        let second = ScopedSession::new(crate::sessionmaker().build());
        let (used, used_rx) = channel();
        let (dropped, dropped_rx) = channel();
        std::thread::scope(|t| {
            let worker_first = first.clone();
            let second = &second;
            let worker = t.spawn(move || {
                let _ = worker_first.current().id();
                drop(worker_first);
                used.send(()).unwrap();
                dropped_rx.recv().unwrap();
                assert_eq!(SLOTS.with(|s| s.borrow().0.len()), 1, "before");
                let _ = second.current().id();
                SLOTS.with(|s| s.borrow().0.iter().map(|e| e.registry).collect::<Vec<_>>())
            });
            used_rx.recv().unwrap();
            let first = Arc::into_inner(first).expect("the last handle");
            let _ = first.current().id();
            drop(first); // removes this thread's entry; the worker's becomes stale
            assert_eq!(SLOTS.with(|s| s.borrow().0.len()), 0);
            dropped.send(()).unwrap();
            assert_eq!(
                worker.join().unwrap(),
                [second.id],
                "the stale entry was purged"
            );
        });
    }
}
