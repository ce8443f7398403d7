"""The gateway service: pollers and the MQTT subscriber feeding one historian writer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from gateway.metrics import GatewayMetrics, MetricsServer
from gateway.modbus_poller import DevicePoller, RtuConnection
from gateway.mqtt_ingest import MqttIngest
from gateway.northbound import normalised_messages
from gateway.spool import Spool, SpoolBatch
from gateway.writer import HistorianWriter, OnDurable
from gridverse.config import Settings
from gridverse.historian import Historian
from gridverse.points import Record
from gridverse.schema import Alarm, alarm_message, alarm_record

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings, historian: Historian) -> None:
        self.settings = settings
        cfg = settings.gateway
        sp = cfg.spool
        self.spool = Spool(
            sp.path,
            max_points=sp.max_points,
            policy=sp.policy,
            warn_fraction=sp.warn_fraction,
            synchronous=sp.synchronous,
        )
        self.writer = HistorianWriter(
            historian, self.spool, flush_interval_s=cfg.flush_interval_s, batch_points=sp.batch_points
        )
        self.connections = [
            RtuConnection(sub.model_copy(update={"host": cfg.rtu_host}) if cfg.rtu_host else sub, cfg)
            for sub in settings.site.substations
        ]
        self.metrics = GatewayMetrics()
        self.pollers = [
            DevicePoller(
                settings.site.name,
                sub,
                dev,
                settings.profiles[dev.profile],
                conn,
                cfg,
                self._sink_records,
                on_poll=self._observe_poll,
            )
            for sub, conn in zip(settings.site.substations, self.connections, strict=True)
            for dev in sub.devices
        ]
        self.mqtt = MqttIngest(settings, self._sink_records, self._reject)
        self.writer.on_written = self._count_out
        self.metrics.bind(self)
        self.server: MetricsServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._spool_alarm = False

    def _sink_records(self, records: list[Record], on_durable: OnDurable | None = None) -> None:
        """One submission (a poll, an MQTT message) of one source: counted by that source."""
        if records:
            self.metrics.points_in.labels(records[0].tags.get("source", "?")).inc(len(records))
            if self.settings.gateway.northbound:
                on_durable = self._republish_then(records, on_durable)
        self.writer.submit_records(records, on_durable)

    def _republish_then(self, records: list[Record], on_durable: OnDurable | None) -> OnDurable:
        """Once the points are in the spool: republish them normalised, then acknowledge upstream
        (a crash in between redelivers the message: at least once, like the store)."""

        def durable() -> None:
            for where, body in normalised_messages(self.settings.mqtt, records):
                self.mqtt.client.publish(where, body, qos=self.settings.mqtt.qos)
            if on_durable is not None:
                on_durable()

        return durable

    def _reject(self, records: list[Record], on_durable: OnDurable | None = None) -> None:
        if records:
            self.metrics.rejected.labels(records[0].tags.get("source", "?")).inc(len(records))
        self.writer.submit_records(records, on_durable)

    def _observe_poll(self, device: str, seconds: float) -> None:
        self.metrics.poll_latency.labels(device).observe(seconds)

    def _count_out(self, batches: Sequence[SpoolBatch], _started_ns: int, _written_ns: int) -> None:
        for b in batches:
            self.metrics.points_out.labels(b.source).inc(b.points)

    async def start(self) -> None:
        self.writer.start()
        self.mqtt.start()
        self._tasks = [asyncio.create_task(p.run(), name=p.device.name) for p in self.pollers]
        self._tasks.append(asyncio.create_task(self._watch_spool(), name="spool-watch"))
        port = self.settings.gateway.metrics_port
        if port is not None:
            self.server = MetricsServer(self, "0.0.0.0", port)
            self.server.start()
            log.info("gateway metrics on :%d/metrics, health on :%d/health", port, port)

    async def _watch_spool(self) -> None:
        """Alarm (log, spool, publish) once when the spool passes its warning level, clear once."""
        while True:
            await asyncio.sleep(1.0)
            filling = self.spool.filling()
            if filling == self._spool_alarm:
                continue
            self._spool_alarm = filling
            depth, limit = self.spool.depth(), self.spool.max_points
            if filling:
                message = (
                    f"spool {depth} of {limit} points ({depth / limit:.0%}); the historian has been "
                    f"unreachable for {self.spool.oldest_age_s():.0f} s"
                )
            else:
                message = "spool back below its warning level"
            (log.error if filling else log.info)("gateway: %s", message)
            # through the spool (the store may be the reason it fills) and at once over MQTT
            alarm = Alarm("spool", "", "gateway", "spool", "critical", message, float(depth))
            record = alarm_record(self.settings.site.name, alarm, time.time_ns(), filling)
            self.writer.submit_records([record])
            self.mqtt.client.publish(*alarm_message(self.settings.mqtt, record), qos=1)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self.connections:
            conn.close()
        await asyncio.to_thread(self.mqtt.stop)  # off the loop, which may host the embedded broker
        await asyncio.to_thread(self.writer.stop)
        self.spool.close()

    def device_status(self) -> dict[str, dict[str, object]]:
        return {
            p.device.name: {
                "up": p.status.up,
                "polls": p.status.polls,
                "failures": p.status.failures,
                "last_error": p.status.last_error,
            }
            for p in self.pollers
        }
