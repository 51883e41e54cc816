//! The peers of the benchmark: diesel and SeaORM on the workloads of `benches/compare.rs`,
//! against the same PostgreSQL database (schema `orm_bench`, recreated here and dropped at
//! the end), printing rows in the same format.
//!
//!     cargo run --release --manifest-path benches/peers/Cargo.toml
//!
//! Environment: `DATABASE_URL`, `BENCH_REPS` / `BENCH_QUICK`, `BENCH_WORKLOADS` and
//! `BENCH_RESULTS` as for `compare.rs`. When `BENCH_RESULTS` already holds the raw rows of a
//! `compare` run (as in `run.sh`), ratios are to the best raw technique of that run.
//!
//! W5 (gets of objects already held) has no peer here: neither diesel nor SeaORM has an
//! identity map; their equivalent is a SELECT per key, which `compare` measures raw.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Integer;

type R<T> = Result<T, Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------------------------
// diesel models.
// ---------------------------------------------------------------------------------------------

mod schema {
    diesel::table! {
        users (id) {
            id -> Int8,
            name -> Text,
            hair_color -> Nullable<Text>,
            age -> Int4,
        }
    }
    diesel::table! {
        posts (id) {
            id -> Int8,
            user_id -> Int8,
            title -> Text,
            body -> Nullable<Text>,
        }
    }
    diesel::joinable!(posts -> users (user_id));
    diesel::allow_tables_to_appear_in_same_query!(users, posts);
}

use schema::{posts, users};

#[allow(dead_code)] // Loaded, never read: the benchmark only builds the objects.
#[derive(Queryable, Selectable, Identifiable, Debug)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct DUser {
    id: i64,
    name: String,
    hair_color: Option<String>,
    age: i32,
}

#[allow(dead_code)]
#[derive(Queryable, Selectable, Identifiable, Associations, Debug)]
#[diesel(belongs_to(DUser, foreign_key = user_id))]
#[diesel(table_name = posts, check_for_backend(diesel::pg::Pg))]
struct DPost {
    id: i64,
    user_id: i64,
    title: String,
    body: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewDUser<'a> {
    name: &'a str,
    hair_color: Option<&'a str>,
    age: i32,
}

/// A user object of W1: the id is filled in after the insert.
struct UserObj {
    id: Option<i64>,
    name: String,
    hair_color: Option<String>,
    age: i32,
}

fn new_users(n: usize) -> Vec<UserObj> {
    (1..=n)
        .map(|i| UserObj {
            id: None,
            name: format!("user{i}"),
            hair_color: (i % 2 == 0).then(|| "brown".to_owned()),
            age: (i % 90) as i32,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SeaORM entities.
// ---------------------------------------------------------------------------------------------

mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub name: String,
        pub hair_color: Option<String>,
        pub age: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::post::Entity")]
        Post,
    }

    impl Related<super::post::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Post.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "posts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        pub title: String,
        pub body: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::UserId",
            to = "super::user::Column::Id"
        )]
        User,
    }

    impl Related<super::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

// ---------------------------------------------------------------------------------------------
// The harness (as in compare.rs).
// ---------------------------------------------------------------------------------------------

struct Sample {
    workload: &'static str,
    contender: String,
    ops: usize,
    times: Vec<Duration>,
}

impl Sample {
    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        let n = t.len();
        if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2
        }
    }
    fn min(&self) -> Duration {
        self.times.iter().copied().min().unwrap_or_default()
    }
}

type Run<'a> = Box<dyn FnMut(usize) -> R<Duration> + 'a>;

struct Bench {
    reps: usize,
    workloads: Vec<String>,
    samples: Vec<Sample>,
}

impl Bench {
    fn wants(&self, w: &str) -> bool {
        self.workloads.iter().any(|x| x == w)
    }

    /// One warm-up repetition each, then the repetitions interleaved.
    fn run(
        &mut self,
        workload: &'static str,
        ops: usize,
        mut contenders: Vec<(&str, Run<'_>)>,
    ) -> R<()> {
        let started = Instant::now();
        eprint!(
            "  pg {workload}: {} contenders x {} reps ...",
            contenders.len(),
            self.reps
        );
        for (name, run) in &mut contenders {
            run(0).map_err(|e| format!("{workload} {name}: {e}"))?;
        }
        let mut times = vec![Vec::new(); contenders.len()];
        for rep in 1..=self.reps {
            for (i, (name, run)) in contenders.iter_mut().enumerate() {
                times[i].push(run(rep).map_err(|e| format!("{workload} {name}: {e}"))?);
            }
        }
        eprintln!(" {:.1} s", started.elapsed().as_secs_f64());
        for ((name, _), times) in contenders.into_iter().zip(times) {
            self.samples.push(Sample {
                workload,
                contender: name.to_owned(),
                ops,
                times,
            });
        }
        Ok(())
    }
}

fn timed(body: impl FnOnce() -> R<()>) -> R<Duration> {
    let t = Instant::now();
    body()?;
    Ok(t.elapsed())
}

fn fmt_dur(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Best raw median per PostgreSQL workload, from the `compare` rows of `BENCH_RESULTS`.
fn raw_baselines(path: Option<&str>) -> HashMap<String, u128> {
    let mut best: HashMap<String, u128> = HashMap::new();
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return best;
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 7 && f[0] == "RESULT" && f[1] == "pg" && f[3] == "raw" {
            if let Ok(median) = f[6].parse::<u128>() {
                let e = best.entry(f[2].to_owned()).or_insert(median);
                *e = (*e).min(median);
            }
        }
    }
    best
}

fn print_table(samples: &[Sample], baselines: &HashMap<String, u128>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<8} {:<56} {:>11} {:>11} {:>10} {:>8}",
        "db", "workload", "contender", "median", "min", "per op", "x raw"
    );
    for s in samples {
        let ratio = baselines.get(s.workload).map_or("-".to_owned(), |&b| {
            format!("{:.2}", s.median().as_nanos() as f64 / b as f64)
        });
        let _ = writeln!(
            out,
            "{:<7} {:<8} {:<56} {:>11} {:>11} {:>10} {:>8}",
            "pg",
            s.workload,
            format!("peer: {}", s.contender),
            fmt_dur(s.median()),
            fmt_dur(s.min()),
            fmt_dur(s.median() / s.ops.max(1) as u32),
            ratio
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Setup through diesel's connection (never timed).
// ---------------------------------------------------------------------------------------------

fn truncate(c: &mut PgConnection) -> R<()> {
    c.batch_execute("TRUNCATE users, posts RESTART IDENTITY CASCADE")?;
    Ok(())
}

fn seed(c: &mut PgConnection, n: usize, posts_per_user: usize) -> R<()> {
    truncate(c)?;
    diesel::sql_query(
        "INSERT INTO users (name, hair_color, age) SELECT 'user' || g, \
         CASE WHEN g % 2 = 0 THEN 'brown' END, g % 90 FROM generate_series(1, $1) g",
    )
    .bind::<Integer, _>(n as i32)
    .execute(c)?;
    if posts_per_user > 0 {
        diesel::sql_query(
            "INSERT INTO posts (user_id, title, body) SELECT u.id, 'post ' || k || ' of ' || u.id, \
             CASE WHEN k % 2 = 0 THEN 'some body text' END \
             FROM users u, generate_series(1, $1) k ORDER BY u.id, k",
        )
        .bind::<Integer, _>(posts_per_user as i32)
        .execute(c)?;
    }
    c.batch_execute("VACUUM ANALYZE users, posts")?;
    Ok(())
}

const SCHEMA: &str = "
    DROP SCHEMA IF EXISTS orm_bench CASCADE;
    CREATE SCHEMA orm_bench;
    CREATE TABLE orm_bench.users (
        id bigserial PRIMARY KEY, name text NOT NULL, hair_color text NULL, age int NOT NULL);
    CREATE TABLE orm_bench.posts (
        id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES orm_bench.users,
        title text NOT NULL, body text NULL);";

fn main() -> R<()> {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    let reps = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3 } else { 20 })
        .max(1);
    let workloads = std::env::var("BENCH_WORKLOADS")
        .unwrap_or_else(|_| "W1,W2,W3,W4,W5,W6".into())
        .split(',')
        .map(|s| s.trim().to_uppercase())
        .collect();
    let results = std::env::var("BENCH_RESULTS")
        .ok()
        .filter(|s| !s.is_empty());
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3Dorm_bench");

    let mut admin = PgConnection::establish(&base)?;
    admin.batch_execute(SCHEMA)?;
    let mut b = Bench {
        reps,
        workloads,
        samples: Vec::new(),
    };
    eprintln!("peers (diesel, SeaORM): {reps} timed repetitions per contender");
    let outcome = run(&mut b, &url, &base);
    admin.batch_execute("DROP SCHEMA IF EXISTS orm_bench CASCADE")?;
    outcome?;

    let baselines = raw_baselines(results.as_deref());
    println!("\n{}", print_table(&b.samples, &baselines));
    println!("(medians and mins of {reps} repetitions; ratios to the best raw technique of the compare run in BENCH_RESULTS, when given)");
    if let Some(path) = results {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for s in &b.samples {
            writeln!(
                f,
                "RESULT\tpg\t{}\tpeer\t{}\t{}\t{}\t{}\t{}",
                s.workload,
                s.contender,
                s.ops,
                s.median().as_nanos(),
                s.min().as_nanos(),
                s.times.len()
            )?;
        }
    }
    Ok(())
}

fn run(b: &mut Bench, url: &str, base: &str) -> R<()> {
    use sea_orm::{
        ActiveModelTrait, ColumnTrait, ConnectOptions, Database, EntityTrait, LoaderTrait,
        QueryFilter, QueryOrder, Set, TransactionTrait,
    };
    use std::cell::RefCell;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let setup = RefCell::new(PgConnection::establish(url)?);
    let diesel = RefCell::new(PgConnection::establish(url)?);
    let sea = rt.block_on(async {
        let mut opts = ConnectOptions::new(base.to_owned());
        opts.max_connections(2)
            .min_connections(1)
            .sqlx_logging(false)
            .set_schema_search_path("orm_bench");
        Database::connect(opts).await
    })?;
    let rt = &rt;
    let sea = &sea;
    let (setup, diesel) = (&setup, &diesel);

    // ---- W1
    if b.wants("W1") {
        const N: usize = 10_000;
        let contenders: Vec<(&str, Run<'_>)> = vec![
            (
                "diesel insert_into().values(&vec).returning(id)",
                Box::new(|_| {
                    truncate(&mut setup.borrow_mut())?;
                    let mut objs = new_users(N);
                    let mut c = diesel.borrow_mut();
                    timed(|| {
                        c.transaction(|c| {
                            let rows: Vec<NewDUser<'_>> = objs
                                .iter()
                                .map(|u| NewDUser {
                                    name: &u.name,
                                    hair_color: u.hair_color.as_deref(),
                                    age: u.age,
                                })
                                .collect();
                            let ids: Vec<i64> = diesel::insert_into(users::table)
                                .values(&rows)
                                .returning(users::id)
                                .get_results(c)?;
                            drop(rows);
                            for (u, id) in objs.iter_mut().zip(ids) {
                                u.id = Some(id);
                            }
                            diesel::QueryResult::Ok(())
                        })?;
                        Ok(())
                    })
                }),
            ),
            (
                "SeaORM insert_many().exec_with_returning_keys",
                Box::new(|_| {
                    truncate(&mut setup.borrow_mut())?;
                    let mut objs = new_users(N);
                    rt.block_on(async {
                        let t = Instant::now();
                        let txn = sea.begin().await?;
                        let models = objs.iter().map(|u| user::ActiveModel {
                            name: Set(u.name.clone()),
                            hair_color: Set(u.hair_color.clone()),
                            age: Set(u.age),
                            ..Default::default()
                        });
                        let ids = user::Entity::insert_many(models)
                            .exec_with_returning_keys(&txn)
                            .await?;
                        for (u, id) in objs.iter_mut().zip(ids) {
                            u.id = Some(id);
                        }
                        txn.commit().await?;
                        Ok(t.elapsed())
                    })
                }),
            ),
        ];
        b.run("W1", N, contenders)?;
    }

    if b.wants("W2") || b.wants("W3") {
        seed(&mut setup.borrow_mut(), 10_000, 0)?;
    }
    if b.wants("W2") {
        const N: usize = 10_000;
        let contenders: Vec<(&str, Run<'_>)> = vec![
            (
                "diesel users.load::<User>()",
                Box::new(|_| {
                    let mut c = diesel.borrow_mut();
                    let mut kept = Vec::new();
                    let t = timed(|| {
                        kept = users::table.select(DUser::as_select()).load(&mut *c)?;
                        Ok(())
                    })?;
                    assert_eq!(kept.len(), N);
                    Ok(t)
                }),
            ),
            (
                "SeaORM Entity::find().all()",
                Box::new(|_| {
                    rt.block_on(async {
                        let t = Instant::now();
                        let all = user::Entity::find().all(sea).await?;
                        let t = t.elapsed();
                        assert_eq!(all.len(), N);
                        Ok(t)
                    })
                }),
            ),
        ];
        b.run("W2", N, contenders)?;
    }

    if b.wants("W3") {
        const N: usize = 10_000;
        let contenders: Vec<(&str, Run<'_>)> = vec![
            (
                "diesel load, update(find(id)).set(age) per row",
                Box::new(|_| {
                    seed(&mut setup.borrow_mut(), N, 0)?;
                    let mut c = diesel.borrow_mut();
                    timed(|| {
                        c.transaction(|c| {
                            let mut all: Vec<DUser> =
                                users::table.select(DUser::as_select()).load(c)?;
                            for u in &mut all {
                                u.age += 1;
                            }
                            for u in &all {
                                diesel::update(users::table.find(u.id))
                                    .set(users::age.eq(u.age))
                                    .execute(c)?;
                            }
                            diesel::QueryResult::Ok(())
                        })?;
                        Ok(())
                    })
                }),
            ),
            (
                "SeaORM find().all(), ActiveModel.update per row",
                Box::new(|_| {
                    seed(&mut setup.borrow_mut(), N, 0)?;
                    rt.block_on(async {
                        let t = Instant::now();
                        let txn = sea.begin().await?;
                        let all = user::Entity::find().all(&txn).await?;
                        for m in all {
                            let age = m.age + 1;
                            let mut am: user::ActiveModel = m.into();
                            am.age = Set(age);
                            am.update(&txn).await?;
                        }
                        txn.commit().await?;
                        Ok(t.elapsed())
                    })
                }),
            ),
        ];
        b.run("W3", N, contenders)?;
    }

    if b.wants("W4") {
        seed(&mut setup.borrow_mut(), 100_000, 0)?;
        for (label, held) in [("W4-100k", 100_000usize), ("W4-1k", 1_000)] {
            let contenders: Vec<(&str, Run<'_>)> = vec![
                (
                    "diesel: load in tx, update one; time UPDATE + COMMIT",
                    Box::new(move |rep| {
                        let mut c = diesel.borrow_mut();
                        c.batch_execute("BEGIN")?;
                        let all: Vec<DUser> = users::table
                            .filter(users::id.le(held as i64))
                            .select(DUser::as_select())
                            .load(&mut *c)?;
                        let one = &all[(rep * 7919) % 1_000];
                        let t = timed(|| {
                            diesel::update(users::table.find(one.id))
                                .set(users::age.eq(one.age + 1))
                                .execute(&mut *c)?;
                            c.batch_execute("COMMIT")?;
                            Ok(())
                        })?;
                        drop(all);
                        Ok(t)
                    }),
                ),
                (
                    "SeaORM: load in txn, update one; time update + commit",
                    Box::new(move |rep| {
                        rt.block_on(async {
                            let txn = sea.begin().await?;
                            let all = user::Entity::find()
                                .filter(user::Column::Id.lte(held as i64))
                                .all(&txn)
                                .await?;
                            let one = all[(rep * 7919) % 1_000].clone();
                            let t = Instant::now();
                            let age = one.age + 1;
                            let mut am: user::ActiveModel = one.into();
                            am.age = Set(age);
                            am.update(&txn).await?;
                            txn.commit().await?;
                            let t = t.elapsed();
                            drop(all);
                            Ok(t)
                        })
                    }),
                ),
            ];
            b.run(label, 1, contenders)?;
        }
    }

    if b.wants("W6") {
        seed(&mut setup.borrow_mut(), 1_000, 10)?;
        let check = |lens: Vec<usize>| -> R<()> {
            if lens.len() != 1_000 || lens.iter().any(|&n| n != 10) {
                return Err("W6: wrong graph".into());
            }
            Ok(())
        };
        let contenders: Vec<(&str, Run<'_>)> = vec![
            (
                "diesel load users + belonging_to + grouped_by",
                Box::new(|_| {
                    let mut c = diesel.borrow_mut();
                    let mut kept: Vec<(DUser, Vec<DPost>)> = Vec::new();
                    let t = timed(|| {
                        let us: Vec<DUser> = users::table
                            .order_by(users::id)
                            .select(DUser::as_select())
                            .load(&mut *c)?;
                        let ps: Vec<DPost> = DPost::belonging_to(&us)
                            .order_by(posts::id)
                            .select(DPost::as_select())
                            .load(&mut *c)?;
                        kept = ps
                            .grouped_by(&us)
                            .into_iter()
                            .zip(us)
                            .map(|(p, u)| (u, p))
                            .collect();
                        Ok(())
                    })?;
                    check(kept.iter().map(|g| g.1.len()).collect())?;
                    Ok(t)
                }),
            ),
            (
                "SeaORM find().find_with_related(Post) (JOIN)",
                Box::new(|_| {
                    rt.block_on(async {
                        let t = Instant::now();
                        let graph = user::Entity::find()
                            .find_with_related(post::Entity)
                            .order_by_asc(user::Column::Id)
                            .order_by_asc(post::Column::Id)
                            .all(sea)
                            .await?;
                        let t = t.elapsed();
                        check(graph.iter().map(|g| g.1.len()).collect())?;
                        Ok(t)
                    })
                }),
            ),
            (
                "SeaORM find().all() + load_many(Post) (selectin)",
                Box::new(|_| {
                    rt.block_on(async {
                        let t = Instant::now();
                        let us = user::Entity::find()
                            .order_by_asc(user::Column::Id)
                            .all(sea)
                            .await?;
                        let ps = us.load_many(post::Entity, sea).await?;
                        let graph: Vec<(user::Model, Vec<post::Model>)> =
                            us.into_iter().zip(ps).collect();
                        let t = t.elapsed();
                        check(graph.iter().map(|g| g.1.len()).collect())?;
                        Ok(t)
                    })
                }),
            ),
            (
                "SeaORM find_also_related(Post) (flat pairs, no graph)",
                Box::new(|_| {
                    rt.block_on(async {
                        let t = Instant::now();
                        let pairs = user::Entity::find()
                            .find_also_related(post::Entity)
                            .order_by_asc(user::Column::Id)
                            .all(sea)
                            .await?;
                        let t = t.elapsed();
                        if pairs.len() != 10_000 {
                            return Err("W6: wrong pair count".into());
                        }
                        Ok(t)
                    })
                }),
            ),
        ];
        b.run("W6", 1_000, contenders)?;
    }
    Ok(())
}
