"""`InlineClient`: jobs run in-process at enqueue, for unit tests without servers.

Why it exists: most tests of an application's own code want to know that a
view enqueued the right job and that the job does the right thing, without
starting etcd, RabbitMQ and a node. App code takes its client as a value (an
`Enqueuing`: `Client` in production, `InlineClient` in these tests), so the
code under test does not change between the two.

What it does, per job and at once, inside `enqueue`:

- builds the message as `Client.enqueue` does (`JobMessage.from_job`: the
  queue name is checked, `queue_key`/`execution_key` are called) and passes it
  through the wire format (`codec.encode`/`decode`), so arguments that could
  not be sent fail here too, and the job runs with the arguments as a node
  would see them (a tuple comes back as a list);
- makes a new instance of the class from the message, as a node does, with a
  `JobContext` (node `"inline"`, `retry_count` from 0) and runs `perform`
  (an `async def` on the test's loop, a plain `def` in a thread);
- a `retryable` job that raises is tried again at once, once per retry level
  (its class's `retry_levels`, else the client's), with `retry_count` going up;
  then it is "buried": it lands in `failed`;
- `delay=`/`at=` are checked as the real client checks them and set
  `context.scheduled_at`, but the job runs at once, without waiting.

What it does not emulate: partitions and queues existing (any name that is
allowed works), queue-key uniqueness and execution-key serialization (the keys
are computed, not enforced), the node's callbacks, time limits of sync jobs,
cancelling a job that already ran, ordering between concurrent enqueues, and
anything about the cluster. Test those against real servers
(docs/testing.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..client import when_of
from ..codec import JobMessage, decode, encode
from ..delays import Delay
from ..errors import JobTimeout
from ..job import Job, JobContext
from ..names import check_partition
from ..retry import DEFAULT_LEVELS, check_levels

__all__ = ["InlineClient", "InlineRun"]

INLINE_NODE = "inline"


@dataclass
class InlineRun:
    """One job run by an `InlineClient`: every attempt, and how it ended."""

    job: Job
    """The instance that ran last (made from the message, as a node makes it)."""
    partition: str
    """The partition it was enqueued into."""
    queue: str
    """The queue of the partition."""
    attempts: int = 0
    """How many times `perform` ran: 1, plus one per retry."""
    result: Any = None
    """What `perform` returned, if it succeeded."""
    error: BaseException | None = None
    """The exception of the last attempt, if it failed for good (buried)."""
    errors: list[BaseException] = field(default_factory=list)
    """The exception of every failed attempt, retried ones included."""
    cancelled: bool = False
    """True if the job was cancelled before it was enqueued, and did not run."""

    @property
    def ok(self) -> bool:
        """Whether the job ran and succeeded (at its first attempt or a retry)."""
        return self.error is None and not self.cancelled


class InlineClient:
    """A stand-in for `roger_cluster.Client` in unit tests: `enqueue`,
    `enqueue_many` and `cancel` with the same signatures, running each job at
    once in this process (see the module's docstring for what is emulated).

    With `raise_errors=True` (the default) a job that fails for good makes
    `enqueue` raise its exception, as a test wants; with False the failure is
    only recorded in `failed` and `enqueue` returns the id, as in production.
    """

    def __init__(self, *, retry_levels: Sequence[int] = DEFAULT_LEVELS, raise_errors: bool = True) -> None:
        self.retry_levels = check_levels(retry_levels)
        """Retry levels of retryable classes without their own (only their count matters)."""
        self.raise_errors = raise_errors
        """Whether a job that fails for good makes `enqueue` raise its exception."""
        self.jobs: list[InlineRun] = []
        """Every job enqueued, in order, however it ended."""
        self._cancelled: set[tuple[str, str]] = set()

    @property
    def failed(self) -> list[InlineRun]:
        """The jobs that failed for good (buried): not retryable, or out of retries."""
        return [run for run in self.jobs if run.error is not None]

    @property
    def succeeded(self) -> list[InlineRun]:
        """The jobs that ran and succeeded."""
        return [run for run in self.jobs if run.ok]

    def performed(self, job_class: type[Job]) -> list[Any]:
        """The arguments of each job of `job_class` that succeeded, in order."""
        return [run.job.args for run in self.jobs if run.ok and type(run.job) is job_class]

    async def __aenter__(self) -> InlineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Nothing to close; here so code written for `Client` runs unchanged."""

    async def enqueue(
        self,
        job: Job,
        partition: str,
        queue: str | None = None,
        *,
        delay: Delay | None = None,
        at: datetime.datetime | None = None,
    ) -> str:
        """Run `job` now (after checking what `Client.enqueue` checks); returns its id.

        Raises the job's exception if it failed for good and `raise_errors` is set;
        JobError for arguments that cannot be sent, ConfigError for a bad name or delay.
        """
        check_partition(partition)
        when = when_of(delay, at)
        message = JobMessage.from_job(job, queue)
        if when is not None:
            message = dataclasses.replace(message, scheduled_at=when.due())
        run = await self._run(type(job), decode(encode(message)), partition)
        if run.error is not None and self.raise_errors:
            raise run.error
        return message.id

    async def enqueue_many(
        self,
        jobs: Iterable[Job],
        partition: str,
        queue: str | None = None,
        *,
        delay: Delay | None = None,
        at: datetime.datetime | None = None,
    ) -> list[str]:
        """Run each job now, in order; returns their ids. Every job runs even if one
        fails; with `raise_errors`, the first failure is raised afterwards."""
        ids: list[str] = []
        first: BaseException | None = None
        for job in jobs:
            try:
                ids.append(await self.enqueue(job, partition, queue, delay=delay, at=at))
            except Exception as e:
                first = first or e
                ids.append(job.id)
        if first is not None:
            raise first
        return ids

    async def cancel(self, partition: str, job_id: str) -> None:
        """Cancel a job: one enqueued later with this id does not run (a queued job
        is dropped when dequeued). A job that already ran is not affected."""
        check_partition(partition)
        self._cancelled.add((partition, job_id))

    async def _run(self, job_class: type[Job], message: JobMessage, partition: str) -> InlineRun:
        run = InlineRun(job_class(message.args, job_id=message.id), partition, message.queue)
        self.jobs.append(run)
        if (partition, message.id) in self._cancelled:
            run.cancelled = True
            return run
        levels = job_class.retry_levels if job_class.retry_levels is not None else self.retry_levels
        retries = len(levels) if job_class.retryable else 0
        for retry_count in range(retries + 1):
            run.job = job_class(message.args, job_id=message.id)
            run.job.context = JobContext(
                partition, message.queue, INLINE_NODE, retry_count, message.enqueued_at,
                scheduled_at=message.scheduled_at,
            )  # fmt: skip
            run.attempts += 1
            try:
                run.result = await _perform(run.job)
                return run
            except Exception as e:
                run.errors.append(e)
        run.error = run.errors[-1]
        return run


async def _perform(job: Job) -> Any:
    """`perform` as a node runs it: on the loop under the time limit, or in a thread."""
    if not job.is_async():
        return await asyncio.to_thread(job.perform, job.args)
    limit = job.max_execution_time
    try:
        async with asyncio.timeout(limit) as deadline:
            return await job.perform(job.args)
    except TimeoutError:
        if not deadline.expired():
            raise  # the job's own TimeoutError
        raise JobTimeout(f"{job!r} ran past its max_execution_time of {limit} s") from None
