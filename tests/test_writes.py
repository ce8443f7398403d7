"""Device writes against pymodbus' own simulator on loopback: a value the register cannot hold
exactly is refused with the nearest values that can be written (never rounded), the registers
are read back after each write, and a device that is down is a one-line error with its own exit
code, never a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from gateway.writes import NotRepresentable, WriteNotConfirmed, WriteRefused, write_point
from gridverse.config import DeviceConfig, Settings, SubstationConfig
from gridverse.settings import load_settings
from tests.helpers import config_dir
from tests.services import free_port
from tests.test_profiles import _i16, sunspec_image

LIMIT = 40127  # DRCT1.WMaxLimPct (u16, %), scale factor DRCT1.WMaxLimSf at 40146
LIMIT_SF = 40146


def _image(scale_factor: int, limit: int = 1) -> dict[int, int]:
    return {**sunspec_image(), 40122: 123, 40123: 24, LIMIT: limit, 40131: 0, LIMIT_SF: _i16(scale_factor)}


async def _serve(port: int, image: dict[int, int], action: Callable | None = None) -> ModbusTcpServer:
    start, end = min(image), max(image) + 1
    holding = [SimData(start, values=[image.get(a, 0) for a in range(start, end)], datatype=SimType.REGISTERS)]
    bits = [SimData(0, values=[False] * 16, datatype=SimType.BITS)]
    invalid = [SimData(0, count=1, datatype=SimType.INVALID)]
    device = SimDevice(id=3, simdata=(bits, bits, holding, invalid), action=action)
    server = ModbusTcpServer([device], address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return server


def _settings(port: int, base: Settings) -> Settings:
    sub = SubstationConfig(
        name="pv",
        host="127.0.0.1",
        port=port,
        devices=[DeviceConfig(name="INV1", bay="PV", unit_id=3, profile="pv_inverter_sunspec")],
    )
    gateway = base.gateway.model_copy(update={"writes_enabled": True, "timeout_s": 0.5, "retries": 0})
    return base.model_copy(update={"site": base.site.model_copy(update={"substations": [sub]}), "gateway": gateway})


async def _holding(port: int, address: int) -> int:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1)
    await client.connect()
    try:
        return (await client.read_holding_registers(address, count=1, device_id=3)).registers[0]
    finally:
        client.close()


@pytest.fixture(scope="module")
def base() -> Settings:
    return load_settings()


def test_a_value_between_steps_is_refused_with_the_nearest_values(base: Settings) -> None:
    """Scale factor +2 (steps of 100 %): 60 % and 40 % used to be written as 100 % and 0 %."""

    async def scenario() -> tuple[list[str], list[int] | bool, int]:
        port = free_port()
        server = await _serve(port, _image(scale_factor=2, limit=1))
        settings = _settings(port, base)
        refusals = []
        try:
            for value in (60.0, 40.0, 150.0):
                with pytest.raises(NotRepresentable) as info:
                    await write_point(settings, "INV1", "DRCT1.WMaxLimPct", value)
                refusals.append(str(info.value))
            untouched = await _holding(port, LIMIT)
            written = await write_point(settings, "INV1", "DRCT1.WMaxLimPct", 0.0)  # a step: written
            return refusals, written, untouched
        finally:
            await server.shutdown()

    refusals, written, untouched = asyncio.run(scenario())
    assert "60 % cannot be written at scale factor +2 (steps of 100 %): nearest 0 % or 100 %" in refusals[0]
    assert "40 % cannot be written" in refusals[1] and "nearest 0 % or 100 %" in refusals[1]
    assert "nearest 100 % or 200 %" in refusals[2]
    assert untouched == 1  # nothing was written by the refusals
    assert written == [0]


@pytest.mark.parametrize(
    ("scale_factor", "value", "message"),
    [
        (30, 60.0, "scale factor 30 is outside -10 … 10"),
        (-1, 7000.0, "7000 % is outside what u16 at scale factor -1 can hold (0 … 6553.5 %)"),
        (-1, -0.1, "outside what u16"),
        (-1, float("nan"), "nan is not a value a register can hold"),
        (-1, float("inf"), "inf is not a value a register can hold"),
        (-1, 60.05, "nearest 60 % or 60.1 %"),
    ],
)
def test_values_and_scale_factors_the_register_cannot_hold_are_refused(
    base: Settings, scale_factor: int, value: float, message: str
) -> None:
    async def scenario() -> tuple[str, int]:
        port = free_port()
        server = await _serve(port, _image(scale_factor, limit=555))
        try:
            with pytest.raises(NotRepresentable) as info:
                await write_point(_settings(port, base), "INV1", "DRCT1.WMaxLimPct", value)
            return str(info.value), await _holding(port, LIMIT)
        finally:
            await server.shutdown()

    text, register = asyncio.run(scenario())
    assert message in text and text.startswith("INV1")
    assert register == 555


def test_every_write_is_read_back(base: Settings) -> None:
    """A device that clamps the limit to 50 % answers the write but holds 500: an error naming
    the register and both values. A device that takes it passes the read-back."""

    async def clamp(fc: int, _start: int, address: int, _count: int, _regs: list[int], values: list | None) -> None:
        if values is not None and fc in (6, 16) and address == LIMIT:
            values[0] = min(values[0], 500)

    async def scenario() -> tuple[str, list[int] | bool]:
        port = free_port()
        server = await _serve(port, _image(scale_factor=-1, limit=1000), clamp)
        try:
            with pytest.raises(WriteNotConfirmed) as info:
                await write_point(_settings(port, base), "INV1", "DRCT1.WMaxLimPct", 60.0)
            return str(info.value), await write_point(_settings(port, base), "INV1", "DRCT1.WMaxLimPct", 45.5)
        finally:
            await server.shutdown()

    text, ok = asyncio.run(scenario())
    assert "wrote [600] (= 60 %) to holding register 40127, but it reads back [500]" in text
    assert ok == [455]


def test_bits_take_zero_or_one_and_policy_refusals_stay(base: Settings) -> None:
    async def scenario() -> None:
        settings = _settings(free_port(), base)  # nothing listens: every refusal comes first
        with pytest.raises(NotRepresentable, match="nan is not a value"):
            await write_point(settings, "INV1", "DRCT1.WMaxLimPct", float("nan"))
        with pytest.raises(WriteRefused, match="writable: true"):
            await write_point(settings, "INV1", "MMXU1.TotW", 1.0)
        with pytest.raises(WriteRefused, match="no device 'INV9'"):
            await write_point(settings, "INV9", "DRCT1.WMaxLimPct", 1.0)

    asyncio.run(scenario())


def test_a_device_that_is_down_is_one_line_with_its_own_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gridverse gateway write` on a device nobody answers for: exit 7, one line naming device,
    host:port and the remedy, no traceback; a value between steps exits 6 before any I/O."""
    from gridverse.cli import main

    port = free_port()

    def add_inverter(doc: dict) -> None:
        doc["gateway"]["writes_enabled"] = True
        doc["gateway"]["timeout_s"] = 0.3
        doc["site"]["substations"].append(
            {
                "name": "pv",
                "host": "127.0.0.1",
                "port": port,
                "devices": [{"name": "INV1", "bay": "PV", "unit_id": 3, "profile": "pv_inverter_sunspec"}],
            }
        )

    main_file = config_dir(tmp_path, add_inverter)
    rc = main(["--config", str(main_file), "gateway", "write", "INV1", "DRCT1.WMaxLimPct", "60"])
    err = capsys.readouterr().err.strip()
    assert rc == 7
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"INV1: no answer from 127.0.0.1:{port}" in err and "retry" in err
    rc = main(["--config", str(main_file), "gateway", "write", "INV1", "DRCT1.WMaxLimEna", "nan"])
    assert rc == 6 and "nan is not a value" in capsys.readouterr().err
    rc = main(["--config", str(main_file), "gateway", "write", "INV1", "MMXU1.TotW", "5"])
    assert rc == 5


def test_a_coil_takes_zero_or_one_and_is_read_back(base: Settings) -> None:
    from gridverse.config import DeviceProfile

    breaker = DeviceProfile(
        name="breaker",
        points=[{"name": "XCBR1.Pos", "table": "coil", "address": 5, "type": "bit", "writable": True}],
    )

    async def scenario() -> tuple[list[int] | bool, bool]:
        port = free_port()
        coils = [SimData(0, values=[False] * 16, datatype=SimType.BITS)]
        invalid = [SimData(0, count=1, datatype=SimType.INVALID)]
        server = ModbusTcpServer(
            [SimDevice(id=3, simdata=(coils, coils, invalid, invalid))], address=("127.0.0.1", port)
        )
        await server.serve_forever(background=True)
        settings = _settings(port, base)
        sub = settings.site.substations[0]
        dev = sub.devices[0].model_copy(update={"profile": "breaker"})
        site = settings.site.model_copy(update={"substations": [sub.model_copy(update={"devices": [dev]})]})
        settings = settings.model_copy(update={"site": site, "profiles": {"breaker": breaker}})
        try:
            with pytest.raises(NotRepresentable, match="a bit takes 0"):
                await write_point(settings, "INV1", "XCBR1.Pos", 0.5)
            written = await write_point(settings, "INV1", "XCBR1.Pos", 1.0)
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1)
            await client.connect()
            held = (await client.read_coils(5, count=1, device_id=3)).bits[0]
            client.close()
            return written, held
        finally:
            await server.shutdown()

    written, held = asyncio.run(scenario())
    assert written is True and held is True
