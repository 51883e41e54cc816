//! Optimistic concurrency with a `#[mapped(version)]` column (SQLAlchemy's `version_id_col`),
//! on both databases: every UPDATE sets `version = held + 1` and matches the held version,
//! DELETE matches it too, and a stale write fails with `Error::StaleData` and writes nothing.
//!
//! The races use sessions made with `expire_on_commit(false)` whose reads end with a commit, as
//! a web request would: on SQLite an open read transaction of one session would block the
//! other's COMMIT (rollback-journal locking), so the readers' transactions are closed before
//! the writers run. The race itself (load, both modify, first commits, second fails) is the
//! same on both databases; `update_race_inside_open_transactions_on_postgres` runs it with
//! both transactions open, which PostgreSQL allows.

use orm::prelude::*;
use orm::{ConstraintKind, CoreError, Error, SqlType, Value};

use crate::models::{create_schema, Address, Document, User};
use crate::support::{
    capture, capture_events, count_prefix, count_rows, for_each_db, is_transaction_control,
    query_values, without_transaction_control, TestDb, TestResult,
};

/// A factory whose objects stay loaded after commit (see the module documentation).
fn factory(db: &TestDb) -> SessionMaker {
    create_schema(&db.engine());
    sessionmaker()
        .bind(db.engine())
        .expire_on_commit(false)
        .build()
}

/// Committed documents with the given titles, at version 1; their keys.
fn seed(f: &SessionMaker, titles: &[&str]) -> TestResult<Vec<i64>> {
    let mut s = f.session();
    let docs = s.add_all(titles.iter().map(|t| Document::new(t)))?;
    s.commit()?;
    Ok(docs
        .iter()
        .map(|d| d.identity_key().expect("key"))
        .collect())
}

/// `(title, version)` of a committed row, read on a new connection; `None` when it is gone.
fn committed(db: &TestDb, id: i64) -> TestResult<Option<(String, i64)>> {
    let rows = query_values(
        &db.engine().connection()?,
        &format!(
            "SELECT title, version FROM documents WHERE id = {}",
            db.param(1)
        ),
        &[id.into()],
    )?;
    Ok(rows.into_iter().next().map(|r| match (&r[0], &r[1]) {
        (Value::Text(t), v) => (t.clone(), v.as_i64().expect("integer version")),
        other => panic!("unexpected row {other:?}"),
    }))
}

/// Loads `ids` in a new session and ends its read transaction; the objects stay loaded.
fn load(f: &SessionMaker, ids: &[i64]) -> TestResult<(Session, Vec<Obj<Document>>)> {
    let mut s = f.session();
    let mut docs = Vec::new();
    for &id in ids {
        docs.push(s.get::<Document>(id)?.expect("row exists"));
    }
    s.commit()?;
    Ok((s, docs))
}

fn version_of(d: &Obj<Document>) -> i32 {
    d.read().expect("readable").version
}

fn title_of(d: &Obj<Document>) -> String {
    d.read().expect("readable").title.clone()
}

/// The UPDATE of one document changing its title, as each dialect renders it.
fn expected_update_sql(db: &TestDb) -> &'static str {
    if db.is_postgres() {
        "UPDATE \"documents\" SET \"title\" = __v.\"__s0\", \"version\" = __v.\"__s1\" \
         FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int4[]) WITH ORDINALITY \
         AS __v(\"__s0\", \"__s1\", \"__m0\", \"__m1\", __ord) \
         WHERE \"documents\".\"id\" = __v.\"__m0\" AND \"documents\".\"version\" = __v.\"__m1\""
    } else {
        "UPDATE \"documents\" SET \"title\" = ?1, \"version\" = ?2 WHERE \"id\" = ?3 AND \"version\" = ?4"
    }
}

/// Asserts `err` is the `StaleData` of one stale row, and returns its message.
fn assert_stale(
    err: &Error,
    statement: &str,
    key: Option<i64>,
    expected: u64,
    matched: u64,
) -> String {
    match err {
        Error::StaleData {
            table,
            statement: s,
            key: k,
            expected: e,
            matched: m,
            ..
        } => {
            assert_eq!(
                (*table, *s, k.clone(), *e, *m),
                (
                    "documents",
                    statement,
                    key.map(|k| format!("{k:?}")),
                    expected,
                    matched
                ),
                "{err}"
            );
        }
        other => panic!("expected StaleData, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("`documents`"), "{message}");
    assert!(
        message.contains(&format!("expected to match {expected} row(s)")),
        "{message}"
    );
    assert!(message.contains(&format!("matched {matched}")), "{message}");
    if let Some(key) = key {
        assert!(
            message.contains(&format!("the row with key {key}")),
            "{message}"
        );
    }
    message
}

#[test]
fn update_sets_and_matches_the_version_and_advances_it_in_the_object() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        // INSERT writes the version the object holds (0 here), inventing none.
        let doc = s.add(Document {
            id: None,
            title: "draft".into(),
            version: 0,
        })?;
        let other = s.add(Document {
            id: None,
            title: "other".into(),
            version: 7,
        })?;
        s.commit()?;
        let id = doc.identity_key().unwrap();
        assert_eq!(committed(db, id)?, Some(("draft".into(), 0)));
        assert_eq!(
            committed(db, other.identity_key().unwrap())?,
            Some(("other".into(), 7))
        );

        // Only the title changed; the version is set all the same (to 0 + 1), and matched
        // (against 0).
        doc.set(Document::title, "final")?;
        let ((), events) = capture_events(|| s.flush().expect("flush"));
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| !is_transaction_control(&e.sql))
            .collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].sql, expected_update_sql(db));
        let params = [
            Value::Text("final".into()),
            Value::I32(1),
            Value::I64(id),
            Value::I32(0),
        ];
        let params: Vec<Value> = if db.is_postgres() {
            params
                .into_iter()
                .zip([
                    SqlType::Text,
                    SqlType::Integer,
                    SqlType::BigInt,
                    SqlType::Integer,
                ])
                .map(|(v, t)| Value::Array(t, vec![v]))
                .collect()
        } else {
            params.into()
        };
        assert_eq!(events[0].params, format!("{params:?}"));
        assert_eq!(version_of(&doc), 1, "the object holds the version written");
        assert!(!doc.is_modified());

        // A second flush in the same transaction matches the version the first one wrote.
        doc.set(Document::title, "final, really")?;
        s.flush()?;
        assert_eq!(version_of(&doc), 2);
        s.commit()?;
        assert_eq!(committed(db, id)?, Some(("final, really".into(), 2)));

        // And so does the next transaction (the object was not reloaded: no expiry here).
        let ((), events) = capture(|| {
            doc.modify(|d| d.title = "v3".into()).expect("modify");
            s.commit().expect("commit");
        });
        assert_eq!(count_prefix(&events, "SELECT"), 0, "{events:?}");
        assert_eq!(version_of(&doc), 3);
        assert_eq!(committed(db, id)?, Some(("v3".into(), 3)));
        // The untouched document kept its version.
        assert_eq!(
            committed(db, other.identity_key().unwrap())?,
            Some(("other".into(), 7))
        );
        Ok(())
    });
}

#[test]
fn update_race_second_commit_fails_with_stale_data_and_writes_nothing() {
    for_each_db(|db| {
        let f = factory(db);
        let id = seed(&f, &["original"])?[0];
        let (mut a, a_docs) = load(&f, &[id])?;
        let (mut b, b_docs) = load(&f, &[id])?;
        let (da, dbb) = (&a_docs[0], &b_docs[0]);
        assert!(!da.ptr_eq(dbb), "each session has its own object");
        da.set(Document::title, "from a")?;
        dbb.set(Document::title, "from b")?;

        a.commit()?;
        assert_eq!(committed(db, id)?, Some(("from a".into(), 2)));

        let (result, events) = capture(|| b.commit());
        let err = result.expect_err("stale");
        assert_stale(&err, "UPDATE", Some(id), 1, 0);
        // The statement ran and was rolled back; nothing was committed.
        assert_eq!(count_prefix(&events, "COMMIT"), 0, "{events:?}");
        assert_eq!(count_prefix(&events, "ROLLBACK"), 1, "{events:?}");
        assert_eq!(committed(db, id)?, Some(("from a".into(), 2)));
        assert_eq!(count_rows(&db.engine(), "documents")?, 1);

        // The loser's object is untouched by the failed flush: its change and its version.
        assert_eq!((title_of(dbb), version_of(dbb)), ("from b".into(), 1));
        assert!(dbb.is_modified());

        // The session refuses work until rollback().
        assert!(matches!(b.flush(), Err(Error::PendingRollback { .. })));
        assert!(matches!(
            b.query::<Document>().all(),
            Err(Error::PendingRollback { .. })
        ));
        assert!(matches!(b.commit(), Err(Error::PendingRollback { .. })));
        b.rollback()?;
        // The object reloads the winner's row, and may be changed again from there.
        assert!(dbb.is_expired());
        assert_eq!((title_of(dbb), version_of(dbb)), ("from a".into(), 2));
        assert!(!dbb.is_modified());
        dbb.set(Document::title, "from b, after a")?;
        b.commit()?;
        assert_eq!(committed(db, id)?, Some(("from b, after a".into(), 3)));
        assert_eq!(version_of(dbb), 3);
        Ok(())
    });
}

#[test]
fn update_race_inside_open_transactions_on_postgres() -> TestResult {
    // Both sessions keep their read transactions open: on PostgreSQL (READ COMMITTED) the
    // loser's UPDATE sees the winner's committed version and matches nothing.
    let db = TestDb::postgres();
    let f = factory(&db);
    let id = seed(&f, &["original"])?[0];
    let mut a = f.session();
    let mut b = f.session();
    let da = a.get::<Document>(id)?.expect("row");
    let dbb = b.get::<Document>(id)?.expect("row");
    da.set(Document::title, "from a")?;
    dbb.set(Document::title, "from b")?;
    a.commit()?;
    let err = b.commit().expect_err("stale");
    assert_stale(&err, "UPDATE", Some(id), 1, 0);
    assert_eq!(committed(&db, id)?, Some(("from a".into(), 2)));
    assert_eq!(version_of(&dbb), 1);
    b.rollback()?;
    assert_eq!((title_of(&dbb), version_of(&dbb)), ("from a".into(), 2));
    Ok(())
}

#[test]
fn delete_matches_the_version_and_a_stale_delete_writes_nothing() {
    for_each_db(|db| {
        let f = factory(db);
        let ids = seed(&f, &["one", "two", "three"])?;

        // Two fresh documents deleted together: one statement matching key AND version.
        let (mut s, docs) = load(&f, &ids[1..])?;
        for d in &docs {
            s.delete(d)?;
        }
        let ((), events) = capture(|| s.commit().expect("commit"));
        let sql = without_transaction_control(&events);
        let expected = if db.is_postgres() {
            "DELETE FROM \"documents\" WHERE (\"id\", \"version\") IN (SELECT __v.\"__k0\", \
             __v.\"__k1\" FROM unnest($1::int8[], $2::int4[]) WITH ORDINALITY \
             AS __v(\"__k0\", \"__k1\", __ord))"
        } else {
            "DELETE FROM \"documents\" WHERE (\"id\", \"version\") IN (VALUES (?1, ?2), (?3, ?4))"
        };
        assert_eq!(sql, [expected], "{events:?}");
        assert_eq!(count_rows(&db.engine(), "documents")?, 1);

        // The race: `a` changes the row and commits, `b` deletes what it loaded before.
        let id = ids[0];
        let (mut a, a_docs) = load(&f, &[id])?;
        let (mut b, b_docs) = load(&f, &[id])?;
        a_docs[0].set(Document::title, "edited by a")?;
        b.delete(&b_docs[0])?;
        a.commit()?;
        let err = b.commit().expect_err("stale");
        assert_stale(&err, "DELETE", Some(id), 1, 0);
        assert_eq!(committed(db, id)?, Some(("edited by a".into(), 2)));
        assert_eq!(b_docs[0].state(), ObjectState::Persistent, "not deleted");
        assert_eq!(version_of(&b_docs[0]), 1);
        assert!(matches!(
            b.get::<Document>(id),
            Err(Error::PendingRollback { .. })
        ));
        b.rollback()?;
        assert_eq!(b_docs[0].state(), ObjectState::Persistent);
        assert_eq!(
            (title_of(&b_docs[0]), version_of(&b_docs[0])),
            ("edited by a".into(), 2)
        );
        // Deleting again, at the current version, works.
        b.delete(&b_docs[0])?;
        b.commit()?;
        assert_eq!(committed(db, id)?, None);

        // The other way round: the row was deleted meanwhile, and `b` updates it.
        let id = seed(&f, &["four"])?[0];
        let (mut a, a_docs) = load(&f, &[id])?;
        let (mut b, b_docs) = load(&f, &[id])?;
        a.delete(&a_docs[0])?;
        a.commit()?;
        b_docs[0].set(Document::title, "too late")?;
        let err = b.commit().expect_err("stale");
        assert_stale(&err, "UPDATE", Some(id), 1, 0);
        assert_eq!(committed(db, id)?, None);
        b.rollback()?;
        assert!(matches!(b_docs[0].read(), Err(Error::ObjectDeleted { .. })));
        Ok(())
    });
}

#[test]
fn a_stale_row_in_a_batch_of_updates_writes_nothing_of_the_batch() {
    for_each_db(|db| {
        let f = factory(db);
        let ids = seed(&f, &["d0", "d1", "d2", "d3"])?;
        let (mut b, docs) = load(&f, &ids)?;
        // Another session commits one update of d2.
        let (mut a, a_docs) = load(&f, &ids[2..3])?;
        a_docs[0].set(Document::title, "d2 by a")?;
        a.commit()?;

        for (i, d) in docs.iter().enumerate() {
            d.set(Document::title, format!("b{i}"))?;
        }
        let (result, events) = capture(|| b.commit());
        let err = result.expect_err("stale");
        if db.is_postgres() {
            // One statement for the batch: 4 rows expected, 3 matched. Inside the failed
            // transaction, the rows the batch wrote and the row `a` updated once hold the same
            // version (2), so the diagnostic SELECT cannot tell which one is stale.
            assert_stale(&err, "UPDATE", None, 4, 3);
            assert_eq!(count_prefix(&events, "UPDATE"), 1, "{events:?}");
            assert_eq!(count_prefix(&events, "SELECT"), 1, "{events:?}");
        } else {
            // One statement per row: d0 and d1 matched, d2 is the stale one.
            assert_stale(&err, "UPDATE", Some(ids[2]), 1, 0);
            assert_eq!(count_prefix(&events, "UPDATE"), 3, "{events:?}");
        }
        // Nothing of the batch was written, not even the rows that matched.
        for (i, &id) in ids.iter().enumerate() {
            let title = if i == 2 {
                "d2 by a".to_owned()
            } else {
                format!("d{i}")
            };
            let version = if i == 2 { 2 } else { 1 };
            assert_eq!(committed(db, id)?, Some((title, version)));
        }
        // No object's version moved, including those whose row the batch matched.
        for (i, d) in docs.iter().enumerate() {
            assert_eq!((title_of(d), version_of(d)), (format!("b{i}"), 1));
            assert!(d.is_modified());
        }
        b.rollback()?;
        assert_eq!(version_of(&docs[2]), 2);
        assert_eq!(title_of(&docs[2]), "d2 by a");
        assert_eq!(version_of(&docs[0]), 1);
        Ok(())
    });
}

#[test]
fn the_diagnostic_select_names_the_stale_row_of_a_batch_when_it_can() {
    for_each_db(|db| {
        let f = factory(db);

        // An UPDATE batch whose row d1 was deleted meanwhile: the row is gone, so it is stale.
        let ids = seed(&f, &["d0", "d1", "d2"])?;
        let (mut b, docs) = load(&f, &ids)?;
        let (mut a, a_docs) = load(&f, &ids[1..2])?;
        a.delete(&a_docs[0])?;
        a.commit()?;
        for d in &docs {
            d.set(Document::title, "changed")?;
        }
        let err = b.commit().expect_err("stale");
        let (expected, matched) = if db.is_postgres() { (3, 2) } else { (1, 0) };
        assert_stale(&err, "UPDATE", Some(ids[1]), expected, matched);
        b.rollback()?;

        // A DELETE batch (one statement on both databases) whose row e2 was updated
        // meanwhile: the row is still there after the DELETE, so it is the stale one.
        let ids = seed(&f, &["e0", "e1", "e2", "e3"])?;
        let (mut b, docs) = load(&f, &ids)?;
        let (mut a, a_docs) = load(&f, &ids[2..3])?;
        a_docs[0].set(Document::title, "e2 by a")?;
        a.commit()?;
        for d in &docs {
            b.delete(d)?;
        }
        let (result, events) = capture(|| b.commit());
        let err = result.expect_err("stale");
        assert_stale(&err, "DELETE", Some(ids[2]), 4, 3);
        assert_eq!(count_prefix(&events, "DELETE"), 1, "{events:?}");
        assert_eq!(count_prefix(&events, "SELECT"), 1, "{events:?}");
        // Nothing deleted.
        for &id in &ids {
            assert!(committed(db, id)?.is_some());
        }
        assert!(docs.iter().all(|d| d.state() == ObjectState::Persistent));
        b.rollback()?;
        Ok(())
    });
}

#[test]
fn versions_are_unchanged_in_memory_after_a_flush_that_fails_later() {
    for_each_db(|db| {
        let f = factory(db);
        let id = seed(&f, &["doc"])?[0];
        let mut s = f.session();
        let ed = s.add(User::new("ed", 30))?;
        s.commit()?;
        s.add(Address {
            id: None,
            user_id: ed.identity_key().unwrap(),
            email: "ed@example.com".into(),
        })?;
        s.commit()?;

        // One flush: the versioned UPDATE succeeds, then the DELETE of a referenced user fails.
        let doc = s.get::<Document>(id)?.expect("row");
        doc.set(Document::title, "edited")?;
        s.delete(&ed)?;
        let (result, events) = capture(|| s.commit());
        match result {
            Err(Error::Flush {
                table: "users",
                cause:
                    CoreError::Constraint {
                        kind: ConstraintKind::ForeignKey,
                        ..
                    },
            }) => {}
            other => panic!("expected a foreign-key violation, got {other:?}"),
        }
        let sql = without_transaction_control(&events);
        assert!(
            sql.iter().any(|q| q.starts_with("UPDATE \"documents\"")),
            "{sql:?}"
        );
        // The version the successful UPDATE wrote was never stored into the object.
        assert_eq!((title_of(&doc), version_of(&doc)), ("edited".into(), 1));
        assert_eq!(committed(db, id)?, Some(("doc".into(), 1)));
        s.rollback()?;
        // Retrying from the reloaded row works: the object's version was right all along.
        assert_eq!((title_of(&doc), version_of(&doc)), ("doc".into(), 1));
        doc.set(Document::title, "edited")?;
        s.commit()?;
        assert_eq!(committed(db, id)?, Some(("edited".into(), 2)));
        assert_eq!(version_of(&doc), 2);
        Ok(())
    });
}

#[test]
fn a_version_set_by_hand_is_the_one_matched() {
    for_each_db(|db| {
        let f = factory(db);
        let id = seed(&f, &["doc"])?[0];
        let (mut s, docs) = load(&f, &[id])?;
        let doc = &docs[0];
        // Another session moves the row to version 2.
        let (mut a, a_docs) = load(&f, &[id])?;
        a_docs[0].set(Document::title, "by a")?;
        a.commit()?;

        // A client that saw version 2 writes: the held version is set to what it saw.
        doc.modify(|d| {
            d.title = "by a client of version 2".into();
            d.version = 2;
        })?;
        s.commit()?;
        assert_eq!(version_of(doc), 3);
        assert_eq!(
            committed(db, id)?,
            Some(("by a client of version 2".into(), 3))
        );

        // A client that saw version 1 is refused.
        doc.modify(|d| {
            d.title = "by a client of version 1".into();
            d.version = 1;
        })?;
        let err = s.commit().expect_err("stale");
        assert_stale(&err, "UPDATE", Some(id), 1, 0);
        assert_eq!(
            committed(db, id)?,
            Some(("by a client of version 2".into(), 3))
        );
        s.rollback()?;
        Ok(())
    });
}
