"""Who holds a node name: one run of a node process, and whether it still runs.

A node name is taken with a create-if-absent bound to the node's lease, so a
crashed node keeps its name until its lease runs out. A node restarted under
the same name (a crash, an OOM kill, a Kubernetes container restart) should
take it back at once, while a second live node with that name is refused:
"one name, one node". Host name and pid cannot tell the two apart in a
container, where every run is PID 1 on the same host name, so each run
records what differs between two runs (a random instance id, the machine's
boot id, its pid namespace and its start time) and `judge` decides from those
what it can; what it cannot see (a process in another pid namespace), the
caller decides from the holder's lease with `LeaseWatch`: a live node
refreshes its lease on a known cadence, a dead one does not.

Everything here is pure or reads only /proc, so the rules are unit-tested.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Protocol

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
# A lease refresh may come this much later than its cadence says and the
# holder still counts as live: etcd reports the remaining TTL in whole
# seconds (up to 1 s lost), plus the refresh's own round trip and loop delays.
LEASE_SLACK = 2.0


def boot_id(path: str = BOOT_ID_PATH) -> str:
    """This machine's boot id (new on every boot, the same in every container); "" if unreadable."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """This process's pid namespace, as `pid:[inode]`; "" if unreadable."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def parse_starttime(stat: str) -> int:
    """The `starttime` field (22nd) of a /proc/<pid>/stat line; 0 if malformed.

    The command name (2nd field) may hold spaces and parentheses, so fields are
    counted from its closing parenthesis (the 3rd field comes after it).
    """
    _, paren, rest = stat.rpartition(")")
    fields = rest.split()
    try:
        return int(fields[22 - 3]) if paren else 0
    except (IndexError, ValueError):
        return 0


def process_starttime(pid: int | str = "self") -> int:
    """When process `pid` started, in clock ticks since boot; 0 if unknown.

    Only meaningful when /proc belongs to our pid namespace: a container that
    did not mount its own /proc sees the host's pids there (see `own_starttime`).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_starttime(f.read())
    except OSError:
        return 0


def proc_is_ours() -> bool:
    """Whether /proc shows our own pid namespace (pids there are the pids we see)."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def own_starttime() -> int:
    """This process's start time, or 0 when /proc is not of our pid namespace."""
    return process_starttime() if proc_is_ours() else 0


@dataclass(frozen=True)
class Run:
    """What identifies one run of a node process (a subset of its NodeInfo)."""

    host: str
    pid: int
    instance: str = ""  # random per Node object; "" in values of older versions
    boot_id: str = ""
    pid_ns: str = ""
    starttime: int = 0  # 0: unknown


class Processes(Protocol):
    """What `judge` may ask about processes of our pid namespace."""

    def alive(self, pid: int) -> bool:
        """Whether a process with this pid exists."""

    def starttime(self, pid: int) -> int:
        """Its start time (as in /proc/<pid>/stat), 0 if unknown."""


class LocalProcesses:
    """The processes of this pid namespace, through signals and /proc."""

    def alive(self, pid: int) -> bool:
        """Whether a process with this pid exists (signal 0)."""
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # it exists, under another user
        return True

    def starttime(self, pid: int) -> int:
        """Its start time from /proc/<pid>/stat, 0 if unknown."""
        return process_starttime(pid)


class Decision(enum.Enum):
    """What to do about the holder of our node name."""

    TAKE_OVER = "take over"  # the holder no longer runs: revoke its lease
    REFUSE = "refuse"  # the holder runs: DuplicateNode
    WATCH_LEASE = "watch its lease"  # cannot see its process: ask its lease


@dataclass(frozen=True)
class Verdict:
    """A decision and why, for the log."""

    decision: Decision
    reason: str


def judge(holder: Run, me: Run, processes: Processes) -> Verdict:
    """Whether the holder of our name still runs, as far as this process can see.

    Its process is visible only on the same machine, in the same boot and the
    same pid namespace; anywhere else on the same host name (a restarted
    container: a new pid namespace) the answer is WATCH_LEASE. Boot ids
    differing is not proof of death: two machines may share a host name, and
    the lease tells a dead holder from a live one there too.
    """
    if holder.instance and holder.instance == me.instance:
        return Verdict(Decision.TAKE_OVER, "it is an earlier registration of this very node")
    if holder.host != me.host:
        return Verdict(Decision.REFUSE, f"it runs on another host ({holder.host or 'unknown'})")
    same_boot = bool(holder.boot_id) and holder.boot_id == me.boot_id
    if not (same_boot and holder.pid_ns and holder.pid_ns == me.pid_ns):
        return Verdict(
            Decision.WATCH_LEASE, "its process is not visible here (another pid namespace or boot)"
        )
    return _judge_local(holder, me, processes)


def _judge_local(holder: Run, me: Run, processes: Processes) -> Verdict:
    """The holder ran in our pid namespace since this boot: look at its process."""
    known = bool(holder.starttime and me.starttime)  # and so /proc is of this namespace
    if holder.pid == me.pid:
        if not known:
            return Verdict(Decision.WATCH_LEASE, f"it had our pid {me.pid} and start times are unknown")
        if holder.starttime == me.starttime:
            return Verdict(Decision.REFUSE, "it is another node of this very process")
        return Verdict(Decision.TAKE_OVER, f"it was an earlier process with our pid {me.pid}")
    if holder.pid <= 0:
        return Verdict(Decision.WATCH_LEASE, "its pid is unknown")
    if not processes.alive(holder.pid):
        return Verdict(Decision.TAKE_OVER, f"its process {holder.pid} no longer runs")
    if known and (now := processes.starttime(holder.pid)) and now != holder.starttime:
        return Verdict(Decision.TAKE_OVER, f"its pid {holder.pid} now belongs to another process")
    return Verdict(Decision.REFUSE, f"its process {holder.pid} runs")


class LeaseWatch:
    """Decides from successive readings of the holder's lease whether it still refreshes it.

    A live holder refreshes every `every` seconds, so its lease's remaining
    TTL never falls below `granted - every` (less LEASE_SLACK) and rises
    again within `every`. Feed `observe` the remaining TTL (etcd's whole
    seconds, -1 once the lease is gone) and the monotonic time of each
    reading, about every quarter second; it answers TAKE_OVER or REFUSE, or
    None while it cannot tell yet (at most `every + LEASE_SLACK` seconds).
    """

    def __init__(self, granted: int, every: float) -> None:
        self.granted = granted
        self.every = every
        self._lowest: int | None = None
        self._since = 0.0

    def observe(self, remaining: int, now: float) -> Verdict | None:
        """Take one reading; a Verdict once the lease has told, else None."""
        if remaining < 0:
            return Verdict(Decision.TAKE_OVER, "its lease is gone")
        if self._lowest is None:
            self._lowest, self._since = remaining, now
        elif remaining > self._lowest:
            return Verdict(Decision.REFUSE, "it refreshed its lease while we watched")
        self._lowest = remaining
        if remaining < self.granted - self.every - LEASE_SLACK:
            return Verdict(
                Decision.TAKE_OVER,
                f"its lease was not refreshed for {self.granted - remaining}s"
                f" (a live node refreshes it every {self.every:g}s)",
            )
        if now - self._since >= self.every + LEASE_SLACK:
            return Verdict(
                Decision.TAKE_OVER, f"its lease was not refreshed within {now - self._since:.1f}s of watching"
            )
        return None
