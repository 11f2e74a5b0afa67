#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time or number of runs, from its seeds and
# its growing corpus, and prints each target's executions and findings. Not run by CI.
#
#     scripts/fuzz.sh [SECONDS | -runs=N] [TARGET ...]
#
# SECONDS per target (default 60), or -runs=N executions per target; TARGETs default to all
# (parse roundtrip resp ndjson stored). Findings land in fuzz/artifacts/TARGET/; the corpus in
# fuzz/corpus/TARGET/ (both ignored by git). Installs cargo-fuzz if missing.
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer=address and friends). This project builds
# with stable Rust only, so the script sets RUSTC_BOOTSTRAP=1, which lets the stable compiler
# accept them: the same compiler, with its unstable features unlocked for this build alone.
# -O -a: optimised, with debug assertions and overflow checks, as the release binary has them
# (Cargo.toml: overflow-checks = true), so an overflow is a finding here as it is a panic there.
# Set SANITIZER=none to build without AddressSanitizer (faster, catches less), and
# FUZZ_ARGS for more libFuzzer flags (e.g. FUZZ_ARGS=-max_len=65536).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

bound="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(parse roundtrip resp ndjson stored)
case "$bound" in
  -runs=*) limit=("$bound") ;;
  *[!0-9]* | "") echo "usage: $0 [SECONDS | -runs=N] [TARGET ...]" >&2; exit 2 ;;
  *) limit=("-max_total_time=$bound") ;;
esac

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

seeds_of() {
  case "$1" in
    parse | roundtrip) echo seeds/rules ;;
    *) echo "seeds/$1" ;;
  esac
}

echo "== building the targets"
cargo fuzz build -O -a -s "${SANITIZER:-address}"

summary=()
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  log="artifacts/$t.log"
  echo "== $t (${limit[*]})"
  start=$(date +%s)
  rc=0
  # One process, one worker (libFuzzer's default without -jobs; -jobs=1 would fork a child
  # logging to fuzz-0.log): the machine is shared.
  # shellcheck disable=SC2086
  cargo fuzz run -O -a -s "${SANITIZER:-address}" "$t" "corpus/$t" "$(seeds_of "$t")" -- \
    "${limit[@]}" -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  after=$(find "artifacts/$t" -type f | wc -l)
  findings=$((after - before))
  if [ "$rc" -ne 0 ] && [ "$findings" -eq 0 ]; then findings="? (exit $rc: see $log)"; fi
  [ "$rc" -eq 0 ] || status=1
  line="$t: ${execs:-?} executions, ${speed:-?} exec/s, ${secs} s, findings: $findings"
  echo "$line"
  summary+=("$line")
  if [ "$rc" -ne 0 ]; then grep -m1 -A4 "panicked at\|ERROR: libFuzzer\|ERROR: AddressSanitizer" "$log" || true; fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
