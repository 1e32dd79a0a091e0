"""Upstream failures: refused, connect timeout, response timeout, cut responses, bad responses."""
import re
import socket
import threading
import time
import unittest

from harness import (Client, E2ETestCase, T, closed_port_address, cluster, echo_handler,
                     free_port, make_config, pattern_blocks, wait_until)

HEX32 = re.compile(r"[0-9a-f]{32}")


def msgs(t):
    return [e.get("msg", "") for e in t.error_lines()]


class ConnectFailures(E2ETestCase):

    def test_refused_connect_is_502(self):
        addr = closed_port_address(self.net.upstream_ip(0))
        cfg = make_config([cluster("dead", [("dead-1", addr)], provider="nowhere")])
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/refused")
            body = self.assertErrorPage(r, 502)
            self.assertRegex(body["request_id"], HEX32)
            # a gateway error after a valid request keeps the connection: the next request on
            # it is answered. The refusal took the only server out (passive check, applied by
            # the health thread a moment later); passive evidence alone takes no service out
            # (panic routing), so the server is tried again and refuses again
            wait_until(lambda: any("dead-1" in m and "is down" in m for m in msgs(t)), T(5),
                       what="the passive check to take dead-1 down")
            again = c.exchange("GET", "/again")
            self.assertErrorPage(again, 502)
            e = t.wait_for_access(lambda e: e.get("path") == "/refused")
            self.assertEqual(e["status"], 502)
            self.assertEqual(e.get("reason"), "upstream_refused")
            self.assertEqual(e["request_id"], body["request_id"])
            self.assertEqual(e["server"], "dead-1")
            self.assertEqual(e["provider"], "nowhere")

    def test_passed_through_request_id_in_error_page(self):
        # a trusted proxy's id (the test client is one here) names the error too
        addr = closed_port_address(self.net.upstream_ip(0))
        cfg = make_config([cluster("dead", [addr])])
        host = self.net.listener_ip()
        cfg["listeners"] = [{"address": f"{host}:{free_port(host)}",
                             "trusted_proxies": ["127.0.0.0/8"]}]
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/", [("X-Request-Id", "trace-123")])
            body = self.assertErrorPage(r, 502)
            self.assertEqual(body["request_id"], "trace-123")

    def test_connect_timeout_is_504(self):
        # A listener whose accept queue is full and never drained: Linux drops further SYNs,
        # so trident's connect neither succeeds nor fails before upstream_connect_ms.
        host = self.net.upstream_ip(1)
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind((host, 0))
        ls.listen(0)
        self.addCleanup(ls.close)
        fillers = []
        for _ in range(4):  # backlog 0 admits one; more attempts make sure the queue is full
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(ls.getsockname())
            fillers.append(s)
            self.addCleanup(s.close)
        cfg = make_config([cluster("bh", [("bh-1", f"{host}:{ls.getsockname()[1]}")])],
                          timeouts={"upstream_connect_ms": 300})
        with self.trident(cfg) as t, Client.to(t) as c:
            t0 = time.monotonic()
            r = c.exchange("GET", "/blackhole")
            elapsed = time.monotonic() - t0
            self.assertErrorPage(r, 504)
            self.assertGreaterEqual(elapsed, 0.28)
            self.assertLess(elapsed, T(3))
            e = t.wait_for_access(lambda e: e.get("path") == "/blackhole")
            self.assertEqual(e["status"], 504)
            self.assertEqual(e.get("reason"), "upstream_connect_timeout")

    def test_proxy_keeps_working_after_failures(self):
        up = self.upstream(0, handler=echo_handler)
        dead = closed_port_address(self.net.upstream_ip(1))
        cfg = make_config([cluster("live", [up]), cluster("dead", [dead])])
        with self.trident(cfg) as t:
            def get(i):
                with Client.to(t) as c:
                    return c.exchange("GET", f"/mix{i}").status

            # until the balancer has tried the dead server once: each refused connect is retried
            # on the live server (every client gets a 200), and the passive check takes the
            # dead one out at its first refusal (the health thread applies it a moment later)
            statuses = [get(0)]
            while not any("dead-1" in m and "is down" in m for m in msgs(t)) and \
                    len(statuses) < 10:
                statuses.append(get(len(statuses)))
            wait_until(lambda: any("dead-1" in m and "is down" in m for m in msgs(t)), T(5),
                       what="the passive check to take dead-1 down")
            first = len(statuses)
            statuses += [get(i) for i in range(first, first + 8)]
            self.assertEqual(statuses, [200] * len(statuses))
            self.assertEqual(len(up.requests), len(statuses))
            lines = t.wait_for_access(lambda e: e.get("path", "").startswith("/mix"),
                                      count=len(statuses))
            attempts = {e["path"]: e["attempts"] for e in lines}
            self.assertIn(2, attempts.values(), "the dead server was never tried")
            # once it is down, nothing tries it any more
            self.assertEqual([attempts[f"/mix{i}"] for i in range(first, first + 8)], [1] * 8)


class ResponseFailures(E2ETestCase):

    def test_hanging_upstream_is_504_after_upstream_response_ms(self):
        up = self.upstream(0, handler=lambda ex: ex.hang(T(10)))
        cfg = make_config([cluster("c", [up])], timeouts={"upstream_response_ms": 300})
        with self.trident(cfg) as t, Client.to(t) as c:
            t0 = time.monotonic()
            r = c.exchange("GET", "/hang")
            elapsed = time.monotonic() - t0
            self.assertErrorPage(r, 504)
            self.assertGreaterEqual(elapsed, 0.28)
            self.assertLess(elapsed, T(3))
            e = t.wait_for_access(lambda e: e.get("path") == "/hang")
            self.assertEqual((e["status"], e.get("reason")), (504, "upstream_timeout"))
            # trident gave up on the upstream connection too
            self.assertTrue(up.peer_closed.wait(T(3)), "upstream connection not closed after 504")

    def test_upstream_not_reading_request_body_times_out(self):
        # the upstream takes the head and then never reads: upstream_send_ms ends the exchange
        up = self.upstream(0, head_handler=lambda ex: ex.hang(T(20)) and True)
        cfg = make_config([cluster("c", [up])], timeouts={"upstream_send_ms": 300},
                          limits={"max_request_body": 1 << 30})
        with self.trident(cfg) as t:
            baseline = t.settled_fd_count()
            c = Client.to(t)
            total = 64 << 20
            c.send(b"POST /stuck-upload HTTP/1.1\r\nHost: f.test\r\nContent-Length: %d\r\n\r\n" % total)
            done = threading.Event()

            def send_body():
                try:
                    c.send_blocks(pattern_blocks(total))
                except OSError:
                    pass
                done.set()

            threading.Thread(target=send_body, daemon=True).start()
            r = c.read_response("POST", timeout=T(10))
            self.assertErrorPage(r, 504, closes=True)  # the request body was not all read
            e = t.wait_for_access(lambda e: e.get("path") == "/stuck-upload")
            self.assertEqual((e["status"], e.get("reason")), (504, "upstream_send_timeout"))
            # trident let go of the upstream socket (its FIN waits behind the unread data, so
            # the server cannot see it yet) and of the client once the client is gone
            c.close()
            done.wait(T(5))
            wait_until(lambda: t.fd_count() == baseline, T(5), what="descriptors back to baseline")

    def test_upstream_stalling_mid_body_is_cut_after_upstream_response_ms(self):
        def handler(ex):
            ex.send_head(200, [("Content-Length", "1000")])
            ex.send(b"x" * 100)
            ex.hang(T(10))

        up = self.upstream(0, handler=handler)
        cfg = make_config([cluster("c", [up])], timeouts={"upstream_response_ms": 300})
        with self.trident(cfg) as t, Client.to(t) as c:
            r = c.exchange("GET", "/stall")
            self.assertEqual(r.status, 200)
            self.assertFalse(r.complete)
            self.assertEqual(r.body_len, 100)
            self.assertTrue(c.reader.eof)
            e = t.wait_for_access(lambda e: e.get("path") == "/stall")
            self.assertEqual(e.get("reason"), "upstream_timeout")

    def _cut(self, mode, framing):
        def handler(ex):
            if framing == "length":
                ex.send_head(200, [("Content-Length", "100000")])
                ex.send(b"y" * 1000)
            else:
                ex.send_head(200, [("Transfer-Encoding", "chunked")])
                ex.send(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
            time.sleep(0.05)
            ex.reset() if mode == "reset" else ex.close()

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            path = f"/cut-{mode}-{framing}"
            c.request("GET", path)
            r = c.read_response()  # a hang raises TimeoutError
            self.assertEqual(r.status, 200)
            self.assertFalse(r.complete, "a cut response looked complete to the client")
            self.assertEqual(r.body_len, 1000)
            self.assertTrue(c.reader.eof, "client connection not closed")
            e = t.wait_for_access(lambda e: e.get("path") == path)
            self.assertEqual(e.get("reason"), "upstream_reset")

    def test_upstream_close_mid_response_length(self):
        self._cut("close", "length")

    def test_upstream_close_mid_response_chunked(self):
        self._cut("close", "chunked")

    def test_upstream_reset_mid_response_length(self):
        self._cut("reset", "length")

    def test_upstream_reset_mid_response_chunked(self):
        self._cut("reset", "chunked")

    def test_response_header_injection_not_relayed(self):
        # a CR or NUL inside a response field value must never reach the client as is
        for path, raw in [("/cr", b"X-Evil: a\rSet-Cookie: pwned=1\r\n"), ("/nul", b"X-Evil: a\x00b\r\n"),
                          ("/lf-in-name", b"X-Ev\nil: a\r\n")]:
            with self.subTest(path=path):
                def handler(ex, raw=raw):
                    ex.send(b"HTTP/1.1 200 OK\r\n" + raw + b"Content-Length: 2\r\n\r\nok")
                    ex.keep_alive = False

                up = self.upstream(0, handler=handler)
                with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
                    c.request("GET", path)
                    r = c.read_response()  # strict: a bare CR/LF or NUL in the head raises
                    if r.status == 200:
                        self.assertNotIn("set-cookie", r.headers)
                        for k, v in r.headers.items:
                            self.assertFalse(set(v) & set("\r\n\x00"), (k, v))
                    else:
                        self.assertErrorPage(r, 502)
                up.close()

    def test_response_obs_fold_unfolded_or_refused(self):
        up = self.upstream(0, handler=lambda ex: ex.send(
            b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok"))
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.request("GET", "/fold")
            r = c.read_response()
            if r.status == 200:
                self.assertRegex(r.headers.get("x-folded"), r"^a[ \t]+b$")
                self.assertEqual(r.body, b"ok")
            else:
                self.assertErrorPage(r, 502)

    def test_upstream_closes_before_responding(self):
        up = self.upstream(0, handler=lambda ex: ex.close())
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            r = c.exchange("GET", "/noanswer")
            self.assertErrorPage(r, 502)
            e = t.wait_for_access(lambda e: e.get("path") == "/noanswer")
            self.assertEqual(e["status"], 502)
            self.assertIn(e.get("reason"), ("upstream_reset", "upstream_bad_response"))
        # a fresh connection that failed is not retried
        self.assertEqual(len(up.requests), 1)

    def test_invalid_responses_are_502(self):
        cases = {
            "/garbage": b"hello there\r\n\r\n",
            "/badstatus": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
            "/badversion": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            "/cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"0\r\n\r\n",
            "/two-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "/badchunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "/hugehead": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 4000 + b"\r\nContent-Length: 0\r\n\r\n",
            "/manyfields": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-F%d: v\r\n" % i for i in range(50)) +
                           b"Content-Length: 0\r\n\r\n",
        }

        def handler(ex):
            ex.send(cases[ex.req.target])
            time.sleep(0.05)
            ex.close()

        up = self.upstream(0, handler=handler)
        cfg = make_config([cluster("c", [up])],
                          limits={"max_response_header_bytes": 2048, "max_response_header_count": 20})
        with self.trident(cfg) as t:
            for path in cases:
                with self.subTest(path=path), Client.to(t) as c:
                    r = c.exchange("GET", path)
                    if path == "/badchunk" and r.status == 200:
                        # the head was valid and already relayed: the body must be cut
                        self.assertFalse(r.complete)
                        continue
                    self.assertErrorPage(r, 502)
                    e = t.wait_for_access(lambda e, p=path: e.get("path") == p)
                    self.assertEqual((e["status"], e.get("reason")), (502, "upstream_bad_response"))

    def test_upstream_answering_before_the_request_body(self):
        # The upstream refuses after the head and half-closes without reading the 8 MiB body
        # (it drains it, as servers do). The client, still sending, must get that answer.
        def early(ex):
            ex.respond(403, b"not you", headers=[("Connection", "close")])
            ex.linger_close()
            return True

        up = self.upstream(0, head_handler=early)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            body = b"z" * (8 << 20)
            c.send(b"POST /early HTTP/1.1\r\nHost: f.test\r\nContent-Length: %d\r\n\r\n" % len(body))

            def send_body():
                try:
                    c.sock.sendall(body)
                except OSError:
                    pass

            th = threading.Thread(target=send_body, daemon=True)
            th.start()
            r = c.read_response("POST")
            self.assertEqual(r.status, 403)
            self.assertEqual(r.body, b"not you")
            self.assertTrue(r.complete)
            self.assertFalse(r.keep_alive, "connection kept alive with an unread body behind it")
            th.join(T(10))
            self.assertTrue(c.closed_by_peer(T(5)))
            e = t.wait_for_access(lambda e: e.get("path") == "/early")
            self.assertEqual(e["status"], 403)


if __name__ == "__main__":
    unittest.main()
