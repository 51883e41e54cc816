#!/usr/bin/env python3
"""Prints the combined table of one benchmark run from the result lines of compare.rs, the peers
and sqlalchemy_bench.py (the file named by BENCH_RESULTS in run.sh).

    python3 benches/combine.py RESULTS [--markdown]

Ratios are to the best raw technique of the same database and workload in the same run.
Standard library only.
"""

import sys

TITLES = {
    "W1": "W1 insert 10,000 users + commit, generated ids back in the objects",
    "W2": "W2 load 10,000 users into objects (fresh session)",
    "W3": "W3 load 10,000 users, change age on all, commit",
    "W4-100k": "W4 commit one change with 100,000 objects held (expire_on_commit ON)",
    "W4-1k": "W4 commit one change with 1,000 objects held (expire_on_commit ON)",
    "W4-1k-of-100k": "W4 (control) 100,000 read in the transaction, 1,000 objects still held at commit",
    "W5": "W5 1,000 get by primary key of objects held",
    "W5-miss": "W5 (for comparison) 1,000 get, nothing held: a SELECT each",
    "W6": "W6 1,000 users with 10 posts each as an object graph",
}
ORDER = ["W1", "W2", "W3", "W4-100k", "W4-1k", "W4-1k-of-100k", "W5", "W5-miss", "W6"]


def fmt_dur(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def load(path):
    rows, mems = [], []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "RESULT" and len(p) >= 9:
                rows.append(
                    dict(db=p[1], workload=p[2], kind=p[3], contender=p[4], ops=int(p[5]),
                         median=int(p[6]), min=int(p[7]), reps=int(p[8]),
                         cpu=int(p[9]) if len(p) >= 10 and p[9] else None)
                )
            elif p[0] == "MEM" and len(p) >= 8:
                mems.append(dict(db=p[1], n=int(p[2]), struct=int(p[3]), raw_retained=int(p[4]),
                                 raw_peak=int(p[5]), ours_retained=int(p[6]), ours_peak=int(p[7])))
    return rows, mems


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    markdown = "--markdown" in sys.argv[2:]
    rows, mems = load(sys.argv[1])
    keys = []
    for db in ("pg", "sqlite"):
        for w in ORDER + sorted({r["workload"] for r in rows} - set(ORDER)):
            if any(r["db"] == db and r["workload"] == w for r in rows):
                keys.append((db, w))
    if markdown:
        print("| db | workload | contender | median | min | per op | × best raw | client CPU |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
    else:
        print(f"{'db':<7} {'workload':<8} {'contender':<62} {'median':>11} {'min':>11} {'per op':>10} {'x raw':>7} {'client cpu':>11}")
    for db, w in keys:
        group = sorted((r for r in rows if r["db"] == db and r["workload"] == w), key=lambda r: r["median"])
        raws = [r["median"] for r in group if r["kind"] == "raw"]
        best = min(raws) if raws else None
        if not markdown:
            print(f"-- {db}: {TITLES.get(w, w)}")
        for r in group:
            ratio = f"{r['median'] / best:.2f}" if best else "-"
            name = f"{r['kind']}: {r['contender']}"
            if best is not None and r["kind"] == "raw" and r["median"] == best:
                name += " (best raw)"
            per_op = fmt_dur(r["median"] / max(r["ops"], 1))
            cpu = fmt_dur(r["cpu"]) if r["cpu"] is not None else "-"
            if markdown:
                bold = "**" if r["kind"] == "ours" else ""
                print(f"| {db} | {w} | {bold}`{name}`{bold} | {fmt_dur(r['median'])} | {fmt_dur(r['min'])} | {per_op} | {bold}{ratio}{bold} | {cpu} |")
            else:
                print(f"{db:<7} {w:<8} {name:<62} {fmt_dur(r['median']):>11} {fmt_dur(r['min']):>11} {per_op:>10} {ratio:>7} {cpu:>11}")
    for m in mems:
        n = m["n"]
        print(
            f"\nmemory, {m['db']}, {n:,} users loaded (W2 at 100,000 rows; struct User = {m['struct']} B; counted by the bench's allocator):"
            f"\n  raw Vec<User>:                  retained {m['raw_retained'] / n:6.1f} B/row,    peak {m['raw_peak'] / n:6.1f} B/row"
            f"\n  ours Vec<Obj<User>> + session:  retained {m['ours_retained'] / n:6.1f} B/object, peak {m['ours_peak'] / n:6.1f} B/object"
            f"\n  ours beyond the struct itself:  retained {(m['ours_retained'] - m['raw_retained']) / n:6.1f} B/object, "
            f"peak {(m['ours_peak'] - m['raw_peak']) / n:6.1f} B/object"
        )


if __name__ == "__main__":
    main()
