//! Regression tests for bugs found in review, each on both databases unless the bug is one
//! database's own.

use orm::prelude::*;
use orm::{CoreError, Error, Synchronize};

use crate::models::{create_schema, Address, Tag, User};
use crate::support::{capture, count_rows, for_each_db, TestDb};

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

/// A table wider than the object's inline change word (56 columns): changes to the columns past
/// it are recorded beside the object and must behave exactly as the others.
#[derive(Mapped, Debug)]
#[mapped(table = "wide_rows")]
struct Wide {
    #[mapped(primary_key)]
    id: Option<i64>,
    c1: i32,
    c2: i32,
    c3: i32,
    c4: i32,
    c5: i32,
    c6: i32,
    c7: i32,
    c8: i32,
    c9: i32,
    c10: i32,
    c11: i32,
    c12: i32,
    c13: i32,
    c14: i32,
    c15: i32,
    c16: i32,
    c17: i32,
    c18: i32,
    c19: i32,
    c20: i32,
    c21: i32,
    c22: i32,
    c23: i32,
    c24: i32,
    c25: i32,
    c26: i32,
    c27: i32,
    c28: i32,
    c29: i32,
    c30: i32,
    c31: i32,
    c32: i32,
    c33: i32,
    c34: i32,
    c35: i32,
    c36: i32,
    c37: i32,
    c38: i32,
    c39: i32,
    c40: i32,
    c41: i32,
    c42: i32,
    c43: i32,
    c44: i32,
    c45: i32,
    c46: i32,
    c47: i32,
    c48: i32,
    c49: i32,
    c50: i32,
    c51: i32,
    c52: i32,
    c53: i32,
    c54: i32,
    c55: i32,
    c56: i32,
    c57: i32,
    c58: i32,
    c59: i32,
    c60: i32,
    c61: i32,
}

#[test]
fn changes_and_expiry_of_columns_past_the_inline_word_are_kept() {
    for_each_db(|db| {
        Metadata::of::<(Wide,)>().create_all(&db.engine())?;
        let f = sessionmaker().bind(db.engine()).build();
        let mut s = f.session();
        let w = s.add(Wide {
            id: None,
            c1: 0,
            c2: 0,
            c3: 0,
            c4: 0,
            c5: 0,
            c6: 0,
            c7: 0,
            c8: 0,
            c9: 0,
            c10: 0,
            c11: 0,
            c12: 0,
            c13: 0,
            c14: 0,
            c15: 0,
            c16: 0,
            c17: 0,
            c18: 0,
            c19: 0,
            c20: 0,
            c21: 0,
            c22: 0,
            c23: 0,
            c24: 0,
            c25: 0,
            c26: 0,
            c27: 0,
            c28: 0,
            c29: 0,
            c30: 0,
            c31: 0,
            c32: 0,
            c33: 0,
            c34: 0,
            c35: 0,
            c36: 0,
            c37: 0,
            c38: 0,
            c39: 0,
            c40: 0,
            c41: 0,
            c42: 0,
            c43: 0,
            c44: 0,
            c45: 0,
            c46: 0,
            c47: 0,
            c48: 0,
            c49: 0,
            c50: 0,
            c51: 0,
            c52: 0,
            c53: 0,
            c54: 0,
            c55: 0,
            c56: 0,
            c57: 0,
            c58: 0,
            c59: 0,
            c60: 0,
            c61: 0,
        })?;
        s.commit()?;
        w.set(Wide::c60, 6)?;
        w.set(Wide::c2, 2)?;
        assert!(w.is_modified());
        // Detached and added back, it keeps its changes, and the UPDATE carries exactly them.
        s.expunge(&w)?;
        assert!(w.is_modified());
        s.add(&w)?;
        let ((), sql) = capture(|| s.flush().expect("flush"));
        let update = sql
            .iter()
            .find(|q| q.starts_with("UPDATE"))
            .expect("an UPDATE");
        assert!(
            update.contains("\"c60\"") && update.contains("\"c2\""),
            "{update}"
        );
        assert!(
            !update.contains("\"c59\"") && !update.contains("\"c61\""),
            "{update}"
        );
        assert!(!w.is_modified());
        s.commit()?;

        // Expiring one wide column discards its change only; detached, the object refuses to
        // read rather than return the stale column.
        w.set(Wide::c61, 61)?;
        w.set(Wide::c58, 58)?;
        s.expire_columns(&w, &[&Wide::c61])?;
        assert!(w.is_expired() && w.is_modified());
        s.expunge(&w)?;
        assert!(matches!(w.read(), Err(Error::DetachedInstance { .. })));
        s.add(&w)?;
        assert_eq!(w.read()?.c61, 0, "reloaded from the row");
        assert_eq!(w.read()?.c58, 58, "the unflushed change survives");
        s.commit()?;
        assert_eq!(w.read()?.c58, 58);
        Ok(())
    });
}

#[test]
fn rows_repeating_a_key_load_as_one_object_in_a_fresh_session_and_in_a_used_one() {
    for_each_db(|db| {
        // A table whose key column is not unique in the database.
        db.engine().connection()?.execute(
            "CREATE TABLE tags (name TEXT NOT NULL, uses BIGINT NOT NULL)",
            &[],
        )?;
        let f = sessionmaker().bind(db.engine()).build();
        let insert = format!("INSERT INTO tags VALUES ({})", db.params(2));
        let conn = db.engine().connection()?;
        for (name, uses) in [("a", 1i64), ("a", 2), ("b", 3)] {
            conn.execute(&insert, &[name.into(), uses.into()])?;
        }
        let load = |s: &mut Session| s.query::<Tag>().order_by(Tag::uses.asc()).all();

        // The first load into an empty identity map enters its objects at the end.
        let mut fresh = f.session();
        let tags = load(&mut fresh)?;
        assert_eq!(tags.len(), 3);
        assert!(tags[0].ptr_eq(&tags[1]), "one object per key");
        assert!(!tags[0].ptr_eq(&tags[2]));
        assert_eq!(tags[1].read()?.uses, 1, "the first row's values");
        // A later load (one row at a time) finds the same objects.
        let again = load(&mut fresh)?;
        assert!(again.iter().zip(&tags).all(|(a, b)| a.ptr_eq(b)));

        // A session that already holds an object of the type loads one row at a time.
        let mut used = f.session();
        let b = used.query::<Tag>().filter(Tag::name.eq("b")).one()?;
        let tags = load(&mut used)?;
        assert!(tags[0].ptr_eq(&tags[1]) && tags[2].ptr_eq(&b));
        assert_eq!(tags[1].read()?.uses, 1);
        Ok(())
    });
}
