//! Golden tests of the SQL each query construct emits, per dialect: the statements are
//! captured from real runs on both databases and compared with the snapshots in
//! `tests/integration/snapshots/` (review changes with `cargo insta review`).

use orm::prelude::*;
use orm::{count_all, exists, max, scalar, select_from, sum};

use crate::models::{create_schema, Address, User};
use crate::support::{capture, for_each_db, without_transaction_control};

/// Runs `f` and returns the SQL it issued, without transaction control.
fn sql_of<R>(f: impl FnOnce() -> R) -> String {
    let (_, sql) = capture(f);
    without_transaction_control(&sql).join("\n")
}

#[test]
fn golden_sql_per_dialect() {
    for_each_db(|db| {
        create_schema(&db.engine());
        let f = sessionmaker().bind(db.engine()).build();
        let mut s = f.session();
        let mut out = Vec::new();
        let mut case = |name: &str, sql: String| out.push(format!("-- {name}\n{sql}"));

        case(
            "insert batch",
            sql_of(|| {
                s.add_all([User::new("a", 1), User::new("b", 2)]).unwrap();
                s.flush().unwrap();
            }),
        );
        case(
            "filter and order",
            sql_of(|| {
                s.query::<User>()
                    .filter(User::age.lt(18).and(User::name.ne("x")))
                    .order_by(User::name.desc().nulls_last())
                    .limit(10)
                    .offset(5)
                    .all()
                    .unwrap()
            }),
        );
        case(
            "predicates",
            sql_of(|| {
                s.query::<User>()
                    .filter(User::fullname.is_null())
                    .filter(User::name.in_(["a", "b"]))
                    .filter(User::age.between(1, 9))
                    .filter(User::name.like("a%").or(User::name.ilike("B%")))
                    .filter(User::age.gt(1).not())
                    .all()
                    .unwrap()
            }),
        );
        case(
            "empty in",
            sql_of(|| {
                s.query::<User>()
                    .filter(User::age.in_(Vec::<i32>::new()))
                    .all()
                    .unwrap()
            }),
        );
        case(
            "join along foreign key",
            sql_of(|| {
                s.query::<(User, Address)>()
                    .join::<Address>()
                    .filter(Address::email.like("%@x"))
                    .all()
                    .unwrap()
            }),
        );
        case(
            "outer join",
            sql_of(|| {
                s.query::<(User, Option<Address>)>()
                    .outer_join::<Address>()
                    .all()
                    .unwrap()
            }),
        );
        case(
            "columns and aggregates",
            sql_of(|| {
                s.query::<User>()
                    .select((User::name, count_all(), sum(User::age)))
                    .group_by(User::name)
                    .having(count_all().gt(1))
                    .distinct()
                    .all()
                    .unwrap()
            }),
        );
        case(
            "subqueries",
            sql_of(|| {
                s.query::<User>()
                    .filter(User::id.in_subquery(select_from::<Address>().select(Address::user_id)))
                    .filter(exists(
                        select_from::<Address>().filter(Address::email.eq("e")),
                    ))
                    .filter(User::age.eq(scalar(select_from::<User>().select(max(User::age)))))
                    .all()
                    .unwrap()
            }),
        );
        case(
            "count and exists",
            sql_of(|| {
                s.query::<User>().filter(User::age.gt(1)).count().unwrap();
                s.query::<User>().exists().unwrap()
            }),
        );
        let users = s.query::<User>().order_by(User::id).all()?;
        case(
            "update changed columns",
            sql_of(|| {
                users[0].set(User::age, 5).unwrap();
                users[1].modify(|u| u.fullname = Some("B".into())).unwrap();
                s.flush().unwrap();
            }),
        );
        case(
            "delete batch",
            sql_of(|| {
                s.delete(&users[0]).unwrap();
                s.delete(&users[1]).unwrap();
                s.flush().unwrap();
            }),
        );
        case(
            "bulk update and delete",
            sql_of(|| {
                s.query::<User>()
                    .filter(User::age.lt(3))
                    .update([User::age.assign(3)])
                    .unwrap();
                s.query::<User>()
                    .filter(User::name.gt("m"))
                    .delete()
                    .unwrap()
            }),
        );
        insta::assert_snapshot!(format!("golden_{}", db.name()), out.join("\n\n"));
        Ok(())
    });
}
