"""The `Job` base class and the allowlist of job classes a node may run.

A node runs only `Job` subclasses *defined in* the modules it was told to load
(`--jobs`). Messages name their class as `module:Class`; the name is looked up
in a `JobRegistry` built at start-up and is never imported, so a message cannot
make a node import or run code the operator did not allow.
"""

from __future__ import annotations

import importlib
import inspect
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from .errors import ConfigError, JobError, UnknownJob
from .names import check_queue


def new_job_id() -> str:
    """A fresh, globally unique job id."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class JobContext:
    """Where and how a job runs; set by the node before `perform`."""

    partition: str
    """The partition the job was enqueued into."""
    queue: str
    """The queue of the partition it came from."""
    node: str
    """The name of the node running it (`"inline"` under `testing.InlineClient`)."""
    retry_count: int = 0
    """0 on the first attempt, then 1, 2, ... for each retry."""
    enqueued_at: float = 0.0
    """When the job was first enqueued (Unix time)."""
    fencing_token: int | None = None
    """For a job with an execution key: the lock's etcd revision. Pass it to the systems
    the job writes to, so they can refuse an older holder's writes. None otherwise."""
    scheduled_at: float | None = None
    """When the job was meant to run (Unix time): the due time of a delayed job, or the
    tick a schedule fired it for; None for a job enqueued to run at once."""
    schedule: str | None = None
    """The name of the schedule that fired the job, if one did."""


class Job:
    """Base class of every job.

    Subclass it, set `queue` (or override `queue_for`), and write `perform`,
    either `async def` (runs on the node's event loop) or plain `def` (runs in
    a worker thread).
    """

    queue: ClassVar[str] = "default"
    """The queue of the partition this class's jobs go to (unless `queue_for` is overridden)."""
    retryable: ClassVar[bool] = False
    """Whether a failed job is tried again after each of the retry levels, then buried."""
    retry_levels: ClassVar[Sequence[int] | None] = None
    """Seconds between attempts, e.g. `(1, 5, 30)`; None uses the node's `--retry-levels`."""
    max_execution_time: ClassVar[float | None] = None
    """Seconds a run may take before it is stopped and counts as failed; None: no limit."""
    _is_async: ClassVar[bool | None] = None

    def __init__(self, args: Any = None, *, job_id: str | None = None) -> None:
        self.id = job_id or new_job_id()
        """The job's unique id (32 hex digits): what `Client.cancel` and `rogerctl job show` take."""
        self.args = args
        """The job's arguments, as given to `create`; msgpack-able values only."""
        self._context: JobContext | None = None
        # A plain flag: set on the event loop, read by a sync job's thread.
        self._stop_requested = False

    @classmethod
    def create(cls, args: Any = None) -> Self:
        """A new job of this class with `args` and a unique id."""
        return cls(args)

    @classmethod
    def path(cls) -> str:
        """The name messages use for this class: `module:QualName`."""
        return f"{cls.__module__}:{cls.__qualname__}"

    @property
    def context(self) -> JobContext:
        """Where and how this run happens: partition, queue, node, retry count...

        Set by the node (or `roger_cluster.testing.InlineClient`) just before
        `perform`, so it is always there inside `perform` and the callbacks;
        reading it on a job that is not running raises `JobError`
        (`has_context` tells without raising).
        """
        if self._context is None:
            raise JobError(
                f"{self!r} has no context: it is set just before perform() runs, on a node"
                " or under testing.InlineClient"
            )
        return self._context

    @context.setter
    def context(self, context: JobContext | None) -> None:
        self._context = context

    @property
    def has_context(self) -> bool:
        """Whether `context` is set: the job is running (or ran) on a node."""
        return self._context is not None

    @property
    def cancelled(self) -> bool:
        """True once the node asked this job to stop (cancelled, timed out, shutting
        down); a long sync job should poll it and return early."""
        return self._stop_requested

    def request_stop(self) -> None:
        """Set `cancelled`; the node calls it, jobs read it."""
        self._stop_requested = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "queue_type" in cls.__dict__:
            warnings.warn(
                f"{cls.__qualname__} overrides queue_type(args), the former name of queue_for(args):"
                " it still decides the queue, but rename it",
                DeprecationWarning,
                stacklevel=2,
            )

    def queue_for(self, args: Any) -> str:
        """The queue of the partition this job goes to; `queue` unless overridden."""
        if type(self).queue_type is not Job.queue_type:  # a subclass written before the rename
            return self.queue_type(args)
        return self.queue

    def queue_type(self, args: Any) -> str:
        """Deprecated name of `queue_for` (a queue *type* is quorum or classic); an
        override of it is still called by `queue_for`, with a DeprecationWarning when
        the class is defined."""
        if type(self).queue_for is not Job.queue_for:
            return self.queue_for(args)
        return self.queue

    def queue_key(self, args: Any) -> str | None:
        """At most one queued job per key; None for no uniqueness."""
        return None

    def execution_key(self, args: Any) -> str | None:
        """At most one running job per key; None for no serialization."""
        return None

    def perform(self, args: Any) -> Any:
        """The work. Override as `async def` or `def`."""
        raise NotImplementedError(f"{self.path()} does not define perform()")

    @classmethod
    def is_async(cls) -> bool:
        """Whether `perform` is a coroutine function (else it runs in a thread)."""
        cached = cls.__dict__.get("_is_async")
        if cached is None:  # asked once per class: inspect is slow for the hot path
            cached = inspect.iscoroutinefunction(cls.perform)
            cls._is_async = cached
        return bool(cached)

    def __repr__(self) -> str:
        return f"<{self.path()} id={self.id}>"


class JobRegistry:
    """The job classes a node may run, by `module:Class` name."""

    def __init__(self, classes: Mapping[str, type[Job]]) -> None:
        self._classes = dict(classes)

    @classmethod
    def from_modules(cls, modules: Iterable[str]) -> JobRegistry:
        """Import each module and allow the Job subclasses it defines.

        Raises ConfigError for a module that cannot be imported, so a typo in
        `--jobs` stops the node at start instead of burying every job later.
        """
        classes: dict[str, type[Job]] = {}
        for name in modules:
            try:
                module = importlib.import_module(name)
            except Exception as e:  # any import-time failure is a config problem
                raise ConfigError(f"cannot import job module {name!r}: {e}") from e
            for obj in vars(module).values():
                if _defined_job(obj, name):
                    check_queue(obj.queue)
                    classes[obj.path()] = obj
        return cls(classes)

    def resolve(self, path: str) -> type[Job]:
        """The allowed class named `path`, or UnknownJob."""
        try:
            return self._classes[path]
        except KeyError:
            raise UnknownJob(f"job class {path!r} is not allowed on this node") from None

    def __contains__(self, path: object) -> bool:
        return path in self._classes

    def __len__(self) -> int:
        return len(self._classes)

    def longest_time_limit(self) -> float | None:
        """The largest `max_execution_time` of the classes; None if one has no limit."""
        limits = [cls.max_execution_time for cls in self._classes.values()]
        if not limits or None in limits:
            return None
        return max(limit for limit in limits if limit is not None)

    def names(self) -> list[str]:
        """The allowed class names, sorted."""
        return sorted(self._classes)


def _defined_job(obj: object, module: str) -> bool:
    return isinstance(obj, type) and issubclass(obj, Job) and obj is not Job and obj.__module__ == module
