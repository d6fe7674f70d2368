"""Retry levels: pure code (retries wait in the delay levels, `test_delays.py`)."""

from __future__ import annotations

import pytest

from roger_cluster import ConfigError
from roger_cluster.retry import DEFAULT_LEVELS, next_delay, parse_levels


def test_the_default_levels_are_rogers() -> None:
    assert DEFAULT_LEVELS == (1, 3, 5, 10, 20, 35, 60, 100, 200, 400, 1000, 1800)


def test_next_delay_walks_the_levels_then_says_bury() -> None:
    assert [next_delay((1, 3), n) for n in range(4)] == [1, 3, None, None]
    assert next_delay((), 0) is None


@pytest.mark.parametrize("text", ["1,x", "0", "-1", "1,604801"])
def test_bad_levels_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_levels(text)


def test_levels_parse_from_a_list() -> None:
    assert parse_levels("1, 2,30") == (1, 2, 30)
