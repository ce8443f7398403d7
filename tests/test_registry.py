"""The model registry: versions, the deployed pointer, provenance and the library-version warning."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from anomaly import registry as reg
from anomaly.registry import ModelRegistry, ModelVersionWarning, RegistryError, data_hash


def fitted(seed: int = 0) -> IsolationForest:
    return IsolationForest(n_estimators=10, random_state=seed).fit(np.random.default_rng(seed).normal(size=(50, 3)))


def scenario_dir(tmp: Path, name: str, content: str) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "points.csv").write_text(content)
    return d


def test_save_versions_and_load_the_same_model_with_its_provenance(tmp_path: Path) -> None:
    data = scenario_dir(tmp_path, "train", "point,element_type\nA,bus\n")
    registry = ModelRegistry(tmp_path / "models")
    first = registry.save("feeder", fitted(0), data=[data], report={"f1": 0.5}, train_s=1.5)
    second = registry.save("feeder", fitted(1), data=[data])
    assert (first.ref, second.ref) == ("feeder/v1", "feeder/v2")
    assert registry.versions("feeder") == [1, 2]
    model, card = registry.load("feeder/v1")
    x = np.zeros((1, 3))
    assert model.score_samples(x) == pytest.approx(fitted(0).score_samples(x))
    assert card.params["n_estimators"] == 10 and card.report == {"f1": 0.5} and card.train_s == 1.5
    assert card.data == [str(data.resolve())] and card.data_hash == data_hash([data])
    assert set(card.libraries) == {"scikit-learn", "numpy", "pandas", "gridverse"}
    assert registry.load("feeder")[1].version == 2  # a bare name is the newest version


def test_data_hash_changes_with_the_data(tmp_path: Path) -> None:
    a = scenario_dir(tmp_path, "a", "point\nA\n")
    b = scenario_dir(tmp_path, "b", "point\nB\n")
    assert data_hash([a]) != data_hash([b]) and data_hash([a]) == data_hash([a])


def test_deployed_pointer_is_what_load_without_a_name_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "SHIPPED_DEFAULT", tmp_path / "nothing-shipped")
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(RegistryError, match="no model is deployed"):
        registry.load()
    registry.save("a", fitted(0))
    registry.save("b", fitted(1))
    registry.deploy("a")
    assert registry.deployed_ref() == "a/v1"
    assert registry.load()[1].ref == "a/v1"
    assert [c.ref for c in registry.cards()] == ["a/v1", "b/v1"]


def test_shipped_default_is_used_when_nothing_is_deployed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = ModelRegistry(tmp_path / "ship").save("default", fitted(0))
    monkeypatch.setattr(reg, "SHIPPED_DEFAULT", Path(shipped.path))
    registry = ModelRegistry(tmp_path / "models")
    model, card = registry.load()
    assert card.name == "default" and isinstance(model, IsolationForest)
    assert registry.deploy("default").ref == "default/v1" and registry.load()[1].name == "default"


def test_model_saved_with_other_library_versions_warns_and_names_them(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    card = registry.save("old", fitted(0))
    path = Path(card.path) / "card.json"
    raw = json.loads(path.read_text())
    raw["libraries"]["scikit-learn"] = "0.24.2"
    path.write_text(json.dumps(raw))
    with pytest.warns(ModelVersionWarning, match=r"scikit-learn 0\.24\.2 \(now "):
        registry.load("old")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.save("new", fitted(0))
        registry.load("new")  # same versions: silent


def test_unknown_model_bad_name_and_broken_file_are_clear_errors(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    registry.save("a", fitted(0))
    with pytest.raises(RegistryError, match=r"'nope' is not in the registry .*known: \[.*'a'"):
        registry.load("nope")
    with pytest.raises(RegistryError, match=r"no version 'v7'.*\['v1'\]"):
        registry.load("a/v7")
    with pytest.raises(RegistryError, match="model name '../x'"):
        registry.save("../x", fitted(0))
    (tmp_path / "models" / "a" / "v1" / "model.joblib").write_bytes(b"not a pickle")
    with pytest.raises(RegistryError, match=r"model\.joblib: cannot be loaded .*retrain model a/v1"):
        registry.load("a")


def _doctored_copy_of_the_shipped_model(root: Path) -> str:
    """The shipped default model stored as `old/v1`, its card saying it was saved with scikit-learn 0.24.2."""
    import shutil

    folder = root / "old" / "v1"
    shutil.copytree(reg.SHIPPED_DEFAULT, folder)
    card = json.loads((folder / "card.json").read_text())
    card.update(name="old", version=1)
    card["libraries"]["scikit-learn"] = "0.24.2"
    (folder / "card.json").write_text(json.dumps(card))
    return "old/v1"


def test_models_listing_warns_about_a_model_of_other_library_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gridverse.cli import main

    _doctored_copy_of_the_shipped_model(tmp_path / "models")
    assert main(["anomaly", "models", "--registry", str(tmp_path / "models")]) == 0
    out, err = capsys.readouterr()
    listed = {m["model"]: m for m in json.loads(out.strip().splitlines()[-1])["models"]}
    assert re.search(r"scikit-learn 0\.24\.2 \(now \d", listed["old/v1"]["version_warning"])
    assert listed["default/v1"]["version_warning"] is None
    assert "warning: model old/v1 was saved with scikit-learn 0.24.2 (now" in err


def test_live_scoring_with_a_model_of_other_library_versions_says_so(tmp_path: Path) -> None:
    """The detector service keeps scoring (the model loads) and its status names the library and both versions."""
    from anomaly.live import LiveScorer
    from gridverse.historian.embedded import EmbeddedHistorian
    from gridverse.settings import load_settings
    from tests.helpers import config_dir
    from tests.test_live_scoring import demo_net

    ref = _doctored_copy_of_the_shipped_model(tmp_path / "models")
    ModelRegistry(tmp_path / "models").deploy(ref)
    settings = load_settings(config_dir(tmp_path, lambda d: d["anomaly"].update(models_dir=str(tmp_path / "models"))))
    live = LiveScorer(settings, EmbeddedHistorian(tmp_path / "h.db"), net=demo_net())
    assert live.conditions() == []
    assert live.status.model == "old/v1" and live.status.state == "warming_up"
    assert re.search(r"model old/v1 was saved with scikit-learn 0\.24\.2 \(now \d", live.status.warning)
