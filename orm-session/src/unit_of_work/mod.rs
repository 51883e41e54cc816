//! The unit of work: turns the changes a session accumulated into statements.
//!
//! [`plan`] orders the tables by foreign-key dependency; [`execute`] builds the batched
//! statements of one table. A flush runs INSERTs and UPDATEs parents-first, then DELETEs
//! children-first, all on the session's transaction; association rows of many-to-many
//! relationships are written between the two.

pub(crate) mod execute;
pub(crate) mod plan;
pub(crate) mod relations;

use orm_core::engine::Connection;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::identity_map::AnyStore;

/// Runs the cascades, then every statement of a flush, in dependency order. Stops at the
/// first error; the caller rolls the transaction back.
pub(crate) fn run(core: &mut Core, conn: &Connection) -> Result<()> {
    core.link_cleanup.clear();
    core.cascade_for_flush()?;
    let order = plan::order(&core.stores)?;
    for &i in &order {
        let ops = core.stores[i].ops();
        ops.insert(core, conn)
            .map_err(|e| in_table(core.stores[i].as_ref(), e))?;
    }
    for &i in &order {
        let ops = core.stores[i].ops();
        ops.prepare_updates(core)?;
        core.stores[i]
            .flush_updates(conn)
            .map_err(|e| in_table(core.stores[i].as_ref(), e))?;
    }
    core.flush_links(conn)?;
    for &i in order.iter().rev() {
        core.stores[i]
            .flush_deletes(conn)
            .map_err(|e| in_table(core.stores[i].as_ref(), e))?;
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
