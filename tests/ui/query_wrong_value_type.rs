// Comparing a column with a value of another type must not compile.
use orm::prelude::*;

#[derive(Mapped)]
#[mapped(table = "users")]
pub struct User {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub age: i32,
}

fn main() {
    let factory = sessionmaker().build();
    let mut session = factory.session();
    let _ = session.query::<User>().filter(User::age.eq("x")).all();
}
