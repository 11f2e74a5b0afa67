#!/usr/bin/env python3
"""The funnels of `benches/reports.rs` in DuckDB: timing and answers beside audiencedb (issue 22).

Needs the DuckDB Python package (`pip install duckdb`), like `duckdb_compare.py`, whose loader it
uses (the NDJSON becomes `events(customer, event, ts, ...)`; the .duckdb file is reused while it
matches the NDJSON).

    duckdb_reports.py --ndjson SHOP.ndjson --duckdb SHOP.duckdb --bench-json reports.json \
        --now 2026-11-01T00:00:00Z [--runs 5]

`reports.json` is written by `cargo bench --bench reports` with AUDIENCEDB_BENCH_JSON set: each
funnel case's steps (plain event names), limit, window, audiencedb's median and p99 ms and its
answer. For each case the SQL below computes the same funnel, independently of the engine's
code: a customer's starts are their first step's events in the window; from each start the
earliest event of each next step strictly after the previous one and within the limit of the
start (joins with `min`); the customer's journey is the earliest start reaching their deepest
step. Customers per step and the median gap from the previous step (DuckDB's `median`, the mean
of the two middle values for an even count) must equal audiencedb's; the table printed gives
both times and their ratio.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duckdb_compare as dc  # noqa: E402


def window_start(window, now):
    """The first instant of `in last N days` (now − N days + 1 ms) as a SQL timestamp, or None
    for no window (`ever`)."""
    if window is None:
        return None
    words = window.split()
    if words[:2] != ["in", "last"] or words[3] not in ("day", "days"):
        raise SystemExit(f"duckdb_reports.py understands `in last N days` windows only: {window!r}")
    return f"({dc.ts_literal(now)} - INTERVAL {int(words[2])} DAY + INTERVAL 1 MILLISECOND)"


def limit_ms(within):
    n, unit = within.split()
    per = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000}
    return int(n) * per[unit.rstrip("s")]


def funnel_sql(steps, within, window, now):
    """One row: the customers reaching each step, then the median gap to each step after the
    first."""
    now_sql = dc.ts_literal(now)
    start = window_start(window, now)
    limit = f"INTERVAL {limit_ms(within)} MILLISECOND"
    first = f"event = {dc.sql_str(steps[0])} AND ts <= {now_sql}"
    if start:
        first += f" AND ts >= {start}"
    parts = [f"s1 AS (SELECT DISTINCT customer, ts AS t1 FROM events WHERE {first})"]
    keys = ["customer", "t1"]
    for k in range(2, len(steps) + 1):
        prev = f"s{k - 1}"
        cols = ", ".join(f"p.{c}" for c in keys)
        parts.append(
            f"s{k} AS (SELECT {cols}, min(e.ts) AS t{k} FROM {prev} p JOIN events e "
            f"ON e.customer = p.customer AND e.event = {dc.sql_str(steps[k - 1])} "
            f"AND e.ts > p.t{k - 1} AND e.ts <= p.t1 + {limit} AND e.ts <= {now_sql} "
            f"GROUP BY {cols})"
        )
        keys.append(f"t{k}")
    n = len(steps)
    joins = " ".join(f"LEFT JOIN s{k} USING (customer, t1)" for k in range(2, n + 1))
    depth = "CASE " + " ".join(
        f"WHEN s{k}.t{k} IS NOT NULL THEN {k}" for k in range(n, 1, -1)
    ) + " ELSE 1 END"
    times = ", ".join(f"s{k}.t{k} AS t{k}" for k in range(2, n + 1))
    parts.append(f"starts AS (SELECT customer, t1, {depth} AS d, {times} FROM s1 {joins})")
    parts.append(
        "journeys AS (SELECT customer, arg_min(struct_pack("
        + ", ".join(["t1 := t1"] + [f"t{k} := t{k}" for k in range(2, n + 1)])
        + "), (-d, t1)) AS j, max(d) AS d FROM starts GROUP BY customer)"
    )
    counts = ", ".join(f"count(*) FILTER (WHERE d >= {k}) AS c{k}" for k in range(1, n + 1))
    medians = ", ".join(
        f"median(epoch_ms(j.t{k}) - epoch_ms(j.t{k - 1 if k > 2 else 1})) FILTER (WHERE d >= {k}) AS m{k}"
        for k in range(2, n + 1)
    )
    return "WITH " + ", ".join(parts) + f" SELECT {counts}, {medians} FROM journeys"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ndjson", required=True)
    ap.add_argument("--duckdb", required=True)
    ap.add_argument("--bench-json", required=True)
    ap.add_argument("--now", required=True)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    now = dc.parse_now(args.now)
    con = dc.open_duckdb(args.duckdb, args.ndjson)
    cases = json.load(open(args.bench_json))
    print("| case | customers per step | identical | audiencedb median ms | DuckDB median ms | ratio |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    failed = False
    for case in cases:
        steps = case["steps"]
        sql = funnel_sql(steps, case["within"], case["window"], now)
        row = con.execute(sql).fetchone()
        n = len(steps)
        counts = [int(x) for x in row[:n]]
        medians = [None] + [None if x is None else float(x) for x in row[n:]]
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            con.execute(sql).fetchone()
            times.append((time.perf_counter() - t) * 1000)
        duck = statistics.median(times)
        ours = case["answer"]["steps"]
        same = [s["customers"] for s in ours] == counts and [s["median_ms"] for s in ours] == medians
        if not same:
            failed = True
            print(f"DIFFERENT {case['name']}: audiencedb {ours}, DuckDB {counts} {medians}", file=sys.stderr)
        print(
            f"| {case['name']} | {' → '.join(map(str, counts))} | {'yes' if same else 'NO'} | "
            f"{dc.fmt_ms(case['median_ms'])} | {dc.fmt_ms(duck)} | {dc.fmt_ratio(duck, case['median_ms'])} |"
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
