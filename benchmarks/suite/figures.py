"""The suite's own phases and the rows they produce: ceiling, headline, matrix, timings.

`Work` holds what the phases share (the nodes, the peers' figures) and turns measurements into
table rows, each comparison with its target right below the figure it judges:

- one node drains >= 2x the faster of Celery (solo) and Dramatiq (1 process), and >= 1.2x the bare
  consumer that acks each delivery;
- enqueue >= 0.9x bare pipelined confirmed publishing, and >= 4x the peers' confirmed enqueue;
- partition start p99 < 100 ms on the matrix's nodes (3 by default);
- a killed node's running job starts on another node within 2 s (every sample);
- one node drains with the job history on >= 0.9x the same node drains with it off (the async
  headline drain runs on a node with history on, beside a node with it off, same rounds).

The peers run on classic queues only (Dramatiq declares nothing else), so the comparisons with
them use our classic figures; each ceiling comparison uses the same queue type on both sides.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import defaultdict

from aio_pika.abc import AbstractConnection

from roger_cluster.client import ENQUEUE_WINDOW
from roger_cluster.testing.nodes import NodeProcess

from . import ceiling, ours, timing
from .others import PeerFigures
from .report import Row, check, ratio
from .rig import QUEUE_TYPES, Measure, Rig, log

OURS = "roger_cluster"
SIDES = ("bare each", "bare batch", "ours", "ours sync", "ours no history")
MAIN_ONLY = ("ours sync", "ours no history")  # sides run in the rounds of the main queue type only
SYNC_TARGET = 0.8  # issue 15, item 8: a plain `def` job drains at >= 0.8x an async one
HISTORY_TARGET = 0.9  # issue 17, item 1: draining with job history on >= 0.9x with it off
PEER_QUEUE_TYPE = "classic"
DRAIN_PEERS = ("celery", "dramatiq-1")  # the "Celery solo / Dramatiq 1-proc"
FAILOVER_BOUND = 2000.0  # milliseconds
START_BOUND = 100.0  # milliseconds


def rabbitmq_version(connection: AbstractConnection) -> str:
    properties = connection.transport.connection.server_properties if connection.transport else {}
    version = properties.get("version", "unknown")
    return version.decode() if isinstance(version, bytes) else str(version)


def median(samples: list[Measure]) -> Measure:
    return Measure(statistics.median(m.rate for m in samples), statistics.median(m.cpu_us for m in samples))


def rate(section: str, figure: str, measured: Measure) -> Row:
    return Row(section, figure, measured.rate, "jobs/s", measured.cpu_us)


def at_least(figure: str, value: float, against: float, times: float) -> Row:
    """`value` / `against` as a ratio row that must reach `times`."""
    return check(OURS, figure, ratio(value, against), "x", f">= {times:g}x", value >= times * against)


class Work:
    """The phases, in the order main.py calls them."""

    def __init__(self, rig: Rig, peers: PeerFigures) -> None:
        self.rig = rig
        self.options = rig.options
        self.peers = peers
        self.main: list[NodeProcess] = []  # of options.queue_type; node k labelled n<k>..n<last>
        self.solo: dict[str, NodeProcess] = {}  # one node per other queue type, labelled "solo"
        self.no_history: NodeProcess | None = None  # of options.queue_type, history off, "nohist"

    @property
    def last(self) -> int:
        return max(self.options.nodes)

    async def start_nodes(self) -> list[Row]:
        main, last = self.options.queue_type, self.last
        starts = [
            self.rig.start_node(f"{main[0]}{i}", main, ours.labels(i, last)) for i in range(1, last + 1)
        ]
        self.main = list(await asyncio.gather(*starts))
        self.no_history = await self.rig.start_node("nohist", main, ["nohist"], ROGER_HISTORY="off")
        for other in QUEUE_TYPES:
            if other != main:
                self.solo[other] = await self.rig.start_node(f"{other[0]}solo", other, ["solo"])
        return []

    def one_node(self, queue_type: str) -> ours.Placement:
        if queue_type == self.options.queue_type:
            return ours.Placement("n1", self.main[:1])
        return ours.Placement("solo", [self.solo[queue_type]])

    # -- ceiling and headline ----------------------------------------------

    async def side(self, queue_type: str, side: str, number: int) -> dict[str, Measure]:
        """One drain of one round: a bare consumer (acking each, or batched) or one node of ours."""
        rig, prefetch = self.rig, self.options.prefetch
        if side == "ours":
            suffix = f"h{queue_type[0]}{number}"
            placement = self.one_node(queue_type)
            enqueued, drained = await ours.filled_drain(rig, suffix, queue_type, placement, prefetch, False)
            return {"ours enqueue": enqueued, "ours drain": drained}
        if side == "ours no history":
            assert self.no_history is not None
            suffix = f"h{queue_type[0]}o{number}"
            placement = ours.Placement("nohist", [self.no_history])
            _, drained = await ours.filled_drain(rig, suffix, queue_type, placement, prefetch, False)
            return {"ours no history drain": drained}
        if side == "ours sync":
            suffix = f"h{queue_type[0]}s{number}"
            placement = self.one_node(queue_type)
            _, drained = await ours.filled_drain(rig, suffix, queue_type, placement, prefetch, True)
            return {"ours sync drain": drained}
        partition = await rig.partition(f"b{queue_type[0]}{side[5]}{number}", queue_type)
        published = await ceiling.publish(rig, partition, self.options.jobs, ENQUEUE_WINDOW)
        drained = await ceiling.drain(rig, partition, side.split()[1])
        await rig.drop(partition)
        return {"bare publish": published, side: drained}

    async def headline(self, queue_type: str) -> list[Row]:
        samples: dict[str, list[Measure]] = defaultdict(list)
        # The sync drain and the drain without history run in the rounds of the matrix's queue
        # type, beside the async one, so their ratios compare drains of the same rounds on the
        # same machine load.
        main = queue_type == self.options.queue_type
        sides = SIDES if main else tuple(s for s in SIDES if s not in MAIN_ONLY)
        for number in range(self.options.rounds):
            shift = number % len(sides)
            for side in sides[shift:] + sides[:shift]:
                for key, measured in (await self.side(queue_type, side, number)).items():
                    samples[key].append(measured)
                    log(f"   round {number + 1}, {queue_type}: {key} {measured.rate:,.0f}/s")
        medians = {key: median(values) for key, values in samples.items()}
        return self.ceiling_rows(queue_type, medians) + self.headline_rows(queue_type, medians)

    def ceiling_rows(self, queue_type: str, m: dict[str, Measure]) -> list[Row]:
        p = self.options.prefetch
        return [
            rate(
                "Ceiling",
                f"bare publish, confirms, window {ENQUEUE_WINDOW} ({queue_type})",
                m["bare publish"],
            ),
            rate("Ceiling", f"bare consumer, ack each, prefetch {p} ({queue_type})", m["bare each"]),
            rate(
                "Ceiling",
                f"bare consumer, ack(multiple) per {max(1, p // 2)}, prefetch {p} ({queue_type})",
                m["bare batch"],
            ),
        ]

    def headline_rows(self, queue_type: str, m: dict[str, Measure]) -> list[Row]:
        enqueue, drain = m["ours enqueue"], m["ours drain"]
        classic = queue_type == PEER_QUEUE_TYPE
        rows = [
            rate(OURS, f"enqueue_many, confirms, window {ENQUEUE_WINDOW} ({queue_type})", enqueue),
            at_least("  / bare publish", enqueue.rate, m["bare publish"].rate, 0.9),
            *([self.versus_peers("enqueue", enqueue.rate, 4.0, tuple(self.peers.peers))] if classic else []),
            rate(OURS, f"drain, 1 node, async, concurrency {self.options.prefetch} ({queue_type})", drain),
            at_least("  / bare consumer, ack each", drain.rate, m["bare each"].rate, 1.2),
            Row(
                OURS,
                "  / bare consumer, ack(multiple)",
                ratio(drain.rate, m["bare batch"].rate),
                "x",
                note="info",
            ),
            *([self.versus_peers("drain", drain.rate, 2.0, DRAIN_PEERS)] if classic else []),
        ]
        if (sync := m.get("ours sync drain")) is not None:
            figure = f"drain, 1 node, sync, concurrency {self.options.prefetch} ({queue_type})"
            rows += [
                rate(OURS, figure, sync),
                at_least("  / async drain, same rounds", sync.rate, drain.rate, SYNC_TARGET),
            ]
        if (off := m.get("ours no history drain")) is not None:
            figure = (
                f"drain with history off, 1 node, async, concurrency {self.options.prefetch} ({queue_type})"
            )
            rows += [
                rate(OURS, figure, off),
                at_least("  drain with history on / off, same rounds", drain.rate, off.rate, HISTORY_TARGET),
            ]
        return rows

    def versus_peers(self, figure: str, ours_rate: float, times: float, cases: tuple[str, ...]) -> Row:
        name = f"  / fastest peer {figure}"
        fastest = self.peers.fastest(cases, figure)
        if fastest is None:
            row = check(OURS, name, None, "x", f">= {times:g}x", None)
            row.note = "peers did not run"
            return row
        against = float(getattr(fastest, figure))
        row = at_least(name, ours_rate, against, times)
        row.note = f"{fastest.label}, {against:,.0f}/s"
        return row

    # -- the node matrix ----------------------------------------------------

    async def matrix(self) -> list[Row]:
        rows = []
        queue_type = self.options.queue_type
        for count in self.options.nodes:
            for sync in (False, True):
                for concurrency in self.options.concurrency:
                    if (count, concurrency) == (1, self.options.prefetch):
                        continue  # the headline drains of this queue type, async and sync
                    rows.append(await self.cell(queue_type, count, sync, concurrency))
        return rows

    async def cell(self, queue_type: str, count: int, sync: bool, concurrency: int) -> Row:
        kind = "sync" if sync else "async"
        where = ours.Placement(f"n{count}", self.main[:count])
        suffix = f"m{count}{kind[0]}{concurrency}"
        _, drained = await ours.filled_drain(self.rig, suffix, queue_type, where, concurrency, sync)
        nodes = f"{count} node{'s' if count > 1 else ''}"
        figure = f"drain, {nodes}, {kind}, concurrency {concurrency} ({queue_type})"
        log(f"   {figure}: {drained.rate:,.0f}/s ({drained.cpu_us:.0f} us/job)")
        return rate(OURS, figure, drained)

    async def one_at_a_time(self) -> list[Row]:
        rig, queue_type, count = self.rig, self.options.queue_type, self.options.single
        partition = await rig.partition("single", queue_type)
        mine = await ours.enqueue_each(rig, partition, queue_type, count)
        bare = await ceiling.publish(rig, partition, count, 1)
        await rig.drop(partition)
        return [
            rate("Ceiling", f"bare publish, confirms, one at a time ({queue_type})", bare),
            rate(OURS, f"enqueue, one at a time ({queue_type})", mine),
            Row(OURS, "  / bare publish, one at a time", ratio(mine.rate, bare.rate), "x", note="info"),
        ]

    # -- timings ------------------------------------------------------------

    def cluster(self) -> timing.Cluster:
        return timing.Cluster(self.options.queue_type, f"n{self.last}", self.main)

    async def latency(self) -> list[Row]:
        ms = [s * 1000 for s in await timing.latency(self.rig, self.cluster())]
        pace = f"{len(self.main)} nodes, a job every {self.options.interval * 1000:g} ms"
        return [
            Row(OURS, "enqueue -> perform starts, p50", timing.percentile(ms, 0.5), "ms", note=pace),
            Row(
                OURS,
                "enqueue -> perform starts, p99",
                timing.percentile(ms, 0.99),
                "ms",
                note=f"{len(ms)} jobs",
            ),
            Row(OURS, "enqueue -> perform starts, max", max(ms), "ms"),
        ]

    async def partition_starts(self) -> list[Row]:
        seconds, puts = await timing.partition_starts(self.rig, self.cluster())
        ms = [s * 1000 for s in seconds]
        p99 = timing.percentile(ms, 0.99)
        figure = "partition start -> consuming on every node"
        where = f"{len(self.main)} nodes, {len(ms)} samples"
        return [
            Row(OURS, f"{figure}, p50", timing.percentile(ms, 0.5), "ms", note=where),
            check(OURS, f"{figure}, p99", p99, "ms", f"< {START_BOUND:g} ms", p99 < START_BOUND),
            Row(OURS, f"{figure}, max", max(ms), "ms"),
            Row(OURS, "  of which the etcd put, p50", statistics.median(puts) * 1000, "ms"),
        ]

    async def failover(self) -> list[Row]:
        labels = [f"n{self.last}"]  # a replacement takes the timings' partitions, not the matrix's
        ms = [s * 1000 for s in await timing.failover(self.rig, self.cluster(), labels)]
        figure = "SIGKILL of a node -> its job starts on another"
        where = f"{len(self.main)} nodes, {len(ms)} kill{'s' if len(ms) > 1 else ''}"
        worst = max(ms)
        return [
            Row(OURS, f"{figure}, p50", statistics.median(ms), "ms", note=where),
            check(OURS, f"{figure}, max", worst, "ms", f"< {FAILOVER_BOUND:g} ms", worst < FAILOVER_BOUND),
        ]
