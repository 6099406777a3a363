"""Prometheus metrics for one gateway (``GET /metrics``).

Each gateway has its own registry (no process-global state, so tests and embedded gateways do not
share counters). Label values are bounded: methods the gateway does not know are counted as
``unknown``, so a client inventing method names cannot grow the series without limit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from ..hub import GatewayHub

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _LiveState:
    """Gauges read from the gateway at scrape time (nothing to keep in step)."""

    def __init__(self, gateway: GatewayHub):
        self._gateway = gateway

    def collect(self) -> Iterator[Any]:
        gateway = self._gateway
        connections = GaugeMetricFamily("openclaw_connections", "Authenticated connections by role", labels=["role"])
        counts = gateway.clients.counts()
        connections.add_metric(["operator"], counts["operators"])
        connections.add_metric(["node"], counts["nodes"])
        yield connections
        yield GaugeMetricFamily("openclaw_sessions", "Sessions in the store", value=gateway.sessions.summary(gateway.now_ms()).count)
        runs = GaugeMetricFamily("openclaw_runs", "Agent runs by state", labels=["state"])
        runs.add_metric(["active"], gateway.runs.active_count)
        runs.add_metric(["queued"], gateway.runs.queued_count)
        yield runs
        # Which process answered the scrape (several share one address in cluster mode).
        instance = GaugeMetricFamily("openclaw_instance_info", "This gateway instance (value is always 1)", labels=["instance_id"])
        instance.add_metric([gateway.instance_id], 1)
        yield instance


class GatewayMetrics:
    def __init__(self, gateway: GatewayHub):
        self._gateway = gateway
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "openclaw_requests", "RPC requests by method and outcome (ok or the error code)", ["method", "outcome"], registry=self.registry
        )
        self.latency = Histogram(
            "openclaw_request_duration_seconds", "RPC latency by method", ["method"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.events_sent = Counter("openclaw_events_sent", "Event frames queued to clients", ["event"], registry=self.registry)
        self.events_dropped = Counter(
            "openclaw_events_dropped", "Droppable event frames discarded for slow clients", ["event"], registry=self.registry
        )
        self.auth_failures = Counter("openclaw_auth_failures", "Failed authentication attempts", ["kind"], registry=self.registry)
        self.registry.register(_LiveState(gateway))
        # ``labels()`` costs more than the increment itself and runs per request and per
        # broadcast; children are keyed by label values, which are bounded (known methods plus
        # "unknown", outcomes, event names the gateway itself emits), so they are kept.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _method_label(self, method: str) -> str:
        return method if self._gateway.methods.get(method) is not None or method == "connect" else "unknown"

    def request_done(self, method: str, outcome: str, seconds: float) -> None:
        label = self._method_label(method)
        self._child(self.requests, label, outcome).inc()
        self._child(self.latency, label).observe(max(0.0, seconds))

    def events_delivered(self, event: str, sent: int, dropped: int) -> None:
        if sent:
            self._child(self.events_sent, event).inc(sent)
        if dropped:
            self._child(self.events_dropped, event).inc(dropped)

    def auth_failed(self, kind: str) -> None:
        self._child(self.auth_failures, kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
