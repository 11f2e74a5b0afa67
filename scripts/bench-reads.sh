#!/usr/bin/env bash
# Reads benchmark (issue 18): `scripts/bench-reads.sh BIN DIR` runs three `customer show` and two
# rules with exact checks, each its own process (so each opens the folder), on a folder of
# `gen --customers 200000 --end 2026-11-01` (the ids and times of that shop).
set -euo pipefail
bin=$1; db=$2
for c in c-000042 c-100001 c-199999; do "$bin" --db "$db" customer show "$c" > /dev/null; done
"$bin" --db "$db" query --now 2026-11-01 'viewed at least 3 times in last 12 hours' | head -3
"$bin" --db "$db" query --now 2026-11-01 'added_to_cart in last 90 minutes and not purchased in last 90 minutes' | head -3
