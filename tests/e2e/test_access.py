"""Access rules at the edge: path normalisation, client CIDRs, method allowlists, per-rule body
limits, encoded slashes. Each refusal is asserted on the client side (status, JSON error with the
request id, connection closed), in the access log (reason and rule), and on the upstream: a refused
request never reaches it."""
import unittest

from harness import Client, E2ETestCase, cluster, free_port, make_config


def access_config(up, net, rules, **access):
    cfg = make_config([cluster("ntt", [up])], workers=2)
    host = net.listener_ip()
    cfg["listeners"] = [{"name": "public", "address": f"{host}:{free_port(host)}"}]
    cfg["access"] = dict(access, rules=rules)
    return cfg


ADMIN_RULE = {"name": "admin-area", "listeners": ["public"], "hosts": ["*.example.com"],
              "path_prefix": "/admin/", "allow": [], "methods": ["GET", "POST"],
              "max_request_body": 16}
UPLOADS_RULE = {"name": "uploads", "path_prefix": "/files/", "allow_encoded_slash": 1}


class AccessRules(E2ETestCase):

    def start(self, rules, **access):
        up = self.upstream(0)
        t = self.trident(access_config(up, self.net, rules, **access)).__enter__()
        self.addCleanup(t.__exit__, None, None, None)
        return t, up

    def exchange(self, t, target, method="GET", host="app.example.com", body=None, source=None):
        with Client.to(t, source=source) as c:
            return c.exchange(method, target, [("Host", host)], body=body)

    def refused(self, t, up, resp, status, reason, rule=None):
        self.assertErrorPage(resp, status)
        rid = resp.headers.get("x-request-id")
        e = t.wait_for_access(lambda e: e.get("request_id") == rid)
        self.assertEqual((e["status"], e.get("reason"), e.get("rule")), (status, reason, rule))
        self.assertEqual([r.target for r in up.requests], [], "a refused request reached the upstream")

    def test_client_cidrs_deny_then_allow(self):
        office, other, blocked = (self.net.client_ip(i) for i in range(3))
        rule = dict(ADMIN_RULE, allow=[f"{office}/32", f"{blocked}/32"], deny=[f"{blocked}/32"])
        t, up = self.start([rule])
        self.assertEqual(self.exchange(t, "/admin/users", source=office).status, 200)
        self.assertEqual(up.requests[-1].target, "/admin/users")
        up.requests.clear()
        self.refused(t, up, self.exchange(t, "/admin/users", source=other), 403, "access_denied",
                     "admin-area")
        self.refused(t, up, self.exchange(t, "/admin/users", source=blocked), 403,
                     "access_denied", "admin-area")
        # other paths and other hosts are not the rule's business
        self.assertEqual(self.exchange(t, "/public", source=other).status, 200)
        self.assertEqual(self.exchange(t, "/admin/users", host="example.org", source=other).status,
                         200)

    def test_normalisation_cannot_step_around_a_rule(self):
        office, other = self.net.client_ip(0), self.net.client_ip(1)
        t, up = self.start([dict(ADMIN_RULE, allow=[f"{office}/32"])])
        for target in ("/static/../admin/users", "//admin//users", "/%61dmin/users",
                       "/./admin/./users", "/x/%2e%2e/admin/users"):
            with self.subTest(target=target):
                self.refused(t, up, self.exchange(t, target, source=other), 403, "access_denied",
                             "admin-area")
        # a fragment would be cut off by the application (seeing /admin/users) after the rule
        # judged "/admin/users#/../../x" as /x: no request target carries one
        self.refused(t, up, self.exchange(t, "/admin/users#/../../x", source=other), 400,
                     "bad_request")
        # what reaches the application is what the client sent: the check does not rewrite it
        self.assertEqual(self.exchange(t, "/static/../admin/users", source=office).status, 200)
        self.assertEqual(up.requests[-1].target, "/static/../admin/users")

    def test_methods_and_body_limit(self):
        t, up = self.start([ADMIN_RULE])
        self.refused(t, up, self.exchange(t, "/admin/x", method="DELETE"), 405,
                     "method_not_allowed", "admin-area")
        self.refused(t, up, self.exchange(t, "/admin/x", method="POST", body=b"y" * 17), 413,
                     "body_too_large", "admin-area")
        r = self.exchange(t, "/admin/x", method="POST", body=b"y" * 16)
        self.assertEqual(r.status, 200)
        self.assertEqual(up.requests[-1].body, b"y" * 16)
        # elsewhere the global limit applies
        self.assertEqual(self.exchange(t, "/other", method="POST", body=b"y" * 1000).status, 200)

    def test_paths_refused_everywhere(self):
        t, up = self.start([UPLOADS_RULE])
        for target, status, reason in (("/../etc/passwd", 403, "path_refused"),
                                       ("/a/%2e%2e/%2e%2e/etc", 403, "path_refused"),
                                       ("/a%00.txt", 403, "path_refused"),
                                       ("/a%2Fb", 403, "path_refused"),
                                       ("/a%5cb", 403, "path_refused"),
                                       ("/a%zz", 400, "bad_request"),
                                       ("/" + "a" * 9000, 414, "uri_too_long")):
            with self.subTest(target=target[:40]):
                self.refused(t, up, self.exchange(t, target), status, reason)
        # the uploads rule allows encoded slashes under its prefix
        self.assertEqual(self.exchange(t, "/files/a%2Fb").status, 200)
        self.assertEqual(up.requests[-1].target, "/files/a%2Fb")

    def test_encoded_slashes_allowed_globally(self):
        t, up = self.start([], allow_encoded_slash=True)
        self.assertEqual(self.exchange(t, "/a%2Fb").status, 200)
        self.assertEqual(up.requests[-1].target, "/a%2Fb")


class TrustedProxies(E2ETestCase):
    """From a trusted proxy the client is the last X-Forwarded-For address that is not a trusted
    proxy; from anyone else X-Forwarded-For names nobody."""

    def test_client_from_x_forwarded_for(self):
        proxy, stranger = self.net.client_ip(0), self.net.client_ip(1)
        up = self.upstream(0)
        cfg = make_config([cluster("ntt", [up])])
        host = self.net.listener_ip()
        cfg["listeners"] = [{"address": f"{host}:{free_port(host)}",
                             "trusted_proxies": [f"{proxy}/32", "10.0.0.0/8"]}]
        cfg["access"] = {"rules": [{"name": "no-doc-net", "deny": ["203.0.113.0/24"]}]}
        with self.trident(cfg) as t:
            def get(source, xff, target):
                with Client.to(t, source=source) as c:
                    return c.exchange("GET", target, [("Host", "a"), ("X-Forwarded-For", xff)])
            # 198.51.100.1 is forged by the client; 10.1.1.1 is a trusted hop; 203.0.113.50 it is
            r = get(proxy, "198.51.100.1, 203.0.113.50, 10.1.1.1", "/via-proxy")
            self.assertErrorPage(r, 403)
            e = t.wait_for_access(lambda e: e.get("path") == "/via-proxy")
            self.assertEqual((e["client"], e.get("rule")), ("203.0.113.50", "no-doc-net"))
            r = get(proxy, "203.0.113.50, 192.0.2.60", "/via-proxy-2")
            self.assertEqual(r.status, 200)  # the client is 192.0.2.60: not denied
            self.assertEqual(up.requests[-1].headers.get("x-forwarded-for"),
                             f"203.0.113.50, 192.0.2.60, {proxy}")
            r = get(stranger, "203.0.113.50", "/direct")
            self.assertEqual(r.status, 200)  # a stranger's X-Forwarded-For is not believed
            e = t.wait_for_access(lambda e: e.get("path") == "/direct")
            self.assertTrue(e["client"].startswith(stranger + ":"), e)


if __name__ == "__main__":
    unittest.main()
