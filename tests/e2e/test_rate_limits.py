"""Rate limits: requests per client address or per header value (an API key), answered 429 with
Retry-After and trident's JSON error once over; counted in each process's buckets and, when
shared, across instances through Redis (one script call per request, Redis's clock); with Redis
away each instance goes on alone. Keys in Redis are digests: an API key never reaches it."""
import unittest

from adminlib import Admin, admin_section, wait_status
from harness import Client, E2ETestCase, T, cluster, make_config, wait_until
from redislib import redis_section, start_redis


def limit(name, requests, per_s=60, **kw):
    return dict({"name": name, "requests": requests, "per_s": per_s}, **kw)


class RateLimits(E2ETestCase):

    def config(self, limits, redis=None, instance="a"):
        up = self.upstream(0)
        cfg = make_config([cluster("ntt", [up])], workers=2)
        cfg["rate_limits"] = limits
        cfg["instance_id"] = instance
        if redis is not None:
            cfg["redis"] = redis
        return cfg, up

    def start(self, cfg, host=None):
        t = self.trident(cfg, host=host).__enter__()
        self.addCleanup(t.__exit__, None, None, None)
        return t

    def get(self, t, target="/", source=None, headers=()):
        with Client.to(t, source=source) as c:
            return c.exchange("GET", target, [("Host", "app.test"), *headers])

    def assertLimited(self, t, r, name):
        self.assertErrorPage(r, 429, closes=False)
        self.assertGreaterEqual(int(r.headers.get("retry-after")), 1)
        e = t.wait_for_access(lambda e: e.get("request_id") == r.headers.get("x-request-id"))
        self.assertEqual((e["status"], e.get("reason"), e.get("rule")), (429, "rate_limited", name))

    def test_per_client_address(self):
        cfg, up = self.config([limit("per-ip", 5)])
        t = self.start(cfg)
        a, b = self.net.client_ip(0), self.net.client_ip(1)
        self.assertEqual([self.get(t, source=a).status for _ in range(5)], [200] * 5)
        self.assertLimited(t, self.get(t, "/sixth", source=a), "per-ip")
        self.assertEqual(self.get(t, source=b).status, 200, "another address was limited")
        self.assertNotIn("/sixth", [r.target for r in up.requests])

    def test_429_keeps_the_connection(self):
        cfg, _ = self.config([limit("per-ip", 1)])
        t = self.start(cfg)
        with Client.to(t) as c:
            self.assertEqual(c.exchange("GET", "/1").status, 200)
            r = c.exchange("GET", "/2")
            self.assertErrorPage(r, 429, closes=False)
            self.assertEqual(c.exchange("GET", "/3").status, 429)  # same connection, still open

    def test_per_header_value_and_route(self):
        cfg, _ = self.config([limit("api-keys", 3, key="header:X-Api-Key", path_prefix="/api/")])
        t = self.start(cfg)
        k1, k2 = [("X-Api-Key", "k1-secret")], [("X-Api-Key", "k2-secret")]
        self.assertEqual([self.get(t, "/api/x", headers=k1).status for _ in range(3)], [200] * 3)
        self.assertLimited(t, self.get(t, "/api/x", headers=k1), "api-keys")
        self.assertEqual(self.get(t, "/api/x", headers=k2).status, 200)
        self.assertEqual(self.get(t, "/api/x").status, 200, "a request without the key was limited")
        self.assertEqual(self.get(t, "/other", headers=k1).status, 200, "outside its route")

    def test_refills(self):
        # one every 500 ms: three requests (new connections, maybe under ASan on a busy
        # machine) come well within that, so the third finds the burst spent
        cfg, _ = self.config([limit("fast", 2, per_s=1, burst=2)])
        t = self.start(cfg)
        self.assertEqual([self.get(t).status for _ in range(2)], [200, 200])
        self.assertEqual(self.get(t).status, 429)
        wait_until(lambda: self.get(t).status == 200, T(3), interval=0.05, what="a refill")

    def test_shared_across_instances_through_redis(self):
        r = start_redis(self, self.net.ip(50))
        lim = [limit("api-keys", 6, key="header:X-Api-Key")]
        cfg_a, _ = self.config(lim, redis_section(r), "a")
        cfg_b, _ = self.config(lim, redis_section(r), "b")
        cfg_a["admin"] = admin_section(self.net, host_index=2)
        cfg_b["admin"] = admin_section(self.net, host_index=3)
        ta, tb = self.start(cfg_a), self.start(cfg_b, host=self.net.ip(4))
        # every connection of both, each worker's above all: a worker not connected yet counts
        # its requests alone, and the fleet's count would miss them
        for t in (ta, tb):
            wait_status(Admin.of(t), lambda st: st["redis"]["state"] == "connected", T(10),
                        what="every Redis connection of the instance up")
        key = [("X-Api-Key", "shared-secret-123")]
        got = [self.get(t, "/s", headers=key).status for t in (ta, tb) * 3]
        self.assertEqual(got, [200] * 6)
        # each instance alone has seen 3 of 6: only the fleet's count refuses the 7th
        self.assertLimited(ta, self.get(ta, "/s7", headers=key), "api-keys")
        self.assertLimited(tb, self.get(tb, "/s8", headers=key), "api-keys")
        keys = r.keys("trident:rl:*")
        self.assertEqual(len(keys), 1, keys)
        self.assertRegex(keys[0], r"^trident:rl:api-keys:[0-9a-f]{32}$")
        self.assertNotIn("shared-secret-123", repr(r.dump()))

    def test_shared_limit_then_a_session_lookup(self):
        # both ask Redis before the first attempt: the rate verdict, then the session's server
        r = start_redis(self, self.net.ip(52))
        cfg, up = self.config([limit("per-ip", 100)], redis_section(r))
        cfg["affinity"] = {"source": "app", "cookie": "sid", "cache_ms": 0}
        t = self.start(cfg)
        wait_until(lambda: r.cmd("CLIENT", "LIST").count("\n") >= 2, T(10),
                   what="the workers connected to Redis")
        for i in range(4):
            resp = self.get(t, f"/s{i}", headers=[("Cookie", "sid=abc")])
            self.assertEqual(resp.status, 200, resp)
        self.assertTrue(r.keys("trident:rl:*"), "the rate limit never reached Redis")

    def test_redis_away_each_instance_counts_alone(self):
        r = start_redis(self, self.net.ip(51))
        cfg, _ = self.config([limit("per-ip", 4)], redis_section(r))
        cfg["admin"] = admin_section(self.net)
        t = self.start(cfg)
        adm = Admin.of(t)
        r.kill()
        # no failure, no stall: the local bucket decides
        self.assertEqual([self.get(t).status for _ in range(4)], [200] * 4)
        self.assertEqual(self.get(t).status, 429)
        self.assertGreaterEqual(adm.status()["rate_limits"]["decided_locally"], 4)
        self.assertIn("trident_rate_limit_local_total", adm.metrics_text())


if __name__ == "__main__":
    unittest.main()
