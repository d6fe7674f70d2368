"""Runs the job of one execution and says how it ended; settles nothing.

`Worker.run` reads as its steps (Oban's executor): resolve the class from the
allowlist -> cancelled already? -> before_run -> perform under the time limit,
stoppable by a cancellation or a shutdown -> the outcome (a failure becomes a
retry at the job's next level or a burial) -> callbacks -> metrics. It does no
AMQP or etcd I/O: `settle.py` turns the outcome into exactly one settlement
of the delivery. Whatever the job raises, `BaseException`s included, comes
back as an outcome; only the cancellation of the node's own task passes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .. import tracing
from ..callbacks import Callbacks
from ..cluster.cancellations import Cancellations, JobRef
from ..errors import JobTimeout, UnknownJob
from ..evidence import REASON as REASON_KEY
from ..evidence import failure_headers, refusal_headers
from ..job import Job, JobContext, JobRegistry
from ..metrics import Metrics
from ..retry import next_delay
from .execution import DONE, Action, Execution, Outcome
from .recorder import Recorder
from .threads import Call, JobThreads, Raised

log = logging.getLogger(__name__)

# How long an async job gets to unwind after it was cancelled before its
# slot is held as "lingering" instead.
UNWIND_GRACE = 1.0
CANCELLED = Outcome(Action.ACK, ending="cancelled")


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
    call: Call | None = None  # a sync job runs in one of the worker's threads


class Worker:
    """Runs jobs of allowed classes on one node; sync jobs in `threads`."""

    def __init__(
        self,
        registry: JobRegistry,
        node: str,
        threads: JobThreads,
        retry_levels: Sequence[int],
        cancellations: Cancellations,
        callbacks: Callbacks,
    ) -> None:
        self.registry = registry
        self.node = node
        self.retry_levels = tuple(retry_levels)
        self.cancellations = cancellations
        self.callbacks = callbacks
        self._threads = threads
        self.running: dict[JobRef, Running] = {}
        self.metrics: Metrics | None = None
        self.history: Recorder | None = None  # the job history, if the node records it

    def stop_job(self, ref: JobRef, why: Stop) -> bool:
        """Ask a running job to stop; False if it does not run here."""
        running = self.running.get(ref)
        if running is None or running.stop.done():
            return False
        running.stop.set_result(why)
        if running.task is not None:
            running.task.cancel()  # lands in the job's current await
        elif running.call is not None:
            _halt(running.call.future)  # the delivery's task stops waiting; the thread goes on
        return True

    def stop_queue(self, partition: str, queue: str, why: Stop) -> int:
        """Ask the jobs of one partition queue to stop; returns how many were asked."""
        refs = [
            ref
            for ref, running in self.running.items()
            if running.job.has_context
            and (running.job.context.partition, running.job.context.queue) == (partition, queue)
        ]
        return sum(self.stop_job(ref, why) for ref in refs)

    def stop_all(self, why: Stop) -> int:
        """Ask every running job to stop; returns how many were asked."""
        return sum(self.stop_job(ref, why) for ref in list(self.running))

    async def run(self, ex: Execution) -> Outcome:
        """Run the job of `ex` (its message decoded); returns what to do with its delivery."""
        outcome = self._refused(ex) or self._cancelled(ex)
        if outcome is None:
            if self.metrics is not None:
                self.metrics.started(ex.partition, ex.queue)
            if self.history is not None:
                self._record_started(self.history, ex)
            outcome = await (self._perform_traced(ex) if tracing.ENABLED else self._perform(ex))
        await self._callbacks(ex, outcome)
        self.record(ex, outcome)
        return outcome

    # -- steps before perform

    def _refused(self, ex: Execution) -> Outcome | None:
        """Bury a message naming a class this node may not run; else make the job."""
        message = ex.message
        assert message is not None, "the pipeline decodes before the worker runs"
        try:
            job_class = self.registry.resolve(message.job)
        except UnknownJob as e:
            log.error("burying message in %s-%s: %s", ex.partition, ex.queue, e, extra=ex.log_fields())
            return refused(str(e), self.node)
        job = ex.job = job_class(message.args, job_id=message.id)
        job.context = JobContext(
            ex.partition,
            message.queue,
            self.node,
            message.retry_count,
            message.enqueued_at,
            ex.token,
            message.scheduled_at,
            message.schedule,
        )
        return None

    def _cancelled(self, ex: Execution) -> Outcome | None:
        assert ex.job is not None
        if (ex.partition, ex.job.id) not in self.cancellations:
            return None
        log.info("job %s in %s was cancelled before it ran", ex.job.id, ex.partition, extra=ex.log_fields())
        return CANCELLED

    # -- perform

    async def _perform_traced(self, ex: Execution) -> Outcome:
        """`_perform` in a span, child of the trace context the message carries (`tracing.py`)."""
        message = ex.message
        assert message is not None
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": f"{ex.partition}-{ex.queue}",
            "roger.job.class": message.job,
            "roger.job.id": message.id,
            "roger.partition": ex.partition,
            "roger.queue": ex.queue,
            "roger.job.attempt": message.retry_count + 1,
            "roger.node": self.node,
        }
        headers = ex.delivery.amqp_properties.headers
        with tracing.job_span(headers, f"perform {message.job}", attributes) as span:
            outcome = await self._perform(ex)
            tracing.ended(span, outcome.ending, outcome.error)
        return outcome

    async def _perform(self, ex: Execution) -> Outcome:
        job = ex.job
        assert job is not None and ex.message is not None
        if "before_run" in self.callbacks:  # the hot path skips absent hooks without a call
            await self.callbacks.fire("before_run", job)
        ref = (ex.partition, job.id)
        stop: asyncio.Future[Stop] = asyncio.get_running_loop().create_future()
        ex.started = time.monotonic()
        if not job.is_async():
            return await self._perform_in_thread(ex, job, ref, stop)
        if job.max_execution_time is None:
            return await self._perform_inline(ex, job, ref, stop)
        # Its own task, so a job that ignores cancellation cannot hold its delivery.
        task = asyncio.ensure_future(_contained(job.perform(ex.message.args)))
        self.running[ref] = running = Running(job, ex.started, stop, task)
        try:
            return await self._perform_apart(ex, job, task, running)
        finally:
            self.running.pop(ref, None)

    async def _perform_inline(
        self, ex: Execution, job: Job, ref: JobRef, stop: asyncio.Future[Stop]
    ) -> Outcome:
        """An async job without a time limit runs right in this task: no task or wait of its
        own per job. A cancellation lands in its current await."""
        assert ex.message is not None
        self.running[ref] = Running(job, ex.started, stop, asyncio.current_task())
        try:
            try:
                result = await job.perform(ex.message.args)
            finally:
                self.running.pop(ref, None)  # no await between the job's end and this
        except asyncio.CancelledError:
            if not stop.done():
                raise  # not ours to swallow: the node is aborting
            _uncancel()
            return self._stopped(ex, stop.result(), None)
        except BaseException as e:  # KeyboardInterrupt, SystemExit, GeneratorExit: still the job's
            return self._failed(ex, e)
        if stop.done():  # the job swallowed our cancellation: it was still stopped
            _uncancel()
            return self._stopped(ex, stop.result(), None)
        return Outcome(Action.ACK, result=result) if "after_run" in self.callbacks else DONE

    async def _perform_in_thread(
        self, ex: Execution, job: Job, ref: JobRef, stop: asyncio.Future[Stop]
    ) -> Outcome:
        """A sync job runs in one of the worker's threads; this task awaits the one future
        the thread completes. A stop or the time limit completes that future first (`_halt`):
        the delivery is settled at once, and the thread keeps the slot until it returns."""
        assert ex.message is not None
        call = self._threads.submit(job.perform, ex.message.args)
        self.running[ref] = Running(job, ex.started, stop, None, call)
        limit = job.max_execution_time
        timer = None if limit is None else asyncio.get_running_loop().call_later(limit, _halt, call.future)
        try:
            result = await call.future
        except Raised as e:
            return self._failed(ex, e.error)
        except asyncio.CancelledError:
            if not call.future.cancelled() or _cancelling():
                raise  # not ours to swallow: the node is aborting
            return self._stopped(ex, Stop.SHUTDOWN, None)  # the threads shut down before it started
        finally:
            self.running.pop(ref, None)
            if timer is not None:
                timer.cancel()
        if result is not _HALTED:
            return Outcome(Action.ACK, result=result) if "after_run" in self.callbacks else DONE
        job.request_stop()
        lingering = None if call.finished else call.lingering()
        if lingering is not None:
            log.warning(
                "job %s does not stop; its slot stays taken until it returns", job.id, extra=ex.log_fields()
            )
        if stop.done():
            return self._stopped(ex, stop.result(), lingering)
        error = JobTimeout(f"job {job.id} ran past its max_execution_time of {limit}s")
        return replace(self._failed(ex, error), lingering=lingering)

    async def _perform_apart(
        self, ex: Execution, job: Job, work: asyncio.Future[Any], running: Running
    ) -> Outcome:
        """An async job with a time limit, in its own task: stopped at its limit or when
        asked, and settled then even if it does not stop."""
        limit = job.max_execution_time
        done, _ = await asyncio.wait({work, running.stop}, timeout=limit, return_when="FIRST_COMPLETED")
        if work in done:
            running.stop.cancel()
            try:
                result = work.result()
            except Raised as e:
                return self._failed(ex, e.error)
            return Outcome(Action.ACK, result=result) if "after_run" in self.callbacks else DONE
        job.request_stop()
        if running.task is not None:
            running.task.cancel()
            await asyncio.wait({running.task}, timeout=UNWIND_GRACE)
        # A task that ignores its cancellation cannot be stopped: the delivery is
        # settled now, and the job keeps its slot until it returns.
        work.add_done_callback(_retrieve)
        lingering = None if work.done() else work
        if lingering is not None:
            log.warning(
                "job %s does not stop; its slot stays taken until it returns", job.id, extra=ex.log_fields()
            )
        if running.stop.done():
            return self._stopped(ex, running.stop.result(), lingering)
        error = JobTimeout(f"job {job.id} ran past its max_execution_time of {limit}s")
        return replace(self._failed(ex, error), lingering=lingering)

    # -- outcomes

    def _stopped(self, ex: Execution, why: Stop, lingering: asyncio.Future[Any] | None) -> Outcome:
        assert ex.job is not None
        ex.job.request_stop()
        if why is Stop.SHUTDOWN:
            log.warning("job %s stopped by shutdown; back to its queue", ex.job.id, extra=ex.log_fields())
            return Outcome(Action.REQUEUE, ending="requeued", lingering=lingering)
        log.info("job %s in %s cancelled while running", ex.job.id, ex.partition, extra=ex.log_fields())
        return Outcome(Action.ACK, ending="cancelled", lingering=lingering)

    def _failed(self, ex: Execution, error: BaseException) -> Outcome:
        """A retry at the job's next level, or a burial once its levels ran out."""
        job, message = ex.job, ex.message
        assert job is not None and message is not None
        levels = job.retry_levels if job.retry_levels is not None else self.retry_levels
        delay = next_delay(levels, message.retry_count) if job.retryable else None
        where = f"job {job.id} ({message.job}) in {ex.partition}-{message.queue}"
        if delay is not None:
            log.warning(
                "%s failed (%s: %s); retry %d in %ds",
                where,
                type(error).__name__,
                error,
                message.retry_count + 1,
                delay,
                extra=ex.log_fields(),
            )
            again = replace(message, retry_count=message.retry_count + 1)
            return Outcome(Action.RETRY, ending="retried", error=error, message=again, delay=delay)
        log.error("%s failed for good; burying it", where, exc_info=error, extra=ex.log_fields())
        headers = failure_headers(message.job, error, self.node)
        return Outcome(Action.BURY, ending="buried", error=error, headers=headers)

    # -- steps after perform

    async def _callbacks(self, ex: Execution, outcome: Outcome) -> None:
        """The application's hooks for how the job ended; a failing hook changes nothing."""
        job, ending = ex.job, outcome.ending
        if job is None:
            return
        if ending == "succeeded":
            if "after_run" in self.callbacks:
                await self.callbacks.fire("after_run", job, outcome.result)
        elif ending == "cancelled":
            await self.callbacks.fire("on_cancel", job)
        elif outcome.error is not None:
            await self.callbacks.fire("on_error", job, outcome.error)
            if ending == "buried":
                await self.callbacks.fire("on_buried", job, outcome.error)

    def record(self, ex: Execution, outcome: Outcome) -> None:
        """Count how the execution ended in the node's metrics (if it serves them), and
        record it in the job history (if the node keeps it)."""
        if self.history is not None:
            self._record_ended(self.history, ex, outcome)
        if self.metrics is None:
            return
        partition, queue, ending = ex.partition, ex.queue, outcome.ending
        if not ex.started:  # never ran: refused or cancelled before it started
            self.metrics.ended(partition, queue, "buried" if ending == "refused" else ending)
            return
        seconds = time.monotonic() - ex.started
        if ending in ("retried", "buried"):
            self.metrics.ended(partition, queue, "failed", seconds)
            self.metrics.ended(partition, queue, ending)
        else:
            self.metrics.ended(partition, queue, ending, seconds)

    @staticmethod
    def _record_started(history: Recorder, ex: Execution) -> None:
        message = ex.message
        assert message is not None
        history.add(
            (time.time(), "started", message.id, message.job, ex.partition, ex.queue,
             message.retry_count + 1, None, message.enqueued_at, None, None, None, None)
        )  # fmt: skip

    @staticmethod
    def _record_ended(history: Recorder, ex: Execution, outcome: Outcome) -> None:
        message, kind = ex.message, outcome.ending
        if message is None or kind not in HISTORY_KINDS:
            return  # not a job (its refusal is in the buried queue's evidence), or not an ending
        duration = time.monotonic() - ex.started if ex.started else None
        etype = emsg = tb = None
        if outcome.error is not None:
            etype, emsg, tb = history.error_fields(outcome.error)
        elif kind == "refused":
            etype, emsg = "Refused", str(outcome.headers.get(REASON_KEY, ""))
        delay = outcome.delay if kind == "retried" else None
        history.add(
            (time.time(), kind, message.id, message.job, ex.partition, ex.queue, message.retry_count + 1,
             duration, message.enqueued_at, etype, emsg, tb, delay)
        )  # fmt: skip


# The endings the job history records (a parked job or a tick's duplicate is no transition).
HISTORY_KINDS = frozenset({"succeeded", "retried", "buried", "cancelled", "requeued", "refused"})


def refused(reason: str, node: str) -> Outcome:
    """Bury a message that cannot run here (not a job, a class not allowed), with the reason."""
    return Outcome(Action.BURY, ending="refused", headers=refusal_headers(reason, node))


# What a sync job's future is completed with when its job was stopped or ran past its limit.
_HALTED: Any = object()


def _halt(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_HALTED)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _contained(work: Awaitable[Any]) -> Any:
    try:
        return await work
    except asyncio.CancelledError:
        raise
    except BaseException as e:
        raise Raised(e) from None


def _uncancel() -> None:
    """Our own cancel of the delivery's task was delivered: the task goes on to settle."""
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Consume a stopped job's late result or error, so asyncio does not warn about it."""
    if not future.cancelled():
        future.exception()
