//! The side-by-side benchmark of issue 6: our ORM against the raw drivers, on PostgreSQL and
//! SQLite, in one run. Peers (diesel, SeaORM) live in `benches/peers`, SQLAlchemy in
//! `benches/sqlalchemy_bench.py`; `benches/run.sh` runs all of them and prints one table.
//!
//!     cargo bench --bench compare
//!
//! Environment:
//! - `DATABASE_URL`: the PostgreSQL server (default `postgresql://postgres@127.0.0.1:5432/postgres`).
//!   Everything happens in the schema `orm_bench`, recreated at the start and dropped at the end.
//! - `BENCH_REPS`: timed repetitions per contender (default 20; `BENCH_QUICK=1` makes it 3).
//!   W5 (nanosecond-scale lookups) runs 5 times as many.
//! - `BENCH_DB`: `pg`, `sqlite` or `pg,sqlite` (default).
//! - `BENCH_WORKLOADS`: a comma-separated subset of `W1,W2,W3,W4,W5,W6,MEM` (default all).
//! - `BENCH_RESULTS`: a file to append machine-readable result lines to (for `run.sh`).
//! - `BENCH_ONLY`: run only the contenders whose `kind: name` contains this text (for
//!   profiling one contender, e.g. `BENCH_ONLY=ours`).
//! - `GLIBC_TUNABLES`: `benches/run.sh` sets glibc's trim and mmap thresholds so that every
//!   contender runs with the allocator in the same steady state (see benches/README.md).
//!
//! Every contender runs one untimed warm-up repetition, then the repetitions of all contenders
//! of a workload are interleaved (rep 1 of each, rep 2 of each, ...), so a burst of load on a
//! shared machine hits all of them alike. Setup (truncating, seeding) is never timed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orm::prelude::*;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};

type R<T> = Result<T, Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------------------------
// A counting allocator, switched on only around the memory measurement.
// ---------------------------------------------------------------------------------------------

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        let now = CURRENT.fetch_add(delta, Ordering::Relaxed) + delta;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated and not freed since `start`, and the peak above the start, while `f` runs
/// and its result is held.
fn measure_alloc<T>(f: impl FnOnce() -> R<T>) -> R<(T, isize, isize)> {
    COUNTING.store(true, Ordering::SeqCst);
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    let retained = CURRENT.load(Ordering::SeqCst) - base;
    let peak = PEAK.load(Ordering::SeqCst) - base;
    COUNTING.store(false, Ordering::SeqCst);
    Ok((out?, retained, peak))
}

// ---------------------------------------------------------------------------------------------
// Models: the schema of the issue. Raw contenders read into the same structs.
// ---------------------------------------------------------------------------------------------

#[derive(Mapped, Debug)]
#[mapped(table = "users")]
pub struct User {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    pub name: String,
    pub hair_color: Option<String>,
    pub age: i32,
    /// Loaded by W6's `selectin` contender only; the other workloads leave it unloaded (or, for
    /// new users and the raw contenders, empty).
    #[mapped(relationship(back_populates = "user"))]
    pub posts: Collection<Post>,
}

#[derive(Mapped, Debug)]
#[mapped(table = "posts")]
pub struct Post {
    #[mapped(primary_key)]
    pub id: Option<i64>,
    #[mapped(foreign_key = "users.id")]
    pub user_id: i64,
    pub title: String,
    pub body: Option<String>,
    #[mapped(relationship(back_populates = "posts"))]
    pub user: Reference<User>,
}

fn new_users(n: usize) -> Vec<User> {
    (1..=n)
        .map(|i| User {
            id: None,
            name: format!("user{i}"),
            hair_color: (i % 2 == 0).then(|| "brown".to_owned()),
            age: (i % 90) as i32,
            posts: Collection::new(),
        })
        .collect()
}

const PG_SCHEMA: &str = "
    DROP SCHEMA IF EXISTS orm_bench CASCADE;
    CREATE SCHEMA orm_bench;
    CREATE TABLE orm_bench.users (
        id bigserial PRIMARY KEY, name text NOT NULL, hair_color text NULL, age int NOT NULL);
    CREATE TABLE orm_bench.posts (
        id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES orm_bench.users,
        title text NOT NULL, body text NULL);";

const SQLITE_SCHEMA: &str = "
    CREATE TABLE users (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, hair_color TEXT NULL, age INTEGER NOT NULL);
    CREATE TABLE posts (
        id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id),
        title TEXT NOT NULL, body TEXT NULL);";

// ---------------------------------------------------------------------------------------------
// Configuration and results.
// ---------------------------------------------------------------------------------------------

struct Config {
    reps: usize,
    pg: bool,
    sqlite: bool,
    workloads: Vec<String>,
    results: Option<String>,
    only: Option<String>,
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let reps = std::env::var("BENCH_REPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 3 } else { 20 })
            .max(1);
        let dbs = std::env::var("BENCH_DB").unwrap_or_else(|_| "pg,sqlite".into());
        let workloads = std::env::var("BENCH_WORKLOADS")
            .unwrap_or_else(|_| "W1,W2,W3,W4,W5,W6,MEM".into())
            .split(',')
            .map(|s| s.trim().to_uppercase())
            .collect();
        Config {
            reps,
            pg: dbs.split(',').any(|d| d.trim() == "pg"),
            sqlite: dbs.split(',').any(|d| d.trim() == "sqlite"),
            workloads,
            results: std::env::var("BENCH_RESULTS")
                .ok()
                .filter(|s| !s.is_empty()),
            only: std::env::var("BENCH_ONLY").ok().filter(|s| !s.is_empty()),
        }
    }

    fn wants(&self, w: &str) -> bool {
        self.workloads.iter().any(|x| x == w)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Our ORM.
    Ours,
    /// A hand-written technique on the raw driver: the baseline of the ratios.
    Raw,
    /// Shown for information; not a baseline.
    Info,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Raw => "raw",
            Kind::Info => "info",
        }
    }
}

struct Sample {
    db: &'static str,
    workload: &'static str,
    contender: String,
    kind: Kind,
    /// Rows or operations per repetition (for the per-op column).
    ops: usize,
    times: Vec<Duration>,
    /// CPU time of this (the only) thread during each timed part: the client's own work,
    /// without the time spent waiting for the server.
    cpu: Vec<Duration>,
}

impl Sample {
    fn median(&self) -> Duration {
        median(&self.times)
    }
    fn cpu_median(&self) -> Duration {
        median(&self.cpu)
    }
    fn min(&self) -> Duration {
        self.times.iter().copied().min().unwrap_or_default()
    }
}

fn median(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    let n = t.len();
    if n == 0 {
        Duration::ZERO
    } else if n % 2 == 1 {
        t[n / 2]
    } else {
        (t[n / 2 - 1] + t[n / 2]) / 2
    }
}

/// One contender of a workload: called with the repetition number (0 = warm-up), does its
/// own untimed setup and returns the time of the timed part.
struct Contender<'a> {
    name: String,
    kind: Kind,
    run: Box<dyn FnMut(usize) -> R<Time> + 'a>,
}

fn contender<'a>(name: &str, kind: Kind, run: impl FnMut(usize) -> R<Time> + 'a) -> Contender<'a> {
    Contender {
        name: name.to_owned(),
        kind,
        run: Box::new(run),
    }
}

/// Times `body` alone.
// Never inlined, so that a profiler can collect exactly the timed parts
// (`valgrind --tool=callgrind --toggle-collect='compare::timed*'`).
#[inline(never)]
/// W3 for ours, on either database: load every user, change `age` on each, commit. The
/// objects and the session are dropped outside the timed part.
fn ours_w3(factory: &SessionMaker) -> R<Time> {
    let mut kept = None;
    let t = timed(|| {
        let mut s = factory.session();
        let users = s.query::<User>().all()?;
        for u in &users {
            let age = u.get(User::age)?;
            u.set(User::age, age + 1)?;
        }
        s.commit()?;
        kept = Some((users, s));
        Ok(())
    })?;
    drop(kept);
    Ok(t)
}

#[inline(never)]
fn timed(body: impl FnOnce() -> R<()>) -> R<Time> {
    let cpu = thread_cpu();
    let t = Instant::now();
    body()?;
    let wall = t.elapsed();
    Ok(Time {
        wall,
        cpu: thread_cpu().saturating_sub(cpu),
    })
}

/// Wall-clock and CPU time of one timed part.
#[derive(Clone, Copy)]
struct Time {
    wall: Duration,
    cpu: Duration,
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`). The synchronous
/// drivers do their I/O on the calling thread, so this is all the client's work.
#[cfg(target_os = "linux")]
fn thread_cpu() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (64-bit Linux layout) for the call.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Duration {
    Duration::ZERO
}

struct Bench {
    cfg: Config,
    samples: Vec<Sample>,
    notes: Vec<String>,
}

impl Bench {
    fn run(
        &mut self,
        db: &'static str,
        workload: &'static str,
        ops: usize,
        reps: usize,
        mut contenders: Vec<Contender<'_>>,
    ) -> R<()> {
        if let Some(only) = &self.cfg.only {
            contenders.retain(|c| format!("{}: {}", c.kind.tag(), c.name).contains(only.as_str()));
        }
        if contenders.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        eprint!(
            "  {db} {workload}: {} contenders x {reps} reps ...",
            contenders.len()
        );
        for c in &mut contenders {
            (c.run)(0).map_err(|e| format!("{db} {workload} {}: {e}", c.name))?;
        }
        let mut times = vec![Vec::with_capacity(reps); contenders.len()];
        let mut cpu = vec![Vec::with_capacity(reps); contenders.len()];
        for rep in 1..=reps {
            for (i, c) in contenders.iter_mut().enumerate() {
                let t = (c.run)(rep).map_err(|e| format!("{db} {workload} {}: {e}", c.name))?;
                times[i].push(t.wall);
                cpu[i].push(t.cpu);
            }
        }
        eprintln!(" {:.1} s", started.elapsed().as_secs_f64());
        for ((c, times), cpu) in contenders.into_iter().zip(times).zip(cpu) {
            self.samples.push(Sample {
                db,
                workload,
                contender: c.name,
                kind: c.kind,
                ops,
                times,
                cpu,
            });
        }
        Ok(())
    }
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

/// W4's cases: (label, rows read in the transaction, objects (or rows) still held at commit).
/// "W4-1k-of-100k" is the control: the same 100,000 rows go through the client and the server
/// as in "W4-100k", so caches and server are in the same state, and only the number of objects
/// held differs.
const W4_CASES: [(&str, usize, usize); 3] = [
    ("W4-100k", 100_000, 100_000),
    ("W4-1k", 1_000, 1_000),
    ("W4-1k-of-100k", 100_000, 1_000),
];

/// The row W4 changes in repetition `rep`: one of the first 1,000 in every case, so the
/// database does the same work whatever the number of objects held.
fn w4_row(rep: usize) -> usize {
    (rep * 7919) % 1_000
}

fn workload_title(w: &str) -> &'static str {
    match w {
        "W1" => "W1 insert 10,000 users + commit, ids back",
        "W2" => "W2 load 10,000 users (fresh session)",
        "W3" => "W3 load 10,000, change age on all, commit",
        "W4-100k" => "W4 commit one change, 100,000 held (expire_on_commit)",
        "W4-1k" => "W4 commit one change, 1,000 held (expire_on_commit)",
        "W4-1k-of-100k" => "W4 (control) 100,000 read, 1,000 still held at commit",
        "W5" => "W5 1,000 get by primary key, objects held",
        "W5-miss" => "W5 (for comparison) 1,000 get, nothing held: a SELECT each",
        "W6" => "W6 1,000 users + 10 posts each as a graph",
        _ => "",
    }
}

/// The table: one block per database and workload, contenders by median, ratio to the best
/// raw technique of the same database and workload.
fn print_table(samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<13} {:<56} {:>11} {:>11} {:>10} {:>8} {:>11}",
        "db", "workload", "contender", "median", "min", "per op", "x raw", "client cpu"
    );
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for s in samples {
        if !keys.contains(&(s.db, s.workload)) {
            keys.push((s.db, s.workload));
        }
    }
    for (db, w) in keys {
        let mut rows: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.db == db && s.workload == w)
            .collect();
        rows.sort_by_key(|s| s.median());
        let best_raw = rows
            .iter()
            .filter(|s| s.kind == Kind::Raw)
            .map(|s| s.median())
            .min();
        let _ = writeln!(out, "-- {db}: {}", workload_title(w));
        for s in rows {
            let ratio = best_raw.map_or("-".to_owned(), |b| {
                format!("{:.2}", s.median().as_secs_f64() / b.as_secs_f64())
            });
            let _ = writeln!(
                out,
                "{:<7} {:<13} {:<56} {:>11} {:>11} {:>10} {:>8} {:>11}",
                db,
                w,
                format!("{}: {}", s.kind.tag(), s.contender),
                fmt_dur(s.median()),
                fmt_dur(s.min()),
                fmt_dur(s.median() / s.ops.max(1) as u32),
                ratio,
                fmt_dur(s.cpu_median())
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL.
// ---------------------------------------------------------------------------------------------

fn pg_urls() -> (String, String) {
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    let sep = if base.contains('?') { '&' } else { '?' };
    let in_schema = format!("{base}{sep}options=-csearch_path%3Dorm_bench");
    (base, in_schema)
}

/// Empties both tables and restarts the keys at 1.
fn pg_truncate(c: &mut Client) -> R<()> {
    c.batch_execute("TRUNCATE users, posts RESTART IDENTITY CASCADE")?;
    Ok(())
}

/// `n` users with ids 1..=n (and `posts_per_user` posts each), analyzed.
fn pg_seed(c: &mut Client, n: usize, posts_per_user: usize) -> R<()> {
    pg_truncate(c)?;
    c.execute(
        "INSERT INTO users (name, hair_color, age) SELECT 'user' || g, \
         CASE WHEN g % 2 = 0 THEN 'brown' END, g % 90 FROM generate_series(1, $1::int) g",
        &[&(n as i32)],
    )?;
    if posts_per_user > 0 {
        c.execute(
            "INSERT INTO posts (user_id, title, body) SELECT u.id, 'post ' || k || ' of ' || u.id, \
             CASE WHEN k % 2 = 0 THEN 'some body text' END \
             FROM users u, generate_series(1, $1::int) k ORDER BY u.id, k",
            &[&(posts_per_user as i32)],
        )?;
    }
    c.batch_execute("VACUUM ANALYZE users, posts")?;
    Ok(())
}

const PG_SELECT_USERS: &str = "SELECT id, name, hair_color, age FROM users";

fn pg_user(row: &postgres::Row) -> User {
    User {
        id: Some(row.get(0)),
        name: row.get(1),
        hair_color: row.get(2),
        age: row.get(3),
        posts: Collection::new(),
    }
}

fn pg_post(row: &postgres::Row, at: usize) -> Post {
    Post {
        id: Some(row.get(at)),
        user_id: row.get(at + 1),
        title: row.get(at + 2),
        body: row.get(at + 3),
        user: Reference::default(),
    }
}

/// Raw row -> struct, streaming.
/// Raw row -> struct. `Client::query` reads all rows in one `block_on` of the driver's
/// runtime; iterating `query_raw` enters the runtime once per row, which costs about 240 ns
/// of CPU per row here (see the two raw rows of W2), so the raw techniques use `query`.
fn pg_load_users(c: &mut Client, stmt: &postgres::Statement) -> R<Vec<User>> {
    Ok(c.query(stmt, &[])?.iter().map(pg_user).collect())
}

/// Raw row -> struct through `query_raw`'s iterator, row by row (the driver's streaming API).
fn pg_load_users_streamed(c: &mut Client, stmt: &postgres::Statement) -> R<Vec<User>> {
    let mut rows = c.query_raw(stmt, std::iter::empty::<i32>())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(pg_user(&row));
    }
    Ok(out)
}

/// A raw tokio-postgres client on a single-threaded runtime (the connection runs as a task on
/// it), as a user of the asynchronous driver writes one.
struct AsyncClient {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl AsyncClient {
    fn connect(url: &str) -> R<AsyncClient> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (client, connection) = runtime.block_on(tokio_postgres::connect(url, NoTls))?;
        runtime.spawn(connection);
        Ok(AsyncClient { runtime, client })
    }
}

/// Raw row -> struct through tokio-postgres's row stream, in one `block_on` for the whole
/// result: each row is decoded as it arrives, nothing is collected first.
fn pg_load_users_async(c: &AsyncClient, stmt: &postgres::Statement) -> R<Vec<User>> {
    use futures_util::TryStreamExt;
    c.runtime.block_on(async {
        let rows = c.client.query_raw(stmt, std::iter::empty::<i32>()).await?;
        let mut rows = std::pin::pin!(rows);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await? {
            out.push(pg_user(&row));
        }
        Ok(out)
    })
}

fn pg_load_users_tx(tx: &mut postgres::Transaction<'_>, sql: &str) -> R<Vec<User>> {
    Ok(tx.query(sql, &[])?.iter().map(pg_user).collect())
}

fn run_pg(b: &mut Bench) -> R<()> {
    let (admin_url, url) = pg_urls();
    let mut admin = Client::connect(&admin_url, NoTls)
        .map_err(|e| format!("cannot connect to PostgreSQL at {admin_url}: {e}"))?;
    let version: String = admin.query_one("SHOW server_version", &[])?.get(0);
    b.notes.push(format!("PostgreSQL {version}"));
    admin.batch_execute(PG_SCHEMA)?;
    let result = run_pg_workloads(b, &url);
    admin.batch_execute("DROP SCHEMA IF EXISTS orm_bench CASCADE")?;
    result
}

fn run_pg_workloads(b: &mut Bench, url: &str) -> R<()> {
    let reps = b.cfg.reps;
    let engine = Engine::connect(url)?;
    let factory = sessionmaker().bind(engine.clone()).build();
    let raw = RefCell::new(Client::connect(url, NoTls)?);
    let setup = RefCell::new(Client::connect(url, NoTls)?);

    // ---- W1: insert 10,000 users and commit, ids back in the objects.
    if b.cfg.wants("W1") {
        const N: usize = 10_000;
        let insert_one = raw.borrow_mut().prepare(
            "INSERT INTO users (name, hair_color, age) VALUES ($1, $2, $3) RETURNING id",
        )?;
        const CHUNK: usize = 1_000;
        let values_sql = {
            let mut sql = String::from("INSERT INTO users (name, hair_color, age) VALUES ");
            for i in 0..CHUNK {
                let p = i * 3;
                let _ = write!(
                    sql,
                    "{}(${}, ${}, ${})",
                    if i > 0 { ", " } else { "" },
                    p + 1,
                    p + 2,
                    p + 3
                );
            }
            sql.push_str(" RETURNING id");
            sql
        };
        let insert_values = raw.borrow_mut().prepare(&values_sql)?;
        let insert_unnest = raw.borrow_mut().prepare(
            "INSERT INTO users (name, hair_color, age) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int4[]) RETURNING id",
        )?;
        let truncate = || pg_truncate(&mut setup.borrow_mut());
        let contenders = vec![
            contender("session.add_all + commit", Kind::Ours, |_| {
                truncate()?;
                let users = new_users(N);
                let mut kept = None;
                let t = timed(|| {
                    let mut s = factory.session();
                    let objs = s.add_all(users)?;
                    s.commit()?;
                    kept = Some((objs, s));
                    Ok(())
                })?;
                let (objs, _s) = kept.expect("ran");
                assert!(objs[N - 1].identity_key().is_some());
                Ok(t)
            }),
            contender("INSERT .. RETURNING per row", Kind::Raw, |_| {
                truncate()?;
                let mut users = new_users(N);
                let mut c = raw.borrow_mut();
                timed(|| {
                    let mut tx = c.transaction()?;
                    for u in &mut users {
                        let row = tx.query_one(&insert_one, &[&u.name, &u.hair_color, &u.age])?;
                        u.id = Some(row.get(0));
                    }
                    tx.commit()?;
                    Ok(())
                })
            }),
            contender("multi-row VALUES (1,000 rows/stmt)", Kind::Raw, |_| {
                truncate()?;
                let mut users = new_users(N);
                let mut c = raw.borrow_mut();
                timed(|| {
                    let mut tx = c.transaction()?;
                    for chunk in users.chunks_mut(CHUNK) {
                        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(CHUNK * 3);
                        for u in chunk.iter() {
                            params.push(&u.name);
                            params.push(&u.hair_color);
                            params.push(&u.age);
                        }
                        let ids = if chunk.len() == CHUNK {
                            tx.query(&insert_values, &params)?
                        } else {
                            return Err("N must be a multiple of CHUNK".into());
                        };
                        for (u, row) in chunk.iter_mut().zip(ids) {
                            u.id = Some(row.get(0));
                        }
                    }
                    tx.commit()?;
                    Ok(())
                })
            }),
            contender("INSERT .. SELECT FROM unnest RETURNING", Kind::Raw, |_| {
                truncate()?;
                let mut users = new_users(N);
                let mut c = raw.borrow_mut();
                timed(|| {
                    let mut tx = c.transaction()?;
                    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
                    let hair: Vec<Option<&str>> =
                        users.iter().map(|u| u.hair_color.as_deref()).collect();
                    let ages: Vec<i32> = users.iter().map(|u| u.age).collect();
                    let ids = tx.query(&insert_unnest, &[&names, &hair, &ages])?;
                    for (u, row) in users.iter_mut().zip(ids) {
                        u.id = Some(row.get(0));
                    }
                    tx.commit()?;
                    Ok(())
                })
            }),
            contender("COPY BINARY (no ids back)", Kind::Info, |_| {
                truncate()?;
                let users = new_users(N);
                let mut c = raw.borrow_mut();
                timed(|| {
                    let mut tx = c.transaction()?;
                    let sink =
                        tx.copy_in("COPY users (name, hair_color, age) FROM STDIN BINARY")?;
                    let mut w =
                        BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::INT4]);
                    for u in &users {
                        w.write(&[&u.name, &u.hair_color, &u.age])?;
                    }
                    w.finish()?;
                    tx.commit()?;
                    Ok(())
                })
            }),
        ];
        b.run("pg", "W1", N, reps, contenders)?;
    }

    // ---- W2 and W3: 10,000 users.
    if b.cfg.wants("W2") || b.cfg.wants("W3") || b.cfg.wants("W5") {
        pg_seed(&mut setup.borrow_mut(), 10_000, 0)?;
    }
    if b.cfg.wants("W2") {
        const N: usize = 10_000;
        let select = raw.borrow_mut().prepare(PG_SELECT_USERS)?;
        let raw_async = AsyncClient::connect(url)?;
        let select_async = raw_async
            .runtime
            .block_on(raw_async.client.prepare(PG_SELECT_USERS))?;
        let contenders = vec![
            contender("query::<User>().all() (fresh session)", Kind::Ours, |_| {
                let mut kept = None;
                let t = timed(|| {
                    let mut s = factory.session();
                    let users = s.query::<User>().all()?;
                    drop(s);
                    kept = Some(users);
                    Ok(())
                })?;
                assert_eq!(kept.map(|u| u.len()), Some(N));
                Ok(t)
            }),
            contender("row -> struct (query_raw, streamed)", Kind::Raw, |_| {
                let mut kept = None;
                let mut c = raw.borrow_mut();
                let t = timed(|| {
                    kept = Some(pg_load_users_streamed(&mut c, &select)?);
                    Ok(())
                })?;
                assert_eq!(kept.map(|u| u.len()), Some(N));
                Ok(t)
            }),
            contender("row -> struct (query, buffered)", Kind::Raw, |_| {
                let mut kept = None;
                let mut c = raw.borrow_mut();
                let t = timed(|| {
                    kept = Some(pg_load_users(&mut c, &select)?);
                    Ok(())
                })?;
                assert_eq!(kept.map(|u| u.len()), Some(N));
                Ok(t)
            }),
            contender(
                "row -> struct (tokio-postgres, streamed in one block_on)",
                Kind::Raw,
                |_| {
                    let mut kept = None;
                    let t = timed(|| {
                        kept = Some(pg_load_users_async(&raw_async, &select_async)?);
                        Ok(())
                    })?;
                    assert_eq!(kept.map(|u| u.len()), Some(N));
                    Ok(t)
                },
            ),
        ];
        b.run("pg", "W2", N, reps, contenders)?;
    }

    if b.cfg.wants("W3") {
        const N: usize = 10_000;
        let update_one = raw
            .borrow_mut()
            .prepare("UPDATE users SET age = $1 WHERE id = $2")?;
        let update_unnest = raw.borrow_mut().prepare(
            "UPDATE users SET age = v.age FROM unnest($1::int8[], $2::int4[]) AS v(id, age) \
             WHERE users.id = v.id",
        )?;
        // Each repetition starts from the same freshly seeded, vacuumed table.
        let reseed = || pg_seed(&mut setup.borrow_mut(), N, 0);
        let contenders = vec![
            contender("query().all(), obj.set(age), commit", Kind::Ours, |_| {
                reseed()?;
                ours_w3(&factory)
            }),
            contender("load, UPDATE per row, commit", Kind::Raw, |_| {
                reseed()?;
                let mut c = raw.borrow_mut();
                timed(|| {
                    let mut tx = c.transaction()?;
                    let mut users = pg_load_users_tx(&mut tx, PG_SELECT_USERS)?;
                    for u in &mut users {
                        u.age += 1;
                    }
                    for u in &users {
                        tx.execute(&update_one, &[&u.age, &u.id])?;
                    }
                    tx.commit()?;
                    Ok(())
                })
            }),
            contender("load, UPDATE .. FROM unnest, commit", Kind::Raw, |_| {
                reseed()?;
                let mut c = raw.borrow_mut();
                timed(|| {
                    let mut tx = c.transaction()?;
                    let mut users = pg_load_users_tx(&mut tx, PG_SELECT_USERS)?;
                    for u in &mut users {
                        u.age += 1;
                    }
                    let ids: Vec<i64> = users.iter().map(|u| u.id.unwrap_or(0)).collect();
                    let ages: Vec<i32> = users.iter().map(|u| u.age).collect();
                    let n = tx.execute(&update_unnest, &[&ids, &ages])?;
                    assert_eq!(n as usize, N);
                    tx.commit()?;
                    Ok(())
                })
            }),
        ];
        b.run("pg", "W3", N, reps, contenders)?;
    }

    // ---- W5: 1,000 gets of held objects (table of 10,000 from W2).
    if b.cfg.wants("W5") {
        w5(b, "pg", &factory, reps, |ids: &[i64]| {
            let mut c = raw.borrow_mut();
            let stmt = c.prepare("SELECT id, name, hair_color, age FROM users WHERE id = $1")?;
            timed(|| {
                // In a transaction, as the session's SELECTs are.
                let mut tx = c.transaction()?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.push(pg_user(&tx.query_one(&stmt, &[id])?));
                }
                tx.commit()?;
                black_box(out);
                Ok(())
            })
        })?;
    }

    // ---- W4 and the memory measurement: 100,000 users.
    if b.cfg.wants("W4") || b.cfg.wants("MEM") {
        pg_seed(&mut setup.borrow_mut(), 100_000, 0)?;
    }
    if b.cfg.wants("W4") {
        for (label, read, held) in W4_CASES {
            let update = raw
                .borrow_mut()
                .prepare("UPDATE users SET age = age + 1 WHERE id = $1")?;
            let contenders = vec![
                contender("obj.set(age) on one; time commit()", Kind::Ours, |rep| {
                    let mut s = factory.session();
                    let mut users = s.query::<User>().filter(User::id.le(read as i64)).all()?;
                    users.truncate(held); // the others are dropped: no longer held
                    assert_eq!(users.len(), held);
                    let one = &users[w4_row(rep)];
                    let age = one.get(User::age)?;
                    one.set(User::age, age + 1)?;
                    let t = timed(|| Ok(s.commit()?))?;
                    assert!(one.is_expired());
                    drop((users, s));
                    Ok(t)
                }),
                contender("single UPDATE + COMMIT", Kind::Raw, |rep| {
                    let mut c = raw.borrow_mut();
                    let mut tx = c.transaction()?;
                    let mut held_rows = pg_load_users_tx(
                        &mut tx,
                        &format!("{PG_SELECT_USERS} WHERE id <= {read}"),
                    )?;
                    held_rows.truncate(held);
                    let id = held_rows[w4_row(rep)].id;
                    let t = timed(|| {
                        tx.execute(&update, &[&id])?;
                        tx.commit()?;
                        Ok(())
                    })?;
                    drop(held_rows);
                    Ok(t)
                }),
                // The same with the rows read by an earlier transaction: separates what holding
                // objects costs from what reading 100,000 rows in the same transaction costs
                // the server at COMMIT.
                contender(
                    "held since an earlier tx; time commit()",
                    Kind::Info,
                    |rep| {
                        let mut s = factory.session();
                        let users = s.query::<User>().filter(User::id.le(held as i64)).all()?;
                        s.commit()?;
                        let one = &users[w4_row(rep)];
                        let age = one.get(User::age)?; // reloads this one, in a new transaction
                        one.set(User::age, age + 1)?;
                        let t = timed(|| Ok(s.commit()?))?;
                        drop((users, s));
                        Ok(t)
                    },
                ),
                contender(
                    "raw, rows read by an earlier tx: UPDATE + COMMIT",
                    Kind::Info,
                    |rep| {
                        let mut c = raw.borrow_mut();
                        let stmt = c.prepare(&format!("{PG_SELECT_USERS} WHERE id <= {held}"))?;
                        let held_rows = pg_load_users(&mut c, &stmt)?;
                        let id = held_rows[w4_row(rep)].id;
                        let mut tx = c.transaction()?;
                        tx.query_one(&format!("{PG_SELECT_USERS} WHERE id = $1"), &[&id])?;
                        let t = timed(|| {
                            tx.execute(&update, &[&id])?;
                            tx.commit()?;
                            Ok(())
                        })?;
                        drop(held_rows);
                        Ok(t)
                    },
                ),
            ];
            // The "info" rows separate what holding objects costs from what reading the rows
            // in the same transaction costs the server at COMMIT; the control case needs none.
            let contenders = if read == held {
                contenders
            } else {
                contenders.into_iter().take(2).collect()
            };
            b.run("pg", label, 1, reps, contenders)?;
        }
    }

    if b.cfg.wants("MEM") {
        let select = raw.borrow_mut().prepare(PG_SELECT_USERS)?;
        // Streamed, so that the raw peak is the rows themselves, as ours is (our loader
        // streams too), not the driver's buffer of every row.
        memory(b, "pg", &factory, 100_000, || {
            pg_load_users_streamed(&mut raw.borrow_mut(), &select)
        })?;
    }

    // ---- W6: 1,000 users with 10 posts each.
    if b.cfg.wants("W6") {
        pg_seed(&mut setup.borrow_mut(), 1_000, 10)?;
        let join = raw.borrow_mut().prepare(
            "SELECT u.id, u.name, u.hair_color, u.age, p.id, p.user_id, p.title, p.body \
             FROM users u LEFT JOIN posts p ON p.user_id = u.id ORDER BY u.id, p.id",
        )?;
        let users_stmt = raw.borrow_mut().prepare(PG_SELECT_USERS)?;
        let posts_stmt = raw.borrow_mut().prepare(
            // Not `user_id = ANY($1)`: after five executions PostgreSQL may switch to a generic
            // plan that filters every post by a linear search of the 1,000-key array (24 ms
            // instead of 2 ms here). The semi-join is hashed whatever the plan.
            "SELECT p.id, p.user_id, p.title, p.body FROM posts p \
             WHERE p.user_id IN (SELECT unnest($1::int8[])) ORDER BY p.id",
        )?;
        let mut contenders = w6_ours(&factory);
        contenders.extend([
            contender("LEFT JOIN -> Vec<(User, Vec<Post>)>", Kind::Raw, |_| {
                let mut c = raw.borrow_mut();
                let mut kept = None;
                let t = timed(|| {
                    let rows = c.query(&join, &[])?;
                    let mut out: Vec<(User, Vec<Post>)> = Vec::new();
                    for row in rows {
                        let id: i64 = row.get(0);
                        if out.last().and_then(|(u, _)| u.id) != Some(id) {
                            out.push((pg_user(&row), Vec::new()));
                        }
                        if row.get::<_, Option<i64>>(4).is_some() {
                            let last = out.len() - 1;
                            out[last].1.push(pg_post(&row, 4));
                        }
                    }
                    kept = Some(out);
                    Ok(())
                })?;
                w6_check(
                    kept.as_deref()
                        .unwrap_or_default()
                        .iter()
                        .map(|g| g.1.len()),
                )?;
                Ok(t)
            }),
            contender(
                "2 queries (users; posts IN unnest($1)) + HashMap",
                Kind::Raw,
                |_| {
                    let mut c = raw.borrow_mut();
                    let mut kept = None;
                    let t = timed(|| {
                        let users = pg_load_users(&mut c, &users_stmt)?;
                        let ids: Vec<i64> = users.iter().filter_map(|u| u.id).collect();
                        let index: HashMap<i64, usize> =
                            ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
                        let mut out: Vec<(User, Vec<Post>)> =
                            users.into_iter().map(|u| (u, Vec::new())).collect();
                        for row in c.query(&posts_stmt, &[&ids])? {
                            let p = pg_post(&row, 0);
                            out[index[&p.user_id]].1.push(p);
                        }
                        kept = Some(out);
                        Ok(())
                    })?;
                    w6_check(
                        kept.as_deref()
                            .unwrap_or_default()
                            .iter()
                            .map(|g| g.1.len()),
                    )?;
                    Ok(t)
                },
            ),
        ]);
        b.run("pg", "W6", 1_000, reps, contenders)?;
    }
    Ok(())
}

/// Every user of W6 has its 10 posts.
fn w6_check(lens: impl ExactSizeIterator<Item = usize>) -> R<()> {
    if lens.len() != 1_000 {
        return Err(format!("W6: {} users instead of 1000", lens.len()).into());
    }
    let lens: Vec<usize> = lens.collect();
    if lens.iter().any(|&n| n != 10) {
        return Err("W6: a user without its 10 posts".into());
    }
    Ok(())
}

/// Users with their posts, as W6 builds them through our API.
type Graph = Vec<(Obj<User>, Vec<Obj<Post>>)>;

/// W6 through our API: the `User::posts` relationship loaded with `selectin` (one more SELECT
/// for the posts of all users, as SQLAlchemy's `selectinload`), and reading every user's posts
/// through it; and the graph built in user code from the two ways the query language offers:
/// one LEFT JOIN returning `(Obj<User>, Option<Obj<Post>>)` pairs through the identity map,
/// or two queries (`Post::user_id.in_(keys)`).
fn w6_ours(factory: &SessionMaker) -> Vec<Contender<'_>> {
    let check = |kept: Option<Graph>| {
        w6_check(
            kept.as_deref()
                .unwrap_or_default()
                .iter()
                .map(|g| g.1.len()),
        )
    };
    vec![
        contender(
            "query::<User>().options(selectin(User::posts)), related(User::posts)",
            Kind::Ours,
            move |_| {
                let mut kept = None;
                let t = timed(|| {
                    let mut s = factory.session();
                    let users = s
                        .query::<User>()
                        .options(selectin(User::posts))
                        .order_by(User::id.asc())
                        .all()?;
                    // Reading through the relationship: the posts are loaded, so no SQL.
                    let graph = users
                        .into_iter()
                        .map(|u| {
                            let posts = u.related(User::posts)?;
                            Ok((u, posts))
                        })
                        .collect::<R<Graph>>()?;
                    drop(s);
                    kept = Some(graph);
                    Ok(())
                })?;
                check(kept)?;
                Ok(t)
            },
        ),
        contender(
            "query::<(User, Option<Post>)>().outer_join::<Post>() + group",
            Kind::Ours,
            move |_| {
                let mut kept = None;
                let t = timed(|| {
                    let mut s = factory.session();
                    let pairs = s
                        .query::<(User, Option<Post>)>()
                        .outer_join::<Post>()
                        .order_by(User::id.asc())
                        .order_by(Post::id.asc())
                        .all()?;
                    let mut graph: Graph = Vec::new();
                    for (u, p) in pairs {
                        if !graph.last().is_some_and(|(last, _)| last.ptr_eq(&u)) {
                            graph.push((u, Vec::new()));
                        }
                        if let (Some(p), Some(last)) = (p, graph.last_mut()) {
                            last.1.push(p);
                        }
                    }
                    drop(s);
                    kept = Some(graph);
                    Ok(())
                })?;
                check(kept)?;
                Ok(t)
            },
        ),
        contender(
            "users, then posts where user_id.in_(keys) + group",
            Kind::Ours,
            move |_| {
                let mut kept = None;
                let t = timed(|| {
                    let mut s = factory.session();
                    let users = s.query::<User>().order_by(User::id.asc()).all()?;
                    let keys: Vec<i64> = users.iter().filter_map(|u| u.identity_key()).collect();
                    let index: HashMap<i64, usize> =
                        keys.iter().enumerate().map(|(i, &k)| (k, i)).collect();
                    let posts = s
                        .query::<Post>()
                        .filter(Post::user_id.in_(keys))
                        .order_by(Post::id.asc())
                        .all()?;
                    let mut graph: Graph = users.into_iter().map(|u| (u, Vec::new())).collect();
                    for p in posts {
                        let uid = p.read()?.user_id;
                        graph[index[&uid]].1.push(p);
                    }
                    drop(s);
                    kept = Some(graph);
                    Ok(())
                })?;
                check(kept)?;
                Ok(t)
            },
        ),
    ]
}

/// W5: 1,000 `get`s of objects the session holds, against a HashMap lookup (the floor), a
/// SELECT per key (`select_per_key`), and our `get` on a session that holds nothing.
fn w5(
    b: &mut Bench,
    db: &'static str,
    factory: &SessionMaker,
    reps: usize,
    select_per_key: impl FnMut(&[i64]) -> R<Time>,
) -> R<()> {
    const N: usize = 1_000;
    let ids: Vec<i64> = (1..=N as i64).rev().collect();
    // The objects stay held across repetitions: only the gets are timed.
    let mut session = factory.session();
    let held = session
        .query::<User>()
        .filter(User::id.le(N as i64))
        .all()?;
    assert_eq!(held.len(), N);
    let map: HashMap<i64, Arc<User>> = held
        .iter()
        .map(|o| -> R<(i64, Arc<User>)> {
            let u = o.read()?;
            let copy = User {
                id: u.id,
                name: u.name.clone(),
                hair_color: u.hair_color.clone(),
                age: u.age,
                posts: Collection::new(),
            };
            Ok((u.id.unwrap_or(0), Arc::new(copy)))
        })
        .collect::<R<_>>()?;
    let session = RefCell::new(session);
    let mut select_per_key = select_per_key;
    let contenders = vec![
        contender("session.get::<User>(id), all held", Kind::Ours, |_| {
            let mut s = session.borrow_mut();
            timed(|| {
                for &id in &ids {
                    black_box(s.get::<User>(id)?);
                }
                Ok(())
            })
        }),
        contender(
            "HashMap<i64, Arc<User>>::get (the floor)",
            Kind::Raw,
            |_| {
                timed(|| {
                    for id in &ids {
                        black_box(map.get(black_box(id)).cloned());
                    }
                    Ok(())
                })
            },
        ),
    ];
    b.run(db, "W5", N, reps * 5, contenders)?;
    drop(held);
    drop(session);
    let contenders = vec![
        contender(
            "session.get::<User>(id), none held (SELECT each)",
            Kind::Info,
            |_| {
                let mut s = factory.session();
                timed(|| {
                    let mut out = Vec::with_capacity(N);
                    for &id in &ids {
                        out.push(s.get::<User>(id)?);
                    }
                    black_box(out);
                    Ok(())
                })
            },
        ),
        contender("SELECT per key -> struct", Kind::Raw, |_| {
            select_per_key(&ids)
        }),
    ];
    b.run(db, "W5-miss", N, reps, contenders)?;
    Ok(())
}

/// Peak and retained bytes per object for 100,000 rows: ours (a session holding them, plus
/// the Vec<Obj> the query returns) against raw rows in a Vec<User>. Counted by the bench's
/// global allocator (requested sizes, so malloc's own per-block overhead is not included).
fn memory(
    b: &mut Bench,
    db: &'static str,
    factory: &SessionMaker,
    n: usize,
    raw_load: impl Fn() -> R<Vec<User>>,
) -> R<()> {
    // Warm the connections and statement caches first.
    drop(raw_load()?);
    drop(factory.session().query::<User>().all()?);
    let (rows, raw_retained, raw_peak) = measure_alloc(|| {
        let mut rows = raw_load()?;
        rows.shrink_to_fit();
        Ok(rows)
    })?;
    assert_eq!(rows.len(), n);
    drop(rows);
    let (held, ours_retained, ours_peak) = measure_alloc(|| {
        let mut s = factory.session();
        let mut users = s.query::<User>().all()?;
        users.shrink_to_fit();
        Ok((users, s))
    })?;
    assert_eq!(held.0.len(), n);
    drop(held);
    let per = |x: isize| x as f64 / n as f64;
    let line = format!(
        "{db}: {n} rows; struct User = {} bytes. raw Vec<User>: retained {:.1} B/row, peak {:.1} B/row. \
         ours (Vec<Obj<User>> + session): retained {:.1} B/object, peak {:.1} B/object. \
         => ours beyond the struct and its strings: {:.1} B/object retained, {:.1} B/object peak",
        std::mem::size_of::<User>(),
        per(raw_retained),
        per(raw_peak),
        per(ours_retained),
        per(ours_peak),
        per(ours_retained - raw_retained),
        per(ours_peak - raw_peak),
    );
    eprintln!("  {line}");
    b.notes.push(line);
    if let Some(path) = &b.cfg.results {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(
            f,
            "MEM\t{db}\t{n}\t{}\t{raw_retained}\t{raw_peak}\t{ours_retained}\t{ours_peak}",
            std::mem::size_of::<User>()
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SQLite.
// ---------------------------------------------------------------------------------------------

fn sqlite_reset(c: &rusqlite::Connection) -> R<()> {
    c.execute_batch("DELETE FROM posts; DELETE FROM users;")?;
    Ok(())
}

fn sqlite_seed(c: &rusqlite::Connection, n: usize, posts_per_user: usize) -> R<()> {
    sqlite_reset(c)?;
    c.execute(
        "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?1) \
         INSERT INTO users (name, hair_color, age) \
         SELECT 'user' || x, CASE WHEN x % 2 = 0 THEN 'brown' END, x % 90 FROM g",
        [n as i64],
    )?;
    if posts_per_user > 0 {
        c.execute(
            "WITH RECURSIVE k(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM k WHERE x < ?1) \
             INSERT INTO posts (user_id, title, body) \
             SELECT u.id, 'post ' || k.x || ' of ' || u.id, \
             CASE WHEN k.x % 2 = 0 THEN 'some body text' END \
             FROM users u, k ORDER BY u.id, k.x",
            [posts_per_user as i64],
        )?;
    }
    c.execute_batch("ANALYZE")?;
    Ok(())
}

fn sqlite_user(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: Some(row.get(0)?),
        name: row.get(1)?,
        hair_color: row.get(2)?,
        age: row.get(3)?,
        posts: Collection::new(),
    })
}

fn sqlite_post(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Post> {
    Ok(Post {
        id: Some(row.get(at)?),
        user_id: row.get(at + 1)?,
        title: row.get(at + 2)?,
        body: row.get(at + 3)?,
        user: Reference::default(),
    })
}

fn sqlite_load_users(c: &rusqlite::Connection, sql: &str) -> R<Vec<User>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map([], sqlite_user)?;
    Ok(rows.collect::<rusqlite::Result<Vec<User>>>()?)
}

fn run_sqlite(b: &mut Bench) -> R<()> {
    let path = std::env::temp_dir().join(format!("orm_bench_{}.db", std::process::id()));
    let remove = |p: &std::path::Path| {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut s = p.as_os_str().to_owned();
            s.push(suffix);
            let _ = std::fs::remove_file(s);
        }
    };
    remove(&path);
    let result = (|| -> R<()> {
        let raw = rusqlite::Connection::open(&path)?;
        raw.execute_batch("PRAGMA foreign_keys = ON")?;
        raw.execute_batch(SQLITE_SCHEMA)?;
        let version: String = raw.query_row("SELECT sqlite_version()", [], |r| r.get(0))?;
        b.notes.push(format!(
            "SQLite {version} (bundled), a file in {} with the default journal and synchronous=FULL",
            std::env::temp_dir().display()
        ));
        let engine = Engine::connect(&format!("sqlite://{}", path.display()))?;
        let factory = sessionmaker().bind(engine.clone()).build();
        run_sqlite_workloads(b, &factory, &raw)
    })();
    remove(&path);
    result
}

fn run_sqlite_workloads(
    b: &mut Bench,
    factory: &SessionMaker,
    raw: &rusqlite::Connection,
) -> R<()> {
    let reps = b.cfg.reps;
    const SELECT: &str = "SELECT id, name, hair_color, age FROM users";

    if b.cfg.wants("W1") {
        const N: usize = 10_000;
        const CHUNK: usize = 1_000;
        let values_sql = {
            let mut sql = String::from("INSERT INTO users (name, hair_color, age) VALUES ");
            for i in 0..CHUNK {
                sql.push_str(if i > 0 { ", (?, ?, ?)" } else { "(?, ?, ?)" });
            }
            sql.push_str(" RETURNING id");
            sql
        };
        let contenders = vec![
            contender("session.add_all + commit", Kind::Ours, |_| {
                sqlite_reset(raw)?;
                let users = new_users(N);
                let mut kept = None;
                let t = timed(|| {
                    let mut s = factory.session();
                    let objs = s.add_all(users)?;
                    s.commit()?;
                    kept = Some((objs, s));
                    Ok(())
                })?;
                let (objs, _s) = kept.expect("ran");
                assert!(objs[N - 1].identity_key().is_some());
                Ok(t)
            }),
            contender("prepared INSERT .. RETURNING per row", Kind::Raw, |_| {
                sqlite_reset(raw)?;
                let mut users = new_users(N);
                timed(|| {
                    raw.execute_batch("BEGIN")?;
                    {
                        let mut stmt = raw.prepare_cached(
                            "INSERT INTO users (name, hair_color, age) VALUES (?1, ?2, ?3) RETURNING id",
                        )?;
                        for u in &mut users {
                            u.id = Some(stmt.query_row(
                                rusqlite::params![u.name, u.hair_color, u.age],
                                |r| r.get(0),
                            )?);
                        }
                    }
                    raw.execute_batch("COMMIT")?;
                    Ok(())
                })
            }),
            contender("multi-row VALUES (1,000 rows/stmt)", Kind::Raw, |_| {
                sqlite_reset(raw)?;
                let mut users = new_users(N);
                timed(|| {
                    raw.execute_batch("BEGIN")?;
                    {
                        let mut stmt = raw.prepare_cached(&values_sql)?;
                        for chunk in users.chunks_mut(CHUNK) {
                            let mut params: Vec<&dyn rusqlite::ToSql> =
                                Vec::with_capacity(CHUNK * 3);
                            for u in chunk.iter() {
                                params.push(&u.name);
                                params.push(&u.hair_color);
                                params.push(&u.age);
                            }
                            let ids: Vec<i64> = stmt
                                .query_map(&params[..], |r| r.get(0))?
                                .collect::<rusqlite::Result<_>>()?;
                            for (u, id) in chunk.iter_mut().zip(ids) {
                                u.id = Some(id);
                            }
                        }
                    }
                    raw.execute_batch("COMMIT")?;
                    Ok(())
                })
            }),
        ];
        b.run("sqlite", "W1", N, reps, contenders)?;
    }

    if b.cfg.wants("W2") || b.cfg.wants("W3") || b.cfg.wants("W5") {
        sqlite_seed(raw, 10_000, 0)?;
    }
    if b.cfg.wants("W2") {
        const N: usize = 10_000;
        let contenders = vec![
            contender("query::<User>().all() (fresh session)", Kind::Ours, |_| {
                let mut kept = None;
                let t = timed(|| {
                    let mut s = factory.session();
                    let users = s.query::<User>().all()?;
                    drop(s);
                    kept = Some(users);
                    Ok(())
                })?;
                assert_eq!(kept.map(|u| u.len()), Some(N));
                Ok(t)
            }),
            contender("row -> struct (query_map)", Kind::Raw, |_| {
                let mut kept = None;
                let t = timed(|| {
                    kept = Some(sqlite_load_users(raw, SELECT)?);
                    Ok(())
                })?;
                assert_eq!(kept.map(|u| u.len()), Some(N));
                Ok(t)
            }),
        ];
        b.run("sqlite", "W2", N, reps, contenders)?;
    }

    if b.cfg.wants("W3") {
        const N: usize = 10_000;
        let contenders = vec![
            contender("query().all(), obj.set(age), commit", Kind::Ours, |_| {
                sqlite_seed(raw, N, 0)?;
                ours_w3(factory)
            }),
            contender("load, prepared UPDATE per row, commit", Kind::Raw, |_| {
                sqlite_seed(raw, N, 0)?;
                timed(|| {
                    raw.execute_batch("BEGIN")?;
                    let mut users = sqlite_load_users(raw, SELECT)?;
                    for u in &mut users {
                        u.age += 1;
                    }
                    {
                        let mut stmt =
                            raw.prepare_cached("UPDATE users SET age = ?1 WHERE id = ?2")?;
                        for u in &users {
                            stmt.execute(rusqlite::params![u.age, u.id])?;
                        }
                    }
                    raw.execute_batch("COMMIT")?;
                    Ok(())
                })
            }),
        ];
        b.run("sqlite", "W3", N, reps, contenders)?;
    }

    if b.cfg.wants("W5") {
        w5(b, "sqlite", factory, reps, |ids: &[i64]| {
            let mut stmt = raw.prepare_cached(&format!("{SELECT} WHERE id = ?1"))?;
            timed(|| {
                // In a transaction, as the session's SELECTs are (in autocommit mode each
                // SELECT would lock the file and check its change counter).
                raw.execute_batch("BEGIN")?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.push(stmt.query_row([id], sqlite_user)?);
                }
                raw.execute_batch("COMMIT")?;
                black_box(out);
                Ok(())
            })
        })?;
    }

    if b.cfg.wants("W4") || b.cfg.wants("MEM") {
        sqlite_seed(raw, 100_000, 0)?;
    }
    if b.cfg.wants("W4") {
        for (label, read, held) in W4_CASES {
            let contenders = vec![
                contender("obj.set(age) on one; time commit()", Kind::Ours, |rep| {
                    let mut s = factory.session();
                    let mut users = s.query::<User>().filter(User::id.le(read as i64)).all()?;
                    users.truncate(held);
                    assert_eq!(users.len(), held);
                    let one = &users[w4_row(rep)];
                    let age = one.get(User::age)?;
                    one.set(User::age, age + 1)?;
                    let t = timed(|| Ok(s.commit()?))?;
                    drop((users, s));
                    Ok(t)
                }),
                contender("single UPDATE + COMMIT", Kind::Raw, |rep| {
                    raw.execute_batch("BEGIN")?;
                    let mut rows = sqlite_load_users(raw, &format!("{SELECT} WHERE id <= {read}"))?;
                    rows.truncate(held);
                    let id = rows[w4_row(rep)].id;
                    let t = timed(|| {
                        raw.prepare_cached("UPDATE users SET age = age + 1 WHERE id = ?1")?
                            .execute([id])?;
                        raw.execute_batch("COMMIT")?;
                        Ok(())
                    })?;
                    drop(rows);
                    Ok(t)
                }),
            ];
            b.run("sqlite", label, 1, reps, contenders)?;
        }
    }

    if b.cfg.wants("MEM") {
        memory(b, "sqlite", factory, 100_000, || {
            sqlite_load_users(raw, SELECT)
        })?;
    }

    if b.cfg.wants("W6") {
        sqlite_seed(raw, 1_000, 10)?;
        let mut contenders = w6_ours(factory);
        contenders.extend([
            contender("LEFT JOIN -> Vec<(User, Vec<Post>)>", Kind::Raw, |_| {
                let mut kept = None;
                let t = timed(|| {
                    let mut stmt = raw.prepare_cached(
                        "SELECT u.id, u.name, u.hair_color, u.age, p.id, p.user_id, p.title, p.body \
                         FROM users u LEFT JOIN posts p ON p.user_id = u.id ORDER BY u.id, p.id",
                    )?;
                    let mut rows = stmt.query([])?;
                    let mut out: Vec<(User, Vec<Post>)> = Vec::new();
                    while let Some(row) = rows.next()? {
                        let id: i64 = row.get(0)?;
                        if out.last().and_then(|(u, _)| u.id) != Some(id) {
                            out.push((sqlite_user(row)?, Vec::new()));
                        }
                        if row.get::<_, Option<i64>>(4)?.is_some() {
                            let last = out.len() - 1;
                            out[last].1.push(sqlite_post(row, 4)?);
                        }
                    }
                    kept = Some(out);
                    Ok(())
                })?;
                w6_check(
                    kept.as_deref()
                        .unwrap_or_default()
                        .iter()
                        .map(|g| g.1.len()),
                )?;
                Ok(t)
            }),
            contender(
                "2 queries (users; posts IN (..)) + HashMap",
                Kind::Raw,
                |_| {
                    let mut kept = None;
                    let t = timed(|| {
                        raw.execute_batch("BEGIN")?;
                        let users = sqlite_load_users(raw, SELECT)?;
                        let ids: Vec<i64> = users.iter().filter_map(|u| u.id).collect();
                        let index: HashMap<i64, usize> =
                            ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
                        let mut out: Vec<(User, Vec<Post>)> =
                            users.into_iter().map(|u| (u, Vec::new())).collect();
                        let marks = vec!["?"; ids.len()].join(", ");
                        {
                            let mut stmt = raw.prepare_cached(&format!(
                            "SELECT id, user_id, title, body FROM posts WHERE user_id IN ({marks}) \
                             ORDER BY id"
                        ))?;
                            let mut rows = stmt.query(rusqlite::params_from_iter(&ids))?;
                            while let Some(row) = rows.next()? {
                                let p = sqlite_post(row, 0)?;
                                out[index[&p.user_id]].1.push(p);
                            }
                        }
                        raw.execute_batch("COMMIT")?;
                        kept = Some(out);
                        Ok(())
                    })?;
                    w6_check(
                        kept.as_deref()
                            .unwrap_or_default()
                            .iter()
                            .map(|g| g.1.len()),
                    )?;
                    Ok(t)
                },
            ),
        ]);
        b.run("sqlite", "W6", 1_000, reps, contenders)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn main() -> R<()> {
    // `cargo bench` passes `--bench`; a filter argument is not supported (use BENCH_WORKLOADS).
    let cfg = Config::from_env();
    let mut b = Bench {
        cfg,
        samples: Vec::new(),
        notes: Vec::new(),
    };
    eprintln!(
        "orm benchmark: {} timed repetitions per contender (BENCH_REPS), workloads {:?}",
        b.cfg.reps, b.cfg.workloads
    );
    eprintln!(
        "allocator: {}",
        std::env::var("GLIBC_TUNABLES")
            .map(|t| format!("GLIBC_TUNABLES={t}"))
            .unwrap_or_else(|_| "glibc's default heuristics (benches/run.sh fixes them)".into())
    );
    let started = Instant::now();
    if b.cfg.pg {
        run_pg(&mut b)?;
    }
    if b.cfg.sqlite {
        run_sqlite(&mut b)?;
    }
    let table = print_table(&b.samples);
    println!("\n{table}");
    for note in &b.notes {
        println!("{note}");
    }
    println!(
        "(medians and mins of {} repetitions, W5 of {}; total {:.0} s)",
        b.cfg.reps,
        b.cfg.reps * 5,
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &b.cfg.results {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for s in &b.samples {
            writeln!(
                f,
                "RESULT\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                s.db,
                s.workload,
                s.kind.tag(),
                s.contender,
                s.ops,
                s.median().as_nanos(),
                s.min().as_nanos(),
                s.times.len(),
                s.cpu_median().as_nanos()
            )?;
        }
    }
    Ok(())
}
