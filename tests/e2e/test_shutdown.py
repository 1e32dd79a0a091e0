"""Graceful shutdown (SIGTERM/SIGINT) and descriptor hygiene."""
import errno
import signal
import socket
import threading
import time
import unittest

from healthlib import RawServer, health, silent
from harness import (NO_PASSIVE, STREAM_BODIES, Client, E2ETestCase, T, cluster, echo_handler,
                     make_config, wait_until)


def hold_handler(ex):
    """Holds /hold until upstream.release is set, then answers a 100 KB body."""
    if ex.req.target.startswith("/hold"):
        ex.hang(T(30))
    ex.respond(200, b"d" * 100_000 if ex.req.target.startswith("/hold") else b"quick")


def connect_refused(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return e.errno == errno.ECONNREFUSED
    finally:
        s.close()


def msgs(t):
    return [e.get("msg", "") for e in t.error_lines()]


class GracefulShutdown(E2ETestCase):

    def test_in_flight_request_finishes_after_sigterm(self):
        up = self.upstream(0, handler=hold_handler)
        cfg = make_config([cluster("c", [up])], workers=2, timeouts={"shutdown_drain_ms": 10000})
        with self.trident(cfg) as t, Client.to(t) as c:
            c.request("GET", "/hold")
            up.wait_requests(1)
            t.send_signal(signal.SIGTERM)
            # new connections are refused while the old request is still in flight
            wait_until(lambda: connect_refused(t.host, t.port), T(5), interval=0.02,
                       what="the listener to close")
            self.assertTrue(t.alive(), "trident exited before its in-flight request finished")
            up.release.set()
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertTrue(r.complete)
            self.assertEqual(r.body_len, 100_000)
            # the drained connection is not kept for another request
            self.assertTrue(not r.keep_alive or c.closed_by_peer(), "connection kept open")
            self.assertEqual(t.wait(T(10)), 0)
            self.assertTrue(connect_refused(t.host, t.port))
            e = t.wait_for_access(lambda e: e.get("path") == "/hold", timeout=1)
            self.assertEqual(e["status"], 200)

    def test_request_body_still_streaming_at_sigterm(self):
        # the client is mid-upload (a streamed body) when the signal comes: it may finish
        up = self.upstream(0, handler=echo_handler)
        cfg = make_config([cluster("c", [up])], failover=STREAM_BODIES)
        with self.trident(cfg) as t, Client.to(t) as c:
            c.send(b"POST /upload HTTP/1.1\r\nHost: s.test\r\nContent-Length: 10\r\n\r\nhello")
            up_conn = wait_until(lambda: up.connections, T(5), what="upstream connection")
            self.assertEqual(up_conn, 1)
            t.send_signal(signal.SIGTERM)
            wait_until(lambda: connect_refused(t.host, t.port), T(5), what="the listener to close")
            c.send(b"world")
            r = c.read_response("POST")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"POST /upload\nhelloworld")
            self.assertEqual(t.wait(T(10)), 0)

    def test_drain_deadline_ends_stuck_requests(self):
        up = self.upstream(0, handler=hold_handler)
        cfg = make_config([cluster("c", [up])], timeouts={"shutdown_drain_ms": 500})
        with self.trident(cfg) as t, Client.to(t) as c:
            c.request("GET", "/hold-forever")
            up.wait_requests(1)
            t0 = time.monotonic()
            t.send_signal(signal.SIGTERM)
            self.assertEqual(t.wait(T(10)), 0)
            elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, 0.45)
            self.assertLess(elapsed, T(5))
            # the client is told, or at least not left hanging
            try:
                r = c.read_response(timeout=T(3))
                self.assertNotEqual(r.status, 200)
            except Exception as e:  # noqa: BLE001
                self.assertNotIsInstance(e, TimeoutError)
            e = t.wait_for_access(lambda e: e.get("path") == "/hold-forever", timeout=1)
            self.assertEqual(e.get("reason"), "shutdown")
            self.assertTrue(up.peer_closed.wait(T(3)))

    def test_idle_connections_do_not_delay_exit(self):
        up = self.upstream(0)
        cfg = make_config([cluster("c", [up])], timeouts={"shutdown_drain_ms": 20000,
                                                          "client_idle_ms": 60000})
        with self.trident(cfg) as t:
            clients = [Client.to(t) for _ in range(5)]
            for c in clients:
                self.assertEqual(c.exchange().status, 200)
            t0 = time.monotonic()
            self.assertEqual(t.stop(timeout=T(10)), 0)
            self.assertLess(time.monotonic() - t0, T(3), "idle keep-alive connections held the drain")
            for c in clients:
                self.assertTrue(c.closed_by_peer(1))
                c.close()

    def test_sigint_exits_zero(self):
        up = self.upstream(0)
        with self.trident(make_config([cluster("c", [up])], workers=3)) as t:
            with Client.to(t) as c:
                self.assertEqual(c.exchange().status, 200)
            self.assertEqual(t.stop(signal.SIGINT), 0)

    def test_second_signal_stops_at_once(self):
        up = self.upstream(0, handler=hold_handler)
        cfg = make_config([cluster("c", [up])], timeouts={"shutdown_drain_ms": 30000})
        with self.trident(cfg) as t, Client.to(t) as c:
            c.request("GET", "/hold")
            up.wait_requests(1)
            t.send_signal(signal.SIGTERM)
            wait_until(lambda: connect_refused(t.host, t.port), T(5), what="the listener to close")
            t0 = time.monotonic()
            t.send_signal(signal.SIGTERM)
            code = t.wait(T(10))
            self.assertLess(time.monotonic() - t0, T(3))
            self.assertEqual(code, 0)


class StartupSignals(E2ETestCase):
    """trident accepts connections (the listening sockets' backlog) while it still waits for the
    first round of health checks; a signal in that window must be handled, not kill it."""

    def start_waiting(self):
        mute = RawServer(self.net.upstream_ip(0), silent)  # accepts checks, never answers
        self.addCleanup(mute.close)
        ca = cluster("ntt", [("ntt-1", mute.address)])
        ca["health"] = health(timeout_ms=30000)
        cfg = make_config([ca], failover={"startup_wait_ms": 3000})
        t = self.trident(cfg).__enter__()
        self.addCleanup(t.__exit__, None, None, None)
        wait_until(lambda: mute.connections >= 1, T(5), what="the first check to be waiting")
        self.assertFalse(any(" started: " in x for x in msgs(t)), "start-up wait already over")
        return t

    def test_sigterm_during_startup_wait_stops_cleanly(self):
        t = self.start_waiting()
        t.send_signal(signal.SIGTERM)
        self.assertEqual(t.wait(T(15)), 0, t.error_log())
        self.assertTrue(any(x == "stopped" for x in msgs(t)), t.error_log())

    def test_sighup_during_startup_wait_reloads(self):
        t = self.start_waiting()
        t.send_signal(signal.SIGHUP)
        wait_until(lambda: any(" started: " in x for x in msgs(t)), T(10), what="start")
        wait_until(lambda: any(x.startswith("configuration reloaded") for x in msgs(t)), T(5), what="the reload logged")
        self.assertTrue(t.alive(), t.error_log())


class Descriptors(E2ETestCase):

    def test_no_descriptor_leak(self):
        def handler(ex):
            p = ex.req.target
            if p == "/hang":
                ex.hang(T(10))
            elif p == "/cut":
                ex.send_head(200, [("Content-Length", "5000")])
                ex.send(b"c" * 100)
                ex.close()
            elif p == "/big":
                ex.respond_stream(8 << 20)
            elif p == "/close":
                ex.respond(200, b"bye", mode="close")
            else:
                echo_handler(ex)

        up = self.upstream(0, handler=handler)
        c0 = cluster("c", [up])
        c0["passive"] = NO_PASSIVE  # the failures provoked here must not take the server out
        cfg = make_config([c0],
                          timeouts={"upstream_response_ms": 300, "upstream_idle_ms": 300,
                                    "client_header_ms": 300})
        with self.trident(cfg) as t:
            baseline = t.settled_fd_count()
            fds_before = t.fds()

            def one(kind):
                c = Client.to(t)
                try:
                    if kind == "ok":
                        for _ in range(3):
                            c.exchange("GET", "/ok")
                    elif kind == "post":
                        c.exchange("POST", "/post", body=b"p" * 70_000)
                    elif kind == "abort":  # client goes away in the middle of a big response
                        c.request("GET", "/big")
                        c.sock.recv(1000)
                    elif kind == "abort-request":  # client goes away mid request body
                        c.send(b"POST /x HTTP/1.1\r\nHost: s\r\nContent-Length: 100000\r\n\r\nabc")
                    elif kind == "bad":
                        c.send(b"GARBAGE\r\n\r\n")
                        c.read_response()
                    elif kind == "partial-head":  # head never finished: client_header_ms
                        c.send(b"GET / HTTP/1.1\r\nHost")
                        c.closed_by_peer(T(3))
                    else:
                        c.exchange("GET", "/" + kind)
                except (OSError, Exception):  # noqa: BLE001 - outcomes are checked elsewhere
                    pass
                finally:
                    c.close()

            kinds = ["ok", "post", "abort", "abort-request", "bad", "partial-head", "hang", "cut",
                     "close", "big"] * 3
            threads = [threading.Thread(target=one, args=(k,)) for k in kinds]
            for th in threads:
                th.start()
            for th in threads:
                th.join(T(30))
            self.assertFalse(any(th.is_alive() for th in threads))
            try:
                wait_until(lambda: t.fd_count() == baseline, T(5), interval=0.05,
                           what=f"trident's fd count to return to {baseline}")
            except AssertionError:
                after = t.fds()
                extra = {fd: p for fd, p in after.items() if fds_before.get(fd) != p}
                self.fail(f"{len(after)} descriptors open, baseline {baseline}; new: {extra}")
            # and it still works
            with Client.to(t) as c:
                self.assertEqual(c.exchange("GET", "/ok").status, 200)


if __name__ == "__main__":
    unittest.main()
