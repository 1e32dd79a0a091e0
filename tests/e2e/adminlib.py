"""
Helpers for the admin endpoint tests (test_admin.py, test_reload.py); not a test module itself.

- admin_section(): an `admin` config section on a free address of the module's Net block, with
  one bearer token whose SHA-256 it writes.
- Admin: one-request-per-connection calls to the endpoint (GET /status, /metrics, /healthz,
  POST with or without a token), from a chosen source address.
- parse_metrics(): the Prometheus text exposition as {(name, labels): value}, strictly parsed.
- promtool_check(): `promtool check metrics` on a text.
- Load: client threads that send requests in a loop and count every outcome.
"""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

from harness import Client, LoadThreads, T, free_port, wait_until

TOKEN = "e2e-T0ken.with/odd+chars=="
TOKEN_NAME = "ops"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


def admin_section(net, host_index=2, tokens=None, allow=None, audit_log=None):
    """tokens: {name: token} (default {TOKEN_NAME: TOKEN})."""
    host = net.ip(host_index)
    tokens = {TOKEN_NAME: TOKEN} if tokens is None else tokens
    sec = {"address": f"{host}:{free_port(host)}",
           "tokens": [{"name": n, "sha256": sha256_hex(v)} for n, v in tokens.items()]}
    if allow is not None:
        sec["allow"] = list(allow)
    if audit_log is not None:
        sec["audit_log"] = audit_log
    return sec


class Admin:
    """Calls to an admin endpoint at address ("host:port"); source: the client's address."""

    def __init__(self, address, token=TOKEN, source=None):
        h, _, p = address.rpartition(":")
        self.host, self.port = h, int(p)
        self.token = token
        self.source = source

    @classmethod
    def of(cls, trident, wait=True, **kw):
        """The admin endpoint of a running Trident; wait: until it accepts connections (trident
        opens it after its listeners, so the harness's readiness does not cover it)."""
        a = cls(trident.config["admin"]["address"], **kw)
        if wait:
            a.wait_ready()
        return a

    def wait_ready(self, timeout=None):
        def up():
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(up, T(5) if timeout is None else timeout, interval=0.01,
                   what=f"the admin endpoint on {self.host}:{self.port}")

    def call(self, method, path, headers=None, token=None, source=None):
        """One request on its own connection; returns the Response (which must close it)."""
        hdrs = list(headers or [])
        if token is not None:
            hdrs.append(("Authorization", f"Bearer {token}"))
        with Client(self.host, self.port, source=source or self.source) as c:
            c.request(method, path, hdrs)
            r = c.read_response(method)
            r.closed_after = c.closed_by_peer(T(2))
            r.extra = bytes(c.reader.buf)
        return r

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, token="default", **kw):
        """POST with the admin token (token="default"), another one, or none (token=None)."""
        return self.call("POST", path, token=self.token if token == "default" else token, **kw)

    def status(self):
        r = self.get("/status")
        assert r.status == 200, r
        return r.json()

    def metrics_text(self):
        r = self.get("/metrics")
        assert r.status == 200, r
        return r.body.decode()

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def healthz(self):
        return self.get("/healthz")

    def reload(self, **kw):
        return self.post("/reload", **kw)


# ---- /status look-ups -------------------------------------------------------------------------------

def server_status(st, sid):
    for c in st["clusters"]:
        for s in c["servers"]:
            if s["id"] == sid:
                return s
    raise KeyError(sid)


def cluster_status(st, name):
    for c in st["clusters"]:
        if c["name"] == name:
            return c
    raise KeyError(name)


def listener_status(st, address):
    for l in st["listeners"]:
        if l["address"] == address:
            return l
    raise KeyError(address)


def wait_status(admin, pred, timeout=None, what="a /status condition"):
    """Poll /status until pred(status) is truthy; return that status document."""
    box = {}

    def ok():
        box["st"] = admin.status()
        return pred(box["st"])

    try:
        wait_until(ok, T(5) if timeout is None else timeout, interval=0.01, what=what)
    except AssertionError:
        raise AssertionError(f"timed out waiting for {what}; last /status:\n"
                             f"{json.dumps(box.get('st'), indent=1)[:6000]}")
    return box["st"]


def wait_server(adm, sid, /, timeout=None, **want):
    """Wait until server sid's /status entry has every field of want; return the entry."""
    st = wait_status(adm, lambda st: all(server_status(st, sid).get(k) == v
                                           for k, v in want.items()),
                     timeout, what=f"{sid} {want}")
    return server_status(st, sid)


# ---- Prometheus text ---------------------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)(?: (-?[0-9]+))?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def _labels(text):
    out = []
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m:
            raise ValueError(f"bad labels {text!r}")
        out.append((m.group(1), re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(x.group(1),
                                                                         x.group(1)), m.group(2))))
        pos = m.end()
    return tuple(sorted(out))


class Metrics:
    """Samples {(name, labels tuple): float} plus the TYPE of each family."""

    def __init__(self, text):
        self.samples = {}
        self.types = {}
        self.order = []
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3]
                continue
            m = _SAMPLE.match(line)
            if not m:
                raise ValueError(f"bad sample line {line!r}")
            key = (m.group(1), _labels(m.group(2) or ""))
            if key in self.samples:
                raise ValueError(f"duplicate sample {key}")
            v = m.group(3)
            self.samples[key] = float("inf") if v == "+Inf" else float(v)
            self.order.append(key)

    def get(self, name, **labels):
        """The value of the one sample of name whose labels include labels (KeyError if none,
        AssertionError if several)."""
        m = self.find(name, **labels)
        if not m:
            raise KeyError(f"{name} {labels}")
        assert len(m) == 1, f"{len(m)} samples of {name} {labels}"
        return m[0][1]

    def find(self, name, **labels):
        want = set(labels.items())
        return [(dict(k[1]), v) for k, v in self.samples.items()
                if k[0] == name and want <= set(k[1])]

    def value(self, name, default=None, **labels):
        m = self.find(name, **labels)
        return m[0][1] if len(m) == 1 else default


def parse_metrics(text):
    return Metrics(text)


def promtool_check(text):
    """(exit code, combined output) of `promtool check metrics` reading text."""
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    return p.returncode, (p.stdout + p.stderr).strip()


def histograms(m, name):
    """{labels without le: ([(le, cumulative count)] in exposition order, sum, count)}"""
    out = {}
    for key in m.order:
        n, labels = key
        if n == name + "_bucket":
            d = dict(labels)
            le = d.pop("le")
            k = tuple(sorted(d.items()))
            out.setdefault(k, [[], None, None])[0].append((le, m.samples[key]))
    for k, v in out.items():
        v[1] = m.samples.get((name + "_sum", k))
        v[2] = m.samples.get((name + "_count", k))
    return {k: tuple(v) for k, v in out.items()}


# ---- load ------------------------------------------------------------------------------------------

class Load(LoadThreads):
    """threads client threads sending GET path-N in a loop to (host, port) until stop() (or
    max_requests each, or max_seconds), each on a fresh connection unless keepalive (then up to
    per_conn requests per connection). Every request is recorded as (thread, n, status or the
    exception's text, X-Upstream, start, end)."""

    def __init__(self, host, port, threads=3, path="/load", keepalive=False, per_conn=5,
                 max_requests=100000, max_seconds=None, pause=0.0, source=None):
        self.host, self.port = host, port
        self.path = path
        self.keepalive = keepalive
        self.per_conn = per_conn
        self.max_requests = max_requests
        self.max_seconds = T(20) if max_seconds is None else max_seconds
        self.pause = pause
        self.source = source
        super().__init__(threads)

    def _record(self, *rec):
        with self.lock:
            self.results.append(rec)

    def count(self):
        with self.lock:
            return len(self.results)

    def since(self, t0):
        """Results of requests started at or after monotonic time t0."""
        with self.lock:
            return [r for r in self.results if r[4] >= t0]

    def _run(self, i):
        n = 0
        deadline = self.started + self.max_seconds
        c = None
        used = 0
        while not self._stop.is_set() and n < self.max_requests and time.monotonic() < deadline:
            start = time.monotonic()
            try:
                if c is None:
                    c = Client(self.host, self.port, timeout=T(10), source=self.source)
                    used = 0
                c.request("GET", f"{self.path}-{i}-{n}")
                r = c.read_response()
                used += 1
                status = r.status if r.complete else f"incomplete {r.status}"
                self._record(i, n, status, r.headers.get("x-upstream"), start, time.monotonic())
                if not self.keepalive or used >= self.per_conn or not r.keep_alive:
                    c.close()
                    c = None
            except Exception as e:  # noqa: BLE001 - every failure is a result to report
                self._record(i, n, f"{type(e).__name__}: {e}", None, start, time.monotonic())
                if c is not None:
                    c.close()
                    c = None
            n += 1
            if self.pause:
                time.sleep(self.pause)
        if c is not None:
            c.close()

    def failures(self):
        with self.lock:
            return [r for r in self.results if r[2] != 200]

    def by_upstream(self, results=None):
        out = {}
        for r in (self.results if results is None else results):
            out[r[3]] = out.get(r[3], 0) + 1
        return out


def connect_refused(host, port, timeout=1.0):
    """True when a TCP connect to host:port is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def write_config(path, cfg):
    """Rewrite a running trident's config file (atomically: a reload never reads half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        if isinstance(cfg, str):
            f.write(cfg)
        else:
            json.dump(cfg, f, indent=2)
    os.replace(tmp, path)
