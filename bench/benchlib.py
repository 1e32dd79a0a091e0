"""What the bench scripts share: naming what was measured, and waiting for a port."""
import datetime
import os
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measured(binary):
    """Which trident a result is for: the binary, its build time, and the commit of this
    checkout (flagged when the sources differ from it). Every results file states it."""
    when = datetime.datetime.fromtimestamp(os.path.getmtime(binary))
    where = os.path.relpath(binary, ROOT) if binary.startswith(ROOT) else binary
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "proxy",
                                "include", "health", "CMakeLists.txt"], check=True,
                               capture_output=True, text=True).stdout.strip()
    except (subprocess.CalledProcessError, OSError):
        return f"{where} of {when:%Y-%m-%d %H:%M}"
    if not binary.startswith(ROOT):
        return f"{where} of {when:%Y-%m-%d %H:%M} (not this checkout's build; checkout at {head})"
    return (f"{where} of {when:%Y-%m-%d %H:%M}, checkout at {head}"
            + (" with uncommitted changes to the sources" if dirty else ""))


def wait_port(host, port, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what}: nothing listens on {host}:{port}")
