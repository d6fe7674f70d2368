"""Job callbacks: hooks an application gives the node (`--callbacks module:object`).

The object may define any of `before_run(job)`, `after_run(job, result)`,
`on_error(job, error)`, `on_cancel(job)`, `on_buried(job, error)`, each plain
or `async`. A callback that raises is logged and ignored: it never changes
what happens to the job or its message.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from typing import Any

from .errors import ConfigError
from .job import Job

log = logging.getLogger(__name__)

HOOKS = ("before_run", "after_run", "on_error", "on_cancel", "on_buried")


def load_callbacks(path: str) -> object:
    """The object named `module:attribute`; ConfigError if it cannot be had."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"--callbacks {path!r} must look like module:object")
    try:
        target: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load callbacks {path!r}: {e}") from e
    if not any(callable(getattr(target, hook, None)) for hook in HOOKS):
        raise ConfigError(f"callbacks {path!r} define none of {', '.join(HOOKS)}")
    return target


class Callbacks:
    """Calls the hooks an object defines; missing hooks cost nothing."""

    def __init__(self, target: object | None = None) -> None:
        self._hooks = {hook: fn for hook in HOOKS if callable(fn := getattr(target, hook, None))}

    def __contains__(self, hook: object) -> bool:
        return hook in self._hooks

    async def fire(self, hook: str, job: Job, *args: Any) -> None:
        """Call `hook(job, *args)` if defined; log, never raise, if it fails."""
        fn = self._hooks.get(hook)
        if fn is None:
            return
        try:
            result = fn(job, *args)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("callback %s failed for job %s (%s)", hook, job.id, job.path())
