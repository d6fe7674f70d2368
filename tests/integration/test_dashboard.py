"""The dashboard, in a real headless browser against a real cluster.

The browser is Debian's chromium driven by Playwright (`scripts/setup`
installs both; Playwright's own browser downloads are never used). The page
must show what the Client sees, keep itself current without a reload, and
change the cluster only after the operator confirmed; the HTTP API must
answer bad input with a JSON error and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Dialog, Page, async_playwright

from roger_cluster import Client, Schedule
from roger_cluster.dashboard import DashboardServer
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import events
from roger_cluster.testing.rogerctl import start_rogerctl
from roger_cluster.testing.servers import EtcdEndpoint, RabbitEndpoint
from tests import jobs

UI_TIMEOUT_MS = 15_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium() -> str:
    """The system chromium; the run fails (never skips) without one, saying how to get it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        pytest.fail("no chromium on PATH: run scripts/setup (it installs Debian's chromium)")
    return found


@pytest.fixture
async def dashboard(roger_client: Client) -> AsyncIterator[DashboardServer]:
    """The dashboard for the test's cluster, in this process, on a free port."""
    async with DashboardServer(roger_client, "127.0.0.1", 0) as server:
        yield server


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A headless chromium page; closed, with its browser, after the test."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            await browser.close()


def http(
    server: DashboardServer,
    method: str,
    path: str,
    body: object = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """A blocking request to the dashboard (run it in a thread: the server shares our loop)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        server.url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


async def call(
    server: DashboardServer, method: str, path: str, body: object = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    return await asyncio.to_thread(http, server, method, path, body, headers)


def fetch_text(url: str, **headers: str) -> str:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        text: str = response.read().decode()
        return text


def status_of(url: str, **headers: str) -> int:
    try:
        fetch_text(url, **headers)
    except urllib.error.HTTPError as e:
        e.close()
        return e.code
    return 200


def save_screenshot(shot: bytes, tmp_path: Path) -> None:
    (tmp_path / "dashboard.png").write_bytes(shot)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard.png").write_bytes(shot)


async def test_a_new_partition_appears_live_and_pause_and_cancel_act_only_after_confirmation(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    dashboard: DashboardServer,
    page: Page,
    tmp_path: Path,
) -> None:
    p, ledger = roger_partition, tmp_path / "ledger"
    node = await node_factory.start(jobs="tests.jobs")
    await page.goto(dashboard.url)
    await page.wait_for_selector(f'.node[data-node="{node.name}"]')

    # Started after the page loaded: it shows up without a reload.
    await roger_client.start_partition(p, {"default": 2, "other": 1})
    default = f'tr.queue[data-partition="{p}"][data-queue="default"]'
    other = f'tr.queue[data-partition="{p}"][data-queue="other"]'
    await page.wait_for_selector(f'{default}[data-paused="false"]')
    await page.wait_for_function(
        "([node, p]) => document.querySelector(`.node[data-node='${node}']`).textContent.includes(p)",
        arg=[node.name, p],
    )

    asked: list[str] = []

    async def answer(dialog: Dialog, accept: bool) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if accept else dialog.dismiss())

    # Dismissed: nothing is sent.
    page.once("dialog", lambda d: asyncio.ensure_future(answer(d, accept=False)))
    await page.click(f"{other} button.pause")
    await eventually(lambda: len(asked) == 1, timeout=5)
    assert asked[0].startswith(f"Pause queue other of {p}")

    # Accepted: paused in etcd, and the page shows it.
    page.once("dialog", lambda d: asyncio.ensure_future(answer(d, accept=True)))
    await page.click(f"{default} button.pause")

    async def paused() -> bool:
        return (p, "default") in await roger_client.paused_queues()

    await eventually(paused, timeout=10)
    await page.wait_for_selector(f'{default}[data-paused="true"] button.resume')
    assert (p, "other") not in await roger_client.paused_queues()
    assert "pause: done" in (await page.inner_text("#message"))

    # A running job, on its node's card, cancelled from there.
    job = jobs.Record.create({"ledger": str(ledger), "sleep": 60})
    await roger_client.enqueue(job, p, "other")
    row = f'.node[data-node="{node.name}"] tr.job[data-job-id="{job.id}"]'
    await page.wait_for_selector(row)
    save_screenshot(await page.screenshot(full_page=True), tmp_path)
    page.once("dialog", lambda d: asyncio.ensure_future(answer(d, accept=True)))
    await page.click(f"{row} button.cancel")
    await eventually(lambda: [e["id"] for e in events(ledger, "stopped")] == [job.id], timeout=15)
    await page.wait_for_selector(row, state="detached")
    assert asked[-1].startswith(f"Cancel job {job.id}")


async def test_schedules_are_listed_with_their_next_and_last_tick_and_paused_from_the_page(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    dashboard: DashboardServer,
    page: Page,
    tmp_path: Path,
) -> None:
    p = roger_partition
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 2})
    await page.goto(dashboard.url)
    await page.wait_for_selector("#schedules >> text=no schedule")
    args = {"ledger": str(tmp_path / "ledger")}
    await roger_client.put_schedule(Schedule("beat", p, "tests.jobs:Ticked", args, every=1))
    row = 'tr.schedule[data-schedule="beat"]'
    # It shows up without a reload, and so does the node that fired its last tick.
    await page.wait_for_selector(f'{row}[data-paused="false"] >> text="{node.name}"')
    assert "every 1s" in await page.inner_text(row)
    assert await page.inner_text(f"{row} td.next") != "-"

    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.click(f"{row} button.pause-schedule")

    async def paused() -> bool:
        return (await roger_client.get_schedule("beat")).paused

    await eventually(paused, timeout=10)
    await page.wait_for_selector(f'{row}[data-paused="true"] button.resume-schedule')
    assert await page.inner_text(f"{row} td.next") == "-"
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.click(f"{row} button.resume-schedule")
    await page.wait_for_selector(f'{row}[data-paused="false"]')
    assert not await paused()
    status, answer = await call(dashboard, "POST", "/api/actions/pause_schedule", {"schedule": "nosuch"})
    assert (status, answer["error"]) == (404, "no schedule named 'nosuch'")


async def test_start_retry_buried_and_stop_from_the_page(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    dashboard: DashboardServer,
    page: Page,
) -> None:
    p = roger_partition
    await node_factory.start(jobs="tests.jobs")
    await page.goto(dashboard.url)
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))

    # Bad input typed in the form: the server's error, on the page; nothing started.
    await page.fill("#start-name", p)
    await page.fill("#start-queues", "default=ten")
    await page.click("#start-form button")
    await page.wait_for_selector("#message.error >> text=must be a whole number, got 'ten'")
    assert await roger_client.partitions() == []

    await page.fill("#start-queues", "default=1")
    await page.click("#start-form button")
    row = f'tr.queue[data-partition="{p}"][data-queue="default"]'
    await page.wait_for_selector(row)
    assert [(s.name, dict(s.queues)) for s in await roger_client.partitions()] == [(p, {"default": 1})]

    # A job that fails is buried; paused, the queue keeps it once retried.
    await roger_client.enqueue(jobs.Fails.create({"ledger": "/dev/null"}), p)
    await page.wait_for_selector(f'{row} td.buried >> text="1"', timeout=20_000)
    await roger_client.pause_queue(p, "default")
    await page.wait_for_selector(f'{row}[data-paused="true"] td.consumers >> text="0"')
    await page.click(f"{row} button.retry-buried")
    await page.wait_for_selector(f'{row} td.buried >> text="0"')
    stats = await (await roger_client.broker()).stats(queue_name(p, "default"))
    assert stats is not None and stats.ready == 1

    await page.click(f'.partition[data-partition="{p}"] button.stop-partition')
    await page.wait_for_selector(f'.partition[data-partition="{p}"]', state="detached")
    assert await roger_client.partitions() == []


async def test_with_a_token_the_browser_signs_in_and_its_actions_carry_the_csrf_token(
    roger_client: Client, roger_partition: str, page: Page
) -> None:
    token = "browser-" + "t" * 20
    async with DashboardServer(roger_client, "127.0.0.1", 0, token=token) as server:
        await page.goto(server.url)
        await page.fill('input[name="token"]', "not-the-token-at-all")
        await page.click('form button[type="submit"]')
        await page.wait_for_selector("text=wrong token")
        await page.fill('input[name="token"]', token)
        await page.click('form button[type="submit"]')
        await page.wait_for_selector("#start-form")  # signed in: the dashboard itself
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await page.fill("#start-name", roger_partition)
        await page.fill("#start-queues", "default=1")
        await page.click("#start-form button")
        await page.wait_for_selector(f'tr.queue[data-partition="{roger_partition}"]')
        assert [s.name for s in await roger_client.partitions()] == [roger_partition]
        # The same action from the same browser session, without the page's CSRF token: refused.
        refused = await page.evaluate(
            """async (p) => (await fetch("/api/actions/stop_partition", {
                method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({partition: p}),
            })).status""",
            roger_partition,
        )
        assert refused == 403
        assert [s.name for s in await roger_client.partitions()] == [roger_partition]


async def test_actions_with_bad_input_get_a_json_error_and_change_nothing(
    roger_client: Client, roger_partition: str, dashboard: DashboardServer
) -> None:
    p = roger_partition
    await roger_client.start_partition(p, {"default": 1})
    cases: list[tuple[int, str, object, dict[str, str], str]] = [
        (404, "/api/actions/pause", {"partition": "nosuchpartition", "queue": "default"}, {}, "no partition"),
        (404, "/api/actions/pause", {"partition": p, "queue": "nosuchqueue"}, {}, "has no queue"),
        (400, "/api/actions/pause", {"partition": "my-app", "queue": "default"}, {}, "is not allowed"),
        (400, "/api/actions/pause", {"partition": p}, {}, "missing field 'queue'"),
        (400, "/api/actions/pause", {"partition": 7, "queue": "default"}, {}, "must be a str"),
        (400, "/api/actions/pause", b"{not json", {}, "not valid JSON"),
        (400, "/api/actions/pause", [p, "default"], {}, "must be a JSON object"),
        (
            415,
            "/api/actions/pause",
            {"partition": p, "queue": "default"},
            {"Content-Type": "text/plain"},
            "Content-Type: application/json",
        ),
        (
            403,
            "/api/actions/pause",
            {"partition": p, "queue": "default"},
            {"Origin": "http://evil.test"},
            "only",
        ),
        (403, "/api/actions/pause", {"partition": p, "queue": "default"}, {"Host": "evil.test"}, "loopback"),
        (404, "/api/actions/frobnicate", {}, {}, "no action 'frobnicate'"),
        (400, "/api/actions/start_partition", {"partition": p, "queues": {"default": 0}}, {}, "between 1"),
        (400, "/api/actions/start_partition", {"partition": p, "queues": {}}, {}, "at least one queue"),
        (400, "/api/actions/stop_partition", {"partition": p, "drain": True, "timeout": -1}, {}, "timeout"),
        (404, "/api/actions/stop_partition", {"partition": "nosuchpartition"}, {}, "nosuchpartition"),
        (400, "/api/actions/cancel", {"partition": p, "job_id": "a/b"}, {}, "job id"),
    ]
    for status, path, body, headers, message in cases:
        got, answer = await call(dashboard, "POST", path, body, **headers)
        assert (got, set(answer)) == (status, {"error"}), (path, body, headers, answer)
        assert message in str(answer["error"]), (path, body, answer)
        assert "Traceback" not in str(answer["error"])

    assert await call(dashboard, "GET", "/api/actions/pause") == (405, {"error": "actions are POST requests"})
    assert (await call(dashboard, "GET", "/nothing"))[0] == 404
    assert await roger_client.paused_queues() == frozenset()
    assert [(s.name, dict(s.queues)) for s in await roger_client.partitions()] == [(p, {"default": 1})]

    # The same request done right works.
    ok, answer = await call(dashboard, "POST", "/api/actions/pause", {"partition": p, "queue": "default"})
    assert (ok, answer) == (
        200,
        {"ok": True, "action": "pause", "partition": p, "queue": "default", "paused": True},
    )
    assert await roger_client.paused_queues() == {(p, "default")}


async def test_the_state_endpoint_shows_nodes_partitions_queues_and_rates(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, dashboard: DashboardServer
) -> None:
    p = roger_partition
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 3})
    await roger_client.pause_queue(p, "default")

    async def state() -> dict[str, Any]:
        status, data = await call(dashboard, "GET", "/api/state")
        assert status == 200, data
        dashboard.snapshots.invalidate()
        return data

    data = await state()
    assert set(data) == {"time", "namespace", "management", "problems", "nodes", "partitions", "schedules"}
    assert data["namespace"] == roger_client.namespace
    assert data["management"] is True and data["problems"] == []
    [n] = data["nodes"]
    assert (n["name"], n["partitions"], n["running"], n["running_count"], n["unreachable"]) == (
        node.name,
        [p],
        [],
        0,
        None,
    )
    assert {"host", "pid", "version", "started_at", "labels"} <= set(n)
    [part] = data["partitions"]
    assert (part["name"], part["draining"], part["nodes"], part["labels"]) == (p, False, [], [])
    [queue] = part["queues"]
    assert (queue["name"], queue["rabbitmq_queue"], queue["concurrency"], queue["paused"]) == (
        "default",
        queue_name(p, "default"),
        3,
        True,
    )
    assert queue["buried"] == 0
    assert set(queue["rates"]) == {"publish", "deliver", "ack"}
    assert all(isinstance(v, float) for v in queue["rates"].values())

    async def queue_now() -> dict[str, Any]:
        q: dict[str, Any] = (await state())["partitions"][0]["queues"][0]
        return q

    # Paused: once the node has let go of the queue, what is enqueued stays there, counted.
    await eventually(lambda: queue_now_is(queue_now, consumers=0, consumer_nodes=[]), timeout=15)
    await roger_client.enqueue_many([jobs.Record.create({"ledger": "/dev/null"}) for _ in range(4)], p)
    await eventually(lambda: queue_now_is(queue_now, ready=4, unacked=0), timeout=15)

    # The event stream pushes the same state.
    async with aiohttp.ClientSession() as http, http.get(dashboard.url + "api/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        async for line in response.content:
            if line.startswith(b"data: "):
                pushed = json.loads(line.removeprefix(b"data: "))
                break
    assert pushed["namespace"] == roger_client.namespace and pushed["partitions"][0]["name"] == p

    # Rates are the console's: messages per second between the management API's
    # last two samples, so they show a steady stream, not a one-off burst.
    async def published() -> bool:
        await roger_client.enqueue(jobs.Record.create({"ledger": "/dev/null"}), p)
        return bool((await queue_now())["rates"]["publish"] > 0)

    await eventually(published, timeout=20, message="publish rate of a queue enqueued to")


async def queue_now_is(read: Callable[[], Awaitable[dict[str, Any]]], **expected: object) -> bool:
    q = await read()
    return all(q[k] == v for k, v in expected.items())


async def test_without_the_management_api_the_state_says_unknown_instead_of_failing(
    roger_etcd: EtcdEndpoint,
    roger_rabbitmq: RabbitEndpoint,
    roger_namespace: str,
    roger_client: Client,
    roger_partition: str,
) -> None:
    await roger_client.start_partition(roger_partition, {"default": 1})
    blind = Client(
        roger_rabbitmq.amqp_url, roger_etcd.endpoints, roger_namespace, management_url="http://127.0.0.1:1"
    )
    async with blind, DashboardServer(blind, "127.0.0.1", 0) as server:
        status, data = await call(server, "GET", "/api/state")
    assert status == 200, data
    assert data["management"] is False
    assert any("management API unreachable" in str(problem) for problem in data["problems"])
    [queue] = data["partitions"][0]["queues"]
    assert (queue["ready"], queue["unacked"], queue["rates"], queue["consumer_nodes"]) == (
        0,
        None,
        None,
        None,
    )


async def test_rogerctl_dashboard_serves_until_sigterm_then_exits_0(node_factory: NodeFactory) -> None:
    process = await start_rogerctl(node_factory, "dashboard", "--port", "0")
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("dashboard on http://127.0.0.1:"), line
        assert "no authentication" in line
        url = line.split()[2].rstrip("/")
        page = await asyncio.to_thread(fetch_text, url + "/")
        assert "<title>roger_cluster dashboard</title>" in page
        assert json.loads(await asyncio.to_thread(fetch_text, url + "/api/state"))["nodes"] == []
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), 10)


async def test_rogerctl_dashboard_with_a_token_file_wants_the_token(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    token = "s3cret-" + "x" * 20
    (tmp_path / "token").write_text(token + "\n")
    process = await start_rogerctl(
        node_factory, "dashboard", "--port", "0", "--token-file", str(tmp_path / "token")
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert "token required" in line, line
        url = line.split()[2].rstrip("/")
        assert await asyncio.to_thread(status_of, url + "/api/state") == 401
        assert await asyncio.to_thread(status_of, url + "/", Authorization="Bearer wrong") == 401
        state = await asyncio.to_thread(fetch_text, url + "/api/state", Authorization=f"Bearer {token}")
        assert json.loads(state)["nodes"] == []
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), 10)
