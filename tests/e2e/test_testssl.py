"""testssl.sh (Debian's package) against a trident TLS listener with an ECDSA and an RSA
certificate, default TLS settings: no protocol below TLS 1.2, no cipher without AEAD or forward
secrecy, and no vulnerability it knows flagged. The scan is real and takes about 20 s."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import E2ETestCase, T, cluster, free_port, make_config

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")


def make_cert(d, kind):
    key, cert = os.path.join(d, f"{kind}.key"), os.path.join(d, f"{kind}.pem")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ecdsa" else \
        ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    return {"cert": cert, "key": key}


@unittest.skipUnless(TESTSSL, "testssl.sh is not installed (scripts/install-deps test)")
class TestSSL(E2ETestCase):

    def test_default_tls_settings_pass_testssl(self):
        d = tempfile.mkdtemp(prefix="trident-testssl-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        up = self.upstream(0)
        cfg = make_config([cluster("ntt", [up])])
        host = self.net.listener_ip()
        cfg["listeners"] = [{"address": f"{host}:{free_port(host)}",
                             "tls": {"certificates": [make_cert(d, "ecdsa"),
                                                      make_cert(d, "rsa")]}}]
        out = os.path.join(d, "testssl.json")
        with self.trident(cfg) as t:
            p = subprocess.run([TESTSSL, "--quiet", "--color", "0", "--warnings", "off",
                                "--jsonfile", out, "-p", "-s", "-f", "-U",
                                f"{t.host}:{t.port}"],
                               capture_output=True, text=True, timeout=T(300))
        self.assertTrue(os.path.exists(out), p.stdout[-3000:] + p.stderr[-2000:])
        with open(out) as f:
            findings = {e["id"]: e for e in json.load(f)}
        bad = {k: (e["severity"], e["finding"]) for k, e in findings.items()
               if e["severity"] not in ("OK", "INFO")}
        self.assertEqual(bad, {}, "testssl flagged these")
        for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
            self.assertEqual(findings[proto]["finding"], "not offered", proto)
        for proto in ("TLS1_2", "TLS1_3"):
            self.assertTrue(findings[proto]["finding"].startswith("offered"), proto)
        for cat in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                    "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"):
            self.assertEqual(findings[cat]["finding"], "not offered", cat)
        self.assertEqual(findings["PFS"]["finding"], "offered")
        for vuln in ("heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_client_renego",
                     "CRIME_TLS", "POODLE_SSL", "SWEET32", "FREAK", "LOGJAM", "BEAST",
                     "LUCKY13", "RC4"):
            self.assertEqual(findings[vuln]["severity"], "OK", (vuln, findings[vuln]))


if __name__ == "__main__":
    unittest.main()
