"""Sparkplug B: the payload codec, the host's births/aliases/sequence/rebirth/death logic, bad
frames set aside with a reason (property-based), and a rebirth request seen on a real Mosquitto."""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway.mqtt_ingest import MqttIngest
from gateway.sparkplug import (
    BOOLEAN,
    DOUBLE,
    FLOAT,
    INT16,
    INT64,
    STRING,
    UINT32,
    FrameError,
    Metric,
    Payload,
    decode_payload,
    encode_payload,
)
from gateway.sparkplug_host import SparkplugError, SparkplugHost
from gridverse.config import MqttConfig
from gridverse.points import Point, Quality
from gridverse.settings import load_settings
from tests.services import mosquitto, wait_for

T = 1_790_000_000_000
NOW = (T + 2_000) * 1_000_000  # the gateway clock when the messages arrive (times are checked against it)


def test_payload_round_trip_every_type() -> None:
    metrics = [
        Metric("MMXU1/TotW", 1, T, DOUBLE, value=-12.5e6),
        Metric("MMXU1/Hz", 2, T, FLOAT, value=50.0),
        Metric("YLTC1/TapPos", 3, T, INT16, value=-4),
        Metric("MMTR1/TotWh", 4, T, INT64, value=-(2**40)),
        Metric("XCBR1/Pos", 5, T, BOOLEAN, value=True),
        Metric("LPHD1/PhyNam", 6, T, STRING, value="ÄB"),
        Metric("MMXU1/A", 7, T, UINT32, value=4_000_000_000),
        Metric("MMXU1/PPV", 8, T, DOUBLE),
    ]
    back = decode_payload(encode_payload(Payload(T, 42, metrics)))
    assert back.seq == 42 and back.timestamp == T
    assert [m.value for m in back.metrics] == [-12.5e6, 50.0, -4, -(2**40), True, "ÄB", 4_000_000_000, None]
    assert [m.alias for m in back.metrics] == list(range(1, 9)) and back.metrics[7].is_null


@hsettings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_any_frame_decodes_or_says_where_it_broke(frame: bytes) -> None:
    try:
        decode_payload(frame)
    except FrameError as exc:
        assert "byte" in str(exc) or "UTF-8" in str(exc) or "exceeds" in str(exc)


class Wire:
    """What the host publishes (its rebirth requests)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Payload]] = []

    def __call__(self, topic: str, body: bytes) -> None:
        self.sent.append((topic, decode_payload(body)))


def _birth(seq: int = 0, bd: int = 7) -> bytes:
    return encode_payload(
        Payload(
            T,
            seq,
            [
                Metric("bdSeq", None, None, INT64, value=bd),
                Metric("MMXU1/TotW", 10, T, DOUBLE, value=1.0e6),
                Metric("Inverter/MMXU1/TotVAr", 11, T, FLOAT, value=2.0e5),
            ],
        )
    )


def _data(seq: int, alias: int = 10, value: float = 1.5e6) -> bytes:
    return encode_payload(Payload(T + 1000, seq, [Metric("", alias, T + 1000, DOUBLE, value=value)]))


def test_host_follows_births_aliases_sequence_and_deaths() -> None:
    wire = Wire()
    host = SparkplugHost("rural1", wire, rebirth_every_s=0)
    rows, reasons = host.handle("spBv1.0/primary/NBIRTH/rtu7", _birth(), NOW)
    points = {r.tags["point"]: r for r in rows}
    assert set(points) == {"MMXU1.TotW", "MMXU1.TotVAr"} and reasons == []
    assert points["MMXU1.TotW"].tags["source"] == "sparkplug" and points["MMXU1.TotW"].tags["substation"] == "primary"
    rows, _ = host.handle("spBv1.0/primary/NDATA/rtu7", _data(1), NOW)  # by alias only
    expected = [("MMXU1.TotW", 1.5e6, (T + 1000) * 10**6)]
    assert [(r.tags["point"], r.fields["value"], r.time_ns) for r in rows] == expected
    with pytest.raises(SparkplugError, match="seq 3 where 2 was due"):
        host.handle("spBv1.0/primary/NDATA/rtu7", _data(3), NOW)  # message 2 was lost
    assert wire.sent[-1][0] == "spBv1.0/primary/NCMD/rtu7"
    assert wire.sent[-1][1].metrics[0].name == "Node Control/Rebirth" and wire.sent[-1][1].metrics[0].value is True
    with pytest.raises(SparkplugError, match="before its NBIRTH"):
        host.handle("spBv1.0/primary/NDATA/rtu7", _data(4), NOW)  # ignored until the rebirth
    host.handle("spBv1.0/primary/NBIRTH/rtu7", _birth(0, bd=8), NOW)
    assert host.handle("spBv1.0/primary/NDATA/rtu7", _data(1, value=9.0), NOW)[0][0].fields["value"] == 9.0
    with pytest.raises(SparkplugError, match="alias 99"):
        host.handle("spBv1.0/primary/NDATA/rtu7", _data(2, alias=99), NOW)
    death = encode_payload(Payload(T, None, [Metric("bdSeq", None, None, INT64, value=7)]))
    assert host.handle("spBv1.0/primary/NDEATH/rtu7", death, NOW)[0] == []  # an old session's will: ignored
    death = encode_payload(Payload(T, None, [Metric("bdSeq", None, None, INT64, value=8)]))
    dead = host.handle("spBv1.0/primary/NDEATH/rtu7", death, NOW)[0]
    assert {r.tags["point"] for r in dead} == {"MMXU1.TotW", "MMXU1.TotVAr"}
    assert all(r.fields == {"quality": Quality.COMM_FAIL.value} for r in dead)  # no believable value


def test_bad_sparkplug_input_is_set_aside_with_its_reason() -> None:
    settings = load_settings()
    settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"sparkplug_groups": ["primary"]})})
    good, kept = [], []
    ingest = MqttIngest.of(settings, lambda rows, ack: good.extend(rows), lambda rows, ack: kept.extend(rows))
    ingest.sparkplug.publish = lambda *_: None
    ingest.handle("spBv1.0/primary/NBIRTH/rtu7", b"\xff\xff\xff", None)  # not protobuf
    mixed = [Metric("Temperature", 1, T, DOUBLE, value=20.0), Metric("MMXU1/TotW", 2, T, DOUBLE, value=5.0)]
    ingest.handle("spBv1.0/primary/NBIRTH/rtu7", encode_payload(Payload(T, 0, mixed)), None)
    assert [r.tags["point"] for r in good] == ["MMXU1.TotW"]  # the valid metric is kept
    assert "bad Sparkplug B frame" in kept[0].fields["reason"]
    assert "'Temperature'" in kept[1].fields["reason"] and "LN.DO" in kept[1].fields["reason"]


def test_a_gap_on_a_real_broker_brings_a_rebirth_request(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as port:
        base = load_settings()
        settings = base.model_copy(
            update={"mqtt": MqttConfig(host="127.0.0.1", port=port, sparkplug_groups=["primary"])}
        )
        got: list = []
        ingest = MqttIngest.of(
            settings, lambda rows, ack: (got.extend(rows), ack and ack()), lambda rows, ack: ack and ack()
        )
        ingest.start()
        assert ingest.connected.wait(10)
        commands: list[Payload] = []
        edge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-rtu7")
        edge.on_message = lambda _c, _u, msg: commands.append(decode_payload(msg.payload))
        edge.connect("127.0.0.1", port)
        edge.subscribe("spBv1.0/primary/NCMD/rtu7", qos=1)
        edge.loop_start()
        time.sleep(0.5)
        for topic, body in (("NBIRTH", _birth()), ("NDATA", _data(1)), ("NDATA", _data(5))):
            edge.publish(f"spBv1.0/primary/{topic}/rtu7", body, qos=1).wait_for_publish(5)
        wait_for(lambda: bool(commands), "rebirth request", timeout=10)
        edge.loop_stop()
        ingest.stop()
    assert commands[0].metrics[0].name == "Node Control/Rebirth"
    assert len([r for r in got if r.tags["point"] == "MMXU1.TotW"]) == 2  # birth + the in-sequence data
    assert Point.from_record(got[0]).source.value == "sparkplug"


def _metric_without_datatype(alias: int | None, name: str, field: int, raw: bytes) -> bytes:
    """A metric as edge libraries send it in DATA: no datatype field (Sparkplug 3.0: SHOULD NOT)."""
    out = bytearray()
    if name:
        out += b"\x0a" + bytes([len(name)]) + name.encode()
    if alias is not None:
        out += b"\x10" + bytes([alias])
    return bytes(out) + raw if field == 0 else bytes(out) + bytes([field]) + raw


def test_data_without_datatypes_takes_them_from_the_birth() -> None:
    """DDATA/NDATA by alias (or by name) with no datatype: the birth's datatype reads the value
    (a float in 4 bytes, a negative INT16 in two's complement); before, they were dropped."""
    import struct

    host = SparkplugHost("rural1", Wire(), rebirth_every_s=0)
    host.handle(
        "spBv1.0/primary/NBIRTH/rtu7", encode_payload(Payload(T, 0, [Metric("bdSeq", None, None, INT64, value=1)])), NOW
    )
    dbirth = Payload(
        T,
        1,
        [
            Metric("MMXU1/Hz", 20, T, FLOAT, value=50.0),
            Metric("YLTC1/TapPos", 21, T, INT16, value=0),
            Metric("MMXU1/TotW", 22, T, DOUBLE, value=0.0),
        ],
    )
    host.handle("spBv1.0/primary/DBIRTH/rtu7/inv1", encode_payload(dbirth), NOW)
    metrics = [
        _metric_without_datatype(20, "", 0x65, struct.pack("<f", 49.5)),  # alias, float_value
        _metric_without_datatype(21, "", 0x50, bytes([0xFC, 0xFF, 0xFF, 0xFF, 0x0F])),  # alias, int_value -4
        _metric_without_datatype(None, "MMXU1/TotW", 0x69, struct.pack("<d", -7.5e5)),  # name only
    ]
    frame = encode_payload(Payload(T + 1000, 2, [])) + b"".join(b"\x12" + bytes([len(m)]) + m for m in metrics)
    rows, reasons = host.handle("spBv1.0/primary/DDATA/rtu7/inv1", frame, NOW)
    assert reasons == []
    assert {r.tags["point"]: r.fields["value"] for r in rows} == {
        "MMXU1.Hz": 49.5,
        "YLTC1.TapPos": -4.0,
        "MMXU1.TotW": -7.5e5,
    }
    assert all(r.tags["device"] == "inv1" for r in rows)


def test_a_metric_that_is_not_an_iec_61850_name_is_set_aside_with_the_remedy() -> None:
    """`Inverter/Power` used to become point `Inverter.Power` of LN class `rter`; now it gets the
    profiles' check and is set aside, naming the metric and how to name it, the others kept."""
    host = SparkplugHost("rural1", Wire(), rebirth_every_s=0)
    birth = Payload(
        T,
        0,
        [
            Metric("Inverter/Power", 1, T, DOUBLE, value=1.0),
            Metric("Inverter/MMXU1/TotW", 2, T, DOUBLE, value=2.0),
        ],
    )
    rows, reasons = host.handle("spBv1.0/primary/NBIRTH/rtu7", encode_payload(birth), NOW)
    assert [(r.tags["point"], r.tags["ln_class"]) for r in rows] == [("MMXU1.TotW", "MMXU")]
    assert len(reasons) == 1 and "'Inverter/Power'" in reasons[0] and "e.g. Inverter/MMXU1/TotW" in reasons[0]


def test_times_a_store_cannot_hold_are_set_aside_per_metric() -> None:
    host = SparkplugHost("rural1", Wire(), rebirth_every_s=0)
    birth = Payload(
        T,
        0,
        [
            Metric("MMXU1/TotW", 1, 9_999_999_999_999, DOUBLE, value=1.0),  # year 2286: beyond int64 ns
            Metric("MMXU1/Hz", 2, T + 3_600_000, DOUBLE, value=50.0),  # an hour ahead of the clock
            Metric("MMXU1/A", 3, T, DOUBLE, value=10.0),
        ],
    )
    rows, reasons = host.handle("spBv1.0/primary/NBIRTH/rtu7", encode_payload(birth), NOW)
    assert [r.tags["point"] for r in rows] == ["MMXU1.A"]
    assert "int64" in reasons[0] and "ahead of the gateway clock" in reasons[1] and "max_future_s" in reasons[1]


def test_edge_node_waiting_for_the_primary_host_gets_its_state_and_is_heard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An edge node configured to wait for a primary host (Sparkplug 3.0) sends its NBIRTH only once
    spBv1.0/STATE/<host> says online; its data, by alias and without datatypes, is then stored. The
    start-up log names every subscription. A connection lost without DISCONNECT fires the will
    (online false, the birth's timestamp), and the reconnect says online again, later."""
    with mosquitto(tmp_path) as port:
        base = load_settings()
        settings = base.model_copy(
            update={
                "mqtt": MqttConfig(
                    host="127.0.0.1", port=port, sparkplug_groups=["primary"], sparkplug_host_id="scada-a"
                )
            }
        )
        got: list = []
        states: list[dict] = []
        edge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-waits")

        def on_state(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
            state = json.loads(msg.payload)
            states.append(state)
            if state["online"] and len([s for s in states if s["online"]]) == 1:  # the first online: birth
                edge.publish("spBv1.0/primary/NBIRTH/rtu9", _birth(), qos=0)
                body = _metric_without_datatype(10, "", 0x69, struct.pack("<d", 4.2e6))
                edge.publish(
                    "spBv1.0/primary/NDATA/rtu9",
                    encode_payload(Payload(T, 1, [])) + b"\x12" + bytes([len(body)]) + body,
                )

        edge.on_message = on_state
        edge.connect("127.0.0.1", port)
        edge.subscribe("spBv1.0/STATE/scada-a", qos=1)
        edge.loop_start()
        time.sleep(0.3)
        assert states == []  # nothing retained yet: the edge node waits
        ingest = MqttIngest.of(
            settings, lambda rows, ack: (got.extend(rows), ack and ack()), lambda rows, ack: ack and ack()
        )
        with caplog.at_level("INFO", logger="gateway.mqtt_ingest"):
            ingest.start()
            assert ingest.connected.wait(10)
            wait_for(
                lambda: len([r for r in got if r.tags.get("bay") == "rtu9"]) >= 3, "the waiting edge node's points"
            )
        assert "subscribed to gridverse/rural1/+/+/telemetry, spBv1.0/primary/#, spBv1.0/STATE/scada-a" in caplog.text
        values = sorted(r.fields["value"] for r in got if r.tags["point"] == "MMXU1.TotW")
        assert values == [1.0e6, 4.2e6]
        first = states[-1]
        ingest.client.socket().shutdown(socket.SHUT_RDWR)  # the connection breaks, no DISCONNECT sent
        wait_for(lambda: len(states) >= 3, "will, then online again", timeout=15)
        assert states[1] == {"online": False, "timestamp": first["timestamp"]}
        assert states[2]["online"] is True and states[2]["timestamp"] > first["timestamp"]
        ingest.stop()
        edge.loop_stop()


#: frames encoded by a third-party Sparkplug B library (pysparkplug 0.6.1 on protobuf 7.36, by
#: `NBirth(...).encode(include_dtypes=True)` and `NData(...).encode(include_dtypes=False)`, its
#: client's default for DATA), timestamps T: a real protobuf encoder, not ours
PYSPARKPLUG_NBIRTH = bytes.fromhex(
    "0880d8c1a28c3412120a0562645365711880d8c1a28c342004580312290a13496e7665727465722f4d4d5855312f546f"
    "745710011880d8c1a28c34200a690000000060e3364112230a11496e7665727465722f4d4d5855312f487a10021880d8"
    "c1a28c342009650000484212260a15496e7665727465722f594c5443312f546170506f7310031880d8c1a28c34200250"
    "fdff0312290a15496e7665727465722f4c504844312f5068794e616d10041880d8c1a28c34200c7a05494e562d371224"
    "0a0e496e7665727465722f506f77657210051880d8c1a28c34200a69000000000000f03f1800"
)
PYSPARKPLUG_NDATA_WITHOUT_DATATYPES = bytes.fromhex(
    "08e8dfc1a28c341212100118e8dfc1a28c346900000000006a3841120e100218e8dfc1a28c34659a994742120d100318"
    "e8dfc1a28c3450fcff031801"
)


def test_frames_of_a_third_party_edge_library_are_read_as_it_meant_them() -> None:
    host = SparkplugHost("rural1", Wire(), rebirth_every_s=0)
    rows, reasons = host.handle("spBv1.0/primary/NBIRTH/inv7", PYSPARKPLUG_NBIRTH, NOW)
    assert {r.tags["point"]: r.fields for r in rows} == {
        "MMXU1.TotW": {"quality": "good", "value": 1.5e6},
        "MMXU1.Hz": {"quality": "good", "value": 50.0},
        "YLTC1.TapPos": {"quality": "good", "value": -3.0},
        "LPHD1.PhyNam": {"quality": "good", "text": "INV-7"},  # a string metric is kept as text
    }
    assert len(reasons) == 1 and "'Inverter/Power'" in reasons[0]
    rows, reasons = host.handle("spBv1.0/primary/NDATA/inv7", PYSPARKPLUG_NDATA_WITHOUT_DATATYPES, NOW)
    assert reasons == []
    values = {r.tags["point"]: r.fields["value"] for r in rows}
    assert values == {"MMXU1.TotW": 1.6e6, "MMXU1.Hz": pytest.approx(49.9), "YLTC1.TapPos": -4.0}
    assert {r.time_ns for r in rows} == {(T + 1000) * 1_000_000}
