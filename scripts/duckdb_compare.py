#!/usr/bin/env python3
"""The same rules in DuckDB: timing and member sets beside audiencedb (issue 4, "Measured").

Needs the DuckDB Python package (`pip install duckdb`; scripts/bench-query.sh installs it into a
virtual environment under its work directory). This script installs nothing itself.

    duckdb_compare.py --ndjson SHOP.ndjson --duckdb SHOP.duckdb --db AUDIENCEDB_FOLDER \
        --bin target/release/audiencedb --now 2026-11-01T00:00:00Z \
        [--bench-json query-bench.json] [--runs 10] [--out table.md]

1. Load (once; reused while the .duckdb file exists): the NDJSON messages become three tables,
   following docs/INPUT.md:
   - `customers(customer)`: every id seen in a stored message (the universe of `not` and
     `everyone`);
   - `profiles(customer, <trait>...)`: one row per customer who sent an `identify`; `identify`
     messages merged in arrival (file) order, a `null` removing the trait; nested objects
     flattened to dotted names (`address.city`);
   - `events(customer, event, ts, <property>...)`: one row per `track`, `ts` a UTC TIMESTAMP,
     sorted by (event, ts) so that DuckDB's zone maps skip row groups on the usual filters.
   The customer is `userId`, else `anonymousId` (an integer id is its decimal text). A message
   whose `messageId` appeared on an earlier line is skipped. A line with invalid JSON, no customer,
   an unknown type, a track without event or a bad timestamp (RFC 3339 string or integer
   milliseconds, within 1970..2100) is skipped; a message without timestamp is stamped with the
   load time. Each trait or property becomes a typed column: numbers DECIMAL (exact, as the
   engine's decimals; DOUBLE when the text does not fit), strings VARCHAR, RFC 3339 strings
   TIMESTAMP (UTC), booleans BOOLEAN, lists VARCHAR[]. When one name holds values of several
   kinds, the most common kind keeps the name and the others go to `name__num`, `name__text`,
   `name__time`, `name__bool`, `name__list` (so `amount` is the numeric amount and `amount__text`
   the amounts sent as JSON strings, which docs/RULES.md leaves out of aggregates).
2. For each rule: the hand-written SQL with *now* substituted, run once to warm up and then
   `--runs` times as `SELECT count(*) FROM (...)`, median reported; then its member ids fetched
   once and compared with `audiencedb --db DB query --now NOW --format ids RULE`.
3. A markdown table: rule | SQL | members | audiencedb median and p99 ms | cold first run ms (the
   engine time, `elapsed_ms`, of the `audiencedb query` that fetched the members: a fresh process)
   | DuckDB median ms | ratio (DuckDB / audiencedb median) | cold ratio (cold / warm median) |
   identical. The audiencedb figures come from the bench binary's JSON (`--bench-json`, written
   by `cargo bench --bench query` with AUDIENCEDB_BENCH_JSON set); without it those columns are
   empty. DuckDB runs with its default settings (one thread per core).

With `--top-json VALUES.json` (written by `cargo bench --bench values` with
AUDIENCEDB_BENCH_JSON set) it compares the `top` cases instead (issue 21): each case's rows as
SQL over the DISTINCT (customer, value) pairs of the event in the window (`top_sql`), timed as
above, and its rows (value, customers, everyone), ranking and audience size compared with
`audiencedb top --format json`.
"""

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time

try:
    import duckdb
except ImportError:  # pragma: no cover
    sys.exit("duckdb_compare.py needs the duckdb package: pip install duckdb")

# The example rules of docs/RULES.md, then a few extra ones, each with its SQL. `{now}` is the
# evaluation time as a TIMESTAMP literal. Windows follow docs/RULES.md exactly: `in last N unit`
# is now - N*unit < ts <= now (a month is 30 days, a year 365), `ever` is ts <= now, `before T` is
# ts < T. `A and not B` is A EXCEPT B: `not` is the complement over all known customers, and
# intersecting with it removes B. The saved audience `unsubscribed` is `newsletter = false`.
RULES = [
    (
        "viewed product X in last 30 days and tier = Gold",
        """SELECT customer FROM events
WHERE event = 'viewed' AND product = 'X'
  AND ts > {now} - INTERVAL 30 DAY AND ts <= {now}
INTERSECT
SELECT customer FROM profiles WHERE tier = 'Gold'""",
    ),
    (
        "purchased at least 3 times in last 90 days",
        """SELECT customer FROM events
WHERE event = 'purchased' AND ts > {now} - INTERVAL 90 DAY AND ts <= {now}
GROUP BY customer HAVING count(*) >= 3""",
    ),
    (
        "purchased ever and not purchased in last 6 months",
        """SELECT customer FROM events WHERE event = 'purchased' AND ts <= {now}
EXCEPT
SELECT customer FROM events
WHERE event = 'purchased' AND ts > {now} - INTERVAL 180 DAY AND ts <= {now}""",
    ),
    (
        "added_to_cart in last 1 day and not purchased in last 1 day",
        """SELECT customer FROM events
WHERE event = 'added_to_cart' AND ts > {now} - INTERVAL 1 DAY AND ts <= {now}
EXCEPT
SELECT customer FROM events
WHERE event = 'purchased' AND ts > {now} - INTERVAL 1 DAY AND ts <= {now}""",
    ),
    (
        "visited at least 3 times in last 7 days and not purchased in last 7 days",
        """SELECT customer FROM events
WHERE event = 'visited' AND ts > {now} - INTERVAL 7 DAY AND ts <= {now}
GROUP BY customer HAVING count(*) >= 3
EXCEPT
SELECT customer FROM events
WHERE event = 'purchased' AND ts > {now} - INTERVAL 7 DAY AND ts <= {now}""",
    ),
    (
        "purchased sum(amount) > 500 in last 365 days",
        """SELECT customer FROM events
WHERE event = 'purchased' AND ts > {now} - INTERVAL 365 DAY AND ts <= {now}
GROUP BY customer HAVING sum(amount) > 500""",
    ),
    (
        "purchased where category = kids ever and not in audience unsubscribed",
        """SELECT customer FROM events
WHERE event = 'purchased' AND category = 'kids' AND ts <= {now}
EXCEPT
SELECT customer FROM profiles WHERE newsletter = false""",
    ),
    (
        # The same with the audience's rule inlined, for as long as audiences cannot be saved.
        "purchased where category = kids ever and not newsletter = false",
        """SELECT customer FROM events
WHERE event = 'purchased' AND category = 'kids' AND ts <= {now}
EXCEPT
SELECT customer FROM profiles WHERE newsletter = false""",
    ),
    (
        "not visited before 7 days ago and visited in last 7 days",
        """SELECT customer FROM events
WHERE event = 'visited' AND ts > {now} - INTERVAL 7 DAY AND ts <= {now}
EXCEPT
SELECT customer FROM events
WHERE event = 'visited' AND ts < {now} - INTERVAL 7 DAY""",
    ),
    (
        "country in (FI, SE) and (device = mobile or source = facebook)",
        """SELECT customer FROM profiles
WHERE country IN ('FI', 'SE') AND (device = 'mobile' OR source = 'facebook')""",
    ),
    # Extra: a pure trait rule, `not` over everyone, `where` on unindexed properties, an average.
    (
        "tier = Gold",
        """SELECT customer FROM profiles WHERE tier = 'Gold'""",
    ),
    (
        "not tier = Gold",
        """SELECT customer FROM customers
EXCEPT
SELECT customer FROM profiles WHERE tier = 'Gold'""",
    ),
    (
        "purchased where amount >= 100 in last 30 days",
        """SELECT DISTINCT customer FROM events
WHERE event = 'purchased' AND amount >= 100
  AND ts > {now} - INTERVAL 30 DAY AND ts <= {now}""",
    ),
    (
        "searched where query contains boots in last 90 days",
        """SELECT DISTINCT customer FROM events
WHERE event = 'searched' AND contains(query, 'boots')
  AND ts > {now} - INTERVAL 90 DAY AND ts <= {now}""",
    ),
    # Issue 23: tests on computed traits, with the traits of BENCHMARKS.md defined in the folder
    # (aov = purchased avg(amount) ever, orders_90d = purchased count in last 90 days,
    # favourite_category = purchased top(category) in last 365 days, last_order_at = purchased
    # last time). `top` breaks ties by the smallest value.
    (
        "aov > 80 and orders_90d >= 3",
        """SELECT customer FROM events
WHERE event = 'purchased' AND ts <= {now}
GROUP BY customer HAVING count(amount) > 0 AND sum(amount) > 80 * count(amount)
INTERSECT
SELECT customer FROM events
WHERE event = 'purchased' AND ts > {now} - INTERVAL 90 DAY AND ts <= {now}
GROUP BY customer HAVING count(*) >= 3""",
    ),
    (
        "favourite_category = shoes",
        """SELECT customer FROM (
  SELECT customer, category, row_number() OVER (
    PARTITION BY customer ORDER BY count(*) DESC, category ASC) AS rk
  FROM events
  WHERE event = 'purchased' AND category IS NOT NULL
    AND ts > {now} - INTERVAL 365 DAY AND ts <= {now}
  GROUP BY customer, category)
WHERE rk = 1 AND category = 'shoes'""",
    ),
    (
        "last_order_at < 90 days ago",
        """SELECT customer FROM events
WHERE event = 'purchased' AND ts <= {now}
GROUP BY customer HAVING max(ts) < {now} - INTERVAL 90 DAY""",
    ),
    (
        "purchased avg(amount) >= 80 in last 90 days",
        """SELECT customer FROM events
WHERE event = 'purchased' AND ts > {now} - INTERVAL 90 DAY AND ts <= {now}
GROUP BY customer HAVING sum(amount) >= 80 * count(amount) AND count(amount) > 0""",
    ),    # Issue 20: several rules of each kind that was slow against DuckDB. Event filters with two
    # conditions (and with `or`, `not`, a count):
    (
        "purchased where (category = shoes and amount >= 60) in last 45 days",
        """SELECT DISTINCT customer FROM events
WHERE event = 'purchased' AND category = 'shoes' AND amount >= 60
  AND ts > {now} - INTERVAL 45 DAY AND ts <= {now}""",
    ),
    (
        "added_to_cart where (category = electronics and quantity >= 2) in last 30 days",
        """SELECT DISTINCT customer FROM events
WHERE event = 'added_to_cart' AND category = 'electronics' AND quantity >= 2
  AND ts > {now} - INTERVAL 30 DAY AND ts <= {now}""",
    ),
    (
        "purchased where ((category = books or category = toys) and amount < 20) "
        "at least 2 times in last 90 days",
        """SELECT customer FROM events
WHERE event = 'purchased' AND (category = 'books' OR category = 'toys') AND amount < 20
  AND ts > {now} - INTERVAL 90 DAY AND ts <= {now}
GROUP BY customer HAVING count(*) >= 2""",
    ),
    (
        "viewed where (category = garden and not price > 30) in last 14 days",
        """SELECT DISTINCT customer FROM events
WHERE event = 'viewed' AND category = 'garden' AND NOT coalesce(price > 30, false)
  AND ts > {now} - INTERVAL 14 DAY AND ts <= {now}""",
    ),
    # Substrings of a trait: a unique one (email), and low-cardinality ones.
    (
        'email contains "@example.org"',
        """SELECT customer FROM profiles WHERE contains(email, '@example.org')""",
    ),
    (
        'email contains "emma."',
        """SELECT customer FROM profiles WHERE contains(email, 'emma.')""",
    ),
    (
        'address.city contains "ki"',
        """SELECT customer FROM profiles WHERE contains("address.city", 'ki')""",
    ),
    (
        'first_name contains "li" and tier = Gold',
        """SELECT customer FROM profiles WHERE contains(first_name, 'li') AND tier = 'Gold'""",
    ),
    # Substrings of an event property: free text (searched's query) and a product id.
    (
        'searched where query contains "waterproof" in last 30 days',
        """SELECT DISTINCT customer FROM events
WHERE event = 'searched' AND contains(query, 'waterproof')
  AND ts > {now} - INTERVAL 30 DAY AND ts <= {now}""",
    ),
    (
        'searched where query contains "for kids" at least 2 times in last 180 days',
        """SELECT customer FROM events
WHERE event = 'searched' AND contains(query, 'for kids')
  AND ts > {now} - INTERVAL 180 DAY AND ts <= {now}
GROUP BY customer HAVING count(*) >= 2""",
    ),
    (
        'viewed where product contains "p-01" in last 7 days',
        """SELECT DISTINCT customer FROM events
WHERE event = 'viewed' AND contains(product, 'p-01')
  AND ts > {now} - INTERVAL 7 DAY AND ts <= {now}""",
    ),
    # Windows under a day.
    (
        "visited in last 2 hours",
        """SELECT DISTINCT customer FROM events
WHERE event = 'visited' AND ts > {now} - INTERVAL 2 HOUR AND ts <= {now}""",
    ),
    (
        "viewed at least 3 times in last 12 hours",
        """SELECT customer FROM events
WHERE event = 'viewed' AND ts > {now} - INTERVAL 12 HOUR AND ts <= {now}
GROUP BY customer HAVING count(*) >= 3""",
    ),
    (
        "added_to_cart in last 90 minutes and not purchased in last 90 minutes",
        """SELECT customer FROM events
WHERE event = 'added_to_cart' AND ts > {now} - INTERVAL 90 MINUTE AND ts <= {now}
EXCEPT
SELECT customer FROM events
WHERE event = 'purchased' AND ts > {now} - INTERVAL 90 MINUTE AND ts <= {now}""",
    ),
    # Aggregates of the events passing a filter (numbers only: `amount` is the numeric column).
    (
        "purchased where category = shoes sum(amount) > 100 in last 90 days",
        """SELECT customer FROM events
WHERE event = 'purchased' AND category = 'shoes'
  AND ts > {now} - INTERVAL 90 DAY AND ts <= {now}
GROUP BY customer HAVING sum(amount) > 100""",
    ),
    (
        "purchased where (category = books or category = toys) avg(amount) >= 40 in last 180 days",
        """SELECT customer FROM events
WHERE event = 'purchased' AND (category = 'books' OR category = 'toys')
  AND ts > {now} - INTERVAL 180 DAY AND ts <= {now}
GROUP BY customer HAVING count(amount) > 0 AND avg(amount) >= 40""",
    ),
    (
        "viewed where (category = garden and not price < 20) max(price) >= 45 in last 30 days",
        """SELECT customer FROM events
WHERE event = 'viewed' AND category = 'garden' AND NOT coalesce(price < 20, false)
  AND ts > {now} - INTERVAL 30 DAY AND ts <= {now}
GROUP BY customer HAVING max(price) >= 45""",
    ),
    # Orderings on numeric and date-time traits (issue 23). A date is its midnight UTC.
    (
        "signup_at > 60 days ago",
        """SELECT customer FROM profiles WHERE signup_at > {now} - INTERVAL 60 DAY""",
    ),
    (
        "age between 25 and 34",
        """SELECT customer FROM profiles WHERE age BETWEEN 25 AND 34""",
    ),
    (
        "signup_at between 2025-06-01 and 2025-12-31 and age < 30",
        """SELECT customer FROM profiles
WHERE signup_at BETWEEN TIMESTAMP '2025-06-01' AND TIMESTAMP '2025-12-31' AND age < 30""",
    ),
    # Sequences (issue 22), as ASOF joins: each first-step event meets the earliest later
    # second-step event (strictly after it, `a.ts < b.ts`; with `with same`, of the same
    # product). `then not B within T`: the wait is over (a.ts + T <= now) and that B, if any,
    # came after a.ts + T. `then B within T`: that B came by a.ts + T (and by now).
    (
        "added_to_cart then not purchased within 1 hour in last 7 days",
        """WITH a AS (SELECT customer, ts FROM events WHERE event = 'added_to_cart'
    AND ts > {now} - INTERVAL 7 DAY AND ts <= {now} - INTERVAL 1 HOUR),
  b AS (SELECT customer, ts FROM events WHERE event = 'purchased'
    AND ts > {now} - INTERVAL 7 DAY AND ts <= {now})
SELECT DISTINCT a.customer FROM a ASOF LEFT JOIN b ON a.customer = b.customer AND a.ts < b.ts
WHERE b.ts IS NULL OR b.ts > a.ts + INTERVAL 1 HOUR""",
    ),
    (
        "viewed then not purchased with same product within 1 day in last 7 days",
        """WITH a AS (SELECT customer, product, ts FROM events WHERE event = 'viewed'
    AND product IS NOT NULL AND ts > {now} - INTERVAL 7 DAY AND ts <= {now} - INTERVAL 1 DAY),
  b AS (SELECT customer, product, ts FROM events WHERE event = 'purchased'
    AND product IS NOT NULL AND ts > {now} - INTERVAL 7 DAY AND ts <= {now})
SELECT DISTINCT a.customer FROM a ASOF LEFT JOIN b
  ON a.customer = b.customer AND a.product = b.product AND a.ts < b.ts
WHERE b.ts IS NULL OR b.ts > a.ts + INTERVAL 1 DAY""",
    ),
    (
        "added_to_cart then purchased within 1 hour in last 7 days",
        """WITH a AS (SELECT customer, ts FROM events WHERE event = 'added_to_cart'
    AND ts > {now} - INTERVAL 7 DAY AND ts <= {now}),
  b AS (SELECT customer, ts FROM events WHERE event = 'purchased'
    AND ts > {now} - INTERVAL 7 DAY AND ts <= {now})
SELECT DISTINCT a.customer FROM a ASOF JOIN b ON a.customer = b.customer AND a.ts < b.ts
WHERE b.ts <= a.ts + INTERVAL 1 HOUR""",
    ),
    # First and last (issue 22): the earliest (latest) matching event up to now, per customer,
    # in the window.
    (
        "first purchased in last 30 days",
        """SELECT customer FROM events WHERE event = 'purchased' AND ts <= {now}
GROUP BY customer HAVING min(ts) > {now} - INTERVAL 30 DAY""",
    ),
    (
        "last purchased before 180 days ago",
        """SELECT customer FROM events WHERE event = 'purchased' AND ts <= {now}
GROUP BY customer HAVING max(ts) < {now} - INTERVAL 180 DAY""",
    ),
    (
        "first viewed where price >= 100 in last 7 days",
        """SELECT customer FROM events WHERE event = 'viewed' AND price >= 100 AND ts <= {now}
GROUP BY customer HAVING min(ts) > {now} - INTERVAL 7 DAY""",
    ),
    # Distinct values as a frequency (issue 22): how many different values of the property the
    # customer's events in the window carry.
    (
        "purchased distinct(product) >= 3 in last 90 days",
        """SELECT customer FROM events WHERE event = 'purchased' AND product IS NOT NULL
    AND ts > {now} - INTERVAL 90 DAY AND ts <= {now}
GROUP BY customer HAVING count(DISTINCT product) >= 3""",
    ),
    (
        "viewed distinct(category) >= 5 in last 30 days",
        """SELECT customer FROM events WHERE event = 'viewed' AND category IS NOT NULL
    AND ts > {now} - INTERVAL 30 DAY AND ts <= {now}
GROUP BY customer HAVING count(DISTINCT category) >= 5""",
    ),
    # Buckets (issue 22): the first 8 bytes of SHA-256 of `NAME:ID` (its first 16 hex digits),
    # big-endian, modulo 100, over every known customer.
    (
        "bucket(exp) < 50 and tier = Gold",
        """SELECT customer FROM customers
WHERE CAST('0x' || substr(sha256('exp:' || customer), 1, 16) AS UBIGINT) % 100 < 50
INTERSECT
SELECT customer FROM profiles WHERE tier = 'Gold'""",
    ),
    (
        "bucket(exp) < 50",
        """SELECT customer FROM customers
WHERE CAST('0x' || substr(sha256('exp:' || customer), 1, 16) AS UBIGINT) % 100 < 50""",
    ),
]

NUMERIC = ("BIGINT", "UBIGINT", "DOUBLE")
RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
SCHEMA_VERSION = "3"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------
# Loading


def load(con, ndjson, stage_path):
    """Builds customers, profiles and events from the NDJSON file."""
    t0 = time.time()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"ATTACH {sql_str(stage_path)} AS stage")
    # 1. Raw lines, in file order (a table keeps insertion order, so rowid is the arrival order).
    con.execute(
        f"""CREATE TABLE stage.raw AS SELECT * FROM read_ndjson({sql_str(ndjson)},
            columns = {{type: 'JSON', userId: 'JSON', anonymousId: 'JSON', messageId: 'JSON',
                        timestamp: 'JSON', event: 'JSON', traits: 'JSON', properties: 'JSON'}},
            ignore_errors = true, maximum_object_size = 67108864)"""
    )
    log(f"  read {con.execute('SELECT count(*) FROM stage.raw').fetchone()[0]:,} lines"
        f" in {time.time() - t0:.0f} s")

    # 2. Valid, first-seen messages with their customer and timestamp.
    def id_text(col):
        return f"""CASE WHEN json_type({col}) = 'VARCHAR' AND {col}->>'$' <> '' THEN {col}->>'$'
                        WHEN json_type({col}) IN ('BIGINT', 'UBIGINT') THEN {col}->>'$' END"""

    con.execute(
        f"""CREATE TABLE stage.msgs AS
        WITH m AS (
          SELECT rowid AS seq, type->>'$' AS type,
                 coalesce({id_text('userId')}, {id_text('anonymousId')}) AS customer,
                 CASE WHEN json_type(messageId) = 'VARCHAR' THEN messageId->>'$' END AS message_id,
                 CASE WHEN timestamp IS NULL THEN current_timestamp::TIMESTAMP
                      WHEN json_type(timestamp) = 'VARCHAR' AND regexp_matches(timestamp->>'$', '{RFC3339}')
                        THEN TRY_CAST(timestamp->>'$' AS TIMESTAMPTZ)::TIMESTAMP
                      WHEN json_type(timestamp) IN ('BIGINT', 'UBIGINT')
                        THEN epoch_ms(TRY_CAST(timestamp->>'$' AS BIGINT)) END AS ts,
                 CASE WHEN json_type(event) = 'VARCHAR' THEN event->>'$' END AS event,
                 traits, properties
          FROM stage.raw
        )
        SELECT * FROM m
        WHERE customer IS NOT NULL
          AND ts IS NOT NULL AND ts >= TIMESTAMP '1970-01-01' AND ts < TIMESTAMP '2100-01-01'
          AND ((type = 'identify' AND (traits IS NULL OR json_type(traits) = 'OBJECT'))
            OR (type = 'track' AND event <> ''
                AND (properties IS NULL OR json_type(properties) = 'OBJECT')))
        QUALIFY message_id IS NULL
             OR row_number() OVER (PARTITION BY message_id ORDER BY seq) = 1"""
    )
    con.execute("DROP TABLE stage.raw")
    n = con.execute("SELECT count(*) FROM stage.msgs").fetchone()[0]
    log(f"  {n:,} valid first-seen messages ({time.time() - t0:.0f} s)")

    con.execute("CREATE TABLE customers AS SELECT DISTINCT customer FROM stage.msgs ORDER BY customer")

    # 3. Profiles: every trait leaf of every identify, latest (by arrival) per customer and name.
    con.execute(
        """CREATE TABLE stage.trait_latest AS
        WITH leaves AS (
          SELECT m.customer, m.seq, t.id AS pos,
                 regexp_replace(substr(t.fullkey, 3), '"', '', 'g') AS name,
                 t.type AS kind, t.value AS value
          FROM stage.msgs m, json_tree(m.traits) t
          WHERE m.type = 'identify' AND m.traits IS NOT NULL
            AND t.type <> 'OBJECT' AND t.fullkey NOT LIKE '%[%'
        )
        SELECT customer, name, arg_max(kind, (seq, pos)) AS kind, arg_max(value, (seq, pos)) AS value
        FROM leaves GROUP BY customer, name"""
    )
    con.execute("DELETE FROM stage.trait_latest WHERE kind = 'NULL'")
    trait_cols, _ = typed_columns(con, "SELECT NULL AS path, name, kind, value FROM stage.trait_latest")
    selects = ", ".join(
        f"any_value({conv('value')}) FILTER (WHERE name = {sql_str(name)}) AS {quote_ident(col)}"
        for name, col, conv in trait_cols
    )
    con.execute(
        f"""CREATE TABLE profiles AS
        SELECT p.customer{', ' + selects if selects else ''}
        FROM (SELECT DISTINCT customer FROM stage.msgs WHERE type = 'identify') p
        LEFT JOIN stage.trait_latest t USING (customer)
        GROUP BY p.customer ORDER BY p.customer"""
    )
    log(f"  profiles: {con.execute('SELECT count(*) FROM profiles').fetchone()[0]:,} rows,"
        f" columns {[c for _, c, _ in trait_cols]} ({time.time() - t0:.0f} s)")

    # 4. Events: the property leaves seen anywhere give the columns.
    prop_cols, paths = typed_columns(
        con,
        """SELECT t.fullkey AS path, regexp_replace(substr(t.fullkey, 3), '"', '', 'g') AS name,
                  t.type AS kind, t.value AS value
           FROM stage.msgs m, json_tree(m.properties) t
           WHERE m.type = 'track' AND m.properties IS NOT NULL
             AND t.type NOT IN ('OBJECT', 'NULL') AND t.fullkey NOT LIKE '%[%'""",
    )
    # One json_extract per event for all paths; then each column converts its element.
    path_list = "[" + ", ".join(sql_str(p) for p, _ in paths) + "]"
    index = {name: i + 1 for i, (_, name) in enumerate(paths)}
    cols = [f"{conv(f'props[{index[name]}]')} AS {quote_ident(col)}" for name, col, conv in prop_cols]
    con.execute(
        f"""CREATE TABLE events AS
        SELECT customer, event, ts{', ' + ', '.join(cols) if cols else ''}
        FROM (SELECT customer, event, ts,
                     {'json_extract(properties, ' + path_list + ')' if paths else 'NULL'} AS props
              FROM stage.msgs WHERE type = 'track')
        ORDER BY event, ts"""
    )
    log(f"  events: {con.execute('SELECT count(*) FROM events').fetchone()[0]:,} rows,"
        f" columns {[c for _, c, _ in prop_cols]} ({time.time() - t0:.0f} s)")
    con.execute("DETACH stage")
    con.execute("CREATE TABLE meta AS SELECT ? AS source, ? AS size, ? AS version",
                [os.path.abspath(ndjson), os.path.getsize(ndjson), SCHEMA_VERSION])
    con.execute("CHECKPOINT")
    log(f"  loaded in {time.time() - t0:.0f} s")


def group_kinds(rows):
    out = {}
    for name, kind, n, scale, digits, exponent, times in rows:
        out.setdefault(name, []).append((kind, n, scale, digits, exponent, times))
    return out


def kind_class(kind, times):
    if kind in NUMERIC:
        return "num"
    if kind == "VARCHAR":
        return "time" if times else "text"
    if kind == "BOOLEAN":
        return "bool"
    if kind == "ARRAY":
        return "list"
    return None


def conversion(cls, stats, v):
    """SQL turning JSON element `v` into the column of class `cls`, NULL for other kinds."""
    if cls == "num":
        scale = max((s or 0) for _, _, s, _, _, _ in stats)
        digits = max((d or 0) for _, _, _, d, _, _ in stats)
        exponent = any(e for _, _, _, _, e, _ in stats)
        integers = all(k != "DOUBLE" for k, *_ in stats)
        if integers and digits <= 18:
            typ = "BIGINT"
        elif not exponent and scale <= 9 and digits + scale <= 18:
            typ = f"DECIMAL(18, {scale})"
        else:
            typ = "DOUBLE"
        kinds = ", ".join(sql_str(k) for k in NUMERIC)
        return f"CASE WHEN json_type({v}) IN ({kinds}) THEN ({v})::VARCHAR::{typ} END"
    if cls == "text":
        return f"CASE WHEN json_type({v}) = 'VARCHAR' THEN {v}->>'$' END"
    if cls == "time":
        return f"CASE WHEN json_type({v}) = 'VARCHAR' THEN TRY_CAST({v}->>'$' AS TIMESTAMPTZ)::TIMESTAMP END"
    if cls == "bool":
        return f"CASE WHEN json_type({v}) = 'BOOLEAN' THEN ({v})::BOOLEAN END"
    if cls == "list":
        return f"CASE WHEN json_type({v}) = 'ARRAY' THEN json_extract_string({v}, '$[*]') END"
    raise ValueError(cls)


def plan_columns(kinds_by_name):
    """[(name, column, conversion of a JSON expression)] for each name: the most common class
    keeps the name, the others get a suffix."""
    out = []
    for name in sorted(kinds_by_name):
        by_class = {}
        for kind, n, scale, digits, exponent, times in kinds_by_name[name]:
            cls = kind_class(kind, times)
            if cls is not None:
                by_class.setdefault(cls, []).append((kind, n, scale, digits, exponent, times))
        # A text class whose values are all RFC 3339 is a time class; mixed stay text.
        ranked = sorted(by_class, key=lambda c: -sum(r[1] for r in by_class[c]))
        for i, cls in enumerate(ranked):
            col = name if i == 0 else f"{name}__{cls}"
            stats = by_class[cls]
            out.append((name, col, lambda v, cls=cls, stats=stats: conversion(cls, stats, v)))
    return out


def typed_columns(con, leaves):
    """The typed columns for the leaves (path, name, kind, value) of a query, and the distinct
    (path, name) pairs, from one pass of statistics by name and JSON kind."""
    rows = con.execute(
        f"""SELECT path, name, kind, count(*),
               max(CASE WHEN kind = 'DOUBLE' THEN length(regexp_extract(value::VARCHAR, '\\.(\\d+)$', 1)) ELSE 0 END),
               max(length(regexp_extract(value::VARCHAR, '^-?(\\d+)', 1))),
               bool_or(kind = 'DOUBLE' AND regexp_matches(value::VARCHAR, '[eE]')),
               bool_and(kind <> 'VARCHAR' OR regexp_matches(value->>'$', '{RFC3339}'))
        FROM ({leaves}) GROUP BY ALL"""
    ).fetchall()
    paths = sorted({(r[0], r[1]) for r in rows}, key=lambda p: p[1])
    return plan_columns(group_kinds(r[1:] for r in rows)), paths


def open_duckdb(path, ndjson):
    """Opens the DuckDB file, building it when missing or made from another source."""
    if os.path.exists(path):
        con = duckdb.connect(path)
        try:
            src, size, version = con.execute("SELECT source, size, version FROM meta").fetchone()
            if (src, size, version) == (os.path.abspath(ndjson), os.path.getsize(ndjson), SCHEMA_VERSION):
                log(f"== DuckDB: reusing {path}")
                con.execute("SET TimeZone = 'UTC'")
                return con
        except duckdb.Error:
            pass
        con.close()
        os.remove(path)
    log(f"== DuckDB: loading {ndjson} into {path}")
    tmp = path + ".building"
    stage = path + ".stage"
    for p in (tmp, stage, tmp + ".wal", stage + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    con = duckdb.connect(tmp)
    load(con, ndjson, stage)
    con.close()
    os.remove(stage)
    os.rename(tmp, path)
    con = duckdb.connect(path)
    con.execute("SET TimeZone = 'UTC'")
    return con


# ---------------------------------------------------------------------------------------------
# Running


def parse_now(text):
    """RFC 3339 or a date, as a naive UTC datetime."""
    if len(text) == 10:
        return dt.datetime.fromisoformat(text)
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return t


def ts_literal(t):
    return f"TIMESTAMP '{t.isoformat(sep=' ', timespec='milliseconds')}'"


def time_sql(con, sql, runs):
    con.execute(f"SELECT count(*) FROM ({sql})").fetchall()  # warm up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        con.execute(f"SELECT count(*) FROM ({sql})").fetchall()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def audiencedb_ids(args, rule):
    """The members by `audiencedb query` in a fresh process, and the engine time of that cold
    first run (its `elapsed_ms`: the rule's evaluation, not the opening of the folder)."""
    cmd = [args.bin, "--db", args.db, "query", "--now", args.now, "--format", "json", rule]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, None, p.stderr.strip().removeprefix("error: ")
    out = json.loads(p.stdout)
    return out["ids"], out["elapsed_ms"], None


# The audiences and windows of the `top` cases of benches/values.rs (issue 21), as SQL. A case's
# rows are the DISTINCT (customer, value) pairs of the event in the window, grouped by value:
# `everyone` is the group's size, `customers` those of the audience.
TOP_AUDIENCES = {
    "purchased product X": "SELECT DISTINCT customer FROM events "
    "WHERE event = 'purchased' AND product = 'X' AND ts <= {now}",
    "viewed in last 7 days": "SELECT DISTINCT customer FROM events "
    "WHERE event = 'viewed' AND ts > {now} - INTERVAL 7 DAY AND ts <= {now}",
    "added_to_cart in last 5 days": "SELECT DISTINCT customer FROM events "
    "WHERE event = 'added_to_cart' AND ts > {now} - INTERVAL 5 DAY AND ts <= {now}",
    "tier = Gold": "SELECT customer FROM profiles WHERE tier = 'Gold'",
    "everyone": "SELECT customer FROM customers",
}
TOP_WINDOWS = {
    None: "ts <= {now}",
    "in last 90 days": "ts > {now} - INTERVAL 90 DAY AND ts <= {now}",
    "in last 30 days": "ts > {now} - INTERVAL 30 DAY AND ts <= {now}",
}


def top_sql(case, now):
    """The SQL of one `top` case: (value, customers, everyone) for every value."""
    prop = quote_ident(case["property"])
    audience = TOP_AUDIENCES[case["rule"]].format(now=now)
    window = TOP_WINDOWS[case["window"]].format(now=now)
    return f"""WITH aud AS ({audience}),
w AS (SELECT DISTINCT customer, {prop} AS value FROM events
      WHERE event = {sql_str(case["event"])} AND {prop} IS NOT NULL AND {window})
SELECT value, count(*) FILTER (WHERE customer IN (SELECT customer FROM aud)) AS customers,
       count(*) AS everyone
FROM w GROUP BY value"""


def ranked(rows, order, least):
    """The rows `top` keeps, in its order: customers (or lift: customers/everyone, exactly)
    descending, then value."""
    from fractions import Fraction

    kept = [r for r in rows if r[1] >= least]
    if order == "lift":
        kept.sort(key=lambda r: (-Fraction(r[1], r[2]), -r[1], r[0].encode()))
    else:
        kept.sort(key=lambda r: (-r[1], r[0].encode()))
    return kept


def compare_top(con, args, now, cases):
    """Times each `top` case in DuckDB and compares its rows and ranking with `audiencedb top`."""
    lines = [
        "| case | audience | values | audiencedb median ms | DuckDB median ms | ratio | identical |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    all_identical = True
    for case in cases:
        if case["rule"] not in TOP_AUDIENCES or case["window"] not in TOP_WINDOWS:
            log(f"  {case['name']}: no SQL for this case, skipped")
            continue
        sql = top_sql(case, now)
        duck_ms = time_sql(con, sql, args.runs)
        least = 5 if case["order"] == "lift" else 1
        duck = ranked(con.execute(sql).fetchall(), case["order"], least)
        audience = con.execute(
            f"SELECT count(*) FROM ({TOP_AUDIENCES[case['rule']].format(now=now)})"
        ).fetchone()[0]
        identical = ""
        if args.db:
            cmd = [args.bin, "--db", args.db, "top", case["rule"], "--event", case["event"],
                   "--by", case["property"], "--now", args.now, "--format", "json",
                   "--limit", "1000000", "--order", case["order"]]
            if case["window"]:
                cmd += ["--window", case["window"]]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                identical = f"error: {p.stderr.strip()}"
                all_identical = False
            else:
                ours = json.loads(p.stdout)
                rows = [(r["value"], r["customers"], r["everyone"]) for r in ours["rows"]]
                same = rows == [tuple(r) for r in duck] and ours["audience"] == audience
                identical = "yes" if same else f"no: audience {ours['audience']} vs {audience}"
                all_identical &= same
        r = duck_ms / case["median_ms"]
        ratio = f"{r:.0f}x" if r >= 10 else f"{r:.2g}x"
        window = f' --window "{case["window"]}"' if case["window"] else ""
        lines.append(
            f"| `top \"{case['rule']}\" --event {case['event']} --by {case['property']}{window}"
            f" --order {case['order']}` | {audience:,} | {len(duck):,} | {fmt_ms(case['median_ms'])}"
            f" | {fmt_ms(duck_ms)} | {ratio} | {identical} |"
        )
        log(f"  {case['name']}: DuckDB {fmt_ms(duck_ms)} ms, audiencedb {fmt_ms(case['median_ms'])} ms,"
            f" {ratio}, identical: {identical} (load {os.getloadavg()[0]:.1f})")
    table = "\n".join(lines)
    print(table)
    return table, all_identical


def fmt_ratio(a, b):
    """a / b as `12x` or `0.2x`; empty when either is missing."""
    if not a or not b:
        return ""
    r = a / b
    return f"{r:.0f}x" if r >= 10 else f"{r:.2g}x"


def fmt_ms(x):
    if x is None:
        return ""
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ndjson", required=True)
    ap.add_argument("--duckdb", required=True)
    ap.add_argument("--db", help="the audiencedb folder (member sets compared when given)")
    ap.add_argument("--bin", default="target/release/audiencedb")
    ap.add_argument("--now", required=True, help="RFC 3339 time or date: the rules' now")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--bench-json", help="the bench binary's results (audiencedb timings)")
    ap.add_argument("--out", help="also write the markdown table here")
    ap.add_argument("--rule", action="append", help="run only these rules (repeatable)")
    ap.add_argument("--load-only", action="store_true", help="build the DuckDB file and stop")
    ap.add_argument("--top-json", help="compare the `top` cases of `cargo bench --bench values` "
                    "(its AUDIENCEDB_BENCH_JSON) instead of the rules")
    args = ap.parse_args()

    con = open_duckdb(args.duckdb, args.ndjson)
    if args.load_only:
        return 0
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    now = ts_literal(parse_now(args.now))
    bench = {}
    if args.bench_json and os.path.exists(args.bench_json):
        with open(args.bench_json) as f:
            bench = {r["rule"]: r for r in json.load(f)["rules"]}
    log(f"== DuckDB {duckdb.__version__}, {threads} threads, now {now}, {args.runs} warm runs a rule")
    if args.top_json:
        with open(args.top_json) as f:
            table, all_identical = compare_top(con, args, now, json.load(f))
        if args.out:
            with open(args.out, "w") as f:
                f.write(table + "\n")
        return 0 if all_identical or not args.db else 1

    lines = [
        "| rule | SQL | members | audiencedb median ms | p99 ms | cold first run ms | DuckDB median ms"
        " | ratio | cold ratio | identical |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    all_identical = True
    loads = []
    for rule, template in RULES:
        if args.rule and rule not in args.rule:
            continue
        sql = template.format(now=now)
        duck_ms = time_sql(con, sql, args.runs)
        duck_ids = sorted(r[0] for r in con.execute(sql).fetchall())
        ours = bench.get(rule, {})
        ours_ms = ours.get("median_ms")
        identical = ""
        cold_ms = None
        if args.db:
            ids, cold_ms, err = audiencedb_ids(args, rule)
            if ids is None:
                identical = f"error: {err.splitlines()[0] if err else '?'}"
                all_identical = False
            else:
                a, b = set(ids), set(duck_ids)
                diff = a ^ b
                if not diff:
                    identical = "yes"
                else:
                    all_identical = False
                    only_ours = sorted(a - b)[:3]
                    only_duck = sorted(b - a)[:3]
                    identical = (f"no: {len(diff)} differ (only audiencedb {len(a - b)} {only_ours},"
                                 f" only DuckDB {len(b - a)} {only_duck})")
                if ids != sorted(ids, key=lambda s: s.encode()):
                    identical += " (ids not in byte order)"
        ratio = fmt_ratio(duck_ms, ours_ms)
        cold_ratio = fmt_ratio(cold_ms, ours_ms)
        sql_cell = "<code>" + " ".join(sql.replace(now, "NOW").split()).replace("|", "\\|") + "</code>"
        lines.append(
            f"| `{rule}` | {sql_cell} | {len(duck_ids):,} | {fmt_ms(ours_ms)} | {fmt_ms(ours.get('p99_ms'))}"
            f" | {fmt_ms(cold_ms)} | {fmt_ms(duck_ms)} | {ratio} | {cold_ratio} | {identical} |"
        )
        loads.append(os.getloadavg()[0])
        log(f"  {rule}: {len(duck_ids):,} members, DuckDB {fmt_ms(duck_ms)} ms,"
            f" audiencedb {fmt_ms(ours_ms)} ms (cold {fmt_ms(cold_ms)}) {ratio} {identical}"
            f" (load {loads[-1]:.1f})")
    if loads:
        lines.append(f"\nOne-minute load average after each rule's DuckDB runs: {min(loads):.1f} to {max(loads):.1f}.")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0 if all_identical or not args.db else 1


if __name__ == "__main__":
    sys.exit(main())
