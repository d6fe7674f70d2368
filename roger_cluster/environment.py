"""The `ROGER_*` environment: the one place its connection variables are named and read.

Both edges that read the environment go through here: the command-line tools (their flags fall
back to these variables, `cli/common.py`) and `Client.from_env()` / `SyncClient.from_env()` in an
application. So a web app and the `rogerctl` beside it, given the same environment, reach the same
cluster with the same queue declarations, and the two cannot drift apart. Nothing else in the
package reads the environment: everything below gets the configs built here, passed explicitly.

A `*_FILE` variable names a file holding a secret (a mounted Kubernetes or Docker secret), so the
secret stays out of `ps` and of the process environment; the plain variable wins if both are set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .cluster.cancellations import DEFAULT_TTL as DEFAULT_CANCEL_TTL
from .config import (
    DEFAULT_AMQP_URL,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_ETCD,
    DEFAULT_NAMESPACE,
    AmqpConfig,
    EtcdConfig,
    TlsFiles,
)
from .errors import ConfigError
from .names import check_partition

AMQP_URL = "ROGER_AMQP_URL"  # also ROGER_AMQP_URL_FILE
ETCD = "ROGER_ETCD"
NAMESPACE = "ROGER_NAMESPACE"
QUEUE_TYPE = "ROGER_QUEUE_TYPE"
DELIVERY_LIMIT = "ROGER_DELIVERY_LIMIT"
ETCD_USER = "ROGER_ETCD_USER"
ETCD_PASSWORD = "ROGER_ETCD_PASSWORD"  # also ROGER_ETCD_PASSWORD_FILE
MANAGEMENT_URL = "ROGER_MANAGEMENT_URL"
CANCEL_TTL = "ROGER_CANCEL_TTL"
PARTITION = "ROGER_PARTITION"
TLS_PARTS = ("CA", "CERT", "KEY")  # ROGER_AMQP_CA, ROGER_ETCD_KEY, ...

# What an unset (or empty) variable means.
DEFAULTS: Mapping[str, str] = {
    AMQP_URL: DEFAULT_AMQP_URL,
    ETCD: DEFAULT_ETCD,
    NAMESPACE: DEFAULT_NAMESPACE,
    QUEUE_TYPE: "quorum",
    DELIVERY_LIMIT: str(DEFAULT_DELIVERY_LIMIT),
    CANCEL_TTL: str(DEFAULT_CANCEL_TTL),
}


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def get(name: str, default: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The variable `name`, or `default` (else its entry in DEFAULTS, else "") if unset or empty."""
    fallback = default if default is not None else DEFAULTS.get(name, "")
    return _environ(environ).get(name) or fallback


def secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A secret from the variable `name`, or from the file named by `name`_FILE; None if neither."""
    env = _environ(environ)
    value = env.get(name)
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError(f"cannot read {name}_FILE {path!r}: {e.strerror}") from None


def number(name: str, text: str) -> int:
    """`text` as an int, or a ConfigError naming the variable it came from."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None


def tls_files(ca: str | None, cert: str | None, key: str | None) -> TlsFiles | None:
    """The TLS files given, or None if none was."""
    return TlsFiles(ca, cert, key) if ca or cert or key else None


def tls_from(prefix: str, environ: Mapping[str, str] | None = None) -> TlsFiles | None:
    """TLS files from ROGER_<prefix>_CA/_CERT/_KEY (prefix "AMQP" or "ETCD")."""
    ca, cert, key = (get(f"ROGER_{prefix}_{part}", "", environ) or None for part in TLS_PARTS)
    return tls_files(ca, cert, key)


def amqp_config(
    *,
    url: str | None,
    queue_type: str,
    delivery_limit: int,
    tls: TlsFiles | None,
    environ: Mapping[str, str] | None = None,
) -> AmqpConfig:
    """The AmqpConfig for a URL given (a flag), else ROGER_AMQP_URL(_FILE), else the default."""
    return AmqpConfig(
        url=url or secret(AMQP_URL, environ) or DEFAULT_AMQP_URL,
        queue_type=queue_type,
        delivery_limit=delivery_limit,
        tls=tls,
    )


def etcd_config(
    *,
    endpoints: str,
    namespace: str,
    tls: TlsFiles | None,
    user: str | None,
    environ: Mapping[str, str] | None = None,
) -> EtcdConfig:
    """The EtcdConfig; a `user` takes its password from ROGER_ETCD_PASSWORD(_FILE), never a flag."""
    password = secret(ETCD_PASSWORD, environ) if user else None
    if user and password is None:
        raise ConfigError(f"etcd user {user!r} needs a password in {ETCD_PASSWORD} or {ETCD_PASSWORD}_FILE")
    return EtcdConfig.from_string(endpoints, namespace, tls=tls, user=user, password=password)


@dataclass(frozen=True)
class ClientSettings:
    """What the environment says about reaching a cluster: everything a Client takes."""

    amqp: AmqpConfig
    etcd: EtcdConfig
    management_url: str | None = field(default=None, repr=False)  # may hold a password
    cancel_ttl: int = DEFAULT_CANCEL_TTL
    partition: str | None = None  # the client's default partition


def client_settings(environ: Mapping[str, str] | None = None) -> ClientSettings:
    """The settings the ROGER_* variables describe (os.environ unless `environ` is given).

    Reads ROGER_AMQP_URL(_FILE), ROGER_ETCD, ROGER_NAMESPACE, ROGER_QUEUE_TYPE,
    ROGER_DELIVERY_LIMIT, ROGER_{AMQP,ETCD}_{CA,CERT,KEY}, ROGER_ETCD_USER with
    ROGER_ETCD_PASSWORD(_FILE), ROGER_MANAGEMENT_URL, ROGER_CANCEL_TTL and ROGER_PARTITION.
    Raises ConfigError naming the variable for a value that does not parse.
    """
    amqp = amqp_config(
        url=None,
        queue_type=get(QUEUE_TYPE, environ=environ),
        delivery_limit=number(DELIVERY_LIMIT, get(DELIVERY_LIMIT, environ=environ)),
        tls=tls_from("AMQP", environ),
        environ=environ,
    )
    etcd = etcd_config(
        endpoints=get(ETCD, environ=environ),
        namespace=get(NAMESPACE, environ=environ),
        tls=tls_from("ETCD", environ),
        user=get(ETCD_USER, "", environ) or None,
        environ=environ,
    )
    partition = get(PARTITION, "", environ) or None
    return ClientSettings(
        amqp=amqp,
        etcd=etcd,
        management_url=get(MANAGEMENT_URL, "", environ) or None,
        cancel_ttl=number(CANCEL_TTL, get(CANCEL_TTL, environ=environ)),
        partition=check_partition(partition) if partition is not None else None,
    )
