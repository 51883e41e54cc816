//! Batched statements for the objects of one table.
//!
//! - INSERT: one statement per table per flush on PostgreSQL (`INSERT .. SELECT FROM
//!   unnest(..) ORDER BY ordinality RETURNING key`), multi-row VALUES chunked under the
//!   parameter limit on SQLite. Generated keys come back in ascending order, which is the
//!   order rows were inserted in (sequence / rowid), and are stored into the objects in that
//!   order.
//! - UPDATE: only the changed columns; objects that changed the same columns share one
//!   statement on PostgreSQL (`UPDATE .. FROM unnest(..)`), a cached prepared statement per
//!   row on SQLite. Every row must match, or the flush fails with `StaleData`.
//! - DELETE: one `DELETE .. WHERE (key) IN (..)` per table (chunked on SQLite).

use std::collections::HashMap;

use orm_core::engine::Connection;
use orm_core::model::{ColumnSet, Mapped, PrimaryKey};
use orm_core::sql::ast::{Delete, DeleteRows, Insert, InsertRows, Statement, Update, UpdateRows};
use orm_core::value::{SqlType, Value};

use crate::error::{Error, Result};
use crate::object::Obj;
use crate::state::Status;

/// Column-wise arrays of `rows`, for `unnest`.
fn arrays(types: &[SqlType], rows: Vec<Vec<Value>>) -> Vec<(SqlType, Vec<Value>)> {
    let mut out: Vec<(SqlType, Vec<Value>)> = types
        .iter()
        .map(|&t| (t, Vec::with_capacity(rows.len())))
        .collect();
    for row in rows {
        for (col, v) in out.iter_mut().zip(row) {
            col.1.push(v);
        }
    }
    out
}

fn sql_types<T: Mapped>(columns: &[usize]) -> Vec<SqlType> {
    columns
        .iter()
        .map(|&c| T::TABLE.columns[c].sql_type)
        .collect()
}

pub(crate) fn insert<T: Mapped>(conn: &Connection, new: &[Obj<T>]) -> Result<()> {
    let table = T::TABLE;
    let generated = table.generated_key();
    let (mut needs_key, mut has_key) = (Vec::new(), Vec::new());
    for obj in new {
        let d = obj.lock_data();
        if generated.is_some() && d.value.key().is_none() {
            needs_key.push(obj);
        } else {
            has_key.push(obj);
        }
    }
    let all: Vec<usize> = (0..table.columns.len()).collect();
    insert_group(conn, &has_key, all.clone(), None)?;
    if let Some(g) = generated {
        let columns = all.into_iter().filter(|&c| c != g).collect();
        insert_group(conn, &needs_key, columns, Some(g))?;
    }
    Ok(())
}

fn insert_group<T: Mapped>(
    conn: &Connection,
    objs: &[&Obj<T>],
    columns: Vec<usize>,
    returning: Option<usize>,
) -> Result<()> {
    if objs.is_empty() {
        return Ok(());
    }
    let dialect = conn.dialect();
    let rows_per_statement = if columns.is_empty() {
        1
    } else if dialect.supports_unnest() {
        objs.len()
    } else {
        (dialect.max_params() / columns.len()).max(1)
    };
    for chunk in objs.chunks(rows_per_statement) {
        let rows: Vec<Vec<Value>> = chunk
            .iter()
            .map(|o| {
                let d = o.lock_data();
                columns.iter().map(|&c| d.value.column_value(c)).collect()
            })
            .collect();
        let rows = if dialect.supports_unnest() && !columns.is_empty() {
            InsertRows::Unnest(arrays(&sql_types::<T>(&columns), rows))
        } else {
            InsertRows::Values(rows)
        };
        let statement = Statement::Insert(Insert {
            table: T::TABLE,
            columns: columns.clone(),
            rows,
            returning: returning.into_iter().collect(),
        });
        match returning {
            None => {
                conn.execute_statement(statement)?;
            }
            Some(_) => {
                let mut keys = Vec::with_capacity(chunk.len());
                conn.query_statement(statement, |row| {
                    keys.push(
                        row.value(0)
                            .map_err(|source| orm_core::error::Error::Decode {
                                table: T::TABLE.name.to_owned(),
                                column: T::TABLE.columns[returning.unwrap_or(0)].name.to_owned(),
                                source,
                            })?,
                    );
                    Ok(())
                })?;
                if keys.len() != chunk.len() {
                    return Err(Error::StaleData {
                        table: T::TABLE.name,
                        statement: "INSERT",
                        expected: chunk.len() as u64,
                        matched: keys.len() as u64,
                    });
                }
                keys.sort_by_key(|k| k.as_i64());
                for (obj, key) in chunk.iter().zip(keys) {
                    obj.lock_data().value.set_generated_key(key)?;
                }
            }
        }
    }
    Ok(())
}

fn expect_rows<T: Mapped>(statement: &'static str, expected: usize, matched: u64) -> Result<()> {
    if matched == expected as u64 {
        Ok(())
    } else {
        Err(Error::StaleData {
            table: T::TABLE.name,
            statement,
            expected: expected as u64,
            matched,
        })
    }
}

pub(crate) fn update<T: Mapped>(conn: &Connection, dirty: &[Obj<T>]) -> Result<()> {
    let table = T::TABLE;
    let matched: Vec<usize> = table.primary_key.to_vec();
    // Objects that changed the same columns share a statement; groups keep first-seen order.
    let mut groups: Vec<(ColumnSet, Vec<Vec<Value>>)> = Vec::new();
    let mut index: HashMap<ColumnSet, usize> = HashMap::new();
    for obj in dirty {
        let d = obj.lock_data();
        if d.status != Status::Persistent || d.changed.is_empty() {
            continue;
        }
        let row: Vec<Value> = d
            .changed
            .iter()
            .chain(matched.iter().copied())
            .map(|c| d.value.column_value(c))
            .collect();
        let g = *index.entry(d.changed.clone()).or_insert_with(|| {
            groups.push((d.changed.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(row);
    }
    for (set, rows) in groups {
        let set: Vec<usize> = set.iter().collect();
        if conn.dialect().supports_unnest() {
            let types: Vec<SqlType> = sql_types::<T>(&set)
                .into_iter()
                .chain(sql_types::<T>(&matched))
                .collect();
            let n = rows.len();
            let statement = Statement::Update(Update {
                table,
                set: set.clone(),
                matched: matched.clone(),
                rows: UpdateRows::Unnest(arrays(&types, rows)),
            });
            expect_rows::<T>("UPDATE", n, conn.execute_statement(statement)?)?;
        } else {
            for row in rows {
                let statement = Statement::Update(Update {
                    table,
                    set: set.clone(),
                    matched: matched.clone(),
                    rows: UpdateRows::Single(row),
                });
                expect_rows::<T>("UPDATE", 1, conn.execute_statement(statement)?)?;
            }
        }
    }
    Ok(())
}

pub(crate) fn delete<T: Mapped>(conn: &Connection, deleted: &[Obj<T>]) -> Result<()> {
    if deleted.is_empty() {
        return Ok(());
    }
    let table = T::TABLE;
    let matched: Vec<usize> = table.primary_key.to_vec();
    let keys: Vec<Vec<Value>> = deleted
        .iter()
        .filter_map(|o| o.lock_data().value.key())
        .map(|k| k.values())
        .collect();
    let dialect = conn.dialect();
    if dialect.supports_unnest() {
        let n = keys.len();
        let statement = Statement::Delete(Delete {
            table,
            matched: matched.clone(),
            rows: DeleteRows::Unnest(arrays(&sql_types::<T>(&matched), keys)),
        });
        return expect_rows::<T>("DELETE", n, conn.execute_statement(statement)?);
    }
    for chunk in keys.chunks((dialect.max_params() / matched.len().max(1)).max(1)) {
        let statement = Statement::Delete(Delete {
            table,
            matched: matched.clone(),
            rows: DeleteRows::Values(chunk.to_vec()),
        });
        expect_rows::<T>("DELETE", chunk.len(), conn.execute_statement(statement)?)?;
    }
    Ok(())
}
