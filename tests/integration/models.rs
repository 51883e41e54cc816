//! The mapped models the session tests use, and their schema.

use orm::prelude::*;

use crate::support::TestDb;

/// A user with a database-generated key.
#[derive(Mapped, Debug)]
#[mapped(table = "users")]
pub struct User {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    pub fullname: Option<String>,
    pub age: i32,
}

impl User {
    pub fn new(name: &str, age: i32) -> User {
        User {
            id: None,
            name: name.to_owned(),
            fullname: None,
            age,
        }
    }
}

/// An address, referencing its user.
#[derive(Mapped, Debug)]
#[mapped(table = "addresses")]
pub struct Address {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "users.id")]
    pub user_id: i64,
    pub email: String,
}

/// A tag whose key is chosen by the application.
#[derive(Mapped, Debug)]
#[mapped(table = "tags")]
pub struct Tag {
    #[mapped(primary_key)]
    pub name: String,
    pub uses: i64,
}

/// A composite key.
#[derive(Mapped, Debug)]
#[mapped(table = "memberships", primary_key(group_id, user_id))]
pub struct Membership {
    pub group_id: i64,
    pub user_id: i64,
    pub role: String,
}

/// A document with an optimistic-concurrency version column: every UPDATE sets
/// `version = version + 1` and matches the version the object holds. New documents typically
/// start at version 0 or 1; the ORM inserts the value the object holds.
#[derive(Mapped, Debug)]
#[mapped(table = "documents")]
pub struct Document {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub title: String,
    #[mapped(version)]
    pub version: i32,
}

impl Document {
    pub fn new(title: &str) -> Document {
        Document {
            id: None,
            title: title.to_owned(),
            version: 1,
        }
    }
}

/// Creates every table of the models above.
pub fn create_schema(engine: &Engine) {
    Metadata::of::<(User, Address, Tag, Membership, Document)>()
        .create_all(engine)
        .expect("create_all");
}

/// The schema, and three committed users in a session of a factory without expire_on_commit:
/// ed (30, "Ed Jones"), wendy (17, no fullname), mary (12, "Mary").
pub fn three_users(db: &TestDb) -> (SessionMaker, Session, Vec<Obj<User>>) {
    create_schema(&db.engine());
    let f = sessionmaker()
        .bind(db.engine())
        .expire_on_commit(false)
        .build();
    let mut s = f.session();
    let users = s
        .add_all([
            User {
                id: None,
                name: "ed".into(),
                fullname: Some("Ed Jones".into()),
                age: 30,
            },
            User {
                id: None,
                name: "wendy".into(),
                fullname: None,
                age: 17,
            },
            User {
                id: None,
                name: "mary".into(),
                fullname: Some("Mary".into()),
                age: 12,
            },
        ])
        .expect("add users");
    s.commit().expect("commit users");
    (f, s, users)
}
