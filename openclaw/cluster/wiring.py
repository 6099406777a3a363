"""Cluster mode's parts for the composition root (``tap.build_tree``), and its start-up checks.

``build_tree`` asks for the stores and :class:`~openclaw.parts.GatewayParts` here instead of the
single-process ones, calls :meth:`ClusterWiring.attach` once the gateway exists, and puts
:attr:`ClusterWiring.service` in the tree before the stores load: that service checks both
servers and the schema version and refuses to start, saying why, when one is missing or too old.
"""
from __future__ import annotations

from functools import partial
from typing import Any
from collections.abc import Generator

from psycopg.conninfo import conninfo_to_dict
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from ..parts import GatewayParts
from . import schema as cluster_schema
from .approvals import ClusterExecApprovals
from .bus import ClusterBus
from .config_sync import ClusterConfigSync
from .coordination import ClusterLeases, ClusterRateLimiter
from .idempotency import ClusterIdempotencyCache
from .options import ClusterOptions
from .postgres import PostgresDatabase
from .registry import ClusterNodeRegistry, ClusterPresence
from .stores import PostgresDeviceStore, PostgresNodeStore, PostgresSessionStore


class ClusterUnavailable(Exception):
    """Start-up refused: a server is unreachable or the schema cannot be used."""


def describe_postgres(dsn: str) -> str:
    """``host:port/dbname`` for messages (never the password)."""
    info = conninfo_to_dict(dsn)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', info.get('user', ''))}"


class ClusterWiring:
    def __init__(self, reactor: Any, options: ClusterOptions, state_dir: str):
        self.options = options
        self.bus = ClusterBus(reactor, options)
        database = partial(PostgresDatabase.threaded, reactor, options.postgres_dsn, options.schema)
        self._check_db = database("checks")
        self.device_store = PostgresDeviceStore(database("devices"), on_change=partial(self.bus.store_changed, "devices"))
        nodes_db = database("nodes")
        self.node_store = PostgresNodeStore(nodes_db, on_change=partial(self.bus.store_changed, "nodes"))
        # Config revisions are rare: they share the node store's connection.
        self.config_sync = ClusterConfigSync(reactor, nodes_db, self.bus)
        self.session_store = PostgresSessionStore(database("sessions"), state_dir)
        self.bus.stores = {"devices": self.device_store, "nodes": self.node_store}
        self.bus.session_store = self.session_store
        bus = self.bus
        bus.leases = ClusterLeases(reactor, bus)
        self.parts = GatewayParts(
            instance_id=options.instance_id,
            presence=lambda clock, **kwargs: ClusterPresence(clock, bus, **kwargs),
            nodes=lambda clock: ClusterNodeRegistry(clock, bus),
            relay=bus,
            health=bus.health,
            leases=bus.leases,
            rate_limiter=lambda clock: ClusterRateLimiter(clock, bus),
            dedupe=lambda clock: ClusterIdempotencyCache(clock, bus),
            approvals=lambda clock, clients: ClusterExecApprovals(clock, clients, bus),
        )
        self.service = ClusterService(self)

    def attach(self, gateway: Any, config_control: Any = None) -> None:
        self.bus.attach(gateway)
        if config_control is not None:
            self.config_sync.attach(config_control)


class ClusterService(Service):
    """Checks PostgreSQL (reachable, schema version) and Redis, then runs the bus."""

    _log = Logger()

    def __init__(self, wiring: ClusterWiring):
        self._wiring = wiring

    def startService(self) -> Deferred[None]:
        super().startService()
        return self._start()

    @inlineCallbacks
    def _start(self) -> Generator[Deferred[Any], Any, None]:
        options = self._wiring.options
        where = describe_postgres(options.postgres_dsn)
        try:
            version = yield self._wiring._check_db._executor.submit(partial(self._check_schema, options.schema))
        except cluster_schema.SchemaError as exc:
            raise ClusterUnavailable(f"cluster mode refused to start: {exc}") from None
        except Exception as exc:
            raise ClusterUnavailable(f"cluster mode refused to start: PostgreSQL at {where} is unreachable: {exc}") from None
        finally:
            yield self._wiring._check_db.close()
        bus = self._wiring.bus
        try:
            yield bus.start()
        except Exception as exc:
            # Stopping the service (the runtime does it on a refused start) closes the link.
            raise ClusterUnavailable(f"cluster mode refused to start: Redis at {bus.link.where} is unreachable: {exc}") from None
        self._log.info(
            "cluster instance {instance} on PostgreSQL {where} schema {schema} (version {version}) and Redis {redis}",
            instance=options.instance_id, where=where, schema=options.schema, version=version, redis=bus.link.where,
        )

    def _check_schema(self, schema: str) -> int:
        with self._wiring._check_db.connect() as connection:
            return cluster_schema.check_version(connection, schema)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._wiring.bus.stop()
