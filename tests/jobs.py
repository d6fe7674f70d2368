"""Job classes the test nodes are allowed to run (`--jobs tests.jobs`).

Jobs record what they did in etcd-free, broker-free side channels that the
test reads back: a ledger file per test (path in the args), one line per
event, appended with O_APPEND so lines from several nodes never interleave.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from roger_cluster import Job
from roger_cluster.testing.ledger import record


def mark(job: Job, event: str, **fields: Any) -> None:
    """Record `event` for `job` in the ledger named by its args."""
    retry_count = job.context.retry_count if job.has_context else None
    node = os.environ.get("ROGER_NODE_NAME")
    record(job.args["ledger"], event=event, id=job.id, node=node, t=time.time(), retry=retry_count, **fields)


class Record(Job):
    """Records its id and node, after sleeping `sleep` seconds (default 0).

    If stopped while sleeping (cancelled, timed out, shut down), records "stopped".
    """

    async def perform(self, args: Any) -> str:
        mark(self, "start")
        try:
            await asyncio.sleep(float(args.get("sleep", 0)))
        except asyncio.CancelledError:
            mark(self, "stopped")
            raise
        mark(self, "end")
        return f"done {self.id}"


class Flaky(Job):
    """Retryable; fails on its first `failures` attempts, then succeeds."""

    retryable = True

    async def perform(self, args: Any) -> None:
        mark(self, "start")
        if self.context.retry_count < int(args["failures"]):
            raise RuntimeError(f"attempt {self.context.retry_count} fails on purpose")
        mark(self, "end")


class AlwaysFails(Job):
    """Retryable, and always fails."""

    retryable = True

    async def perform(self, args: Any) -> None:
        mark(self, "start")
        raise ValueError("always fails")


class SlowAsync(Record):
    """A Record with a time limit of 1 s."""

    max_execution_time = 1.0


class SlowSync(Job):
    """A sync job with a time limit of 1 s that polls `cancelled` and stops early."""

    max_execution_time = 1.0

    def perform(self, args: Any) -> None:
        mark(self, "start")
        deadline = time.monotonic() + float(args["sleep"])
        while time.monotonic() < deadline:
            if self.cancelled:
                mark(self, "stopped")
                return
            time.sleep(0.02)
        mark(self, "end")


class SyncPolls(Job):
    """A sync job without a time limit that polls `cancelled` for up to `sleep` seconds."""

    def perform(self, args: Any) -> None:
        mark(self, "start")
        deadline = time.monotonic() + float(args["sleep"])
        while time.monotonic() < deadline:
            if self.cancelled:
                mark(self, "stopped")
                return
            time.sleep(0.02)
        mark(self, "end")


class SyncRecord(Job):
    """Like Record, as a plain def running in a thread."""

    def perform(self, args: Any) -> None:
        mark(self, "start")
        time.sleep(float(args.get("sleep", 0)))
        mark(self, "end")


class OtherQueue(Record):
    """A Record job whose class sends it to the `other` queue."""

    queue = "other"


class Fails(Job):
    """Raises after recording that it ran."""

    async def perform(self, args: Any) -> None:
        mark(self, "start")
        raise RuntimeError("this job always fails")


class NotAJob:
    """Not a Job subclass: a message naming it must be buried, never run."""

    def perform(self, args: Any) -> None:  # pragma: no cover - must never run
        raise AssertionError("NotAJob ran")


class Hooks:
    """Callbacks (`--callbacks tests.jobs:hooks`) that record every call in the
    ledger of the job; `after_run` raises afterwards, which must change nothing."""

    def before_run(self, job: Job) -> None:
        mark(job, "before_run")

    async def after_run(self, job: Job, result: Any) -> None:
        mark(job, "after_run", result=result)
        raise RuntimeError("a broken after_run hook")

    def on_error(self, job: Job, error: BaseException) -> None:
        mark(job, "on_error", error=type(error).__name__)

    def on_cancel(self, job: Job) -> None:
        mark(job, "on_cancel")

    def on_buried(self, job: Job, error: BaseException) -> None:
        mark(job, "on_buried", error=type(error).__name__)


hooks = Hooks()


class Unique(Record):
    """A Record with a queue key: at most one queued per `key`."""

    def queue_key(self, args: Any) -> str | None:
        return str(args["key"])


class UniqueFails(Fails):
    """Fails (and is buried) at once; has a queue key like `Unique`."""

    def queue_key(self, args: Any) -> str | None:
        return str(args["key"])


class Serial(Job):
    """Runs one at a time per `key`; records start and end with its fencing token."""

    def execution_key(self, args: Any) -> str | None:
        return str(args["key"])

    async def perform(self, args: Any) -> None:
        token = self.context.fencing_token
        mark(self, "start", token=token, seq=args.get("seq"))
        await asyncio.sleep(float(args.get("sleep", 0)))
        mark(self, "end", token=token, seq=args.get("seq"))


class Crash(Job):
    """Kills its node every time it runs: a poison message."""

    def perform(self, args: Any) -> None:
        mark(self, "start")
        os._exit(3)


# -- adversary tests --


class IgnoresCancel(Job):
    """Has a time limit of 1 s, and swallows every cancellation for `hold` seconds."""

    max_execution_time = 1.0

    async def perform(self, args: Any) -> None:
        mark(self, "start")
        deadline = time.monotonic() + float(args["hold"])
        while time.monotonic() < deadline:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                mark(self, "ignored")
        mark(self, "end")


class SyncIgnoresCancel(Job):
    """IgnoresCancel as a plain def: never looks at `cancelled` for `hold` seconds."""

    max_execution_time = 1.0

    def perform(self, args: Any) -> None:
        mark(self, "start")
        time.sleep(float(args["hold"]))
        mark(self, "end")


_BASE_EXCEPTIONS: dict[str, type[BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "GeneratorExit": GeneratorExit,
}


class RaisesBase(Job):
    """Raises the BaseException subclass named by args["error"] from perform."""

    async def perform(self, args: Any) -> None:
        mark(self, "start")
        raise _BASE_EXCEPTIONS[args["error"]]("raised by the job")


class RaisesBaseLimited(RaisesBase):
    """RaisesBase with a time limit: its perform runs in a task of its own."""

    max_execution_time = 30.0


class SyncRaisesBase(Job):
    """RaisesBase as a plain def, raising in its worker thread."""

    def perform(self, args: Any) -> None:
        mark(self, "start")
        raise _BASE_EXCEPTIONS[args["error"]]("raised by the job")


# -- pipeline tests (A) --


class RaisesTimeout(Job):
    """Retryable (twice, 1 s apart), no time limit; raises TimeoutError itself."""

    retryable = True
    retry_levels = (1, 1)

    async def perform(self, args: Any) -> None:
        mark(self, "start")
        raise TimeoutError("upstream timed out")


class UniqueCrash(Crash):
    """Kills its node every time it runs, like `Crash`; has a queue key like `Unique`."""

    def queue_key(self, args: Any) -> str | None:
        return str(args["key"])


# -- serial fault tests (B) --


class SerialCrash(Job):
    """A serialized job (execution key from args["key"]) that kills its node every time it runs."""

    def execution_key(self, args: Any) -> str | None:
        return str(args["key"])

    def perform(self, args: Any) -> None:
        token = self.context.fencing_token
        mark(self, "start", token=token)
        os._exit(3)


# -- keyed order after a holder stops (issue 12) --


class SerialSlowOnce(Serial):
    """A `Serial` job that sleeps `sleep` seconds on its first run only (the run a test
    interrupts), so the run after it ends at once."""

    async def perform(self, args: Any) -> None:
        first = _first_run(f"{args['ledger']}.ran-{self.id}")
        await super().perform({**args, "sleep": args.get("sleep", 0) if first else 0})


def _first_run(marker: str) -> bool:
    """Whether `marker` did not exist yet (it does now)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class Ticked(Job):
    """Records the tick its schedule fired it for (`scheduled_at`) and the schedule, at its
    start and, after sleeping `sleep` seconds (default 0), at its end."""

    async def perform(self, args: Any) -> None:
        context = self.context
        mark(self, "start", tick=context.scheduled_at, schedule=context.schedule)
        await asyncio.sleep(float(args.get("sleep", 0)))
        mark(self, "end", tick=context.scheduled_at, schedule=context.schedule)


class TickedFailsFirst(Job):
    """Fails on its first run (not retryable: buried); once retried, records like Ticked."""

    async def perform(self, args: Any) -> None:
        if _first_run(f"{args['ledger']}.ran-{self.id}"):
            raise RuntimeError("the first run fails")
        context = self.context
        mark(self, "end", tick=context.scheduled_at, schedule=context.schedule)


class Punctual(Job):
    """Records when it started beside when it was due (`context.scheduled_at`)."""

    async def perform(self, args: Any) -> None:
        record(
            args["ledger"],
            event="start",
            id=self.id,
            t=time.time(),
            due=self.context.scheduled_at,
            retry=self.context.retry_count,
            n=args.get("n"),
        )


class HangsThenFlaky(Job):
    """Retryable: hangs on the node named `hang_on` (to be killed there), then fails its
    first `failures` attempts elsewhere and succeeds (the job history's story)."""

    retryable = True

    async def perform(self, args: Any) -> None:
        mark(self, "start")
        if os.environ.get("ROGER_NODE_NAME") == args["hang_on"]:
            await asyncio.sleep(60)
        if self.context.retry_count < int(args["failures"]):
            raise RuntimeError(f"attempt {self.context.retry_count + 1} fails on purpose")
        mark(self, "end")
