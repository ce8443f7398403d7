"""Golden cases of every device profile (tests/profiles/<profile>/<case>/, see its README): a
register image served by pymodbus' own server on loopback, polled once by the gateway's
DevicePoller, compared point by point with expected.yaml; or a profile variant that must fail
validation with init.err's message."""

from __future__ import annotations

import asyncio
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from gateway.modbus_poller import DevicePoller, RtuConnection
from gridverse.config import DeviceConfig, DeviceProfile, GatewayConfig, RegisterTable, SubstationConfig
from gridverse.settings import REPO_ROOT, ConfigError, load_settings
from tests.services import free_port

CASES_DIR = Path(__file__).parent / "profiles"
CASES = sorted(p.parent for p in CASES_DIR.glob("*/*/*") if p.name in ("registers.yaml", "init.err"))
_BITS = (RegisterTable.COIL, RegisterTable.DISCRETE)


def _case_id(case: Path) -> str:
    return f"{case.parent.name}/{case.name}"


def _load_profile(case: Path, tmp_path: Path) -> DeviceProfile:
    """The profile as the gateway's loader reads it: the shipped configs/, with the case's
    profile.yaml (if any) in place of the shipped file."""
    configs = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", configs)
    variant = case / "profile.yaml"
    if variant.exists():
        shutil.copy(variant, configs / "profiles" / f"{case.parent.name}.yaml")
    return load_settings(configs / "gridverse.yaml", environ={}).profiles[case.parent.name]


def _words(table: RegisterTable, image: dict[int, Any], where: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for address, value in image.items():
        values = value if isinstance(value, list) else [value]
        for k, word in enumerate(values):
            limit = 1 if table in _BITS else 0xFFFF
            assert isinstance(word, int) and 0 <= word <= limit, f"{where}: {table.value} {address + k}: {word!r}"
            out[int(address) + k] = word
    return out


def _sim_device(unit_id: int, images: dict[RegisterTable, dict[int, int]]) -> SimDevice:
    """One block per table from its lowest to its highest named address (gaps read 0); a table
    the image leaves out lives far away, so reading it answers exception 2 (illegal address)."""
    blocks: list[list[SimData]] = []
    for table in (RegisterTable.COIL, RegisterTable.DISCRETE, RegisterTable.HOLDING, RegisterTable.INPUT):
        image = images.get(table, {})
        if table in _BITS:
            if not image:
                blocks.append([SimData(0xFF00, values=[False] * 16, datatype=SimType.BITS)])
                continue
            size = -(-(max(image) + 1) // 16) * 16
            blocks.append([SimData(0, values=[bool(image.get(a, 0)) for a in range(size)], datatype=SimType.BITS)])
        elif not image:
            blocks.append([SimData(0xFFF0, count=1, datatype=SimType.INVALID)])
        else:
            start, end = min(image), max(image) + 1
            values = [image.get(a, 0) for a in range(start, end)]
            blocks.append([SimData(start, values=values, datatype=SimType.REGISTERS)])
    return SimDevice(id=unit_id, simdata=(blocks[0], blocks[1], blocks[2], blocks[3]))


async def _poll(profile: DeviceProfile, unit_id: int, images: dict[RegisterTable, dict[int, int]]) -> list:
    port = free_port()
    server = ModbusTcpServer([_sim_device(unit_id, images)], address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    sub = SubstationConfig(
        name="case", port=port, devices=[DeviceConfig(name="DEV1", bay="B1", unit_id=unit_id, profile=profile.name)]
    )
    cfg = GatewayConfig(timeout_s=2.0, retries=0)
    conn = RtuConnection(sub, cfg)
    try:
        return await DevicePoller("case", sub, sub.devices[0], profile, conn, cfg, lambda _r: None).poll_once()
    finally:
        conn.close()
        await server.shutdown()


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_profile_case(case: Path, tmp_path: Path) -> None:
    init_err = case / "init.err"
    if init_err.exists():
        assert (case / "profile.yaml").exists(), f"{case}: an init.err case needs the profile.yaml that fails"
        with pytest.raises(ConfigError) as info:
            _load_profile(case, tmp_path)
        assert init_err.read_text().strip() in str(info.value)
        return
    profile = _load_profile(case, tmp_path)
    doc = yaml.safe_load((case / "registers.yaml").read_text()) or {}
    unit_id = int(doc.pop("unit_id", 1))
    images = {RegisterTable(t): _words(RegisterTable(t), v or {}, case) for t, v in doc.items()}
    expected_doc = yaml.safe_load((case / "expected.yaml").read_text())
    tolerance = float(expected_doc.get("tolerance", 1e-6))
    expected = {e["name"]: e for e in expected_doc["points"]}
    got = {p.name: p for p in asyncio.run(_poll(profile, unit_id, images))}
    assert sorted(got) == sorted(expected), f"{case}: points polled vs expected.yaml"
    for name, want in expected.items():
        p = got[name]
        assert p.quality.value == want["quality"], f"{case}: {name} quality {p.quality.value}"
        assert p.unit == want.get("unit", ""), f"{case}: {name} unit {p.unit!r}"
        assert p.extra.get("text") == want.get("text"), f"{case}: {name} text {p.extra.get('text')!r}"
        if want["value"] is None:
            assert p.value is None, f"{case}: {name} = {p.value}, expected no value"
        else:
            assert p.value is not None and math.isclose(
                p.value, float(want["value"]), rel_tol=tolerance, abs_tol=1e-12
            ), f"{case}: {name} = {p.value}, expected {want['value']}"


def test_every_shipped_profile_has_a_golden_case() -> None:
    shipped = {p.stem for p in (REPO_ROOT / "configs" / "profiles").glob("*.yaml")}
    with_cases = {c.parent.name for c in CASES if (c / "registers.yaml").exists()}
    assert shipped <= with_cases, f"profiles without a case in tests/profiles/: {sorted(shipped - with_cases)}"
