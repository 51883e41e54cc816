//! `primary_key` on a second field: the error points at it and suggests a composite key.
use orm::Mapped;

#[derive(Mapped)]
#[mapped(table = "memberships")]
pub struct Membership {
    #[mapped(primary_key)]
    pub group_id: i64,
    #[mapped(primary_key)]
    pub user_id: i64,
    pub role: String,
}

fn main() {}
