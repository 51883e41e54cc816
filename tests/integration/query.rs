//! The typed query language on both databases: predicates, ordering, joins, entity tuples,
//! columns, aggregates, subqueries and terminal methods.

use orm::prelude::*;
use orm::{avg, count, count_all, exists, max, min, scalar, select_from, sum, Error};

use crate::models::{create_schema, three_users, Address, User};
use crate::support::{capture, for_each_db, TestDb};

/// ed (30, "Ed Jones") with 2 addresses, wendy (17, NULL) with 1, mary (12, "Mary") with none.
fn seeded(db: &TestDb) -> (SessionMaker, Session) {
    let (f, mut s, users) = three_users(db);
    let id = |i: usize| users[i].identity_key().unwrap();
    s.add_all([
        Address {
            id: None,
            user_id: id(0),
            email: "ed@example.com".into(),
        },
        Address {
            id: None,
            user_id: id(0),
            email: "ed@work.example".into(),
        },
        Address {
            id: None,
            user_id: id(1),
            email: "WENDY@example.com".into(),
        },
    ])
    .expect("addresses");
    s.commit().expect("commit");
    (f, s)
}

fn names(users: &[Obj<User>]) -> Vec<String> {
    users
        .iter()
        .map(|u| u.read().expect("read").name.clone())
        .collect()
}

#[test]
fn predicates() {
    for_each_db(|db| {
        let (_f, mut s) = seeded(db);
        macro_rules! q {
            ($s:expr, $p:expr) => {
                names(&$s.query::<User>().filter($p).order_by(User::name).all()?)
            };
        }
        assert_eq!(q!(s, User::age.ne(30)), ["mary", "wendy"]);
        assert_eq!(q!(s, User::age.le(17)), ["mary", "wendy"]);
        assert_eq!(q!(s, User::age.ge(17)), ["ed", "wendy"]);
        assert_eq!(q!(s, User::age.gt(17)), ["ed"]);
        assert_eq!(q!(s, User::fullname.is_null()), ["wendy"]);
        assert_eq!(q!(s, User::fullname.is_not_null()), ["ed", "mary"]);
        assert_eq!(
            q!(s, User::name.in_(["ed", "mary", "nobody"])),
            ["ed", "mary"]
        );
        assert_eq!(
            q!(s, User::name.in_(Vec::<String>::new())),
            Vec::<String>::new()
        );
        assert_eq!(q!(s, User::name.not_in(["ed"])), ["mary", "wendy"]);
        assert_eq!(q!(s, User::age.between(12, 17)), ["mary", "wendy"]);
        assert_eq!(q!(s, User::name.like("%e%")), ["ed", "wendy"]);
        assert_eq!(
            q!(s, User::fullname.like("ed%")),
            Vec::<String>::new(),
            "LIKE is case-sensitive"
        );
        assert_eq!(q!(s, User::fullname.ilike("ed%")), ["ed"]);
        assert_eq!(
            q!(s, User::age.lt(18).and(User::name.ne("mary"))),
            ["wendy"]
        );
        assert_eq!(q!(s, User::age.lt(13).or(User::age.gt(20))), ["ed", "mary"]);
        assert_eq!(q!(s, User::age.lt(18).not()), ["ed"]);
        // Two columns of one row compared; Option<String> with String is the same SQL type.
        assert_eq!(q!(s, User::fullname.eq(User::name)), Vec::<String>::new());
        Ok(())
    });
}

#[test]
fn ordering_limits_and_distinct() {
    for_each_db(|db| {
        let (_f, mut s) = seeded(db);
        let by_fullname = s
            .query::<User>()
            .order_by(User::fullname.asc().nulls_first())
            .all()?;
        assert_eq!(names(&by_fullname), ["wendy", "ed", "mary"]);
        let by_fullname = s
            .query::<User>()
            .order_by(User::fullname.desc().nulls_last())
            .all()?;
        assert_eq!(names(&by_fullname), ["mary", "ed", "wendy"]);
        let page = s
            .query::<User>()
            .order_by(User::age.desc())
            .offset(1)
            .limit(1)
            .all()?;
        assert_eq!(names(&page), ["wendy"]);
        let tail = s.query::<User>().order_by(User::age).offset(1).all()?;
        assert_eq!(names(&tail), ["wendy", "ed"]);
        let user_ids: Vec<i64> = s
            .query::<Address>()
            .select(Address::user_id)
            .distinct()
            .order_by(Address::user_id)
            .all()?;
        assert_eq!(user_ids.len(), 2);
        Ok(())
    });
}

#[test]
fn joins_along_foreign_keys_return_identity_mapped_tuples() {
    for_each_db(|db| {
        let (_f, mut s) = seeded(db);
        let ed = s.query::<User>().filter(User::name.eq("ed")).one()?;
        let pairs = s
            .query::<(User, Address)>()
            .join::<Address>()
            .order_by(Address::email)
            .all()?;
        assert_eq!(pairs.len(), 3);
        let eds: Vec<&(Obj<User>, Obj<Address>)> = pairs
            .iter()
            .filter(|(u, _)| u.read().unwrap().name == "ed")
            .collect();
        assert_eq!(eds.len(), 2);
        assert!(
            eds[0].0.ptr_eq(&ed) && eds[1].0.ptr_eq(&ed),
            "one object per user, the one held"
        );
        for (u, a) in &pairs {
            assert_eq!(a.read()?.user_id, u.identity_key().unwrap());
        }

        // Filtering on the joined table.
        let with_work = s
            .query::<User>()
            .join::<Address>()
            .filter(Address::email.like("%work%"))
            .all()?;
        assert_eq!(names(&with_work), ["ed"]);

        // LEFT OUTER JOIN: a user without addresses comes back with None.
        let all = s
            .query::<(User, Option<Address>)>()
            .outer_join::<Address>()
            .order_by(User::age)
            .all()?;
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].0.read()?.name, "mary");
        assert!(all[0].1.is_none());
        assert!(all[1].1.is_some());

        // An explicit ON condition.
        let explicit = s
            .query::<(Address, User)>()
            .join_on::<User, _, _>(Address::user_id.eq(User::id).and(User::age.gt(20)))
            .all()?;
        assert_eq!(explicit.len(), 2);
        Ok(())
    });
}

#[test]
fn columns_and_aggregates_with_their_rust_types() {
    for_each_db(|db| {
        let (_f, mut s) = seeded(db);
        let rows: Vec<(String, i32)> = s
            .query::<User>()
            .select((User::name, User::age))
            .order_by(User::age)
            .all()?;
        assert_eq!(
            rows,
            [("mary".into(), 12), ("wendy".into(), 17), ("ed".into(), 30)]
        );
        let fullnames: Vec<Option<String>> = s
            .query::<User>()
            .select(User::fullname)
            .order_by(User::name)
            .all()?;
        assert_eq!(
            fullnames,
            [Some("Ed Jones".into()), Some("Mary".into()), None]
        );

        let (n, total, lo, hi, mean): (i64, Option<i64>, Option<i32>, Option<i32>, Option<f64>) = s
            .query::<User>()
            .select((count_all(), sum(User::age), min(User::age), max(User::age)))
            .one()
            .map(|(a, b, c, d)| (a, b, c, d, None))?;
        assert_eq!(
            (n, total, lo, hi, mean),
            (3, Some(59), Some(12), Some(30), None)
        );
        let mean: Option<f64> = s.query::<User>().select(avg(User::age)).one()?;
        assert!((mean.unwrap() - 59.0 / 3.0).abs() < 1e-9);
        let none: (Option<i64>, i64) = s
            .query::<User>()
            .select((sum(User::age), count(User::fullname)))
            .filter(User::age.gt(100))
            .one()?;
        assert_eq!(none, (None, 0), "sum over no rows is NULL, count is 0");

        let per_user: Vec<(String, i64)> = s
            .query::<User>()
            .join::<Address>()
            .select((User::name, count_all()))
            .group_by(User::name)
            .having(count_all().ge(1))
            .order_by(User::name)
            .all()?;
        assert_eq!(per_user, [("ed".into(), 2), ("wendy".into(), 1)]);
        Ok(())
    });
}

#[test]
fn subqueries() {
    for_each_db(|db| {
        let (_f, mut s) = seeded(db);
        let with_addresses = s
            .query::<User>()
            .filter(User::id.in_subquery(select_from::<Address>().select(Address::user_id)))
            .order_by(User::name)
            .all()?;
        assert_eq!(names(&with_addresses), ["ed", "wendy"]);
        let any_work = s
            .query::<User>()
            .filter(exists(
                select_from::<Address>().filter(Address::email.like("%work%")),
            ))
            .count()?;
        assert_eq!(any_work, 3, "uncorrelated EXISTS is true for every row");
        let oldest = s
            .query::<User>()
            .filter(User::age.eq(scalar(select_from::<User>().select(max(User::age)))))
            .one()?;
        assert_eq!(oldest.read()?.name, "ed");
        Ok(())
    });
}

#[test]
fn terminal_methods() {
    for_each_db(|db| {
        let (_f, mut s) = seeded(db);
        assert_eq!(s.query::<User>().count()?, 3);
        assert_eq!(s.query::<User>().filter(User::age.lt(18)).count()?, 2);
        assert_eq!(s.query::<User>().order_by(User::age).limit(2).count()?, 2);
        assert!(s.query::<User>().filter(User::name.eq("ed")).exists()?);
        assert!(!s.query::<User>().filter(User::name.eq("nobody")).exists()?);
        assert!(s
            .query::<User>()
            .filter(User::name.eq("nobody"))
            .first()?
            .is_none());
        assert!(s
            .query::<User>()
            .filter(User::name.eq("nobody"))
            .one_or_none()?
            .is_none());
        assert!(matches!(
            s.query::<User>().filter(User::name.eq("nobody")).one(),
            Err(Error::NoResultFound { table: "users" })
        ));
        assert!(matches!(
            s.query::<User>().one(),
            Err(Error::MultipleResultsFound { table: "users" })
        ));
        // Autoflush before counting, and every value bound.
        s.add(User::new("o'brien; --", 1))?;
        let (n, sql) = capture(|| {
            s.query::<User>()
                .filter(User::name.eq("o'brien; --"))
                .count()
                .expect("count")
        });
        assert_eq!(n, 1);
        assert!(
            sql.iter().all(|q| !q.contains("o'brien")),
            "values are bound: {sql:?}"
        );
        Ok(())
    });
}

#[test]
fn joining_a_table_without_a_foreign_key_is_a_clear_error() {
    for_each_db(|db| {
        let (_f, mut s) = seeded(db);
        match s.query::<User>().join::<crate::models::Tag>().all() {
            Err(Error::NoJoinPath { to: "tags", from }) => assert_eq!(from, ["users"]),
            other => panic!("expected NoJoinPath, got {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn iter_streams_objects_in_batches_in_the_querys_order() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let f = sessionmaker().bind(db.engine()).build();
        let mut s = f.session();
        s.add_all((0..2000).map(|i| User::new(&format!("u{i:04}"), i % 100)))?;
        s.commit()?;
        let (result, sql) = capture(|| -> orm::Result<(usize, Vec<String>)> {
            let mut seen = 0;
            let mut first = Vec::new();
            let mut session = f.session();
            let it = session
                .query::<User>()
                .filter(User::age.lt(50))
                .order_by(User::name.desc())
                .iter(300)?;
            for user in it {
                let user = user?;
                if first.len() < 3 {
                    first.push(user.read()?.name.clone());
                }
                seen += 1;
            }
            Ok((seen, first))
        });
        let (seen, first) = result?;
        assert_eq!(seen, 1000);
        assert_eq!(first, ["u1949", "u1948", "u1947"]);
        let selects = sql.iter().filter(|q| q.starts_with("SELECT")).count();
        assert_eq!(
            selects,
            1 + 1000_usize.div_ceil(300),
            "one key query, then one per batch: {selects}"
        );
        Ok(())
    });
}
