//! The Session on both databases: identity map, unit of work, states, transactions.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use orm::prelude::*;
use orm::{ConstraintKind, CoreError, Error};

use crate::models::{create_schema, Address, Membership, Tag, User};
use crate::support::{
    capture, capture_events, count_prefix, count_rows, for_each_db, query_i64, with_prefix,
    without_transaction_control, TestDb,
};

fn factory(db: &TestDb) -> SessionMaker {
    create_schema(&db.engine());
    sessionmaker().bind(db.engine()).build()
}

fn name_of(u: &Obj<User>) -> String {
    u.read().expect("readable").name.clone()
}

#[test]
fn add_flush_assigns_generated_keys_in_one_insert_per_table() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let users = s.add_all((0..5).map(|i| User::new(&format!("u{i}"), 20 + i)))?;
        assert!(users.iter().all(|u| u.state() == ObjectState::Pending));
        let ((), sql) = capture(|| s.flush().expect("flush"));
        let sql = without_transaction_control(&sql);
        assert_eq!(sql.len(), 1, "one INSERT for 5 users: {sql:?}");
        assert!(sql[0].starts_with("INSERT INTO \"users\""), "{sql:?}");
        for u in &users {
            assert_eq!(u.state(), ObjectState::Persistent);
            let id = u.identity_key().expect("key assigned");
            // The key stored in each object is the key of that object's row.
            let stored = crate::support::query_values(
                &db.engine().connection()?,
                &format!("SELECT name FROM users WHERE id = {}", db.param(1)),
                &[id.into()],
            );
            // Not committed yet: another connection must not see it.
            assert_eq!(stored?.len(), 0);
        }
        s.commit()?;
        for u in &users {
            let id = u.identity_key().expect("key");
            let rows = crate::support::query_values(
                &db.engine().connection()?,
                &format!("SELECT name FROM users WHERE id = {}", db.param(1)),
                &[id.into()],
            )?;
            assert_eq!(rows, vec![vec![orm::Value::Text(name_of(u))]]);
        }
        Ok(())
    });
}

/// Every row of `users`: id -> (name, age).
fn users_by_id(db: &TestDb) -> Result<HashMap<i64, (String, i32)>, CoreError> {
    let mut by_id = HashMap::new();
    db.engine()
        .connection()?
        .query("SELECT id, name, age FROM users", &[], |r| {
            by_id.insert(
                r.get::<i64>(0).unwrap().unwrap(),
                (
                    r.get::<String>(1).unwrap().unwrap(),
                    r.get::<i32>(2).unwrap().unwrap(),
                ),
            );
            Ok(())
        })?;
    Ok(by_id)
}

#[test]
fn inserts_are_batched_and_every_object_gets_the_key_of_its_own_row() {
    // PostgreSQL: one statement whatever the count. SQLite: batches of 64 rows sharing one
    // statement text, then one statement for the rest (12,000 rows: 187 batches and 32 rows).
    for_each_db(|db| {
        let f = factory(db);
        for (n, sqlite_inserts) in [
            (1, 1),
            (63, 1),
            (64, 1),
            (65, 2),
            (128, 2),
            (129, 3),
            (12_000, 188),
        ] {
            let mut s = f.session();
            let users = s.add_all((0..n).map(|i| User::new(&format!("user-{i}"), i)))?;
            let ((), sql) = capture(|| s.commit().expect("commit"));
            let inserts = with_prefix(&sql, "INSERT");
            let expected = if db.is_postgres() { 1 } else { sqlite_inserts };
            assert_eq!(
                inserts.len(),
                expected,
                "INSERTs of {n} rows on {}",
                db.name()
            );
            let texts: HashSet<&String> = inserts.iter().collect();
            assert!(texts.len() <= 2, "full batches share one text ({n} rows)");
            // Every object got the key of its own row.
            let by_id = users_by_id(db)?;
            assert_eq!(by_id.len(), n as usize);
            for (i, u) in users.iter().enumerate() {
                let id = u.identity_key().expect("key assigned");
                assert_eq!(by_id[&id], (format!("user-{i}"), i as i32), "{n} rows");
            }
            db.engine()
                .connection()?
                .execute("DELETE FROM users", &[])?;
        }
        Ok(())
    });
}

/// Every row of `users`: id -> (name, fullname).
fn names_by_id(db: &TestDb) -> Result<HashMap<i64, (String, Option<String>)>, CoreError> {
    let mut by_id = HashMap::new();
    db.engine()
        .connection()?
        .query("SELECT id, name, fullname FROM users", &[], |r| {
            by_id.insert(
                r.get::<i64>(0).unwrap().unwrap(),
                (
                    r.get::<String>(1).unwrap().unwrap(),
                    r.get::<String>(2).unwrap(),
                ),
            );
            Ok(())
        })?;
    Ok(by_id)
}

#[test]
fn nulls_empty_strings_and_odd_text_survive_batched_inserts_and_updates() {
    // PostgreSQL binds a batch's columns as arrays borrowed from the objects: NULL and the
    // empty string must stay apart, and text an array literal would have to quote must not
    // matter.
    let texts = [
        Some(String::new()),
        None,
        Some("NULL".to_owned()),
        Some(r#"{"a,b"}\ 'é' ∅"#.to_owned()),
        Some(" ".to_owned()),
    ];
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let users = s.add_all((0..70).map(|i| User {
            id: None,
            name: texts[i % texts.len()].clone().unwrap_or_default(),
            fullname: texts[(i + 1) % texts.len()].clone(),
            age: i as i32,
        }))?;
        s.commit()?;
        let expected = |shift: usize| -> HashMap<i64, (String, Option<String>)> {
            users
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    let name = texts[(i + shift) % texts.len()].clone().unwrap_or_default();
                    let fullname = texts[(i + shift + 1) % texts.len()].clone();
                    (u.identity_key().expect("key assigned"), (name, fullname))
                })
                .collect()
        };
        assert_eq!(names_by_id(db)?, expected(0));
        // One UPDATE group per changed column set, every value moved on by one.
        for (i, u) in users.iter().enumerate() {
            u.set(
                User::name,
                texts[(i + 1) % texts.len()].clone().unwrap_or_default(),
            )?;
            u.set(User::fullname, texts[(i + 2) % texts.len()].clone())?;
        }
        s.commit()?;
        assert_eq!(names_by_id(db)?, expected(1));
        Ok(())
    });
}

/// A generated `integer` key, after another column.
#[derive(Mapped, Debug)]
#[mapped(table = "narrow_keys")]
struct NarrowKey {
    label: String,
    #[mapped(primary_key)]
    id: Option<i32>,
}

/// A generated `smallint` key.
#[derive(Mapped, Debug)]
#[mapped(table = "narrower_keys")]
struct NarrowerKey {
    #[mapped(primary_key)]
    id: Option<i16>,
    label: String,
}

#[test]
fn generated_keys_narrower_than_bigint_reach_their_own_objects() {
    for_each_db(|db| {
        Metadata::of::<(NarrowKey, NarrowerKey)>().create_all(&db.engine())?;
        let mut s = sessionmaker().bind(db.engine()).build().session();
        let narrow = s.add_all((0..70).map(|i| NarrowKey {
            label: format!("n{i}"),
            id: None,
        }))?;
        let narrower = s.add_all((0..70).map(|i| NarrowerKey {
            id: None,
            label: format!("m{i}"),
        }))?;
        s.commit()?;
        let conn = db.engine().connection()?;
        for (i, obj) in narrow.iter().enumerate() {
            let id = obj.read()?.id.expect("key assigned");
            let sql = format!("SELECT label FROM narrow_keys WHERE id = {}", db.param(1));
            let rows = crate::support::query_values(&conn, &sql, &[orm::Value::I32(id)])?;
            assert_eq!(rows, [[orm::Value::Text(format!("n{i}"))]]);
        }
        for (i, obj) in narrower.iter().enumerate() {
            let id = obj.read()?.id.expect("key assigned");
            let sql = format!("SELECT label FROM narrower_keys WHERE id = {}", db.param(1));
            let rows = crate::support::query_values(&conn, &sql, &[orm::Value::I16(id)])?;
            assert_eq!(rows, [[orm::Value::Text(format!("m{i}"))]]);
        }
        Ok(())
    });
}

#[test]
fn the_parameters_of_batched_inserts_and_updates_are_logged_with_their_values() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(User {
            id: None,
            name: "ed".into(),
            fullname: None,
            age: 30,
        })?;
        s.add(User::new("wendy", 17))?;
        let ((), events) = capture_events(|| s.flush().expect("flush"));
        let insert = events
            .iter()
            .find(|e| e.sql.starts_with("INSERT"))
            .expect("an INSERT");
        let expected = if db.is_postgres() {
            r#"[Array(Text, [Text("ed"), Text("wendy")]), Array(Text, [Null, Null]), Array(Integer, [I32(30), I32(17)])]"#
        } else {
            r#"[Text("ed"), Null, I32(30), Text("wendy"), Null, I32(17)]"#
        };
        assert_eq!(insert.params, expected);
        ed.set(User::fullname, Some("Ed Jones".to_owned()))?;
        let ((), events) = capture_events(|| s.flush().expect("flush"));
        let update = events
            .iter()
            .find(|e| e.sql.starts_with("UPDATE"))
            .expect("an UPDATE");
        let id = ed.identity_key().expect("key");
        let expected = if db.is_postgres() {
            format!(r#"[Array(Text, [Text("Ed Jones")]), Array(BigInt, [I64({id})])]"#)
        } else {
            format!(r#"[Text("Ed Jones"), I64({id})]"#)
        };
        assert_eq!(update.params, expected);
        Ok(())
    });
}

#[test]
fn updates_of_interleaved_column_sets_write_each_object_its_own_values() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let users = s.add_all((0..30).map(|i| User::new(&format!("u{i}"), i)))?;
        s.commit()?;
        // Three groups of changed columns, interleaved: age; name; age and name.
        for (i, u) in users.iter().enumerate() {
            let i = i as i32;
            if i % 3 != 1 {
                u.set(User::age, 100 + i)?;
            }
            if i % 3 != 0 {
                u.set(User::name, format!("renamed-{i}"))?;
            }
        }
        s.commit()?;
        let by_id = users_by_id(db)?;
        for (i, u) in users.iter().enumerate() {
            let i = i as i32;
            let name = match i % 3 {
                0 => format!("u{i}"),
                _ => format!("renamed-{i}"),
            };
            let age = if i % 3 == 1 { i } else { 100 + i };
            assert_eq!(by_id[&u.identity_key().unwrap()], (name, age));
        }
        Ok(())
    });
}

#[test]
fn flush_orders_parents_before_children_whatever_the_add_order() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(User::new("ed", 30))?;
        s.commit()?;
        let ed_id = ed.identity_key().unwrap();
        // The child is added first; the parent table must still be written first.
        s.add(Address {
            id: None,
            user_id: ed_id,
            email: "ed@example.com".into(),
        })?;
        s.add(User::new("wendy", 25))?;
        let ((), sql) = capture(|| s.flush().expect("flush"));
        let sql = without_transaction_control(&sql);
        assert_eq!(sql.len(), 2, "{sql:?}");
        assert!(sql[0].starts_with("INSERT INTO \"users\""), "{sql:?}");
        assert!(sql[1].starts_with("INSERT INTO \"addresses\""), "{sql:?}");
        Ok(())
    });
}

#[test]
fn get_of_a_loaded_key_issues_no_sql_and_returns_the_same_object() {
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
        let (found, sql) = capture(|| s.get::<User>(id).expect("get"));
        assert!(sql.is_empty(), "no SQL for an identity-map hit: {sql:?}");
        assert!(found.expect("present").ptr_eq(&ed));

        // A fresh session loads with one SELECT; the second get is a hit.
        let mut s2 = f.session();
        let (first, sql) = capture(|| s2.get::<User>(id).expect("get"));
        assert_eq!(count_prefix(&sql, "SELECT"), 1);
        let first = first.expect("row exists");
        assert!(!first.ptr_eq(&ed), "another session has its own object");
        let (second, sql) = capture(|| s2.get::<User>(id).expect("get"));
        assert!(sql.is_empty());
        assert!(second.unwrap().ptr_eq(&first));
        assert!(s2.get::<User>(id + 1000)?.is_none());
        Ok(())
    });
}

#[test]
fn a_query_returning_loaded_rows_returns_the_same_objects() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(User::new("ed", 30))?;
        let wendy = s.add(User::new("wendy", 20))?;
        let all = s.query::<User>().order_by(User::name).all()?;
        assert_eq!(all.len(), 2);
        assert!(all[0].ptr_eq(&ed) && all[1].ptr_eq(&wendy));
        let ed_again = s.query::<User>().filter(User::name.eq("ed")).one()?;
        assert!(ed_again.ptr_eq(&ed));
        assert_eq!(s.len(), 2);
        Ok(())
    });
}

#[test]
fn update_sends_only_changed_columns_batched_by_column_set() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let users = s.add_all((0..4).map(|i| User::new(&format!("u{i}"), 10)))?;
        s.commit()?;
        for u in &users[..3] {
            u.set(User::age, 11)?;
        }
        users[3].modify(|u| u.fullname = Some("Full Name".into()))?;
        assert!(users[0].is_modified());
        let ((), sql) = capture(|| s.flush().expect("flush"));
        let updates: Vec<&String> = sql.iter().filter(|q| q.starts_with("UPDATE")).collect();
        let age_updates: Vec<_> = updates.iter().filter(|q| q.contains("\"age\"")).collect();
        let name_updates: Vec<_> = updates
            .iter()
            .filter(|q| q.contains("\"fullname\""))
            .collect();
        assert!(
            updates.iter().all(|q| !q.contains("\"name\"")),
            "unchanged columns are not sent: {updates:?}"
        );
        assert!(age_updates.iter().all(|q| !q.contains("\"fullname\"")));
        if db.is_postgres() {
            assert_eq!(
                (age_updates.len(), name_updates.len()),
                (1, 1),
                "{updates:?}"
            );
        } else {
            assert_eq!(
                (age_updates.len(), name_updates.len()),
                (3, 1),
                "{updates:?}"
            );
        }
        s.commit()?;
        let conn = db.engine().connection()?;
        assert_eq!(
            query_i64(&conn, "SELECT count(*) FROM users WHERE age = 11", &[])?,
            3
        );
        assert_eq!(
            query_i64(
                &conn,
                "SELECT count(*) FROM users WHERE fullname = 'Full Name'",
                &[]
            )?,
            1
        );
        // Nothing changed: nothing to flush.
        let ((), sql) = capture(|| s.flush().expect("flush"));
        assert!(sql.is_empty(), "{sql:?}");
        Ok(())
    });
}

#[test]
fn delete_is_batched_and_moves_objects_through_deleted_to_detached() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let users = s.add_all((0..3).map(|i| User::new(&format!("u{i}"), i)))?;
        s.commit()?;
        for u in &users {
            s.delete(u)?;
            assert_eq!(
                u.state(),
                ObjectState::Persistent,
                "marked, not yet flushed"
            );
        }
        let ((), sql) = capture(|| s.flush().expect("flush"));
        assert_eq!(count_prefix(&sql, "DELETE"), 1, "{sql:?}");
        assert!(users.iter().all(|u| u.state() == ObjectState::Deleted));
        assert!(s.get::<User>(users[0].identity_key().unwrap())?.is_none());
        s.commit()?;
        assert!(users.iter().all(|u| u.state() == ObjectState::Detached));
        assert_eq!(count_rows(&db.engine(), "users")?, 0);
        Ok(())
    });
}

#[test]
fn one_flush_is_one_transaction() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let a = s.add(User::new("a", 1))?;
        let b = s.add(User::new("b", 2))?;
        s.commit()?;
        let ((), sql) = capture(|| {
            a.set(User::age, 5).expect("set"); // `a` is expired: this loads it first
            s.delete(&b).expect("delete");
            s.add(User::new("c", 3)).expect("add");
            s.commit().expect("commit");
        });
        assert_eq!(sql.first().map(String::as_str), Some("BEGIN"), "{sql:?}");
        assert_eq!(sql.last().map(String::as_str), Some("COMMIT"), "{sql:?}");
        assert_eq!(count_prefix(&sql, "BEGIN"), 1);
        let kinds: Vec<&str> = sql[1..sql.len() - 1]
            .iter()
            .map(|q| q.split(' ').next().unwrap())
            .filter(|k| *k != "SELECT")
            .collect();
        assert_eq!(kinds, ["INSERT", "UPDATE", "DELETE"]);
        Ok(())
    });
}

#[test]
fn the_five_states() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let u = Obj::new(User::new("ed", 30));
        assert_eq!(u.state(), ObjectState::Transient);
        s.add(&u)?;
        assert_eq!(u.state(), ObjectState::Pending);
        assert_eq!(s.state_of(&u), ObjectState::Pending);
        s.flush()?;
        assert_eq!(u.state(), ObjectState::Persistent);
        s.expunge(&u)?;
        assert_eq!(u.state(), ObjectState::Detached);
        assert!(!s.contains(&u));
        s.add(&u)?;
        assert_eq!(u.state(), ObjectState::Persistent);
        s.delete(&u)?;
        s.flush()?;
        assert_eq!(u.state(), ObjectState::Deleted);
        s.commit()?;
        assert_eq!(u.state(), ObjectState::Detached);
        let other = s.add(User::new("wendy", 20))?;
        s.close()?;
        assert_eq!(
            other.state(),
            ObjectState::Transient,
            "pending objects are expunged by close"
        );
        Ok(())
    });
}

#[test]
fn expire_on_commit_reloads_what_another_connection_committed() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(User::new("ed", 30))?;
        s.commit()?;
        assert!(ed.is_expired());
        let id = ed.identity_key().unwrap();
        // Another engine (another process, as far as the session knows) changes the row.
        let other = Engine::connect(db.url())?;
        other.connection()?.execute(
            &format!("UPDATE users SET age = 99 WHERE id = {}", db.param(1)),
            &[id.into()],
        )?;
        let (age, sql) = capture(|| ed.read().expect("read").age);
        assert_eq!(age, 99);
        assert_eq!(count_prefix(&sql, "SELECT"), 1);
        let (_, sql) = capture(|| ed.read().expect("read").age);
        assert!(sql.is_empty(), "loaded once per expiry");
        Ok(())
    });
}

#[test]
fn without_expire_on_commit_values_stay_readable_after_commit_and_close() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let f = sessionmaker()
            .bind(db.engine())
            .expire_on_commit(false)
            .build();
        let mut s = f.session();
        let ed = s.add(User::new("ed", 30))?;
        s.commit()?;
        let (age, sql) = capture(|| ed.read().expect("read").age);
        assert_eq!((age, sql.len()), (30, 0));
        s.close()?;
        assert_eq!(ed.state(), ObjectState::Detached);
        assert_eq!(ed.read()?.name, "ed");
        Ok(())
    });
}

#[test]
fn close_detaches_loaded_objects_without_expiring_them() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add_all([User::new("ed", 30), User::new("wendy", 20)])?;
        s.commit()?;
        let mut s = f.session();
        let users = s.query::<User>().order_by(User::name.asc()).all()?;
        users[0].set(User::age, 31)?; // never flushed: the change stays in the object
        let pending = s.add(User::new("jack", 40))?;
        s.close()?;
        // As in SQLAlchemy, objects leave as they are: what was loaded stays readable
        // (without SQL) and unflushed changes stay in the objects.
        let (read, sql) = capture(|| {
            users
                .iter()
                .map(|u| u.read().map(|u| (u.name.clone(), u.age)))
                .collect::<Result<Vec<_>, _>>()
        });
        assert_eq!(read?, [("ed".to_string(), 31), ("wendy".to_string(), 20)]);
        assert!(sql.is_empty(), "{sql:?}");
        assert!(users.iter().all(|u| u.state() == ObjectState::Detached));
        assert!(users[0].is_modified());
        assert_eq!(pending.state(), ObjectState::Transient);
        // The transaction was rolled back: nothing of it reached the database.
        let mut s = f.session();
        assert_eq!(s.query::<User>().count()?, 2);
        // Added to a new session, the change is flushed there.
        s.add(&users[0])?;
        s.commit()?;
        let ages: Vec<i32> = s
            .query::<User>()
            .order_by(User::name.asc())
            .all()?
            .iter()
            .map(|u| u.get(User::age))
            .collect::<Result<_, _>>()?;
        assert_eq!(ages, [31, 20]);
        Ok(())
    });
}

#[test]
fn expired_detached_objects_refuse_to_read() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(User::new("ed", 30))?;
        s.commit()?;
        s.close()?;
        assert!(matches!(
            ed.read(),
            Err(Error::DetachedInstance { table: "users" })
        ));
        // Re-attaching it makes it loadable again.
        s.add(&ed)?;
        assert_eq!(ed.read()?.name, "ed");
        Ok(())
    });
}

#[test]
fn failed_flush_leaves_the_database_untouched_and_requires_rollback() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add(Tag {
            name: "a".into(),
            uses: 1,
        })?;
        s.commit()?;

        let users = s.add_all([User::new("x", 1), User::new("y", 2)])?;
        let b = s.add(Tag {
            name: "b".into(),
            uses: 1,
        })?;
        let dup = s.add(Tag {
            name: "a".into(),
            uses: 2,
        })?;
        let err = s.flush().expect_err("duplicate key");
        match &err {
            Error::Flush {
                table,
                cause: CoreError::Constraint { kind, .. },
            } => {
                assert_eq!(*kind, ConstraintKind::Unique);
                assert_eq!(*table, "tags", "{err}");
                assert!(err.to_string().contains("tags"), "{err}");
            }
            other => panic!("expected a unique violation, got {other:?}"),
        }
        // Nothing of the flush reached the database, not even the users written before.
        assert_eq!(count_rows(&db.engine(), "users")?, 0);
        assert_eq!(count_rows(&db.engine(), "tags")?, 1);
        // Nothing the user added is lost: still pending, keys not half-assigned.
        for u in &users {
            assert_eq!(u.state(), ObjectState::Pending);
            assert_eq!(u.read()?.id, None);
        }
        assert_eq!(dup.state(), ObjectState::Pending);
        // The session refuses work until rollback().
        assert!(matches!(s.commit(), Err(Error::PendingRollback { .. })));
        assert!(matches!(
            s.query::<User>().all(),
            Err(Error::PendingRollback { .. })
        ));
        s.rollback()?;
        assert_eq!(dup.state(), ObjectState::Transient);
        // Fix the object and add everything again.
        dup.modify(|t| t.name = "c".into())?;
        s.add(&dup)?;
        s.add(&b)?;
        s.add_all(users.iter())?;
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "tags")?, 3);
        assert_eq!(count_rows(&db.engine(), "users")?, 2);
        Ok(())
    });
}

#[test]
fn rollback_expunges_new_restores_deleted_and_expires_the_rest() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let kept = s.add(User::new("kept", 1))?;
        let doomed = s.add(User::new("doomed", 2))?;
        s.commit()?;
        kept.set(User::age, 50)?;
        s.delete(&doomed)?;
        let fresh = s.add(User::new("fresh", 3))?;
        s.flush()?;
        assert_eq!(doomed.state(), ObjectState::Deleted);
        s.rollback()?;
        assert_eq!(fresh.state(), ObjectState::Transient);
        assert_eq!(
            fresh.read()?.name,
            "fresh",
            "attributes of expunged objects are kept"
        );
        assert_eq!(
            fresh.read()?.id,
            None,
            "a rolled-back generated key is cleared"
        );
        assert_eq!(doomed.state(), ObjectState::Persistent);
        assert!(kept.is_expired());
        assert_eq!(
            kept.read()?.age,
            1,
            "the change was rolled back and is reloaded"
        );
        assert_eq!(count_rows(&db.engine(), "users")?, 2);
        Ok(())
    });
}

#[test]
fn dropping_or_closing_a_session_rolls_back_and_returns_its_connection() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let engine = Engine::builder(db.url())
            .pool_size(1)
            .timeout(Duration::from_secs(2))
            .connect()?;
        let f = sessionmaker().bind(engine.clone()).build();
        {
            let mut s = f.session();
            s.add(User::new("never", 1))?;
            s.flush()?;
        } // dropped without commit
        assert_eq!(
            count_rows(&engine, "users")?,
            0,
            "the one pooled connection is free again"
        );
        let mut s = f.session();
        s.add(User::new("never", 1))?;
        s.flush()?;
        s.close()?;
        assert_eq!(count_rows(&engine, "users")?, 0);
        // The session is usable after close.
        s.add(User::new("later", 2))?;
        s.commit()?;
        assert_eq!(count_rows(&engine, "users")?, 1);
        Ok(())
    });
}

#[test]
fn an_object_belongs_to_one_session_at_a_time() {
    for_each_db(|db| {
        let f = factory(db);
        let mut a = f.session();
        let mut b = f.session();
        let u = a.add(User::new("ed", 1))?;
        match b.add(&u) {
            Err(Error::AttachedElsewhere {
                table: "users",
                other,
                this,
            }) => {
                assert_eq!((other, this), (a.id(), b.id()));
            }
            other => panic!("expected AttachedElsewhere, got {other:?}"),
        }
        a.expunge(&u)?;
        b.add(&u)?;
        assert!(b.contains(&u));
        Ok(())
    });
}

#[test]
fn composite_and_application_chosen_keys() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let m = s.add(Membership {
            group_id: 1,
            user_id: 2,
            role: "admin".into(),
        })?;
        s.add(Membership {
            group_id: 1,
            user_id: 3,
            role: "member".into(),
        })?;
        s.commit()?;
        let (hit, sql) = capture(|| s.get::<Membership>((1, 2)).expect("get"));
        assert!(sql.is_empty() || count_prefix(&sql, "SELECT") == 1); // expired after commit
        assert!(hit.unwrap().ptr_eq(&m));
        m.set(Membership::role, "owner")?;
        s.commit()?;
        let conn = db.engine().connection()?;
        assert_eq!(
            query_i64(
                &conn,
                "SELECT count(*) FROM memberships WHERE role = 'owner' AND user_id = 2",
                &[]
            )?,
            1
        );
        s.delete(&m)?;
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "memberships")?, 1);
        // Changing a persistent object's key is refused.
        let t = s.add(Tag {
            name: "k".into(),
            uses: 0,
        })?;
        s.flush()?;
        assert!(matches!(
            t.set(Tag::name, "other"),
            Err(Error::PrimaryKeyChanged { table: "tags" })
        ));
        Ok(())
    });
}

#[test]
fn autoflush_runs_before_queries_unless_disabled() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add(User::new("ed", 1))?;
        let (found, sql) = capture(|| {
            s.query::<User>()
                .filter(User::name.eq("ed"))
                .first()
                .expect("query")
        });
        assert!(found.is_some());
        let sql = without_transaction_control(&sql);
        assert!(
            sql[0].starts_with("INSERT") && sql[1].starts_with("SELECT"),
            "{sql:?}"
        );

        s.set_autoflush(false);
        s.add(User::new("wendy", 2))?;
        assert!(s
            .query::<User>()
            .filter(User::name.eq("wendy"))
            .first()?
            .is_none());
        s.flush()?;
        assert!(s
            .query::<User>()
            .filter(User::name.eq("wendy"))
            .first()?
            .is_some());
        Ok(())
    });
}

#[test]
fn autobegin_off_requires_begin() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let f = sessionmaker().bind(db.engine()).autobegin(false).build();
        let mut s = f.session();
        assert!(matches!(s.query::<User>().all(), Err(Error::NoTransaction)));
        s.begin()?;
        assert!(matches!(s.begin(), Err(Error::TransactionAlreadyBegun)));
        s.add(User::new("ed", 1))?;
        s.commit()?;
        assert!(matches!(s.get::<User>(12345), Err(Error::NoTransaction)));
        assert_eq!(count_rows(&db.engine(), "users")?, 1);
        Ok(())
    });
}

#[test]
fn bad_rows_and_missing_tables_are_typed_errors_naming_them() {
    for_each_db(|db| {
        let f = sessionmaker().bind(db.engine()).build();
        let mut s = f.session();
        match s.query::<User>().all() {
            Err(Error::Core(CoreError::UndefinedTable { table })) => assert_eq!(table, "users"),
            other => panic!("expected UndefinedTable, got {other:?}"),
        }
        s.rollback()?;
        // A table whose `age` allows NULL although the model says i32.
        let conn = db.engine().connection()?;
        conn.execute("CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL, fullname TEXT, age INTEGER)", &[])?;
        conn.execute("INSERT INTO users (id, name) VALUES (1, 'ed')", &[])?;
        match s.get::<User>(1) {
            Err(Error::Core(CoreError::Decode { table, column, .. })) => {
                assert_eq!((table.as_str(), column.as_str()), ("users", "age"));
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn sessions_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
    assert_send::<Obj<User>>();
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(User::new("ed", 1))?;
        let (s, ed) = std::thread::spawn(move || {
            let mut s = s;
            s.commit().expect("commit in a worker thread");
            (s, ed)
        })
        .join()
        .expect("worker");
        assert_eq!(ed.state(), ObjectState::Persistent);
        assert!(s.contains(&ed));
        Ok(())
    });
}

#[test]
fn many_held_objects_flush_only_what_changed() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add_all((0..2_000).map(|i| User::new(&format!("u{i}"), i)))?;
        s.commit()?;
        let all = s.query::<User>().all()?;
        assert_eq!(s.len(), 2_000);
        all[7].set(User::age, -1)?;
        let ((), sql) = capture(|| s.flush().expect("flush"));
        let sql = without_transaction_control(&sql);
        assert_eq!(sql.len(), 1, "{sql:?}");
        assert!(sql[0].starts_with("UPDATE \"users\" SET \"age\""));
        Ok(())
    });
}

#[test]
fn address_rows_reference_users() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let bogus = s.add(Address {
            id: None,
            user_id: 424242,
            email: "nobody@example.com".into(),
        })?;
        match s.commit() {
            Err(Error::Flush {
                table: "addresses",
                cause:
                    CoreError::Constraint {
                        kind: ConstraintKind::ForeignKey,
                        ..
                    },
            }) => {}
            other => panic!("expected a foreign-key violation, got {other:?}"),
        }
        assert_eq!(
            bogus.read()?.id,
            None,
            "no half-assigned key after a failed flush"
        );
        s.rollback()?;
        Ok(())
    });
}
