"""Active health checks: http (status, body, request shape), tcp and tls checks with their logged
reasons; rise/fall counting; start-up (the first round decides before traffic); min_healthy; slow
start; what a server going down closes (pooled connections, WebSocket tunnels); the provider
breaker. Upstreams answer checks (User-Agent trident-health-check) apart from traffic."""
import base64
import os
import socket
import ssl
import threading
import time
import unittest

from harness import (Client, E2ETestCase, T, cluster, closed_port_address, echo_handler,
                     make_config, wait_until, ws_frame, ws_read_frame, NO_PASSIVE)
from healthlib import (CheckControl, RawServer, checks, garbage_reply, health, plain_http_400,
                       served_by, silent, spread, traffic, transitions, wait_transition)


def msgs(t):
    return [e.get("msg", "") for e in t.error_lines()]


def ws_handler(ex):
    if ex.req.headers.tokens("upgrade") == ["websocket"]:
        ex.websocket_echo()
    else:
        echo_handler(ex)


def ws_handshake(c, path="/chat"):
    key = base64.b64encode(os.urandom(16)).decode()
    c.request("GET", path, [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")])
    return c.read_response()


class HttpChecks(E2ETestCase):

    def two_providers(self, ctl, hc=None):
        a = self.upstream(0, handler=ctl.handler, name="a")
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [a])
        ca["health"] = hc or health()
        cb = cluster("gmo", [b])
        cb["health"] = health()
        return a, b, make_config([ca, cb])

    def test_http_status_takes_server_down_and_up(self):
        ctl = CheckControl()
        self.addCleanup(ctl.close)
        a, b, cfg = self.two_providers(ctl)
        with self.trident(cfg) as t:
            self.assertEqual(wait_transition(t, "ntt-1", "up")[3], "unknown")
            self.assertEqual(checks(a)[0].headers.get("host"), a.address)
            s = spread(t, 10)
            self.assertGreater(s.get("a", 0), 0, s)
            self.assertGreater(s.get("b", 0), 0, s)
            ctl.set(503)
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr, ("ntt-1", "down", "L7 unexpected status (status 503)", "up",
                                  "warn"))
            self.assertIn("server ntt-1 (cluster ntt, provider ntt) is down: L7 unexpected "
                          "status (status 503) (was up)", msgs(t))
            before = len(traffic(a))
            self.assertEqual(spread(t, 10), {"b": 10})
            self.assertEqual(len(traffic(a)), before, "a server marked down got traffic")
            ctl.set(200)
            tr = wait_transition(t, "ntt-1", "up", count=2)
            self.assertEqual((tr[3], tr[4]), ("down", "info"))
            s = spread(t, 10)
            self.assertGreater(s.get("a", 0), 0, f"server back up but given no traffic: {s}")
        self.assertNoUpstreamErrors()

    def test_http_expect_body(self):
        ctl = CheckControl(body=b"status: ALIVE and well")
        self.addCleanup(ctl.close)
        a, b, cfg = self.two_providers(ctl, health(expect_body="ALIVE"))
        with self.trident(cfg) as t:
            wait_transition(t, "ntt-1", "up")
            ctl.set(200, b"status: MAINTENANCE")
            tr = wait_transition(t, "ntt-1", "down")
            self.assertTrue(tr[2].startswith("L7 expected text missing"), tr)
            self.assertEqual((tr[3], tr[4]), ("up", "warn"))
            self.assertEqual(spread(t, 6), {"b": 6})
            # the text past the first 16 KiB does not count
            ctl.set(200, b"x" * (20 << 10) + b"ALIVE")
            n = len(ctl.answered)
            wait_until(lambda: len(ctl.answered) >= n + 4, T(5), what="more checks")
            self.assertEqual(len([x for x in transitions(t, "ntt-1") if x[1] == "up"]), 1,
                             "text beyond the first 16 KiB brought the server up")
            # the text found in a chunked body, split across chunks
            ctl.set(200, [b"<html>AL", b"IVE</html>"], mode="chunked")
            tr = wait_transition(t, "ntt-1", "up", count=2)
            self.assertEqual(tr[3], "down")
            ctl.set(200, b"<html>MAINTENANCE</html>", mode="close")
            wait_transition(t, "ntt-1", "down", count=2)
            # and in a body delimited by the connection's close
            ctl.set(200, b"<html>ALIVE</html>", mode="close")
            wait_transition(t, "ntt-1", "up", count=3)

    def test_request_shape_and_status_list(self):
        ctl = CheckControl(status=204, body=b"")
        self.addCleanup(ctl.close)
        hc = health(method="OPTIONS", path="/healthz?deep=1", host="health.test",
                    expect_status="204,300-302")
        a, b, cfg = self.two_providers(ctl, hc)
        with self.trident(cfg) as t:
            wait_transition(t, "ntt-1", "up")
            req = checks(a)[0]
            self.assertEqual((req.method, req.target, req.version),
                             ("OPTIONS", "/healthz?deep=1", "HTTP/1.1"))
            self.assertEqual(req.headers.get("host"), "health.test")
            self.assertEqual(req.headers.get("user-agent"), "trident-health-check")
            self.assertEqual(req.headers.tokens("connection"), ["close"])
            # 301 is in the list: several checks later the server is still up
            ctl.set(301)
            n = len(ctl.answered)
            wait_until(lambda: ctl.answered[n:].count(301) >= 3, T(5), what="301 checks")
            self.assertEqual([x[1] for x in transitions(t, "ntt-1")], ["up"])
            # 200 is not in the list
            ctl.set(200)
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr[2], "L7 unexpected status (status 200)")
            ctl.set(302)
            wait_transition(t, "ntt-1", "up", count=2)
            ctl.set(303)
            tr = wait_transition(t, "ntt-1", "down", count=2)
            self.assertEqual(tr[2], "L7 unexpected status (status 303)")
        # every check opened its own connection and was told to close it
        self.assertTrue(all(r.conn_seq == 0 for r in checks(a)))

    def test_invalid_response_timeouts_and_refusals(self):
        host = self.net.upstream_ip(2)
        inv = RawServer(host, garbage_reply)
        self.addCleanup(inv.close)
        mute = RawServer(host, silent)
        self.addCleanup(mute.close)
        # a listener whose accept queue is full: SYNs are dropped, the connect times out
        bh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        bh.bind((host, 0))
        bh.listen(0)
        self.addCleanup(bh.close)
        for _ in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(bh.getsockname())
            self.addCleanup(s.close)
        b = self.upstream(1, name="b")
        bad = cluster("bad", [("inv", inv.address), ("mute", mute.address),
                              ("bh", f"{host}:{bh.getsockname()[1]}"),
                              ("refused", closed_port_address(host))])
        bad["health"] = health(timeout_ms=300)
        bad["passive"] = NO_PASSIVE
        good = cluster("gmo", [b])
        good["health"] = health()
        with self.trident(make_config([bad, good])) as t:
            want = {"inv": "L7 invalid response", "mute": "L7 timeout", "bh": "L4 timeout",
                    "refused": "L4 connection refused"}
            for sid, reason in want.items():
                tr = wait_transition(t, sid, "down")
                self.assertEqual((tr[2], tr[3], tr[4]), (reason, "unknown", "warn"), sid)
            self.assertEqual(spread(t, 8), {"b": 8})
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/spread"), count=8)
            self.assertEqual({e["attempts"] for e in lines}, {1})

    def test_server_section_replaces_cluster_section_and_port(self):
        # ntt-1's checks go to a separate health endpoint (same host, another port) with its own
        # path; ntt-2 keeps the cluster's section
        ctl = CheckControl()
        self.addCleanup(ctl.close)
        a1 = self.upstream(0, name="a1")
        a2 = self.upstream(0, name="a2")
        hp = self.upstream(0, handler=ctl.handler, name="hp")
        b = self.upstream(1, name="b")
        c = cluster("ntt", [a1, a2])
        c["health"] = health(path="/cluster")
        c["servers"][0]["health"] = health(path="/server", port=hp.port, interval_ms=60)
        cb = cluster("gmo", [b])
        with self.trident(make_config([c, cb])) as t:
            wait_transition(t, "ntt-1", "up")
            wait_transition(t, "ntt-2", "up")
            wait_until(lambda: checks(hp) and checks(a2), T(5), what="checks")
            self.assertEqual(checks(a1), [], "checks went to the traffic port despite health.port")
            self.assertEqual({r.target for r in checks(hp)}, {"/server"})
            self.assertEqual({r.target for r in checks(a2)}, {"/cluster"})
            ctl.set(500)
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr[2], "L7 unexpected status (status 500)")
            s = spread(t, 12)
            self.assertNotIn("a1", s)
            self.assertGreater(s.get("a2", 0), 0, s)
            self.assertEqual([x[1] for x in transitions(t, "ntt-2")], ["up"])


class TcpAndTlsChecks(E2ETestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from test_tls import Certs
        cls.certs = Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def test_tcp_check_listener_closed_then_reopened(self):
        a = self.upstream(0, name="a")
        port = a.port
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [a])
        ca["health"] = health(type="tcp")
        ca["passive"] = NO_PASSIVE
        cb = cluster("gmo", [b])
        with self.trident(make_config([ca, cb])) as t:
            self.assertEqual(wait_transition(t, "ntt-1", "up")[3], "unknown")
            a.close()
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr, ("ntt-1", "down", "L4 connection refused", "up", "warn"))
            self.assertEqual(spread(t, 6), {"b": 6})
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/spread"), count=6)
            self.assertEqual({e["attempts"] for e in lines}, {1})
            a2 = self.upstream(0, name="a2", port=port)
            tr = wait_transition(t, "ntt-1", "up", count=2)
            self.assertEqual(tr[3], "down")
            s = spread(t, 10)
            self.assertGreater(s.get("a2", 0), 0, s)
            # a tcp check sends nothing: the restarted server saw traffic only
            self.assertEqual(checks(a2), [])
            self.assertTrue(traffic(a2))
        self.assertNoUpstreamErrors(b, a2)

    def server_ctx(self, name="up"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.path(f"{name}.pem"), self.certs.path(f"{name}.key"))
        return ctx

    def test_tls_check(self):
        from test_tls import TLSUpstream
        host = self.net.upstream_ip(0)
        up = TLSUpstream(host, self.server_ctx(), name="tls1")
        port = up.port
        servers = [up]
        self.addCleanup(lambda: [s.close() for s in servers])
        b = self.upstream(1, name="b")
        ca = cluster("aws", [up])
        ca["tls"] = {"ca": self.certs.path("ca.pem")}
        ca["servers"][0]["tls_name"] = "up.test"
        ca["health"] = health(type="tls")
        ca["passive"] = NO_PASSIVE
        cb = cluster("gmo", [b])
        cfg = make_config([ca, cb])
        with self.trident(cfg) as t:
            self.assertEqual(wait_transition(t, "aws-1", "up")[3], "unknown")
            s = spread(t, 6)
            self.assertGreater(s.get("tls1", 0), 0, s)
            # a plain HTTP server in its place: the handshake fails
            up.close()
            plain = RawServer(host, plain_http_400, port=port)
            servers.append(plain)
            tr = wait_transition(t, "aws-1", "down")
            self.assertEqual(tr, ("aws-1", "down", "L6 TLS handshake failed", "up", "warn"))
            self.assertEqual(spread(t, 6), {"b": 6})
            # TLS again: up
            plain.close()
            up2 = TLSUpstream(host, self.server_ctx(), name="tls2", port=port)
            servers.append(up2)
            tr = wait_transition(t, "aws-1", "up", count=2)
            self.assertEqual(tr[3], "down")
            s = spread(t, 10)
            self.assertGreater(s.get("tls2", 0), 0, s)
            # a certificate that does not verify fails the handshake too
            up2.close()
            rogue = TLSUpstream(host, self.server_ctx("rogue"), name="rogue", port=port)
            servers.append(rogue)
            tr = wait_transition(t, "aws-1", "down", count=2)
            self.assertEqual(tr[2], "L6 TLS handshake failed")
            self.assertEqual(traffic(rogue), [])


    def test_http_check_over_tls_uses_the_tls_name(self):
        from test_tls import TLSUpstream
        up = TLSUpstream(self.net.upstream_ip(3), self.server_ctx(), name="tls")
        self.addCleanup(up.close)
        ca = cluster("aws", [up])
        ca["tls"] = {"ca": self.certs.path("ca.pem")}
        ca["servers"][0]["tls_name"] = "up.test"
        ca["health"] = health(path="/hc")
        with self.trident(make_config([ca])) as t:
            wait_transition(t, "aws-1", "up")
            req = checks(up)[0]
            self.assertEqual((req.target, req.headers.get("host")), ("/hc", "up.test"))


class RiseFall(E2ETestCase):

    def test_fall_and_rise_counts(self):
        ctl = CheckControl()
        self.addCleanup(ctl.close)
        a = self.upstream(0, handler=ctl.handler, name="a")
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [a])
        ca["health"] = health(rise=3, fall=3, interval_ms=40, fast_interval_ms=40,
                              timeout_ms=60000)
        cb = cluster("gmo", [b])
        with self.trident(make_config([ca, cb])) as t:
            wait_transition(t, "ntt-1", "up")
            ctl.start_stepping()
            n0 = len(ctl.answered)

            def states():
                return [x[1] for x in transitions(t, "ntt-1")]

            ctl.step(503)
            ctl.step(503)
            self.assertEqual(states(), ["up"], "two failures of fall 3 took the server down")
            self.assertIn("a", spread(t, 6))
            ctl.step(200)  # a success: the failures are no longer consecutive
            ctl.step(503)
            ctl.step(503)
            self.assertEqual(states(), ["up"], "failures counted across a success")
            ctl.step(503)
            self.assertEqual(states(), ["up", "down"], "three consecutive failures of fall 3")
            self.assertEqual(ctl.answered[n0:], [503, 503, 200, 503, 503, 503])
            self.assertEqual(spread(t, 6), {"b": 6})
            ctl.step(200)
            ctl.step(200)
            self.assertEqual(states(), ["up", "down"], "two successes of rise 3 brought it up")
            self.assertEqual(spread(t, 6), {"b": 6})
            ctl.step(503)  # the successes are no longer consecutive
            ctl.step(200)
            ctl.step(200)
            self.assertEqual(states(), ["up", "down"], "successes counted across a failure")
            ctl.step(200)
            self.assertEqual(states(), ["up", "down", "up"], "three successes of rise 3")
            self.assertIn("a", spread(t, 6))
            ctl.stop_stepping()


class Intervals(E2ETestCase):

    def test_fast_interval_while_changing_and_while_down(self):
        ctl = CheckControl()
        self.addCleanup(ctl.close)
        a = self.upstream(0, handler=ctl.handler, name="a")
        ca = cluster("ntt", [a])
        ca["health"] = health(interval_ms=2000, fast_interval_ms=50, fall=3)
        cfg = make_config([ca, cluster("gmo", [self.upstream(1, name="b")])])
        with self.trident(cfg) as t:
            wait_transition(t, "ntt-1", "up")
            n = len(ctl.answered)
            time.sleep(1.0)
            self.assertLessEqual(len(ctl.answered) - n, 1, "a steady server checked too often")
            ctl.set(503)
            wait_until(lambda: 503 in ctl.answered, T(4), what="a failed check")
            failed_at = time.monotonic()
            # the next two checks come at the fast interval, not after 2 s each
            wait_transition(t, "ntt-1", "down", timeout=T(5))
            self.assertLess(time.monotonic() - failed_at, 1.5,
                            "checks of a changing server not at the fast interval")
            n = len(ctl.answered)
            time.sleep(0.5)
            self.assertGreaterEqual(len(ctl.answered) - n, 4, "a down server checked slowly")


class StartUp(E2ETestCase):

    def test_dead_provider_never_routed_at_start(self):
        b = self.upstream(1, name="b")
        c = self.upstream(2, name="c")
        dead = cluster("ntt", [closed_port_address(self.net.upstream_ip(0))])
        dead["passive"] = NO_PASSIVE  # only the checks may keep it out
        clusters = [dead, cluster("gmo", [b]), cluster("aws", [c])]
        for cl in clusters:
            cl["health"] = health(interval_ms=1000, fast_interval_ms=1000)
        with self.trident(make_config(clusters)) as t:
            for i in range(20):
                with Client.to(t) as cl:
                    r = cl.exchange("GET", f"/early{i}")
                self.assertEqual(r.status, 200, r)
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/early"), count=20)
            self.assertEqual({e["attempts"] for e in lines}, {1})
            self.assertEqual({e["server"] for e in lines}, {"gmo-1", "aws-1"})
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual((tr[2], tr[3]), ("L4 connection refused", "unknown"))

    def test_requests_wait_for_the_first_round(self):
        # the first check of ntt-1 is answered only after a while: no request is served before
        gate = threading.Event()
        first = threading.Event()
        ctl = CheckControl()
        self.addCleanup(ctl.close)
        self.addCleanup(gate.set)

        def before(ex):
            first.set()
            gate.wait(T(20))

        ctl.before_answer = before
        a = self.upstream(0, handler=ctl.handler, name="a")
        ca = cluster("ntt", [a])
        ca["health"] = health(timeout_ms=30000)
        cfg = make_config([ca], failover={"startup_wait_ms": 30000})
        released = {}

        def releaser():
            if first.wait(T(20)):
                time.sleep(1.0)
                released["at"] = time.monotonic()
                gate.set()

        threading.Thread(target=releaser, daemon=True).start()
        with self.trident(cfg) as t:
            with Client.to(t, timeout=T(20)) as c:
                c.request("GET", "/first")
                r = c.read_response()
                answered = time.monotonic()
            self.assertEqual(r.status, 200, r)
            self.assertIn("at", released)
            self.assertGreaterEqual(answered, released["at"],
                                    "a request was served before the first check answered")
            m = msgs(t)
            up = next(i for i, x in enumerate(m) if "server ntt-1" in x and "is up" in x)
            started = next(i for i, x in enumerate(m) if " started: " in x)
            self.assertLess(up, started, "started before the first verdict")

    def test_healthy_start_does_not_wait_for_startup_wait_ms(self):
        a = self.upstream(0, name="a")
        ca = cluster("ntt", [a])
        ca["health"] = health()
        cfg = make_config([ca], failover={"startup_wait_ms": 20000})
        with self.trident(cfg) as t:
            wait_until(lambda: any(" started: " in x for x in msgs(t)), T(3),
                       what="started within a few seconds")
            self.assertEqual(spread(t, 2), {"a": 2})

    def test_startup_wait_bounds_the_first_round(self):
        host = self.net.upstream_ip(0)
        mute = RawServer(host, silent)  # accepts checks, never answers
        self.addCleanup(mute.close)
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [("ntt-1", mute.address)])
        ca["health"] = health(timeout_ms=30000)
        cb = cluster("gmo", [b])
        cb["health"] = health()
        cfg = make_config([ca, cb], failover={"startup_wait_ms": 1000})
        with self.trident(cfg) as t:
            wait_until(lambda: any(" started: " in x for x in msgs(t)), T(5), what="start")
            self.assertGreaterEqual(time.monotonic() - t.started_at, 0.9)
            self.assertTrue(any("without a first verdict after 1000 ms" in x for x in msgs(t)),
                            t.error_log())
            # the unknown server takes no traffic
            self.assertEqual(spread(t, 6), {"b": 6})
            self.assertEqual(mute.connections, 1, "traffic reached a server without a verdict")
            self.assertEqual(transitions(t, "ntt-1"), [])


    def test_no_verdict_at_all_gives_503_not_a_hang(self):
        host = self.net.upstream_ip(0)
        mute = RawServer(host, silent)
        self.addCleanup(mute.close)
        ca = cluster("ntt", [("ntt-1", mute.address)])
        ca["health"] = health(timeout_ms=30000)
        cfg = make_config([ca], failover={"startup_wait_ms": 300, "retry_after_s": 3})
        with self.trident(cfg) as t:
            wait_until(lambda: any(" started: " in x for x in msgs(t)), T(5), what="start")
            with Client.to(t) as c:
                t0 = time.monotonic()
                r = c.exchange("GET", "/unknown")
                elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.headers.get("retry-after"), "3")
            self.assertLess(elapsed, T(0.5))
            self.assertEqual(mute.connections, 1)


class Routing(E2ETestCase):

    def test_min_healthy(self):
        ctl = CheckControl()
        self.addCleanup(ctl.close)
        a1 = self.upstream(0, name="a1")
        a2 = self.upstream(0, handler=ctl.handler, name="a2")
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [a1, a2])
        ca["min_healthy"] = 2
        ca["health"] = health()
        cb = cluster("gmo", [b])
        cb["health"] = health()
        with self.trident(make_config([ca, cb])) as t:
            wait_transition(t, "ntt-2", "up")
            s = spread(t, 12)
            self.assertEqual(set(s), {"a1", "a2", "b"}, s)
            ctl.set(503)
            wait_transition(t, "ntt-2", "down")
            # ntt-1 is up, but its cluster has 1 of the 2 servers it needs: no traffic
            self.assertEqual(spread(t, 10), {"b": 10})
            self.assertEqual([x[1] for x in transitions(t, "ntt-1")], ["up"])
            ctl.set(200)
            wait_transition(t, "ntt-2", "up", count=2)
            s = spread(t, 12)
            self.assertGreater(s.get("a1", 0), 0, s)

    def test_clusters_chosen_by_weight(self):
        a = self.upstream(0, name="a")
        b = self.upstream(1, name="b")
        c = self.upstream(2, name="c")
        cfg = make_config([cluster("ntt", [a], weight=3), cluster("gmo", [b], weight=1),
                           cluster("aws", [c], weight=0)])
        with self.trident(cfg) as t:
            self.assertEqual(spread(t, 40), {"a": 30, "b": 10})

    def test_slow_start_ramps_the_weight(self):
        ctl = CheckControl()
        self.addCleanup(ctl.close)
        a = self.upstream(0, name="a")
        b = self.upstream(0, handler=ctl.handler, name="b")
        ca = cluster("ntt", [("ntt-1", a, 20), ("ntt-2", b, 20)])
        ca["health"] = health()
        ca["slow_start_ms"] = 3000
        with self.trident(make_config([ca])) as t:
            wait_transition(t, "ntt-2", "up")
            # no slow start at start-up: an even split at once
            s = spread(t, 40)
            self.assertTrue(14 <= s.get("b", 0) <= 26, s)
            ctl.set(503)
            wait_transition(t, "ntt-2", "down")
            ctl.set(200)
            wait_transition(t, "ntt-2", "up", count=2)
            t0 = time.monotonic()
            seen = []
            with Client.to(t) as c:
                while True:
                    now = time.monotonic() - t0
                    if now > 4.5:
                        break
                    r = c.exchange("GET", "/ramp")
                    self.assertEqual(r.status, 200)
                    seen.append((now, served_by(r)))

        def share(lo, hi):
            w = [s for at, s in seen if lo <= at < hi]
            self.assertGreaterEqual(len(w), 10, f"only {len(w)} requests in [{lo}, {hi})")
            return sum(1 for s in w if s == "b") / len(w)

        first, middle, last = share(0, 0.6), share(1.2, 1.8), share(3.4, 4.5)
        # expected: about 0.1 (weight 1 to 4 of 20), about 0.33, and 0.5
        self.assertLess(first, 0.3, (first, middle, last))
        self.assertLess(first, middle, (first, middle, last))
        self.assertTrue(0.35 <= last <= 0.65, (first, middle, last))


class DownClosesConnections(E2ETestCase):

    def setup_pair(self, ctl, weight_a=100, workers=1, **cluster_kw):
        a = self.upstream(0, handler=ctl.handler, name="a")
        b = self.upstream(1, handler=ws_handler, name="b")
        ca = cluster("ntt", [a], weight=weight_a)
        ca["health"] = health()
        ca.update(cluster_kw)
        cb = cluster("gmo", [b])
        return a, b, make_config([ca, cb], workers=workers,
                                 timeouts={"upstream_idle_ms": 60000, "tunnel_idle_ms": 60000})

    def test_pooled_connections_closed_when_server_goes_down(self):
        # 8 requests held together at the server: 8 upstream connections, pooled afterwards in
        # whichever of the 4 workers took each client
        n = 8
        barrier = threading.Barrier(n, timeout=T(10))

        def held(ex):
            barrier.wait()
            ex.respond(200, b"pooled", headers=[("X-Upstream", "a")])

        ctl = CheckControl(traffic_handler=held)
        self.addCleanup(ctl.close)
        self.addCleanup(barrier.abort)
        a, b, cfg = self.setup_pair(ctl, workers=4)
        with self.trident(cfg) as t:
            wait_transition(t, "ntt-1", "up")
            results = []

            def one(i):
                with Client.to(t) as c:
                    results.append(c.exchange("GET", f"/pooled{i}"))

            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(T(10))
            self.assertEqual([(r.status, served_by(r)) for r in results], [(200, "a")] * n)
            cids = {r.conn_id for r in traffic(a)}
            self.assertEqual(len(cids), n)
            # kept idle in trident's pools (upstream_idle_ms is a minute)
            time.sleep(0.3)
            self.assertTrue(cids <= set(a.open_conns), "pooled connections closed too early")
            ctl.set(503)
            wait_transition(t, "ntt-1", "down")
            wait_until(lambda: not cids & set(a.open_conns), T(2),
                       what="the idle pooled connections to the down server to be closed")

    def test_request_in_flight_finishes_when_its_server_goes_down(self):
        release = threading.Event()
        self.addCleanup(release.set)

        def slow(ex):
            release.wait(T(10))
            ex.respond(200, b"finished", headers=[("X-Upstream", "a")])

        ctl = CheckControl(traffic_handler=slow)
        self.addCleanup(ctl.close)
        a, b, cfg = self.setup_pair(ctl)
        with self.trident(cfg) as t, Client.to(t) as c:
            wait_transition(t, "ntt-1", "up")
            c.request("GET", "/inflight")
            wait_until(lambda: traffic(a), T(5), what="the request at the server")
            ctl.set(503)
            wait_transition(t, "ntt-1", "down")
            release.set()
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"finished"))
            e = t.wait_for_access(lambda e: e.get("path") == "/inflight")
            self.assertEqual((e["status"], e["attempts"]), (200, 1))
            # its connection, idle now, belongs to a down server: not kept in the pool
            cid = traffic(a)[0].conn_id
            wait_until(lambda: cid not in a.open_conns, T(2),
                       what="the connection to the down server to be closed once idle")

    def test_websocket_tunnel_closed_when_server_goes_down(self):
        ctl = CheckControl(traffic_handler=ws_handler)
        self.addCleanup(ctl.close)
        a, b, cfg = self.setup_pair(ctl)
        with self.trident(cfg) as t:
            wait_transition(t, "ntt-1", "up")
            with Client.to(t) as c:
                r = ws_handshake(c)
                self.assertEqual(r.status, 101, r)
                c.send(ws_frame(1, b"hello"))
                self.assertEqual(ws_read_frame(c.reader), (True, 1, False, b"hello"))
                ctl.set(503)
                wait_transition(t, "ntt-1", "down")
                self.assertTrue(c.closed_by_peer(T(3)), "tunnel to a down server left open")
            e = t.wait_for_access(lambda e: e.get("path") == "/chat")
            self.assertEqual((e["status"], e["server"]), (101, "ntt-1"))
            self.assertEqual(e.get("reason"), "server_down")
            # a new tunnel goes to the healthy server
            with Client.to(t) as c:
                self.assertEqual(ws_handshake(c, "/chat2").status, 101)
            self.assertEqual([r.target for r in traffic(b)], ["/chat2"])

    def test_tunnel_kept_with_close_tunnels_on_down_false(self):
        ctl = CheckControl(traffic_handler=ws_handler)
        self.addCleanup(ctl.close)
        a, b, cfg = self.setup_pair(ctl, close_tunnels_on_down=False)
        with self.trident(cfg) as t:
            wait_transition(t, "ntt-1", "up")
            with Client.to(t) as c:
                self.assertEqual(ws_handshake(c).status, 101)
                ctl.set(503)
                wait_transition(t, "ntt-1", "down")
                self.assertFalse(c.closed_by_peer(0.5), "tunnel closed despite the setting")
                c.send(ws_frame(1, b"still there"))
                self.assertEqual(ws_read_frame(c.reader), (True, 1, False, b"still there"))


class ProviderBreaker(E2ETestCase):

    def test_breaker_takes_the_provider_out_and_servers_return(self):
        ctls = [CheckControl() for _ in range(3)]
        for ctl in ctls:
            self.addCleanup(ctl.close)
        ups = [self.upstream(0, handler=ctls[i].handler, name=f"a{i + 1}") for i in range(3)]
        b = self.upstream(1, name="b")
        ca = cluster("ntt", ups)
        ca["health"] = health(rise=2, timeout_ms=60000)
        cb = cluster("gmo", [b])
        cb["health"] = health()
        with self.trident(make_config([ca, cb])) as t:
            for i in range(3):
                wait_transition(t, f"ntt-{i + 1}", "up")
            ctls[2].start_stepping()  # ntt-3's verdicts are the test's to give
            ctls[0].set(503)
            ctls[1].set(503)
            wait_transition(t, "ntt-1", "down")
            wait_transition(t, "ntt-2", "down")
            tr = wait_transition(t, "ntt-3", "down")
            self.assertEqual(tr, ("ntt-3", "down", "provider breaker", "up", "warn"))
            self.assertTrue(any(x.startswith("provider ntt: 2 of its 3 servers failed") for x in
                                msgs(t)), t.error_log())
            self.assertEqual(spread(t, 6), {"b": 6})
            # back through its own checks: rise 2
            ctls[2].step(200)
            self.assertEqual([x[1] for x in transitions(t, "ntt-3")], ["up", "down"])
            ctls[2].step(200)
            tr = wait_transition(t, "ntt-3", "up", count=2)
            self.assertEqual(tr[3], "down")
            ctls[2].stop_stepping()
            s = spread(t, 10)
            self.assertEqual(set(s), {"a3", "b"}, s)
            self.assertEqual([x[1] for x in transitions(t, "ntt-1")], ["up", "down"])

    def test_breaker_counts_a_provider_across_its_clusters(self):
        ctls = [CheckControl() for _ in range(3)]
        for ctl in ctls:
            self.addCleanup(ctl.close)
        ups = [self.upstream(0, handler=ctls[i].handler, name=f"a{i + 1}") for i in range(3)]
        b = self.upstream(1, name="b")
        tokyo = cluster("ntt-tokyo", [("t1", ups[0]), ("t2", ups[1])], provider="ntt")
        osaka = cluster("ntt-osaka", [("o1", ups[2])], provider="ntt")
        for cl in (tokyo, osaka):
            cl["health"] = health(rise=2)
        with self.trident(make_config([tokyo, osaka, cluster("gmo", [b])])) as t:
            for sid in ("t1", "t2", "o1"):  # up first: servers found down at start do not count
                wait_transition(t, sid, "up")
            ctls[0].set(503)
            ctls[1].set(503)
            tr = wait_transition(t, "o1", "down")
            self.assertEqual(tr[2], "provider breaker")
            self.assertEqual(spread(t, 4), {"b": 4})
            wait_transition(t, "o1", "up", count=2)
            self.assertEqual(spread(t, 6).get("b"), 3)

    def test_servers_found_down_at_start_do_not_trip_the_breaker(self):
        # two of the provider's three servers are found broken by their first checks (answered
        # a little after the healthy one's): that is the state at start, not a provider failing;
        # the healthy server must keep its traffic from the first request on
        def late_close(sock):
            sock.recv(4096)
            time.sleep(0.2)

        host = self.net.upstream_ip(0)
        broken = [RawServer(host, late_close) for _ in range(2)]
        for r in broken:
            self.addCleanup(r.close)
        a3 = self.upstream(0, name="a3")
        ca = cluster("ntt", [("ntt-1", broken[0].address), ("ntt-2", broken[1].address),
                             ("ntt-3", a3)])
        ca["health"] = health(rise=2, fast_interval_ms=200, interval_ms=1000)
        with self.trident(make_config([ca])) as t:
            statuses = []
            for i in range(5):
                with Client.to(t) as c:
                    statuses.append(c.exchange("GET", f"/start{i}").status)
            wait_transition(t, "ntt-1", "down")
            wait_transition(t, "ntt-2", "down")
            trs = transitions(t, "ntt-3")
            self.assertEqual((statuses, [x[2] for x in trs if x[1] == "down"]), ([200] * 5, []),
                             f"the healthy server was taken out at start-up: {trs}")

    def test_passive_ejections_trip_the_breaker_without_checks(self):
        dead = [closed_port_address(self.net.upstream_ip(0)) for _ in range(2)]
        a3 = self.upstream(0, name="a3")
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [("ntt-1", dead[0]), ("ntt-2", dead[1]), ("ntt-3", a3)], weight=100)
        ca["passive"] = {"eject_ms": 1000}
        cfg = make_config([ca, cluster("gmo", [b])], limits={"upstream_keepalive": 0})
        with self.trident(cfg) as t:
            for i in range(6):
                with Client.to(t) as c:
                    self.assertEqual(c.exchange("GET", f"/p{i}").status, 200)
                if len(transitions(t, "ntt-1")) and len(transitions(t, "ntt-2")):
                    break
            wait_transition(t, "ntt-1", "down", "passive: connections refused or reset")
            wait_transition(t, "ntt-2", "down", "passive: connections refused or reset")
            tr = wait_transition(t, "ntt-3", "down")
            self.assertEqual(tr[2], "provider breaker")
            self.assertEqual(spread(t, 4), {"b": 4})
            tr = wait_transition(t, "ntt-3", "up", timeout=T(5))
            self.assertEqual(tr[2], "ejection over")

    def test_breaker_needs_its_share(self):
        # 2 of 5 (40%) is below breaker_share_pct 50: the others stay; a third failure (60%)
        # within the window takes the provider out
        ctls = [CheckControl() for _ in range(5)]
        for ctl in ctls:
            self.addCleanup(ctl.close)
        ups = [self.upstream(0, handler=ctls[i].handler, name=f"a{i + 1}") for i in range(5)]
        b = self.upstream(1, name="b")
        ca = cluster("ntt", ups)
        ca["health"] = health()
        cb = cluster("gmo", [b])
        with self.trident(make_config([ca, cb], failover={"breaker_window_ms": 20000})) as t:
            for i in range(5):
                wait_transition(t, f"ntt-{i + 1}", "up")
            ctls[0].set(503)
            ctls[1].set(503)
            wait_transition(t, "ntt-1", "down")
            wait_transition(t, "ntt-2", "down")
            n = len(ctls[4].answered)
            wait_until(lambda: len(ctls[4].answered) >= n + 5, T(5), what="more checks")
            for i in (3, 4, 5):
                self.assertEqual([x[1] for x in transitions(t, f"ntt-{i}")], ["up"],
                                 f"ntt-{i} taken out with 2 of 5 servers failed")
            self.assertFalse(any("provider breaker" in x for x in msgs(t)))
            ctls[2].set(503)
            wait_transition(t, "ntt-3", "down")
            for i in (4, 5):
                tr = wait_transition(t, f"ntt-{i}", "down")
                self.assertEqual(tr[2], "provider breaker")
            self.assertTrue(any(x.startswith("provider ntt: 3 of its 5 servers failed") for x in
                                msgs(t)), t.error_log())
            # their checks pass: back after rise (1)
            wait_transition(t, "ntt-4", "up", count=2)
            wait_transition(t, "ntt-5", "up", count=2)


    def test_failures_outside_the_window_do_not_add_up(self):
        ctls = [CheckControl() for _ in range(3)]
        for ctl in ctls:
            self.addCleanup(ctl.close)
        ups = [self.upstream(0, handler=ctls[i].handler, name=f"a{i + 1}") for i in range(3)]
        b = self.upstream(1, name="b")
        ca = cluster("ntt", ups)
        ca["health"] = health()
        cfg = make_config([ca, cluster("gmo", [b])], failover={"breaker_window_ms": 300})
        with self.trident(cfg) as t:
            for i in range(3):
                wait_transition(t, f"ntt-{i + 1}", "up")
            ctls[0].set(503)
            wait_transition(t, "ntt-1", "down")
            time.sleep(0.6)  # twice the window
            ctls[1].set(503)
            wait_transition(t, "ntt-2", "down")
            n = len(ctls[2].answered)
            wait_until(lambda: len(ctls[2].answered) >= n + 4, T(5), what="more checks")
            self.assertEqual([x[1] for x in transitions(t, "ntt-3")], ["up"])
            self.assertFalse(any("provider breaker" in x for x in msgs(t)))

if __name__ == "__main__":
    unittest.main()
