"""SCL import: a hand-written .scd with two substations reads as the asset model (voltage levels,
bays, 2- and 3-winding transformers, busbar bays, sxy coordinates); `gridverse inspect import-scl`
prints what it read and writes an assets.yaml the configuration accepts; a broken file is one
clear error with its line, and equipment that cannot be mapped is listed with file, line and
reason instead of crashing the import."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gridverse.cli import main
from gridverse.config import AssetKind
from gridverse.settings import load_settings
from inspection.scl import SclError, import_scl, summary
from tests.helpers import config_dir

DATA = Path(__file__).parent / "data" / "scl"
TWO = DATA / "two_substations.scd"


def _line_of(path: Path, text: str) -> int:
    """The 1-based line of the first occurrence of `text` in `path` (so the test does not hard-code it)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_two_substations_read_as_the_asset_model() -> None:
    result = import_scl(TWO)
    subs = {s.name: s for s in result.substations}
    assert list(subs) == ["RVS", "MLL"]
    rvs, mll = subs["RVS"], subs["MLL"]
    assert [(vl.name, vl.voltage_kv, vl.bays) for vl in rvs.voltage_levels] == [
        ("E1", 110.0, ["BB1", "Q01", "Q02"]),
        ("D1", 20.0, ["BB1", "Q11", "Q12"]),
        ("C1", 10.0, ["BB1"]),
    ]
    assert [(vl.name, vl.voltage_kv) for vl in mll.voltage_levels] == [("D1", 20.0), ("N1", 0.4)]
    assert dict(rvs.equipment_by_type()) == {
        "PTR": 2,
        "BUSBAR": 3,
        "DIS": 4,
        "CBR": 4,
        "CTR": 3,
        "VTR": 1,
        "IFL": 1,
        "CAB": 2,
    }
    assets = {a.name: a for a in rvs.assets}
    # transformers at substation level, with the voltage level and rating of each winding's terminal
    t1, t2 = assets["RVS/T1"], assets["RVS/T2"]
    assert [(w.name, w.voltage_level, w.rated_kv) for w in t1.windings] == [("W1", "E1", 110.0), ("W2", "D1", 20.0)]
    assert [w.rated_kv for w in t2.windings] == [110.0, 20.0, 10.0]
    assert t1.kind is AssetKind.TRANSFORMER and t1.bay is None
    # a bay holding only a connectivity node is a busbar across its voltage level's bays
    busbar = assets["RVS/E1/BB1/L1"]
    assert busbar.kind is AssetKind.BUSBAR and busbar.length == pytest.approx(12.0)
    # path → voltage level and bay; SCL type kept where it is not the kind's default
    breaker = assets["RVS/D1/Q12/QA1"]
    assert (breaker.kind, breaker.voltage_level, breaker.bay, breaker.scl_type, breaker.voltage_kv) == (
        AssetKind.BREAKER,
        "D1",
        "Q12",
        "CBR",
        20.0,
    )
    assert assets["RVS/E1/Q01/WA1"].kind is AssetKind.CABLE_TERMINATION and assets["RVS/E1/Q01/WA1"].scl_type == "IFL"
    # the secondary substation: RMU (private type), bay-level transformer, PV inverter, battery
    kinds = {a.name: a.kind for a in mll.assets}
    assert kinds == {
        "MLL/D1/K1/RMU1": AssetKind.RMU,
        "MLL/D1/K1/WA1": AssetKind.CABLE_TERMINATION,
        "MLL/D1/K1/T1": AssetKind.TRANSFORMER,
        "MLL/N1/F1/PV1": AssetKind.PV_INVERTER,
        "MLL/N1/F1/BAT1": AssetKind.BATTERY,
    }
    assert rvs.lines["RVS/T2"] == _line_of(TWO, 'PowerTransformer name="T2"')


def test_sxy_coordinates_are_summed_down_the_containers_and_turned_north_up() -> None:
    mll = next(s for s in import_scl(TWO, scale=2.0).substations if s.name == "MLL")
    at = {a.name: a.position for a in mll.assets}
    # substation (0,0) + voltage level (2,1) + bay (0,0) + own (1,1) = (3, 2) units; y down → north up
    assert at["MLL/D1/K1/RMU1"] == (6.0, -4.0)
    assert at["MLL/D1/K1/WA1"] == (0.0, -6.0)
    assert at["MLL/N1/F1/BAT1"] == (22.0, 6.0)  # no coordinates on its voltage level or bay: own only


def test_without_coordinates_the_layout_is_tidy() -> None:
    rvs = next(s for s in import_scl(TWO).substations if s.name == "RVS")
    positions = [a.position for a in rvs.assets]
    assert len(set(positions)) == len(positions), "no two pieces of equipment on the same spot"
    bay_x = {a.bay: a.position[0] for a in rvs.assets if a.bay and a.kind is not AssetKind.BUSBAR}
    for bay in ("Q01", "Q02", "Q11", "Q12"):  # one column per bay
        assert {a.position[0] for a in rvs.assets if a.bay == bay} == {bay_x[bay]}
    assert bay_x["Q01"] != bay_x["Q02"]
    e1 = [a.position[1] for a in rvs.assets if a.voltage_level == "E1" and a.kind is not AssetKind.TRANSFORMER]
    d1 = [a.position[1] for a in rvs.assets if a.voltage_level == "D1" and a.kind is not AssetKind.TRANSFORMER]
    assert min(e1) > max(d1), "voltage levels one below the other"


def test_what_cannot_be_mapped_is_listed_with_file_line_and_reason() -> None:
    two = import_scl(TWO)
    rvs = two.substations[0]
    assert [(s.path, s.scl_type, s.line) for s in rvs.skipped] == [
        ("RVS/E1/Q01/FA1", "SAR", _line_of(TWO, 'name="FA1"')),
        ("RVS/D1/Q12/QC9", "DIS", _line_of(TWO, 'name="QC9"')),
    ]
    assert "surge arrester" in rvs.skipped[0].reason and "KIND_OF_TYPE" in rvs.skipped[0].reason
    assert "virtual" in rvs.skipped[1].reason

    odd_file = DATA / "unmappable.ssd"
    odd = import_scl(odd_file)
    reasons = {(s.path, s.line): s.reason for s in odd.substations[0].skipped}
    assert reasons[("ODD/AT1", _line_of(odd_file, 'name="AT1"'))].endswith("this one has 1")
    assert "used twice" in reasons[("ODD/D1/Q01/QA1", _line_of(odd_file, 'name="QA1"') + 1)]
    assert "capacitor bank" in reasons[("ODD/D1/Q01/CP1", _line_of(odd_file, 'name="CP1"'))]
    assert "not an IEC 61850-6 type" in reasons[("ODD/D1/Q01/XX1", _line_of(odd_file, 'name="XX1"'))]
    assert "without a name" in reasons[("ODD/D1/Q01/", _line_of(odd_file, '<ConductingEquipment type="DIS"/>'))]
    # a bad coordinate is a warning and an automatic position, not a lost asset
    assert {a.name for a in odd.substations[0].assets} == {"ODD/D1/Q01/QA1", "ODD/D1/Q01/BA1"}
    ba1, cp1 = _line_of(odd_file, 'name="BA1"'), _line_of(odd_file, 'name="CP1"')
    assert odd.warnings and f"{odd_file}:{ba1}" in odd.warnings[0]
    assert f"skipped {odd_file}:{cp1} ODD/D1/Q01/CP1 [CAP]" in summary(odd)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.ssd", r"malformed\.ssd: line 7, column 9: not well-formed XML \(mismatched tag\)"),
        ("not_scl.xml", r"not_scl\.xml: line 2: the root element is .*network.*, not SCL"),
        ("ied_only.icd", r"ied_only\.icd: no Substation section"),
        ("missing.scd", r"missing\.scd: file not found"),
    ],
)
def test_a_file_that_is_not_scl_is_one_clear_error(name: str, message: str) -> None:
    with pytest.raises(SclError, match=message):
        import_scl(DATA / name)


def test_the_command_reports_a_broken_file_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "import-scl", str(DATA / "malformed.ssd")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "line 7, column 9" in err and "Traceback" not in err


def test_the_command_prints_what_it_read_and_writes_assets_the_site_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main_file = config_dir(tmp_path)
    out = main_file.parent / "assets.yaml"
    argv = ["--config", str(main_file), "inspect", "import-scl", str(TWO), "--out", str(out)]
    argv += ["--substation", "RVS=primary", "--substation", "MLL=ss20"]
    assert main(argv) == 2, "an existing assets.yaml is not overwritten without --force"
    capsys.readouterr()
    assert main([*argv, "--force"]) == 0
    printed = capsys.readouterr()
    assert "substation RVS (Riverside 110/20 kV): 3 voltage level(s), 7 bay(s), 20 equipment, 2 skipped" in printed.out
    assert "voltage level E1 (110 kV): bays BB1, Q01, Q02" in printed.out
    assert "equipment by type: 1 BAT (battery), 1 CAB (cable_termination), 1 ERMU (rmu)" in printed.out
    assert f"wrote 25 assets of 2 substation(s) to {out}" in printed.err
    assert set(yaml.safe_load(out.read_text())) == {"primary", "ss20"}
    settings = load_settings(main_file)
    assert len(settings.assets["primary"]) == 20 and len(settings.assets["ss20"]) == 5
    t2 = next(a for a in settings.assets["primary"] if a.name == "RVS/T2")
    assert len(t2.windings) == 3
    # an LNode naming a device of the site links the equipment to it; another IED is a warning
    by_name = {a.name: a for a in settings.assets["primary"]}
    assert by_name["RVS/D1/Q11/QA1"].device == "F1" and by_name["RVS/E1/Q01/QA1"].device is None
    lnode = _line_of(TWO, 'iedName="RVS_Q01"')
    assert f"{TWO}:{lnode}: RVS/E1/Q01/QA1: LNode names IED 'RVS_Q01'" in printed.out
    assert next(a for a in settings.assets["ss20"] if a.kind is AssetKind.RMU).scl_type == "ERMU"


def test_without_the_site_s_devices_nothing_is_linked_and_nothing_warned() -> None:
    result = import_scl(TWO)
    assert all(a.device is None for s in result.substations for a in s.assets) and not result.warnings
    linked = import_scl(TWO, devices={"F1", "T1"})
    assert [a.name for s in linked.substations for a in s.assets if a.device] == ["RVS/D1/Q11/QA1"]
