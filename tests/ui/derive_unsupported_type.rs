//! A field type without `ColumnType` is reported on the field's type.
use orm::Mapped;

#[derive(Mapped)]
pub struct Task {
    #[mapped(primary_key)]
    pub id: i64,
    pub timeout: std::time::Duration,
    pub tags: Vec<String>,
}

fn main() {}
