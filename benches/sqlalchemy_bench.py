#!/usr/bin/env python3
"""SQLAlchemy 2.x ORM on the workloads of benches/compare.rs, against the same PostgreSQL.

    python3 benches/sqlalchemy_bench.py

Creates benches/.venv with SQLAlchemy 2.x and psycopg 3 (binary) the first time, then re-runs
itself inside it. Environment as for compare.rs: DATABASE_URL, BENCH_REPS / BENCH_QUICK,
BENCH_WORKLOADS (W1..W6, MEM) and BENCH_RESULTS (result lines are appended there; ratios are to
the best raw technique of the compare run in that file, when it holds one).

Everything happens in the schema orm_bench, recreated at the start and dropped at the end.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
REQUIREMENTS = ["sqlalchemy>=2.0,<3", "psycopg[binary]>=3.1,<4"]


def ensure_venv():
    """Re-executes this script in benches/.venv, creating it (and installing) when needed."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(VENV_PY):
        print(f"creating {VENV} ...", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    probe = "import sqlalchemy, psycopg; assert sqlalchemy.__version__.startswith('2.')"
    if subprocess.call([VENV_PY, "-c", probe], stderr=subprocess.DEVNULL) != 0:
        print(f"installing {' '.join(REQUIREMENTS)} into {VENV} ...", file=sys.stderr)
        subprocess.check_call([VENV_PY, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + REQUIREMENTS)
    os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__)] + sys.argv[1:])


ensure_venv()

# --- inside the virtualenv from here on ---------------------------------------------------------
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from typing import List, Optional  # noqa: E402

import sqlalchemy  # noqa: E402
from sqlalchemy import BigInteger, ForeignKey, Integer, Text, create_engine, inspect, select, text  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload  # noqa: E402


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    hair_color: Mapped[Optional[str]] = mapped_column(Text)
    age: Mapped[int] = mapped_column(Integer)
    posts: Mapped[List["Post"]] = relationship(back_populates="user")


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[Optional[str]] = mapped_column(Text)
    user: Mapped[User] = relationship(back_populates="posts")


SCHEMA = """
    DROP SCHEMA IF EXISTS orm_bench CASCADE;
    CREATE SCHEMA orm_bench;
    CREATE TABLE orm_bench.users (
        id bigserial PRIMARY KEY, name text NOT NULL, hair_color text NULL, age int NOT NULL);
    CREATE TABLE orm_bench.posts (
        id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES orm_bench.users,
        title text NOT NULL, body text NULL);
"""


def env_reps():
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    try:
        return max(1, int(os.environ["BENCH_REPS"]))
    except (KeyError, ValueError):
        return 3 if quick else 20


def fmt_dur(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


class Bench:
    def __init__(self, reps, workloads):
        self.reps = reps
        self.workloads = workloads
        self.samples = []  # (workload, contender, ops, [ns])
        self.notes = []

    def wants(self, w):
        return w in self.workloads

    def run(self, workload, name, ops, fn, reps=None):
        reps = reps or self.reps
        started = time.perf_counter()
        print(f"  pg {workload}: SQLAlchemy x {reps} reps ...", end="", file=sys.stderr, flush=True)
        fn(0)  # warm-up
        times = [fn(rep) for rep in range(1, reps + 1)]
        print(f" {time.perf_counter() - started:.1f} s", file=sys.stderr)
        self.samples.append((workload, name, ops, times))


def timed(body):
    t = time.perf_counter_ns()
    body()
    return time.perf_counter_ns() - t


def main():
    reps = env_reps()
    workloads = [w.strip().upper() for w in os.environ.get("BENCH_WORKLOADS", "W1,W2,W3,W4,W5,W6,MEM").split(",")]
    results = os.environ.get("BENCH_RESULTS") or None
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        base = "postgresql://postgres@127.0.0.1:5432/postgres"
    sa_url = "postgresql+psycopg://" + base.split("://", 1)[1]

    admin = create_engine(sa_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(SCHEMA)
    engine = create_engine(sa_url, connect_args={"options": "-csearch_path=orm_bench"})
    b = Bench(reps, workloads)
    print(f"SQLAlchemy {sqlalchemy.__version__}: {reps} timed repetitions per workload", file=sys.stderr)
    try:
        run(b, engine)
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.exec_driver_sql("DROP SCHEMA IF EXISTS orm_bench CASCADE")
        admin.dispose()

    baselines = raw_baselines(results)
    print()
    print(f"{'db':<7} {'workload':<8} {'contender':<56} {'median':>11} {'min':>11} {'per op':>10} {'x raw':>8}")
    for workload, name, ops, times in b.samples:
        med = statistics.median(times)
        ratio = f"{med / baselines[workload]:.2f}" if workload in baselines else "-"
        print(
            f"{'pg':<7} {workload:<8} {'peer: ' + name:<56} {fmt_dur(med):>11} {fmt_dur(min(times)):>11} "
            f"{fmt_dur(med / max(ops, 1)):>10} {ratio:>8}"
        )
    for note in b.notes:
        print(note)
    print(f"(SQLAlchemy {sqlalchemy.__version__}, psycopg 3, Python {sys.version.split()[0]}; medians and mins of {reps} repetitions)")
    if results:
        with open(results, "a") as f:
            for workload, name, ops, times in b.samples:
                f.write(
                    f"RESULT\tpg\t{workload}\tpeer\t{name}\t{ops}\t{int(statistics.median(times))}\t{min(times)}\t{len(times)}\n"
                )


def raw_baselines(path):
    best = {}
    if not path or not os.path.exists(path):
        return best
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) >= 7 and p[0] == "RESULT" and p[1] == "pg" and p[3] == "raw":
                best[p[2]] = min(best.get(p[2], float("inf")), int(p[6]))
    return best


def truncate(engine):
    with engine.begin() as c:
        c.exec_driver_sql("TRUNCATE users, posts RESTART IDENTITY CASCADE")


def seed(engine, n, posts_per_user=0):
    truncate(engine)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO users (name, hair_color, age) SELECT 'user' || g, "
                "CASE WHEN g % 2 = 0 THEN 'brown' END, g % 90 FROM generate_series(1, :n) g"
            ),
            {"n": n},
        )
        if posts_per_user:
            c.execute(
                text(
                    "INSERT INTO posts (user_id, title, body) SELECT u.id, 'post ' || k || ' of ' || u.id, "
                    "CASE WHEN k % 2 = 0 THEN 'some body text' END "
                    "FROM users u, generate_series(1, :k) k ORDER BY u.id, k"
                ),
                {"k": posts_per_user},
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE users, posts")


def new_users(n):
    return [User(name=f"user{i}", hair_color="brown" if i % 2 == 0 else None, age=i % 90) for i in range(1, n + 1)]


def run(b, engine):
    if b.wants("W1"):
        n = 10_000

        def w1(rep):
            truncate(engine)
            users = new_users(n)  # the objects exist before, as the structs do in compare.rs

            def body():
                with Session(engine) as s:
                    s.add_all(users)
                    s.commit()

            t = timed(body)
            assert inspect(users[-1]).identity is not None  # ids back, without a reload
            return t

        b.run("W1", "SQLAlchemy add_all + commit", n, w1)

    if b.wants("W2") or b.wants("W3"):
        seed(engine, 10_000)
    if b.wants("W2"):
        n = 10_000

        def w2(rep):
            kept = []

            def body():
                with Session(engine) as s:
                    kept.append(s.scalars(select(User)).all())

            t = timed(body)
            assert len(kept[0]) == n
            return t

        b.run("W2", "SQLAlchemy scalars(select(User)).all()", n, w2)

    if b.wants("W3"):
        n = 10_000

        def w3(rep):
            seed(engine, n)

            def body():
                with Session(engine) as s:
                    users = s.scalars(select(User)).all()
                    for u in users:
                        u.age += 1
                    s.commit()

            return timed(body)

        b.run("W3", "SQLAlchemy load, u.age += 1, commit", n, w3)

    if b.wants("W5"):
        seed(engine, 10_000)
        n = 1_000
        ids = list(range(n, 0, -1))
        with Session(engine) as s:
            held = s.scalars(select(User).where(User.id <= n)).all()
            assert len(held) == n

            def w5(rep):
                def body():
                    for i in ids:
                        s.get(User, i)

                return timed(body)

            b.run("W5", "SQLAlchemy session.get(User, id), all held", n, w5, reps=b.reps * 5)

        def w5_miss(rep):
            with Session(engine) as s2:

                def body():
                    for i in ids:
                        s2.get(User, i)

                return timed(body)

        b.run("W5-miss", "SQLAlchemy session.get(User, id), none held", n, w5_miss)

    if b.wants("W4") or b.wants("MEM"):
        seed(engine, 100_000)
    if b.wants("W4"):
        for label, held in (("W4-100k", 100_000), ("W4-1k", 1_000)):

            def w4(rep, held=held):
                with Session(engine) as s:  # expire_on_commit=True, the default
                    users = s.scalars(select(User).where(User.id <= held)).all()
                    assert len(users) == held
                    users[(rep * 7919) % 1000].age += 1
                    return timed(s.commit)

            b.run(label, "SQLAlchemy change one; time commit()", 1, w4)

    if b.wants("MEM"):
        n = 100_000
        with Session(engine) as s:
            s.scalars(select(User)).all()  # warm-up
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with Session(engine) as s:
            users = s.scalars(select(User)).all()
            current, peak = tracemalloc.get_traced_memory()
            assert len(users) == n
        tracemalloc.stop()
        del users
        b.notes.append(
            f"pg: SQLAlchemy, {n} rows: retained {(current - before) / n:.1f} B/object, peak {(peak - before) / n:.1f} B/object "
            "(tracemalloc: Python objects, including strings and the identity map)"
        )

    if b.wants("W6"):
        seed(engine, 1_000, 10)

        def w6(rep):
            kept = []

            def body():
                with Session(engine) as s:
                    kept.append(s.scalars(select(User).options(selectinload(User.posts)).order_by(User.id)).all())

            t = timed(body)
            users = kept[0]
            assert len(users) == 1_000 and all(len(u.posts) == 10 for u in users)
            return t

        b.run("W6", "SQLAlchemy select(User).options(selectinload(posts))", 1_000, w6)


if __name__ == "__main__":
    main()
