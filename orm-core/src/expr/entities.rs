//! What an entity query selects: one mapped type, or a tuple of them (an outer-joined one as
//! `Option<T>`). Rows decode through an [`EntityLoader`], which the session implements with
//! its identity map, so this module does not depend on the session.

use crate::engine::row::Row;
use crate::error::Result;
use crate::model::Mapped;
use crate::sql::ast::{Expr, Select};
use crate::value::Value;

use super::sources::{InFrom, InnerIn};

/// The kind of handle a loader produces for each mapped type (the session's `Obj<T>`).
pub trait Handles {
    /// The handle of an object of `T`.
    type Handle<T: Mapped>;
}

/// Turns the columns of a mapped type in a row into the handle users receive.
pub trait EntityLoader {
    /// The handles produced.
    type Handles: Handles;
    /// The object whose columns start at `at`.
    fn load<T: Mapped>(&mut self, row: &Row<'_>, at: usize) -> Result<Handle<Self, T>>;
}

/// The handle of `T` produced by the loader `L`.
pub type Handle<L, T> = <<L as EntityLoader>::Handles as Handles>::Handle<T>;

/// One selected entity: `T`, or `Option<T>` for a table joined with a LEFT OUTER JOIN.
pub trait Entity {
    /// The mapped table.
    type Table: Mapped;
    /// What a row yields.
    type Output<H: Handles>;
    /// Reads the entity whose columns start at `at`.
    fn decode<L: EntityLoader>(
        loader: &mut L,
        row: &Row<'_>,
        at: usize,
    ) -> Result<Self::Output<L::Handles>>;
}

impl<T: Mapped> Entity for T {
    type Table = T;
    type Output<H: Handles> = H::Handle<T>;
    fn decode<L: EntityLoader>(loader: &mut L, row: &Row<'_>, at: usize) -> Result<Handle<L, T>> {
        loader.load::<T>(row, at)
    }
}

impl<T: Mapped> Entity for Option<T> {
    type Table = T;
    type Output<H: Handles> = Option<H::Handle<T>>;
    fn decode<L: EntityLoader>(
        loader: &mut L,
        row: &Row<'_>,
        at: usize,
    ) -> Result<Option<Handle<L, T>>> {
        // A primary key is never NULL: a NULL one means the outer join found no row.
        let key_column = at + T::TABLE.primary_key[0];
        if row.value(key_column).is_ok_and(|v| v == Value::Null) {
            return Ok(None);
        }
        loader.load::<T>(row, at).map(Some)
    }
}

/// What a query selects: an entity, or a tuple of entities.
pub trait Entities {
    /// The first table of the FROM clause.
    type First: Mapped;
    /// What a row yields.
    type Output<H: Handles>;
    /// The selected columns.
    fn columns() -> Vec<Expr>;
    /// Reads one row.
    fn decode<L: EntityLoader>(loader: &mut L, row: &Row<'_>) -> Result<Self::Output<L::Handles>>;
    /// When the selection is one entity (not a tuple): how its handle becomes a row's output,
    /// so that a loader may decode such rows without going through [`decode`](Self::decode).
    fn single<H: Handles>() -> Option<Single<Self, H>> {
        None
    }
}

/// How the handle of a selection's one entity becomes a row's output (see
/// [`Entities::single`]).
pub type Single<E, H> =
    fn(<H as Handles>::Handle<<E as Entities>::First>) -> <E as Entities>::Output<H>;

impl<T: Mapped> Entities for T {
    type First = T;
    type Output<H: Handles> = H::Handle<T>;
    fn columns() -> Vec<Expr> {
        Select::all_columns(T::TABLE)
    }
    fn decode<L: EntityLoader>(loader: &mut L, row: &Row<'_>) -> Result<Handle<L, T>> {
        loader.load::<T>(row, 0)
    }
    fn single<H: Handles>() -> Option<Single<T, H>> {
        Some(|handle| handle)
    }
}

macro_rules! entity_tuple {
    ($first:ident $(, $t:ident)*) => {
        impl<$first: Entity $(, $t: Entity)*> Entities for ($first, $($t,)*) {
            type First = $first::Table;
            type Output<H: Handles> = ($first::Output<H>, $($t::Output<H>,)*);
            fn columns() -> Vec<Expr> {
                let mut out = Select::all_columns(<$first::Table as Mapped>::TABLE);
                $(out.extend(Select::all_columns(<$t::Table as Mapped>::TABLE));)*
                out
            }
            #[allow(non_snake_case)]
            fn decode<L: EntityLoader>(loader: &mut L, row: &Row<'_>) -> Result<Self::Output<L::Handles>> {
                let mut at = 0;
                let first = $first::decode(loader, row, at)?;
                at += <$first::Table as Mapped>::TABLE.columns.len();
                #[allow(unused_assignments)]
                let rest = ($({
                    let v = $t::decode(loader, row, at)?;
                    at += <$t::Table as Mapped>::TABLE.columns.len();
                    v
                },)*);
                let ($($t,)*) = rest;
                Ok((first, $($t,)*))
            }
        }
    };
}
entity_tuple!(A, B);
entity_tuple!(A, B, C);

/// Every entity of a selection is in the FROM list `F`: an entity selected as `T` must be
/// inner-joined, one selected as `Option<T>` may be outer-joined.
#[diagnostic::on_unimplemented(
    message = "this query selects `{Self}`, which is not joined in it",
    note = "join every selected entity: `.join::<T>()`, or `.outer_join::<T>()` and select `Option<T>`"
)]
pub trait SelectedIn<F, I> {}
impl<T: Mapped + InnerIn<F, I>, F, I> SelectedIn<F, I> for T {}
impl<T: Mapped + InFrom<F, I>, F, I> SelectedIn<F, I> for Option<T> {}
impl<A: SelectedIn<F, IA>, B: SelectedIn<F, IB>, F, IA, IB> SelectedIn<F, (IA, IB)> for (A, B) {}
impl<A: SelectedIn<F, IA>, B: SelectedIn<F, IB>, C: SelectedIn<F, IC>, F, IA, IB, IC>
    SelectedIn<F, (IA, IB, IC)> for (A, B, C)
{
}
