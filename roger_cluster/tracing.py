"""OpenTelemetry tracing, when it is installed: the trace context from `enqueue` to `perform`.

With `opentelemetry-api` importable (`pip install roger_cluster[otel]`), a
job's message carries the W3C trace context of the span current at its
enqueue (`traceparent`, `tracestate` headers), and the node runs `perform`
in a span of kind CONSUMER, child of that context, with the job's
attributes. Without it, the import below fails once, `ENABLED` is False,
and every call here returns at its first line: no cost on the hot path.

The API alone records nothing: the application installs the SDK and an
exporter in the processes it wants traced (its web app, its nodes: for
instance in the module named by `--callbacks` or `--jobs`). See
docs/tracing.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

try:
    from opentelemetry import propagate, trace
except ImportError:  # the optional extra is not installed
    ENABLED = False
else:
    ENABLED = True

TRACER_NAME = "roger_cluster"


def inject() -> dict[str, str] | None:
    """The headers carrying the current trace context, or None (no tracing, no span)."""
    if not ENABLED:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextlib.contextmanager
def job_span(headers: Mapping[str, Any] | None, name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
    """Run the body in a CONSUMER span named `name`, child of the trace context in the
    message `headers` (if any), with `attributes`; the span is current in the body."""
    if not ENABLED:
        yield None
        return
    carrier = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in (headers or {}).items()}
    parent = propagate.extract(carrier)
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=dict(attributes)
    ) as span:
        yield span


def ended(span: Any, ending: str, error: BaseException | None) -> None:
    """Mark how the job's attempt ended on its span: an attribute, and an error status
    with the exception for an attempt that raised."""
    if span is None:
        return
    span.set_attribute("roger.job.ending", ending)
    if error is not None:
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
