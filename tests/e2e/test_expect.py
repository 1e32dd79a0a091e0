"""Expect: 100-continue relayed end to end; 413 and 417 decided by trident."""
import unittest

from harness import (Client, E2ETestCase, STREAM_BODIES, T, cluster, echo_handler,
                     make_config)


class ExpectContinue(E2ETestCase):

    def test_100_continue_relayed_before_body(self):
        # a body that streams (not read whole first): the upstream's 100 is relayed
        up = self.upstream(0, handler=echo_handler)
        cfg = make_config([cluster("c", [up])], failover=STREAM_BODIES)
        with self.trident(cfg) as t, Client.to(t) as c:
            c.send(b"POST /upload HTTP/1.1\r\nHost: e.test\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 11\r\n\r\n")
            # the body is held back until the 100 arrives
            interim = c.read_response("POST", interim=False, timeout=T(5))
            self.assertEqual(interim.status, 100)
            req = up.wait_requests(1)
            self.assertEqual(req.headers.tokens("expect"), ["100-continue"])
            self.assertTrue(req.continue_sent)
            c.send(b"hello world")
            r = c.read_response("POST")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"POST /upload\nhello world")
            # and the connection goes on
            self.assertEqual(c.exchange("GET", "/next").status, 200)
        self.assertEqual(up.requests[0].body, b"hello world")
        self.assertNoUpstreamErrors()

    def test_100_continue_answered_by_trident_when_it_reads_the_body_first(self):
        # a small body is read whole before any server sees the request: trident answers the
        # expectation itself and the upstream gets a complete request without Expect
        up = self.upstream(0, handler=echo_handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"POST /upload HTTP/1.1\r\nHost: e.test\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 11\r\n\r\n")
            interim = c.read_response("POST", interim=False, timeout=T(5))
            self.assertEqual(interim.status, 100)
            self.assertEqual(up.requests, [], "a server saw the request before its body")
            c.send(b"hello world")
            r = c.read_response("POST")
            self.assertEqual((r.status, r.body), (200, b"POST /upload\nhello world"))
            self.assertEqual(c.exchange("GET", "/next").status, 200)
        req = up.requests[0]
        self.assertEqual(req.body, b"hello world")
        self.assertEqual(req.headers.tokens("expect"), [])
        self.assertFalse(req.continue_sent)
        self.assertNoUpstreamErrors()

    def test_body_sent_without_waiting_for_100(self):
        # clients may send the body at once (or after their own short wait)
        up = self.upstream(0, handler=echo_handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"POST /eager HTTP/1.1\r\nHost: e.test\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 5\r\n\r\nhello")
            r = c.read_response("POST")
            self.assertEqual((r.status, r.body), (200, b"POST /eager\nhello"))
            self.assertLessEqual([i.status for i in r.interim], [100])
            self.assertEqual(c.exchange("GET", "/next").status, 200)

    def test_100_continue_with_chunked_body(self):
        up = self.upstream(0, handler=echo_handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"PUT /c HTTP/1.1\r\nHost: e.test\r\nExpect: 100-continue\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n")
            interim = c.read_response("PUT", interim=False, timeout=T(5))
            self.assertEqual(interim.status, 100)
            c.send(b"5\r\nhello\r\n0\r\n\r\n")
            r = c.read_response("PUT")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"PUT /c\nhello")

    def test_upstream_final_status_instead_of_100(self):
        # the upstream refuses without reading the body: the client gets that answer, no 100
        def refuse(ex):
            ex.respond(401, b"who are you", headers=[("Connection", "close")])
            ex.close()
            return True

        up = self.upstream(0, expect_handler=refuse)
        cfg = make_config([cluster("c", [up])], failover=STREAM_BODIES)
        with self.trident(cfg) as t, Client.to(t) as c:
            c.send(b"POST /secret HTTP/1.1\r\nHost: e.test\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 1000\r\n\r\n")
            r = c.read_response("POST", timeout=T(5))
            self.assertEqual(r.status, 401)
            self.assertEqual(r.interim, [])
            self.assertEqual(r.body, b"who are you")

    def test_over_limit_gets_413_without_100(self):
        up = self.upstream(0, handler=echo_handler)
        cfg = make_config([cluster("c", [up])], limits={"max_request_body": 1000})
        with self.trident(cfg) as t, Client.to(t) as c:
            c.send(b"POST /big HTTP/1.1\r\nHost: e.test\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 5000\r\n\r\n")
            r = c.read_response("POST", timeout=T(5))
            self.assertEqual(r.interim, [], "100 Continue sent for a body that will be refused")
            self.assertErrorPage(r, 413)
            self.assertTrue(c.closed_by_peer())
            e = t.wait_for_access(lambda e: e.get("path") == "/big")
            self.assertEqual((e["status"], e.get("reason")), (413, "body_too_large"))
        self.assertEqual(up.requests, [])
        self.assertEqual(up.connections, 0)

    def test_unknown_expectation_gets_417(self):
        up = self.upstream(0, handler=echo_handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"POST /x HTTP/1.1\r\nHost: e.test\r\nExpect: 200-maybe\r\n"
                   b"Content-Length: 3\r\n\r\nabc")
            r = c.read_response("POST", timeout=T(5))
            self.assertEqual(r.interim, [])
            self.assertErrorPage(r, 417)
            e = t.wait_for_access(lambda e: e.get("path") == "/x")
            self.assertEqual(e["status"], 417)
        self.assertEqual(up.requests, [])
        self.assertEqual(up.connections, 0)

    def test_expect_from_http10_client_is_ignored(self):
        # RFC 9110 10.1.1: a server must ignore 100-continue from HTTP/1.0 clients
        up = self.upstream(0, handler=echo_handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"POST /old HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
            r = c.read_response("POST", timeout=T(5))
            self.assertEqual(r.status, 200)
            self.assertEqual(r.interim, [])
            self.assertEqual(r.body, b"POST /old\nabc")
        self.assertNotIn("expect", up.requests[0].headers)


class Interim(E2ETestCase):

    def test_103_early_hints_relayed_to_http11_only(self):
        def handler(ex):
            ex.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            ex.respond(200, b"final")

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t:
            with Client.to(t) as c:
                r = c.exchange("GET", "/hints")
                self.assertEqual((r.status, r.body), (200, b"final"))
                self.assertEqual([i.status for i in r.interim], [103])
                self.assertEqual(r.interim[0].headers.get("link"), "</style.css>; rel=preload")
            with Client.to(t) as c:
                c.send(b"GET /hints HTTP/1.0\r\n\r\n")
                r = c.read_response()
                self.assertEqual((r.status, r.body), (200, b"final"))
                self.assertEqual(r.interim, [], "1xx sent to an HTTP/1.0 client")


if __name__ == "__main__":
    unittest.main()
