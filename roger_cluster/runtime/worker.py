"""Runs one delivered job, start to end, without touching AMQP.

The steps read in order (Oban's executor): decode -> resolve the class from
the allowlist -> cancelled already? -> before_run -> perform under the time
limit, stoppable by a cancellation or shutdown -> callbacks -> an Outcome.
The consumer turns the outcome into exactly one settlement of the message.
Nothing here raises past `run`: a bad message or a failing job is an outcome,
so a consumer never crashes and never loops on a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..callbacks import Callbacks
from ..cluster.cancellations import Cancellations, JobRef
from ..codec import JobMessage, decode
from ..errors import DecodeError, JobTimeout, UnknownJob
from ..job import Job, JobContext, JobRegistry
from ..metrics import Metrics
from .retry import next_delay


class Gate(Protocol):
    """What the worker asks about keyed jobs (runtime/serial.py's Coordinator)."""

    async def admit(self, partition: str, message: JobMessage) -> Outcome:
        """Park or wake an execution key; the outcome acks the delivery."""
        ...

    async def release_queue_key(self, partition: str, message: JobMessage) -> None:
        """Free the queue key of a job that left its queue for good."""
        ...

    def serve(self, run_job: Callable[[str, str, bytes, int], Awaitable[Outcome]]) -> None:
        """Learn how to run a job whose execution key is held."""
        ...


log = logging.getLogger(__name__)

# How long an async job gets to unwind after it was cancelled before its
# slot is held as "lingering" instead.
UNWIND_GRACE = 1.0


class Action(enum.Enum):
    """What the consumer does with the delivery."""

    ACK = "ack"  # done, failed for good and logged, or cancelled
    RETRY = "retry"  # publish `message` to the retry queue of `delay`, then ack
    BURY = "bury"  # publish to the buried queue with `headers`, then ack
    REQUEUE = "requeue"  # give it back to RabbitMQ (shutdown): not a retry


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery."""

    action: Action
    reason: str = ""
    headers: dict[str, Any] = field(default_factory=dict)
    message: JobMessage | None = None
    delay: int = 0
    # A job that could not be stopped (a sync job's thread): its slot stays
    # taken until this completes, so concurrency is never exceeded.
    lingering: asyncio.Future[Any] | None = None
    # How the job ended, for metrics: one of metrics.ENDINGS.
    ending: str = "succeeded"


DONE = Outcome(Action.ACK)


class Stop(enum.Enum):
    """Why a running job was asked to stop."""

    CANCEL = "cancelled"
    SHUTDOWN = "shutdown"


@dataclass
class Running:
    """A job being performed on this node."""

    job: Job
    started: float  # time.monotonic()
    stop: asyncio.Future[Stop]  # resolved with why the job must stop
    task: asyncio.Task[Any] | None = None  # an async job runs in its delivery's task


def evidence(job_path: str, error: BaseException, node: str) -> dict[str, Any]:
    """The headers a buried job carries: what failed, where and when."""
    return {
        "x-roger-reason": f"{type(error).__name__}: {error}",
        "x-roger-error-type": type(error).__name__,
        "x-roger-error-message": str(error),
        "x-roger-traceback": "".join(traceback.format_exception(error))[-8000:],
        "x-roger-node": node,
        "x-roger-failed-at": time.time(),
        "x-roger-job": job_path,
    }


class Worker:
    """Runs jobs of allowed classes on one node; sync jobs in `executor`'s threads."""

    def __init__(
        self,
        registry: JobRegistry,
        node: str,
        executor: Executor,
        retry_levels: Sequence[int],
        cancellations: Cancellations,
        callbacks: Callbacks,
    ) -> None:
        self.registry = registry
        self.node = node
        self.retry_levels = tuple(retry_levels)
        self.cancellations = cancellations
        self.callbacks = callbacks
        self._executor = executor
        self.running: dict[JobRef, Running] = {}
        self.coordinator: Gate | None = None
        self.metrics: Metrics | None = None

    def coordinate(self, coordinator: Gate) -> None:
        """Route keyed jobs through `coordinator` (queue keys, execution keys)."""
        self.coordinator = coordinator
        coordinator.serve(self.run_serialized)

    def stop_job(self, ref: JobRef, why: Stop) -> bool:
        """Ask a running job to stop; False if it does not run here."""
        running = self.running.get(ref)
        if running is None or running.stop.done():
            return False
        running.stop.set_result(why)
        if running.task is not None:
            running.task.cancel()  # lands in the job's current await
        return True

    def stop_queue(self, partition: str, queue: str, why: Stop) -> int:
        """Ask the jobs of one partition queue to stop; returns how many were asked."""
        refs = [
            ref
            for ref, running in self.running.items()
            if running.job.context is not None
            and (running.job.context.partition, running.job.context.queue) == (partition, queue)
        ]
        return sum(self.stop_job(ref, why) for ref in refs)

    def stop_all(self, why: Stop) -> int:
        """Ask every running job to stop; returns how many were asked."""
        return sum(self.stop_job(ref, why) for ref in list(self.running))

    async def run(self, partition: str, queue: str, body: bytes) -> Outcome:
        """Run the job in `body` (a delivery of a partition queue); returns what to do
        with its message."""
        return await self._run(partition, queue, body, None)

    async def run_serialized(self, partition: str, queue: str, body: bytes, token: int) -> Outcome:
        """Run a job of an execution key whose lock this node holds (`token` fences it)."""
        return await self._run(partition, queue, body, token)

    async def _run(self, partition: str, queue: str, body: bytes, token: int | None) -> Outcome:
        try:
            message = decode(body)
            if token is None and self.coordinator is not None and message.execution_key is not None:
                return await self.coordinator.admit(partition, message)
            job_class = self.registry.resolve(message.job)
        except (DecodeError, UnknownJob) as e:
            log.error(
                "burying message in %s-%s: %s",
                partition,
                queue,
                e,
                extra={"partition": partition, "queue": queue},
            )
            if self.metrics is not None:
                self.metrics.ended(partition, queue, "buried")
            return Outcome(
                Action.BURY, str(e), {"x-roger-reason": str(e), "x-roger-node": self.node}, ending="buried"
            )
        job = job_class(message.args, job_id=message.id)
        job.context = JobContext(
            partition, message.queue, self.node, message.retry_count, message.enqueued_at, token
        )
        outcome = await self._run_job(partition, message, job)
        if message.queue_key and outcome.action in (Action.ACK, Action.BURY) and self.coordinator:
            await self.coordinator.release_queue_key(partition, message)
        return outcome

    async def _run_job(self, partition: str, message: JobMessage, job: Job) -> Outcome:
        if (partition, job.id) in self.cancellations:
            log.info(
                "job %s (%s) in %s was cancelled before it ran",
                job.id,
                message.job,
                partition,
                extra=_fields(partition, message),
            )
            await self.callbacks.fire("on_cancel", job)
            if self.metrics is not None:
                self.metrics.ended(partition, message.queue, "cancelled")
            return DONE
        if "before_run" in self.callbacks:  # the hot path skips absent hooks without a call
            await self.callbacks.fire("before_run", job)
        if self.metrics is None:
            return await self._perform(partition, message, job)
        started = time.monotonic()
        self.metrics.started(partition, message.queue)
        outcome = await self._perform(partition, message, job)
        seconds = time.monotonic() - started
        if outcome.ending in ("retried", "buried"):
            self.metrics.ended(partition, message.queue, "failed", seconds)
            self.metrics.ended(partition, message.queue, outcome.ending)
        else:
            self.metrics.ended(partition, message.queue, outcome.ending, seconds)
        return outcome

    async def _perform(self, partition: str, message: JobMessage, job: Job) -> Outcome:
        ref = (partition, job.id)
        stop = asyncio.get_running_loop().create_future()
        if not job.is_async():
            self.running[ref] = running = Running(job, time.monotonic(), stop)
            try:
                return await self._perform_sync(partition, message, job, running)
            finally:
                self.running.pop(ref, None)
        # An async job runs right in this task: no task or wait of its own per job.
        self.running[ref] = Running(job, time.monotonic(), stop, asyncio.current_task())
        limit = job.max_execution_time
        deadline = asyncio.timeout(limit) if limit is not None else None
        try:
            async with deadline or contextlib.nullcontext():
                try:
                    result = await job.perform(message.args)
                finally:
                    self.running.pop(ref, None)  # no await between the job's end and this
        except asyncio.CancelledError:
            if not stop.done():
                raise  # not ours to swallow: the node is aborting
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            job.request_stop()
            return await self._stopped(partition, message, job, stop.result(), None)
        except TimeoutError:
            job.request_stop()
            if deadline is not None and deadline.expired():
                e = JobTimeout(f"job {job.id} ran past its max_execution_time of {limit}s")
            return await self._failed(partition, message, job, e)
        except Exception as e:
            return await self._failed(partition, message, job, e)
        if stop.done():  # the job swallowed our cancellation: it was still stopped
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            return await self._stopped(partition, message, job, stop.result(), None)
        return await self._succeeded(partition, message, job, result)

    async def _perform_sync(self, partition: str, message: JobMessage, job: Job, running: Running) -> Outcome:
        work = asyncio.get_running_loop().run_in_executor(self._executor, job.perform, message.args)
        limit = job.max_execution_time
        done, _ = await asyncio.wait({work, running.stop}, timeout=limit, return_when="FIRST_COMPLETED")
        if work in done:
            running.stop.cancel()
            try:
                result = work.result()
            except Exception as e:
                return await self._failed(partition, message, job, e)
            return await self._succeeded(partition, message, job, result)
        # A thread cannot be stopped: tell the job, and keep its slot until it returns.
        job.request_stop()
        work.add_done_callback(_retrieve)
        lingering = None if work.done() else work
        if running.stop.done():
            return await self._stopped(partition, message, job, running.stop.result(), lingering)
        error = JobTimeout(f"job {job.id} ran past its max_execution_time of {limit}s")
        return replace(await self._failed(partition, message, job, error), lingering=lingering)

    async def _stopped(
        self, partition: str, message: JobMessage, job: Job, why: Stop, lingering: asyncio.Future[Any] | None
    ) -> Outcome:
        if why is Stop.SHUTDOWN:
            log.warning(
                "job %s (%s) stopped by shutdown; back to its queue",
                job.id,
                message.job,
                extra=_fields(partition, message),
            )
            return Outcome(Action.REQUEUE, lingering=lingering, ending="requeued")
        log.info(
            "job %s (%s) in %s cancelled while running",
            job.id,
            message.job,
            partition,
            extra=_fields(partition, message),
        )
        await self.callbacks.fire("on_cancel", job)
        return replace(DONE, lingering=lingering, ending="cancelled")

    async def _succeeded(self, partition: str, message: JobMessage, job: Job, result: Any) -> Outcome:
        log.debug("job %s (%s) done in %s", job.id, message.job, partition, extra=_fields(partition, message))
        if "after_run" in self.callbacks:
            await self.callbacks.fire("after_run", job, result)
        return DONE

    async def _failed(self, partition: str, message: JobMessage, job: Job, error: BaseException) -> Outcome:
        await self.callbacks.fire("on_error", job, error)
        levels = job.retry_levels if job.retry_levels is not None else self.retry_levels
        delay = next_delay(levels, message.retry_count) if job.retryable else None
        where = f"job {job.id} ({message.job}) in {partition}-{message.queue}"
        if delay is not None:
            log.warning(
                "%s failed (%s: %s); retry %d in %ds",
                where,
                type(error).__name__,
                error,
                message.retry_count + 1,
                delay,
                extra=_fields(partition, message),
            )
            retry = replace(message, retry_count=message.retry_count + 1)
            return Outcome(Action.RETRY, str(error), message=retry, delay=delay, ending="retried")
        log.error("%s failed for good; burying it", where, exc_info=error, extra=_fields(partition, message))
        await self.callbacks.fire("on_buried", job, error)
        return Outcome(Action.BURY, str(error), evidence(message.job, error, self.node), ending="buried")


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Consume a stopped job's late result or error, so asyncio does not warn about it."""
    if not future.cancelled():
        future.exception()


def _fields(partition: str, message: JobMessage) -> dict[str, str]:
    """What every log record about a job carries (the JSON log format shows them)."""
    return {"job_id": message.id, "job_class": message.job, "partition": partition, "queue": message.queue}
