"""Delays: the bit decomposition, the level queues' arguments, durations and due times: no I/O."""

from __future__ import annotations

import datetime
import math

import pytest

from roger_cluster import ConfigError
from roger_cluster.broker import Broker
from roger_cluster.client import when_of
from roger_cluster.config import AmqpConfig
from roger_cluster.delays import (
    LEVELS,
    MAX_DELAY,
    UNIT,
    binding_key,
    check_at,
    check_delay,
    level_ttl_ms,
    levels_of,
    parse_duration,
    routing_key,
    units,
    zero_binding_key,
)
from roger_cluster.names import (
    delay_exchange_name,
    delay_queue_name,
    due_queue_name,
    is_partition_queue,
    undeliverable_queue_name,
)


@pytest.mark.parametrize("seconds", [0.001, 0.125, 0.126, 1, 5, 30.3, 86400, 30 * 86400, MAX_DELAY])
def test_the_levels_of_a_delay_add_up_to_it_rounded_up_to_a_unit(seconds: float) -> None:
    count = units(seconds)
    total = sum(level_ttl_ms(k) for k in levels_of(count)) / 1000
    assert total >= seconds  # never early
    assert total - seconds < UNIT  # and less than a unit late


def test_no_delay_is_no_unit() -> None:
    assert units(0) == 0 and units(-3) == 0 and levels_of(0) == []


def test_the_routing_key_spells_the_bits_most_significant_first() -> None:
    key = routing_key(0b101)
    words = key.split(".")
    assert len(words) == LEVELS
    assert words[-3:] == ["1", "0", "1"] and set(words[:-3]) == {"0"}
    assert levels_of(0b101) == [2, 0]
    with pytest.raises(ConfigError):
        routing_key(2**LEVELS)


def _matches(pattern: str, key: str) -> bool:
    """A topic match for patterns of the shape the levels use: `*` words, one word, `#`."""
    words, parts = key.split("."), pattern.split(".")
    assert parts[-1] == "#"
    return all(p == "*" or p == w for p, w in zip(parts[:-1], words, strict=False))


@pytest.mark.parametrize("count", [1, 2, 3, 8, 1000, 2**LEVELS - 1])
def test_each_level_routes_a_key_by_its_own_bit_only(count: int) -> None:
    key = routing_key(count)
    for level in range(LEVELS):
        bit = count >> level & 1
        assert _matches(binding_key(level), key) == (bit == 1)
        assert _matches(zero_binding_key(level), key) == (bit == 0)


def test_the_longest_delay_fits_the_levels_and_is_about_three_months() -> None:
    assert units(MAX_DELAY) < 2**LEVELS
    assert 90 * 86400 < MAX_DELAY < (2**LEVELS) * UNIT


def test_level_queues_hold_their_ttl_and_dead_letter_to_the_level_below() -> None:
    broker = Broker(AmqpConfig())
    top = broker.level_arguments("ns", 25)
    assert top["x-message-ttl"] == 2**25 * 125
    assert top["x-dead-letter-exchange"] == delay_exchange_name("ns", 24)
    assert top["x-dead-letter-strategy"] == "at-least-once" and top["x-overflow"] == "reject-publish"
    bottom = broker.level_arguments("ns", 0)
    assert bottom["x-message-ttl"] == 125
    assert bottom["x-dead-letter-exchange"] == "" and bottom["x-dead-letter-routing-key"] == due_queue_name(
        "ns"
    )
    classic = Broker(AmqpConfig(queue_type="classic")).level_arguments("ns", 3)
    assert "x-dead-letter-strategy" not in classic and classic["x-queue-type"] == "classic"


def test_the_delay_objects_are_named_under_the_namespace_and_never_like_a_partition_queue() -> None:
    names = [delay_queue_name("ns", 3), due_queue_name("ns"), undeliverable_queue_name("ns")]
    assert names == ["roger.ns.delay.3", "roger.ns.delay.due", "roger.ns.delay.undeliverable"]
    assert delay_exchange_name("ns", 0) == "roger.ns.delay.0"
    assert not any(is_partition_queue(n) for n in names)
    assert is_partition_queue("myapp-default") and not is_partition_queue("myapp-default.buried")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("3d", 259200), ("1h30m", 5400), ("45", 45), ("1.5s", 1.5)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5x", "-5s", "5s oops", "100d", "1e3"])
def test_bad_durations_are_refused_with_the_forms_that_work(text: str) -> None:
    with pytest.raises(ConfigError, match=r"90s|limit"):
        parse_duration(text)


@pytest.mark.parametrize("delay", [-1, math.inf, math.nan, MAX_DELAY + 1, "5", True])
def test_bad_delays_are_refused(delay: object) -> None:
    with pytest.raises(ConfigError):
        check_delay(delay)  # type: ignore[arg-type]


def test_a_delay_over_the_limit_names_the_limit() -> None:
    with pytest.raises(ConfigError, match="91 days"):
        check_delay(datetime.timedelta(days=92))


def test_at_must_be_aware_and_within_the_limit() -> None:
    with pytest.raises(ConfigError, match="aware"):
        check_at(datetime.datetime(2030, 1, 1))
    now = datetime.datetime.now(datetime.UTC)
    with pytest.raises(ConfigError, match="limit"):
        check_at(now + datetime.timedelta(days=92))
    assert check_at(now) == now.timestamp()


def test_delay_and_at_are_one_or_the_other_and_zero_or_past_is_now() -> None:
    now = datetime.datetime.now(datetime.UTC)
    with pytest.raises(ConfigError, match="not both"):
        when_of(5, now)
    assert when_of(None, None) is None
    assert when_of(0, None) is None
    assert when_of(None, now - datetime.timedelta(seconds=5)) is None
    when = when_of(datetime.timedelta(minutes=2), None)
    assert when is not None and when.delay == 120
    later = when_of(None, now + datetime.timedelta(hours=1))
    assert later is not None and later.at == pytest.approx(now.timestamp() + 3600)
