#!/usr/bin/env bash
# The whole benchmark of issue 6 in one command: ours + the raw drivers on PostgreSQL and SQLite
# (cargo bench), the peers diesel and SeaORM (benches/peers, a separate crate), SQLAlchemy 2.x
# (benches/sqlalchemy_bench.py, in a virtualenv it creates), then one combined table.
#
#     benches/run.sh                 # full run (20 repetitions; about 4 minutes)
#     BENCH_QUICK=1 benches/run.sh   # 3 repetitions
#
# Environment: DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres),
# BENCH_REPS, BENCH_WORKLOADS (W1,W2,W3,W4,W5,W6,MEM), BENCH_DB (pg,sqlite; for compare only),
# BENCH_SKIP_PEERS=1, BENCH_SKIP_SQLALCHEMY=1, BENCH_MALLOC=default (see below). Each program
# recreates the schema orm_bench and drops it when it ends. The combined table is also kept in $CARGO_TARGET_DIR/bench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target/bench-results"
stamp="$(date +%Y%m%d-%H%M%S)"
export BENCH_RESULTS="$PWD/$target/bench-results/run-$stamp.tsv"
case "$target" in /*) BENCH_RESULTS="$target/bench-results/run-$stamp.tsv" ;; esac
: >"$BENCH_RESULTS"
failed=()

# glibc's malloc adapts its trim and mmap thresholds to what a process has freed so far, so
# whether a contender's repetitions get their memory back from the kernel (page faults each
# time) depends on what ran before it, not on the contender. Fixed thresholds put every
# program and contender in the same steady state: no trimming, no mmap below 32 MiB.
# BENCH_MALLOC=default keeps glibc's own heuristics (benches/README.md shows both).
if [ "${BENCH_MALLOC:-steady}" != default ]; then
    export GLIBC_TUNABLES="glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432"
fi

step() { printf '\n==> %s   [%s]\n' "$1" "$(uptime | sed 's/.*load/load/')" >&2; }

step "ours + raw drivers: cargo bench --bench compare"
cargo bench --bench compare

if [ "${BENCH_SKIP_PEERS:-0}" != 1 ]; then
    step "peers: diesel + SeaORM (benches/peers)"
    # diesel's postgres backend links libpq.
    if ! pkg-config --exists libpq 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing libpq-dev for diesel" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpq-dev >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpq-dev >/dev/null; } || true
    fi
    cargo run --release --manifest-path benches/peers/Cargo.toml || failed+=("peers (diesel, SeaORM)")
fi

if [ "${BENCH_SKIP_SQLALCHEMY:-0}" != 1 ]; then
    step "SQLAlchemy: benches/sqlalchemy_bench.py"
    python3 benches/sqlalchemy_bench.py || failed+=("SQLAlchemy")
fi

step "combined table"
python3 benches/combine.py "$BENCH_RESULTS" | tee "${BENCH_RESULTS%.tsv}.txt"
printf '\n(results: %s; %s)\n' "$BENCH_RESULTS" "$(uptime | sed 's/.*load/load/')"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
