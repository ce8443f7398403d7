"""Gateway: polling real Modbus TCP servers on loopback, a dead device, malformed MQTT payloads."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from fieldsim.modbus_rtu import DeviceImage, RtuServer
from gateway.modbus_poller import DevicePoller, RtuConnection
from gateway.mqtt_ingest import JsonTelemetry, MqttIngest, PayloadError
from gridverse.config import DeviceConfig, DeviceProfile, GatewayConfig, Settings, SubstationConfig
from gridverse.points import Point, Quality, Record
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

    ingest = MqttIngest.of(base, collect(good), collect(kept))
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


# --- Modbus conformance: what each kind of bad answer becomes, and the poller lives on ----------


def _garbage_profile() -> DeviceProfile:
    return DeviceProfile(
        name="garbage",
        points=[
            {"name": "GGIO1.AnIn1", "table": "holding", "address": 0, "type": "u16"},
            {"name": "GGIO1.AnIn2", "table": "holding", "address": 100, "type": "u32"},
            {"name": "GGIO1.AnIn3", "table": "holding", "address": 200, "type": "u16"},
            {"name": "GGIO1.AnIn4", "table": "holding", "address": 300, "type": "u16"},
            {"name": "GGIO1.AnIn5", "table": "holding", "address": 400, "type": "u16"},
        ],
    )


async def _garbage_device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A Modbus TCP device that answers each block its own way: registers (0), too few registers
    (100), exception 2 (200), exception 11 from a gateway (300), an undecodable frame (400)."""
    try:
        while True:
            tid, _proto, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
            pdu = await reader.readexactly(length - 1)
            fc, address, count = struct.unpack(">BHH", pdu[:5])
            body = {
                0: bytes([fc, 2 * count]) + struct.pack(f">{count}H", *([7] * count)),
                100: bytes([fc, 2]) + struct.pack(">H", 1),
                200: bytes([fc | 0x80, 2]),
                300: bytes([fc | 0x80, 11]),
            }.get(address, bytes([fc, 40, 1]))  # byte count 40, one byte of data
            writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        writer.close()


def _one_device_poller(port: int, profile: DeviceProfile, sink=lambda _r: None, **cfg: float) -> DevicePoller:
    sub = SubstationConfig(
        name="s1", port=port, devices=[DeviceConfig(name="D1", bay="B1", unit_id=1, profile=profile.name)]
    )
    config = GatewayConfig(**{"timeout_s": 0.3, "retries": 0, "poll_interval_s": 0.2, **cfg})
    return DevicePoller("site", sub, sub.devices[0], profile, RtuConnection(sub, config), config, sink)


def test_each_bad_answer_has_its_quality_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """An exception answer is `invalid` (the device answered), exception 11 and an undecodable
    reply are `comm_fail` (no usable answer), a short reply is `invalid`; the good block keeps its
    value, the poller task keeps running, and each block's reason is logged once, not every cycle."""
    rows: list[Record] = []

    async def scenario() -> bool:
        server = await asyncio.start_server(_garbage_device, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        poller = _one_device_poller(port, _garbage_profile(), rows.extend)
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(2.5)
        alive = not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        polls = poller.status.polls
        task = asyncio.create_task(poller.run())  # a watchdog restarts the same poller: it polls on
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        poller.connection.close()
        server.close()
        return alive and poller.status.polls > polls

    with caplog.at_level(logging.WARNING, logger="gateway.modbus_poller"):
        alive = asyncio.run(scenario())
    assert alive
    quality: dict[str, set[str]] = {}
    for r in rows:
        quality.setdefault(r.tags["point"], set()).add(str(r.fields["quality"]))
    assert quality == {
        "GGIO1.AnIn1": {"good"},
        "GGIO1.AnIn2": {"invalid"},
        "GGIO1.AnIn3": {"invalid"},
        "GGIO1.AnIn4": {"comm_fail"},
        "GGIO1.AnIn5": {"comm_fail"},
    }
    polls = sum(1 for r in rows if r.tags["point"] == "GGIO1.AnIn1")
    assert polls >= 5
    lines = [r.getMessage() for r in caplog.records]
    assert sum("holding 100+2" in m for m in lines) == 1 and "2 registers" not in lines[0]
    assert sum("holding 200+1" in m and "illegal data address" in m for m in lines) == 1


def test_an_empty_list_of_due_groups_polls_nothing() -> None:
    """Regression (issue 10): `_poll([])` used to read every group."""

    async def poll_none() -> tuple[list[Point], DevicePoller]:
        poller = _one_device_poller(free_port(), _garbage_profile())  # nothing listens: any read would fail
        return await poller.poll_once([]), poller

    points, poller = asyncio.run(poll_none())
    assert points == [] and poller.status.failures == 0


def test_max_registers_keeps_reads_within_what_the_meter_accepts() -> None:
    """A meter that refuses reads of more than 16 registers: with the protocol's 125 every point
    is invalid (exception 3), with the profile's `max_registers: 16` every point is good."""
    from pymodbus.constants import ExcCodes
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType as SimType
    from pymodbus.simulator import SimData, SimDevice

    async def at_most_16(_fc: int, _start: int, _address: int, count: int, _regs: list[int], _set: object):
        return ExcCodes.ILLEGAL_VALUE if count > 16 else None

    points = [{"name": f"GGIO1.AnIn{k}", "table": "input", "address": 2 * k, "type": "f32"} for k in range(20)]
    wide = DeviceProfile(name="meter", points=points)
    narrow = DeviceProfile(name="meter", max_registers=16, points=points)

    async def scenario() -> tuple[list[Point], list[Point]]:
        port = free_port()
        image = [w for k in range(20) for w in struct.unpack(">HH", struct.pack(">f", k + 0.5))]
        bits = [SimData(0, values=[False] * 16, datatype=SimType.BITS)]
        regs = [SimData(0, values=image, datatype=SimType.REGISTERS)]
        device = SimDevice(id=1, simdata=(bits, bits, [SimData(0, count=1, datatype=SimType.INVALID)], regs))
        device.action = at_most_16
        server = ModbusTcpServer([device], address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        pollers = [_one_device_poller(port, wide), _one_device_poller(port, narrow)]
        try:
            return await pollers[0].poll_once(), await pollers[1].poll_once()
        finally:
            for p in pollers:
                p.connection.close()
            await server.shutdown()

    refused, accepted = asyncio.run(scenario())
    assert {p.quality for p in refused} == {Quality.INVALID}
    assert all(p.quality is Quality.GOOD for p in accepted) and len(accepted) == 20
    assert {p.name: p.value for p in accepted}["GGIO1.AnIn19"] == 19.5


@hsettings(max_examples=40, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=12),
        st.builds(lambda n, data: bytes([3, n]) + data, st.integers(0, 255), st.binary(max_size=10)),
        st.builds(lambda code: bytes([0x83, code]), st.integers(0, 255)),
    )
)
def test_any_modbus_reply_gives_points_with_a_quality(body: bytes) -> None:
    """Whatever a device sends back (any PDU bytes under a valid MBAP header), one poll gives one
    point per profile point: a finite value with quality good, or no value with invalid/comm_fail."""
    profile = DeviceProfile(
        name="any",
        points=[
            {"name": "GGIO1.AnIn1", "table": "holding", "address": 0, "type": "f32"},
            {"name": "GGIO1.AnIn2", "table": "holding", "address": 2, "type": "i16"},
        ],
    )

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            tid, _proto, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
            await reader.readexactly(length - 1)
            writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
            await writer.drain()
            await reader.read()  # hold the connection until the client closes it
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def scenario() -> list[Point]:
        server = await asyncio.start_server(reply, "127.0.0.1", 0)
        poller = _one_device_poller(server.sockets[0].getsockname()[1], profile, timeout_s=0.1)
        try:
            return await poller.poll_once()
        finally:
            poller.connection.close()
            server.close()

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    points = asyncio.run(scenario())
    assert sorted(p.name for p in points) == ["GGIO1.AnIn1", "GGIO1.AnIn2"]
    for p in points:
        if p.quality is Quality.GOOD:
            assert p.value is not None and math.isfinite(p.value)
        else:
            assert p.quality in (Quality.INVALID, Quality.COMM_FAIL) and p.value is None
    if len(body) == 2 and body[0] == 0x83:  # an exception answer: the device answered ...
        expected = Quality.COMM_FAIL if body[1] in (10, 11) else Quality.INVALID  # ... unless a gateway says it did not
        assert {p.quality for p in points} == {expected}
    if len(body) >= 2 and body[0] == 3 and body[1] == len(body) - 2 and body[1] % 2 == 0 and body[1] != 6:
        assert {p.quality for p in points} == {Quality.INVALID}  # a well-formed reply with the wrong count
