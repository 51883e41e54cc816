//! Bulk UPDATE and DELETE by criteria on both databases, with the session kept in step.

use orm::prelude::*;
use orm::{Error, Synchronize};

use crate::models::{three_users, User};
use crate::support::{
    capture, count_prefix, count_rows, for_each_db, without_transaction_control, TestDb,
};

/// Every held object's in-memory row equals the database's row.
fn assert_in_step(db: &TestDb, f: &SessionMaker, users: &[Obj<User>]) {
    let mut fresh = f.session();
    for u in users
        .iter()
        .filter(|u| u.state() == ObjectState::Persistent)
    {
        let id = u.identity_key().unwrap();
        let stored = fresh.get::<User>(id).expect("get").expect("row");
        let (a, b) = (u.read().expect("read"), stored.read().expect("read"));
        assert_eq!(
            (&a.name, &a.fullname, a.age),
            (&b.name, &b.fullname, b.age),
            "[{}] id {id}",
            db.name()
        );
    }
}

#[test]
fn bulk_update_evaluates_criteria_against_held_objects() {
    for_each_db(|db| {
        let (f, mut s, users) = three_users(db);
        let (n, sql) = capture(|| {
            s.query::<User>()
                .filter(User::age.lt(18))
                .update([User::age.assign(18)])
                .expect("update")
        });
        assert_eq!(n, 2);
        let sql = without_transaction_control(&sql);
        assert_eq!(sql.len(), 1, "one statement, no extra SELECT: {sql:?}");
        assert!(
            sql[0].starts_with("UPDATE \"users\" SET \"age\"") && !sql[0].contains("RETURNING")
        );
        assert_eq!(
            users
                .iter()
                .map(|u| u.read().unwrap().age)
                .collect::<Vec<_>>(),
            [30, 18, 18]
        );
        assert!(
            !users[1].is_modified(),
            "synchronized values are not pending changes"
        );
        s.commit()?;
        assert_in_step(db, &f, &users);
        Ok(())
    });
}

#[test]
fn criteria_the_database_orders_by_collation_are_fetched() {
    for_each_db(|db| {
        let (f, mut s, users) = three_users(db);
        let (n, sql) = capture(|| {
            s.query::<User>()
                .filter(User::name.gt("m"))
                .update([User::age.assign(99)])
                .expect("update")
        });
        assert_eq!(n, 2);
        assert!(
            sql.iter()
                .any(|q| q.starts_with("UPDATE") && q.contains("RETURNING")),
            "{sql:?}"
        );
        assert_eq!(
            users
                .iter()
                .map(|u| u.read().unwrap().age)
                .collect::<Vec<_>>(),
            [30, 99, 99]
        );
        s.commit()?;
        assert_in_step(db, &f, &users);
        Ok(())
    });
}

#[test]
fn null_comparisons_match_nothing_in_memory_as_in_the_database() {
    for_each_db(|db| {
        let (f, mut s, users) = three_users(db);
        for mode in [Synchronize::Evaluate, Synchronize::Fetch] {
            let n = s
                .query::<User>()
                .filter(User::fullname.ne("Mary"))
                .synchronize(mode)
                .update([User::age.assign(1)])?;
            assert_eq!(n, 1, "wendy's NULL fullname is not <> 'Mary'");
        }
        s.commit()?;
        assert_in_step(db, &f, &users);
        assert_eq!(users[1].read()?.age, 17);
        Ok(())
    });
}

#[test]
fn bulk_delete_marks_held_objects_deleted_and_rollback_restores_them() {
    for_each_db(|db| {
        let (_f, mut s, users) = three_users(db);
        let n = s.query::<User>().filter(User::age.lt(18)).delete()?;
        assert_eq!(n, 2);
        assert_eq!(users[0].state(), ObjectState::Persistent);
        assert_eq!(users[1].state(), ObjectState::Deleted);
        assert_eq!(users[2].state(), ObjectState::Deleted);
        assert!(s.get::<User>(users[1].identity_key().unwrap())?.is_none());
        s.rollback()?;
        assert_eq!(users[1].state(), ObjectState::Persistent);
        assert_eq!(count_rows(&db.engine(), "users")?, 3);

        let n = s.query::<User>().filter(User::name.eq("mary")).delete()?;
        assert_eq!(n, 1);
        s.commit()?;
        assert_eq!(users[2].state(), ObjectState::Detached);
        assert_eq!(count_rows(&db.engine(), "users")?, 2);
        Ok(())
    });
}

#[test]
fn bulk_statements_autoflush_and_reject_bad_requests() {
    for_each_db(|db| {
        let (_f, mut s, users) = three_users(db);
        let pending = s.add(User::new("pending", 5))?;
        let (n, sql) = capture(|| {
            s.query::<User>()
                .filter(User::age.lt(10))
                .delete()
                .expect("delete")
        });
        assert_eq!(n, 1, "the pending object was flushed first, then deleted");
        assert_eq!(count_prefix(&sql, "INSERT"), 1);
        assert_eq!(pending.state(), ObjectState::Deleted);

        // Off: the statement runs, held objects are left as they are.
        let n = s
            .query::<User>()
            .synchronize(Synchronize::Off)
            .update([User::age.assign(50)])?;
        assert_eq!(n, 3);
        assert_eq!(users[0].read()?.age, 30);

        assert!(matches!(
            s.query::<User>()
                .filter(User::name.lt("z"))
                .synchronize(Synchronize::Evaluate)
                .delete(),
            Err(Error::NotEvaluable { table: "users" })
        ));
        assert!(matches!(
            s.query::<User>().limit(1).delete(),
            Err(Error::BulkWithLimit { table: "users" })
        ));
        Ok(())
    });
}
