"""`gridverse gateway test`: poll every device once and listen to the sensors for a moment, and
print the points, like `telegraf --test`. Nothing is spooled or stored; the gateway's persistent
MQTT session is not touched (a separate, clean session listens)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from gateway.modbus_poller import DevicePoller, RtuConnection
from gateway.mqtt_ingest import MqttIngest
from gridverse.config import Settings
from gridverse.mqtt import broker_host, make_client, stop_client
from gridverse.points import Point, Record


def _line(p: Point) -> str:
    value = "-" if p.value is None else f"{p.value:.6g}"
    return f"{p.source.value:6} {p.substation}/{p.device}/{p.name:<16} {value:>14} {p.unit:<4} {p.quality.value}"


async def poll_all(settings: Settings) -> list[Point]:
    cfg = settings.gateway
    points: list[Point] = []
    for sub in settings.site.substations:
        target = sub.model_copy(update={"host": cfg.rtu_host}) if cfg.rtu_host else sub
        conn = RtuConnection(target, cfg)
        try:
            for dev in sub.devices:
                poller = DevicePoller(
                    settings.site.name, sub, dev, settings.profiles[dev.profile], conn, cfg, lambda _p: None
                )
                points += await poller.poll_once()
        finally:
            conn.close()
    return points


def listen(settings: Settings, seconds: float) -> tuple[list[Point], list[Record]]:
    got: list[Point] = []
    bad: list[Record] = []
    ingest = MqttIngest(
        settings, lambda rows, _ack: got.extend(map(Point.from_record, rows)), lambda recs, _ack: bad.extend(recs)
    )
    client = make_client(settings.mqtt, f"gridverse-gateway-test-{int(time.time())}", clean_start=True)
    connected = threading.Event()
    client.on_connect = lambda c, *_a: (c.subscribe(ingest.subscription, qos=1), connected.set())
    client.on_message = lambda _c, _u, msg: ingest.handle(msg.topic, msg.payload)
    client.connect_async(broker_host(settings.mqtt), settings.mqtt.port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(min(seconds, 5.0)):
            raise OSError(
                f"MQTT broker {broker_host(settings.mqtt)}:{settings.mqtt.port} did not answer; "
                "check mqtt.host/port (the demo's embedded broker runs only with the demo)"
            )
        time.sleep(seconds)
    finally:
        stop_client(client)
    return got, bad


def run_probe(settings: Settings, seconds: float, out: Callable[[str], None] = print) -> int:
    """Print every point; return the number of devices that did not answer."""
    polled = asyncio.run(poll_all(settings))
    for p in polled:
        out(_line(p))
    dead = sorted({p.device for p in polled if p.value is None})
    try:
        heard, bad = listen(settings, seconds)
    except OSError as exc:
        out(f"mqtt   {exc}")
        heard, bad = [], []
    for p in heard:
        out(_line(p))
    for r in bad:
        out(f"mqtt   rejected on {r.fields['topic']}: {r.fields['reason']}")
    silent = sorted({s.name for s in settings.site.sensors} - {p.device for p in heard})
    out(
        f"# {len(polled)} polled points ({len(dead)} devices without an answer: {dead}); "
        f"{len(heard)} MQTT points in {seconds:g} s; silent sensors: {silent}"
    )
    return len(dead)
