"""Configuration as data: frozen dataclasses, validated once in their constructors.

Only `cli/` reads the environment; everything below gets one of these objects
passed explicitly, so a node or client configured in code behaves exactly like
one configured from flags.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigError
from .names import check_concurrency, check_label, check_node, check_partition, check_queue
from .retry import DEFAULT_LEVELS as DEFAULT_RETRY_LEVELS
from .retry import check_levels

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_ETCD = "localhost:2379"
DEFAULT_NAMESPACE = "roger"
DEFAULT_LEASE_TTL = 10
DEFAULT_SHUTDOWN_TIMEOUT = 15.0
DEFAULT_MAX_PAYLOAD = 1024 * 1024
DEFAULT_DELIVERY_LIMIT = 20
# Seconds an execution key's waiting queue stays after its last job, before a node deletes it.
DEFAULT_WAITING_IDLE = 600.0
QUEUE_TYPES = ("quorum", "classic")
# The job history stream (docs/history.md): kept 7 days or 1 GiB, whichever ends first.
DEFAULT_HISTORY_MAX_AGE = 7 * 24 * 3600
DEFAULT_HISTORY_MAX_BYTES = 1024**3
DEFAULT_HISTORY_SEGMENT_BYTES = 64 * 1024**2


def _parse_endpoint(text: str) -> tuple[str, int]:
    text = text.strip()
    if "://" in text:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    else:
        host, _, port_text = text.rpartition(":")
        if not host:
            host, port_text = port_text, "2379"
        host = host.strip("[]")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"etcd endpoint {text!r} has a bad port") from None
    if not host or port is None or not 0 < port < 65536:
        raise ConfigError(f"etcd endpoint {text!r} must look like host:port")
    return host, port


@dataclass(frozen=True)
class TlsFiles:
    """Certificates for a TLS connection: the CA to trust (default: the system's),
    and a client certificate and key when the server asks for one."""

    ca_file: str | None = None
    """The CA file to trust; None: the system's CAs."""
    cert_file: str | None = None
    """The client certificate file, when the server asks for one."""
    key_file: str | None = None
    """The client certificate's key file."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("a client certificate needs both a cert file and a key file")
        for path in (self.ca_file, self.cert_file, self.key_file):
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"TLS file {path!r} does not exist")

    def read(self, path: str | None) -> bytes | None:
        """The contents of one of the files, or None."""
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()


@dataclass(frozen=True)
class EtcdConfig:
    """Where etcd is and which key prefix this cluster owns."""

    endpoints: tuple[tuple[str, int], ...] = (("localhost", 2379),)
    """etcd members as (host, port) pairs."""
    namespace: str = DEFAULT_NAMESPACE
    """The etcd key prefix of this cluster, so several clusters can share one etcd."""
    timeout: float = 5.0
    """Seconds each etcd call may take."""
    tls: TlsFiles | None = None  # TLS to etcd (https:// endpoints), with a client cert if given
    """TLS to etcd (https:// endpoints), with a client certificate if given."""
    user: str | None = None  # etcd auth: a user and its password
    """etcd user, for etcd authentication."""
    password: str | None = field(default=None, repr=False)
    """The etcd user's password (never shown in reprs)."""

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ConfigError("at least one etcd endpoint is needed")
        if (self.user is None) != (self.password is None):
            raise ConfigError("etcd auth needs both a user and a password")
        if not self.namespace or "/" in self.namespace.strip("/") or not self.namespace.isprintable():
            raise ConfigError(f"namespace {self.namespace!r} must be a non-empty word without '/'")
        if self.timeout <= 0:
            raise ConfigError("etcd timeout must be positive")

    @classmethod
    def from_string(
        cls,
        endpoints: str,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        tls: TlsFiles | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> EtcdConfig:
        """Parse `host:port[,host:port…]` (`http://` or `https://` prefixes accepted;
        `https://` turns TLS on, with the system's CAs unless `tls` names some)."""
        items = [e for e in endpoints.split(",") if e.strip()]
        if not items:
            raise ConfigError("at least one etcd endpoint is needed")
        if tls is None and any(e.strip().startswith("https://") for e in items):
            tls = TlsFiles()
        parsed = tuple(_parse_endpoint(e) for e in items)
        return cls(endpoints=parsed, namespace=namespace, tls=tls, user=user, password=password)

    def describe(self) -> str:
        """The endpoints as a user would write them, for error messages."""
        return ",".join(f"{h}:{p}" for h, p in self.endpoints)


@dataclass(frozen=True)
class AmqpConfig:
    """Where RabbitMQ is and how queues are declared."""

    url: str = field(default=DEFAULT_AMQP_URL, repr=False)  # may hold a password
    """RabbitMQ URL, or several comma-separated for a cluster (never shown in reprs)."""
    queue_type: str = "quorum"
    """Type of the queues declared: `quorum` or `classic`."""
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD
    """The largest encoded job accepted at enqueue."""
    connect_timeout: float = 5.0
    """Seconds to wait for a connection."""
    # Quorum queues: a message delivered this many times without an ack (its job
    # kills its node, say) goes to the buried queue. 0 = no limit.
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    """Quorum queues: deliveries without an ack before a job is buried as poison; 0: none."""
    tls: TlsFiles | None = None  # for amqps:// URLs: CA and client certificate files
    """For amqps:// URLs: the CA and client certificate files."""

    def __post_init__(self) -> None:
        if not self.urls:
            raise ConfigError("at least one AMQP URL is needed")
        for url in self.urls:
            if urlsplit(url).scheme not in ("amqp", "amqps"):
                raise ConfigError(f"AMQP URL must start with amqp:// or amqps://, got {self.describe(url)!r}")
        if self.queue_type not in QUEUE_TYPES:
            raise ConfigError(f"queue type must be one of {', '.join(QUEUE_TYPES)}")
        if self.max_payload_bytes <= 0:
            raise ConfigError("max payload size must be positive")
        if self.delivery_limit < 0:
            raise ConfigError("delivery limit must be 0 (none) or positive")

    @property
    def urls(self) -> tuple[str, ...]:
        """The brokers, in the order to try them: `url` may list several, comma-separated."""
        return tuple(u.strip() for u in self.url.split(",") if u.strip())

    def describe(self, url: str | None = None) -> str:
        """The URL(s) without passwords, safe for logs and error messages."""
        if url is None:
            return ",".join(self.describe(u) for u in self.urls)
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path or '/'}"


@dataclass(frozen=True)
class HistoryConfig:
    """The job history a node records (docs/history.md): on or off, and how long the
    namespace's stream keeps it."""

    enabled: bool = True
    """Whether the node records job events; off, it writes nothing."""
    max_age: int = DEFAULT_HISTORY_MAX_AGE
    """Seconds the stream keeps events (RabbitMQ drops whole segments past it)."""
    max_bytes: int = DEFAULT_HISTORY_MAX_BYTES
    """Bytes the stream may hold before RabbitMQ drops its oldest segments."""
    segment_bytes: int = DEFAULT_HISTORY_SEGMENT_BYTES
    """Size of one stream segment: retention drops whole segments."""
    batch_interval: float = 0.1
    """Seconds between two batches of events (at most)."""
    batch_size: int = 500
    """Events per batch (at most): a full batch goes at once."""
    buffer: int = 50_000
    """Events held while RabbitMQ does not take them; past this, new ones are dropped."""

    def __post_init__(self) -> None:
        if self.max_age < 60:
            raise ConfigError("history max age must be at least 60 seconds")
        if self.max_bytes < 1024**2:
            raise ConfigError("history max bytes must be at least 1 MiB")
        if not 1024 <= self.segment_bytes <= self.max_bytes:
            raise ConfigError("history segment size must be between 1 KiB and the max bytes")
        if self.batch_interval <= 0 or self.batch_size < 1 or self.buffer < self.batch_size:
            raise ConfigError("history batches need a positive interval and size, and a buffer >= a batch")


@dataclass(frozen=True)
class NodeConfig:
    """Everything a `roger-node` needs."""

    amqp: AmqpConfig = field(default_factory=AmqpConfig)
    """RabbitMQ settings."""
    etcd: EtcdConfig = field(default_factory=EtcdConfig)
    """etcd settings."""
    name: str = field(default_factory=socket.gethostname)
    """The node's name, unique among live nodes (default: the host name)."""
    jobs: tuple[str, ...] = ()
    """The modules whose Job subclasses this node may run."""
    lease_ttl: int = DEFAULT_LEASE_TTL
    """Seconds of the node's etcd lease: how fast a dead node leaves the cluster."""
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    """Seconds running jobs get to finish on a graceful stop."""
    retry_levels: tuple[int, ...] = DEFAULT_RETRY_LEVELS
    """Seconds between the attempts of a retryable job, for classes without their own."""
    callbacks: str | None = None  # "module:object"
    """The callbacks object, as `module:object`; None: none."""
    labels: tuple[str, ...] = ()  # partitions started with --labels need them all
    """The node's labels; partitions started with `--labels` need them all."""
    concurrency: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (partition, queue) -> N
    """Per-node concurrency overrides, (partition, queue) -> N."""
    http: tuple[str, int] | None = None  # serve /healthz, /readyz, /metrics here
    """Where to serve /healthz, /readyz and /metrics, as (host, port); None: nowhere."""
    waiting_idle: float = DEFAULT_WAITING_IDLE  # seconds before an idle waiting queue goes
    """Seconds before an idle waiting queue of execution keys is deleted."""
    history: HistoryConfig = field(default_factory=HistoryConfig)
    """The job history this node records (docs/history.md)."""

    def __post_init__(self) -> None:
        check_node(self.name)
        check_levels(self.retry_levels)
        object.__setattr__(self, "labels", tuple(sorted({check_label(label) for label in self.labels})))
        for (partition, queue), concurrency in self.concurrency.items():
            check_partition(partition)
            check_concurrency(f"{partition}.{check_queue(queue)}", concurrency)
        if self.lease_ttl < 2:
            raise ConfigError("lease TTL must be at least 2 seconds")
        if self.shutdown_timeout < 0:
            raise ConfigError("shutdown timeout must not be negative")
        if self.waiting_idle < 1:
            raise ConfigError("waiting queue idle time must be at least 1 second")
        for module in self.jobs:
            if not module or not all(p.isidentifier() for p in module.split(".")):
                raise ConfigError(f"--jobs entry {module!r} is not a module name")


def parse_http(text: str) -> tuple[str, int] | None:
    """`host:port` for the node's HTTP endpoints ('' for none); ConfigError if malformed."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--http {text!r} must look like host:port, e.g. 0.0.0.0:8080")
    return host.strip("[]") or "0.0.0.0", int(port)
