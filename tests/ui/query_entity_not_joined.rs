// Selecting an entity that was never joined must not compile.
use orm::prelude::*;

#[derive(Mapped)]
#[mapped(table = "users")]
pub struct User {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    pub age: i32,
}

#[derive(Mapped)]
#[mapped(table = "addresses")]
pub struct Address {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "users.id")]
    pub user_id: i64,
    pub email: String,
}

fn main() {
    let mut session = sessionmaker().build().session();
    let _ = session.query::<(User, Address)>().all();
}
