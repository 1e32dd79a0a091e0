"""Request smuggling and malformed input, organised by attack.

Every case sends exact bytes on one client connection, with a benign GET /next-N pipelined behind
them, and then looks at both ends:

- refused: trident's own error page (status as in README "Limits and errors"; JSON body with
  request_id; Connection: close), the connection closed without an answer to the pipelined GET,
  an access-log line with that request id, the reason and no upstream attempt, and NOTHING at the
  upstream. Those tests run with upstream_keepalive 0, so anything forwarded would have opened an
  upstream connection; a sentinel request on a fresh connection afterwards drains the upstream's
  accept queue (FIFO) before the count is compared, and shows trident still serves.
- normalised (valid but odd input that trident accepts): exactly one well-formed request at the
  recording upstream, with the expected method, target, framing and body, then the pipelined
  GET /next-N and nothing else. Where upstream connections are pooled, both arrive on the same
  upstream connection: the upstream's strict parser stayed in step with what trident wrote.

Cases that RFC 9112 lets a recipient either refuse or repair (obs-fold, a doubled SP in the request
line) accept both outcomes, and assert each one fully.

Inputs already refused in test_client_errors.py (GARBAGE, no Host, two different Hosts, "Bad Name",
control characters in values, an all-bare-LF head, a "zz" chunk, a 20-digit chunk size, CONNECT,
the plain oversize head) are not repeated byte for byte; their attacks are covered here with other
variants and with the upstream-side assertions.

Tests marked expectedFailure document deviations found in trident (see each docstring).
"""
import contextlib
import unittest

from harness import (NO_PASSIVE, Client, Closed, E2ETestCase, T, cluster, echo_handler,
                     make_config, wait_until)

NO_RETRY = {"retries": 0, "hedge": False}

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: s.test\r\n\r\n"


def chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


LAST = b"0\r\n\r\n"
CHUNKED_ABCDEF = chunk(b"abc") + chunk(b"def") + LAST


def next_request(path):
    return f"GET {path} HTTP/1.1\r\nHost: next.test\r\n\r\n".encode()


def post(fields=b"", body=b"", target=b"/p", version=b"HTTP/1.1", host=b"Host: s.test\r\n"):
    """A POST head with the given raw field lines (each ending in CRLF) after Host, then body."""
    return b"POST " + target + b" " + version + b"\r\n" + host + fields + b"\r\n" + body


def get(fields=b"", target=b"/g", host=b"Host: s.test\r\n"):
    return b"GET " + target + b" HTTP/1.1\r\n" + host + fields + b"\r\n"


def chunked(body, fields=b""):
    return post(b"Transfer-Encoding: chunked\r\n" + fields, body, target=b"/c")


class Mark:
    """The upstream's counters before a case."""

    def __init__(self, up):
        self.connections = up.connections
        self.requests = len(up.requests)
        self.errors = len(up.errors)


class SmugglingTestCase(E2ETestCase):

    def setUp(self):
        super().setUp()
        self._seq = 0
        self._refused = {}   # request id -> (status, reason) of each error page seen
        self.pooling = False

    def seq(self):
        self._seq += 1
        return self._seq

    @contextlib.contextmanager
    def proxy(self, keepalive=0, handler=echo_handler, limits=None, timeouts=None, failover=None,
              **upstream_kw):
        """One recording upstream behind trident. keepalive=0 (the default) disables upstream
        connection reuse, so "nothing was forwarded" is "no upstream connection was opened";
        keepalive=None keeps the default pool. Passive checks and retries are off: a refused or
        failed case must not change where (or how often) the next one goes."""
        up = self.upstream(0, handler=handler, **upstream_kw)
        self._refused = {}
        lim = dict(limits or {})
        if keepalive is not None:
            lim["upstream_keepalive"] = keepalive
        self.pooling = keepalive != 0
        c = cluster("c", [up])
        c["passive"] = dict(NO_PASSIVE)
        cfg = make_config([c], limits=lim, timeouts=timeouts,
                          failover=dict(NO_RETRY, **(failover or {})))
        with self.trident(cfg) as t:
            yield t, up
            self.assertLogged(t)

    # ---- sending -----------------------------------------------------------------------------

    def pipeline(self, t, raw, method="GET"):
        """raw, then a benign GET behind it, on one connection. Returns (next path, first
        response, second response or None, whether the peer closed after an error page)."""
        nxt = f"/next-{self.seq()}"
        with Client.to(t) as c:
            try:
                c.send(raw + next_request(nxt))
            except OSError:
                pass  # refused and closed while we were still sending
            r1 = c.read_response(method)
            if r1.status >= 400 and "close" in r1.headers.tokens("connection"):
                return nxt, r1, None, c.closed_by_peer()
            return nxt, r1, c.read_response(), False

    # ---- refused -----------------------------------------------------------------------------

    def checkRefused(self, t, up, mark, r, closed, status, reason):
        body = self.assertErrorPage(r, status)
        self.assertTrue(closed, "connection not closed after the error page (or the pipelined "
                                "request behind the malformed one was answered)")
        self._refused[body["request_id"]] = (status, reason)
        self.assertNothingForwarded(t, up, mark)

    def assertRefused(self, t, up, raw, status=400, reason="bad_request", method="GET"):
        mark = Mark(up)
        _, r, _, closed = self.pipeline(t, raw, method)
        self.checkRefused(t, up, mark, r, closed, status, reason)

    def assertEachRefused(self, cases, **kw):
        """assertRefused for each (name, raw) of cases, one subtest each, through one trident."""
        with self.proxy() as (t, up):
            for name, raw in cases:
                with self.subTest(name):
                    self.assertRefused(t, up, raw, **kw)

    def assertNothingForwarded(self, t, up, mark):
        """Nothing reached the upstream since mark. A sentinel request on a fresh client
        connection goes through first: the upstream accepts connections in order, so once the
        sentinel has arrived every connection trident opened before it has been counted."""
        path = f"/sentinel-{self.seq()}"
        with Client.to(t) as c:
            r = c.exchange("GET", path)
        self.assertEqual(r.status, 200, f"trident stopped serving after the malformed input: {r}")
        got = [(q.method, q.target) for q in up.requests[mark.requests:]]
        self.assertEqual(got, [("GET", path)], "something reached the upstream")
        if not self.pooling:
            self.assertEqual(up.connections - mark.connections, 1,
                             "trident opened an upstream connection for the malformed input")
        self.assertEqual(up.errors[mark.errors:], [], "the upstream saw malformed bytes")

    def assertLogged(self, t):
        """Every error page seen has its access-log line: same request id, status, reason, and
        no upstream attempt."""
        want = self._refused
        if not want:
            return
        lines = t.wait_for_access(lambda e: e.get("request_id") in want, count=len(want),
                                  what="access log lines of the refused requests")
        for e in lines if isinstance(lines, list) else [lines]:
            status, reason = want[e["request_id"]]
            self.assertEqual((e["status"], e.get("reason"), e.get("attempts")),
                             (status, reason, 0), e)

    # ---- normalised --------------------------------------------------------------------------

    def checkForwardedOnce(self, up, mark, nxt, r1, r2, method, target, body, framing):
        self.assertEqual(r1.status, 200, r1)
        self.assertTrue(r1.complete, r1)
        self.assertEqual(r1.body, f"{method} {target}\n".encode() + body)
        self.assertIsNotNone(r2, "connection closed after the first request")
        self.assertEqual((r2.status, r2.body), (200, f"GET {nxt}\n".encode()))
        reqs = up.requests[mark.requests:]
        self.assertEqual([(q.method, q.target) for q in reqs], [(method, target), ("GET", nxt)],
                         "the upstream did not see exactly the request and the pipelined GET")
        first = reqs[0]
        self.assertEqual(first.version, "HTTP/1.1")
        self.assertEqual(first.body, body)
        te = first.headers.tokens("transfer-encoding")
        cl = first.headers.get_all("content-length")
        if framing == "chunked":
            self.assertEqual((te, cl), (["chunked"], []), first.headers)
        elif framing == "length":
            self.assertEqual(te, [], first.headers)
            self.assertEqual([int(v) for v in cl], [len(body)], first.headers)
        else:
            self.assertEqual((te, cl), ([], []), first.headers)
        if self.pooling:
            self.assertEqual(reqs[1].conn_id, first.conn_id,
                             "the pipelined request did not reuse the upstream connection")
        else:
            up.wait_closed_connections(up.connections)  # errors from any extra bytes are in
        self.assertEqual(up.errors[mark.errors:], [], "the upstream saw malformed bytes")
        return first

    def assertForwardedOnce(self, t, up, raw, method, target, body=b"", framing=None):
        mark = Mark(up)
        nxt, r1, r2, _ = self.pipeline(t, raw, method)
        return self.checkForwardedOnce(up, mark, nxt, r1, r2, method, target, body, framing)

    def assertRefusedOrForwardedOnce(self, t, up, raw, method, target, body=b"", framing=None):
        """For inputs RFC 9112 lets a server refuse (400) or repair: either outcome, in full."""
        mark = Mark(up)
        nxt, r1, r2, closed = self.pipeline(t, raw, method)
        if r1.status == 400:
            self.checkRefused(t, up, mark, r1, closed, 400, "bad_request")
            return None
        return self.checkForwardedOnce(up, mark, nxt, r1, r2, method, target, body, framing)


# ---- CL.TE and TE.CL -----------------------------------------------------------------------------

class ContentLengthWithTransferEncoding(SmugglingTestCase):
    """A message with both framings is refused (RFC 9112 6.3), whichever comes first, however the
    coding is spelt, and whatever the body holds: neither framing is forwarded."""

    def test_both_framings_are_refused(self):
        cl_te_body = LAST + SMUGGLED
        te_cl_body = chunk(SMUGGLED) + LAST
        cases = [
            ("CL.TE: the chunked body ends early, the rest is a request",
             post(b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(cl_te_body),
                  cl_te_body)),
            ("TE.CL: the chunk holds a whole request",
             post(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", te_cl_body)),
            ("Content-Length 0 with chunked",
             post(b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", te_cl_body)),
            ("chunked with Content-Length 0",
             post(b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", te_cl_body)),
            ("Content-Length with xchunked",
             post(b"Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n", b"hello")),
            ("Content-Length with identity",
             post(b"Content-Length: 5\r\nTransfer-Encoding: identity\r\n", b"hello")),
            ("Content-Length with chunked on a folded line",
             post(b"Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n", b"hello")),
            ("chunked with Content-Length on a folded line",
             post(b"Transfer-Encoding: chunked\r\nContent-Length:\r\n 5\r\n", te_cl_body)),
            ("Content-Length, chunked, Content-Length",
             post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                  b"hello")),
            ("HTTP/1.0 with both",
             post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"hello",
                  version=b"HTTP/1.0")),
        ]
        self.assertEachRefused(cases, method="POST")


# ---- obfuscated Transfer-Encoding ----------------------------------------------------------------

class ObfuscatedTransferEncoding(SmugglingTestCase):

    def test_obfuscated_codings_are_refused(self):
        """Anything but exactly one "chunked" coding, and any field line that only some parsers
        would read as Transfer-Encoding, is a 400: never a body-less request followed by the
        chunks parsed as a second one."""
        body = chunk(b"abc") + LAST
        cases = [
            ("xchunked", b"Transfer-Encoding: xchunked\r\n"),
            ("chunked, identity", b"Transfer-Encoding: chunked, identity\r\n"),
            ("identity alone", b"Transfer-Encoding: identity\r\n"),
            ("chunked twice in one field", b"Transfer-Encoding: chunked, chunked\r\n"),
            ("two fields, chunked twice",
             b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            ("two fields, chunked then identity",
             b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
            ("two fields, identity then chunked",
             b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n"),
            ("space before the colon", b"Transfer-Encoding : chunked\r\n"),
            ("tab before the colon", b"Transfer-Encoding\t: chunked\r\n"),
            ("quoted coding", b'Transfer-Encoding: "chunked"\r\n'),
            ("vertical tab after chunked", b"Transfer-Encoding: chunked\x0b\r\n"),
            ("NUL after chunked", b"Transfer-Encoding: chunked\x00\r\n"),
            ("chunked on a continuation of identity",
             b"Transfer-Encoding: identity\r\n chunked\r\n"),
        ]
        with self.proxy() as (t, up):
            for name, fields in cases:
                with self.subTest(name):
                    self.assertRefused(t, up, post(fields, body), method="POST")
            with self.subTest("whitespace before the first field line"):
                # RFC 9112 2.2: reject, or ignore that line; never read it as a field
                raw = (b"POST /p HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: s.test\r\n\r\n"
                       + body)
                self.assertRefused(t, up, raw, method="POST")

    def test_valid_spellings_of_chunked_are_decoded_once(self):
        """OWS around the value and case are not obfuscation (RFC 9110 5.5, 7.3): the body is
        decoded as chunked, re-chunked upstream, and the pipelined request stays a request."""
        cases = [
            ("tab after the colon", b"Transfer-Encoding:\tchunked\r\n"),
            ("spaces around the value", b"Transfer-Encoding:   chunked  \r\n"),
            ("coding in capitals", b"Transfer-Encoding: CHUNKED\r\n"),
            ("field name in lower case", b"transfer-encoding: chunked\r\n"),
        ]
        with self.proxy(keepalive=None) as (t, up):
            for name, fields in cases:
                with self.subTest(name):
                    self.assertForwardedOnce(t, up, post(fields, CHUNKED_ABCDEF), "POST", "/p",
                                             b"abcdef", "chunked")

    def test_chunked_on_a_folded_line_is_refused_or_unfolded(self):
        """obs-fold (RFC 9112 5.2): a 400, or the fold replaced by SP so the value is "chunked",
        decoded as such. Never a body-less request."""
        raw = post(b"Transfer-Encoding:\r\n chunked\r\n", CHUNKED_ABCDEF)
        with self.proxy() as (t, up):
            self.assertRefusedOrForwardedOnce(t, up, raw, "POST", "/p", b"abcdef", "chunked")

    def test_continuation_line_looking_like_transfer_encoding_is_not_framing(self):
        """A continuation line of another field that reads "Transfer-Encoding: chunked" belongs to
        that field: the request has no body (or is refused), and the next bytes are the next
        request, not chunks."""
        raw = post(b"X-Note: a\r\n Transfer-Encoding: chunked\r\n")
        with self.proxy() as (t, up):
            req = self.assertRefusedOrForwardedOnce(t, up, raw, "POST", "/p")
            if req is not None:
                self.assertRegex(req.headers.get("x-note"), r"^a[ \t]+Transfer-Encoding: chunked$")

    def test_underscore_spelling_is_not_a_transfer_coding(self):
        """Transfer_Encoding is another field: the request is framed by its Content-Length."""
        raw = post(b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", b"hello")
        with self.proxy(keepalive=None) as (t, up):
            self.assertForwardedOnce(t, up, raw, "POST", "/p", b"hello", "length")

    def test_chunked_with_trailing_whitespace_frames_a_chunked_body(self):
        """Regression (fixed): "chunked" followed by HTAB (valid OWS) is forwarded as a request WITHOUT a
        body, and the declared chunked body is then parsed as the next request: here the
        upstream receives "POST /p" with no body and then "GET /smuggled". Correct: the coding is
        chunked (OWS is not part of the value), so "GET /smuggled..." is an invalid chunk size
        and the request is a 400 with nothing forwarded; refusing the field is fine too."""
        with self.proxy() as (t, up):
            for name, fields in [("HTAB", b"Transfer-Encoding: chunked\t\r\n"),
                                 ("SP HTAB", b"Transfer-Encoding: chunked \t\r\n")]:
                with self.subTest(name):
                    self.assertRefused(t, up, post(fields, SMUGGLED), method="POST")

    def test_chunked_with_a_whitespace_continuation_frames_a_chunked_body(self):
        """Regression (fixed): A continuation line holding only whitespace (or an empty list element)
        after "Transfer-Encoding: chunked" makes trident forward the request WITHOUT a body and
        parse the chunked body as the next request ("GET /smuggled" reaches the upstream).
        Correct: unfolded, the value is still "chunked" (so "GET ..." is a bad chunk: 400), or
        the obs-fold is refused (400); nothing is forwarded either way."""
        with self.proxy() as (t, up):
            for name, fields in [("SP line", b"Transfer-Encoding: chunked\r\n \r\n"),
                                 ("SP comma SP line", b"Transfer-Encoding: chunked\r\n , \r\n")]:
                with self.subTest(name):
                    self.assertRefused(t, up, post(fields, SMUGGLED), method="POST")


# ---- Content-Length ------------------------------------------------------------------------------

class ContentLengthAbuse(SmugglingTestCase):

    def test_duplicate_content_length_is_refused(self):
        """Several Content-Length values are refused even when equal (README: 400)."""
        cases = [
            ("two equal fields", b"Content-Length: 5\r\nContent-Length: 5\r\n"),
            ("two equal fields, names in different case",
             b"Content-Length: 5\r\ncontent-length: 5\r\n"),
            ("equal values in one list", b"Content-Length: 5, 5\r\n"),
            ("different values in one list", b"Content-Length: 5,6\r\n"),
            ("equal values, different whitespace", b"Content-Length: 5\r\nContent-Length:  5 \r\n"),
        ]
        with self.proxy() as (t, up):
            for name, fields in cases:
                with self.subTest(name):
                    self.assertRefused(t, up, post(fields, b"hello!"), method="POST")

    def test_invalid_content_length_is_refused(self):
        """Content-Length is 1*DIGIT (RFC 9110 8.6): no sign, no base prefix, no inner space,
        no overflow (a value that wraps around 2^64 must not turn into a small length)."""
        cases = [
            ("plus sign", b"+5"), ("inner space", b"5 5"), ("hex prefix", b"0x5"),
            ("negative", b"-5"), ("decimal point", b"5.0"), ("exponent", b"5e0"),
            ("empty", b""), ("word", b"five"), ("NUL after the digits", b"5\x00"),
            ("non-ASCII digit", b"\xd9\xa5"),
            ("2^64", b"18446744073709551616"),
            ("2^64 + 5 (wraps to 5)", b"18446744073709551621"),
            ("23 digits", b"99999999999999999999999"),
        ]
        with self.proxy() as (t, up):
            for name, value in cases:
                with self.subTest(name):
                    self.assertRefused(t, up, post(b"Content-Length: " + value + b"\r\n", b"hello"),
                                       method="POST")
            with self.subTest("space before the colon"):
                self.assertRefused(t, up, post(b"Content-Length : 5\r\n", b"hello"), method="POST")

    def test_content_length_from_2_63_up_is_413_before_reading(self):
        """Representable but beyond max_request_body: 413 at once (README), not a wrap-around."""
        with self.proxy() as (t, up):
            for value in (b"9223372036854775808", b"18446744073709551615"):
                with self.subTest(value=value):
                    self.assertRefused(t, up, post(b"Content-Length: " + value + b"\r\n", b"hello"),
                                       413, "body_too_large", method="POST")

    def test_valid_spellings_of_a_length_frame_exactly_that_many_bytes(self):
        """Leading zeros and OWS are valid: the body is exactly that many bytes, and what follows
        is the next request."""
        cases = [
            ("leading zeros", b"Content-Length: 005\r\n"),
            ("spaces around the value", b"Content-Length:   5  \r\n"),
        ]
        with self.proxy(keepalive=None) as (t, up):
            for name, fields in cases:
                with self.subTest(name):
                    self.assertForwardedOnce(t, up, post(fields, b"hello"), "POST", "/p", b"hello",
                                             "length")


# ---- chunked bodies ------------------------------------------------------------------------------

class BadChunkedBodies(SmugglingTestCase):
    """Small bodies are read whole before any server sees the request (failover.retry_body_bytes),
    so a malformed chunked body must never reach the upstream at all."""

    def test_malformed_chunks_are_refused(self):
        abc = b"abc"
        cases = [
            ("non-hex size", b"g\r\n" + abc + b"\r\n" + LAST),
            ("0x prefix", b"0x3\r\n" + abc + b"\r\n" + LAST),
            ("negative size", b"-3\r\n" + abc + b"\r\n" + LAST),
            ("plus sign", b"+3\r\n" + abc + b"\r\n" + LAST),
            ("space before the size", b" 3\r\n" + abc + b"\r\n" + LAST),
            ("space after the size", b"3 \r\n" + abc + b"\r\n" + LAST),
            ("empty size line", b"\r\n3\r\n" + abc + b"\r\n" + LAST),
            ("size 2^64", b"10000000000000000\r\n" + abc + b"\r\n" + LAST),
            ("size 2^64 + 3 (wraps to 3)", b"10000000000000003\r\n" + abc + b"\r\n" + LAST),
            ("more data than the size", b"3\r\nabcdef\r\n" + LAST),
            ("no CRLF after the data", b"3\r\nabcXX" + LAST),
            ("next size right after the data", b"3\r\nabc" + LAST),
            ("LF only after the data", b"3\r\nabc\n" + LAST),
            ("CR only after the data", b"3\r\nabc\r" + LAST),
            ("LF only after the size", b"3\nabc\r\n" + LAST),
            ("LF only after the last chunk's size", b"3\r\nabc\r\n0\n\r\n"),
            ("LF only everywhere", b"3\nabc\n0\n\n"),
            ("extension without a name", b"3;\r\nabc\r\n" + LAST),
            ("LF inside an extension", b"3;a\nb\r\nabc\r\n" + LAST),
            ("CR inside an extension", b"3;a\rb\r\nabc\r\n" + LAST),
            ("NUL inside an extension", b"3;a\x00b\r\nabc\r\n" + LAST),
            ("space inside an extension value", b"3;a=b c\r\nabc\r\n" + LAST),
            ("NUL in a trailer value", b"3\r\nabc\r\n0\r\nX-T: a\x00b\r\n\r\n"),
            ("space in a trailer name", b"3\r\nabc\r\n0\r\nX T: 1\r\n\r\n"),
            ("LF only after a trailer", b"3\r\nabc\r\n0\r\nX-T: 1\n\r\n"),
        ]
        with self.proxy() as (t, up):
            for name, body in cases:
                with self.subTest(name):
                    self.assertRefused(t, up, chunked(body), method="POST")

    def test_chunks_beyond_max_request_body_are_413(self):
        """A chunk size that alone exceeds max_request_body (even 2^64 - 1) is body, counted:
        413 once the limit is crossed, nothing forwarded."""
        with self.proxy(limits={"max_request_body": 1000}) as (t, up):
            for name, body in [("size 2^64 - 1", b"ffffffffffffffff\r\n" + b"z" * 1500),
                               ("size 1001", b"3e9\r\n" + b"z" * 1001 + b"\r\n" + LAST),
                               ("many chunks", chunk(b"z" * 600) + chunk(b"z" * 600) + LAST)]:
                with self.subTest(name):
                    self.assertRefused(t, up, chunked(body), 413, "body_too_large", method="POST")

    def test_oversized_trailer_section_is_refused(self):
        """Trailers are bounded by max_header_bytes like the head (400 or 431)."""
        with self.proxy(limits={"max_header_bytes": 2048}) as (t, up):
            mark = Mark(up)
            raw = chunked(b"3\r\nabc\r\n0\r\nX-T: " + b"t" * 3000 + b"\r\n\r\n")
            _, r, _, closed = self.pipeline(t, raw, "POST")
            self.assertIn(r.status, (400, 431), r)
            self.checkRefused(t, up, mark, r, closed, r.status,
                              "bad_request" if r.status == 400 else "head_too_large")

    def test_extensions_and_trailers_are_not_forwarded(self):
        """Valid chunk extensions (a quoted one too) and trailers, including trailers named like
        framing or routing fields, are dropped: the upstream gets plain chunks, then the next
        request."""
        raw_bodies = []

        def capture(ex):
            if not ex.req.chunked:
                return False  # the pipelined GET: answered by the echo handler
            # trident writes hex sizes without leading zeros: "\r\n0" starts the last chunk
            raw = ex.conn.reader.read_until(b"\r\n0", 1 << 16)
            raw += ex.conn.reader.read_until(b"\r\n\r\n", 1 << 16)
            raw_bodies.append(raw)
            ex.respond(200, b"captured", headers=[("Connection", "close")])
            return True

        body = (b"3;ext=1\r\nabc\r\n3;name=\"quoted;value\"\r\ndef\r\n0;last\r\n"
                b"Content-Length: 100\r\nHost: evil.example\r\nX-Trailer: t\r\n\r\n")
        with self.proxy(keepalive=None, head_handler=capture) as (t, up):
            mark = Mark(up)
            nxt, r1, r2, _ = self.pipeline(t, chunked(body), "POST")
            self.assertEqual((r1.status, r1.body), (200, b"captured"))
            self.assertEqual((r2.status, r2.body), (200, f"GET {nxt}\n".encode()))
            reqs = up.requests[mark.requests:]
            self.assertEqual([(q.method, q.target) for q in reqs], [("POST", "/c"), ("GET", nxt)])
            self.assertEqual(reqs[0].headers.tokens("transfer-encoding"), ["chunked"])
            self.assertEqual(len(raw_bodies), 1)
            raw = raw_bodies[0]
            self.assertNotIn(b";", raw, "a chunk extension was forwarded")
            self.assertTrue(raw.endswith(b"\r\n0\r\n\r\n"), f"trailers forwarded: {raw!r}")
            data, pos = b"", 0
            while True:  # decode strictly what trident wrote
                eol = raw.index(b"\r\n", pos)
                size = int(raw[pos:eol], 16)
                if size == 0:
                    break
                data += raw[eol + 2:eol + 2 + size]
                self.assertEqual(raw[eol + 2 + size:eol + 4 + size], b"\r\n")
                pos = eol + 4 + size
            self.assertEqual(data, b"abcdef")
        self.assertNoUpstreamErrors(up)

    def test_streamed_body_with_a_bad_chunk_never_completes_upstream(self):
        """With streaming (retry_body_bytes 0) the head is forwarded before the body is read; a
        bad chunk then cuts the upstream connection: the upstream never gets a complete request,
        and the bytes behind the bad chunk are not forwarded as a request either."""
        with self.proxy(failover={"retry_body_bytes": 0}) as (t, up):
            with Client.to(t) as c:
                c.send(chunked(chunk(b"abc")))
                wait_until(lambda: up.connections >= 1, T(5), what="the streamed head upstream")
                c.send(b"zz\r\n" + SMUGGLED)
                r = c.read_response("POST")
                rid = self.assertErrorPage(r, 400)["request_id"]
                self.assertTrue(c.closed_by_peer())
            up.wait_closed_connections(1)
            with Client.to(t) as c:  # sentinel: drains the upstream's accept queue
                self.assertEqual(c.exchange("GET", "/sentinel").status, 200)
            self.assertEqual([q.target for q in up.requests], ["/sentinel"],
                             "the upstream saw a complete request besides the sentinel")
            self.assertEqual(up.connections, 2)
            # the only upstream complaint: the first connection ended inside the body
            self.assertTrue(all(e.startswith("conn 1:") for e in up.errors), up.errors)
            e = t.wait_for_access(lambda e: e.get("request_id") == rid)
            self.assertEqual((e["status"], e.get("reason")), (400, "bad_request"))

    @unittest.expectedFailure
    def test_lf_only_ending_the_chunked_body_is_400(self):
        """DEVIATION. A bare LF as the final line of a chunked body ("0\\r\\n\\n", or after a
        trailer) is accepted and the request forwarded; every other bare LF in chunk framing is a
        400 (see test_malformed_chunks_are_refused), so a front end that reads the terminator
        strictly would disagree with trident on where the next request starts."""
        with self.proxy() as (t, up):
            for name, body in [("after the last chunk", b"3\r\nabc\r\n0\r\n\n"),
                               ("after a trailer", b"3\r\nabc\r\n0\r\nX-T: 1\r\n\n")]:
                with self.subTest(name):
                    self.assertRefused(t, up, chunked(body), method="POST")

    def test_oversized_chunk_extension_is_refused(self):
        """Regression (fixed): Chunk extensions are skipped without any bound: a 1 MiB extension on a
        3-byte chunk (max_header_bytes 4096, max_request_body 1000) is read to the end and the
        request forwarded with 200 (8 MiB behave the same). A client can keep a connection and a
        worker busy forever without ever reaching a limit (cf. CVE-2024-22019 in Node.js).
        Expected: a 4xx (400/413/431) once the extension passes a bound, nothing forwarded."""
        with self.proxy(limits={"max_header_bytes": 4096, "max_request_body": 1000}) as (t, up):
            mark = Mark(up)
            r = None
            with Client.to(t) as c:
                try:
                    c.send(chunked(b"3;ext="))
                    for _ in range(16):
                        c.send(b"x" * 65536)
                    c.send(b"\r\nabc\r\n" + LAST)
                except OSError:
                    pass  # refused and closed while sending
                try:
                    r = c.read_response("POST")
                except Closed:
                    pass  # a reset after the refusal may swallow the error page
            if r is not None:
                self.assertIn(r.status, (400, 413, 431), r)
                self.assertErrorPage(r, r.status)
            self.assertNothingForwarded(t, up, mark)


# ---- line endings in the head --------------------------------------------------------------------

class HeadLineEndings(SmugglingTestCase):

    def test_bare_cr_and_lf_inside_the_head_are_refused(self):
        cases = [
            ("bare LF after a field line", b"GET /h HTTP/1.1\r\nHost: s.test\nX-A: b\r\n\r\n"),
            ("bare LF before the empty line", b"GET /h HTTP/1.1\r\nHost: s.test\r\nX-A: b\n\r\n"),
            ("bare CR ending the request line", b"GET /h HTTP/1.1\rHost: s.test\r\n\r\n"),
            ("bare CR ending a field line", b"GET /h HTTP/1.1\r\nHost: s.test\rX-A: b\r\n\r\n"),
            ("CR CR LF", b"GET /h HTTP/1.1\r\nHost: s.test\r\nX-A: b\r\r\n\r\n"),
            ("bare CR instead of the empty line", b"GET /h HTTP/1.1\r\nHost: s.test\r\n\rX"),
            ("CR inside a field name", b"GET /h HTTP/1.1\r\nHost: s.test\r\nX-\rA: b\r\n\r\n"),
            ("LF inside a field name", b"GET /h HTTP/1.1\r\nHost: s.test\r\nX-\nA: b\r\n\r\n"),
        ]
        self.assertEachRefused(cases)

    def test_empty_lines_before_the_request_line_are_ignored(self):
        """RFC 9112 2.2: a server SHOULD ignore at least one empty line before a request."""
        with self.proxy(keepalive=None) as (t, up):
            self.assertForwardedOnce(t, up, b"\r\n" + get(target=b"/after-crlf"), "GET",
                                     "/after-crlf")

    def test_bare_lf_after_the_request_line_is_400(self):
        """Regression (fixed): "GET /h HTTP/1.1\\nHost: s.test\\r\\n\\r\\n" (bare LF after the request line)
        is forwarded (normalised to CRLF), though the README promises strict parsing and a bare LF
        after a field line or in an all-LF head is a 400."""
        with self.proxy() as (t, up):
            self.assertRefused(t, up, b"GET /h HTTP/1.1\nHost: s.test\r\n\r\n")

    def test_bare_lf_ending_the_head_is_400(self):
        """Regression (fixed): A head ended by "\\r\\n\\n" (bare LF as the empty line) is forwarded, and the
        bytes behind it are taken as the next request; a parser that requires CRLF would still be
        in the head."""
        with self.proxy() as (t, up):
            self.assertRefused(t, up, b"GET /h HTTP/1.1\r\nHost: s.test\r\n\n" + SMUGGLED)


# ---- field syntax --------------------------------------------------------------------------------

class FieldSyntax(SmugglingTestCase):

    def test_malformed_field_lines_are_refused(self):
        cases = [
            ("NUL inside a name", b"X-\x00A: v\r\n"),
            ("NUL as the name", b"\x00: v\r\n"),
            ("space before the colon", b"X-A : v\r\n"),
            ("tab before the colon", b"X-A\t: v\r\n"),
            ("no colon", b"X-A v\r\n"),
            ("@ in a name", b"X@A: v\r\n"),
            ("/ in a name", b"X/A: v\r\n"),
            ("parentheses in a name", b"X(A): v\r\n"),
            ("non-ASCII byte in a name", b"X\xffA: v\r\n"),
            ("NUL at the start of a value", b"X-A: \x00v\r\n"),
        ]
        with self.proxy() as (t, up):
            for name, fields in cases:
                with self.subTest(name):
                    self.assertRefused(t, up, get(fields))

    def test_empty_field_name_is_400(self):
        """Regression (fixed): A field line with an empty name (": v") is forwarded to the upstream as is:
        the upstream receives "GET /g HTTP/1.1 ... : v" (and, with the second case,
        ": Transfer-Encoding: chunked", a line lenient servers may read as a real field). The
        strict upstream here refuses it and the client gets a 502. Expected: 400, nothing
        forwarded (field-name = token, RFC 9110 5.1)."""
        with self.proxy() as (t, up):
            for name, fields in [("': v'", b": v\r\n"),
                                 ("': Transfer-Encoding: chunked'",
                                  b": Transfer-Encoding: chunked\r\n")]:
                with self.subTest(name):
                    self.assertRefused(t, up, get(fields))


# ---- head limits ---------------------------------------------------------------------------------

def head_of_size(n, target=b"/big"):
    base = b"GET " + target + b" HTTP/1.1\r\nHost: s.test\r\nX-Pad: "
    return base + b"p" * (n - len(base) - 4) + b"\r\n\r\n"


class HeadLimits(SmugglingTestCase):
    LIMITS = {"max_header_bytes": 2048, "max_header_count": 10}

    def test_head_size_limit_is_exact(self):
        """max_header_bytes counts the request line and fields on the wire, final CRLF included:
        a head of exactly the limit goes through, one byte more is a 431."""
        with self.proxy(keepalive=None, limits=self.LIMITS) as (t, up):
            raw = head_of_size(2048)
            self.assertEqual(len(raw), 2048)
            self.assertForwardedOnce(t, up, raw, "GET", "/big")
        with self.proxy(limits=self.LIMITS) as (t, up):
            self.assertRefused(t, up, head_of_size(2049), 431, "head_too_large")

    def test_oversize_head_is_refused_before_it_ends(self):
        """A head that never ends is cut at the limit: 431 at once, not after client_header_ms."""
        with self.proxy(limits=self.LIMITS, timeouts={"client_header_ms": 20000}) as (t, up):
            mark = Mark(up)
            with Client.to(t) as c:
                c.send(b"GET /endless HTTP/1.1\r\nHost: s.test\r\nX-Big: " + b"b" * 4096)
                r = c.read_response(timeout=T(3))
                body = self.assertErrorPage(r, 431)
                self.assertTrue(c.closed_by_peer())
            self._refused[body["request_id"]] = (431, "head_too_large")
            self.assertNothingForwarded(t, up, mark)

    def test_too_many_empty_fields_is_431(self):
        """Empty-valued fields count like any other: Host plus 9 empty ones is the limit, one more
        is a 431."""
        with self.proxy(keepalive=None, limits=self.LIMITS) as (t, up):
            req = self.assertForwardedOnce(t, up, get(b"X-E:\r\n" * 9), "GET", "/g")
            self.assertEqual(req.headers.get_all("x-e"), [""] * 9)
        with self.proxy(limits=self.LIMITS) as (t, up):
            self.assertRefused(t, up, get(b"X-E:\r\n" * 10), 431, "too_many_headers")


# ---- request line --------------------------------------------------------------------------------

class RequestLine(SmugglingTestCase):

    def test_malformed_request_lines_are_refused(self):
        cases = [
            ("lowercase method", b"get /r HTTP/1.1\r\nHost: s.test\r\n\r\n"),
            ("HTTP/1.2", b"GET /r HTTP/1.2\r\nHost: s.test\r\n\r\n"),
            ("HTTP/3.0", b"GET /r HTTP/3.0\r\nHost: s.test\r\n\r\n"),
            ("HTTP/1.10", b"GET /r HTTP/1.10\r\nHost: s.test\r\n\r\n"),
            ("HTTP/1 without a minor version", b"GET /r HTTP/1\r\nHost: s.test\r\n\r\n"),
            ("lowercase protocol name", b"GET /r http/1.1\r\nHost: s.test\r\n\r\n"),
            ("space after the version", b"GET /r HTTP/1.1 \r\nHost: s.test\r\n\r\n"),
            ("tabs as separators", b"GET\t/r\tHTTP/1.1\r\nHost: s.test\r\n\r\n"),
            ("space before the method", b" GET /r HTTP/1.1\r\nHost: s.test\r\n\r\n"),
            ("no target", b"GET  HTTP/1.1\r\nHost: s.test\r\n\r\n"),
            ("HTTP/0.9 request and an empty line", b"GET /r\r\n\r\n"),
            ("HTTP/2 connection preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ]
        self.assertEachRefused(cases)

    def test_doubled_space_in_request_line_is_refused_or_normalised(self):
        """RFC 9112 3: a recipient MAY split on whitespace. If trident does, it must forward one
        request with a clean request line and the target intact."""
        with self.proxy() as (t, up):
            for name, raw in [("before the target", b"GET  /r HTTP/1.1\r\nHost: s.test\r\n\r\n"),
                              ("after the target", b"GET /r  HTTP/1.1\r\nHost: s.test\r\n\r\n")]:
                with self.subTest(name):
                    req = self.assertRefusedOrForwardedOnce(t, up, raw, "GET", "/r")
                    if req is not None:
                        self.assertTrue(req.raw_head.startswith(b"GET /r HTTP/1.1\r\n"))

    def test_http09_request_is_refused_without_waiting(self):
        """Regression (fixed): "GET /\\r\\n" (an HTTP/0.9 simple request: complete, no version) gets no
        answer until client_header_ms runs out, then a 408. Expected: a 400 at once (malformed
        request line)."""
        with self.proxy(timeouts={"client_header_ms": 5000}) as (t, up):
            mark = Mark(up)
            with Client.to(t) as c:
                c.send(b"GET /\r\n")
                try:
                    r = c.read_response(timeout=T(1))
                except TimeoutError:
                    r = None
                self.assertIsNotNone(r, "no answer within 1 s to a complete HTTP/0.9 request")
                body = self.assertErrorPage(r, 400)
                self._refused[body["request_id"]] = (400, "bad_request")
            self.assertNothingForwarded(t, up, mark)


# ---- request targets -----------------------------------------------------------------------------

class RequestTargets(SmugglingTestCase):

    def test_invalid_targets_are_refused(self):
        cases = [
            ("space inside", b"/a b"), ("NUL", b"/a\x00b"), ("DEL", b"/a\x7fb"),
            ("control character", b"/a\x01b"), ("tab", b"/a\tb"), ("bare CR", b"/a\rb"),
            ("non-ASCII byte", b"/a\xffb"),
            ("absolute-form with userinfo", b"http://user@other.example/x"),
            ("absolute-form with an empty authority", b"http:///x"),
            ("absolute-form with another scheme", b"ftp://other.example/x"),
            ("absolute-form with only a fragment after the authority", b"http://other.example#f"),
        ]
        with self.proxy() as (t, up):
            for name, target in cases:
                with self.subTest(name):
                    self.assertRefused(t, up, get(target=target))

    def test_absolute_form_becomes_origin_form_with_its_authority_as_host(self):
        """README: absolute-form targets become origin-form with their authority as Host. The
        client's own Host (and X-Forwarded-Host) never survive next to it."""
        cases = [
            (b"http://other.example/x", "/x", "other.example"),
            (b"http://other.example", "/", "other.example"),
            (b"http://other.example?q=1", "/?q=1", "other.example"),
            (b"HTTP://Other.Example:8080/p?x=1", "/p?x=1", "Other.Example:8080"),
            (b"https://other.example/s", "/s", "other.example"),
            (b"http://[::1]:81/v6", "/v6", "[::1]:81"),
        ]
        with self.proxy(keepalive=None) as (t, up):
            for target, origin, authority in cases:
                with self.subTest(target=target):
                    raw = get(b"X-Forwarded-Host: evil.example\r\n", target=target,
                              host=b"Host: client.example\r\n")
                    req = self.assertForwardedOnce(t, up, raw, "GET", origin)
                    self.assertEqual(req.headers.get_all("host"), [authority])
                    self.assertEqual(req.headers.get_all("x-forwarded-host"), [authority])
            with self.subTest("HTTP/1.0 without Host"):
                raw = (b"GET http://other.example/ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                req = self.assertForwardedOnce(t, up, raw, "GET", "/ten")
                self.assertEqual(req.headers.get_all("host"), ["other.example"])

    def test_absolute_form_still_needs_exactly_one_host_on_http11(self):
        with self.proxy() as (t, up):
            with self.subTest("no Host"):
                self.assertRefused(t, up, get(target=b"http://other.example/x", host=b""))
            with self.subTest("two Hosts"):
                self.assertRefused(t, up, get(target=b"http://other.example/x",
                                              host=b"Host: a.example\r\nHost: b.example\r\n"))

    def test_absolute_form_options_without_path_becomes_asterisk(self):
        """Regression (fixed) (RFC 9112 3.2.4). "OPTIONS http://other.example HTTP/1.1" reaches the
        upstream as "OPTIONS / HTTP/1.1"; the last proxy MUST send "OPTIONS *" for an
        absolute-form target with an empty path and no query."""
        with self.proxy(keepalive=None) as (t, up):
            raw = b"OPTIONS http://other.example HTTP/1.1\r\nHost: s.test\r\n\r\n"
            req = self.assertForwardedOnce(t, up, raw, "OPTIONS", "*")
            self.assertEqual(req.headers.get_all("host"), ["other.example"])


# ---- Host ----------------------------------------------------------------------------------------

class HostField(SmugglingTestCase):

    def test_host_ambiguity_is_refused(self):
        cases = [
            ("two equal Hosts", b"GET /h HTTP/1.1\r\nHost: s.test\r\nHost: s.test\r\n\r\n"),
            ("two Hosts, names in different case",
             b"GET /h HTTP/1.1\r\nHost: s.test\r\nhOST: other.test\r\n\r\n"),
            ("two Hosts on HTTP/1.0",
             b"GET /h HTTP/1.0\r\nHost: s.test\r\nHost: other.test\r\n\r\n"),
            ("userinfo in Host", b"GET /h HTTP/1.1\r\nHost: user@s.test\r\n\r\n"),
            ("path in Host", b"GET /h HTTP/1.1\r\nHost: s.test/evil\r\n\r\n"),
            ("Host continued on a folded line",
             b"GET /h HTTP/1.1\r\nHost: s.test\r\n other.test\r\n\r\n"),
        ]
        self.assertEachRefused(cases)


# ---- CONNECT -------------------------------------------------------------------------------------

class ConnectMethod(SmugglingTestCase):

    def test_connect_is_405_and_never_a_tunnel(self):
        """CONNECT is refused whatever follows it; bytes sent as if the tunnel were open are
        neither tunnelled nor parsed as a request."""
        cases = [
            ("HTTP/1.1 with tunnel bytes",
             b"CONNECT s.test:443 HTTP/1.1\r\nHost: s.test:443\r\n\r\n"
             b"\x16\x03\x01\x02\x00" + SMUGGLED),
            ("HTTP/1.0 without Host", b"CONNECT s.test:80 HTTP/1.0\r\n\r\n" + SMUGGLED),
        ]
        self.assertEachRefused(cases, status=405, reason="method_not_allowed")


# ---- a request hidden in a body ------------------------------------------------------------------

class PipelinedSmuggling(SmugglingTestCase):
    """Bytes inside a body are body: the upstream gets them as the body of one request, and the
    request pipelined behind the body is the only other one it sees."""

    def test_request_inside_a_content_length_body_stays_body(self):
        with self.proxy(keepalive=None) as (t, up):
            raw = post(b"Content-Length: %d\r\n" % len(SMUGGLED), SMUGGLED)
            self.assertForwardedOnce(t, up, raw, "POST", "/p", SMUGGLED, "length")

    def test_request_inside_a_chunk_stays_body(self):
        with self.proxy(keepalive=None) as (t, up):
            raw = chunked(chunk(SMUGGLED) + LAST)
            self.assertForwardedOnce(t, up, raw, "POST", "/c", SMUGGLED, "chunked")

    def test_request_inside_a_get_body_stays_body(self):
        with self.proxy(keepalive=None) as (t, up):
            raw = get(b"Content-Length: %d\r\n" % len(SMUGGLED)) + SMUGGLED
            self.assertForwardedOnce(t, up, raw, "GET", "/g", SMUGGLED, "length")

    def test_malformed_request_between_valid_ones_ends_the_connection(self):
        """A valid request, a CL.TE one, a valid one: the first is answered, the second refused,
        the third never read; the upstream sees the first only."""
        with self.proxy() as (t, up):
            bad = post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", LAST + b"G")
            with Client.to(t) as c:
                c.send(get(target=b"/first") + bad + get(target=b"/third"))
                r1 = c.read_response()
                self.assertEqual((r1.status, r1.body), (200, b"GET /first\n"))
                self.assertEqual([q.target for q in up.requests], ["/first"])
                mark = Mark(up)  # /first has arrived: from here on nothing may
                r2 = c.read_response("POST")
                body = self.assertErrorPage(r2, 400)
                self._refused[body["request_id"]] = (400, "bad_request")
                self.assertTrue(c.closed_by_peer(),
                                "the request after the refused one was answered")
            self.assertNothingForwarded(t, up, mark)


# ---- upgrades ------------------------------------------------------------------------------------

class UpgradeSmuggling(SmugglingTestCase):
    """Only a WebSocket upgrade answered with 101 becomes a tunnel: bytes a client sends after
    any other upgrade attempt are still parsed (and rewritten) as HTTP requests."""

    @staticmethod
    def handler(ex):
        if ex.req.target == "/h2c":
            ex.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                    b"Upgrade: h2c\r\n\r\n")
        elif ex.req.target == "/ws-refused":
            ex.respond(200, b"no upgrade here")
        else:
            echo_handler(ex)

    def test_h2c_upgrade_is_a_plain_request_and_a_101_for_it_is_502(self):
        raw = get(b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                  b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n", target=b"/h2c")
        with self.proxy(keepalive=None, handler=self.handler) as (t, up):
            nxt, r1, r2, _ = self.pipeline(t, raw)
            self.assertErrorPage(r1, 502)
            self.assertEqual((r2.status, r2.body), (200, f"GET {nxt}\n".encode()))
            h2c, after = up.requests
            for gone in ("upgrade", "http2-settings"):
                self.assertNotIn(gone, h2c.headers, h2c.headers)
            self.assertNotEqual(after.conn_id, h2c.conn_id)
            for added in ("x-forwarded-for", "x-request-id"):
                self.assertIn(added, after.headers, "the next request was not parsed")
            wait_until(lambda: h2c.conn_id not in up.open_conns, T(5),
                       what="trident to close the connection that answered 101")
        self.assertNoUpstreamErrors(up)

    def test_websocket_upgrade_refused_by_the_server_is_not_a_tunnel(self):
        raw = get(b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                  target=b"/ws-refused")
        with self.proxy(keepalive=None, handler=self.handler) as (t, up):
            nxt, r1, r2, _ = self.pipeline(t, raw)
            self.assertEqual((r1.status, r1.body), (200, b"no upgrade here"))
            self.assertEqual((r2.status, r2.body), (200, f"GET {nxt}\n".encode()))
            self.assertEqual([q.target for q in up.requests], ["/ws-refused", nxt])
            after = up.requests[1]
            # rewritten by trident, so parsed as a request, not relayed as tunnel bytes
            for added in ("x-forwarded-for", "x-request-id"):
                self.assertIn(added, after.headers, "the next request was not parsed")
        self.assertNoUpstreamErrors(up)


# ---- response side -------------------------------------------------------------------------------

class ResponseFraming(SmugglingTestCase):
    """An upstream response whose length is ambiguous is a 502 (the client connection stays, as
    after any gateway error) and the upstream connection is dropped: a reused one could carry the
    rest of that response into the next client's answer."""

    BAD = [
        ("Content-Length then chunked",
         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("chunked then Content-Length",
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
        ("two different Content-Length",
         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello!!"),
        ("Content-Length +5", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
        ("Content-Length -1", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello"),
        ("Content-Length 0x5", b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello"),
        ("Content-Length 5 5", b"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\nhello"),
        ("Content-Length 2^64 + 5",
         b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551621\r\n\r\nhello"),
        ("xchunked",
         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ]

    def serve(self, responses, **kw):
        def handler(ex):
            raw = responses.get(ex.req.target)
            if raw is None:
                echo_handler(ex)
            else:
                ex.send(raw)  # and keep the connection open, ready for another request
        return self.proxy(keepalive=None, handler=handler, **kw)

    def test_ambiguous_response_framing_is_502_and_the_connection_is_dropped(self):
        responses = {f"/bad-{i}": raw for i, (_, raw) in enumerate(self.BAD)}
        with self.serve(responses) as (t, up):
            for i, (name, _) in enumerate(self.BAD):
                with self.subTest(name):
                    mark = Mark(up)
                    with Client.to(t) as c:
                        r = c.exchange("GET", f"/bad-{i}")
                        self.assertErrorPage(r, 502)
                        r2 = c.exchange("GET", f"/after-{i}")
                        self.assertEqual((r2.status, r2.body), (200, f"GET /after-{i}\n".encode()))
                    bad, after = up.requests[mark.requests:]
                    self.assertEqual((bad.target, after.target), (f"/bad-{i}", f"/after-{i}"))
                    self.assertNotEqual(after.conn_id, bad.conn_id,
                                        "the connection of a bad response was reused")
                    wait_until(lambda b=bad: b.conn_id not in up.open_conns, T(5),
                               what="trident to close the bad response's connection")
                    e = t.wait_for_access(lambda e, p=f"/bad-{i}": e.get("path") == p)
                    self.assertEqual((e["status"], e.get("reason")), (502, "upstream_bad_response"))
        self.assertNoUpstreamErrors(up)

    def test_chunked_with_trailing_tab_in_a_response_is_decoded_or_502(self):
        """Regression (fixed): An upstream response with "Transfer-Encoding: chunked\\t" (valid OWS) is
        relayed with the raw chunk framing as its content ("5\\r\\nhello\\r\\n0\\r\\n\\r\\n",
        re-chunked) and then hangs until upstream_response_ms, when it is cut. Expected: the body
        decoded ("hello", complete), or a 502."""
        responses = {"/tab": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n"
                             b"5\r\nhello\r\n0\r\n\r\n"}
        with self.serve(responses, timeouts={"upstream_response_ms": 1000}) as (t, up), \
                Client.to(t) as c:
            r = c.exchange("GET", "/tab")
            if r.status == 502:
                self.assertErrorPage(r, 502)
            else:
                self.assertTrue(r.complete, r)
                self.assertEqual(r.body, b"hello")

    def test_empty_field_name_in_a_response_is_not_relayed(self):
        """Regression (fixed): An upstream response field line ": x" (empty name) is relayed to the client
        as is. Expected: a 502 (or the line dropped); never an invalid field line to the client."""
        responses = {"/empty-name": b"HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 5\r\n\r\nhello"}
        with self.serve(responses) as (t, up), Client.to(t) as c:
            c.request("GET", "/empty-name")
            head = c.reader.read_until(b"\r\n\r\n", 1 << 16)
            self.assertNotIn(b"\r\n:", head, "a field line without a name reached the client")


if __name__ == "__main__":
    unittest.main()
