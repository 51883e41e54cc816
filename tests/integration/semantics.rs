//! Session semantics of the reference on both databases: savepoints, joining external
//! transactions, expiry and refresh, merge, transient/detached conversions, the weak identity
//! map and no_autoflush.

use orm::prelude::*;
use orm::{Error, JoinTransactionMode};

use crate::models::{create_schema, Tag, User};
use crate::support::{
    capture, count_prefix, count_rows, for_each_db, query_i64, without_transaction_control, TestDb,
};

fn factory(db: &TestDb) -> SessionMaker {
    create_schema(&db.engine());
    sessionmaker().bind(db.engine()).build()
}

fn age_in_db(db: &TestDb, id: i64) -> i64 {
    let conn = db.engine().connection().expect("connection");
    let sql = format!("SELECT age FROM users WHERE id = {}", db.param(1));
    query_i64(&conn, &sql, &[id.into()]).expect("age")
}

/// Changes a row from outside the session, as another process would.
fn external(db: &TestDb, sql: &str) {
    let engine = Engine::connect(db.url()).expect("second engine");
    engine
        .connection()
        .expect("connection")
        .execute(sql, &[])
        .expect("external statement");
}

#[test]
fn rolling_back_a_savepoint_undoes_its_work_in_the_database_and_the_session() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let a = s.add(User::new("a", 1))?;
        let c = s.add(User::new("c", 3))?;
        let (nested, sql) = capture(|| s.begin_nested().expect("savepoint"));
        let sql = without_transaction_control(&sql);
        assert!(
            sql.iter().any(|q| q.starts_with("INSERT")),
            "flushes before SAVEPOINT: {sql:?}"
        );
        let b = s.add(User::new("b", 2))?;
        a.set(User::age, 100)?;
        s.delete(&c)?;
        s.flush()?;
        assert_eq!(c.state(), ObjectState::Deleted);
        let ((), sql) = capture(|| nested.rollback(&mut s).expect("rollback to savepoint"));
        assert!(
            sql.iter().any(|q| q.starts_with("ROLLBACK TO SAVEPOINT")),
            "{sql:?}"
        );
        assert_eq!(b.state(), ObjectState::Transient, "added inside: expunged");
        assert_eq!(
            c.state(),
            ObjectState::Persistent,
            "deleted inside: persistent again"
        );
        assert!(a.is_expired(), "changed inside: expired");
        assert_eq!(a.read()?.age, 1);
        assert!(s.in_transaction(), "the outer transaction goes on");
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 2);
        assert_eq!(age_in_db(db, a.identity_key().unwrap()), 1);
        Ok(())
    });
}

#[test]
fn savepoints_nest_to_any_depth() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let one = s.begin_nested()?;
        s.add(User::new("depth1", 1))?;
        let two = s.begin_nested()?;
        s.add(User::new("depth2", 2))?;
        let three = s.begin_nested()?;
        let deep = s.add(User::new("depth3", 3))?;
        three.commit(&mut s)?;
        // Rolling back level two undoes level three too, even though it was released.
        two.rollback(&mut s)?;
        assert_eq!(deep.state(), ObjectState::Transient);
        one.commit(&mut s)?;
        s.commit()?;
        let names: Vec<String> = s
            .query::<User>()
            .all()?
            .iter()
            .map(|u| u.read().map(|u| u.name.clone()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, ["depth1"]);
        Ok(())
    });
}

#[test]
fn a_released_savepoint_is_still_undone_by_the_outer_rollback() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.nested(|s| s.add(User::new("inner", 1)).map(drop))?;
        s.rollback()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 0);
        // A closure that fails rolls its savepoint back and returns the error.
        let kept = s.add(User::new("kept", 1))?;
        let result = s.nested(|s| {
            s.add(User::new("dropped", 2))?;
            s.flush()?;
            Err::<(), _>(Error::NoTransaction)
        });
        assert!(matches!(result, Err(Error::NoTransaction)));
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 1);
        assert_eq!(kept.state(), ObjectState::Persistent);
        Ok(())
    });
}

#[test]
fn a_failed_flush_inside_a_savepoint_rolls_back_only_the_savepoint() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add(Tag {
            name: "taken".into(),
            uses: 0,
        })?;
        s.commit()?;
        let before = s.add(User::new("before", 1))?;
        let nested = s.begin_nested()?;
        let dup = s.add(Tag {
            name: "taken".into(),
            uses: 1,
        })?;
        assert!(matches!(s.flush(), Err(Error::Flush { table: "tags", .. })));
        assert_eq!(dup.state(), ObjectState::Transient);
        // The savepoint is gone; the transaction and its earlier work go on.
        assert!(matches!(
            nested.commit(&mut s),
            Err(Error::InactiveSavepoint)
        ));
        s.add(User::new("after", 2))?;
        s.commit()?;
        assert_eq!(before.state(), ObjectState::Persistent);
        assert_eq!(count_rows(&db.engine(), "users")?, 2);
        assert_eq!(count_rows(&db.engine(), "tags")?, 1);
        Ok(())
    });
}

#[test]
fn join_mode_create_savepoint_is_the_test_fixture_pattern() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let f = sessionmaker()
            .bind(db.engine())
            .join_transaction_mode(JoinTransactionMode::CreateSavepoint)
            .build();
        let conn = db.engine().connection()?;
        conn.begin()?;
        conn.execute("INSERT INTO tags (name, uses) VALUES ('fixture', 0)", &[])?;
        let mut s = f.session_with(|o| {
            o.bind(&conn);
        });
        s.add(User::new("committed", 1))?;
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert!(
            sql.iter().any(|q| q.starts_with("RELEASE SAVEPOINT")),
            "{sql:?}"
        );
        assert_eq!(
            count_prefix(&sql, "COMMIT"),
            0,
            "the outer transaction is not committed"
        );
        s.add(User::new("rolled back", 2))?;
        s.flush()?;
        s.rollback()?;
        assert!(
            conn.in_transaction(),
            "the session's rollback ends only its savepoint"
        );
        let mut users = 0;
        conn.query("SELECT count(*) FROM users", &[], |r| {
            users = r.get::<i64>(0).unwrap().unwrap();
            Ok(())
        })?;
        assert_eq!(users, 1);
        drop(s);
        conn.rollback()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 0);
        assert_eq!(count_rows(&db.engine(), "tags")?, 0);
        Ok(())
    });
}

#[test]
fn join_modes_rollback_only_conservative_and_control_fully() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let f = sessionmaker().bind(db.engine()).build();

        // Default (conservative) on a plain transaction: rollback only.
        let conn = db.engine().connection()?;
        conn.begin()?;
        let mut s = f.session_with(|o| {
            o.bind(&conn);
        });
        s.add(User::new("x", 1))?;
        s.commit()?;
        assert!(
            conn.in_transaction(),
            "commit leaves the caller's transaction open"
        );
        s.rollback()?; // nothing of the session's own; a new join rolls back the outer one
        s.add(User::new("y", 2))?;
        s.flush()?;
        s.rollback()?;
        assert!(
            !conn.in_transaction(),
            "rollback rolls the caller's transaction back"
        );
        drop(s);

        // Conservative inside a savepoint of the caller: the session makes its own savepoint.
        conn.begin()?;
        conn.savepoint("outer_sp")?;
        let mut s = f.session_with(|o| {
            o.bind(&conn);
        });
        let ((), sql) = capture(|| {
            s.add(User::new("z", 3)).expect("add");
            s.commit().expect("commit");
        });
        assert!(sql.iter().any(|q| q.starts_with("SAVEPOINT")), "{sql:?}");
        assert!(conn.in_savepoint() && conn.in_transaction());
        drop(s);
        conn.rollback()?;

        // Control fully: the session's commit commits the caller's transaction.
        conn.begin()?;
        let mut s = f.session_with(|o| {
            o.bind(&conn)
                .join_transaction_mode(JoinTransactionMode::ControlFully);
        });
        s.add(User::new("controlled", 4))?;
        s.commit()?;
        assert!(!conn.in_transaction());
        assert_eq!(count_rows(&db.engine(), "users")?, 1);
        Ok(())
    });
}

#[test]
fn expire_refresh_and_expire_columns() {
    for_each_db(|db| {
        let f = sessionmaker()
            .bind(db.engine())
            .expire_on_commit(false)
            .build();
        create_schema(&db.engine());
        let mut s = f.session();
        let ed = s.add(User::new("ed", 30))?;
        s.commit()?;
        let id = ed.identity_key().unwrap();
        external(
            db,
            &format!("UPDATE users SET age = 40, name = 'edward' WHERE id = {id}"),
        );
        assert_eq!(ed.read()?.age, 30, "not expired: no reload");

        // Partial expiry: only `age` is reloaded; an unflushed change to `fullname` survives.
        ed.set(User::fullname, Some("Ed Jones".to_string()))?;
        s.expire_columns(&ed, &[&User::age])?;
        let (row, sql) = capture(|| {
            let r = ed.read().expect("read");
            (r.name.clone(), r.age, r.fullname.clone())
        });
        assert_eq!(count_prefix(&sql, "SELECT"), 1);
        assert_eq!(row, ("ed".to_string(), 40, Some("Ed Jones".to_string())));
        let ((), sql) = capture(|| s.flush().expect("flush"));
        let update = sql
            .iter()
            .find(|q| q.starts_with("UPDATE"))
            .expect("an UPDATE");
        assert!(
            update.contains("\"fullname\"") && !update.contains("\"age\""),
            "{update}"
        );
        s.commit()?;

        // Whole expiry discards unflushed changes.
        ed.set(User::age, 1)?;
        s.expire(&ed)?;
        assert!(!ed.is_modified());
        assert_eq!(ed.read()?.name, "edward");
        assert_eq!(ed.read()?.age, 40);

        // refresh loads immediately. (Commit first: SQLite has one writer at a time.)
        s.commit()?;
        external(db, &format!("UPDATE users SET age = 50 WHERE id = {id}"));
        let ((), sql) = capture(|| s.refresh(&ed).expect("refresh"));
        assert_eq!(count_prefix(&sql, "SELECT"), 1);
        assert!(!ed.is_expired());
        assert_eq!(ed.read()?.age, 50);

        // expire_all expires everything.
        let other = s.add(User::new("other", 1))?;
        s.flush()?;
        s.expire_all();
        assert!(ed.is_expired() && other.is_expired());
        Ok(())
    });
}

#[test]
fn reading_an_object_whose_row_was_deleted_is_a_clear_error() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(User::new("ed", 30))?;
        s.commit()?;
        let id = ed.identity_key().unwrap();
        external(db, &format!("DELETE FROM users WHERE id = {id}"));
        match ed.read() {
            Err(Error::ObjectDeleted {
                table: "users",
                key,
            }) => assert_eq!(key, id.to_string()),
            Err(other) => panic!("expected ObjectDeleted, got {other:?}"),
            Ok(_) => panic!("expected ObjectDeleted, read a stale row"),
        }
        assert!(matches!(s.refresh(&ed), Err(Error::ObjectDeleted { .. })));
        Ok(())
    });
}

#[test]
fn merge_copies_state_onto_the_sessions_object() {
    for_each_db(|db| {
        let f = factory(db);
        let mut first = f.session();
        let ed = first.add(User::new("ed", 30))?;
        first.commit()?;
        let id = ed.identity_key().unwrap();
        first.close()?;

        // A detached copy with a change, merged into another session: loaded, then updated.
        let detached = User {
            id: Some(id),
            name: "ed".into(),
            fullname: None,
            age: 31,
        };
        let mut s = f.session();
        let (merged, sql) = capture(|| s.merge(detached).expect("merge"));
        assert_eq!(count_prefix(&sql, "SELECT"), 1, "loaded once: {sql:?}");
        assert_eq!(merged.state(), ObjectState::Persistent);
        assert!(merged.is_modified());
        let ((), sql) = capture(|| s.flush().expect("flush"));
        let update = sql
            .iter()
            .find(|q| q.starts_with("UPDATE"))
            .expect("UPDATE");
        assert!(
            update.contains("\"age\"") && !update.contains("\"name\""),
            "{update}"
        );

        // Merging the same key again uses the held object: no SQL.
        let again = User {
            id: Some(id),
            name: "ed".into(),
            fullname: None,
            age: 31,
        };
        let (same, sql) = capture(|| s.merge(again).expect("merge"));
        assert!(same.ptr_eq(&merged));
        assert!(sql.is_empty(), "{sql:?}");

        // No key, or a key without a row: a new pending object.
        let fresh = s.merge(User::new("fresh", 1))?;
        assert_eq!(fresh.state(), ObjectState::Pending);
        let tag = s.merge(Tag {
            name: "new".into(),
            uses: 1,
        })?;
        assert_eq!(tag.state(), ObjectState::Pending);
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "tags")?, 1);
        assert_eq!(age_in_db(db, id), 31);
        Ok(())
    });
}

#[test]
fn merge_without_load_trusts_clean_data_and_issues_no_sql() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add(Tag {
            name: "cached".into(),
            uses: 5,
        })?;
        s.commit()?;
        let mut other = f.session();
        let (tag, sql) = capture(|| {
            other
                .merge_without_load(Tag {
                    name: "cached".into(),
                    uses: 5,
                })
                .expect("merge")
        });
        assert!(sql.is_empty(), "{sql:?}");
        assert_eq!(tag.state(), ObjectState::Persistent);
        tag.set(Tag::uses, 6)?;
        other.commit()?;
        let conn = db.engine().connection()?;
        assert_eq!(
            query_i64(&conn, "SELECT uses FROM tags WHERE name = 'cached'", &[])?,
            6
        );

        // A source with unflushed changes cannot be trusted as the row's state.
        let dirty = Obj::new(Tag {
            name: "x".into(),
            uses: 0,
        });
        let mut third = f.session();
        third.add(&dirty)?;
        third.flush()?;
        third.expunge(&dirty)?;
        dirty.set(Tag::uses, 9)?;
        let mut fourth = f.session();
        assert!(matches!(
            fourth.merge_without_load(&dirty),
            Err(Error::MergeDirtyWithoutLoad { table: "tags" })
        ));
        Ok(())
    });
}

#[test]
fn make_transient_and_make_transient_to_detached() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let tag = s.add(Tag {
            name: "t".into(),
            uses: 1,
        })?;
        s.commit()?;
        external(db, "DELETE FROM tags");
        s.make_transient(&tag)?;
        assert_eq!(tag.state(), ObjectState::Transient);
        s.add(&tag)?; // an INSERT again, as for any transient object
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert_eq!(count_prefix(&sql, "INSERT"), 1);
        assert_eq!(count_rows(&db.engine(), "tags")?, 1);

        // A row known to exist, rebuilt by hand: detached, then persistent without an INSERT.
        let known = Obj::new(Tag {
            name: "t".into(),
            uses: 1,
        });
        let mut other = f.session();
        other.make_transient_to_detached(&known)?;
        assert_eq!(known.state(), ObjectState::Detached);
        other.add(&known)?;
        known.set(Tag::uses, 2)?;
        let ((), sql) = capture(|| other.commit().expect("commit"));
        let sql = without_transaction_control(&sql);
        assert_eq!(sql.len(), 1, "{sql:?}");
        assert!(sql[0].starts_with("UPDATE"));
        assert!(matches!(
            other.make_transient_to_detached(&Obj::new(User::new("no key", 1))),
            Err(Error::NoIdentity { table: "users" })
        ));
        Ok(())
    });
}

#[test]
fn clean_objects_are_held_weakly_and_changed_ones_until_flushed() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add_all((0..3000).map(|i| User::new(&format!("u{i}"), i)))?; // handles dropped
        s.commit()?;
        assert_eq!(
            count_rows(&db.engine(), "users")?,
            3000,
            "pending objects were held"
        );
        assert_eq!(s.len(), 0, "clean objects nobody holds were released");

        // Streaming many rows keeps the identity map bounded.
        for offset in (0..3000).step_by(500) {
            let batch = s
                .query::<User>()
                .order_by(User::id)
                .offset(offset)
                .limit(500)
                .all()?;
            assert_eq!(batch.len(), 500);
            assert_eq!(s.len(), 500);
        }
        assert_eq!(s.len(), 0);

        // A changed object is held until flushed even when the user drops it.
        let first = s
            .query::<User>()
            .order_by(User::id)
            .first()?
            .expect("a row");
        let id = first.identity_key().unwrap();
        first.set(User::age, -5)?;
        drop(first);
        s.commit()?;
        assert_eq!(age_in_db(db, id), -5);

        // A released object is loaded again by get (one SELECT).
        let (_, sql) = capture(|| s.get::<User>(id).expect("get"));
        assert_eq!(count_prefix(&sql, "SELECT"), 1);
        Ok(())
    });
}

#[test]
fn no_autoflush_suspends_autoflush_for_a_block() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add(User::new("pending", 1))?;
        let found = s.no_autoflush(|s| s.query::<User>().all())?;
        assert!(found.is_empty(), "not flushed inside the block");
        assert!(s.options().get_autoflush(), "restored afterwards");
        assert_eq!(s.query::<User>().all()?.len(), 1);
        Ok(())
    });
}

#[test]
fn merging_an_expired_detached_object_copies_only_its_key() {
    for_each_db(|db| {
        let f = factory(db);
        let ed = f.begin(|s| s.add(User::new("ed", 30)))?; // committed, expired, detached
        let id = ed.identity_key().unwrap();
        external(db, &format!("UPDATE users SET age = 31 WHERE id = {id}"));
        let mut s = f.session();
        let merged = s.merge(&ed)?;
        assert!(!merged.ptr_eq(&ed) && !merged.is_modified());
        assert_eq!(
            merged.read()?.age,
            31,
            "the row's current state, not stale values"
        );
        assert!(matches!(
            f.session().merge_without_load(&ed),
            Err(Error::DetachedInstance { table: "users" })
        ));
        Ok(())
    });
}
