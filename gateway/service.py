"""The gateway service: pollers and the MQTT subscriber feeding one historian writer."""

from __future__ import annotations

import asyncio
import logging

from gateway.modbus_poller import DevicePoller, RtuConnection
from gateway.mqtt_ingest import MqttIngest
from gateway.writer import BufferFull, HistorianWriter
from gridverse.config import Settings
from gridverse.historian import Historian
from gridverse.points import Point

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings, historian: Historian) -> None:
        self.settings = settings
        cfg = settings.gateway
        self.writer = HistorianWriter(historian, cfg.flush_interval_s, cfg.max_buffer_points)
        self.connections = [
            RtuConnection(sub.model_copy(update={"host": cfg.rtu_host}) if cfg.rtu_host else sub, cfg)
            for sub in settings.site.substations
        ]
        self.pollers = [
            DevicePoller(settings.site.name, sub, dev, settings.profiles[dev.profile], conn, cfg,
                         self._sink)  # fmt: skip
            for sub, conn in zip(settings.site.substations, self.connections, strict=True)
            for dev in sub.devices
        ]
        self.mqtt = MqttIngest(settings, self._sink, self.writer.submit_records)
        self._tasks: list[asyncio.Task[None]] = []
        self.overflowed = 0

    def _sink(self, points: list[Point]) -> None:
        try:
            self.writer.submit(points)
        except BufferFull as exc:
            self.overflowed += len(points)
            log.error("%s", exc)

    async def start(self) -> None:
        self.writer.start()
        self.mqtt.start()
        self._tasks = [asyncio.create_task(p.run(), name=p.device.name) for p in self.pollers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self.connections:
            conn.close()
        await asyncio.to_thread(self.mqtt.stop)  # off the loop, which may host the embedded broker
        await asyncio.to_thread(self.writer.stop)

    def device_status(self) -> dict[str, dict[str, object]]:
        return {
            p.device.name: {"up": p.status.up, "polls": p.status.polls,
                            "failures": p.status.failures, "last_error": p.status.last_error}
            for p in self.pollers
        }  # fmt: skip
