//! The order in which a flush visits tables.

use orm_core::schema::{dependency_cycle, dependency_order, Table};

use crate::error::{Error, Result};
use crate::identity_map::AnyStore;

/// Positions of the stores of the session, parents before the tables that reference them.
/// Every store is ordered, not only those with changes: a parent's INSERT may give work to a
/// child table that had none (its rows' foreign keys). Tables that reference each other in
/// a cycle cannot both have rows to insert or delete: that is an error naming the cycle.
pub(crate) fn order(stores: &[Box<dyn AnyStore>]) -> Result<Vec<usize>> {
    let tables: Vec<&Table> = stores.iter().map(|s| s.table()).collect();
    let busy: Vec<usize> = (0..stores.len())
        .filter(|&i| stores[i].has_inserts_or_deletes())
        .collect();
    let busy_tables: Vec<&Table> = busy.iter().map(|&i| tables[i]).collect();
    if let Some(cycle) = dependency_cycle(&busy_tables) {
        return Err(Error::CircularDependency {
            tables: cycle.into_iter().map(|k| busy_tables[k].name).collect(),
        });
    }
    Ok(dependency_order(&tables))
}
