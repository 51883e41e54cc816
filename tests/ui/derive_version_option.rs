//! The version column always holds a number.
use orm::Mapped;

#[derive(Mapped)]
pub struct Document {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(version)]
    pub version: Option<i32>,
}

fn main() {}
