use orm::prelude::*;

#[derive(Mapped)]
#[mapped(table = "parents")]
pub struct Parent {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(relationship(cascade = "all, delete-orphans"))]
    pub children: Collection<Child>,
    #[mapped(relationship)]
    pub favourite: Vec<Child>,
}

#[derive(Mapped)]
#[mapped(table = "children")]
pub struct Child {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "parents.id")]
    pub parent_id: Option<i64>,
    #[mapped(relationship(cascade = "delete-orphan", via = "parent"))]
    pub parent: Reference<Parent>,
}

fn main() {}
