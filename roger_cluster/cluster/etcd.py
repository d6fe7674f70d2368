"""A small asyncio etcd v3 client on a gRPC channel of our own.

aetcd provides the generated protobuf stubs; its `Client` opens one insecure
channel to one `host:port` and hides the keep-alive and watch streams. We need
several endpoints (an etcd cluster), our own lease keep-alive loop and our own
watch resumption, so this module drives the stubs directly and exposes only
what roger_cluster uses. Every gRPC error leaves this module as a ClusterError.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from ..config import EtcdConfig
from ..errors import ClusterConnectionError, ClusterError
from ..errors import Compacted as Compacted  # re-exported: defined with the tree in errors.py

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNREACHABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}
# Pings only while a call is open (a node always has its watches): etcd's server
# allows no ping on an idle connection (`PermitWithoutStream` false) and answers
# them with GOAWAY "too_many_pings", which the demo's idle clients used to get.
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


@dataclass(frozen=True)
class KeyValue:
    """One key as read from etcd."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class LeaseTTL:
    """A lease's remaining seconds (whole, -1 once it is gone) and the TTL it was granted."""

    remaining: int
    granted: int


@dataclass(frozen=True)
class WatchEvent:
    """A put (value set) or a delete (value None) of one key."""

    key: str
    value: bytes | None
    revision: int


@dataclass(frozen=True)
class WatchBatch:
    """What one watch reply says: its events (none for a progress report), and the
    revision the watcher has now seen everything up to (resume from the next)."""

    events: list[WatchEvent]
    revision: int


# Keys per page of a prefix read. A page of partition specs is tens of KiB: far below
# gRPC's 4 MiB default for a reply, and a range etcd serves without holding much.
# A page that is still too big (large values) is asked again at half the size.
PAGE_SIZE = 1000


def prefix_end(prefix: str) -> bytes:
    """The exclusive range end covering every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    for i in reversed(range(len(raw))):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1])
    return b"\0"


Compare = Any  # an etcd Compare message; build with `unchanged`
Op = Any  # an etcd RequestOp; build with `op_put`, `op_delete`, `op_get`


def unchanged(key: str, seen: KeyValue | None) -> Compare:
    """Holds if `key` is as it was when read as `seen` (None: it still does not exist)."""
    if seen is None:
        return rpc.Compare(
            key=key.encode(), target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
        )
    return rpc.Compare(
        key=key.encode(), target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=seen.mod_revision
    )


def exists(key: str) -> Compare:
    """Holds if `key` exists (whatever its value)."""
    return rpc.Compare(key=key.encode(), target=rpc.Compare.VERSION, result=rpc.Compare.GREATER, version=0)


def value_is(key: str, value: bytes) -> Compare:
    """Holds if `key` exists with this value."""
    return rpc.Compare(key=key.encode(), target=rpc.Compare.VALUE, result=rpc.Compare.EQUAL, value=value)


def created_at(key: str, revision: int) -> Compare:
    """Holds if `key` exists and was created at `revision` (the same lock, not a newer one)."""
    return rpc.Compare(
        key=key.encode(), target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=revision
    )


def op_put(key: str, value: bytes, lease: int = 0) -> Op:
    """Set a key in a transaction."""
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=value, lease=lease))


def op_delete(key: str) -> Op:
    """Delete a key in a transaction."""
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key.encode()))


def op_delete_prefix(prefix: str) -> Op:
    """Delete every key under `prefix` in a transaction."""
    return rpc.RequestOp(
        request_delete_range=rpc.DeleteRangeRequest(key=prefix.encode(), range_end=prefix_end(prefix))
    )


def op_get(key: str) -> Op:
    """Read a key in a transaction."""
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode()))


def _kv(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key.decode(),
        value=bytes(kv.value),
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        lease=kv.lease,
    )


async def _target(config: EtcdConfig) -> str:
    """A gRPC target for all endpoints: gRPC fails over between the addresses."""
    if len(config.endpoints) == 1:
        host, port = config.endpoints[0]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    loop = asyncio.get_running_loop()
    addresses: list[str] = []
    for host, port in config.endpoints:
        infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
        addresses.extend(f"{info[4][0]}:{port}" for info in infos[:1])
    return "ipv4:" + ",".join(addresses)


class Etcd:
    """The etcd operations roger_cluster needs, on one gRPC channel."""

    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        self._channel: grpc.aio.Channel | None = None
        _CLIENTS.add(self)
        self._kv: Any = None
        self._lease: Any = None
        self._watch: Any = None
        self._auth: Any = None
        self._metadata: tuple[tuple[str, str], ...] | None = None
        # Keys per page of `get_prefix` (tests make it small); 0: the whole prefix at once.
        self.page_size = PAGE_SIZE

    async def connect(self) -> None:
        """Open the channel and check that etcd answers."""
        if _forked_with_open_channel:
            raise ClusterConnectionError(FORKED_WITH_OPEN_CHANNEL)
        if self._channel is None:
            try:
                target = await _target(self.config)
            except OSError as e:
                raise self._unreachable(e) from e
            self._channel = self._open_channel(target)
            self._kv = rpc.KVStub(self._channel)
            self._lease = rpc.LeaseStub(self._channel)
            self._watch = rpc.WatchStub(self._channel)
            self._auth = rpc.AuthStub(self._channel)
        await self.get(self.config.namespace + "/")

    def _open_channel(self, target: str) -> grpc.aio.Channel:
        tls = self.config.tls
        if tls is None:
            return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.read(tls.ca_file),
            private_key=tls.read(tls.key_file),
            certificate_chain=tls.read(tls.cert_file),
        )
        return grpc.aio.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)

    def _options(self) -> dict[str, Any]:
        return {"timeout": self.config.timeout, "metadata": self._metadata}

    async def _authenticate(self) -> None:
        """Get a token for the configured user (etcd tokens expire: called again then)."""
        request = rpc.AuthenticateRequest(name=self.config.user, password=self.config.password)
        try:
            reply = await self._auth.Authenticate(request, timeout=self.config.timeout)
        except grpc.aio.AioRpcError as e:
            raise self._error(e) from e
        self._metadata = (("token", reply.token),)

    async def close(self) -> None:
        """Close the channel; in-flight calls fail with ClusterConnectionError.

        The stubs go too: gRPC's asyncio layer shuts its process-wide poller thread down only
        once no channel object is left, which a process about to fork needs (`sync_client.py`).
        """
        channel, self._channel = self._channel, None
        self._metadata = None
        self._kv = self._lease = self._watch = self._auth = None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> Etcd:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _unreachable(self, error: BaseException) -> ClusterConnectionError:
        return ClusterConnectionError(f"cannot reach etcd at {self.config.describe()}: {error}")

    def _error(self, error: grpc.aio.AioRpcError) -> ClusterError:
        if error.code() in _UNREACHABLE:
            return self._unreachable(error.details() or error.code().name)
        if error.code() == grpc.StatusCode.OUT_OF_RANGE:  # "required revision has been compacted"
            return Compacted(f"etcd refused the request: {error.details()}")
        return ClusterError(f"etcd refused the request: {error.details()}")

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one call. With several endpoints, a call that finds its member gone
        (or the cluster electing a leader) is tried again, on whichever member gRPC
        reaches next, until the timeout: losing one member is invisible to callers.
        With one endpoint it fails fast."""
        if self._channel is None:
            raise ClusterConnectionError("etcd client is not connected")
        deadline = asyncio.get_running_loop().time() + self.config.timeout
        attempt = 0
        if self.config.user is not None and self._metadata is None:
            await self._authenticate()
        while True:
            try:
                return await make()
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.UNAUTHENTICATED and self.config.user and attempt == 0:
                    attempt += 1
                    await self._authenticate()  # the token expired
                    continue
                retry = len(self.config.endpoints) > 1 and e.code() in _UNREACHABLE
                attempt += 1
                pause = min(0.05 * 2**attempt, 0.5)
                if not retry or asyncio.get_running_loop().time() + pause > deadline:
                    raise self._error(e) from e
                await asyncio.sleep(pause)

    async def get(self, key: str) -> KeyValue | None:
        """The key, or None."""
        request = rpc.RangeRequest(key=key.encode())
        reply = await self._call(lambda: self._kv.Range(request, **self._options()))
        return _kv(reply.kvs[0]) if reply.kvs else None

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under `prefix`, and the store revision they were read at.

        Read in pages of `page_size` keys, each from the key after the last one read,
        all at the revision of the first page: one consistent snapshot, however big,
        with no reply near gRPC's limit. Should that revision be compacted between two
        pages, the read starts over.
        """
        while True:
            try:
                return await self._read_pages(prefix)
            except Compacted as e:
                log.info("reading %s: %s; reading it again", prefix, e)

    async def _read_pages(self, prefix: str) -> tuple[list[KeyValue], int]:
        start, end = prefix.encode(), prefix_end(prefix)
        kvs: list[KeyValue] = []
        revision, limit = 0, self.page_size
        while True:
            request = rpc.RangeRequest(key=start, range_end=end, limit=limit, revision=revision)
            try:
                reply = await self._range(request)
            except ClusterError as e:
                if limit in (0, 1) or not _too_large(e):
                    raise
                limit //= 2
                continue
            revision = revision or reply.header.revision
            kvs.extend(_kv(kv) for kv in reply.kvs)
            if not reply.more or not reply.kvs:
                return kvs, revision
            start = reply.kvs[-1].key + b"\0"

    async def _range(self, request: Any) -> Any:
        return await self._call(lambda: self._kv.Range(request, **self._options()))

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Set the key; returns the new revision."""
        request = rpc.PutRequest(key=key.encode(), value=value, lease=lease)
        reply = await self._call(lambda: self._kv.Put(request, **self._options()))
        revision: int = reply.header.revision
        return revision

    async def delete(self, key: str) -> int:
        """Delete the key; returns how many keys went (0 or 1)."""
        request = rpc.DeleteRangeRequest(key=key.encode())
        reply = await self._call(lambda: self._kv.DeleteRange(request, **self._options()))
        deleted: int = reply.deleted
        return deleted

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix`; returns how many went."""
        request = rpc.DeleteRangeRequest(key=prefix.encode(), range_end=prefix_end(prefix))
        reply = await self._call(lambda: self._kv.DeleteRange(request, **self._options()))
        deleted: int = reply.deleted
        return deleted

    async def create(self, key: str, value: bytes, lease: int = 0) -> KeyValue | None:
        """Put the key only if it does not exist, atomically.

        Returns None when created, else the key that is already there.
        """
        created, [holder] = await self.txn([unchanged(key, None)], [op_put(key, value, lease)], [op_get(key)])
        if created:
            return None
        # Deleted between the compare and the read: report a stale holder of lease 0.
        return holder or KeyValue(key, b"", 0, 0, 0)

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> tuple[bool, list[KeyValue | None]]:
        """One etcd transaction: if every compare holds, run `success`, else `failure`.

        Returns whether the compares held, and per op run the key a get found
        (None for a missing key and for puts and deletes).
        """
        request = rpc.TxnRequest(compare=list(compare), success=list(success), failure=list(failure))
        reply = await self._call(lambda: self._kv.Txn(request, **self._options()))
        results: list[KeyValue | None] = []
        for response in reply.responses:
            kvs = response.response_range.kvs if response.WhichOneof("response") == "response_range" else []
            results.append(_kv(kvs[0]) if kvs else None)
        return bool(reply.succeeded), results

    async def compact(self, revision: int) -> None:
        """Drop history before `revision` (watches from older revisions get Compacted)."""
        request = rpc.CompactionRequest(revision=revision, physical=True)
        await self._call(lambda: self._kv.Compact(request, **self._options()))

    async def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; returns its id."""
        request = rpc.LeaseGrantRequest(TTL=ttl)
        reply = await self._call(lambda: self._lease.LeaseGrant(request, **self._options()))
        lease_id: int = reply.ID
        return lease_id

    async def revoke(self, lease_id: int) -> None:
        """Revoke a lease, deleting its keys; an unknown lease is not an error."""
        request = rpc.LeaseRevokeRequest(ID=lease_id)
        try:
            await self._call(lambda: self._lease.LeaseRevoke(request, **self._options()))
        except ClusterConnectionError:
            raise
        except ClusterError as e:
            log.debug("revoking lease %x: %s", lease_id, e)

    async def refresh(self, lease_id: int) -> int:
        """Send one keep-alive for the lease; returns its TTL, 0 if it expired."""

        async def once() -> int:
            call = self._lease.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), **self._options()
            )
            async for reply in call:
                ttl: int = reply.TTL
                return ttl
            return 0

        return await self._call(once)

    async def lease_ttl(self, lease_id: int) -> LeaseTTL:
        """How long the lease has left (-1: expired or revoked) and its granted TTL."""
        request = rpc.LeaseTimeToLiveRequest(ID=lease_id)
        reply = await self._call(lambda: self._lease.LeaseTimeToLive(request, **self._options()))
        return LeaseTTL(remaining=reply.TTL, granted=reply.grantedTTL)

    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchBatch]:
        """Batches of events under `prefix` from `start_revision` on, each with the
        revision seen; empty batches once the watch is in place and as progress
        reports while nothing changes.

        Ends only by raising: Compacted when the revision is gone (or etcd's store is
        behind it: restored or replaced, so the revisions we saw mean nothing there),
        ClusterConnectionError when the stream breaks. The caller resumes.
        """
        if self._channel is None:
            raise ClusterConnectionError("etcd client is not connected")
        create = rpc.WatchCreateRequest(
            key=prefix.encode(),
            range_end=prefix_end(prefix),
            start_revision=start_revision,
            progress_notify=True,
        )
        call = self._watch.Watch(_hold_open(rpc.WatchRequest(create_request=create)), metadata=self._metadata)
        try:
            async for reply in call:
                if reply.compact_revision:
                    raise Compacted(f"watch revision {start_revision} compacted")
                if reply.canceled:
                    raise ClusterError(f"etcd cancelled the watch: {reply.cancel_reason}")
                if reply.created and reply.header.revision < start_revision - 1:
                    raise Compacted(
                        f"etcd is at revision {reply.header.revision}, behind the watch's"
                        f" {start_revision - 1}: its data was restored or replaced"
                    )
                if reply.events:
                    events = [_event(e) for e in reply.events]
                    yield WatchBatch(events, events[-1].revision)
                elif reply.created:  # in place: nothing new yet
                    yield WatchBatch([], start_revision - 1)
                else:  # a progress report: nothing changed up to here
                    yield WatchBatch([], reply.header.revision)
        except grpc.aio.AioRpcError as e:
            raise self._error(e) from e
        finally:
            call.cancel()
        raise ClusterConnectionError(f"etcd at {self.config.describe()} closed the watch")


def _too_large(error: ClusterError) -> bool:
    """Whether a call failed because its reply was over gRPC's message size limit."""
    cause = error.__cause__
    return isinstance(cause, grpc.aio.AioRpcError) and cause.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def _hold_open(request: Any) -> AsyncIterator[Any]:
    """Send one request, then keep our side of the stream open until cancelled."""
    yield request
    await asyncio.Event().wait()


def _event(event: Any) -> WatchEvent:
    deleted = event.type == rpc.Event.DELETE
    return WatchEvent(
        key=event.kv.key.decode(),
        value=None if deleted else bytes(event.kv.value),
        revision=event.kv.mod_revision,
    )


# gRPC's asyncio channels do not survive a fork: once a process forks with one open, every
# etcd call in the child hangs, on a new channel too. SyncClient closes its channel before a
# fork; for anything else, the child fails fast with the fix instead of hanging.
FORKED_WITH_OPEN_CHANNEL = (
    "this process was forked while an etcd channel was open in its parent, and gRPC's asyncio"
    " channels do not survive a fork (etcd calls here would hang): close the Client before"
    " forking (`await client.close()`), use SyncClient (fork-safe), or start processes with"
    " multiprocessing's 'spawn' or 'forkserver' method"
)
_CLIENTS: weakref.WeakSet[Etcd] = weakref.WeakSet()
_forked_with_open_channel = False


def _after_fork_in_child() -> None:
    global _forked_with_open_channel
    if any(client._channel is not None for client in list(_CLIENTS)):
        _forked_with_open_channel = True


os.register_at_fork(after_in_child=_after_fork_in_child)
