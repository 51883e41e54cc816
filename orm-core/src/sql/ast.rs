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
}

/// `SELECT <all columns of table> FROM table WHERE .. ORDER BY .. LIMIT .. OFFSET ..`
#[derive(Debug, Clone)]
pub struct Select {
    /// The table selected from; all its columns are selected, in order.
    pub table: &'static Table,
    /// The WHERE condition.
    pub filter: Option<Expr>,
    /// ORDER BY terms.
    pub order_by: Vec<OrderBy>,
    /// LIMIT.
    pub limit: Option<u64>,
    /// OFFSET.
    pub offset: Option<u64>,
}

/// Where the rows of an INSERT come from.
#[derive(Debug, Clone)]
pub enum InsertRows {
    /// A multi-row VALUES list (one parameter per value).
    Values(Vec<Vec<Value>>),
    /// One array parameter per column, expanded by `unnest` (PostgreSQL).
    Unnest(Vec<(SqlType, Vec<Value>)>),
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
    /// One row: values of `set` then of `matched`.
    Single(Vec<Value>),
    /// Many rows as arrays, one per column of `set` then `matched` (PostgreSQL).
    Unnest(Vec<(SqlType, Vec<Value>)>),
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
