#!/usr/bin/env bash
# The layer rule for storage: the key layout and sled belong to src/storage/. Fails when a file
# of src/ outside it names `keys::` (storage's key layout), imports `keys` from storage, or
# names anything of `sled::` (src/error.rs may name `sled::Error`, to convert it).
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
files=$(find src -name '*.rs' -not -path 'src/storage/*' | sort)

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
if [ "$status" -eq 0 ]; then
    echo "check-layers: no key layout or sled above src/storage/"
fi
exit "$status"
