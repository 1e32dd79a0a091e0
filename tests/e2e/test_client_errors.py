"""Requests trident refuses itself (400, 405, 408, 431), client-side timeouts and aborts, limits."""
import socket
import time
import unittest

from harness import (Client, E2ETestCase, T, cluster, echo_handler, make_config, wait_until)


class BadRequests(E2ETestCase):

    def _refused(self, t, raw, status, reason):
        with Client.to(t) as c:
            c.send(raw)
            r = c.read_response()
            self.assertErrorPage(r, status)
            self.assertTrue(c.closed_by_peer(), "connection left open after an error page")
        return r

    def test_malformed_requests_are_400(self):
        up = self.upstream(0, handler=echo_handler)
        cases = [
            b"GARBAGE\r\n\r\n",
            b"GET /\r\nHost: x\r\n\r\n",                                         # no version
            b"GET / HTTP/1.1\r\n\r\n",                                            # no Host
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",                      # two Hosts
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",                               # bad Host
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n",                                                         # CL + TE
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",                      # bare CR
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",                    # control
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",                    # DEL
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb\r\n\r\n",                    # ESC
            b"GET / HTTP/1.1\nHost: a\n\n",                                       # bare LF
            b"GET nothing HTTP/1.1\r\nHost: a\r\n\r\n",                           # bad target
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"10000000000000000001\r\nx\r\n",                                  # size overflow
        ]
        with self.trident(make_config([cluster("c", [up])])) as t:
            for raw in cases:
                with self.subTest(raw=raw[:60]):
                    self._refused(t, raw, 400, "bad_request")
            lines = t.wait_for_access(lambda e: e["status"] == 400, count=len(cases))
            for e in lines:
                self.assertEqual(e.get("reason"), "bad_request", e)
            # the chunked requests with bad chunks may have reached the upstream; nothing else did
            self.assertLessEqual(len(up.requests), 2, up.requests)

    def test_obs_fold_refused_or_unfolded(self):
        # RFC 9112 5.2: reject with 400, or replace the obs-fold with SP before forwarding
        up = self.upstream(0, handler=echo_handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"GET /fold HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n")
            r = c.read_response()
            if r.status == 400:
                self.assertErrorPage(r, 400)
                self.assertEqual(up.requests, [])
            else:
                self.assertEqual(r.status, 200)
                self.assertRegex(up.requests[0].headers.get("x-folded"), r"^a[ \t]+b$")
        self.assertNoUpstreamErrors()

    def test_options_asterisk_forwarded(self):
        up = self.upstream(0, handler=echo_handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            r = c.exchange("OPTIONS", "*")
            self.assertEqual((r.status, r.body), (200, b"OPTIONS *\n"))
            self._refused(t, b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request")

    def test_connect_method_is_405(self):
        up = self.upstream(0)
        with self.trident(make_config([cluster("c", [up])])) as t:
            self._refused(t, b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n",
                          405, "method_not_allowed")
            e = t.wait_for_access(lambda e: e["status"] == 405)
            self.assertEqual(e.get("reason"), "method_not_allowed")
        self.assertEqual(up.connections, 0)

    def test_head_too_large_is_431(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])],
                          limits={"max_header_bytes": 2048, "max_header_count": 10})
        with self.trident(cfg) as t:
            self._refused(t, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n",
                          431, "head_too_large")
            self._refused(t, b"GET /" + b"p" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
                          431, "head_too_large")
            self._refused(t, b"GET / HTTP/1.1\r\nHost: a\r\n" +
                          b"".join(b"X-%d: v\r\n" % i for i in range(12)) + b"\r\n",
                          431, "too_many_headers")
            reasons = sorted(e.get("reason") for e in t.wait_for_access(lambda e: e["status"] == 431,
                                                                       count=3))
            self.assertEqual(reasons, ["head_too_large", "head_too_large", "too_many_headers"])
            # just under the limits goes through
            with Client.to(t) as c:
                r = c.exchange("GET", "/", [(f"X-{i}", "v") for i in range(9)])
                self.assertEqual(r.status, 200)
        self.assertEqual(len(up.requests), 1)

    def test_slow_head_is_408(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])], timeouts={"client_header_ms": 300})
        with self.trident(cfg) as t, Client.to(t) as c:
            t0 = time.monotonic()
            c.send(b"GET /slow HTTP/1.1\r\nHo")
            r = c.read_response(timeout=T(5))
            self.assertGreaterEqual(time.monotonic() - t0, 0.28)
            self.assertErrorPage(r, 408)
            e = t.wait_for_access(lambda e: e["status"] == 408)
            self.assertEqual(e.get("reason"), "client_timeout")
        self.assertEqual(up.connections, 0)

    def test_head_deadline_is_for_the_whole_head(self):
        # dribbling bytes does not extend client_header_ms (slowloris)
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])], timeouts={"client_header_ms": 400})
        with self.trident(cfg) as t, Client.to(t) as c:
            t0 = time.monotonic()
            try:
                for i in range(40):
                    c.send(b"X-Drip-%d: 1\r\n" % i if i else b"GET / HTTP/1.1\r\nHost: a\r\n")
                    if c.reader.at_eof(0.05) or time.monotonic() - t0 > T(3):
                        break
            except OSError:
                pass
            r = c.read_response(timeout=T(3))
            self.assertLess(time.monotonic() - t0, T(2))
            self.assertEqual(r.status, 408)

    def test_idle_connection_without_request_closed_silently(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])], timeouts={"client_header_ms": 300,
                                                          "client_idle_ms": 300})
        with self.trident(cfg) as t, Client.to(t) as c:
            # a connection that never sends a byte gets no 408, just a close
            self.assertTrue(c.closed_by_peer(T(3)))
            self.assertEqual(c.reader.buf, b"")

    def test_slow_body_is_408(self):
        up = self.upstream(0, handler=echo_handler)
        cfg = make_config([cluster("c", [up])], timeouts={"client_body_ms": 300})
        with self.trident(cfg) as t, Client.to(t) as c:
            c.send(b"POST /slowbody HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
            r = c.read_response(timeout=T(5))
            # the head may be upstream already; either way the client gets a 408 and the close
            self.assertErrorPage(r, 408)
            e = t.wait_for_access(lambda e: e.get("path") == "/slowbody")
            self.assertEqual((e["status"], e.get("reason")), (408, "client_timeout"))
            if up.connections:
                up.wait_closed_connections(1, T(3))


class ClientBehaviour(E2ETestCase):

    def test_client_abort_mid_response(self):
        up = self.upstream(0, handler=lambda ex: ex.respond_stream(64 << 20))
        with self.trident(make_config([cluster("c", [up])])) as t:
            with Client.to(t) as c:
                c.request("GET", "/abort")
                c.sock.recv(1000)
            e = t.wait_for_access(lambda e: e.get("path") == "/abort")
            self.assertEqual(e.get("reason"), "client_aborted")
            self.assertLess(e["bytes_out"], 64 << 20)
            # the upstream connection is not pooled with a half-sent body
            up.wait_closed_connections(1, T(5))

    def test_client_abort_while_waiting_for_upstream(self):
        # The client closes its socket while the upstream is still thinking: trident notices
        # (it keeps reading the client side for this) and releases the upstream connection well
        # before upstream_response_ms (20 s here).
        up = self.upstream(0, handler=lambda ex: ex.hang(T(30)))
        cfg = make_config([cluster("c", [up])], timeouts={"upstream_response_ms": 20000})
        with self.trident(cfg) as t:
            with Client.to(t) as c:
                c.request("GET", "/gone")
                up.wait_requests(1)
            self.assertTrue(up.peer_closed.wait(T(3)),
                            "upstream connection still held 3 s after the client closed")
            e = t.wait_for_access(lambda e: e.get("path") == "/gone")
            self.assertEqual(e.get("reason"), "client_aborted")

    def test_client_that_stops_reading_is_cut_after_client_send_ms(self):
        up = self.upstream(0, handler=lambda ex: ex.respond_stream(256 << 20))
        cfg = make_config([cluster("c", [up])], timeouts={"client_send_ms": 300})
        with self.trident(cfg) as t:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect((t.host, t.port))
            try:
                s.sendall(b"GET /stuck HTTP/1.1\r\nHost: a\r\n\r\n")
                e = t.wait_for_access(lambda e: e.get("path") == "/stuck", timeout=T(5))
                self.assertEqual(e.get("reason"), "client_send_timeout")
                self.assertLess(e["bytes_out"], 64 << 20)
            finally:
                s.close()
            up.wait_closed_connections(1, T(5))

    def test_max_connections(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])], limits={"max_connections": 2})
        with self.trident(cfg) as t:
            t.settled_fd_count()  # the readiness probe's connection is gone
            a, b = Client.to(t), Client.to(t)
            self.assertEqual(a.exchange().status, 200)
            self.assertEqual(b.exchange().status, 200)
            third = Client.to(t)  # waits in the backlog
            third.request("GET", "/third")
            with self.assertRaises(TimeoutError):
                third.read_response(timeout=0.5)
            a.close()
            r = third.read_response(timeout=T(5))
            self.assertEqual(r.status, 200)
            for c in (b, third):
                c.close()


class Concurrency(E2ETestCase):

    def test_parallel_clients_over_workers(self):
        import threading
        ups = [self.upstream(i, handler=echo_handler, name=f"p{i}") for i in range(3)]
        cfg = make_config([cluster(f"p{i}", [u]) for i, u in enumerate(ups)], workers=4)
        errors = []
        with self.trident(cfg) as t:
            def run(n):
                try:
                    with Client.to(t) as c:
                        for j in range(20):
                            body = f"{n}-{j}".encode() * 50
                            r = c.exchange("POST", f"/c{n}/{j}", body=body)
                            if r.status != 200 or r.body != f"POST /c{n}/{j}\n".encode() + body:
                                errors.append((n, j, r.status))
                except Exception as e:  # noqa: BLE001
                    errors.append((n, repr(e)))

            threads = [threading.Thread(target=run, args=(n,)) for n in range(30)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(T(60))
            self.assertEqual(errors, [])
            self.assertEqual(sum(len(u.requests) for u in ups), 600)
            for u in ups:
                self.assertGreater(len(u.requests), 100)
            wait_until(lambda: len(t.access_lines()) >= 600, T(5), what="600 access log lines")
        self.assertNoUpstreamErrors()


if __name__ == "__main__":
    unittest.main()
