//! A mapped struct needs a primary key; the error says how to declare one.
use orm::Mapped;

#[derive(Mapped)]
pub struct Note {
    pub id: i64,
    pub body: String,
}

fn main() {}
