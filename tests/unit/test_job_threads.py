"""The threads of sync jobs (`runtime/threads.py`): results, errors, growth, lingering, shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from roger_cluster.runtime.threads import JobThreads, Raised


@pytest.fixture
def threads() -> Iterator[JobThreads]:
    pool = JobThreads(8, name="test-job")
    yield pool
    pool.shutdown()


async def test_many_calls_complete_with_their_own_results(threads: JobThreads) -> None:
    calls = [threads.submit(lambda x: x * 2, i) for i in range(500)]
    assert await asyncio.gather(*(c.future for c in calls)) == [i * 2 for i in range(500)]
    assert all(c.finished for c in calls)
    assert threads.threads <= 8


@pytest.mark.parametrize("error", [ValueError("no"), KeyboardInterrupt(), SystemExit(3)])
async def test_what_a_job_raises_comes_back_as_raised_and_the_thread_goes_on(
    threads: JobThreads, error: BaseException
) -> None:
    def fails(_: object) -> None:
        raise error

    with pytest.raises(Raised) as raised:
        await threads.submit(fails, None).future
    assert raised.value.error is error
    assert await threads.submit(lambda x: x, 7).future == 7


async def test_a_blocked_job_does_not_hold_up_the_next(threads: JobThreads) -> None:
    release = threading.Event()
    blocked = threads.submit(lambda _: release.wait(5), None)
    assert await asyncio.wait_for(threads.submit(lambda x: x, "next").future, 2) == "next"
    assert not blocked.future.done()
    release.set()
    assert await blocked.future is True


async def test_lingering_completes_once_the_thread_returns_after_the_future_was_settled(
    threads: JobThreads,
) -> None:
    release = threading.Event()
    call = threads.submit(lambda _: release.wait(5), None)
    call.future.set_result("stopped")  # what a stop or the time limit does
    lingering = call.lingering()
    await asyncio.sleep(0.05)
    assert not lingering.done()
    release.set()
    await asyncio.wait_for(lingering, 2)
    assert call.future.result() == "stopped"


async def test_shutdown_cancels_calls_not_started(threads: JobThreads) -> None:
    threads.size = 1
    started, release = threading.Event(), threading.Event()

    def blocks(_: object) -> bool:
        started.set()
        return release.wait(5)

    running = threads.submit(blocks, None)
    assert await asyncio.to_thread(started.wait, 2)
    waiting = threads.submit(lambda x: x, 1)
    threads.shutdown()
    release.set()
    await asyncio.wait_for(running.future, 2)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting.future, 2)
    with pytest.raises(RuntimeError):
        threads.submit(lambda x: x, 2)
