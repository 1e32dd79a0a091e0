"""Routing over clusters and servers, header rewriting, the access log, and --check."""
import collections
import json
import os
import re
import shutil
import signal
import tempfile
import unittest

from harness import (Client, E2ETestCase, T, cluster, free_port, get, make_config, run_check,
                     wait_until)

HEX32 = re.compile(r"[0-9a-f]{32}")


class ClusterRouting(E2ETestCase):

    def test_weighted_active_active_over_three_providers(self):
        ups = [self.upstream(i, name=p) for i, p in enumerate(["ntt", "gmo", "aws"])]
        cfg = make_config([cluster("ntt", [ups[0]], weight=2),
                           cluster("gmo", [ups[1]], weight=1),
                           cluster("aws", [ups[2]], weight=1)])
        with self.trident(cfg) as t, Client.to(t) as c:
            seen = collections.Counter()
            for i in range(40):
                r = c.exchange("GET", f"/r{i}")
                self.assertEqual(r.status, 200)
                seen[r.headers.get("x-upstream")] += 1
            self.assertEqual(dict(seen), {"ntt": 20, "gmo": 10, "aws": 10})
            self.assertEqual([len(u.requests) for u in ups], [20, 10, 10])
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/r"), count=40)
            for e in lines:
                up = next(u for u in ups if any(r.target == e["path"] for r in u.requests))
                self.assertEqual(e["provider"], up.name)
                self.assertEqual(e["cluster"], up.name)
        self.assertNoUpstreamErrors()

    def test_server_weights_inside_a_cluster(self):
        a = self.upstream(0, name="a")
        b = self.upstream(1, name="b")
        cfg = make_config([cluster("c", [("a", a, 3), ("b", b, 1)])])
        with self.trident(cfg) as t, Client.to(t) as c:
            for i in range(20):
                self.assertEqual(c.exchange().status, 200)
        self.assertEqual((len(a.requests), len(b.requests)), (15, 5))

    def test_zero_weight_cluster_takes_nothing(self):
        a = self.upstream(0, name="a")
        b = self.upstream(1, name="b")
        cfg = make_config([cluster("a", [a], weight=1), cluster("b", [b], weight=0)])
        with self.trident(cfg) as t, Client.to(t) as c:
            for _ in range(8):
                self.assertEqual(c.exchange().status, 200)
        self.assertEqual((len(a.requests), len(b.requests)), (8, 0))

    def _hold_on_hold(self, ex):
        if ex.req.target == "/hold":
            ex.hang(T(20))
        ex.respond(200, ex.upstream.name, headers=[("X-Upstream", ex.upstream.name)])

    def _busy_server_test(self, balance):
        a = self.upstream(0, handler=self._hold_on_hold, name="a")
        b = self.upstream(1, handler=self._hold_on_hold, name="b")
        cfg = make_config([cluster("c", [("a", a), ("b", b)], balance=balance)])
        with self.trident(cfg) as t, Client.to(t) as held:
            held.request("GET", "/hold")
            busy = wait_until(lambda: [u for u in (a, b) if u.requests], T(5),
                              what="the /hold request at a server")[0]
            quick = collections.Counter()
            with Client.to(t) as c:
                for _ in range(6):
                    r = c.exchange("GET", "/quick")
                    self.assertEqual(r.status, 200)
                    quick[r.headers.get("x-upstream")] += 1
            a.release.set()
            b.release.set()
            self.assertEqual(held.read_response().status, 200)
        return busy, quick

    def test_least_conn_avoids_the_busy_server(self):
        busy, quick = self._busy_server_test("least_conn")
        idle = "b" if busy.name == "a" else "a"
        self.assertEqual(dict(quick), {idle: 6},
                         f"least_conn sent requests to {busy.name}, which had one in flight")

    def test_round_robin_ignores_load(self):
        # control for the least_conn test: the same traffic spreads under round_robin
        busy, quick = self._busy_server_test("round_robin")
        self.assertEqual(sorted(quick.values()), [3, 3], quick)


class HeaderRewriting(E2ETestCase):

    def test_forwarded_and_hop_by_hop_headers(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])])
        src = self.net.client_ip(0)
        with self.trident(cfg) as t, Client.to(t, source=src) as c:
            c.send(b"POST /path/x?q=1&r=%20 HTTP/1.1\r\n"
                   b"Host: example.test:8080\r\n"
                   b"X-Forwarded-For: 203.0.113.7\r\n"
                   b"X-Forwarded-For: 198.51.100.1, 198.51.100.2\r\n"
                   b"X-Forwarded-Proto: https\r\n"
                   b"X-Forwarded-Host: evil.test\r\n"
                   b"Connection: keep-alive, X-Drop-Me, Content-Length, Host\r\n"
                   b"X-Drop-Me: secret\r\n"
                   b"Keep-Alive: timeout=5\r\n"
                   b"TE: trailers\r\n"
                   b"Trailer: X-Foo\r\n"
                   b"Proxy-Connection: keep-alive\r\n"
                   b"Proxy: http://evil.test:3128\r\n"
                   b"Upgrade: foo/1\r\n"
                   b"X-Keep: yes\r\n"
                   b"X-Multi: 1\r\n"
                   b"x-multi: 2\r\n"
                   b"Content-Length: 5\r\n"
                   b"\r\n"
                   b"hello")
            r = c.read_response()
            self.assertEqual(r.status, 200)
        req = up.requests[0]
        h = req.headers
        self.assertEqual((req.method, req.target, req.version), ("POST", "/path/x?q=1&r=%20", "HTTP/1.1"))
        self.assertEqual(h.get_all("host"), ["example.test:8080"])
        # the client is no trusted proxy: what it wrote about its route is dropped
        self.assertEqual(h.get_all("x-forwarded-for"), [src])
        self.assertEqual(h.get_all("x-real-ip"), [src])
        self.assertEqual(h.get_all("x-forwarded-proto"), ["http"])
        self.assertEqual(h.get_all("x-forwarded-host"), ["example.test:8080"])
        self.assertRegex(h.get("x-request-id"), HEX32)
        for gone in ("x-drop-me", "keep-alive", "te", "trailer", "proxy-connection", "proxy",
                     "upgrade"):
            self.assertNotIn(gone, h, f"{gone} was forwarded: {h.items}")
        self.assertNotIn("x-drop-me", h.tokens("connection"))
        self.assertEqual(h.get_all("content-length"), ["5"])
        self.assertEqual(req.body, b"hello")
        self.assertEqual(h.get("x-keep"), "yes")
        self.assertEqual(h.get_all("x-multi"), ["1", "2"])
        self.assertNoUpstreamErrors()

    def test_response_hop_by_hop_headers_stripped(self):
        def handler(ex):
            ex.send(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nX-Internal: secret\r\n"
                    b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTrailer: X-T\r\n"
                    b"Upgrade: h2c\r\nX-Public: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
                    b"Content-Length: 2\r\n\r\nok")

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            r = c.exchange()
            self.assertEqual((r.status, r.body), (200, b"ok"))
            for gone in ("x-internal", "keep-alive", "proxy-connection", "trailer", "upgrade"):
                self.assertNotIn(gone, r.headers, r.headers)
            self.assertEqual(r.headers.get("x-public"), "1")
            self.assertEqual(r.headers.get_all("set-cookie"), ["a=1", "b=2"])
            self.assertEqual(r.headers.get_all("content-length"), ["2"])

    def test_xff_added_when_absent_and_host_from_http10(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])])
        src = self.net.client_ip(1)
        with self.trident(cfg) as t:
            with Client.to(t, source=src) as c:
                self.assertEqual(c.exchange("GET", "/a", host="h.test").status, 200)
            with Client.to(t, source=src) as c:
                # absolute-form: the authority becomes Host, the target becomes origin-form
                self.assertEqual(c.exchange("GET", "http://abs.test:81/b?x", host="ignored.test").status, 200)
        h = up.requests[0].headers
        self.assertEqual(h.get_all("x-forwarded-for"), [src])
        self.assertEqual(h.get_all("x-forwarded-host"), ["h.test"])
        r2 = up.requests[1]
        self.assertEqual(r2.target, "/b?x")
        self.assertEqual(r2.headers.get_all("host"), ["abs.test:81"])

    def identity_request(self, t, src, target):
        """A request that claims an identity and a route in every field a framework reads."""
        with Client.to(t, source=src) as c:
            r = c.exchange("GET", target, [
                ("X-Forwarded-For", "203.0.113.7, 198.51.100.2"), ("X-Real-IP", "203.0.113.7"),
                ("X-Request-Id", f"chosen-{target[1:]}"), ("Forwarded", "for=203.0.113.7"),
                ("X-Forwarded-Port", "443"), ("X-Forwarded-Ssl", "on"),
                ("True-Client-IP", "203.0.113.7"), ("X_Forwarded_For", "203.0.113.8"),
                ("X_Real_IP", "203.0.113.8"), ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
                ("Client-IP", "203.0.113.9"), ("X-Forwarded-Proto", "https"),
                ("X_App_Token", "t")])
        self.assertEqual(r.status, 200)

    def test_identity_fields_believed_only_from_trusted_proxies(self):
        up = self.upstream(0)
        proxy, client = self.net.client_ip(2), self.net.client_ip(3)
        cfg = make_config([cluster("c", [up])])
        host = self.net.listener_ip()
        cfg["listeners"] = [{"address": f"{host}:{free_port(host)}",
                             "trusted_proxies": [f"{proxy}/32"]}]
        with self.trident(cfg) as t:
            self.identity_request(t, client, "/from-client")
            self.identity_request(t, proxy, "/from-proxy")
            logged = {p: t.wait_for_access(lambda e, p=p: e.get("path") == p)
                      for p in ("/from-client", "/from-proxy")}
        by = {r.target: r.headers for r in up.requests}
        h = by["/from-client"]
        self.assertEqual(h.get_all("x-forwarded-for"), [client])
        self.assertEqual(h.get_all("x-real-ip"), [client])
        self.assertRegex(h.get("x-request-id"), HEX32)
        for gone in ("forwarded", "x-forwarded-port", "x-forwarded-ssl", "true-client-ip",
                     "client-ip", "x_forwarded_for", "x_real_ip", "proxy-authorization"):
            self.assertNotIn(gone, h, f"{gone} from a client reached the server: {h.items}")
        self.assertEqual(h.get_all("x-forwarded-proto"), ["http"])
        self.assertEqual(h.get("x_app_token"), "t")  # not one of trident's: the app's business
        h = by["/from-proxy"]
        # a trusted proxy's chain is kept and names the client; its other claims pass too
        self.assertEqual(h.get_all("x-forwarded-for"), [f"203.0.113.7, 198.51.100.2, {proxy}"])
        self.assertEqual(h.get_all("x-real-ip"), ["198.51.100.2"])
        self.assertEqual(h.get_all("x-request-id"), ["chosen-from-proxy"])
        self.assertEqual((h.get("forwarded"), h.get("x-forwarded-port"), h.get("x-forwarded-ssl"),
                          h.get("true-client-ip"), h.get("client-ip")),
                         ("for=203.0.113.7", "443", "on", "203.0.113.7", "203.0.113.9"))
        self.assertEqual(h.get_all("x-forwarded-proto"), ["https"])  # the scheme in front of it
        for gone in ("x_forwarded_for", "x_real_ip", "proxy-authorization"):
            self.assertNotIn(gone, h, f"{gone} from a trusted proxy reached the server")
        self.assertEqual(logged["/from-client"]["request_id"],
                         by["/from-client"].get("x-request-id"))
        self.assertEqual((logged["/from-proxy"]["request_id"], logged["/from-proxy"]["client"]),
                         ("chosen-from-proxy", "198.51.100.2"))

    def test_request_id_generated_passed_through_or_replaced(self):
        # ids are kept from trusted proxies only (the test client is one here)
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])])
        host = self.net.listener_ip()
        cfg["listeners"] = [{"address": f"{host}:{free_port(host)}",
                             "trusted_proxies": ["127.0.0.0/8"]}]
        valid = "Req-42_abc.def:ghi+jkl/mno="
        with self.trident(cfg) as t, Client.to(t) as c:
            self.assertEqual(c.exchange("GET", "/gen").status, 200)
            self.assertEqual(c.exchange("GET", "/gen2").status, 200)
            self.assertEqual(c.exchange("GET", "/valid", [("X-Request-Id", valid)]).status, 200)
            self.assertEqual(c.exchange("GET", "/invalid", [("X-Request-Id", "bad id<>")]).status, 200)
            self.assertEqual(c.exchange("GET", "/toolong", [("X-Request-Id", "a" * 129)]).status, 200)
            byp = {r.target: r.headers.get_all("x-request-id") for r in up.requests}
            self.assertEqual(len(byp["/gen"]), 1)
            self.assertRegex(byp["/gen"][0], HEX32)
            self.assertRegex(byp["/gen2"][0], HEX32)
            self.assertNotEqual(byp["/gen"], byp["/gen2"])
            self.assertEqual(byp["/valid"], [valid])
            self.assertEqual(len(byp["/invalid"]), 1)
            self.assertRegex(byp["/invalid"][0], HEX32)
            self.assertEqual(len(byp["/toolong"]), 1)
            self.assertRegex(byp["/toolong"][0], HEX32)
            for path, ids in byp.items():
                e = t.wait_for_access(lambda e, p=path: e.get("path") == p)
                self.assertEqual(e["request_id"], ids[0], path)


class AccessLog(E2ETestCase):

    def test_access_log_line(self):
        up = self.upstream(0, name="srv")
        cfg = make_config([cluster("edge", [("srv-1", up)], provider="gmo")])
        src = self.net.client_ip(2)
        with self.trident(cfg) as t, Client.to(t, source=src) as c:
            raw = (b"PUT /things/1?v=2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc")
            c.send(raw)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            e = t.wait_for_access(lambda e: e.get("path") == "/things/1?v=2")
        req = up.requests[0]
        self.assertEqual(e["request_id"], req.headers.get("x-request-id"))
        self.assertEqual(e["method"], "PUT")
        self.assertEqual(e["protocol"], "HTTP/1.1")
        self.assertEqual(e["status"], 200)
        self.assertEqual(e["server"], "srv-1")
        self.assertEqual(e["cluster"], "edge")
        self.assertEqual(e["provider"], "gmo")
        self.assertEqual(e["client"], f"{src}:{c.local[1]}")
        self.assertEqual(e["attempts"], 1)
        self.assertNotIn("reason", e)
        self.assertEqual(e["bytes_in"], len(raw))
        self.assertEqual(e["bytes_out"], r.wire_len)
        for k in ("duration_ms", "connect_ms", "upstream_ms"):
            self.assertIsInstance(e[k], (int, float), k)
            self.assertGreaterEqual(e[k], 0, k)
            self.assertLess(e[k], T(5000), k)
        self.assertGreaterEqual(e["duration_ms"], e["upstream_ms"])
        self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}")

    def test_access_log_to_file(self):
        up = self.upstream(0)
        d = tempfile.mkdtemp(prefix="trident-alog-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "access.json")
        cfg = make_config([cluster("c", [up])], log={"access": path})
        with self.trident(cfg) as t:
            self.assertEqual(get(t, "/to-file").status, 200)
            def lines():
                try:
                    with open(path) as f:
                        return [json.loads(x) for x in f.read().splitlines() if x.strip()]
                except OSError:
                    return []
            got = wait_until(lambda: [e for e in lines() if e.get("path") == "/to-file"],
                                     T(5), what="line in the access log file")
            self.assertEqual(got[0]["status"], 200)
            self.assertEqual(t.access_lines(), [], "access log also went to stdout")


class AccessLogReopen(E2ETestCase):

    def test_sigusr1_reopens_the_access_log(self):
        up = self.upstream(0)
        d = tempfile.mkdtemp(prefix="trident-alog-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "access.json")
        cfg = make_config([cluster("c", [up])], log={"access": path})

        def paths(p):
            try:
                with open(p) as f:
                    return [json.loads(x).get("path") for x in f.read().splitlines() if x.strip()]
            except OSError:
                return []

        with self.trident(cfg) as t:
            self.assertEqual(get(t, "/before").status, 200)
            wait_until(lambda: "/before" in paths(path), T(5), what="/before logged")
            os.rename(path, path + ".1")
            t.proc.send_signal(signal.SIGUSR1)
            wait_until(lambda: os.path.exists(path), T(5), what="the access log reopened")
            self.assertEqual(get(t, "/after").status, 200)
            wait_until(lambda: "/after" in paths(path), T(5), what="/after in the new file")
            self.assertEqual(paths(path + ".1"), ["/before"])
            self.assertTrue(t.alive())


def good_config(addr="127.0.0.1:1"):
    return {
        "workers": 1,
        "listeners": [{"address": "127.0.0.1:18080"}],
        "timeouts": {"client_header_ms": 1000},
        "limits": {"max_request_body": 1000},
        "log": {"access": "off", "error_level": "warn"},
        "clusters": [
            {"name": "a", "provider": "ntt", "weight": 1, "balance": "round_robin",
             "servers": [{"id": "a-1", "address": addr, "weight": 1}]},
            {"name": "b", "provider": "gmo", "weight": 2, "balance": "least_conn",
             "servers": [{"id": "b-1", "address": "localhost:2"},
                         {"id": "b-2", "address": "[::1]:3"}]},
        ],
    }


class ConfigCheck(E2ETestCase):

    def assertRefused(self, cfg, *needles):
        code, err = run_check(cfg)
        self.assertEqual(code, 1, f"--check accepted (or crashed on) a bad config: {err}")
        for n in needles:
            self.assertIn(n, err)
        return err

    def test_good_config_accepted(self):
        code, err = run_check(good_config())
        self.assertEqual(code, 0, err)
        minimal = {"listeners": [{"address": "127.0.0.1:18080"}],
                   "clusters": [{"name": "x", "provider": "p",
                                 "servers": [{"id": "x1", "address": "127.0.0.1:9"}]}]}
        code, err = run_check(minimal)
        self.assertEqual(code, 0, err)

    def test_unknown_keys(self):
        c = good_config()
        c["workerz"] = 1
        self.assertRefused(c, "workerz")
        c = good_config()
        c["clusters"][1]["servers"][0]["weigth"] = 1
        self.assertRefused(c, "clusters[1].servers[0].weigth")
        c = good_config()
        c["timeouts"]["client_heder_ms"] = 5
        self.assertRefused(c, "timeouts.client_heder_ms")

    def test_wrong_types(self):
        c = good_config()
        c["workers"] = "2"
        self.assertRefused(c, "workers")
        c = good_config()
        c["limits"]["max_request_body"] = 1.5
        self.assertRefused(c, "limits.max_request_body")
        c = good_config()
        c["clusters"][0]["servers"] = {"id": "a-1"}
        self.assertRefused(c, "clusters[0].servers")
        c = good_config()
        c["log"]["access"] = 1
        self.assertRefused(c, "log.access")

    def test_out_of_range_and_enums(self):
        for path, mutate in [
            ("workers", lambda c: c.__setitem__("workers", 0)),
            ("workers", lambda c: c.__setitem__("workers", 257)),
            ("timeouts.client_header_ms", lambda c: c["timeouts"].__setitem__("client_header_ms", 0)),
            ("limits.buffer_bytes", lambda c: c["limits"].__setitem__("buffer_bytes", 100)),
            ("clusters[1].weight", lambda c: c["clusters"][1].__setitem__("weight", 1001)),
            ("clusters[0].servers[0].weight",
             lambda c: c["clusters"][0]["servers"][0].__setitem__("weight", -1)),
            ("clusters[1].balance", lambda c: c["clusters"][1].__setitem__("balance", "random")),
            ("log.error_level", lambda c: c["log"].__setitem__("error_level", "loud")),
            ("clusters[0].name", lambda c: c["clusters"][0].__setitem__("name", "bad name")),
        ]:
            with self.subTest(path=path):
                c = good_config()
                mutate(c)
                self.assertRefused(c, path)

    def test_duplicates_and_missing(self):
        c = good_config()
        c["clusters"][1]["servers"][0]["id"] = "a-1"
        self.assertRefused(c, "clusters[1].servers[0].id")
        c = good_config()
        c["clusters"][1]["name"] = "a"
        self.assertRefused(c, "clusters[1].name")
        c = good_config()
        del c["clusters"]
        self.assertRefused(c, "clusters")
        c = good_config()
        del c["clusters"][0]["servers"][0]["address"]
        self.assertRefused(c, "clusters[0].servers[0].address")

    def test_bad_addresses(self):
        for addr in ["127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:abc", ":80",
                     "[::1:80"]:
            with self.subTest(addr=addr):
                err = self.assertRefused(good_config(addr), "clusters[0].servers[0].address")
                self.assertIn("port", err)
        self.assertRefused(good_config("no-such-host.invalid:80"), "clusters[0].servers[0].address")
        c = good_config()
        c["listeners"][0]["address"] = "127.0.0.1:0x50"
        self.assertRefused(c, "listeners[0].address")

    def test_not_json(self):
        code, err = run_check('{"workers": 1,')
        self.assertEqual(code, 1, err)
        self.assertTrue(err.strip())
        code, err = run_check('{"workers": 1, "workers": 2, "listeners": [], "clusters": []}')
        self.assertEqual(code, 1, err)


if __name__ == "__main__":
    unittest.main()
