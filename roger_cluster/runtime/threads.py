"""The threads that run plain `def` jobs, and the one hand-off between them and the loop.

`loop.run_in_executor` costs a `concurrent.futures.Future`, an asyncio future chained to it
(a done-callback each way) and one `call_soon_threadsafe`, so one write to the loop's self-pipe,
per job, and a woken thread per job. A sync no-op job drained at 0.44x an async one with it.
Here a call is one small object in a deque, taken by a thread already awake when there is one
(see `JobThreads`); the thread appends the result to a list the loop empties, and only the
thread that finds the list empty wakes the loop: one self-pipe write per batch of finished
calls, not per call. The loop completes each call's asyncio future itself.

A thread is started only when none sleeps (at most `size`), so a job never waits behind
another that blocks, as with `ThreadPoolExecutor`; threads are kept, named `roger-job-<n>`
(`cli/node.py` leaves without the ones still running a stopped job). What a job raises,
`KeyboardInterrupt` and `SystemExit` included, stays in its call: the thread goes on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any


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
    """A pool of up to `size` threads for sync jobs, handing results back in batches.

    Calls wait in one deque. A thread that is awake and not in a call (searching) takes the
    next; only when no thread searches is one woken (or started). A thread that takes a call
    while more wait and no other thread searches wakes one before it runs its call: a call
    never waits behind one that blocks, yet a burst of short calls is run by the one or two
    threads already awake instead of waking a thread per call.
    """

    def __init__(self, size: int, name: str = "roger-job") -> None:
        self.size = size
        self._name = name
        self._pending: collections.deque[Call] = collections.deque()
        self._wakes: SimpleQueue[bool | None] = SimpleQueue()  # one per woken sleeper; None: exit
        self._lock = threading.Lock()  # guards the deque's emptiness and the counts below
        self._threads: list[threading.Thread] = []
        self._searching = 0  # awake and not in a call (woken or started ones included)
        self._sleeping = 0  # waiting on `_wakes`
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
            self._pending.append(call)
            wake = self._wake_locked() if self._searching == 0 else None
        if wake is not None:
            self._wake(wake)
        return call

    def shutdown(self) -> None:
        """Let every thread exit once it is idle; calls not started are not run. A thread
        still running a call keeps running it (a thread cannot be stopped)."""
        self._closed = True
        with self._lock:
            left = list(self._pending)
            self._pending.clear()
        for call in left:
            if not call.future.done():
                call.future.get_loop().call_soon_threadsafe(_cancel, call)
        for _ in list(self._threads):
            self._wakes.put(None)

    def _wake_locked(self) -> bool | None:
        """Under the lock: count one more searcher; True to wake a sleeper, False to start one
        (None when `size` threads run and none sleeps: the call waits for one)."""
        if self._sleeping:
            self._sleeping -= 1
            self._searching += 1
            return True
        if len(self._threads) < self.size:
            self._searching += 1
            return False
        return None

    def _wake(self, sleeper: bool) -> None:
        if sleeper:
            self._wakes.put(True)
            return
        name = f"{self._name}-{next(self._numbers)}"
        thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        lock, pending, done = self._lock, self._pending, self._done
        while True:
            with lock:
                self._searching -= 1
                if pending:
                    call = pending.popleft()
                    more = self._wake_locked() if pending and self._searching == 0 else None
                else:
                    self._sleeping += 1
                    call = None
            if call is None:
                if self._wakes.get() is None:
                    return
                continue  # the waker counted this thread as searching
            if more is not None:
                self._wake(more)
            try:
                call.value = call.fn(call.arg)
                call.ok = True
            except BaseException as e:  # the job's failure, whatever it is
                call.value = e
            with lock:
                done.append(call)
                tell = len(done) == 1  # the loop is told once per batch
                self._searching += 1
            if tell:
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
