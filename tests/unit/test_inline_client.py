"""InlineClient: jobs run in-process at enqueue, with a context, retries and
recorded outcomes, for unit tests of an app's jobs without servers."""

from __future__ import annotations

import datetime
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from roger_cluster import Client, ConfigError, Enqueuing, Job, JobError, JobTimeout
from roger_cluster.testing import InlineClient

SEEN: list[tuple[str, Any, int, str, float | None]] = []


class Remember(Job):
    queue = "mail"

    async def perform(self, args: dict[str, Any]) -> str:
        SEEN.append((self.context.partition, args, self.context.retry_count, self.context.node, None))
        return f"sent to {args['to']}"


class SyncRemember(Job):
    def perform(self, args: dict[str, Any]) -> str:
        SEEN.append((self.context.queue, args, 0, threading.current_thread().name, self.context.scheduled_at))
        return "done"


class FailsTwice(Job):
    retryable = True
    retry_levels = (60, 60, 60)

    async def perform(self, args: Any) -> None:
        if self.context.retry_count < 2:
            raise RuntimeError(f"attempt {self.context.retry_count}")


class AlwaysFails(Job):
    retryable = True
    retry_levels = (1, 1)

    def perform(self, args: Any) -> None:
        raise ValueError("no")


class NotRetryable(Job):
    async def perform(self, args: Any) -> None:
        raise KeyError("gone")


class Slow(Job):
    max_execution_time = 0.05

    async def perform(self, args: Any) -> None:
        import asyncio

        await asyncio.sleep(10)


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


async def app_code(roger: Enqueuing, to: str) -> str:
    """What an app does, typed with the protocol both clients satisfy."""
    return await roger.enqueue(Remember.create({"to": to}), "shop")


def test_the_real_client_and_the_inline_one_are_both_enqueuing() -> None:
    clients: list[Enqueuing] = [InlineClient(), Client()]
    assert len(clients) == 2


async def test_a_job_runs_at_enqueue_with_its_context_and_its_result_is_recorded() -> None:
    async with InlineClient() as roger:
        job_id = await app_code(roger, "a@b.c")
    [run] = roger.jobs
    assert run.ok and run.attempts == 1 and run.result == "sent to a@b.c"
    assert run.job.id == job_id and (run.partition, run.queue) == ("shop", "mail")
    assert SEEN == [("shop", {"to": "a@b.c"}, 0, "inline", None)]
    assert roger.performed(Remember) == [{"to": "a@b.c"}]
    assert roger.failed == []


async def test_arguments_go_through_the_wire_format_and_a_new_instance_runs() -> None:
    roger = InlineClient()
    job = Remember.create({"to": "x", "ids": (1, 2)})
    await roger.enqueue(job, "shop")
    assert roger.jobs[0].job is not job
    assert roger.jobs[0].job.args == {"to": "x", "ids": [1, 2]}  # a tuple comes back a list
    with pytest.raises(JobError):
        await roger.enqueue(Remember.create({"to": object()}), "shop")


async def test_a_sync_job_runs_in_a_thread_and_a_delay_sets_scheduled_at_without_waiting() -> None:
    roger = InlineClient()
    before = time.time()
    await roger.enqueue(SyncRemember.create({"n": 1}), "shop", delay=3600)
    at = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=2)
    await roger.enqueue(SyncRemember.create({"n": 2}), "shop", "other", at=at)
    assert time.time() - before < 5
    (queue1, _, _, thread1, due1), (queue2, _, _, _, due2) = SEEN
    assert queue1 == "default" and queue2 == "other"
    assert thread1 != threading.current_thread().name
    assert due1 is not None and before + 3600 <= due1 <= time.time() + 3600
    assert due2 == at.timestamp()


async def test_bad_names_and_delays_are_refused_as_the_real_client_refuses_them() -> None:
    roger = InlineClient()
    with pytest.raises(ConfigError):
        await roger.enqueue(Remember.create({"to": "x"}), "my-app")
    with pytest.raises(ConfigError):
        await roger.enqueue(
            Remember.create({"to": "x"}), "shop", delay=5, at=datetime.datetime.now(datetime.UTC)
        )
    with pytest.raises(ConfigError):
        await roger.enqueue(Remember.create({"to": "x"}), "shop", delay=400 * 86400)
    assert roger.jobs == []


async def test_a_retryable_job_is_retried_at_once_with_a_growing_retry_count() -> None:
    roger = InlineClient()
    started = time.monotonic()
    await roger.enqueue(FailsTwice.create(), "shop")
    assert time.monotonic() - started < 5  # the 60 s levels are not waited
    [run] = roger.jobs
    assert run.ok and run.attempts == 3
    assert [str(e) for e in run.errors] == ["attempt 0", "attempt 1"]


async def test_a_job_out_of_retries_raises_by_default_or_is_collected_in_failed() -> None:
    with pytest.raises(ValueError, match="no"):
        await InlineClient().enqueue(AlwaysFails.create(), "shop")
    quiet = InlineClient(raise_errors=False)
    job_id = await quiet.enqueue(AlwaysFails.create(), "shop")
    await quiet.enqueue(NotRetryable.create(), "shop")
    assert [(r.job.id, r.attempts) for r in quiet.failed][0] == (job_id, 3)  # 1 + one per level
    assert quiet.failed[1].attempts == 1 and isinstance(quiet.failed[1].error, KeyError)


async def test_the_clients_retry_levels_count_for_classes_without_their_own() -> None:
    class Flaky(Job):
        retryable = True

        async def perform(self, args: Any) -> None:
            raise RuntimeError("x")

    roger = InlineClient(retry_levels=(1, 2, 3, 4), raise_errors=False)
    await roger.enqueue(Flaky.create(), "shop")
    assert roger.failed[0].attempts == 5


async def test_an_async_job_past_its_time_limit_fails_with_job_timeout() -> None:
    roger = InlineClient(raise_errors=False)
    await roger.enqueue(Slow.create(), "shop")
    assert isinstance(roger.failed[0].error, JobTimeout)


async def test_enqueue_many_runs_every_job_then_raises_the_first_failure() -> None:
    roger = InlineClient()
    jobs = [Remember.create({"to": "a"}), NotRetryable.create(), Remember.create({"to": "b"})]
    with pytest.raises(KeyError):
        await roger.enqueue_many(jobs, "shop")
    assert roger.performed(Remember) == [{"to": "a"}, {"to": "b"}]
    ids = await InlineClient().enqueue_many([Remember.create({"to": "c"})], "shop")
    assert len(ids) == 1


async def test_a_cancelled_id_does_not_run_when_enqueued() -> None:
    roger = InlineClient()
    job = Remember.create({"to": "a"})
    await roger.cancel("shop", job.id)
    await roger.enqueue(job, "shop")
    assert roger.jobs[0].cancelled and not roger.jobs[0].ok
    assert SEEN == []


async def test_the_example_in_testing_md_passes() -> None:
    text = (Path(__file__).parents[2] / "docs" / "testing.md").read_text()
    [example] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "InlineClient()" in b]
    namespace: dict[str, Any] = {"__name__": "testing_md_example"}
    exec(compile(example, "docs/testing.md", "exec"), namespace)
    await namespace["test_sign_up_sends_a_welcome"]()
