#!/usr/bin/env bash
# Socket server benchmark (issue 6): build a small shop, serve it, and drive it with
# redis-benchmark over the Unix socket: PING, TRACK (random customers) and a QUERY ... COUNT of a
# trait rule, at 1 and 50 clients, without and with 16-deep pipelining. Prints one CSV line per
# run (requests/s and latency percentiles in ms, as redis-benchmark --csv gives them), and the
# same rule's time in process for comparison.
#
#   scripts/bench-server.sh [CUSTOMERS] [WORKDIR]     (defaults: 20000, /tmp/audiencedb-sbench)
#
# Needs redis-benchmark (Debian redis-tools). The shop is kept in WORKDIR and reused; TRACK adds
# events to it, so later runs query a slightly larger shop. Figures go to docs/BENCHMARKS.md by
# hand, with the machine.
set -euo pipefail
customers=${1:-20000}
work=${2:-/tmp/audiencedb-sbench}
requests=${AUDIENCEDB_BENCH_REQUESTS:-100000}
writes=${AUDIENCEDB_BENCH_WRITES:-5000}
rule='tier = Gold'
cd "$(dirname "$0")/.."
command -v redis-benchmark >/dev/null || {
  echo "redis-benchmark not found: apt-get install -y redis-tools" >&2
  exit 1
}
cargo build --release --quiet
bin=$PWD/target/release/audiencedb
mkdir -p "$work"
chmod 700 "$work"
db="$work/db-$customers"
sock="$work/s.sock"

if [ ! -e "$db.complete" ]; then
  rm -rf "$db"
  echo "== generating and importing $customers customers (seed 7)"
  "$bin" gen --customers "$customers" --seed 7 --end 2026-11-01 | "$bin" --db "$db" import -
  touch "$db.complete"
fi

echo "== in process: $rule"
for _ in 1 2 3; do
  "$bin" --db "$db" query --format json "$rule" | sed 's/,"ids".*//'
done

"$bin" --db "$db" serve --socket "$sock" 2>"$work/serve.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -S "$sock" ] && redis-cli -s "$sock" PING >/dev/null 2>&1 && break
  sleep 0.1
done

run() { # label clients pipeline requests command...
  local label=$1 c=$2 p=$3 n=$4
  shift 4
  printf '%s,c=%s,P=%s,' "$label" "$c" "$p"
  redis-benchmark -s "$sock" -c "$c" -P "$p" -n "$n" -r 1000000 --csv "$@" | tail -n 1
}

echo "== redis-benchmark over $sock ($(nproc) cores)"
echo 'label,clients,pipeline,"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"'
for c in 1 50; do
  for p in 1 16; do
    run PING "$c" "$p" "$requests" PING
    run TRACK "$c" "$p" "$writes" TRACK "b-__rand_int__" viewed '{"product":"X"}'
    run QUERY "$c" "$p" "$requests" QUERY "$rule" COUNT
  done
done
redis-cli -s "$sock" INFO | grep -E '^(customers|events|total_commands_processed|total_error_replies):'
