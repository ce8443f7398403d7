"""GLB export: every exported file (each substation of configs/assets.yaml and SCL-imported ones)
passes the Khronos glTF validator (npm `gltf-validator`, run with node) with zero errors; its
equipment nodes carry the asset model in `extras`; state colours are materials; metres, +Y up,
an anchor at the marker origin; without a historian every state is `unknown`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pygltflib as gl
import pytest

from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Record
from gridverse.schema import ALARM
from gridverse.settings import load_settings
from inspection.config import AssetConfig
from inspection.equipment import equipment_kind
from inspection.export import Live, export_glb, gather_live, read_extras, read_nodes
from inspection.scl import import_scl
from inspection.state import COLOURS, AssetState
from inspection.viewer.validate import ValidatorMissing, validate_many
from tests.helpers import config_dir
from tests.services import unavailable

SCL = Path(__file__).parent / "data" / "scl" / "two_substations.scd"
LIVE_T2 = Live(AssetState.ALARM, {"YPTR1.TmpOil": 131.5, "loading_percent": 62.0, "hot_spot_c": float("nan")})


def _exports(tmp: Path) -> dict[str, tuple[Path, list[AssetConfig]]]:
    settings = load_settings()
    out = {}
    for sub, assets in settings.assets.items():
        out[sub] = (export_glb(assets, sub, tmp / f"{sub}.glb"), assets)
    for sub, assets in import_scl(SCL).assets().items():
        out[f"scl-{sub}"] = (export_glb(assets, sub, tmp / f"scl-{sub}.glb"), assets)
    primary = settings.assets["primary"]
    live = {"PRIM/T2/YPTR1": LIVE_T2, "PRIM/Q02/XCBR1": Live(AssetState.OPEN)}
    out["live-primary"] = (export_glb(primary, "primary", tmp / "live.glb", live), primary)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[AssetConfig]]]:
    return _exports(tmp_path_factory.mktemp("glb"))


@pytest.fixture(scope="module")
def reports(exported: dict[str, tuple[Path, list[AssetConfig]]]) -> dict[str, dict[str, Any]]:
    names = list(exported)
    try:
        found = validate_many([exported[n][0] for n in names])
    except ValidatorMissing as exc:
        unavailable(str(exc))
    return dict(zip(names, found, strict=True))


def test_every_export_passes_the_khronos_validator(reports: dict[str, dict[str, Any]]) -> None:
    assert set(reports) >= {"primary", "ss20", "scl-RVS", "scl-MLL", "live-primary"}
    for name, report in reports.items():
        issues = report["issues"]
        assert issues["numErrors"] == 0, (name, issues["messages"])
        assert issues["numWarnings"] == 0, (name, issues["messages"])
        assert report["mimeType"] == "model/gltf-binary", name
        assert report["info"]["version"] == "2.0" and report["info"]["totalVertexCount"] > 0, name


def test_node_extras_match_the_asset_model(exported: dict[str, tuple[Path, list[AssetConfig]]]) -> None:
    for name, (path, assets) in exported.items():
        extras = read_extras(path)
        assert list(extras) == [a.name for a in assets], name
        for asset in assets:
            e = extras[asset.name]
            assert e["scl_path"] == asset.name and e["asset_id"] == asset.id
            # keys without a value (no bay, no device) are left out of glTF extras: read with defaults
            assert (e["kind"], e.get("scl_type"), e.get("voltage_level"), e.get("bay"), e.get("device")) == (
                asset.kind.value,
                asset.scl_type,
                asset.voltage_level,
                asset.bay,
                asset.device,
            )
            if asset.element is not None:
                assert e["element"] == asset.element.model_dump(mode="json", exclude_none=True)
            if asset.last_inspected is not None:
                assert e["last_inspected"] == asset.last_inspected.isoformat()
            if name != "live-primary":
                assert e["state"] == "unknown" and e.get("values", {}) == {}, (name, asset.name)
    t1 = read_extras(exported["primary"][0])["PRIM/T1/YPTR1"]
    assert t1["asset_id"] == "TR-1998-0415" and t1["element"] == {"kind": "trafo", "index": 0}


def _part_colours(path: Path, asset: str) -> dict[str, list[float]]:
    gltf = gl.GLTF2.load_binary(str(path))
    node = next(n for n in gltf.nodes if n.name == asset)
    out = {}
    for child in node.children:
        part = gltf.nodes[child]
        material = gltf.materials[gltf.meshes[part.mesh].primitives[0].material]
        out[part.name.rsplit("/", 1)[1]] = material.pbrMetallicRoughness.baseColorFactor
    return out


def test_state_and_live_values_become_extras_and_materials(exported: dict) -> None:
    path = exported["live-primary"][0]
    extras = read_extras(path)
    t2 = extras["PRIM/T2/YPTR1"]
    assert t2["state"] == "alarm"
    assert t2["values"] == {"YPTR1.TmpOil": 131.5, "loading_percent": 62.0}
    assert t2["values_missing"] == ["hot_spot_c"]  # NaN has no JSON spelling: named, not dropped
    assert extras["PRIM/Q02/XCBR1"]["state"] == "open" and extras["PRIM/Q01/XCBR1"]["state"] == "unknown"
    transformer = equipment_kind(extras["PRIM/T2/YPTR1"]["kind"])
    colours = _part_colours(path, "PRIM/T2/YPTR1")
    assert colours["tank"] == pytest.approx([*COLOURS[AssetState.ALARM], 1.0])
    assert colours["conservator"] == pytest.approx([*transformer.structure_colour, 1.0])
    assert _part_colours(path, "PRIM/Q02/XCBR1")["pole"] == pytest.approx([*COLOURS[AssetState.OPEN], 1.0])
    assert _part_colours(path, "PRIM/Q01/XCBR1")["pole"] == pytest.approx([*COLOURS[AssetState.UNKNOWN], 1.0])
    gltf = gl.GLTF2.load_binary(str(path))
    by_state = {m.extras.get("state"): m.name for m in gltf.materials if m.extras.get("role") == "state"}
    assert {"alarm", "open", "unknown"} <= set(by_state)


def test_metres_y_up_and_an_anchor_at_the_marker_origin(exported: dict) -> None:
    path, assets = exported["ss20"]
    gltf = gl.GLTF2.load_binary(str(path))
    root = gltf.nodes[gltf.scenes[gltf.scene].nodes[0]]
    assert root.extras["units"] == "m" and root.extras["up"] == "+Y"
    anchor = gltf.nodes[root.children[0]]
    assert anchor.name == "anchor" and anchor.translation == [0.0, 0.0, 0.0]
    nodes = {n["scl_path"]: n for n in read_nodes(path)}
    for asset in assets:
        x, y = asset.position
        assert nodes[asset.name]["position"] == pytest.approx([x, 0.0, -y])  # plot north is glTF -Z
    # heights are along +Y: every part stands on the ground; the 25 MVA drawing's bushings reach
    # 4.6 m, the 630 kVA transformer's (0.63/25)^(1/4) of that
    for accessor in (gltf.accessors[m.primitives[0].attributes.POSITION] for m in gltf.meshes):
        assert accessor.min[1] >= -1e-6
    assert nodes["SS20/T1/YPTR1"]["height"] == pytest.approx(4.6 * (0.63 / 25) ** 0.25, abs=0.01)
    turned = next(a for a in assets if a.rotation_deg)
    node = next(n for n in gltf.nodes if n.name == turned.name)
    half = math.radians(turned.rotation_deg) / 2
    assert node.rotation == pytest.approx([0.0, math.sin(half), 0.0, math.cos(half)])


def test_live_state_from_the_historian_and_unknown_without_one(tmp_path: Path) -> None:
    settings = load_settings(config_dir(tmp_path))
    assets = settings.assets["primary"]
    assert gather_live(settings, assets, "primary", None) == ({}, "no historian: states unknown")
    historian = EmbeddedHistorian(settings.historian.path)
    try:
        import time

        tags = {"site": settings.site.name, "substation": "primary", "device": "T2-oil", "point": "YPTR1.TmpOil"}
        historian.write([Record(ALARM, tags, {"active": 1, "message": "oil hot"}, time.time_ns())])
        live, note = gather_live(settings, assets, "primary", historian)
    finally:
        historian.close()
    assert note == ""
    assert live["PRIM/T2/YPTR1"].state is AssetState.ALARM  # the sensor's alarm puts its transformer in alarm
    path = export_glb(assets, "primary", tmp_path / "p.glb", live)
    assert read_extras(path)["PRIM/T2/YPTR1"]["state"] == "alarm"


def test_the_validator_is_no_rubber_stamp(exported: dict, tmp_path: Path) -> None:
    """A file with one wrong accessor bound (what Open3D's own GLB writer produces) is an error."""
    gltf = gl.GLTF2.load_binary(str(exported["ss20"][0]))
    gltf.accessors[0].max = [v + 1.0 for v in gltf.accessors[0].max]
    broken = tmp_path / "broken.glb"
    gltf.save_binary(str(broken))
    try:
        (report,) = validate_many([broken])
    except ValidatorMissing as exc:
        unavailable(str(exc))
    assert report["issues"]["numErrors"] >= 1
    assert "ACCESSOR_MAX_MISMATCH" in {m["code"] for m in report["issues"]["messages"]}
