"""The container image, without a Docker engine: scripts/docker-image builds the unmodified
docker/Dockerfile with buildah; the image then runs here (chroot isolation shares the host's
network and process table) with a test config on ports that cannot collide. Checks: a request is
proxied to a local upstream, the image's own HEALTHCHECK command passes against the admin
/healthz, the process runs as the unprivileged user, SIGTERM ends it cleanly (exit 0). Needs root
(buildah): without it the tests are skipped, which fails a strict run (tests/pyunit.py). The
compose files are test_compose.py's. ctest label `docker`."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import (Net, Upstream, Client, echo_handler, free_port, wait_until,  # noqa: E402
                     TRIDENT_BIN)

NET = Net(__name__)
W = os.environ.get("TRIDENT_BUILDAH_DIR", "/var/tmp/trident-buildah")
BUILDAH = ["buildah", "--root", f"{W}/storage", "--runroot", f"{W}/run", "--storage-driver", "vfs"]
IMAGE = "localhost/trident:test"


def buildah(*args, check=True):
    return subprocess.run(BUILDAH + list(args), check=check, capture_output=True, text=True)


class Image(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("buildah needs root")
        if shutil.which("buildah") is None:
            raise unittest.SkipTest("buildah is not installed (scripts/install-deps test)")
        t0 = time.monotonic()
        out = subprocess.run([os.path.join(ROOT, "scripts", "docker-image"), "test"],
                             capture_output=True, text=True, timeout=1200)
        if out.returncode != 0:
            raise AssertionError(f"image build failed:\n{out.stderr[-4000:]}")
        cls.build_line = out.stdout.strip().splitlines()[-1]
        print(f"\n{cls.build_line} (test saw {time.monotonic() - t0:.0f} s)", file=sys.stderr)
        cfg = json.loads(buildah("inspect", "--type", "image", IMAGE).stdout)["Docker"]["config"]
        cls.config = cfg

    def test_image_metadata(self):
        c = self.config
        self.assertEqual(c.get("User"), "trident")
        self.assertEqual(c.get("Entrypoint"), ["/usr/local/bin/trident"])
        self.assertEqual(c.get("StopSignal"), "SIGTERM")
        self.assertEqual(sorted(c.get("ExposedPorts", {})), ["8080/tcp", "8443/tcp", "9901/tcp"])
        self.assertIn("TRIDENT_CONFIG=/etc/trident/trident.json", c.get("Env", []))

    def test_runs_proxies_reports_health_and_stops_cleanly(self):
        work = tempfile.mkdtemp(prefix="trident-docker-")
        container = None
        proc = None
        try:
            with Upstream(NET.upstream_ip(1), handler=echo_handler) as up:
                host = NET.listener_ip()
                port, admin = free_port(host), free_port(host)
                cfg = {
                    "workers": 1,
                    "listeners": [{"address": f"{host}:{port}"}],
                    "admin": {"address": f"{host}:{admin}"},
                    "clusters": [{"name": "local", "provider": "here",
                                  "health": {"type": "tcp", "interval_ms": 200},
                                  "servers": [{"id": "up-1", "address": up.address}]}],
                }
                path = os.path.join(work, "trident.json")
                with open(path, "w") as f:
                    json.dump(cfg, f)
                os.chmod(work, 0o755)
                os.chmod(path, 0o644)
                container = buildah("from", "--pull=never", IMAGE).stdout.strip()
                proc = subprocess.Popen(
                    BUILDAH + ["run", "--isolation", "chroot", "-v",
                               f"{path}:/etc/trident/trident.json:ro",
                               container, "--"] + self.config["Entrypoint"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                wait_until(lambda: _connects(host, port) or proc.poll() is not None, 60,
                           what="trident in the container to listen")
                self.assertIsNone(proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
                with Client(host, port) as c:
                    r = c.exchange("GET", "/through-the-image")
                self.assertEqual(r.status, 200)
                self.assertEqual(up.requests[-1].target, "/through-the-image")
                # the image's HEALTHCHECK command, run inside the container as Docker would
                hc = self.config["Healthcheck"]["Test"]
                self.assertEqual(hc[0], "CMD")
                check = buildah("run", "--isolation", "chroot", "--env",
                                f"TRIDENT_ADMIN_PORT={admin}", container, "--", "bash", "-c",
                                hc[3].replace("127.0.0.1", host), check=False)
                self.assertEqual(check.returncode, 0, check.stderr)
                # the process runs as the image's unprivileged user
                pid = _trident_pid()
                self.assertIsNotNone(pid, "no trident process found")
                uid = _status(pid, "Uid").split()[0]
                self.assertEqual(uid, "10001")
                # Docker sends STOPSIGNAL to the container's main process: do the same (buildah
                # itself would kill its child rather than pass the signal on)
                os.kill(pid, signal.SIGTERM)
                out, err = proc.communicate(timeout=30)
                self.assertEqual(proc.returncode, 0, err[-2000:])
                self.assertIn('"stopped"', err)
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if container:
                buildah("rm", container, check=False)
            shutil.rmtree(work, ignore_errors=True)


def _connects(host, port):
    import socket
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def _trident_pid():
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] == b"/usr/local/bin/trident":
            return int(d)
    return None


if __name__ == "__main__":
    unittest.main()
