"""Telling a dead holder of a node name from a live one: records, rules, lease readings."""

from __future__ import annotations

import json
import os

import pytest

from roger_cluster.cluster import identity
from roger_cluster.cluster.identity import Decision, LeaseWatch, Run, judge
from roger_cluster.cluster.membership import NodeInfo, refresh_interval

BOOT = "7b66abcb-bb39-4221-944a-debdbfdf9c77"
NS = "pid:[4026532174]"


class FakeProcesses:
    """Processes of our namespace as given: pid -> start time."""

    def __init__(self, running: dict[int, int]) -> None:
        self.running = running

    def alive(self, pid: int) -> bool:
        return pid in self.running

    def starttime(self, pid: int) -> int:
        return self.running.get(pid, 0)


def me(**fields: object) -> Run:
    base: dict[str, object] = dict(host="h", pid=1, instance="new", boot_id=BOOT, pid_ns=NS, starttime=500)
    base.update(fields)
    return Run(**base)  # type: ignore[arg-type]


def holder(**fields: object) -> Run:
    return me(instance="old", **fields)


def test_an_old_node_value_reads_with_unknown_identity() -> None:
    old = NodeInfo.decode("n1", b'{"host": "h", "pid": 1, "version": "0.1.0", "started_at": 1.0}')
    assert (old.instance, old.boot_id, old.pid_ns, old.starttime, old.refresh) == ("", "", "", 0, 0.0)
    assert old.run == Run("h", 1)


def test_a_node_value_carries_what_tells_one_run_from_another() -> None:
    info = NodeInfo.here("n1")
    value = json.loads(info.encode())
    assert {"instance", "boot_id", "pid_ns", "starttime", "refresh"} <= set(value)
    assert NodeInfo.decode("n1", info.encode()) == info
    assert len(info.instance) == 32 and info.instance != NodeInfo.here("n1").instance
    assert info.boot_id == identity.boot_id() != ""
    assert info.pid_ns.startswith("pid:[")
    assert info.starttime == identity.process_starttime(os.getpid()) > 0


def test_identity_readers_answer_empty_when_proc_cannot_tell() -> None:
    assert identity.boot_id("/nonexistent/boot_id") == ""
    assert identity.process_starttime(2**22 + 12345) == 0


def test_the_start_time_is_read_after_a_command_name_with_spaces_and_parentheses() -> None:
    rest = " ".join(str(n) for n in range(3, 53))  # fields 3..52: field 22 holds "22"
    assert identity.parse_starttime(f"42 (a b) c)) {rest}") == 22
    assert identity.parse_starttime("42 (short) S 1 2") == 0
    assert identity.parse_starttime("garbage") == 0


def test_the_lease_is_refreshed_every_third_of_its_ttl_but_at_least_every_two_seconds() -> None:
    assert refresh_interval(3) == 1.0
    assert refresh_interval(30) == 2.0


@pytest.mark.parametrize(
    ("holder_run", "running", "decision"),
    [
        # Our own earlier registration (a create whose answer was lost).
        (me(), {}, Decision.TAKE_OVER),
        # Another host name: never.
        (holder(host="other"), {}, Decision.REFUSE),
        # Another pid namespace (a restarted container, or a second one): ask the lease.
        (holder(pid_ns="pid:[4026532999]"), {1: 500}, Decision.WATCH_LEASE),
        # Another boot, or a machine sharing our host name: ask the lease.
        (holder(boot_id="other-boot"), {}, Decision.WATCH_LEASE),
        # A value from before identities were recorded.
        (Run("h", 7), {}, Decision.WATCH_LEASE),
        # Our namespace, our pid, another start time: an earlier process.
        (holder(starttime=400), {}, Decision.TAKE_OVER),
        # Our namespace, our pid, our start time: another Node object in this process.
        (holder(), {}, Decision.REFUSE),
        # Our pid but start times unknown: cannot tell an earlier process from this one.
        (holder(starttime=0), {}, Decision.WATCH_LEASE),
        # Its pid no longer runs.
        (holder(pid=7, starttime=300), {}, Decision.TAKE_OVER),
        # Its pid runs, but started at another time: reused.
        (holder(pid=7, starttime=300), {7: 450}, Decision.TAKE_OVER),
        # Its pid runs since it registered: live.
        (holder(pid=7, starttime=300), {7: 300}, Decision.REFUSE),
        # Its pid runs and start times are unknown: live, to be safe.
        (holder(pid=7, starttime=0), {7: 450}, Decision.REFUSE),
    ],
)
def test_the_holder_of_a_name_is_judged_from_what_this_process_can_see(
    holder_run: Run, running: dict[int, int], decision: Decision
) -> None:
    verdict = judge(holder_run, me(), FakeProcesses(running))
    assert verdict.decision is decision, verdict.reason
    assert verdict.reason


def test_start_times_are_not_compared_when_our_proc_is_not_of_our_namespace() -> None:
    verdict = judge(holder(pid=7, starttime=300), me(starttime=0), FakeProcesses({7: 450}))
    assert verdict.decision is Decision.REFUSE


def readings(watch: LeaseWatch, remaining: list[int], step: float = 0.25) -> tuple[Decision | None, float]:
    """Feed readings `step` seconds apart; the decision and when it came."""
    for i, value in enumerate(remaining):
        verdict = watch.observe(value, 100.0 + i * step)
        if verdict is not None:
            return verdict.decision, i * step
    return None, len(remaining) * step


def test_a_lease_that_goes_up_belongs_to_a_live_holder() -> None:
    assert readings(LeaseWatch(30, 2.0), [29, 29, 28, 28, 30]) == (Decision.REFUSE, 1.0)


def test_a_lease_gone_or_long_unrefreshed_belongs_to_a_dead_holder_at_once() -> None:
    assert readings(LeaseWatch(30, 2.0), [-1]) == (Decision.TAKE_OVER, 0.0)
    # A live holder keeps at least 30 - 2 - slack; 25 means it missed refreshes.
    assert readings(LeaseWatch(30, 2.0), [25]) == (Decision.TAKE_OVER, 0.0)
    # Old values carry no cadence: a third of the TTL, so 18 is still plausible.
    assert readings(LeaseWatch(30, 10.0), [18]) == (None, 0.25)


def test_a_lease_that_does_not_go_up_within_the_refresh_interval_belongs_to_a_dead_holder() -> None:
    decision, after = readings(LeaseWatch(30, 2.0), [29] * 4 + [28] * 4 + [27] * 20)
    assert decision is Decision.TAKE_OVER
    assert after <= 2.0 + identity.LEASE_SLACK
