"""Job keys as they appear in etcd keys and queue names: pure code."""

from __future__ import annotations

import pytest

from roger_cluster import ConfigError
from roger_cluster.cluster import keys
from roger_cluster.cluster.etcd import KeyValue
from roger_cluster.cluster.execkeys import Waiting
from roger_cluster.names import exec_waiting_queue_name, key_id


def test_plain_keys_stay_readable() -> None:
    assert key_id("account:42") == "account:42"
    assert exec_waiting_queue_name("myapp", "user-7") == "myapp-execution-waiting-user-7"
    assert keys.exec_lock("roger", "myapp", "user-7") == "roger/exec-keys/myapp/user-7"
    assert keys.queue_key("roger", "myapp", "k") == "roger/queue-keys/myapp/k"


@pytest.mark.parametrize("key", ["a/b", "with space", "x" * 81, "é", "#short"])
def test_other_keys_are_hashed_so_they_cannot_break_names_or_collide(key: str) -> None:
    hashed = key_id(key)
    assert hashed.startswith("#") and len(hashed) == 33
    assert key_id(hashed) == hashed  # an id maps to itself
    assert "/" not in hashed and hashed != key_id(key + "!")


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ConfigError):
        key_id("")


def test_a_waiting_count_reads_back_and_tolerates_garbage() -> None:
    kv = KeyValue("k", b'{"n": 3, "queue": "default"}', 1, 2, 0)
    waiting = Waiting.read(kv)
    assert (waiting.count, waiting.queue) == (3, "default")
    assert Waiting.read(None, "q").count == 0
    assert Waiting.read(KeyValue("k", b"garbage", 1, 2, 0)).count == 0
    assert waiting.encode(4) == b'{"n": 4, "queue": "default"}'
