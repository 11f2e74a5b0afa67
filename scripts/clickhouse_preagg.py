#!/usr/bin/env python3
"""Bitmap pre-aggregation per (event, day) in ClickHouse, checked against the generated SQL
(docs/SCALING.md).

    clickhouse_preagg.py --bin target/release/audiencedb --db FOLDER --tables DIR \
        --now 2026-11-01T00:00:00Z [--event viewed] [--days 30]

DIR holds `audiencedb export tables` of FOLDER (NDJSON or Parquet). The script loads the tables
into a chDB session (ClickHouse's engine in process), builds `event_days` (an
AggregatingMergeTree of `groupBitmapState(customer)` per event and UTC day, as docs/SCALING.md
describes), then answers `EVENT in last N days` twice: with the SQL `audiencedb sql --dialect
clickhouse` writes (a scan of the events table) and from `event_days` for the whole days of the
window plus the raw events of the two cut days. It prints both times (median of three runs
after one) and exits 1 unless both give the same ids as `audiencedb query`.

Needs the `chdb` package in the Python that runs it; installs nothing.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime

DAY_MS = 86_400_000


def timed(session, sql):
    session.query(sql, "CSV")
    times = []
    for _ in range(3):
        started = time.perf_counter()
        out = session.query(sql, "JSONCompact")
        times.append((time.perf_counter() - started) * 1e3)
    rows = json.loads(out.bytes() if hasattr(out, "bytes") else str(out))["data"]
    return sorted(r[0] for r in rows), statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--tables", required=True)
    ap.add_argument("--now", required=True)
    ap.add_argument("--event", default="viewed")
    ap.add_argument("--days", type=int, default=30)
    a = ap.parse_args()

    from chdb import session as chs

    rule = f"{a.event} in last {a.days} days"
    q = subprocess.run(
        [a.bin, "--db", a.db, "query", "--now", a.now, "--format", "json", rule],
        capture_output=True, text=True, check=True)
    want = sorted(json.loads(q.stdout)["ids"])
    generated = subprocess.run(
        [a.bin, "--db", a.db, "sql", "--dialect", "clickhouse", "--now", a.now, rule],
        capture_output=True, text=True, check=True).stdout

    s = chs.Session()
    s.query("CREATE DATABASE IF NOT EXISTS shop; USE shop")
    started = time.perf_counter()
    for stmt in open(os.path.join(a.tables, "load.clickhouse.sql")).read().split(";\n"):
        if stmt.strip():
            s.query(stmt)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    s.query(
        "CREATE TABLE event_days (event LowCardinality(String), day Date, "
        "customers AggregateFunction(groupBitmap, UInt32)) "
        "ENGINE = AggregatingMergeTree ORDER BY (event, day)")
    s.query(
        "INSERT INTO event_days SELECT event, toDate(intDiv(ts, 1000), 'UTC') AS day, "
        "groupBitmapState(customer) FROM events GROUP BY event, day")
    build_s = time.perf_counter() - started

    # The window as the engine has it: [now - N days + 1 ms, now].
    now = datetime.fromisoformat(json.loads(q.stdout)["now"].replace("Z", "+00:00"))
    now_ms = round(now.timestamp() * 1000)
    start = now_ms - a.days * DAY_MS + 1
    first_whole = -(-start // DAY_MS)          # the first day starting at or after `start`
    end_whole = (now_ms + 1) // DAY_MS         # days before this one end by `now`
    event = a.event.replace("'", "\\'")
    pre = (
        "SELECT id FROM customers WHERE customer IN (SELECT arrayJoin(bitmapToArray(bitmapOr("
        f"(SELECT groupBitmapMergeState(customers) FROM event_days WHERE event = '{event}' "
        f"AND day >= toDate(intDiv({first_whole * DAY_MS}, 1000), 'UTC') "
        f"AND day < toDate(intDiv({end_whole * DAY_MS}, 1000), 'UTC')), "
        f"(SELECT groupBitmapState(customer) FROM events WHERE event = '{event}' "
        f"AND ts >= {start} AND ts <= {now_ms} "
        f"AND (ts < {first_whole * DAY_MS} OR ts >= {end_whole * DAY_MS}))))))"
    )
    got_generated, generated_ms = timed(s, generated)
    got_pre, pre_ms = timed(s, pre)
    print(f"rule: {rule}  members: {len(want)}")
    print(f"load: {load_s:.1f} s  event_days built in {build_s:.1f} s")
    print(f"generated SQL: {generated_ms:.1f} ms  same ids: {got_generated == want}")
    print(f"event_days:    {pre_ms:.1f} ms  same ids: {got_pre == want}")
    sys.exit(0 if got_generated == want and got_pre == want else 1)


if __name__ == "__main__":
    main()
