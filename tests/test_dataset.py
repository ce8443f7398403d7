"""The scenario interchange format: a round trip, and bad input named by file, row and column."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandapower.networks as pn
import pandas as pd
import pytest

from anomaly.dataset import (
    LABELS_FILE,
    POINTS_FILE,
    TELEMETRY_FILE,
    DatasetError,
    read_alarms,
    read_scenario,
    write_alarms,
    write_scenario,
)

T = pd.date_range("2016-01-01", periods=4, freq="15min", tz="UTC")


def _scenario(tmp: Path) -> Path:
    points = pd.DataFrame(
        {
            "element_type": ["bus", "line"],
            "element": [1, 0],
            "side": ["", "from"],
            "quantity": ["v_pu", "p_mw"],
            "unit": ["pu", "MW"],
            "sigma": [0.004, 0.01],
        },
        index=pd.Index(["V1", "P0"], name="point"),
    )
    telemetry = pd.DataFrame({"V1": [1.0, 1.01, np.nan, 1.0], "P0": [0.5, 0.6, 0.7, 0.8]}, index=T)
    labels = pd.DataFrame(
        {"start": [T[1]], "end": [T[2]], "type": ["spike"], "element_type": ["bus"], "element": [1], "point": ["V1"]}
    )
    return write_scenario(tmp / "sc", net=pn.example_simple(), points=points, telemetry=telemetry, labels=labels)


def _rewrite_telemetry(path: Path, text: str) -> None:
    with gzip.open(path / TELEMETRY_FILE, "wt") as f:
        f.write(text)


def test_round_trip_keeps_values_missing_samples_and_labels(tmp_path: Path) -> None:
    s = read_scenario(_scenario(tmp_path))
    assert list(s.telemetry.columns) == ["V1", "P0"]
    assert s.telemetry.index.tz is not None and len(s.telemetry) == 4
    assert np.isnan(s.telemetry.V1.iloc[2]) and s.telemetry.P0.iloc[3] == 0.8
    assert s.labels is not None and s.labels.type.tolist() == ["spike"] and s.labels.start.iloc[0] == T[1]
    assert s.points.loc["P0", "side"] == "from" and s.notes == ()
    assert len(s.network().bus) == len(pn.example_simple().bus)


def test_alarms_round_trip(tmp_path: Path) -> None:
    alarms = pd.DataFrame(
        {"start": [T[0]], "end": [T[1]], "type": ["stuck"], "point": ["V1"], "element_type": ["bus"],
         "element": [1], "score": [3.5]}
    )  # fmt: skip
    write_alarms(tmp_path / "alarms.csv", alarms)
    back = read_alarms(tmp_path / "alarms.csv")
    assert back.score.tolist() == [3.5] and back.start.iloc[0] == T[0] and int(back.element.iloc[0]) == 1


def test_unknown_quantity_names_file_row_and_column(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    text = (sc / POINTS_FILE).read_text().replace("p_mw", "p_kw")
    (sc / POINTS_FILE).write_text(text)
    with pytest.raises(DatasetError, match=r"points\.csv: row 3, column quantity: 'p_kw'"):
        read_scenario(sc)


def test_telemetry_point_missing_from_points_csv(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    _rewrite_telemetry(sc, "time,point,value\n2016-01-01T00:00:00Z,V1,1.0\n2016-01-01T00:00:00Z,Q9,2.0\n")
    with pytest.raises(DatasetError, match=r"telemetry\.csv\.gz: row 3, column point: 'Q9' is not in points\.csv"):
        read_scenario(sc)


def test_duplicate_rows_are_an_error_and_unsorted_rows_are_sorted_and_reported(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    _rewrite_telemetry(sc, "time,point,value\n2016-01-01T00:15:00Z,V1,1.0\n2016-01-01T00:00:00Z,V1,0.9\n")
    s = read_scenario(sc)
    assert s.telemetry.V1.tolist() == [0.9, 1.0] and any("sorted" in n for n in s.notes)
    _rewrite_telemetry(sc, "time,point,value\n2016-01-01T00:00:00Z,V1,1.0\n2016-01-01T00:00:00Z,V1,1.1\n")
    with pytest.raises(DatasetError, match=r"row 3: point 'V1' at 2016-01-01T00:00:00Z appears twice"):
        read_scenario(sc)


def test_nan_text_is_a_missing_sample_and_garbage_is_an_error(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    _rewrite_telemetry(sc, "time,point,value\n2016-01-01T00:00:00Z,V1,NaN\n2016-01-01T00:15:00Z,V1,1.0\n")
    s = read_scenario(sc)
    assert np.isnan(s.telemetry.V1.iloc[0]) and any("'nan'" in n for n in s.notes)
    _rewrite_telemetry(sc, "time,point,value\n2016-01-01T00:00:00Z,V1,1.0\n2016-01-01T00:15:00Z,V1,high\n")
    with pytest.raises(DatasetError, match=r"row 3, column value: 'high' is not a number"):
        read_scenario(sc)
    _rewrite_telemetry(sc, "time,point,value\nyesterday,V1,1.0\n")
    with pytest.raises(DatasetError, match=r"row 2, column time: 'yesterday' is not a UTC ISO time"):
        read_scenario(sc)


def test_label_window_ending_before_it_starts(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    (sc / LABELS_FILE).write_text(
        "start,end,type,element_type,element,point\n2016-01-01T01:00:00Z,2016-01-01T00:00:00Z,drift,bus,1,V1\n"
    )
    with pytest.raises(DatasetError, match=r"labels\.csv: row 2, column end"):
        read_scenario(sc)


def test_missing_network_and_foreign_network(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    (sc / "network.json").write_text('{"not": "pandapower"}')
    with pytest.raises(DatasetError, match="not a pandapower network"):
        read_scenario(sc).network()
    (sc / "network.json").unlink()
    with pytest.raises(DatasetError, match=r"network\.json: not found"):
        read_scenario(sc)
