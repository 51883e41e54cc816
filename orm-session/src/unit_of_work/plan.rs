//! The order in which a flush visits tables.

use orm_core::schema::{dependency_order, Table};

use crate::identity_map::AnyStore;

/// Positions of the stores with changes, parents before the tables that reference them.
pub(crate) fn order(stores: &[Box<dyn AnyStore>]) -> Vec<usize> {
    let busy: Vec<usize> = (0..stores.len())
        .filter(|&i| stores[i].has_changes())
        .collect();
    let tables: Vec<&Table> = busy.iter().map(|&i| stores[i].table()).collect();
    dependency_order(&tables)
        .into_iter()
        .map(|k| busy[k])
        .collect()
}
