use orm::prelude::*;

#[derive(Mapped)]
#[mapped(table = "posts")]
pub struct Post {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    // A child of a many-to-many relationship may have several parents.
    #[mapped(relationship(secondary = PostTag, cascade = "all, delete-orphan"))]
    pub tags: Collection<Tag>,
    // `secondary` makes a collection.
    #[mapped(relationship(secondary = PostTag))]
    pub first_tag: Reference<Tag>,
}

#[derive(Mapped)]
#[mapped(table = "tags")]
pub struct Tag {
    #[mapped(primary_key)]
    pub id: Option<i64>,
}

#[derive(Mapped)]
#[mapped(table = "post_tags", primary_key(post_id, tag_id))]
pub struct PostTag {
    #[mapped(foreign_key = "posts.id")]
    pub post_id: i64,
    #[mapped(foreign_key = "tags.id")]
    pub tag_id: i64,
}

fn main() {}
