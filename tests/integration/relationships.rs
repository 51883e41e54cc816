//! Relationships: cascades, foreign keys filled in at flush, statement order across tables,
//! self-referential trees, lazy and `selectin` loading. Every test runs on both databases and
//! asserts the exact statements a flush or a load issued.

use orm::prelude::*;
use orm::Error;

use crate::support::{
    capture, count_prefix, count_rows, for_each_db, query_i64, shape, without_transaction_control,
    TestDb,
};

/// A customer, its orders (deleted with it, and when removed from it), their lines.
#[derive(Mapped, Debug)]
#[mapped(table = "customers")]
pub struct Customer {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    #[mapped(relationship(back_populates = "customer", cascade = "all, delete-orphan"))]
    pub orders: Collection<Order>,
}

#[derive(Mapped, Debug)]
#[mapped(table = "orders")]
pub struct Order {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "customers.id")]
    pub customer_id: i64,
    pub item: String,
    #[mapped(relationship(back_populates = "orders"))]
    pub customer: Reference<Customer>,
    #[mapped(relationship(back_populates = "order", cascade = "all"))]
    pub lines: Collection<Line>,
}

#[derive(Mapped, Debug)]
#[mapped(table = "order_lines")]
pub struct Line {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "orders.id")]
    pub order_id: i64,
    pub qty: i32,
    #[mapped(relationship(back_populates = "lines"))]
    pub order: Reference<Order>,
}

/// A person whose pets outlive them (no delete cascade; nullable foreign key, and no
/// reference back from the pet).
#[derive(Mapped, Debug)]
#[mapped(table = "people")]
pub struct Person {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    #[mapped(relationship)]
    pub pets: Collection<Pet>,
}

#[derive(Mapped, Debug)]
#[mapped(table = "pets")]
pub struct Pet {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "people.id")]
    pub owner_id: Option<i64>,
    pub name: String,
}

/// A team whose players cannot exist without one, and no delete cascade.
#[derive(Mapped, Debug)]
#[mapped(table = "teams")]
pub struct Team {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    #[mapped(relationship(back_populates = "team"))]
    pub players: Collection<Player>,
}

#[derive(Mapped, Debug)]
#[mapped(table = "players")]
pub struct Player {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "teams.id")]
    pub team_id: i64,
    pub name: String,
    #[mapped(relationship(back_populates = "players"))]
    pub team: Reference<Team>,
}

/// A tree in one table.
#[derive(Mapped, Debug)]
#[mapped(table = "nodes")]
pub struct Node {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "nodes.id")]
    pub parent_id: Option<i64>,
    pub name: String,
    #[mapped(relationship(back_populates = "children"))]
    pub parent: Reference<Node>,
    #[mapped(relationship(back_populates = "parent", cascade = "all, delete-orphan"))]
    pub children: Collection<Node>,
}

fn order(item: &str, lines: &[i32]) -> Order {
    Order {
        id: None,
        customer_id: 0,
        item: item.into(),
        customer: Reference::default(),
        lines: lines.iter().map(|&qty| line(qty)).collect(),
    }
}

fn line(qty: i32) -> Line {
    Line {
        id: None,
        order_id: 0,
        qty,
        order: Reference::default(),
    }
}

fn customer(name: &str, orders: Vec<Order>) -> Customer {
    Customer {
        id: None,
        name: name.into(),
        orders: orders.into_iter().collect(),
    }
}

fn node(name: &str, children: Vec<Node>) -> Node {
    Node {
        id: None,
        parent_id: None,
        name: name.into(),
        parent: Reference::default(),
        children: children.into_iter().collect(),
    }
}

fn factory(db: &TestDb) -> SessionMaker {
    Metadata::of::<(Customer, Order, Line, Person, Pet, Team, Player, Node)>()
        .create_all(&db.engine())
        .expect("create_all");
    sessionmaker().bind(db.engine()).build()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn adding_a_parent_inserts_its_graph_parents_first_with_keys_filled_in() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(customer(
            "ed",
            vec![order("pen", &[1, 2]), order("ink", &[3]), order("pad", &[])],
        ))?;
        // The whole graph is pending: save-update cascade.
        let orders = ed.related(Customer::orders)?;
        assert_eq!(orders.len(), 3);
        assert!(orders.iter().all(|o| o.state() == ObjectState::Pending));
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert_eq!(
            shape(&sql),
            strings(&["INSERT customers", "INSERT orders", "INSERT order_lines"]),
            "one INSERT per table, parents first: {sql:?}"
        );
        let id = ed.read()?.id.expect("key");
        let conn = db.engine().connection()?;
        let sql = format!(
            "SELECT count(*) FROM order_lines l JOIN orders o ON o.id = l.order_id \
             WHERE o.customer_id = {}",
            db.param(1)
        );
        assert_eq!(query_i64(&conn, &sql, &[id.into()])?, 3);
        for o in &orders {
            assert_eq!(o.read()?.customer_id, id);
            let back = o.related(Order::customer)?.expect("customer");
            assert!(back.ptr_eq(&ed), "the back reference is the same object");
            for l in o.related(Order::lines)? {
                assert_eq!(l.read()?.order_id, o.read()?.id.unwrap());
            }
        }
        Ok(())
    })
}

#[test]
fn a_flush_mixing_three_tables_runs_inserts_updates_then_deletes_children_first() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(customer(
            "ed",
            vec![order("pen", &[1, 2]), order("ink", &[3])],
        ))?;
        s.commit()?;
        let orders = ed.related(Customer::orders)?;
        let (pen, ink) = (orders[0].clone(), orders[1].clone());
        let pen_lines = pen.related(Order::lines)?;
        ink.related(Order::lines)?;

        let pad = ed.append(Customer::orders, order("pad", &[7, 8]))?;
        pen_lines[0].set(Line::qty, 10)?;
        s.delete(&ink)?;
        let ((), sql) = capture(|| s.flush().expect("flush"));
        assert_eq!(
            shape(&sql),
            strings(&[
                "INSERT orders",
                "INSERT order_lines",
                "UPDATE order_lines",
                "DELETE order_lines",
                "DELETE orders",
            ]),
            "{sql:?}"
        );
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "orders")?, 2);
        assert_eq!(count_rows(&db.engine(), "order_lines")?, 4);
        assert_eq!(ink.state(), ObjectState::Detached);
        assert!(pad.read()?.customer_id == ed.read()?.id.unwrap());
        Ok(())
    })
}

#[test]
fn deleting_a_parent_deletes_a_three_level_tree_loaded_or_not() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        s.add(customer(
            "ed",
            vec![order("pen", &[1, 2]), order("ink", &[3])],
        ))?;
        s.add(customer("wendy", vec![order("cup", &[4])]))?;
        s.commit()?;
        s.close()?;

        // Nothing of ed's is loaded: the cascade loads each level in one SELECT.
        let mut s = f.session();
        let ed = s
            .query::<Customer>()
            .filter(Customer::name.eq("ed"))
            .one()?;
        s.delete(&ed)?;
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert_eq!(
            shape(&sql),
            strings(&[
                "SELECT orders",
                "SELECT order_lines",
                "DELETE order_lines",
                "DELETE orders",
                "DELETE customers",
            ]),
            "{sql:?}"
        );
        assert_eq!(count_rows(&db.engine(), "customers")?, 1);
        assert_eq!(count_rows(&db.engine(), "orders")?, 1);
        assert_eq!(count_rows(&db.engine(), "order_lines")?, 1);

        // A tree in one table, three levels deep, deleted through its root.
        let mut s = f.session();
        let root = s.add(node(
            "root",
            vec![
                node("a", vec![node("a1", vec![]), node("a2", vec![])]),
                node("b", vec![node("b1", vec![])]),
            ],
        ))?;
        s.commit()?;
        let root_id = root.read()?.id.unwrap();
        s.close()?;
        let mut s = f.session();
        let root = s.get::<Node>(root_id)?.expect("root");
        s.delete(&root)?;
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert_eq!(
            shape(&sql),
            strings(&[
                "SELECT nodes",
                "SELECT nodes",
                "SELECT nodes",
                "DELETE nodes"
            ]),
            "a SELECT per level, then one DELETE: {sql:?}"
        );
        assert_eq!(count_rows(&db.engine(), "nodes")?, 0);
        Ok(())
    })
}

#[test]
fn removing_a_child_from_a_delete_orphan_collection_deletes_it_at_flush() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(customer("ed", vec![order("pen", &[1]), order("ink", &[])]))?;
        s.commit()?;
        let orders = ed.related(Customer::orders)?;
        let pen = orders[0].clone();
        pen.related(Order::lines)?;
        assert!(ed.remove(Customer::orders, &pen)?);
        assert!(
            pen.related(Order::customer)?.is_none(),
            "back reference cleared"
        );
        let ((), sql) = capture(|| s.flush().expect("flush"));
        assert_eq!(
            shape(&sql),
            strings(&["DELETE order_lines", "DELETE orders"]),
            "{sql:?}"
        );
        assert_eq!(pen.state(), ObjectState::Deleted);

        // Removed, then rolled back: the removal is undone with the rest.
        s.commit()?;
        let orders = ed.related(Customer::orders)?;
        ed.remove(Customer::orders, &orders[0])?;
        s.rollback()?;
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "orders")?, 1);
        assert_eq!(ed.related(Customer::orders)?.len(), 1);
        let ink = ed.related(Customer::orders)?.pop().expect("ink");

        // Removed, then given to another customer before the flush: not an orphan.
        let wendy = s.add(customer("wendy", vec![]))?;
        ed.remove(Customer::orders, &ink)?;
        wendy.append(Customer::orders, &ink)?;
        s.commit()?;
        assert_eq!(ink.state(), ObjectState::Persistent);
        assert_eq!(ink.read()?.customer_id, wendy.read()?.id.unwrap());
        assert_eq!(count_rows(&db.engine(), "orders")?, 1);

        // A detached parent has no session to delete the orphan in: refused, nothing changed.
        wendy.related(Customer::orders)?;
        s.expunge(&wendy)?;
        let err = wendy.remove(Customer::orders, &ink).expect_err("detached");
        assert!(
            matches!(&err, Error::DetachedCollection { relationship } if relationship == "customers.orders"),
            "{err:?}"
        );
        assert_eq!(wendy.read()?.orders.loaded().map(<[_]>::len), Some(1));
        Ok(())
    })
}

#[test]
fn deleting_a_parent_without_delete_cascade_nulls_nullable_foreign_keys() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ann = s.add(Person {
            id: None,
            name: "ann".into(),
            pets: [("rex"), ("tom")]
                .map(|n| Pet {
                    id: None,
                    owner_id: None,
                    name: n.into(),
                })
                .into_iter()
                .collect(),
        })?;
        // No reference back from Pet: the parent's side fills the keys in.
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert_eq!(shape(&sql), strings(&["INSERT people", "INSERT pets"]));
        let pets = ann.related(Person::pets)?;
        let id = ann.read()?.id;
        assert!(pets.iter().all(|p| p.read().unwrap().owner_id == id));

        s.delete(&ann)?;
        let ((), sql) = capture(|| s.commit().expect("commit"));
        // The children's UPDATE before the parent's DELETE (one UPDATE statement per row on
        // SQLite, prepared once).
        let expected: &[&str] = if db.is_postgres() {
            &["UPDATE pets", "DELETE people"]
        } else {
            &["UPDATE pets", "UPDATE pets", "DELETE people"]
        };
        assert_eq!(shape(&sql), strings(expected), "{sql:?}");
        assert_eq!(count_rows(&db.engine(), "pets")?, 2);
        let conn = db.engine().connection()?;
        assert_eq!(
            query_i64(
                &conn,
                "SELECT count(*) FROM pets WHERE owner_id IS NULL",
                &[]
            )?,
            2
        );
        Ok(())
    })
}

#[test]
fn deleting_a_parent_of_not_null_children_without_cascade_is_a_clear_error() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let reds = s.add(Team {
            id: None,
            name: "reds".into(),
            players: Collection::new(),
        })?;
        reds.append(
            Team::players,
            Player {
                id: None,
                team_id: 0,
                name: "kim".into(),
                team: Reference::default(),
            },
        )?;
        s.commit()?;
        s.delete(&reds)?;
        let err = s.commit().expect_err("children reference the team");
        assert!(
            matches!(
                err,
                Error::DependentRows {
                    table: "teams",
                    child: "players",
                    column: "team_id"
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("players.team_id"), "{err}");
        // Nothing was written; the session recovers with rollback.
        assert!(matches!(s.flush(), Err(Error::PendingRollback { .. })));
        s.rollback()?;
        assert_eq!(reds.state(), ObjectState::Persistent);
        assert_eq!(count_rows(&db.engine(), "teams")?, 1);
        assert_eq!(count_rows(&db.engine(), "players")?, 1);

        // Removing a player from a NOT NULL collection without delete-orphan fails at once.
        let kim = reds.related(Team::players)?.pop().expect("kim");
        let err = reds.remove(Team::players, &kim).expect_err("NOT NULL");
        assert!(
            matches!(
                err,
                Error::NotNullForeignKey {
                    table: "players",
                    column: "team_id",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(reds.related(Team::players)?.len(), 1, "nothing changed");
        Ok(())
    })
}

#[test]
fn relationships_load_lazily_through_the_session_and_not_when_detached() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(customer("ed", vec![order("pen", &[1, 2])]))?;
        s.commit()?;
        let ed_id = ed.read()?.id.unwrap();
        s.close()?;

        let mut s = f.session();
        let ed = s.get::<Customer>(ed_id)?.expect("ed");
        let (orders, sql) = capture(|| ed.related(Customer::orders).expect("orders"));
        assert_eq!(shape(&sql), strings(&["SELECT orders"]));
        assert_eq!(orders.len(), 1);
        // The parent is in the identity map: no SQL for the many-to-one side.
        let (back, sql) = capture(|| orders[0].related(Order::customer).expect("customer"));
        assert!(back.is_some_and(|c| c.ptr_eq(&ed)));
        assert!(without_transaction_control(&sql).is_empty(), "{sql:?}");
        // Loaded children go through the identity map.
        let pen = s.get::<Order>(orders[0].read()?.id.unwrap())?.expect("pen");
        assert!(pen.ptr_eq(&orders[0]));
        assert_eq!(pen.related(Order::lines)?.len(), 2);

        s.expunge(&ed)?;
        assert_eq!(ed.state(), ObjectState::Detached);
        assert_eq!(
            ed.related(Customer::orders)?.len(),
            1,
            "a loaded collection stays readable when detached"
        );
        let fresh = f.session().get::<Customer>(ed_id)?.expect("ed");
        let err = fresh
            .related(Customer::orders)
            .expect_err("detached and unloaded");
        assert!(
            matches!(err, Error::DetachedInstance { table: "customers" }),
            "{err:?}"
        );
        Ok(())
    })
}

#[test]
fn selectin_loads_the_children_of_100_parents_in_one_more_select() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        for i in 0..100 {
            s.add(customer(
                &format!("c{i:03}"),
                vec![order("a", &[]), order("b", &[]), order("c", &[])],
            ))?;
        }
        s.commit()?;
        s.close()?;

        let mut s = f.session();
        let (customers, sql) = capture(|| {
            s.query::<Customer>()
                .options(selectin(Customer::orders))
                .order_by(Customer::name)
                .all()
                .expect("query")
        });
        assert_eq!(customers.len(), 100);
        assert_eq!(count_prefix(&sql, "SELECT"), 2, "{sql:?}");
        assert_eq!(shape(&sql), strings(&["SELECT customers", "SELECT orders"]));
        if db.is_postgres() {
            assert!(
                sql[sql.len() - 1].contains("IN (SELECT unnest($1::int8[]))"),
                "{sql:?}"
            );
        }
        let (total, sql) = capture(|| {
            customers
                .iter()
                .map(|c| c.related(Customer::orders).expect("loaded").len())
                .sum::<usize>()
        });
        assert_eq!(total, 300);
        assert!(without_transaction_control(&sql).is_empty(), "{sql:?}");
        // Each order points back at its customer without SQL.
        let (ok, sql) = capture(|| {
            customers.iter().all(|c| {
                c.related(Customer::orders).unwrap().iter().all(|o| {
                    o.related(Order::customer)
                        .unwrap()
                        .is_some_and(|p| p.ptr_eq(c))
                })
            })
        });
        assert!(ok);
        assert!(without_transaction_control(&sql).is_empty(), "{sql:?}");

        // The many-to-one side: the customers of 300 orders in one more SELECT.
        let mut s = f.session();
        let (orders, sql) = capture(|| {
            s.query::<Order>()
                .options(selectin(Order::customer))
                .all()
                .expect("query")
        });
        assert_eq!(orders.len(), 300);
        assert_eq!(shape(&sql), strings(&["SELECT orders", "SELECT customers"]));
        let (_, sql) = capture(|| {
            for o in &orders {
                o.related(Order::customer).unwrap().expect("customer");
            }
        });
        assert!(without_transaction_control(&sql).is_empty(), "{sql:?}");
        Ok(())
    })
}

#[test]
fn a_new_tree_in_one_table_is_inserted_a_level_per_statement() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let root = s.add(node(
            "root",
            vec![node("a", vec![node("a1", vec![])]), node("b", vec![])],
        ))?;
        let ((), sql) = capture(|| s.commit().expect("commit"));
        assert_eq!(
            shape(&sql),
            strings(&["INSERT nodes", "INSERT nodes", "INSERT nodes"]),
            "{sql:?}"
        );
        let conn = db.engine().connection()?;
        let parent_of = |name: &str| -> Result<i64, orm::CoreError> {
            query_i64(
                &conn,
                &format!(
                    "SELECT coalesce(p.id, 0) FROM nodes n LEFT JOIN nodes p ON p.id = n.parent_id \
                     WHERE n.name = {}",
                    db.param(1)
                ),
                &[name.into()],
            )
        };
        let root_id = root.read()?.id.unwrap();
        assert_eq!(parent_of("root")?, 0);
        assert_eq!(parent_of("a")?, root_id);
        assert_eq!(parent_of("b")?, root_id);
        let a = root.related(Node::children)?[0].clone();
        assert_eq!(parent_of("a1")?, a.read()?.id.unwrap());

        // Moving a subtree: `set_related` updates both sides in memory.
        let b = root.related(Node::children)?[1].clone();
        let a1 = a.related(Node::children)?[0].clone();
        a1.set_related(Node::parent, Some(&b))?;
        assert!(a.related(Node::children)?.is_empty());
        assert!(b.related(Node::children)?[0].ptr_eq(&a1));
        s.commit()?;
        assert_eq!(parent_of("a1")?, b.read()?.id.unwrap());
        Ok(())
    })
}

#[test]
fn a_row_that_is_its_own_ancestor_is_rejected() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let a = s.add(node("a", vec![]))?;
        let err = a.append(Node::children, &a).expect_err("own child");
        assert!(
            matches!(err, Error::CircularRows { table: "nodes" }),
            "{err:?}"
        );

        // a -> b -> a, both new: no INSERT order can fill the keys in.
        let b = a.append(Node::children, node("b", vec![]))?;
        b.append(Node::children, &a)?;
        let err = s.flush().expect_err("cycle");
        assert!(
            matches!(err, Error::CircularRows { table: "nodes" }),
            "{err:?}"
        );
        s.rollback()?;
        assert_eq!(count_rows(&db.engine(), "nodes")?, 0);
        Ok(())
    })
}

/// Two tables referencing each other.
#[derive(Mapped, Debug)]
#[mapped(table = "lefts")]
pub struct Left {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "rights.id")]
    pub right_id: Option<i64>,
}

#[derive(Mapped, Debug)]
#[mapped(table = "rights")]
pub struct Right {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "lefts.id")]
    pub left_id: Option<i64>,
}

#[test]
fn tables_referencing_each_other_cannot_be_inserted_in_one_flush() {
    for_each_db(|db| {
        // The cycle cannot be created with inline constraints: plain tables will do, the
        // metadata still declares it.
        let conn = db.engine().connection()?;
        let pk = if db.is_postgres() {
            "bigserial PRIMARY KEY"
        } else {
            "INTEGER PRIMARY KEY"
        };
        conn.execute(
            &format!("CREATE TABLE lefts (id {pk}, right_id bigint)"),
            &[],
        )?;
        conn.execute(
            &format!("CREATE TABLE rights (id {pk}, left_id bigint)"),
            &[],
        )?;
        drop(conn);
        let f = sessionmaker().bind(db.engine()).build();
        let mut s = f.session();
        s.add(Left {
            id: None,
            right_id: None,
        })?;
        s.add(Right {
            id: None,
            left_id: None,
        })?;
        let err = s.flush().expect_err("cycle");
        match &err {
            Error::CircularDependency { tables } => {
                assert_eq!(tables.len(), 2);
                assert!(tables.contains(&"lefts") && tables.contains(&"rights"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("lefts"), "{err}");
        s.rollback()?;
        // One table at a time is fine.
        s.add(Left {
            id: None,
            right_id: None,
        })?;
        s.commit()?;
        assert_eq!(count_rows(&db.engine(), "lefts")?, 1);
        Ok(())
    })
}

#[test]
fn joined_loads_a_relationship_in_the_query_itself() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        for i in 0..100 {
            let orders = (0..i % 4).map(|j| order(&format!("o{j}"), &[])).collect();
            s.add(customer(&format!("c{i:03}"), orders))?;
        }
        s.commit()?;
        s.close()?;

        // One statement; each customer once, though its orders repeat its row; customers
        // without orders have empty collections.
        let mut s = f.session();
        let (customers, sql) = capture(|| {
            s.query::<Customer>()
                .options(joined(Customer::orders))
                .order_by(Customer::name)
                .all()
                .expect("query")
        });
        assert_eq!(shape(&sql), strings(&["SELECT customers"]), "{sql:?}");
        assert!(sql[sql.len() - 1].contains("LEFT OUTER JOIN"), "{sql:?}");
        assert_eq!(customers.len(), 100);
        let names: Vec<String> = customers
            .iter()
            .map(|c| c.read().unwrap().name.clone())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "the query's order is kept");
        let (counts, sql) = capture(|| {
            customers
                .iter()
                .map(|c| c.related(Customer::orders).expect("loaded").len())
                .collect::<Vec<usize>>()
        });
        assert!(without_transaction_control(&sql).is_empty(), "{sql:?}");
        assert_eq!(counts, (0..100).map(|i| i % 4).collect::<Vec<usize>>());
        let orders = customers[3].related(Customer::orders)?;
        let items: Vec<String> = orders
            .iter()
            .map(|o| o.read().unwrap().item.clone())
            .collect();
        assert_eq!(items, ["o0", "o1", "o2"], "children in key order");
        assert!(orders[0]
            .related(Order::customer)?
            .is_some_and(|c| c.ptr_eq(&customers[3])));

        // A reference: one statement too.
        s.close()?;
        let mut s = f.session();
        let (orders, sql) = capture(|| {
            s.query::<Order>()
                .options(joined(Order::customer))
                .all()
                .expect("query")
        });
        assert_eq!(shape(&sql), strings(&["SELECT orders"]), "{sql:?}");
        assert_eq!(orders.len(), 150);
        let (ok, sql) = capture(|| {
            orders
                .iter()
                .all(|o| o.related(Order::customer).unwrap().is_some())
        });
        assert!(ok);
        assert!(without_transaction_control(&sql).is_empty(), "{sql:?}");

        // Under a LIMIT a joined collection would skew the count: it loads with selectin.
        s.close()?;
        let mut s = f.session();
        let (first, sql) = capture(|| {
            s.query::<Customer>()
                .options(joined(Customer::orders))
                .filter(Customer::name.eq("c003"))
                .first()
                .expect("query")
                .expect("c003")
        });
        assert_eq!(
            shape(&sql),
            strings(&["SELECT customers", "SELECT orders"]),
            "{sql:?}"
        );
        assert_eq!(first.read()?.orders.loaded().map(<[_]>::len), Some(3));

        // One table twice: the joined copy goes by an alias.
        s.close()?;
        let mut s = f.session();
        s.add(node(
            "root",
            vec![node("a", vec![node("a1", vec![])]), node("b", vec![])],
        ))?;
        s.commit()?;
        s.close()?;
        let mut s = f.session();
        let (nodes, sql) = capture(|| {
            s.query::<Node>()
                .options(joined(Node::children))
                .options(joined(Node::parent))
                .all()
                .expect("query")
        });
        assert_eq!(shape(&sql), strings(&["SELECT nodes"]), "{sql:?}");
        assert_eq!(nodes.len(), 4);
        let (shape_of_tree, sql) = capture(|| {
            nodes
                .iter()
                .map(|n| {
                    let d = n.read().unwrap();
                    let parent = n
                        .related(Node::parent)
                        .unwrap()
                        .map(|p| p.read().unwrap().name.clone());
                    (d.name.clone(), d.children.loaded().unwrap().len(), parent)
                })
                .collect::<Vec<_>>()
        });
        assert!(without_transaction_control(&sql).is_empty(), "{sql:?}");
        let mut shape_of_tree = shape_of_tree;
        shape_of_tree.sort();
        assert_eq!(
            shape_of_tree,
            [
                ("a".to_owned(), 1, Some("root".to_owned())),
                ("a1".to_owned(), 0, Some("a".to_owned())),
                ("b".to_owned(), 0, Some("root".to_owned())),
                ("root".to_owned(), 2, None),
            ]
        );
        Ok(())
    })
}

#[test]
fn merge_cascades_to_the_loaded_related_objects() {
    for_each_db(|db| {
        let f = factory(db);
        let mut s = f.session();
        let ed = s.add(customer("ed", vec![order("pen", &[1]), order("ink", &[])]))?;
        s.commit()?;
        let orders = ed.related(Customer::orders)?;
        orders[0].related(Order::lines)?;
        s.expunge(&ed)?;
        s.close()?;

        // Changed while detached: the order's item, and a new order.
        orders[0].set(Order::item, "quill".to_owned())?;
        ed.append(Customer::orders, order("pad", &[5]))?;

        let mut s = f.session();
        let (copy, merge_sql) = capture(|| s.merge(&ed).expect("merge"));
        assert!(!copy.ptr_eq(&ed));
        let copies = copy.related(Customer::orders)?;
        assert_eq!(copies.len(), 3, "the merged copy holds the merged orders");
        assert!(copies.iter().all(|o| o.session_id() == copy.session_id()));
        assert!(copies
            .iter()
            .all(|o| !orders.iter().any(|src| src.ptr_eq(o))));
        let (pen_copy, pad_copy) = (copies[0].clone(), copies[2].clone());
        assert_eq!(pen_copy.read()?.item, "quill");
        assert_eq!(pad_copy.state(), ObjectState::Pending);
        assert!(pad_copy
            .related(Order::customer)?
            .is_some_and(|c| c.ptr_eq(&copy)));
        // Two levels: the lines of the pen came along, pointing at the copies.
        let lines = pen_copy.related(Order::lines)?;
        assert_eq!(lines.len(), 1);
        let ((), sql) = capture(|| s.commit().expect("commit"));
        // Merging loads each object (autoflushing the changes merged so far); the commit
        // writes the rest. Every change is written once.
        let writes: Vec<String> = shape(&[merge_sql, sql].concat())
            .into_iter()
            .filter(|w| !w.starts_with("SELECT"))
            .collect();
        assert_eq!(
            writes,
            strings(&["UPDATE orders", "INSERT orders", "INSERT order_lines"]),
        );
        assert_eq!(count_rows(&db.engine(), "orders")?, 3);
        assert_eq!(count_rows(&db.engine(), "order_lines")?, 2);
        let conn = db.engine().connection()?;
        let sql = format!("SELECT count(*) FROM orders WHERE item = {}", db.param(1));
        assert_eq!(query_i64(&conn, &sql, &["quill".into()])?, 1);
        Ok(())
    })
}
