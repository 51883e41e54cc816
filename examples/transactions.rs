//! The transaction patterns of the reference, runnable:
//!
//! 1. a session scope around a unit of work (`sessionmaker().begin`),
//! 2. explicit commit / rollback with savepoints,
//! 3. the test-fixture pattern: a session joined to a transaction the caller rolls back.
//!
//! ```text
//! cargo run --example transactions
//! DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres cargo run --example transactions
//! ```

use orm::prelude::*;
use orm::JoinTransactionMode;

#[derive(Mapped, Debug)]
#[mapped(table = "tx_accounts")]
pub struct Account {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub owner: String,
    pub balance: i64,
    #[mapped(version)]
    pub version: i32,
}

fn account(owner: &str, balance: i64) -> Account {
    Account {
        id: None,
        owner: owner.into(),
        balance,
        version: 0,
    }
}

/// Application code takes a session; it does not decide where transactions begin or end.
fn transfer(
    session: &mut Session,
    from: &Obj<Account>,
    to: &Obj<Account>,
    amount: i64,
) -> orm::Result<()> {
    from.modify(|a| a.balance -= amount)?;
    to.modify(|a| a.balance += amount)?;
    session.flush()
}

fn main() -> Result<(), orm::Error> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite::memory:".into());
    let engine = Engine::connect(&url)?;
    let metadata = Metadata::of::<(Account,)>();
    metadata.drop_all(&engine)?;
    metadata.create_all(&engine)?;
    let factory = sessionmaker().bind(engine.clone()).build();

    // 1. Session scope around a unit of work: commit on Ok, rollback on Err, always close.
    let (alice, bob) =
        factory.begin(|s| Ok((s.add(account("alice", 100))?, s.add(account("bob", 0))?)))?;
    println!(
        "created alice {:?} and bob {:?}",
        alice.identity_key(),
        bob.identity_key()
    );

    // 2. Explicit transactions, with a savepoint for the part that may fail.
    let mut session = factory.session();
    let alice = session.merge(&alice)?; // the detached objects, attached to this session
    let bob = session.merge(&bob)?;
    transfer(&mut session, &alice, &bob, 30)?;
    let risky = session.nested(|s| {
        transfer(s, &alice, &bob, 500)?;
        if alice.read()?.balance < 0 {
            return Err(orm::Error::NoTransaction); // any error: the savepoint is rolled back
        }
        Ok(())
    });
    println!("overdraft refused: {}", risky.is_err());
    session.commit()?;
    println!(
        "after commit: alice {} (version {}), bob {}",
        alice.read()?.balance,
        alice.read()?.version,
        bob.read()?.balance
    );

    // 3. The test-fixture pattern: an outer transaction the test owns and rolls back.
    let conn = engine.connection()?;
    conn.begin()?;
    let mut test_session = factory.session_with(|o| {
        o.bind(&conn)
            .join_transaction_mode(JoinTransactionMode::CreateSavepoint);
    });
    test_session.add(account("temporary", 1))?;
    test_session.commit()?; // releases the session's savepoint; the outer transaction goes on
    drop(test_session);
    conn.rollback()?; // the test leaves nothing behind
    let left = factory
        .session()
        .query::<Account>()
        .filter(Account::owner.eq("temporary"))
        .all()?;
    println!("rows left by the test fixture: {}", left.len());
    Ok(())
}
