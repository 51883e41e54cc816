//! Turns a [`Statement`] into SQL text and its bound parameters for one dialect.

use crate::dialect::Dialect;
use crate::schema::Table;
use crate::sql::ast::{
    Aggregate, BinOp, Delete, DeleteRows, DeleteWhere, Expr, Insert, InsertRows, Nulls, OrderBy,
    Select, Statement, Update, UpdateRows, UpdateWhere,
};
use crate::value::{SqlType, Value};

/// SQL text with its parameters, ready to execute.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The SQL text; values appear only as placeholders.
    pub sql: String,
    /// The bound parameters, in placeholder order.
    pub params: Vec<Value>,
}

/// Renders a statement.
///
/// # Examples
///
/// ```
/// use orm_core::dialect::Dialect;
/// use orm_core::sql::{ast::*, render::render};
/// use orm_core::value::Value;
/// let e = Expr::Binary { op: BinOp::Eq,
///     left: Box::new(Expr::Column { table: "users", column: "name" }),
///     right: Box::new(Expr::Param(Value::Text("ed'; --".into()))) };
/// let mut sql = String::new();
/// let mut params = Vec::new();
/// orm_core::sql::render::expr_into(Dialect::Postgres, &e, &mut sql, &mut params);
/// assert_eq!(sql, "\"users\".\"name\" = $1");
/// assert_eq!(params, vec![Value::Text("ed'; --".into())]);
/// ```
pub fn render(dialect: Dialect, statement: Statement) -> Rendered {
    let mut r = Renderer {
        dialect,
        sql: String::with_capacity(128),
        params: Vec::new(),
        unbound: 0,
    };
    match statement {
        Statement::Select(s) => r.select(&s),
        Statement::Insert(i) => r.insert(i),
        Statement::Update(u) => r.update(u),
        Statement::Delete(d) => r.delete(d),
        Statement::UpdateWhere(u) => r.update_where(u),
        Statement::DeleteWhere(d) => r.delete_where(d),
        Statement::CreateTable(t) => r.create_table(t),
        Statement::DropTable(t) => {
            r.sql.push_str("DROP TABLE IF EXISTS ");
            r.ident(t.name);
        }
    }
    Rendered {
        sql: r.sql,
        params: r.params,
    }
}

/// Renders one expression, appending to `sql` and `params`.
pub fn expr_into(dialect: Dialect, e: &Expr, sql: &mut String, params: &mut Vec<Value>) {
    let mut r = Renderer {
        dialect,
        sql: std::mem::take(sql),
        params: std::mem::take(params),
        unbound: 0,
    };
    r.expr(e);
    *sql = r.sql;
    *params = r.params;
}

/// The array parameters of `unnest` for `columns` of `table`, bound when the statement runs.
fn unbound<'a>(
    table: &'a Table,
    columns: &'a [usize],
) -> impl ExactSizeIterator<Item = (SqlType, Option<Vec<Value>>)> + 'a {
    columns.iter().map(|&c| (table.columns[c].sql_type, None))
}

struct Renderer {
    dialect: Dialect,
    sql: String,
    params: Vec<Value>,
    /// Placeholders rendered without a value (numbered after `params`).
    unbound: usize,
}

impl Renderer {
    fn ident(&mut self, name: &str) {
        self.dialect.quote_into(&mut self.sql, name);
    }

    fn param(&mut self, v: Value) {
        self.params.push(v);
        self.dialect
            .placeholder_into(&mut self.sql, self.params.len() + self.unbound);
    }

    /// A placeholder whose value is bound when the statement runs.
    fn placeholder(&mut self) {
        self.unbound += 1;
        self.dialect
            .placeholder_into(&mut self.sql, self.params.len() + self.unbound);
    }

    fn column_list(&mut self, table: &Table, columns: &[usize]) {
        for (i, &c) in columns.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.ident(table.columns[c].name);
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Column { table, column } => {
                self.ident(table);
                self.sql.push('.');
                self.ident(column);
            }
            Expr::Param(v) => self.param(v.clone()),
            Expr::Null => self.sql.push_str("NULL"),
            Expr::Binary {
                op: op @ (BinOp::Eq | BinOp::Ne),
                left,
                right,
            } if matches!(right.as_ref(), Expr::Param(Value::Null)) => {
                // `= NULL` is never true: comparing with None means IS [NOT] NULL.
                self.expr(left);
                self.sql.push_str(if *op == BinOp::Eq {
                    " IS NULL"
                } else {
                    " IS NOT NULL"
                });
            }
            Expr::Binary { op, left, right } => {
                self.expr(left);
                self.sql.push(' ');
                self.sql.push_str(op.sql());
                self.sql.push(' ');
                self.expr(right);
            }
            Expr::And(items) | Expr::Or(items) => {
                let sep = if matches!(e, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                self.sql.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(sep);
                    }
                    self.expr(item);
                }
                self.sql.push(')');
            }
            Expr::Not(inner) => {
                self.sql.push_str("NOT (");
                self.expr(inner);
                self.sql.push(')');
            }
            Expr::IsNull { expr, negated } => {
                self.expr(expr);
                self.sql
                    .push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                if list.is_empty() {
                    // `IN ()` is not SQL; an empty list matches nothing.
                    self.sql.push_str(if *negated { "1 = 1" } else { "1 = 0" });
                    return;
                }
                self.expr(expr);
                self.sql
                    .push_str(if *negated { " NOT IN (" } else { " IN (" });
                for (i, item) in list.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(", ");
                    }
                    self.expr(item);
                }
                self.sql.push(')');
            }
            Expr::InArray {
                expr,
                sql_type,
                values,
            } => {
                if values.is_empty() {
                    self.sql.push_str("1 = 0");
                    return;
                }
                self.expr(expr);
                if self.dialect == Dialect::Postgres {
                    self.sql.push_str(" IN (SELECT unnest(");
                    self.param(Value::Array(*sql_type, values.clone()));
                    self.sql.push_str("::");
                    self.sql.push_str(Dialect::array_type(*sql_type));
                    self.sql.push_str("))");
                } else {
                    self.sql.push_str(" IN (");
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            self.sql.push_str(", ");
                        }
                        self.param(v.clone());
                    }
                    self.sql.push(')');
                }
            }
            Expr::InSelect { expr, select } => {
                self.expr(expr);
                self.sql.push_str(" IN (");
                self.select(select);
                self.sql.push(')');
            }
            Expr::Between { expr, low, high } => {
                self.expr(expr);
                self.sql.push_str(" BETWEEN ");
                self.expr(low);
                self.sql.push_str(" AND ");
                self.expr(high);
            }
            Expr::Like {
                expr,
                pattern,
                case_insensitive,
            } => match (self.dialect, case_insensitive) {
                (_, false) => {
                    // SQLite connections run with `case_sensitive_like = ON`, as PostgreSQL.
                    self.expr(expr);
                    self.sql.push_str(" LIKE ");
                    self.expr(pattern);
                }
                (Dialect::Postgres, true) => {
                    self.expr(expr);
                    self.sql.push_str(" ILIKE ");
                    self.expr(pattern);
                }
                (Dialect::Sqlite, true) => {
                    self.sql.push_str("lower(");
                    self.expr(expr);
                    self.sql.push_str(") LIKE lower(");
                    self.expr(pattern);
                    self.sql.push(')');
                }
            },
            Expr::Aggregate { func, arg } => {
                self.sql.push_str(match func {
                    Aggregate::Count => "count(",
                    Aggregate::Sum => "sum(",
                    Aggregate::Min => "min(",
                    Aggregate::Max => "max(",
                    Aggregate::Avg => "avg(",
                });
                match arg {
                    Some(a) => self.expr(a),
                    None => self.sql.push('*'),
                }
                self.sql.push(')');
            }
            Expr::Cast(inner, ty) => {
                self.sql.push_str("CAST(");
                self.expr(inner);
                self.sql.push_str(" AS ");
                self.sql.push_str(self.dialect.type_name(*ty, false));
                self.sql.push(')');
            }
            Expr::Exists(select) => {
                self.sql.push_str("EXISTS (");
                self.select(select);
                self.sql.push(')');
            }
            Expr::Scalar(select) => {
                self.sql.push('(');
                self.select(select);
                self.sql.push(')');
            }
        }
    }

    fn select(&mut self, s: &Select) {
        self.sql.push_str(if s.distinct {
            "SELECT DISTINCT "
        } else {
            "SELECT "
        });
        for (i, c) in s.columns.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.expr(c);
        }
        self.sql.push_str(" FROM ");
        self.ident(s.table.name);
        for j in &s.joins {
            self.sql.push_str(if j.outer {
                " LEFT OUTER JOIN "
            } else {
                " JOIN "
            });
            self.ident(j.table.name);
            if let Some(alias) = j.alias {
                self.sql.push_str(" AS ");
                self.ident(alias);
            }
            self.sql.push_str(" ON ");
            self.expr(&j.on);
        }
        if let Some(f) = &s.filter {
            self.sql.push_str(" WHERE ");
            self.expr(f);
        }
        for (i, g) in s.group_by.iter().enumerate() {
            self.sql.push_str(if i == 0 { " GROUP BY " } else { ", " });
            self.expr(g);
        }
        if let Some(h) = &s.having {
            self.sql.push_str(" HAVING ");
            self.expr(h);
        }
        self.order_by(&s.order_by);
        use std::fmt::Write;
        if let Some(n) = s.limit {
            let _ = write!(self.sql, " LIMIT {n}");
        }
        if let Some(n) = s.offset {
            if s.limit.is_none() && self.dialect == Dialect::Sqlite {
                self.sql.push_str(" LIMIT -1");
            }
            let _ = write!(self.sql, " OFFSET {n}");
        }
    }

    fn order_by(&mut self, terms: &[OrderBy]) {
        for (i, o) in terms.iter().enumerate() {
            self.sql.push_str(if i == 0 { " ORDER BY " } else { ", " });
            self.expr(&o.expr);
            self.sql
                .push_str(if o.descending { " DESC" } else { " ASC" });
            match o.nulls {
                Some(Nulls::First) => self.sql.push_str(" NULLS FIRST"),
                Some(Nulls::Last) => self.sql.push_str(" NULLS LAST"),
                None => {}
            }
        }
    }

    /// `unnest($1::int8[], $2::text[]) WITH ORDINALITY AS alias(c1, c2, ord)`: one array
    /// parameter per entry of `arrays`, of its type, with its values or (`None`) a placeholder.
    fn unnest(
        &mut self,
        arrays: impl ExactSizeIterator<Item = (SqlType, Option<Vec<Value>>)>,
        alias: &str,
        names: &[&str],
    ) {
        self.sql.push_str("unnest(");
        let n = arrays.len();
        for (i, (ty, items)) in arrays.enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            match items {
                Some(items) => self.param(Value::Array(ty, items)),
                None => self.placeholder(),
            }
            self.sql.push_str("::");
            self.sql.push_str(Dialect::array_type(ty));
        }
        self.sql.push_str(") WITH ORDINALITY AS ");
        self.sql.push_str(alias);
        self.sql.push('(');
        for (i, name) in names.iter().take(n).enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.ident(name);
        }
        self.sql.push_str(", __ord)");
    }

    fn insert(&mut self, i: Insert) {
        self.sql.push_str("INSERT INTO ");
        self.ident(i.table.name);
        if i.columns.is_empty() {
            self.sql.push_str(" DEFAULT VALUES");
        } else {
            self.sql.push_str(" (");
            self.column_list(i.table, &i.columns);
            self.sql.push(')');
            match i.rows {
                InsertRows::Values(rows) => {
                    self.sql.push_str(" VALUES ");
                    for (ri, row) in rows.into_iter().enumerate() {
                        self.sql.push_str(if ri == 0 { "(" } else { ", (" });
                        for (vi, v) in row.into_iter().enumerate() {
                            if vi > 0 {
                                self.sql.push_str(", ");
                            }
                            self.param(v);
                        }
                        self.sql.push(')');
                    }
                }
                InsertRows::Unbound(rows) => {
                    self.sql.push_str(" VALUES ");
                    for ri in 0..rows {
                        self.sql.push_str(if ri == 0 { "(" } else { ", (" });
                        for vi in 0..i.columns.len() {
                            if vi > 0 {
                                self.sql.push_str(", ");
                            }
                            self.placeholder();
                        }
                        self.sql.push(')');
                    }
                }
                InsertRows::Unnest(_) | InsertRows::UnboundUnnest => {
                    // Rows are inserted in array order (ORDER BY the ordinality), so keys drawn
                    // from a sequence ascend in the order of the objects.
                    self.sql.push_str(" SELECT ");
                    self.qualified_list("__v", i.table, &i.columns);
                    self.sql.push_str(" FROM ");
                    let names: Vec<&str> =
                        i.columns.iter().map(|&c| i.table.columns[c].name).collect();
                    match i.rows {
                        InsertRows::Unnest(arrays) => self.unnest(
                            arrays.into_iter().map(|(ty, items)| (ty, Some(items))),
                            "__v",
                            &names,
                        ),
                        _ => self.unnest(unbound(i.table, &i.columns), "__v", &names),
                    }
                    self.sql.push_str(" ORDER BY __ord");
                }
            }
        }
        if !i.returning.is_empty() {
            self.sql.push_str(" RETURNING ");
            self.column_list(i.table, &i.returning);
        }
    }

    fn qualified_list(&mut self, alias: &str, table: &Table, columns: &[usize]) {
        for (i, &c) in columns.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push_str(alias);
            self.sql.push('.');
            self.ident(table.columns[c].name);
        }
    }

    fn update(&mut self, u: Update) {
        let t = u.table;
        self.sql.push_str("UPDATE ");
        self.ident(t.name);
        self.sql.push_str(" SET ");
        match u.rows {
            UpdateRows::Unbound => {
                for (i, &c) in u.set.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(", ");
                    }
                    self.ident(t.columns[c].name);
                    self.sql.push_str(" = ");
                    self.placeholder();
                }
                self.sql.push_str(" WHERE ");
                for (i, &c) in u.matched.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(" AND ");
                    }
                    self.ident(t.columns[c].name);
                    self.sql.push_str(" = ");
                    self.placeholder();
                }
            }
            UpdateRows::UnboundUnnest => {
                // Set columns are named __s0.., matched ones __m0.., so a column may be both
                // set and matched (the version column).
                let names: Vec<String> = (0..u.set.len())
                    .map(|i| format!("__s{i}"))
                    .chain((0..u.matched.len()).map(|i| format!("__m{i}")))
                    .collect();
                for (i, &c) in u.set.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(", ");
                    }
                    self.ident(t.columns[c].name);
                    self.sql.push_str(" = __v.");
                    self.ident(&names[i]);
                }
                self.sql.push_str(" FROM ");
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let columns: Vec<usize> = u.set.iter().chain(&u.matched).copied().collect();
                self.unnest(unbound(t, &columns), "__v", &refs);
                self.sql.push_str(" WHERE ");
                for (i, &c) in u.matched.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(" AND ");
                    }
                    self.ident(t.name);
                    self.sql.push('.');
                    self.ident(t.columns[c].name);
                    self.sql.push_str(" = __v.");
                    self.ident(&names[u.set.len() + i]);
                }
            }
        }
    }

    fn delete(&mut self, d: Delete) {
        let t = d.table;
        self.sql.push_str("DELETE FROM ");
        self.ident(t.name);
        self.sql.push_str(" WHERE (");
        self.column_list(t, &d.matched);
        self.sql.push_str(") IN (");
        match d.rows {
            DeleteRows::Values(rows) => {
                let single = d.matched.len() == 1;
                for (ri, row) in rows.into_iter().enumerate() {
                    if ri > 0 {
                        self.sql.push_str(", ");
                    }
                    if single {
                        row.into_iter().for_each(|v| self.param(v));
                    } else {
                        self.sql.push_str(if ri == 0 { "VALUES (" } else { "(" });
                        for (vi, v) in row.into_iter().enumerate() {
                            if vi > 0 {
                                self.sql.push_str(", ");
                            }
                            self.param(v);
                        }
                        self.sql.push(')');
                    }
                }
            }
            DeleteRows::Unnest(arrays) => {
                self.sql.push_str("SELECT ");
                let names: Vec<String> = (0..d.matched.len()).map(|i| format!("__k{i}")).collect();
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(", ");
                    }
                    self.sql.push_str("__v.");
                    self.ident(n);
                }
                self.sql.push_str(" FROM ");
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let arrays = arrays.into_iter().map(|(ty, items)| (ty, Some(items)));
                self.unnest(arrays, "__v", &refs);
            }
        }
        self.sql.push(')');
    }

    fn where_returning(&mut self, table: &Table, filter: Option<&Expr>, returning: &[usize]) {
        if let Some(f) = filter {
            self.sql.push_str(" WHERE ");
            self.expr(f);
        }
        if !returning.is_empty() {
            self.sql.push_str(" RETURNING ");
            self.column_list(table, returning);
        }
    }

    fn update_where(&mut self, u: UpdateWhere) {
        self.sql.push_str("UPDATE ");
        self.ident(u.table.name);
        self.sql.push_str(" SET ");
        for (i, (c, v)) in u.set.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.ident(u.table.columns[c].name);
            self.sql.push_str(" = ");
            self.param(v);
        }
        self.where_returning(u.table, u.filter.as_ref(), &u.returning);
    }

    fn delete_where(&mut self, d: DeleteWhere) {
        self.sql.push_str("DELETE FROM ");
        self.ident(d.table.name);
        self.where_returning(d.table, d.filter.as_ref(), &d.returning);
    }

    fn create_table(&mut self, t: &Table) {
        self.sql.push_str("CREATE TABLE IF NOT EXISTS ");
        self.ident(t.name);
        self.sql.push_str(" (");
        for (i, c) in t.columns.iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.ident(c.name);
            self.sql.push(' ');
            self.sql
                .push_str(self.dialect.type_name(c.sql_type, c.generated));
            if !c.nullable {
                self.sql.push_str(" NOT NULL");
            }
        }
        if !t.primary_key.is_empty() {
            self.sql.push_str(", PRIMARY KEY (");
            self.column_list(t, t.primary_key);
            self.sql.push(')');
        }
        for fk in t.foreign_keys {
            self.sql.push_str(", FOREIGN KEY (");
            self.column_list(t, fk.columns);
            self.sql.push_str(") REFERENCES ");
            self.ident(fk.ref_table);
            self.sql.push_str(" (");
            for (i, c) in fk.ref_columns.iter().enumerate() {
                if i > 0 {
                    self.sql.push_str(", ");
                }
                self.ident(c);
            }
            self.sql.push(')');
        }
        self.sql.push(')');
    }
}
