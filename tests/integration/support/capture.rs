//! Capturing the SQL the engine executes, per thread.
//!
//! The engine logs every statement (including `BEGIN`, `COMMIT` and `ROLLBACK`) as a `tracing`
//! event with target `orm::sql`, the SQL text as its message and the bound values in a
//! `params` field. [`capture`] installs a subscriber for the current thread only
//! (`tracing::subscriber::with_default`), so tests running in parallel never see each other's
//! statements, and statements run on other threads are not captured.

use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// The `tracing` target under which the engine logs statements.
pub const SQL_TARGET: &str = "orm::sql";

/// One statement logged by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlEvent {
    /// The SQL text, exactly as sent to the database.
    pub sql: String,
    /// The `Debug` rendering of the bound parameters (`[]` for none).
    pub params: String,
    /// The level it was logged at: DEBUG, or INFO for an engine built with `echo(true)`.
    pub level: Level,
}

/// Runs `f` and returns its result with the SQL statements executed on this thread meanwhile.
///
/// A nested `capture` takes the statements of its own closure; the outer one does not see
/// them.
///
/// # Examples
///
/// ```ignore
/// let (rows, sql) = capture(|| conn.execute("DELETE FROM t", &[]));
/// assert_eq!(sql, ["DELETE FROM t"]);
/// ```
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let (r, events) = capture_events(f);
    (r, events.into_iter().map(|e| e.sql).collect())
}

/// Like [`capture`], with the parameters and level of every statement.
pub fn capture_events<R>(f: impl FnOnce() -> R) -> (R, Vec<SqlEvent>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(CaptureLayer {
        events: Arc::clone(&events),
    });
    let r = tracing::subscriber::with_default(subscriber, f);
    let events = std::mem::take(&mut *events.lock().unwrap_or_else(|p| p.into_inner()));
    (r, events)
}

/// Whether `sql` only controls the transaction: `BEGIN`, `COMMIT`, `ROLLBACK` (any case,
/// with optional `TRANSACTION`/`WORK`), not savepoints.
pub fn is_transaction_control(sql: &str) -> bool {
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        words.as_slice(),
        ["BEGIN" | "COMMIT" | "ROLLBACK" | "END"]
            | [
                "BEGIN" | "COMMIT" | "ROLLBACK" | "END",
                "TRANSACTION" | "WORK"
            ]
            | ["START", "TRANSACTION"]
    )
}

/// The statements without `BEGIN`/`COMMIT`/`ROLLBACK`.
pub fn without_transaction_control(statements: &[String]) -> Vec<String> {
    statements
        .iter()
        .filter(|s| !is_transaction_control(s))
        .cloned()
        .collect()
}

/// Whether `sql` starts with `prefix`, ignoring leading whitespace and ASCII case.
pub fn starts_with(sql: &str, prefix: &str) -> bool {
    let sql = sql.trim_start().as_bytes();
    sql.len() >= prefix.len() && sql[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// How many statements start with `prefix` (ignoring leading whitespace and ASCII case):
/// `count_prefix(&sql, "INSERT")`.
pub fn count_prefix(statements: &[String], prefix: &str) -> usize {
    statements.iter().filter(|s| starts_with(s, prefix)).count()
}

/// The statements that start with `prefix` (ignoring leading whitespace and ASCII case).
pub fn with_prefix(statements: &[String], prefix: &str) -> Vec<String> {
    statements
        .iter()
        .filter(|s| starts_with(s, prefix))
        .cloned()
        .collect()
}

struct CaptureLayer {
    events: Arc<Mutex<Vec<SqlEvent>>>,
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != SQL_TARGET {
            return;
        }
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let captured = SqlEvent {
            sql: visitor.message,
            params: visitor.params.unwrap_or_else(|| "[]".to_owned()),
            level: *meta.level(),
        };
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(captured);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    params: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "params" => self.params = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            // The message is `format_args!("{sql}")`, whose Debug form is the text itself.
            "message" => self.message = format!("{value:?}"),
            "params" => self.params = Some(format!("{value:?}")),
            _ => {}
        }
    }
}
