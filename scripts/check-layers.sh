#!/usr/bin/env bash
# The layer rules (docs/ARCHITECTURE.md).
# 1. The key layout and sled belong to src/storage/. Fails when a file of src/ outside it names
#    `keys::` (storage's key layout), imports `keys` from storage, or names anything of `sled::`
#    (src/error.rs may name `sled::Error`, to convert it). The doc-hidden facades src/fuzzing.rs
#    and src/testing.rs hand the key layout on to the fuzz targets and the tests: they are
#    exempt.
# 2. The layers below the database handle (model, predict, ingest, rules, storage, index, query,
#    audience, gen, error) never name it: no `Db`, `crate::Db` or `crate::db::` outside comments and
#    their test modules (a `#[cfg(test)]` module at the end of a file may open a database).
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
files=$(find src -name '*.rs' -not -path 'src/storage/*' -not -path src/fuzzing.rs \
    -not -path src/testing.rs | sort)

# shellcheck disable=SC2086
if hits=$(grep -nE '(^|[^A-Za-z0-9_])keys::' $files); then
    echo "check-layers: storage's key layout is named outside src/storage/:" >&2
    echo "$hits" >&2
    status=1
fi
# A `use crate::storage::{..., keys, ...}` (possibly over several lines).
# shellcheck disable=SC2086
if hits=$(perl -0777 -ne 'while (/storage::\{[^}]*\bkeys\b[^}]*\}/g) { print "$ARGV\n" }' $files) \
    && [ -n "$hits" ]; then
    echo "check-layers: storage::keys is imported outside src/storage/:" >&2
    echo "$hits" >&2
    status=1
fi
# shellcheck disable=SC2086
if hits=$(grep -nE '(^|[^A-Za-z0-9_])sled::' $files | grep -vE '^src/error\.rs:[0-9]+:.*sled::Error'); then
    echo "check-layers: sled is named outside src/storage/ (only src/error.rs may name sled::Error):" >&2
    echo "$hits" >&2
    status=1
fi
below_db=$(find src/model src/predict src/ingest src/rules src/storage src/index src/query src/audience src/gen \
    src/error.rs -name '*.rs' | sort)
# shellcheck disable=SC2086
if hits=$(perl -ne '
        $test = 1 if /^\s*#\[cfg\(test\)\]/;
        unless ($test) {
            s{//.*}{};
            s{sled::Db\b}{}g;
            print "$ARGV:$.: $_" if /(?<![A-Za-z0-9_])(Db\b|crate::db::)/;
        }
        if (eof) { $test = 0; close ARGV }' $below_db) && [ -n "$hits" ]; then
    echo "check-layers: a layer below the database handle names it (Db, crate::db::):" >&2
    echo "$hits" >&2
    status=1
fi
if [ "$status" -eq 0 ]; then
    echo "check-layers: no key layout or sled above src/storage/, no Db below src/db/"
fi
exit "$status"
