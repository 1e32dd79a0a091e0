"""Sticky sessions (the `affinity` section) shared through Redis (the `redis` section), end to end:
real redis-server and Sentinel processes, two trident instances with two workers each, three
providers (ntt, gmo, aws). Every request for a session goes on a fresh connection, so any worker
may take it; upstreams name themselves in X-Upstream. A MONITOR connection (redislib.Monitor)
shows which commands reached Redis and from which connection.

Covered:
- IssuedCookies.test_sessions_spread_and_stick_on_every_worker_and_instance: a request without a
  cookie gets exactly one `trident_affinity=<32 hex>; Path=/; HttpOnly; SameSite=Lax`; sessions
  spread over all three clusters and never reach a weight-0 server; each session's requests, on
  both instances, all reach its server; requests carrying the cookie get no new one; all four
  workers (two per instance) looked sessions up in Redis.
- IssuedCookies.test_cookie_attributes: SameSite Strict with Max-Age, SameSite=None (always
  Secure), Secure on a TLS listener, a custom cookie name, a forged value replaced by a new id
  (also without a redis section: affinity works alone).
- RedisMapping.test_mapping_written_on_the_second_request_and_slid_by_later_ones: nothing is
  stored at issue time (the second request's GETEX finds nothing: counted "new"); then
  `<prefix>session:<first 32 hex of sha256(cookie)>` holds the server id with a PTTL of about
  ttl_s; every later request (cache_ms 0) slides it back up, on either instance; the cookie
  value never reaches Redis.
- AppCookie.test_application_cookie_is_learnt_and_shared: with source "app", the server whose
  Set-Cookie started a session keeps it, on both instances (the mapping is stored at the login
  response); trident sets no cookie of its own; the application's secret never reaches Redis.
- ServerDown.test_session_moves_within_its_provider_and_stays_after_the_server_returns: the
  session's server is killed under load on both instances: no failed request, every session
  moves to the other server of the same provider, the Redis mapping follows, both instances
  agree, and when the old server is back the sessions stay where they moved.
- ServerDown.test_a_slow_response_does_not_move_the_session: a hedge that wins against the
  session's slow (but healthy) server does not remap the session.
- RedisOutage.test_killed_redis_fails_no_request_and_mappings_return_with_it: SIGKILL under load:
  zero failed requests, learnt (app) sessions keep their server from each worker's memory,
  /status says "reconnecting", the log says the connections were lost; after a restart on the
  same port every connection is "connected" again and the mappings are written again.
- RedisOutage.test_frozen_redis_does_not_stall_requests: SIGSTOP under load: every request still
  completes quickly (well under a second), timeouts are counted, the stalled connections are
  dropped ("no reply in time") and come back after SIGCONT.
- Auth.test_password_and_database / test_acl_user_and_database: requirepass, and an ACL user with
  its password; keys land in database 3 only.
- Auth.test_wrong_password_still_serves_and_is_never_logged: 200s without Redis, every connection
  not connected, the log names WRONGPASS, and the password appears in no log, /status or /metrics.
- Sentinel.test_master_failover_under_load: master, replica and three sentinels; the master is
  killed under load: zero failed requests, every connection ends on the promoted replica
  (/status server), and new mappings are written there.
- ConfigCheck.test_invalid_sections_refused_with_their_path: `trident --check` refuses bad redis,
  affinity and fleet sections, naming the JSON path.
"""
import collections
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (Client, E2ETestCase, Headers, Reader, T, Trident, build_request, cluster,
                     default_handler, free_port, make_config, run_check, split_head, wait_until)
from healthlib import health
from adminlib import Admin, admin_section, server_status, wait_server, wait_status
from redislib import (ISSUED_COOKIE_RE, SessionLoad, get_session, redis_section, served_by,
                      session_key, start_monitor, start_redis, start_sentinels, wait_log)

PROVIDERS = ("ntt", "gmo", "aws")
COOKIE = "trident_affinity"
NO_HEDGE = {"hedge": False}  # the default here; the hedging tests turn it on


# ---- helpers -------------------------------------------------------------------------------------

def issued_cookie(tc, resp, cookie=COOKIE):
    """The one Set-Cookie trident issued in resp, parsed (ISSUED_COOKIE_RE match)."""
    tc.assertEqual(resp.status, 200, resp)
    mine = [v for v in resp.headers.get_all("set-cookie") if v.startswith(cookie + "=")]
    tc.assertEqual(len(mine), 1, f"expected one {cookie} Set-Cookie: {resp}")
    m = ISSUED_COOKIE_RE.match(mine[0])
    tc.assertTrue(m, f"unexpected Set-Cookie {mine[0]!r}")
    return m


def fresh(t, target="/new"):
    """A GET without any cookie, on a fresh connection."""
    with Client.to(t) as c:
        return c.exchange("GET", target)


def new_session(tc, t, target="/new"):
    """A request without a cookie: (issued id, server)."""
    r = fresh(t, target)
    return issued_cookie(tc, r).group("value"), served_by(r)


def app_cookie(resp):
    """The value of the application's SID cookie set in resp."""
    return resp.headers.get("set-cookie").split(";")[0].split("=", 1)[1]


def redis_conns(st):
    """/status redis connections by name."""
    return {c["name"]: c for c in st["redis"]["connections"]}


def workers(st):
    return [c for name, c in redis_conns(st).items() if name.startswith("worker")]


def all_connected_to(address):
    return lambda st: st["redis"]["state"] == "connected" and all(
        c["state"] == "connected" and c["server"] == address for c in st["redis"]["connections"])


def wait_each_worker(t, what, level="warn", timeout=None):
    """Wait until both workers logged `redis worker N: <what>` (what: a regex)."""
    for w in (0, 1):
        wait_log(t, rf"^redis worker {w}: {what}", level=level, timeout=timeout)


def affinity_counts(t):
    return Admin.of(t).status()["affinity"]


def stop_listening(u):
    """Kill a server the gentle way: its listener closes at once (connects are refused), the
    requests it is answering finish (with upstream_keepalive 0 nothing else stays open), then
    everything is closed. Closing it abruptly could cut a response in half, which no proxy can
    hide from its client."""
    u.lsock.close()
    wait_until(lambda: not u.open_conns, T(5), what=f"{u.name}'s connections to finish")
    u.close()


def servers_per_session(results, since=0.0):
    """{session index: set of servers} of the load's 200s started at or after since."""
    out = collections.defaultdict(set)
    for s, _, status, server, start, _ in results:
        if status == 200 and start >= since:
            out[s].add(server)
    return dict(out)


def login_handler(ex):
    """/login starts an application session: Set-Cookie SID=<secret>; anything else: 200."""
    if ex.req.target.startswith("/login"):
        secret = hashlib.sha256(os.urandom(16)).hexdigest()
        ex.respond(200, f"{ex.upstream.name} welcome".encode(),
                   headers=[("X-Upstream", ex.upstream.name),
                            ("Set-Cookie", f"SID={secret}; Path=/; HttpOnly")])
    else:
        default_handler(ex)


def self_signed(directory):
    """(cert, key) paths of a fresh self-signed ECDSA certificate for app.test."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=app.test", "-addext", "subjectAltName=DNS:app.test"],
                   check=True, capture_output=True)
    return cert, key


def tls_get(t, target="/"):
    """One GET over TLS (no verification): (status, Headers)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((t.host, t.port), timeout=T(10)) as raw, \
            ctx.wrap_socket(raw, server_hostname="app.test") as s:
        s.sendall(build_request("GET", target, host="app.test"))
        line, fields = split_head(Reader(s).read_until(b"\r\n\r\n", 1 << 16))
        return int(line.split()[1]), Headers(fields)


class RedisTrident(Trident):
    """A Trident that, once started, waits until its Redis connections are up (when it has an
    admin endpoint to ask): a session learnt before a worker's connection is up is stored only
    on its next request, which tests that count Redis writes do not make."""

    def __init__(self, config, wait_redis=True, **kw):
        super().__init__(config, **kw)
        self.wait_redis = wait_redis

    def start(self):
        super().start()
        if self.wait_redis and "redis" in self.config and "admin" in self.config:
            try:
                wait_status(Admin.of(self), lambda st: st["redis"]["state"] == "connected",
                            T(10), "every Redis connection up")
            except BaseException:
                self.kill()  # __exit__ will not run: the with statement never entered
                raise
        return self


class AffinityCase(E2ETestCase):
    """Builds the three providers' clusters and the configs of instances "a" and "b"."""

    def trident(self, config, **kw):
        return RedisTrident(config, net=self.net, **kw)

    def providers(self, per_provider=2, handler=None, checks=None, weights=None):
        """per_provider upstreams per provider, named by their server ids (ntt-1, ntt-2, ...):
        ({id: Upstream}, clusters). weights: {id: weight}."""
        ups, clusters = {}, []
        for p, prov in enumerate(PROVIDERS):
            servers = []
            for j in range(per_provider):
                sid = f"{prov}-{j + 1}"
                ups[sid] = self.upstream(p, handler=handler, name=sid)
                servers.append((sid, ups[sid], (weights or {}).get(sid, 1)))
            c = cluster(prov, servers)
            if checks:
                c["health"] = dict(checks)
            clusters.append(c)
        return ups, clusters

    def instance(self, name, clusters, redis=None, affinity=None, failover=None, **top):
        """The config of instance `name` (2 workers, its own admin address, no hedging unless
        failover says otherwise)."""
        cfg = make_config(clusters, workers=2, failover=dict(NO_HEDGE, **(failover or {})))
        cfg.update(top)
        cfg["instance_id"] = name
        cfg["admin"] = admin_section(self.net, host_index=2 + "ab".index(name))
        cfg["affinity"] = dict(affinity or {})
        if redis is not None:
            cfg["redis"] = redis
        return cfg

    def pair(self, clusters, redis, **kw):
        """Tridents a and b (not started) sharing redis; b listens on its own address."""
        return (self.trident(self.instance("a", clusters, redis, **kw)),
                self.trident(self.instance("b", clusters, redis, **kw), host=self.net.ip(4)))

    def assertSticks(self, tridents, sessions, rounds=2, cookie=COOKIE):
        """sessions: [(cookie value, server)]; each gets rounds requests per instance, each on a
        fresh connection: every one a 200 from its server, without a Set-Cookie."""
        wrong = []
        for value, server in sessions:
            for i in range(rounds * len(tridents)):
                r = get_session(tridents[i % len(tridents)], value, target=f"/again{i}",
                                cookie=cookie)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.headers.get_all("set-cookie"), [], r)
                if served_by(r) != server:
                    wrong.append((value, i % len(tridents), server, served_by(r)))
        self.assertEqual(wrong, [], "(session, instance, its server, served by)")

    def wait_mappings(self, r, sessions, prefix="trident:", db=0):
        """Until Redis maps every (value, server) session to its server."""
        wait_until(lambda: all(r.cmd("GET", session_key(v, prefix), db=db) == s
                               for v, s in sessions), T(5), interval=0.02,
                   what="every session's mapping in Redis")


# ---- issued cookies ------------------------------------------------------------------------------

class IssuedCookies(AffinityCase):

    def test_sessions_spread_and_stick_on_every_worker_and_instance(self):
        r = start_redis(self, self.net.ip(50))
        mon = start_monitor(self, r)
        _, clusters = self.providers(weights={"aws-2": 0})
        a, b = self.pair(clusters, redis_section(r))
        with a, b:
            first = fresh(a)
            value = issued_cookie(self, first).group("value")
            self.assertEqual(first.headers.get("set-cookie"),
                             f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax")
            sessions = [(value, served_by(first))] + [new_session(self, a) for _ in range(44)]
            spread = collections.Counter(s for _, s in sessions)
            self.assertEqual({s.split("-")[0] for s in spread}, set(PROVIDERS), spread)
            self.assertNotIn("aws-2", spread, "a weight-0 server got new sessions")
            self.assertEqual(len({v for v, _ in sessions}), len(sessions), "an id issued twice")
            self.assertSticks([a, b], sessions[:15])
            for t in (a, b):
                conns = workers(Admin.of(t).status())
                self.assertEqual([c["connects"] for c in conns], [1, 1], conns)
        getex = mon.clients("GETEX")
        self.assertEqual(len(getex), 4, f"GETEX from {getex}: not every worker looked up sessions")

    def test_cookie_attributes(self):
        tmp = tempfile.mkdtemp(prefix="trident-affinity-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        cert, key = self_signed(tmp)
        _, clusters = self.providers(per_provider=1)
        cases = (
            ("default", {}, False, "Lax", False, None),
            ("strict-max-age", {"same_site": "Strict", "cookie_max_age_s": 3600}, False,
             "Strict", False, "3600"),
            ("none-is-secure", {"same_site": "None"}, False, "None", True, None),
            ("tls-is-secure", {}, True, "Lax", True, None),
        )
        for name, aff, tls, same_site, secure, age in cases:
            with self.subTest(name):
                cfg = self.instance("a", clusters, affinity=aff)
                if tls:
                    host = self.net.listener_ip()
                    cfg["listeners"] = [{"address": f"{host}:{free_port(host)}",
                                         "tls": {"certificates": [{"cert": cert, "key": key}]}}]
                with self.trident(cfg) as t:
                    if tls:
                        status, headers = tls_get(t)
                        self.assertEqual(status, 200)
                        values = headers.get_all("set-cookie")
                        self.assertEqual(len(values), 1, values)
                        m = ISSUED_COOKIE_RE.match(values[0])
                        self.assertTrue(m, values)
                    else:
                        m = issued_cookie(self, fresh(t))
                    self.assertEqual((m.group("samesite"), bool(m.group("secure")),
                                      m.group("age")), (same_site, secure, age), m.group(0))
        with self.subTest("custom name, forged value"):
            with self.trident(self.instance("a", clusters, affinity={"cookie": "sid_x"})) as t:
                m = issued_cookie(self, fresh(t), cookie="sid_x")
                self.assertEqual(m.group("name"), "sid_x")
                value = m.group("value")
                forged = issued_cookie(self, get_session(t, "not-an-issued-id", cookie="sid_x"),
                                       cookie="sid_x").group("value")
                self.assertNotEqual(forged, value)
                r = get_session(t, value, cookie="sid_x")
                self.assertEqual((r.status, r.headers.get_all("set-cookie")), (200, []), r)


# ---- the mapping in Redis ------------------------------------------------------------------------

class RedisMapping(AffinityCase):

    def test_mapping_written_on_the_second_request_and_slid_by_later_ones(self):
        prefix, ttl_ms = "e2e-aff:", 120_000
        r = start_redis(self, self.net.ip(50))
        mon = start_monitor(self, r)
        _, clusters = self.providers()
        a, b = self.pair(clusters, redis_section(r, prefix=prefix),
                         affinity={"ttl_s": ttl_ms // 1000, "cache_ms": 0})
        with a, b:
            value, server = new_session(self, a)
            key = session_key(value, prefix)
            self.assertEqual(key, prefix + "session:" +
                             hashlib.sha256(value.encode()).hexdigest()[:32])
            self.assertEqual(r.keys("*session:*"), [], "a session was stored at issue time")

            r2 = get_session(a, value)
            self.assertEqual((r2.status, served_by(r2)), (200, server), r2)
            wait_until(lambda: r.cmd("GET", key) == server, T(5), what="the mapping")
            self.assertGreater(r.cmd("PTTL", key), ttl_ms - T(5) * 1000)
            # trident's commands only (the GET and PTTL polls above are this test's own)
            ops = [e[2][:2] for e in mon.commands(key=key) if e[2][0] in ("GETEX", "SET")]
            self.assertEqual(ops[:2], [["GETEX", key], ["SET", key]], ops)
            self.assertEqual(mon.commands("SET", key)[0][2][2:], [server, "PX", str(ttl_ms)])
            # the second request's lookup found nothing: both requests count as "new"
            self.assertEqual(affinity_counts(a), {"new": 2, "cache": 0, "redis": 0, "moved": 0,
                                                  "local": 0})

            for t in (b, a, b):
                r.cmd("PEXPIRE", key, 10_000)
                resp = get_session(t, value)
                self.assertEqual((resp.status, served_by(resp)), (200, server), resp)
                self.assertGreater(r.cmd("PTTL", key), ttl_ms - T(5) * 1000,
                                   "a request did not slide the session's TTL")
            self.assertEqual(affinity_counts(b)["redis"], 2)
            self.assertEqual(affinity_counts(a)["redis"], 1)
            self.assertEqual(Admin.of(b).metrics().get("trident_affinity_total", result="redis"),
                             2)
            self.assertEqual(r.keys("*session:*"), [key])
        self.assertEqual([k for k in r.keys() if not k.startswith(prefix)], [])
        self.assertNotIn(value, repr(r.dump()))


# ---- the application's own cookie ----------------------------------------------------------------

class AppCookie(AffinityCase):

    def test_application_cookie_is_learnt_and_shared(self):
        r = start_redis(self, self.net.ip(50))
        _, clusters = self.providers(handler=login_handler)
        a, b = self.pair(clusters, redis_section(r), affinity={"source": "app", "cookie": "SID"})
        with a, b:
            sessions = []
            for i in range(12):
                resp = fresh(a, f"/login{i}")
                self.assertEqual(resp.status, 200, resp)
                cookies = resp.headers.get_all("set-cookie")
                self.assertEqual(len(cookies), 1, f"trident added a cookie: {cookies}")
                sessions.append((app_cookie(resp), served_by(resp)))
            self.assertGreaterEqual(len({s for _, s in sessions}), 3, sessions)
            self.wait_mappings(r, sessions)
            self.assertSticks([b, a], sessions, cookie="SID")
            secrets = [v for v, _ in sessions]
            dump = repr(r.dump())
            self.assertEqual([v for v in secrets if v in dump], [], "a secret reached Redis")


# ---- a session's server goes away ----------------------------------------------------------------

class ServerDown(AffinityCase):

    def test_session_moves_within_its_provider_and_stays_after_the_server_returns(self):
        victim, sibling = "ntt-1", "ntt-2"
        r = start_redis(self, self.net.ip(50))
        # Checks every second: the load's requests find the dead server first (as they would in
        # production), a check brings it back. One server of two failing must not trip the
        # provider breaker (50 % by default): ntt-2 stays usable.
        ups, clusters = self.providers(checks=health(type="tcp", interval_ms=1000,
                                                     fast_interval_ms=50))
        a, b = self.pair(clusters, redis_section(r), affinity={"ttl_s": 300},
                         failover={"breaker_share_pct": 100}, limits={"upstream_keepalive": 0})
        with a, b:
            mine = []
            for _ in range(300):
                v, s = new_session(self, a)
                if s == victim:
                    mine.append((v, s))
                    if len(mine) == 4:
                        break
            self.assertEqual(len(mine), 4, f"too few new sessions on {victim}")
            for v, _ in mine:
                get_session(a, v)  # the second request stores the mapping
            self.wait_mappings(r, mine)

            load = SessionLoad([a, b], [v for v, _ in mine], pause=0.002).start()
            try:
                load.wait_count(40)
                port = ups[victim].port
                stop_listening(ups[victim])
                killed = time.monotonic()
                load.wait_count(load.count() + 150)
                revived = self.upstream(0, name=victim, port=port)
                for t in (a, b):
                    wait_server(Admin.of(t), victim, timeout=T(5), health="up", usable=True)
                back = time.monotonic()
                load.wait_count(load.count() + 150)
            finally:
                results = load.stop()
            self.assertEqual(load.failures(), [], "failed requests during the move")

            moved = {i: sorted(s) for i, s in servers_per_session(results, killed).items()}
            self.assertEqual(moved, {i: [sibling] for i in range(len(mine))},
                             f"after {victim} died, each session should be served by "
                             f"{sibling} (same provider) and only by it")
            self.wait_mappings(r, [(v, sibling) for v, _ in mine])
            stayed = {i: sorted(s) for i, s in servers_per_session(results, back).items()}
            self.assertEqual(stayed, {i: [sibling] for i in range(len(mine))},
                             f"sessions went back to {victim} when it returned")
            self.assertEqual(revived.requests, [], f"requests reached the revived {victim}")
            self.assertGreater(sum(affinity_counts(t)["moved"] for t in (a, b)), 0)

    def hedging_instance(self, handler, per_provider):
        """Instance a (not started) with hedging on and quick (50 ms, no budget limit) and a
        long response timeout, over providers whose servers run handler; and its Redis."""
        r = start_redis(self, self.net.ip(50))
        _, clusters = self.providers(per_provider=per_provider, handler=handler)
        cfg = self.instance("a", clusters, redis_section(r), failover={
            "hedge": True, "hedge_delay_ms": 50, "hedge_budget_pct": 100})
        cfg["timeouts"]["upstream_response_ms"] = 60000  # what a request would wait otherwise
        return self.trident(cfg), r

    def learnt_session(self, t, r):
        """A new session, stored in Redis with its server: (value, server)."""
        value, server = new_session(self, t)
        get_session(t, value)
        self.wait_mappings(r, [(value, server)])
        return value, server

    def waiting_request(self, t, value, target, server):
        """A request of the session sent from a thread, once it waits on server: (thread, box
        that receives the response as "r")."""
        box = {}
        waiter = threading.Thread(
            target=lambda: box.update(r=get_session(t, value, target=target)), daemon=True)
        waiter.start()
        wait_until(lambda: server_status(Admin.of(t).status(), server)["active_requests"] == 1,
                   T(5), what=f"the request waiting on {server}")
        return waiter, box

    def test_a_sessions_request_is_not_hedged_while_its_server_serves(self):
        # Hedging on and quick: a slow answer from the session's own server is waited for, not
        # raced against a server that lacks the session's state; the server is not taken out
        # and the session stays. (A request of no session is hedged: test_failover's Hedging.)
        slow = set()

        def handler(ex):
            if ex.req.target == "/slow" and ex.upstream.name in slow:
                time.sleep(T(0.5))
            default_handler(ex)

        ti, r = self.hedging_instance(handler, per_provider=1)
        with ti as t:
            value, server = self.learnt_session(t, r)
            slow.add(server)
            resp = get_session(t, value, target="/slow")
            self.assertEqual((resp.status, served_by(resp)), (200, server))
            slow.clear()
            e = t.wait_for_access(lambda e: e.get("path") == "/slow")
            self.assertEqual((e.get("hedged", False), e["attempts"], e["server"]),
                             (False, 1, server))
            served = [served_by(get_session(t, value)) for _ in range(8)]
            self.assertEqual((r.cmd("GET", session_key(value)), served), (server, [server] * 8),
                             f"one slow answer from {server} moved the session")
            self.assertEqual(server_status(Admin.of(t).status(), server)["transitions"], 0)

    def test_a_sessions_request_moves_when_its_server_goes_out_while_it_waits(self):
        # The session's server hangs; while the request waits, the server is put in maintenance:
        # the request goes where the session moves (the same provider first) at once, instead
        # of waiting for upstream_response_ms, and the session follows.
        hung = set()

        def handler(ex):
            if ex.req.target == "/hang" and ex.upstream.name in hung:
                ex.hang(T(10))
                return
            default_handler(ex)

        ti, r = self.hedging_instance(handler, per_provider=2)
        with ti as t:
            value, server = self.learnt_session(t, r)
            sibling = server[:-1] + ("2" if server.endswith("1") else "1")
            hung.add(server)
            waiter, box = self.waiting_request(t, value, "/hang", server)
            self.assertEqual(Admin.of(t).post(f"/servers/{server}/maintenance").status, 200)
            waiter.join(T(5))
            self.assertFalse(waiter.is_alive(), "the request still waits for its server")
            resp = box["r"]
            self.assertEqual((resp.status, served_by(resp)), (200, sibling))
            e = t.wait_for_access(lambda e: e.get("path") == "/hang")
            self.assertEqual((e.get("hedged"), e["attempts"], e["server"]), (True, 2, sibling))
            self.wait_mappings(r, [(value, sibling)])

    def test_a_draining_server_finishes_the_sessions_request_it_has(self):
        # A drain takes no new request but finishes the ones a server has: the waiting request
        # is answered by its own server, not moved (new ones of the session move).
        release = threading.Event()

        def handler(ex):
            if ex.req.target == "/slow":
                release.wait(T(10))
            default_handler(ex)

        ti, r = self.hedging_instance(handler, per_provider=2)
        with ti as t:
            adm = Admin.of(t)
            value, server = self.learnt_session(t, r)
            waiter, box = self.waiting_request(t, value, "/slow", server)
            self.assertEqual(adm.post(f"/servers/{server}/drain").status, 200)
            wait_until(lambda: server_status(adm.status(), server)["admin"] == "draining", T(5),
                       what=f"{server} draining")
            # an absence is asserted: the request must stay through several watch periods
            # (50 ms each) with its server draining
            time.sleep(0.3)
            release.set()
            waiter.join(T(5))
            resp = box["r"]
            self.assertEqual((resp.status, served_by(resp)), (200, server))
            e = t.wait_for_access(lambda e: e.get("path") == "/slow")
            self.assertEqual((e.get("hedged", False), e["attempts"], e["server"]),
                             (False, 1, server))


# ---- Redis fails ---------------------------------------------------------------------------------

class RedisOutage(AffinityCase):

    def learnt_sessions(self, r, t, n=8):
        """n application sessions started on t (login spread by the balancer), looked up in
        Redis by both workers of t (so each worker remembers them): [(secret, server)]."""
        mon = start_monitor(self, r)
        # a session learnt before a worker's connection is up is stored only on its next
        # request: start when every connection is
        wait_status(Admin.of(t), all_connected_to(r.address), T(10), "every connection up")
        sessions = []
        for i in range(n):
            resp = fresh(t, f"/login{i}")
            self.assertEqual(resp.status, 200, resp)
            sessions.append((app_cookie(resp), served_by(resp)))
        self.wait_mappings(r, sessions)
        for v, _ in sessions:
            key = session_key(v)

            def seen_by():  # trident's connections (the test itself only sends GET)
                return mon.clients("GETEX", key) | mon.clients("SET", key)

            for i in range(64):  # a fresh connection lands on either worker: 2^-63 to miss one
                if len(seen_by()) == 2:
                    break
                get_session(t, v, cookie="SID")
            self.assertEqual(len(seen_by()), 2, "a worker never saw a session")
        mon.close()
        return sessions

    def setup_app(self, r, **redis_kw):
        _, clusters = self.providers(handler=login_handler)
        cfg = self.instance("a", clusters, redis_section(r, **redis_kw),
                            affinity={"source": "app", "cookie": "SID", "cache_ms": 200})
        return self.trident(cfg)

    def assertKeptServers(self, load, sessions):
        self.assertEqual(load.failures(), [], "failed requests")
        kept = {i: sorted(s) for i, s in servers_per_session(load.snapshot()).items()}
        self.assertEqual(kept, {i: [s] for i, (_, s) in enumerate(sessions)},
                         "sessions changed server")

    def test_killed_redis_fails_no_request_and_mappings_return_with_it(self):
        r = start_redis(self, self.net.ip(50))
        with self.setup_app(r) as t:
            adm = Admin.of(t)
            sessions = self.learnt_sessions(r, t)
            self.assertGreater(len({s for _, s in sessions}), 2, sessions)
            local_before = affinity_counts(t)["local"]
            load = SessionLoad([t], [v for v, _ in sessions], cookie="SID", pause=0.002).start()
            try:
                load.wait_count(30)
                r.kill()
                wait_status(adm, lambda st: st["redis"]["state"] == "reconnecting", T(3),
                            "redis state reconnecting")
                wait_each_worker(t, rf"connection to {re.escape(r.address)} lost \(.*\); "
                                    r"going on without Redis$")
                # once a session's memory is older than cache_ms, each worker decides alone
                wait_until(lambda: affinity_counts(t)["local"] >= local_before + 50, T(5),
                           what="requests decided without Redis")
                r.start()
                wait_status(adm, all_connected_to(r.address), T(5), "every connection back")
                self.wait_mappings(r, sessions)  # written again from the workers' memory
                load.wait_count(load.count() + 30)
            finally:
                load.stop()
            self.assertKeptServers(load, sessions)
            wait_each_worker(t, rf"connected to {re.escape(r.address)}$", level="info")
            m = adm.metrics()
            for conn in ("worker 0", "worker 1"):
                self.assertEqual(m.get("trident_redis_up", connection=conn), 1)
                self.assertEqual(m.get("trident_redis_reconnects_total", connection=conn), 2)

    def test_frozen_redis_does_not_stall_requests(self):
        r = start_redis(self, self.net.ip(50))
        # the budget is what this tests: a short one, which a frozen Redis exhausts
        with self.setup_app(r, io_timeout_ms=300, command_timeout_ms=int(T(25))) as t:
            adm = Admin.of(t)
            sessions = self.learnt_sessions(r, t)
            timeouts = sum(c["timeouts"] for c in workers(adm.status()))
            load = SessionLoad([t], [v for v, _ in sessions], cookie="SID", pause=0.002).start()
            try:
                load.wait_count(30)
                r.pause()
                frozen = time.monotonic()
                wait_each_worker(t, rf"connection to {re.escape(r.address)} lost "
                                    r"\(no reply in time\)", timeout=T(5))
                load.wait_count(load.count() + 150)
                st, m = adm.status(), adm.metrics()
                self.assertNotEqual(st["redis"]["state"], "connected")
                self.assertGreater(sum(c["timeouts"] for c in workers(st)), timeouts)
                self.assertGreater(sum(v for labels, v in m.find(
                    "trident_redis_commands_total", result="timeout")
                    if labels["connection"].startswith("worker")), timeouts)
                r.resume()
                thawed = time.monotonic()
                wait_status(adm, all_connected_to(r.address), T(5), "every connection back")
                load.wait_count(load.count() + 30)
            finally:
                load.stop()
            self.assertKeptServers(load, sessions)
            during = [x for x in load.snapshot() if frozen <= x[4] <= thawed]
            self.assertGreater(len(during), 100)
            self.assertLess(load.max_latency(during), T(1.0), "a request waited for Redis")


# ---- AUTH and SELECT -----------------------------------------------------------------------------

class Auth(AffinityCase):

    def sessions_stored(self, r, redis_sec, db):
        """Two sessions through a trident using redis_sec: their keys are in db, nowhere else;
        the password is not logged."""
        _, clusters = self.providers(per_provider=1)
        with self.trident(self.instance("a", clusters, redis_sec)) as t:
            wait_status(Admin.of(t), all_connected_to(r.address), T(5), "connected")
            sessions = [new_session(self, t) for _ in range(2)]
            for v, _ in sessions:
                get_session(t, v)
            self.wait_mappings(r, sessions, db=db)
            self.assertNotIn(redis_sec["password"], t.error_log())
        self.assertEqual(r.keys(db=0), [])
        self.assertEqual(len(r.keys("trident:session:*", db=db)), 2)

    def test_password_and_database(self):
        r = start_redis(self, self.net.ip(50), password="e2e-Requirep@ss")
        self.sessions_stored(r, redis_section(r, password="e2e-Requirep@ss", database=3), 3)

    def test_acl_user_and_database(self):
        r = start_redis(self, self.net.ip(50), user=("trident-e2e", "e2e-Us3r-p@ss"))
        self.sessions_stored(r, redis_section(r, username="trident-e2e",
                                              password="e2e-Us3r-p@ss", database=3), 3)

    def test_wrong_password_still_serves_and_is_never_logged(self):
        wrong = "Wr0ng-e2e-p@ssw0rd"
        r = start_redis(self, self.net.ip(50), password="e2e-Requirep@ss")
        _, clusters = self.providers(per_provider=1)
        with self.trident(self.instance("a", clusters, redis_section(r, password=wrong)),
                          wait_redis=False) as t:
            adm = Admin.of(t)
            wait_each_worker(t, rf"cannot connect to {re.escape(r.address)} \(WRONGPASS",
                             timeout=T(5))
            value, server = new_session(self, t)
            self.assertSticks([t], [(value, server)])
            st = adm.status()
            self.assertEqual(st["redis"]["state"], "reconnecting", st["redis"])
            self.assertEqual([c for c in st["redis"]["connections"] if c["state"] == "connected"],
                             [])
            self.assertEqual({c["connects"] for c in st["redis"]["connections"]}, {0})
            texts = {"/status": adm.get("/status").body.decode(), "/metrics": adm.metrics_text(),
                     "error log": t.error_log()}
            with open(t.access_path) as f:
                texts["access log"] = f.read()
            self.assertIn("WRONGPASS", texts["error log"])
        self.assertEqual([k for k, text in texts.items() if wrong in text], [],
                         "the password was printed")
        self.assertEqual(r.keys(), [])


# ---- Sentinel ------------------------------------------------------------------------------------

class Sentinel(AffinityCase):

    def test_master_failover_under_load(self):
        master = start_redis(self, self.net.ip(50), name="master")
        replica = start_redis(self, self.net.ip(51), replicaof=master, name="replica")
        replica.wait_replica_synced()
        sentinels = start_sentinels(self, [self.net.ip(60 + i) for i in range(3)], master)
        _, clusters = self.providers(per_provider=1)
        cfg = self.instance("a", clusters, redis_section(sentinels), affinity={"cache_ms": 100})
        with self.trident(cfg) as t:
            adm = Admin.of(t)
            wait_status(adm, all_connected_to(master.address), T(5), "connected to the master")
            sessions = [new_session(self, t) for _ in range(6)]
            load = SessionLoad([t], [v for v, _ in sessions], pause=0.002).start()
            try:
                self.wait_mappings(master, sessions)
                master.kill()
                promoted = sentinels.wait_new_master(master.address, timeout=T(20))
                self.assertEqual(promoted, replica.address)
                wait_status(adm, all_connected_to(promoted), T(10), "every connection on the "
                            "promoted replica")
                load.wait_count(load.count() + 30)
            finally:
                load.stop()
            self.assertEqual(load.failures(), [], "failed requests during the failover")
            later = [new_session(self, t) for _ in range(3)]
            for v, _ in later:
                get_session(t, v)
            self.wait_mappings(replica, later)
            self.assertEqual(replica.role(), "master")


# ---- configuration -------------------------------------------------------------------------------

class ConfigCheck(E2ETestCase):

    def test_invalid_sections_refused_with_their_path(self):
        base = {"listeners": [{"address": "127.0.0.1:8080"}],
                "clusters": [{"name": "ntt", "provider": "ntt",
                              "servers": [{"id": "ntt-1", "address": "127.0.0.1:9000"}]}]}
        redis, sentinel = "127.0.0.1:6379", ["127.0.0.1:26379"]
        cases = (
            ({"redis": {"address": redis, "sentinels": sentinel, "master_name": "m"}},
             "redis: give either address or sentinels"),
            ({"redis": {}}, "redis: give either address or sentinels"),
            ({"redis": {"sentinels": sentinel}}, "redis.master_name: required with sentinels"),
            ({"redis": {"address": redis, "master_name": "m"}},
             "redis.master_name: only with sentinels"),
            ({"redis": {"sentinels": ["nowhere"], "master_name": "m"}}, "redis.sentinels[0]: "),
            ({"redis": {"address": redis, "backoff_min_ms": 500, "backoff_max_ms": 100}},
             "redis.backoff_min_ms: more than backoff_max_ms"),
            ({"redis": {"address": redis, "prefix": "a b"}}, "redis.prefix: "),
            ({"redis": {"address": redis, "database": 1001}}, "redis.database: "),
            ({"redis": {"address": redis, "command_timeout_ms": 0}}, "redis.command_timeout_ms: "),
            ({"redis": {"address": redis, "passwd": "x"}}, "redis.passwd: unknown key"),
            ({"redis": {"address": redis, "password": 5}}, "redis.password: "),
            ({"affinity": {"source": "header"}}, "affinity.source: "),
            ({"affinity": {"same_site": "lax"}}, "affinity.same_site: "),
            ({"affinity": {"cookie": "a b"}}, "affinity.cookie: "),
            ({"affinity": {"ttl_s": 0}}, "affinity.ttl_s: "),
            ({"fleet": {"quorum": 0}}, "fleet.quorum: "),
        )
        for extra, message in cases:
            with self.subTest(extra):
                code, err = run_check(dict(base, **extra))
                self.assertEqual(code, 1, err)
                self.assertIn(f": {message}", err)
        code, err = run_check(dict(base, affinity={"source": "app", "cookie": "SID"},
                                   redis={"sentinels": sentinel, "master_name": "m"}))
        self.assertEqual(code, 0, err)


if __name__ == "__main__":
    unittest.main()
