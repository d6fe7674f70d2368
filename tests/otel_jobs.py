"""A job module for tracing tests (`--jobs tests.otel_jobs`): importing it installs the
OpenTelemetry SDK in the node, as an application would in its own jobs or callbacks
module, and its job writes the span it runs in to the ledger for the test to read."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from roger_cluster import Job
from roger_cluster.testing.ledger import record

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)


class Traced(Job):
    """Records the span `perform` runs in: its ids, parent, name, kind and attributes."""

    async def perform(self, args: Any) -> None:
        span = trace.get_current_span()
        assert isinstance(span, ReadableSpan), f"no SDK span around perform: {span!r}"
        context = span.get_span_context()
        record(
            args["ledger"],
            event="span",
            t=time.time(),
            id=self.id,
            name=span.name,
            kind=span.kind.name,
            trace_id=f"{context.trace_id:032x}",
            span_id=f"{context.span_id:016x}",
            parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
            attributes=dict(span.attributes or {}),
        )
