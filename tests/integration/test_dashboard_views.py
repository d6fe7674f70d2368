"""The dashboard's views of issue 17 in a real headless browser against a real cluster: the
throughput charts, the history table, a job's page, the buried jobs of a queue (one retried
and one deleted from the page, checked on the servers) and the nodes' jobs/s.

Screenshots of each view are kept in the test's temporary folder and in
`test-artifacts/` (git-ignored); the test prints where. The browser is driven as in
test_dashboard.py (Debian's chromium through Playwright).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright

from roger_cluster import Client, JobEvent, Schedule
from roger_cluster.dashboard import DashboardServer
from roger_cluster.testing import NodeFactory, eventually
from tests import jobs
from tests.integration.test_dashboard import ARTIFACTS, UI_TIMEOUT_MS, call, chromium

KINDS = "rows => rows.map(r => r.dataset.kind)"


@pytest.fixture
async def board(roger_client: Client) -> AsyncIterator[DashboardServer]:
    async with DashboardServer(roger_client, "127.0.0.1", 0) as server:
        yield server


@pytest.fixture
async def browser_page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
            yield page
        finally:
            await browser.close()


async def _ended(client: Client, job_id: str, kind: str, count: int = 1) -> list[JobEvent]:
    async def done() -> list[JobEvent]:
        found = await client.job_events(job_id)
        assert [e.kind for e in found].count(kind) >= count, [e.kind for e in found]
        return found

    return await eventually(done, timeout=30, interval=0.3)


async def _shot(page: Page, name: str, tmp_path: Path) -> Path:
    shot = await page.screenshot(full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    for folder in (tmp_path, ARTIFACTS):
        (folder / f"dashboard-{name}.png").write_bytes(shot)
    print(f"screenshot: {ARTIFACTS / f'dashboard-{name}.png'} (and {tmp_path})")
    return ARTIFACTS / f"dashboard-{name}.png"


async def test_each_view_loads_and_buried_jobs_are_retried_and_deleted_from_the_page(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    board: DashboardServer,
    browser_page: Page,
    ledger: Path,
    tmp_path: Path,
) -> None:
    p, page = roger_partition, browser_page
    node = await node_factory.start(jobs="tests.jobs", ROGER_RETRY_LEVELS="1,1")
    await roger_client.start_partition(p, {"default": 4})
    args = {"ledger": str(ledger)}
    ok = [jobs.Record.create(args) for _ in range(5)]
    to_retry, to_delete = jobs.Fails.create(args), jobs.Fails.create({**args, "note": "delete me"})
    story = jobs.AlwaysFails.create({**args, "order": 1042, "customer": "ada@example.com"})
    await roger_client.enqueue_many([*ok, to_retry, to_delete, story], p)
    for job in (to_retry, to_delete, story):
        await _ended(roger_client, job.id, "buried")
    await roger_client.put_schedule(Schedule("hourly_report", p, "tests.jobs:Ticked", args, every=3600))

    # Overview: a chart per queue from the history stream, the node's jobs/s.
    await page.goto(board.url)
    chart = f'.chart[data-partition="{p}"][data-queue="default"]'
    await page.wait_for_function(
        "sel => { const c = document.querySelector(sel); return c && +c.dataset.succeeded >= 5 && "
        "+c.dataset.failed >= 5 }",
        arg=chart,
    )
    assert await page.locator(f"{chart} svg rect").count() >= 2
    rate = await page.inner_text(f'.node[data-node="{node.name}"] .rate')
    assert rate.endswith("jobs/s") and float(rate.split()[0]) > 0, rate
    # Schedules: the next fire shown, paused from the page.
    schedule = 'tr.schedule[data-schedule="hourly_report"]'
    assert await page.inner_text(f'{schedule}[data-paused="false"] td.next') != "-"
    await _shot(page, "overview", tmp_path)
    await page.click(f"{schedule} button.pause-schedule")

    async def paused() -> bool:
        return (await roger_client.get_schedule("hourly_report")).schedule.paused

    await eventually(paused, timeout=10)
    await page.wait_for_selector(f'{schedule}[data-paused="true"] button.resume-schedule')

    # History: the form filters by state; every failed attempt is listed, linked to its job.
    await page.click('nav a[data-view="history"]')
    await page.fill("#h-partition", p)
    await page.select_option("#h-state", "failed")
    await page.click("#history-form button[type=submit]")
    await page.wait_for_selector(f'#history-table tr.event[data-job-id="{story.id}"][data-kind="buried"]')
    kinds = await page.eval_on_selector_all("#history-table tr.event", KINDS)
    assert sorted(kinds) == ["buried"] * 3 + ["retried"] * 2, kinds
    await _shot(page, "history", tmp_path)

    # The job page, found by id: every event with its node, attempt and error, the traceback, the args.
    await page.fill("#job-search-id", story.id)
    await page.click("#job-search button")
    await page.wait_for_selector(f'#job[data-job-id="{story.id}"] #timeline')
    steps = await page.eval_on_selector_all("#timeline tr.event", KINDS)
    assert steps == ["started", "retried", "started", "retried", "started", "buried"], steps
    timeline = await page.inner_text("#timeline")
    assert node.name in timeline and "ValueError: always fails" in timeline
    assert "ada@example.com" in await page.inner_text("#job-args")
    assert await page.locator("#timeline details").count() == 3  # a traceback per failed attempt
    await page.click("#timeline details >> nth=2")
    assert "Traceback" in await page.inner_text("#timeline details >> nth=2")
    await _shot(page, "job", tmp_path)

    # The buried jobs of the queue, reached from the overview's count: one retried, one deleted.
    await page.click('nav a[data-view="overview"]')
    await page.click(f'tr.queue[data-partition="{p}"][data-queue="default"] td.buried a')
    await page.wait_for_selector(f'#buried tr.buried-job[data-job-id="{to_delete.id}"]')
    assert await page.locator("#buried tr.buried-job").count() == 3
    await _shot(page, "buried", tmp_path)

    await page.click(f'#buried tr.buried-job[data-job-id="{to_retry.id}"] button.retry-one')
    await _ended(roger_client, to_retry.id, "buried", count=2)  # put back, ran again, failed again

    await page.click(f'#buried tr.buried-job[data-job-id="{to_delete.id}"] button.delete-one')

    async def deleted() -> bool:
        ids = [b.id for b in await roger_client.buried(p, "default")]
        assert to_delete.id not in ids and to_retry.id in ids and story.id in ids, ids
        return True

    await eventually(deleted, timeout=15)
    await page.wait_for_selector(f'#buried tr.buried-job[data-job-id="{to_delete.id}"]', state="detached")
    assert "1 deleted" in await page.inner_text("#message")


async def test_the_view_endpoints_answer_json(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    board: DashboardServer,
    ledger: Path,
) -> None:
    p = roger_partition
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 2})
    failed = jobs.Fails.create({"ledger": str(ledger), "secret": "s3"})
    await roger_client.enqueue(failed, p)
    await _ended(roger_client, failed.id, "buried")

    status, job = await call(board, "GET", f"/api/jobs/{failed.id}")
    assert status == 200, job
    assert job["state"] == f"buried in {p}-default.buried"
    assert [e["kind"] for e in job["events"]] == ["started", "buried"]
    assert job["args"]["secret"] == "s3" and job["buried"]["error_type"] == "RuntimeError"

    status, unknown = await call(board, "GET", "/api/jobs/nosuchjob")
    assert status == 200 and unknown["events"] == [] and unknown["state"].startswith("unknown")

    status, found = await call(board, "GET", f"/api/history?partition={p}&state=buried&since=10m")
    assert status == 200 and [e["job_id"] for e in found["events"]] == [failed.id]
    status, found = await call(board, "GET", f"/api/history?partition={p}&class=Record")
    assert status == 200 and found["events"] == []

    status, buried = await call(board, "GET", f"/api/buried?partition={p}&queue=default")
    assert status == 200 and [b["id"] for b in buried["jobs"]] == [failed.id]
    status, missing = await call(board, "GET", f"/api/buried?partition={p}&queue=nope")
    assert status == 404, missing

    async def charted() -> dict[str, object]:
        status, charts = await call(board, "GET", "/api/throughput")
        assert status == 200 and charts["bucket"] == 10.0
        mine = [s for s in charts["series"] if s["partition"] == p]
        assert len(mine) == 1 and len(mine[0]["failed"]) == 90 and sum(mine[0]["failed"]) == 1, mine
        return charts

    await eventually(charted, timeout=10)

    body = {"partition": p, "queue": "default", "job_ids": ["nosuchjob"]}
    status, answer = await call(board, "POST", "/api/actions/delete_buried", body)
    assert status == 200 and answer["deleted"] == 0
    status, answer = await call(board, "POST", "/api/actions/delete_buried", {**body, "job_ids": [failed.id]})
    assert status == 200 and answer["deleted"] == 1
    assert await roger_client.buried(p, "default") == []


async def test_a_restarted_dashboard_shows_the_history_it_did_not_see(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    """The history lives in the stream, not in the dashboard: a new dashboard process (a
    new client, new server) shows what happened before it started, charts included."""
    p = roger_partition
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 2})
    done = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue(done, p)
    await _ended(roger_client, done.id, "succeeded")

    def fresh_client() -> Client:
        return Client(
            amqp_config=roger_client.amqp_config,
            etcd_config=roger_client.etcd_config,
            management_url=roger_client.management_url,
        )

    for _ in range(2):  # the first dashboard, then one started after it stopped
        async with fresh_client() as client, DashboardServer(client, "127.0.0.1", 0) as board:
            status, job = await call(board, "GET", f"/api/jobs/{done.id}")
            assert status == 200 and [e["kind"] for e in job["events"]] == ["started", "succeeded"], job

            async def charted(board: DashboardServer = board) -> bool:
                status, charts = await call(board, "GET", "/api/throughput")
                mine = [s for s in charts["series"] if s["partition"] == p]
                assert status == 200 and len(mine) == 1 and sum(mine[0]["succeeded"]) == 1, mine
                return True

            await eventually(charted, timeout=10)
