//! `sessionmaker` on both databases: configuration, per-call overrides, `begin`, binding to
//! a connection, custom session types and a global factory.

use std::sync::LazyLock;

use orm::prelude::*;
use orm::{Error, FromSession};

use crate::models::{create_schema, User};
use crate::support::{count_rows, for_each_db, TestResult};

#[test]
fn configure_affects_later_sessions_only() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let factory = sessionmaker().build();
        let mut unbound = factory.session();
        assert!(matches!(unbound.query::<User>().all(), Err(Error::Unbound)));
        factory.configure(|c| {
            c.bind(db.engine()).autoflush(false).expire_on_commit(false);
        });
        let mut s = factory.session();
        assert!(!s.options().get_autoflush() && !s.options().get_expire_on_commit());
        assert!(
            unbound.options().get_autoflush(),
            "an existing session keeps its options"
        );
        s.add(User::new("ed", 1))?;
        assert!(s.query::<User>().all()?.is_empty(), "autoflush is off");
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 1);
        Ok(())
    });
}

#[test]
fn info_given_per_call_is_merged_not_replaced() {
    for_each_db(|db| {
        let factory = sessionmaker()
            .bind(db.engine())
            .info("app", "shop")
            .info("tier", 1u8)
            .build();
        let s = factory.session_with(|o| {
            o.info("tier", 2u8).info("request", 17u64);
        });
        let info = s.info();
        assert_eq!(info.get::<&str>("app"), Some(&"shop"));
        assert_eq!(info.get::<u8>("tier"), Some(&2));
        assert_eq!(info.get::<u64>("request"), Some(&17));
        assert_eq!(
            factory.session().info().len(),
            2,
            "the factory is unchanged"
        );
        Ok(())
    });
}

#[test]
fn begin_commits_on_ok_rolls_back_on_err_and_always_closes() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let factory = sessionmaker().bind(db.engine()).build();
        let kept = factory.begin(|s| s.add(User::new("kept", 1)))?;
        assert_eq!(count_rows(&db.engine(), "users")?, 1);
        assert_eq!(
            kept.state(),
            ObjectState::Detached,
            "the session was closed"
        );

        let mut leaked = None;
        let result: orm::Result<()> = factory.begin(|s| {
            leaked = Some(s.add(User::new("dropped", 2))?);
            s.flush()?;
            Err(Error::NoTransaction)
        });
        assert!(result.is_err());
        assert_eq!(count_rows(&db.engine(), "users")?, 1, "rolled back");
        assert_eq!(leaked.unwrap().state(), ObjectState::Transient);
        Ok(())
    });
}

#[test]
fn a_session_bound_to_a_connection_joins_its_external_transaction() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let factory = sessionmaker().bind(db.engine()).build();
        let conn = db.engine().connection()?;
        conn.begin()?;
        let mut s = factory.session_with(|o| {
            o.bind(&conn);
        });
        s.add(User::new("inside", 1))?;
        s.commit()?; // flushes, but the outer transaction is the caller's
        assert!(conn.in_transaction());
        assert_eq!(
            count_rows(&db.engine(), "users")?,
            0,
            "not visible outside the transaction"
        );
        let mut seen = 0;
        conn.query("SELECT count(*) FROM users", &[], |r| {
            seen = r.get::<i64>(0).unwrap().unwrap();
            Ok(())
        })?;
        assert_eq!(seen, 1, "visible on the connection itself");
        drop(s);
        conn.rollback()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 0, "nothing left behind");
        Ok(())
    });
}

struct AuditedSession {
    inner: Session,
    actions: Vec<String>,
}

impl FromSession for AuditedSession {
    fn from_session(inner: Session) -> Self {
        AuditedSession {
            inner,
            actions: Vec::new(),
        }
    }
    fn session_mut(&mut self) -> &mut Session {
        &mut self.inner
    }
}

impl AuditedSession {
    fn add_user(&mut self, name: &str) -> orm::Result<Obj<User>> {
        self.actions.push(format!("add {name}"));
        self.inner.add(User::new(name, 0))
    }
}

#[test]
fn a_custom_session_type() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let factory = sessionmaker()
            .bind(db.engine())
            .class::<AuditedSession>()
            .build();
        let actions = factory.begin(|s| {
            s.add_user("ed")?;
            Ok(s.actions.clone())
        })?;
        assert_eq!(actions, ["add ed"]);
        assert_eq!(count_rows(&db.engine(), "users")?, 1);
        Ok(())
    });
}

static GLOBAL: LazyLock<SessionMaker> =
    LazyLock::new(|| sessionmaker().expire_on_commit(false).build());

#[test]
fn a_global_factory_serves_many_threads() -> TestResult {
    let db = crate::support::TestDb::sqlite();
    create_schema(&db.engine());
    GLOBAL.configure(|c| {
        c.bind(db.engine());
    });
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                GLOBAL.begin(|s| s.add(User::new(&format!("t{i}"), i)).map(drop))
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread")?;
    }
    assert_eq!(count_rows(&db.engine(), "users")?, 4);
    Ok(())
}
