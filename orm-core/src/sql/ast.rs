//! The statement tree. Building a statement never touches a connection; rendering never
//! decides what a statement means.

use crate::schema::Table;
use crate::value::{SqlType, Value};

/// A scalar SQL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A qualified column reference.
    Column {
        /// The table name.
        table: &'static str,
        /// The column name.
        column: &'static str,
    },
    /// A bound parameter.
    Param(Value),
    /// The literal `NULL`.
    Null,
    /// A binary comparison.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// All of the conditions.
    And(Vec<Expr>),
    /// Any of the conditions.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// `expr IS NULL` (or `IS NOT NULL` when `negated`).
    IsNull {
        /// The tested expression.
        expr: Box<Expr>,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `expr IN (a, b, ..)` (or `NOT IN`); an empty list is false (`NOT IN`: true).
    InList {
        /// The tested expression.
        expr: Box<Expr>,
        /// The candidates.
        list: Vec<Expr>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `expr IN (values)` for a long list of values of one type: one array parameter on
    /// PostgreSQL (`IN (SELECT unnest($1::int8[]))`, one statement text whatever the count,
    /// and a plan that stays a hash or index lookup), a parameter list on SQLite.
    InArray {
        /// The tested expression.
        expr: Box<Expr>,
        /// The values' SQL type.
        sql_type: SqlType,
        /// The candidates (NULLs never match).
        values: Vec<Value>,
    },
    /// `expr IN (SELECT ..)`.
    InSelect {
        /// The tested expression.
        expr: Box<Expr>,
        /// The subquery, selecting one column.
        select: Box<Select>,
    },
    /// `expr BETWEEN low AND high`.
    Between {
        /// The tested expression.
        expr: Box<Expr>,
        /// Lower bound (inclusive).
        low: Box<Expr>,
        /// Upper bound (inclusive).
        high: Box<Expr>,
    },
    /// `expr LIKE pattern`, case-sensitive on both dialects; `case_insensitive` compares
    /// lower-cased text (PostgreSQL's ILIKE semantics).
    Like {
        /// The tested text.
        expr: Box<Expr>,
        /// The pattern (`%` and `_` wildcards).
        pattern: Box<Expr>,
        /// ILIKE.
        case_insensitive: bool,
    },
    /// An aggregate: `COUNT(*)` when `arg` is `None`.
    Aggregate {
        /// The function.
        func: Aggregate,
        /// Its argument.
        arg: Option<Box<Expr>>,
    },
    /// `CAST(expr AS type)`.
    Cast(Box<Expr>, SqlType),
    /// `EXISTS (SELECT ..)`.
    Exists(Box<Select>),
    /// `(SELECT ..)` as a value.
    Scalar(Box<Select>),
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// `COUNT`
    Count,
    /// `SUM`
    Sum,
    /// `MIN`
    Min,
    /// `MAX`
    Max,
    /// `AVG`
    Avg,
}

/// Where NULLs sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    /// `NULLS FIRST`
    First,
    /// `NULLS LAST`
    Last,
}

/// A joined table.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// The table joined.
    pub table: &'static Table,
    /// The name the table goes by in the statement (`JOIN t AS alias`), when it may appear
    /// twice.
    pub alias: Option<&'static str>,
    /// LEFT OUTER JOIN instead of INNER JOIN.
    pub outer: bool,
    /// The ON condition.
    pub on: Expr,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl BinOp {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            BinOp::Eq => "=",
            BinOp::Ne => "<>",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }
}

/// One ORDER BY term.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    /// The expression ordered by.
    pub expr: Expr,
    /// DESC instead of ASC.
    pub descending: bool,
    /// Where NULLs sort, when not the dialect's default.
    pub nulls: Option<Nulls>,
}

/// `SELECT [DISTINCT] columns FROM table [JOIN ..] WHERE .. GROUP BY .. HAVING .. ORDER BY ..
/// LIMIT .. OFFSET ..`
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// The first table of the FROM clause.
    pub table: &'static Table,
    /// The selected expressions.
    pub columns: Vec<Expr>,
    /// SELECT DISTINCT.
    pub distinct: bool,
    /// Joined tables, in order.
    pub joins: Vec<Join>,
    /// The WHERE condition.
    pub filter: Option<Expr>,
    /// GROUP BY terms.
    pub group_by: Vec<Expr>,
    /// The HAVING condition.
    pub having: Option<Expr>,
    /// ORDER BY terms.
    pub order_by: Vec<OrderBy>,
    /// LIMIT.
    pub limit: Option<u64>,
    /// OFFSET.
    pub offset: Option<u64>,
}

impl Select {
    /// `SELECT <every column of table> FROM table`.
    pub fn of(table: &'static Table) -> Select {
        Select {
            table,
            columns: Select::all_columns(table),
            distinct: false,
            joins: Vec::new(),
            filter: None,
            group_by: Vec::new(),
            having: None,
            order_by: Vec::new(),
            limit: None,
            offset: None,
        }
    }

    /// Every column of `table`, qualified, in order.
    pub fn all_columns(table: &'static Table) -> Vec<Expr> {
        table
            .columns
            .iter()
            .map(|c| Expr::Column {
                table: table.name,
                column: c.name,
            })
            .collect()
    }

    /// Adds a condition, ANDed with the present one.
    pub fn and_where(&mut self, e: Expr) {
        self.filter = Some(match self.filter.take() {
            None => e,
            Some(Expr::And(mut items)) => {
                items.push(e);
                Expr::And(items)
            }
            Some(prev) => Expr::And(vec![prev, e]),
        });
    }
}

/// Where the rows of an INSERT come from.
#[derive(Debug, Clone)]
pub enum InsertRows {
    /// A multi-row VALUES list (one parameter per value).
    Values(Vec<Vec<Value>>),
    /// A multi-row VALUES list of this many rows of placeholders, whose parameters are bound
    /// when the statement runs ([`Prepared`](crate::engine::Prepared)): one text, so one
    /// prepared statement, for every batch of that many rows.
    Unbound(usize),
    /// One array parameter per column, expanded by `unnest` (PostgreSQL).
    Unnest(Vec<(SqlType, Vec<Value>)>),
    /// As [`Unnest`](Self::Unnest), with one placeholder per column (typed as an array of the
    /// column's type), its array bound when the statement runs
    /// ([`Prepared`](crate::engine::Prepared)).
    UnboundUnnest,
}

/// `INSERT INTO table (columns) <rows> RETURNING <returning>`
#[derive(Debug, Clone)]
pub struct Insert {
    /// The target table.
    pub table: &'static Table,
    /// Positions of the inserted columns.
    pub columns: Vec<usize>,
    /// The rows.
    pub rows: InsertRows,
    /// Positions of the columns returned.
    pub returning: Vec<usize>,
}

/// `UPDATE table SET <set> WHERE <key> = .. [AND version = ..]`, for one row or (with
/// `unnest`) many rows that change the same columns.
#[derive(Debug, Clone)]
pub struct Update {
    /// The target table.
    pub table: &'static Table,
    /// Positions of the columns set.
    pub set: Vec<usize>,
    /// Positions of the columns matched in WHERE (the primary key, then any version column).
    pub matched: Vec<usize>,
    /// The rows: for each, values of `set` then of `matched`.
    pub rows: UpdateRows,
}

/// The rows of an [`Update`].
#[derive(Debug, Clone)]
pub enum UpdateRows {
    /// One row of placeholders, for the values of `set` then of `matched`, bound when the
    /// statement runs ([`Prepared`](crate::engine::Prepared)).
    Unbound,
    /// Many rows as arrays expanded by `unnest` (PostgreSQL): one placeholder per column of
    /// `set` then `matched` (typed as an array of the column's type), its array bound when the
    /// statement runs ([`Prepared`](crate::engine::Prepared)).
    UnboundUnnest,
}

/// `DELETE FROM table WHERE (key) IN (...)`
#[derive(Debug, Clone)]
pub struct Delete {
    /// The target table.
    pub table: &'static Table,
    /// Positions of the matched columns (the primary key).
    pub matched: Vec<usize>,
    /// The keys of the rows deleted.
    pub rows: DeleteRows,
}

/// The rows of a [`Delete`].
#[derive(Debug, Clone)]
pub enum DeleteRows {
    /// Key tuples listed inline as parameters.
    Values(Vec<Vec<Value>>),
    /// Key columns as arrays (PostgreSQL).
    Unnest(Vec<(SqlType, Vec<Value>)>),
}

/// `UPDATE table SET c = $1, .. [WHERE ..] [RETURNING ..]`: a bulk update by criteria.
#[derive(Debug, Clone)]
pub struct UpdateWhere {
    /// The target table.
    pub table: &'static Table,
    /// The columns set and their new values.
    pub set: Vec<(usize, Value)>,
    /// The WHERE condition; every row when `None`.
    pub filter: Option<Expr>,
    /// Positions of the columns returned.
    pub returning: Vec<usize>,
}

/// `DELETE FROM table [WHERE ..] [RETURNING ..]`: a bulk delete by criteria.
#[derive(Debug, Clone)]
pub struct DeleteWhere {
    /// The target table.
    pub table: &'static Table,
    /// The WHERE condition; every row when `None`.
    pub filter: Option<Expr>,
    /// Positions of the columns returned.
    pub returning: Vec<usize>,
}

/// Any statement the ORM issues.
#[derive(Debug, Clone)]
pub enum Statement {
    /// A SELECT.
    Select(Select),
    /// An INSERT.
    Insert(Insert),
    /// An UPDATE.
    Update(Update),
    /// A DELETE.
    Delete(Delete),
    /// A bulk UPDATE by criteria.
    UpdateWhere(UpdateWhere),
    /// A bulk DELETE by criteria.
    DeleteWhere(DeleteWhere),
    /// `CREATE TABLE IF NOT EXISTS`.
    CreateTable(&'static Table),
    /// `DROP TABLE IF EXISTS`.
    DropTable(&'static Table),
}
