"""Body framing both ways (Content-Length, chunked, close-delimited) and 1 GiB streams with bounded
memory."""
import os
import socket
import threading
import time
import unittest
import zlib

from harness import (NO_PASSIVE, STREAM_BODIES, Client, E2ETestCase, Sink, T, chunked_encode,
                     cluster, echo_handler, make_config, pattern_blocks, pattern_crc)

GIB = 1 << 30
MIB = 1 << 20
# VmHWM may grow at most this much over the RSS right after start-up while 1 GiB streams through
RSS_GROWTH_LIMIT_KB = 64 * 1024


def body_echo(ex):
    """Answers with the request's body, its framing and length in headers."""
    r = ex.req
    ex.respond(200, r.body or b"", headers=[("X-Chunked", "1" if r.chunked else "0"),
                                             ("X-Len", str(r.body_len))])


class RequestBodies(E2ETestCase):

    def test_chunked_request_body_rechunked_to_upstream(self):
        up = self.upstream(0, handler=body_echo)
        big = os.urandom(300_000)
        parts = [b"hello", b" ", b"world", big[:1], big[1:70_000], big[70_000:]]
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"POST /chunked HTTP/1.1\r\nHost: b.test\r\nTransfer-Encoding: chunked\r\n\r\n")
            c.send(chunked_encode(parts[:3], ext=True))  # chunk extensions are dropped or kept
            r = c.read_response("POST")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"hello world")
            c.send(b"POST /chunked2 HTTP/1.1\r\nHost: b.test\r\nTransfer-Encoding: chunked\r\n\r\n")
            for p in parts[3:]:  # chunks in separate writes
                c.send(chunked_encode([p])[:-5])
            c.send(b"0\r\n\r\n")
            r = c.read_response("POST")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, big)
        for req, body in zip(up.requests, [b"hello world", big]):
            self.assertTrue(req.chunked, "upstream did not receive a chunked body")
            self.assertEqual(req.headers.get_all("transfer-encoding"), ["chunked"])
            self.assertNotIn("content-length", req.headers)
            self.assertEqual(req.body, body)
        self.assertNoUpstreamErrors()

    def test_content_length_request_body(self):
        up = self.upstream(0, handler=body_echo)
        body = os.urandom(200_000)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(f"PUT /cl HTTP/1.1\r\nHost: b.test\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            for i in range(0, len(body), 7000):
                c.send(body[i:i + 7000])
            r = c.read_response("PUT")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, body)
            r = c.exchange("POST", "/empty", body=b"")
            self.assertEqual(r.status, 200)
        req = up.requests[0]
        self.assertFalse(req.chunked)
        self.assertEqual(req.headers.get_all("content-length"), [str(len(body))])
        self.assertEqual(req.body, body)
        self.assertEqual(up.requests[1].headers.get_all("content-length"), ["0"])
        self.assertNoUpstreamErrors()

    def test_request_body_over_limit_is_413(self):
        up = self.upstream(0, handler=body_echo)
        cfg = make_config([cluster("c", [up])], limits={"max_request_body": 1000})
        with self.trident(cfg) as t:
            with Client.to(t) as c:
                r = c.exchange("POST", "/cl-big", body=b"x" * 1001)
                self.assertErrorPage(r, 413)
            with Client.to(t) as c:
                c.send(b"POST /chunked-big HTTP/1.1\r\nHost: b.test\r\nTransfer-Encoding: chunked\r\n\r\n")
                c.send(chunked_encode([b"y" * 600, b"y" * 600]))
                r = c.read_response("POST")
                # the head may already be upstream; the client must not get a 200 for the body
                self.assertIn(r.status, (413,), r)
                self.assertErrorPage(r, 413)
            with Client.to(t) as c:
                self.assertEqual(c.exchange("POST", "/ok", body=b"z" * 1000).status, 200)
            e = t.wait_for_access(lambda e: e.get("path") == "/cl-big")
            self.assertEqual((e["status"], e.get("reason")), (413, "body_too_large"))
        self.assertNotIn("/cl-big", [r.target for r in up.requests])


class ConnectionEnd:
    """A server that reads its first connection to the end and answers nothing: the bytes it
    got, and how the connection ended ("reset": RST, "eof": an orderly close)."""

    def __init__(self, host):
        self.lsock = socket.create_server((host, 0))
        self.address = "%s:%d" % self.lsock.getsockname()
        self.data = bytearray()
        self.ended = None
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        s, _ = self.lsock.accept()
        s.settimeout(T(30))
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    self.ended = "eof"
                    break
                self.data += b
        except ConnectionResetError:
            self.ended = "reset"
        except OSError as e:
            self.ended = f"error: {e}"
        finally:
            s.close()
            self.lsock.close()
            self.done.set()


class RefusedStreamedBodies(E2ETestCase):
    """A body over max_request_body that streams (chunked, larger than retry_body_bytes) is
    refused with 413 once the limit is passed, after part of it went to the server. That part must
    read as an aborted request: no last chunk, and a connection reset rather than closed."""

    def test_body_over_the_limit_reaches_the_server_as_an_abort(self):
        srv = ConnectionEnd(self.net.upstream_ip(0))
        c0 = cluster("c", [srv.address])
        c0["passive"] = dict(NO_PASSIVE)
        cfg = make_config([c0], limits={"max_request_body": MIB}, failover=STREAM_BODIES)
        with self.trident(cfg) as t, Client.to(t) as c:
            c.send(b"POST /upload HTTP/1.1\r\nHost: b.test\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(32):  # 2 MiB in 64 KiB chunks; trident stops reading past 1 MiB
                    c.send(chunked_encode([b"u" * 65536])[:-5])
                c.send(b"0\r\n\r\n")
            except OSError:
                pass  # refused mid-body: the connection may be reset under the client's writes
            r = c.read_response("POST")
            self.assertErrorPage(r, 413)
            self.assertTrue(srv.done.wait(T(10)), "the server's connection never ended")
        self.assertEqual(srv.ended, "reset", f"the server saw {srv.ended} after "
                                             f"{len(srv.data)} bytes")
        self.assertFalse(srv.data.endswith(b"\r\n0\r\n\r\n"), "the body was ended for the server")
        self.assertLess(len(srv.data), MIB + 64 * 1024 + 4096)


class ResponseBodies(E2ETestCase):

    def test_content_length_response(self):
        body = os.urandom(250_000)
        up = self.upstream(0, handler=lambda ex: ex.respond(200, body))
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            r = c.exchange()
            self.assertEqual(r.framing, "length")
            self.assertEqual(r.headers.get("content-length"), str(len(body)))
            self.assertEqual(r.body, body)
            self.assertTrue(r.keep_alive)

    def test_chunked_response(self):
        parts = [b"a", b"bb" * 1000, os.urandom(100_000), b"end"]
        up = self.upstream(0, handler=lambda ex: ex.respond(200, mode="chunked", chunks=parts))
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            for _ in range(2):
                r = c.exchange()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.framing, "chunked")
                self.assertTrue(r.complete)
                self.assertEqual(r.body, b"".join(parts))

    def test_close_delimited_response_becomes_chunked_for_http11(self):
        body = os.urandom(150_000)
        up = self.upstream(0, handler=lambda ex: ex.respond(200, body, mode="close"))
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            r = c.exchange("GET", "/until-close")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.framing, "chunked", r)
            self.assertTrue(r.complete)
            self.assertEqual(r.body, body)
            # the client connection outlives the upstream's
            r = c.exchange("GET", "/again")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, body)
        self.assertEqual(up.connections, 2)

    def test_close_delimited_response_for_http10(self):
        body = os.urandom(150_000)
        up = self.upstream(0, handler=lambda ex: ex.respond(200, body, mode="close"))
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"GET /until-close HTTP/1.0\r\nHost: b.test\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.framing, "close", r)
            self.assertTrue(r.complete)
            self.assertEqual(r.body, body)
            self.assertNotIn("transfer-encoding", r.headers)

    def test_chunked_response_to_http10_is_close_delimited(self):
        up = self.upstream(0, handler=lambda ex: ex.respond(200, mode="chunked",
                                                             chunks=[b"one", b"two"]))
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"GET / HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertIn(r.framing, ("close", "length"), r)
            self.assertNotIn("transfer-encoding", r.headers)
            self.assertEqual(r.body, b"onetwo")

    def test_head_and_204_have_no_body(self):
        def handler(ex):
            if ex.req.method == "HEAD":
                ex.respond(200, b"x" * 1000)  # Content-Length: 1000, no body
            else:
                ex.respond(204, mode="none")

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            r = c.exchange("HEAD", "/h")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers.get("content-length"), "1000")
            r = c.exchange("DELETE", "/d")
            self.assertEqual(r.status, 204)
            self.assertNotIn("transfer-encoding", r.headers)
            # nothing stray on the connection: the next exchange parses cleanly
            r = c.exchange("HEAD", "/h2")
            self.assertEqual(r.status, 200)
            self.assertFalse(c.closed_by_peer(0.2))


class Framing(E2ETestCase):

    def test_head_response_with_chunked_header_has_no_body(self):
        def handler(ex):
            if ex.req.method == "HEAD":
                ex.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            else:
                echo_handler(ex)

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            r = c.exchange("HEAD", "/h")
            self.assertEqual(r.status, 200)
            r = c.exchange("GET", "/after")
            self.assertEqual(r.body, b"GET /after\n")
        self.assertEqual(up.connections, 1)

    def test_304_with_content_length_has_no_body(self):
        def handler(ex):
            if ex.req.target == "/cached":
                ex.send(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: \"x\"\r\n\r\n")
            else:
                echo_handler(ex)

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            r = c.exchange("GET", "/cached", [("If-None-Match", '"x"')])
            self.assertEqual(r.status, 304)
            self.assertEqual(r.headers.get("etag"), '"x"')
            r = c.exchange("GET", "/after")
            self.assertEqual((r.status, r.body), (200, b"GET /after\n"))

    def test_chunked_trailers_do_not_break_framing(self):
        def handler(ex):
            ex.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                    b"4\r\nbody\r\n0\r\nX-Sum: 42\r\n\r\n")

        up = self.upstream(0, handler=handler)
        with self.trident(make_config([cluster("c", [up])])) as t, Client.to(t) as c:
            c.send(b"POST /t HTTP/1.1\r\nHost: b.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n0\r\nX-Req-Trailer: 1\r\n\r\n")
            r = c.read_response("POST")
            self.assertEqual((r.status, r.body), (200, b"body"))
            self.assertTrue(r.complete)
            r = c.exchange("GET", "/again")
            self.assertEqual((r.status, r.body), (200, b"body"))
        self.assertEqual(up.requests[0].body, b"abc")
        self.assertNoUpstreamErrors()


class Streaming(E2ETestCase):
    """1 GiB each way with data generated on the fly; the proxy's memory must stay bounded."""

    def _cfg(self, up):
        return make_config([cluster("c", [up])], limits={"max_request_body": 2 * GIB},
                           timeouts={"client_body_ms": 30000, "upstream_response_ms": 30000,
                                     "client_send_ms": 30000, "upstream_send_ms": 30000})

    def _assert_rss_bounded(self, t, what):
        growth = t.peak_rss_kb() - t.rss_after_start_kb
        self.assertLess(growth, RSS_GROWTH_LIMIT_KB,
                        f"{what}: peak RSS grew {growth} KiB over the {t.rss_after_start_kb} KiB "
                        f"after start-up")
        return growth

    def test_1gib_download(self):
        for mode in ("length", "chunked"):
            with self.subTest(mode=mode):
                total = GIB if mode == "length" else GIB // 4
                up = self.upstream(0, handler=lambda ex: ex.respond_stream(total, mode=mode),
                                   name=f"dl-{mode}")
                with self.trident(self._cfg(up)) as t, Client.to(t, timeout=T(30)) as c:
                    t0 = time.monotonic()
                    c.request("GET", f"/download-{mode}")
                    r = c.read_response(store_limit=0)
                    elapsed = time.monotonic() - t0
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.framing, mode)
                    self.assertTrue(r.complete)
                    self.assertEqual(r.body_len, total)
                    self.assertEqual(r.body_crc, pattern_crc(total))
                    growth = self._assert_rss_bounded(t, f"{mode} download")
                    e = t.wait_for_access(lambda e: e.get("path") == f"/download-{mode}")
                    self.assertGreaterEqual(e["bytes_out"], total)
                    print(f"\n  {mode} download {total >> 20} MiB: {elapsed:.1f}s, "
                          f"peak RSS +{growth} KiB", end=" ")
                up.close()

    def test_1gib_upload(self):
        def count(ex):
            r = ex.req
            ex.respond(200, f"{r.body_len} {r.body_crc}".encode())

        up = self.upstream(0, handler=count, keep_limit=0)
        total = GIB
        with self.trident(self._cfg(up)) as t, Client.to(t, timeout=T(30)) as c:
            t0 = time.monotonic()
            c.send(f"POST /upload HTTP/1.1\r\nHost: b.test\r\nContent-Length: {total}\r\n\r\n"
                   .encode())
            crc = 0
            for b in pattern_blocks(total):
                c.send(b)
                crc = zlib.crc32(b, crc)
            r = c.read_response("POST")
            elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, f"{total} {crc}".encode())
            growth = self._assert_rss_bounded(t, "upload")
            e = t.wait_for_access(lambda e: e.get("path") == "/upload")
            self.assertGreaterEqual(e["bytes_in"], total)
            print(f"\n  upload 1024 MiB: {elapsed:.1f}s, peak RSS +{growth} KiB", end=" ")

    def test_backpressure_slow_client(self):
        # the client stops reading for a while: trident must stop reading the upstream rather
        # than buffer the (fast) upstream's body
        total = 256 * MIB
        up = self.upstream(0, handler=lambda ex: ex.respond_stream(total))
        with self.trident(self._cfg(up)) as t, Client.to(t, timeout=T(30)) as c:
            c.request("GET", "/slow-reader")
            head = c.reader.read_until(b"\r\n\r\n", 65536)
            self.assertIn(f"Content-Length: {total}".encode(), head)
            sink = Sink(0)
            c.reader.read_exact(MIB, sink)
            time.sleep(1.0)  # the pause itself is the behaviour under test
            mid = t.rss_kb() - t.rss_after_start_kb
            self.assertLess(mid, RSS_GROWTH_LIMIT_KB, f"RSS grew {mid} KiB while the client paused")
            c.reader.read_exact(total - MIB, sink)
            self.assertEqual((sink.n, sink.crc), (total, pattern_crc(total)))
            self._assert_rss_bounded(t, "slow client")

    def test_backpressure_slow_upstream(self):
        # the upstream stops reading for a while: trident must stop reading the client
        total = 256 * MIB
        got = {}

        def slow_reader(ex):
            time.sleep(1.0)
            got["rss_mid"] = ex.upstream.trident.rss_kb() - ex.upstream.trident.rss_after_start_kb
            sink = Sink(0)
            ex.conn.reader.read_exact(int(ex.req.headers.get("content-length")), sink)
            ex.respond(200, f"{sink.n} {sink.crc}".encode(), headers=[("Connection", "close")])
            return True

        up = self.upstream(0, head_handler=slow_reader)
        with self.trident(self._cfg(up)) as t, Client.to(t, timeout=T(30)) as c:
            up.trident = t
            c.send(f"POST /slow-upstream HTTP/1.1\r\nHost: b.test\r\nContent-Length: {total}\r\n\r\n"
                   .encode())
            c.send_blocks(pattern_blocks(total))
            r = c.read_response("POST")
            self.assertEqual(r.body, f"{total} {pattern_crc(total)}".encode())
            self.assertLess(got["rss_mid"], RSS_GROWTH_LIMIT_KB,
                            f"RSS grew {got['rss_mid']} KiB while the upstream paused")
            self._assert_rss_bounded(t, "slow upstream")

    def test_chunked_upload_256mib(self):
        def count(ex):
            r = ex.req
            ex.respond(200, f"{r.body_len} {r.body_crc} {int(r.chunked)}".encode())

        up = self.upstream(0, handler=count, keep_limit=0)
        total = 256 * MIB
        with self.trident(self._cfg(up)) as t, Client.to(t, timeout=T(30)) as c:
            c.send(b"POST /upload-chunked HTTP/1.1\r\nHost: b.test\r\nTransfer-Encoding: chunked\r\n\r\n")
            for b in pattern_blocks(total, 256 * 1024):
                c.send(f"{len(b):x}\r\n".encode() + b + b"\r\n")
            c.send(b"0\r\n\r\n")
            r = c.read_response("POST")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, f"{total} {pattern_crc(total)} 1".encode())
            self._assert_rss_bounded(t, "chunked upload")


if __name__ == "__main__":
    unittest.main()
