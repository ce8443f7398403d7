"""Gateway: polling real Modbus TCP servers on loopback, a dead device, malformed MQTT payloads."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from fieldsim.modbus_rtu import DeviceImage, RtuServer
from gateway.modbus_poller import DevicePoller, RtuConnection
from gateway.mqtt_ingest import JsonTelemetry, MqttIngest, PayloadError
from gridverse.config import GatewayConfig, Settings
from gridverse.points import Point, Quality
from gridverse.settings import load_settings
from tests.services import free_port


@pytest.fixture(scope="module")
def base() -> Settings:
    return load_settings()


def test_live_devices_keep_their_schedule_while_one_refuses(base: Settings) -> None:
    live = base.site.substations[0].model_copy(update={"port": free_port()})
    dead = base.site.substations[1].model_copy(update={"port": free_port()})  # nothing listens
    cfg = GatewayConfig(poll_interval_s=0.25, timeout_s=0.5, retries=0)
    images = {d.name: DeviceImage(d, base.profiles[d.profile]) for d in live.devices}
    for name, image in images.items():
        values = {
            p.name: (
                1.0
                if p.type.value == "bit"
                else 20_400.0
                if p.name == "MMXU1.PPV"
                else -1_234_000.0
                if "Tot" in p.name
                else 123.4
            )
            for p in image.profile.points
        }
        image.update(values, silent=(name == "F8"))  # F8 answers with a Modbus exception
    collected: list[Point] = []

    async def scenario() -> list[DevicePoller]:
        server = RtuServer(live, images)
        await server.start()
        pollers = []
        for sub in (live, dead):
            conn = RtuConnection(sub, cfg)
            pollers += [
                DevicePoller(
                    "rural1",
                    sub,
                    d,
                    base.profiles[d.profile],
                    conn,
                    cfg,
                    lambda rows: collected.extend(map(Point.from_record, rows)),
                )
                for d in sub.devices
            ]
        tasks = [asyncio.create_task(p.run()) for p in pollers]
        await asyncio.sleep(3.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
        return pollers

    pollers = asyncio.run(scenario())
    status = {p.device.name: p.status for p in pollers}
    assert status["RTU08"].up is False and "refused" in status["RTU08"].last_error
    assert status["F8"].up is False and "exception 11" in status["F8"].last_error
    for name in ("T1", "F1", "F7"):
        assert status[name].up is True
        assert status[name].polls >= 10, f"{name} polled {status[name].polls} times in 3 s"
    t1 = {p.name: p for p in collected if p.device == "T1"}
    assert t1["MMXU1.TotW"].value == -1_234_000.0
    assert t1["MMXU1.PPV"].value == pytest.approx(20_400.0)
    assert t1["XCBR1.Pos"].value == 1.0
    dead_points = [p for p in collected if p.device in ("RTU08", "F8")]
    assert dead_points and all(p.quality is Quality.COMM_FAIL and p.value is None for p in dead_points)


def _parser(base: Settings) -> JsonTelemetry:
    return JsonTelemetry("rural1", base.site.sensors[0])


def test_json_payload_becomes_points(base: Settings) -> None:
    body = {"time": 1_700_000_000_000, "points": {"YPTR1.TmpOil": {"value": 61.5, "unit": "degC"}}}
    (point,) = _parser(base).parse(json.dumps(body).encode(), 0)
    assert (point.device, point.name, point.value, point.bay) == ("T1-oil", "YPTR1.TmpOil", 61.5, "T1")
    assert point.time_ns == 1_700_000_000_000 * 1_000_000


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b'{"points": {"YPTR1.TmpOil": {"value": "hot"}}}', "not a number"),
        (b'{"points": {"YPTR1.TmpOil": {"value": NaN}}}', "not finite"),
        (b'{"points": {"YPTR1.TmpOil": {"value": true}}}', "not a number"),
        (b'{"points": {"tmp": {"value": 1}}}', "IEC 61850"),
        (b'{"time": "yesterday", "points": {}}', "epoch milliseconds"),
        (b"[1, 2, 3]", '"points" object'),
        (b"[" * 5000 + b"]" * 5000, "not JSON"),
        (b'{"points": {}, "pad": "' + b"x" * 70000 + b'"}', "exceeds"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(base: Settings, payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        _parser(base).parse(payload, 0)


def test_rejected_messages_are_kept_with_reason_and_ingestion_goes_on(base: Settings) -> None:
    good, kept, acked = [], [], []

    def collect(into: list):
        def take(items: list, on_durable) -> None:
            into.extend(items)
            on_durable()

        return take

    ingest = MqttIngest(base, collect(good), collect(kept))
    for k, (topic, body) in enumerate(
        [
            ("gridverse/rural1/primary/T1-oil/telemetry", b"garbage"),
            ("gridverse/rural1/primary/ghost/telemetry", b'{"points": {}}'),
            ("gridverse/rural1/primary/T1-oil/telemetry", b'{"points": {"YPTR1.TmpOil": {"value": 55.0}}}'),
        ]
    ):
        ingest.handle(topic, body, lambda k=k: acked.append(k))
    assert ingest.rejected == 2 and len(good) == 1
    assert acked == [0, 1, 2]  # a rejected message is acknowledged too, once its rejection is kept
    assert [r.fields["payload"] for r in kept] == ["garbage", '{"points": {}}']
    assert "not JSON" in str(kept[0].fields["reason"]) and "ghost" in str(kept[1].fields["reason"])


@hsettings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
            max_leaves=30,
        ).map(lambda v: json.dumps({"points": v} if isinstance(v, dict) else v).encode()),
    )
)
def test_any_payload_gives_points_or_a_reason(payload: bytes) -> None:
    parser = JsonTelemetry("rural1", load_settings_cached().site.sensors[0])
    try:
        points = parser.parse(payload, 0)
    except PayloadError as exc:
        assert str(exc)
        return
    assert all(p.value is not None and math.isfinite(p.value) for p in points)


_CACHE: list[Settings] = []


def load_settings_cached() -> Settings:
    if not _CACHE:
        _CACHE.append(load_settings())
    return _CACHE[0]


def test_gateway_test_command_prints_every_source_once(base: Settings, tmp_path) -> None:
    """`gridverse gateway test`: live devices print values, a dead RTU prints comm_fail, and a
    sensor heard on a real Mosquitto prints its point (like `telegraf --test`)."""
    import json
    import threading

    import paho.mqtt.client as mqtt

    from gateway.probe import run_probe
    from tests.services import mosquitto

    live = base.site.substations[0].model_copy(update={"port": free_port()})
    others = [s.model_copy(update={"port": free_port()}) for s in base.site.substations[1:]]  # nothing listens
    images = {d.name: DeviceImage(d, base.profiles[d.profile]) for d in live.devices}
    for image in images.values():
        image.update({p.name: 1.0 if p.type.value == "bit" else 100.0 for p in image.profile.points}, silent=False)
    lines: list[str] = []
    with mosquitto(tmp_path) as port:
        settings = base.model_copy(
            update={
                "site": base.site.model_copy(update={"substations": [live, *others]}),
                "mqtt": base.mqtt.model_copy(update={"host": "127.0.0.1", "port": port}),
                "gateway": base.gateway.model_copy(update={"timeout_s": 0.3, "retries": 0}),
            }
        )
        stop = threading.Event()

        def sensor() -> None:
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="oil")
            pub.connect("127.0.0.1", port)
            pub.loop_start()
            while not stop.wait(0.2):
                pub.publish(
                    "gridverse/rural1/primary/T1-oil/telemetry",
                    json.dumps({"points": {"YPTR1.TmpOil": {"value": 61.5, "unit": "degC"}}}),
                    qos=1,
                )
            pub.loop_stop()

        thread = threading.Thread(target=sensor)
        thread.start()

        async def serve_and_probe() -> int:
            server = RtuServer(live, images)
            await server.start()
            try:
                return await asyncio.to_thread(run_probe, settings, 1.5, lines.append)
            finally:
                await server.stop()

        try:
            dead = asyncio.run(serve_and_probe())
        finally:
            stop.set()
            thread.join()
    text = "\n".join(lines)
    assert dead == sum(len(s.devices) for s in others)  # every device behind a silent RTU
    assert "primary/F1/MMXU1.TotW" in text and "good" in text
    assert "ss08/RTU08/MMXU1.PPV" in text and "comm_fail" in text
    assert "mqtt   primary/T1-oil/YPTR1.TmpOil" in text and "61.5" in text
    assert "silent sensors: ['T2-oil']" in text
