#!/usr/bin/env python3
"""Hostile HTTP load against a running binary (issue 11 items 2, 3, 9). Prints figures; asserts nothing.

    python3 benches/attacks.py [BIN]        # BIN defaults to the release binary
    DURATION=10 SLOW=2000 python3 benches/attacks.py target/.../appliance

1. Worst-case request cost: one request at a time on a kept-alive connection, median and max
   wall time per request, for the bodies that were quadratic before (256 KiB of ~50k distinct
   form keys on /oauth2/introspect and /oauth2/token; one scope of 30k distinct tokens on
   /oauth2/token), next to an ordinary introspection.
2. Introspection p50/p99 (wrk, 2 threads, 32 connections) alone, then while SLOW connections
   send half a header and reconnect whenever the server closes them (slow clients), then while
   clients post 1 MiB bodies and worst-case forms in a loop (big bodies), then both.
Needs: python3, wrk, curl. The machine's other load shows in the figures: compare phases of one run.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/appliance")
DURATION = int(os.environ.get("DURATION", "10"))
SLOW = int(os.environ.get("SLOW", "2000"))
SECRET = "bench-matrix-secret-0123456789abcdef"
CONF_ID, CONF_SECRET = "01HZZZZZZZZZZZZZZZZZZZZCNF", "bench-client-secret-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(work):
    port = free_port()
    conf = os.path.join(work, "config.yaml")
    with open(conf, "w") as f:
        f.write(f"""http:
  public_base: "http://127.0.0.1:{port}/"
  listeners:
    - name: web
      resources: [{{name: discovery}}, {{name: oauth}}, {{name: compat}}, {{name: health}}, {{name: human}}]
      binds: [{{address: "127.0.0.1:{port}"}}]
database: {{path: "appliance.db"}}
matrix: {{kind: synapse, homeserver: bench.local, secret: "{SECRET}", endpoint: "http://127.0.0.1:9/"}}
clients:
  - client_id: {CONF_ID}
    client_auth_method: client_secret_post
    client_secret: "{CONF_SECRET}"
experimental: {{access_token_ttl: 86400}}
""")
    log = open(os.path.join(work, "server.log"), "w")
    proc = subprocess.Popen([BIN, "-c", conf, "serve"], stdout=log, stderr=log, cwd=work)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("server did not start")


def post(conn, path, body, headers=None):
    h = {"Content-Type": "application/x-www-form-urlencoded"}
    h.update(headers or {})
    t0 = time.perf_counter()
    conn.request("POST", path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    return time.perf_counter() - t0, r.status, data


def worst_case_bodies(token):
    keys = []
    size, i = 0, 0
    while size < 256 * 1024 - 16:
        k = f"{i:x}=&"
        keys.append(k)
        size += len(k)
        i += 1
    many_keys = "".join(keys).encode()
    scope = " ".join(f"s{i}" for i in range(30_000))
    big_scope = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CONF_ID,
                                        "client_secret": CONF_SECRET, "scope": scope}).encode()
    normal = urllib.parse.urlencode({"token": token}).encode()
    auth = {"Authorization": f"Bearer {SECRET}"}
    return i, [
        ("ordinary introspection", "/oauth2/introspect", normal, auth),
        (f"introspect, {i} distinct keys (256 KiB)", "/oauth2/introspect", many_keys, auth),
        (f"token, {i} distinct keys (256 KiB)", "/oauth2/token", many_keys, {}),
        ("token, one scope of 30000 distinct tokens", "/oauth2/token", big_scope, {}),
    ]


def measure_parse(port, token):
    n_keys, cases = worst_case_bodies(token)
    print("\n== 1. worst-case request cost (one at a time, kept-alive connection) ==")
    for name, path, body, headers in cases:
        times, status, answer = [], 0, b""
        budget = time.time() + 30
        for _ in range(50):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            dt, status, answer = post(conn, path, body, headers)
            conn.close()
            times.append(dt)
            if time.time() > budget:
                break
        times.sort()
        med = times[len(times) // 2]
        print(f"{name:46s} n={len(times):3d} median {med*1000:9.3f} ms  max {times[-1]*1000:9.3f} ms  "
              f"→ {status} {answer[:70].decode(errors='replace')}")


class SlowClients(threading.Thread):
    """SLOW connections, each sending half a header; reopened when the server closes one."""

    def __init__(self, port, n):
        super().__init__(daemon=True)
        self.port, self.n, self.stop, self.reopened, self.refused = port, n, False, 0, 0

    def open_one(self):
        s = socket.socket()
        s.setblocking(True)
        s.settimeout(2)
        s.connect(("127.0.0.1", self.port))
        s.sendall(b"POST /oauth2/introspect HTTP/1.1\r\nHost: localhost\r\nContent-Le")
        s.setblocking(False)
        return s

    def run(self):
        import selectors
        sel = selectors.DefaultSelector()
        for _ in range(self.n):
            try:
                sel.register(self.open_one(), selectors.EVENT_READ)
            except OSError:
                self.refused += 1
        while not self.stop:
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 503"):
                    self.refused += 1
                if not data or data.startswith(b"HTTP/1.1 503"):
                    sel.unregister(s)
                    s.close()
                    if self.stop:
                        continue
                    try:
                        sel.register(self.open_one(), selectors.EVENT_READ)
                        self.reopened += 1
                    except OSError:
                        self.refused += 1
        for key in list(sel.get_map().values()):
            key.fileobj.close()


class BigBodies(threading.Thread):
    """Four clients posting 1 MiB bodies and 256 KiB worst-case forms in a loop."""

    def __init__(self, port, bodies):
        super().__init__(daemon=True)
        self.port, self.bodies, self.stop, self.sent, self.statuses = port, bodies, False, 0, {}

    def one(self, k):
        big = b"a" * (1024 * 1024)
        while not self.stop:
            name, path, body, headers = self.bodies[(k + self.sent) % len(self.bodies)]
            if k % 2 == 0:
                path, body, headers = "/oauth2/token", big, {}
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                _, status, _ = post(conn, path, body, headers)
                conn.close()
                self.statuses[status] = self.statuses.get(status, 0) + 1
            except OSError as e:
                self.statuses[type(e).__name__] = self.statuses.get(type(e).__name__, 0) + 1
            self.sent += 1

    def run(self):
        ts = [threading.Thread(target=self.one, args=(k,), daemon=True) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


def wrk(port, token, work):
    lua = os.path.join(work, "introspect.lua")
    with open(lua, "w") as f:
        f.write(f"""wrk.method = "POST"
wrk.body = "token={token}"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Bearer {SECRET}"
""")
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{DURATION}s", "--latency", "-s", lua,
                          f"http://127.0.0.1:{port}/oauth2/introspect"], capture_output=True, text=True).stdout
    def pick(label):
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == label:
                return parts[1]
        return "?"
    rps = next((l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")), "?")
    errors = next((l.strip() for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l), "no errors")
    return f"{rps:>10s} req/s  p50 {pick('50%'):>8s}  p99 {pick('99%'):>8s}  ({errors})"


def main():
    work = tempfile.mkdtemp(prefix="appliance-attacks-")
    proc, port = start(work)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        _, status, body = post(conn, "/oauth2/token", urllib.parse.urlencode(
            {"grant_type": "client_credentials", "client_id": CONF_ID, "client_secret": CONF_SECRET}).encode())
        token = json.loads(body)["access_token"]
        print(f"binary: {BIN}\nserver on port {port}, pid {proc.pid}")
        measure_parse(port, token)
        _, bodies = worst_case_bodies(token)
        attack_bodies = bodies[1:]

        print(f"\n== 2. introspection under attack (wrk -t2 -c32 -d{DURATION}s) ==")
        print(f"{'alone':34s}{wrk(port, token, work)}")

        slow = SlowClients(port, SLOW)
        slow.start()
        time.sleep(2)
        print(f"{f'beside {SLOW} slow clients':34s}{wrk(port, token, work)}   "
              f"[slow connections closed by the server and reopened: {slow.reopened}, refused: {slow.refused}]")
        slow.stop = True
        slow.join()

        big = BigBodies(port, attack_bodies)
        big.start()
        time.sleep(1)
        print(f"{'beside big bodies':34s}{wrk(port, token, work)}   [attack requests: {big.sent}, answers {big.statuses}]")
        big.stop = True
        big.join()

        slow = SlowClients(port, SLOW)
        big = BigBodies(port, attack_bodies)
        slow.start()
        big.start()
        time.sleep(2)
        print(f"{'beside both':34s}{wrk(port, token, work)}   [slow reopened {slow.reopened}, "
              f"refused {slow.refused}; big {big.sent}, {big.statuses}]")
        slow.stop = big.stop = True
        slow.join()
        big.join()
        with open(f"/proc/{proc.pid}/status") as f:
            rss = next(l for l in f if l.startswith("VmRSS")).split()[1]
        print(f"\nserver RSS after the attacks: {int(rss)/1024:.1f} MiB; alive: {proc.poll() is None}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
