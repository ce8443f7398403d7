"""No message stops MQTT ingestion: the reproductions from issue 9 (a 401-digit and a 4,301-digit
integer, a time of 9999999999999 ms, a 20-byte malformed Sparkplug B NBIRTH) and property tests
with arbitrary bytes and arbitrary JSON, all driven through one real gateway (MQTT ingest →
spool → embedded historian) on a real Mosquitto. Every valid message sent after any sequence of
invalid ones is stored, every invalid one is in the rejected table with its reason, and paho's
network thread is still alive and connected."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway.mqtt_ingest import JsonTelemetry, MqttIngest, PayloadError
from gateway.service import Gateway
from gateway.sparkplug import DOUBLE, INT64, FrameError, Metric, Payload, decode_payload, encode_payload
from gridverse.config import MqttConfig, Settings
from gridverse.historian import open_historian
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.settings import load_settings
from tests.helpers import config_dir
from tests.services import mosquitto, wait_for

SITE = "rural1"
JSON_TOPIC = f"gridverse/{SITE}/primary/T1-oil/telemetry"
MARK = "YPTR1.TmpMark"  # the valid messages' point: a name the generators below never produce
GROUP = "sp1"


@dataclass
class Live:
    """One running gateway and a publisher, shared by the tests of this module."""

    gw: Gateway
    reader: EmbeddedHistorian
    pub: mqtt.Client
    port: int
    settings: Settings
    serial: list[int] = field(default_factory=lambda: [0])

    def publish(self, topic: str, payload: bytes) -> None:
        self.pub.publish(topic, payload, qos=1).wait_for_publish(10)

    def next_mark(self) -> int:
        self.serial[0] += 1
        return self.serial[0]

    def valid_json(self, k: int) -> bytes:
        """A valid sensor message whose value and time are unique to `k`."""
        return json.dumps({"time": int(time.time() * 1000) - 60_000 + k, "points": {MARK: {"value": k}}}).encode()

    def marks(self, source: str = "mqtt", point: str = MARK) -> set[float]:
        rows = self.reader.query("telemetry", tags={"source": source, "point": point})
        return {float(r.fields["value"]) for r in rows if "value" in r.fields}

    def rejected(self) -> list[dict[str, Any]]:
        return [r.fields | r.tags for r in self.reader.query("rejected")]

    def wait_stored(self, expected: set[float], source: str = "mqtt", point: str = MARK) -> None:
        wait_for(lambda: expected <= self.marks(source, point), f"{len(expected)} valid {source} points", timeout=30)

    def healthy(self) -> None:
        """MQTT still connected, paho's network thread alive, nothing unexpected raised."""
        thread = self.gw.mqtt.client._thread
        assert thread is not None and thread.is_alive(), "paho's network thread died"
        assert self.gw.mqtt.connected.is_set()
        assert self.gw.mqtt.failures == 0, "a message raised something other than PayloadError/SparkplugError"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("poison")
    with mosquitto(tmp) as port:

        def mutate(doc: dict[str, Any]) -> None:
            doc["mqtt"].update({"host": "127.0.0.1", "port": port, "sparkplug_groups": [GROUP]})
            doc["gateway"]["poll_interval_s"] = 60.0  # its RTUs are not running: poll them rarely

        settings = load_settings(config_dir(tmp, mutate))
        historian = open_historian(settings.historian)
        loop = asyncio.new_event_loop()
        runner = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
        runner.start()

        async def start() -> Gateway:  # built on its loop: its Modbus clients need a running one
            gateway = Gateway(settings, historian)
            await gateway.start()
            return gateway

        gw = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        assert gw.mqtt.connected.wait(15)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="poison-publisher")
        pub.max_inflight_messages_set(100)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        time.sleep(0.3)  # the gateway's subscriptions are in place
        reader = EmbeddedHistorian(settings.historian.path)
        try:
            yield Live(gw, reader, pub, port, settings)
        finally:
            pub.loop_stop()
            pub.disconnect()
            asyncio.run_coroutine_threadsafe(gw.stop(), loop).result(60)
            loop.call_soon_threadsafe(loop.stop)
            runner.join(10)
            reader.close()
            historian.close()


# ------------------------------------------------------------------ the reproductions of issue 9
def _value(v: str) -> bytes:
    return ('{"points": {"YPTR1.TmpOil": {"value": ' + v + "}}}").encode()


#: a 20-byte Sparkplug B NBIRTH whose metric carries its int value as a length-delimited field:
#: it used to raise `ValueError: invalid literal for int()` in paho's network thread
NBIRTH_20_BYTES = bytes([0x12, 0x10, 0x20, 0x03, 0x52, 0x0C]) + b"123abc456def" + bytes([0x18, 0x00])


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (JSON_TOPIC, _value("9" * 401), "beyond the float range"),
        (JSON_TOPIC, _value("9" * 4301), "more than 4300 digits"),
        (JSON_TOPIC, b'{"time": 9999999999999, "points": {"YPTR1.TmpOil": {"value": 1}}}', "int64"),
        (f"spBv1.0/{GROUP}/NBIRTH/edge20", NBIRTH_20_BYTES, "bad Sparkplug B frame"),
    ],
    ids=["401-digit int", "4301-digit int", "time 9999999999999", "20-byte NBIRTH"],
)
def test_issue_9_poison_messages_are_set_aside_and_ingestion_goes_on(
    live: Live, topic: str, payload: bytes, reason: str
) -> None:
    assert len(NBIRTH_20_BYTES) == 20
    before = len(live.rejected())
    for _ in range(2):  # twice: the first one no longer takes the network thread with it
        live.publish(topic, payload)
    mark = live.next_mark()
    live.publish(JSON_TOPIC, live.valid_json(mark))
    live.wait_stored({float(mark)})
    wait_for(lambda: len(live.rejected()) >= before + 2, "both poison messages in the rejected table")
    kept = live.rejected()[before:]
    assert all(reason in str(r["reason"]) and r["topic"] == topic for r in kept), kept
    live.healthy()


def test_a_point_far_in_the_future_is_refused_before_it_reaches_the_store(live: Live) -> None:
    """An hour ahead passes `0 < t < 1e14` but not the plausibility window (gateway.max_future_s)."""
    ahead = int(time.time() * 1000) + 3_600_000
    parser = JsonTelemetry(SITE, live.settings.site.sensors[0], max_future_s=300)
    body = json.dumps({"time": ahead, "points": {"YPTR1.TmpOil": {"value": 1.0}}}).encode()
    with pytest.raises(PayloadError, match=r"ahead of the gateway clock.*gateway\.max_future_s"):
        parser.parse_records(body, time.time_ns())
    assert JsonTelemetry(SITE, live.settings.site.sensors[0], max_future_s=7200).parse_records(body, 0)
    with pytest.raises(PayloadError, match="before the gateway clock"):
        parser.parse_records(b'{"time": 1, "points": {"YPTR1.TmpOil": {"value": 1.0}}}', 0)


@pytest.mark.parametrize("t", ["1.7e308", "-1.7e308", "1e400", "9223372036854775807", "-1", "0", "1e-300", "NaN"])
def test_an_extreme_time_is_a_payload_error_not_a_crash(live: Live, t: str) -> None:
    parser = JsonTelemetry(SITE, live.settings.site.sensors[0])
    with pytest.raises(PayloadError, match='"time"'):
        parser.parse_records(('{"time": ' + t + ', "points": {"YPTR1.TmpOil": {"value": 1}}}').encode(), 0)


# ------------------------------------------------------------------ property tests
_names = st.one_of(
    st.sampled_from(["YPTR1.TmpOil", "MMXU1.TotW", "Inverter.Power", "tmp", "YPTR1.", ".TmpOil", "YPTR1.Tmp Oil"]),
    st.text(max_size=16),
)
_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**420),
    st.integers(max_value=-(10**300), min_value=-(10**420)),
    st.floats(allow_nan=True, allow_infinity=True),
)
_times = st.one_of(
    st.sampled_from([9999999999999, 0, -1, 2**63, 2**64, 10**30, 1e14, 1e300, -1e300, 1.7e308, -1.7e308]),
    _numbers,
    st.text(max_size=8),
    st.none(),
)
_json_values = st.recursive(
    st.none() | st.booleans() | _numbers | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=20,
)
_near_valid = st.builds(
    lambda t, pts: json.dumps({"time": t, "points": pts}).encode(),
    _times,
    st.dictionaries(_names, st.one_of(st.fixed_dictionaries({"value": _numbers}), _json_values), max_size=3),
)
_invalid_json = st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v).encode()),
    _near_valid,
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=4300, max_value=5000).map(lambda n: _value("1" * n)),
    st.sampled_from([_value("NaN"), _value("Infinity"), _value("-Infinity"), _value("1e999"), b"", b"null"]),
)
_json_topics = st.sampled_from(
    [JSON_TOPIC, f"gridverse/{SITE}/primary/T2-oil/telemetry", f"gridverse/{SITE}/primary/ghost/telemetry"]
)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_json_topics, _invalid_json, st.booleans()), min_size=1, max_size=12))
def test_any_json_before_a_valid_message_never_stops_it(live: Live, messages: list[tuple[str, bytes, bool]]) -> None:
    before = len(live.rejected())
    expected_rejected = 0
    marks: set[float] = set()
    for topic, payload, then_valid in messages:
        device = topic.split("/")[3]
        parser = live.gw.mqtt.parsers.get(device)
        try:
            if parser is None:
                raise PayloadError("unknown sensor")
            parser.parse_records(payload, time.time_ns())
        except PayloadError:
            expected_rejected += 1
        live.publish(topic, payload)
        if then_valid:
            mark = live.next_mark()
            marks.add(float(mark))
            live.publish(JSON_TOPIC, live.valid_json(mark))
    mark = live.next_mark()
    marks.add(float(mark))
    live.publish(JSON_TOPIC, live.valid_json(mark))
    live.wait_stored(marks)
    wait_for(lambda: len(live.rejected()) >= before + expected_rejected, "every invalid message set aside")
    assert all(r["reason"] for r in live.rejected()[before:])
    live.healthy()


_kinds = st.sampled_from(["NBIRTH", "NDATA", "DDATA"])
_nodes = st.sampled_from(["good", "other", "x"])


def _frame_topic(kind: str, node: str) -> str:
    return f"spBv1.0/{GROUP}/{kind}/{node}" + ("/dev1" if kind == "DDATA" else "")


def _valid_session(first_value: int, n: int) -> list[tuple[str, bytes]]:
    """What a common edge library sends: an NBIRTH with names, aliases and datatypes, then NDATA by
    alias only, without datatypes (Sparkplug 3.0: DATA messages SHOULD NOT carry them)."""
    now = int(time.time() * 1000)
    birth = Payload(
        now,
        0,
        [
            Metric("bdSeq", None, None, INT64, value=0),
            Metric("Inverter/MMXU1/TotW", 1, now - 50_000 + first_value, DOUBLE, value=float(first_value)),
        ],
    )
    out = [(_frame_topic("NBIRTH", "good"), encode_payload(birth))]
    for i in range(1, n + 1):
        value = first_value + i
        metric = _alias_only_double(1, now - 50_000 + value, float(value))
        out.append(
            (
                _frame_topic("NDATA", "good"),
                encode_payload(Payload(now, i, [])) + b"\x12" + bytes([len(metric)]) + metric,
            )
        )
    return out


def _alias_only_double(alias: int, t_ms: int, value: float) -> bytes:
    """A metric with alias, timestamp and a double value, and no name and no datatype field."""

    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            b, v = v & 0x7F, v >> 7
            out.append(b | 0x80 if v else b)
            if not v:
                return bytes(out)

    return b"\x10" + varint(alias) + b"\x18" + varint(t_ms) + b"\x69" + struct.pack("<d", value)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_kinds, _nodes, st.binary(max_size=120)), min_size=1, max_size=12), st.integers(1, 4))
def test_any_sparkplug_frames_before_a_valid_session_never_stop_it(
    live: Live, garbage: list[tuple[str, str, bytes]], n_data: int
) -> None:
    before = len(live.rejected())
    broken = 0  # frames that are not protobuf: each must be in the rejected table
    for kind, node, frame in garbage:
        try:
            decode_payload(frame)
        except FrameError:
            broken += 1
        live.publish(_frame_topic(kind, node), frame)
    first = live.next_mark() * 10  # this session's values are first..first+n_data: unique to it
    for topic, body in _valid_session(first, n_data):
        live.publish(topic, body)
    expected = {float(first + i) for i in range(n_data + 1)}
    live.wait_stored(expected, source="sparkplug", point="MMXU1.TotW")
    wait_for(
        lambda: len([r for r in live.rejected()[before:] if "bad Sparkplug B frame" in str(r["reason"])]) >= broken,
        "every broken frame set aside",
    )
    live.healthy()


# ------------------------------------------------------------------ the last-resort guard
def test_an_unexpected_error_is_set_aside_acknowledged_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever goes wrong inside the handling of one message (here the sink itself raises) is
    caught in the callback: the network thread lives, the message is kept in the rejected rows
    with the exception's type, it is acknowledged (a new session gets nothing redelivered), and a
    flood of them is a line or two in the log, not a traceback per message."""
    with mosquitto(tmp_path) as port:
        base = load_settings()
        settings = base.model_copy(update={"mqtt": MqttConfig(host="127.0.0.1", port=port)})
        good: list = []
        kept: list = []

        def sink(rows: list, ack) -> None:
            if rows and rows[0].fields.get("value") == -13.5:
                raise RuntimeError("the sink broke on -13.5")
            good.extend(rows)
            if ack:
                ack()

        def reject(rows: list, ack) -> None:
            kept.extend(rows)
            if ack:
                ack()

        ingest = MqttIngest.of(settings, sink, reject)
        ingest.start()
        assert ingest.connected.wait(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="guard-pub")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        with caplog.at_level(logging.ERROR, logger="gateway.mqtt_ingest"):
            for k in range(40):
                value = -13.5 if k % 2 == 0 else float(k)
                body = json.dumps({"points": {"YPTR1.TmpOil": {"value": value}}}).encode()
                pub.publish(JSON_TOPIC, body, qos=1).wait_for_publish(10)
            wait_for(lambda: len(good) == 20 and len(kept) == 20, "every message handled", timeout=15)
        assert ingest.client._thread is not None and ingest.client._thread.is_alive()
        assert ingest.failures == 20
        assert all("RuntimeError" in r.fields["reason"] and "-13.5" in r.fields["reason"] for r in kept)
        assert len([r for r in caplog.records if "set aside and acknowledged" in r.message]) == 1
        time.sleep(0.3)
        ingest.stop()
        again: list = []
        second = MqttIngest.of(settings, lambda rows, ack: (again.extend(rows), ack and ack()), reject)
        second.start()  # the same client id and persistent session: unacknowledged ones would come back
        assert second.connected.wait(10)
        time.sleep(1.5)
        second.stop()
        pub.loop_stop()
    assert again == [] and len(kept) == 20


# ------------------------------------------------------------------ reject_new recovery, MQTT side
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_request_redelivery_brings_back_what_was_never_acknowledged(tmp_path: Path, protocol: str) -> None:
    """Messages the spool refused (reject_new) stay unacknowledged, and Mosquitto resends them
    only when the session reconnects: request_redelivery does that, and every one comes back
    without a restart, while the Sparkplug host STATE stays online (a clean disconnect sends no will)."""
    with mosquitto(tmp_path) as port:
        base = load_settings()
        mqtt_config = MqttConfig(host="127.0.0.1", port=port, sparkplug_groups=[GROUP], protocol=protocol)
        settings = base.model_copy(update={"mqtt": mqtt_config})
        refusing = threading.Event()
        refusing.set()
        stored: dict[float, int] = {}

        def sink(rows: list, ack) -> None:
            if refusing.is_set():
                return  # the spool is full: not acknowledged
            for r in rows:
                stored[r.fields["value"]] = stored.get(r.fields["value"], 0) + 1
            if ack:
                ack()

        ingest = MqttIngest.of(settings, sink, lambda rows, ack: ack and ack())
        states: list[dict] = []
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="state-watcher")
        watcher.on_message = lambda _c, _u, msg: states.append(json.loads(msg.payload))
        watcher.connect("127.0.0.1", port)
        watcher.subscribe(ingest.state_topic, qos=1)
        watcher.loop_start()
        ingest.start()
        assert ingest.connected.wait(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="redeliver-pub")
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        for k in range(150):  # more than the broker's 100 in flight: the rest wait in its queue
            body = json.dumps({"points": {"YPTR1.TmpOil": {"value": float(k)}}}).encode()
            pub.publish(JSON_TOPIC, body, qos=1).wait_for_publish(10)
        wait_for(lambda: ingest.received >= 100, "the first messages delivered", timeout=10)
        time.sleep(0.5)
        assert stored == {}
        refusing.clear()  # room again
        ingest.request_redelivery()
        wait_for(lambda: len(stored) == 150, "every refused message redelivered", timeout=20)
        assert ingest.redeliveries == 1
        wait_for(lambda: bool(states) and states[-1]["online"] is True, "host STATE online", timeout=5)
        assert all(s["online"] for s in states), states  # no will fired by the reconnect
        ingest.stop()
        wait_for(lambda: states[-1]["online"] is False, "host STATE offline on a clean stop", timeout=5)
        assert states[-1]["timestamp"] == states[-2]["timestamp"]  # birth and death of one session
        pub.loop_stop()
        watcher.loop_stop()


def test_a_flood_of_bad_messages_is_one_log_line_not_one_per_message(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings()
    kept: list = []
    ingest = MqttIngest.of(settings, lambda rows, ack: None, lambda rows, ack: kept.extend(rows))
    with caplog.at_level(logging.WARNING, logger="gateway.mqtt_ingest"):
        for _ in range(500):
            ingest.handle_safely(JSON_TOPIC, _value("9" * 401))
            ingest.handle_safely(f"spBv1.0/{GROUP}/NBIRTH/edge20", NBIRTH_20_BYTES)
    assert len(kept) == 1000 and ingest.rejected == 1000 and ingest.failures == 0  # each one kept
    assert len(caplog.records) == 1  # the first logged; the rest counted in the next line, 10 s on
