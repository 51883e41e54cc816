//! The engine through the facade's public API, on both databases: values and bound
//! parameters, pooled connections, transactions, `Metadata` DDL, typed errors, statement
//! logging; plus checks of the test harness itself (isolation, cleanup, SQL capture).

use std::time::{Duration, Instant};

use orm::{
    ColumnDef, ConstraintKind, CoreError, DecodeError, Dialect, Engine, ForeignKey, Metadata,
    SqlType, Table, Value, ValueRef,
};

use crate::support::{
    self, capture, capture_events, count_prefix, count_rows, for_each_db, query_i64, query_values,
    with_prefix, without_transaction_control, TestDb, TestResult,
};

/// A decode failure of an ad-hoc query, as a `CoreError` (closures of `query` return those).
fn col<T>(read: Result<Option<T>, DecodeError>, column: &str) -> Result<Option<T>, CoreError> {
    read.map_err(|source| CoreError::Decode {
        table: "<query>".into(),
        column: column.into(),
        source,
    })
}

// ---------------------------------------------------------------------------------------------
// Values and bound parameters

#[test]
fn reading_a_column_into_a_type_that_cannot_hold_it_is_a_wrong_type_error() {
    for_each_db(|db| {
        let conn = db.engine().connection()?;
        let (big, null) = if db.is_postgres() {
            ("3000000000::int8", "NULL::int4")
        } else {
            ("3000000000", "NULL")
        };
        conn.query(&format!("SELECT 'abc', {big}, {null}, 7"), &[], |r| {
            let wrong = |read: Result<Option<i32>, DecodeError>| match read {
                Err(DecodeError::WrongType { found, .. }) => assert!(!found.is_empty()),
                other => panic!("expected WrongType, got {other:?}"),
            };
            wrong(r.get::<i32>(0));
            wrong(r.get::<i32>(1));
            assert_eq!(r.get::<i32>(2).expect("NULL reads as None"), None);
            assert_eq!(r.get::<i32>(3).expect("fits"), Some(7));
            assert!(r.get::<i32>(4).is_err(), "no such column");
            Ok(())
        })?;
        Ok(())
    });
}

#[test]
fn text_columns_of_every_text_type_decode_into_string_fields() {
    use orm::ColumnType;
    for_each_db(|db| {
        let conn = db.engine().connection()?;
        // PostgreSQL's built-in text types, a domain over one, a NULL, and a column of no text
        // type (which goes through the driver's own checks, and fails them).
        let sql = if db.is_postgres() {
            conn.execute("CREATE DOMAIN short_text AS varchar(10)", &[])?;
            "SELECT 'é t'::text, 'v'::varchar(5), 'c'::char(3), 'n'::name, \
             'd'::short_text, NULL::text, 7::int4"
        } else {
            "SELECT 'é t', 'v', 'c  ', 'n', 'd', NULL, 7"
        };
        conn.query(sql, &[], |r| {
            let text = |i: usize| <String as ColumnType>::decode(r, i);
            assert_eq!(text(0).unwrap(), "é t");
            assert_eq!(text(1).unwrap(), "v");
            assert_eq!(text(2).unwrap(), "c  "); // char(3) pads
            assert_eq!(text(3).unwrap(), "n");
            assert_eq!(text(4).unwrap(), "d"); // a domain arrives as its base type
            assert_eq!(<Option<String> as ColumnType>::decode(r, 5).unwrap(), None);
            assert!(matches!(text(5), Err(DecodeError::UnexpectedNull)));
            if db.is_postgres() {
                assert!(matches!(text(6), Err(DecodeError::WrongType { .. })));
            }
            assert!(text(7).is_err(), "no such column");
            Ok(())
        })?;
        Ok(())
    });
}

#[test]
fn every_value_type_round_trips_through_bound_parameters() {
    for_each_db(|db| {
        let conn = db.engine().connection()?;
        let double = if db.is_postgres() {
            "DOUBLE PRECISION"
        } else {
            "DOUBLE"
        };
        conn.execute(
            &format!(
                "CREATE TABLE all_types (id INTEGER PRIMARY KEY, s SMALLINT, i INTEGER, b BIGINT, \
                 r REAL, d {double}, flag BOOLEAN, t TEXT, bin {})",
                db.blob_type()
            ),
            &[],
        )?;
        use Value::*;
        let rows: Vec<Vec<Value>> = vec![
            vec![
                I32(1),
                I16(i16::MIN),
                I32(i32::MIN),
                I64(i64::MIN),
                F32(-1.5),
                F64(f64::MIN_POSITIVE),
                Bool(false),
                Text(String::new()),
                Bytes(Vec::new()),
            ],
            vec![
                I32(2),
                I16(i16::MAX),
                I32(i32::MAX),
                I64(i64::MAX),
                F32(f32::MAX),
                F64(0.1 + 0.2),
                Bool(true),
                Text("plain text".into()),
                Bytes(vec![0, 1, 0x7f, 0x80, 0xff, 0]),
            ],
            vec![I32(3), Null, Null, Null, Null, Null, Null, Null, Null],
        ];
        let insert = format!(
            "INSERT INTO all_types (id, s, i, b, r, d, flag, t, bin) VALUES ({})",
            db.params(9)
        );
        for row in &rows {
            assert_eq!(conn.execute(&insert, row)?, 1);
        }

        // Typed reads.
        type Typed = (
            Option<i16>,
            Option<i32>,
            Option<i64>,
            Option<f32>,
            Option<f64>,
            Option<bool>,
            Option<String>,
            Option<Vec<u8>>,
        );
        let mut typed: Vec<Typed> = Vec::new();
        conn.query(
            "SELECT s, i, b, r, d, flag, t, bin FROM all_types ORDER BY id",
            &[],
            |r| {
                typed.push((
                    col(r.get::<i16>(0), "s")?,
                    col(r.get::<i32>(1), "i")?,
                    col(r.get::<i64>(2), "b")?,
                    col(r.get::<f32>(3), "r")?,
                    col(r.get::<f64>(4), "d")?,
                    col(r.get::<bool>(5), "flag")?,
                    col(r.get::<String>(6), "t")?,
                    col(r.get::<Vec<u8>>(7), "bin")?,
                ));
                Ok(())
            },
        )?;
        let expected: Vec<Typed> = vec![
            (
                Some(i16::MIN),
                Some(i32::MIN),
                Some(i64::MIN),
                Some(-1.5),
                Some(f64::MIN_POSITIVE),
                Some(false),
                Some(String::new()),
                Some(Vec::new()),
            ),
            (
                Some(i16::MAX),
                Some(i32::MAX),
                Some(i64::MAX),
                Some(f32::MAX),
                Some(0.1 + 0.2),
                Some(true),
                Some("plain text".into()),
                Some(vec![0, 1, 0x7f, 0x80, 0xff, 0]),
            ),
            (None, None, None, None, None, None, None, None),
        ];
        assert_eq!(typed, expected);

        // Dynamic reads: PostgreSQL keeps each column's width; SQLite has integers, reals,
        // text and blobs only (booleans are integers).
        let dynamic = query_values(
            &conn,
            "SELECT s, i, b, r, d, flag, t, bin FROM all_types ORDER BY id",
            &[],
        )?;
        let expected: Vec<Vec<Value>> = rows
            .iter()
            .map(|row| {
                row[1..]
                    .iter()
                    .map(|v| match (db.dialect(), v) {
                        (Dialect::Sqlite, I16(x)) => I64(i64::from(*x)),
                        (Dialect::Sqlite, I32(x)) => I64(i64::from(*x)),
                        (Dialect::Sqlite, Bool(x)) => I64(i64::from(*x)),
                        (Dialect::Sqlite, F32(x)) => F64(f64::from(*x)),
                        (_, v) => v.clone(),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(dynamic, expected);

        // Parameters in WHERE clauses; any integer width binds to any integer column.
        let find = |column: &str, v: Value| {
            query_i64(
                &conn,
                &format!("SELECT id FROM all_types WHERE {column} = {}", db.param(1)),
                &[v],
            )
        };
        assert_eq!(find("b", I64(i64::MAX))?, 2);
        assert_eq!(find("s", I64(i64::from(i16::MIN)))?, 1);
        assert_eq!(find("i", I32(i32::MAX))?, 2);
        assert_eq!(find("flag", Bool(true))?, 2);
        assert_eq!(find("t", Text("plain text".into()))?, 2);
        assert_eq!(find("bin", Bytes(vec![0, 1, 0x7f, 0x80, 0xff, 0]))?, 2);
        assert_eq!(
            query_i64(
                &conn,
                "SELECT count(*) FROM all_types WHERE s IS NULL AND t IS NULL AND bin IS NULL",
                &[]
            )?,
            1
        );
        Ok(())
    });
}

/// Strings that would break SQL spliced into text; bound parameters carry them unchanged.
const HOSTILE: &[&str] = &[
    "'",
    "''",
    "\"",
    ";",
    "--",
    "/* comment */",
    "\\",
    "\\'",
    "\\\\",
    "'; DROP TABLE hostile; --",
    "Robert'); DROP TABLE students;--",
    "\" OR \"1\"=\"1",
    "$1",
    "?1",
    "%s %d {}",
    "line\nbreak\r\n\ttab",
    "héllo wörld",
    "日本語のテキスト",
    "🦀 emoji 👨‍👩‍👧",
    "\u{202e}right-to-left",
    "e\u{301}",
    "",
    " leading and trailing ",
];

#[test]
fn hostile_strings_round_trip_unchanged() {
    for_each_db(|db| {
        let conn = db.engine().connection()?;
        conn.execute(
            "CREATE TABLE hostile (id INTEGER PRIMARY KEY, t TEXT NOT NULL)",
            &[],
        )?;
        let insert = format!("INSERT INTO hostile (id, t) VALUES ({})", db.params(2));
        for (i, s) in HOSTILE.iter().enumerate() {
            conn.execute(
                &insert,
                &[Value::I64(i as i64), Value::Text((*s).to_owned())],
            )?;
        }
        let mut read = Vec::new();
        conn.query("SELECT t FROM hostile ORDER BY id", &[], |r| {
            read.push(col(r.get::<String>(0), "t")?.expect("NOT NULL column"));
            Ok(())
        })?;
        assert_eq!(read, HOSTILE);
        for (i, s) in HOSTILE.iter().enumerate() {
            let sql = format!("SELECT id FROM hostile WHERE t = {}", db.param(1));
            assert_eq!(
                query_i64(&conn, &sql, &[Value::Text((*s).to_owned())])?,
                i as i64,
                "{s:?}"
            );
        }
        assert_eq!(count_rows(&db.engine(), "hostile")?, HOSTILE.len() as i64);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Pooled connections

#[test]
fn sqlite_memory_is_one_database_per_engine() -> TestResult {
    for url in ["sqlite::memory:", "sqlite://:memory:"] {
        let engine = Engine::connect(url)?;
        let a = engine.connection()?;
        let b = engine.connection()?;
        assert!(!a.same_as(&b), "two checkouts are two pooled connections");
        a.execute("CREATE TABLE shared (x INTEGER)", &[])?;
        a.execute("INSERT INTO shared VALUES (?1)", &[Value::I64(7)])?;
        assert_eq!(
            query_i64(&b, "SELECT x FROM shared", &[])?,
            7,
            "{url}: b sees a's table and row"
        );
        b.execute("INSERT INTO shared VALUES (8)", &[])?;
        assert_eq!(
            query_i64(&a, "SELECT count(*) FROM shared", &[])?,
            2,
            "{url}: a sees b's row"
        );

        // The database outlives the connections, as long as the engine (or a clone) lives.
        drop((a, b));
        let clone = engine.clone();
        assert!(clone.same_as(&engine));
        drop(engine);
        assert_eq!(count_rows(&clone, "shared")?, 2);

        // Another engine is another database.
        let other = Engine::connect(url)?;
        assert!(!other.same_as(&clone));
        match count_rows(&other, "shared") {
            Err(CoreError::UndefinedTable { table }) => assert_eq!(table, "shared"),
            other => {
                panic!("{url}: a second engine must not see the first one's tables: {other:?}")
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Transactions

fn create_tx_table(engine: &Engine) -> Result<(), CoreError> {
    engine
        .connection()?
        .execute("CREATE TABLE tx (id INTEGER PRIMARY KEY, v TEXT)", &[])?;
    Ok(())
}

#[test]
fn begin_commit_persists_and_begin_rollback_leaves_nothing() {
    for_each_db(|db| {
        let engine = db.engine();
        create_tx_table(&engine)?;
        let conn = engine.connection()?;
        let observer = engine.connection()?;
        let count = "SELECT count(*) FROM tx";

        assert!(!conn.in_transaction());
        conn.begin()?;
        assert!(conn.in_transaction());
        conn.execute("INSERT INTO tx VALUES (1, 'committed')", &[])?;
        assert_eq!(
            query_i64(&conn, count, &[])?,
            1,
            "the transaction sees its own row"
        );
        assert_eq!(
            query_i64(&observer, count, &[])?,
            0,
            "another connection does not, yet"
        );
        conn.commit()?;
        assert!(!conn.in_transaction());
        assert_eq!(query_i64(&observer, count, &[])?, 1);

        conn.begin()?;
        conn.execute("INSERT INTO tx VALUES (2, 'rolled back')", &[])?;
        conn.execute("UPDATE tx SET v = 'changed' WHERE id = 1", &[])?;
        conn.rollback()?;
        assert!(!conn.in_transaction());
        assert_eq!(
            query_values(&observer, "SELECT id, v FROM tx", &[])?.len(),
            1
        );
        let v = query_values(&conn, "SELECT v FROM tx WHERE id = 1", &[])?;
        assert_eq!(v, vec![vec![Value::Text("committed".into())]]);

        // A second engine on the same database (another process) sees the committed row.
        let other = Engine::connect(db.url())?;
        assert_eq!(count_rows(&other, "tx")?, 1);
        Ok(())
    });
}

#[test]
fn transaction_misuse_is_an_error() {
    for_each_db(|db| {
        let engine = db.engine();
        create_tx_table(&engine)?;
        let conn = engine.connection()?;
        match conn.commit() {
            Err(CoreError::Transaction(_)) => {}
            other => panic!("commit without begin: {other:?}"),
        }
        conn.rollback()
            .expect("rollback without a transaction does nothing");

        conn.begin()?;
        conn.execute("INSERT INTO tx VALUES (1, 'kept')", &[])?;
        let (second, sql) = capture(|| conn.begin());
        match second {
            Err(e @ CoreError::Transaction(_)) => assert!(e.to_string().contains("already"), "{e}"),
            other => panic!("begin twice must fail: {other:?}"),
        }
        assert!(sql.is_empty(), "a refused begin sends nothing: {sql:?}");
        assert!(conn.in_transaction(), "the first transaction is still open");
        conn.commit()?;
        assert_eq!(count_rows(&engine, "tx")?, 1);
        Ok(())
    });
}

#[test]
fn dropping_a_connection_with_an_open_transaction_rolls_it_back() {
    for_each_db(|db| {
        let engine = Engine::builder(db.url())
            .pool_size(1)
            .timeout(Duration::from_secs(5))
            .connect()?;
        create_tx_table(&engine)?;
        let conn = engine.connection()?;
        conn.begin()?;
        conn.execute("INSERT INTO tx VALUES (1, 'never committed')", &[])?;
        let clone = conn.clone();
        drop(conn);
        assert!(
            clone.in_transaction(),
            "another handle keeps the transaction open"
        );

        let ((), sql) = capture(|| drop(clone));
        assert_eq!(sql, ["ROLLBACK"]);
        let observer = Engine::connect(db.url())?;
        assert_eq!(count_rows(&observer, "tx")?, 0);

        // The (only) pooled connection came back clean: its writes autocommit again.
        let reused = engine.connection()?;
        assert!(!reused.in_transaction());
        reused.execute("INSERT INTO tx VALUES (2, 'autocommitted')", &[])?;
        assert_eq!(count_rows(&observer, "tx")?, 1, "seen from another engine");
        Ok(())
    });
}

#[test]
fn cloned_connection_handles_share_one_connection_and_transaction() {
    for_each_db(|db| {
        let engine = db.engine();
        create_tx_table(&engine)?;
        let a = engine.connection()?;
        let b = a.clone();
        let other = engine.connection()?;
        assert!(a.same_as(&b));
        assert!(!a.same_as(&other));
        if db.is_postgres() {
            let pid = "SELECT pg_backend_pid()::bigint";
            assert_eq!(query_i64(&a, pid, &[])?, query_i64(&b, pid, &[])?);
            assert_ne!(query_i64(&a, pid, &[])?, query_i64(&other, pid, &[])?);
        }

        a.begin()?;
        assert!(b.in_transaction());
        b.execute("INSERT INTO tx VALUES (1, 'via b')", &[])?;
        assert_eq!(query_i64(&other, "SELECT count(*) FROM tx", &[])?, 0);
        b.commit()?;
        assert!(!a.in_transaction());
        assert_eq!(query_i64(&other, "SELECT count(*) FROM tx", &[])?, 1);

        b.begin()?;
        assert!(matches!(a.begin(), Err(CoreError::Transaction(_))));
        a.execute("INSERT INTO tx VALUES (2, 'via a')", &[])?;
        b.rollback()?;
        assert_eq!(query_i64(&other, "SELECT count(*) FROM tx", &[])?, 1);

        // Dropping one handle leaves the transaction to the others.
        a.begin()?;
        b.execute("INSERT INTO tx VALUES (3, 'kept')", &[])?;
        drop(b);
        assert!(a.in_transaction());
        a.commit()?;
        assert_eq!(query_i64(&other, "SELECT count(*) FROM tx", &[])?, 2);
        Ok(())
    });
}

#[test]
fn postgres_sends_begin_with_the_first_statement_and_nothing_for_an_empty_transaction() {
    use orm::sql::ast::{Select, Statement};
    for_each_db(|db| {
        if !db.is_postgres() {
            return Ok(());
        }
        let engine = db.engine();
        Metadata::from_tables(vec![&PARENT]).create_all(&engine)?;
        let conn = engine.connection()?;
        let other = engine.connection()?;
        let pid = query_i64(&conn, "SELECT pg_backend_pid()::bigint", &[])?;
        // What the server says of `conn`'s session, asked from another connection.
        let state = || -> Result<String, CoreError> {
            let rows = query_values(
                &other,
                "SELECT state FROM pg_stat_activity WHERE pid = $1",
                &[Value::I32(pid as i32)],
            )?;
            match &rows[..] {
                [row] => match &row[..] {
                    [Value::Text(state)] => Ok(state.clone()),
                    other => panic!("state of backend {pid}: {other:?}"),
                },
                other => panic!("backend {pid}: {other:?}"),
            }
        };
        let select = || Statement::Select(Select::of(&PARENT));
        conn.query_statement(select(), |_| Ok(()))?; // now prepared on `conn`

        // A transaction that ends before any statement sends nothing.
        let (ended, sql) = capture(|| -> Result<(), CoreError> {
            conn.begin()?;
            conn.rollback()?;
            conn.begin()?;
            conn.commit()
        });
        ended?;
        assert!(sql.is_empty(), "{sql:?}");
        assert_eq!(state()?, "idle");

        // BEGIN waits for the first statement and goes out with it: the SELECT runs inside
        // the transaction.
        conn.begin()?;
        assert!(conn.in_transaction());
        assert_eq!(state()?, "idle");
        let (read, sql) = capture(|| conn.query_statement(select(), |_| Ok(())));
        read?;
        assert_eq!(sql.len(), 2, "{sql:?}");
        assert_eq!(sql[0], "BEGIN");
        assert!(sql[1].starts_with("SELECT"), "{sql:?}");
        assert_eq!(state()?, "idle in transaction");
        conn.rollback()?;
        assert_eq!(state()?, "idle");

        // A statement that writes is never sent with a BEGIN that could fail without it:
        // the BEGIN goes first, on its own, and the write is inside the transaction.
        conn.begin()?;
        let insert = "INSERT INTO it_parent (name) VALUES ($1)";
        let (wrote, sql) = capture(|| conn.execute(insert, &["a".into()]));
        wrote?;
        assert_eq!(sql, ["BEGIN", insert]);
        assert_eq!(state()?, "idle in transaction");
        conn.rollback()?;
        assert_eq!(query_i64(&other, "SELECT count(*) FROM it_parent", &[])?, 0);

        // Dropping the last handle in a transaction begun but never sent sends nothing.
        conn.begin()?;
        let ((), sql) = capture(|| drop(conn));
        assert!(sql.is_empty(), "{sql:?}");
        Ok(())
    });
}

#[test]
fn rollback_nowait_undoes_the_transaction_before_the_next_statement_runs() {
    for_each_db(|db| {
        let engine = db.engine();
        Metadata::from_tables(vec![&PARENT]).create_all(&engine)?;
        let conn = engine.connection()?;
        let insert = format!("INSERT INTO it_parent (name) VALUES ({})", db.param(1));
        conn.begin()?;
        conn.execute(&insert, &["gone".into()])?;
        let ((), sql) = capture(|| conn.rollback_nowait());
        assert_eq!(sql, ["ROLLBACK"]);
        assert!(!conn.in_transaction());
        // The connection's next statement runs after the ROLLBACK, outside any transaction.
        assert_eq!(query_i64(&conn, "SELECT count(*) FROM it_parent", &[])?, 0);
        conn.execute(&insert, &["kept".into()])?;
        assert_eq!(count_rows(&engine, "it_parent")?, 1);

        // Nothing to roll back: nothing is sent.
        let ((), sql) = capture(|| conn.rollback_nowait());
        assert!(sql.is_empty(), "{sql:?}");

        // Back in the pool, the connection of a dropped handle serves the next one, which
        // reads the ROLLBACK's reply before its own.
        drop(conn);
        let pool_of_one = Engine::builder(db.url()).pool_size(1).connect()?;
        for round in 0..3 {
            let conn = pool_of_one.connection()?;
            conn.begin()?;
            conn.execute(&insert, &[format!("dropped {round}").into()])?;
            assert_eq!(query_i64(&conn, "SELECT count(*) FROM it_parent", &[])?, 2);
            drop(conn);
        }
        assert_eq!(count_rows(&pool_of_one, "it_parent")?, 1);
        if db.is_postgres() {
            // Another connection sees the transaction end without any help from this one.
            let conn = pool_of_one.connection()?;
            let pid = query_i64(&conn, "SELECT pg_backend_pid()::bigint", &[])?;
            conn.begin()?;
            conn.execute(&insert, &["locked".into()])?;
            conn.rollback_nowait();
            let other = engine.connection()?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let state = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'idle'";
            while query_i64(&other, state, &[Value::I32(pid as i32)])? != 1 {
                assert!(
                    Instant::now() < deadline,
                    "backend {pid} still in its transaction"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(query_i64(&other, "SELECT count(*) FROM it_parent", &[])?, 1);
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Metadata: create_all / drop_all

static PARENT: Table = Table {
    name: "it_parent",
    columns: &[
        ColumnDef {
            name: "id",
            field: "id",
            sql_type: SqlType::BigInt,
            nullable: false,
            generated: true,
        },
        ColumnDef {
            name: "name",
            field: "name",
            sql_type: SqlType::Text,
            nullable: false,
            generated: false,
        },
    ],
    primary_key: &[0],
    foreign_keys: &[],
    version: None,
};

static CHILD: Table = Table {
    name: "it_child",
    columns: &[
        ColumnDef {
            name: "id",
            field: "id",
            sql_type: SqlType::BigInt,
            nullable: false,
            generated: true,
        },
        ColumnDef {
            name: "parent_id",
            field: "parent_id",
            sql_type: SqlType::BigInt,
            nullable: false,
            generated: false,
        },
        ColumnDef {
            name: "note",
            field: "note",
            sql_type: SqlType::Text,
            nullable: true,
            generated: false,
        },
    ],
    primary_key: &[0],
    foreign_keys: &[ForeignKey {
        columns: &[1],
        ref_table: "it_parent",
        ref_columns: &["id"],
    }],
    version: None,
};

#[test]
fn metadata_creates_parents_first_and_drops_children_first() {
    for_each_db(|db| {
        let engine = db.engine();
        // Listed child first: the order must come from the foreign key.
        let metadata = Metadata::from_tables(vec![&CHILD, &PARENT]);
        let names: Vec<&str> = metadata.sorted().iter().map(|t| t.name).collect();
        assert_eq!(names, ["it_parent", "it_child"]);

        let (created, sql) = capture(|| metadata.create_all(&engine));
        created?;
        assert_eq!(sql.first().map(String::as_str), Some("BEGIN"), "{sql:#?}");
        assert_eq!(sql.last().map(String::as_str), Some("COMMIT"), "{sql:#?}");
        let ddl = without_transaction_control(&sql);
        assert_eq!(ddl.len(), 2, "{ddl:#?}");
        assert!(
            ddl[0].starts_with("CREATE TABLE IF NOT EXISTS \"it_parent\""),
            "{ddl:#?}"
        );
        assert!(
            ddl[1].starts_with("CREATE TABLE IF NOT EXISTS \"it_child\""),
            "{ddl:#?}"
        );
        assert!(ddl[1].contains("REFERENCES \"it_parent\""), "{ddl:#?}");

        metadata
            .create_all(&engine)
            .expect("create_all twice is fine (IF NOT EXISTS)");

        let conn = engine.connection()?;
        let p = |n| db.param(n);
        conn.execute(
            &format!("INSERT INTO it_parent (name) VALUES ({})", p(1)),
            &["ed".into()],
        )?;
        conn.execute(
            &format!("INSERT INTO it_parent (name) VALUES ({})", p(1)),
            &["wendy".into()],
        )?;
        let ed = query_i64(
            &conn,
            &format!("SELECT id FROM it_parent WHERE name = {}", p(1)),
            &["ed".into()],
        )?;
        let wendy = query_i64(
            &conn,
            &format!("SELECT id FROM it_parent WHERE name = {}", p(1)),
            &["wendy".into()],
        )?;
        assert_ne!(ed, wendy, "generated keys are distinct");
        let insert_child = format!(
            "INSERT INTO it_child (parent_id, note) VALUES ({}, {})",
            p(1),
            p(2)
        );
        assert_eq!(
            conn.execute(&insert_child, &[Value::I64(ed), Value::Null])?,
            1
        );

        let missing = ed.max(wendy) + 1000;
        match conn.execute(
            &insert_child,
            &[Value::I64(missing), Value::Text("orphan".into())],
        ) {
            Err(CoreError::Constraint {
                kind: ConstraintKind::ForeignKey,
                table,
                constraint,
                ..
            }) => {
                if db.is_postgres() {
                    assert_eq!(table.as_deref(), Some("it_child"));
                    assert!(constraint.is_some());
                }
            }
            other => {
                panic!("a child with a missing parent must violate the foreign key: {other:?}")
            }
        }
        assert_eq!(count_rows(&engine, "it_child")?, 1);
        drop(conn);

        let (dropped, sql) = capture(|| metadata.drop_all(&engine));
        dropped?;
        assert_eq!(
            without_transaction_control(&sql),
            [
                "DROP TABLE IF EXISTS \"it_child\"",
                "DROP TABLE IF EXISTS \"it_parent\""
            ]
        );
        for table in ["it_parent", "it_child"] {
            match count_rows(&engine, table) {
                Err(CoreError::UndefinedTable { table: t }) => assert_eq!(t, table),
                other => panic!("{table} must be gone: {other:?}"),
            }
        }
        metadata
            .drop_all(&engine)
            .expect("drop_all twice is fine (IF EXISTS)");
        Ok(())
    });
}

static ODD: Table = Table {
    name: "odd \"name\"; -- table",
    columns: &[ColumnDef {
        name: "we\"ird col",
        field: "weird",
        sql_type: SqlType::Integer,
        nullable: false,
        generated: false,
    }],
    primary_key: &[0],
    foreign_keys: &[],
    version: None,
};

#[test]
fn metadata_quotes_identifiers() {
    for_each_db(|db| {
        let engine = db.engine();
        let metadata = Metadata::from_tables(vec![&ODD]);
        metadata.create_all(&engine)?;
        let (mut table, mut column) = (String::new(), String::new());
        db.dialect().quote_into(&mut table, ODD.name);
        db.dialect().quote_into(&mut column, ODD.columns[0].name);
        let conn = engine.connection()?;
        conn.execute(
            &format!("INSERT INTO {table} ({column}) VALUES ({})", db.param(1)),
            &[Value::I32(5)],
        )?;
        assert_eq!(
            query_i64(&conn, &format!("SELECT count(*) FROM {table}"), &[])?,
            1
        );
        drop(conn);
        metadata.drop_all(&engine)?;
        match count_rows(&engine, ODD.name) {
            Err(CoreError::UndefinedTable { .. }) => {}
            other => panic!("the table must be gone: {other:?}"),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn bad_urls_are_invalid_url_errors() {
    for url in [
        "mysql://x",
        "sqlite://",
        "",
        "postgresql://u@127.0.0.1:notaport/db",
        "http://example.com",
    ] {
        match Engine::connect(url) {
            Err(e @ CoreError::InvalidUrl { .. }) => assert!(!e.to_string().is_empty()),
            other => panic!("`{url}` must be an InvalidUrl error: {other:?}"),
        }
    }
}

#[test]
fn invalid_url_errors_hide_the_password() {
    let url = "postgresql://user:s3cr3t-pw@127.0.0.1:notaport/db";
    let e = Engine::connect(url).expect_err("an invalid port");
    assert!(matches!(e, CoreError::InvalidUrl { .. }), "{e:?}");
    let all = format!("{e} {e:?} {}", support::error_chain(&e));
    assert!(!all.contains("s3cr3t-pw"), "the password leaked: {all}");
}

#[test]
fn unreachable_server_is_a_quick_connect_error_without_the_password() {
    let started = Instant::now();
    let e = Engine::connect("postgresql://postgres:hunter2-secret@127.0.0.1:1/x")
        .expect_err("nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    match &e {
        CoreError::Connect { target, .. } => assert_eq!(target, "postgresql://127.0.0.1:1/x"),
        other => panic!("expected a Connect error: {other:?}"),
    }
    let all = format!("{e} {e:?} {}", support::error_chain(&e));
    assert!(!all.contains("hunter2"), "the password leaked: {all}");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
}

#[test]
fn unopenable_sqlite_file_is_a_connect_error() {
    let path = std::env::temp_dir().join(format!("orm-no-such-dir-{}/x/y.db", std::process::id()));
    match Engine::connect(&format!("sqlite://{}", path.display())) {
        Err(CoreError::Connect { target, .. }) => assert!(target.contains("y.db"), "{target}"),
        other => panic!("expected a Connect error: {other:?}"),
    }
}

#[test]
fn missing_table_is_undefined_table_naming_it() {
    for_each_db(|db| {
        let conn = db.engine().connection()?;
        let select = query_values(&conn, "SELECT * FROM no_such_table", &[]);
        let insert = conn.execute(
            &format!("INSERT INTO no_such_table VALUES ({})", db.param(1)),
            &[Value::I64(1)],
        );
        for result in [select.map(drop), insert.map(drop)] {
            match result {
                Err(e @ CoreError::UndefinedTable { .. }) => {
                    assert!(
                        matches!(&e, CoreError::UndefinedTable { table } if table == "no_such_table"),
                        "{e:?}"
                    );
                    assert_eq!(e.to_string(), "table `no_such_table` does not exist");
                }
                other => panic!("expected UndefinedTable: {other:?}"),
            }
        }
        // The connection is still usable.
        assert_eq!(query_i64(&conn, "SELECT 1 + 1", &[])?, 2);
        Ok(())
    });
}

#[test]
fn missing_table_with_quotes_in_its_name_is_named_exactly() {
    for_each_db(|db| {
        match count_rows(&db.engine(), ODD.name) {
            Err(CoreError::UndefinedTable { table }) => assert_eq!(table, ODD.name),
            other => panic!("expected UndefinedTable: {other:?}"),
        }
        Ok(())
    });
}

fn create_users(db: &TestDb) -> Result<orm::Connection, CoreError> {
    let conn = db.engine().connection()?;
    conn.execute(
        "CREATE TABLE it_users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, nick TEXT)",
        &[],
    )?;
    conn.execute(
        &format!("INSERT INTO it_users (id, email) VALUES ({})", db.params(2)),
        &[Value::I64(1), "ed@example.com".into()],
    )?;
    Ok(conn)
}

#[test]
fn unique_violation_names_table_and_column() {
    for_each_db(|db| {
        let conn = create_users(db)?;
        let insert = format!("INSERT INTO it_users (id, email) VALUES ({})", db.params(2));

        let e = conn
            .execute(&insert, &[Value::I64(2), "ed@example.com".into()])
            .expect_err("duplicate email");
        assert_unique(db, &e, "email", "it_users_email_key");
        assert_eq!(e.constraint_kind(), Some(ConstraintKind::Unique));
        assert!(e.to_string().contains("it_users"), "{e}");

        let e = conn
            .execute(&insert, &[Value::I64(1), "other@example.com".into()])
            .expect_err("duplicate key");
        assert_unique(db, &e, "id", "it_users_pkey");

        // Outside a transaction, the connection goes on working.
        conn.execute(&insert, &[Value::I64(2), "wendy@example.com".into()])?;
        assert_eq!(query_i64(&conn, "SELECT count(*) FROM it_users", &[])?, 2);
        Ok(())
    });
}

#[test]
fn not_null_violation_names_the_column() {
    for_each_db(|db| {
        let conn = create_users(db)?;
        let insert = format!(
            "INSERT INTO it_users (id, email, nick) VALUES ({})",
            db.params(3)
        );
        let e = conn
            .execute(&insert, &[Value::I64(2), Value::Null, "nick".into()])
            .expect_err("NULL email");
        match &e {
            CoreError::Constraint {
                kind: ConstraintKind::NotNull,
                table,
                column,
                ..
            } => {
                assert_eq!(column.as_deref(), Some("email"), "{e:?}");
                assert_eq!(table.as_deref(), Some("it_users"), "{e:?}");
            }
            other => panic!("expected a NOT NULL violation: {other:?}"),
        }
        assert!(e.to_string().contains("email"), "{e}");
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Statement logging (echo) and SQL capture

#[test]
fn every_statement_is_logged_and_captured() {
    for_each_db(|db| {
        let engine = db.engine();
        let conn = engine.connection()?;
        let insert = format!("INSERT INTO echo_t (x, y) VALUES ({})", db.params(2));
        let (result, events) = capture_events(|| -> Result<i64, CoreError> {
            conn.execute("CREATE TABLE echo_t (x INTEGER, y TEXT)", &[])?;
            conn.begin()?;
            conn.execute(&insert, &[Value::I64(42), "forty-two".into()])?;
            conn.commit()?;
            conn.begin()?;
            conn.execute("DELETE FROM echo_t WHERE x < 0", &[])?;
            conn.rollback()?;
            query_i64(&conn, "SELECT count(*) FROM echo_t", &[])
        });
        assert_eq!(result?, 1);
        let sql: Vec<&str> = events.iter().map(|e| e.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "CREATE TABLE echo_t (x INTEGER, y TEXT)",
                "BEGIN",
                insert.as_str(),
                "COMMIT",
                "BEGIN",
                "DELETE FROM echo_t WHERE x < 0",
                "ROLLBACK",
                "SELECT count(*) FROM echo_t"
            ]
        );
        assert!(
            events[2].params.contains("42") && events[2].params.contains("forty-two"),
            "{:?}",
            events[2]
        );
        assert!(
            events.iter().all(|e| e.level == tracing::Level::DEBUG),
            "{events:#?}"
        );

        let strings: Vec<String> = sql.iter().map(|s| s.to_string()).collect();
        assert_eq!(count_prefix(&strings, "insert"), 1);
        assert_eq!(count_prefix(&strings, "BEGIN"), 2);
        assert_eq!(
            with_prefix(&strings, "SELECT"),
            ["SELECT count(*) FROM echo_t"]
        );
        assert_eq!(without_transaction_control(&strings).len(), 4);

        // echo(true) logs at INFO, like SQLAlchemy's echo=True.
        let echo = Engine::builder(db.url()).echo(true).connect()?;
        let (n, events) =
            capture_events(|| query_i64(&echo.connection()?, "SELECT count(*) FROM echo_t", &[]));
        assert_eq!(n?, 1);
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].level, tracing::Level::INFO);

        // Capture is per thread: statements of other threads are not seen.
        let (n, sql) = capture(|| {
            std::thread::scope(|s| {
                s.spawn(|| query_i64(&engine.connection().unwrap(), "SELECT 1 + 0", &[]).unwrap());
            });
            query_i64(&conn, "SELECT 2 + 0", &[])
        });
        assert_eq!(n?, 2);
        assert_eq!(sql, ["SELECT 2 + 0"]);

        // Nothing is captured outside `capture`, and a nested capture keeps its own.
        let ((inner, _), outer) = capture(|| {
            let inner = capture(|| query_i64(&conn, "SELECT 3 + 0", &[]).unwrap()).1;
            (inner, query_i64(&conn, "SELECT 4 + 0", &[]).unwrap())
        });
        assert_eq!(inner, ["SELECT 3 + 0"]);
        assert_eq!(outer, ["SELECT 4 + 0"]);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The harness itself

#[test]
fn harness_postgres_schema_is_the_search_path_and_is_dropped() -> TestResult {
    let db = TestDb::postgres();
    let schema = db
        .schema()
        .expect("a postgres TestDb has a schema")
        .to_owned();
    assert!(
        db.url()
            .contains(&format!("options=-csearch_path%3D{schema}")),
        "{}",
        db.url()
    );
    let conn = db.engine().connection()?;
    conn.execute("CREATE TABLE landed (x INTEGER)", &[])?;
    let current = query_values(&conn, "SELECT current_schema()::text", &[])?;
    assert_eq!(current, vec![vec![Value::Text(schema.clone())]]);
    let in_schema = "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'landed'";
    assert_eq!(
        query_i64(&conn, in_schema, &[schema.as_str().into()])?,
        1,
        "the table landed in {schema}"
    );
    assert_eq!(query_i64(&conn, in_schema, &["public".into()])?, 0);
    // A second engine on the URL uses the same schema.
    let second = Engine::connect(db.url())?;
    assert_eq!(count_rows(&second, "landed")?, 0);
    drop((conn, second));

    drop(db);
    let admin = Engine::connect(&support::pg::server().url)?;
    let exists = "SELECT count(*) FROM pg_namespace WHERE nspname = $1";
    assert_eq!(
        query_i64(&admin.connection()?, exists, &[schema.as_str().into()])?,
        0,
        "{schema} was dropped"
    );
    Ok(())
}

#[test]
fn harness_sqlite_file_is_deleted_on_drop() -> TestResult {
    let db = TestDb::sqlite();
    let path = db
        .sqlite_path()
        .expect("a sqlite TestDb has a file")
        .to_owned();
    assert!(path.starts_with(std::env::temp_dir()));
    db.engine()
        .connection()?
        .execute("CREATE TABLE t (x INTEGER)", &[])?;
    assert!(path.exists());
    let second = Engine::connect(db.url())?;
    assert_eq!(
        count_rows(&second, "t")?,
        0,
        "a second engine opens the same file"
    );
    drop(second);
    drop(db);
    assert!(!path.exists(), "{} must be deleted", path.display());
    Ok(())
}

#[test]
fn harness_databases_are_isolated_from_each_other() -> TestResult {
    let (first, second) = (support::databases(), support::databases());
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.name(), b.name());
        for db in [a, b] {
            db.engine()
                .connection()?
                .execute("CREATE TABLE same_name (x INTEGER)", &[])?;
        }
        a.engine()
            .connection()?
            .execute("INSERT INTO same_name VALUES (1)", &[])?;
        assert_eq!(count_rows(&a.engine(), "same_name")?, 1, "{}", a.name());
        assert_eq!(count_rows(&b.engine(), "same_name")?, 0, "{}", b.name());
    }
    let names: Vec<&str> = first.iter().map(TestDb::name).collect();
    assert_eq!(names, ["sqlite", "postgres"]);
    Ok(())
}

#[test]
#[should_panic(expected = "[postgres] test failed: boom")]
fn harness_names_the_database_of_a_failing_test() {
    for_each_db(|db| {
        if db.is_postgres() {
            Err("boom".into())
        } else {
            Ok(())
        }
    });
}

#[test]
#[should_panic(expected = "[sqlite] assertion")]
fn harness_names_the_database_of_a_panicking_test() {
    for_each_db(|db| {
        assert!(!db.is_sqlite());
        Ok(())
    });
}

#[test]
fn harness_sql_filters() {
    use support::{is_transaction_control, starts_with};
    for s in [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "begin;",
        "  COMMIT TRANSACTION",
        "START TRANSACTION",
    ] {
        assert!(is_transaction_control(s), "{s}");
    }
    for s in [
        "SAVEPOINT sp1",
        "ROLLBACK TO SAVEPOINT sp1",
        "BEGIN_x",
        "SELECT 1",
        "COMMITTED",
    ] {
        assert!(!is_transaction_control(s), "{s}");
    }
    assert!(starts_with("  insert INTO t", "INSERT"));
    assert!(!starts_with("IN", "INSERT"));
}

/// `e` is a unique violation on `it_users.column`, naming the constraint where the database
/// does (PostgreSQL).
fn assert_unique(db: &TestDb, e: &CoreError, column: &str, pg_constraint: &str) {
    match e {
        CoreError::Constraint {
            kind: ConstraintKind::Unique,
            table,
            column: c,
            constraint,
            ..
        } => {
            assert_eq!(table.as_deref(), Some("it_users"), "{e:?}");
            assert_eq!(c.as_deref(), Some(column), "{e:?}");
            if db.is_postgres() {
                assert_eq!(constraint.as_deref(), Some(pg_constraint), "{e:?}");
            }
        }
        other => panic!("expected a unique violation on {column}: {other:?}"),
    }
}

#[test]
fn a_prepared_statement_runs_with_borrowed_parameters_and_refuses_a_wrong_count() {
    for_each_db(|db| {
        let conn = db.engine().connection()?;
        conn.execute("CREATE TABLE prepared_t (x BIGINT, y TEXT)", &[])?;
        let insert = format!("INSERT INTO prepared_t (x, y) VALUES ({})", db.params(2));
        let y = String::from("borrowed");
        conn.prepared(&insert, |stmt| {
            assert_eq!(stmt.execute(&[ValueRef::I32(1), ValueRef::Text(&y)])?, 1);
            assert_eq!(stmt.execute(&[ValueRef::I32(2), ValueRef::Null])?, 1);
            // One parameter short: an error, not the previous run's value.
            assert!(stmt.execute(&[ValueRef::I32(3)]).is_err());
            Ok(())
        })?;
        let rows = query_values(&conn, "SELECT x, y FROM prepared_t ORDER BY x", &[])?;
        assert_eq!(
            rows,
            [
                vec![Value::I64(1), Value::Text(y.clone())],
                vec![Value::I64(2), Value::Null]
            ]
        );
        Ok(())
    });
}

#[test]
fn postgres_array_parameters_of_every_type_round_trip_with_their_nulls() {
    for_each_db(|db| {
        if !db.is_postgres() {
            return Ok(());
        }
        let conn = db.engine().connection()?;
        // One column per SQL type: the first element a value, the second NULL, the third
        // another value (the empty text and bytes among them).
        let columns: [(SqlType, &str, [Value; 3]); 8] = [
            (
                SqlType::SmallInt,
                "int2",
                [Value::I16(-2), Value::Null, Value::I16(7)],
            ),
            (
                SqlType::Integer,
                "int4",
                [Value::I32(-3), Value::Null, Value::I32(i32::MAX)],
            ),
            (
                SqlType::BigInt,
                "int8",
                [Value::I64(i64::MIN), Value::Null, Value::I64(9)],
            ),
            (
                SqlType::Real,
                "float4",
                [Value::F32(1.5), Value::Null, Value::F32(-0.25)],
            ),
            (
                SqlType::Double,
                "float8",
                [Value::F64(2.5), Value::Null, Value::F64(1e300)],
            ),
            (
                SqlType::Boolean,
                "bool",
                [Value::Bool(true), Value::Null, Value::Bool(false)],
            ),
            (
                SqlType::Blob,
                "bytea",
                [
                    Value::Bytes(vec![0, 255]),
                    Value::Null,
                    Value::Bytes(vec![]),
                ],
            ),
            (
                SqlType::Text,
                "text",
                [
                    Value::Text("é,{}".into()),
                    Value::Null,
                    Value::Text(String::new()),
                ],
            ),
        ];
        let casts: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (_, name, _))| format!("${}::{name}[]", i + 1))
            .collect();
        let sql = format!("SELECT * FROM unnest({})", casts.join(", "));
        let expected: Vec<Vec<Value>> = (0..3)
            .map(|row| columns.iter().map(|(_, _, v)| v[row].clone()).collect())
            .collect();
        // Owned arrays (Value::Array) and arrays of borrowed values (ArrayItems::Refs) alike.
        let owned: Vec<Value> = columns
            .iter()
            .map(|(t, _, v)| Value::Array(*t, v.to_vec()))
            .collect();
        assert_eq!(query_values(&conn, &sql, &owned)?, expected);
        let refs: Vec<Vec<ValueRef<'_>>> = columns
            .iter()
            .map(|(_, _, v)| v.iter().map(Value::as_ref).collect())
            .collect();
        let params: Vec<ValueRef<'_>> = columns
            .iter()
            .zip(&refs)
            .map(|((t, _, _), r)| ValueRef::Array(*t, orm::ArrayItems::Refs(r)))
            .collect();
        let mut rows = Vec::new();
        conn.prepared(&sql, |stmt| {
            stmt.query(&params, |row| {
                rows.push(
                    (0..row.len())
                        .map(|i| row.value(i).unwrap())
                        .collect::<Vec<_>>(),
                );
                Ok(())
            })
        })?;
        assert_eq!(rows, expected);
        Ok(())
    });
}
