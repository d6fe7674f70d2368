"""SyncClient: the async `Client` for code that is not asyncio (Django, Flask, any WSGI app, scripts).

One background thread owns an event loop, and in it one `Client` with its AMQP connection and
etcd channel. Every call from any thread submits a coroutine to that loop
(`_Loop.run`) and blocks on its result, so calls from many request threads
share the connection and are in flight together: eight threads enqueueing at once have eight
publisher confirms outstanding, not one round trip at a time under a lock. Reconnecting is the
async client's (a lost connection is opened again by the next call).

Invariants it protects:

- Only the loop thread touches the `Client`, its sockets and its loop; other threads only submit.
- Fork safety (gunicorn or uWSGI with preload): a child process forgets the parent's thread, loop
  and sockets without closing or using them (`os.register_at_fork`), and opens its own on its
  first call. The parent's connection is untouched.
- Constructing one does no I/O and starts no thread: the first call does.
- After `close()` every call raises `ClientClosed`; `close()` may be called again.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import datetime
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from . import control
from .client import Client
from .cluster.cancellations import DEFAULT_TTL as DEFAULT_CANCEL_TTL
from .config import (
    DEFAULT_AMQP_URL,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_ETCD,
    DEFAULT_NAMESPACE,
    AmqpConfig,
    EtcdConfig,
)
from .delays import Delay
from .errors import ClientClosed
from .job import Job

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

CLOSE_TIMEOUT = 10.0  # seconds `close()` waits for the connections to close and the thread to end
FORK_CLOSE_TIMEOUT = 5.0  # seconds a fork waits for the etcd channel to close


class _Call:
    """One call from a thread: the coroutine to run and where its outcome goes.

    The waiting thread blocks on `done`, a plain lock the loop releases: the cheapest hand-off
    CPython has (a concurrent.futures.Future adds a Condition and a chain of callbacks).
    """

    __slots__ = ("coroutine", "done", "error", "result", "task")

    def __init__(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self.coroutine = coroutine
        self.done = threading.Lock()
        self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[Any] | None = None

    def settle(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            self.error = asyncio.CancelledError()
        else:
            self.error = task.exception()
            self.result = None if self.error is not None else task.result()
        self.done.release()


class _Loop:
    """The background thread, its event loop and the `Client` that lives in it.

    Calls are handed over in batches: a thread appends its call to `_pending` and wakes the loop
    only if no wake-up is on its way yet, so under load one wake-up starts many calls.
    """

    def __init__(self, client: Client) -> None:
        self.client = client  # made by the caller (no I/O); used only inside the loop from now on
        self.loop = asyncio.new_event_loop()
        self._pending: collections.deque[_Call] = collections.deque()
        self._pending_lock = threading.Lock()
        self._scheduled = False  # a `_start_pending` is on its way to the loop
        self._stopping = False  # set by `stop`: no call is taken or started any more
        self.thread = threading.Thread(target=self._run, name="roger-sync-client", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        """Run `coroutine` in the loop and wait for its outcome (TimeoutError after `timeout`)."""
        call = _Call(coroutine)
        with self._pending_lock:
            if self._stopping:
                coroutine.close()
                raise ClientClosed("this SyncClient was closed; make a new one")
            self._pending.append(call)
            wake, self._scheduled = not self._scheduled, True
        if wake:
            self.loop.call_soon_threadsafe(self._start_pending)
        try:
            if not call.done.acquire(timeout=-1 if timeout is None else timeout):
                raise TimeoutError(f"no answer within {timeout:g}s")
        except BaseException:  # interrupted (Ctrl-C) or timed out: do not leave it running
            self.loop.call_soon_threadsafe(self._cancel, call)
            raise
        if isinstance(call.error, asyncio.CancelledError):  # only `stop` cancels a call's task
            raise ClientClosed("the SyncClient was closed while this call ran")
        if call.error is not None:
            raise call.error
        result: R = call.result
        return result

    def _start_pending(self) -> None:
        with self._pending_lock:
            calls = list(self._pending)
            self._pending.clear()
            self._scheduled = False
            stopping = self._stopping
        for call in calls:
            if stopping:  # taken before `stop`, too late to start: the client is closing
                call.coroutine.close()
                call.error = ClientClosed("the SyncClient was closed before this call started")
                call.done.release()
                continue
            call.task = self.loop.create_task(call.coroutine)
            call.task.add_done_callback(call.settle)

    def _cancel(self, call: _Call) -> None:
        if call.task is not None:
            call.task.cancel()
        else:  # still pending: it will be started and cancelled at once
            self.loop.call_soon(self._cancel, call)

    async def _shutdown(self) -> None:
        """Close the client, then end every call still running (their callers get ClientClosed)."""
        await self.client.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stop(self, timeout: float) -> None:
        """Close the client in its loop, then end the loop and its thread (bounded by `timeout`).
        Calls waiting or running get ClientClosed; none is left blocked."""
        with self._pending_lock:
            self._stopping = True
            if not self._scheduled:  # calls taken meanwhile are failed by `_start_pending`
                self._scheduled = True
                self.loop.call_soon_threadsafe(self._start_pending)
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout)
        except Exception as e:  # closing is best effort: the thread must end all the same
            log.warning("closing the SyncClient's connections: %s: %s", type(e).__name__, e)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
            if not self.thread.is_alive():
                self.loop.close()


# What the children of a fork must not touch: kept referenced, so that the garbage collector
# never closes the parent's sockets (or runs any finalizer of them) in the child.
_ORPHANS: list[_Loop] = []
_LIVE: weakref.WeakSet[SyncClient] = weakref.WeakSet()


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncClient, P], R]:
    """`Client.method` as a blocking method of SyncClient: same parameters, same docstring."""

    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._call(method, *args, **kwargs)

    functools.update_wrapper(call, method)
    call.__doc__ = f"Blocking `Client.{method.__name__}`: {method.__doc__ or ''}"
    return call


class SyncClient:
    """The `Client` for threads: blocking calls, thread-safe, fork-safe. One per process is enough.

    `SyncClient(...)` takes what `Client(...)` takes; `SyncClient.from_env()` reads the ROGER_*
    variables. Use it from any number of threads; close it with `close()` or `with SyncClient(...)
    as roger:`. Each method is the `Client` method of the same name, blocking until its result.
    Callbacks given to a method (`on_progress`) run in the client's own thread.
    """

    def __init__(
        self,
        amqp_url: str = DEFAULT_AMQP_URL,
        etcd: str = DEFAULT_ETCD,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        queue_type: str = "quorum",
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
        management_url: str | None = None,
        cancel_ttl: int = DEFAULT_CANCEL_TTL,
        amqp_config: AmqpConfig | None = None,
        etcd_config: EtcdConfig | None = None,
        partition: str | None = None,
    ) -> None:
        """As `Client(...)`; checks the settings now and connects on the first call."""
        make = functools.partial(
            Client,
            amqp_url,
            etcd,
            namespace,
            queue_type=queue_type,
            delivery_limit=delivery_limit,
            management_url=management_url,
            cancel_ttl=cancel_ttl,
            amqp_config=amqp_config,
            etcd_config=etcd_config,
            partition=partition,
        )
        self._settings = make()  # validates now; the Client each loop runs is made from `make`
        self._make = make
        self._lock = threading.Lock()
        self._loop: _Loop | None = None
        self._closed = False
        _LIVE.add(self)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, partition: str | None = None
    ) -> SyncClient:
        """As `Client.from_env`: configured from the ROGER_* variables, ROGER_PARTITION included."""
        client = Client.from_env(environ, partition=partition)
        return cls(
            management_url=client.management_url,
            cancel_ttl=client.cancel_ttl,
            amqp_config=client.amqp_config,
            etcd_config=client.etcd_config,
            partition=client.default_partition,
        )

    @property
    def namespace(self) -> str:
        """The etcd namespace of this cluster."""
        return self._settings.namespace

    @property
    def default_partition(self) -> str | None:
        """The partition `enqueue`, `enqueue_many` and `cancel` use when given none."""
        return self._settings.default_partition

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Close the connections and end the client's thread; later calls raise ClientClosed."""
        with self._lock:
            self._closed = True
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop(timeout)

    def _running(self) -> _Loop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._closed:
                raise ClientClosed("this SyncClient was closed; make a new one")
            if self._loop is None:
                self._loop = _Loop(self._make())
            return self._loop

    def _call(
        self,
        method: Callable[Concatenate[Client, P], Coroutine[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run `method(client, ...)` in the client's loop and wait for its result."""
        loop = self._running()
        if threading.current_thread() is loop.thread:
            raise RuntimeError("a SyncClient called from its own thread (a callback?) would wait forever")
        return loop.run(method(loop.client, *args, **kwargs))

    def _release_etcd(self) -> None:
        """Close the etcd channel (before a fork); bounded, and never raises."""
        loop = self._loop
        if loop is None or threading.current_thread() is loop.thread:
            return
        try:
            loop.run(loop.client.close_etcd(), FORK_CLOSE_TIMEOUT)
        except Exception as e:
            log.warning("closing the etcd channel before a fork: %s: %s", type(e).__name__, e)

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's loop, thread and sockets without touching them."""
        self._lock = threading.Lock()
        if self._loop is not None:
            _ORPHANS.append(self._loop)
            self._loop = None

    # jobs

    def enqueue(
        self,
        job: Job,
        partition: str | None = None,
        queue: str | None = None,
        *,
        delay: Delay | None = None,
        at: datetime.datetime | None = None,
    ) -> str:
        """Publish `job` and wait for RabbitMQ's confirm; returns the job id.

        As `Client.enqueue`: without `partition`, the client's default; `delay` (seconds or a
        timedelta) or `at` (an aware datetime) to run it later. Raises UnroutableJob if the
        partition or queue does not exist, JobError for args that cannot be sent, ConfigError
        for a bad delay or no partition at all, BrokerConnectionError if RabbitMQ cannot be
        reached. Calls from many threads are in flight together on the one connection.
        """
        return self._call(Client.enqueue, job, partition, queue, delay=delay, at=at)

    def enqueue_many(
        self,
        jobs: Iterable[Job],
        partition: str | None = None,
        queue: str | None = None,
        *,
        delay: Delay | None = None,
        at: datetime.datetime | None = None,
    ) -> list[str]:
        """As `Client.enqueue_many`: up to ENQUEUE_WINDOW confirms in flight; returns the ids."""
        return self._call(Client.enqueue_many, list(jobs), partition, queue, delay=delay, at=at)

    enqueue_message = _blocking(Client.enqueue_message)

    @overload
    def cancel(self, partition: str, job_id: str) -> None: ...

    @overload
    def cancel(self, job_id: str, /) -> None: ...

    def cancel(self, partition: str, job_id: str | None = None) -> None:
        """As `Client.cancel`: `cancel(partition, job_id)`, or `cancel(job_id)` in the default
        partition. Dropped if still queued, stopped if running."""
        if job_id is None:
            self._call(Client.cancel, partition)
        else:
            self._call(Client.cancel, partition, job_id)

    # partitions, queues
    ensure_partition = _blocking(Client.ensure_partition)
    set_partition = _blocking(Client.set_partition)
    start_partition = _blocking(Client.start_partition)
    partition_spec = _blocking(Client.partition_spec)
    stop_partition = _blocking(Client.stop_partition)
    partitions = _blocking(Client.partitions)
    partition = _blocking(Client.partition)
    overview = _blocking(Client.overview)
    queue_rates = _blocking(Client.queue_rates)
    pause_queue = _blocking(Client.pause_queue)
    resume_queue = _blocking(Client.resume_queue)
    paused_queues = _blocking(Client.paused_queues)
    purge_queue = _blocking(Client.purge_queue)
    scheduled = _blocking(Client.scheduled)
    queued = _blocking(Client.queued)
    buried = _blocking(Client.buried)
    retry_buried = _blocking(Client.retry_buried)
    purge_buried = _blocking(Client.purge_buried)

    # job history (docs/history.md)
    job_events = _blocking(Client.job_events)
    job_history = _blocking(Client.job_history)
    job_story = _blocking(Client.job_story)

    # schedules
    put_schedule = _blocking(Client.put_schedule)
    ensure_schedule = _blocking(Client.ensure_schedule)
    get_schedule = _blocking(Client.get_schedule)
    schedules = _blocking(Client.schedules)
    pause_schedule = _blocking(Client.pause_schedule)
    resume_schedule = _blocking(Client.resume_schedule)
    remove_schedule = _blocking(Client.remove_schedule)
    run_schedule_now = _blocking(Client.run_schedule_now)

    # nodes, health
    nodes = _blocking(Client.nodes)
    doctor = _blocking(Client.doctor)

    def running(
        self, partition: str | None = None, timeout: float = control.DEFAULT_TIMEOUT
    ) -> control.RunningJobs:
        """As `Client.running`: the jobs running now on every live node (of `partition`)."""
        return self._call(Client.running, partition, timeout)


_HELD: list[SyncClient] = []  # the clients whose locks `_before_fork` holds


def _before_fork() -> None:
    # Hold every client's lock across the fork, so no child inherits one held mid-change, and
    # close the etcd channels first: gRPC's asyncio layer has one poller thread per process,
    # shut down once no channel is left; a child that inherits it open waits on a thread
    # that does not exist in the child. The parent reopens its channel on its next etcd call.
    _HELD[:] = list(_LIVE)
    for client in _HELD:
        client._lock.acquire()
        client._release_etcd()


def _after_fork_in_parent() -> None:
    for client in _HELD:
        client._lock.release()
    _HELD.clear()


def _after_fork_in_child() -> None:
    _HELD.clear()
    for client in list(_LIVE):
        client._forget_after_fork()


def _close_all() -> None:
    """At interpreter exit: close what is still open, so the broker sees a clean close."""
    for client in list(_LIVE):
        client.close(timeout=2.0)


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
atexit.register(_close_all)
