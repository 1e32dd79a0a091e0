"""Failover on real traffic: retries (what is retried, where, how often), all servers down (503
with Retry-After, the maintenance page), passive ejection, and hedging."""
import base64
import datetime
import os
import socket
import tempfile
import threading
import time
import unittest

from harness import (NO_PASSIVE, STREAM_BODIES, Client, E2ETestCase, T, chunked_encode, cluster,
                     closed_port_address, echo_handler, make_config, pattern_bytes, wait_until,
                     ws_frame, ws_read_frame)
from adminlib import Admin, admin_section, server_status
from healthlib import (CheckControl, assert_gateway_error, checks, health, served_by, spread,
                       traffic, transitions, wait_transition)


def ts(tr_line):
    return datetime.datetime.fromisoformat(tr_line["ts"].replace("Z", "+00:00")).timestamp()


def slow_then_answer(seconds):
    def h(ex):
        time.sleep(seconds)
        try:
            ex.respond(200, f"{ex.upstream.name} {ex.req.method} {ex.req.target}".encode(),
                       headers=[("X-Upstream", ex.upstream.name)])
        except OSError:  # trident gave up on this connection (a hedge won)
            ex.close()
    return h


def echo_after(seconds):
    """echo_handler, after a wait."""
    def h(ex):
        time.sleep(seconds)
        echo_handler(ex)
    return h


class Retries(E2ETestCase):

    def pair(self, handler_a, handler_b=echo_handler, weight_a=100, failover=None, **cfg_kw):
        """ntt-1 (a) takes every first attempt (weight 100 against 1); gmo-1 (b) is the other
        provider."""
        a = self.upstream(0, handler=handler_a, name="a")
        b = self.upstream(1, handler=handler_b, name="b")
        fo = {"hedge": False}
        fo.update(failover or {})
        cfg = make_config([cluster("ntt", [a], weight=weight_a), cluster("gmo", [b])],
                          failover=fo, **cfg_kw)
        return a, b, cfg

    def test_get_survives_upstream_killed_mid_request(self):
        a, b, cfg = self.pair(lambda ex: ex.hang(T(10)))
        with self.trident(cfg) as t, Client.to(t) as c:
            c.request("GET", "/inflight")
            a.wait_requests(1)
            a.close()  # the server dies with the request in hand, before answering
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"GET /inflight\n")
            e = t.wait_for_access(lambda e: e.get("path") == "/inflight")
            self.assertEqual((e["status"], e["attempts"], e["server"]), (200, 2, "gmo-1"))
        self.assertEqual([r.target for r in b.requests], ["/inflight"])

    def test_get_survives_killed_upstream(self):
        a = self.upstream(0, name="a")
        b = self.upstream(1, name="b")
        cfg = make_config([cluster("ntt", [a]), cluster("gmo", [b])],
                          limits={"upstream_keepalive": 0})
        with self.trident(cfg) as t:
            s = spread(t, 6, "/before")
            self.assertEqual(s, {"a": 3, "b": 3})
            a.close()
            self.assertEqual(spread(t, 6, "/after"), {"b": 6})
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/after"), count=6)
            self.assertEqual(sorted(e["attempts"] for e in lines), [1] * 5 + [2])
            retried = next(e for e in lines if e["attempts"] == 2)
            self.assertEqual((retried["status"], retried["server"]), (200, "gmo-1"))
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr[2], "passive: connections refused or reset")

    def test_get_failing_after_it_was_sent_is_retried(self):
        cases = {
            "reset": lambda ex: ex.reset(),
            "closed": lambda ex: ex.close(),
            "invalid": lambda ex: (ex.send(b"HTTP/1.1 2x0 Nope\r\n\r\n"), ex.close()),
            "timeout": lambda ex: ex.hang(T(10)),
        }
        for name, handler in cases.items():
            with self.subTest(name):
                a, b, cfg = self.pair(handler, timeouts={"upstream_response_ms": 400})
                with self.trident(cfg) as t, Client.to(t) as c:
                    r = c.exchange("GET", f"/{name}")
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.body, f"GET /{name}\n".encode())
                    e = t.wait_for_access(lambda e: e.get("path") == f"/{name}")
                    self.assertEqual((e["attempts"], e["server"]), (2, "gmo-1"))
                self.assertEqual([r.target for r in a.requests], [f"/{name}"])
                a.close()
                b.close()

    def test_put_with_small_body_retried_after_it_was_sent(self):
        body = os.urandom(3000)
        a, b, cfg = self.pair(lambda ex: ex.close())
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("PUT", "/put", body=body)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"PUT /put\n" + body)
            e = t.wait_for_access(lambda e: e.get("path") == "/put")
            self.assertEqual((e["attempts"], e["server"]), (2, "gmo-1"))
        self.assertEqual(a.requests[0].body, body, "the first server did not get the body")
        self.assertEqual(b.requests[0].body, body)

    def test_post_whose_body_was_sent_is_not_retried(self):
        body = os.urandom(2000)
        for how in ("close", "reset"):
            with self.subTest(how):
                a, b, cfg = self.pair(lambda ex, how=how: getattr(ex, how)())
                with self.trident(cfg) as t, Client.to(t) as c:
                    r = c.exchange("POST", f"/order-{how}", body=body)
                    assert_gateway_error(self, r, 502)
                    e = t.wait_for_access(lambda e: e.get("path") == f"/order-{how}")
                    self.assertEqual((e["status"], e["attempts"], e["server"]),
                                     (502, 1, "ntt-1"))
                self.assertEqual(len(a.requests), 1)
                self.assertEqual(a.requests[0].body, body)
                self.assertEqual(b.requests, [], "a POST that reached a server was sent again")
                a.close()
                b.close()

    def test_post_whose_connect_failed_is_retried(self):
        for name, size, failover in (("buffered", 2000, {}),
                                     ("streamed", 256 << 10, STREAM_BODIES)):
            with self.subTest(name):
                dead = closed_port_address(self.net.upstream_ip(0))
                b = self.upstream(1, handler=echo_handler, name="b")
                fo = {"hedge": False}
                fo.update(failover)
                cfg = make_config([cluster("ntt", [dead], weight=100), cluster("gmo", [b])],
                                  failover=fo)
                body = pattern_bytes(size)
                with self.trident(cfg) as t, Client.to(t) as c:
                    r = c.exchange("POST", f"/pay-{name}", body=body)
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.body, f"POST /pay-{name}\n".encode() + body)
                    e = t.wait_for_access(lambda e: e.get("path") == f"/pay-{name}")
                    self.assertEqual((e["attempts"], e["server"]), (2, "gmo-1"))
                self.assertEqual(len(b.requests), 1)
                b.close()

    def test_body_larger_than_retry_body_bytes_not_retried(self):
        body = os.urandom(8192)
        a, b, cfg = self.pair(lambda ex: ex.close(), failover={"retry_body_bytes": 1024})
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("PUT", "/big", body=body)
            assert_gateway_error(self, r, 502)
            e = t.wait_for_access(lambda e: e.get("path") == "/big")
            self.assertEqual(e["attempts"], 1)
        self.assertEqual(b.requests, [])

    def test_not_retried_once_the_response_started(self):
        def cut(ex):
            ex.send_head(200, [("Content-Length", "10000"), ("X-Upstream", "a")])
            ex.send(b"p" * 500)
            time.sleep(0.05)
            ex.reset()

        a, b, cfg = self.pair(cut)
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/partial")
            self.assertEqual((r.status, r.complete, r.body_len), (200, False, 500))
            e = t.wait_for_access(lambda e: e.get("path") == "/partial")
            self.assertEqual(e["attempts"], 1)
        self.assertEqual(b.requests, [])

    def test_retry_goes_to_another_provider(self):
        a1 = self.upstream(0, handler=lambda ex: ex.reset(), name="a1")
        a2 = self.upstream(0, handler=lambda ex: ex.reset(), name="a2")
        b = self.upstream(1, handler=echo_handler, name="b")
        cfg = make_config([cluster("ntt", [a1, a2], weight=100), cluster("gmo", [b])],
                          failover={"hedge": False})
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/elsewhere")
            self.assertEqual(r.status, 200, r)
            e = t.wait_for_access(lambda e: e.get("path") == "/elsewhere")
            self.assertEqual((e["attempts"], e["provider"]), (2, "gmo"))
        self.assertEqual(len(a1.requests) + len(a2.requests), 1,
                         "retried within the failed provider")

    def test_attempts_run_out(self):
        cases = (("reset", {}, 502, 3), ("reset", {"retries": 1}, 502, 2),
                 ("reset", {"retries": 0}, 502, 1), ("timeout", {}, 504, 3))
        for how, fo, status, attempts in cases:
            with self.subTest(how=how, failover=fo):
                handler = (lambda ex: ex.reset()) if how == "reset" else \
                    (lambda ex: ex.hang(T(10)))
                ups = [self.upstream(i, handler=handler, name=f"u{i}") for i in range(3)]
                clusters = [cluster(p, [u]) for p, u in zip(("ntt", "gmo", "aws"), ups)]
                for cl in clusters:
                    cl["passive"] = {"connect_failures": 0, "timeouts": 0}
                f = {"hedge": False}
                f.update(fo)
                cfg = make_config(clusters, failover=f, timeouts={"upstream_response_ms": 300})
                with self.trident(cfg) as t, Client.to(t) as c:
                    r = c.exchange("GET", "/doomed")
                    body = assert_gateway_error(self, r, status)
                    e = t.wait_for_access(lambda e: e.get("path") == "/doomed")
                    self.assertEqual((e["status"], e["attempts"]), (status, attempts))
                    self.assertEqual(e["request_id"], body["request_id"])
                    seen = [u for u in ups if u.requests]
                    self.assertEqual(len(seen), attempts)
                    self.assertTrue(all(len(u.requests) == 1 for u in seen))
                    last = max(seen, key=lambda u: u.requests[0].received_at)
                    self.assertEqual(e["server"], {"u0": "ntt-1", "u1": "gmo-1",
                                                   "u2": "aws-1"}[last.name])
                for u in ups:
                    u.close()

    def test_no_attempt_after_retry_budget(self):
        a, b, cfg = self.pair(lambda ex: ex.hang(T(10)),
                              failover={"retry_budget_ms": 200},
                              timeouts={"upstream_response_ms": 400})
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/late")
            assert_gateway_error(self, r, 504)
            e = t.wait_for_access(lambda e: e.get("path") == "/late")
            self.assertEqual(e["attempts"], 1)
        self.assertEqual(b.requests, [])


    def test_the_last_failure_decides_the_status(self):
        hang = lambda ex: ex.hang(T(10))  # noqa: E731
        reset = lambda ex: ex.reset()  # noqa: E731
        for first, second, status in ((hang, reset, 502), (reset, hang, 504)):
            with self.subTest(status=status):
                a, b, cfg = self.pair(first, second, failover={"retries": 1},
                                      timeouts={"upstream_response_ms": 300})
                with self.trident(cfg) as t, Client.to(t) as c:
                    r = c.exchange("GET", "/last")
                    assert_gateway_error(self, r, status)
                    e = t.wait_for_access(lambda e: e.get("path") == "/last")
                    self.assertEqual((e["status"], e["attempts"], e["server"]),
                                     (status, 2, "gmo-1"))
                a.close()
                b.close()

    def test_chunked_body_replayed(self):
        body = os.urandom(5000)
        a, b, cfg = self.pair(lambda ex: ex.reset())
        with self.trident(cfg) as t, Client.to(t) as c:
            c.request("PUT", "/chunked", [("Transfer-Encoding", "chunked")],
                      chunked_encode([body[:1000], body[1000:]]))
            r = c.read_response("PUT")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"PUT /chunked\n" + body)
            e = t.wait_for_access(lambda e: e.get("path") == "/chunked")
            self.assertEqual(e["attempts"], 2)
        self.assertEqual(a.requests[0].body, body)

    def test_small_body_read_whole_before_a_server_sees_the_request(self):
        a = self.upstream(0, head_handler=lambda ex: False, handler=echo_handler, name="a")
        cfg = make_config([cluster("ntt", [a])])
        body = os.urandom(10000)
        with self.trident(cfg) as t, Client.to(t) as c:
            c.send(b"POST /slowbody HTTP/1.1\r\nHost: f.test\r\nContent-Length: 10000\r\n\r\n" +
                   body[:4000])
            time.sleep(0.3)
            self.assertEqual(a.requests, [], "the server saw a request whose body was not read")
            c.send(body[4000:])
            r = c.read_response("POST")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"POST /slowbody\n" + body)

    def test_get_survives_killed_upstream_with_pooled_connections(self):
        a = self.upstream(0, name="a")
        b = self.upstream(1, name="b")
        cfg = make_config([cluster("ntt", [a]), cluster("gmo", [b])])
        with self.trident(cfg) as t:
            with Client.to(t) as c:  # keep-alive: trident pools its connections to a
                for i in range(6):
                    self.assertEqual(c.exchange("GET", f"/ka{i}").status, 200)
            self.assertGreater(len(a.requests), 0)
            a.close()
            with Client.to(t) as c:
                for i in range(6):
                    r = c.exchange("GET", f"/kb{i}")
                    self.assertEqual((r.status, served_by(r)), (200, "b"), r)


    def test_connect_retry_within_a_single_provider(self):
        dead = closed_port_address(self.net.upstream_ip(0))
        b = self.upstream(1, name="b")
        cfg = make_config([cluster("ntt", [("ntt-1", dead), ("ntt-2", b)])])
        with self.trident(cfg) as t:
            self.assertEqual(spread(t, 4), {"b": 4})
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/spread"), count=4)
            self.assertEqual(sorted(e["attempts"] for e in lines), [1, 1, 1, 2])

    def test_connect_timeout_retried_with_the_cluster_override(self):
        # a listener whose accept queue is full drops SYNs: the connect hangs until the
        # cluster's connect_timeout_ms (200), far below timeouts.upstream_connect_ms (10 s)
        host = self.net.upstream_ip(0)
        bh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        bh.bind((host, 0))
        bh.listen(0)
        self.addCleanup(bh.close)
        for _ in range(4):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            f.connect_ex(bh.getsockname())
            self.addCleanup(f.close)
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [f"{host}:{bh.getsockname()[1]}"], weight=100)
        ca["connect_timeout_ms"] = 200
        cfg = make_config([ca, cluster("gmo", [b])], failover={"hedge": False},
                          timeouts={"upstream_connect_ms": 10000})
        with self.trident(cfg) as t:
            for i in range(2):
                with Client.to(t) as c:
                    t0 = time.monotonic()
                    r = c.exchange("GET", f"/bh{i}")
                    elapsed = time.monotonic() - t0
                self.assertEqual((r.status, served_by(r)), (200, "b"), r)
                self.assertGreaterEqual(elapsed, 0.18)
                self.assertLess(elapsed, T(2))
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/bh"), count=2)
            self.assertEqual([e["attempts"] for e in lines], [2, 2])
            # two connect timeouts: passive.timeouts (2) takes the server out
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr[2], "passive: timeouts")
            with Client.to(t) as c:
                t0 = time.monotonic()
                self.assertEqual(c.exchange("GET", "/bh-after").status, 200)
                self.assertLess(time.monotonic() - t0, 0.18)


class AllDown(E2ETestCase):

    def down_cluster(self):
        ctl = CheckControl(status=503)
        self.addCleanup(ctl.close)
        a = self.upstream(0, handler=ctl.handler, name="a")
        c = cluster("ntt", [a])
        c["health"] = health()
        return a, c, ctl

    def test_immediate_503_with_retry_after(self):
        a, c, _ = self.down_cluster()
        with self.trident(make_config([c], failover={"retry_after_s": 7})) as t:
            wait_transition(t, "ntt-1", "down")
            for i in range(3):
                with Client.to(t) as cl:
                    t0 = time.monotonic()
                    r = cl.exchange("GET", f"/nobody{i}")
                    elapsed = time.monotonic() - t0
                body = assert_gateway_error(self, r, 503)
                self.assertEqual(r.headers.get("retry-after"), "7")
                self.assertIn("json", r.headers.get("content-type", ""))
                self.assertLess(elapsed, T(0.5), "a request with no server to go to waited")
            e = t.wait_for_access(lambda e: e.get("path") == "/nobody2")
            self.assertEqual((e["status"], e["request_id"]), (503, body["request_id"]))
            self.assertEqual(e.get("reason"), "no_server")
        self.assertEqual(traffic(a), [])

    def test_client_connection_usable_after_the_503(self):
        a, c, ctl = self.down_cluster()
        with self.trident(make_config([c])) as t, Client.to(t) as cl:
            wait_transition(t, "ntt-1", "down")
            r = cl.exchange("GET", "/down")
            assert_gateway_error(self, r, 503)
            ctl.set(200)
            wait_transition(t, "ntt-1", "up")
            if not r.keep_alive:
                cl.close()
                cl = Client.to(t)
            r = cl.exchange("GET", "/recovered")
            self.assertEqual((r.status, served_by(r)), (200, "a"))
            cl.close()

    def test_maintenance_page(self):
        page = (b"<!doctype html><title>Back soon</title>"
                b"<p>Maintenance \xe2\x80\x94 back soon.</p>\n")
        fd, path = tempfile.mkstemp(suffix=".html")
        os.write(fd, page)
        os.close(fd)
        self.addCleanup(os.unlink, path)
        a, c, _ = self.down_cluster()
        with self.trident(make_config([c], failover={"maintenance_page": path})) as t:
            wait_transition(t, "ntt-1", "down")
            with Client.to(t) as cl:
                t0 = time.monotonic()
                r = cl.exchange("GET", "/maint")
                elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 503)
            self.assertTrue(r.complete)
            self.assertEqual(r.body, page)
            self.assertTrue(r.headers.get("content-type", "").startswith("text/html"), r)
            self.assertEqual(r.headers.get("retry-after"), "5")
            self.assertLess(elapsed, T(0.5))

    def test_every_server_out_by_passive_checks_alone_is_still_tried(self):
        # passive evidence alone (no active check, no operator) takes no service out: with every
        # server ejected that way, a request still tries one (panic routing), counted
        dead = closed_port_address(self.net.upstream_ip(0))
        cfg = make_config([cluster("ntt", [dead])])
        cfg["admin"] = admin_section(self.net)
        with self.trident(cfg) as t:
            with Client.to(t) as c:
                r = c.exchange("GET", "/first")
            assert_gateway_error(self, r, 502)  # the failure itself says more than "no server"
            wait_transition(t, "ntt-1", "down", "passive: connections refused or reset")
            with Client.to(t) as c:
                r = c.exchange("GET", "/second")
            assert_gateway_error(self, r, 502)  # tried again (and refused again), not a 503
            e = t.wait_for_access(lambda e: e.get("path") == "/second")
            self.assertEqual((e["attempts"], e.get("server")), (1, "ntt-1"))
            self.assertEqual(Admin.of(t).status()["outcomes"].get("panic"), 1)

    def test_checks_confirming_a_passive_ejection_end_panic_routing(self):
        # Passive evidence took the only server out first; its active checks then fail too.
        # That is the checks' verdict: requests get the immediate 503, not a try at a dead
        # server (panic routing is for servers only passive evidence holds out).
        up = self.upstream(0)
        ck = cluster("ntt", [up])
        ck["health"] = health(interval_ms=60000, fast_interval_ms=100, fall=2)
        cfg = make_config([ck])
        cfg["admin"] = admin_section(self.net)
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            wait_until(lambda: server_status(ad.status(), "ntt-1")["health"] == "up", T(5),
                       what="ntt-1 up")
            up.close()
            with Client.to(t) as c:
                assert_gateway_error(self, c.exchange("GET", "/first"), 502)
            wait_transition(t, "ntt-1", "down", "passive: connections refused or reset")
            wait_until(lambda: server_status(ad.status(), "ntt-1")["reason"] ==
                       "L4 connection refused", T(5), what="a failed check recorded")
            with Client.to(t) as c:
                assert_gateway_error(self, c.exchange("GET", "/second"), 503)
            self.assertEqual(ad.status()["outcomes"].get("panic", 0), 0)

    def test_overload_timeouts_do_not_take_the_service_out(self):
        # two response timeouts (a starved machine, a stalled server) eject the only server for
        # eject_ms; once it answers again, requests are served at once, not 503 for 10 s
        slow = threading.Event()
        slow.set()

        def handler(ex):
            if slow.is_set():
                time.sleep(0.5)
            ex.respond(200, b"ok")

        up = self.upstream(0, handler=handler)
        cfg = make_config([cluster("ntt", [up])], timeouts={"upstream_response_ms": 200},
                          failover={"hedge": False})
        with self.trident(cfg) as t:
            for i in range(2):
                with Client.to(t) as c:
                    assert_gateway_error(self, c.exchange("GET", f"/slow{i}"), 504)
            wait_transition(t, "ntt-1", "down", "passive: timeouts")
            slow.clear()
            with Client.to(t) as c:
                self.assertEqual(c.exchange("GET", "/after").status, 200)


class Passive(E2ETestCase):

    def test_refused_connect_ejects_before_the_next_check(self):
        a = self.upstream(0, name="a")
        b = self.upstream(1, name="b")
        slow = health(interval_ms=60000, fast_interval_ms=60000)
        ca = cluster("ntt", [a])
        ca["health"] = slow
        cb = cluster("gmo", [b])
        cb["health"] = slow
        cfg = make_config([ca, cb], limits={"upstream_keepalive": 0})
        with self.trident(cfg) as t:
            wait_transition(t, "ntt-1", "up")
            self.assertIn("a", spread(t, 4, "/before"))
            a.close()
            self.assertEqual(spread(t, 2, "/kill"), {"b": 2})
            tr = wait_transition(t, "ntt-1", "down", timeout=T(2))
            self.assertEqual(tr, ("ntt-1", "down", "passive: connections refused or reset", "up",
                                  "warn"))
            self.assertEqual(spread(t, 6, "/after"), {"b": 6})
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/after"), count=6)
            self.assertEqual({e["attempts"] for e in lines}, {1})
        self.assertEqual(len(checks(a)), 1, "an active check ran: the test proves nothing")

    def test_connect_failures_threshold(self):
        dead = closed_port_address(self.net.upstream_ip(0))
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [dead], weight=100)
        ca["passive"] = {"connect_failures": 2}
        with self.trident(make_config([ca, cluster("gmo", [b])])) as t:
            self.assertEqual(spread(t, 1, "/one"), {"b": 1})
            t.wait_for_access(lambda e: e.get("path") == "/one0")
            self.assertEqual(transitions(t, "ntt-1"), [], "out after 1 of 2 refusals")
            self.assertEqual(spread(t, 1, "/two"), {"b": 1})
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr[2], "passive: connections refused or reset")
            self.assertEqual(spread(t, 3, "/three"), {"b": 3})
            lines = t.wait_for_access(lambda e: e.get("path", "")[:4] in ("/one", "/two", "/thr"),
                                      count=5)
            self.assertEqual([e["attempts"] for e in lines], [2, 2, 1, 1, 1])

    def test_timeouts_eject(self):
        a = self.upstream(0, handler=lambda ex: ex.hang(T(10)), name="a")
        b = self.upstream(1, name="b")
        cfg = make_config([cluster("ntt", [a], weight=100), cluster("gmo", [b])],
                          timeouts={"upstream_response_ms": 300}, failover={"hedge": False})
        with self.trident(cfg) as t:
            for i in range(2):
                with Client.to(t) as c:
                    r = c.exchange("GET", f"/slow{i}")
                self.assertEqual((r.status, served_by(r)), (200, "b"))
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr[2], "passive: timeouts")
            self.assertEqual([x[1] for x in transitions(t, "ntt-1")], ["down"],
                             "taken down before the second timeout")
            self.assertEqual(spread(t, 3, "/after"), {"b": 3})
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/after"), count=3)
            self.assertEqual({e["attempts"] for e in lines}, {1})
        self.assertEqual(len(a.requests), 2)

    def test_5xx_eject(self):
        a = self.upstream(0, handler=lambda ex: ex.respond(500, b"oops",
                                                           headers=[("X-Upstream", "a")]), name="a")
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [a], weight=100)
        ca["passive"] = {"http_5xx": 2}
        cfg = make_config([ca, cluster("gmo", [b])], failover={"hedge": False})
        with self.trident(cfg) as t:
            for i in range(2):
                with Client.to(t) as c:
                    r = c.exchange("GET", f"/err{i}")
                self.assertEqual((r.status, r.body), (500, b"oops"))  # relayed, not retried
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr[2], "passive: 5xx responses")
            self.assertEqual(spread(t, 3), {"b": 3})

    def test_ejection_over_without_checks(self):
        a = self.upstream(0, name="a")
        port = a.port
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [a])
        ca["passive"] = {"eject_ms": 800}
        cfg = make_config([ca, cluster("gmo", [b])], limits={"upstream_keepalive": 0})
        with self.trident(cfg) as t:
            a.close()
            self.assertEqual(spread(t, 2), {"b": 2})
            wait_transition(t, "ntt-1", "down", "passive: connections refused or reset")
            a2 = self.upstream(0, name="a2", port=port)
            tr = wait_transition(t, "ntt-1", "up", timeout=T(5))
            self.assertEqual((tr[2], tr[3]), ("ejection over", "down"))
            lines = [e for e in t.error_lines() if "server ntt-1" in e.get("msg", "")]
            self.assertGreaterEqual(ts(lines[-1]) - ts(lines[-2]), 0.75,
                                    "back before passive.eject_ms")
            s = spread(t, 6, "/back")
            self.assertGreater(s.get("a2", 0), 0, s)


    def test_ejected_server_with_checks_returns_through_its_checks(self):
        # eject_ms is for clusters without checks: here the way back is rise successes
        a = self.upstream(0, name="a")
        port = a.port
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [a])
        ca["health"] = health(type="tcp", interval_ms=60000, fast_interval_ms=100, rise=2)
        ca["passive"] = {"eject_ms": 100}
        cfg = make_config([ca, cluster("gmo", [b])], limits={"upstream_keepalive": 0})
        with self.trident(cfg) as t:
            wait_transition(t, "ntt-1", "up")
            a.close()
            spread(t, 2)
            wait_transition(t, "ntt-1", "down", "passive: connections refused or reset")
            time.sleep(0.5)  # five times eject_ms: still down, the checks fail
            self.assertEqual([x[1] for x in transitions(t, "ntt-1")], ["up", "down"])
            self.assertEqual(spread(t, 4, "/still"), {"b": 4})
            self.upstream(0, name="a2", port=port)
            tr = wait_transition(t, "ntt-1", "up", count=2)
            self.assertEqual(tr[3], "down")
            self.assertFalse(tr[2].startswith("ejection over"), tr)

    def test_pooled_connections_closed_on_passive_ejection(self):
        # /ok leaves an idle pooled connection; /hold, on a second connection, ends with the 500
        # that ejects the server (http_5xx 1): the idle one must be closed
        release = threading.Event()
        self.addCleanup(release.set)

        def handler(ex):
            if ex.req.target == "/hold":
                release.wait(T(10))
                ex.respond(500, b"x", headers=[("X-Upstream", "a")])
            else:
                ex.respond(200, b"x", headers=[("X-Upstream", "a")])

        a = self.upstream(0, handler=handler, name="a")
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [a], weight=100)
        ca["passive"] = {"http_5xx": 1}
        cfg = make_config([ca, cluster("gmo", [b])], timeouts={"upstream_idle_ms": 60000})
        with self.trident(cfg) as t, Client.to(t) as held:
            held.request("GET", "/hold")
            a.wait_requests(1)
            with Client.to(t) as c:
                self.assertEqual(c.exchange("GET", "/ok").status, 200)
            idle = next(r.conn_id for r in a.requests if r.target == "/ok")
            self.assertIn(idle, a.open_conns)
            release.set()
            self.assertEqual(held.read_response().status, 500)
            wait_transition(t, "ntt-1", "down", "passive: 5xx responses")
            wait_until(lambda: idle not in a.open_conns, T(2),
                       what="the idle pooled connection to the ejected server to be closed")


class Hedging(E2ETestCase):

    def setup_pair(self, slow_handler, failover):
        a = self.upstream(0, handler=slow_handler, name="a")
        b = self.upstream(1, handler=echo_handler, name="b")
        ca = cluster("ntt", [a], weight=100)
        ca["passive"] = NO_PASSIVE  # the slow server stays in: the tests are about hedging
        cfg = make_config([ca, cluster("gmo", [b])], failover=failover)
        return a, b, cfg

    def test_hedge_gets_the_fast_answer(self):
        a, b, cfg = self.setup_pair(lambda ex: ex.hang(T(10)), {"hedge_budget_pct": 100})
        with self.trident(cfg) as t, Client.to(t) as c:
            t0 = time.monotonic()
            r = c.exchange("GET", "/hedge")
            elapsed = time.monotonic() - t0
            self.assertEqual((r.status, r.body), (200, b"GET /hedge\n"))
            # the delay before any response time is measured is 250 ms
            self.assertGreaterEqual(elapsed, 0.2)
            self.assertLess(elapsed, T(1.5))
            e = t.wait_for_access(lambda e: e.get("path") == "/hedge")
            self.assertEqual((e.get("hedged"), e["attempts"], e["server"]), (True, 2, "gmo-1"))
            # the losing connection is kept for its verdict, then closed: at the latest when
            # upstream_response_ms (5 s here) has passed without an answer
            self.assertTrue(a.peer_closed.wait(T(8)), "the slow server's connection left open")
        self.assertEqual([r.target for r in a.requests], ["/hedge"])

    def test_a_won_hedge_does_not_take_the_slow_server_out(self):
        # Slower than its cluster (a stall on a busy host): hedges win, which is evidence of
        # slowness, not a passive timeout, even at passive.timeouts 1: the lost attempts answer
        # within their verdict time (5 hedge delays after losing: 300 ms here).
        a = self.upstream(0, handler=slow_then_answer(0.12), name="a")
        b = self.upstream(1, handler=echo_handler, name="b")
        ca = cluster("ntt", [a], weight=100)
        ca["passive"] = {"timeouts": 1, "connect_failures": 1}
        cfg = make_config([ca, cluster("gmo", [b])],
                          failover={"hedge_budget_pct": 100, "hedge_delay_ms": 60})
        cfg["admin"] = admin_section(self.net)
        with self.trident(cfg) as t:
            for i in range(3):
                with Client.to(t) as c:
                    r = c.exchange("GET", f"/slow{i}")
                self.assertEqual((r.status, served_by(r)), (200, "b"))
                e = t.wait_for_access(lambda e, i=i: e.get("path") == f"/slow{i}")
                self.assertEqual((e.get("hedged"), e["server"]), (True, "gmo-1"))
            # every lost attempt answered (its connection closed after the answer)
            wait_until(lambda: len(a.requests) == 3 and not a.open_conns, T(5),
                       what="the lost attempts answered")
            st = Admin.of(t).status()
            self.assertEqual(server_status(st, "ntt-1")["health"], "up")
            self.assertEqual(server_status(st, "ntt-1")["hedges_lost"], 3)
            self.assertEqual(server_status(st, "ntt-1")["transitions"], 0)
            self.assertEqual(transitions(t, "ntt-1"), [])
            self.assertEqual(Admin.of(t).metrics().get("trident_upstream_hedges_lost_total",
                                                       server="ntt-1"), 3)

    def test_no_hedge_when_disabled(self):
        a, b, cfg = self.setup_pair(slow_then_answer(1.0), {"hedge": False})
        with self.trident(cfg) as t, Client.to(t) as c:
            t0 = time.monotonic()
            r = c.exchange("GET", "/wait")
            elapsed = time.monotonic() - t0
            self.assertEqual((r.status, served_by(r)), (200, "a"))
            self.assertGreaterEqual(elapsed, 1.0)
            e = t.wait_for_access(lambda e: e.get("path") == "/wait")
            self.assertNotIn("hedged", e)
            self.assertEqual(e["attempts"], 1)
        self.assertEqual(b.requests, [])

    def test_post_not_hedged(self):
        a, b, cfg = self.setup_pair(slow_then_answer(1.0), {"hedge_budget_pct": 100})
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("POST", "/buy", body=b"one of those")
            self.assertEqual((r.status, served_by(r)), (200, "a"))
            e = t.wait_for_access(lambda e: e.get("path") == "/buy")
            self.assertNotIn("hedged", e)
            self.assertEqual(e["attempts"], 1)
        self.assertEqual(b.requests, [])
        self.assertEqual(a.requests[0].body, b"one of those")

    def test_hedge_budget(self):
        # 50%: a worker earns half a hedge per request: every second slow request is hedged
        a, b, cfg = self.setup_pair(slow_then_answer(0.6),
                                    {"hedge_budget_pct": 50, "hedge_delay_ms": 100})
        with self.trident(cfg) as t:
            got = []
            for i in range(4):
                with Client.to(t) as c:
                    r = c.exchange("GET", f"/budget{i}")
                self.assertEqual(r.status, 200)
                got.append(served_by(r))
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/budget"), count=4)
            hedged = [bool(e.get("hedged")) for e in lines]
            self.assertEqual(hedged.count(True), 2, hedged)
            self.assertEqual(got.count("b"), 2, got)


    def test_primary_failing_while_the_hedge_is_pending(self):
        def fail_late(ex):
            time.sleep(0.4)
            ex.reset()

        a, b, cfg = self.setup_pair(fail_late, {"hedge_budget_pct": 100, "hedge_delay_ms": 100})
        b.handler = echo_after(0.6)
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/both")
            self.assertEqual((r.status, r.body), (200, b"GET /both\n"))
            e = t.wait_for_access(lambda e: e.get("path") == "/both")
            self.assertEqual((e["status"], e.get("hedged"), e["server"]), (200, True, "gmo-1"))
            self.assertEqual(e["attempts"], 2, "the hedge was not reused as the retry")
        self.assertEqual(len(b.requests), 1)

    def test_pooled_primary_closing_while_the_hedge_is_pending(self):
        # The keep-alive race on the primary's reused connection (closed without an answer)
        # while a hedge runs: the hedge takes over, rather than a third attempt.
        def close_race(ex):
            if ex.req.target == "/race":
                time.sleep(0.4)
                ex.close()
                return
            echo_handler(ex)

        a, b, cfg = self.setup_pair(close_race, {"hedge_budget_pct": 100, "hedge_delay_ms": 100})
        b.handler = echo_after(0.6)
        with self.trident(cfg) as t, Client.to(t) as c:
            self.assertEqual(served_by(c.exchange("GET", "/warm")), "a")  # pools a connection
            r = c.exchange("GET", "/race")
            self.assertEqual((r.status, r.body), (200, b"GET /race\n"))
            e = t.wait_for_access(lambda e: e.get("path") == "/race")
            self.assertEqual((e["status"], e.get("hedged"), e["server"]), (200, True, "gmo-1"))
            self.assertEqual(e["attempts"], 2, "a third attempt beside the hedge")
        self.assertEqual([r.target for r in b.requests], ["/race"])
        self.assertEqual([(r.target, r.conn_seq) for r in a.requests], [("/warm", 0), ("/race", 1)])

    def test_hedge_winner_timed_from_its_own_send(self):
        # The access log's upstream_ms (and the response-time estimator fed with it) is the
        # answering attempt's own wait: the hedge's 0.2 s, not the 0.5 s hedge delay before it.
        a, b, cfg = self.setup_pair(lambda ex: ex.hang(T(10)),
                                    {"hedge_budget_pct": 100, "hedge_delay_ms": 500})
        b.handler = echo_after(0.2)
        with self.trident(cfg) as t, Client.to(t) as c:
            self.assertEqual(c.exchange("GET", "/timed").status, 200)
            e = t.wait_for_access(lambda e: e.get("path") == "/timed")
            self.assertEqual((e.get("hedged"), e["server"]), (True, "gmo-1"))
            self.assertGreaterEqual(e["upstream_ms"], 200)
            self.assertLess(e["upstream_ms"], 500, "timed from the first attempt's send")

    def test_hedge_on_a_reused_connection_closed_unanswered_is_no_failure(self):
        # The keep-alive race on the hedge's pooled connection: the server closed it as the
        # request went out, which says nothing about the server. The hedge is dropped without
        # counting a failure against it, and the first attempt answers.
        def a_handler(ex):
            if ex.req.target == "/warm":
                ex.hang(T(10))  # loses to the hedge, which leaves b a pooled connection
                return
            time.sleep(0.4)
            echo_handler(ex)

        def b_handler(ex):
            if ex.req.conn_seq >= 1:
                ex.close()
                return
            echo_handler(ex)

        a, b, cfg = self.setup_pair(a_handler, {"hedge_budget_pct": 100, "hedge_delay_ms": 100})
        b.handler = b_handler
        cfg["admin"] = admin_section(self.net)
        with self.trident(cfg) as t, Client.to(t) as c:
            self.assertEqual(served_by(c.exchange("GET", "/warm")), "b")
            r = c.exchange("GET", "/race")
            self.assertEqual((r.status, served_by(r)), (200, "a"))
            b.wait_requests(2)
            st = Admin.of(t).status()
            self.assertEqual(server_status(st, "gmo-1")["failures"], 0, "the race counted against the hedge's server")
        self.assertEqual([(r.target, r.conn_seq) for r in b.requests], [("/warm", 0), ("/race", 1)])

    def test_hedge_delay_follows_response_times(self):
        # after fast answers, the delay is far below the 250 ms used before any measurement
        def handler(ex):
            if ex.req.target.startswith("/slow"):
                ex.hang(T(10))
            else:
                echo_handler(ex)

        a, b, cfg = self.setup_pair(handler, {"hedge_budget_pct": 100})
        with self.trident(cfg) as t:
            with Client.to(t) as c:
                for i in range(20):
                    self.assertEqual(c.exchange("GET", f"/fast{i}").status, 200)
                t0 = time.monotonic()
                r = c.exchange("GET", "/slow")
                elapsed = time.monotonic() - t0
            self.assertEqual((r.status, r.body), (200, b"GET /slow\n"))
            self.assertLess(elapsed, 0.2)
            e = t.wait_for_access(lambda e: e.get("path") == "/slow")
            self.assertTrue(e.get("hedged"))

    def test_body_hedged_only_when_replayable(self):
        small, big = os.urandom(2000), os.urandom(100 << 10)
        a, b, cfg = self.setup_pair(slow_then_answer(1.0), {"hedge_budget_pct": 100})
        with self.trident(cfg) as t:
            with Client.to(t) as c:
                r = c.exchange("PUT", "/small", body=small)
            self.assertEqual((r.status, r.body), (200, b"PUT /small\n" + small))
            with Client.to(t) as c:
                r = c.exchange("PUT", "/big", body=big)  # over retry_body_bytes: streamed
            self.assertEqual((r.status, served_by(r)), (200, "a"))
            lines = {e["path"]: e for e in t.wait_for_access(
                lambda e: e.get("path") in ("/small", "/big"), count=2)}
            self.assertTrue(lines["/small"].get("hedged"))
            self.assertNotIn("hedged", lines["/big"])
        self.assertEqual([(r.target, r.body) for r in b.requests], [("/small", small)])

    def test_primary_answering_first_closes_the_hedge(self):
        a, b, cfg = self.setup_pair(slow_then_answer(0.4),
                                    {"hedge_budget_pct": 100, "hedge_delay_ms": 100})
        b.handler = lambda ex: ex.hang(T(10))
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/primary")
            self.assertEqual((r.status, served_by(r)), (200, "a"))
            e = t.wait_for_access(lambda e: e.get("path") == "/primary")
            self.assertEqual((e.get("hedged"), e["attempts"], e["server"]), (True, 2, "ntt-1"))
            self.assertTrue(b.peer_closed.wait(T(3)), "the losing hedge connection left open")
        self.assertEqual([r.target for r in b.requests], ["/primary"])

    def test_websocket_upgrade_not_hedged(self):
        def slow_ws(ex):
            time.sleep(0.5)
            ex.websocket_echo()

        a, b, cfg = self.setup_pair(slow_ws, {"hedge_budget_pct": 100, "hedge_delay_ms": 50})
        with self.trident(cfg) as t, Client.to(t) as c:
            key = base64.b64encode(os.urandom(16)).decode()
            c.request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                     ("Sec-WebSocket-Key", key),
                                     ("Sec-WebSocket-Version", "13")])
            r = c.read_response()
            self.assertEqual(r.status, 101, r)
            c.send(ws_frame(1, b"one tunnel"))
            self.assertEqual(ws_read_frame(c.reader), (True, 1, False, b"one tunnel"))
        self.assertEqual(b.requests, [], "a WebSocket upgrade was hedged")

    def test_failed_hedge_does_not_fail_the_request(self):
        # the hedge's connect is refused: the primary's later answer still counts
        a = self.upstream(0, handler=slow_then_answer(0.5), name="a")
        dead = closed_port_address(self.net.upstream_ip(1))
        ca = cluster("ntt", [a], weight=100)
        ca["passive"] = NO_PASSIVE
        cfg = make_config([ca, cluster("gmo", [dead])],
                          failover={"hedge_budget_pct": 100, "hedge_delay_ms": 100})
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/hedge-refused")
            self.assertEqual((r.status, served_by(r)), (200, "a"), r)
            e = t.wait_for_access(lambda e: e.get("path") == "/hedge-refused")
            self.assertEqual((e["status"], e["server"]), (200, "ntt-1"))

    def test_primary_and_hedge_both_fail_then_a_third_provider(self):
        def fail_late(ex):
            time.sleep(0.4)
            ex.reset()

        a = self.upstream(0, handler=fail_late, name="a")
        b = self.upstream(1, handler=lambda ex: ex.reset(), name="b")
        c = self.upstream(2, handler=echo_handler, name="c")
        clusters = [cluster("ntt", [a], weight=100), cluster("gmo", [b], weight=10),
                    cluster("aws", [c], weight=1)]
        for cl in clusters:
            cl["passive"] = NO_PASSIVE
        cfg = make_config(clusters, failover={"hedge_budget_pct": 100, "hedge_delay_ms": 100})
        with self.trident(cfg) as t, Client.to(t) as cl:
            r = cl.exchange("GET", "/third")
            self.assertEqual((r.status, r.body), (200, b"GET /third\n"), r)
            e = t.wait_for_access(lambda e: e.get("path") == "/third")
            self.assertEqual((e["status"], e["server"], e["attempts"]), (200, "aws-1", 3))
        self.assertEqual((len(a.requests), len(b.requests), len(c.requests)), (1, 1, 1))

    def test_no_hedge_within_the_same_provider(self):
        a1 = self.upstream(0, handler=slow_then_answer(0.5), name="a1")
        a2 = self.upstream(0, handler=echo_handler, name="a2")
        ca = cluster("ntt", [("ntt-1", a1, 100), ("ntt-2", a2, 1)])
        ca["passive"] = NO_PASSIVE
        cfg = make_config([ca], failover={"hedge_budget_pct": 100, "hedge_delay_ms": 100})
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/same")
            self.assertEqual((r.status, served_by(r)), (200, "a1"))
            e = t.wait_for_access(lambda e: e.get("path") == "/same")
            self.assertNotIn("hedged", e)
        self.assertEqual(a2.requests, [])

    def test_hedge_while_the_connect_hangs(self):
        # a blackholed server (SYNs dropped): no response head after the hedge delay, so the
        # request is hedged, rather than waiting out the 2 s connect timeout
        host = self.net.upstream_ip(0)
        bh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        bh.bind((host, 0))
        bh.listen(0)
        self.addCleanup(bh.close)
        for _ in range(4):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            f.connect_ex(bh.getsockname())
            self.addCleanup(f.close)
        b = self.upstream(1, handler=echo_handler, name="b")
        ca = cluster("ntt", [f"{host}:{bh.getsockname()[1]}"], weight=100)
        ca["passive"] = NO_PASSIVE
        cfg = make_config([ca, cluster("gmo", [b])],
                          failover={"hedge_budget_pct": 100, "hedge_delay_ms": 100},
                          timeouts={"upstream_connect_ms": 2000})
        with self.trident(cfg) as t, Client.to(t) as c:
            t0 = time.monotonic()
            r = c.exchange("GET", "/blackholed")
            elapsed = time.monotonic() - t0
            self.assertEqual((r.status, r.body), (200, b"GET /blackholed\n"))
            self.assertLess(elapsed, 1.5, "not hedged while the connect hung")
            e = t.wait_for_access(lambda e: e.get("path") == "/blackholed")
            self.assertEqual((e.get("hedged"), e["server"]), (True, "gmo-1"))

    def test_a_hung_server_is_out_when_its_lost_attempts_time_out(self):
        # A hung server loses every race; clients wait only the hedge delay. A lost attempt
        # still silent 5 hedge delays later (1 s here) has timed out: two in a row
        # (passive.timeouts 2) take the server out, the lost races themselves do not.
        a = self.upstream(0, handler=lambda ex: ex.hang(T(10)), name="a")
        b = self.upstream(1, handler=echo_handler, name="b")
        cfg = make_config([cluster("ntt", [a], weight=100), cluster("gmo", [b])],
                          failover={"hedge_budget_pct": 100, "hedge_delay_ms": 200})
        with self.trident(cfg) as t:
            answered = []
            for i in range(2):
                with Client.to(t) as c:
                    self.assertEqual(c.exchange("GET", f"/lost{i}").status, 200)
                answered.append(time.monotonic())
            self.assertEqual(transitions(t, "ntt-1"), [], "out on lost races alone")
            tr = wait_transition(t, "ntt-1", "down")
            self.assertEqual(tr[2], "passive: timeouts")
            # not before the lost attempts had their verdict time
            self.assertGreaterEqual(time.monotonic() - answered[0], 0.9)
            with Client.to(t) as c:
                r = c.exchange("GET", "/after")
                self.assertEqual((r.status, r.body), (200, b"GET /after\n"))
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith(("/lost", "/after")),
                                      count=3)
            self.assertEqual([(bool(e.get("hedged")), e["attempts"]) for e in lines],
                             [(True, 2), (True, 2), (False, 1)])
        self.assertEqual(len(a.requests), 2)

if __name__ == "__main__":
    unittest.main()
