#!/usr/bin/env python3
"""NDJSON for the schema-growth benchmark (issue 16, item 2): `track` lines whose properties
keep introducing new property names, as a careless or hostile writer would send them.

    scripts/gen-wide-schema.py LINES PROPS_PER_LINE DISTINCT_NAMES [--traits] > wide.ndjson

Line i carries PROPS_PER_LINE properties named p<k> for consecutive k starting at
i * PROPS_PER_LINE, taken modulo DISTINCT_NAMES: with DISTINCT_NAMES = LINES * PROPS_PER_LINE
every property of every line is a new name. Values are small integers (so each name gets a value
bitmap, and the first few per event numeric rollups). Customers c-0 .. c-999, one event name
`wide`, times spread over 30 days. With --traits the lines are `identify` messages and the
names are trait names instead.
"""
import json
import sys


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    traits = "--traits" in sys.argv[1:]
    if len(args) != 3:
        sys.exit(__doc__)
    lines, per_line, distinct = (int(a) for a in args)
    out = sys.stdout
    day_ms = 86_400_000
    start = 1_790_000_000_000
    for i in range(lines):
        fields = {f"p{(i * per_line + j) % distinct}": (i + j) % 7 for j in range(per_line)}
        msg = {"type": "identify" if traits else "track", "userId": f"c-{i % 1000}"}
        if traits:
            msg["traits"] = fields
        else:
            msg["event"] = "wide"
            msg["properties"] = fields
            msg["timestamp"] = start + (i % 30) * day_ms + i
        out.write(json.dumps(msg, separators=(",", ":")))
        out.write("\n")


if __name__ == "__main__":
    main()
