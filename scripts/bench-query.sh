#!/usr/bin/env bash
# Query benchmark (issue 4): generate a synthetic shop, import it, time every example rule of
# rules.md warm (median, p99, peak memory), then run the same rules as SQL in DuckDB on the same
# data and compare times and member sets.
#
#   scripts/bench-query.sh [CUSTOMERS] [WORKDIR]     (defaults: 1000000, /tmp/audiencedb-qbench)
#
# The NDJSON, the audiencedb folder and the DuckDB file are kept in WORKDIR and reused by later
# runs (1M customers: about 10 GB of NDJSON, several minutes to import and to load into DuckDB).
# The rules' now is AUDIENCEDB_BENCH_NOW, by default the end of the generated period. DuckDB is
# installed with pip into a virtual environment in WORKDIR. Needs GNU time (/usr/bin/time).
# Figures go to docs/BENCHMARKS.md by hand, with the machine.
set -euo pipefail
customers=${1:-1000000}
work=${2:-/tmp/audiencedb-qbench}
# ORDER=time (default: as real streams arrive) or customer (what the figures before issue 18 used).
order=${ORDER:-time}
end=2026-11-01
now=${AUDIENCEDB_BENCH_NOW:-${end}T00:00:00Z}
runs=${AUDIENCEDB_BENCH_RUNS:-50}
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/audiencedb
mkdir -p "$work"
data="$work/shop-$customers-$order.ndjson"
db="$work/db-$customers-$order"

if [ ! -s "$data" ]; then
  echo "== generating $customers customers (seed 1, period ending $end)"
  "$bin" gen --customers "$customers" --seed 1 --end "$end" --order "$order" > "$data.part"
  mv "$data.part" "$data"
fi
ls -l "$data"

# The folder counts as complete once an import into it has finished.
if [ ! -e "$db.complete" ]; then
  rm -rf "$db"
  echo "== import"
  /usr/bin/time -f "wall %e s, peak RSS %M KB" "$bin" --db "$db" import "$data"
  touch "$db.complete"
fi
# The example `... and not in audience unsubscribed` needs the saved audience; (re)defined on
# every run, so that a build that can save audiences uses a folder imported before it could. The
# bench also runs that rule with the audience inlined.
"$bin" --db "$db" audience define unsubscribed "newsletter = false" 2>/dev/null ||
  echo "(could not save the audience 'unsubscribed': the rule that uses it will report an error)"

echo "== audiencedb: $runs warm runs a rule at $now"
AUDIENCEDB_BENCH_DB="$db" AUDIENCEDB_BENCH_NOW="$now" AUDIENCEDB_BENCH_RUNS="$runs" \
  AUDIENCEDB_BENCH_JSON="$work/query-bench-$customers.json" \
  cargo bench --quiet --bench query

echo "== DuckDB"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
fi
"$work/venv/bin/python" -c 'import duckdb' 2>/dev/null || "$work/venv/bin/pip" install --quiet duckdb
"$work/venv/bin/python" scripts/duckdb_compare.py --ndjson "$data" --duckdb "$work/shop-$customers.duckdb" \
  --db "$db" --bin "$bin" --now "$now" --bench-json "$work/query-bench-$customers.json" \
  --out "$work/query-compare-$customers.md"
