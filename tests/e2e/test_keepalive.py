"""Client keep-alive, upstream connection reuse, stale pooled connections, HTTP/1.0, pipelining."""
import select
import socket
import time
import unittest

from harness import (SANITIZE, Client, E2ETestCase, T, cluster, echo_handler, free_port,
                     make_config)


class ClientKeepAlive(E2ETestCase):

    def test_many_requests_on_one_client_connection(self):
        up = self.upstream(0)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            for i in range(10):
                r = c.exchange("GET", f"/k{i}")
                self.assertEqual(r.status, 200)
                self.assertTrue(r.complete)
                self.assertTrue(r.keep_alive, r)
                self.assertEqual(r.body, f"u0 GET /k{i}".encode())
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/k"), count=10)
            self.assertEqual({e["client"] for e in lines}, {f"{c.local[0]}:{c.local[1]}"})
        self.assertNoUpstreamErrors()

    def test_http11_connection_close_is_honoured(self):
        up = self.upstream(0)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            r = c.exchange("GET", "/", [("Connection", "close")])
            self.assertEqual(r.status, 200)
            self.assertIn("close", r.headers.tokens("connection"))
            self.assertTrue(c.closed_by_peer(), "connection left open after Connection: close")

    def test_http10_without_keepalive_is_closed(self):
        up = self.upstream(0)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"GET /old HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"u0 GET /old")
            self.assertTrue(c.closed_by_peer(), "HTTP/1.0 connection left open")
            e = t.wait_for_access(lambda e: e.get("path") == "/old")
            self.assertEqual(e["protocol"], "HTTP/1.0")
        # upstream side: trident speaks HTTP/1.1 and supplies a Host
        req = up.requests[0]
        self.assertEqual(req.version, "HTTP/1.1")
        self.assertEqual(len(req.headers.get_all("host")), 1)

    def test_http10_keepalive_is_kept(self):
        up = self.upstream(0)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            for i in range(3):
                c.send(f"GET /ka{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
                r = c.read_response()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.framing, "length")
                self.assertIn("keep-alive", r.headers.tokens("connection"))
            self.assertEqual(len(up.requests), 3)

    def test_idle_client_connection_closed_after_client_idle_ms(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])], timeouts={"client_idle_ms": 300})
        with self.trident(cfg) as t, Client.to(t) as c:
            self.assertEqual(c.exchange().status, 200)
            self.assertTrue(c.closed_by_peer(T(3)), "idle keep-alive connection not closed")


class UpstreamReuse(E2ETestCase):

    def test_upstream_connection_reused(self):
        up = self.upstream(0)
        with self.trident(make_config([cluster("c", [up])])) as t:
            with Client.to(t) as c:
                for i in range(5):
                    self.assertEqual(c.exchange("GET", f"/same{i}").status, 200)
            for i in range(5):
                with Client.to(t) as c:
                    self.assertEqual(c.exchange("GET", f"/new{i}").status, 200)
        self.assertEqual(up.connections, 1, "upstream connection not reused")
        self.assertEqual([r.conn_seq for r in up.requests], list(range(10)))
        self.assertNoUpstreamErrors()

    def test_upstream_keepalive_zero_disables_reuse(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])], limits={"upstream_keepalive": 0})
        with self.trident(cfg) as t, Client.to(t) as c:
            for i in range(4):
                self.assertEqual(c.exchange().status, 200)
        self.assertEqual(up.connections, 4)

    def test_idle_pooled_connection_closed_after_upstream_idle_ms(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])], timeouts={"upstream_idle_ms": 200})
        with self.trident(cfg) as t, Client.to(t) as c:
            self.assertEqual(c.exchange().status, 200)
            up.wait_closed_connections(1, T(3))
            self.assertEqual(c.exchange().status, 200)
        self.assertEqual(up.connections, 2)

    def test_upstream_closing_idle_connections(self):
        # the server closes every connection right after its response, without saying so
        up = self.upstream(0, close_idle=True)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            for i in range(10):
                r = c.exchange("GET", f"/ci{i}")
                self.assertEqual(r.status, 200, f"request {i}: {r} {r.body!r}")
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/ci"), count=10)
            self.assertEqual([e["status"] for e in lines], [200] * 10)
        self.assertEqual(sorted(r.target for r in up.requests), sorted(f"/ci{i}" for i in range(10)))

    def test_http10_upstream_response_ends_the_upstream_connection(self):
        # RFC 9112 9.3: an HTTP/1.0 response without keep-alive means the connection closes;
        # this server does not actually close, so reuse would show as one connection.
        def handler(ex):
            ex.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            for _ in range(3):
                r = c.exchange()
                self.assertEqual((r.status, r.body), (200, b"ok"))
        self.assertEqual(up.connections, 3, "an HTTP/1.0 upstream connection was reused")

    def test_upstream_connection_close_response_not_reused(self):
        def handler(ex):
            ex.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            for _ in range(3):
                r = c.exchange()
                self.assertEqual((r.status, r.body), (200, b"ok"))
                self.assertTrue(r.keep_alive, "the upstream's Connection: close reached the client")
        self.assertEqual(up.connections, 3)

    def test_extra_bytes_after_response_not_forwarded(self):
        # bytes after a complete response: the connection is not reused and they go nowhere
        def handler(ex):
            ex.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
                    b"Content-Length: 5\r\n\r\nspoof")

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            for _ in range(3):
                r = c.exchange()
                self.assertEqual((r.status, r.body), (200, b"ok"))
            self.assertFalse(c.closed_by_peer(0.2))
            self.assertEqual(c.reader.buf, b"", "stray bytes reached the client")
        self.assertEqual(up.connections, 3)

    def test_stale_pooled_connection_retried_for_bodyless_request(self):
        # The keep-alive race, made deterministic: the server reads the second request on a
        # reused connection and closes it without answering.
        def handler(ex):
            if ex.req.conn_seq >= 1:
                ex.close()
                return
            echo_handler(ex)

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            self.assertEqual(c.exchange("GET", "/first").status, 200)
            r = c.exchange("GET", "/second")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"GET /second\n")
            e = t.wait_for_access(lambda e: e.get("path") == "/second")
            self.assertEqual(e["status"], 200)
            self.assertEqual(e["attempts"], 2)
        self.assertEqual([(r.target, r.conn_id) for r in up.requests],
                         [("/first", 1), ("/second", 1), ("/second", 2)])

    def test_retry_is_only_once(self):
        # the reused connection fails, and so does the fresh one: 502 after two attempts
        def handler(ex):
            if ex.req.conn_id == 1 and ex.req.conn_seq == 0:
                echo_handler(ex)
            else:
                ex.close()

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            self.assertEqual(c.exchange("GET", "/first").status, 200)
            r = c.exchange("GET", "/doomed")
            self.assertErrorPage(r, 502)
            e = t.wait_for_access(lambda e: e.get("path") == "/doomed")
            self.assertEqual((e["status"], e["attempts"]), (502, 2))
        self.assertEqual([r.target for r in up.requests].count("/doomed"), 2)

    def test_stale_pooled_connection_not_retried_with_body(self):
        def handler(ex):
            if ex.req.conn_seq >= 1:
                ex.close()
                return
            echo_handler(ex)

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t:
            with Client.to(t) as c:
                self.assertEqual(c.exchange("GET", "/first").status, 200)
                r = c.exchange("POST", "/post", body=b"payload")
                self.assertErrorPage(r, 502)
            # the POST reached the server exactly once
            self.assertEqual([r.target for r in up.requests].count("/post"), 1)
            e = t.wait_for_access(lambda e: e.get("path") == "/post")
            self.assertEqual(e["status"], 502)
            self.assertEqual(e["attempts"], 1)


class Pipelining(E2ETestCase):

    def test_pipelined_requests_answered_in_order(self):
        def handler(ex):
            if ex.req.target == "/a":
                ex.delay(0.2)  # the first answer is the slowest
            echo_handler(ex)

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"GET /a HTTP/1.1\r\nHost: p.test\r\n\r\n"
                   b"POST /b HTTP/1.1\r\nHost: p.test\r\nContent-Length: 11\r\n\r\nhello world"
                   b"GET /c HTTP/1.1\r\nHost: p.test\r\n\r\n"
                   b"POST /d HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n0\r\n\r\n"
                   b"GET /e HTTP/1.1\r\nHost: p.test\r\n\r\n")
            bodies = []
            for method in ("GET", "POST", "GET", "POST", "GET"):
                r = c.read_response(method)
                self.assertEqual(r.status, 200)
                bodies.append(r.body)
            self.assertEqual(bodies, [b"GET /a\n", b"POST /b\nhello world", b"GET /c\n",
                                      b"POST /d\nabc", b"GET /e\n"])
            # still usable afterwards
            self.assertEqual(c.exchange("GET", "/f").body, b"GET /f\n")
        self.assertNoUpstreamErrors()

    def test_pipelined_with_connection_close_last(self):
        up = self.upstream(0, handler=echo_handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"GET /1 HTTP/1.1\r\nHost: p.test\r\n\r\n"
                   b"GET /2 HTTP/1.1\r\nHost: p.test\r\n\r\n"
                   b"GET /3 HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n"
                   b"GET /4 HTTP/1.1\r\nHost: p.test\r\n\r\n")
            for i in (1, 2, 3):
                r = c.read_response()
                self.assertEqual(r.body, f"GET /{i}\n".encode())
            self.assertIn("close", r.headers.tokens("connection"))
            self.assertTrue(c.closed_by_peer())
        self.assertEqual([r.target for r in up.requests], ["/1", "/2", "/3"])

    def test_answers_a_client_does_not_read_stop_its_requests(self):
        # Requests trident answers itself (308s here), pipelined without end by a client that
        # reads nothing: trident stops taking requests while buffer_bytes of answers wait, as it
        # does for proxied ones, instead of holding every answer (memory growing about four
        # times faster than the client uploads).
        # (client_send_ms well past the loop: what stops the requests is not the send timeout)
        cfg = make_config([cluster("c", [self.upstream(0)])], timeouts={"client_send_ms": 60000})
        host = self.net.listener_ip()
        cfg["listeners"] = [{"address": f"{host}:{free_port(host)}", "https_redirect_port": 443}]
        stream = memoryview(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n" * 4000)
        with self.trident(cfg) as t, socket.socket() as s:
            rss0 = t.rss_kb()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect((t.host, t.port))
            s.setblocking(False)
            sent, pos, deadline = 0, 0, time.monotonic() + 3
            while sent < 64 << 20 and time.monotonic() < deadline:
                select.select([], [s], [], 0.05)
                try:
                    n = s.send(stream[pos:])
                except BlockingIOError:
                    continue
                sent, pos = sent + n, (pos + n) % len(stream)
            grown_kb = t.rss_kb() - rss0
        # what the kernel buffers on both sides holds (some MB) passes; the rest waits
        self.assertLess(sent, 24 << 20, "trident kept taking requests nobody read the answers of")
        if not SANITIZE:  # ASan's quarantine keeps freed memory resident: RSS says nothing there
            self.assertLess(grown_kb, 16 << 10, f"RSS grew by {grown_kb} KiB")


if __name__ == "__main__":
    unittest.main()
