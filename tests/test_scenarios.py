"""The labelled scenario generator: labels say exactly where the faults are, runs are reproducible,
the split is chronological, points name real elements, and the FDIA passes the residual test."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anomaly.dataset import read_network, read_scenario
from anomaly.scenarios import ScenarioParams, generate
from anomaly.scenarios.faults import Fault, fault_kinds
from anomaly.scenarios.faults.fdia import max_normalised_residual, telemetered
from gridmodel.baddata import DEFAULT_BAD_DATA_THRESHOLD
from gridmodel.config import TwinConfig
from gridmodel.estimator import make_estimator
from gridmodel.measurements import pseudo_measurements

LV = "1-LV-rural1--0-sw"
warnings.filterwarnings("ignore", category=RuntimeWarning)


def _hand_faults(with_attack: bool):
    """Faults placed by hand (all in the train split of a one-day scenario: steps 0..56)."""

    def choose(ctx) -> list[Fault]:
        pts = ctx.points
        head, _side = ctx.plan.feeder_heads[0]
        substation = set(ctx.net.trafo.lv_bus) | set(ctx.net.trafo.hv_bus)
        volts = pts[(pts.quantity == "v_pu") & ~pts.element.isin(substation)]
        v_point = str(volts.index[0])
        p_point = str(pts.index[(pts.element_type == "trafo") & (pts.quantity == "p_mw")][0])
        i_point = str(pts.index[(pts.quantity == "i_ka")][-1])
        out = [
            Fault("stuck", 10, 20, "bus", int(volts.element.iloc[0]), v_point),
            Fault("spike", 25, 25, "trafo", int(pts.loc[p_point, "element"]), p_point, {"sigmas": 40.0}),
            Fault("dropout", 30, 35, "line", int(pts.loc[i_point, "element"]), i_point, {"fill": "missing"}),
            Fault("line_outage", 40, 48, "line", int(head)),
        ]
        if with_attack:
            bus = int(volts.element.iloc[-1])
            big_load = int(ctx.nominal_load_p.idxmax())
            out += [
                Fault("theft", 60, 70, "load", big_load, params={"extra_mw": 0.01}),  # in the validation split
                Fault("fdia", 50, 55, "bus", bus, params={"delta_vm_pu": 0.02}),
                Fault("overheating", 20, 56, "trafo", 0, params={"rise_factor": 2.5}),
            ]
        return out

    return choose


@pytest.fixture(scope="module")
def hand(tmp_path_factory) -> tuple[Path, Path]:
    """The same day with the hand-placed faults, with and without the attack and the overheating."""
    base = tmp_path_factory.mktemp("scen")
    params = ScenarioParams(grid=LV, days=1, seed=5)
    generate(params, base / "attacked", choose_faults=_hand_faults(True))
    generate(params, base / "plain", choose_faults=_hand_faults(False))
    return base / "attacked", base / "plain"


def test_labels_point_at_the_faults_in_the_telemetry(hand):
    s = read_scenario(hand[0] / "train")
    tel, pts = s.telemetry, s.points
    labels = s.labels.set_index("type")
    assert set(labels.index) == {"stuck", "spike", "dropout", "line_outage", "fdia", "overheating"}
    stuck = labels.loc["stuck"]
    window = tel.loc[stuck.start : stuck.end, stuck.point]
    assert len(window) == 11 and window.nunique() == 1  # frozen for exactly the labelled samples
    assert tel[stuck.point].loc[: stuck.start].iloc[-3:].nunique() > 1  # and moving before
    spike = labels.loc["spike"]
    series, sigma = tel[spike.point], pts.loc[spike.point, "sigma"]
    assert spike.start == spike.end
    jumps = (series - series.rolling(5, center=True, min_periods=1).median()).abs() / sigma
    assert jumps.idxmax() == spike.start and jumps.max() > 20
    dropout = labels.loc["dropout"]
    missing = tel[dropout.point].isna()
    assert list(missing[missing].index) == list(tel.loc[dropout.start : dropout.end].index)
    outage = labels.loc["line_outage"]
    meters = pts[(pts.element_type == "line") & (pts.element == outage.element)]
    assert len(meters) == 3  # the feeder head's P, Q and I
    during = tel.loc[outage.start : outage.end, meters.index]
    assert (during.abs() <= 5 * meters.sigma).all().all()  # zero flow, within the noise
    before = tel.loc[: outage.start, meters.index].iloc[:-1]
    current = meters.index[meters.quantity == "i_ka"][0]
    assert before[current].median() > 5 * meters.sigma[current]  # the feeder carried current before


def test_grid_events_change_every_meter_consistently_and_the_oil_heats(hand):
    attacked = read_scenario(hand[0] / "train").telemetry
    plain = read_scenario(hand[1] / "train").telemetry
    lab = read_scenario(hand[0] / "train").labels.set_index("type")
    heat = lab.loc["overheating"]
    oil = "trafo0.temp_oil_c"
    before = attacked.loc[: heat.start, oil].iloc[:-1]
    assert (before - plain.loc[before.index, oil]).abs().max() < 1e-9  # same noise, same truth
    rise = attacked.loc[heat.start : heat.end, oil] - plain.loc[heat.start : heat.end, oil]
    assert rise.iloc[-1] > 3.0 and rise.is_monotonic_increasing  # IEC 60076-7: heats with its time constant


def test_theft_shows_upstream_but_not_in_the_operators_model(hand):
    attacked, plain = read_scenario(hand[0] / "validation"), read_scenario(hand[1] / "validation")
    theft = attacked.labels.set_index("type").loc["theft"]
    diff = (attacked.telemetry["trafo0.lv.p_mw"] - plain.telemetry["trafo0.lv.p_mw"]).abs()
    inside = diff.loc[theft.start : theft.end]
    assert len(inside) == 11 and ((inside > 0.009) & (inside < 0.012)).all()  # 10 kW more, plus losses
    assert diff.drop(inside.index).max() < 1e-4  # nothing outside the window (power-flow tolerance, σ = 2e-3)
    net = attacked.network()
    assert net.load.at[theft.element, "p_mw"] == plain.network().load.at[theft.element, "p_mw"]


def test_fdia_shifts_the_estimate_but_passes_the_residual_test(hand):
    scen = read_scenario(hand[0] / "train")
    plain = read_scenario(hand[1] / "train").telemetry
    fault = next(f for f in scen.meta["faults"] if f["type"] == "fdia")
    window = scen.telemetry.loc[fault["start"] : fault["end"]]
    diff = (window - plain.loc[window.index]).abs() / scen.points.sigma
    touched = {c for c in diff.columns[(diff > 0.01).any()] if not c.endswith("temp_oil_c")}
    assert touched <= set(fault["params"]["points"]) and f"bus{fault['element']}.v_pu" in touched
    net = read_network(hand[0] / "train" / "network.json")
    pseudo = pseudo_measurements(net, set(), TwinConfig())
    estimator = make_estimator("sparse")
    for when in window.index[[0, -1]]:
        meas, _ = telemetered(scen.points, window.loc[when].to_numpy())
        attacked = estimator.estimate(net, meas + pseudo)
        clean_meas, _ = telemetered(scen.points, plain.loc[when].to_numpy())
        clean = estimator.estimate(net, clean_meas + pseudo)
        assert max_normalised_residual(attacked, len(meas)) <= max(
            DEFAULT_BAD_DATA_THRESHOLD, max_normalised_residual(clean, len(clean_meas)) + 0.5
        )
        shift = attacked.res_bus.vm_pu[fault["element"]] - clean.res_bus.vm_pu[fault["element"]]
        assert abs(shift - fault["params"]["delta_vm_pu"]) < 0.25 * abs(fault["params"]["delta_vm_pu"])
    params = fault["params"]
    assert params["max_lnr_attacked"] <= max(DEFAULT_BAD_DATA_THRESHOLD, params["max_lnr_clean"] + 0.5)
    # the label itself names the falsified points, so labels.csv alone can credit an alarm on them
    label = scen.labels.set_index("type").loc["fdia"]
    assert label.point.split(";") == params["points"] and len(params["points"]) >= 1


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> Path:
    """A pandapower network without profiles, many seeded faults, twice with one seed, once with another."""
    import pandapower as pp
    import pandapower.networks as pn

    base = tmp_path_factory.mktemp("drawn")
    net = pn.example_simple()
    pp.to_json(net, str(base / "grid.json"))
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate(ScenarioParams(grid=str(base / "grid.json"), days=1, seed=seed, faults_per_week=150), base / name)
    return base


def test_same_seed_gives_identical_files_and_another_seed_does_not(drawn):
    a, b, c = _tree(drawn / "a"), _tree(drawn / "b"), _tree(drawn / "c")
    assert set(a) >= {f"{s}/{f}" for s in ("train", "validation", "test") for f in ("points.csv", "telemetry.csv.gz")}
    assert a == b
    assert a["train/telemetry.csv.gz"] != c["train/telemetry.csv.gz"]
    assert a["train/labels.csv"] != c["train/labels.csv"]


def test_split_is_chronological_and_labels_stay_in_their_split(drawn):
    parts = [read_scenario(drawn / "a" / s) for s in ("train", "validation", "test")]
    spans = [(p.telemetry.index[0], p.telemetry.index[-1], len(p.telemetry)) for p in parts]
    assert [n for *_t, n in spans] == [57, 19, 20]  # 60/20/20 of 96 samples
    for (_s0, e0, _n0), (s1, _e1, _n1) in zip(spans, spans[1:], strict=False):
        assert s1 - e0 == pd.Timedelta(minutes=15)  # contiguous, in time order, never shuffled
    for part, (start, end, _n) in zip(parts, spans, strict=True):
        assert part.meta["split"] in ("train", "validation", "test")
        assert ((part.labels.start >= start) & (part.labels.end <= end)).all()
        assert len(part.labels) == len(part.meta["faults"])
    assert "no time-series profiles" in parts[0].meta["notes"][0]


def test_drawn_faults_never_overlap_on_a_target(drawn):
    faults = [f for s in ("train", "validation", "test") for f in read_scenario(drawn / "a" / s).meta["faults"]]
    kinds = fault_kinds()
    assert len(faults) >= 10 and len({f["type"] for f in faults}) >= 5
    for i, f in enumerate(faults):
        for g in faults[i + 1 :]:
            overlap = f["start"] <= g["end"] and g["start"] <= f["end"]
            same = (f["element_type"], f["element"]) == (g["element_type"], g["element"]) or (
                f["point"] and f["point"] == g["point"]
            )
            both_grid = kinds[f["type"]].family != "measurement" and kinds[g["type"]].family != "measurement"
            assert not (overlap and (same or both_grid)), (f, g)


def test_points_name_existing_elements_and_the_network_is_the_operators_model(hand):
    import pandapower as pp

    from gridmodel.config import NetworkConfig
    from gridmodel.network import load_grid

    scen = read_scenario(hand[0] / "test")
    net = scen.network()
    for name, p in scen.points.iterrows():
        assert p.element in getattr(net, p.element_type).index, name
    truth = load_grid(NetworkConfig(simbench_code=LV)).net
    assert "profiles" not in net
    assert net.line.in_service.all()  # the outage is not in the operator's model
    np.testing.assert_allclose(net.load.p_mw, truth.load.p_mw)  # nominal values, not a profile moment
    assert set(scen.points.quantity) == {"v_pu", "p_mw", "q_mvar", "i_ka", "temp_oil_c"}
    share = (scen.points.quantity == "v_pu").sum() / len(net.bus)
    assert 0.3 <= share <= 0.6  # about a third of the buses, plus the substation busbars
    # LV units are far below the 1 MW of telemetry: the generators that report are those above 7 kW,
    # through their smart meters (the default plan, MsbG § 29 (1) 2)
    reporting = set(scen.points.element[scen.points.element_type == "sgen"])
    assert reporting == set(net.sgen.index[net.sgen.p_mw > 0.007]) and reporting
    meta = json.loads((hand[0] / "test" / "scenario.json").read_text())
    assert meta["seed"] == 5 and meta["grid"] == LV and meta["step_minutes"] == 15
    assert isinstance(pp.to_json(net), str)


def test_smart_metered_generators_report_their_power_with_the_meters_class(tmp_path):
    """With smart_meter_gen_mw (0.007: Germany's MsbG § 29 plan), PV units above 7 kW report their
    15-minute P, no Q, with a class-1 meter's σ at their rating (rural1's four units: 19-78 kW)."""
    params = ScenarioParams(grid=LV, days=1, seed=5, smart_meter_gen_mw=0.007)
    generate(params, tmp_path / "smart", choose_faults=lambda ctx: [])
    scen = read_scenario(tmp_path / "smart" / "train")
    net = scen.network()
    gens = scen.points[scen.points.element_type == "sgen"]
    assert set(gens.element) == set(net.sgen.index[net.sgen.p_mw > 0.007]) and len(gens) == 4
    assert set(gens.quantity) == {"p_mw"}
    np.testing.assert_allclose(gens.sigma, net.sgen.p_mw.loc[gens.element].to_numpy() * 0.01 / 3)
    meta = json.loads((tmp_path / "smart" / "train" / "scenario.json").read_text())
    assert meta["params"]["smart_meter_gen_mw"] == 0.007


def test_command_names_a_missing_grid_file_and_an_unknown_fault_kind(tmp_path, capsys):
    from gridverse.cli import main

    missing = tmp_path / "grid.json"
    assert main(["anomaly", "scenarios", "--grid", str(missing), "--days", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "pandapower.to_json" in err
    args = ["anomaly", "scenarios", "--grid", LV, "--days", "1", "--kinds", "stuck,meteor", "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "meteor" in err and "stuck" in err and "line_outage" in err
    assert not (tmp_path / "train").exists()


def _pv_grid(tmp_path: Path) -> str:
    """The lab's 10-bus grid (0.4 MVA, 30 kW of PV per feeder: a surplus may reach 13 × that) as JSON."""
    import pandapower as pp

    from tests.lab_grid import small_grid

    net = small_grid()
    net.sgen["type"] = "PV"
    pp.to_json(net, str(tmp_path / "grid.json"))
    return str(tmp_path / "grid.json")


def test_pv_surplus_is_labelled_only_while_the_feeder_voltage_passes_the_band(tmp_path):
    def choose(ctx) -> list[Fault]:
        head = next(h for h, sgens in ctx.feeder_pv.items() if sgens)
        params = {"feeder_head": head, "factor": 2.0, "target_vm_pu": 1.11, "max_vm_pu": 0.0}
        return [
            Fault("overvoltage", 0, 8, "bus", 0, params=dict(params)),  # 00:00-02:00: no sun, no surplus
            Fault("overvoltage", 36, 44, "bus", 0, params=params),  # 09:00-11:00 in June, train split
        ]

    result = generate(
        ScenarioParams(grid=_pv_grid(tmp_path), days=1, seed=2, start_day=170), tmp_path, choose_faults=choose
    )
    # the night's surplus never passed the band: no label, and a note says so
    assert len(result.faults) == 1 and any("past the band" in n for n in result.notes)
    fault = result.faults[0]
    assert fault.params["max_vm_pu"] >= 1.11 and fault.params["factor"] > 2.0
    scen = read_scenario(tmp_path / "train")
    assert len(scen.labels) == 1
    label = scen.labels.iloc[0]
    assert (label.type, label.element_type, label.element) == ("overvoltage", "bus", fault.element)
    # labelled: only the steps whose highest feeder voltage truly passed the band, inside the window
    first, last = fault.params["labelled_steps"]
    assert 36 <= first <= last <= 44
    assert (label.start, label.end) == (scen.telemetry.index[first], scen.telemetry.index[last])
    volts = scen.telemetry[[p for p in scen.points.index if p.endswith("v_pu")]]
    assert volts.loc[label.start : label.end].max().max() > volts.loc[: label.start].iloc[:-1].max().max() + 0.01


def test_a_pv_surplus_that_never_passes_the_band_is_left_out_of_the_data_not_left_unlabelled(tmp_path):
    """A grid event the labels cannot name must not stay in the data as an anomaly nobody labelled
    (a feeder's PV at twice its registration is something a detector rightly flags): the generator
    simulates the grid again without it and lists it in scenario.json as dropped."""

    def surplus(ctx) -> list[Fault]:
        head = next(h for h, sgens in ctx.feeder_pv.items() if sgens)
        params = {"feeder_head": head, "factor": 1.6, "max_factor": 1.6, "target_vm_pu": 1.2, "max_vm_pu": 0.0}
        return [Fault("overvoltage", 44, 52, "bus", 0, params=params)]  # 11:00-13:00 in June

    grid = ScenarioParams(grid=_pv_grid(tmp_path), days=1, seed=2, start_day=170)
    result = generate(grid, tmp_path / "surplus", choose_faults=surplus)
    generate(grid, tmp_path / "none", choose_faults=lambda ctx: [])
    assert result.faults == [] and any("simulated again" in n for n in result.notes)
    split = "train"  # steps 44-52 of 96: the 60/20/20 split puts them in train (steps 0-56)
    meta = json.loads((tmp_path / "surplus" / split / "scenario.json").read_text())
    assert [e["type"] for e in meta["dropped_events"]] == ["overvoltage"]
    assert meta["dropped_events"][0]["params"]["max_vm_pu"] < 1.1
    for name in ("train", "validation", "test"):
        with_surplus = read_scenario(tmp_path / "surplus" / name).telemetry
        without = read_scenario(tmp_path / "none" / name).telemetry
        pd.testing.assert_frame_equal(with_surplus, without)


def test_an_overheating_is_labelled_until_the_oil_has_cooled_not_only_while_the_fans_are_off(tmp_path):
    """The oil stays hot for hours after the cooling comes back (IEC 60076-7, 180-minute time
    constant): the label lasts while it is more than COOLED_K above intact cooling, and runs on into
    the next split when the failure ends at a split's edge."""
    from anomaly.scenarios.faults.overheating import COOLED_K

    grid = ScenarioParams(grid=LV, days=1, seed=5)
    failure = lambda ctx: [Fault("overheating", 30, 50, "trafo", 0, params={"rise_factor": 2.5})]  # noqa: E731
    result = generate(grid, tmp_path / "hot", choose_faults=failure)
    generate(grid, tmp_path / "cool", choose_faults=lambda ctx: [])
    fault = result.faults[0]
    assert fault.params["cooling_restored_step"] == 50 and fault.end > 56  # past the train split (0-56)
    hot = pd.concat([read_scenario(tmp_path / "hot" / s).telemetry for s in ("train", "validation", "test")])
    cool = pd.concat([read_scenario(tmp_path / "cool" / s).telemetry for s in ("train", "validation", "test")])
    excess = (hot - cool)["trafo0.temp_oil_c"].to_numpy()  # the same noise in both: the excess itself
    assert excess[fault.end] > COOLED_K and (fault.end + 1 == len(excess) or excess[fault.end + 1] <= COOLED_K)
    train, validation = (read_scenario(tmp_path / "hot" / s).labels for s in ("train", "validation"))
    assert (train.end.iloc[0], validation.start.iloc[0]) == (hot.index[56], hot.index[57])
    assert validation.end.iloc[0] == hot.index[min(fault.end, 75)]
