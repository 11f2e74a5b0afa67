#!/usr/bin/env bash
# Import benchmark (issue 2): generate a synthetic shop, import it, and report messages/s,
# bytes on disk per event, peak memory and the time to reopen the folder.
#
#   scripts/bench-import.sh [CUSTOMERS] [WORKDIR]      (defaults: 200000, /tmp/audiencedb-bench)
#
# ORDER=time (the default: messages in timestamp order, customers interleaved, as real streams
# arrive) or ORDER=customer (customer after customer, what every figure before issue 18 used).
#
# Needs GNU time (/usr/bin/time). Figures go to docs/BENCHMARKS.md by hand, with the machine.
set -euo pipefail
customers=${1:-200000}
work=${2:-/tmp/audiencedb-bench}
order=${ORDER:-time}
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/audiencedb
mkdir -p "$work"
data="$work/shop-$customers-$order.ndjson"
if [ ! -s "$data" ]; then
  echo "== generating $customers customers (seed 1, period ending 2026-11-01, $order order)"
  "$bin" gen --customers "$customers" --seed 1 --end 2026-11-01 --order "$order" > "$data.part"
  mv "$data.part" "$data"
fi
ls -l "$data"
rm -rf "$work/db"
echo "== import"
/usr/bin/time -f "wall %e s, user %U s, sys %S s, peak RSS %M KB" "$bin" --db "$work/db" import "$data"
echo "bytes on disk after the import: $(du -sb "$work/db" | cut -f1)"
echo "== reopen and stats (best of 3 opens)"
for _ in 1 2 3; do "$bin" --db "$work/db" stats | sed -n 1p; done
"$bin" --db "$work/db" stats | tail -n +2
echo "bytes on disk after the reopens: $(du -sb "$work/db" | cut -f1)"
echo "== verify"
"$bin" --db "$work/db" verify
