"""`bash benchmarks/run` / `python -m benchmarks`: every figure, one run, one broker, one table.

Order of work: the peers first (before any node of ours exists), then our nodes start and the
ceiling and our headline figures run in interleaved rounds, per queue type (bare each, bare
batched, ours; which goes first rotates), then the node matrix, the timings, and last, once our
nodes are gone, the growth figures. The table lists the sections in a fixed order whatever the
order of work. A phase that fails is reported (and makes the exit status 1) without stopping the
others; every queue and process is removed at the end, even after an error, SIGINT or SIGTERM.

Exit status: 0 when every phase ran and every job was counted exactly once (missed targets are
reported as FAIL in the table, not in the exit status); 1 otherwise; 2 for bad arguments; 143 after
SIGTERM and 130 after Ctrl-C, once everything the run started is stopped and deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import asdict
from pathlib import Path

import aio_pika

from roger_cluster import Client
from roger_cluster.testing.nodes import NodeFactory
from roger_cluster.testing.servers import EtcdServer

from . import delayed, figures, others, report, threads
from .rig import QUEUE_TYPES, RUN_ENV, Options, Rig, log, node_env, redact

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/run", description="roger_cluster's benchmark suite: one run, one table."
    )
    add = p.add_argument
    add("--jobs", type=int, help="jobs per drain and enqueue (default 20000; 5000 with --quick)")
    add("--quick", action="store_true", help="fewer rounds and samples: a few minutes, rougher figures")
    add("--rounds", type=int, help="rounds of the ceiling and headline figures, medians (default 3; 1 quick)")
    add("--amqp-url", default=os.environ.get("ROGER_AMQP_URL") or DEFAULT_AMQP_URL, help="RabbitMQ to use")
    add("--etcd", default="", help="etcd endpoints host:port[,...] (default: a private etcd in a temp dir)")
    add("--queue-type", choices=QUEUE_TYPES, default="quorum", help="of the node matrix and timings")
    add("--prefetch", type=int, default=100, help="concurrency of the headline drains (default %(default)s)")
    add("--concurrency", default="10,100", help="concurrencies of the node matrix (default %(default)s)")
    add("--nodes", default="1,2,3", help="node counts of the node matrix (default %(default)s)")
    add("--single", type=int, help="jobs enqueued one at a time (default 2000; 200 quick)")
    add("--samples", type=int, help="end-to-end latency samples (default 300; 50 quick)")
    add("--interval", type=float, default=0.02, help="seconds between latency jobs (default %(default)s)")
    add("--starts", type=int, help="partition starts timed (default 30; 10 quick)")
    add("--kills", type=int, help="nodes killed under a running job (default 5; 2 quick; 0: no failover)")
    add("--no-peers", dest="peers", action="store_false", help="skip Celery and Dramatiq")
    add("--peer-rounds", type=int, default=1, help="rounds of the peers (default %(default)s)")
    add(
        "--peer-cases", help="peers/run.py cases (default celery,dramatiq-1,dramatiq-2; quick: no dramatiq-2)"
    )
    add("--no-growth", dest="growth", action="store_false", help="skip benchmarks/bench_growth.py")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print the table in Markdown")
    out.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    return p


def numbers(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise SystemExit(f"--{what}: a comma-separated list of positive numbers, not {text!r}")
    return values


def options(args: argparse.Namespace) -> Options:
    quick = args.quick

    def pick(value: int | None, default: int, fast: int) -> int:
        return value if value is not None else (fast if quick else default)

    o = Options(
        jobs=pick(args.jobs, 20_000, 5_000),
        rounds=pick(args.rounds, 3, 1),
        quick=quick,
        queue_type=args.queue_type,
        amqp_url=args.amqp_url,
        etcd=args.etcd,
        prefetch=args.prefetch,
        concurrency=numbers(args.concurrency, "concurrency"),
        nodes=numbers(args.nodes, "nodes"),
        single=pick(args.single, 2_000, 200),
        samples=pick(args.samples, 300, 50),
        interval=args.interval,
        starts=pick(args.starts, 30, 10),
        kills=pick(args.kills, 5, 2),
        peers=args.peers,
        peer_rounds=args.peer_rounds,
        peer_cases=tuple(
            (args.peer_cases or ("celery,dramatiq-1" if quick else "celery,dramatiq-1,dramatiq-2")).split(",")
        ),
        growth=args.growth,
        output="json" if args.json else "markdown" if args.markdown else "text",
    )
    if o.jobs < 2 or o.rounds < 1 or o.prefetch < 1 or min(o.single, o.samples, o.starts) < 1 or o.kills < 0:
        raise SystemExit(
            "need --jobs >= 2, --rounds, --prefetch, --single, --samples, --starts >= 1, --kills >= 0"
        )
    if o.kills and max(o.nodes) < 2:
        raise SystemExit("the failover figure needs --nodes with at least 2")
    return o


@contextlib.asynccontextmanager
async def etcd_endpoints(o: Options, workdir: Path) -> AsyncIterator[str]:
    """The etcd to use: the one given, or a private one stopped afterwards."""
    if o.etcd:
        yield o.etcd
        return
    server = EtcdServer(workdir / "etcd")
    try:
        await asyncio.to_thread(server.start)
        yield server.endpoint.endpoints
    finally:
        server.cleanup()


@contextlib.asynccontextmanager
async def rig(o: Options, workdir: Path, etcd: str) -> AsyncIterator[Rig]:
    tag = f"bench{secrets.token_hex(4)}"
    amqp = await asyncio.wait_for(aio_pika.connect(o.amqp_url), 10)
    clients = {qt: Client(o.amqp_url, etcd, tag, queue_type=qt) for qt in QUEUE_TYPES}
    env = node_env() | {"ROGER_LOG_LEVEL": "info", "ROGER_BENCH_DIR": str(workdir / "records")}
    factory = NodeFactory(o.amqp_url, etcd, tag, workdir, jobs=("benchmarks.suite.jobs",), extra_env=env)
    (workdir / "records").mkdir()
    the_rig = Rig(o, tag, workdir, amqp, await amqp.channel(), clients, factory)
    try:
        yield the_rig
    finally:
        try:
            await the_rig.close()
        finally:
            await amqp.close()


async def phase(
    name: str, work: Awaitable[list[report.Row]], rows: list[report.Row], errors: list[str]
) -> bool:
    """Run one phase; its rows join the table, its failure joins `errors` (and returns False)."""
    log(f"-- {name}")
    started = time.monotonic()
    try:
        rows += await work
    except Exception as e:  # one phase failing must not cost the others' figures
        log(f"{name} failed: {type(e).__name__}: {e}")
        errors.append(f"{name}: {type(e).__name__}: {e}")
        return False
    finally:
        log(f"   {name}: {time.monotonic() - started:.0f}s")
    return True


async def ours(work: figures.Work, rows: list[report.Row], errors: list[str]) -> None:
    """Every phase that needs our nodes; none of them if the nodes did not start."""
    if not await phase("nodes", work.start_nodes(), rows, errors):
        return
    for queue_type in QUEUE_TYPES:
        await phase(f"ceiling and headline, {queue_type}", work.headline(queue_type), rows, errors)
    await phase("node matrix", work.matrix(), rows, errors)
    await phase("enqueue one at a time", work.one_at_a_time(), rows, errors)
    await phase("SyncClient from threads", threads.rows(work), rows, errors)
    await phase("end-to-end latency", work.latency(), rows, errors)
    await phase("partition starts", work.partition_starts(), rows, errors)
    if work.options.kills:
        await phase("failover", work.failover(), rows, errors)
    await phase("delayed jobs", delayed.rows(work), rows, errors)


async def measure(o: Options, workdir: Path) -> tuple[list[report.Row], list[str], report.Machine]:
    rows: list[report.Row] = []
    errors: list[str] = []
    load = os.getloadavg()  # other work on the machine skews every figure
    peers = await others.peers(o) if o.peers else others.PeerFigures()
    rows += peers.rows
    errors += peers.errors
    async with etcd_endpoints(o, workdir) as etcd, rig(o, workdir, etcd) as r:
        host = report.machine(figures.rabbitmq_version(r.amqp), report.etcd_version(etcd), load)
        await ours(figures.Work(r, peers), rows, errors)
        errors += [f"miscounted: {m}" for m in r.miscounts]
    if o.growth:
        log("-- growth")
        growth_rows, growth_errors = await others.growth(o)
        rows += growth_rows
        errors += growth_errors
    host.load_after = os.getloadavg()
    return rows, errors, host


def heading(o: Options, host: report.Machine, errors: list[str]) -> list[str]:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"roger_cluster benchmark suite, finished {when}",
        *host.lines(),
        f"RabbitMQ at {redact(o.amqp_url)}, etcd {o.etcd or 'private, in a temp dir'}",
        f"N = {o.jobs:,} jobs per drain and enqueue; ceiling and headline figures: median of"
        f" {o.rounds} round(s), prefetch {o.prefetch};",
        f"node matrix and timings on {o.queue_type} queues; peers on classic queues,"
        f" {o.peer_rounds} round(s)",
    ]
    lines += [f"ERROR: {e}" for e in errors]
    return lines


async def main_async(o: Options) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)  # finally blocks clean up
    with tempfile.TemporaryDirectory(prefix="roger-bench-") as tmp:
        try:
            rows, errors, host = await measure(o, Path(tmp))
        except Exception as e:  # no broker, no etcd: nothing to measure, nothing left behind
            log(f"benchmark failed: {type(e).__name__}: {e}")
            log(f"(RabbitMQ at {redact(o.amqp_url)}, etcd {o.etcd or 'private'}: see --amqp-url, --etcd)")
            return 1
    lines = heading(o, host, errors)
    table = (report.markdown if o.output == "markdown" else report.text)(rows, lines)
    if o.output == "json":
        log(table)
        print(report.as_json(rows, host, asdict(o) | {"amqp_url": redact(o.amqp_url)}, errors))
    else:
        print(table)
    return 0 if not errors else 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    o = options(args)
    os.environ.setdefault(RUN_ENV, secrets.token_hex(8))  # every child inherits it
    try:
        return asyncio.run(main_async(o))
    except asyncio.CancelledError:  # SIGTERM: everything was cleaned up on the way out
        log("stopped by SIGTERM; nothing left running")
        return 143
    except KeyboardInterrupt:
        log("interrupted; nothing left running")
        return 130
