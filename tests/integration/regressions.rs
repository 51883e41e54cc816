//! Regression tests for bugs found in review, each on both databases unless the bug is one
//! database's own.

use orm::prelude::*;
use orm::{CoreError, Error, Synchronize};

use crate::models::{create_schema, Address, Tag, User};
use crate::support::{count_rows, for_each_db, TestDb};

fn factory(db: &TestDb) -> SessionMaker {
    create_schema(&db.engine());
    sessionmaker().bind(db.engine()).build()
}

#[test]
fn a_failed_statement_makes_commit_fail_instead_of_losing_work_silently() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add_all([
            Tag {
                name: "a".into(),
                uses: 1,
            },
            Tag {
                name: "b".into(),
                uses: 2,
            },
        ])?;
        s.commit()?;
        s.add(User::new("ed", 30))?;
        s.flush()?;
        let clash = s
            .query::<Tag>()
            .filter(Tag::name.eq("b"))
            .update([Tag::name.assign("a")]);
        assert!(clash.is_err(), "unique violation");
        let committed = s.commit();
        if db.is_postgres() {
            // PostgreSQL aborted the transaction: commit must say so, not report success.
            assert!(
                matches!(committed, Err(Error::Core(CoreError::Transaction(_)))),
                "{committed:?}"
            );
            assert_eq!(count_rows(&db.engine(), "users")?, 0);
        } else {
            // SQLite undoes only the failed statement; the rest commits.
            committed?;
            assert_eq!(count_rows(&db.engine(), "users")?, 1);
        }
        Ok(())
    });
}

#[test]
fn expunge_inside_a_savepoint_keeps_its_rollback_exact() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let a = s.add(User::new("a", 1))?;
        s.flush()?;
        let sp = s.begin_nested()?;
        let b = s.add(User::new("b", 2))?;
        s.flush()?;
        s.expunge(&a)?;
        sp.rollback(&mut s)?;
        assert_eq!(
            b.state(),
            ObjectState::Transient,
            "inserted inside the savepoint: expunged"
        );
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 1);
        Ok(())
    });
}

#[test]
fn a_change_made_before_a_delete_is_never_written_after_a_savepoint_rollback() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let u = s.add(User::new("original", 1))?;
        s.commit()?;
        let sp = s.begin_nested()?;
        u.set(User::name, "changed")?;
        s.delete(&u)?;
        s.flush()?;
        sp.rollback(&mut s)?;
        assert_eq!(u.state(), ObjectState::Persistent);
        assert!(u.is_expired() && !u.is_modified());
        u.set(User::age, 2)?;
        s.commit()?;
        let mut fresh = f.session();
        let stored = fresh.get::<User>(u.identity_key().unwrap())?.unwrap();
        assert_eq!(
            (stored.read()?.name.clone(), stored.read()?.age),
            ("original".into(), 2)
        );
        Ok(())
    });
}

#[test]
fn expire_all_discards_unflushed_changes() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let u = s.add(User::new("ed", 1))?;
        s.commit()?;
        u.set(User::age, 99)?;
        s.expire_all();
        s.commit()?;
        assert_eq!(u.read()?.age, 1);
        Ok(())
    });
}

#[test]
fn a_new_object_cannot_take_the_key_of_one_the_session_holds() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let x = s.add(Tag {
            name: "k".into(),
            uses: 1,
        })?;
        s.commit()?;
        s.query::<Tag>()
            .filter(Tag::name.eq("k"))
            .synchronize(Synchronize::Off)
            .delete()?;
        s.add(Tag {
            name: "k".into(),
            uses: 2,
        })?;
        assert!(matches!(
            s.commit(),
            Err(Error::IdentityConflict { table: "tags", .. })
        ));
        s.rollback()?;
        assert_eq!(x.state(), ObjectState::Persistent);
        Ok(())
    });
}

#[test]
fn a_failed_flush_keeps_keys_the_user_chose() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let u = s.add(User {
            id: Some(4242),
            name: "chosen".into(),
            fullname: None,
            age: 1,
        })?;
        let generated = s.add(User::new("generated", 2))?;
        s.add(Address {
            id: None,
            user_id: 999_999,
            email: "x".into(),
        })?;
        assert!(s.flush().is_err());
        assert_eq!(u.read()?.id, Some(4242));
        assert_eq!(generated.read()?.id, None);
        s.rollback()?;
        assert_eq!(u.read()?.id, Some(4242));
        Ok(())
    });
}

#[test]
fn closing_a_session_joined_rollback_only_undoes_its_savepoints() {
    for_each_db(|db| {
        let f = factory(db);
        let conn = db.engine().connection()?;
        conn.begin()?;
        let stale;
        {
            let mut s = f.session_with(|o| {
                o.bind(&conn);
            });
            let sp = s.begin_nested()?;
            s.add(User::new("inside", 1))?;
            s.flush()?;
            s.close()?;
            assert!(!conn.in_savepoint(), "the session's savepoint is gone");
            assert!(matches!(sp.commit(&mut s), Err(Error::InactiveSavepoint)));
            stale = s.begin_nested()?;
            stale.rollback(&mut s)?;
        }
        conn.commit()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 0);
        Ok(())
    });
}

#[test]
fn an_old_savepoint_token_cannot_end_a_newer_savepoint() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let old = s.begin_nested()?;
        s.commit()?;
        let new = s.begin_nested()?;
        let u = s.add(User::new("kept", 1))?;
        s.flush()?;
        old.rollback(&mut s)?; // the savepoint it named is gone: nothing happens
        assert_eq!(u.state(), ObjectState::Persistent);
        new.commit(&mut s)?;
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 1);
        Ok(())
    });
}

#[test]
fn deleting_a_row_someone_else_deleted_is_not_an_error_without_a_version() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let t = s.add(Tag {
            name: "t".into(),
            uses: 1,
        })?;
        s.commit()?;
        let other = Engine::connect(db.url())?;
        other.connection()?.execute("DELETE FROM tags", &[])?;
        s.delete(&t)?;
        s.commit()?;
        assert_eq!(t.state(), ObjectState::Detached);
        Ok(())
    });
}

#[test]
fn comparing_with_none_means_is_null() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add_all([
            User::new("no fullname", 1),
            User {
                fullname: Some("F".into()),
                ..User::new("f", 2)
            },
        ])?;
        assert_eq!(
            s.query::<User>()
                .filter(User::fullname.eq(None::<String>))
                .count()?,
            1
        );
        assert_eq!(
            s.query::<User>()
                .filter(User::fullname.ne(None::<String>))
                .count()?,
            1
        );
        // The session's own evaluation agrees with the database.
        let n = s
            .query::<User>()
            .filter(User::fullname.eq(None::<String>))
            .synchronize(Synchronize::Evaluate)
            .update([User::age.assign(10)])?;
        assert_eq!(n, 1);
        let ages: Vec<i32> = s
            .query::<User>()
            .select(User::age)
            .order_by(User::age)
            .all()?;
        assert_eq!(ages, [2, 10]);
        Ok(())
    });
}

#[test]
fn terminal_methods_keep_a_smaller_user_limit_and_iter_matches_all() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(User::new("ed", 1))?;
        s.add(User::new("wendy", 2))?;
        s.flush()?;
        let id = ed.identity_key().unwrap();
        s.add_all((0..3).map(|i| Address {
            id: None,
            user_id: id,
            email: format!("{i}"),
        }))?;
        assert!(s.query::<User>().order_by(User::id).limit(1).one().is_ok());
        assert!(!s.query::<User>().limit(0).exists()?);
        let all = s.query::<User>().join::<Address>().all()?.len();
        for batch in [1, 2, 10] {
            let streamed = s.query::<User>().join::<Address>().iter(batch)?.count();
            assert_eq!(streamed, all, "batch {batch}");
        }
        Ok(())
    });
}

#[test]
fn iter_splits_key_lookups_under_the_parameter_limit() -> crate::support::TestResult {
    // SQLite's limit (32,766 parameters) is the lower one.
    let db = TestDb::sqlite();
    let f = factory(&db);
    let mut s = f.session();
    s.add_all((0..33_000).map(|i| User::new("u", i)))?;
    s.commit()?;
    let n = s.query::<User>().iter(40_000)?.count();
    assert_eq!(n, 33_000);
    Ok(())
}

#[test]
fn a_failed_sqlite_commit_keeps_the_transaction_to_roll_back() -> crate::support::TestResult {
    // Deferred foreign keys fail at COMMIT, and SQLite keeps the transaction open.
    let db = TestDb::sqlite();
    let f = factory(&db);
    let conn = db.engine().connection()?;
    let mut s = f.session_with(|o| {
        o.bind(&conn);
    });
    s.execute("PRAGMA defer_foreign_keys = ON", &[])?;
    s.add(Address {
        id: None,
        user_id: 999_999,
        email: "x".into(),
    })?;
    assert!(s.commit().is_err());
    assert!(
        conn.in_transaction(),
        "the connection still knows its transaction is open"
    );
    conn.rollback()?;
    drop(s);
    conn.begin()?; // usable again
    conn.rollback()?;
    assert_eq!(count_rows(&db.engine(), "addresses")?, 0);
    Ok(())
}

#[test]
fn a_bulk_update_inside_a_savepoint_is_expired_by_its_rollback() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let u = s.add(User::new("ed", 30))?;
        s.commit()?;
        assert_eq!(u.read()?.age, 30);
        let sp = s.begin_nested()?;
        s.query::<User>()
            .filter(User::age.eq(30))
            .update([User::age.assign(18)])?;
        assert_eq!(u.read()?.age, 18);
        sp.rollback(&mut s)?;
        assert!(u.is_expired());
        assert_eq!(u.read()?.age, 30, "reloaded as the savepoint left it");
        Ok(())
    });
}
