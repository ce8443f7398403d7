"""The profile library against pymodbus' own simulator (a register image served by pymodbus'
SimData/SimDevice, not by our field simulator): SunSpec scale factors and 'not implemented'
values, strings, 64-bit and float registers, units converted to SI, deadband, poll groups."""

from __future__ import annotations

import asyncio
import struct

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from gateway.modbus_poller import DevicePoller, RtuConnection
from gridverse.config import DeviceConfig, GatewayConfig, SubstationConfig
from gridverse.points import Point, Quality, Record
from gridverse.settings import load_settings
from tests.services import free_port


def _text(s: str, registers: int) -> list[int]:
    raw = s.encode().ljust(2 * registers, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def _i16(v: int) -> int:
    return v & 0xFFFF


def sunspec_image() -> dict[int, int]:
    """Holding registers of a 12.3 kW inverter, as the SunSpec model 1 + 103 maps lay them out."""
    regs = {40000: 0x5375, 40001: 0x6E53, 40002: 1, 40003: 66}
    regs.update(dict(enumerate(_text("GV-INV-10K", 16), start=40020)))
    regs.update(dict(enumerate(_text("SN12345", 16), start=40052)))
    regs.update(
        {
            40070: 103,
            40071: 50,
            40072: 1785,
            40076: _i16(-2),  # A = 17.85 A
            40077: 4003,
            40083: _i16(-1),  # PPV = 400.3 V
            40084: 1230,
            40085: _i16(1),  # W = 12,300 W
            40086: 5002,
            40087: _i16(-2),  # Hz = 50.02
            40090: 0xFFFF & -0x8000,
            40091: 0,  # VAr: 'not implemented'
            40094: 0x0001,
            40095: 0x86A0,
            40096: _i16(3),  # WH = 100,000 × 10^3 Wh
            40103: 412,
            40107: _i16(-1),  # cabinet 41.2 °C
            40108: 4,
        }
    )
    return regs


def meter_image() -> dict[int, int]:
    regs: dict[int, int] = {}
    for address, value in ((0, 20_350.0), (2, 105.5), (4, 3600.5), (6, -450.25), (8, 0.99), (10, 49.98)):
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        regs[address], regs[address + 1] = hi, lo
    for k, w in enumerate(struct.unpack(">HHHH", struct.pack(">Q", 1_234_567))):
        regs[12 + k] = w
    return regs


async def _serve(port: int, unit: int, holding: dict[int, int], inputs: dict[int, int]) -> ModbusTcpServer:
    def block(image: dict[int, int]) -> list[SimData]:
        if not image:
            return [SimData(0, count=1, datatype=SimType.INVALID)]
        start, end = min(image), max(image) + 1
        return [SimData(start, values=[image.get(a, 0) for a in range(start, end)], datatype=SimType.REGISTERS)]

    bits = [SimData(0, values=[False] * 16, datatype=SimType.BITS)]
    device = SimDevice(id=unit, simdata=(bits, bits, block(holding), block(inputs)))
    server = ModbusTcpServer([device], address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return server


def _poller(profile_name: str, port: int, sink=lambda _p: None) -> DevicePoller:
    settings = load_settings()
    sub = SubstationConfig(
        name="pv",
        host="127.0.0.1",
        port=port,
        devices=[DeviceConfig(name="INV1", bay="PV", unit_id=3, profile=profile_name)],
    )
    cfg = GatewayConfig(poll_interval_s=1.0, timeout_s=1.0, retries=0, report_every_s=60)
    return DevicePoller(
        "site", sub, sub.devices[0], settings.profiles[profile_name], RtuConnection(sub, cfg), cfg, sink
    )


def _by_name(points: list[Point]) -> dict[str, Point]:
    return {p.name: p for p in points}


def test_sunspec_inverter_scale_factors_strings_and_sentinels() -> None:
    async def scenario() -> list[Point]:
        port = free_port()
        server = await _serve(port, 3, sunspec_image(), {})
        try:
            return await _poller("pv_inverter_sunspec", port).poll_once()
        finally:
            await server.shutdown()

    got = _by_name(asyncio.run(scenario()))
    assert got["MMXU1.TotW"].value == pytest.approx(12_300.0) and got["MMXU1.TotW"].unit == "W"
    assert got["MMXU1.A"].value == pytest.approx(17.85)
    assert got["MMXU1.PPV"].value == pytest.approx(400.3)
    assert got["MMXU1.Hz"].value == pytest.approx(50.02)
    assert got["MMTR1.TotWh"].value == pytest.approx(100_000 * 1e3 * 3600) and got["MMTR1.TotWh"].unit == "J"
    assert got["STMP1.CabTmp"].value == pytest.approx(41.2)
    assert got["MMXU1.TotVAr"].quality is Quality.INVALID and got["MMXU1.TotVAr"].value is None  # not implemented
    assert got["LPHD1.PhyNam"].extra["text"] == "GV-INV-10K" and got["LPHD1.SerNum"].extra["text"] == "SN12345"
    assert got["LPHD1.PhyNam"].to_record().fields == {"quality": "good", "text": "GV-INV-10K"}


def test_meter_units_to_si_64_bit_and_deadband() -> None:
    async def scenario() -> tuple[list[Point], list[Point]]:
        port = free_port()
        server = await _serve(port, 3, {}, meter_image())
        try:
            poller = _poller("power_meter", port)
            return await poller.poll_once(), await poller.poll_once()
        finally:
            await server.shutdown()

    first, second = asyncio.run(scenario())
    got = _by_name(first)
    assert got["MMXU1.TotW"].value == pytest.approx(3_600_500.0) and got["MMXU1.TotW"].unit == "W"  # 3600.5 kW
    assert got["MMXU1.TotVAr"].value == pytest.approx(-450_250.0) and got["MMXU1.TotVAr"].unit == "var"
    assert got["MMTR1.TotWh"].value == pytest.approx(1_234_567 * 3600.0)  # u64 Wh → J
    assert got["MMXU1.PPV"].value == pytest.approx(20_350.0)
    # unchanged power within its deadband is not reported again; the rest is
    names = {p.name for p in second}
    assert "MMXU1.TotW" not in names and "MMXU1.TotVAr" not in names and "MMXU1.PPV" in names


def test_poll_groups_keep_their_own_periods() -> None:
    seen: list[list[Record]] = []

    async def scenario() -> None:
        port = free_port()
        server = await _serve(port, 3, sunspec_image(), {})
        poller = _poller("pv_inverter_sunspec", port, seen.append)
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(3.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.shutdown()

    asyncio.run(scenario())
    counts: dict[str, int] = {}
    for batch in seen:
        for row in batch:
            counts[row.tags["point"]] = counts.get(row.tags["point"], 0) + 1
    assert counts["MMXU1.Hz"] == 4  # fast group: every second (t = 0, 1, 2, 3)
    assert counts["MMTR1.TotWh"] == 1 and counts["LPHD1.PhyNam"] == 1  # slow and nameplate: once
    assert counts["MMXU1.TotW"] == 1  # fast, but unchanged within its deadband


def test_writes_need_the_profile_and_the_operator() -> None:
    from gateway.writes import WriteRefused, write_point

    base = load_settings()

    async def scenario() -> tuple[list[int] | bool, dict[str, Point]]:
        port = free_port()
        image = {**sunspec_image(), 40122: 123, 40123: 24, 40127: 1000, 40131: 0, 40146: _i16(-1)}
        server = await _serve(port, 3, image, {})
        sub = SubstationConfig(
            name="pv",
            host="127.0.0.1",
            port=port,
            devices=[DeviceConfig(name="INV1", bay="PV", unit_id=3, profile="pv_inverter_sunspec")],
        )
        site = base.site.model_copy(update={"substations": [sub]})
        off = base.model_copy(update={"site": site})
        on = off.model_copy(update={"gateway": off.gateway.model_copy(update={"writes_enabled": True})})
        try:
            with pytest.raises(WriteRefused, match="gateway.writes_enabled"):
                await write_point(off, "INV1", "DRCT1.WMaxLimPct", 60.0)
            with pytest.raises(WriteRefused, match="writable: true"):
                await write_point(on, "INV1", "MMXU1.TotW", 1000.0)
            written = await write_point(on, "INV1", "DRCT1.WMaxLimPct", 60.0)
            after = _by_name(await _poller("pv_inverter_sunspec", port).poll_once())
        finally:
            await server.shutdown()
        return written, after

    written, after = asyncio.run(scenario())
    assert written == [600]  # 60 % with the device's scale factor 10^-1
    assert after["DRCT1.WMaxLimPct"].value == pytest.approx(60.0)  # read back from the device
