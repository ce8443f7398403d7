"""Live scoring: the demo site's points, read back from a real embedded historian, scored by the
deployed lab model (here the shipped default) as the detector service does each cycle.

The telemetry is synthetic but shaped like the demo's: every configured point, one poll a second,
slow ramps, meter noise, currents quantised at 0.1 A as the feeder IEDs' u16 registers give them
(one feeder lightly loaded, so its current repeats for many cycles, as in the demo)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from anomaly.alarms import AlarmBook
from anomaly.live import MODEL_RULE, LiveScorer, live_points
from anomaly.service import Detectors
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Point, Quality, Source
from gridverse.settings import load_settings
from tests.helpers import config_dir

STEP_S = 2.0  # the demo's detector cycle
T0 = 1_700_000_000 * 10**9


def demo_net() -> SimpleNamespace:
    """What the mapping reads of the demo's grid (SimBench 1-MV-rural--1-sw): its voltage levels and
    element indices, as a stand-in (loading SimBench takes 10-40 s on this machine)."""
    buses = pd.DataFrame({"vn_kv": [110.0] + [20.0] * 98})
    lines = pd.DataFrame({"from_bus": np.arange(1, 100) % 99, "to_bus": np.arange(2, 101) % 99})
    trafos = pd.DataFrame({"hv_bus": [0, 0], "lv_bus": [1, 1]})
    return SimpleNamespace(bus=buses, line=lines, trafo=trafos)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("live")

    def mutate(doc: dict) -> None:
        doc["anomaly"]["models_dir"] = str(tmp / "models")  # nothing deployed: the shipped default

    return load_settings(config_dir(tmp, mutate)), demo_net()


def _truth(p, k: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SI values of one point at poll seconds k: a slow ramp and meter noise, quantised like its register."""
    base = {"v_pu": None, "p_mw": 0.8e6, "q_mvar": 0.2e6, "i_ka": 60.0, "temp_oil_c": 45.0}[p.quantity]
    if p.quantity == "v_pu":
        base = 1.02 / p.factor
    if p.device == "F2" and p.quantity == "i_ka":
        base = 2.0  # a lightly loaded feeder: 2 A read at 0.1 A steps
    value = base * (1.0 + 0.02 * np.sin(2 * np.pi * k / 900.0))
    noise = (p.accuracy_class or 0.3) / 300.0 * abs(base)
    value = value + rng.normal(0.0, noise, len(k))
    if p.resolution:
        step = p.resolution / p.factor
        value = np.round(value / step) * step
    return value


def fill(historian, settings, net, seconds: int, *, fault=None, seed: int = 0) -> None:
    """Poll records of every live point, one a second over `seconds` s from T0; `fault(point, k,
    values)` may change the values of one point (NaN: no reading that second)."""
    rng = np.random.default_rng(seed)
    k = np.arange(seconds)
    records = []
    for p in live_points(settings, net):
        values = _truth(p, k, rng)
        if fault is not None:
            values = fault(p, k, values)
        source = Source.MQTT if p.quantity == "temp_oil_c" else Source.MODBUS
        for ki, v in zip(k, values, strict=True):
            if np.isnan(v):
                continue  # no reading this second (a late or lost poll)
            point = Point(settings.site.name, p.substation, "", p.device, p.point, source, T0 + int(ki * 1e9), float(v))
            records.append(point.to_record())
    historian.write(records)


def scorer(settings, historian, net) -> LiveScorer:
    return LiveScorer(settings, historian, net=net, step_s=STEP_S)


def at(seconds: float) -> int:
    return T0 + int(seconds * 1e9)


def test_every_configured_analogue_point_maps_onto_an_interchange_quantity(site) -> None:
    settings, net = site
    points = {p.name: p for p in live_points(settings, net)}
    assert points["T2-oil/YPTR1.TmpOil"].quantity == "temp_oil_c"
    assert (points["T2-oil/YPTR1.TmpOil"].element_type, points["T2-oil/YPTR1.TmpOil"].element) == ("trafo", 1)
    f1 = points["F1/MMXU1.A"]
    assert (f1.element_type, f1.element, f1.side, f1.quantity, f1.factor) == ("line", 0, "from", "i_ka", 1e-3)
    assert f1.resolution == pytest.approx(1e-4)  # 0.1 A in kA
    v = points["RTU08/MMXU1.PPV"]
    assert (v.element_type, v.element, v.quantity) == ("bus", 8, "v_pu")
    assert v.factor == pytest.approx(1.0 / 20e3)
    t1_v = points["T1/MMXU1.PPV"]  # a transformer's busbar voltage is its LV bus's
    assert (t1_v.element_type, t1_v.element, t1_v.quantity) == ("bus", 1, "v_pu")
    assert not any(name.endswith(("XCBR1.Pos", "YLTC1.TapPos", "MMET1.EnvTmp")) for name in points)


def test_clean_data_raises_no_model_alarm_once_warmed_up(site, tmp_path: Path) -> None:
    settings, net = site
    historian = EmbeddedHistorian(tmp_path / "h.db")
    fill(historian, settings, net, 300)
    live = scorer(settings, historian, net)
    for seconds in (120, 200, 300):
        assert live.conditions(at(seconds)) == []
    assert live.status.state == "scoring", live.status.message
    assert live.status.scoring == live.status.points > 40
    assert live.status.model == "default/v1"


def test_a_stuck_meter_raises_a_model_alarm_naming_it(site, tmp_path: Path) -> None:
    settings, net = site
    historian = EmbeddedHistorian(tmp_path / "h.db")

    def stuck(p, k, values):
        if p.name == "F3/MMXU1.TotW":
            values = values.copy()
            values[k >= 200] = values[200]
        return values

    fill(historian, settings, net, 300, fault=stuck)
    live = scorer(settings, historian, net)
    assert live.conditions(at(196)) == []  # before the fault
    alarms = live.conditions(at(240))
    assert [(a.rule, a.device, a.point) for a in alarms] == [(MODEL_RULE, "F3", "MMXU1.TotW")]
    assert alarms[0].message.startswith("stuck on F3/MMXU1.TotW") and alarms[0].value >= 1.0
    assert "top contributing: F3/MMXU1.TotW" in alarms[0].message


def test_a_stuck_alarm_does_not_chatter_when_a_poll_is_lost(site, tmp_path: Path) -> None:
    """A cycle without a reading neither ends the run of equal values nor teaches the point that
    standing still is normal: one alarm that stays, not a raise-clear-raise."""
    settings, net = site
    historian = EmbeddedHistorian(tmp_path / "h.db")

    def stuck_with_gaps(p, k, values):
        if p.name == "F3/MMXU1.TotW":
            values = values.copy()
            values[k >= 200] = values[200]
            values[(k >= 230) & (k < 232)] = np.nan  # one cycle without a reading
            values[(k >= 250) & (k < 252)] = np.nan
        return values

    fill(historian, settings, net, 300, fault=stuck_with_gaps)
    live = scorer(settings, historian, net)
    for seconds in range(220, 300, 4):
        alarms = live.conditions(at(seconds))
        assert [(a.device, a.point) for a in alarms] == [("F3", "MMXU1.TotW")], seconds
        assert alarms[0].message.startswith("stuck on F3/MMXU1.TotW"), alarms[0].message


def test_a_value_standing_still_for_a_few_seconds_is_no_stuck_alarm(site, tmp_path: Path) -> None:
    """Two polls 2 s apart may read a device that has not refreshed its value: 4 s of equal
    readings on a point that otherwise always moves is no evidence yet."""
    settings, net = site
    historian = EmbeddedHistorian(tmp_path / "h.db")

    def pause(p, k, values):
        if p.name == "RTU33/MMXU1.TotVAr":
            values = values.copy()
            values[(k >= 200) & (k < 206)] = values[200]  # three cycles read the same value
        return values

    fill(historian, settings, net, 260, fault=pause)
    live = scorer(settings, historian, net)
    assert live.conditions(at(210)) == [] and live.conditions(at(214)) == []


def test_a_spike_raises_a_model_alarm_naming_the_point_and_clears(site, tmp_path: Path) -> None:
    settings, net = site
    historian = EmbeddedHistorian(tmp_path / "h.db")

    def spike(p, k, values):
        if p.name == "RTU45/MMXU1.PPV":
            values = values.copy()
            values[(k >= 200) & (k < 204)] *= 0.9  # −10 % for four seconds (25 σ of the twin, inside 0.9-1.1 pu)
        return values

    fill(historian, settings, net, 300, fault=spike)
    live = scorer(settings, historian, net)
    alarms = live.conditions(at(208))
    assert [(a.device, a.point) for a in alarms] == [("RTU45", "MMXU1.PPV")]
    assert alarms[0].message.startswith("spike on RTU45/MMXU1.PPV")
    assert live.conditions(at(260)) == []  # the model's off-delay has passed: the condition is gone


def test_warm_up_says_so_and_does_not_alarm_even_on_a_wild_first_value(site, tmp_path: Path) -> None:
    settings, net = site
    historian = EmbeddedHistorian(tmp_path / "h.db")

    def wild_start(p, k, values):
        if p.name == "T2-oil/YPTR1.TmpOil":
            values = values.copy()
            values[k < 4] += 500.0
        return values

    fill(historian, settings, net, 60, fault=wild_start)
    live = scorer(settings, historian, net)
    assert live.conditions(at(12)) == []
    assert live.status.state == "warming_up"
    assert "warming up" in live.status.message and f"of {settings.anomaly.model_warmup} samples" in live.status.message
    assert live.conditions(at(40)) == []  # past the warm-up: the first samples are no evidence
    assert live.status.state == "scoring"


def test_the_detector_service_stores_the_model_alarm_in_the_historian(site, tmp_path: Path) -> None:
    settings, net = site
    historian = EmbeddedHistorian(tmp_path / "h.db")

    def stuck(p, k, values):
        return np.full_like(values, values[0]) if p.name == "T1/MMXU1.TotVAr" else values

    fill(historian, settings, net, 120, fault=stuck)
    book = AlarmBook.of(settings, historian, None)
    detectors = Detectors(settings, historian, book)
    detectors.model = scorer(settings, historian, net)
    detectors.model.conditions(at(100))  # what the previous cycles saw
    raised = book.update(detectors.model.conditions(at(120)), at(120))
    assert [(a.rule, a.device, a.point) for a in raised] == [(MODEL_RULE, "T1", "MMXU1.TotVAr")]
    stored = historian.query("alarm", tags={"rule": MODEL_RULE})
    assert [(r.tags["device"], r.tags["point"], r.fields["active"]) for r in stored] == [("T1", "MMXU1.TotVAr", 1)]
    assert "stuck" in str(stored[0].fields["message"])


def test_model_scoring_off_in_the_configuration_scores_nothing(site, tmp_path: Path) -> None:
    settings, net = site
    off = settings.model_copy(update={"anomaly": settings.anomaly.model_copy(update={"model_enabled": False})})
    live = LiveScorer(off, EmbeddedHistorian(tmp_path / "h.db"), net=net)
    assert live.conditions(at(100)) == [] and live.status.state == "disabled"


def test_an_unknown_model_name_is_reported_not_raised(site, tmp_path: Path) -> None:
    settings, net = site
    named = settings.model_copy(update={"anomaly": settings.anomaly.model_copy(update={"model": "nope"})})
    live = LiveScorer(named, EmbeddedHistorian(tmp_path / "h.db"), net=net)
    assert live.conditions(at(100)) == []
    assert live.status.state == "failed" and "'nope' is not in the registry" in live.status.message


def test_a_bad_reading_is_a_missing_sample_not_a_value(site, tmp_path: Path) -> None:
    settings, net = site
    historian = EmbeddedHistorian(tmp_path / "h.db")
    fill(historian, settings, net, 40)
    bad = Point(settings.site.name, "primary", "", "F1", "MMXU1.A", Source.MODBUS, at(41), None, Quality.COMM_FAIL)
    historian.write([bad.to_record()])
    live = scorer(settings, historian, net)
    live.conditions(at(44))
    telemetry, _ = live.frame(at(44))  # its last row: the cycle of the bad reading
    assert np.isnan(telemetry["F1/MMXU1.A"].iloc[-1]) and not np.isnan(telemetry["F1/MMXU1.A"].iloc[-2])


def test_a_feeder_ramping_from_the_first_cycles_is_judged_on_its_own_steps_not_the_meters_sigma() -> None:
    """A live window of 16 cycles (above the warm-up, before an eighth of the 150-cycle window has
    passed): the step scale comes from the window's own steps from the first rows on, so a healthy
    ramp of 2 kW a cycle on a meter of σ 0.1 kW is no spike (held for an eighth of the window, the
    first rows' scale was the meter's σ, and this ramp scored z ≈ 20)."""
    from anomaly.dataset import Scenario
    from anomaly.features import F
    from anomaly.live import live_features

    rng = np.random.default_rng(3)
    n = 16
    times = pd.date_range("2026-12-03", periods=n, freq="2s", tz="UTC")
    ramp = 1.0 + 0.002 * np.arange(n) * (1 + 0.3 * rng.standard_normal(n))  # MW, 2 kW a cycle, uneven
    telemetry = pd.DataFrame({"F6/MMXU1.TotW": ramp}, index=times)
    points = pd.DataFrame(
        {
            "element_type": ["line"],
            "element": [6],
            "side": ["from"],
            "quantity": ["p_mw"],
            "unit": ["MW"],
            "sigma": [1e-4],
        },
        index=pd.Index(["F6/MMXU1.TotW"], name="point"),
    )
    scenario = Scenario(Path("live"), points, telemetry, None, {"live": True, "step_s": 2.0})
    z = live_features(scenario, window=150)[:, 0, F["z_recent"]]
    assert np.abs(z[10:]).max() < 5.0, z  # the shipped model's spike threshold is about 9.7
