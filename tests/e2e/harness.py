"""
Shared harness for trident's end-to-end tests (Python 3.11 standard library only).

- Net: a per-module 127.X.Y.0/24 loopback block, so test modules can run in parallel.
- Trident: runs the real binary on a generated config; access/error logs captured to files.
- Upstream: a scriptable, strict, threaded raw-socket HTTP/1.1 server that records every request.
- Client: a raw-socket HTTP/1.1 client (exact bytes out, strict response parsing in).
- Helpers: generated data streams with CRC-32, WebSocket framing, config builders.

Environment: TRIDENT_BIN (the binary under test; required: ctest sets it, so that a test never
runs some other build it found lying around), TRIDENT_SANITIZE=1 (ASan+UBSan build: sanitizer options set,
stderr checked for reports, waiting timeouts scaled), TRIDENT_E2E_SLOW (override the scale),
TRIDENT_E2E_KEEP=1 (keep each run's temp dir: config, access.log, error.log).
"""
import base64
import copy
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

TRIDENT_BIN = os.environ.get("TRIDENT_BIN", "")
SANITIZE = os.environ.get("TRIDENT_SANITIZE", "").strip().lower() in ("1", "on", "true", "yes")
SLOW = float(os.environ.get("TRIDENT_E2E_SLOW") or (3 if SANITIZE else 1))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


def T(seconds):
    """A waiting timeout, scaled for slow (sanitizer) builds."""
    return seconds * SLOW


def wait_until(pred, timeout, interval=0.01, what="condition"):
    """Poll pred() until it returns a truthy value; return it, or raise AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# ---- addresses -----------------------------------------------------------------------------------

class Net:
    """A 127.X.Y.0/24 block derived from a module name (X != 0, so never 127.0.0.x).

    .ip(1) is trident's listener, .upstream_ip(i) the i-th upstream (one per provider),
    .client_ip(i) a client source address."""

    def __init__(self, module_name):
        h = hashlib.sha256(module_name.encode()).digest()
        self.x = 1 + h[0] % 254
        self.y = h[1]
        self.name = module_name

    def ip(self, host):
        assert 1 <= host <= 254
        return f"127.{self.x}.{self.y}.{host}"

    def listener_ip(self):
        return self.ip(1)

    def upstream_ip(self, i):
        return self.ip(10 + i)

    def client_ip(self, i=0):
        return self.ip(200 + i)


def free_port(host):
    """A port that was free on host a moment ago (bind 0, read it, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def closed_port_address(host):
    """host:port where nothing listens (connects are refused)."""
    return f"{host}:{free_port(host)}"


# ---- generated data ------------------------------------------------------------------------------

BLOCK = 1 << 20
_BASE = random.Random(20240601).randbytes(BLOCK)


def pattern_blocks(total, block=BLOCK):
    """total bytes of deterministic data, generated on the fly in pieces of at most block bytes.
    The stream does not depend on block: it is made of 1 MiB units that each carry their index,
    so reordered or repeated units change the checksum."""
    i = 0
    sent = 0
    block = min(block, BLOCK)
    while sent < total:
        unit = struct.pack(">Q", i) + _BASE[8:]
        n = min(BLOCK, total - sent)
        if n < BLOCK:
            unit = unit[:n]
        if block == BLOCK:
            yield unit
        else:
            for off in range(0, n, block):
                yield unit[off:off + block]
        sent += n
        i += 1


_crc_cache = {}


def pattern_crc(total):
    if total not in _crc_cache:
        crc = 0
        for b in pattern_blocks(total):
            crc = zlib.crc32(b, crc)
        _crc_cache[total] = crc
    return _crc_cache[total]


def pattern_bytes(total):
    return b"".join(pattern_blocks(total))


class Sink:
    """Counts bytes and a CRC-32; keeps the bytes themselves only up to keep_limit."""

    def __init__(self, keep_limit=16 << 20):
        self.n = 0
        self.crc = 0
        self.keep_limit = keep_limit
        self.kept = bytearray()
        self.overflow = False

    def __call__(self, data):
        self.n += len(data)
        self.crc = zlib.crc32(data, self.crc)
        if not self.overflow:
            if len(self.kept) + len(data) <= self.keep_limit:
                self.kept += data
            else:
                self.overflow = True
                self.kept = bytearray()

    def data(self):
        assert not self.overflow, "body larger than the kept limit"
        return bytes(self.kept)


# ---- reading and parsing -------------------------------------------------------------------------

class ProtocolError(Exception):
    pass


class Truncated(Exception):
    """The peer closed in the middle of a message."""


class Closed(Exception):
    """The peer closed before the first byte of a message."""


class Reader:
    """Buffered reads from a socket; the socket's own timeout applies to every recv (a hang raises
    TimeoutError). A reset counts as end of stream (.reset is set)."""

    RECV = 256 * 1024

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self._scratch = bytearray(self.RECV)

    def _fill(self):
        if self.eof:
            return 0
        try:
            n = self.sock.recv_into(self._scratch)
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
            n = 0
        if n == 0:
            self.eof = True
            return 0
        self.buf += memoryview(self._scratch)[:n]
        return n

    def read_until(self, delim, limit):
        start = 0
        while True:
            i = self.buf.find(delim, max(0, start - len(delim) + 1))
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ProtocolError(f"no {delim!r} within {limit} bytes")
            start = len(self.buf)
            if not self._fill():
                if self.buf:
                    raise Truncated(f"closed after {len(self.buf)} bytes, before {delim!r}")
                raise Closed("closed")

    def read_exact(self, n, sink):
        """Deliver exactly n bytes to sink; raise Truncated if the stream ends first."""
        left = n
        if self.buf:
            take = min(left, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            left -= take
        while left > 0:
            want = min(left, self.RECV)
            try:
                got = self.sock.recv_into(self._scratch, want)
            except (ConnectionResetError, BrokenPipeError):
                self.reset = True
                got = 0
            if got == 0:
                self.eof = True
                raise Truncated(f"closed with {left} of {n} bytes missing")
            sink(memoryview(self._scratch)[:got])
            left -= got

    def read_to_eof(self, sink):
        if self.buf:
            sink(bytes(self.buf))
            self.buf.clear()
        while not self.eof:
            try:
                got = self.sock.recv_into(self._scratch)
            except (ConnectionResetError, BrokenPipeError):
                self.reset = True
                got = 0
            if got == 0:
                self.eof = True
                break
            sink(memoryview(self._scratch)[:got])

    def at_eof(self, timeout):
        """Whether the peer closes within timeout (no data may arrive meanwhile)."""
        if self.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return self._fill() == 0
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(old)


TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def parse_fields(lines):
    """Strict field lines: token ':' OWS value OWS; no obs-fold, no whitespace before ':'."""
    headers = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise ProtocolError(f"obs-fold line {line!r}")
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN_RE.match(name):
            raise ProtocolError(f"bad field line {line!r}")
        value = value.strip(b" \t")
        if any((c < 0x20 and c != 9) or c == 0x7F for c in value):
            raise ProtocolError(f"control character in {line!r}")
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
    return headers


def split_head(raw):
    assert raw.endswith(b"\r\n\r\n")
    lines = raw[:-4].split(b"\r\n")
    for line in lines:
        if b"\n" in line or b"\r" in line:
            raise ProtocolError(f"bare CR or LF in head line {line!r}")
    return lines[0], parse_fields(lines[1:])


class Headers:
    """An ordered list of (name, value) with case-insensitive look-ups."""

    def __init__(self, items):
        self.items = list(items)

    def get(self, name, default=None):
        n = name.lower()
        for k, v in self.items:
            if k.lower() == n:
                return v
        return default

    def get_all(self, name):
        n = name.lower()
        return [v for k, v in self.items if k.lower() == n]

    def has(self, name):
        return bool(self.get_all(name))

    def tokens(self, name):
        out = []
        for v in self.get_all(name):
            out += [t.strip().lower() for t in v.split(",") if t.strip()]
        return out

    def names(self):
        return [k.lower() for k, _ in self.items]

    def __contains__(self, name):
        return self.has(name)

    def __repr__(self):
        return f"Headers({self.items!r})"


def body_framing(headers, is_request):
    """('chunked'|'length'|'none'|'close', length) by RFC 9112 section 6."""
    te = headers.tokens("transfer-encoding")
    cls = headers.get_all("content-length")
    if te and cls:
        raise ProtocolError("both Transfer-Encoding and Content-Length")
    if te:
        if te != ["chunked"]:
            raise ProtocolError(f"unsupported transfer coding {te}")
        return "chunked", None
    if cls:
        if len(set(cls)) != 1 or not re.fullmatch(r"[0-9]+", cls[0]):
            raise ProtocolError(f"bad Content-Length {cls}")
        return "length", int(cls[0])
    return ("none", 0) if is_request else ("close", None)


def read_chunked(reader, sink, max_line=4096):
    """Decode a chunked body into sink; return (trailers, raw_size_lines)."""
    sizes = []
    while True:
        line = reader.read_until(b"\r\n", max_line)[:-2]
        size_s = line.split(b";", 1)[0].strip(b" \t")
        if not re.fullmatch(rb"[0-9A-Fa-f]+", size_s):
            raise ProtocolError(f"bad chunk size line {line!r}")
        size = int(size_s, 16)
        sizes.append(size)
        if size == 0:
            break
        reader.read_exact(size, sink)
        crlf = bytearray()
        reader.read_exact(2, crlf.extend)
        if crlf != b"\r\n":
            raise ProtocolError(f"chunk not followed by CRLF: {bytes(crlf)!r}")
    trailer_lines = []
    while True:
        line = reader.read_until(b"\r\n", max_line)[:-2]
        if line == b"":
            break
        trailer_lines.append(line)
    return parse_fields(trailer_lines), sizes


# ---- client side ---------------------------------------------------------------------------------

class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = Headers([])
        self.raw_head = b""
        self.interim = []          # 1xx responses before this one (Response objects)
        self.framing = None        # 'length' | 'chunked' | 'close' | 'none'
        self.body = b""
        self.body_len = 0
        self.body_crc = 0
        self.complete = False      # the whole body as framed arrived
        self.wire_len = 0          # head + body bytes as received (approximate for chunked)
        self.chunk_sizes = []
        self.trailers = Headers([])

    def json(self):
        return json.loads(self.body)

    @property
    def keep_alive(self):
        return "close" not in self.headers.tokens("connection")

    def __repr__(self):
        return (f"<Response {self.status} {self.framing} len={self.body_len} "
                f"complete={self.complete} headers={self.headers.items!r}>")


def build_request(method="GET", target="/", headers=None, body=None, version="HTTP/1.1",
                  host="trident.test"):
    """Exact request bytes. headers: list of (name, value); Host added first when host is set
    and headers carry none; Content-Length added for a bytes body unless framing is given."""
    headers = list(headers or [])
    names = [k.lower() for k, _ in headers]
    if host is not None and "host" not in names:
        headers.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + (body or b"")


def chunked_encode(parts, trailers=(), ext=False):
    out = bytearray()
    for i, p in enumerate(parts):
        size = f"{len(p):x}" if i % 2 == 0 else f"{len(p):X}"
        out += size.encode() + (b";ext=1" if ext else b"") + b"\r\n" + p + b"\r\n"
    out += b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers) + b"\r\n"
    return bytes(out)


class SocketOwner:
    """An object owning `self.sock`: close() forgets a socket already gone, and it is a context
    manager that closes on exit."""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Client(SocketOwner):
    """One raw TCP connection to trident."""

    def __init__(self, host, port, timeout=None, source=None):
        self.timeout = T(10) if timeout is None else timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(self.timeout)
        self.sock.connect((host, port))
        self.local = self.sock.getsockname()
        self.reader = Reader(self.sock)
        self.bytes_received = 0

    @classmethod
    def to(cls, trident, **kw):
        return cls(trident.host, trident.port, **kw)

    def send(self, data):
        self.sock.sendall(data)

    def send_blocks(self, blocks):
        for b in blocks:
            self.sock.sendall(b)

    def request(self, method="GET", target="/", headers=None, body=None, **kw):
        self.send(build_request(method, target, headers, body, **kw))

    def read_response(self, method="GET", store_limit=64 << 20, timeout=None, interim=True):
        """Read one response (1xx collected into .interim unless interim=False, when a 1xx is
        returned as is). Truncation returns complete=False; close before any byte raises Closed."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            return self._read_response(method, store_limit, interim)
        finally:
            if timeout is not None:
                self.sock.settimeout(self.timeout)

    def _read_response(self, method, store_limit, interim):
        pending = []
        while True:
            r = Response()
            raw = self.reader.read_until(b"\r\n\r\n", 1 << 20)
            r.raw_head = raw
            line, fields = split_head(raw)
            m = re.fullmatch(rb"(HTTP/1\.[01]) ([0-9]{3}) (.*)", line)
            if not m:
                raise ProtocolError(f"bad status line {line!r}")
            r.version = m.group(1).decode()
            r.status = int(m.group(2))
            r.reason = m.group(3).decode("latin-1")
            r.headers = Headers(fields)
            r.wire_len = len(raw)
            self.bytes_received += len(raw)
            if 100 <= r.status < 200 and r.status != 101:
                r.complete = True
                r.framing = "none"
                if not interim:
                    return r
                pending.append(r)
                continue
            r.interim = pending
            break
        if r.status in (101, 204, 304) or method == "HEAD" or (100 <= r.status < 200):
            r.framing = "none"
            r.complete = True
            return r
        r.framing, length = body_framing(r.headers, is_request=False)
        sink = Sink(store_limit)
        before = self.bytes_received
        try:
            if r.framing == "length":
                self.reader.read_exact(length, sink)
            elif r.framing == "chunked":
                tr, r.chunk_sizes = read_chunked(self.reader, sink)
                r.trailers = Headers(tr)
            else:
                self.reader.read_to_eof(sink)
            r.complete = True
        except (Truncated, Closed):
            r.complete = False
        r.body_len = sink.n
        r.body_crc = sink.crc
        r.body = bytes(sink.kept) if not sink.overflow else None
        r.wire_len += sink.n
        self.bytes_received = before + sink.n
        return r

    def exchange(self, method="GET", target="/", headers=None, body=None, **kw):
        self.request(method, target, headers, body, **kw)
        return self.read_response(method)

    def closed_by_peer(self, timeout=None):
        """True when the peer closes within timeout with no further data."""
        return self.reader.at_eof(T(3) if timeout is None else timeout)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)


def get(trident, target="/", headers=None, **kw):
    """One request on a fresh connection; the connection is closed afterwards."""
    with Client.to(trident) as c:
        return c.exchange("GET", target, headers, **kw)


# ---- WebSocket framing ---------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_frame(opcode, payload, mask=True, fin=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + ws_mask(payload, key)


def ws_mask(payload, key):
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""


def ws_read_frame(reader):
    """(fin, opcode, masked, payload)"""
    head = bytearray()
    reader.read_exact(2, head.extend)
    fin = bool(head[0] & 0x80)
    opcode = head[0] & 0x0F
    masked = bool(head[1] & 0x80)
    n = head[1] & 0x7F
    ext = bytearray()
    if n == 126:
        reader.read_exact(2, ext.extend)
        n = struct.unpack("!H", ext)[0]
    elif n == 127:
        reader.read_exact(8, ext.extend)
        n = struct.unpack("!Q", ext)[0]
    key = bytearray()
    if masked:
        reader.read_exact(4, key.extend)
    payload = bytearray()
    reader.read_exact(n, payload.extend)
    payload = bytes(payload)
    if masked:
        payload = ws_mask(payload, bytes(key))
    return fin, opcode, masked, payload


# ---- upstream servers ----------------------------------------------------------------------------

class Request:
    """What an upstream received."""

    def __init__(self):
        self.method = None
        self.target = None
        self.version = None
        self.headers = Headers([])
        self.body = b""            # decoded; None when larger than the upstream's keep limit
        self.body_len = 0
        self.body_crc = 0
        self.chunked = False
        self.chunk_sizes = []
        self.trailers = Headers([])
        self.raw_head = b""
        self.conn_id = None
        self.conn_seq = None       # index of this request on its connection
        self.index = None          # index among all requests this upstream received
        self.peer = None           # (ip, port) trident connected from
        self.received_at = None    # monotonic time the head was parsed
        self.continue_sent = False

    def __repr__(self):
        return f"<Request {self.method} {self.target} conn={self.conn_id}#{self.conn_seq}>"


TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8


def peer_has_closed(sock):
    """Whether the peer has sent its FIN (or a reset), without reading anything."""
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return True
    return state in (TCP_CLOSE, TCP_CLOSE_WAIT)


class Exchange:
    """Handed to an upstream's handler: the request and ways to answer it."""

    def __init__(self, upstream, conn, req):
        self.upstream = upstream
        self.conn = conn
        self.sock = conn.sock
        self.req = req
        self.closed = False
        self.keep_alive = True     # set False to close after the response

    # responses
    def send(self, data):
        self.sock.sendall(data)

    def send_head(self, status=200, headers=(), reason=None):
        reason = reason if reason is not None else REASONS.get(status, "Whatever")
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        self.send(head.encode("latin-1") + b"\r\n")

    def send_continue(self):
        self.req.continue_sent = True  # before the send: the test may see the 100 first
        self.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def respond(self, status=200, body=b"", headers=(), mode="length", reason=None, chunks=None):
        """mode: 'length' (Content-Length), 'chunked' (body split into chunks, or the given
        chunks), 'close' (no length; the connection closes after the body), 'none' (no framing
        header, no body: 204/304/HEAD)."""
        headers = list(headers)
        names = [k.lower() for k, _ in headers]
        if isinstance(body, str):
            body = body.encode()
        if mode == "length":
            if "content-length" not in names:
                headers.append(("Content-Length", str(len(body))))
            self.send_head(status, headers, reason)
            if self.req.method != "HEAD":
                self.send(body)
        elif mode == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
            self.send_head(status, headers, reason)
            parts = chunks if chunks is not None else [body[i:i + 1000]
                                                       for i in range(0, len(body), 1000)]
            self.send(chunked_encode([p for p in parts if p]))
        elif mode == "close":
            self.send_head(status, headers, reason)
            self.send(body)
            self.close()
        elif mode == "none":
            self.send_head(status, headers, reason)
        else:
            raise ValueError(mode)

    def respond_stream(self, total, status=200, headers=(), mode="length", chunk=BLOCK):
        """A generated body of total bytes (pattern_blocks), never held in memory."""
        headers = list(headers)
        if mode == "length":
            headers.append(("Content-Length", str(total)))
        elif mode == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
        self.send_head(status, headers)
        for b in pattern_blocks(total, chunk):
            if mode == "chunked":
                self.send(f"{len(b):x}\r\n".encode() + b + b"\r\n")
            else:
                self.send(b)
        if mode == "chunked":
            self.send(b"0\r\n\r\n")
        elif mode == "close":
            self.close()

    # misbehaviour
    def close(self):
        """Close the connection (FIN)."""
        if not self.closed:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def linger_close(self, timeout=2.0):
        """Close politely: half-close, then read and drop what the peer still sends (up to
        timeout), so unread input cannot turn the close into a reset."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(0.2)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if not self.sock.recv(1 << 20):
                        break
                except TimeoutError:
                    continue
        except OSError:
            pass
        self.sock.close()

    def reset(self):
        """Close with a reset (SO_LINGER 0)."""
        if not self.closed:
            self.closed = True
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()

    def delay(self, seconds):
        time.sleep(seconds)

    def hang(self, timeout=60):
        """Answer nothing and read nothing until upstream.release is set or the peer closes.
        Returns 'released', 'peer_closed' or 'timeout'. A peer close (FIN or reset, seen from
        the TCP state even with unread data pending) also sets upstream.peer_closed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.upstream.release.wait(0.02):
                return "released"
            if self.conn.reader.eof:
                self.upstream.peer_closed.set()
                return "peer_closed"
            if peer_has_closed(self.sock):
                self.upstream.peer_closed.set()
                return "peer_closed"
        return "timeout"

    def websocket_echo(self, protocol=None):
        """RFC 6455 handshake, then echo data frames until a close frame (echoed) or EOF."""
        key = self.req.headers.get("sec-websocket-key")
        if not key or self.req.headers.get("sec-websocket-version") != "13":
            self.respond(400, b"bad websocket handshake")
            return
        hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", ws_accept(key))]
        if protocol:
            hdrs.append(("Sec-WebSocket-Protocol", protocol))
        self.send_head(101, hdrs, "Switching Protocols")
        self.websocket_echo_frames()

    def websocket_echo_frames(self):
        """After a 101: echo data frames until a close frame (echoed) or EOF, then close."""
        reader = self.conn.reader
        frames = self.upstream.ws_frames
        try:
            while True:
                fin, op, masked, payload = ws_read_frame(reader)
                frames.append((op, payload, masked))
                if not masked:
                    self.upstream.errors.append("websocket frame from the client side not masked")
                if op == 8:
                    self.send(ws_frame(8, payload[:2], mask=False))
                    break
                if op == 9:
                    self.send(ws_frame(10, payload, mask=False))
                    continue
                self.send(ws_frame(op, payload, mask=False, fin=fin))
        except (Truncated, Closed):
            pass
        self.close()


REASONS = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
           204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
           400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           417: "Expectation Failed", 500: "Internal Server Error", 503: "Service Unavailable"}


class _Conn:
    def __init__(self, sock, cid):
        self.sock = sock
        self.id = cid
        self.reader = Reader(sock)


def default_handler(ex):
    r = ex.req
    ex.respond(200, f"{ex.upstream.name} {r.method} {r.target}".encode(),
               headers=[("Content-Type", "text/plain"), ("X-Upstream", ex.upstream.name)])


def echo_handler(ex):
    """Echoes the method, target and body; X-Upstream names the server."""
    r = ex.req
    ex.respond(200, f"{r.method} {r.target}\n".encode() + (r.body or b""),
               headers=[("X-Upstream", ex.upstream.name)])


class Upstream:
    """A threaded HTTP/1.1 server on (host, port 0) that parses requests strictly, records them,
    and calls handler(Exchange) for each one (default: 200 naming the server).

    head_handler(Exchange) runs for every request once its head is parsed, before its body is
    read; it returns True if it answered (the body is then not read and the connection closes).
    expect_handler(Exchange) is the same for requests with Expect: 100-continue, which otherwise
    get a 100 Continue before the body is read. close_idle=True closes each connection after a response
    (without saying so), like a server whose keep-alive timeout is tiny."""

    def __init__(self, host, handler=None, name=None, close_idle=False, keep_limit=16 << 20,
                 expect_handler=None, head_handler=None, backlog=128, port=0):
        self.host = host
        self.name = name or f"up-{host}"
        self.handler = handler or default_handler
        self.expect_handler = expect_handler
        self.head_handler = head_handler
        self.close_idle = close_idle
        self.keep_limit = keep_limit
        self.requests = []
        self.errors = []
        self.ws_frames = []
        self.connections = 0
        self.closed_connections = 0
        self.open_conns = {}
        self.release = threading.Event()
        self.peer_closed = threading.Event()
        self.cond = threading.Condition()
        self._stop = False
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))  # a given port: a server restarted where it was
        self.lsock.listen(backlog)
        self.port = self.lsock.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self._threads = []
        t = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        t.start()
        self._threads.append(t)

    # waiting
    def wait_requests(self, n, timeout=None):
        timeout = T(5) if timeout is None else timeout
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.requests) >= n, timeout)
        if not ok:
            raise AssertionError(f"{self.name}: {len(self.requests)} requests after {timeout}s, "
                                 f"wanted {n}")
        return self.requests[n - 1]

    def wait_closed_connections(self, n, timeout=None):
        timeout = T(5) if timeout is None else timeout
        with self.cond:
            ok = self.cond.wait_for(lambda: self.closed_connections >= n, timeout)
        if not ok:
            raise AssertionError(f"{self.name}: {self.closed_connections} connections closed "
                                 f"after {timeout}s, wanted {n}")

    def _accept_loop(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self.lsock], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not r or self._stop:
                continue
            try:
                s, peer = self.lsock.accept()
            except OSError:
                continue
            with self.cond:
                self.connections += 1
                cid = self.connections
                conn = _Conn(s, cid)
                self.open_conns[cid] = conn
                self.cond.notify_all()
            t = threading.Thread(target=self._serve, args=(conn, peer),
                                 name=f"{self.name}-conn{cid}", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn, peer):
        s = conn.sock
        s.settimeout(T(60))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        seq = 0
        ex = None
        try:
            while not self._stop:
                req = Request()
                try:
                    req.raw_head = conn.reader.read_until(b"\r\n\r\n", 1 << 20)
                except Closed:
                    break
                req.received_at = time.monotonic()
                line, fields = split_head(req.raw_head)
                m = re.fullmatch(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) (HTTP/1\.[01])", line)
                if not m:
                    raise ProtocolError(f"bad request line {line!r}")
                req.method, req.target, req.version = (g.decode("latin-1") for g in m.groups())
                req.headers = Headers(fields)
                req.conn_id, req.conn_seq, req.peer = conn.id, seq, peer
                seq += 1
                framing, length = body_framing(req.headers, is_request=True)
                req.chunked = framing == "chunked"
                ex = Exchange(self, conn, req)
                if self.head_handler:
                    with self.cond:
                        req.index = len(self.requests)
                        self.requests.append(req)
                        self.cond.notify_all()
                    if self.head_handler(ex):
                        break
                    self._read_body(conn, req, framing, length)
                elif "100-continue" in req.headers.tokens("expect") and framing != "none":
                    with self.cond:
                        req.index = len(self.requests)
                        self.requests.append(req)
                        self.cond.notify_all()
                    if self.expect_handler and self.expect_handler(ex):
                        break
                    ex.send_continue()
                    self._read_body(conn, req, framing, length)
                else:
                    self._read_body(conn, req, framing, length)
                    with self.cond:
                        req.index = len(self.requests)
                        self.requests.append(req)
                        self.cond.notify_all()
                self.handler(ex)
                if ex.closed or not ex.keep_alive or self.close_idle or \
                        "close" in req.headers.tokens("connection"):
                    break
                if req.headers.tokens("upgrade"):
                    break
        except (Truncated, ProtocolError) as e:
            self.errors.append(f"conn {conn.id}: {type(e).__name__}: {e}")
        except (OSError, TimeoutError) as e:
            if not self._stop and not (ex and ex.closed):
                self.errors.append(f"conn {conn.id}: {type(e).__name__}: {e}")
        except Exception as e:  # a handler bug: record it for the test to see
            self.errors.append(f"conn {conn.id}: handler raised {type(e).__name__}: {e}")
        finally:
            if ex is None or not ex.closed:
                try:
                    s.close()
                except OSError:
                    pass
            with self.cond:
                self.open_conns.pop(conn.id, None)
                self.closed_connections += 1
                self.cond.notify_all()

    def _read_body(self, conn, req, framing, length):
        sink = Sink(self.keep_limit)
        if framing == "length":
            conn.reader.read_exact(length, sink)
        elif framing == "chunked":
            tr, req.chunk_sizes = read_chunked(conn.reader, sink)
            req.trailers = Headers(tr)
        req.body_len = sink.n
        req.body_crc = sink.crc
        req.body = None if sink.overflow else bytes(sink.kept)

    def close(self):
        self._stop = True
        self.release.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.cond:
            conns = list(self.open_conns.values())
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- configuration -------------------------------------------------------------------------------

FAST_TIMEOUTS = {
    "client_header_ms": 5000, "client_body_ms": 5000, "client_idle_ms": 5000,
    "client_send_ms": 5000, "upstream_connect_ms": 1000, "upstream_send_ms": 5000,
    "upstream_response_ms": 5000, "upstream_idle_ms": 5000, "tunnel_idle_ms": 5000,
    "shutdown_drain_ms": 3000,
}


def cluster(name, servers, provider=None, weight=1, balance="round_robin"):
    """servers: list of Upstream, address strings, or (id, address[, weight]) tuples."""
    out = []
    for i, s in enumerate(servers):
        if isinstance(s, Upstream):
            out.append({"id": f"{name}-{i + 1}", "address": s.address, "weight": 1})
        elif isinstance(s, str):
            out.append({"id": f"{name}-{i + 1}", "address": s, "weight": 1})
        else:
            d = {"id": s[0], "address": s[1].address if isinstance(s[1], Upstream) else s[1]}
            d["weight"] = s[2] if len(s) > 2 else 1
            out.append(d)
    return {"name": name, "provider": provider or name, "weight": weight, "balance": balance,
            "servers": out}


def make_config(clusters, workers=1, timeouts=None, limits=None, log=None, failover=None):
    cfg = {"workers": workers, "timeouts": dict(FAST_TIMEOUTS, **(timeouts or {})),
           "clusters": clusters}
    if limits:
        cfg["limits"] = dict(limits)
    if log:
        cfg["log"] = dict(log)
    if failover:
        cfg["failover"] = dict(failover)
    return cfg


# Streaming semantics: request bodies go to the server as they arrive (nothing read whole first),
# so the upstream's own 100-continue and mid-body behaviour are visible.
STREAM_BODIES = {"retry_body_bytes": 0}
# Passive checks off: a test that provokes failures on purpose keeps its only server.
NO_PASSIVE = {"connect_failures": 0, "timeouts": 0, "http_5xx": 0}


# ---- trident -------------------------------------------------------------------------------------

def sanitizer_env(env):
    env = dict(env)
    if SANITIZE:
        asan = env.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + \
            "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16"
        ubsan = env.get("UBSAN_OPTIONS", "")
        env["UBSAN_OPTIONS"] = (ubsan + ":" if ubsan else "") + "print_stacktrace=1:halt_on_error=1"
    return env


def run_check(config, timeout=30):
    """trident --check -c FILE on a config (dict, or str written as is): (exit code, stderr)."""
    d = tempfile.mkdtemp(prefix="trident-check-")
    try:
        path = os.path.join(d, "trident.json")
        with open(path, "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config, indent=2))
        p = subprocess.run([TRIDENT_BIN, "--check", "-c", path], capture_output=True, text=True,
                           timeout=T(timeout), env=sanitizer_env(os.environ))
        if SANITIZE:
            for m in SANITIZER_MARKERS:
                assert m not in p.stderr, f"sanitizer report from --check:\n{p.stderr}"
        return p.returncode, p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


class LoadThreads:
    """Client threads, each running self._run(i) (a subclass's bounded loop that appends to
    self.results under self.lock and ends when self._stop is set), started together and
    stopped together."""

    def __init__(self, threads):
        self.results = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def _run(self, i):
        raise NotImplementedError

    def start(self):
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(T(30))
        assert not any(t.is_alive() for t in self._threads), "a load thread is stuck"
        return self.results


class Trident:
    """Runs trident on config (a dict; 'listeners' filled in on net's listener address when
    absent). Use as a context manager: started on enter, always stopped on exit; when the block
    failed, the error log is printed."""

    def __init__(self, config, net=None, host=None, ready_timeout=10, wrapper=(), env=None):
        self.config = copy.deepcopy(config)
        self.env = dict(env or {})  # set for trident's process, over the sanitizer options
        if os.geteuid() == 0 and "process" not in self.config:
            # the tests run as root here; trident refuses root unless told why
            self.config["process"] = {"allow_root": True}
        self.wrapper = list(wrapper)  # e.g. a valgrind command line to run trident under
        if "listeners" not in self.config:
            host = host or (net.listener_ip() if net else "127.0.0.1")
            self.config["listeners"] = [{"address": f"{host}:{free_port(host)}"}]
        addr = self.config["listeners"][0]["address"]
        h, _, p = addr.rpartition(":")
        self.host = "127.0.0.1" if h in ("*", "0.0.0.0") else h
        self.port = int(p)
        self.ready_timeout = ready_timeout
        self.proc = None
        self.returncode = None
        self.dir = None
        self._stopping = False

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="trident-e2e-")
        self.config_path = os.path.join(self.dir, "trident.json")
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
        self.access_path = os.path.join(self.dir, "access.log")
        self.error_path = os.path.join(self.dir, "error.log")
        self._out = open(self.access_path, "wb")
        self._err = open(self.error_path, "wb")
        self.proc = subprocess.Popen(self.wrapper + [TRIDENT_BIN, "-c", self.config_path],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err,
                                     env=dict(sanitizer_env(os.environ), **self.env))
        self.started_at = time.monotonic()
        deadline = time.monotonic() + T(self.ready_timeout)
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"trident exited with {self.proc.returncode} at start-up:\n"
                                     f"{self.error_log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise AssertionError(f"trident not accepting on {self.host}:{self.port} "
                                         f"after {T(self.ready_timeout)}s:\n{self.error_log()}")
                time.sleep(0.01)
        # the readiness probe itself is a client connection that closes without a request
        self.rss_after_start_kb = self.rss_kb()
        return self

    # logs
    def access_lines(self):
        with open(self.access_path, "rb") as f:
            data = f.read()
        out = []
        for line in data.split(b"\n")[:-1]:  # a last line without newline is still being written
            if line.strip():
                out.append(json.loads(line))
        return out

    def wait_for_access(self, pred=lambda e: True, timeout=None, count=1, what="access log line"):
        """Poll the access log until count lines satisfy pred; return the last of them (or the
        list when count > 1)."""
        timeout = T(5) if timeout is None else timeout

        def found():
            m = [e for e in self.access_lines() if pred(e)]
            return m if len(m) >= count else None

        m = wait_until(found, timeout, interval=0.02, what=what)
        return m[count - 1] if count == 1 else m[:count]

    def error_log(self):
        try:
            with open(self.error_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""

    def error_lines(self):
        out = []
        for line in self.error_log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    # /proc
    def _status(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise KeyError(key)

    def rss_kb(self):
        return self._status("VmRSS")

    def peak_rss_kb(self):
        return self._status("VmHWM")

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def settled_fd_count(self, quiet=0.25, timeout=None):
        """The fd count once it has not changed for quiet seconds (e.g. after the readiness
        probe's connection has been accepted and closed)."""
        deadline = time.monotonic() + (T(5) if timeout is None else timeout)
        last, since = self.fd_count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.02)
            n = self.fd_count()
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return n
        raise AssertionError("trident's descriptor count did not settle")

    def fds(self):
        out = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out[int(fd)] = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                pass
        return out

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # stopping
    def send_signal(self, sig):
        self._stopping = True
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"trident did not exit within {timeout:.1f}s")
        self._close_files()
        self.check_sanitizer()
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signal and wait; return the exit code. Raises if it does not exit in time or (with
        TRIDENT_SANITIZE) if stderr holds a sanitizer report."""
        if self.proc.poll() is None:
            self.send_signal(sig)
        return self.wait(T(15) if timeout is None else timeout)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.returncode = self.proc.returncode if self.proc else None
        self._close_files()

    def check_sanitizer(self):
        if not SANITIZE:
            return
        log = self.error_log()
        for m in SANITIZER_MARKERS:
            if m in log:
                raise AssertionError(f"sanitizer report ({m}) in trident's stderr:\n{log}")

    def _close_files(self):
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        failed = exc_type is not None
        try:
            if self.proc.poll() is not None and not self._stopping:
                failed = True
                self.returncode = self.proc.returncode
                self._close_files()
                if exc_type is None:
                    raise AssertionError(f"trident exited unexpectedly with code "
                                         f"{self.proc.returncode}:\n{self.error_log()}")
            elif self.proc.poll() is None:
                try:
                    code = self.stop()
                except AssertionError:
                    failed = True
                    if exc_type is None:
                        raise
                else:
                    if code != 0 and exc_type is None:
                        failed = True
                        raise AssertionError(f"trident exited with {code} on SIGTERM")
            else:
                self.check_sanitizer() if exc_type is None else None
        finally:
            if failed:
                sys.stderr.write(f"\n---- trident error log ({self.error_path}) ----\n"
                                 f"{self.error_log()}---- end of error log ----\n")
            if not failed and os.environ.get("TRIDENT_E2E_KEEP") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)
        return False


# ---- test case base ------------------------------------------------------------------------------

import unittest  # noqa: E402


def require_trident_bin():
    """An error, not a skip: a test run without the binary under test has tested nothing."""
    if not TRIDENT_BIN:
        raise RuntimeError("TRIDENT_BIN is not set: run the tests with ctest (scripts/test), or "
                           "set TRIDENT_BIN to the trident binary to test")
    if not os.access(TRIDENT_BIN, os.X_OK):
        raise RuntimeError(f"TRIDENT_BIN={TRIDENT_BIN} is not an executable file")


class E2ETestCase(unittest.TestCase):
    """Gives each module a Net and tracks upstreams so they close and report handler errors."""

    net = None

    @classmethod
    def setUpClass(cls):
        if cls.net is None:
            cls.net = Net(cls.__module__)
        require_trident_bin()

    def setUp(self):
        self._upstreams = []

    def upstream(self, i=0, handler=None, name=None, **kw):
        u = Upstream(self.net.upstream_ip(i), handler=handler, name=name or f"u{i}", **kw)
        self._upstreams.append(u)
        self.addCleanup(u.close)
        return u

    def assertNoUpstreamErrors(self, *ups):
        for u in ups or self._upstreams:
            self.assertEqual(u.errors, [], f"upstream {u.name} saw protocol errors")

    def trident(self, config, **kw):
        return Trident(config, net=self.net, **kw)

    def assertErrorPage(self, resp, status, closes=None):
        """trident's own error response: status, JSON body with status/error/request_id,
        X-Request-Id header equal to the body's. A client error (4xx) says Connection: close; a
        gateway error (502/503/504) after a valid request keeps the connection (closes=None
        picks by status; True/False asserts it either way)."""
        self.assertEqual(resp.status, status, resp)
        self.assertTrue(resp.complete, resp)
        body = resp.json()
        self.assertEqual(body.get("status"), status, body)
        self.assertIsInstance(body.get("error"), str)
        self.assertTrue(body["error"])
        rid = resp.headers.get("x-request-id")
        self.assertTrue(rid, "error response without X-Request-Id")
        self.assertEqual(body.get("request_id"), rid)
        if closes is None:
            closes = status not in (502, 503, 504)
        if closes:
            self.assertIn("close", resp.headers.tokens("connection"))
        else:
            self.assertNotIn("close", resp.headers.tokens("connection"))
        return body
