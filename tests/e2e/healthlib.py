"""
Helpers shared by test_health.py and test_failover.py (not a test module itself).

- CheckControl: answers an Upstream's health-check requests (recognised by their User-Agent) with
  a status and body the test sets, or one check at a time (step mode), and passes traffic to a
  handler of the test's choice.
- RawServer: a listener whose every connection gets a plain function (a server that answers
  garbage, one that never answers, one that only accepts).
- transitions(): the health transitions trident logged, parsed.
- health(): a health section with fast timers.
"""
import collections
import re
import socket
import threading
import time

from harness import T, default_handler, wait_until

CHECK_UA = "trident-health-check"


def is_check(req):
    return req.headers.get("user-agent") == CHECK_UA


def checks(up):
    return [r for r in list(up.requests) if is_check(r)]


def traffic(up):
    return [r for r in list(up.requests) if not is_check(r)]


def health(**kw):
    """A health section: fast timers, no jitter, rise 1 / fall 1 unless given."""
    h = {"type": "http", "interval_ms": 100, "fast_interval_ms": 50, "timeout_ms": 1000,
         "rise": 1, "fall": 1, "jitter_pct": 0}
    h.update(kw)
    return h


class CheckControl:
    """Health-check answers for one Upstream. In auto mode every check gets .status/.body at
    once; in step mode each check waits for a token given by step(), so the test decides each
    verdict and knows when trident has taken it (the next check only starts after the verdict)."""

    def __init__(self, status=200, body=b"ok", traffic_handler=None):
        self.status = status
        self.body = body
        self.traffic_handler = traffic_handler or default_handler
        self.cond = threading.Condition()
        self.stepping = False
        self.tokens = collections.deque()
        self.answered = []       # statuses answered, in order
        self.waiting = 0         # checks waiting for a token
        self.closed = False
        self.before_answer = None  # optional callable(ex) run before a check is answered
        self.mode = "length"

    def set(self, status, body=None, mode="length"):
        """mode: how the body is framed ('length', 'chunked': a list of chunks, 'close')."""
        with self.cond:
            self.status = status
            self.mode = mode
            if body is not None:
                self.body = body

    def handler(self, ex):
        if not is_check(ex.req):
            return self.traffic_handler(ex)
        if self.before_answer:
            self.before_answer(ex)
        with self.cond:
            self.waiting += 1
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.closed or not self.stepping or self.tokens, T(30))
            self.waiting -= 1
            mode = self.mode
            if self.stepping and self.tokens:
                status, body = self.tokens.popleft()
            else:
                status, body = self.status, self.body
            self.answered.append(status)
            self.cond.notify_all()
        if mode == "chunked":
            ex.respond(status, b"", headers=[("Content-Type", "text/plain")], mode="chunked",
                       chunks=list(body))
        else:
            ex.respond(status, body, headers=[("Content-Type", "text/plain")], mode=mode)

    def start_stepping(self, timeout=None):
        """Hold checks from now on; return once one is waiting (a verdict in flight before the
        call has then been taken)."""
        with self.cond:
            self.stepping = True
            self.cond.notify_all()
            ok = self.cond.wait_for(lambda: self.waiting > 0, T(5) if timeout is None else timeout)
        assert ok, "no health check arrived"

    def step(self, status, body=None, timeout=None):
        """Answer exactly one waiting check with status; return once trident has taken that
        verdict, shown by its next check arriving."""
        timeout = T(5) if timeout is None else timeout
        with self.cond:
            assert self.stepping
            n = len(self.answered)
            self.tokens.append((status, self.body if body is None else body))
            self.cond.notify_all()
            ok = self.cond.wait_for(lambda: len(self.answered) > n and self.waiting > 0, timeout)
        assert ok, "the next health check did not arrive after a step"

    def stop_stepping(self):
        with self.cond:
            self.stepping = False
            self.cond.notify_all()

    def close(self):
        with self.cond:
            self.closed = True
            self.stepping = False
            self.cond.notify_all()


class RawServer:
    """A listener on (host, port) calling behaviour(sock) for each accepted connection in its own
    thread; the socket is closed afterwards. behaviour None: close at once."""

    def __init__(self, host, behaviour=None, port=0, backlog=128):
        self.behaviour = behaviour
        self.connections = 0
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(backlog)
        self.host = host
        self.port = self.lsock.getsockname()[1]
        self.address = f"{host}:{self.port}"
        self._stop = threading.Event()
        self._socks = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        import select
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.lsock], [], [], 0.05)
                if not r:
                    continue
                s, _ = self.lsock.accept()
            except (OSError, ValueError):
                return
            self.connections += 1
            self._socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        try:
            s.settimeout(T(30))
            if self.behaviour:
                self.behaviour(s)
        except OSError:
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self._stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def plain_http_400(sock):
    """What a plain HTTP server does with bytes it cannot parse (a TLS ClientHello): 400, close."""
    sock.recv(4096)
    sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def garbage_reply(sock):
    sock.recv(4096)
    sock.sendall(b"this is not HTTP at all\r\n\r\n")


def silent(sock):
    """Accept, read, never answer until the peer goes away."""
    deadline = time.monotonic() + T(30)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(4096):
                return
        except TimeoutError:
            return


TRANSITION = re.compile(r"^server (\S+) \(cluster (\S+), provider (\S+)\) is (up|down): (.*) "
                        r"\(was (\w+)\)$")


def transitions(t, server=None):
    """[(server, 'up'|'down', reason, was, level)] in log order."""
    out = []
    for e in t.error_lines():
        m = TRANSITION.match(e.get("msg", ""))
        if m and (server is None or m.group(1) == server):
            out.append((m.group(1), m.group(4), m.group(5), m.group(6), e.get("level")))
    return out


def wait_transition(t, server, state, reason=None, count=1, timeout=None):
    """Wait until server's count-th transition to state (with reason as a prefix) is logged;
    return it."""
    def found():
        m = [x for x in transitions(t, server) if x[1] == state and
             (reason is None or x[2].startswith(reason))]
        return m[count - 1] if len(m) >= count else None

    return wait_until(found, T(5) if timeout is None else timeout, interval=0.01,
                      what=f"{server} {state} ({reason}) in the error log")


def served_by(resp):
    return resp.headers.get("x-upstream")


def spread(t, n, path="/spread"):
    """n GETs to trident t, each on a fresh connection: {X-Upstream: count}; each must be a 200."""
    from harness import Client
    out = {}
    for i in range(n):
        with Client.to(t) as c:
            r = c.exchange("GET", f"{path}{i}")
        assert r.status == 200, r
        out[served_by(r)] = out.get(served_by(r), 0) + 1
    return out


def assert_gateway_error(tc, resp, status):
    """trident's own 502/503/504: status, JSON body with status/error/request_id, X-Request-Id
    equal to the body's. (Whether the connection stays open is not asserted here.)"""
    tc.assertEqual(resp.status, status, resp)
    tc.assertTrue(resp.complete, resp)
    tc.assertIn("json", resp.headers.get("content-type", ""), resp)
    body = resp.json()
    tc.assertEqual(body.get("status"), status, body)
    tc.assertIsInstance(body.get("error"), str)
    tc.assertTrue(body["error"])
    rid = resp.headers.get("x-request-id")
    tc.assertTrue(rid, "error response without X-Request-Id")
    tc.assertEqual(body.get("request_id"), rid)
    return body
