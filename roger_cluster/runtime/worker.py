"""Runs one delivered job, start to end, without touching AMQP.

The steps read in order: decode -> resolve the class from the allowlist ->
perform -> outcome. The consumer turns the outcome into exactly one ack or one
bury. Nothing here can raise past `run`: a bad message or a failing job is an
outcome, so a consumer never crashes and never loops on a message.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from ..codec import JobMessage, decode
from ..errors import DecodeError, UnknownJob
from ..job import Job, JobRegistry

log = logging.getLogger(__name__)


class Action(enum.Enum):
    """What the consumer does with the delivery."""

    ACK = "ack"
    BURY = "bury"


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery."""

    action: Action
    reason: str = ""


DONE = Outcome(Action.ACK)


class Worker:
    """Runs jobs of allowed classes; sync jobs in `executor`'s threads."""

    def __init__(self, registry: JobRegistry, node: str, executor: Executor) -> None:
        self.registry = registry
        self.node = node
        self._executor = executor
        self.running: dict[str, Job] = {}

    async def run(self, partition: str, body: bytes) -> Outcome:
        """Run the job in `body`; returns what to do with its message."""
        try:
            message = decode(body)
            job_class = self.registry.resolve(message.job)
        except (DecodeError, UnknownJob) as e:
            log.error("burying message in partition %s: %s", partition, e)
            return Outcome(Action.BURY, str(e))
        job = job_class(message.args, job_id=message.id)
        return await self._perform(partition, message, job)

    async def _perform(self, partition: str, message: JobMessage, job: Job) -> Outcome:
        self.running[job.id] = job
        started = time.monotonic()
        try:
            await self._call(job, message.args)
        except Exception:
            log.exception(
                "job %s (%s) failed in partition %s queue %s",
                job.id,
                message.job,
                partition,
                message.queue,
            )
        else:
            log.debug(
                "job %s (%s) done in partition %s queue %s in %.3fs",
                job.id,
                message.job,
                partition,
                message.queue,
                time.monotonic() - started,
            )
        finally:
            del self.running[job.id]
        return DONE

    async def _call(self, job: Job, args: Any) -> Any:
        if job.is_async():
            return await job.perform(args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, job.perform, args)
