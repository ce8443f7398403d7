"""Subscribe to sensor topics and turn JSON payloads into points; set malformed ones aside."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from gateway.sparkplug_host import NAMESPACE, SparkplugError, SparkplugHost
from gridverse.config import SensorConfig, Settings
from gridverse.mqtt import broker_host, connect_properties, make_client, stop_client, subscription
from gridverse.points import TELEMETRY, Point, Quality, Record, Source, is_ln_do_name, series_tags

OnDurable = Callable[[], None]

log = logging.getLogger(__name__)

REJECTED = "rejected"
MAX_PAYLOAD_BYTES = 64 * 1024


class PayloadError(ValueError):
    """A payload that cannot be turned into points; the message says what is wrong with it."""


@dataclass(frozen=True)
class JsonTelemetry:
    """The JSON form `{"time": <epoch ms>, "points": {"LN1.DO": {"value": v, "unit": u}}}`."""

    site: str
    sensor: SensorConfig
    _tags: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)

    def parse(self, payload: bytes, received_ns: int) -> list[Point]:
        """The message's points (for tools and tests; the gateway uses `parse_records`)."""
        return [
            Point(
                self.site,
                self.sensor.substation,
                self.sensor.bay or self.sensor.name,
                self.sensor.name,
                r.tags["point"],
                Source.MQTT,
                r.time_ns,
                float(r.fields["value"]),
                Quality.GOOD,
            )
            for r in self.parse_records(payload, received_ns)
        ]

    def parse_records(self, payload: bytes, received_ns: int) -> list[Record]:
        """Validate a message and turn it into telemetry rows, or raise PayloadError saying why."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise PayloadError(f"not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
        if type(doc) is not dict or type(doc.get("points")) is not dict:
            raise PayloadError('expected an object with a "points" object')
        t = doc.get("time")
        if t is None:
            time_ns = received_ns
        elif type(t) in (int, float) and 0 < t < 1e14:
            time_ns = int(t * 1_000_000)
        else:
            raise PayloadError(f'"time" must be epoch milliseconds, got {t!r:.40}')
        rows = []
        tags_of = self._tags
        for name, body in doc["points"].items():
            if type(body) is not dict or "value" not in body:
                raise PayloadError(f'point {name!r:.40}: expected {{"value": number, "unit": ...}}')
            value = body["value"]
            if type(value) not in (int, float):  # bool is not a number here, nor is a string
                raise PayloadError(f"point {name!r:.40}: value {value!r:.40} is not a number")
            if not math.isfinite(value):
                raise PayloadError(f"point {name!r:.40}: value {value} is not finite")
            tags = tags_of.get(name)
            if tags is None:
                tags = self._tags_for(name)
            rows.append(Record(TELEMETRY, tags, {"quality": "good", "value": float(value)}, time_ns))
        return rows

    def _tags_for(self, name: str) -> dict[str, str]:
        """The series tags of one of this sensor's points, checked and cached by name."""
        if not is_ln_do_name(name):
            raise PayloadError(f"point name {name!r:.40} is not an IEC 61850 LN.DO name")
        tags = series_tags(
            self.site, self.sensor.substation, self.sensor.bay or self.sensor.name, self.sensor.name, name, Source.MQTT
        )
        if len(self._tags) < 10_000:  # a sensor has a handful of points; a flood of names is not cached
            self._tags[name] = tags
        return tags


def _rejection(source: str, device: str, reason: str, topic: str, payload: str, now: int) -> Record:
    return Record(
        REJECTED,
        {"source": source, "device": device},
        {"reason": reason, "topic": topic[:200], "payload": payload},
        now,
    )


class MqttIngest:
    """A paho subscriber on `<prefix>/<site>/+/+/telemetry`, with a persistent QoS 1 session."""

    def __init__(
        self,
        settings: Settings,
        sink: Callable[[list[Record], OnDurable | None], None],
        reject: Callable[[list[Record], OnDurable | None], None],
    ) -> None:
        self.settings = settings
        self.sink, self.reject = sink, reject
        cfg = settings.mqtt
        self.subscription = subscription(cfg, f"{cfg.topic_prefix}/{settings.site.name}/+/+/telemetry")
        self.subscriptions = [self.subscription] + [
            subscription(cfg, f"{NAMESPACE}/{g}/#") for g in cfg.sparkplug_groups
        ]
        self.sparkplug = SparkplugHost(settings.site.name, lambda t, body: self.client.publish(t, body, qos=0))
        self.parsers = {s.name: JsonTelemetry(settings.site.name, s) for s in settings.site.sensors}
        # manual acknowledgement: a QoS 1 message is acknowledged only once its points are in the
        # spool, so a gateway killed in between gets it again from the broker
        self.client = make_client(cfg, f"gridverse-gateway-{settings.site.name}", clean_start=False, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.received = 0
        self.rejected = 0
        self.connected = threading.Event()
        self._stopping = False

    def start(self) -> None:
        cfg = self.settings.mqtt
        self.client.connect_async(
            broker_host(cfg), cfg.port, keepalive=30, **connect_properties(cfg, clean_start=False)
        )
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if getattr(rc, "is_failure", False):
            log.error("MQTT broker refused the gateway: %s", rc)
            return
        client.subscribe([(s, self.settings.mqtt.qos) for s in self.subscriptions])
        if not self.connected.is_set():
            log.info("MQTT connected; subscribed to %s", self.subscription)
        self.connected.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        if self._stopping:
            self.connected.clear()
            return
        if self.connected.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", rc)
        self.connected.clear()

    def handle(self, topic: str, payload: bytes, on_durable: OnDurable | None = None) -> None:
        """Parse one message; a bad one is counted and kept in `rejected` with its reason.
        `on_durable` runs once what the message became (points or its rejection) is spooled."""
        self.received += 1
        now = time.time_ns()
        if topic.startswith(NAMESPACE + "/"):
            self._handle_sparkplug(topic, payload, now, on_durable)
            return
        parts = topic.split("/")
        device = parts[3] if len(parts) == 5 else ""
        try:
            parser = self.parsers.get(device)
            if parser is None:
                raise PayloadError(f"no sensor named {device!r} in site.sensors")
            rows = parser.parse_records(payload, now)
        except PayloadError as exc:
            self.rejected += 1
            log.warning("rejected MQTT message on %s: %s", topic, exc)
            self.reject(
                [
                    _rejection(
                        "mqtt", device or "?", str(exc), topic, payload[:1024].decode("utf-8", "backslashreplace"), now
                    )
                ],
                on_durable,
            )
            return
        self.sink(rows, on_durable)

    def _handle_sparkplug(self, topic: str, payload: bytes, now: int, on_durable: OnDurable | None) -> None:
        try:
            rows, reasons = self.sparkplug.handle(topic, payload, now)
        except SparkplugError as exc:
            rows, reasons = [], [str(exc)]
        if reasons:
            self.rejected += 1
            log.warning("Sparkplug message on %s: %s", topic, "; ".join(reasons)[:300])
            self.reject(
                [
                    _rejection(
                        "sparkplug",
                        topic.split("/")[3] if topic.count("/") >= 3 else "?",
                        "; ".join(reasons),
                        topic,
                        payload.hex()[:1024],
                        now,
                    )
                ],
                None,
            )
        self.sink(rows, on_durable)

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        mid, qos = msg.mid, msg.qos
        self.handle(msg.topic, msg.payload, (lambda: client.ack(mid, qos)) if qos > 0 else None)

    def stop(self) -> None:
        self._stopping = True  # a disconnect asked for is not a lost connection
        stop_client(self.client)
