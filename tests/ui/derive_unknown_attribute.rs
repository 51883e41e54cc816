//! An unknown key is reported on the key, on the struct and on a field, in one compile.
use orm::Mapped;

#[derive(Mapped)]
#[mapped(tabel = "users")]
pub struct User {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(colunm = "full_name")]
    pub name: String,
}

fn main() {}
