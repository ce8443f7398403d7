"""The gateway's Prometheus metrics and its part of `/health` (served by `gridverse.watchdog`).

Metric names follow `gridverse_gateway_<what>_<unit>`. Gauges that describe state (spool depth
and age, device up, store up) are read when scraped, so they are never stale. The watchdog adds
`gridverse_gateway_worker_up{worker}` and `..._worker_restarts_total{worker}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.modbus_poller import DeviceStatus
    from gateway.service import Gateway


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.points_in = Counter(
            "gridverse_gateway_points_in_total", "points received, by source", ["source"], registry=r
        )
        self.points_out = Counter(
            "gridverse_gateway_points_out_total", "points the historian accepted", ["source"], registry=r
        )
        self.rejected = Counter(
            "gridverse_gateway_messages_rejected_total", "malformed messages set aside", ["source"], registry=r
        )
        self.poll_latency = Histogram(
            "gridverse_gateway_poll_latency_seconds",
            "one device poll, all blocks",
            ["device"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.spool_depth = Gauge("gridverse_gateway_spool_depth_points", "points in the spool", registry=r)
        self.spool_age = Gauge(
            "gridverse_gateway_spool_oldest_age_seconds", "age of the oldest spooled point", registry=r
        )
        self.spool_fill = Gauge("gridverse_gateway_spool_fill_ratio", "spool depth over its maximum", registry=r)
        self.spool_dropped = Gauge(
            "gridverse_gateway_spool_dropped_points", "points dropped by drop_oldest", registry=r
        )
        self.spool_refused = Gauge("gridverse_gateway_spool_refused_points", "points refused by reject_new", registry=r)
        self.store_up = Gauge("gridverse_gateway_store_up", "1 while the historian accepts writes", registry=r)
        self.device_up = Gauge("gridverse_gateway_device_up", "1 while the device answers", ["device"], registry=r)
        self.mqtt_connected = Gauge("gridverse_gateway_mqtt_connected", "1 while connected to the broker", registry=r)

    def bind(self, gateway: Gateway) -> None:
        """Read state gauges from the gateway at scrape time."""
        spool, writer = gateway.spool, gateway.writer
        self.spool_depth.set_function(spool.depth)
        self.spool_age.set_function(spool.oldest_age_s)
        self.spool_fill.set_function(lambda: spool.depth() / spool.max_points)
        self.spool_dropped.set_function(lambda: spool.dropped)
        self.spool_refused.set_function(lambda: spool.refused)
        self.store_up.set_function(lambda: float(writer.store_up))
        self.mqtt_connected.set_function(lambda: float(gateway.mqtt.connected.is_set()))
        for poller in gateway.pollers:
            status = poller.status
            self.device_up.labels(poller.device.name).set_function(partial(_up, status))
        self.registry.register(_FailureCounts(gateway))


class _FailureCounts(Collector):
    """Counters the spool, the writer, the historian and the pollers keep themselves, read at
    scrape time: every failure they log once is counted here every time."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[CounterMetricFamily]:
        writer, spool = self.gateway.writer, self.gateway.spool
        failures = CounterMetricFamily(
            "gridverse_gateway_writer_failures",
            "spool commits and historian drains that failed, and submissions refused or set aside",
            labels=["kind"],
        )
        for kind, attribute in (
            ("commit", "commit_failures"),
            ("drain", "drain_failures"),
            ("refused", "refusals"),
            ("memory_refused", "memory_refused"),
            ("unencodable", "unencodable"),
        ):
            failures.add_metric([kind], float(getattr(writer, attribute, 0)))
        yield failures
        lost = CounterMetricFamily(
            "gridverse_gateway_lost_files",
            "times a spool or historian file was found deleted or replaced",
            labels=["file"],
        )
        lost.add_metric(["spool"], float(getattr(spool, "lost_files", 0)))
        lost.add_metric(["historian"], float(getattr(writer.historian, "lost_files", 0)))
        yield lost
        errors = CounterMetricFamily(
            "gridverse_gateway_point_errors",
            "blocks read as invalid or comm_fail, by device (reasons are logged once each)",
            labels=["device"],
        )
        for poller in self.gateway.pollers:
            errors.add_metric([poller.device.name], float(sum(poller.status.reasons.values())))
        yield errors


def health(gateway: Gateway) -> tuple[bool, dict[str, Any]]:
    """Healthy while the spool is below its warning level, every gateway worker (paho's network
    thread, each device's poll task, the writer's threads) runs, and neither the spool, the writer
    nor the historian reports a problem; devices that are down are reported but do not make the
    gateway unhealthy (the device is at fault, not the gateway)."""
    spool = gateway.spool
    down = [p.device.name for p in gateway.pollers if p.status.up is False]
    filling = spool.filling()
    problems = []
    if filling:
        problems.append(f"spool: {spool.depth()} of {spool.max_points} points, above its warning level")
    said: list[str] = []  # the writer's problem includes the spool's and the store's: each said once
    for what, owner in (("writer", gateway.writer), ("spool", spool), ("historian", gateway.writer.historian)):
        problem = getattr(owner, "problem", None)  # offered by their owners; absent on older ones
        found = problem() if callable(problem) else None
        if found and not any(found in earlier for earlier in said):
            said.append(found)
            problems.append(f"{what}: {found}")
    problems += [f"gateway worker {name}: {what}" for name, what in gateway.watchdog.problems().items()]
    body = {
        "status": _status(problems, filling),
        "store_up": gateway.writer.store_up,
        "spool_depth_points": spool.depth(),
        "spool_fill_ratio": round(spool.depth() / spool.max_points, 4),
        "mqtt_connected": gateway.mqtt.connected.is_set(),
        "devices_down": down,
        "problems": problems,
    }
    return not problems, body


def _up(status: DeviceStatus) -> float:
    return float(bool(status.up))


def _status(problems: list[str], filling: bool) -> str:
    if not problems:
        return "ok"
    return "spool_filling" if filling and len(problems) == 1 else "failing"
