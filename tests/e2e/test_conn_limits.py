"""Per-address connection limits: open connections per client address, and new connections per
second per address (token bucket). Over a limit a connection is closed before a byte is read;
other addresses are not affected; the refusals are counted in /status outcomes."""
import unittest

from adminlib import Admin, admin_section
from harness import Client, Closed, E2ETestCase, T, cluster, make_config, wait_until


def refused(t, source):
    """Whether a new connection from source is closed by trident without an answer."""
    try:
        with Client.to(t, source=source, timeout=T(5)) as c:
            c.send(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
            return c.closed_by_peer(T(5))
    except (ConnectionResetError, BrokenPipeError):
        return True


def served(t, source):
    """Whether a new connection from source gets its request answered (False: closed)."""
    try:
        with Client.to(t, source=source) as c:
            return c.exchange("GET", "/ok").status == 200
    except (Closed, ConnectionResetError, BrokenPipeError):
        return False


class PerAddressLimits(E2ETestCase):

    def start(self, **limits):
        up = self.upstream(0)
        cfg = make_config([cluster("ntt", [up])], workers=2, limits=limits)
        cfg["admin"] = admin_section(self.net)
        t = self.trident(cfg).__enter__()
        self.addCleanup(t.__exit__, None, None, None)
        return t, Admin.of(t)

    def outcomes(self, adm, reason):
        return adm.status()["outcomes"].get(reason, 0)

    def test_open_connections_per_address(self):
        t, adm = self.start(max_connections_per_ip=3)
        a, b = self.net.client_ip(0), self.net.client_ip(1)
        held = [Client.to(t, source=a) for _ in range(3)]
        for c in held:  # each is a working connection (on either worker)
            self.assertEqual(c.exchange("GET", "/held").status, 200)
        self.assertTrue(refused(t, a))
        self.assertTrue(served(t, b), "another address was refused")
        self.assertGreaterEqual(self.outcomes(adm, "ip_conn_limit"), 1)
        held.pop().close()
        wait_until(lambda: served(t, a), T(5), what="a slot for the address after a close")
        for c in held:
            c.close()

    def test_new_connections_per_second(self):
        t, adm = self.start(new_connections_per_ip_s=2, new_connections_per_ip_burst=4)
        a, b = self.net.client_ip(2), self.net.client_ip(3)
        results = [served(t, a) for _ in range(4)]
        self.assertEqual(results, [True] * 4, "the burst was not admitted")
        self.assertTrue(refused(t, a))
        self.assertTrue(served(t, b), "another address was refused")
        self.assertGreaterEqual(self.outcomes(adm, "ip_rate_limit"), 1)
        # the bucket refills (2 per second): the address gets in again
        wait_until(lambda: served(t, a), T(5), interval=0.1, what="the bucket to refill")

    def test_no_limits_by_default(self):
        t, adm = self.start()
        a = self.net.client_ip(4)
        held = [Client.to(t, source=a) for _ in range(20)]
        for c in held:
            self.assertEqual(c.exchange("GET", "/many").status, 200)
            c.close()
        self.assertEqual(self.outcomes(adm, "ip_conn_limit"), 0)


if __name__ == "__main__":
    unittest.main()
