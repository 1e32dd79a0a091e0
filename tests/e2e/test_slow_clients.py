"""Slow and hostile clients: a request body trickled a byte at a time (each byte just inside the
per-read timeout) is cut with 408 once it is slower than limits.client_body_min_rate allows, and
reaches no server; a body that arrives at an ordinary pace, even in pauses, is not; headers
trickled are bounded by the whole-head deadline; many idle connections do not slow a normal
client."""
import resource
import socket
import threading
import time
import unittest

from harness import Client, E2ETestCase, T, cluster, make_config


def trickle(c, head, stop, interval, limit=1000):
    """Send the head, then one body byte every interval until stop is set (or limit bytes)."""
    c.send(head)
    for _ in range(limit):
        if stop.wait(interval):
            return
        try:
            c.send(b"x")
        except OSError:
            return


class SlowBodies(E2ETestCase):

    def start(self, **limits):
        up = self.upstream(0)
        cfg = make_config([cluster("ntt", [up])], workers=1, limits=limits,
                          timeouts={"client_body_ms": 1000})
        t = self.trident(cfg).__enter__()
        self.addCleanup(t.__exit__, None, None, None)
        return t, up

    def test_trickled_body_gets_408(self):
        # 100 B/s after a 1 s grace: a byte every 0.4 s (inside the 1 s read timeout) is too slow
        t, up = self.start(client_body_min_rate=100)
        stop = threading.Event()
        self.addCleanup(stop.set)
        with Client.to(t, timeout=T(20)) as c:
            head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
            sender = threading.Thread(target=trickle, args=(c, head, stop, 0.4), daemon=True)
            started = time.monotonic()
            sender.start()
            r = c.read_response("POST", timeout=T(15))
            stop.set()
            self.assertErrorPage(r, 408)
            # cut by the pace rule, long before the 100 bytes would have taken (40 s)
            self.assertLess(time.monotonic() - started, T(10))
        e = t.wait_for_access(lambda e: e.get("path") == "/upload")
        self.assertEqual((e["status"], e.get("reason")), (408, "client_timeout"))
        self.assertEqual(up.requests, [], "a trickled body reached the server")

    def test_body_in_pauses_at_an_ordinary_pace_is_fine(self):
        t, up = self.start(client_body_min_rate=100)
        with Client.to(t, timeout=T(20)) as c:
            c.send(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
            for _ in range(5):  # 400 bytes, then 0.6 s of nothing, five times: ~650 B/s
                c.send(b"y" * 400)
                time.sleep(0.6)
            r = c.read_response("POST")
        self.assertEqual(r.status, 200)
        self.assertEqual(up.requests[-1].body, b"y" * 2000)

    def test_pace_rule_off(self):
        t, up = self.start(client_body_min_rate=0)
        with Client.to(t, timeout=T(20)) as c:
            c.send(b"POST /slow-ok HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
            for _ in range(8):  # 8 bytes over ~3 s: only the per-read timeout applies
                time.sleep(0.4)
                c.send(b"z")
            r = c.read_response("POST")
        self.assertEqual(r.status, 200)


class SlowHeads(E2ETestCase):

    def test_trickled_head_is_bounded_by_the_head_deadline(self):
        up = self.upstream(0)
        cfg = make_config([cluster("ntt", [up])], timeouts={"client_header_ms": 1500})
        with self.trident(cfg) as t, Client.to(t, timeout=T(20)) as c:
            started = time.monotonic()
            c.send(b"GET /slowloris HTTP/1.1\r\nHost: x\r\n")
            for _ in range(40):  # a header line every 0.3 s, never the blank line
                try:
                    c.send(b"X-A: b\r\n")
                except OSError:
                    break
                if c.closed_by_peer(0.3):
                    break
            r_closed = time.monotonic() - started
            self.assertLess(r_closed, T(6), "a trickled head outlived the head deadline")
            e = t.wait_for_access(lambda e: e.get("status") == 408)
            self.assertEqual(e.get("reason"), "client_timeout")
            self.assertEqual(up.requests, [])


def big(ex):
    ex.respond_stream(32 << 20)  # 32 MiB: more than the kernel's socket buffers hold


class SlowReaders(E2ETestCase):
    """A client that takes its response a trickle at a time: the kernel's socket buffers take
    what they can, then trident's own buffer fills and the response ends on the per-write
    timeout or the read-pace rule (limits.client_read_min_rate), whichever comes first. What
    the client still reads afterwards sits in the kernel; trident holds nothing for it."""

    def test_trickle_reader_does_not_hold_its_response(self):
        up = self.upstream(0, handler=big)
        cfg = make_config([cluster("ntt", [up])],
                          limits={"client_read_min_rate": 20000, "buffer_bytes": 65536},
                          timeouts={"client_send_ms": 2000})
        with self.trident(cfg) as t:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(T(10))
            self.addCleanup(s.close)
            s.connect((t.host, t.port))
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            started, ended = time.monotonic(), None
            while time.monotonic() - started < T(30):  # read 1 kB every 0.2 s meanwhile
                s.recv(1024)
                if any(e.get("path") == "/big" for e in t.access_lines()):
                    ended = time.monotonic()
                    break
                time.sleep(0.2)
            self.assertIsNotNone(ended, "trident still serves the trickle reader")
            e = t.wait_for_access(lambda e: e.get("path") == "/big")
            self.assertEqual(e.get("reason"), "client_send_timeout")
            self.assertLess(e["bytes_out"], 32 << 20)


class ManyIdle(E2ETestCase):

    def test_a_thousand_slowloris_connections_do_not_slow_normal_clients(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 1200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
        up = self.upstream(0)
        cfg = make_config([cluster("ntt", [up])], workers=2,
                          timeouts={"client_header_ms": 30000})
        with self.trident(cfg) as t:
            idle = []
            self.addCleanup(lambda: [c.close() for c in idle])
            for i in range(1000):  # each holds a half-sent head
                c = Client.to(t, source=self.net.client_ip(i % 4))
                c.send(b"GET /never HTTP/1.1\r\nHost: x\r\n")
                idle.append(c)
            slowest = 0.0
            for i in range(20):
                started = time.monotonic()
                with Client.to(t, source=self.net.client_ip(10)) as c:
                    self.assertEqual(c.exchange("GET", f"/normal{i}").status, 200)
                slowest = max(slowest, time.monotonic() - started)
            self.assertLess(slowest, T(1), "normal requests stalled behind idle connections")
            self.assertEqual(sum(1 for r in up.requests if r.target == "/never"), 0)


if __name__ == "__main__":
    unittest.main()
