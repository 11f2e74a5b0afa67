"""The PyPI `redis` client against a running `audiencedb serve` (run by tests/server.rs).

Usage: server_client.py SOCKET. Prints "ok" when every check passes; fails with a traceback
otherwise.
"""

import json
import sys

import redis


def check(sock: str, protocol: int) -> None:
    r = redis.Redis(unix_socket_path=sock, protocol=protocol, decode_responses=True)
    assert r.ping() is True
    assert r.echo("hi") == "hi"
    cid = f"py-{protocol}"
    assert r.execute_command("IDENTIFY", cid, json.dumps({"tier": "Gold", "age": 41})) == "OK"
    assert r.execute_command("TRACK", cid, "viewed", json.dumps({"product": "P"}), "2026-10-30T08:00:00Z") == "OK"
    rule = "viewed product P in last 30 days and age > 40"
    assert r.execute_command("QUERY", rule, "NOW", "2026-11-01") == 1
    assert r.execute_command("QUERY", rule, "NOW", "2026-11-01", "IDS") == [cid]

    # A pipeline sends everything in one write and reads the replies in order.
    pipe = r.pipeline(transaction=False)
    for i in range(50):
        pipe.execute_command("TRACK", f"{cid}-{i}", "clicked", "{}", "2026-10-31")
    pipe.execute_command("QUERY", "clicked in last 7 days", "NOW", "2026-11-01")
    replies = pipe.execute()
    assert replies[:50] == ["OK"] * 50, replies[:3]
    assert replies[50] >= 50

    exported = json.loads(r.execute_command("CUSTOMER.EXPORT", cid))
    assert exported["traits"]["tier"] == "Gold", exported
    assert r.execute_command("CUSTOMER.SHOW", "nobody") is None

    info = r.info()
    for key in ("customers", "events", "profiles", "uptime_in_seconds", "total_commands_processed"):
        assert key in info, (key, info)
    assert info["customers"] >= 101

    try:
        r.execute_command("QUERY", "viewed in lst 30 days")
    except redis.ResponseError as e:
        assert "did you mean 'last'" in str(e), e
    else:
        raise AssertionError("a bad rule must be an error")
    # The connection survives the error.
    assert r.ping() is True
    assert r.execute_command("CUSTOMER.DELETE", cid) == 1
    r.close()


def next_message(p: "redis.client.PubSub") -> dict:
    """The next pub/sub message, waiting at most 10 s."""
    m = p.get_message(timeout=10)
    assert m is not None, "no pub/sub message within 10 s"
    return m


def check_pubsub(sock: str, protocol: int) -> None:
    r = redis.Redis(unix_socket_path=sock, protocol=protocol, decode_responses=True)
    name = f"py_{protocol}"
    r.execute_command("AUDIENCE.DEFINE", name, f"tier = Py{protocol}")
    p = r.pubsub()
    p.subscribe(f"audience:{name}")
    p.psubscribe("audience:py_*")
    assert next_message(p) == {"type": "subscribe", "pattern": None, "channel": f"audience:{name}", "data": 1}
    assert next_message(p) == {"type": "psubscribe", "pattern": None, "channel": "audience:py_*", "data": 2}
    cid = f"pysub-{protocol}"
    assert r.execute_command("IDENTIFY", cid, json.dumps({"tier": f"Py{protocol}"})) == "OK"
    m = next_message(p)
    assert (m["type"], m["pattern"], m["channel"]) == ("message", None, f"audience:{name}"), m
    change = json.loads(m["data"])
    assert (change["audience"], change["customer"], change["change"]) == (name, cid, "entered"), change
    pm = next_message(p)
    assert (pm["type"], pm["pattern"], pm["channel"]) == ("pmessage", "audience:py_*", f"audience:{name}"), pm
    assert pm["data"] == m["data"]
    # The payload's seq resumes the feed: nothing after it yet.
    assert r.execute_command("AUDIENCE.CHANGES", change["seq"]) == []
    p.unsubscribe()
    p.punsubscribe()
    assert next_message(p)["type"] == "unsubscribe"
    assert next_message(p) == {"type": "punsubscribe", "pattern": None, "channel": "audience:py_*", "data": 0}
    p.close()
    r.close()


def main() -> None:
    sock = sys.argv[1]
    for protocol in (2, 3):
        check(sock, protocol)
        check_pubsub(sock, protocol)
    print("ok")


if __name__ == "__main__":
    main()
