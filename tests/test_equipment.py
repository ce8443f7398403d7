"""Equipment kinds are description tables found by a registry; each builds its named parts; the
substation render and the operators' view agree on when equipment is loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import inspection.equipment as equipment_pkg
from gridverse.config import AssetConfig, AssetKind, Settings
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Point, Quality, Record, Source
from gridverse.schema import (
    ALARM,
    LOADING_ALARM_PERCENT,
    LOADING_WARNING_PERCENT,
    TWIN_BRANCH,
    loading_band,
)
from gridverse.settings import load_settings
from inspection.equipment import PartSpec, Primitive, equipment_kind, equipment_kinds
from inspection.equipment.base import _REGISTRY
from inspection.scene import asset_parts
from inspection.state import COLOURS, AssetState, asset_states
from tests.helpers import config_dir

T0 = 1_790_000_000_000_000_000
PARTS = {
    AssetKind.TRANSFORMER: ["tank", *(f"radiator{i}" for i in range(4)), *(f"bushing{i}" for i in range(3))],
    AssetKind.BREAKER: ["frame", "pole"],
    AssetKind.BUSBAR: ["conductor", *(f"post{i}" for i in range(4))],
    AssetKind.SENSOR: ["sensor"],
}
STATE_PART = {AssetKind.TRANSFORMER: "tank", AssetKind.BREAKER: "pole", AssetKind.BUSBAR: "conductor"}


def test_registry_has_one_file_per_asset_kind() -> None:
    kinds = equipment_kinds()
    assert set(kinds) == set(AssetKind)
    files = {p.stem for p in Path(equipment_pkg.__file__).parent.glob("*.py")} - {"__init__", "base"}
    assert files == {k.value for k in AssetKind}


@pytest.mark.parametrize("kind", list(AssetKind))
def test_each_kind_builds_its_named_parts_in_place(kind: AssetKind) -> None:
    asset = AssetConfig(name=f"SUB/{kind.value}", kind=kind, position=(7.0, -3.0), device="X", length=10.0)
    parts = asset_parts(asset, AssetState.WARNING)
    assert [p.name for p in parts] == [f"SUB/{kind.value}/{n}" for n in PARTS[kind]]
    for p in parts:
        assert len(p.mesh.vertices) > 0 and len(p.mesh.triangles) > 0, p.name
    state_part = STATE_PART.get(kind, "sensor")
    grey = equipment_kind(kind).structure_colour
    assert {p.name.rsplit("/", 1)[1]: p.colour for p in parts} == {
        n: COLOURS[AssetState.WARNING] if n == state_part else grey for n in PARTS[kind]
    }
    # everything stands around the asset's position, on or above the ground
    vertices = np.vstack([np.asarray(p.mesh.vertices) for p in parts])
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    assert centre[:2] == pytest.approx((7.0, -3.0), abs=1e-6)
    assert vertices[:, 2].min() >= -1e-9
    if kind is AssetKind.BUSBAR:  # the conductor runs the asset's length along x
        conductor = np.asarray(parts[0].mesh.vertices)
        assert np.ptp(conductor[:, 0]) == pytest.approx(10.0, rel=1e-6)


def test_an_explicit_colour_still_paints_the_state_part() -> None:
    asset = AssetConfig(name="S/T", kind=AssetKind.TRANSFORMER, position=(0, 0))
    parts = asset_parts(asset, (0.1, 0.2, 0.3))
    assert parts[0].name == "S/T/tank" and parts[0].colour == (0.1, 0.2, 0.3)


def test_a_kind_without_a_file_is_an_error_naming_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    equipment_kinds()
    monkeypatch.delitem(_REGISTRY, AssetKind.SENSOR)
    with pytest.raises(LookupError, match=r"add inspection/equipment/sensor\.py"):
        equipment_kind(AssetKind.SENSOR)


def test_a_part_with_the_wrong_sizes_is_refused() -> None:
    with pytest.raises(ValueError, match="part 'pole': a box needs 3 positive sizes"):
        PartSpec("pole", Primitive.BOX, (1.0, 2.0))


@pytest.mark.parametrize("percent", [0.0, 35.0, 49.9, 50.0, 65.0, 70.0, 79.9, 80.0, 120.0, None, float("nan")])
def test_render_and_operator_view_agree_on_loading(percent: float | None) -> None:
    """One pair of thresholds: the operators' network colour band and every kind's state."""
    band = loading_band(percent)
    expected = {"unknown": AssetState.NORMAL, "normal": AssetState.NORMAL, "warning": AssetState.WARNING}
    expected["alarm"] = AssetState.OVERLOADED
    for kind in AssetKind:
        assert equipment_kind(kind).loading_state(percent) is expected[band], kind
    assert (LOADING_WARNING_PERCENT, LOADING_ALARM_PERCENT) == (50.0, 80.0)


def _point(settings: Settings, device: str, name: str, value: float | None, quality: Quality = Quality.GOOD) -> Record:
    return Point(settings.site.name, "primary", "", device, name, Source.MODBUS, T0, value, quality=quality).to_record()


def test_asset_states_from_the_historian(tmp_path: Path) -> None:
    """A transformer at 60 % is drawn loaded (amber, as the operators' view shows a 60 % line),
    one at 90 % overloaded; alarms, open breakers and silent devices keep their states."""
    settings = load_settings(config_dir(tmp_path))
    historian = EmbeddedHistorian(settings.historian.path)
    site = settings.site.name
    try:
        historian.write(
            [
                _point(settings, "T1", "MMXU1.TotW", 5.0),
                _point(settings, "T2", "MMXU1.TotW", 9.0),
                _point(settings, "T1-oil", "YPTR1.TmpOil", 60.0),
                _point(settings, "T2-oil", "YPTR1.TmpOil", 150.0),
                _point(settings, "F1", "MMXU1.TotW", 1.0),
                _point(settings, "F2", "XCBR1.Pos", 0.0),
                _point(settings, "F3", "MMXU1.TotW", None, Quality.COMM_FAIL),
                _point(settings, "F4", "MMXU1.TotW", 1.0),
                Record(TWIN_BRANCH, {"site": site, "kind": "trafo", "index": "0"}, {"loading_percent": 60.0}, T0),
                Record(TWIN_BRANCH, {"site": site, "kind": "trafo", "index": "1"}, {"loading_percent": 90.0}, T0),
                Record(TWIN_BRANCH, {"site": site, "kind": "line", "index": "0"}, {"loading_percent": 20.0}, T0),
                Record(TWIN_BRANCH, {"site": site, "kind": "line", "index": "26"}, {"loading_percent": 49.0}, T0),
                Record(
                    ALARM,
                    {"site": site, "substation": "primary", "device": "T2-oil", "point": "YPTR1.TmpOil"},
                    {"active": 1, "message": "hot"},
                    T0,
                ),
            ]
        )
        states = asset_states(settings.site, settings.assets["primary"], historian, "primary", T0 - 1)
    finally:
        historian.close()
    assert states == {
        "PRIM/BB1/BUSBAR": AssetState.NORMAL,
        "PRIM/BB2/BUSBAR": AssetState.NORMAL,
        "PRIM/T1/YPTR1": AssetState.WARNING,
        "PRIM/T2/YPTR1": AssetState.OVERLOADED,
        "PRIM/T1/STMP1": AssetState.WARNING,  # the sensor of the transformer at 60 %
        "PRIM/T2/STMP1": AssetState.ALARM,
        "PRIM/Q01/XCBR1": AssetState.NORMAL,
        "PRIM/Q02/XCBR1": AssetState.OPEN,
        "PRIM/Q03/XCBR1": AssetState.UNKNOWN,
        "PRIM/Q04/XCBR1": AssetState.NORMAL,
        **{f"PRIM/Q0{i}/XCBR1": AssetState.UNKNOWN for i in range(5, 9)},
    }
