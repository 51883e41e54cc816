use orm::prelude::*;

#[derive(Mapped)]
#[mapped(table = "posts")]
pub struct Post {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    // The association table is a mapped struct.
    #[mapped(relationship(secondary = String))]
    pub tags: Collection<Tag>,
}

#[derive(Mapped)]
#[mapped(table = "tags")]
pub struct Tag {
    #[mapped(primary_key)]
    pub id: Option<i64>,
}

fn main() {}
