"""WebSocket tunnelling, and Upgrade requests that must not become tunnels."""
import base64
import os
import time
import unittest

from harness import (Client, E2ETestCase, T, cluster, echo_handler, make_config, ws_accept,
                     ws_frame, ws_read_frame)


def ws_handler(ex):
    if ex.req.headers.tokens("upgrade") == ["websocket"]:
        ex.websocket_echo()
    else:
        echo_handler(ex)


def upgrade_or_echo(ex):
    """An upstream that would switch protocols for any Upgrade it sees."""
    if ex.req.headers.has("upgrade"):
        ex.send_head(101, [("Upgrade", ex.req.headers.get("upgrade")), ("Connection", "Upgrade")])
        ex.close()
        return
    echo_handler(ex)


def handshake(c, key=None, path="/chat"):
    key = key or base64.b64encode(os.urandom(16)).decode()
    c.request("GET", path, [("Connection", "keep-alive, Upgrade"), ("Upgrade", "websocket"),
                            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"),
                            ("Origin", "http://ws.test")])
    return key, c.read_response()


class WebSocket(E2ETestCase):

    def test_websocket_echo(self):
        up = self.upstream(0, handler=ws_handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            key, r = handshake(c)
            self.assertEqual(r.status, 101, r)
            self.assertEqual(r.headers.tokens("upgrade"), ["websocket"])
            self.assertIn("upgrade", r.headers.tokens("connection"))
            self.assertEqual(r.headers.get("sec-websocket-accept"), ws_accept(key))
            messages = [(1, b"hello"), (2, os.urandom(200)), (2, os.urandom(70_000)),
                        (1, "\u00e9t\u00e9".encode()), (2, b"")]
            for op, payload in messages:
                c.send(ws_frame(op, payload))
                fin, rop, masked, got = ws_read_frame(c.reader)
                self.assertEqual((fin, rop, masked, got), (True, op, False, payload))
            # fragmented message and a ping in the middle
            c.send(ws_frame(1, b"frag-", fin=False) + ws_frame(9, b"ping?") +
                   ws_frame(0, b"ment", fin=True))
            self.assertEqual(ws_read_frame(c.reader), (False, 1, False, b"frag-"))
            self.assertEqual(ws_read_frame(c.reader), (True, 10, False, b"ping?"))
            self.assertEqual(ws_read_frame(c.reader), (True, 0, False, b"ment"))
            c.send(ws_frame(8, b"\x03\xe8bye"))
            fin, op, masked, payload = ws_read_frame(c.reader)
            self.assertEqual((op, payload), (8, b"\x03\xe8"))
            self.assertTrue(c.closed_by_peer(), "tunnel not closed after the upstream closed")
            e = t.wait_for_access(lambda e: e.get("path") == "/chat")
            self.assertEqual(e["status"], 101)
        req = up.requests[0]
        self.assertEqual(req.headers.tokens("upgrade"), ["websocket"])
        self.assertIn("upgrade", req.headers.tokens("connection"))
        self.assertEqual(req.headers.get("sec-websocket-key"), key)
        self.assertEqual(req.headers.get("sec-websocket-version"), "13")
        self.assertEqual(len(up.ws_frames), 9)
        self.assertNoUpstreamErrors()

    def test_frames_sent_with_the_handshake_and_server_first_frame(self):
        # client frames written together with the upgrade request, and a server frame written
        # together with the 101, both cross the tunnel intact
        def handler(ex):
            key = ex.req.headers.get("sec-websocket-key")
            ex.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + ws_accept(key).encode() +
                    b"\r\n\r\n" + ws_frame(1, b"welcome", mask=False))
            ex.websocket_echo_frames()

        up = self.upstream(0, handler=handler)
        key = base64.b64encode(os.urandom(16)).decode()
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"GET /early HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\n"
                   b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
                   key.encode() + b"\r\n\r\n" + ws_frame(1, b"GET / HTTP/1.1\r\n\r\n"))
            r = c.read_response()
            self.assertEqual(r.status, 101)
            self.assertEqual(ws_read_frame(c.reader), (True, 1, False, b"welcome"))
            self.assertEqual(ws_read_frame(c.reader), (True, 1, False, b"GET / HTTP/1.1\r\n\r\n"))
        self.assertEqual(len(up.requests), 1)

    def test_server_data_past_the_buffer_with_the_handshake_keeps_flowing(self):
        # The 101 and a frame larger than limits.buffer_bytes in one write: the first read fills
        # the client's output past the high watermark, which pauses reading from the server; the
        # rest must follow once the client's output drains, with the client sending nothing.
        big = os.urandom(8192)

        def handler(ex):
            key = ex.req.headers.get("sec-websocket-key")
            ex.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + ws_accept(key).encode() +
                    b"\r\n\r\n" + ws_frame(2, big, mask=False))
            ex.websocket_echo_frames()

        up = self.upstream(0, handler=handler)
        cfg = make_config([cluster("c", [up])], limits={"buffer_bytes": 4096})
        with self.trident(cfg) as t, Client.to(t) as c:
            _, r = handshake(c, path="/push")
            self.assertEqual(r.status, 101)
            self.assertEqual(ws_read_frame(c.reader), (True, 2, False, big))

    def test_client_closing_tunnel_closes_upstream(self):
        up = self.upstream(0, handler=ws_handler)
        with self.trident(make_config([cluster("c", [up])])) as t:
            with Client.to(t) as c:
                _, r = handshake(c)
                self.assertEqual(r.status, 101)
                c.send(ws_frame(1, b"x"))
                self.assertEqual(ws_read_frame(c.reader)[3], b"x")
            up.wait_closed_connections(1, T(5))

    def test_tunnel_idle_timeout(self):
        up = self.upstream(0, handler=ws_handler)
        cfg = make_config([cluster("c", [up])], timeouts={"tunnel_idle_ms": 500})
        with self.trident(cfg) as t, Client.to(t) as c:
            _, r = handshake(c, path="/idle")
            self.assertEqual(r.status, 101)
            t0 = time.monotonic()
            # traffic every 0.1 s keeps it alive past the idle timeout
            for _ in range(8):
                time.sleep(0.1)
                c.send(ws_frame(1, b"keepalive"))
                self.assertEqual(ws_read_frame(c.reader)[3], b"keepalive")
            busy = time.monotonic() - t0
            self.assertTrue(c.closed_by_peer(T(3)), "idle tunnel not closed")
            self.assertGreater(time.monotonic() - t0, busy + 0.45)
            e = t.wait_for_access(lambda e: e.get("path") == "/idle")
            self.assertEqual(e["status"], 101)
            self.assertEqual(e.get("reason"), "tunnel_idle")
            up.wait_closed_connections(1, T(3))

    def test_upstream_refusing_the_upgrade(self):
        up = self.upstream(0, handler=lambda ex: ex.respond(403, b"no websockets here"))
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            _, r = handshake(c)
            self.assertEqual(r.status, 403)
            self.assertEqual(r.body, b"no websockets here")
            self.assertNotIn("upgrade", r.headers.tokens("connection"))


class NotTunnelled(E2ETestCase):

    def test_h2c_upgrade_is_not_tunnelled(self):
        up = self.upstream(0, handler=upgrade_or_echo)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.request("GET", "/h2c", [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                                      ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"GET /h2c\n")
            # the connection is still HTTP/1.1
            r = c.exchange("GET", "/after")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"GET /after\n")
        h = up.requests[0].headers
        self.assertNotIn("upgrade", h)
        self.assertNotIn("http2-settings", h)
        self.assertNotIn("upgrade", h.tokens("connection"))
        self.assertNoUpstreamErrors()

    def test_websocket_upgrade_on_post_or_http10_is_not_tunnelled(self):
        up = self.upstream(0, handler=upgrade_or_echo)
        with self.trident(make_config([cluster("c", [up])])) as t:
            with Client.to(t) as c:
                r = c.exchange("POST", "/ws-post", [("Connection", "Upgrade"), ("Upgrade", "websocket")],
                               body=b"x")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, b"POST /ws-post\nx")
            with Client.to(t) as c:
                c.send(b"GET /ws10 HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                r = c.read_response()
                self.assertEqual(r.status, 200)
        for req in up.requests:
            self.assertNotIn("upgrade", req.headers)

    def test_101_without_upgrade_request_is_not_tunnelled(self):
        # an upstream that answers 101 to a plain request must not turn it into a tunnel
        def handler(ex):
            ex.send_head(101, [("Upgrade", "websocket"), ("Connection", "Upgrade")])
            ex.close()

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.request("GET", "/plain")
            r = c.read_response()
            self.assertErrorPage(r, 502)
            # still plain HTTP on that connection: the next request is answered, not tunnelled
            self.assertEqual(c.exchange("GET", "/after").status, 502)


if __name__ == "__main__":
    unittest.main()
