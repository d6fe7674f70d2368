"""The threads that run plain `def` jobs, and the one hand-off between them and the loop.

`loop.run_in_executor` costs a `concurrent.futures.Future`, an asyncio future chained to it
(a done-callback each way) and one `call_soon_threadsafe`, so one write to the loop's self-pipe,
per job. A sync no-op job drained at 0.44x an async one with it. Here a call is one small object
on a `SimpleQueue`; a thread runs it and appends the result to a list the loop empties, and only
the thread that finds the list empty wakes the loop: one self-pipe write per batch of finished
calls, not per call. The loop completes each call's asyncio future itself.

A thread is started only when no thread is idle (at most `size`), so a job never waits behind
another that blocks, as with `ThreadPoolExecutor`; threads are kept, named `roger-job-<n>`
(`cli/node.py` leaves without the ones still running a stopped job). What a job raises,
`KeyboardInterrupt` and `SystemExit` included, stays in its call: the thread goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

_SHUTDOWN = None  # on the queue: the thread that takes it exits


class Call:
    """One sync job's `perform(args)`: what a thread runs, and how the loop learns it ended."""

    __slots__ = ("fn", "arg", "future", "returned", "ok", "value", "finished")

    def __init__(self, fn: Callable[[Any], Any], arg: Any, future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.arg = arg
        self.future = future  # completed with the result; a stop or time limit may complete it first
        self.returned: asyncio.Future[None] | None = None  # made by `lingering`
        self.ok = False
        self.value: Any = None
        self.finished = False  # set in the loop once the thread's return was delivered

    def lingering(self) -> asyncio.Future[None]:
        """A future that completes once the thread has returned from this call (already
        running or not): what holds a stopped job's slot."""
        if self.returned is None:
            self.returned = self.future.get_loop().create_future()
        return self.returned

    def _finish(self) -> None:
        """In the loop: the thread returned; complete the future if nobody settled it first."""
        self.finished = True
        future = self.future
        if not future.done():
            if self.ok:
                future.set_result(self.value)
            else:
                future.set_exception(Raised(self.value))
        if self.returned is not None and not self.returned.done():
            self.returned.set_result(None)


class Raised(Exception):
    """What a job raised in its thread, carried to the loop: a task that raises
    KeyboardInterrupt or SystemExit would stop the event loop."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


class JobThreads:
    """A pool of up to `size` threads for sync jobs, handing results back in batches."""

    def __init__(self, size: int, name: str = "roger-job") -> None:
        self.size = size
        self._name = name
        self._calls: SimpleQueue[Call | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads that will take a call without a new one starting
        self._done: list[Call] = []  # finished calls the loop has not seen yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self._numbers = itertools.count()
        self._closed = False

    @property
    def threads(self) -> int:
        """How many threads run (idle ones included)."""
        return len(self._threads)

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Call:
        """Run `fn(arg)` in a thread; in the loop, where `call.future` is completed."""
        if self._closed:
            raise RuntimeError("the job threads are shut down")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        call = Call(fn, arg, loop.create_future())
        with self._lock:
            start = self._idle == 0 and len(self._threads) < self.size
            if not start and self._idle:
                self._idle -= 1  # this call is that thread's
        if start:
            self._start()
        self._calls.put(call)
        return call

    def shutdown(self) -> None:
        """Let every thread exit once it is idle; calls not started are not run. A thread
        still running a call keeps running it (a thread cannot be stopped)."""
        self._closed = True
        while True:  # calls nobody took yet
            try:
                call = self._calls.get_nowait()
            except Empty:
                break
            if call is not None and not call.future.done():
                call.future.get_loop().call_soon_threadsafe(_cancel, call)
        for _ in self._threads:
            self._calls.put(_SHUTDOWN)

    def _start(self) -> None:
        name = f"{self._name}-{next(self._numbers)}"
        thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        calls, lock, done = self._calls, self._lock, self._done
        while (call := calls.get()) is not None:
            try:
                call.value = call.fn(call.arg)
                call.ok = True
            except BaseException as e:  # the job's failure, whatever it is
                call.value = e
            with lock:
                done.append(call)
                wake = len(done) == 1  # the loop is told once per batch
                self._idle += 1
            if wake:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                    call.future.get_loop().call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        """In the loop: complete every call finished since the last delivery."""
        with self._lock:
            finished = self._done.copy()
            self._done.clear()
        for call in finished:
            call._finish()


def _cancel(call: Call) -> None:
    call.finished = True
    if not call.future.done():
        call.future.cancel()
    if call.returned is not None and not call.returned.done():
        call.returned.set_result(None)
