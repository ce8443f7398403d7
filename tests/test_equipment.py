"""Equipment kinds are description tables found by a registry; each builds its named parts; the
substation render and the operators' view agree on when equipment is loaded; the asset model
(SCL path, voltage level, bay, type, windings, element) refuses what does not fit.
(Asset states from the historian are tested in tests/test_inspection_state.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import inspection.equipment as equipment_pkg
from gridverse.config import AssetConfig, AssetKind
from gridverse.schema import (
    LOADING_ALARM_PERCENT,
    LOADING_WARNING_PERCENT,
    loading_band,
)
from gridverse.settings import load_settings
from inspection.equipment import PartSpec, Primitive, equipment_kind, equipment_kinds
from inspection.equipment.base import _REGISTRY
from inspection.scene import asset_parts
from inspection.state import COLOURS, AssetState

T0 = 1_790_000_000_000_000_000
PARTS = {
    AssetKind.TRANSFORMER: [
        "tank",
        *(f"radiator{i}" for i in range(4)),
        "conservator",
        *(f"hv_bushing{i}" for i in range(3)),
        *(f"lv_bushing{i}" for i in range(3)),
    ],
    AssetKind.BREAKER: ["frame", "mechanism", "pole"],
    AssetKind.BUSBAR: ["conductor", *(f"post{i}" for i in range(4))],
    AssetKind.SENSOR: ["sensor"],
    AssetKind.DISCONNECTOR: ["support", "base", "insulator0", "insulator1", "blade"],
    AssetKind.CT: ["support", "insulator", "head"],
    AssetKind.VT: ["support", "tank", "insulator", "terminal"],
    AssetKind.CABLE_TERMINATION: ["support", "cable", "bracket", *(f"termination{i}" for i in range(3))],
    AssetKind.RMU: ["plinth", "enclosure", *(f"panel{i}" for i in range(3)), "cable_box"],
    AssetKind.PV_INVERTER: ["stand", "cabinet", "heatsink", "display"],
    AssetKind.BATTERY: ["container", "pcs", "hvac"],
}
#: the parts drawn in the state colour: what a technician looks at
STATE_PARTS = {
    AssetKind.TRANSFORMER: {"tank"},
    AssetKind.BREAKER: {"pole"},
    AssetKind.BUSBAR: {"conductor"},
    AssetKind.SENSOR: {"sensor"},
    AssetKind.DISCONNECTOR: {"blade"},
    AssetKind.CT: {"head"},
    AssetKind.VT: {"tank"},
    AssetKind.CABLE_TERMINATION: {f"termination{i}" for i in range(3)},
    AssetKind.RMU: {f"panel{i}" for i in range(3)},
    AssetKind.PV_INVERTER: {"cabinet"},
    AssetKind.BATTERY: {"container"},
}


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
    grey = equipment_kind(kind).structure_colour
    assert {p.name.rsplit("/", 1)[1]: p.colour for p in parts} == {
        n: COLOURS[AssetState.WARNING] if n in STATE_PARTS[kind] else grey for n in PARTS[kind]
    }
    # everything stands around the asset's position (within a few decimetres), on or above the ground
    vertices = np.vstack([np.asarray(p.mesh.vertices) for p in parts])
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    assert centre[:2] == pytest.approx((7.0, -3.0), abs=0.3)
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


def test_a_three_winding_transformer_has_tertiary_bushings() -> None:
    windings = [{"name": n, "rated_kv": kv} for n, kv in (("HV", 110), ("MV", 20), ("LV", 10))]
    three = AssetConfig(name="S/E1/T1/PTR1", kind=AssetKind.TRANSFORMER, position=(0, 0), windings=windings)
    names = [p.name.rsplit("/", 1)[1] for p in asset_parts(three, AssetState.NORMAL)]
    assert names == PARTS[AssetKind.TRANSFORMER] + ["tv_bushing0", "tv_bushing1"]


def test_rotation_turns_the_asset_about_its_position() -> None:
    straight = AssetConfig(name="S/Q1/QB1", kind=AssetKind.DISCONNECTOR, position=(4.0, 2.0))
    turned = straight.model_copy(update={"rotation_deg": 90.0})
    blade = {a.rotation_deg: asset_parts(a, AssetState.NORMAL)[-1] for a in (straight, turned)}
    span = {deg: np.ptp(np.asarray(p.mesh.vertices), axis=0) for deg, p in blade.items()}
    assert span[0.0][0] == pytest.approx(2.2) and span[0.0][1] == pytest.approx(0.08)
    assert span[90.0][0] == pytest.approx(0.08) and span[90.0][1] == pytest.approx(2.2)  # the blade runs along y
    centre = np.asarray(blade[90.0].mesh.vertices).mean(axis=0)
    assert centre[:2] == pytest.approx((4.0, 2.0), abs=1e-6)


def test_voltage_level_bay_and_scl_type_come_from_the_path_and_kind() -> None:
    long = AssetConfig(name="S1/E1/Q01/QA1", kind=AssetKind.BREAKER, position=(0, 0))
    assert (long.substation, long.voltage_level, long.bay, long.scl_type, long.id) == (
        "S1",
        "E1",
        "Q01",
        "CBR",
        "S1/E1/Q01/QA1",
    )
    short = AssetConfig(name="PRIM/T1/YPTR1", kind=AssetKind.TRANSFORMER, position=(0, 0), asset_id="TR-7")
    assert (short.voltage_level, short.bay, short.scl_type, short.id) == (None, "T1", "PTR", "TR-7")
    given = AssetConfig(name="S1/E1/Q01/QA1", kind=AssetKind.CT, position=(0, 0), bay="Q9", voltage_level="D1")
    assert (given.voltage_level, given.bay, given.scl_type) == ("D1", "Q9", "CTR")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scl_type": "XYZ"}, "unknown SCL equipment type 'XYZ'"),
        ({"windings": [{"name": "HV"}, {"name": "LV"}]}, "only a transformer has windings"),
        ({"kind": "transformer", "windings": [{"name": "HV"}]}, "2 or 3 windings"),
        ({"element": {"kind": "sgen"}}, "needs its `index` or its `name`"),
        ({"name": "S1//QA1"}, "not an SCL path"),
    ],
)
def test_an_asset_that_does_not_fit_the_model_is_refused(changes: dict, message: str) -> None:
    raw = {"name": "S1/E1/Q01/QA1", "kind": "breaker", "position": (0, 0), **changes}
    with pytest.raises(ValueError, match=message):
        AssetConfig.model_validate(raw)


def test_the_shipped_assets_cover_every_kind_and_link_to_the_network() -> None:
    """configs/assets.yaml: a primary substation with CT/VT/disconnectors per bay and a secondary one
    with an RMU, transformer, PV inverter and battery, each tied to its network element."""
    settings = load_settings()
    kinds = {a.kind for assets in settings.assets.values() for a in assets}
    assert kinds == set(AssetKind)
    secondary = {a.kind: a for a in settings.assets["ss20"]}
    assert {AssetKind.RMU, AssetKind.TRANSFORMER, AssetKind.PV_INVERTER, AssetKind.BATTERY} <= set(secondary)
    assert secondary[AssetKind.PV_INVERTER].element.kind == "sgen"
    assert secondary[AssetKind.BATTERY].element.kind == "storage"
    primary = settings.assets["primary"]
    for bay in (f"Q0{i}" for i in range(1, 9)):
        assert {a.kind for a in primary if a.bay == bay} == {
            AssetKind.BREAKER,
            AssetKind.DISCONNECTOR,
            AssetKind.CT,
            AssetKind.CABLE_TERMINATION,
        }, bay
    t1 = next(a for a in primary if a.name == "PRIM/T1/YPTR1")
    assert [w.rated_kv for w in t1.windings] == [110, 20] and t1.element.ref().index == 0
    names = [a.name for assets in settings.assets.values() for a in assets]
    assert len(names) == len(set(names)), "every SCL path is unique"


def test_a_transformer_is_drawn_to_the_size_of_its_rating() -> None:
    """25 MVA is the drawing; a 630 kVA distribution transformer stands at (0.63/25)^(1/4) ≈ 0.4 of it."""

    def height(mva: float | None) -> float:
        windings = [{"name": "HV", "rated_mva": mva}, {"name": "LV", "rated_mva": mva}] if mva else []
        asset = AssetConfig(name="S/T1/PTR", kind=AssetKind.TRANSFORMER, position=(3, 4), windings=windings)
        vertices = np.vstack([np.asarray(p.mesh.vertices) for p in asset_parts(asset, AssetState.NORMAL)])
        return float(vertices[:, 2].max())

    assert height(25.0) == pytest.approx(height(None))
    assert height(0.63) == pytest.approx(height(25.0) * (0.63 / 25.0) ** 0.25, rel=1e-6)
    assert height(0.63) < 0.45 * height(25.0) and height(100.0) > height(25.0)
