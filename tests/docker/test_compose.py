"""The compose demo, without a Docker engine or root: docker/compose.yml is a valid Compose file
(docker-compose's own check) and the trident config it mounts passes `trident --check`. ctest
label `docker`."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import TRIDENT_BIN, require_trident_bin  # noqa: E402


class Compose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_trident_bin()

    def test_compose_file_is_valid(self):
        compose = shutil.which("docker-compose")
        self.assertIsNotNone(compose, "docker-compose (Debian package) validates the file")
        out = subprocess.run([compose, "-f", os.path.join(ROOT, "docker", "compose.yml"),
                              "config", "-q"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_compose_trident_config_is_valid(self):
        # the service names resolve only inside the compose network: check a copy with the
        # demo servers' and Redis's names mapped to loopback
        src = os.path.join(ROOT, "docker", "compose", "trident.json")
        with open(src) as f:
            text = f.read()
        for p in ("ntt", "gmo", "aws"):
            for n in (1, 2):
                text = text.replace(f'"{p}-{n}:8080"', f'"127.0.{["ntt", "gmo", "aws"].index(p) + 1}.{n}:8080"')
        self.assertIn('"redis:6379"', text)
        text = text.replace('"redis:6379"', '"127.0.0.1:6379"')
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(text)
        try:
            out = subprocess.run([TRIDENT_BIN, "--check", "-c", f.name], capture_output=True,
                                 text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
