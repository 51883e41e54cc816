//! `ScopedSession` (SQLAlchemy's `scoped_session`) on both databases: one session per thread,
//! `remove()` closing it, thread exit closing it, and the per-request pattern with a global.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use orm::prelude::*;
use orm::{CoreError, Error, SessionInUse};

use crate::models::{create_schema, User};
use crate::support::{count_rows, for_each_db, TestResult};

fn registry(engine: &Engine) -> ScopedSession {
    ScopedSession::new(sessionmaker().bind(engine.clone()).build())
}

#[test]
fn the_same_thread_gets_the_same_session() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let registry = registry(&db.engine());
        assert!(!registry.has(), "created on first use only");
        let first = registry.current().id();
        assert!(registry.has());
        let ed = registry.current().add(User::new("ed", 30))?;
        assert_eq!(registry.current().id(), first);
        assert!(registry.current().contains(&ed));
        assert_eq!(ed.session_id(), Some(first));
        registry.with(|s| -> TestResult {
            assert_eq!(s.id(), first);
            s.commit()?;
            Ok(())
        })?;
        assert_eq!(count_rows(&db.engine(), "users")?, 1);
        assert!(
            registry.current().contains(&ed),
            "commit keeps the session and its objects"
        );
        Ok(())
    });
}

#[test]
fn other_threads_get_their_own_sessions() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let registry = registry(&db.engine());
        let mine = registry.current().id();
        let ed = registry.current().add(User::new("ed", 30))?;
        let (a, b) = std::thread::scope(|t| {
            let a = t.spawn(|| {
                let s = registry.current();
                assert!(
                    !s.contains(&ed),
                    "another thread's session does not hold it"
                );
                s.id()
            });
            let b = t.spawn(|| registry.current().id());
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_ne!(a, mine);
        assert_ne!(b, mine);
        assert_ne!(a, b);
        assert_eq!(
            registry.current().id(),
            mine,
            "this thread's session is unchanged"
        );
        assert!(registry.current().contains(&ed));
        Ok(())
    });
}

#[test]
fn a_second_borrow_on_the_same_thread_is_refused() {
    for_each_db(|db| {
        let registry = registry(&db.engine());
        let guard = registry.current();
        assert!(matches!(registry.try_current(), Err(SessionInUse { .. })));
        let nested = catch_unwind(AssertUnwindSafe(|| registry.current().id()));
        let message = nested.expect_err("current() panics while a guard is alive");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("already borrowed"), "{message}");
        let removing = catch_unwind(AssertUnwindSafe(|| registry.remove()));
        assert!(removing.is_err(), "remove() panics while a guard is alive");
        let id = guard.id();
        drop(guard);
        assert_eq!(
            registry.current().id(),
            id,
            "the refused calls changed nothing"
        );
        Ok(())
    });
}

#[test]
fn remove_closes_the_session_and_the_next_current_is_new() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let registry = registry(&db.engine());
        let kept = registry.with(|s| -> orm::Result<Obj<User>> {
            let kept = s.add(User::new("kept", 1))?;
            s.commit()?;
            Ok(kept)
        })?;
        let first = registry.current().id();
        let flushed = registry.current().add(User::new("flushed", 2))?;
        registry.current().flush()?; // written in the session's transaction
        let pending = registry.current().add(User::new("pending", 3))?;
        kept.set(User::age, 99)?;
        assert!(registry.current().in_transaction());

        registry.remove()?;
        assert!(!registry.has());
        assert_eq!(kept.state(), ObjectState::Detached);
        assert_eq!(
            flushed.state(),
            ObjectState::Transient,
            "its INSERT was rolled back"
        );
        assert_eq!(pending.state(), ObjectState::Transient);
        let conn = db.engine().connection()?;
        let rows = conn.execute_raw("SELECT name, age FROM users", &[])?;
        assert_eq!(rows.len(), 1, "only the committed row remains: {rows:?}");
        assert_eq!(rows.rows[0][0], orm::Value::Text("kept".into()));
        assert_eq!(
            rows.rows[0][1].as_i64(),
            Some(1),
            "the change was never written"
        );

        let second = registry.current().id();
        assert_ne!(second, first, "a new session");
        assert!(!registry.current().contains(&kept));
        registry.remove()?;
        registry.remove()?; // nothing to remove: fine
        Ok(())
    });
}

/// Polls `done` until it holds or `limit` passes.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn a_thread_that_exits_closes_its_session_and_returns_the_connection() {
    for_each_db(|db| {
        create_schema(&db.engine());
        // One connection in the pool: the session of the exiting thread must give it back.
        let engine = Engine::builder(db.url())
            .pool_size(1)
            .timeout(Duration::from_secs(1))
            .connect()?;
        let registry = registry(&engine);
        let (obj, worker_session) = std::thread::scope(|t| {
            t.spawn(|| -> orm::Result<(Obj<User>, u64)> {
                let mut s = registry.current();
                let obj = s.add(User::new("left behind", 1))?;
                s.flush()?; // holds the pool's only connection, in a transaction
                assert!(
                    matches!(engine.connection(), Err(CoreError::PoolTimeout { .. })),
                    "the session holds the only connection"
                );
                Ok((obj, s.id()))
                // The thread ends without remove().
            })
            .join()
            .expect("worker")
        })?;
        // Closed shortly after the thread's exit, by the registry's background thread.
        assert!(
            eventually(Duration::from_secs(10), || obj.session_id().is_none()),
            "the exited thread's session was closed: its objects are no longer attached"
        );
        assert_eq!(
            obj.state(),
            ObjectState::Transient,
            "its INSERT was rolled back"
        );
        let conn = engine
            .connection()
            .expect("the connection came back to the pool");
        let n = conn.execute_raw("SELECT count(*) FROM users", &[])?;
        assert_eq!(n.scalar().and_then(|v| v.as_i64()), Some(0), "rolled back");
        assert!(!conn.in_transaction());
        drop(conn);
        assert_ne!(registry.current().id(), worker_session);
        Ok(())
    });
}

/// The global of the per-request pattern; bound per database by the test below.
static SESSION: LazyLock<ScopedSession> =
    LazyLock::new(|| ScopedSession::new(sessionmaker().build()));

fn add_user(name: &str) -> orm::Result<Obj<User>> {
    SESSION.current().add(User::new(name, 20))
}

fn handle_request(name: &str, commit: bool) -> orm::Result<u64> {
    let result = add_user(name).and_then(|_| {
        let mut s = SESSION.current();
        if commit {
            s.commit()?;
        } else {
            s.flush()?;
        }
        Ok(s.id())
    });
    SESSION.remove()?; // the end-of-request hook
    result
}

#[test]
fn the_per_request_pattern_with_a_global_registry() {
    for_each_db(|db| {
        create_schema(&db.engine());
        SESSION.factory().configure(|o| {
            o.bind(db.engine());
        });
        let first = handle_request("ed", true)?;
        let second = handle_request("wendy", false)?;
        assert_ne!(first, second, "each request has its own session");
        let third = std::thread::spawn(|| handle_request("jack", true))
            .join()
            .expect("worker")?;
        assert_ne!(third, second);
        assert!(!SESSION.has(), "removed at the end of each request");
        assert_eq!(
            count_rows(&db.engine(), "users")?,
            2,
            "the uncommitted request left nothing"
        );
        let failed = std::thread::spawn(|| -> orm::Result<()> {
            let result = SESSION
                .current()
                .execute("SELECT * FROM no_such_table", &[])
                .map(drop);
            SESSION.remove()?;
            result
        })
        .join()
        .expect("worker");
        assert!(matches!(
            failed,
            Err(Error::Core(CoreError::UndefinedTable { .. }))
        ));
        Ok(())
    });
}
