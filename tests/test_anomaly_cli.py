"""`gridverse anomaly train|detect|evaluate|models|deploy` as a user runs them: the JSON last line,
the registry round trip, and one clear line with exit code 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from anomaly.dataset import ALARMS_COLUMNS, read_alarms, write_scenario
from anomaly.registry import ModelRegistry
from gridverse.cli import main

START = pd.Timestamp("2016-06-01", tz="UTC")


class JumpModel:
    """A stand-in for a fitted pipeline: an alarm on each point whose value jumps more than `k` σ."""

    def __init__(self, k: float = 6.0) -> None:
        self.k = k

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"k": self.k}

    def detect(self, scenario: Any) -> pd.DataFrame:
        rows = []
        for point, column in scenario.telemetry.items():
            sigma = float(scenario.points.at[point, "sigma"])
            jump = (column - column.median()).abs() > self.k * sigma
            for t in column.index[jump.to_numpy()]:
                p = scenario.points.loc[point]
                rows.append((t, t, "spike", point, p.element_type, int(p.element), 1.0))
        return pd.DataFrame(rows, columns=ALARMS_COLUMNS)


def make_scenario(directory: Path, *, spike_at: int = 30, extra_point: str | None = None) -> Path:
    """Two days at 15 minutes on a 3-bus LV grid; one spike on B2.V at sample `spike_at`."""
    net = pp.create_empty_network()
    b = [pp.create_bus(net, 20.0 if i == 0 else 0.4) for i in range(3)]
    pp.create_ext_grid(net, b[0])
    pp.create_transformer(net, b[0], b[1], "0.4 MVA 20/0.4 kV")
    pp.create_line(net, b[1], b[2], 0.2, "NAYY 4x150 SE")
    pp.create_load(net, b[2], p_mw=0.02)
    rows = [("T0.P", "trafo", 0, "lv", "p_mw", "MW", 0.001), ("B2.V", "bus", 2, "", "v_pu", "pu", 0.002)]
    if extra_point:
        rows.append((extra_point, "line", 0, "from", "i_ka", "kA", 0.001))
    points = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit", "sigma"])
    points = points.set_index("point")
    index = pd.date_range(START, periods=192, freq="15min")
    rng = np.random.default_rng(1)
    telemetry = pd.DataFrame(
        {p: 0.5 + rng.normal(0, 0.2 * points.at[p, "sigma"], len(index)) for p in points.index}, index=index
    )
    telemetry.iloc[spike_at, list(points.index).index("B2.V")] += 0.1
    labels = pd.DataFrame(
        [(index[spike_at], index[spike_at], "spike", "bus", 2, "B2.V")],
        columns=["start", "end", "type", "element_type", "element", "point"],
    )
    return write_scenario(directory, net=net, points=points, telemetry=telemetry, labels=labels)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    ModelRegistry(tmp_path / "models").save("jump", JumpModel())
    return tmp_path / "models"


def test_detect_then_evaluate_round_trip(tmp_path: Path, registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_scenario(tmp_path / "s")
    out_csv = tmp_path / "out" / "alarms.csv"
    code, out, err = run(
        capsys,
        "anomaly",
        "detect",
        "--data",
        str(data),
        "--model",
        "jump",
        "--out",
        str(out_csv),
        "--registry",
        str(registry),
    )
    assert code == 0, err
    assert last_json(out)["alarms"] == 1 and last_json(out)["model"] == "jump/v1"
    alarms = read_alarms(out_csv)
    assert alarms.point.tolist() == ["B2.V"]
    code, out, err = run(capsys, "anomaly", "evaluate", "--labels", str(data / "labels.csv"), "--alarms", str(out_csv))
    assert code == 0, err
    figures = last_json(out)
    assert figures["f1"] == 1.0 and figures["found"] == 1 and figures["false_alarm_events"] == 0
    assert figures["days"] == pytest.approx(2.0) and figures["recall_by_type"]["spike"]["recall"] == 1.0
    assert not figures["notes"]  # the topology came from the scenario beside labels.csv
    assert "precision 1.000" in err


def test_detect_without_a_model_uses_the_deployed_one_and_models_lists_it(
    tmp_path: Path, registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ModelRegistry(registry).save("jump", JumpModel(k=1e9))  # v2 finds nothing
    data = make_scenario(tmp_path / "s")
    audit = ["--audit", str(tmp_path / "audit.jsonl")]
    assert run(capsys, "anomaly", "deploy", "jump/v1", "--registry", str(registry), *audit)[0] == 0
    code, out, _ = run(
        capsys, "anomaly", "detect", "--data", str(data), "--out", str(tmp_path / "a.csv"), "--registry", str(registry)
    )
    assert code == 0 and last_json(out)["model"] == "jump/v1" and last_json(out)["alarms"] == 1
    code, out, err = run(capsys, "anomaly", "models", "--registry", str(registry))
    listed = last_json(out)
    assert code == 0 and listed["deployed"] == "jump/v1"
    assert [m["model"] for m in listed["models"] if m["model"].startswith("jump")] == ["jump/v1", "jump/v2"]
    assert "* jump/v1" in err


def test_detect_scores_points_the_model_never_saw(
    tmp_path: Path, registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_scenario(tmp_path / "s", extra_point="L0.I")
    code, out, err = run(
        capsys,
        "anomaly",
        "detect",
        "--data",
        str(data),
        "--model",
        "jump",
        "--out",
        str(tmp_path / "a.csv"),
        "--registry",
        str(registry),
    )
    assert code == 0, err


def test_bad_input_is_one_line_with_exit_code_2(
    tmp_path: Path, registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_scenario(tmp_path / "s")
    points = (data / "points.csv").read_text().replace("v_pu,pu", "volts,pu")
    (data / "points.csv").write_text(points)
    code, out, err = run(
        capsys,
        "anomaly",
        "detect",
        "--data",
        str(data),
        "--model",
        "jump",
        "--out",
        str(tmp_path / "a.csv"),
        "--registry",
        str(registry),
    )
    assert code == 2
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "points.csv: row 3, column quantity: 'volts'" in err
    code, _, err = run(
        capsys,
        "anomaly",
        "detect",
        "--data",
        str(tmp_path / "s"),
        "--model",
        "nope",
        "--out",
        str(tmp_path / "a.csv"),
        "--registry",
        str(registry),
    )
    assert code == 2 and "'nope' is not in the registry" in err
    code, _, err = run(
        capsys, "anomaly", "evaluate", "--labels", str(tmp_path / "missing.csv"), "--alarms", str(tmp_path / "a.csv")
    )
    assert code == 2 and "missing.csv: not found" in err


def test_evaluate_without_a_scenario_says_it_matched_by_names_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "labels.csv").write_text(
        "start,end,type,element_type,element,point\n2016-06-01T00:00:00Z,2016-06-01T01:00:00Z,stuck,bus,2,B2.V\n"
    )
    (tmp_path / "alarms.csv").write_text(
        "start,end,type,point,element_type,element,score\n2016-06-01T00:30:00Z,2016-06-01T00:45:00Z,stuck,B2.V,bus,2,3.5\n"
    )
    code, out, err = run(
        capsys,
        "anomaly",
        "evaluate",
        "--labels",
        str(tmp_path / "labels.csv"),
        "--alarms",
        str(tmp_path / "alarms.csv"),
    )
    assert code == 0, err
    figures = last_json(out)
    assert figures["found"] == 1 and figures["median_delay_samples"] == 2.0
    assert "exact names only" in err


def test_train_stores_a_versioned_model_with_its_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = make_scenario(tmp_path / "set" / "train", spike_at=40)
    make_scenario(tmp_path / "set" / "validation", spike_at=100)
    registry = tmp_path / "models"
    train_cmd = ["anomaly", "train", "--data", str(train), "--model", "lab", "--registry", str(registry)]
    # the physics detector runs a state estimate per step: too slow for a unit test, so it is set off
    code, out, err = run(capsys, *train_cmd, "--set", "physics=false", "--deploy", "--audit", str(tmp_path / "a.jsonl"))
    assert code == 0, err
    result = last_json(out)
    assert result["model"] == "lab/v1" and result["report"] is not None and "f1" in result["report"]
    assert str(tmp_path / "set" / "validation") in result["report"]["scenarios"]  # found beside train
    assert "training lab [" in err  # the progress bar
    card = json.loads((registry / "lab" / "v1" / "card.json").read_text())
    assert card["data_hash"].startswith("sha256:") and card["libraries"]["scikit-learn"]
    assert card["params"]["physics"] is False and card["train_s"] > 0
    # the deployed model scores a scenario with a point it never saw
    other = make_scenario(tmp_path / "other", extra_point="L0.I")
    code, out, err = run(
        capsys, "anomaly", "detect", "--data", str(other), "--out", str(tmp_path / "a.csv"), "--registry", str(registry)
    )
    assert code == 0 and last_json(out)["model"] == "lab/v1", err
    code, _, err = run(capsys, *train_cmd, "--set", "no_such=1")
    assert code == 2 and "no_such" in err and "physics" in err


def test_shipped_default_model_loads_and_scores_a_grid_it_never_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fails when the pipeline changes so that the shipped model no longer loads: retrain it then."""
    data = make_scenario(tmp_path / "s", extra_point="L0.I")
    empty = tmp_path / "no-registry"
    code, out, err = run(
        capsys, "anomaly", "detect", "--data", str(data), "--out", str(tmp_path / "a.csv"), "--registry", str(empty)
    )
    assert code == 0, err
    assert last_json(out)["model"] == "default/v1"
    assert read_alarms(tmp_path / "a.csv").columns.tolist() == ALARMS_COLUMNS
    code, out, _ = run(capsys, "anomaly", "models", "--registry", str(empty))
    assert [m["model"] for m in last_json(out)["models"]] == ["default/v1"] and last_json(out)["models"][0]["deployed"]


def test_deploy_is_recorded_in_the_audit_record_first_with_the_os_user(
    tmp_path: Path, registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import getpass

    from gridverse.audit import AuditRecord, verify_record

    path = tmp_path / "audit" / "audit.jsonl"
    deploy = ["anomaly", "deploy", "jump", "--registry", str(registry), "--audit", str(path)]
    code, out, err = run(capsys, *deploy, "--reason", "better recall on feeder F2")
    assert code == 0, err
    assert last_json(out)["audit"] == str(path)
    (entry,) = AuditRecord(path).entries()
    assert (entry.actor, entry.role, entry.source, entry.action, entry.target) == (
        getpass.getuser(),
        "os-user",
        "cli",
        "model.deploy",
        "jump/v1",
    )
    assert entry.before == {"deployed": "default (shipped)"} and entry.after["deployed"] == "jump/v1"
    assert entry.reason == "better recall on feeder F2"
    assert verify_record(path).ok
    # a record that cannot be written: nothing is deployed
    ModelRegistry(registry).save("jump", JumpModel(k=1e9))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the audit folder should be")
    code, _, err = run(
        capsys, "anomaly", "deploy", "jump/v2", "--registry", str(registry), "--audit", str(blocked / "a.jsonl")
    )
    assert code == 2 and "blocked" in err
    assert ModelRegistry(registry).deployed_ref() == "jump/v1"
