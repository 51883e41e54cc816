//! `Session::execute`: raw SQL in the session's transaction, after autoflush, with bound
//! parameters, on both databases.

use orm::prelude::*;
use orm::{CoreError, Error, Value};

use crate::models::{create_schema, User};
use crate::support::{
    capture, count_rows, for_each_db, starts_with, without_transaction_control, TestDb, TestResult,
};

fn factory(db: &TestDb) -> SessionMaker {
    create_schema(&db.engine());
    sessionmaker().bind(db.engine()).build()
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{v:?} is not an integer"))
}

#[test]
fn execute_autoflushes_pending_objects_first() {
    for_each_db(|db| {
        let mut s = factory(db).session();
        s.add(User::new("ed", 30))?;
        let sql = format!("SELECT name, age FROM users WHERE name = {}", db.param(1));
        let (rows, statements) = capture(|| s.execute(&sql, &["ed".into()]));
        let rows = rows?;
        let statements = without_transaction_control(&statements);
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert!(
            starts_with(&statements[0], "INSERT"),
            "the flush comes first: {statements:?}"
        );
        assert_eq!(statements[1], sql, "then the statement, as given");
        assert_eq!(rows.columns, ["name", "age"]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows.rows[0][0], Value::Text("ed".into()));
        assert_eq!(int(&rows.rows[0][1]), 30);
        assert_eq!(rows.rows_affected, 1);
        Ok(())
    });
}

#[test]
fn without_autoflush_pending_objects_are_not_flushed() {
    for_each_db(|db| {
        let mut s = factory(db).session();
        s.set_autoflush(false);
        s.add(User::new("ed", 30))?;
        let (rows, statements) = capture(|| s.execute("SELECT count(*) FROM users", &[]));
        assert_eq!(rows?.scalar().map(int), Some(0));
        assert!(without_transaction_control(&statements)
            .iter()
            .all(|s| !starts_with(s, "INSERT")));
        s.flush()?;
        assert_eq!(
            s.execute("SELECT count(*) FROM users", &[])?
                .scalar()
                .map(int),
            Some(1)
        );
        Ok(())
    });
}

#[test]
fn execute_runs_in_the_session_transaction() {
    for_each_db(|db| {
        let mut s = factory(db).session();
        let insert = format!("INSERT INTO users (name, age) VALUES ({})", db.params(2));
        assert!(!s.in_transaction());
        let done = s.execute(&insert, &["ed".into(), 30i32.into()])?;
        assert_eq!(done.rows_affected, 1);
        assert!(done.columns.is_empty() && done.is_empty());
        assert!(s.in_transaction(), "autobegin");
        assert_eq!(
            s.execute("SELECT count(*) FROM users", &[])?
                .scalar()
                .map(int),
            Some(1),
            "visible inside the transaction"
        );
        assert_eq!(
            count_rows(&db.engine(), "users")?,
            0,
            "not visible outside it"
        );
        s.rollback()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 0, "rolled back");

        s.execute(&insert, &["wendy".into(), 25i32.into()])?;
        let wendy = s.query::<User>().one()?; // the ORM sees it, in the same transaction
        assert_eq!(wendy.read()?.name, "wendy");
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 1, "committed");
        Ok(())
    });
}

#[test]
fn parameters_are_bound_not_spliced() {
    for_each_db(|db| {
        let mut s = factory(db).session();
        let hostile = "Robert'); DROP TABLE users; -- \" $1 ?1 \\";
        let insert = format!("INSERT INTO users (name, age) VALUES ({})", db.params(2));
        s.execute(&insert, &[hostile.into(), 1i32.into()])?;
        let echoed = s.execute(
            &format!("SELECT CAST({} AS TEXT)", db.param(1)),
            &[hostile.into()],
        )?;
        assert_eq!(echoed.rows, [[Value::Text(hostile.into())]]);
        let select = format!("SELECT name FROM users WHERE name = {}", db.param(1));
        let found = s.execute(&select, &[hostile.into()])?;
        assert_eq!(found.rows, [[Value::Text(hostile.into())]]);
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "users")?, 1, "the table is intact");
        let user = s.query::<User>().one()?;
        assert_eq!(user.read()?.name, hostile);
        Ok(())
    });
}

#[test]
fn rows_columns_and_rows_affected() {
    for_each_db(|db| {
        let mut s = factory(db).session();
        for (name, age) in [("ed", 30), ("wendy", 25), ("jack", 40)] {
            s.add(User::new(name, age))?;
        }
        let all = s.execute(
            "SELECT id, name, fullname, age FROM users ORDER BY age",
            &[],
        )?;
        assert_eq!(all.columns, ["id", "name", "fullname", "age"]);
        assert_eq!(all.column_index("age"), Some(3));
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.rows_affected, 3,
            "a SELECT reports the rows it returned"
        );
        let names: Vec<&Value> = all.rows.iter().map(|r| &r[1]).collect();
        assert_eq!(
            names,
            [
                &Value::Text("wendy".into()),
                &Value::Text("ed".into()),
                &Value::Text("jack".into())
            ]
        );
        assert_eq!(all.rows[0][2], Value::Null);
        assert!(all.rows.iter().all(|r| r.len() == 4));

        let older = s.execute(
            &format!("UPDATE users SET age = age + 1 WHERE age > {}", db.param(1)),
            &[26i64.into()],
        )?;
        assert_eq!(older.rows_affected, 2);
        assert!(older.is_empty());
        let none = s.execute("UPDATE users SET age = 0 WHERE name = 'nobody'", &[])?;
        assert_eq!(none.rows_affected, 0);
        let returning = s.execute(
            &format!(
                "UPDATE users SET fullname = {} WHERE age > 40 RETURNING name",
                db.param(1)
            ),
            &["senior".into()],
        )?;
        assert_eq!(returning.columns, ["name"]);
        assert_eq!(returning.rows, [[Value::Text("jack".into())]]);
        assert_eq!(returning.rows_affected, 1);
        let deleted = s.execute(
            &format!("DELETE FROM users WHERE name = {}", db.param(1)),
            &["ed".into()],
        )?;
        assert_eq!(deleted.rows_affected, 1);
        // A statement that changes no rows reports 0, whatever the one before it changed.
        let ddl = s.execute("CREATE TABLE scratch (x INTEGER)", &[])?;
        assert_eq!((ddl.rows_affected, ddl.columns.len()), (0, 0));
        let empty = s.execute("SELECT x FROM scratch", &[])?;
        assert_eq!(empty.columns, ["x"]);
        assert!(empty.is_empty());
        assert_eq!(empty.rows_affected, 0);
        let mixed = s.execute(
            "SELECT CAST(1.5 AS DOUBLE PRECISION) AS f, CAST(NULL AS TEXT) AS n",
            &[],
        )?;
        assert_eq!(mixed.rows, [[Value::F64(1.5), Value::Null]]);
        Ok(())
    });
}

#[test]
fn errors_are_typed_and_the_session_recovers_with_rollback() {
    for_each_db(|db| -> TestResult {
        let mut s = factory(db).session();
        s.add(User::new("ed", 30))?;
        s.flush()?;

        let missing = s.execute("SELECT * FROM no_such_table", &[]);
        match missing {
            Err(Error::Core(CoreError::UndefinedTable { table })) => {
                assert!(table.contains("no_such_table"), "{table}")
            }
            other => panic!("expected UndefinedTable, got {other:?}"),
        }
        s.rollback()?; // required on PostgreSQL: the failed statement aborted the transaction

        let syntax = s.execute("SELEC name FROM users", &[]);
        assert!(
            matches!(syntax, Err(Error::Core(CoreError::Database { .. }))),
            "{syntax:?}"
        );
        s.rollback()?;

        let two = s.execute("SELECT 1; DELETE FROM users", &[]);
        assert!(
            matches!(two, Err(Error::Core(CoreError::Database { .. }))),
            "more than one statement is refused: {two:?}"
        );
        s.rollback()?;
        let trailing = s.execute("SELECT count(*) FROM users; -- done", &[])?;
        assert_eq!(
            trailing.scalar().map(int),
            Some(0),
            "the flush was rolled back"
        );

        let constraint = s.execute(
            &format!("INSERT INTO users (name) VALUES ({})", db.param(1)),
            &["no age".into()],
        );
        assert!(
            matches!(
                &constraint,
                Err(Error::Core(e)) if e.constraint_kind() == Some(orm::ConstraintKind::NotNull)
            ),
            "{constraint:?}"
        );
        s.rollback()?;
        assert!(s.execute("SELECT 1", &[]).is_ok(), "usable again");
        Ok(())
    });
}

#[test]
fn execute_needs_a_transaction_when_autobegin_is_off() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let factory = sessionmaker().bind(db.engine()).autobegin(false).build();
        let mut s = factory.session();
        assert!(matches!(
            s.execute("SELECT 1", &[]),
            Err(Error::NoTransaction)
        ));
        s.begin()?;
        assert_eq!(s.execute("SELECT 1", &[])?.scalar().map(int), Some(1));
        Ok(())
    });
}
