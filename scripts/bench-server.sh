#!/usr/bin/env bash
# Socket server benchmark (issue 6): serve a shop with 100 saved audiences and drive it with
# redis-benchmark over the Unix socket: PING, AUDIENCES.OF (one customer's audiences), TRACK
# (random customers) and a QUERY ... COUNT of a trait rule, at 1 and 50 clients, without and with
# 16-deep pipelining. Prints one CSV line per run (requests/s and latency percentiles in ms, as
# redis-benchmark --csv gives them) with the load average when it ended, the same rule's time in
# process for comparison, and how long a SUBSCRIBE notice takes to arrive.
#
#   scripts/bench-server.sh [CUSTOMERS] [WORKDIR]     (defaults: 20000, /tmp/audiencedb-sbench)
#
# AUDIENCEDB_BENCH_SOURCE=FOLDER copies that database folder into WORKDIR (once) instead of
# generating a shop; the original is never served or written. Needs redis-benchmark (Debian
# redis-tools); the notice latency needs the PyPI redis client in target/server-venv (as .ci/run
# makes it) and is skipped without it. TRACK adds events, so later runs query a slightly larger
# shop. Figures go to docs/BENCHMARKS.md by hand, with the machine.
set -euo pipefail
customers=${1:-20000}
work=${2:-/tmp/audiencedb-sbench}
requests=${AUDIENCEDB_BENCH_REQUESTS:-100000}
writes=${AUDIENCEDB_BENCH_WRITES:-5000}
source_db=${AUDIENCEDB_BENCH_SOURCE:-}
rule='tier = Gold'
cd "$(dirname "$0")/.."
command -v redis-benchmark >/dev/null || {
  echo "redis-benchmark not found: apt-get install -y redis-tools" >&2
  exit 1
}
cargo build --release --quiet --bin audiencedb
bin=$PWD/target/release/audiencedb
python=$PWD/target/server-venv/bin/python
mkdir -p "$work"
chmod 700 "$work"
db="$work/db-$customers"
sock="$work/s.sock"

if [ ! -e "$db.complete" ]; then
  rm -rf "$db"
  if [ -n "$source_db" ]; then
    echo "== copying $source_db"
    cp -a "$source_db" "$db"
  else
    echo "== generating and importing $customers customers (seed 7)"
    "$bin" gen --customers "$customers" --seed 7 --end 2026-11-01 | "$bin" --db "$db" import -
  fi
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
cli() { redis-cli -s "$sock" "$@"; }

# 100 saved audiences, the families benches/audiences.rs saves: traits, event windows, counts
# and aggregates. Defined once per shop.
rules=()
for t in Bronze Silver Gold Platinum; do
  for c in FI SE NO DK DE; do rules+=("tier = $t and country = $c"); done
done
for d in mobile desktop tablet; do
  for t in Bronze Silver Gold Platinum; do rules+=("device = $d and not tier = $t"); done
done
for s in facebook google email direct tiktok; do
  rules+=("source = $s" "source = $s and country in (FI, SE)")
done
i=0
for e in viewed purchased added_to_cart visited searched; do
  for days in 1 3 7 14 30 60 90 180; do rules+=("$e in last $((days + i)) days"); done
  i=$((i + 1))
done
for n in 2 3 5; do
  rules+=("purchased at least $n times in last 90 days" "visited at least $n times in last 7 days"
    "viewed at least $n times in last 30 days")
done
rules+=("purchased sum(amount) > 500 in last 365 days" "purchased sum(amount) > 200 in last 90 days"
  "purchased avg(amount) >= 80 in last 90 days" "purchased where amount >= 100 in last 30 days"
  "purchased ever and not purchased in last 90 days" "tier in (Gold, Platinum)"
  "country in (FI, SE, NO) and newsletter = true" "searched in last 2 days and tier = Gold"
  "added_to_cart in last 7 days and not purchased in last 7 days")
if ! cli AUDIENCE.SHOW bench_099 >/dev/null 2>&1 || [ "$(cli AUDIENCE.SHOW bench_099 | head -c 1)" != "{" ]; then
  echo "== defining ${#rules[@]} audiences"
  started=$(date +%s.%N)
  for i in "${!rules[@]}"; do
    out=$(cli AUDIENCE.DEFINE "$(printf 'bench_%03d' "$i")" "${rules[$i]}")
    [ "${out:0:1}" = "{" ] || { echo "audience $i (${rules[$i]}): $out" >&2; exit 1; }
  done
  echo "defined in $(echo "$(date +%s.%N) - $started" | bc) s"
fi
# A customer in many audiences: the first member of a trait audience.
who=$(cli AUDIENCE.MEMBERS bench_002 PAGE "" 1)
echo "== AUDIENCES.OF $who: $(cli AUDIENCES.OF "$who" | wc -l) audiences of $(cli AUDIENCE.LIST | grep -o '"name"' | wc -l)"

run() { # label clients pipeline requests command...
  local label=$1 c=$2 p=$3 n=$4
  shift 4
  printf '%s,c=%s,P=%s,' "$label" "$c" "$p"
  local line
  line=$(redis-benchmark -s "$sock" -c "$c" -P "$p" -n "$n" -r 1000000 --csv "$@" | tail -n 1)
  printf '%s,load %s\n' "$line" "$(cut -d' ' -f1 /proc/loadavg)"
}

echo "== redis-benchmark over $sock ($(nproc) cores)"
echo 'label,clients,pipeline,"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms",load'
for c in 1 50; do
  for p in 1 16; do
    run PING "$c" "$p" "$requests" PING
    run AUDIENCES.OF "$c" "$p" "$requests" AUDIENCES.OF "$who"
    run QUERY "$c" "$p" "$requests" QUERY "$rule" COUNT
    run TRACK "$c" "$p" "$writes" TRACK "b-__rand_int__" viewed '{"product":"X"}'
  done
done
cli INFO | grep -E '^(customers|events|total_commands_processed|total_error_replies):'

# SUBSCRIBE: from a write's OK to the notice it causes, on another connection.
if [ -x "$python" ]; then
  echo "== SUBSCRIBE notice latency (200 writes, load $(cut -d' ' -f1 /proc/loadavg))"
  "$python" - "$sock" <<'EOF'
import json, statistics, sys, threading, time
import redis

sock = sys.argv[1]
w = redis.Redis(unix_socket_path=sock)
w.execute_command("AUDIENCE.DEFINE", "bench_sub", "tier = SubBench")
sub = redis.Redis(unix_socket_path=sock).pubsub()
sub.subscribe("audience:bench_sub")
assert sub.get_message(timeout=5)["type"] == "subscribe"
after_ok, after_send = [], []
for i in range(200):
    tier = "SubBench" if i % 2 == 0 else "Other"
    t0 = time.perf_counter()
    w.execute_command("IDENTIFY", "sub-bench-1", json.dumps({"tier": tier}))
    t1 = time.perf_counter()
    m = sub.get_message(timeout=5)
    t2 = time.perf_counter()
    assert m and m["type"] == "message", m
    after_ok.append((t2 - t1) * 1e3)
    after_send.append((t2 - t0) * 1e3)
for label, xs in (("notice after the writer's OK", after_ok), ("write sent to notice read", after_send)):
    xs.sort()
    print(f"{label}: p50 {statistics.median(xs):.3f} ms, p99 {xs[int(len(xs) * 0.99) - 1]:.3f} ms, max {xs[-1]:.3f} ms")
w.execute_command("AUDIENCE.DROP", "bench_sub")
EOF
else
  echo "(no $python: SUBSCRIBE latency skipped)"
fi
