"""Memory errors and leaks under valgrind (memcheck) across the main paths: keep-alive, bodies both
ways, trident's own errors, an unreachable server, a WebSocket tunnel, TLS on both sides, SIGHUP
and a graceful stop. The release build runs it; an ASan build does not register it (the two cannot
be combined, and ASan's LeakSanitizer already covers that build)."""
import os
import shutil
import signal
import ssl
import unittest

from harness import (Net, Trident, Upstream, Client, cluster, make_config, closed_port_address,
                     echo_handler, chunked_encode, ws_frame, ws_read_frame, wait_until, SANITIZE,
                     T, free_port, NO_PASSIVE)
from test_tls import Certs, TLSClient, TLSUpstream

NET = Net(__name__)
VALGRIND = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            "--num-callers=30"]


def ws_handler(ex):
    if "websocket" in ex.req.headers.tokens("upgrade"):
        ex.websocket_echo()
    else:
        echo_handler(ex)


class Valgrind(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if SANITIZE:
            raise RuntimeError("valgrind cannot run an ASan build (tests/CMakeLists.txt leaves "
                               "this test out of such a tree)")

    def test_no_memory_errors_or_leaks(self):
        self.assertTrue(shutil.which("valgrind"), "valgrind is required (scripts/install-deps)")
        certs = Certs()
        up_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        up_ctx.load_cert_chain(certs.path("up.pem"), certs.path("up.key"))
        try:
            with Upstream(NET.upstream_ip(1), handler=ws_handler) as plain, \
                    TLSUpstream(NET.upstream_ip(2), up_ctx, handler=echo_handler) as secure:
                self.run_traffic(certs, plain, secure)
        finally:
            certs.cleanup()

    def run_traffic(self, certs, plain, secure):
        # One worker and three clusters of equal weight: smooth round-robin picks them in order
        # (ntt, aws, gmo, ntt, ...), so each request below knows where it goes.
        tls_cluster = cluster("aws", [secure])
        tls_cluster["tls"] = {"ca": certs.path("ca.pem")}
        tls_cluster["servers"][0]["tls_name"] = "up.test"
        dead = cluster("gmo", [closed_port_address(NET.upstream_ip(3))])
        dead["passive"] = NO_PASSIVE  # the refused server stays in rotation: a fixed sequence
        cfg = make_config([cluster("ntt", [plain]), tls_cluster, dead],
                          workers=1, timeouts={"shutdown_drain_ms": 20000},
                          failover={"retries": 0, "hedge": False})
        host = NET.listener_ip()
        tls_port = free_port(host)
        cfg["listeners"] = [{"address": f"{host}:{free_port(host)}"},
                            {"address": f"{host}:{tls_port}",
                             "tls": {"certificates": [certs.pair("app-ec"), certs.pair("app-rsa")]}}]
        with Trident(cfg, NET, ready_timeout=60, wrapper=VALGRIND) as t:
            with Client.to(t, timeout=T(60)) as c:
                self.assertEqual(c.exchange("GET", "/a").status, 200)              # ntt
                self.assertEqual(c.exchange("GET", "/b").status, 200)              # aws, TLS
                self.assertEqual(c.exchange("GET", "/c").status, 502)              # gmo, refused
            with Client.to(t, timeout=T(60)) as c:
                self.assertEqual(c.exchange("POST", "/cl", body=b"x" * 5000).status, 200)  # ntt
                c.send(b"POST /chunked HTTP/1.1\r\nHost: v.test\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" +
                       chunked_encode([b"a" * 100, b"b" * 3000]))
                self.assertEqual(c.read_response("POST").status, 200)             # aws
            with Client.to(t, timeout=T(60)) as c:
                c.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
                self.assertEqual(c.read_response().status, 400)                    # no pick
                self.assertEqual(get_status(t, "/d"), 502)                          # gmo
            with Client.to(t, timeout=T(60)) as c:                                  # ntt
                c.send(b"GET /ws HTTP/1.1\r\nHost: v.test\r\nConnection: Upgrade\r\n"
                       b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                self.assertEqual(c.read_response().status, 101)
                c.send(ws_frame(1, b"hello"))
                self.assertEqual(ws_read_frame(c.reader)[3], b"hello")
                c.send(ws_frame(8, b"\x03\xe8"))
                ws_read_frame(c.reader)
            tls_view = _Endpoint(t.host, tls_port)
            with TLSClient(tls_view, timeout=T(60)) as c:
                self.assertEqual(c.request("/tls")[0], 200)                        # aws
            os.kill(t.pid, signal.SIGHUP)  # a full reload: new routers start the order again
            wait_until(lambda: "configuration reloaded" in t.error_log(), T(60), what="reload")
            self.assertEqual(get_status(t, "/e"), 200)                              # ntt
            with TLSClient(tls_view, timeout=T(60)) as c:
                self.assertEqual(c.request("/tls-after-reload")[0], 200)           # aws
            self.assertEqual(get_status(t, "/f"), 502)                              # gmo
            code = t.stop(timeout=T(120))
        self.assertEqual(code, 0, f"valgrind found errors or leaks:\n{t.error_log()}")


def get_status(t, target):
    with Client.to(t, timeout=T(60)) as c:
        return c.exchange("GET", target).status


class _Endpoint:
    def __init__(self, host, port):
        self.host, self.port = host, port


if __name__ == "__main__":
    unittest.main()
