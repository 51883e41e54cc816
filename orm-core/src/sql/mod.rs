//! SQL as data: statements are built as an [`ast`] and turned into text with bound
//! parameters by [`render`], per dialect, in one place.

pub mod ast;
pub mod evaluate;
pub mod render;
