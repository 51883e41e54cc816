use orm::prelude::*;

#[derive(Mapped)]
#[mapped(table = "parents")]
pub struct Parent {
    #[mapped(primary_key)]
    pub id: Option<i64>,
}

#[derive(Mapped)]
#[mapped(table = "pets")]
pub struct Pet {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "parents.id")]
    pub parent_id: Option<i64>,
    // The mirror field does not exist on `Parent`.
    #[mapped(relationship(back_populates = "pets"))]
    pub owner: Reference<Parent>,
}

fn main() {}
