"""Configuration reload (POST /reload and SIGHUP): no request lost under load, the new config taking
effect for new connections while in-flight requests finish on the old one, invalid and refused
reloads keeping the old config and saying why, listeners added/removed/kept, admin states kept."""
import copy
import json
import os
import signal
import socket
import tempfile
import threading
import time
import unittest

from harness import (Client, E2ETestCase, T, closed_port_address, cluster, free_port,
                     make_config, wait_until, NO_PASSIVE)
from healthlib import CheckControl, health, served_by, spread, wait_transition
from adminlib import (Admin, Load, admin_section, connect_refused, listener_status,
                      server_status, wait_server, wait_status, write_config)

NO_HEDGE = {"hedge": False}


def named_handler(gate=None):
    """200 naming the upstream; /slow waits for gate; /sleep/MS sleeps MS ms."""
    def h(ex):
        path = ex.req.target.split("?")[0]
        if path == "/slow" and gate is not None:
            gate.wait(T(20))
        elif path.startswith("/sleep/"):
            time.sleep(int(path.split("/")[2]) / 1000)
        try:
            ex.respond(200, f"{ex.upstream.name} {ex.req.target}".encode(),
                       headers=[("X-Upstream", ex.upstream.name)])
        except OSError:
            ex.close()
    return h


def msgs(t):
    return [e.get("msg", "") for e in t.error_lines()]


class ReloadCase(E2ETestCase):

    def start(self, cfg, admin=True, **kw):
        if admin:
            cfg["admin"] = admin_section(self.net, **kw)
        return self.trident(cfg)

    def rewrite(self, t, change):
        """Write the running config as change(cfg) edits it (in place) to t's config file; return
        what was written."""
        cfg = copy.deepcopy(t.config)
        change(cfg)
        write_config(t.config_path, cfg)
        return cfg

    def reload_ok(self, ad, gen):
        r = ad.reload()
        self.assertEqual(r.status, 200, (r, r.body))
        self.assertEqual(r.json(), {"result": "reloaded", "config_generation": gen})
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        return time.monotonic()

    def reload_refused(self, ad, detail_part):
        r = ad.reload()
        self.assertEqual(r.status, 400, (r, r.body))
        body = r.json()
        self.assertEqual((body["status"], body["error"]), (400, "Bad Request"), body)
        self.assertIn(detail_part, body["detail"])
        return body["detail"]


def set_weights(**weights):
    def change(cfg):
        for c in cfg["clusters"]:
            if c["name"] in weights:
                c["weight"] = weights[c["name"]]
    return change


class ReloadUnderLoad(ReloadCase):

    def test_reloads_under_load_lose_no_request(self):
        a = self.upstream(0, handler=named_handler(), name="a")
        b = self.upstream(1, handler=named_handler(), name="b")
        c = self.upstream(2, handler=named_handler(), name="c")
        cfg = make_config([cluster("ntt", [a]), cluster("gmo", [b])], workers=2,
                          failover=NO_HEDGE)
        aws = cluster("aws", [c])
        with self.start(cfg) as t:
            ad = Admin.of(t)
            fresh = Load(t.host, t.port, threads=3, path="/fresh", pause=0.001).start()
            kept = Load(t.host, t.port, threads=1, path="/kept", keepalive=True, per_conn=25,
                        pause=0.001).start()
            try:
                wait_until(lambda: fresh.count() > 30 and kept.count() > 10, T(5),
                           what="load running")
                # gen 2: a new cluster takes traffic
                self.rewrite(t, lambda cfg: cfg["clusters"].append(copy.deepcopy(aws)))
                self.reload_ok(ad, 2)
                c.wait_requests(3)
                # gen 3: only the new cluster, for connections opened from now on
                def only_aws(cfg):
                    cfg["clusters"].append(copy.deepcopy(aws))
                    set_weights(ntt=0, gmo=0)(cfg)
                self.rewrite(t, only_aws)
                t3 = self.reload_ok(ad, 3)
                n = fresh.count()
                wait_until(lambda: fresh.count() > n + 30, T(5), what="30 more requests")
                after = fresh.since(t3)
                self.assertEqual(fresh.by_upstream(after), {"c": len(after)},
                                 "new connections after the reload used the old weights")
                # gen 4: the new cluster removed again
                self.rewrite(t, lambda cfg: None)
                t4 = self.reload_ok(ad, 4)
                n = fresh.count()
                wait_until(lambda: fresh.count() > n + 30, T(5), what="30 more requests")
                after = fresh.since(t4)
                self.assertNotIn("c", fresh.by_upstream(after))
                self.assertEqual(sorted(fresh.by_upstream(after)), ["a", "b"])
                # gens 5-9 in a row, alternating
                for gen in range(5, 10):
                    if gen % 2:
                        self.rewrite(t, lambda cfg: cfg["clusters"].append(copy.deepcopy(aws)))
                    else:
                        self.rewrite(t, set_weights(ntt=3))
                    self.reload_ok(ad, gen)
                    n = fresh.count()
                    wait_until(lambda: fresh.count() > n + 20, T(5), what="20 more requests")
            finally:
                fresh.stop()
                kept.stop()
            self.assertEqual(fresh.failures() + kept.failures(), [],
                             "requests failed during reloads")
            total = len(fresh.results) + len(kept.results)
            self.assertGreater(total, 200)
            st = ad.status()
            self.assertEqual(st["config_generation"], 9)
            self.assertEqual(ad.metrics().get("trident_config_generation"), 9)
            # counters carry over reloads: the listener counted every request
            self.assertEqual(listener_status(st, f"{t.host}:{t.port}")["requests"], total)
            served = sum(server_status(st, sid)["responses"]["2xx"] for sid in ("ntt-1", "gmo-1"))
            self.assertEqual(served + len(c.requests), total)
            log = msgs(t)
            for gen in range(2, 10):
                self.assertIn(f"configuration reloaded from {t.config_path} (generation {gen})",
                              log)
        self.assertNoUpstreamErrors()

    def test_new_settings_apply_to_new_connections(self):
        a = self.upstream(0, handler=named_handler(), name="a")
        b = self.upstream(1, handler=named_handler(), name="b")
        cfg = make_config([cluster("web", [("web-1", a), ("web-2", b)])],
                          failover={"hedge": False, "retries": 0})
        cfg["clusters"][0]["passive"] = dict(NO_PASSIVE)
        with self.start(cfg) as t:
            ad = Admin.of(t)
            self.assertEqual(spread(t, 4), {"a": 2, "b": 2})
            with Client.to(t) as cl:
                self.assertEqual(cl.exchange("GET", "/sleep/400").status, 200)

            def change(cfg):
                cfg["clusters"][0]["servers"][0]["weight"] = 0
                cfg["timeouts"]["upstream_response_ms"] = 150
            self.rewrite(t, change)
            self.reload_ok(ad, 2)
            self.assertEqual(spread(t, 4), {"b": 4})
            s = server_status(ad.status(), "web-1")
            self.assertEqual((s["weight"], s["effective_weight"]), (0, 0), s)
            with Client.to(t) as cl:
                r = cl.exchange("GET", "/sleep/400")
            self.assertEqual(r.status, 504, r)
            self.assertEqual(wait_status(ad, lambda s: s["outcomes"]["upstream_timeout"] == 1,
                                         what="upstream_timeout 1")["config_generation"], 2)

    def test_in_flight_requests_finish_on_the_old_config(self):
        gate = threading.Event()
        self.addCleanup(gate.set)
        a = self.upstream(0, handler=named_handler(gate), name="a")
        b = self.upstream(1, handler=named_handler(gate), name="b")
        cfg = make_config([cluster("ntt", [a]), cluster("gmo", [b], weight=0)],
                          failover=NO_HEDGE)
        with self.start(cfg) as t:
            ad = Admin.of(t)
            slow = Client.to(t)
            self.addCleanup(slow.close)
            slow.request("GET", "/slow")
            a.wait_requests(1)
            # ntt disappears, gmo takes everything; the old listener config is the same
            self.rewrite(t, lambda cfg: cfg.update(clusters=[cluster("gmo", [b])]))
            self.reload_ok(ad, 2)
            self.assertEqual(spread(t, 3), {"b": 3})
            st = ad.status()
            self.assertEqual([c["name"] for c in st["clusters"]], ["gmo"])
            gate.set()
            r = slow.read_response()
            self.assertEqual((r.status, served_by(r), r.body), (200, "a", b"a /slow"), r)
            e = t.wait_for_access(lambda e: e.get("path") == "/slow")
            self.assertEqual((e["status"], e["server"]), (200, "ntt-1"))

    def test_a_passive_ejection_survives_a_reload(self):
        # the reason a server is out is carried with its state: out by passive evidence alone,
        # it is still tried (panic routing) after a reload, not answered 503
        dead = closed_port_address(self.net.upstream_ip(0))
        with self.start(make_config([cluster("ntt", [dead])])) as t:
            ad = Admin.of(t)
            with Client.to(t) as c:
                self.assertEqual(c.exchange("GET", "/first").status, 502)
            wait_transition(t, "ntt-1", "down", "passive: connections refused or reset")
            self.reload_ok(ad, 2)
            s = server_status(ad.status(), "ntt-1")
            self.assertEqual((s["health"], s["reason"]),
                             ("down", "passive: connections refused or reset"))
            with Client.to(t) as c:
                self.assertEqual(c.exchange("GET", "/second").status, 502)
            self.assertEqual(ad.status()["outcomes"].get("panic"), 1)

    def test_checks_removed_by_a_reload_leave_no_server_waiting_for_them(self):
        # the first check never answers (the server stays unknown); a reload drops the
        # cluster's checks: an unchecked server counts as up, so it takes requests at once
        ctl = CheckControl()
        self.addCleanup(ctl.close)
        up = self.upstream(0, handler=ctl.handler, name="a")
        ck = cluster("web", [up])
        ck["health"] = health(timeout_ms=60000)
        with ctl.cond:
            ctl.stepping = True  # every check waits for a step, and none is given
        with self.start(make_config([ck], failover={"startup_wait_ms": 0})) as t:
            ad = Admin.of(t)
            self.assertEqual(server_status(ad.status(), "web-1")["health"], "unknown")
            self.rewrite(t, lambda cfg: cfg["clusters"][0].pop("health"))
            self.reload_ok(ad, 2)
            with Client.to(t) as c:
                r = c.exchange("GET", "/after")
            self.assertEqual((r.status, served_by(r)), (200, "a"), r)

    def test_admin_states_survive_a_reload(self):
        a = self.upstream(0, handler=named_handler(), name="a")
        b = self.upstream(1, handler=named_handler(), name="b")
        c = self.upstream(2, handler=named_handler(), name="c")
        cfg = make_config([cluster("ntt", [a]), cluster("gmo", [b]), cluster("aws", [c])],
                          failover=NO_HEDGE)
        with self.start(cfg) as t:
            ad = Admin.of(t)
            self.assertEqual(ad.post("/servers/ntt-1/drain").status, 200)
            self.assertEqual(ad.post("/servers/gmo-1/maintenance").status, 200)
            wait_server(ad, "gmo-1", admin="maintenance")
            wait_server(ad, "ntt-1", admin="draining")
            self.rewrite(t, set_weights(aws=2, ntt=5))
            self.reload_ok(ad, 2)
            st = ad.status()
            self.assertEqual([(s["id"], s["admin"], s["usable"]) for cl in st["clusters"]
                              for s in cl["servers"]],
                             [("ntt-1", "draining", False), ("gmo-1", "maintenance", False),
                              ("aws-1", "ready", True)])
            self.assertEqual(spread(t, 4), {"c": 4})
            self.assertEqual(ad.post("/servers/ntt-1/ready").status, 200)
            wait_server(ad, "ntt-1", admin="ready", usable=True)
            self.assertEqual(sorted(spread(t, 14)), ["a", "c"])


class OlderConnections(ReloadCase):
    """A client connection opened before a reload keeps its generation for requests in flight;
    but what the admin and the health checks decide after the reload must still apply to it."""

    def test_drain_after_a_reload_applies_to_older_connections(self):
        a = self.upstream(0, handler=named_handler(), name="a")
        b = self.upstream(1, handler=named_handler(), name="b")
        cfg = make_config([cluster("web", [a, b])], failover=NO_HEDGE)
        with self.start(cfg) as t:
            ad = Admin.of(t)
            old = Client.to(t)
            self.addCleanup(old.close)
            self.assertEqual(old.exchange("GET", "/first").status, 200)
            self.reload_ok(ad, 2)
            self.assertEqual(ad.post("/servers/web-1/drain").status, 200)
            wait_server(ad, "web-1", admin="draining", usable=False)
            got = []
            for i in range(6):
                r = old.exchange("GET", f"/old{i}")
                self.assertEqual(r.status, 200, r)
                got.append(served_by(r))
            self.assertEqual(got, ["b"] * 6,
                             "a connection opened before the reload still sends new requests to "
                             "the server drained after it")

    def test_server_down_after_a_reload_is_avoided_by_older_connections(self):
        a = self.upstream(0, handler=named_handler(), name="a")
        b = self.upstream(1, handler=named_handler(), name="b")
        web = cluster("web", [a, b])
        web["health"] = health(type="tcp")
        with self.start(make_config([web], failover=NO_HEDGE)) as t:
            ad = Admin.of(t)
            wait_server(ad, "web-1", health="up")
            old = Client.to(t)
            self.addCleanup(old.close)
            self.assertEqual(old.exchange("GET", "/first").status, 200)
            self.reload_ok(ad, 2)
            a.close()
            wait_server(ad, "web-1", health="down", usable=False)
            for i in range(6):
                self.assertEqual(old.exchange("GET", f"/old{i}").status, 200)
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/old"), count=6)
            self.assertEqual([(e["attempts"], e["server"]) for e in lines], [(1, "web-2")] * 6,
                             "a connection opened before the reload still tries the server "
                             "that went down after it")


class InvalidReloads(ReloadCase):

    def test_invalid_files_keep_the_old_config(self):
        a = self.upstream(0, handler=named_handler(), name="a")
        b = self.upstream(1, handler=named_handler(), name="b")
        cfg = make_config([cluster("ntt", [a]), cluster("gmo", [b])], failover=NO_HEDGE)
        d = tempfile.mkdtemp(prefix="trident-reload-")
        garbage = os.path.join(d, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a certificate\n")
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        busy.bind((self.net.ip(4), 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        busy_addr = f"{self.net.ip(4)}:{busy.getsockname()[1]}"
        new_port = free_port(self.net.ip(3))
        good = f"{self.net.ip(3)}:{new_port}"

        def tls_listener(cert):
            def change(cfg):
                cfg["listeners"].append({"address": good, "tls": {"certificates": [
                    {"cert": cert, "key": cert}]}})
            return change

        def add_key(where, key, value):
            def change(cfg):
                where(cfg)[key] = value
            return change

        with self.start(cfg) as t:
            ad = Admin.of(t)
            path = t.config_path
            self.assertEqual(spread(t, 4), {"a": 2, "b": 2})
            cases = [
                ("bad JSON", "{ \"workers\": 1, not json", f"{path}: line 1 column "),
                ("truncated", json.dumps(t.config)[:-3], f"{path}: line "),
                ("empty", "", f"{path}: "),
                ("unknown top-level key", add_key(lambda c: c, "bogus", 1),
                 f"{path}: bogus: unknown key"),
                ("unknown nested key",
                 add_key(lambda c: c["clusters"][1]["servers"][0], "colour", "red"),
                 f"{path}: clusters[1].servers[0].colour: unknown key"),
                ("wrong type", add_key(lambda c: c["clusters"][0], "weight", "heavy"),
                 f"{path}: clusters[0].weight: expected an integer"),
                ("duplicate server id",
                 lambda c: c["clusters"][1]["servers"].append(
                     {"id": "ntt-1", "address": b.address}),
                 f"{path}: clusters[1].servers[1].id: "),
                ("missing certificate", tls_listener(os.path.join(d, "missing.pem")),
                 f"{path}: listeners[1].tls.certificates[0].cert: "),
                ("unreadable certificate", tls_listener(garbage),
                 f"{path}: listeners[1].tls.certificates[0].cert: "),
            ]
            for name, change, detail in cases:
                with self.subTest(name):
                    if isinstance(change, str):
                        write_config(path, change)
                    else:
                        self.rewrite(t, change)
                    r = ad.reload()
                    self.assertEqual(r.status, 400, (r, r.body))
                    body = r.json()
                    self.assertEqual((body["status"], body["error"]), (400, "Bad Request"))
                    self.assertTrue(body["detail"].startswith(detail),
                                    f"detail {body['detail']!r}, wanted it to start with "
                                    f"{detail!r}")
                    # nothing changed: same generation, same clusters, still serving
                    st = ad.status()
                    self.assertEqual(st["config_generation"], 1)
                    self.assertEqual([c["name"] for c in st["clusters"]], ["ntt", "gmo"])
                    self.assertEqual([l["address"] for l in st["listeners"]],
                                     [f"{t.host}:{t.port}"])
                    self.assertEqual(spread(t, 2), {"a": 1, "b": 1})
                    self.assertTrue(connect_refused(self.net.ip(3), new_port))
            # a listener that cannot bind: the address and the error
            self.rewrite(t, lambda c: c["listeners"].append({"address": busy_addr}))
            detail = self.reload_refused(ad, busy_addr)
            self.assertIn("Address already in use", detail)
            self.assertEqual(ad.status()["config_generation"], 1)
            self.assertEqual(spread(t, 2), {"a": 1, "b": 1})
            # every attempt audited with its status and reason (stderr: the default audit log)
            audit = [e for e in t.error_lines() if e.get("audit") == "admin"]
            self.assertEqual([(e["path"], e["status"]) for e in audit],
                             [("/reload", 400)] * (len(cases) + 1))
            self.assertTrue(all(e["result"] for e in audit))
            # a good file after all that
            self.rewrite(t, lambda c: None)
            self.reload_ok(ad, 2)
            self.assertEqual(spread(t, 2), {"a": 1, "b": 1})
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)

    def test_refused_changes_say_why(self):
        a = self.upstream(0, handler=named_handler(), name="a")
        cfg = make_config([cluster("ntt", [a])])
        d = tempfile.mkdtemp(prefix="trident-reload-")
        self.addCleanup(lambda: os.rmdir(d) if os.path.isdir(d) and not os.listdir(d) else None)
        with self.start(cfg) as t:
            ad = Admin.of(t)
            moved = admin_section(self.net, host_index=5)["address"]
            cases = [
                (lambda c: c.update(workers=2),
                 "workers: changing the number of workers needs a restart"),
                (lambda c: c["admin"].update(address=moved),
                 "admin: adding, removing or moving the admin endpoint needs a restart"),
                (lambda c: c.pop("admin"),
                 "admin: adding, removing or moving the admin endpoint needs a restart"),
                (lambda c: c.update(log={"access": os.path.join(d, "access.log")}),
                 "log.access: switching between stdout, off and a file needs a restart"),
                (lambda c: c.update(log={"access": "off"}),
                 "log.access: switching between stdout, off and a file needs a restart"),
            ]
            for change, why in cases:
                with self.subTest(why):
                    self.rewrite(t, change)
                    detail = self.reload_refused(ad, why)
                    self.assertTrue(detail.startswith(f"{t.config_path}: {why}"), detail)
                    self.assertEqual(ad.status()["config_generation"], 1)
                    mh, mp = moved.rsplit(":", 1)
                    self.assertTrue(connect_refused(mh, int(mp)), "the admin endpoint moved")
            self.assertFalse(os.path.exists(os.path.join(d, "access.log")))
            self.assertEqual(ad.status()["workers"], 1)
            # still proxying and logging to stdout
            self.assertEqual(spread(t, 2, "/still"), {"a": 2})
            t.wait_for_access(lambda e: e.get("path") == "/still1")
            self.rewrite(t, lambda c: None)
            self.reload_ok(ad, 2)


class Listeners(ReloadCase):

    def test_listeners_added_removed_and_kept(self):
        gate = threading.Event()
        self.addCleanup(gate.set)
        a = self.upstream(0, handler=named_handler(gate), name="a")
        h1, h2, h3 = self.net.ip(1), self.net.ip(6), self.net.ip(7)
        l1 = f"{h1}:{free_port(h1)}"
        l2 = f"{h2}:{free_port(h2)}"
        l3 = f"{h3}:{free_port(h3)}"
        cfg = make_config([cluster("ntt", [a])], workers=2)
        cfg["listeners"] = [{"address": l1}, {"address": l2}]

        def hp(addr):
            h, _, p = addr.rpartition(":")
            return h, int(p)

        def get_on(addr, path="/"):
            with Client(*hp(addr)) as c:
                return c.exchange("GET", path)

        with self.start(cfg) as t:
            ad = Admin.of(t)
            self.assertEqual(get_on(l2).status, 200)
            self.assertTrue(connect_refused(*hp(l3)))
            # every request on the kept listener opens its own connection
            hammer = Load(*hp(l1), threads=2, path="/kept", pause=0.0).start()
            slow = Client(*hp(l2))
            self.addCleanup(slow.close)
            try:
                slow.request("GET", "/slow")
                a.wait_requests(2)
                # l2 goes, l3 comes
                self.rewrite(t, lambda c: c.update(listeners=[{"address": l1}, {"address": l3}]))
                self.reload_ok(ad, 2)
                r = get_on(l3, "/on-l3")
                self.assertEqual((r.status, served_by(r)), (200, "a"), r)
                wait_until(lambda: connect_refused(*hp(l2)), T(3),
                           what="the removed listener refusing connections")
                st = ad.status()
                self.assertEqual([l["address"] for l in st["listeners"]], [l1, l3])
                self.assertEqual(listener_status(st, l3)["requests"], 1)
                # the request in flight on the removed listener finishes
                gate.set()
                r = slow.read_response()
                self.assertEqual((r.status, r.body), (200, b"a /slow"), r)
                # more reloads: l3 out and in again; l1 never refuses
                for gen in range(3, 9):
                    if gen % 2:
                        self.rewrite(t, lambda c: c.update(listeners=[{"address": l1}]))
                    else:
                        self.rewrite(t, lambda c: c.update(
                            listeners=[{"address": l1}, {"address": l3}]))
                    self.reload_ok(ad, gen)
                    n = hammer.count()
                    wait_until(lambda: hammer.count() > n + 5, T(5), what="hammer going")
                self.assertEqual(get_on(l3).status, 200)
            finally:
                hammer.stop()
            self.assertEqual(hammer.failures(), [],
                             "the kept listener failed a connection during reloads")
            self.assertGreater(len(hammer.results), 30)
            st = ad.status()
            self.assertEqual([l["address"] for l in st["listeners"]], [l1, l3])
            self.assertEqual(listener_status(st, l1)["requests"], len(hammer.results))
            self.assertEqual(listener_status(st, l1)["connections_total"],
                             len(hammer.results) + 1)  # + the harness's readiness probe
        self.assertNoUpstreamErrors()


class Sighup(ReloadCase):

    def hup(self, t):
        t.proc.send_signal(signal.SIGHUP)

    def test_sighup_reloads_like_post(self):
        a = self.upstream(0, handler=named_handler(), name="a")
        b = self.upstream(1, handler=named_handler(), name="b")
        cfg = make_config([cluster("ntt", [a])], failover=NO_HEDGE)
        with self.start(cfg) as t:
            ad = Admin.of(t)
            path = t.config_path
            self.assertEqual(spread(t, 2), {"a": 2})
            # a good file
            self.rewrite(t, lambda c: c["clusters"].append(cluster("gmo", [b])))
            self.hup(t)
            wait_until(lambda: f"configuration reloaded from {path} (generation 2)" in msgs(t),
                       T(5), what="the reload logged")
            st = ad.status()
            self.assertEqual((st["config_generation"], [c["name"] for c in st["clusters"]]),
                             (2, ["ntt", "gmo"]))
            self.assertEqual(spread(t, 4), {"a": 2, "b": 2})
            # a bad file: logged, nothing changes
            write_config(path, "{ oops")
            self.hup(t)
            line = wait_until(lambda: [m for m in msgs(t) if m.startswith("SIGHUP: ")], T(5),
                              what="the failed reload logged")[0]
            self.assertTrue(line.startswith(f"SIGHUP: {path}: line 1 column "), line)
            self.assertTrue(line.endswith("; keeping the current configuration"), line)
            self.assertEqual([e["level"] for e in t.error_lines()
                              if e.get("msg", "").startswith("SIGHUP: ")], ["error"])
            # an unknown key: the JSON path is named
            self.rewrite(t, lambda c: c["clusters"][0].update(colour="red"))
            self.hup(t)
            wait_until(lambda: f"SIGHUP: {path}: clusters[0].colour: unknown key; keeping the "
                               "current configuration" in msgs(t), T(5),
                       what="the unknown key logged")
            # a refused change
            self.rewrite(t, lambda c: c.update(workers=3))
            self.hup(t)
            wait_until(lambda: f"SIGHUP: {path}: workers: changing the number of workers needs "
                               "a restart; keeping the current configuration" in msgs(t), T(5),
                       what="the refused reload logged")
            st = ad.status()
            self.assertEqual((st["config_generation"], st["workers"]), (2, 1))
            self.assertEqual(spread(t, 4), {"a": 2, "b": 2})
            # POST and SIGHUP share the generation count
            self.rewrite(t, lambda c: None)
            self.reload_ok(ad, 3)
            self.rewrite(t, lambda c: c.update(clusters=[cluster("gmo", [b])]))
            self.hup(t)
            wait_until(lambda: f"configuration reloaded from {path} (generation 4)" in msgs(t),
                       T(5), what="generation 4 logged")
            self.assertEqual(ad.status()["config_generation"], 4)
            self.assertEqual(spread(t, 3), {"b": 3})
            self.assertTrue(t.alive())

    def test_sighup_cannot_add_an_admin_endpoint(self):
        a = self.upstream(0, handler=named_handler(), name="a")
        with self.start(make_config([cluster("ntt", [a])]), admin=False) as t:
            sec = admin_section(self.net)
            self.rewrite(t, lambda c: c.update(admin=sec))
            t.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: f"SIGHUP: {t.config_path}: admin: adding, removing or moving the "
                               "admin endpoint needs a restart; keeping the current configuration"
                               in msgs(t),
                       T(5), what="the refused reload logged")
            host, port = sec["address"].rsplit(":", 1)
            self.assertTrue(connect_refused(host, int(port)))
            self.assertEqual(spread(t, 2), {"a": 2})


if __name__ == "__main__":
    unittest.main()
