"""SyncClient's lifecycle without servers: nothing happens before the first call, and close()
leaves no caller blocked (a call running or waiting then gets ClientClosed)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from roger_cluster import ClientClosed, SyncClient


def test_making_a_sync_client_starts_no_thread() -> None:
    before = {t.name for t in threading.enumerate()}
    roger = SyncClient(partition="p")
    assert {t.name for t in threading.enumerate()} == before
    roger.close()
    roger.close()
    with pytest.raises(ClientClosed, match="closed"):
        roger.nodes()


def test_close_ends_the_calls_still_running_with_client_closed() -> None:
    roger = SyncClient()
    loop = roger._running()  # what the first call does
    started = threading.Event()

    async def slow() -> str:
        started.set()
        await asyncio.sleep(60)
        return "never"

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(loop.run, slow()) for _ in range(4)]
        assert started.wait(10)
        roger.close(timeout=10)
        for future in running:
            with pytest.raises(ClientClosed):
                future.result(timeout=10)
    assert not loop.thread.is_alive()
    with pytest.raises(ClientClosed):
        loop.run(slow())
