"""The admin endpoint: /status, /metrics and /healthz against real traffic and a real outage; the
Prometheus format (promtool, cumulative histograms); drain, maintenance and ready on servers,
clusters and providers under load; authentication, the allowlist and the audit log."""
import base64
import json
import os
import select
import tempfile
import threading
import time
import unittest

from harness import (Client, E2ETestCase, T, cluster, make_config, wait_until, ws_frame,
                     ws_read_frame)
from healthlib import health, served_by, spread
from adminlib import (TOKEN, TOKEN_NAME, Admin, Load, admin_section, cluster_status, histograms,
                      parse_metrics, promtool_check, server_status, wait_server, wait_status)

NO_HEDGE = {"hedge": False}


def status_handler(ex):
    """/code/NNN answers NNN; /sleep/MS sleeps MS milliseconds first; anything else 200."""
    parts = ex.req.target.split("?")[0].split("/")
    status = 200
    if len(parts) >= 3 and parts[1] == "code":
        status = int(parts[2])
    if len(parts) >= 3 and parts[1] == "sleep":
        time.sleep(int(parts[2]) / 1000)
    ex.respond(status, f"{ex.upstream.name} {ex.req.target}".encode(),
               headers=[("X-Upstream", ex.upstream.name)])


def gated_handler(gate):
    """Answers like handler(), but holds GET /slow until gate is set."""
    def handler(ex):
        if ex.req.target == "/slow":
            gate.wait(T(20))
        ex.respond(200, f"{ex.upstream.name} {ex.req.target}".encode(),
                   headers=[("X-Upstream", ex.upstream.name)])
    return handler


class AdminCase(E2ETestCase):

    def with_admin(self, cfg, **kw):
        cfg["admin"] = admin_section(self.net, **kw)
        return cfg

    def two_checked_providers(self):
        """Upstreams a (ntt-1, cluster ntt) and b (gmo-1, cluster gmo), TCP-checked; returns
        (a, b, config with the admin endpoint)."""
        a = self.upstream(0, name="a")
        b = self.upstream(1, name="b")
        ca = cluster("ntt", [a])
        ca["health"] = health(type="tcp")
        cb = cluster("gmo", [b])
        cb["health"] = health(type="tcp")
        return a, b, self.with_admin(make_config([ca, cb], failover=NO_HEDGE))

    def assertAdminHeaders(self, r):
        self.assertTrue(r.complete, r)
        self.assertEqual(r.headers.get("cache-control"), "no-store", r)
        self.assertIn("close", r.headers.tokens("connection"), r)
        self.assertTrue(r.closed_after, "the admin endpoint kept the connection open")
        self.assertEqual(r.extra, b"", "bytes after the response")

    def assertAdminError(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertAdminHeaders(r)
        self.assertIn("application/json", r.headers.get("content-type", ""))
        body = r.json()
        self.assertEqual(body["status"], status, body)
        self.assertIsInstance(body["error"], str)
        return body


# ---- /status, /metrics, /healthz -------------------------------------------------------------------

class StatusAndMetrics(AdminCase):

    def test_counts_follow_traffic(self):
        a = self.upstream(0, handler=status_handler, name="a")
        b = self.upstream(1, handler=status_handler, name="b")
        cfg = self.with_admin(make_config([cluster("ntt", [a]), cluster("gmo", [b])], workers=2,
                                          failover=NO_HEDGE))
        cfg["instance_id"] = "e2e-admin.1"
        paths = ["/ok"] * 6 + ["/code/404"] * 2 + ["/code/302", "/code/500"]
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            st0 = ad.status()
            self.assertEqual(st0["instance"], "e2e-admin.1")
            self.assertEqual(st0["config_generation"], 1)
            self.assertIs(st0["serving"], True)
            self.assertEqual(st0["workers"], 2)
            self.assertEqual(st0["redis"], {"state": "disabled"})
            self.assertEqual(st0["journal"], [])
            self.assertEqual([(l["address"], l["tls"]) for l in st0["listeners"]],
                             [(f"{t.host}:{t.port}", False)])
            for c in st0["clusters"]:
                self.assertEqual((c["weight"], c["min_healthy"], c["servers_usable"], c["usable"]),
                                 (1, 1, 1, True), c)
                s = c["servers"][0]
                self.assertEqual((s["health"], s["admin"], s["usable"], s["reason"],
                                  s["last_check"], s["weight"], s["effective_weight"],
                                  s["requests"]),
                                 ("up", "ready", True, "ok", None, 1, 1, 0), s)
            self.assertTrue(all(v == 0 for v in st0["outcomes"].values()), st0["outcomes"])
            # traffic: 10 requests per server; 4 on one keep-alive connection, 16 on their own
            sent = {}      # server -> [request bytes, response bytes, requests, {class: n}]
            conns = 0
            keep = Client.to(t)
            self.addCleanup(keep.close)
            conns += 1
            for i, p in enumerate(paths * 2):
                path = f"{p}?i={i}"
                if i < 4:
                    c = keep
                else:
                    c = Client.to(t)
                    conns += 1
                c.request("GET", path)
                r = c.read_response()
                expect = int(p.split("/")[2]) if p.startswith("/code/") else 200
                self.assertEqual(r.status, expect, r)
                req_len = len(f"GET {path} HTTP/1.1\r\nHost: trident.test\r\n\r\n")
                sid = {"a": "ntt-1", "b": "gmo-1"}[served_by(r)]
                rec = sent.setdefault(sid, [0, 0, 0, {}])
                rec[0] += req_len
                rec[1] += r.wire_len
                rec[2] += 1
                cls = f"{r.status // 100}xx"
                rec[3][cls] = rec[3].get(cls, 0) + 1
                if c is not keep:
                    c.close()
            # two workers, each round-robins on its own: both servers served, 20 in all
            self.assertEqual(sorted(sent), ["gmo-1", "ntt-1"], sent)
            self.assertEqual(sum(x[2] for x in sent.values()), 20, sent)
            # connections still open count as active; the readiness probe was one more
            st = wait_status(ad, lambda s: s["listeners"][0]["connections_active"] == 1,
                             what="connections_active 1 (the keep-alive connection)")
            lst = st["listeners"][0]
            self.assertEqual(lst["connections_total"], conns + 1, lst)
            self.assertEqual(lst["requests"], 20, lst)
            keep.close()
            st = wait_status(ad, lambda s: s["listeners"][0]["connections_active"] == 0,
                             what="connections_active back to 0")
            self.assertGreater(st["uptime_s"], st0["uptime_s"])
            m = ad.metrics()
            lab = {"listener": f"{t.host}:{t.port}"}
            self.assertEqual(m.get("trident_connections_total", **lab), conns + 1)
            self.assertEqual(m.get("trident_connections_active", **lab), 0)
            self.assertEqual(m.get("trident_requests_total", **lab), 20)
            self.assertEqual(m.get("trident_request_duration_seconds_count", **lab), 20)
            self.assertEqual(m.get("trident_tls_handshakes_total", **lab), 0)
            self.assertEqual(m.get("trident_info", version=st["version"], instance="e2e-admin.1"),
                             1)
            self.assertEqual(m.get("trident_config_generation"), 1)
            self.assertEqual(m.get("trident_serving"), 1)
            self.assertGreater(m.get("trident_uptime_seconds"), 0)
            for sid, (bin_, bout, n, classes) in sent.items():
                cname = sid.split("-")[0]
                s = server_status(st, sid)
                want_classes = {k: classes.get(k, 0) for k in ("1xx", "2xx", "3xx", "4xx", "5xx")}
                self.assertEqual(s["responses"], want_classes, (sid, s))
                self.assertEqual((s["requests"], s["failures"], s["retries"], s["hedges"],
                                  s["active_requests"]), (n, 0, 0, 0, 0), s)
                self.assertEqual((s["bytes_in"], s["bytes_out"]), (bin_, bout), s)
                self.assertGreaterEqual(s["connections"], 1)
                self.assertLessEqual(s["connections"], n)
                lab = {"cluster": cname, "provider": cname, "server": sid}
                self.assertEqual(m.get("trident_upstream_requests_total", **lab), n)
                self.assertEqual(m.get("trident_upstream_failures_total", **lab), 0)
                self.assertEqual(m.get("trident_upstream_retries_total", **lab), 0)
                self.assertEqual(m.get("trident_upstream_hedges_total", **lab), 0)
                self.assertEqual(m.get("trident_upstream_active_requests", **lab), 0)
                self.assertEqual(m.get("trident_upstream_connections_total", **lab),
                                 s["connections"])
                self.assertEqual(m.get("trident_upstream_received_bytes_total", **lab), bin_)
                self.assertEqual(m.get("trident_upstream_sent_bytes_total", **lab), bout)
                for k, v in want_classes.items():
                    self.assertEqual(m.get("trident_upstream_responses_total", **lab,
                                           **{"class": k}), v, (sid, k))
                self.assertEqual(m.get("trident_upstream_response_seconds_count", **lab), n)
                self.assertEqual(m.get("trident_server_up", **lab), 1)
                self.assertEqual(m.get("trident_server_state", health="up", admin="ready", **lab),
                                 1)
                self.assertEqual(m.get("trident_server_transitions_total", **lab), 0)
            # upstream connections the servers saw agree with the counters
            for up, sid in ((a, "ntt-1"), (b, "gmo-1")):
                self.assertEqual(up.connections, server_status(st, sid)["connections"])
            # outcomes decided by trident: none so far (every response came from a server)
            self.assertTrue(all(v == 0 for v in st["outcomes"].values()), st["outcomes"])
            # trident's own answers count as outcomes and as listener requests
            with Client.to(t) as c:
                c.send(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
                r = c.read_response()
            self.assertEqual(r.status, 400)
            st = wait_status(ad, lambda s: s["listeners"][0]["requests"] == 21,
                             what="the 400 counted")
            self.assertEqual(st["outcomes"]["bad_request"], 1, st["outcomes"])
            self.assertEqual(ad.metrics().get("trident_outcomes_total", reason="bad_request"), 1)
        self.assertNoUpstreamErrors()

    def test_a_server_that_gave_no_response_gets_no_bytes(self):
        # received/sent bytes count requests a server answered and the responses it gave; a
        # reset before any answer is a failure, and the 502 page is trident's, not the server's
        def handler(ex):
            if ex.req.target == "/reset":
                ex.reset()
                return
            status_handler(ex)

        up = self.upstream(0, handler=handler, name="a")
        cfg = self.with_admin(make_config([cluster("web", [up])],
                                          failover={"retries": 0, "hedge": False}))
        with self.trident(cfg) as t, Client.to(t) as c:
            ad = Admin.of(t)
            r = c.exchange("POST", "/reset", body=b"x" * 100)
            self.assertErrorPage(r, 502)
            t.wait_for_access(lambda e: e.get("path") == "/reset")
            s = server_status(ad.status(), "web-1")
            self.assertEqual((s["failures"], s["bytes_in"], s["bytes_out"]), (1, 0, 0), s)

    def test_outage_seen_in_status_metrics_and_healthz(self):
        a, b, cfg = self.two_checked_providers()
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            st = wait_status(ad, lambda s: all(server_status(s, x)["health"] == "up"
                                                 for x in ("ntt-1", "gmo-1")), what="both up")
            s = server_status(st, "ntt-1")
            self.assertEqual((s["reason"], s["usable"], s["last_check"]["status"]), ("ok", True, 0),
                             s)
            self.assertIsInstance(s["last_check"]["latency_ms"], (int, float))
            self.assertGreaterEqual(s["last_check"]["latency_ms"], 0)
            tr0 = s["transitions"]
            r = ad.healthz()
            self.assertEqual((r.status, r.json()), (200, {"status": "serving"}))
            self.assertAdminHeaders(r)
            # ntt's only server dies
            a.close()
            st = wait_status(ad, lambda s: server_status(s, "ntt-1")["health"] == "down",
                             what="ntt-1 down")
            s = server_status(st, "ntt-1")
            self.assertEqual((s["usable"], s["reason"], s["effective_weight"], s["transitions"]),
                             (False, "L4 connection refused", 0, tr0 + 1), s)
            c = cluster_status(st, "ntt")
            self.assertEqual((c["servers_usable"], c["usable"]), (0, False))
            j = st["journal"][0]
            self.assertEqual((j["server"], j["from"], j["to"], j["admin"], j["reason"]),
                             ("ntt-1", "up", "down", "ready", "L4 connection refused"), j)
            self.assertRegex(j["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIs(st["serving"], True)
            m = ad.metrics()
            lab = {"cluster": "ntt", "provider": "ntt", "server": "ntt-1"}
            self.assertEqual(m.get("trident_server_up", **lab), 0)
            self.assertEqual(m.get("trident_server_state", **lab),  1)
            self.assertEqual(m.find("trident_server_state", **lab)[0][0]["health"], "down")
            self.assertEqual(m.get("trident_server_transitions_total", **lab), tr0 + 1)
            self.assertEqual(m.get("trident_server_up", server="gmo-1"), 1)
            self.assertEqual(m.get("trident_serving"), 1)
            # another cluster still serves
            r = ad.healthz()
            self.assertEqual((r.status, r.json()), (200, {"status": "serving"}))
            self.assertEqual(spread(t, 4), {"b": 4})
            # everything down
            b.close()
            wait_server(ad, "gmo-1", health="down")
            r = ad.healthz()
            self.assertEqual((r.status, r.json()), (503, {"status": "not serving"}))
            self.assertAdminHeaders(r)
            st = ad.status()
            self.assertIs(st["serving"], False)
            self.assertEqual(ad.metrics().get("trident_serving"), 0)
            self.assertEqual([(j["server"], j["to"]) for j in st["journal"][:2]],
                             [("gmo-1", "down"), ("ntt-1", "down")])
            with Client.to(t) as c:
                r = c.exchange("GET", "/nothing")
            self.assertEqual(r.status, 503)
            st = wait_status(ad, lambda s: s["outcomes"]["no_server"] == 1, what="no_server 1")
            self.assertEqual(ad.metrics().get("trident_outcomes_total", reason="no_server"), 1)
            # ntt comes back on the same port
            a2 = self.upstream(0, name="a2", port=a.port)
            st = wait_status(ad, lambda s: server_status(s, "ntt-1")["health"] == "up",
                             what="ntt-1 up again")
            j = st["journal"][0]
            self.assertEqual((j["server"], j["from"], j["to"], j["reason"]),
                             ("ntt-1", "down", "up", "ok"), j)
            self.assertIs(st["serving"], True)
            r = ad.healthz()
            self.assertEqual((r.status, r.json()), (200, {"status": "serving"}))
            self.assertEqual(spread(t, 3), {"a2": 3})

    def test_promtool_and_histograms(self):
        a = self.upstream(0, handler=status_handler, name="a")
        b = self.upstream(1, handler=status_handler, name="b")
        # all the traffic to ntt (gmo takes none), so the latencies are known per server
        cfg = self.with_admin(make_config([cluster("ntt", [a]), cluster("gmo", [b], weight=0)],
                                          failover=NO_HEDGE))
        plan = [("/fast", 6), ("/sleep/40", 3), ("/sleep/130", 2)]
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            r = ad.get("/metrics")
            self.assertTrue(r.headers.get("content-type", "").startswith(
                "text/plain; version=0.0.4"), r)
            self.assertAdminHeaders(r)
            code, out = promtool_check(r.body.decode())
            self.assertEqual((code, out), (0, ""), "promtool on an idle trident")
            for path, n in plan:
                for i in range(n):
                    with Client.to(t) as c:
                        self.assertEqual(c.exchange("GET", f"{path}?{i}").status, 200)
            text = ad.metrics_text()
            code, out = promtool_check(text)
            self.assertEqual((code, out), (0, ""), "promtool after traffic")
            m = parse_metrics(text)
            # every family has a TYPE, counters end in _total, samples belong to a declared family
            for (name, _labels) in m.samples:
                base = name
                for suf in ("_bucket", "_sum", "_count"):
                    if name.endswith(suf) and name[:-len(suf)] in m.types:
                        base = name[:-len(suf)]
                self.assertIn(base, m.types, f"{name} without # TYPE")
            for fam, typ in m.types.items():
                if typ == "counter":
                    self.assertTrue(fam.endswith("_total"), fam)
            self.assertEqual(m.types["trident_upstream_response_seconds"], "histogram")
            self.assertEqual(m.types["trident_request_duration_seconds"], "histogram")
            total = sum(n for _, n in plan)
            seen = 0
            for fam in ("trident_upstream_response_seconds", "trident_request_duration_seconds"):
                hs = histograms(m, fam)
                self.assertTrue(hs, fam)
                for labels, (buckets, hsum, hcount) in hs.items():
                    seen += 1
                    les = [le for le, _ in buckets]
                    self.assertEqual(les[-1], "+Inf", (fam, labels))
                    bounds = [float(x) for x in les[:-1]]
                    self.assertEqual(bounds, sorted(set(bounds)), (fam, labels, les))
                    counts = [v for _, v in buckets]
                    self.assertEqual(counts, sorted(counts), f"{fam}{labels} not cumulative")
                    self.assertEqual(counts[-1], hcount, (fam, labels))
                    self.assertIsNotNone(hsum)
                    self.assertGreaterEqual(hsum, 0)
                    le = dict(buckets)
                    if dict(labels).get("server") == "ntt-1" or "listener" in dict(labels):
                        self.assertEqual(hcount, total, (fam, labels))
                        self.assertEqual(le["0.025"], 6, (fam, labels, buckets))
                        self.assertEqual(le["0.1"], 9, (fam, labels, buckets))
                        self.assertEqual(le["0.25"], total, (fam, labels, buckets))
                        self.assertGreaterEqual(hsum, 3 * 0.040 + 2 * 0.130)
                        self.assertLess(hsum, 3 * 0.040 + 2 * 0.130 + total * 0.1 * T(1))
                    elif dict(labels).get("server") == "gmo-1":
                        self.assertEqual((hcount, hsum), (0, 0))
            self.assertEqual(seen, 3)

    def test_head_get_and_unknown_paths(self):
        a = self.upstream(0, name="a")
        cfg = self.with_admin(make_config([cluster("ntt", [a])]))
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            g = ad.get("/status")
            self.assertEqual(g.status, 200)
            self.assertAdminHeaders(g)
            self.assertIn("application/json", g.headers.get("content-type"))
            self.assertEqual(len(g.body), int(g.headers.get("content-length")))
            json.loads(g.body)
            for path in ("/status", "/metrics", "/healthz"):
                with self.subTest(head=path):
                    h = ad.call("HEAD", path)
                    self.assertEqual(h.status, 200, h)
                    self.assertEqual(h.extra, b"", f"HEAD {path}: a body followed the head")
                    self.assertTrue(h.closed_after)
            # a query string is ignored
            self.assertEqual(ad.get("/healthz?verbose=1").status, 200)
            for path in ("/", "/nope", "/status/extra", "/servers/ntt-1", "/servers/ntt-1/explode",
                         "/servers/ntt-1/drain/now"):
                with self.subTest(path=path):
                    self.assertAdminError(ad.get(path), 404)
                    self.assertAdminError(ad.post(path), 404)
            for path in ("/status", "/metrics", "/healthz"):
                with self.subTest(post=path):
                    r = ad.post(path)
                    self.assertAdminError(r, 405)
                    self.assertEqual(r.headers.get("allow"), "GET, HEAD")
                    r = ad.call("DELETE", path)
                    self.assertAdminError(r, 405)
            for path in ("/reload", "/servers/ntt-1/drain", "/clusters/ntt/ready"):
                with self.subTest(get=path):
                    r = ad.get(path, token=TOKEN)
                    self.assertAdminError(r, 405)
                    self.assertEqual(r.headers.get("allow"), "POST")
            st = ad.status()
            self.assertEqual((st["config_generation"], server_status(st, "ntt-1")["admin"]),
                             (1, "ready"), "a refused call changed something")
            # garbage is a 400, and trident keeps running
            with Client(ad.host, ad.port) as c:
                c.send(b"NOT HTTP\r\n\r\n")
                r = c.read_response()
            self.assertEqual(r.status, 400, r)

    def test_healthz_counts_min_healthy(self):
        ups = [self.upstream(i, name=f"u{i}") for i in range(3)]
        web = cluster("web", ups[:2])
        web["min_healthy"] = 2
        cfg = self.with_admin(make_config([web, cluster("gmo", ups[2:])]))
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            self.assertEqual(ad.healthz().status, 200)
            self.assertEqual(ad.post("/servers/gmo-1/maintenance").status, 200)
            wait_server(ad, "gmo-1", usable=False)
            self.assertEqual(ad.healthz().status, 200)
            self.assertEqual(ad.post("/servers/web-2/drain").status, 200)
            st = wait_status(ad, lambda s: not cluster_status(s, "web")["usable"],
                             what="web unusable")
            self.assertEqual(cluster_status(st, "web")["servers_usable"], 1)
            self.assertIs(st["serving"], False)
            r = ad.healthz()
            self.assertEqual((r.status, r.json()), (503, {"status": "not serving"}))
            self.assertEqual(ad.post("/servers/web-2/ready").status, 200)
            wait_status(ad, lambda s: cluster_status(s, "web")["usable"], what="web usable")
            self.assertEqual(ad.healthz().status, 200)


# ---- drain, maintenance, ready ---------------------------------------------------------------------

class AdminStates(AdminCase):

    def test_drain_and_maintenance_under_load(self):
        gate = threading.Event()
        self.addCleanup(gate.set)
        handler = gated_handler(gate)
        a = self.upstream(0, handler=handler, name="a")
        b = self.upstream(1, handler=handler, name="b")
        ids = {"a": "web-1", "b": "web-2"}
        cfg = self.with_admin(make_config([cluster("web", [a, b])], failover=NO_HEDGE))
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            load = Load(t.host, t.port, threads=2, pause=0.002).start()
            try:
                wait_until(lambda: len(a.requests) > 3 and len(b.requests) > 3, T(5),
                           what="load on both servers")
                # a slow request in flight on one of them: that one is drained
                slow = Client.to(t)
                self.addCleanup(slow.close)
                slow.request("GET", "/slow")
                wait_until(lambda: [u for u in (a, b) if any(r.target == "/slow"
                                                             for r in list(u.requests))],
                           T(5), what="the slow request at a server")
                x, y = (a, b) if any(r.target == "/slow" for r in list(a.requests)) else (b, a)
                xid, yid = ids[x.name], ids[y.name]
                self.assertGreaterEqual(server_status(ad.status(), xid)["active_requests"], 1)
                r = ad.post(f"/servers/{xid}/drain")
                self.assertEqual(r.status, 200, r)
                self.assertAdminHeaders(r)
                self.assertEqual(r.json(), {"result": "ok", "state": "draining", "servers": [xid]})
                s = wait_server(ad, xid, admin="draining", usable=False)
                self.assertEqual((s["health"], s["reason"], s["effective_weight"]),
                                 ("up", "admin", 0), s)
                self.assertGreaterEqual(s["active_requests"], 1, s)
                t0 = time.monotonic()
                nx = load.count()
                wait_until(lambda: load.count() >= nx + 40, T(10), what="40 more requests")
                after = load.since(t0)
                self.assertEqual(load.by_upstream(after), {y.name: len(after)},
                                 "a request started after the drain went to the drained server")
                started_after = {f"/load-{r[0]}-{r[1]}" for r in after}
                self.assertFalse([r for r in list(x.requests) if r.target in started_after],
                                 "the drained server received a request sent after the drain")
                wait_server(ad, xid, active_requests=1)  # only the slow one is left
                m = ad.metrics()
                self.assertEqual(m.get("trident_server_up", server=xid), 0)
                self.assertEqual(m.get("trident_server_state", server=xid, health="up",
                                       admin="draining"), 1)
                self.assertEqual(m.get("trident_upstream_active_requests", server=xid), 1)
                # the in-flight request finishes on the drained server
                gate.set()
                r = slow.read_response()
                self.assertEqual((r.status, served_by(r)), (200, x.name), r)
                wait_server(ad, xid, active_requests=0)
                # ready: traffic comes back
                r = ad.post(f"/servers/{xid}/ready")
                self.assertEqual(r.json(), {"result": "ok", "state": "ready", "servers": [xid]})
                wait_server(ad, xid, admin="ready", usable=True)
                n = len(x.requests)
                wait_until(lambda: len(x.requests) > n + 3, T(5),
                           what="traffic to the server made ready")
            finally:
                load.stop()
            self.assertEqual(load.failures(), [], "requests failed during drain/ready")
            self.assertGreater(len(load.results), 50)
            # maintenance closes the idle pooled connections to the server
            wait_server(ad, xid, active_requests=0)
            wait_until(lambda: x.open_conns, T(2), what="an open pooled connection")
            pooled = set(x.open_conns)
            r = ad.post(f"/servers/{xid}/maintenance")
            self.assertEqual(r.json(), {"result": "ok", "state": "maintenance", "servers": [xid]})
            wait_server(ad, xid, admin="maintenance", usable=False)
            wait_until(lambda: not (pooled & set(x.open_conns)), T(3),
                       what="the pooled connections to the server in maintenance closed")
            n = len(x.requests)
            self.assertEqual(spread(t, 6), {y.name: 6})
            self.assertEqual(len(x.requests), n)
            self.assertEqual(ad.metrics().get("trident_server_state", server=xid, health="up",
                                              admin="maintenance"), 1)
            self.assertEqual(ad.post(f"/servers/{xid}/ready").status, 200)
            wait_server(ad, xid, admin="ready", usable=True)
            s = spread(t, 6)
            self.assertEqual(s, {"a": 3, "b": 3})
            # each admin change is in the journal and the error log
            st = ad.status()
            entries = [j for j in st["journal"] if j["server"] == xid]
            self.assertEqual([(j["admin"], j["reason"], j["from"], j["to"]) for j in entries[:4]],
                             [(state, "admin", "up", "up")
                              for state in ("ready", "maintenance", "ready", "draining")])
            log = [e.get("msg", "") for e in t.error_lines()]
            for state in ("draining", "ready", "maintenance"):
                self.assertIn(f"admin: {TOKEN_NAME} set servers {xid} to {state}", log)
        self.assertNoUpstreamErrors()

    def test_fresh_retry_finds_the_server_in_maintenance(self):
        # The keep-alive race (a pooled connection closes as the request goes out) while the
        # server is put into maintenance: the fresh retry finds no server. The client is told
        # 502, and the server's active count ends at 0: its attempt was ended once, not twice.
        admin = {}

        def handler(ex):
            if ex.req.conn_seq >= 1:
                admin["ad"].post("/servers/web-1/maintenance")
                wait_server(admin["ad"], "web-1", admin="maintenance", usable=False)
                ex.close()
                return
            status_handler(ex)

        up = self.upstream(0, handler=handler, name="a")
        cfg = self.with_admin(make_config([cluster("web", [up])], failover=NO_HEDGE))
        with self.trident(cfg) as t, Client.to(t) as c:
            admin["ad"] = Admin.of(t)
            self.assertEqual(c.exchange("GET", "/first").status, 200)
            r = c.exchange("GET", "/second")
            self.assertErrorPage(r, 502)
            e = t.wait_for_access(lambda e: e.get("path") == "/second")
            self.assertEqual((e["status"], e["reason"]), (502, "upstream_reset"))
            self.assertEqual(server_status(admin["ad"].status(), "web-1")["active_requests"], 0)
        self.assertEqual([r.target for r in up.requests], ["/first", "/second"])

    def start_slow_request(self):
        """trident over web-1 (a, weight 100) and web-2 (b); a GET /slow is held at a until the
        returned gate is set. Returns (trident, admin, the client that sent /slow, a, gate)."""
        gate = threading.Event()
        self.addCleanup(gate.set)
        handler = gated_handler(gate)
        a = self.upstream(0, handler=handler, name="a")
        b = self.upstream(1, handler=handler, name="b")
        cfg = self.with_admin(make_config([cluster("web", [("web-1", a, 100), ("web-2", b)])],
                                          failover=NO_HEDGE))
        t = self.trident(cfg)
        t.__enter__()
        self.addCleanup(t.__exit__, None, None, None)
        ad = Admin.of(t)
        slow = Client.to(t)
        self.addCleanup(slow.close)
        slow.request("GET", "/slow")
        wait_until(lambda: any(r.target == "/slow" for r in list(a.requests)), T(5),
                   what="the slow request at a")
        return t, ad, slow, a, gate

    def test_maintenance_lets_a_request_in_flight_finish(self):
        """Maintenance stops new requests; a request already sent still gets its answer."""
        t, ad, slow, a, gate = self.start_slow_request()
        self.assertEqual(ad.post("/servers/web-1/maintenance").status, 200)
        wait_server(ad, "web-1", admin="maintenance", usable=False)
        self.assertEqual(spread(t, 4), {"b": 4})
        gate.set()
        r = slow.read_response()
        self.assertEqual((r.status, served_by(r)), (200, "a"), r)
        # the connection that carried it is not reused and does not linger
        wait_until(lambda: not a.open_conns, T(3),
                   what="no connection left open to the server in maintenance")

    def test_maintenance_after_drain_closes_the_pooled_connection(self):
        """drain then maintenance (the usual order): the connection of the request that finished
        on the drained server is closed by the maintenance at the latest."""
        t, ad, slow, a, gate = self.start_slow_request()
        self.assertEqual(ad.post("/servers/web-1/drain").status, 200)
        wait_server(ad, "web-1", admin="draining", usable=False)
        gate.set()
        r = slow.read_response()
        self.assertEqual((r.status, served_by(r)), (200, "a"), r)
        t.wait_for_access(lambda e: e.get("path") == "/slow", what="the /slow exchange finished")
        self.assertEqual(ad.post("/servers/web-1/maintenance").status, 200)
        wait_server(ad, "web-1", admin="maintenance", usable=False)
        wait_until(lambda: not a.open_conns, T(3),
                   what="no connection left open to the server in maintenance")
        self.assertEqual(spread(t, 3), {"b": 3})

    def test_maintenance_closes_websocket_tunnels_drain_does_not(self):
        def handler(ex):
            if ex.req.headers.tokens("upgrade") == ["websocket"]:
                ex.websocket_echo()
            else:
                ex.respond(200, ex.upstream.name.encode(),
                           headers=[("X-Upstream", ex.upstream.name)])

        a = self.upstream(0, handler=handler, name="a")
        b = self.upstream(1, handler=handler, name="b")
        ids = {"a": "web-1", "b": "web-2"}
        # idle tunnels must outlive every wait below (T(3) is 9 s under ASan)
        cfg = self.with_admin(make_config([cluster("web", [a, b])], failover=NO_HEDGE,
                                          timeouts={"tunnel_idle_ms": 120000}))

        def upgrades(u):
            return len([r for r in list(u.requests) if r.headers.tokens("upgrade")])

        def tunnel():
            before = {u.name: upgrades(u) for u in (a, b)}
            c = Client.to(t)
            self.addCleanup(c.close)
            key = base64.b64encode(os.urandom(16)).decode()
            c.request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                     ("Sec-WebSocket-Key", key),
                                     ("Sec-WebSocket-Version", "13")])
            r = c.read_response()
            self.assertEqual(r.status, 101, r)
            up = [u for u in (a, b) if upgrades(u) > before[u.name]]
            self.assertEqual(len(up), 1)
            return c, up[0]

        def echo(c, text):
            c.send(ws_frame(1, text))
            return ws_read_frame(c.reader)[3]

        with self.trident(cfg) as t:
            ad = Admin.of(t)
            # straight to maintenance: the tunnel closes, the one to the other server stays
            c1, x = tunnel()
            c2, y = tunnel()
            self.assertNotEqual(x, y, "two tunnels on the same server")
            self.assertEqual(ad.post(f"/servers/{ids[x.name]}/maintenance").status, 200)
            wait_server(ad, ids[x.name], admin="maintenance")
            self.assertTrue(c1.closed_by_peer(T(3)),
                            "the tunnel to the server in maintenance stayed open")
            self.assertEqual(echo(c2, b"the other one"), b"the other one")
            self.assertEqual(ad.post(f"/servers/{ids[x.name]}/ready").status, 200)
            wait_server(ad, ids[x.name], admin="ready", usable=True)
            # drain keeps the tunnel; maintenance after the drain closes it
            c3, z = tunnel()
            if z is not x:
                c3, z = tunnel()
            self.assertIs(z, x)
            self.assertEqual(ad.post(f"/servers/{ids[x.name]}/drain").status, 200)
            wait_server(ad, ids[x.name], admin="draining", usable=False)
            time.sleep(0.2)
            self.assertEqual(echo(c3, b"still there after drain"), b"still there after drain")
            self.assertEqual(ad.post(f"/servers/{ids[x.name]}/maintenance").status, 200)
            wait_server(ad, ids[x.name], admin="maintenance")
            self.assertTrue(c3.closed_by_peer(T(3)), "the tunnel to a drained server stayed "
                                                     "open when the server went into maintenance")
            self.assertEqual(echo(c2, b"the other one"), b"the other one")

    def test_cluster_and_provider_commands(self):
        ups = [self.upstream(i, name=f"u{i}") for i in range(4)]
        cfg = self.with_admin(make_config([
            cluster("ntt", ups[0:2]),
            cluster("aws-east", ups[2:3], provider="aws"),
            cluster("aws-west", ups[3:4], provider="aws")], failover=NO_HEDGE))
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            self.assertEqual(sorted(spread(t, 12)), ["u0", "u1", "u2", "u3"])
            r = ad.post("/clusters/ntt/drain")
            self.assertEqual(r.json(), {"result": "ok", "state": "draining",
                                        "servers": ["ntt-1", "ntt-2"]})
            for sid in ("ntt-1", "ntt-2"):
                wait_server(ad, sid, admin="draining", usable=False)
            st = ad.status()
            self.assertEqual((cluster_status(st, "ntt")["usable"],
                              cluster_status(st, "ntt")["servers_usable"]), (False, 0))
            self.assertEqual(spread(t, 6), {"u2": 3, "u3": 3})
            r = ad.post("/providers/aws/maintenance")
            self.assertEqual(r.json(), {"result": "ok", "state": "maintenance",
                                        "servers": ["aws-east-1", "aws-west-1"]})
            for sid in ("aws-east-1", "aws-west-1"):
                wait_server(ad, sid, admin="maintenance", usable=False)
            r = ad.healthz()
            self.assertEqual((r.status, r.json()), (503, {"status": "not serving"}))
            with Client.to(t) as c:
                r = c.exchange("GET", "/none")
            self.assertEqual(r.status, 503, r)
            r = ad.post("/servers/ntt-2/ready")
            self.assertEqual(r.json(), {"result": "ok", "state": "ready", "servers": ["ntt-2"]})
            wait_server(ad, "ntt-2", admin="ready", usable=True)
            self.assertEqual(ad.healthz().status, 200)
            self.assertEqual(spread(t, 4), {"u1": 4})
            # unknown names: 404, nothing changes
            for path in ("/servers/nope/drain", "/clusters/nope/maintenance",
                         "/providers/nope/ready", "/clusters/aws/drain", "/providers/ntt-1/drain"):
                with self.subTest(path=path):
                    r = ad.post(path)
                    self.assertAdminError(r, 404)
            st = ad.status()
            self.assertEqual([(s["id"], s["admin"]) for c in st["clusters"] for s in c["servers"]],
                             [("ntt-1", "draining"), ("ntt-2", "ready"),
                              ("aws-east-1", "maintenance"), ("aws-west-1", "maintenance")])
            # the same command twice is harmless
            self.assertEqual(ad.post("/clusters/ntt/ready").status, 200)
            self.assertEqual(ad.post("/clusters/ntt/ready").status, 200)
            self.assertEqual(ad.post("/providers/aws/ready").status, 200)
            st = wait_status(ad, lambda s: all(x["usable"] for c in s["clusters"]
                                                for x in c["servers"]), what="all usable")
            self.assertEqual(sorted(spread(t, 12)), ["u0", "u1", "u2", "u3"])
            m = ad.metrics()
            for sid in ("ntt-1", "ntt-2", "aws-east-1", "aws-west-1"):
                self.assertEqual(m.get("trident_server_state", server=sid, health="up",
                                       admin="ready"), 1)

    def test_admin_state_applies_with_active_checks(self):
        """A drained server that goes down and up stays drained; ready after that takes its
        health into account."""
        a, b, cfg = self.two_checked_providers()
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            wait_server(ad, "ntt-1", health="up")
            self.assertEqual(ad.post("/servers/ntt-1/drain").status, 200)
            wait_server(ad, "ntt-1", admin="draining", usable=False)
            a.close()
            s = wait_server(ad, "ntt-1", health="down")
            self.assertEqual((s["admin"], s["usable"]), ("draining", False))
            self.assertEqual(ad.post("/servers/ntt-1/ready").status, 200)
            s = wait_server(ad, "ntt-1", admin="ready")
            self.assertEqual((s["health"], s["usable"]), ("down", False), s)
            self.assertEqual(spread(t, 3), {"b": 3})
            a2 = self.upstream(0, name="a2", port=a.port)
            wait_server(ad, "ntt-1", health="up", usable=True)
            self.assertEqual(spread(t, 4), {"a2": 2, "b": 2})


# ---- authentication, allowlist, audit --------------------------------------------------------------

class Auth(AdminCase):

    def audit_lines(self, path):
        """The audit file's lines, parsed (bytes that are not UTF-8 show as U+FFFD)."""
        try:
            with open(path, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def test_refusals_change_nothing_and_are_audited(self):
        a = self.upstream(0, name="a")
        b = self.upstream(1, name="b")
        d = tempfile.mkdtemp(prefix="trident-audit-")
        audit = os.path.join(d, "audit.log")
        inside = self.net.client_ip(0)
        outside = self.net.client_ip(1)
        other = "another-secret-token"
        cfg = self.with_admin(make_config([cluster("ntt", [a]), cluster("gmo", [b])]),
                              tokens={TOKEN_NAME: TOKEN, "ci": other},
                              allow=[f"{inside}/32", "10.0.0.0/8"], audit_log=audit)
        with self.trident(cfg) as t:
            ad = Admin.of(t, source=inside)
            out = Admin.of(t, source=outside)
            self.assertEqual(ad.get("/status").status, 200)
            self.assertEqual(self.audit_lines(audit), [], "a GET was audited")
            calls = []

            def expect(r, status, path, token, result, method="POST", client=inside):
                calls.append((status, path, token, result, method, client))
                return self.assertAdminError(r, status) if status >= 400 else r

            # no token
            r = ad.post("/servers/ntt-1/drain", token=None)
            expect(r, 401, "/servers/ntt-1/drain", "", "no token")
            self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
            # a wrong token, a token of the wrong scheme, an empty bearer
            r = ad.post("/servers/ntt-1/drain", token=TOKEN + "x")
            expect(r, 403, "/servers/ntt-1/drain", "", "bad token")
            r = ad.call("POST", "/clusters/ntt/maintenance",
                        headers=[("Authorization", f"Basic {TOKEN}")])
            expect(r, 403, "/clusters/ntt/maintenance", "", "bad token")
            r = ad.call("POST", "/reload", headers=[("Authorization", "Bearer ")])
            self.assertIn(r.status, (401, 403))
            expect(r, r.status, "/reload", "", "no token" if r.status == 401 else "bad token")
            # a good token from outside the allowlist
            r = out.post("/providers/gmo/drain")
            expect(r, 403, "/providers/gmo/drain", "", None, client=outside)
            r = out.get("/status")
            self.assertAdminError(r, 403)
            self.assertAdminError(out.get("/metrics"), 403)
            self.assertAdminError(out.get("/healthz"), 403)
            # wrong method on a POST path (with a good token)
            r = ad.call("PUT", "/servers/ntt-1/ready", token=TOKEN)
            expect(r, 405, "/servers/ntt-1/ready", "", "method not allowed", method="PUT")
            st = ad.status()
            self.assertEqual([s["admin"] for c in st["clusters"] for s in c["servers"]],
                             ["ready", "ready"], "a refused call changed an admin state")
            self.assertEqual(st["config_generation"], 1, "a refused call reloaded")
            self.assertEqual(sorted(spread(t, 4)), ["a", "b"])
            # allowed calls, by each token
            r = ad.post("/servers/ntt-1/drain")
            expect(r, 200, "/servers/ntt-1/drain", TOKEN_NAME, "draining")
            r = ad.post("/servers/ntt-1/ready", token=other)
            expect(r, 200, "/servers/ntt-1/ready", "ci", "ready")
            r = ad.post("/servers/nobody/ready", token=other)
            expect(r, 404, "/servers/nobody/ready", "ci", "no such target")
            r = ad.post("/reload")
            expect(r, 200, "/reload", TOKEN_NAME, "reloaded")
            self.assertEqual(r.json(), {"result": "reloaded", "config_generation": 2})
            # the last call's line written: every line is there
            lines = wait_until(lambda: (lambda x: x if x and x[-1]["path"] == "/reload" and
                                        x[-1]["status"] == 200 else None)(self.audit_lines(audit)),
                               T(3), what="the audit line of the reload")
            for line in lines:
                self.assertEqual(set(line), {"ts", "audit", "token", "client", "method", "path",
                                             "status", "result"}, line)
                self.assertEqual(line["audit"], "admin")
                self.assertRegex(line["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
                self.assertRegex(line["client"], r"^127\.\d+\.\d+\.\d+:\d+$")
            got = [(x["status"], x["path"], x["token"], x["method"],
                    x["client"].rpartition(":")[0], x["result"] if res is not None else None)
                   for x, res in zip(lines, [c[3] for c in calls] + [None] * len(lines))]
            want = [(status, path, token, method, client, result)
                    for status, path, token, result, method, client in calls]
            self.maxDiff = None
            self.assertEqual(got, want, "audit lines (one per mutating call, refused ones "
                                        "included):\n" + "\n".join(map(json.dumps, lines)))
            # the audit file is not stderr: the error log holds no audit line
            self.assertFalse([e for e in t.error_lines() if e.get("audit")])
            # no token value anywhere in trident's output (read before the run's files go)
            for path in (audit, t.error_path, t.access_path):
                with open(path, "rb") as f:
                    data = f.read()
                for tok in (TOKEN, other, TOKEN + "x"):
                    self.assertNotIn(tok.encode(), data, f"a token in {path}")
        os.unlink(audit)
        os.rmdir(d)

    def test_audit_of_a_reload_names_its_token(self):
        """The audit line of a successful reload is written after the old config is gone."""
        a = self.upstream(0, name="a")
        cfg = self.with_admin(make_config([cluster("ntt", [a])]),
                              tokens={"reloader-with-a-long-name": TOKEN})
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            for gen in range(2, 102):
                if gen % 3 == 0:
                    self.assertEqual(spread(t, 2), {"a": 2})
                r = ad.reload()
                self.assertEqual(r.json(), {"result": "reloaded", "config_generation": gen})
            lines = wait_until(lambda: (lambda x: x if len(x) == 100 else None)(
                [e for e in t.error_lines() if e.get("audit") == "admin"]), T(3),
                what="a hundred audit lines")
            self.assertEqual([(e["token"], e["path"], e["status"], e["result"]) for e in lines],
                             [("reloader-with-a-long-name", "/reload", 200, "reloaded")] * 100)

    def test_audit_to_stderr_and_no_tokens_configured(self):
        a = self.upstream(0, name="a")
        cfg = self.with_admin(make_config([cluster("ntt", [a])]), tokens={})
        with self.trident(cfg) as t:
            ad = Admin.of(t)
            # no token configured: every mutating call is refused, reads still work
            self.assertEqual(ad.get("/status").status, 200)
            r = ad.post("/servers/ntt-1/drain")
            self.assertAdminError(r, 403)
            r = ad.post("/reload", token=None)
            self.assertAdminError(r, 401)
            self.assertEqual(server_status(ad.status(), "ntt-1")["admin"], "ready")

            def audit():
                lines = [e for e in t.error_lines() if e.get("audit") == "admin"]
                return lines if len(lines) >= 2 else None
            lines = wait_until(audit, T(3), what="two audit lines on stderr")
            self.assertEqual([(e["path"], e["status"], e["token"], e["result"]) for e in lines],
                             [("/servers/ntt-1/drain", 403, "", "bad token"),
                              ("/reload", 401, "", "no token")])
            self.assertNotIn(TOKEN, t.error_log())

    def test_allowlist_cidr(self):
        a = self.upstream(0, name="a")
        # the /28 holds client_ip(0) = .200 (192..207) but not client_ip(10) = .210
        cfg = self.with_admin(make_config([cluster("ntt", [a])]),
                              allow=[f"{self.net.ip(192)}/28"])
        with self.trident(cfg) as t:
            self.assertEqual(Admin.of(t, source=self.net.client_ip(0)).get("/healthz").status,
                             200)
            self.assertEqual(Admin.of(t, source=self.net.client_ip(7)).get("/healthz").status,
                             200)
            r = Admin.of(t, source=self.net.client_ip(10)).get("/healthz")
            self.assertAdminError(r, 403)
            r = Admin.of(t, source="127.0.0.1").get("/status")
            self.assertAdminError(r, 403)

    def test_slow_peers_cannot_hold_the_endpoint(self):
        # Idle timeouts alone let a peer that sends a byte now and then keep its connection for
        # hours. Peers outside `allow` get only some of the 32 connections, and every
        # connection has a whole deadline (5 s).
        a = self.upstream(0, name="a")
        cfg = self.with_admin(make_config([cluster("ntt", [a])]),
                              allow=[f"{self.net.client_ip(0)}/32"])
        with self.trident(cfg) as t:
            ad = Admin.of(t, source=self.net.client_ip(0))
            denied = [Client(ad.host, ad.port, source=self.net.client_ip(10)) for _ in range(32)]
            slow = Client(ad.host, ad.port, source=self.net.client_ip(0))
            for c in denied + [slow]:
                self.addCleanup(c.close)
            head = b"GET /healthz HTTP/1.1\r\nHost: admin\r\n" + b"X: y\r\n" * 200
            start = time.monotonic()

            def drip(i):
                for c in denied + [slow]:
                    try:
                        c.send(head[i:i + 1])
                    except OSError:
                        pass  # closed by trident: what the test expects sooner or later

            drip(0)
            self.assertEqual(ad.healthz().status, 200, "slow peers outside `allow` took every slot")
            i = 1
            # the allowed peer's head never completes: anything it reads is the deadline's 408
            while (not select.select([slow.sock], [], [], 0.3)[0] and
                   time.monotonic() - start < 5 + T(4)):
                drip(i)
                i += 1
            self.assertLess(time.monotonic() - start, 5 + T(4), "a dripping peer kept its slot")
            self.assertEqual(slow.read_response().status, 408)
            self.assertEqual(ad.healthz().status, 200)



if __name__ == "__main__":
    unittest.main()
