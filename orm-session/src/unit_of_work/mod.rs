//! The unit of work: turns the changes a session accumulated into statements.
//!
//! [`plan`] orders the tables by foreign-key dependency; [`execute`] builds the batched
//! statements of one table. A flush runs INSERTs and UPDATEs parents-first, then DELETEs
//! children-first, all on the session's transaction.

pub(crate) mod execute;
pub(crate) mod plan;

use orm_core::engine::Connection;

use crate::error::{Error, Result};
use crate::identity_map::AnyStore;

/// Runs every statement of a flush, in dependency order. Stops at the first error; the caller
/// rolls the transaction back.
pub(crate) fn run(stores: &mut [Box<dyn AnyStore>], conn: &Connection) -> Result<()> {
    let order = plan::order(stores);
    for &i in &order {
        stores[i]
            .flush_inserts(conn)
            .map_err(|e| in_table(stores[i].as_ref(), e))?;
    }
    for &i in &order {
        stores[i]
            .flush_updates(conn)
            .map_err(|e| in_table(stores[i].as_ref(), e))?;
    }
    for &i in order.iter().rev() {
        stores[i]
            .flush_deletes(conn)
            .map_err(|e| in_table(stores[i].as_ref(), e))?;
    }
    Ok(())
}

/// Names the table whose statement failed (SQLite's messages often do not).
fn in_table(store: &dyn AnyStore, e: Error) -> Error {
    match e {
        Error::Core(cause) => Error::Flush {
            table: store.table().name,
            cause,
        },
        other => other,
    }
}
