#!/usr/bin/env python3
"""kill -9 soak of `audiencedb serve` (see scripts/soak-kill.sh, which builds and runs this).

Each iteration: start the server on the same, growing folder (the open after the last kill is
part of the test); check through its socket that every TRACK acknowledged before the last kill is
stored; start WRITERS concurrent clients, each sending TRACKs for its own fresh customer, each
with a unique `n` property, and recording every `OK`; kill -9 the server at a random moment.
Every VERIFY_EVERY iterations, and after the last, `audiencedb verify` runs on the folder with the
server down. Prints acknowledged / lost / failed opens / failed verifies, and exits 1 if any of
those but the first is not 0.

Only the standard library: RESP is spoken by hand over the Unix socket.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

BIN = os.environ["AUDIENCEDB"]
WORK = os.environ["SOAK_DIR"]
ITERATIONS = int(os.environ.get("ITERATIONS", "1000"))
WRITERS = int(os.environ.get("WRITERS", "8"))
KILL_MIN = float(os.environ.get("KILL_MIN", "0.05"))
KILL_MAX = float(os.environ.get("KILL_MAX", "1.0"))
VERIFY_EVERY = int(os.environ.get("VERIFY_EVERY", "50"))
SEED = int(os.environ.get("SEED", str(int(time.time()))))
OPEN_TIMEOUT = 60.0

DB = os.path.join(WORK, "soak.db")
SOCK = os.path.join(WORK, "soak.sock")
LOG = os.path.join(WORK, "server.log")


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, timeout=30.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(SOCK)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)

    def call(self, *args):
        self.s.sendall(encode(args))
        return self.reply()

    def close(self):
        self.s.close()


def start_server():
    """Starts the server and waits until it answers PING; (process, None) or (None, why)."""
    log = open(LOG, "ab")
    p = subprocess.Popen(
        [BIN, "--db", DB, "serve", "--socket", SOCK],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    deadline = time.time() + OPEN_TIMEOUT
    while time.time() < deadline:
        if p.poll() is not None:
            return None, "exited with %s" % p.returncode
        try:
            c = Conn(timeout=5)
            ok = c.call("PING") == "PONG"
            c.close()
            if ok:
                return p, None
        except (OSError, ConnectionError, RuntimeError):
            pass
        time.sleep(0.02)
    p.kill()
    p.wait()
    return None, "no answer within %.0f s" % OPEN_TIMEOUT


def writer(customer, acked, stop):
    """TRACKs to `customer` until the connection fails; appends each acknowledged n."""
    try:
        c = Conn()
    except OSError:
        return
    n = 0
    try:
        while not stop.is_set():
            props = json.dumps({"n": n, "w": customer})
            if c.call("TRACK", customer, "soak", props) == "OK":
                acked.append(n)
            n += 1
    except (OSError, ConnectionError, RuntimeError, ValueError):
        pass
    finally:
        c.close()


def stored_ns(conn, customer):
    """The `n` of every stored soak event of `customer`."""
    raw = conn.call("CUSTOMER.EXPORT", customer)
    if raw is None:
        return set()
    doc = json.loads(raw)
    ns = set()
    for e in doc.get("events", []):
        props = e.get("properties", e.get("props", {}))
        if "n" in props:
            ns.add(props["n"])
    return ns


def verify():
    r = subprocess.run(
        [BIN, "--db", DB, "verify"], capture_output=True, text=True, timeout=3600
    )
    if r.returncode != 0:
        print("verify failed:\n" + r.stdout + r.stderr, flush=True)
    return r.returncode == 0


def main():
    rng = random.Random(SEED)
    os.makedirs(WORK, exist_ok=True)
    acknowledged = lost = failed_opens = failed_verifies = 0
    pending = {}  # customer -> acknowledged ns, checked at the next open
    started = time.time()
    print(
        "soak: %d iterations, %d writers, kill after %.2f-%.2f s, seed %d, folder %s"
        % (ITERATIONS, WRITERS, KILL_MIN, KILL_MAX, SEED, DB),
        flush=True,
    )

    def check(server_conn):
        nonlocal lost
        for customer, ns in pending.items():
            missing = set(ns) - stored_ns(server_conn, customer)
            if missing:
                lost += len(missing)
                print(
                    "LOST %d acknowledged events of %s: %s"
                    % (len(missing), customer, sorted(missing)[:20]),
                    flush=True,
                )
        pending.clear()

    for it in range(ITERATIONS + 1):
        server, why = start_server()
        if server is None:
            failed_opens += 1
            print("iteration %d: the server did not open: %s" % (it, why), flush=True)
            if not verify():
                failed_verifies += 1
            break
        conn = Conn()
        check(conn)
        conn.close()
        if it == ITERATIONS:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=120)
            except subprocess.TimeoutExpired:
                print("the server did not stop on SIGTERM within 120 s", flush=True)
                server.kill()
                server.wait()
            break
        stop = threading.Event()
        threads = []
        for w in range(WRITERS):
            customer = "soak-%d-%d" % (it, w)
            acked = pending.setdefault(customer, [])
            t = threading.Thread(target=writer, args=(customer, acked, stop), daemon=True)
            t.start()
            threads.append(t)
        time.sleep(rng.uniform(KILL_MIN, KILL_MAX))
        server.send_signal(signal.SIGKILL)
        server.wait()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        n = sum(len(v) for v in pending.values())
        acknowledged += n
        if (it + 1) % VERIFY_EVERY == 0:
            if not verify():
                failed_verifies += 1
        if (it + 1) % 10 == 0:
            print(
                "iteration %d: acknowledged %d (this one %d), lost %d, %.2f s an iteration"
                % (it + 1, acknowledged, n, lost, (time.time() - started) / (it + 1)),
                flush=True,
            )
    if ITERATIONS % VERIFY_EVERY != 0 and failed_opens == 0:
        if not verify():
            failed_verifies += 1
    elapsed = time.time() - started
    print(
        "kills: %d, acknowledged: %d, lost: %d, failed opens: %d, failed verifies: %d, %.0f s"
        % (min(it, ITERATIONS), acknowledged, lost, failed_opens, failed_verifies, elapsed),
        flush=True,
    )
    return 1 if lost or failed_opens or failed_verifies else 0


if __name__ == "__main__":
    sys.exit(main())
