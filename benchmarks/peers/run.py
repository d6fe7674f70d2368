"""Peers benchmark: Celery and Dramatiq drain and enqueue the same no-op jobs on one RabbitMQ. Not a test.

Issue 6, item 2. For each case (Celery with a solo pool and `acks_late`, one worker process;
Dramatiq with one worker process; Dramatiq with two):

1. Enqueue with publisher confirms: a publisher subprocess sends N no-op jobs through the peer's
   own API (`task.apply_async`, `actor.send`) with confirms on (Celery's `confirm_publish`,
   Dramatiq's `confirm_delivery`); both wait for each confirm. The first job is sent before the
   clock starts, so connecting and declaring are not counted. Before the drain, a passive declare
   must show all N messages ready.
2. Drain: the peer's own worker command drains that backlog. Every execution appends a line to a
   tally file (tally.py); the drain rate is (executions - 1) / (last execution - first execution),
   read from those lines, so worker start-up is not counted and no figure rests on a queue looking
   empty. After the last execution the worker gets SETTLE seconds for a stray duplicate, is
   stopped, and the tally must hold every job exactly once and the queue 0 messages.

The peers live in benchmarks/peers/.venv, made by setup.sh from requirements.txt; run with any
Python, this script runs setup.sh and re-executes itself there. Queues get unique `peers<hex>-`
names and are deleted at the end, even after an error; every worker runs in its own session and
its whole process group is killed. Exit status: 0 when every job of every case was counted exactly
once, 1 otherwise. `--json` prints the results as one JSON object on stdout (the table goes to
stderr), for the suite (benchmarks/suite) or CI to read.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import tally

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
BIN = VENV / "bin"
POLL_INTERVAL = 0.010
SETTLE = 0.5  # seconds after the last expected execution in which a duplicate would show
START_TIMEOUT = 60.0  # worker start to first execution
STOP_TIMEOUT = 30.0  # SIGTERM to exit, then SIGKILL
SETUP_TIMEOUT = 900.0
DRAMATIQ_SHUTDOWN_MS = 10_000


@dataclass(frozen=True)
class Case:
    """One peer configuration: which library, how many worker processes."""

    key: str
    peer: str  # "celery" or "dramatiq": also the app module's prefix
    processes: int
    label: str

    def queues(self, queue: str) -> list[str]:
        """Every queue the peer declares for `queue` (Dramatiq adds a delay and a dead-letter queue)."""
        return [queue, f"{queue}.DQ", f"{queue}.XQ"] if self.peer == "dramatiq" else [queue]

    def exchanges(self, queue: str) -> list[str]:
        """Exchanges the peer declares: Celery a direct exchange named after the queue."""
        return [queue] if self.peer == "celery" else []


CASES = {
    c.key: c
    for c in (
        Case("celery", "celery", 1, "Celery, solo pool, acks_late, 1 process"),
        Case("dramatiq-1", "dramatiq", 1, "Dramatiq, 1 process"),
        Case("dramatiq-2", "dramatiq", 2, "Dramatiq, 2 processes"),
    )
}


@dataclass(frozen=True)
class Options:
    """The command line, typed."""

    jobs: int
    rounds: int
    prefetch: int
    threads: int
    cases: tuple[str, ...]
    amqp_url: str
    json: bool


@dataclass
class Sample:
    """One round of one case."""

    enqueue_rate: float
    enqueue_cpu_us: float
    drain_rate: float
    drain_cpu_us: float
    executions: int
    distinct: int
    left_in_queue: int
    jobs: int

    @property
    def exact(self) -> bool:
        return self.executions == self.distinct == self.jobs and self.left_in_queue == 0


@dataclass
class Result:
    """A case over every round: medians of the rates, every count."""

    case: str
    label: str
    peer: str
    processes: int
    threads: int | None
    prefetch: int
    samples: list[Sample] = field(default_factory=list)

    def median(self, name: str) -> float:
        return float(statistics.median(float(getattr(s, name)) for s in self.samples))

    @property
    def counted_ok(self) -> bool:
        return bool(self.samples) and all(s.exact for s in self.samples)

    def as_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "label": self.label,
            "peer": self.peer,
            "processes": self.processes,
            "threads_per_process": self.threads,
            "prefetch_per_process": self.prefetch,
            "drain_jobs_per_s": self.median("drain_rate"),
            "drain_worker_cpu_us_per_job": self.median("drain_cpu_us"),
            "enqueue_confirmed_jobs_per_s": self.median("enqueue_rate"),
            "enqueue_publisher_cpu_us_per_job": self.median("enqueue_cpu_us"),
            "executions": sum(s.executions for s in self.samples),
            "jobs": sum(s.jobs for s in self.samples),
            "counted_ok": self.counted_ok,
            "rounds": [asdict(s) | {"exact": s.exact} for s in self.samples],
        }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the broker, through pika -----------------------------------------------


class Rabbit:
    """Counts ready messages and deletes what we declared, each time on a short-lived pika connection
    (a blocking connection left idle through a long publish or drain would miss its heartbeats)."""

    def __init__(self, url: str) -> None:
        self.url = url
        with self._channel() as channel:
            properties = channel.connection._impl.server_properties or {}
        version = properties.get("version", "unknown")
        self.version = version.decode() if isinstance(version, bytes) else str(version)

    @contextmanager
    def _channel(self) -> Iterator[Any]:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()

    def ready(self, queue: str) -> int:
        """Messages ready in `queue` (unacked ones are not counted)."""
        with self._channel() as channel:
            return int(channel.queue_declare(queue, passive=True).method.message_count)

    def delete(self, queues: list[str], exchanges: list[str]) -> list[str]:
        """Delete queues and exchanges (absent ones are fine); the names that could not be deleted."""
        failed = []
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                try:
                    with self._channel() as channel:
                        if kind == "queue":
                            channel.queue_delete(name)
                        else:
                            channel.exchange_delete(name)
                except Exception as e:  # keep deleting the others; report this one
                    log(f"could not delete {kind} {name}: {e!r}")
                    failed.append(name)
        return failed


# -- processes ----------------------------------------------------------------


def peer_env(args: Options, queue: str, tally_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PEERS_QUEUE=queue,
        PEERS_AMQP_URL=args.amqp_url,
        PEERS_TALLY=str(tally_path),
        PEERS_PREFETCH=str(args.prefetch or ""),
        PYTHONPATH=str(HERE),
        PYTHONUNBUFFERED="1",
    )
    env.pop("dramatiq_queue_prefetch", None)
    if args.prefetch:
        env["dramatiq_queue_prefetch"] = str(args.prefetch)
    return env


def worker_command(case: Case, args: Options, queue: str, log_file: Path) -> list[str]:
    if case.peer == "celery":
        return [
            str(BIN / "celery"), "-A", "celery_app", "worker", "--pool", "solo", "--concurrency", "1",
            "--queues", queue, "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "--loglevel", "WARNING", "--logfile", str(log_file),
        ]  # fmt: skip
    return [
        str(BIN / "dramatiq"), "dramatiq_app", "--path", str(HERE), "--processes", str(case.processes),
        "--threads", str(args.threads), "--queues", queue, "--log-file", str(log_file),
        "--worker-shutdown-timeout", str(DRAMATIQ_SHUTDOWN_MS),
    ]  # fmt: skip


def session_cpu(session: int) -> float:
    """CPU seconds (user + system) of every live process in a session: a worker and its children."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group (its own session), wait, then SIGKILL what is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_TIMEOUT)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        log(f"worker {process.pid} did not stop within {STOP_TIMEOUT:.0f}s: SIGKILL")
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived the leader go too
    process.wait(10)


@contextmanager
def worker(
    case: Case, args: Options, queue: str, tmp: Path, tally_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log_file = tmp / f"{queue}.log"
    process = subprocess.Popen(
        worker_command(case, args, queue, log_file),
        cwd=tmp, env=peer_env(args, queue, tally_path), start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=log_file.with_suffix(".out").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield process
    finally:
        kill_group(process)


def wait_until(what: str, done: Callable[[], bool], timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(POLL_INTERVAL)


def tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except FileNotFoundError:
        return ""


# -- the two figures --------------------------------------------------------


def publish(case: Case, args: Options, queue: str, tally_path: Path) -> tuple[float, float]:
    """Run the publisher subprocess; (jobs/s, publisher CPU µs/job) for the timed jobs."""
    timeout = max(300.0, args.jobs / 20)
    done = subprocess.run(
        [str(BIN / "python"), __file__, "--publish", case.peer, "--jobs", str(args.jobs)],
        env=peer_env(args, queue, tally_path), stdin=subprocess.DEVNULL, capture_output=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace")[-3000:]
        raise RuntimeError(f"{case.key} publisher failed ({done.returncode}):\n{error}")
    figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
    timed = args.jobs - 1
    return timed / figures["seconds"], figures["cpu"] / timed * 1e6


def publisher_main(peer: str, jobs: int) -> None:
    """In the peers venv: send `jobs` no-op jobs through the peer's API, confirms on; print timings."""
    app = importlib.import_module(f"{peer}_app")
    send = app.noop.apply_async if peer == "celery" else app.noop.send

    def one(index: int) -> None:
        if peer == "celery":
            send((index,))
        else:
            send(index)

    one(0)  # connect and declare outside the clock
    started, cpu = time.perf_counter(), time.process_time()
    for index in range(1, jobs):
        one(index)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if peer == "dramatiq":
        app.broker.close()
    print(json.dumps({"seconds": seconds, "cpu": cpu}), flush=True)


def drain(case: Case, args: Options, rabbit: Rabbit, queue: str, tmp: Path, tally_path: Path) -> Sample:
    """Fill the queue through the peer (timed), then time its worker draining it."""
    enqueue_rate, enqueue_cpu = publish(case, args, queue, tally_path)
    if (ready := rabbit.ready(queue)) != args.jobs:
        raise RuntimeError(f"{case.key}: {ready} messages ready after confirmed publishing of {args.jobs}")
    drain_timeout = max(120.0, args.jobs / 100)
    with worker(case, args, queue, tmp, tally_path) as process:
        try:
            wait_until("first execution", lambda: tally.executions(tally_path) > 0, START_TIMEOUT, process)
            cpu = session_cpu(process.pid)
            done = lambda: tally.executions(tally_path) >= args.jobs  # noqa: E731
            wait_until(f"{args.jobs} executions", done, drain_timeout, process)
            cpu = session_cpu(process.pid) - cpu
            time.sleep(SETTLE)
        except RuntimeError as e:
            logs = tail(tmp / f"{queue}.log") + tail(tmp / f"{queue}.out")
            raise RuntimeError(f"{case.key}: {e}; worker log:\n{logs}") from None
    count = tally.read(tally_path, args.jobs)
    left = rabbit.ready(queue)
    return Sample(
        enqueue_rate=enqueue_rate,
        enqueue_cpu_us=enqueue_cpu,
        drain_rate=(count.executions - 1) / (count.last - count.first),
        drain_cpu_us=cpu / args.jobs * 1e6,
        executions=count.executions,
        distinct=count.distinct,
        left_in_queue=left,
        jobs=args.jobs,
    )


# -- orchestration ----------------------------------------------------------


def new_results(args: Options) -> dict[str, Result]:
    results = {}
    for key in args.cases:
        case = CASES[key]
        celery = case.peer == "celery"
        prefetch = args.prefetch or (4 if celery else 2 * args.threads)  # each peer's own default
        threads = None if celery else args.threads
        results[key] = Result(key, case.label, case.peer, case.processes, threads, prefetch)
    return results


def run(args: Options, rabbit: Rabbit, tmp: Path) -> list[Result]:
    tag = f"peers{secrets.token_hex(4)}"
    results = new_results(args)
    queues: list[str] = []
    exchanges: list[str] = []
    try:
        for number in range(args.rounds):
            order = list(args.cases[number % len(args.cases) :] + args.cases[: number % len(args.cases)])
            for key in order:
                case = CASES[key]
                queue = f"{tag}-{key}-r{number}"
                queues += case.queues(queue)
                exchanges += case.exchanges(queue)
                log(f"round {number + 1}/{args.rounds}: {case.label}: enqueue {args.jobs} jobs, then drain")
                sample = drain(case, args, rabbit, queue, tmp, tmp / f"{queue}.tally")
                results[key].samples.append(sample)
                rabbit.delete(case.queues(queue), case.exchanges(queue))  # no backlog piles up
                log(
                    f"  enqueue {sample.enqueue_rate:,.0f}/s ({sample.enqueue_cpu_us:.0f} us/job), "
                    f"drain {sample.drain_rate:,.0f}/s ({sample.drain_cpu_us:.0f} us/job), "
                    f"counted {sample.executions} ({sample.distinct} distinct) of {sample.jobs}, "
                    f"{sample.left_in_queue} left in the queue"
                )
    finally:
        if failed := rabbit.delete(queues, exchanges):
            log(f"NOT deleted: {failed}")
    return list(results.values())


def machine(rabbitmq: str, load: tuple[float, float, float]) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text().split()
    versions = {name: metadata.version(name) for name in ("celery", "kombu", "amqp", "dramatiq", "pika")}
    return {
        "nproc": os.cpu_count(),
        "cpu": models[0] if models else "unknown",
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "load_before": [round(x, 2) for x in load],
        "rabbitmq": rabbitmq,
        "python": sys.version.split()[0],
        "versions": versions,
    }


def table(results: list[Result], args: Options, host: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in host["versions"].items())
    lines = [
        f"machine: nproc {host['nproc']}, {host['cpu']}, {host['memory_gib']} GiB",
        f"load average before the run (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in host['load_before'])}",
        f"RabbitMQ {host['rabbitmq']}, Python {host['python']}, {versions}",
        f"classic queues, {args.jobs} no-op jobs x {args.rounds} round(s) (median)",
        "",
        "| peer | prefetch / process | drain (jobs/s) | worker CPU (us/job) "
        "| enqueue, confirms (jobs/s) | publisher CPU (us/job) | executions counted |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        counted = f"{sum(s.executions for s in r.samples):,} of {sum(s.jobs for s in r.samples):,}"
        verdict = "exact" if r.counted_ok else "WRONG"
        label = r.label + (f", {r.threads} threads" if r.threads else "")
        lines.append(
            f"| {label} | {r.prefetch} | {r.median('drain_rate'):,.0f} | {r.median('drain_cpu_us'):.0f} "
            f"| {r.median('enqueue_rate'):,.0f} | {r.median('enqueue_cpu_us'):.0f} | {counted}, {verdict} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Celery and Dramatiq side by side (see the module docstring)")
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per case and round (default %(default)s)")
    p.add_argument("--rounds", type=int, default=1, help="rounds, medians shown (default %(default)s)")
    p.add_argument(
        "--prefetch", type=int, default=100,
        help="unacked deliveries per worker process (default %(default)s, as the suite); "
        "0 = each peer's own default (Celery 4 x 1, Dramatiq 2 x threads)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=8, help="Dramatiq threads/process (default %(default)s)")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of %(default)s")
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("ROGER_AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672/",
        help="RabbitMQ (default: env ROGER_AMQP_URL, which keeps a password out of `ps`, else %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    p.add_argument("--publish", choices=("celery", "dramatiq"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def bootstrap() -> None:
    """Run inside benchmarks/peers/.venv: create it if need be, then re-execute this script there."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    subprocess.run(["bash", str(HERE / "setup.sh")], check=True, timeout=SETUP_TIMEOUT, stdout=sys.stderr)
    os.execv(BIN / "python", [str(BIN / "python"), __file__, *sys.argv[1:]])


def options(parsed: argparse.Namespace) -> Options:
    cases = tuple(c for c in parsed.cases.split(",") if c)
    if unknown := [c for c in cases if c not in CASES]:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    if not 2 <= parsed.jobs < 10**8 or parsed.rounds < 1 or parsed.prefetch < 0 or parsed.threads < 1:
        raise SystemExit("need 2 <= --jobs < 10**8, --rounds >= 1, --prefetch >= 0, --threads >= 1")
    p = parsed
    return Options(p.jobs, p.rounds, p.prefetch, p.threads, cases, p.amqp_url, p.json)


def main() -> int:
    parsed = parse_args()
    bootstrap()
    if parsed.publish:
        publisher_main(parsed.publish, parsed.jobs)
        return 0
    args = options(parsed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks clean up
    load = os.getloadavg()  # other work on the machine skews every figure
    rabbit = Rabbit(args.amqp_url)
    with tempfile.TemporaryDirectory(prefix="roger-peers-") as tmp:
        results = run(args, rabbit, Path(tmp))
    host = machine(rabbit.version, load)
    ok = all(r.counted_ok for r in results)
    text = table(results, args, host)
    if args.json:
        log(text)
        report = {"benchmark": "peers", "jobs": args.jobs, "rounds": args.rounds, "queue_type": "classic"}
        report |= {"machine": host, "results": [r.as_json() for r in results], "counted_ok": ok}
        print(json.dumps(report, indent=2))
    else:
        print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
