//! Property test: hostile strings (quotes, backslashes, `;`, comment markers, unicode, and
//! NUL where the database allows it) as VALUES and as table and column NAMES in raw metadata.
//! Every value round-trips unchanged and nothing is ever executed from them.

use orm::sql::ast;
use orm::{ColumnDef, Metadata, SqlType, Table, Value};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::support::{for_each_db, query_values, TestDb};

/// Strings built from the characters that break naive SQL building.
fn hostile(max: usize) -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "'",
        "\"",
        "`",
        ";",
        "--",
        "/*",
        "*/",
        "\\",
        "\\'",
        "%",
        "_",
        "?",
        "$1",
        ":x",
        " ",
        "\n",
        "DROP TABLE x;",
        "' OR '1'='1",
        "ü",
        "名",
        "🦀",
        "\u{202e}",
        "a",
        "Z",
        "0",
    ]);
    prop::collection::vec(pieces, 1..max).prop_map(|p| p.concat())
}

/// A table named `name` with a generated key and one text column named `column`.
fn table(name: &str, column: &str) -> &'static Table {
    let columns: &'static [ColumnDef] = Box::leak(Box::new([
        ColumnDef {
            name: "id",
            field: "id",
            sql_type: SqlType::BigInt,
            nullable: false,
            generated: true,
        },
        ColumnDef {
            name: Box::leak(column.to_owned().into_boxed_str()),
            field: "value",
            sql_type: SqlType::Text,
            nullable: true,
            generated: false,
        },
    ]));
    Box::leak(Box::new(Table {
        name: Box::leak(name.to_owned().into_boxed_str()),
        columns,
        primary_key: &[0],
        foreign_keys: &[],
        version: None,
    }))
}

fn round_trip(db: &TestDb, name: &str, column: &str, value: &str) -> Result<(), TestCaseError> {
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(format!("[{}] {e}", db.name()));
    let t = table(name, column);
    let engine = db.engine();
    let metadata = Metadata::from_tables(vec![t]);
    metadata.create_all(&engine).map_err(|e| fail(&e))?;
    let conn = engine.connection().map_err(|e| fail(&e))?;
    conn.execute_statement(ast::Statement::Insert(ast::Insert {
        table: t,
        columns: vec![1],
        rows: ast::InsertRows::Values(vec![vec![Value::Text(value.to_owned())]]),
        returning: vec![],
    }))
    .map_err(|e| fail(&e))?;
    let mut select = ast::Select::of(t);
    select.filter = Some(ast::Expr::Binary {
        op: ast::BinOp::Eq,
        left: Box::new(ast::Expr::Column {
            table: t.name,
            column: t.columns[1].name,
        }),
        right: Box::new(ast::Expr::Param(Value::Text(value.to_owned()))),
    });
    let mut found = Vec::new();
    conn.query_statement(ast::Statement::Select(select), |row| {
        found.push(row.value(1).expect("value"));
        Ok(())
    })
    .map_err(|e| fail(&e))?;
    prop_assert_eq!(found, vec![Value::Text(value.to_owned())]);
    // The table exists under exactly the hostile name: nothing was cut or interpreted.
    let catalog = if db.is_postgres() {
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
    } else {
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1"
    };
    let n = query_values(&conn, catalog, &[Value::Text(name.to_owned())]).map_err(|e| fail(&e))?;
    prop_assert_eq!(n[0][0].as_i64(), Some(1));
    drop(conn);
    metadata.drop_all(&engine).map_err(|e| fail(&e))?;
    Ok(())
}

#[test]
fn hostile_strings_round_trip_as_values_and_names() {
    for_each_db(|db| {
        // PostgreSQL text and identifiers cannot hold NUL; SQLite values can.
        let nul = db.is_sqlite();
        let values = hostile(12).prop_flat_map(move |v| {
            let with_nul = if nul { format!("{v}\0{v}") } else { v.clone() };
            prop::sample::select(vec![v, with_nul])
        });
        // PostgreSQL truncates identifiers past 63 bytes.
        let names = || hostile(6).prop_filter("fits an identifier", |s: &String| s.len() <= 60);
        let mut runner = TestRunner::new(Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(
                &(names(), names(), values),
                |(name, column, value): (String, String, String)| {
                    prop_assume!(column != "id");
                    round_trip(db, &name, &column, &value)
                },
            )
            .map_err(|e| format!("{e}"))?;
        Ok(())
    });
}
