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
