// Filtering a query over `User` on a column of `Address` must not compile.
use orm::prelude::*;

#[derive(Mapped)]
#[mapped(table = "users")]
pub struct User {
    #[mapped(primary_key)]
    pub id: Option<i64>,
}

#[derive(Mapped)]
#[mapped(table = "addresses")]
pub struct Address {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub email: String,
}

fn main() {
    let factory = sessionmaker().build();
    let mut session = factory.session();
    let _ = session.query::<User>().filter(Address::email.eq("ed@example.com")).all();
}
