//! Type-level lists of tables: which tables an expression reads, and which a query's FROM
//! clause holds. A filter, ordering or selection compiles only when every table it reads is
//! in the FROM clause ([`AllIn`]).
//!
//! The lists are `HCons<Head, Tail>` ending in `HNil`. A table joined with a LEFT OUTER JOIN
//! appears as [`Outer<T>`]: its columns may be used anywhere, but the entity itself can only be
//! selected as an `Option`. Membership is proved by [`InFrom`], whose index parameter (`Here`,
//! `There<..>`) the compiler infers; it keeps the impls from overlapping.

use std::marker::PhantomData;

/// The empty list.
pub struct HNil;
/// A list with `H` first, then the list `T`.
pub struct HCons<H, T>(PhantomData<fn() -> (H, T)>);
/// A table joined with a LEFT OUTER JOIN.
pub struct Outer<T>(PhantomData<fn() -> T>);
/// Index: the table is the head of the list.
pub struct Here;
/// Index: the table is the head of the list, outer-joined.
pub struct HereOuter;
/// Index: the table is in the tail of the list.
pub struct There<I>(PhantomData<fn() -> I>);

/// The list of one table.
pub type One<T> = HCons<T, HNil>;

/// `Self` (a mapped table) is in the FROM list `F`.
#[diagnostic::on_unimplemented(
    message = "table `{Self}` is not in this query's FROM clause",
    label = "uses a column of `{Self}`",
    note = "join it first: `.join::<{Self}>()` (or `.outer_join::<{Self}>()`)"
)]
pub trait InFrom<F, I> {}
impl<T, R> InFrom<HCons<T, R>, Here> for T {}
impl<T, R> InFrom<HCons<Outer<T>, R>, HereOuter> for T {}
impl<T, H, R, I> InFrom<HCons<H, R>, There<I>> for T where T: InFrom<R, I> {}

/// `Self` is in the FROM list `F` with an inner join (so a row always has it).
#[diagnostic::on_unimplemented(
    message = "entity `{Self}` is not inner-joined in this query",
    label = "selected here",
    note = "join it with `.join::<{Self}>()`, or select `Option<{Self}>` after `.outer_join::<{Self}>()`"
)]
pub trait InnerIn<F, I> {}
impl<T, R> InnerIn<HCons<T, R>, Here> for T {}
impl<T, H, R, I> InnerIn<HCons<H, R>, There<I>> for T where T: InnerIn<R, I> {}

/// Every table of the list `Self` is in the FROM list `F`.
pub trait AllIn<F, I> {}
impl<F> AllIn<F, HNil> for HNil {}
impl<H, T, F, IH, IT> AllIn<F, HCons<IH, IT>> for HCons<H, T>
where
    H: InFrom<F, IH>,
    T: AllIn<F, IT>,
{
}

/// The list `Self` followed by the list `R`.
pub trait Concat<R> {
    /// The concatenation.
    type Output;
}
impl<R> Concat<R> for HNil {
    type Output = R;
}
impl<H, T: Concat<R>, R> Concat<R> for HCons<H, T> {
    type Output = HCons<H, T::Output>;
}
