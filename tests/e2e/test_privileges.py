"""The process's rights: root must say why (process.user, after which trident binds and then
runs as that user; or process.allow_root), and core dumps, which would hold private and ticket
keys, are off unless process.core_dumps."""
import json
import os
import subprocess
import tempfile
import unittest

from harness import SANITIZE, TRIDENT_BIN, Client, E2ETestCase, cluster, make_config, sanitizer_env

ROOT = os.geteuid() == 0


def proc_ids(pid):
    """(uids, gids, groups) of a running process, from /proc/PID/status."""
    ids = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                ids[k] = v.split()
    return ids["Uid"], ids["Gid"], ids["Groups"]


def core_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4:6]
    raise AssertionError("no core limit line")


class Privileges(E2ETestCase):

    def config(self, **process):
        up = self.upstream(0)
        cfg = make_config([cluster("ntt", [up])])
        cfg["process"] = process
        return cfg

    def check(self, cfg):
        """Run trident on cfg in the foreground (it is expected to refuse to start)."""
        cfg.setdefault("listeners", [{"address": f"{self.net.listener_ip()}:1"}])
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(cfg, f)
        self.addCleanup(os.unlink, f.name)
        return subprocess.run([TRIDENT_BIN, "-c", f.name], capture_output=True, text=True,
                              timeout=30)

    @unittest.skipUnless(ROOT, "needs root")
    def test_root_without_a_reason_is_refused(self):
        p = self.check(self.config())
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("running as root without process.user", p.stderr)

    @unittest.skipUnless(ROOT, "needs root")
    def test_binds_a_privileged_port_then_runs_as_the_user(self):
        cfg = self.config(user="nobody")
        host = self.net.listener_ip()
        cfg["listeners"] = [{"address": f"{host}:443"}]  # below 1024: only root may bind it
        with self.trident(cfg) as t:
            with Client.to(t) as c:
                self.assertEqual(c.exchange("GET", "/x").status, 200)
            uids, gids, groups = proc_ids(t.pid)
            self.assertEqual(uids, ["65534"] * 4)
            self.assertEqual(gids, ["65534"] * 4)
            self.assertEqual(groups, ["65534"])
            self.assertTrue(any("running as user nobody" in e.get("msg", "")
                                for e in t.error_lines()), t.error_log())

    def test_core_dumps_off_by_default(self):
        cfg = self.config(allow_root=ROOT)
        # started with core files allowed: trident itself turns them off
        with self.trident(cfg, wrapper=["prlimit", "--core=unlimited:unlimited", "--"]) as t:
            self.assertEqual(core_limit(t.pid), ["0", "0"])

    def test_core_dumps_allowed_when_asked(self):
        cfg = self.config(allow_root=ROOT, core_dumps=True)
        # ASan sets the core limit to 0 itself unless told not to: what is asserted is trident's
        env = {}
        if SANITIZE:
            env["ASAN_OPTIONS"] = sanitizer_env(os.environ)["ASAN_OPTIONS"] + ":disable_coredump=0"
        with self.trident(cfg, wrapper=["prlimit", "--core=unlimited:unlimited", "--"],
                          env=env) as t:
            self.assertEqual(core_limit(t.pid), ["unlimited", "unlimited"])

    def test_unknown_user_is_a_config_error(self):
        cfg = self.config(user="no-such-user-here")
        p = self.check(cfg)
        self.assertEqual(p.returncode, 1)
        self.assertIn('process.user: no user named "no-such-user-here"', p.stderr)


if __name__ == "__main__":
    unittest.main()
