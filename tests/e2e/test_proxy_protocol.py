"""PROXY protocol (v1 text, v2 binary) on listeners behind a layer-4 balancer: the header names
the client, which then is the client everywhere: X-Forwarded-For, the access log, access rules,
per-address limits. A connection without a valid header is closed before anything else is read;
a TLS handshake follows the header as if nothing came before."""
import socket
import ssl
import struct
import os
import subprocess
import tempfile
import time
import unittest

from harness import Client, E2ETestCase, T, cluster, free_port, make_config

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, sport=40000, dport=443):
    fam, dst = ("TCP6", "2001:db8::1") if ":" in src else ("TCP4", "192.0.2.1")
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, sport=40000, dst="192.0.2.1", dport=443, local=False):
    if local:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body += b"\x04\x00\x01z"  # a TLV (NOOP): skipped
    return V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


GET = b"GET /pp HTTP/1.1\r\nHost: app.test\r\n\r\n"


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class ProxyProtocol(E2ETestCase):

    def start(self, tls=None, **extra):
        up = self.upstream(0)
        cfg = make_config([cluster("ntt", [up])], workers=2)
        cfg.update(extra.pop("top", {}))
        host = self.net.listener_ip()
        lst = {"address": f"{host}:{free_port(host)}", "proxy_protocol": True}
        if extra.get("trusted"):
            lst["trusted_proxies"] = extra.pop("trusted")
        if tls:
            lst["tls"] = tls
        cfg["listeners"] = [lst]
        cfg.setdefault("limits", {}).update(extra.pop("limits", {}))
        t = self.trident(cfg).__enter__()
        self.addCleanup(t.__exit__, None, None, None)
        return t, up

    def send(self, t, data):
        with Client.to(t) as c:
            c.send(data)
            return c.read_response()

    def test_v1_and_v2_name_the_client(self):
        t, up = self.start()
        for i, (name, header, client) in enumerate((
                ("v1", v1("203.0.113.9", 41111), "203.0.113.9:41111"),
                ("v1 IPv6", v1("2001:db8::9", 41112), "[2001:db8::9]:41112"),
                ("v2", v2("198.51.100.77", 41113), "198.51.100.77:41113"))):
            with self.subTest(name):
                r = self.send(t, header + GET.replace(b"/pp", f"/pp{i}".encode()))
                self.assertEqual(r.status, 200)
                xff = up.requests[-1].headers.get("x-forwarded-for")
                self.assertEqual(xff, client.rsplit(":", 1)[0].strip("[]"))
                e = t.wait_for_access(lambda e: e.get("path") == f"/pp{i}")
                self.assertEqual(e["client"], client)

    def test_v2_local_keeps_the_socket_address(self):
        t, up = self.start()
        with Client.to(t) as c:
            c.send(v2(None, local=True) + GET)
            self.assertEqual(c.read_response().status, 200)
            self.assertEqual(up.requests[-1].headers.get("x-forwarded-for"), c.local[0])

    def test_no_or_broken_header_is_closed_unread(self):
        t, up = self.start()
        for name, data in (("plain request", GET), ("garbage", b"HELLO\r\n\r\n" + GET),
                           ("bad v1", b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n" + GET),
                           ("bad v2 version", V2_SIG + bytes([0x31, 0x11, 0, 12]) + b"x" * 12)):
            with self.subTest(name):
                with Client.to(t) as c:
                    c.send(data)
                    self.assertTrue(c.closed_by_peer(T(5)))
                    self.assertEqual(c.bytes_received, 0)
        self.assertEqual(up.requests, [])

    def test_partial_header_does_not_spin_the_worker(self):
        # a header that never completes must cost nothing while it waits (edge-triggered)
        t, _ = self.start()
        c = Client.to(t)
        self.addCleanup(c.close)
        c.send(b"PROXY TCP4 ")
        before = cpu_ticks(t.pid)
        time.sleep(1.0)  # the quantity under test is CPU spent while nothing happens
        self.assertLess(cpu_ticks(t.pid) - before, 20, "the worker spun on a partial header")

    def test_only_trusted_balancers_may_send_headers(self):
        t, up = self.start(trusted=["192.0.2.0/24"])
        with Client.to(t) as c:
            c.send(v1("203.0.113.30") + GET)
            self.assertTrue(c.closed_by_peer(T(5)))
        self.assertEqual(up.requests, [])

    def test_header_split_across_packets(self):
        t, _ = self.start()
        with Client.to(t) as c:
            h = v1("203.0.113.10")
            c.send(h[:9])
            c.send(h[9:])
            c.send(GET)
            self.assertEqual(c.read_response().status, 200)

    def test_per_address_limits_use_the_named_client(self):
        t, _ = self.start(limits={"max_connections_per_ip": 1})
        held = Client.to(t)
        self.addCleanup(held.close)
        held.send(v1("203.0.113.20"))
        held.send(GET)
        self.assertEqual(held.read_response().status, 200)
        with Client.to(t) as c:  # the same named client: over its one connection
            c.send(v1("203.0.113.20") + GET)
            self.assertTrue(c.closed_by_peer(T(5)))
        self.assertEqual(self.send(t, v1("203.0.113.21") + GET).status, 200)

    def test_tls_after_the_header(self):
        d = tempfile.mkdtemp(prefix="trident-pp-")
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=app.test"], check=True, capture_output=True)
        t, up = self.start(tls={"certificates": [{"cert": cert, "key": key}]})
        raw = socket.create_connection((t.host, t.port), timeout=T(10))
        raw.sendall(v2("198.51.100.5", 42000))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw, server_hostname="app.test") as s:
            s.sendall(GET)
            head = s.recv(65536)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:100])
        self.assertEqual(up.requests[-1].headers.get("x-forwarded-for"), "198.51.100.5")


if __name__ == "__main__":
    unittest.main()
