"""
Helpers for the tests that run trident with Redis (test_affinity.py, test_fleet.py); not a test
module itself. Python standard library only; real redis-server and redis-sentinel processes.

- resp_call() / RespConnection: a minimal RESP2 client over a socket (for assertions and
  readiness: PING, GET, SCAN, HGETALL, PTTL, SENTINEL ...).
- Monitor: MONITOR on a server, every command recorded with the connection that sent it.
- RedisServer: a redis-server on a free loopback port with its own temp dir, no persistence
  (--save '' --appendonly no), optional requirepass / ACL user / --replicaof; stop, kill,
  pause/resume (SIGSTOP/SIGCONT: a frozen Redis), restart on the same port.
- Sentinels: N redis-sentinel processes monitoring a master with fast timers, and a wait for the
  failover's new master.
- redis_section(): trident's `redis` section for a server or for sentinels, with short timers.
- Sticky-session helpers: session_key(), issue_session(), get_session(), SessionLoad.
- log helpers: log_ts(), log_matches().

Every process started here is stopped by its PID (SIGCONT first if paused, then SIGKILL) in
close(); start_redis() / start_sentinels() register that as a cleanup of the test.
"""
import datetime
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import (Client, Closed, LoadThreads, Reader, SocketOwner, T, Truncated, free_port,
                     wait_until)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# Debian's redis-sentinel package may be absent: redis-server runs a sentinel with --sentinel.
REDIS_SENTINEL = shutil.which("redis-sentinel")


# ---- RESP -----------------------------------------------------------------------------------------

class RedisError(Exception):
    """An error reply (-ERR ..., -WRONGPASS ..., -NOAUTH ...)."""


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        else:
            b = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _decode_bulk(b):
    try:
        return b.decode()
    except UnicodeDecodeError:
        return b  # binary (e.g. raw key material): kept as bytes


class RespConnection(SocketOwner):
    """One connection to a Redis server or sentinel; call() sends a command and returns the
    decoded reply (str/int/None/list; bytes for a bulk string that is not UTF-8); an error reply
    raises RedisError."""

    def __init__(self, host, port, timeout=2.0, password=None, username=None, db=0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.reader = Reader(self.sock)
        if password is not None:
            self.call(*(("AUTH", username, password) if username else ("AUTH", password)))
        if db:
            self.call("SELECT", db)

    def call(self, *args):
        self.sock.sendall(_encode(args))
        return self._read()

    def _read(self):
        line = self.reader.read_until(b"\r\n", 1 << 20)[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            buf = bytearray()
            self.reader.read_exact(n + 2, buf.extend)
            return _decode_bulk(bytes(buf[:-2]))
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError(f"unexpected RESP line {line!r}")


def resp_call(host, port, *args, timeout=2.0, password=None, username=None, db=0):
    """One command on its own connection."""
    with RespConnection(host, port, timeout, password, username, db) as c:
        return c.call(*args)


def pairs(flat):
    """[k1, v1, k2, v2, ...] (HGETALL, SENTINEL REPLICAS entries) -> dict."""
    return dict(zip(flat[0::2], flat[1::2])) if flat else {}


# ---- redis-server ---------------------------------------------------------------------------------

class RedisServer:
    """A redis-server on host:port (port: a free one unless given). password: requirepass of the
    default user; user: (name, password) of an ACL user with every right; replicaof: a
    RedisServer (or "host:port") to replicate. cmd() authenticates as the ACL user when there is
    one, else with the password."""

    def __init__(self, host, port=None, password=None, user=None, replicaof=None, extra=(),
                 name="redis"):
        self.host = host
        self.port = port or free_port(host)
        self.password = password
        self.user = user
        self.replicaof = replicaof
        self.extra = list(extra)
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"trident-{name}-")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = None
        self.paused = False
        self.starts = 0

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def argv(self):
        a = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host, "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
             "--protected-mode", "no", "--logfile", self.log_path, "--loglevel", "notice",
             # a replica's first sync at once, not after the default 5 s diskless delay
             "--repl-diskless-sync-delay", "0"]
        if self.password is not None:
            a += ["--requirepass", self.password]
        if self.user is not None:
            uname, upass = self.user
            a += ["--user", uname, "on", f">{upass}", "~*", "&*", "+@all"]
        if self.replicaof is not None:
            m = self.replicaof
            mh, mp = (m.host, m.port) if isinstance(m, RedisServer) else m.rsplit(":", 1)
            # the master (and so the sentinels) must know the replica by this loopback address,
            # not by the 127.0.0.1 its connection comes from
            a += ["--replicaof", mh, str(mp), "--replica-announce-ip", self.host]
            if isinstance(m, RedisServer) and m.password is not None:
                a += ["--masterauth", m.password]
        return a + self.extra

    def start(self, timeout=None):
        """Start (again, on the same port) and wait until PING answers PONG."""
        assert not self.alive(), "already running"
        self.paused = False
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.starts += 1

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}:\n"
                                     f"{self.log()}")
            return self.ping()

        wait_until(ready, T(10) if timeout is None else timeout, interval=0.01,
                   what=f"redis-server on {self.address} to answer PING")
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ping(self):
        try:
            return self.cmd("PING", timeout=0.5) == "PONG"
        except Exception:  # noqa: BLE001 - not up (yet), whatever the reason
            return False

    def cmd(self, *args, timeout=2.0, db=0):
        if self.user is not None:
            username, password = self.user
        else:
            username, password = None, self.password
        return resp_call(self.host, self.port, *args, timeout=timeout, password=password,
                         username=username, db=db)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # life
    def stop(self, timeout=None):
        """SIGTERM and wait (SIGKILL if it takes too long)."""
        if not self.alive():
            return
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(T(10) if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        """SIGKILL: the server dies at once, its connections reset or closed by the kernel."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.paused = False

    def pause(self):
        """SIGSTOP: a frozen server (connections stay open, nothing is answered)."""
        assert self.alive()
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        if self.alive() and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def restart(self, timeout=None):
        """Kill if running, then start again on the same port (the data is gone: no
        persistence)."""
        if self.alive():
            self.kill()
        return self.start(timeout)

    def close(self):
        if self.proc is not None:
            if self.alive():
                if self.paused:
                    self.proc.send_signal(signal.SIGCONT)
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # look-ups
    def keys(self, pattern="*", db=0):
        """Every key matching pattern (SCAN), sorted."""
        out = set()
        cursor = "0"
        while True:
            cursor, batch = self.cmd("SCAN", cursor, "MATCH", pattern, "COUNT", 1000, db=db)
            out.update(batch)
            if cursor == "0":
                return sorted(out, key=str)

    def dump(self, db=0):
        """{key: value} of every key: strings as str/bytes, hashes as dict, lists as list, sets
        and sorted sets as sorted lists, streams as their raw XRANGE."""
        out = {}
        for k in self.keys(db=db):
            t = self.cmd("TYPE", k, db=db)
            if t == "string":
                out[k] = self.cmd("GET", k, db=db)
            elif t == "hash":
                out[k] = pairs(self.cmd("HGETALL", k, db=db))
            elif t == "list":
                out[k] = self.cmd("LRANGE", k, 0, -1, db=db)
            elif t == "set":
                out[k] = sorted(self.cmd("SMEMBERS", k, db=db), key=str)
            elif t == "zset":
                out[k] = self.cmd("ZRANGE", k, 0, -1, "WITHSCORES", db=db)
            elif t == "stream":
                out[k] = self.cmd("XRANGE", k, "-", "+", db=db)
            else:
                out[k] = None  # expired between SCAN and TYPE
        return out

    def info(self, section):
        text = self.cmd("INFO", section)
        return dict(line.split(":", 1) for line in text.splitlines()
                    if ":" in line and not line.startswith("#"))

    def wait_replica_synced(self, timeout=None):
        wait_until(lambda: self.info("replication").get("master_link_status") == "up",
                   T(10) if timeout is None else timeout, interval=0.02,
                   what=f"replica {self.address} in sync with its master")

    def role(self):
        try:
            r = self.cmd("ROLE", timeout=0.5)
            return r[0] if r else None
        except (OSError, RedisError):
            return None


def start_redis(tc, host, **kw):
    """A started RedisServer that is closed when test case tc ends (passing or not)."""
    r = RedisServer(host, **kw)
    tc.addCleanup(r.close)
    return r.start()


# ---- MONITOR ----------------------------------------------------------------------------------------

_MONITOR_LINE = re.compile(r"^\+(\d+\.\d+) \[(\d+) ([^\]]+)\] (.*)$")
_MONITOR_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_MONITOR_ESC = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


def _unrepr(text):
    """Undo Redis's sdscatrepr quoting of one MONITOR argument."""
    return re.sub(r"\\(x[0-9a-fA-F]{2}|.)",
                  lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x" and
                  len(m.group(1)) == 3 else _MONITOR_ESC.get(m.group(1), m.group(1)), text)


class Monitor:
    """MONITOR on a RedisServer: a thread records every command the server runs, in the order it
    runs them, as (db, client address, [command in upper case, args...]) until close().
    The client address tells connections apart (a trident worker keeps one connection)."""

    def __init__(self, server):
        username, password = server.user if server.user is not None else (None, server.password)
        self.conn = RespConnection(server.host, server.port, timeout=0.2, password=password,
                                   username=username)
        self.conn.call("MONITOR")
        self.entries = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="redis-monitor")
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                line = self.conn.reader.read_until(b"\r\n", 1 << 20)[:-2].decode("utf-8",
                                                                              "replace")
            except TimeoutError:
                continue
            except (OSError, ValueError, Closed, Truncated):
                return
            m = _MONITOR_LINE.match(line)
            if not m:
                continue
            args = [_unrepr(a) for a in _MONITOR_ARG.findall(m.group(4))]
            if args:
                args[0] = args[0].upper()
                with self.lock:
                    self.entries.append((int(m.group(2)), m.group(3), args))

    def commands(self, name=None, key=None):
        """Recorded entries, optionally only command `name` and/or those whose first argument
        is `key`."""
        with self.lock:
            return [e for e in self.entries
                    if (name is None or e[2][0] == name.upper()) and
                    (key is None or (len(e[2]) > 1 and e[2][1] == key))]

    def clients(self, name=None, key=None):
        """The client addresses that sent the matching commands."""
        return {e[1] for e in self.commands(name, key)}

    def close(self):
        self._stop.set()
        self.conn.close()
        self._thread.join(2)


def start_monitor(tc, server):
    """A Monitor on server, closed when test case tc ends."""
    m = Monitor(server)
    tc.addCleanup(m.close)
    return m


# ---- sentinels -------------------------------------------------------------------------------------

class Sentinels:
    """len(hosts) sentinels (one per host, free ports) monitoring master as `name` with quorum
    and fast timers: down after down_after_ms, failover_timeout_ms. start() waits until every
    sentinel knows the master, `replicas` healthy replicas and every other sentinel."""

    def __init__(self, hosts, master, name="mymaster", quorum=2, down_after_ms=500,
                 failover_timeout_ms=2000):
        self.master = master
        self.name = name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.nodes = []
        for i, h in enumerate(hosts):
            d = tempfile.mkdtemp(prefix=f"trident-sentinel{i}-")
            self.nodes.append({"host": h, "port": free_port(h), "dir": d, "proc": None,
                               "conf": os.path.join(d, "sentinel.conf"),
                               "log": os.path.join(d, "sentinel.log")})

    @property
    def addresses(self):
        return [f"{n['host']}:{n['port']}" for n in self.nodes]

    def _conf(self, n):
        m = self.master
        lines = [f"port {n['port']}", f"bind {n['host']}", "daemonize no", "protected-mode no",
                 f"dir {n['dir']}", f"logfile {n['log']}",
                 f"sentinel announce-ip {n['host']}",
                 f"sentinel monitor {self.name} {m.host} {m.port} {self.quorum}",
                 f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}",
                 f"sentinel failover-timeout {self.name} {self.failover_timeout_ms}",
                 f"sentinel parallel-syncs {self.name} 1"]
        if m.password is not None:
            lines.append(f"sentinel auth-pass {self.name} {m.password}")
        return "\n".join(lines) + "\n"

    def start(self, replicas=1, timeout=None):
        for n in self.nodes:
            with open(n["conf"], "w") as f:
                f.write(self._conf(n))
            argv = [REDIS_SENTINEL, n["conf"]] if REDIS_SENTINEL else \
                [REDIS_SERVER, n["conf"], "--sentinel"]
            n["proc"] = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready(replicas, timeout)
        return self

    def cmd(self, i, *args, timeout=1.0):
        n = self.nodes[i]
        return resp_call(n["host"], n["port"], *args, timeout=timeout)

    def master_address(self, i):
        """host:port sentinel i names as the master, or None."""
        try:
            r = self.cmd(i, "SENTINEL", "get-master-addr-by-name", self.name)
        except (OSError, RedisError):
            return None
        return f"{r[0]}:{r[1]}" if r else None

    def replicas(self, i):
        return [pairs(e) for e in self.cmd(i, "SENTINEL", "REPLICAS", self.name)]

    def peers(self, i):
        return [pairs(e) for e in self.cmd(i, "SENTINEL", "SENTINELS", self.name)]

    def wait_ready(self, replicas=1, timeout=None):
        def ready():
            for i, n in enumerate(self.nodes):
                if n["proc"].poll() is not None:
                    raise AssertionError(f"sentinel {i} exited:\n{self.log(i)}")
                try:
                    if self.master_address(i) != self.master.address:
                        return False
                    ok = [r for r in self.replicas(i)
                          if r.get("flags") == "slave" and r.get("master-link-status") == "ok"]
                    if len(ok) < replicas or len(self.peers(i)) < len(self.nodes) - 1:
                        return False
                except (OSError, RedisError):
                    return False
            return True

        wait_until(ready, T(20) if timeout is None else timeout, interval=0.05,
                   what="every sentinel to know the master, its replicas and the other sentinels")

    def wait_new_master(self, old_address, timeout=None):
        """Wait until every sentinel names one master other than old_address and that server
        says it is a master; return its address."""
        box = {}

        def done():
            addrs = {self.master_address(i) for i in range(len(self.nodes))}
            if len(addrs) != 1:
                return False
            a = addrs.pop()
            if a is None or a == old_address:
                return False
            h, _, p = a.rpartition(":")
            try:
                role = resp_call(h, int(p), "ROLE", timeout=0.5,
                                 password=self.master.password)[0]
            except (OSError, RedisError):
                return False
            box["a"] = a
            return role == "master"

        wait_until(done, T(20) if timeout is None else timeout, interval=0.05,
                   what=f"the sentinels to promote a new master instead of {old_address}")
        return box["a"]

    def log(self, i):
        try:
            with open(self.nodes[i]["log"], errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        for n in self.nodes:
            p = n["proc"]
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGKILL)
            if p is not None:
                p.wait()
            shutil.rmtree(n["dir"], ignore_errors=True)


def start_sentinels(tc, hosts, master, replicas=1, **kw):
    s = Sentinels(hosts, master, **kw)
    tc.addCleanup(s.close)
    return s.start(replicas)


# ---- trident's redis section ------------------------------------------------------------------------

def redis_section(target, **kw):
    """`redis` for a RedisServer (standalone address) or Sentinels (sentinels + master_name), with
    short reconnect timers so that tests recover quickly (backoff 20..200 ms) and a command budget
    (command_timeout_ms 250, scaled for slow builds) that a loaded machine under ASan does not run
    out of: a test of sharing asserts what Redis shares, not how fast Redis answers; a test of the
    budget sets the one it tests. kw overrides or adds keys (password, username, database,
    prefix, io_timeout_ms, ...)."""
    sec = {"command_timeout_ms": int(T(250)), "backoff_min_ms": 20, "backoff_max_ms": 200,
           "connect_timeout_ms": 300}
    if isinstance(target, Sentinels):
        sec["sentinels"] = list(target.addresses)
        sec["master_name"] = target.name
    elif isinstance(target, RedisServer):
        sec["address"] = target.address
    else:
        sec["address"] = str(target)
    sec.update(kw)
    return sec


# ---- sticky sessions ---------------------------------------------------------------------------------

ISSUED_COOKIE_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9._-]+)=(?P<value>[0-9a-f]{32}); Path=/; HttpOnly; "
    r"SameSite=(?P<samesite>Lax|Strict|None)(?P<secure>; Secure)?(?:; Max-Age=(?P<age>[0-9]+))?$")


def session_key(value, prefix="trident:"):
    """The Redis key of a session whose cookie has this value."""
    return f"{prefix}session:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def served_by(resp):
    return resp.headers.get("x-upstream")


def cookie_header(value, name="trident_affinity"):
    return ("Cookie", f"{name}={value}")


def issue_session(tc, trident, target="/new", cookie="trident_affinity", source=None):
    """A request without a cookie on a fresh connection: returns (cookie value, server), after
    checking the response is a 200 carrying exactly one issued Set-Cookie."""
    with Client.to(trident, source=source) as c:
        r = c.exchange("GET", target)
    tc.assertEqual(r.status, 200, r)
    sc = [v for v in r.headers.get_all("set-cookie") if v.startswith(cookie + "=")]
    tc.assertEqual(len(sc), 1, r)
    m = ISSUED_COOKIE_RE.match(sc[0])
    tc.assertTrue(m, f"unexpected Set-Cookie {sc[0]!r}")
    return m.group("value"), served_by(r)


def get_session(trident, value, target="/s", cookie="trident_affinity", timeout=None,
                extra_headers=()):
    """One GET carrying the session cookie, on a fresh connection; returns the Response."""
    with Client.to(trident, timeout=timeout) as c:
        return c.exchange("GET", target, [("Cookie", f"{cookie}={value}"), *extra_headers])


class SessionLoad(LoadThreads):
    """threads client threads that send GETs for sessions (cookie values) to tridents, each
    request on a fresh connection (so any worker may take it). Thread i's k-th request is number
    g = i + k * threads of one sequence that walks every session on the first instance, then
    every session on the next one, and so on: session g % len(sessions), instance
    (g // len(sessions)) % len(tridents), so every session reaches every instance whatever the
    counts. Bounded by max_requests per thread and max_seconds. Every request is recorded as
    (session index, instance index, status or the exception's text, X-Upstream, start, end)."""

    def __init__(self, tridents, sessions, cookie="trident_affinity", threads=3,
                 max_requests=3000, max_seconds=None, pause=0.0, timeout=None):
        self.tridents = list(tridents)
        self.sessions = list(sessions)
        self.cookie = cookie
        self.max_requests = max_requests
        self.max_seconds = T(20) if max_seconds is None else max_seconds
        self.pause = pause
        self.timeout = T(10) if timeout is None else timeout
        super().__init__(threads)

    def _run(self, i):
        nthreads = len(self._threads)
        deadline = self.started + self.max_seconds
        k = 0
        while not self._stop.is_set() and k < self.max_requests and time.monotonic() < deadline:
            g = i + k * nthreads
            s = g % len(self.sessions)
            inst = (g // len(self.sessions)) % len(self.tridents)
            t = self.tridents[inst]
            start = time.monotonic()
            try:
                with Client(t.host, t.port, timeout=self.timeout) as c:
                    r = c.exchange("GET", f"/load-{i}-{k}",
                                   [("Cookie", f"{self.cookie}={self.sessions[s]}")])
                status = r.status if r.complete else f"incomplete {r.status}"
                rec = (s, inst, status, served_by(r), start, time.monotonic())
            except Exception as e:  # noqa: BLE001 - every failure is a result to report
                rec = (s, inst, f"{type(e).__name__}: {e}", None, start, time.monotonic())
            with self.lock:
                self.results.append(rec)
            k += 1
            if self.pause:
                time.sleep(self.pause)

    def count(self):
        with self.lock:
            return len(self.results)

    def wait_count(self, n, timeout=None, what=None):
        wait_until(lambda: self.count() >= n, T(10) if timeout is None else timeout,
                   interval=0.01, what=what or f"{n} load requests")

    def snapshot(self):
        with self.lock:
            return list(self.results)

    def failures(self):
        return [r for r in self.snapshot() if r[2] != 200]

    def servers_by_session(self, results=None):
        """{session index: {instance index: set of servers}}"""
        out = {}
        for s, inst, status, server, _, _ in (self.snapshot() if results is None else results):
            if status == 200:
                out.setdefault(s, {}).setdefault(inst, set()).add(server)
        return out

    def max_latency(self, results=None):
        rs = self.snapshot() if results is None else results
        return max((r[5] - r[4] for r in rs), default=0.0)


# ---- logs ------------------------------------------------------------------------------------------

def log_ts(line):
    """An error-log line's "ts" as POSIX seconds (millisecond precision)."""
    return datetime.datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).timestamp()


def log_matches(trident, pattern, level=None):
    """Error-log lines whose msg matches the regex pattern (search), in order."""
    rx = re.compile(pattern)
    return [e for e in trident.error_lines()
            if rx.search(e.get("msg", "")) and (level is None or e.get("level") == level)]


def wait_log(trident, pattern, level=None, count=1, timeout=None, after=0):
    """Wait until count lines (beyond the first `after` ones) match; return the count-th one."""
    def found():
        m = log_matches(trident, pattern, level)[after:]
        return m[count - 1] if len(m) >= count else None

    return wait_until(found, T(5) if timeout is None else timeout, interval=0.01,
                      what=f"error-log line /{pattern}/ ({level or 'any level'}) x{count}")
