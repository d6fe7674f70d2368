"""Buried-job evidence: what the node writes is what the client reads back. No I/O."""

from __future__ import annotations

from roger_cluster.evidence import Evidence, failure_headers, refusal_headers, without_evidence


def test_what_a_burial_writes_the_client_reads_back() -> None:
    try:
        raise ValueError("no such mailbox")
    except ValueError as e:
        headers = failure_headers("app.jobs:SendMail", e, "n1")
    evidence = Evidence.from_headers(headers)
    assert evidence.reason == "ValueError: no such mailbox"
    assert evidence.error_type == "ValueError"
    assert evidence.node == "n1"
    assert evidence.traceback is not None and "no such mailbox" in evidence.traceback
    assert evidence.failed_at is not None


def test_a_refused_message_says_why_and_where() -> None:
    evidence = Evidence.from_headers(refusal_headers("class x:Y is not allowed", "n2"))
    assert (evidence.reason, evidence.node, evidence.error_type) == ("class x:Y is not allowed", "n2", None)


def test_a_message_rabbitmq_dead_lettered_by_itself_is_explained_by_its_x_death() -> None:
    headers = {"x-death": [{"reason": b"delivery_limit", "queue": b"p-default"}]}
    assert "delivery limit" in Evidence.from_headers(headers).reason
    headers = {"x-death": [{"reason": b"expired", "queue": b"p-default"}]}
    assert Evidence.from_headers(headers).reason == "dead-lettered by RabbitMQ from p-default: expired"
    assert Evidence.from_headers({}).reason == ""


def test_a_retried_buried_job_carries_no_evidence() -> None:
    headers = {**refusal_headers("why", "n1"), "x-death": [], "x-trace": "kept"}
    assert without_evidence(headers) == {"x-trace": "kept"}
