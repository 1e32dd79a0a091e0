"""TLS: termination for clients (versions, ciphers, SNI, ECDSA/RSA, resumption, ALPN, HSTS,
redirect, reload, hostile handshakes) and verified TLS to upstreams. Real clients: Python ssl and
openssl s_client. Every certificate is generated here, at test time, with the openssl CLI."""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (Net, Trident, Upstream, cluster, make_config, free_port, wait_until, T,
                     Client, Reader, split_head, Headers, echo_handler, SocketOwner)

NET = Net(__name__)


def openssl(*args, cwd):
    subprocess.run(("openssl",) + args, cwd=cwd, check=True, capture_output=True)


class Certs:
    """A private CA and the certificates the tests use, in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="trident-tls-")
        d = self.dir
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=trident test CA",
                cwd=d)
        self.leaf("app-ec", "app.test", ["app.test", "*.app.test"], "ec")
        self.leaf("app-rsa", "app.test", ["app.test", "*.app.test"], "rsa")
        self.leaf("other", "other.test", ["other.test"], "ec")
        self.leaf("renewed", "app.test", ["app.test", "*.app.test"], "ec")
        self.leaf("up", "up.test", ["up.test"], "ec")
        self.leaf("client", "trident client", [], "ec")
        self.selfsigned("rogue", "up.test")

    def path(self, name):
        return os.path.join(self.dir, name)

    def leaf(self, name, cn, sans, kind):
        d = self.dir
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" else \
              ["-newkey", "rsa:2048"]
        openssl("req", "-new", *key, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=d)
        ext = f"{name}.ext"
        with open(os.path.join(d, ext), "w") as f:
            if sans:
                f.write("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans) + "\n")
            else:
                f.write("extendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=d)

    def selfsigned(self, name, cn):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={cn}",
                "-addext", f"subjectAltName=DNS:{cn}", cwd=self.dir)

    def ocsp_response(self, name):
        """A signed 'good' OCSP response for certificate `name`, made by openssl's OCSP
        responder from a one-line index; returns the DER file's path."""
        d = self.dir
        serial = subprocess.run(["openssl", "x509", "-in", f"{name}.pem", "-noout", "-serial"],
                                cwd=d, check=True, capture_output=True, text=True).stdout
        serial = serial.strip().split("=", 1)[1]
        subject = subprocess.run(["openssl", "x509", "-in", f"{name}.pem", "-noout", "-subject",
                                  "-nameopt", "compat"], cwd=d, check=True, capture_output=True,
                                 text=True).stdout.strip().split("=", 1)[1].strip()
        with open(os.path.join(d, "index.txt"), "w") as f:
            f.write(f"V\t301231235959Z\t\t{serial}\tunknown\t{subject}\n")
        openssl("ocsp", "-issuer", "ca.pem", "-cert", f"{name}.pem", "-reqout", f"{name}.req",
                cwd=d)
        openssl("ocsp", "-index", "index.txt", "-CA", "ca.pem", "-rsigner", "ca.pem", "-rkey",
                "ca.key", "-reqin", f"{name}.req", "-respout", f"{name}.ocsp", "-ndays", "1",
                cwd=d)
        return self.path(f"{name}.ocsp")

    def pair(self, name):
        return {"cert": self.path(f"{name}.pem"), "key": self.path(f"{name}.key")}

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def fingerprint(der):
    import hashlib
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(path):
    with open(path) as f:
        pem = f.read()
    return fingerprint(ssl.PEM_cert_to_DER_cert(pem))


def client_ctx(version=None, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class TLSClient(SocketOwner):
    """One TLS connection to trident with Python's ssl module."""

    def __init__(self, trident, server_name="app.test", ctx=None, session=None, timeout=None):
        self.ctx = ctx or client_ctx()
        raw = socket.create_connection((trident.host, trident.port), timeout=timeout or T(10))
        self.sock = self.ctx.wrap_socket(raw, server_hostname=server_name, session=session)
        self.reader = Reader(self.sock)

    def request(self, target="/", host="app.test", extra=b""):
        self.sock.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + host.encode() +
                          b"\r\n" + extra + b"\r\n")
        raw = self.reader.read_until(b"\r\n\r\n", 1 << 16)
        line, fields = split_head(raw)
        headers = Headers(fields)
        body = bytearray()
        n = int(headers.get("content-length", "0"))
        if n:
            self.reader.read_exact(n, body.extend)
        return int(line.split()[1]), headers, bytes(body)

    def peer_fingerprint(self):
        return fingerprint(self.sock.getpeercert(binary_form=True))

    def close(self):
        # close_notify first: OpenSSL (client side too) refuses to resume a session whose
        # connection ended without one
        try:
            self.sock.unwrap().close()
        except (OSError, ValueError):
            self.sock.close()


def s_client(trident, *args, stdin=b"", timeout=10):
    p = subprocess.run(["openssl", "s_client", "-connect", f"{trident.host}:{trident.port}",
                        *args], input=stdin, capture_output=True, timeout=T(timeout))
    return p.returncode, p.stdout.decode("latin-1") + p.stderr.decode("latin-1")


def handshake_ok(out):
    return "Cipher is (NONE)" not in out and ("New, TLSv1" in out or "Reused, TLSv1" in out)


class TLSCase(unittest.TestCase):
    certs = None

    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()
        cls.upstream = Upstream(NET.upstream_ip(1), name="plain")

    @classmethod
    def tearDownClass(cls):
        cls.upstream.close()
        cls.certs.cleanup()

    def tls_config(self, **tls):
        conf = {"certificates": [self.certs.pair("app-ec"), self.certs.pair("app-rsa"),
                                 self.certs.pair("other")]}
        conf.update(tls)
        cfg = make_config([cluster("ntt", [self.upstream])])
        host = NET.listener_ip()
        cfg["listeners"] = [{"address": f"{host}:{free_port(host)}", "tls": conf}]
        return cfg

    def count_reason(self, t, reason):
        return sum(1 for e in t.error_lines() if reason in e.get("msg", ""))


class ClientSide(TLSCase):
    def test_tls12_and_tls13_handshakes_succeed(self):
        with Trident(self.tls_config(), NET) as t:
            for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                  (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
                with TLSClient(t, ctx=client_ctx(version)) as c:
                    status, _, _ = c.request("/v")
                    self.assertEqual(status, 200)
                    self.assertEqual(c.sock.version(), name)
                    self.assertIn(c.sock.cipher()[0], (
                        "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256",
                        "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"))
                line = t.wait_for_access(lambda e, n=name: e.get("tls_version") == n)
                self.assertEqual(line["status"], 200)
                self.assertTrue(line["tls_cipher"])

    def test_tls10_and_tls11_refused_with_logged_reason(self):
        with Trident(self.tls_config(), NET) as t:
            for flag in ("-tls1", "-tls1_1"):
                rc, out = s_client(t, flag, "-cipher", "DEFAULT:@SECLEVEL=0", "-servername",
                                   "app.test")
                self.assertFalse(handshake_ok(out), out)
            wait_until(lambda: self.count_reason(t, "tls_protocol") >= 2, T(5),
                       what="two tls_protocol log lines")

    def test_non_aead_ciphers_refused(self):
        with Trident(self.tls_config(), NET) as t:
            for cipher in ("AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"):
                rc, out = s_client(t, "-tls1_2", "-cipher", cipher, "-servername", "app.test")
                self.assertFalse(handshake_ok(out), f"{cipher}: {out}")
            wait_until(lambda: self.count_reason(t, "tls_no_shared_cipher") >= 3, T(5),
                       what="tls_no_shared_cipher log lines")

    def test_sni_selects_certificate_and_default_answers_unknown(self):
        app = file_fingerprint(self.certs.path("app-ec.pem"))
        other = file_fingerprint(self.certs.path("other.pem"))
        with Trident(self.tls_config(), NET) as t:
            for name, want in (("app.test", app), ("www.app.test", app), ("other.test", other),
                               ("unknown.test", app), (None, app)):
                with TLSClient(t, server_name=name) as c:
                    self.assertEqual(c.peer_fingerprint(), want, name)
                    self.assertEqual(c.request()[0], 200)

    def test_strict_sni_refuses_unknown_and_missing_names(self):
        with Trident(self.tls_config(strict_sni=True), NET) as t:
            with TLSClient(t, server_name="other.test") as c:
                self.assertEqual(c.request()[0], 200)
            for name in ("unknown.test", "a.b.app.test", None):
                with self.assertRaises(ssl.SSLError, msg=name):
                    TLSClient(t, server_name=name)
            wait_until(lambda: self.count_reason(t, "tls_unknown_sni") >= 3, T(5),
                       what="tls_unknown_sni log lines")

    def test_ecdsa_or_rsa_chosen_by_client_capabilities(self):
        with Trident(self.tls_config(), NET) as t:
            rc, out = s_client(t, "-tls1_2", "-sigalgs", "RSA+SHA256:RSA-PSS+SHA256",
                               "-servername", "app.test")
            self.assertIn("Server public key is 2048 bit", out)
            rc, out = s_client(t, "-tls1_2", "-servername", "app.test")
            self.assertIn("Server public key is 256 bit", out)
            rc, out = s_client(t, "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256",
                               "-servername", "app.test")
            self.assertIn("Server public key is 2048 bit", out)

    def resumes(self, t, version):
        ctx = client_ctx(version)
        with TLSClient(t, ctx=ctx) as c:
            self.assertEqual(c.request()[0], 200)  # TLS 1.3 tickets arrive after the handshake
            session = c.sock.session
            self.assertFalse(c.sock.session_reused)
        with TLSClient(t, ctx=ctx, session=session) as c:
            self.assertEqual(c.request()[0], 200)
            return c.sock.session_reused

    def test_resumption_with_tickets(self):
        with Trident(self.tls_config(session_cache=0), NET) as t:
            self.assertTrue(self.resumes(t, ssl.TLSVersion.TLSv1_2))
            self.assertTrue(self.resumes(t, ssl.TLSVersion.TLSv1_3))

    def test_resumption_with_session_cache(self):
        with Trident(self.tls_config(session_tickets=False), NET) as t:
            self.assertTrue(self.resumes(t, ssl.TLSVersion.TLSv1_2))
            self.assertTrue(self.resumes(t, ssl.TLSVersion.TLSv1_3))

    def test_no_resumption_when_both_are_off(self):
        with Trident(self.tls_config(session_tickets=False, session_cache=0), NET) as t:
            self.assertFalse(self.resumes(t, ssl.TLSVersion.TLSv1_2))

    def test_ocsp_response_is_stapled(self):
        cfg = self.tls_config()
        cfg["listeners"][0]["tls"]["certificates"][0]["ocsp"] = \
            self.certs.ocsp_response("app-ec")
        with Trident(cfg, NET) as t:
            rc, out = s_client(t, "-status", "-servername", "app.test")
            self.assertIn("OCSP Response Status: successful", out)
            self.assertIn("Cert Status: good", out)
            # the RSA certificate of the same name has no response: nothing stapled for it
            rc, out = s_client(t, "-status", "-tls1_2", "-sigalgs", "RSA+SHA256",
                               "-servername", "app.test")
            self.assertIn("OCSP response: no response sent", out)

    def test_alpn_selects_http11(self):
        with Trident(self.tls_config(), NET) as t:
            with TLSClient(t, ctx=client_ctx(alpn=["h2", "http/1.1"])) as c:
                self.assertEqual(c.sock.selected_alpn_protocol(), "http/1.1")
            with TLSClient(t, ctx=client_ctx(alpn=["h2"])) as c:
                self.assertIsNone(c.sock.selected_alpn_protocol())

    def test_hsts_and_forwarded_proto(self):
        with Trident(self.tls_config(hsts_max_age=31536000, hsts_subdomains=True), NET) as t:
            with TLSClient(t) as c:
                status, headers, _ = c.request("/hsts")
            self.assertEqual(headers.get("strict-transport-security"),
                             "max-age=31536000; includeSubDomains")
            req = [r for r in self.upstream.requests if r.target == "/hsts"][-1]
            self.assertEqual(req.headers.get("x-forwarded-proto"), "https")

    def test_no_hsts_by_default(self):
        with Trident(self.tls_config(), NET) as t:
            with TLSClient(t) as c:
                status, headers, _ = c.request("/nohsts")
            self.assertIsNone(headers.get("strict-transport-security"))

    def test_plain_listener_redirects_to_https_with_308(self):
        cfg = self.tls_config()
        host = NET.listener_ip()
        plain_port = free_port(host)
        https_port = int(cfg["listeners"][0]["address"].rsplit(":", 1)[1])
        cfg["listeners"].insert(0, {"address": f"{host}:{plain_port}",
                                    "https_redirect_port": https_port})
        with Trident(cfg, NET) as t:
            with Client(t.host, plain_port) as c:
                r = c.exchange("GET", "/a/b?c=d", headers=[("Host", "app.test:80")])
                self.assertEqual(r.status, 308)
                self.assertEqual(r.headers.get("location"),
                                 f"https://app.test:{https_port}/a/b?c=d")
                self.assertTrue(r.keep_alive)
                r = c.exchange("GET", "/second", headers=[("Host", "[::1]:80")])
                self.assertEqual(r.headers.get("location"), f"https://[::1]:{https_port}/second")
            self.assertFalse([q for q in self.upstream.requests if q.target == "/a/b?c=d"])

    def test_reload_renewed_certificate_keeps_open_connection(self):
        d = tempfile.mkdtemp(prefix="trident-reload-")
        try:
            shutil.copy(self.certs.path("app-ec.pem"), os.path.join(d, "live.pem"))
            shutil.copy(self.certs.path("app-ec.key"), os.path.join(d, "live.key"))
            cfg = self.tls_config()
            cfg["listeners"][0]["tls"]["certificates"] = [
                {"cert": os.path.join(d, "live.pem"), "key": os.path.join(d, "live.key")}]
            old = file_fingerprint(self.certs.path("app-ec.pem"))
            new = file_fingerprint(self.certs.path("renewed.pem"))
            with Trident(cfg, NET) as t:
                with TLSClient(t) as kept:
                    self.assertEqual(kept.request("/before")[0], 200)
                    self.assertEqual(kept.peer_fingerprint(), old)
                    shutil.copy(self.certs.path("renewed.pem"), os.path.join(d, "live.pem"))
                    shutil.copy(self.certs.path("renewed.key"), os.path.join(d, "live.key"))
                    os.kill(t.pid, signal.SIGHUP)
                    wait_until(lambda: self.count_reason(t, "configuration reloaded") >= 1, T(5),
                               what="reload log line")
                    with TLSClient(t) as fresh:
                        self.assertEqual(fresh.peer_fingerprint(), new)
                        self.assertEqual(fresh.request("/fresh")[0], 200)
                    self.assertEqual(kept.request("/after")[0], 200)  # same connection
                # a bad file keeps the current certificate
                with open(os.path.join(d, "live.pem"), "w") as f:
                    f.write("not a certificate\n")
                os.kill(t.pid, signal.SIGHUP)
                wait_until(lambda: self.count_reason(t, "keeping the current configuration") >= 1,
                           T(5), what="refused reload log line")
                with TLSClient(t) as c:
                    self.assertEqual(c.peer_fingerprint(), new)
                    self.assertEqual(c.request()[0], 200)
        finally:
            shutil.rmtree(d, ignore_errors=True)


class MemoryTLS(SocketOwner):
    """A TLS client over memory BIOs, so that the test decides which records leave in one
    write(2): trident's OpenSSL reads ahead, and records that arrive together must not wait in its
    buffer for a socket that stays quiet."""

    def __init__(self, trident, server_name="app.test"):
        self.sock = socket.create_connection((trident.host, trident.port), timeout=T(10))
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_ctx().wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)
        self.plain = bytearray()

    def _receive(self):
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("trident closed the connection")
        self.incoming.write(data)

    def handshake(self):
        """Up to the client's Finished, which stays unsent (TLS 1.3: the client's last flight)."""
        while True:
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self._receive()

    def send_together(self, *payloads):
        """Each payload its own record(s); everything pending goes out in one write."""
        for p in payloads:
            self.tls.write(p)
        self.sock.sendall(self.outgoing.read())

    def response(self):
        """(status, body) of the next response, by Content-Length."""
        while True:
            end = self.plain.find(b"\r\n\r\n")
            if end >= 0:
                line, fields = split_head(bytes(self.plain[:end + 4]))
                n = int(Headers(fields).get("content-length", "0"))
                if len(self.plain) >= end + 4 + n:
                    body = bytes(self.plain[end + 4:end + 4 + n])
                    del self.plain[:end + 4 + n]
                    return int(line.split()[1]), body
            try:
                self.plain += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._receive()


class RecordsTogether(TLSCase):
    """Records that reach trident in one read: trident's OpenSSL reads what the socket holds at once
    (one read(2) per request instead of two), so these would wait in its buffer if nothing looked
    there. Each test ends with a client that waits and sends nothing more."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.upstream.close()
        cls.upstream = Upstream(NET.upstream_ip(1), handler=echo_handler, name="echo")

    def test_request_sent_with_the_clients_finished(self):
        with Trident(self.tls_config(), NET) as t, MemoryTLS(t) as c:
            c.handshake()
            c.send_together(b"GET /first HTTP/1.1\r\nHost: app.test\r\n\r\n")
            self.assertEqual(c.response(), (200, b"GET /first\n"))

    def test_pipelined_requests_in_one_write(self):
        with Trident(self.tls_config(), NET) as t, MemoryTLS(t) as c:
            c.handshake()
            c.send_together(b"GET /warm HTTP/1.1\r\nHost: app.test\r\n\r\n")
            self.assertEqual(c.response(), (200, b"GET /warm\n"))
            c.send_together(*(f"POST /p{i} HTTP/1.1\r\nHost: app.test\r\n"
                              f"Content-Length: 2\r\n\r\nb{i}".encode() for i in range(3)))
            for i in range(3):
                self.assertEqual(c.response(), (200, f"POST /p{i}\nb{i}".encode()))

    def test_upload_larger_than_the_buffer_arrives_whole(self):
        # 4 KiB buffers: reading stops and resumes many times while records wait in OpenSSL
        cfg = self.tls_config()
        cfg["limits"] = {"buffer_bytes": 4096}
        body = os.urandom(300 << 10)
        with Trident(cfg, NET) as t, TLSClient(t) as c:
            c.sock.sendall(b"POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: " +
                           str(len(body)).encode() + b"\r\n\r\n" + body)
            raw = c.reader.read_until(b"\r\n\r\n", 1 << 16)
            line, fields = split_head(raw)
            got = bytearray()
            c.reader.read_exact(int(Headers(fields).get("content-length")), got.extend)
            self.assertEqual(int(line.split()[1]), 200)
            self.assertEqual(bytes(got), b"POST /up\n" + body)


class HostileHandshakes(TLSCase):
    def test_garbage_plain_http_and_stalls_end_quickly(self):
        with Trident(self.tls_config(handshake_timeout_ms=300), NET) as t:
            for payload in (b"\x00" * 64, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                            b"\x16\x03\x01\x00\x05hello"):
                s = socket.create_connection((t.host, t.port), timeout=T(5))
                s.sendall(payload)
                started = time.monotonic()
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
                s.close()
                # ended by trident, not by our 5 s socket timeout: a bounded handshake
                self.assertLess(time.monotonic() - started, T(3), payload)
            stalled = socket.create_connection((t.host, t.port), timeout=T(5))
            try:
                self.assertEqual(stalled.recv(1), b"")  # closed by trident after 300 ms
            except ConnectionResetError:
                pass
            stalled.close()
            wait_until(lambda: self.count_reason(t, "tls_not_tls") >= 2, T(5),
                       what="tls_not_tls log lines")
            wait_until(lambda: self.count_reason(t, "tls_handshake_timeout") >= 1, T(5),
                       what="tls_handshake_timeout log line")
            # the worker still serves
            with TLSClient(t) as c:
                self.assertEqual(c.request()[0], 200)


class TLSUpstream(Upstream):
    """An Upstream whose connections speak TLS (handshake in the connection's thread)."""

    def __init__(self, host, ctx, **kw):
        self._tls_ready = threading.Event()
        self.sessions_reused = []
        super().__init__(host, **kw)
        self.lsock = ctx.wrap_socket(self.lsock, server_side=True, do_handshake_on_connect=False)
        self._tls_ready.set()

    def _accept_loop(self):
        self._tls_ready.wait()
        super()._accept_loop()

    def _serve(self, conn, peer):
        try:
            conn.sock.do_handshake()
            self.sessions_reused.append(conn.sock.session_reused)
        except (ssl.SSLError, OSError) as e:
            self.errors.append(f"handshake: {e}")
            conn.sock.close()
            with self.cond:
                self.closed_connections += 1
                self.cond.notify_all()
            return
        super()._serve(conn, peer)


class UpstreamSide(TLSCase):
    def server_ctx(self, name="up", require_client=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.path(f"{name}.pem"), self.certs.path(f"{name}.key"))
        if require_client:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.certs.path("ca.pem"))
        return ctx

    def run_one(self, up, tls, tls_name="up.test", keepalive=None):
        c = cluster("aws", [up])
        c["tls"] = tls
        c["servers"][0]["tls_name"] = tls_name
        limits = {"upstream_keepalive": keepalive} if keepalive is not None else None
        cfg = make_config([c], limits=limits)
        return Trident(cfg, NET)

    def test_verified_tls_to_upstream(self):
        with TLSUpstream(NET.upstream_ip(2), self.server_ctx()) as up, \
                self.run_one(up, {"ca": self.certs.path("ca.pem")}) as t:
            with Client.to(t) as c:
                r = c.exchange("GET", "/secure", headers=[("Host", "app.test")])
            self.assertEqual(r.status, 200)
            self.assertEqual(up.requests[-1].target, "/secure")

    def test_unverifiable_certificate_gives_502(self):
        with TLSUpstream(NET.upstream_ip(3), self.server_ctx("rogue")) as up, \
                self.run_one(up, {"ca": self.certs.path("ca.pem")}) as t:
            with Client.to(t) as c:
                r = c.exchange("GET", "/rogue", headers=[("Host", "app.test")])
            self.assertEqual(r.status, 502)
            self.assertEqual(up.requests, [])
            line = t.wait_for_access(lambda e: e.get("path") == "/rogue")
            self.assertEqual(line["reason"], "upstream_tls")

    def test_wrong_name_gives_502(self):
        with TLSUpstream(NET.upstream_ip(4), self.server_ctx()) as up, \
                self.run_one(up, {"ca": self.certs.path("ca.pem")}, tls_name="wrong.test") as t:
            with Client.to(t) as c:
                r = c.exchange("GET", "/wrongname", headers=[("Host", "app.test")])
            self.assertEqual(r.status, 502)
            self.assertEqual(up.requests, [])

    def test_verify_off_accepts_self_signed(self):
        with TLSUpstream(NET.upstream_ip(5), self.server_ctx("rogue")) as up, \
                self.run_one(up, {"verify": False}) as t:
            with Client.to(t) as c:
                self.assertEqual(c.exchange("GET", "/noverify",
                                            headers=[("Host", "app.test")]).status, 200)

    def test_mutual_tls(self):
        ctx = self.server_ctx(require_client=True)
        with TLSUpstream(NET.upstream_ip(6), ctx) as up:
            with self.run_one(up, {"ca": self.certs.path("ca.pem"),
                                   "cert": self.certs.path("client.pem"),
                                   "key": self.certs.path("client.key")}) as t:
                with Client.to(t) as c:
                    self.assertEqual(c.exchange("GET", "/mtls",
                                                headers=[("Host", "app.test")]).status, 200)
            with self.run_one(up, {"ca": self.certs.path("ca.pem")}) as t:
                with Client.to(t) as c:
                    self.assertEqual(c.exchange("GET", "/nocert",
                                                headers=[("Host", "app.test")]).status, 502)

    def test_sessions_resumed_to_upstream(self):
        with TLSUpstream(NET.upstream_ip(7), self.server_ctx()) as up, \
                self.run_one(up, {"ca": self.certs.path("ca.pem")}, keepalive=0) as t:
            for i in range(3):
                with Client.to(t) as c:
                    self.assertEqual(c.exchange("GET", f"/r{i}",
                                                headers=[("Host", "app.test")]).status, 200)
            wait_until(lambda: len(up.sessions_reused) >= 3, T(5), what="three upstream handshakes")
            self.assertEqual(up.sessions_reused[0], False)
            self.assertIn(True, up.sessions_reused[1:])

    def test_check_refuses_missing_ca_and_bad_cert(self):
        from harness import run_check
        cfg = make_config([cluster("aws", ["127.0.0.1:1"])])
        cfg["listeners"] = [{"address": "127.0.0.1:1", "tls": {"certificates": [
            {"cert": self.certs.path("app-ec.pem"), "key": self.certs.path("app-rsa.key")}]}}]
        rc, err = run_check(cfg)
        self.assertEqual(rc, 1)
        self.assertIn("listeners[0].tls.certificates[0].key: does not match the certificate", err)
        cfg["listeners"][0]["tls"]["certificates"][0]["key"] = "/nonexistent/key.pem"
        rc, err = run_check(cfg)
        self.assertEqual(rc, 1)
        self.assertIn("listeners[0].tls.certificates[0].key: cannot read '/nonexistent/key.pem'",
                      err)


if __name__ == "__main__":
    unittest.main()
