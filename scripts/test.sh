#!/usr/bin/env bash
# Every test of the project, on a fresh machine: installs the clients the socket server's tests
# talk to (Debian's redis-tools: redis-cli, redis-benchmark; the PyPI `redis` package in a venv
# under target/), DuckDB and ClickHouse's engine (PyPI `duckdb` and `chdb`, same venv:
# tests/tables.rs and tests/sql.rs load the exported tables and run the generated SQL) and the
# purchase models of the PyPI package `lifetimes` with the CDNOW sample it ships (tests/predict.rs
# checks the fits against them), then runs `cargo test` with the arguments given (e.g.
# `scripts/test.sh --test server`). `.ci/run` calls this after fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "== installing redis-tools (redis-cli, redis-benchmark) for tests/server.rs"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get install -y redis-tools >/dev/null 2>&1 \
    || { $sudo apt-get update >/dev/null && $sudo apt-get install -y redis-tools >/dev/null; }
fi
venv=target/server-venv
if ! "$venv/bin/python" -c 'import redis, duckdb, chdb, lifetimes' 2>/dev/null; then
  echo "== installing the PyPI redis client, DuckDB, chDB and lifetimes into $venv for tests/server.rs, tables.rs, sql.rs and predict.rs"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet redis duckdb chdb lifetimes
fi

cargo test --locked "$@"
