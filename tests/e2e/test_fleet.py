"""The fleet: trident instances in front of the same three providers (ntt, gmo, aws) sharing one
Redis (proxy/fleet.c, the suspect / fleet_down overlays of health/). Each test runs its own
redis-server and two or three instances ("fleet-a", "fleet-b", "fleet-c"), watches the events
channel with its own subscriber, and reads each instance's /status, /metrics and error log.

Covered:
- HealthNews.test_real_outage_reaches_every_instance: a server that really fails is marked down
  by A's check and, at once, by B on hearing A (suspect, probe, down); A's "down" message and
  B's /status fleet down_reports show the report; the delay from A's down to B's suspect is
  measured (printed to stderr). When the server returns, A's "up" withdraws its report but does
  not bring it up on B: B waits for its own check.
- HealthNews.test_one_broken_link_does_not_take_a_healthy_server_away: A cannot reach gmo-1 (its
  address is a closed port) and reports it down; B suspects it (no new requests through B while
  its own probe, held by the upstream, is out), finds it up and keeps serving to it ("not
  confirmed" in its log), and A's renewals do not make it suspect again.
- Quorum.test_quorum_of_reports_takes_a_server_out_until_withdrawn: two broken instances (A, C)
  take gmo-1 out on B, whose own checks pass (reason "fleet: a quorum ..."), until A's link is
  repaired and its "up" withdraws its report (long before the vote TTL).
- Quorum.test_renewed_votes_hold_then_expire: with vote_ttl_ms 2000 the quorum holds while A and
  C renew their reports, and lifts when they stop (votes expire); B's own checks were up all along.
- Quorum.test_renewed_votes_hold_with_a_short_vote_ttl: the same with vote_ttl_ms 500 (a valid
  value): renewals must keep the quorum steady.
- AdminStates.test_drain_and_maintenance_apply_fleet_wide: drain on A applies on B (no new
  requests there) and is stored in <prefix>admin (a custom prefix); an instance started later
  starts drained; ready on B readies A; a provider's maintenance likewise.
- AdminStates.test_drain_while_redis_is_away_is_written_when_it_returns: a drain on A with Redis
  killed applies on A at once, stays pending, and reaches the hash and B after Redis returns
  (A is frozen with SIGSTOP until B is back, so the order of their reconnects is fixed).
- AdminStates.test_state_missed_while_the_subscriber_reconnects: B's subscriber is away (killed)
  while A drains; once it is back, B must be drained too.
- AdminStates.test_admin_states_survive_a_redis_restart: states set while Redis was up stay in
  force on every instance, at every look, while Redis restarts without its data, and are
  written back to it.
- Tickets.test_session_resumes_on_another_instance: with share_tickets (TLS 1.2 and 1.3) a session
  from A resumes on B; both issue tickets under the key stored in <prefix>tickets, which never
  appears in a log.
- Tickets.test_no_resumption_across_instances_without_sharing: the negative control
  (share_tickets false): the session resumes on A but not on B.
- RedisOutage.test_instances_serve_and_check_alone_then_meet_again: Redis killed: both instances
  keep answering 200 and take a failing server out with their own checks; /status redis says
  reconnecting and the peer goes silent, then is forgotten while each instance still lists and
  counts itself (trident_fleet_instances 1); after Redis returns they see each other again
  (/status peers, trident_fleet_instances 2), never listing the peer without themselves.
- RedisOutage.test_a_frozen_redis_is_noticed_on_every_connection: Redis frozen (SIGSTOP): every
  connection, the subscriber's included, is dropped with a log line and trident_redis_up 0.
"""
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from harness import (E2ETestCase, Reader, T, Trident, closed_port_address, cluster,
                     default_handler, free_port, make_config, wait_until)
from healthlib import health, is_check, spread, transitions, wait_transition
from adminlib import Admin, admin_section, server_status, wait_server, wait_status
from redislib import log_matches, log_ts, redis_section, start_redis, wait_log

PROVIDERS = ("ntt", "gmo", "aws")
NAMES = {"u0": "ntt-1", "u1": "gmo-1", "u2": "aws-1"}  # upstream name -> server id


def suspect_line(server, instance):
    return rf"^server {server}: instance {instance} reports it down; checking it now$"


def not_confirmed_line(server):
    return (rf"^server {server}: another instance's report is not confirmed by this instance's "
            r"check$")


def quorum_line(server):
    return rf"^server {server}: a quorum of instances report it down: out here too$"


def quorum_clear_line(server):
    return rf"^server {server}: fewer than a quorum of instances report it down now$"


QUORUM_REASON = "fleet: a quorum of instances report it down"


def reports(st, server=None):
    """The (server, instance) pairs of /status fleet down_reports, sorted."""
    return sorted((r["server"], r["instance"]) for r in st["fleet"]["down_reports"]
                  if server is None or r["server"] == server)


def peer_ages(st):
    """{instance: seen_ms_ago} of /status fleet peers."""
    return {p["instance"]: p["seen_ms_ago"] for p in st["fleet"]["peers"]}


def admin_hash(redis, prefix="trident:"):
    """The servers' entries of <prefix>admin (fields that name no server, such as a marker
    the implementation may keep there, are left out)."""
    flat = redis.cmd("HGETALL", prefix + "admin") or []
    return {k: v for k, v in zip(flat[0::2], flat[1::2]) if k in NAMES.values()}


def checks_from(up, instance):
    """Health checks an upstream received from one instance (its checks carry Host
    <instance>.test, see FleetCase.config)."""
    return [r for r in list(up.requests)
            if is_check(r) and r.headers.get("host") == f"{instance}.test"]


def failing_checks_for(hosts):
    """An upstream handler: health checks whose Host is in the set `hosts` (which the test may
    change) get 503, everything else the default answer."""
    def handler(ex):
        if is_check(ex.req) and ex.req.headers.get("host") in hosts:
            ex.respond(503, b"not for you", headers=[("X-Upstream", ex.upstream.name)])
        else:
            default_handler(ex)
    return handler


# ---- the events channel, seen from outside -------------------------------------------------------

def read_push(reader):
    """One RESP2 value as a subscriber receives them (arrays, bulk strings, integers)."""
    line = reader.read_until(b"\r\n", 1 << 20)[:-2]
    kind, rest = line[:1], line[1:]
    if kind == b"*":
        return [read_push(reader) for _ in range(int(rest))]
    if kind == b"$":
        buf = bytearray()
        reader.read_exact(int(rest) + 2, buf.extend)
        return bytes(buf[:-2]).decode()
    if kind == b":":
        return int(rest)
    raise AssertionError(f"unexpected RESP line from the subscription: {line!r}")


class EventWatcher:
    """A subscriber of <prefix>events recording every message (decoded JSON) in order."""

    def __init__(self, redis, prefix="trident:"):
        self.sock = socket.create_connection((redis.host, redis.port), timeout=T(5))
        self.reader = Reader(self.sock)
        channel = (prefix + "events").encode()
        self.sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel))
        reply = read_push(self.reader)
        assert reply[:2] == ["subscribe", channel.decode()], reply
        self.messages = []
        self.error = None
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                if not self.reader.buf:
                    ready, _, _ = select.select([self.sock], [], [], 0.05)
                    if not ready:
                        continue
                msg = read_push(self.reader)  # a whole push: it is sent in one piece
            except Exception as e:  # noqa: BLE001 - Redis gone or closed: recorded, then stop
                self.error = f"{type(e).__name__}: {e}"
                return
            if isinstance(msg, list) and msg[0] == "message":
                with self.cond:
                    self.messages.append(json.loads(msg[2]))
                    self.cond.notify_all()

    def _match(self, want):
        return [m for m in self.messages if all(m.get(k) == v for k, v in want.items())]

    def matching(self, **want):
        """The messages so far with every field of want."""
        with self.cond:
            return self._match(want)

    def wait(self, count=1, timeout=None, **want):
        """The count-th message with every field of want (waiting for it)."""
        timeout = T(5) if timeout is None else timeout
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self._match(want)) >= count, timeout)
            found = self._match(want)
        if not ok:
            raise AssertionError(f"{len(found)} messages {want} after {timeout:.1f}s, wanted "
                                 f"{count} (watcher error: {self.error})")
        return found[count - 1]

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


# ---- the fleet -----------------------------------------------------------------------------------

class FleetCase(E2ETestCase):
    """Upstreams u0 (ntt-1), u1 (gmo-1), u2 (aws-1) and a Redis on the module's block; instances
    started with start() are stopped when the test ends (their error logs printed if it failed)."""

    def setUp(self):
        super().setUp()
        self.ups = [self.upstream(i, name=f"u{i}") for i in range(3)]
        self.redis = start_redis(self, self.net.ip(3))

    def config(self, instance, links=None, hc=None, fleet=None, redis=None):
        """Instance `instance` of the fleet. links: {server id: address} this instance uses
        instead of the real one (a broken link); hc: health-section overrides; fleet: the fleet
        section; redis: redis-section overrides. Health checks carry Host <instance>.test so an
        upstream can tell the instances' checks apart."""
        clusters = []
        for p, u in zip(PROVIDERS, self.ups):
            c = cluster(p, [u])
            c["health"] = health(**{"interval_ms": 200, "host": f"{instance}.test", **(hc or {})})
            for s in c["servers"]:
                s["address"] = (links or {}).get(s["id"], s["address"])
            clusters.append(c)
        cfg = make_config(clusters, failover={"hedge": False})
        cfg["instance_id"] = instance
        cfg["admin"] = admin_section(self.net)
        cfg["redis"] = redis_section(self.redis, **(redis or {}))
        cfg["fleet"] = dict(fleet or {})
        return cfg

    def start(self, cfg):
        """Start an instance; returns (Trident, Admin)."""
        t = Trident(cfg, net=self.net)
        t.start()
        self.addCleanup(self._stop_instance, t)
        return t, Admin.of(t)

    def _failed(self):
        """Whether this test (or one of its subtests) has failed so far."""
        result = getattr(getattr(self, "_outcome", None), "result", None)
        return result is not None and any(getattr(test, "test_case", test) is self
                                          for test, _ in result.failures + result.errors)

    def _stop_instance(self, t):
        failed = self._failed()
        if failed:
            sys.stderr.write(f"\n==== instance {t.config['instance_id']} ====")
        t.__exit__(AssertionError if failed else None, None, None)

    def watch_events(self, prefix="trident:"):
        w = EventWatcher(self.redis, prefix)
        self.addCleanup(w.close)
        return w

    def wait_peers(self, adm, *instances):
        """Until adm's instance has heard every named instance within the last second (their
        hellos arrive: the command and subscriber connections on both sides work)."""
        return wait_status(adm, lambda st: all(peer_ages(st).get(i, 1e9) < 1000
                                               for i in instances),
                           T(5), what=f"peers {instances} heard recently")

    def assertSpreadAvoids(self, t, server, n=6):
        s = spread(t, n)
        self.assertNotIn(server, [NAMES[u] for u in s], f"requests went to {server}: {s}")
        return s

    def assertSpreadReaches(self, t, server, n=6):
        s = spread(t, n)
        self.assertIn(server, [NAMES[u] for u in s], f"no request went to {server}: {s}")
        return s


# ---- health news ---------------------------------------------------------------------------------

class HealthNews(FleetCase):

    def test_real_outage_reaches_every_instance(self):
        gmo = self.ups[1]
        ta, aa = self.start(self.config("fleet-a"))
        # B's own checks are slow: what B learns in the next second comes from A
        tb, ab = self.start(self.config("fleet-b", hc={"interval_ms": 10000}))
        for adm in (aa, ab):
            wait_server(adm, "gmo-1", health="up", usable=True)
        self.wait_peers(ab, "fleet-a")
        events = self.watch_events()
        self.assertEqual(events.wait(type="hello", instance="fleet-b"),
                         {"v": 1, "instance": "fleet-b", "type": "hello"})

        gmo.close()
        a_down = wait_log(ta, r"^server gmo-1 \(cluster gmo, provider gmo\) is down: ")
        _, _, a_reason, was, _ = transitions(ta, "gmo-1")[-1]
        # A's own check: refused, or reset / cut short for a check the closing server held
        self.assertTrue(was == "up" and a_reason.startswith(("L4 ", "L7 ")), a_reason)
        msg = events.wait(type="down", instance="fleet-a", server="gmo-1")
        self.assertEqual(msg, {"v": 1, "instance": "fleet-a", "type": "down", "server": "gmo-1",
                               "reason": a_reason})
        b_suspect = wait_log(tb, suspect_line("gmo-1", "fleet-a"), level="warn")
        tr = wait_transition(tb, "gmo-1", "down")  # B's probe, not its regular check (10 s)
        self.assertTrue(tr[3] == "up" and tr[2].startswith(("L4 ", "L7 ")), tr)
        delay = log_ts(b_suspect) - log_ts(a_down)
        sys.stderr.write(f"\n[fleet] A's down -> B's suspect: {delay * 1000:.0f} ms\n")
        self.assertGreaterEqual(delay, 0)
        self.assertLess(delay, T(1.0))
        st = wait_status(ab, lambda st: reports(st, "gmo-1") == [("gmo-1", "fleet-a")],
                         what="A's report in B's /status")
        self.assertEqual((server_status(st, "gmo-1")["health"],
                          server_status(st, "gmo-1")["usable"]), ("down", False))
        self.assertSpreadAvoids(tb, "gmo-1")

        # back, but B's own checks still fail: A's "up" withdraws A's report, B stays down
        failing = {"fleet-b.test"}
        gmo2 = self.upstream(1, name="u1", port=gmo.port, handler=failing_checks_for(failing))
        wait_transition(ta, "gmo-1", "up", count=2)
        self.assertEqual(events.wait(type="up", instance="fleet-a", server="gmo-1")["reason"],
                         "ok")
        wait_status(ab, lambda st: reports(st, "gmo-1") == [], what="A's report withdrawn on B")
        wait_until(lambda: len(checks_from(gmo2, "fleet-b")) >= 3, T(5),
                   what="three more checks from B")
        s = server_status(ab.status(), "gmo-1")
        self.assertEqual((s["health"], s["usable"]), ("down", False), s)
        self.assertEqual([x[1] for x in transitions(tb, "gmo-1")], ["up", "down"])
        failing.clear()
        tr = wait_transition(tb, "gmo-1", "up", count=2)
        self.assertEqual(tr[2:4], ("ok (status 200)", "down"), tr)
        wait_server(ab, "gmo-1", usable=True)
        self.assertSpreadReaches(tb, "gmo-1")

    def test_one_broken_link_does_not_take_a_healthy_server_away(self):
        gmo = self.ups[1]
        held, release = [], threading.Event()
        self.addCleanup(release.set)

        def hold_b_checks(ex):  # B's probe waits until the test has seen the suspect state
            if is_check(ex.req) and ex.req.headers.get("host") == "fleet-b.test" and \
                    not release.is_set():
                held.append(ex.req)
                release.wait(T(10))
            default_handler(ex)

        fleet = {"vote_ttl_ms": 1500}
        tb, ab = self.start(self.config("fleet-b", hc={"interval_ms": 10000, "timeout_ms": 5000},
                                        fleet=fleet))
        wait_server(ab, "gmo-1", health="up", usable=True)
        gmo.handler = hold_b_checks
        events = self.watch_events()
        ta, aa = self.start(self.config("fleet-a", links={"gmo-1": closed_port_address(gmo.host)},
                                        fleet=fleet))
        wait_server(aa, "gmo-1", health="down")
        events.wait(type="down", instance="fleet-a", server="gmo-1")
        suspect = wait_log(tb, suspect_line("gmo-1", "fleet-a"), level="warn")
        # suspect: no new requests through B while its own probe is out
        wait_until(lambda: held, T(5), what="B's probe of gmo-1")
        s = server_status(ab.status(), "gmo-1")
        self.assertEqual((s["health"], s["usable"], s["reason"]),
                         ("up", False, "fleet: another instance reports it down"), s)
        self.assertSpreadAvoids(tb, "gmo-1")
        release.set()
        cleared = wait_log(tb, not_confirmed_line("gmo-1"), level="info")
        self.assertGreaterEqual(log_ts(cleared), log_ts(suspect))
        st = wait_status(ab, lambda st: server_status(st, "gmo-1")["usable"],
                         what="gmo-1 usable on B again")
        s = server_status(st, "gmo-1")
        self.assertEqual((s["health"], s["reason"]), ("up", "ok"), s)
        self.assertEqual(reports(st), [("gmo-1", "fleet-a")])  # counted, short of a quorum
        self.assertEqual(transitions(tb, "gmo-1"), [("gmo-1", "up", "ok (status 200)", "unknown",
                                                     "info")])
        # requests through B keep reaching gmo-1; A, which cannot reach it, sends none there
        before = len([r for r in list(gmo.requests) if not is_check(r)])
        self.assertSpreadReaches(tb, "gmo-1")
        self.assertSpreadAvoids(ta, "gmo-1")
        self.assertGreater(len([r for r in list(gmo.requests) if not is_check(r)]), before)
        # A renews its report (once a second); B, having checked, is not made suspect again
        n = len(events.matching(type="down", instance="fleet-a", server="gmo-1",
                                reason="still down"))
        events.wait(count=n + 2, type="down", instance="fleet-a", server="gmo-1",
                    reason="still down")
        self.assertEqual(len(log_matches(tb, suspect_line("gmo-1", "fleet-a"))), 1)
        s = server_status(ab.status(), "gmo-1")
        self.assertEqual((s["health"], s["usable"]), ("up", True), s)
        self.assertSpreadReaches(tb, "gmo-1")


# ---- quorum --------------------------------------------------------------------------------------

class Quorum(FleetCase):

    def broken_pair(self, fleet):
        """B (healthy), then A and C whose link to gmo-1 is broken, all with fleet section
        `fleet`; waits until B takes gmo-1 out by quorum. Returns (instances, admins, A's
        broken address)."""
        gmo = self.ups[1]
        dead = closed_port_address(gmo.host)
        tb, ab = self.start(self.config("fleet-b", fleet=fleet))
        wait_server(ab, "gmo-1", health="up", usable=True)
        ta, aa = self.start(self.config("fleet-a", links={"gmo-1": dead}, fleet=fleet))
        wait_log(tb, not_confirmed_line("gmo-1"))
        tc, ac = self.start(self.config("fleet-c", links={"gmo-1": closed_port_address(gmo.host)},
                                        fleet=fleet))
        wait_log(tb, quorum_line("gmo-1"), level="warn")
        st = wait_status(ab, lambda st: reports(st) == [("gmo-1", "fleet-a"), ("gmo-1", "fleet-c")]
                         and not server_status(st, "gmo-1")["usable"], what="quorum on B")
        s = server_status(st, "gmo-1")
        # out by the fleet, although B's own checks say up
        self.assertEqual((s["health"], s["reason"]), ("up", QUORUM_REASON), s)
        self.assertEqual(st["journal"][0]["server"], "gmo-1")
        self.assertEqual(st["journal"][0]["reason"], QUORUM_REASON)
        self.assertEqual([x[1] for x in transitions(tb, "gmo-1")], ["up"])
        self.assertSpreadAvoids(tb, "gmo-1")
        return (ta, tb, tc), (aa, ab, ac), dead

    def test_quorum_of_reports_takes_a_server_out_until_withdrawn(self):
        gmo = self.ups[1]
        (ta, tb, tc), (aa, ab, ac), dead = self.broken_pair({"quorum": 2, "vote_ttl_ms": 30000})
        b_checks = len(checks_from(gmo, "fleet-b"))
        wait_until(lambda: len(checks_from(gmo, "fleet-b")) >= b_checks + 2, T(5),
                   what="B's own checks going on while the quorum holds")
        self.assertSpreadAvoids(tb, "gmo-1")
        # A's link is repaired: its check sees gmo-1 up, its "up" withdraws its report, and B
        # restores gmo-1 at once (the vote TTL, 30 s, plays no part)
        repaired = self.upstream(1, name="u1", port=int(dead.rpartition(":")[2]))
        t0 = time.monotonic()
        wait_transition(ta, "gmo-1", "up")
        wait_log(tb, quorum_clear_line("gmo-1"), level="info")
        st = wait_server(ab, "gmo-1", usable=True)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertEqual((st["health"], st["reason"]), ("up", "ok"), st)
        self.assertEqual(reports(ab.status()), [("gmo-1", "fleet-c")])
        self.assertSpreadReaches(tb, "gmo-1")
        self.assertSpreadReaches(ta, "gmo-1")  # A's traffic goes to its repaired link
        self.assertTrue([r for r in list(repaired.requests) if not is_check(r)])

    def renewed_votes_hold_then_expire(self, ttl_ms):
        events = self.watch_events()
        (ta, tb, tc), (aa, ab, ac), _ = self.broken_pair({"quorum": 2, "vote_ttl_ms": ttl_ms})
        # while A and C keep seeing gmo-1 down they renew their reports: B keeps it out, with
        # no gap, for three renewals of each (more than the TTL)
        def renewals(inst):
            return len(events.matching(type="down", instance=inst, server="gmo-1",
                                       reason="still down"))

        want = {inst: renewals(inst) + 3 for inst in ("fleet-a", "fleet-c")}
        deadline = time.monotonic() + T(10)
        polls = []
        while any(renewals(inst) < n for inst, n in want.items()):
            self.assertLess(time.monotonic(), deadline, "A and C did not renew their reports")
            polls.append(server_status(ab.status(), "gmo-1")["usable"])
            time.sleep(0.01)
        self.assertEqual(log_matches(tb, quorum_clear_line("gmo-1")), [],
                         f"the quorum lapsed between renewals (vote_ttl_ms {ttl_ms})")
        self.assertNotIn(True, polls, "gmo-1 was usable on B while the quorum held")
        # A and C stop: their reports are no longer renewed and expire; B's own checks say up
        stopped = time.monotonic()
        for t in (ta, tc):
            self.assertEqual(t.stop(), 0)
        wait_log(tb, quorum_clear_line("gmo-1"), level="info", timeout=T(5) + ttl_ms / 1000)
        st = wait_status(ab, lambda st: reports(st) == [] and
                         server_status(st, "gmo-1")["usable"], what="votes expired on B")
        # a report counts vote_ttl_ms from its last renewal, which came at most ~1 s before
        self.assertGreater(time.monotonic() - stopped, ttl_ms / 1000 - 1.0)
        self.assertEqual(server_status(st, "gmo-1")["health"], "up")
        self.assertEqual([x[1] for x in transitions(tb, "gmo-1")], ["up"])
        self.assertSpreadReaches(tb, "gmo-1")

    def test_renewed_votes_hold_then_expire(self):
        self.renewed_votes_hold_then_expire(2000)

    def test_renewed_votes_hold_with_a_short_vote_ttl(self):
        # fleet.vote_ttl_ms accepts 100..3600000 and fleet.c renews "every vote_ttl_ms/3"
        self.renewed_votes_hold_then_expire(500)


# ---- admin states --------------------------------------------------------------------------------

class AdminStates(FleetCase):

    def test_drain_and_maintenance_apply_fleet_wide(self):
        prefix = "e2e-fleet:"

        def conf(instance):
            return self.config(instance, redis={"prefix": prefix})

        events = self.watch_events(prefix)
        ta, aa = self.start(conf("fleet-a"))
        tb, ab = self.start(conf("fleet-b"))
        self.wait_peers(ab, "fleet-a")
        self.wait_peers(aa, "fleet-b")
        r = aa.post("/servers/gmo-1/drain")
        self.assertEqual(r.json(), {"result": "ok", "state": "draining", "servers": ["gmo-1"]})
        self.assertEqual(events.wait(type="admin"), {"v": 1, "instance": "fleet-a",
                                                     "type": "admin", "server": "gmo-1",
                                                     "state": "draining"})
        wait_server(aa, "gmo-1", admin="draining", usable=False)
        s = wait_server(ab, "gmo-1", admin="draining", usable=False)
        self.assertEqual((s["health"], s["reason"]), ("up", "admin"), s)
        wait_log(tb, r"^fleet: instance fleet-a set server gmo-1 to draining$")
        self.assertEqual(admin_hash(self.redis, prefix), {"gmo-1": "draining"})
        self.assertSpreadAvoids(tb, "gmo-1")
        # an instance started now is drained from its first request on
        tc, ac = self.start(conf("fleet-c"))
        self.assertSpreadAvoids(tc, "gmo-1")
        self.assertEqual(server_status(ac.status(), "gmo-1")["admin"], "draining")
        applied = wait_log(tc, r"^fleet: server gmo-1 is draining in the fleet$")
        started = wait_log(tc, r"^listening on ")
        self.assertLessEqual(log_ts(applied), log_ts(started))
        # ready on B: ready everywhere
        self.assertEqual(ab.post("/servers/gmo-1/ready").status, 200)
        for adm in (aa, ab, ac):
            wait_server(adm, "gmo-1", admin="ready", usable=True)
        self.assertEqual(admin_hash(self.redis, prefix), {})
        self.assertSpreadReaches(ta, "gmo-1")
        # a provider's maintenance, set on C
        r = ac.post("/providers/aws/maintenance")
        self.assertEqual(r.json(), {"result": "ok", "state": "maintenance", "servers": ["aws-1"]})
        for adm in (aa, ab, ac):
            wait_server(adm, "aws-1", admin="maintenance", usable=False)
        self.assertEqual(admin_hash(self.redis, prefix), {"aws-1": "maintenance"})
        self.assertEqual(self.redis.keys("trident:*"), [], "a key outside the prefix")
        self.assertSpreadAvoids(ta, "aws-1")
        self.assertEqual(aa.post("/providers/aws/ready").status, 200)
        for adm in (aa, ab, ac):
            wait_server(adm, "aws-1", admin="ready", usable=True)
        self.assertEqual(admin_hash(self.redis, prefix), {})

    def wait_redis_state(self, adm, state):
        return wait_status(adm, lambda st: st["redis"]["state"] == state, T(5),
                           what=f"redis {state}")

    def freeze(self, t):
        """SIGSTOP an instance (its timers stand still) until thaw() or the end of the test."""
        os.kill(t.pid, signal.SIGSTOP)
        self.addCleanup(self.thaw, t)

    def thaw(self, t):
        if t.alive():
            os.kill(t.pid, signal.SIGCONT)

    def sub_connects(self, adm):
        c = {c["name"]: c for c in adm.status()["redis"]["connections"]}["fleet-sub"]
        return c["connects"] if c["state"] == "connected" else None

    def test_drain_while_redis_is_away_is_written_when_it_returns(self):
        ta, aa = self.start(self.config("fleet-a"))
        tb, ab = self.start(self.config("fleet-b"))
        self.wait_peers(ab, "fleet-a")
        self.redis.kill()
        for adm in (aa, ab):
            self.wait_redis_state(adm, "reconnecting")
        self.assertEqual(aa.post("/servers/gmo-1/drain").status, 200)
        wait_server(aa, "gmo-1", admin="draining", usable=False)  # here at once
        self.assertSpreadAvoids(ta, "gmo-1")
        self.assertEqual(server_status(ab.status(), "gmo-1")["admin"], "ready")
        # B reconnects first (A is frozen meanwhile), so that what B learns comes from A's
        # pending write; the other order is test_state_missed_while_the_subscriber_reconnects
        self.freeze(ta)
        self.redis.start()
        self.wait_redis_state(ab, "connected")
        self.assertEqual(server_status(ab.status(), "gmo-1")["admin"], "ready")
        self.assertEqual(admin_hash(self.redis), {})
        self.thaw(ta)
        self.assertEqual(wait_until(lambda: admin_hash(self.redis), T(5),
                                    what="the pending drain written to Redis"),
                         {"gmo-1": "draining"})
        wait_log(tb, r"^fleet: instance fleet-a set server gmo-1 to draining$")
        wait_server(ab, "gmo-1", admin="draining", usable=False)
        self.assertSpreadAvoids(tb, "gmo-1")
        self.assertEqual(server_status(aa.status(), "gmo-1")["admin"], "draining")

    def test_state_missed_while_the_subscriber_reconnects(self):
        """B's subscriber is away (killed; B reconnects it after 1 to 2 s) while its command
        connection stays: a drain set on A meanwhile must still reach B."""
        ta, aa = self.start(self.config("fleet-a"))
        tb, ab = self.start(self.config("fleet-b", redis={"backoff_min_ms": 2000,
                                                          "backoff_max_ms": 2000}))
        self.wait_peers(ab, "fleet-a")
        before = self.sub_connects(ab)
        self.assertGreaterEqual(self.redis.cmd("CLIENT", "KILL", "TYPE", "pubsub"), 2)
        wait_until(lambda: self.sub_connects(ab) is None, T(5), what="B's subscriber gone")
        self.assertEqual(aa.post("/servers/gmo-1/drain").status, 200)
        self.assertEqual(wait_until(lambda: admin_hash(self.redis), T(5),
                                    what="the drain written to Redis"), {"gmo-1": "draining"})
        wait_until(lambda: (self.sub_connects(ab) or 0) > before, T(5),
                   what="B's subscriber back")
        self.wait_peers(ab, "fleet-a")  # it hears the fleet again
        wait_server(ab, "gmo-1", admin="draining", usable=False)
        self.assertSpreadAvoids(tb, "gmo-1")

    def test_admin_states_survive_a_redis_restart(self):
        """States set while Redis was up, then Redis restarts empty (no persistence, or a
        replica promoted without the last writes): no instance may put a drained server or a
        provider in maintenance back into service."""
        ta, aa = self.start(self.config("fleet-a"))
        tb, ab = self.start(self.config("fleet-b"))
        self.wait_peers(ab, "fleet-a")
        self.assertEqual(aa.post("/servers/gmo-1/drain").status, 200)
        self.assertEqual(ab.post("/providers/aws/maintenance").status, 200)
        want = {"gmo-1": "draining", "aws-1": "maintenance"}
        for adm in (aa, ab):
            wait_server(adm, "gmo-1", admin="draining")
            wait_server(adm, "aws-1", admin="maintenance")
        self.assertEqual(admin_hash(self.redis), want)
        # from the restart until both are back with each other and the hash holds the states
        # again, every look at either instance must show the states in force
        self.redis.restart()
        seen = []

        def converged():
            for adm, name in ((aa, "A"), (ab, "B")):
                st = adm.status()
                got = {sid: server_status(st, sid)["admin"] for sid in want}
                if got != want:
                    seen.append((name, got))
                if st["redis"]["state"] != "connected" or \
                        any(age > 1000 for age in peer_ages(st).values()):
                    return False
            return admin_hash(self.redis) == want

        try:
            wait_until(converged, T(10), what="both instances back and the states in Redis again")
        finally:  # the states lost, if they were, is the finding: report it first
            self.assertFalse(seen, f"admin states lost after Redis restarted empty: {len(seen)} "
                                   f"looks, the first {seen[:2]}; in Redis "
                                   f"{admin_hash(self.redis)}")
        self.assertSpreadAvoids(ta, "gmo-1")
        self.assertSpreadAvoids(tb, "aws-1")


# ---- TLS session tickets -------------------------------------------------------------------------

def openssl(*args, cwd=None, check=True, input=b"", timeout=None):
    return subprocess.run(("openssl",) + args, cwd=cwd, check=check, capture_output=True,
                          input=input, timeout=T(10) if timeout is None else timeout)


def client_ctx(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def tls_get(t, ctx, session=None):
    """One GET over TLS; returns (status line, the session, whether it was resumed). The
    connection ends with close_notify (OpenSSL resumes only sessions that ended cleanly)."""
    raw = socket.create_connection((t.host, t.port), timeout=T(10))
    s = ctx.wrap_socket(raw, server_hostname="app.test", session=session)
    try:
        s.sendall(b"GET /tls HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:  # TLS 1.3 tickets arrive with the response, before the close
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0], s.session, s.session_reused
    finally:
        try:
            s.unwrap().close()
        except (OSError, ValueError):
            s.close()


TICKET_LINE = re.compile(r"TLS session ticket:\s*\n\s*0000 - ((?:[0-9a-f]{2}[ -]){16})")


def ticket_key_name(t, workdir):
    """The key name (first 16 bytes, hex) of a TLS 1.2 ticket instance t issues now, read with
    openssl s_client and sess_id."""
    path = os.path.join(workdir, f"sess-{time.monotonic_ns()}.pem")
    openssl("s_client", "-connect", f"{t.host}:{t.port}", "-tls1_2", "-servername", "app.test",
            "-sess_out", path, check=False)
    text = openssl("sess_id", "-in", path, "-noout", "-text").stdout.decode()
    m = TICKET_LINE.search(text)
    assert m, f"no ticket in the session:\n{text}"
    return re.sub(r"[ -]", "", m.group(1))


class Tickets(FleetCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = tempfile.mkdtemp(prefix="trident-fleet-tls-")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "app.key", "-out", "app.pem", "-days", "2", "-subj", "/CN=app.test",
                "-addext", "subjectAltName=DNS:app.test", cwd=cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)
        super().tearDownClass()

    def tls_config(self, instance, share):
        cfg = self.config(instance, fleet={"share_tickets": share})
        host = self.net.listener_ip()
        cfg["listeners"] = [{"address": f"{host}:{free_port(host)}", "tls": {
            "certificates": [{"cert": os.path.join(self.dir, "app.pem"),
                              "key": os.path.join(self.dir, "app.key")}],
            "session_cache": 0}}]  # resumption by ticket only
        return cfg

    def fleet_key_name(self):
        """The name of the newest key in <prefix>tickets ("created_ms:hex,..."), or None."""
        v = self.redis.cmd("GET", "trident:tickets")
        if not v:
            return None
        created, _, key = v.split(",")[0].partition(":")
        self.assertTrue(created.isdigit() and len(key) == 160, "unexpected <prefix>tickets")
        return key[:32]

    def test_session_resumes_on_another_instance(self):
        events = self.watch_events()
        ta, _ = self.start(self.tls_config("fleet-a", True))
        fleet_key = wait_until(self.fleet_key_name, T(5), what="a ticket key in Redis")
        self.assertEqual(events.wait(type="tickets"), {"v": 1, "instance": "fleet-a",
                                                       "type": "tickets"})
        tb, ab = self.start(self.tls_config("fleet-b", True))
        self.wait_peers(ab, "fleet-a")
        self.assertEqual(events.matching(type="tickets", instance="fleet-b"), [],
                         "B made a new key although the fleet's is fresh")
        for t in (ta, tb):  # readiness: each issues tickets under the fleet's key
            wait_until(lambda t=t: ticket_key_name(t, self.dir) == fleet_key, T(5),
                       what=f"{t.config['instance_id']} issuing tickets under the fleet key")
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=version.name):
                ctx = client_ctx(version)
                status, session, reused = tls_get(ta, ctx)
                self.assertEqual((status, reused), (b"HTTP/1.1 200 OK", False))
                self.assertTrue(session.has_ticket)
                status, _, reused = tls_get(tb, ctx, session)
                self.assertEqual(status, b"HTTP/1.1 200 OK")
                self.assertTrue(reused, "a session from A did not resume on B")
        stored = self.redis.cmd("GET", "trident:tickets")
        for t in (ta, tb):
            for k in stored.split(","):
                self.assertNotIn(k.partition(":")[2][32:], t.error_log(), "a ticket key logged")

    def test_no_resumption_across_instances_without_sharing(self):
        ta, _ = self.start(self.tls_config("fleet-a", False))
        tb, ab = self.start(self.tls_config("fleet-b", False))
        self.wait_peers(ab, "fleet-a")  # Redis is there: only share_tickets differs
        self.assertNotEqual(ticket_key_name(ta, self.dir), ticket_key_name(tb, self.dir))
        self.assertIsNone(self.redis.cmd("GET", "trident:tickets"))
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=version.name):
                ctx = client_ctx(version)
                _, session, _ = tls_get(ta, ctx)
                status, _, reused = tls_get(ta, ctx, session)
                self.assertTrue(reused, "no resumption on A itself: the control proves nothing")
                _, session, _ = tls_get(ta, ctx)
                status, _, reused = tls_get(tb, ctx, session)
                self.assertEqual(status, b"HTTP/1.1 200 OK")
                self.assertFalse(reused, "resumed on B without shared ticket keys")


# ---- Redis away ----------------------------------------------------------------------------------

class RedisOutage(FleetCase):

    def test_instances_serve_and_check_alone_then_meet_again(self):
        ntt = self.ups[0]
        ta, aa = self.start(self.config("fleet-a"))
        tb, ab = self.start(self.config("fleet-b"))
        self.wait_peers(aa, "fleet-a", "fleet-b")
        self.wait_peers(ab, "fleet-a", "fleet-b")
        for adm in (aa, ab):
            self.assertEqual(adm.metrics().get("trident_fleet_instances"), 2)
            self.assertEqual(adm.status()["redis"]["state"], "connected")

        self.redis.kill()
        for adm in (aa, ab):
            st = wait_status(adm, lambda st: st["redis"]["state"] == "reconnecting", T(5),
                             what="redis reconnecting")
            self.assertTrue(all(c["state"] != "connected" for c in st["redis"]["connections"]),
                            st["redis"])
            self.assertEqual(adm.metrics().value("trident_redis_up", connection="fleet"), 0)
        for t in (ta, tb):
            self.assertEqual(sorted(spread(t, 6)), ["u0", "u1", "u2"])
        # each instance goes on with its own checks
        ntt.close()
        for t in (ta, tb):
            tr = wait_transition(t, "ntt-1", "down")
            self.assertTrue(tr[2].startswith(("L4 ", "L7 ")), tr)  # its own check's verdict
            self.assertEqual(log_matches(t, suspect_line("ntt-1", r"\S+")), [])
        for t in (ta, tb):
            self.assertEqual(sorted(spread(t, 4)), ["u1", "u2"])
        self.upstream(0, name="u0", port=ntt.port)
        for t in (ta, tb):
            wait_transition(t, "ntt-1", "up", count=2)
        # the peer is not heard any more, then forgotten (10 s); each instance still counts and
        # lists itself
        for adm, other in ((aa, "fleet-b"), (ab, "fleet-a")):
            wait_status(adm, lambda st, o=other: peer_ages(st).get(o, 1e9) > 1500, T(5),
                        what=f"{other} silent")
        for adm, me, other in ((aa, "fleet-a", "fleet-b"), (ab, "fleet-b", "fleet-a")):
            st = wait_status(adm, lambda st, o=other: o not in peer_ages(st), T(15),
                             what=f"{other} forgotten")
            self.assertEqual([(p["instance"], p.get("self")) for p in st["fleet"]["peers"]],
                             [(me, True)])
            self.assertEqual(adm.metrics().get("trident_fleet_instances"), 1)

        self.redis.start()
        without_self = []

        def back(adm, me):
            st = adm.status()
            if me not in peer_ages(st):
                without_self.append(st["fleet"]["peers"])
            return st["redis"]["state"] == "connected" and \
                all(peer_ages(st).get(i, 1e9) < 1000 for i in ("fleet-a", "fleet-b"))

        for adm, me in ((aa, "fleet-a"), (ab, "fleet-b")):
            wait_until(lambda: back(adm, me), T(5), interval=0.01,
                       what="redis connected again and the peer heard")
            wait_until(lambda adm=adm: adm.metrics().get("trident_fleet_instances") == 2, T(5),
                       what="trident_fleet_instances 2")
            self.assertEqual(sorted(peer_ages(adm.status())), ["fleet-a", "fleet-b"])
        self.assertEqual(without_self, [], "an instance listed its peers without itself")
        for t in (ta, tb):
            self.assertEqual(sorted(spread(t, 6)), ["u0", "u1", "u2"])


    def test_a_frozen_redis_is_noticed_on_every_connection(self):
        # SIGSTOP: the sockets stay open and nothing is answered. Every connection must find it
        # out and say so, the subscriber too, which may hear nothing for long and so is probed.
        ta, aa = self.start(self.config("fleet-a", redis={"io_timeout_ms": 300}))

        def states(st):
            return {c["name"]: c["state"] for c in st["redis"]["connections"]}

        st = wait_status(aa, lambda st: set(states(st).values()) == {"connected"}, T(5),
                         what="every Redis connection up")
        self.assertIn("fleet-sub", states(st))
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        st = wait_status(aa, lambda st: "connected" not in states(st).values(), T(5),
                         what="every Redis connection found dead, the subscriber's too")
        self.assertEqual(st["redis"]["state"], "reconnecting")
        self.assertEqual(aa.metrics().value("trident_redis_up", connection="fleet-sub"), 0)
        wait_log(ta, r"^redis fleet-sub: connection to \S+ lost \(no reply in time\)",
                 level="warn")
        self.redis.resume()
        wait_status(aa, lambda st: set(states(st).values()) == {"connected"}, T(5),
                    what="every Redis connection back")
        self.wait_peers(aa, "fleet-a")


if __name__ == "__main__":
    import unittest
    unittest.main()
