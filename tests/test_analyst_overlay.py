"""The analyst page's series overlay: a false-data injection's label names its points `a;b;c`, and
each of them shows the label window (the page splits the names as the evaluator does)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from anomaly.dataset import read_scenario
from tests.test_analyst_page import START, tiny_scenario
from ui.views.analyst import labelled_points, series_figure


def _with_fdia(directory: Path) -> Path:
    path = tiny_scenario(directory, start=START, spike_at=100)
    labels = pd.read_csv(path / "labels.csv")
    fdia = {
        "start": "2016-06-01T12:00:00Z",
        "end": "2016-06-01T14:00:00Z",
        "type": "fdia",
        "element_type": "bus",
        "element": 2,
        "point": "B2.V;T0.P",
    }
    pd.concat([labels, pd.DataFrame([fdia])]).to_csv(path / "labels.csv", index=False)
    return path


def _label_shapes(fig: object) -> list[str]:
    return [a.text for a in fig.layout.annotations if str(a.text).startswith("label:")]  # type: ignore[attr-defined]


def test_fdia_label_overlays_every_point_it_names(tmp_path: Path) -> None:
    scn = read_scenario(_with_fdia(tmp_path / "s"))
    # T0.P is named only inside the FDIA label's `a;b` list: it must still count as labelled
    assert labelled_points(scn) == ["T0.P", "B2.V"]
    assert _label_shapes(series_figure(scn, "T0.P", None)) == ["label: fdia"]
    assert sorted(_label_shapes(series_figure(scn, "B2.V", None))) == ["label: fdia", "label: spike"]
