"""The lab's detectors: scikit-learn's outlier-estimator contract, and each detector flags a
hand-injected fault of its kind on a small scenario while staying quiet on clean data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from anomaly.dataset import Scenario, read_scenario
from anomaly.detectors import detector_classes
from anomaly.detectors.lab.learned import LearnedDetector
from anomaly.detectors.lab.physics import PhysicsDetector
from anomaly.detectors.lab.temporal import TemporalDetector
from anomaly.features import FEATURES, F, point_features
from tests.lab_grid import make_scenario

FAULTS = [
    {"type": "stuck", "point": "L0.p_mw", "start": 230, "length": 12},
    {"type": "spike", "point": "T0.Plv", "start": 250, "length": 1, "size": 1.0},
    {"type": "dropout", "point": "B3.V", "start": 260, "length": 6},
    {"type": "drift", "point": "B6.V", "start": 300, "length": 40, "size": 0.06},
]


@parametrize_with_checks([TemporalDetector(), LearnedDetector(n_estimators=10)])
def test_estimator_contract(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return read_scenario(make_scenario(tmp_path_factory.mktemp("lab") / "faulty", days=4, seed=3, faults=FAULTS))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return read_scenario(make_scenario(tmp_path_factory.mktemp("lab") / "clean", days=4, seed=4))


def _rows(feats: np.ndarray, scenario: Scenario, point: str, start: int, length: int) -> np.ndarray:
    col = list(scenario.telemetry.columns).index(point)
    return feats[start : start + length, col]


def test_the_registry_of_live_rules_is_unchanged_by_the_lab_package() -> None:
    assert set(detector_classes()) == {"limit", "residual", "violation", "comm_fail", "stuck"}


def test_temporal_detector_flags_each_fault_kind_and_is_quiet_on_clean_data(faulty: Scenario, clean: Scenario) -> None:
    warm = 96  # the first day has no daily profile yet
    train = point_features(clean.telemetry, clean.points)[warm:].reshape(-1, len(FEATURES))
    detector = TemporalDetector(threshold=5.0, contamination="auto").fit(train)
    test_clean = point_features(clean.telemetry, clean.points)[warm:].reshape(-1, len(FEATURES))
    assert (detector.predict(test_clean) == -1).mean() < 0.002
    feats = point_features(faulty.telemetry, faulty.points)
    for fault in FAULTS:
        rows = _rows(feats, faulty, fault["point"], fault["start"], fault["length"] + 1)
        flagged = detector.predict(rows) == -1
        assert flagged.any(), f"{fault['type']} on {fault['point']} not flagged"
    # the feature that flags it is the one of its kind
    z = detector.robust_z(_rows(feats, faulty, "L0.p_mw", 230, 12))
    assert z[:, F["flat_run"]].max() >= 8
    z = detector.robust_z(_rows(feats, faulty, "B3.V", 260, 6))
    assert z[:, F["missing_run"]].max() >= 6
    z = detector.robust_z(_rows(feats, faulty, "T0.Plv", 250, 1))
    assert z[0, F["z_recent"]] > 8


def test_learned_detector_scores_faults_below_clean_rows(faulty: Scenario, clean: Scenario) -> None:
    """The forest sees faults that move features which vary in clean data (spike, drift); run-length
    features (stuck, dropout) are constant 0 in clean data, so no tree splits on them: those are the
    temporal detector's job, which is why the pipeline keeps both."""
    # daily features from the second day on (min_days=1): these scenarios are four days long
    train = point_features(clean.telemetry, clean.points, min_days=1)[96:].reshape(-1, len(FEATURES))
    forest = LearnedDetector(n_estimators=50, contamination=0.001).fit(train)
    feats = point_features(faulty.telemetry, faulty.points, min_days=1)
    clean_feats = point_features(clean.telemetry, clean.points, min_days=1)
    clean_scores = forest.score_samples(clean_feats[96:].reshape(-1, len(FEATURES)))
    for fault in FAULTS[1:2] + FAULTS[3:]:
        rows = _rows(feats, faulty, fault["point"], fault["start"], fault["length"])
        assert forest.score_samples(rows).min() < np.quantile(clean_scores, 0.01), fault["type"]  # top 1 %
    assert forest.predict(rows).min() == -1 and set(np.unique(forest.predict(train[:500]))) <= {-1, 1}


def test_physics_detector_contract_parts_that_apply(clean: Scenario) -> None:
    """X is telemetry whose columns are the points of a network, so scikit-learn's generic checks
    (random matrices of any shape) cannot apply; parameters, clone, fit→self and signs do."""
    detector = PhysicsDetector(threshold=5.0)
    assert detector.get_params()["threshold"] == 5.0 and "network" in detector.get_params()
    assert clone(detector.set_params(threshold=4.5)).threshold == 4.5
    with pytest.raises(ValueError, match="needs network="):
        detector.fit(clean.telemetry)
    fitted = PhysicsDetector(network=clean.network(), points=clean.points)
    assert fitted.fit(clean.telemetry) is fitted and fitted.n_features_in_ == clean.telemetry.shape[1]
    assert not hasattr(PhysicsDetector(), "offset_")  # no logic in __init__


def test_physics_detector_flags_a_gross_error_and_names_it_and_is_quiet_on_clean_steps(clean: Scenario) -> None:
    X = clean.telemetry.iloc[100:108].copy()  # 8 steps: the estimator runs once per step
    detector = PhysicsDetector(network=clean.network(), points=clean.points).fit(X)
    assert (detector.predict(X) == 1).all()
    X.iloc[5, X.columns.get_loc("T0.Plv")] += 40 * clean.points.at["T0.Plv", "sigma"]
    resid, steps = detector.residual_frame(X)
    assert steps.bad_point.iloc[5] == "T0.Plv" and steps.chi2_ratio.iloc[5] > 1
    assert abs(resid.iloc[5]["T0.Plv"]) > 10 and (steps.bad_point.drop(X.index[5]) == "").all()
    score = detector.score_samples(X)
    assert score[5] < detector.offset_ < 0 and (score[[0, 1, 2, 3, 4, 6, 7]] > detector.offset_).all()


def test_features_do_not_depend_on_column_order(clean: Scenario) -> None:
    cols = list(clean.telemetry.columns)
    a = point_features(clean.telemetry, clean.points)
    b = point_features(clean.telemetry[cols[::-1]], clean.points)
    assert np.allclose(a, b[:, ::-1], equal_nan=True)
    assert isinstance(clean.telemetry.index, pd.DatetimeIndex)
    assert a.shape == (len(clean.telemetry), len(cols), len(FEATURES))
    assert Path(clean.path).exists()


# ---------------------------------------------------------------- the feeder detector


def _three_feeder_grid() -> tuple[object, pd.DataFrame]:
    """An LV busbar with three metered feeders of two buses each, PV of 30/60/20 kW at their ends."""
    import pandapower as pp

    net = pp.create_empty_network()
    mv, lv = pp.create_bus(net, 20.0), pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, mv)
    pp.create_transformer(net, mv, lv, "0.4 MVA 20/0.4 kV")
    rows = []
    for f, kw in enumerate((30, 60, 20)):
        a, b = pp.create_bus(net, 0.4), pp.create_bus(net, 0.4)
        head = pp.create_line(net, lv, a, 0.1, "NAYY 4x150 SE")
        pp.create_line(net, a, b, 0.1, "NAYY 4x150 SE")
        pp.create_sgen(net, b, p_mw=kw / 1000, type="PV")
        rows.append((f"F{f}.P", "line", head, "from", "p_mw", "MW", 0.001))
    rows.append(("T0.P", "trafo", 0, "lv", "p_mw", "MW", 0.002))
    points = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit", "sigma"])
    return net, points.set_index("point")


def _feeder_telemetry(points: pd.DataFrame, pv_kw: np.ndarray, days: int = 12, seed: int = 3) -> pd.DataFrame:
    """Net load per feeder: households (a daily shape + noise) minus PV, every unit under the same
    sky (clear, or cloudy on days 6 and 9, when every unit makes a third)."""
    rng = np.random.default_rng(seed)
    n = 96 * days
    hour = (np.arange(n) % 96) / 4.0
    sun = np.clip(np.sin((hour - 5.0) / 14.0 * np.pi), 0.0, None)
    sky = np.ones(n)
    for d in (6, 9):
        sky[d * 96 : (d + 1) * 96] = 0.33
    load = 0.015 + 0.01 * np.exp(-(((hour - 19.0) / 2.5) ** 2))
    p = load[:, None] + rng.normal(0, 0.0015, (n, 3)) - (sun * sky)[:, None] * pv_kw[None, :] / 1000
    frame = pd.DataFrame(
        p, index=pd.date_range(START_FEEDER, periods=n, freq="15min"), columns=["F0.P", "F1.P", "F2.P"]
    )
    frame["T0.P"] = -frame.sum(axis=1)
    return frame


START_FEEDER = pd.Timestamp("2016-06-01", tz="UTC")


def test_feeder_detector_finds_a_pv_trip_and_a_theft_and_ignores_a_cloudy_day() -> None:
    from anomaly.detectors.lab.feeder import FEEDER_SCORES, feeder_heads, feeder_pv, feeder_scores

    net, points = _three_feeder_grid()
    heads = feeder_heads(points, list(points.index))
    assert heads == ["F0.P", "F1.P", "F2.P"]  # the transformer is no feeder head
    pv = feeder_pv(net, points, heads)
    np.testing.assert_allclose(pv, [0.03, 0.06, 0.02])
    telemetry = _feeder_telemetry(points, pv * 1000)
    trip = slice(8 * 96 + 40, 8 * 96 + 56)  # day 8, 10:00-14:00: F1's 60 kW unit off
    hour = (np.arange(len(telemetry)) % 96) / 4.0
    sun = np.clip(np.sin((hour - 5.0) / 14.0 * np.pi), 0.0, None)
    telemetry.iloc[trip, 1] += sun[trip] * 0.06
    theft = slice(10 * 96, 12 * 96)  # days 10-11: 5 kW more on F2, day and night
    telemetry.iloc[theft, 2] += 0.005
    got, scores = feeder_scores(telemetry, points, net)
    assert got == heads
    short, long = scores[..., FEEDER_SCORES.index("feeder_short")], scores[..., FEEDER_SCORES.index("feeder_long")]
    quiet = np.ones(len(telemetry), dtype=bool)
    quiet[trip.start : trip.stop + 96] = False  # the slow score remembers the trip for a day
    quiet[theft] = False
    assert short[trip, 1].max() > 1.5 * short[quiet, :].max(), "the trip stands out on its own feeder"
    assert short[trip, [0, 2]].max() < short[trip, 1].max() / 2, "the other feeders do not see it"
    cloudy = slice(9 * 96, 10 * 96)  # the whole fleet at a third: a weather day, no alarm anywhere
    assert short[cloudy].max() < short[trip, 1].max() / 2
    assert long[theft, 2].max() > 2 * long[quiet, :].max(), "the theft's slow shift stands out on F2"


# ---------------------------------------------------------------- the peer detector


def test_peer_detector_names_the_biased_voltage_and_the_drifting_transformer_side() -> None:
    """Five bus voltages riding on one upstream voltage that swings far more than a bias (day to
    day the MV voltage moves by ±2 %), and a transformer's P in at HV and out at LV: a 6σ bias on
    one bus and a drift on the LV side stand out against their peers and nowhere else."""
    from anomaly.detectors.lab.peers import peer_scores

    rng = np.random.default_rng(5)
    n = 96 * 10
    index = pd.date_range(START_FEEDER, periods=n, freq="15min")
    hour = (np.arange(n) % 96) / 4.0
    upstream = 1.0 + 0.02 * np.sin(np.arange(n) / 96 * 2 * np.pi / 3.7) + 0.01 * np.sin(hour / 24 * 2 * np.pi)
    rows, data = [], {}
    for b in range(5):
        name = f"B{b}.V"
        rows.append((name, "bus", b, "", "v_pu", "pu", 0.002))
        data[name] = upstream - 0.003 * b * (1 + np.sin(hour / 24 * 2 * np.pi)) + rng.normal(0, 0.002, n)
    load = 0.1 + 0.05 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 0.01, n)  # the grid moves a lot
    for side, sign in (("hv", 1.0), ("lv", -0.98)):
        rows.append((f"T0.P{side}", "trafo", 0, side, "p_mw", "MW", 0.001))
        data[f"T0.P{side}"] = sign * load + rng.normal(0, 0.001, n)
    points = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit", "sigma"])
    points = points.set_index("point")
    telemetry = pd.DataFrame(data, index=index)
    bias = slice(6 * 96, 7 * 96)
    telemetry.iloc[bias, 2] += 6 * 0.002  # B2.V reads 1.2 % high for a day: inside the day-to-day swing
    drift = slice(8 * 96, 9 * 96)
    telemetry.iloc[drift, telemetry.columns.get_loc("T0.Plv")] += np.linspace(0, 0.02, 96)  # 20 σ over a day
    z = np.abs(peer_scores(telemetry, points))
    quiet = np.ones(n, dtype=bool)
    quiet[bias.start : bias.stop + 4] = False
    quiet[drift.start : drift.stop + 4] = False
    quiet[: 3 * 96] = False  # no profile yet
    col = {c: k for k, c in enumerate(telemetry.columns)}
    noise = z[quiet].max()
    assert z[bias, col["B2.V"]].max() > 2 * noise
    others = [col[c] for c in ("B0.V", "B1.V", "B3.V", "B4.V")]
    assert z[bias][:, others].max() < z[bias, col["B2.V"]].max() / 2, "the other buses are not blamed"
    assert z[drift, col["T0.Plv"]].max() > 2 * noise
    assert np.abs(telemetry.iloc[bias, 2] - telemetry.iloc[bias, 1]).max() < 0.03  # the bias hides in the swing


def test_peer_detector_puts_a_lying_power_meter_on_its_line_ends_current() -> None:
    """P, Q and I at one feeder head: the load swings by ±50 % day to day, so a 10 σ bias on P
    hides in P's own history, but I no longer matches √(P² + Q²): the line's current point, the
    same element as the faulty meter, stands out."""
    from anomaly.detectors.lab.peers import peer_kinds, peer_scores

    rng = np.random.default_rng(9)
    n = 96 * 10
    index = pd.date_range(START_FEEDER, periods=n, freq="15min")
    hour = (np.arange(n) % 96) / 4.0
    day_level = np.repeat(rng.uniform(0.5, 1.5, 10), 96)
    p = 0.06 * day_level * (0.6 + 0.4 * np.sin(hour / 24 * 2 * np.pi)) + rng.normal(0, 0.001, n)
    q = 0.3 * p + rng.normal(0, 0.001, n)
    i = np.hypot(p, q) / (np.sqrt(3) * 0.4 * rng.uniform(0.99, 1.01, n)) + rng.normal(0, 0.002, n)
    rows = [
        ("L.P", "line", 0, "from", "p_mw", "MW", 0.001),
        ("L.Q", "line", 0, "from", "q_mvar", "Mvar", 0.001),
        ("L.I", "line", 0, "from", "i_ka", "kA", 0.002),
    ]
    points = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit", "sigma"])
    points = points.set_index("point")
    telemetry = pd.DataFrame({"L.P": p, "L.Q": q, "L.I": i}, index=index)
    bias = slice(7 * 96, 8 * 96)
    telemetry.iloc[bias, 0] += 10 * 0.001
    assert list(peer_kinds(points, list(points.index))) == ["", "", "current"]
    z = np.abs(peer_scores(telemetry, points))
    quiet = np.ones(n, dtype=bool)
    quiet[bias.start : bias.stop + 4] = False
    quiet[: 3 * 96] = False
    assert z[bias, 2].max() > 2 * z[quiet, 2].max()
    assert z[:, :2].max() == 0.0  # P and Q have no peers of their own: the current speaks for the line end


def test_peer_detector_finds_a_tripped_pv_unit_against_the_others_sky() -> None:
    """Four smart-metered PV units of different sizes under one sky (clouds move all of them day to
    day and hour to hour), one facing west (it runs behind the others every evening): one trips
    for three hours at midday on a cloudy day, when its output is no lower than a sunny day's
    dawn. Its share of its usual peak falls away from the others' median: it stands out, the
    others do not, and nights score nothing."""
    from anomaly.detectors.lab.peers import peer_kinds, peer_scores

    rng = np.random.default_rng(11)
    days, n = 10, 96 * 10
    index = pd.date_range(START_FEEDER, periods=n, freq="15min")
    hour = (np.arange(n) % 96) / 4.0
    sun = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    sky = np.repeat(rng.uniform(0.3, 1.0, days), 96) * np.clip(1 + rng.normal(0, 0.15, n), 0.2, 1.3)
    sizes = [0.010, 0.022, 0.028, 0.040]
    rows, data = [], {}
    for k, size in enumerate(sizes):
        name = f"sgen{k}.p_mw"
        rows.append((name, "sgen", k, "", "p_mw", "MW", size / 300))
        facing = np.clip(np.sin((hour - 6 - (1.0 if k == 3 else 0.0)) / 12 * np.pi), 0, None)  # unit 3: west
        data[name] = size * 0.8 * facing * sky * rng.uniform(0.95, 1.05, n) + rng.normal(0, size / 300, n)
    points = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit", "sigma"])
    points = points.set_index("point")
    telemetry = pd.DataFrame(data, index=index)
    cloudy = int(np.argmin(sky.reshape(days, 96)[7:, 48])) + 7  # the cloudiest midday after the warm-up
    trip = slice(cloudy * 96 + 44, cloudy * 96 + 56)  # 11:00-14:00
    telemetry.iloc[trip, 1] = np.abs(rng.normal(0, sizes[1] / 300, 12))
    assert list(peer_kinds(points, list(points.index))) == ["generator"] * 4
    z = np.abs(peer_scores(telemetry, points))
    quiet = np.ones(n, dtype=bool)
    quiet[trip.start : trip.stop + 4] = False
    quiet[: 6 * 96] = False  # a usual peak (3 days), then the usual difference to the others (3 more)
    assert z[trip, 1].max() > 2 * z[quiet].max(), "the tripped unit stands out"
    assert z[trip][:, [0, 2, 3]].max() < z[trip, 1].max() / 2, "the units still producing are not blamed"
    assert z[sun == 0].max() == 0.0, "no comparison at night"


def _two_skies(seed: int, days: int = 10) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Six smart-metered PV units in two places with their own weather (SimBench gives one grid's
    units the profiles of different sites): units 0-2 under sky A, 3-5 under sky B."""
    rng = np.random.default_rng(seed)
    n = 96 * days
    index = pd.date_range(START_FEEDER, periods=n, freq="15min")
    hour = (np.arange(n) % 96) / 4.0
    sun = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    skies = [np.repeat(rng.uniform(0.2, 1.0, days), 96) * np.clip(1 + rng.normal(0, 0.3, n), 0.1, 1.4) for _ in "AB"]
    rows, data = [], {}
    for k in range(6):
        size = 0.01 + 0.004 * k
        name = f"sgen{k}.p_mw"
        rows.append((name, "sgen", k, "", "p_mw", "MW", size / 300))
        data[name] = size * 0.8 * sun * skies[k // 3] * rng.uniform(0.97, 1.03, n) + rng.normal(0, size / 300, n)
    points = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit", "sigma"])
    return pd.DataFrame(data, index=index), points.set_index("point"), sun


def test_peer_detector_compares_a_pv_unit_with_the_units_under_its_own_sky() -> None:
    """Under two skies, a unit is compared with the two units whose output followed its own on
    the preceding days (its sky), not with the median of all: clouds over one place are no fault,
    and a trip stands far above them."""
    from anomaly.detectors.lab import peers

    telemetry, points, sun = _two_skies(5)
    n = len(telemetry)
    z = np.abs(peers.peer_scores(telemetry, points))
    trip = slice(8 * 96 + 44, 8 * 96 + 56)  # day 8, 11:00-14:00
    tripped = telemetry.copy()
    tripped.iloc[trip, 4] = np.abs(np.random.default_rng(1).normal(0, 0.026 / 300, 12))
    zt = np.abs(peers.peer_scores(tripped, points))
    settled = np.arange(n) >= 6 * 96
    clean_max = z[settled].max()
    assert zt[trip, 4].max() > 3 * clean_max, "the trip stands out against the clouds of two places"
    assert zt[trip, 4].max() >= 4  # the least threshold the pipeline gives a generator (its `peer_generator` floor)
    # the peers chosen are the unit's own sky
    share = np.where(sun[:, None] > 0.1, telemetry.to_numpy() / telemetry.max().to_numpy(), np.nan)
    chosen = peers._sky_peers(share, 96, 7, 3)[0][8]
    assert [sorted(int(j) for j in c) for c in chosen] == [[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]]


def test_a_pv_meter_that_lies_at_night_is_not_taken_for_sunshine() -> None:
    """A biased PV meter reads a steady kW at night: its own reading must not make its night a
    day (which would hand the meter to the peers, who compare in daylight only)."""
    from anomaly.detectors.lab.peers import generator_sun_up

    telemetry, points, sun = _two_skies(6)
    biased = telemetry.copy()
    night = slice(8 * 96 + 4, 8 * 96 + 20)  # day 8, 01:00-05:00
    biased.iloc[night, 2] += 0.002  # 2 kW on a 18 kW unit: 7 % of its rating
    up = generator_sun_up(biased, points)
    assert not up[night, 2].any(), "the biased meter's night stays night"
    assert up[(sun > 0.3), 2].all(), "and its days are days"
    feats = point_features(biased, points)
    assert np.abs(feats[night, 2, F["z_daily"]]).max() > 8, "so its own profile shows the bias"
