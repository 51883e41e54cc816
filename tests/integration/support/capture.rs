//! Capturing the SQL the engine executes, per thread.
//!
//! The engine logs every statement (including `BEGIN`, `COMMIT` and `ROLLBACK`) as a `tracing`
//! event with target `orm::sql`, the SQL text as its message and the bound values in a
//! `params` field. [`capture`] collects the events of the current thread only, so tests
//! running in parallel never see each other's statements, and statements run on other threads
//! are not captured.
//!
//! How: one process-wide subscriber (a `tracing_subscriber` registry with a small layer) is
//! installed as the global default on first use; its layer appends each `orm::sql` event to
//! the innermost active capture buffer of the emitting thread (a thread-local stack). A
//! global subscriber rather than a `with_default` per capture: `tracing` caches each
//! callsite's interest process-wide, and a callsite first hit on a thread without a
//! subscriber while another thread's scoped subscriber is the only one registered is cached
//! as "never", silently losing that thread's statements. If another global default was set
//! first, capture falls back to a scoped `with_default` subscriber.

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
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

thread_local! {
    /// The buffers of the captures active on this thread, innermost last.
    static BUFFERS: RefCell<Vec<Vec<SqlEvent>>> = const { RefCell::new(Vec::new()) };
}

/// Whether the process-wide capture subscriber is the global default.
static GLOBAL: OnceLock<bool> = OnceLock::new();

/// Installs the process-wide capture subscriber (once); false when another global default
/// was set first.
pub fn install() -> bool {
    *GLOBAL.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(CaptureLayer);
        tracing::subscriber::set_global_default(subscriber).is_ok()
    })
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
    /// Pops this capture's buffer, also when `f` panics.
    struct Active;
    impl Drop for Active {
        fn drop(&mut self) {
            BUFFERS.with(|b| b.borrow_mut().pop());
        }
    }

    let global = install();
    // Recompute the cached interest of every callsite now that a subscriber wants `orm::sql`
    // events: undoes a "never" cached by a registration that raced with the installation.
    tracing::callsite::rebuild_interest_cache();
    BUFFERS.with(|b| b.borrow_mut().push(Vec::new()));
    let active = Active;
    let r = if global {
        f()
    } else {
        tracing::subscriber::with_default(tracing_subscriber::registry().with(CaptureLayer), f)
    };
    let events =
        BUFFERS.with(|b| std::mem::take(b.borrow_mut().last_mut().expect("this capture's buffer")));
    drop(active);
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

/// Appends `orm::sql` events to the innermost capture buffer of the emitting thread.
struct CaptureLayer;

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target() == SQL_TARGET {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.target() == SQL_TARGET
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != SQL_TARGET {
            return;
        }
        BUFFERS.with(|buffers| {
            let mut buffers = buffers.borrow_mut();
            let Some(buffer) = buffers.last_mut() else {
                return;
            };
            let mut visitor = Fields::default();
            event.record(&mut visitor);
            buffer.push(SqlEvent {
                sql: visitor.message,
                params: visitor.params.unwrap_or_else(|| "[]".to_owned()),
                level: *meta.level(),
            });
        });
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

/// `VERB table` of each statement, without transaction control: `INSERT orders`,
/// `SELECT customers` (the first table after FROM).
pub fn shape(statements: &[String]) -> Vec<String> {
    without_transaction_control(statements)
        .iter()
        .map(|sql| {
            let words: Vec<&str> = sql.split_whitespace().collect();
            let table = match words[0] {
                "INSERT" | "DELETE" => words[2],
                "UPDATE" => words[1],
                _ => words
                    .iter()
                    .position(|w| *w == "FROM")
                    .map_or("?", |i| words[i + 1]),
            };
            format!("{} {}", words[0], table.trim_matches('"'))
        })
        .collect()
}
