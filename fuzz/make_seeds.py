#!/usr/bin/env python3
"""Writes the hand-made seeds of the `resp`, `ndjson` and `stored` fuzz targets into seeds/,
each in its target's input layout (see the top of each file in fuzz_targets/). Run from fuzz/."""
import os
import struct


def w(d, name, b):
    os.makedirs(os.path.join("seeds", d), exist_ok=True)
    open(os.path.join("seeds", d, name), "wb").write(b)


# resp: selector byte (bit 0: tiny limits from the next three bytes), cut count, cuts, bytes.
def enc(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


track = enc("TRACK", "c-1001", "viewed", '{"product":"X","price":59.9}', "2026-11-20T10:01:00Z")
w("resp", "track", b"\x00\x00" + track)
w("resp", "pipeline", b"\x00\x00" + enc("HELLO", "3") + b"PING  hi\r\n" + enc("QUERY", "tier = Gold", "COUNT") + enc("PING"))
w("resp", "too_many_args", b"\x00\x00*70000\r\n\r\n*1\r\n$4\r\nPING\r\n")
w("resp", "split", b"\x00\x03\x05\x00\x0b\x00\x11\x00" + track + enc("IDENTIFY", "c-1", '{"tier":"Gold"}'))
w("resp", "tiny_limits", b"\x01\x04\x14\x02\x02\x03\x00\x10\x00" + enc("ECHO", "0123456789") + b"PING a b c\r\n" + enc("PING"))
w("resp", "bad_framing", b"\x00\x00*x\r\n$-1\r\n*2\r\n$4\r\nECHO\r\n$3\r\nabcd\r\n*1\r\n\n")

# ndjson: one line.
lines = [
    '{"type":"track","userId":"c-1001","event":"viewed","timestamp":"2026-11-20T10:01:00Z","properties":{"product":"X","price":59.9,"tags":["eco","sale",3]}}',
    '{"type":"identify","userId":"c-1001","messageId":"m-1","traits":{"email":"a@example.com","tier":"Gold","address":{"city":"Oulu","zip":"90100"},"vip":true,"since":"2024-01-02T03:04:05Z","old":null}}',
    '{"type":"track","anonymousId":42,"event":"purchased","timestamp":1795169100000,"properties":{"order":{"total":12.5,"items":2}},"context":{"ip":"127.0.0.1"}}',
    '{"type":"track","userId":123456789012345678901234567890,"event":"e","properties":{"big":18446744073709551615,"neg":-0,"f":1e300}}',
    '{"type":"alias","userId":"a","previousId":"b"}',
    '{"type":"identify","userId":"","anonymousId":"anon-\\u00e9","traits":{"a.b":[1,null,"x"]}}',
]
for i, l in enumerate(lines):
    w("ndjson", "line_%d" % i, l.encode())


# stored: selector byte (which record), then the record (src/storage/codec.rs and friends).
def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return out + bytes([v])


def signed(v):
    return varint(((v << 1) ^ (v >> 63)) & (2**64 - 1))


def value(v):
    if isinstance(v, bool):
        return bytes([4 if v else 3])
    if isinstance(v, int):
        return b"\x01" + signed(v)
    if isinstance(v, float):
        return b"\x07" + signed(int(round(v * 100))) + b"\x02"
    if isinstance(v, list):
        return b"\x06" + varint(len(v)) + b"".join(value(x) for x in v)
    if isinstance(v, tuple):
        return b"\x05" + signed(v[0])
    b = v.encode()
    return b"\x00" + varint(len(b)) + b


def fields(fs):
    return varint(len(fs)) + b"".join(varint(i) + value(v) for i, v in fs)


w("stored", "profile", b"\x00" + fields([(0, "Gold"), (1, 34), (2, 59.9), (3, True), (4, (1795169100000,)), (5, ["eco", "sale"])]))
w("stored", "seen", b"\x01" + b"\x01" + b"".join(struct.pack("<Q", h)[:6] for h in [1, 99, 12345678]))
events = [(0, 0, [(0, "SKU-0001"), (1, 59.9)]), (60000, 1, [(0, "SKU-0002"), (2, ["a", "b"])]), (0, 1, [])]
body = varint(len(events)) + b"".join(varint(d) + varint(e) + fields(p) for d, e, p in events)
w("stored", "block_plain", b"\x02\x00" + body)


def lz4_literals(b):
    n = len(b)
    out = bytes([min(n, 15) << 4])
    if n >= 15:
        r = n - 15
        while r >= 255:
            out += b"\xff"
            r -= 255
        out += bytes([r])
    return out + b


w("stored", "block_lz4", b"\x02\x01" + varint(len(body)) + lz4_literals(body))
key = b"e" + struct.pack(">I", 7) + struct.pack(">Q", 1795169100000)
w("stored", "block_keyed", b"\x04" + key + b"\x00" + body)


def ids_bitmap(ids):
    out = b"\x00" + varint(len(ids))
    prev = 0
    for i in ids:
        out += varint(i - prev)
        prev = i
    return out


w("stored", "family_version", b"\x05\x01S" + varint(3))
w("stored", "family_everyone", b"\x05\x01A" + b"\x00" + ids_bitmap([1, 2, 5, 1000]))
w("stored", "family_unindexed", b"\x05\x01U" + b"\x00" + varint(100) + varint(1) + varint(3) + varint(1) + varint(2) + varint(4) + varint(8) + varint(0))
w("stored", "family_eventdays", b"\x05\x05D" + struct.pack(">I", 1) + b"\x00" + varint(2) + varint(20000) + ids_bitmap([1, 2]) + varint(20001) + ids_bitmap([3]))
empty_roaring = struct.pack("<II", 12346, 0)
rb = struct.pack("<II", 12346, 1) + struct.pack("<HH", 0, 1) + struct.pack("<I", 16) + struct.pack("<HH", 3, 9)
state = (
    struct.pack("<qQq", 1795169100000, 5, -(2**63))
    + struct.pack("<Q", len(rb)) + rb
    + struct.pack("<I", 20000)
    + struct.pack("<Q", 1) + struct.pack("<qI", 1795169100000, 3)
    + struct.pack("<Q", 1) + struct.pack("<I", 20001) + struct.pack("<Q", len(empty_roaring)) + empty_roaring
)
w("stored", "audience_state", b"\x06" + state)


def change(at, entered, aud, cust):
    return struct.pack("<q", at) + bytes([entered]) + struct.pack("<H", len(aud)) + aud + cust


chs = [change(1795169100000, 1, b"gold", b"c-1"), change(1795169100001, 0, b"gold", b"c-2")]
w("stored", "feed_chunk", b"\x07" + struct.pack(">Q", 40) + struct.pack("<I", len(chs)) + b"".join(struct.pack("<I", len(c)) + c for c in chs))
ids = [b"c-1", b"", b"c-3"]
w("stored", "id_chunk", b"\x08" + struct.pack("<II", 0, 10) + b"".join(varint(len(i)) + i for i in ids))
