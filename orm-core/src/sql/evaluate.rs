//! Evaluating a WHERE condition in Rust against a row held in memory: how a bulk UPDATE or
//! DELETE finds the objects of the identity map it affected without asking the database
//! (SQLAlchemy's `synchronize_session="evaluate"`).

use std::cmp::Ordering;

use crate::schema::Table;
use crate::sql::ast::{BinOp, Expr};
use crate::value::{SqlType, Value};

/// Whether `expr` over `table` evaluates in Rust exactly as both databases would.
///
/// Comparisons must be between a column of `table` and a parameter. Ordering comparisons on
/// text or bytes are not evaluable: PostgreSQL orders text by collation.
///
/// # Examples
///
/// ```
/// use orm_core::schema::{ColumnDef, Table};
/// use orm_core::sql::{ast::*, evaluate::{evaluable, evaluate}};
/// use orm_core::value::{SqlType, Value};
/// static T: Table = Table { name: "t", columns: &[
///     ColumnDef { name: "age", field: "age", sql_type: SqlType::Integer, nullable: false, generated: false }],
///     primary_key: &[0], foreign_keys: &[], version: None };
/// let age_under_18 = Expr::Binary { op: BinOp::Lt,
///     left: Box::new(Expr::Column { table: "t", column: "age" }),
///     right: Box::new(Expr::Param(Value::I32(18))) };
/// assert!(evaluable(&age_under_18, &T));
/// assert_eq!(evaluate(&age_under_18, &T, &|_| Value::I32(12)), Some(true));
/// assert_eq!(evaluate(&age_under_18, &T, &|_| Value::Null), None); // unknown
/// ```
pub fn evaluable(expr: &Expr, table: &Table) -> bool {
    match expr {
        Expr::And(items) | Expr::Or(items) => items.iter().all(|e| evaluable(e, table)),
        Expr::Not(inner) => evaluable(inner, table),
        Expr::Binary { op, left, right } => match (left.as_ref(), right.as_ref()) {
            (Expr::Column { table: t, column }, Expr::Param(_)) if *t == table.name => {
                let Some(c) = table.column_index(column) else {
                    return false;
                };
                let ordered_text =
                    matches!(table.columns[c].sql_type, SqlType::Text | SqlType::Blob);
                matches!(op, BinOp::Eq | BinOp::Ne) || !ordered_text
            }
            _ => false,
        },
        Expr::IsNull { expr, .. } => {
            matches!(expr.as_ref(), Expr::Column { table: t, column } if *t == table.name && table.column_index(column).is_some())
        }
        Expr::InList { expr, list, .. } => {
            list.iter().all(|item| matches!(item, Expr::Param(_)))
                && list.iter().all(|item| {
                    evaluable(
                        &Expr::Binary {
                            op: BinOp::Eq,
                            left: expr.clone(),
                            right: Box::new(item.clone()),
                        },
                        table,
                    )
                })
        }
        // LIKE patterns, aggregates, casts and subqueries are left to the database.
        _ => false,
    }
}

/// Evaluates `expr` with SQL's three-valued logic: `None` is unknown (a NULL was compared).
/// `value_of(position)` gives the row's value of a column of `table`. Call only when
/// [`evaluable`] holds.
pub fn evaluate(expr: &Expr, table: &Table, value_of: &dyn Fn(usize) -> Value) -> Option<bool> {
    match expr {
        Expr::And(items) => {
            let mut unknown = false;
            for item in items {
                match evaluate(item, table, value_of) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            (!unknown).then_some(true)
        }
        Expr::Or(items) => {
            let mut unknown = false;
            for item in items {
                match evaluate(item, table, value_of) {
                    Some(true) => return Some(true),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            (!unknown).then_some(false)
        }
        Expr::Not(inner) => evaluate(inner, table, value_of).map(|b| !b),
        Expr::Binary { op, left, right } => {
            let (Expr::Column { column, .. }, Expr::Param(param)) = (left.as_ref(), right.as_ref())
            else {
                return None;
            };
            let value = value_of(table.column_index(column)?);
            if *param == Value::Null && matches!(op, BinOp::Eq | BinOp::Ne) {
                // Rendered as IS [NOT] NULL.
                return Some((value == Value::Null) == (*op == BinOp::Eq));
            }
            let ordering = compare(&value, param)?;
            Some(match op {
                BinOp::Eq => ordering == Ordering::Equal,
                BinOp::Ne => ordering != Ordering::Equal,
                BinOp::Lt => ordering == Ordering::Less,
                BinOp::Le => ordering != Ordering::Greater,
                BinOp::Gt => ordering == Ordering::Greater,
                BinOp::Ge => ordering != Ordering::Less,
            })
        }
        Expr::IsNull { expr, negated } => {
            let Expr::Column { column, .. } = expr.as_ref() else {
                return None;
            };
            let is_null = value_of(table.column_index(column)?) == Value::Null;
            Some(is_null != *negated)
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            // x IN (a, b) is x = a OR x = b, with the same NULL logic.
            let any = evaluate(
                &Expr::Or(
                    list.iter()
                        .map(|item| Expr::Binary {
                            op: BinOp::Eq,
                            left: expr.clone(),
                            right: Box::new(item.clone()),
                        })
                        .collect(),
                ),
                table,
                value_of,
            );
            if *negated {
                any.map(|b| !b)
            } else {
                any
            }
        }
        _ => None,
    }
}

/// How two values compare, or `None` when either is NULL or they are not comparable.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Null, _) | (_, Null) => None,
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Text(x), Text(y)) => Some(x.cmp(y)),
        (Bytes(x), Bytes(y)) => Some(x.cmp(y)),
        _ => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => as_f64(a)?.partial_cmp(&as_f64(b)?),
        },
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(f) => Some(f.into()),
        Value::F64(f) => Some(f),
        _ => v.as_i64().map(|i| i as f64),
    }
}
