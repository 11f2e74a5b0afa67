#!/usr/bin/env python3
"""The SQL of `audiencedb sql` run on DuckDB and on ClickHouse (chDB), beside `audiencedb query`
(issue 24).

    sql_compare.py --bin target/release/audiencedb --db FOLDER --tables DIR --now 2026-11-01 \
        [--engines duckdb,chdb] [--rules FILE] [--times]

DIR holds `audiencedb export tables` of FOLDER. Each rule of FILE (default
`grammar/examples.txt`: one rule per line, `#` comments; `--rules -` reads stdin) is turned into
SQL for each engine (`audiencedb sql --dialect ...`), run there, and its ids compared with
`audiencedb query --format ids` at the same *now*. A rule the engine refuses (an unknown saved
audience) must be refused by `sql` too; a construct with no SQL yet (sequences) is listed as such
and not counted. Prints one line per rule and engine and exits 1 on any
difference. With `--times`, each engine's median of three runs is printed as well, beside
audiencedb's engine time for the rule in a fresh process (`query --format json`'s `elapsed_ms`:
cold, the opening of the folder left out).

Needs the `duckdb` package for DuckDB and `chdb` for ClickHouse (ClickHouse's engine as a Python
package), in the Python that runs it. This script installs nothing.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def rules_of(path):
    text = sys.stdin.read() if path == "-" else open(path).read()
    for line in text.splitlines():
        rule = line.split("  #")[0].strip()
        if rule and not rule.startswith("#"):
            yield rule


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


class DuckDb:
    dialect = "duckdb"

    def __init__(self, tables):
        import duckdb

        self.con = duckdb.connect()
        self.con.execute(open(os.path.join(tables, "load.duckdb.sql")).read())

    def ids(self, sql):
        return [r[0] for r in self.con.execute(sql).fetchall()]


class ChDb:
    dialect = "clickhouse"

    def __init__(self, tables):
        from chdb import session

        self.s = session.Session()
        self.s.query("CREATE DATABASE IF NOT EXISTS shop")
        self.s.query("USE shop")
        text = open(os.path.join(tables, "load.clickhouse.sql")).read()
        for stmt in text.split(";\n"):
            if stmt.strip():
                self.s.query(stmt)

    def ids(self, sql):
        out = self.s.query(sql, "TabSeparatedRaw").bytes().decode()
        return [line for line in out.split("\n") if line != ""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--tables", required=True)
    ap.add_argument("--now", required=True)
    ap.add_argument("--engines", default="duckdb,chdb")
    ap.add_argument("--rules", default=os.path.join(os.path.dirname(__file__), "..", "grammar", "examples.txt"))
    ap.add_argument("--times", action="store_true")
    args = ap.parse_args()
    engines = []
    for name in args.engines.split(","):
        started = time.perf_counter()
        engines.append({"duckdb": DuckDb, "chdb": ChDb}[name](args.tables))
        print(f"{name}: tables loaded in {time.perf_counter() - started:.1f} s")
    failed = 0
    checked = 0
    for rule in rules_of(args.rules):
        code, out, err = run([args.bin, "--db", args.db, "query", "--now", args.now, "--format", "json", rule])
        answer = json.loads(out) if code == 0 else None
        expected = answer["ids"] if answer else None
        for engine in engines:
            scode, sql, serr = run([args.bin, "--db", args.db, "sql", "--dialect", engine.dialect, "--now", args.now, rule])
            if expected is None:
                ok = scode != 0
                print(f"{'ok ' if ok else 'DIFF'} {engine.dialect:<10} refused by both: {rule}" if ok else f"DIFF {engine.dialect:<10} query refused ({err.strip()}) but sql did not: {rule}")
                failed += not ok
                continue
            if scode != 0 and "not yet in the" in serr:
                print(f"--   {engine.dialect:<10} no SQL yet: {rule}")
                continue
            if scode != 0:
                print(f"DIFF {engine.dialect:<10} sql refused: {serr.strip()}: {rule}")
                failed += 1
                continue
            try:
                got = engine.ids(sql)
            except Exception as e:  # the engine's error is a difference
                print(f"DIFF {engine.dialect:<10} the engine failed: {e}: {rule}")
                failed += 1
                continue
            checked += 1
            same = sorted(got) == sorted(expected)
            timing = ""
            if args.times:
                ts = []
                for _ in range(3):
                    t = time.perf_counter()
                    engine.ids(sql)
                    ts.append((time.perf_counter() - t) * 1000)
                timing = f" {statistics.median(ts):.1f} ms (audiencedb cold {answer['elapsed_ms']:.1f} ms)"
            print(f"{'ok ' if same else 'DIFF'} {engine.dialect:<10} {len(expected):>7} members{timing}: {rule}")
            if not same:
                failed += 1
                only_sql = sorted(set(got) - set(expected))[:5]
                only_engine = sorted(set(expected) - set(got))[:5]
                print(f"     only in SQL: {only_sql}; only in audiencedb: {only_engine}")
    print(f"{checked} answers compared, {failed} differences")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
