"""Subscribe to sensor topics and turn JSON payloads into points; set malformed ones aside.

No message can stop ingestion: what cannot be converted is a PayloadError/SparkplugError with
its reason, and anything unexpected while handling one message is caught in the message
callback, set aside in the rejected table with its type and text, counted, logged (at most one
line per interval), and acknowledged, so paho's network thread keeps running and the broker
does not redeliver the same poison message forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from gateway.mqtt_batching import BatchingClient
from gateway.sparkplug_host import NAMESPACE, SparkplugError, SparkplugHost
from gridverse.config import GatewayConfig, MqttConfig, SensorConfig, Settings, SiteConfig
from gridverse.mqtt import broker_host, connect_properties, make_client, stop_client, subscription
from gridverse.points import (
    TELEMETRY,
    Point,
    Quality,
    Record,
    Source,
    TimeError,
    check_time_ns,
    is_ln_do_name,
    series_tags,
)
from gridverse.schema import REJECTED, OnDurable

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024


class PayloadError(ValueError):
    """A payload that cannot be turned into points; the message says what is wrong with it."""


class Throttled:
    """Log the first of a kind of event, then at most one line per `every_s`, saying how many were
    not logged in between: a flood of bad messages is not a flood of log lines."""

    def __init__(self, logger: logging.Logger, every_s: float = 10.0) -> None:
        self.logger, self.every_s = logger, every_s
        self._last = -1e18
        self._skipped = 0
        self._lock = threading.Lock()

    def __call__(self, level: int, msg: str, *args: object, exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every_s:
                self._skipped += 1
                return
            self._last, skipped, self._skipped = now, self._skipped, 0
        if skipped:
            msg += f" ({skipped} more like it in the last {self.every_s:g} s not logged)"
        self.logger.log(level, msg, *args, exc_info=exc_info)


@dataclass(frozen=True)
class JsonTelemetry:
    """The JSON form `{"time": <epoch ms>, "points": {"LN1.DO": {"value": v, "unit": u}}}`."""

    site: str
    sensor: SensorConfig
    max_future_s: float = 300.0
    max_past_s: float = 10 * 365.25 * 86400
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
        except RecursionError:
            raise PayloadError("not JSON (nested too deeply)") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer beyond 4300 digits
            if "integer string conversion" in str(exc):
                raise PayloadError("a number of more than 4300 digits: not a measurement") from None
            raise PayloadError(f"not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
        if type(doc) is not dict or type(doc.get("points")) is not dict:
            raise PayloadError('expected an object with a "points" object')
        t = doc.get("time")
        if t is None:
            time_ns = received_ns
        elif type(t) is int or (type(t) is float and math.isfinite(t)):
            try:
                t_ns = t * 1_000_000 if type(t) is int else int(t * 1_000_000)
                # against the wall clock, not received_ns, so that tools replaying a file can pass 0
                time_ns = check_time_ns(
                    t_ns, time.time_ns(), max_future_s=self.max_future_s, max_past_s=self.max_past_s
                )
            except (TimeError, OverflowError) as exc:  # OverflowError: a float time times 1e6 is infinite
                raise PayloadError(f'"time" {t!r:.40} (epoch ms): {exc}') from None
        else:
            raise PayloadError(f'"time" must be epoch milliseconds, got {t!r:.40}')
        rows = []
        tags_of = self._tags
        for name, body in doc["points"].items():
            if type(body) is not dict or "value" not in body:
                raise PayloadError(f'point {name!r:.40}: expected {{"value": number, "unit": ...}}')
            value = body["value"]
            kind = type(value)
            if kind is int:
                try:
                    value = float(value)
                except OverflowError:
                    raise PayloadError(
                        f"point {name!r:.40}: an integer of {value.bit_length()} bits is beyond the float range "
                        "(±1.8e308)"
                    ) from None
            elif kind is not float:  # bool is not a number here, nor is a string
                raise PayloadError(f"point {name!r:.40}: value {value!r:.40} is not a number")
            if not math.isfinite(value):
                raise PayloadError(f"point {name!r:.40}: value {value} is not finite")
            tags = tags_of.get(name)
            if tags is None:
                tags = self._tags_for(name)
            rows.append(Record(TELEMETRY, tags, {"quality": "good", "value": value}, time_ns))
        return rows

    def _tags_for(self, name: str) -> dict[str, str]:
        """The series tags of one of this sensor's points, checked and cached by name."""
        if not is_ln_do_name(name):
            raise PayloadError(
                f"point name {name!r:.40} is not an IEC 61850 LN.DO name (LN class and instance, a dot, a data "
                "object, e.g. YPTR1.TmpOil)"
            )
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


class _Once:
    """An acknowledgement that runs at most once, whichever path (points, rejection, last-resort
    guard) gets the message to disk first."""

    __slots__ = ("_fn",)

    def __init__(self, fn: OnDurable) -> None:
        self._fn: OnDurable | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class MqttIngest:
    """A paho subscriber on `<prefix>/<site>/+/+/telemetry` (and the Sparkplug B groups), with a
    persistent QoS 1 session; the Sparkplug host application STATE is published when it hosts
    Sparkplug groups."""

    def __init__(
        self,
        mqtt_config: MqttConfig,
        site_config: SiteConfig,
        gateway_config: GatewayConfig,
        sink: Callable[[list[Record], OnDurable | None], None],
        reject: Callable[[list[Record], OnDurable | None], None],
    ) -> None:
        self.config = mqtt_config
        self.sink, self.reject = sink, reject
        cfg, gw, site = mqtt_config, gateway_config, site_config.name
        self.subscription = subscription(cfg, f"{cfg.topic_prefix}/{site}/+/+/telemetry")
        self.subscriptions = [self.subscription] + [
            subscription(cfg, f"{NAMESPACE}/{g}/#") for g in cfg.sparkplug_groups
        ]
        # Sparkplug 3.0 host application: its STATE (retained, QoS 1) tells edge nodes that wait for
        # a primary host to send their births; the will says offline when the gateway goes away
        self.host_id = cfg.sparkplug_host_id or f"gridverse-{site}{cfg.client_suffix}"  # one per process
        self.state_topic = f"{NAMESPACE}/STATE/{self.host_id}" if cfg.sparkplug_groups else None
        if self.state_topic is not None:
            self.subscriptions.append(self.state_topic)  # its own STATE, never shared (Sparkplug 3.0)
        self._state_ms = 0
        self.sparkplug = SparkplugHost(
            site,
            self._publish_command,
            max_future_s=gw.max_future_s,
            max_past_s=gw.max_past_s,
        )
        self.parsers = {
            s.name: JsonTelemetry(site, s, max_future_s=gw.max_future_s, max_past_s=gw.max_past_s)
            for s in site_config.sensors
        }
        # manual acknowledgement: a QoS 1 message is acknowledged only once its points are in the
        # spool, so a gateway killed in between gets it again from the broker
        # read in batches at light load (gateway.mqtt_batch_s): a few messages per wake-up
        self.client: BatchingClient = make_client(  # type: ignore[assignment]
            cfg, f"gridverse-gateway-{site}", clean_start=False, manual_ack=True, client_class=BatchingClient
        )
        self.client.batch_s = gw.mqtt_batch_s
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.received = 0
        self.rejected = 0
        self.failures = 0  # messages that raised something unexpected (set aside by the guard)
        self.redeliveries = 0  # session reconnects asked for by request_redelivery
        self.connected = threading.Event()
        self._stopping = False
        self._reconnecting = False
        self._session = threading.Lock()  # one of start/redeliver/stop at a time
        self._redeliver_lock = threading.Lock()
        self._redeliver_pending = False
        self._redeliver_thread: threading.Thread | None = None
        self._log_rejection = Throttled(log, 10.0)
        self._log_failure = Throttled(log, 60.0)

    @classmethod
    def of(
        cls,
        settings: Settings,
        sink: Callable[[list[Record], OnDurable | None], None],
        reject: Callable[[list[Record], OnDurable | None], None],
    ) -> MqttIngest:
        """The subscriber for a whole configuration (it takes the MQTT, site and gateway sections)."""
        return cls(settings.mqtt, settings.site, settings.gateway, sink, reject)

    def _publish_command(self, topic: str, body: bytes) -> None:
        self.client.publish(topic, body, qos=0)

    # -- session ------------------------------------------------------------------------------
    def start(self) -> None:
        with self._session:
            self._connect()
            self.client.loop_start()

    def _connect(self) -> None:
        cfg = self.config
        self._set_will()
        self.client.connect_async(
            broker_host(cfg), cfg.port, keepalive=30, **connect_properties(cfg, clean_start=False)
        )

    def _state(self, online: bool) -> bytes:
        return json.dumps({"online": online, "timestamp": self._state_ms}).encode()

    def _set_will(self) -> None:
        """A new STATE timestamp for the next connection: its will (offline) and, once connected,
        its birth (online) carry the same one, as Sparkplug 3.0 requires."""
        if self.state_topic is None:
            return
        self._state_ms = max(int(time.time() * 1000), self._state_ms + 1)
        self.client.will_set(self.state_topic, self._state(False), qos=1, retain=True)

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if getattr(rc, "is_failure", False):
            log.error("MQTT broker refused the gateway: %s", rc)
            return
        qos: int = self.config.qos
        client.subscribe([(s, qos) for s in self.subscriptions])
        if self.state_topic is not None:  # after subscribing, as the spec orders it
            client.publish(self.state_topic, self._state(True), qos=1, retain=True)
        if not self.connected.is_set() and not self._reconnecting:
            log.info("MQTT connected; subscribed to %s", ", ".join(self.subscriptions))
            if self.state_topic is not None:
                log.info("Sparkplug host application %r online on %s", self.host_id, self.state_topic)
        self.connected.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        if self._stopping or self._reconnecting:
            self.connected.clear()
            return
        if self.connected.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", rc)
        self.connected.clear()
        self._set_will()  # paho reconnects after this callback: the next session's will and birth

    def request_redelivery(self) -> None:
        """Make the broker send again the QoS 1 messages it delivered but that were never
        acknowledged (the spool refused them while full): a broker resends in-flight messages only
        when the persistent session reconnects, so disconnect cleanly (no will: the Sparkplug
        STATE stays online) and reconnect. Returns at once; the reconnect runs in its own thread,
        and calls while one runs are folded into one more."""
        with self._redeliver_lock:
            if self._stopping:
                return
            if self._redeliver_thread is not None and self._redeliver_thread.is_alive():
                self._redeliver_pending = True
                return
            self._redeliver_pending = False
            self._redeliver_thread = threading.Thread(target=self._redeliver, name="mqtt-redeliver", daemon=True)
            self._redeliver_thread.start()

    def _redeliver(self) -> None:
        while True:
            with self._session:
                if self._stopping:
                    return
                log.info("MQTT: reconnecting the session so the broker redelivers the unacknowledged messages")
                self.redeliveries += 1
                self._reconnecting = True
                try:
                    self.client.disconnect()
                    self.client.loop_stop()
                    self._connect()
                    if self.client.loop_start() != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS:
                        self.client.loop_stop()  # someone (a watchdog) started a loop in between
                        self.client.loop_start()
                except Exception as exc:  # paho refused: its own reconnect loop is the fallback
                    log.error("MQTT: reconnect for redelivery failed (%s: %s)", type(exc).__name__, exc)
            connected = self.connected.wait(10)  # not holding the session lock: stop() may go on
            self._reconnecting = False
            if not connected and not self._stopping:
                log.warning("MQTT: not reconnected within 10 s after a redelivery request; paho keeps trying")
            with self._redeliver_lock:
                if not self._redeliver_pending or self._stopping:
                    return
                self._redeliver_pending = False
            time.sleep(1.0)  # at most one reconnect a second

    def stop(self) -> None:
        with self._redeliver_lock:
            self._stopping = True  # a disconnect asked for is not a lost connection
        with self._session:
            if self.state_topic is not None and self.connected.is_set():
                info = self.client.publish(self.state_topic, self._state(False), qos=1, retain=True)
                with contextlib.suppress(Exception):
                    info.wait_for_publish(2.0)
            stop_client(self.client)

    # -- messages -----------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, on_durable: OnDurable | None = None) -> None:
        """Parse one message; a bad one is counted and kept in `rejected` with its reason.
        `on_durable` runs once what the message became (points or its rejection) is spooled."""
        self.received += 1
        now = time.time_ns()
        if topic.startswith(NAMESPACE + "/"):
            if topic.startswith(NAMESPACE + "/STATE/"):
                self._handle_state(topic, payload)
                if on_durable is not None:
                    on_durable()  # a host's STATE is not telemetry: nothing to spool
                return
            self._handle_sparkplug(topic, payload, now, on_durable)
            return
        parts = topic.split("/")
        device = parts[3] if len(parts) == 5 else ""
        try:
            parser = self.parsers.get(device)
            if parser is None:
                raise PayloadError(f"no sensor named {device!r:.60} in site.sensors")
            rows = parser.parse_records(payload, now)
        except PayloadError as exc:
            self.rejected += 1
            self._log_rejection(logging.WARNING, "rejected MQTT message on %s: %s", topic, exc)
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

    def handle_safely(self, topic: str, payload: bytes, on_durable: OnDurable | None = None) -> None:
        """`handle`, with the last-resort guard: anything unexpected is set aside with its type and
        text, counted, logged (throttled) and the message acknowledged; never raised to paho."""
        ack = _Once(on_durable) if on_durable is not None else None
        try:
            self.handle(topic, payload, ack)
        except Exception as exc:
            self._set_aside_failure(topic, payload, exc, ack)

    def _set_aside_failure(self, topic: str, payload: bytes, exc: Exception, ack: OnDurable | None) -> None:
        self.failures += 1
        self.rejected += 1
        reason = f"unexpected {type(exc).__name__} while handling the message: {str(exc)[:300]}"
        self._log_failure(
            logging.ERROR,
            "MQTT message on %s set aside and acknowledged: %s (a bug: please report it with the rejected row)",
            topic[:200],
            reason,
            exc_info=exc,
        )
        sparkplug = topic.startswith(NAMESPACE + "/")
        parts = topic.split("/")
        device = (parts[3] if len(parts) >= 4 else "?") or "?"
        text = payload[:1024].hex() if sparkplug else payload[:1024].decode("utf-8", "backslashreplace")
        try:
            self.reject(
                [_rejection("sparkplug" if sparkplug else "mqtt", device, reason, topic, text, time.time_ns())], ack
            )
        except Exception as again:  # not even the rejection could be queued: acknowledge, say so
            log.error("MQTT message on %s could not be set aside either (%s); acknowledged", topic[:200], again)
            if ack is not None:
                with contextlib.suppress(Exception):
                    ack()

    def _handle_state(self, topic: str, payload: bytes) -> None:
        """A host application's STATE: if it is ours and says offline while we run (a stale will
        delivered late, a session taken over), say online again."""
        if topic != self.state_topic or not self.connected.is_set() or self._stopping:
            return
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        if type(doc) is dict and doc.get("online") is False and doc.get("timestamp") == self._state_ms:
            log.warning("Sparkplug: our own STATE says offline while connected; publishing online again")
            self.client.publish(topic, self._state(True), qos=1, retain=True)

    def _handle_sparkplug(self, topic: str, payload: bytes, now: int, on_durable: OnDurable | None) -> None:
        try:
            rows, reasons = self.sparkplug.handle(topic, payload, now)
        except SparkplugError as exc:
            rows, reasons = [], [str(exc)]
        if reasons:
            self.rejected += 1
            self._log_rejection(logging.WARNING, "Sparkplug message on %s: %s", topic, "; ".join(reasons)[:300])
            self.reject(
                [
                    _rejection(
                        "sparkplug",
                        topic.split("/")[3] if topic.count("/") >= 3 else "?",
                        "; ".join(reasons)[:2000],
                        topic,
                        payload.hex()[:1024],
                        now,
                    )
                ],
                None,
            )
        self.sink(rows, on_durable)

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        mid, qos, payload = msg.mid, msg.qos, bytes(msg.payload)

        def ack() -> None:
            client.ack(mid, qos)

        on_durable = ack if qos > 0 else None
        try:
            topic = msg.topic  # decoded from UTF-8 by paho: may raise
        except Exception as exc:
            topic = msg._topic.decode("utf-8", "backslashreplace")
            self._set_aside_failure(topic, payload, exc, on_durable)
            return
        self.handle_safely(topic, payload, on_durable)
