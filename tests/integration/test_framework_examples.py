"""The examples of docs/frameworks.md run against the real servers: Django (an on_commit enqueue
happens after the commit and never after a rollback), FastAPI (the async client in the lifespan,
a request through the ASGI app) and a plain script. The Flask one: test_wsgi_app.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from roger_cluster import Client, SyncClient
from roger_cluster.testing.etcd import EtcdEndpoint
from roger_cluster.testing.rabbitmq import RabbitEndpoint

REPO = Path(__file__).resolve().parents[2]


def roger_env(rabbitmq: RabbitEndpoint, etcd: EtcdEndpoint, namespace: str, partition: str) -> dict[str, str]:
    return {
        "ROGER_AMQP_URL": rabbitmq.amqp_url,
        "ROGER_ETCD": etcd.endpoints,
        "ROGER_NAMESPACE": namespace,
        "ROGER_PARTITION": partition,
    }


async def queued_emails(client: Client, partition: str) -> list[str]:
    return [job.args["email"] for job in await client.queued(partition, "default")]


def django_signups(roger: SyncClient) -> list[tuple[str, int | str]]:
    """Three signups through the Django view, the second one a duplicate that rolls back."""
    import django
    from django.conf import settings
    from django.db import IntegrityError, connection
    from django.test import RequestFactory

    if not settings.configured:
        databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
        settings.configure(DATABASES=databases, INSTALLED_APPS=[], ALLOWED_HOSTS=["*"], USE_TZ=True)
        django.setup()
    from examples import django_app

    django_app.roger = roger  # the module's client, pointed at the test's cluster
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE account (email TEXT PRIMARY KEY)")
    results: list[tuple[str, int | str]] = []
    for email in ("a@example.com", "a@example.com", "b@example.com"):
        try:
            response = django_app.signup(RequestFactory().post("/signup", {"email": email}))
            results.append((email, response.status_code))
        except IntegrityError:
            results.append((email, "rolled back"))
    connection.close()
    return results


async def test_the_django_view_enqueues_on_commit_and_never_after_a_rollback(
    roger_client: Client,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    roger_partition: str,
) -> None:
    await roger_client.ensure_partition(roger_partition, {"default": 1})
    roger = SyncClient(
        roger_rabbitmq.amqp_url, roger_etcd.endpoints, roger_namespace, partition=roger_partition
    )
    try:
        results = await asyncio.to_thread(django_signups, roger)
    finally:
        await asyncio.to_thread(roger.close)
    assert results == [("a@example.com", 201), ("a@example.com", "rolled back"), ("b@example.com", 201)]
    assert await queued_emails(roger_client, roger_partition) == ["a@example.com", "b@example.com"]


async def asgi_post(app: Any, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One POST through an ASGI app, as a server would send it."""
    data = json.dumps(body).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "app": app,
    }  # fmt: skip
    received = [{"type": "http.request", "body": data, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return received.pop(0) if received else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(payload)


async def test_the_fastapi_app_opens_the_async_client_in_its_lifespan_and_enqueues(
    roger_client: Client,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    roger_partition: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in roger_env(roger_rabbitmq, roger_etcd, roger_namespace, roger_partition).items():
        monkeypatch.setenv(name, value)
    from examples.fastapi_app import app

    async with app.router.lifespan_context(app):  # what uvicorn runs at start and stop
        assert (await roger_client.partition_spec(roger_partition)).queues == {"default": 10}
        status, body = await asgi_post(app, "/signup", {"email": "c@example.com"})
        assert status == 202, body
        bad, _ = await asgi_post(app, "/signup", {"mail": "no email field"})
        assert bad == 422
    assert await queued_emails(roger_client, roger_partition) == ["c@example.com"]
    assert [job.id for job in await roger_client.queued(roger_partition, "default")] == [body["job"]]


async def test_the_plain_script_enqueues_with_a_sync_client_from_the_environment(
    roger_client: Client,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    roger_partition: str,
) -> None:
    await roger_client.ensure_partition(roger_partition, {"default": 1})
    env = os.environ | roger_env(roger_rabbitmq, roger_etcd, roger_namespace, roger_partition)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "examples.script", "d@example.com", "e@example.com"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = [line.split() for line in done.stdout.splitlines()]
    assert [email for _, email in printed] == ["d@example.com", "e@example.com"]
    assert sorted(await queued_emails(roger_client, roger_partition)) == ["d@example.com", "e@example.com"]
