"""Tracing: with OpenTelemetry installed, the W3C trace context goes from `enqueue` to
`perform`, which runs in a span with the job's attributes (docs/tracing.md).

The job runs in a roger-node process: its job module (`tests/otel_jobs.py`) installs the
SDK there, as an application would, and writes the span `perform` runs in to the ledger.
The client's span is taken here with the SDK's in-memory exporter."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from roger_cluster import Client
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import events
from tests import otel_jobs


async def test_one_trace_goes_from_the_clients_span_to_the_jobs_span(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start(jobs="tests.otel_jobs")
    await roger_client.start_partition(roger_partition, {"default": 1})
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    job = otel_jobs.Traced.create({"ledger": str(ledger)})
    with provider.get_tracer("test").start_as_current_span("web request"):
        await roger_client.enqueue(job, roger_partition)
    (client_span,) = exporter.get_finished_spans()
    assert client_span.context is not None

    (seen,) = await eventually(lambda: events(ledger, "span"), timeout=15)
    assert seen["trace_id"] == f"{client_span.context.trace_id:032x}"  # one trace
    assert seen["parent_id"] == f"{client_span.context.span_id:016x}"  # the client's span is its parent
    assert seen["span_id"] != seen["parent_id"]
    assert (seen["name"], seen["kind"]) == ("perform tests.otel_jobs:Traced", "CONSUMER")
    assert seen["attributes"] == {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": f"{roger_partition}-default",
        "roger.job.class": "tests.otel_jobs:Traced",
        "roger.job.id": job.id,
        "roger.partition": roger_partition,
        "roger.queue": "default",
        "roger.job.attempt": 1,
        "roger.node": "node1",
    }


async def test_without_a_current_span_a_job_message_carries_no_trace_headers(
    roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await roger_client.start_partition(roger_partition, {"default": 1})
    job = otel_jobs.Traced.create({"ledger": str(ledger)})
    await roger_client.enqueue(job, roger_partition)
    (queued,) = await roger_client.queued(roger_partition, "default")
    assert queued.id == job.id
    broker = await roger_client.broker()
    (peeked,) = await broker.peek(f"{roger_partition}-default", 1)
    assert "traceparent" not in peeked.headers
