"""Cluster options: the two servers, the schema / key prefix, and this instance's id.

Both servers or neither: a gateway with shared storage but no bus (or the reverse) would
silently disagree with its peers, so half a cluster configuration is a usage error.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
from typing import Any
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import attrs

ENV_POSTGRES = "OPENCLAW_CLUSTER_POSTGRES"
ENV_REDIS = "OPENCLAW_CLUSTER_REDIS"
ENV_SCHEMA = "OPENCLAW_CLUSTER_SCHEMA"
ENV_INSTANCE = "OPENCLAW_CLUSTER_INSTANCE_ID"
ENV_TTL = "OPENCLAW_CLUSTER_HEARTBEAT_TTL_S"
DEFAULT_SCHEMA = "openclaw"
DEFAULT_HEARTBEAT_TTL_S = 10.0
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ClusterConfigError(ValueError):
    """A cluster option that cannot work; the message says which and why."""


@attrs.frozen
class RedisAddress:
    host: str
    port: int
    password: str | None = attrs.field(repr=False)
    db: int | None


@attrs.frozen
class ClusterOptions:
    postgres_dsn: str = attrs.field(repr=False)
    redis: RedisAddress
    schema: str
    instance_id: str
    heartbeat_ttl_s: float = DEFAULT_HEARTBEAT_TTL_S

    @property
    def key_prefix(self) -> str:
        """Redis keys and channels start with the schema name: one cluster per schema."""
        return f"{self.schema}:"

    @property
    def heartbeat_every_s(self) -> float:
        return max(0.2, self.heartbeat_ttl_s / 5.0)


def default_instance_id() -> str:
    """Host, pid and a random tail: readable in logs, unique across restarts."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def parse_redis_url(url: str) -> RedisAddress:
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ClusterConfigError(f"--cluster-redis must look like redis://[:password@]host[:port][/db], not {url!r}")
    try:
        port = parts.port or 6379
        path = parts.path.strip("/")
        db = int(path) if path else None
    except ValueError:
        raise ClusterConfigError(f"--cluster-redis has a bad port or database number: {url!r}") from None
    password = unquote(parts.password) if parts.password else None
    return RedisAddress(parts.hostname, port, password, db)


def check_dsn(dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg.ProgrammingError: the text says what is wrong
        raise ClusterConfigError(f"--cluster-postgres is not a PostgreSQL connection string: {exc}") from None


def cluster_options(options: Mapping[str, Any], env: Mapping[str, str]) -> ClusterOptions | None:
    """The cluster options from the command line, then the environment; None when off."""
    postgres = options.get("cluster-postgres") or env.get(ENV_POSTGRES) or None
    redis = options.get("cluster-redis") or env.get(ENV_REDIS) or None
    if postgres is None and redis is None:
        return None
    if postgres is None or redis is None:
        missing = "--cluster-postgres (or OPENCLAW_CLUSTER_POSTGRES)" if postgres is None else "--cluster-redis (or OPENCLAW_CLUSTER_REDIS)"
        raise ClusterConfigError(f"cluster mode needs both PostgreSQL and Redis: {missing} is missing")
    check_dsn(postgres)
    schema = options.get("cluster-schema") or env.get(ENV_SCHEMA) or DEFAULT_SCHEMA
    if not _SCHEMA_NAME.match(schema):
        raise ClusterConfigError(f"--cluster-schema must be a lower-case SQL identifier, not {schema!r}")
    instance_id = options.get("cluster-instance-id") or env.get(ENV_INSTANCE) or default_instance_id()
    if not _INSTANCE_ID.match(instance_id):
        raise ClusterConfigError(f"the instance id may hold letters, digits, '.', '_' and '-' only: {instance_id!r}")
    try:
        ttl = float(env.get(ENV_TTL) or DEFAULT_HEARTBEAT_TTL_S)
    except ValueError:
        raise ClusterConfigError(f"{ENV_TTL} must be a number of seconds") from None
    if not 1.0 <= ttl <= 60.0:
        raise ClusterConfigError(f"{ENV_TTL} must be between 1 and 60 seconds")
    return ClusterOptions(postgres, parse_redis_url(redis), schema, instance_id, ttl)
