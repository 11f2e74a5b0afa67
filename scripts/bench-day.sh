#!/usr/bin/env bash
# Bytes per event over a day of small imports (issue 18): a folder of the generated shop, then
# the next day of the same shop in 24 hourly files, each imported by its own process; the size
# on disk after each hour, the user CPU of each import, then three reopens.
#
#   scripts/bench-day.sh BIN CUSTOMERS WORKDIR NAME
#
# BIN is the audiencedb binary to measure (e.g. target/release/audiencedb, or another build's
# for a paired run); the data is generated once per CUSTOMERS in WORKDIR (seed 1, the period
# ending 2026-11-01, time order), and the folder is WORKDIR/NAME. The next day is the lines of
# 2026-11-01 of a 366-day period ending 2026-11-02, cut by hour, their `messageId`s given a
# suffix (the generator repeats message ids across period lengths). Needs GNU time and python3.
set -euo pipefail
bin=$(realpath "$1")
customers=$2
work=$3
name=$4
mkdir -p "$work"
data="$work/shop-$customers.ndjson"
if [ ! -s "$data" ]; then
  "$bin" gen --customers "$customers" --seed 1 --end 2026-11-01 > "$data.part"
  mv "$data.part" "$data"
fi
hours="$work/day-$customers"
if [ ! -s "$hours/h23.ndjson" ]; then
  mkdir -p "$hours"
  "$bin" gen --customers "$customers" --seed 1 --days 366 --end 2026-11-02 \
    | python3 -c '
import sys
out = {}
for line in sys.stdin:
    at = line.find("\"timestamp\":\"2026-11-01T")
    if at < 0:
        continue
    hour = line[at + 24:at + 26]
    line = line.replace("\"messageId\":\"", "\"messageId\":\"day2-", 1)
    f = out.get(hour) or out.setdefault(hour, open(sys.argv[1] + "/h" + hour + ".ndjson", "w"))
    f.write(line)
' "$hours"
fi
db="$work/$name"
rm -rf "$db" "$db.import.log"
/usr/bin/time -f "import: user %U s, sys %S s, wall %e s, peak %M KB" "$bin" --db "$db" import "$data" > "$db.import.log"
events() { "$bin" --db "$db" stats | sed -n 's/.* profiles, \([0-9]*\) events.*/\1/p'; }
echo "after the import: $(du -sb "$db" | cut -f1) bytes"
for h in $(seq -w 0 23); do
  /usr/bin/time -f "h$h: user %U s, sys %S s" "$bin" --db "$db" import "$hours/h$h.ndjson" > /dev/null
  echo "after h$h: $(du -sb "$db" | cut -f1) bytes"
done
for _ in 1 2 3; do "$bin" --db "$db" stats > /dev/null; done
echo "after 3 reopens: $(du -sb "$db" | cut -f1) bytes, $(events) events"
"$bin" --db "$db" stats | tail -n +4
