"""Property-based tests of everything that parses outside input: message bodies and rogerctl argv."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roger_cluster.cli import ctl
from roger_cluster.codec import JobMessage, decode, encode
from roger_cluster.errors import DecodeError

VALID = encode(JobMessage("abc", "tests.jobs:Record", {"ledger": "/dev/null"}, "default"))

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def decodes_or_refuses(body: bytes) -> None:
    try:
        message = decode(body)
    except DecodeError:
        return
    assert isinstance(message, JobMessage)
    assert decode(encode(message)) == message


@given(st.binary(max_size=200))
def test_random_bytes_decode_to_a_message_or_a_decode_error(body: bytes) -> None:
    decodes_or_refuses(body)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "v",
                "id",
                "job",
                "queue",
                "args",
                "retry_count",
                "enqueued_at",
                "queue_key",
                "execution_key",
                "scheduled_at",
                "schedule",
                "firing",
                "x",
            ]
        ),
        msgpack_values,
        max_size=10,
    )
)
def test_random_maps_decode_to_a_message_or_a_decode_error(fields: dict[str, Any]) -> None:
    decodes_or_refuses(msgpack.packb(fields, use_bin_type=True))


@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=5))
def test_mutated_valid_messages_decode_or_are_refused(flips: list[tuple[int, int]]) -> None:
    body = bytearray(VALID)
    for index, value in flips:
        body[index] = value
    decodes_or_refuses(bytes(body))


words = st.sampled_from(
    [
        "nodes",
        "partition",
        "start",
        "stop",
        "list",
        "show",
        "job",
        "enqueue",
        "cancel",
        "buried",
        "retry-buried",
        "purge-buried",
        "queue",
        "pause",
        "resume",
        "purge",
        "--json",
        "--yes",
        "--drain",
        "p",
        "default=1",
        "default=x",
        "a-b",
        "x=0",
        "tests.jobs:Record",
        "{}",
        "{bad",
        "--queue",
        "--limit",
        "-1",
        "--nodes",
        "--labels",
        "",
        "é",
        "--etcd",
        "--frob",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(words | st.text(max_size=6), max_size=6))
def test_random_rogerctl_arguments_never_crash(argv: list[str]) -> None:
    # No server listens on these ports: commands that parse reach "unreachable" (1).
    argv = ["--etcd", "127.0.0.1:9", "--amqp-url", "amqp://guest:guest@127.0.0.1:9/", *argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = ctl.main(argv)
        except SystemExit as e:  # argparse: usage errors and --help
            code = e.code if isinstance(e.code, int) else 2
    assert code in (0, 1, 2, 3, 4), (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
    if code == 2:
        assert err.getvalue().strip(), argv  # a bad command always says why
