"""`Client.from_env` and the CLIs read the ROGER_* variables through one module
(`environment.py`): the same names, defaults, *_FILE secrets and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from roger_cluster import Client, ConfigError, SyncClient
from roger_cluster.cli import common
from roger_cluster.cli.ctl import parser
from roger_cluster.config import DEFAULT_AMQP_URL


def test_from_env_reads_every_connection_variable(tmp_path: Path) -> None:
    password = tmp_path / "etcd-password"
    password.write_text("s3cret\n")
    env = {
        "ROGER_AMQP_URL": "amqp://u:p@rabbit:5672/vh",
        "ROGER_ETCD": "etcd1:2379,etcd2:2379",
        "ROGER_NAMESPACE": "shop",
        "ROGER_QUEUE_TYPE": "classic",
        "ROGER_DELIVERY_LIMIT": "7",
        "ROGER_ETCD_USER": "app",
        "ROGER_ETCD_PASSWORD_FILE": str(password),
        "ROGER_MANAGEMENT_URL": "http://u:p@rabbit:15672/",
        "ROGER_CANCEL_TTL": "60",
        "ROGER_PARTITION": "shop_jobs",
    }
    client = Client.from_env(env)
    assert client.amqp_config.url == "amqp://u:p@rabbit:5672/vh"
    assert client.amqp_config.queue_type == "classic" and client.amqp_config.delivery_limit == 7
    assert client.etcd_config.endpoints == (("etcd1", 2379), ("etcd2", 2379))
    assert client.etcd_config.user == "app" and client.etcd_config.password == "s3cret"
    assert client.namespace == "shop" and client.cancel_ttl == 60
    assert client.management_url == "http://u:p@rabbit:15672/"
    assert client.default_partition == "shop_jobs"
    assert Client.from_env(env, partition="other").default_partition == "other"
    roger = SyncClient.from_env(env)
    assert roger.namespace == "shop" and roger.default_partition == "shop_jobs"
    roger.close()


def test_from_env_with_nothing_set_is_the_documented_default() -> None:
    client = Client.from_env({})
    assert client.amqp_config.url == DEFAULT_AMQP_URL
    assert client.etcd_config.endpoints == (("localhost", 2379),)
    assert client.namespace == "roger" and client.default_partition is None


def test_the_amqp_url_comes_from_a_file_and_the_variable_wins_over_it(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("amqp://from:file@host/\n")
    assert Client.from_env({"ROGER_AMQP_URL_FILE": str(secret)}).amqp_config.url == "amqp://from:file@host/"
    both = {"ROGER_AMQP_URL_FILE": str(secret), "ROGER_AMQP_URL": "amqp://plain@host/"}
    assert Client.from_env(both).amqp_config.url == "amqp://plain@host/"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ROGER_DELIVERY_LIMIT": "many"}, "ROGER_DELIVERY_LIMIT must be a whole number"),
        ({"ROGER_CANCEL_TTL": "1d"}, "ROGER_CANCEL_TTL must be a whole number"),
        ({"ROGER_QUEUE_TYPE": "lazy"}, "queue type must be one of"),
        ({"ROGER_AMQP_URL_FILE": "/nonexistent/url"}, "cannot read ROGER_AMQP_URL_FILE"),
        ({"ROGER_ETCD_USER": "app"}, "needs a password in ROGER_ETCD_PASSWORD"),
        ({"ROGER_PARTITION": "no spaces"}, "partition"),
    ],
)
def test_a_bad_variable_is_a_config_error_that_names_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Client.from_env(env)


def test_the_cli_and_from_env_build_the_same_configs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("amqp://cli:same@host:5672/\n")
    env = {"ROGER_AMQP_URL_FILE": str(secret), "ROGER_ETCD": "e:2379", "ROGER_NAMESPACE": "ns"}
    env |= {"ROGER_QUEUE_TYPE": "classic", "ROGER_DELIVERY_LIMIT": "3"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = parser().parse_args(["nodes"])
    client = Client.from_env(env)
    assert common.amqp_config(args) == client.amqp_config
    assert common.etcd_config(args) == client.etcd_config
