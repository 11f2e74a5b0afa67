#!/usr/bin/env bash
# kill -9 soak of `audiencedb serve` (issue 16), not run by CI:
#
#     scripts/soak-kill.sh [N] [DIR]       # N iterations (default 1000), folder under DIR
#
# Builds the release binary, then repeats N times: start `serve` on one growing folder, check
# that every TRACK acknowledged before the last kill is stored, run concurrent writers (each
# recording every acknowledged TRACK), kill -9 the server at a random moment. `verify` runs on
# the folder every VERIFY_EVERY iterations and at the end. Prints acknowledged / lost / failed
# opens / failed verifies; exits 1 if anything was lost or failed. Environment: WRITERS (8),
# KILL_MIN and KILL_MAX (seconds, 0.05 and 1.0), VERIFY_EVERY (50), SEED, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

n="${1:-1000}"
dir="${2:-$(mktemp -d /tmp/audiencedb-soak.XXXXXX)}"
cargo build --release --quiet
target="${CARGO_TARGET_DIR:-target}"
export AUDIENCEDB="$PWD/$target/release/audiencedb"
[ -x "$AUDIENCEDB" ] || AUDIENCEDB="$target/release/audiencedb"
export SOAK_DIR="$dir" ITERATIONS="$n"
status=0
python3 scripts/soak_kill.py || status=$?
echo "folder: $dir/soak.db (server log: $dir/server.log)"
exit $status
