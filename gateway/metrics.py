"""Prometheus `/metrics` and a `/health` endpoint for the gateway (prometheus_client).

Metric names follow ARCHITECTURE.md: `gridverse_gateway_<what>_<unit>`. Gauges that describe
state (spool depth and age, device up, store up) are read when scraped, so they are never stale.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

if TYPE_CHECKING:
    from gateway.service import Gateway


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            self.device_up.labels(poller.device.name).set_function(lambda s=status: float(bool(s.up)))


def health(gateway: Gateway) -> tuple[bool, dict]:
    """Healthy while the spool is below its warning level and the store or the spool is taking
    points; devices that are down are reported but do not make the gateway unhealthy."""
    spool = gateway.spool
    down = [p.device.name for p in gateway.pollers if p.status.up is False]
    filling = spool.filling()
    body = {
        "status": "ok" if not filling else "spool_filling",
        "store_up": gateway.writer.store_up,
        "spool_depth_points": spool.depth(),
        "spool_fill_ratio": round(spool.depth() / spool.max_points, 4),
        "mqtt_connected": gateway.mqtt.connected.is_set(),
        "devices_down": down,
    }
    return not filling, body


class MetricsServer:
    """`/metrics` (Prometheus text format) and `/health` (JSON, 200 or 503) on one port."""

    def __init__(self, gateway: Gateway, host: str, port: int) -> None:
        self.gateway = gateway
        metrics_app = make_wsgi_app(gateway.metrics.registry)

        def app(environ: dict, start_response):
            if environ.get("PATH_INFO") == "/health":
                ok, body = health(gateway)
                start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
                return [json.dumps(body).encode()]
            return metrics_app(environ, start_response)

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
