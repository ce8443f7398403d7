"""`gridverse gateway test`: poll every device once and listen to the sensors (JSON and Sparkplug
B) for a moment, and print the points, like `telegraf --test`. Nothing is spooled or stored; the
gateway's persistent MQTT session is not touched (a separate, clean session listens, outside any
shared subscription group, so it takes no message away from a running gateway). To learn the
names behind Sparkplug aliases it asks edge nodes it hears for a rebirth, as any host joining late
does."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from gateway.modbus_poller import DevicePoller, RtuConnection
from gateway.mqtt_ingest import MqttIngest
from gridverse.config import Settings
from gridverse.mqtt import broker_host, make_client, stop_client
from gridverse.points import Point, Quality, Record, Source

_SHARE = "$share/"


def _line(p: Point) -> str:
    text = p.extra.get("text", "")
    value = f"{text!r:.14}" if text else "-" if p.value is None else f"{p.value:.6g}"
    return f"{p.source.value:6} {p.substation}/{p.device}/{p.name:<16} {value:>14} {p.unit:<4} {p.quality.value}"


async def poll_all(settings: Settings) -> list[Point]:
    cfg = settings.gateway
    points: list[Point] = []
    for sub in settings.site.substations:
        target = cfg.reach(sub)
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


def _unshared(topic_filter: str) -> str:
    """`$share/<group>/<filter>` → `<filter>`: the probe must not take a share of the gateway's messages."""
    return topic_filter.split("/", 2)[2] if topic_filter.startswith(_SHARE) else topic_filter


def listen(settings: Settings, seconds: float) -> tuple[list[Point], list[Record]]:
    """The points (and rejections) heard on the JSON and Sparkplug B topics within `seconds`."""
    got: list[Point] = []
    bad: list[Record] = []
    ingest = MqttIngest.of(
        settings, lambda rows, _ack: got.extend(map(Point.from_record, rows)), lambda recs, _ack: bad.extend(recs)
    )
    filters = [_unshared(s) for s in ingest.subscriptions if s != ingest.state_topic]
    client = make_client(settings.mqtt, f"gridverse-gateway-test-{int(time.time())}", clean_start=True)

    def request(topic: str, body: bytes) -> None:  # the host's rebirth requests go out on the probe's client
        client.publish(topic, body, qos=0)

    ingest.sparkplug.publish = request
    connected = threading.Event()

    def on_connect(c: mqtt.Client, *_a: object) -> None:
        c.subscribe([(f, 1) for f in filters])
        connected.set()

    client.on_connect = on_connect
    client.on_message = lambda _c, _u, msg: ingest.handle_safely(msg.topic, bytes(msg.payload))
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
    """Print every point; return the number of devices that did not answer. A point without a
    number (a string point, a SunSpec 'not implemented' value) is an answer, not a dead device."""
    polled = asyncio.run(poll_all(settings))
    for p in polled:
        out(_line(p))
    dead = sorted({p.device for p in polled if p.quality is Quality.COMM_FAIL})
    try:
        heard, bad = listen(settings, seconds)
    except OSError as exc:
        out(f"mqtt   {exc}")
        heard, bad = [], []
    for p in heard:
        out(_line(p))
    for r in bad:
        out(f"mqtt   rejected on {r.fields['topic']}: {r.fields['reason']}")
    silent = sorted({s.name for s in settings.site.sensors} - {p.device for p in heard if p.source is Source.MQTT})
    nodes = sorted({f"{p.substation}/{p.bay}" for p in heard if p.source is Source.SPARKPLUG})
    sparkplug = f"; Sparkplug edge nodes heard: {nodes}" if settings.mqtt.sparkplug_groups else ""
    out(
        f"# {len(polled)} polled points ({len(dead)} devices without an answer: {dead}); "
        f"{len(heard)} MQTT points in {seconds:g} s; silent sensors: {silent}{sparkplug}"
    )
    return len(dead)
