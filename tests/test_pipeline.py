"""LabPipeline: fit on labelled scenarios, detect faults as alarm events, round trip through joblib,
and detect on a grid and point names it never saw in training."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import joblib
import pandas as pd
import pytest

from anomaly.dataset import ALARMS_COLUMNS, Scenario, read_alarms, read_scenario, write_alarms
from anomaly.evaluate import evaluate_scenario
from anomaly.pipeline import LabPipeline
from tests.lab_grid import make_scenario


def _faults(prefix: str = "", offset: int = 0) -> list[dict]:
    return [
        {"type": "stuck", "point": f"{prefix}L0.p_mw", "start": 200 + offset, "length": 12},
        {"type": "spike", "point": f"{prefix}T0.Plv", "start": 250 + offset, "length": 1, "size": 1.0},
        {"type": "dropout", "point": f"{prefix}B3.V", "start": 300 + offset, "length": 6},
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    root = tmp_path_factory.mktemp("pipe")
    out = {
        f"train{k}": read_scenario(make_scenario(root / f"t{k}", days=4, seed=10 + k, faults=_faults(offset=9 * k)))
        for k in range(2)
    }
    out["clean"] = read_scenario(make_scenario(root / "clean", days=4, seed=20))
    # another grid (three feeders) whose points carry other names
    out["other"] = read_scenario(
        make_scenario(root / "other", days=4, seed=21, feeders=3, prefix="X/", faults=_faults("X/", 5))
    )
    return out


@pytest.fixture(scope="module")
def fitted(data: dict[str, Scenario]) -> LabPipeline:
    calls: list[tuple[int, int]] = []
    model = LabPipeline(physics=False, n_estimators=30).fit(
        [data["train0"], data["train1"]], progress=lambda done, total: calls.append((done, total))
    )
    assert calls[-1][0] == calls[-1][1] and len(calls) == 3  # each scenario, then the models
    return model


def test_fit_detect_round_trip_with_joblib_gives_the_same_alarms(
    fitted: LabPipeline, data: dict[str, Scenario], tmp_path: Path
) -> None:
    alarms = fitted.detect(data["train1"])
    joblib.dump(fitted, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    again = loaded.detect(data["train1"])
    assert list(again.columns[: len(ALARMS_COLUMNS)]) == ALARMS_COLUMNS
    assert again[ALARMS_COLUMNS].equals(alarms[ALARMS_COLUMNS]) and len(alarms)
    write_alarms(tmp_path / "alarms.csv", again)
    assert len(read_alarms(tmp_path / "alarms.csv")) == len(again)
    assert loaded.get_params()["physics"] is False and loaded.get_params()["off_delay"] == fitted.off_delay


def test_each_fault_found_with_its_point_and_type_and_no_false_alarm_on_clean_data(
    fitted: LabPipeline, data: dict[str, Scenario]
) -> None:
    alarms = fitted.detect(data["train1"])
    report = evaluate_scenario(data["train1"], alarms)
    assert report.recall == 1.0 and report.false_alarms_per_day == 0.0
    for fault in _faults(offset=9):
        named = alarms[alarms.point == fault["point"]]
        assert fault["type"] in set(named.type), (fault, named)
    assert len(fitted.detect(data["clean"])) == 0


def test_detect_on_a_grid_and_points_never_seen_in_training(fitted: LabPipeline, data: dict[str, Scenario]) -> None:
    other = data["other"]
    assert not set(other.telemetry.columns) & set(data["train0"].telemetry.columns)
    alarms = fitted.detect(other)
    report = evaluate_scenario(other, alarms)
    assert report.recall == 1.0 and report.false_alarms_per_day <= 1.0
    assert {"stuck", "dropout"} <= set(alarms.type)


def test_detect_before_fit_says_what_to_do(data: dict[str, Scenario]) -> None:
    with pytest.raises(ValueError, match="not fitted; call fit"):
        LabPipeline(physics=False).detect(data["clean"])
    with pytest.raises(ValueError, match="at least one scenario"):
        LabPipeline().fit([])


def test_a_test_split_takes_its_warm_up_from_the_validation_split_before_it(
    fitted: LabPipeline, tmp_path: Path
) -> None:
    """A bias in the first hours of OUT/test is only visible against a daily profile, which the
    pipeline builds from the tail of OUT/validation (telemetry only, never its labels)."""
    make_scenario(tmp_path / "validation", days=3, seed=30, split="validation")
    bias = [{"type": "bias", "point": "L4.p_mw", "start": 16, "length": 24, "size": 0.5}]
    later = pd.Timestamp("2016-06-04", tz="UTC")
    test = read_scenario(make_scenario(tmp_path / "test", days=2, seed=31, faults=bias, start=later, split="test"))
    assert fitted.history(test) is not None and len(fitted.history(test)) == 3 * 96
    with_history = evaluate_scenario(test, fitted.detect(test))
    without = evaluate_scenario(test, copy.deepcopy(fitted).set_params(history_days=0).detect(test))
    assert with_history.recall == 1.0 and without.recall == 0.0


def test_drift_and_slow_shift_features_let_go_when_a_shift_ends() -> None:
    """When a long shift ends (a feeder re-energised, a bias repaired) the reading returns to its
    profile: the drift and slow-shift features must drop within a few samples, not hold an alarm
    over the slope and averaging windows that still look back at the shift (that tail was most of
    the lab's clean time in alarm)."""
    import numpy as np

    from anomaly.features import F, point_features

    rng = np.random.default_rng(0)
    times = pd.date_range("2016-06-01", periods=6 * 96, freq="15min", tz="UTC")
    hour = (times.hour + times.minute / 60).to_numpy()
    v = 1.0 + 0.01 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 0.001, len(times))
    v[4 * 96 : 4 * 96 + 24] -= 0.3  # six hours far below its profile, then back
    points = pd.DataFrame(
        {"element_type": ["bus"], "element": [1], "side": [""], "quantity": ["v_pu"], "unit": ["pu"], "sigma": [0.001]},
        index=["B1.V"],
    )
    feats = point_features(pd.DataFrame({"B1.V": v}, index=times), points)[:, 0]
    end = 4 * 96 + 24  # the first sample back on the profile
    assert abs(feats[4 * 96 + 5, F["slope"]]) > 10 and abs(feats[end - 1, F["z_long"]]) > 3  # during the shift
    after = feats[end + 3 : end + 16]
    assert np.abs(after[:, F["slope"]]).max() < 1 and np.abs(after[:, F["z_long"]]).max() < 1


def test_a_grid_event_the_generator_left_unlabelled_is_not_clean_training_data(data: dict[str, Scenario]) -> None:
    """A PV surplus that stayed inside the voltage band has no label, yet it moved the grid: the
    generator names it in scenario.json (`unlabelled_events`) and training leaves its hours out
    (with the margin), as it does a label's."""
    from anomaly.pipeline import _clean_mask

    clean_run = data["clean"]
    index = clean_run.telemetry.index
    start, end = index[100], index[110]
    event = {"type": "overvoltage", "start": start.isoformat(), "end": end.isoformat(), "element_type": "bus"}
    scenario = dataclasses.replace(clean_run, meta={**clean_run.meta, "unlabelled_events": [event]})
    margin = pd.Timedelta(hours=1)
    clean = _clean_mask(scenario, margin)
    inside = (index >= start - margin) & (index <= end + margin)
    assert not clean[inside].any()
    assert clean[~inside].all()


def test_flows_that_leave_their_profile_together_are_the_grid_moving_not_a_lying_meter(
    fitted: LabPipeline, data: dict[str, Scenario]
) -> None:
    """Every transformer and feeder-head flow 60 % above its usual level for 8 hours (a hot
    afternoon, clouds over the PV): with `moving_together` (3) none of them is blamed; the same
    rise on one feeder head alone still is. Without the rule the grid's move raises alarms, so
    the rule is what keeps them quiet."""
    clean = data["clean"]
    flows = [c for c in clean.telemetry.columns if clean.points.loc[c, "quantity"] in ("p_mw", "q_mvar", "i_ka")]
    assert len(flows) >= 3
    rows = slice(3 * 96 + 40, 3 * 96 + 72)  # the fourth day, 10:00-18:00

    def raised(columns: list[str]) -> Scenario:
        telemetry = clean.telemetry.copy()
        telemetry.iloc[rows, [telemetry.columns.get_loc(c) for c in columns]] *= 1.6
        return dataclasses.replace(clean, telemetry=telemetry)

    everything = raised(flows)
    quiet = fitted.detect(everything)
    assert not set(quiet.point) & set(flows), quiet
    without_rule = copy.deepcopy(fitted).set_params(moving_together=0)
    assert set(without_rule.detect(everything).point) & set(flows), "the grid's move alone raises flow alarms"
    head = next(c for c in flows if c.startswith("L") and c.endswith(".p_mw"))
    alone = fitted.detect(raised([head]))
    line = int(clean.points.loc[head, "element"])
    blamed = alone[(alone.element_type == "line") & (alone.element.astype(int) == line)]
    assert len(blamed), f"a rise on {head} alone is that line end's meter: {alone}"
