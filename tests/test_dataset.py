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


def test_a_time_without_a_zone_is_refused_and_one_with_an_offset_is_read_as_utc(tmp_path: Path) -> None:
    """A local-time export read as UTC would shift every window by the local offset, unseen."""
    sc = _scenario(tmp_path)
    _rewrite_telemetry(sc, "time,point,value\n2016-01-01T00:00:00Z,V1,1.0\n2016-01-01T00:15:00,V1,1.0\n")
    with pytest.raises(DatasetError, match=r"row 3, column time: '2016-01-01T00:15:00' does not say its time zone"):
        read_scenario(sc)
    _rewrite_telemetry(sc, "time,point,value\n2016-01-01T01:00:00+01:00,V1,1.0\n2016-01-01T01:15:00+0100,V1,1.1\n")
    assert read_scenario(sc).telemetry.index.tolist() == T[:2].tolist()
    (sc / LABELS_FILE).write_text(
        "start,end,type,element_type,element,point\n2016-01-01 09:30:00,2016-01-01T10:00:00Z,drift,bus,1,V1\n"
    )
    with pytest.raises(DatasetError, match=r"labels\.csv: row 2, column start: .* does not say its time zone"):
        read_scenario(sc)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", r"telemetry\.csv\.gz: the file is empty; it must hold a header"),
        (b"time,point,value\n2016-01-01T00:00:00Z,V1,1.0\n", r"telemetry\.csv\.gz: not a complete gzip file"),
        (gzip.compress(b""), r"telemetry\.csv\.gz: the file is empty"),
        (gzip.compress(b"time,point,value\n"), r"telemetry\.csv\.gz: a header and no samples"),
        (gzip.compress(b"time,point,value\n2016-01-01T00:00:00Z,V1,1.0\n")[:-12], r"not a complete gzip file"),
    ],
    ids=["zero-bytes", "plain-text", "empty-gzip", "header-only", "truncated"],
)
def test_a_damaged_telemetry_file_is_named_with_the_remedy(tmp_path: Path, content: bytes, expected: str) -> None:
    sc = _scenario(tmp_path)
    (sc / TELEMETRY_FILE).write_bytes(content)
    with pytest.raises(DatasetError, match=expected):
        read_scenario(sc)


def test_a_points_file_in_a_windows_code_page_and_a_broken_scenario_json(tmp_path: Path) -> None:
    sc = _scenario(tmp_path)
    text = (sc / POINTS_FILE).read_text().replace("V1", "Zähler")
    (sc / POINTS_FILE).write_bytes(text.encode("cp1252"))
    with pytest.raises(DatasetError, match=r"points\.csv: byte \d+ is not UTF-8 .* save the file as UTF-8"):
        read_scenario(sc)
    sc = _scenario(tmp_path / "again")
    (sc / "scenario.json").write_text('{"seed": 1,}')
    with pytest.raises(DatasetError, match=r"scenario\.json: not valid JSON .* remove the file \(it is optional\)"):
        read_scenario(sc)


def test_a_point_on_an_element_the_network_lacks_is_named(tmp_path: Path) -> None:
    """A point said to sit on bus 99 of a grid without one would be scored as if it were there."""
    sc = _scenario(tmp_path)
    text = (sc / POINTS_FILE).read_text().replace("bus,1,", "bus,99,")
    (sc / POINTS_FILE).write_text(text)
    scenario = read_scenario(sc)
    with pytest.raises(DatasetError, match=r"points\.csv: row 2, column element: point 'V1' is on bus 99, which"):
        scenario.network()


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("2016-01-01T00:00:00Z,2016-01-01T01:00:00Z,stuck,transformer,1,V1", r"row 2, column element_type"),
        ("2016-01-01T00:00:00Z,2016-01-01T01:00:00Z,stuck,bus,B2,V1", r"row 2, column element: 'B2'"),
        ("2016-01-01T00:00:00Z,2016-01-01T01:00:00Z,stuck,bus,2.5,V1", r"row 2, column element: '2.5'"),
        ("2016-01-01T00:00:00Z,2016-01-01T01:00:00Z,,bus,1,V1", r"row 2, column type: empty"),
    ],
)
def test_label_targets_that_cannot_be_an_element_are_refused(tmp_path: Path, row: str, expected: str) -> None:
    sc = _scenario(tmp_path)
    (sc / LABELS_FILE).write_text("start,end,type,element_type,element,point\n" + row + "\n")
    with pytest.raises(DatasetError, match=r"labels\.csv: " + expected):
        read_scenario(sc)


def test_alarms_ending_before_they_start_or_scored_in_words_are_refused(tmp_path: Path) -> None:
    head = "start,end,type,point,element_type,element,score\n"
    (tmp_path / "a.csv").write_text(head + "2016-01-01T01:00:00Z,2016-01-01T00:00:00Z,stuck,V1,bus,1,3\n")
    with pytest.raises(DatasetError, match=r"a\.csv: row 2, column end: the window ends before it starts"):
        read_alarms(tmp_path / "a.csv")
    (tmp_path / "a.csv").write_text(head + "2016-01-01T00:00:00Z,2016-01-01T01:00:00Z,stuck,V1,bus,1,high\n")
    with pytest.raises(DatasetError, match=r"a\.csv: row 2, column score: 'high' is not a number"):
        read_alarms(tmp_path / "a.csv")
    (tmp_path / "a.csv").write_text(head + "2016-01-01T00:00:00Z,2016-01-01T01:00:00Z,stuck,V1,bus,1,\n")
    assert read_alarms(tmp_path / "a.csv").score.isna().all()  # a score not given is allowed


def test_a_label_on_a_point_or_element_the_scenario_lacks_is_refused_and_an_unknown_type_noted(
    tmp_path: Path,
) -> None:
    """A label nobody could find (its point is not metered, its bus not in the grid) is an error,
    not a miss; a type the rules do not know (a misspelt `spike`) is matched and said so."""
    from anomaly.evaluate import evaluate_scenario

    sc = _scenario(tmp_path)
    alarms = pd.DataFrame(
        {"start": [T[1]], "end": [T[2]], "type": ["spike"], "point": ["V1"], "element_type": ["bus"],
         "element": [1], "score": [3.0]}
    )  # fmt: skip
    head = "start,end,type,element_type,element,point\n"
    window = "2016-01-01T00:15:00Z,2016-01-01T00:30:00Z"
    for row, expected in [
        (f"{window},spike,bus,1,B2.v", r"labels\.csv: row 2, column point: 'B2\.v' is not in .*points\.csv"),
        (f"{window},fdia,bus,1,V1;B7.v", r"labels\.csv: row 2, column point: 'B7\.v' is not in"),
        (f"{window},line_outage,line,40,", r"labels\.csv: row 2, column element: line 40 is not in"),
    ]:
        (sc / LABELS_FILE).write_text(head + row + "\n")
        with pytest.raises(DatasetError, match=expected):
            evaluate_scenario(read_scenario(sc), alarms)
    (sc / LABELS_FILE).write_text(head + f"{window},spkie,bus,1,V1\n{window},inspection.trafo.bushings,bus,1,T2\n")
    report = evaluate_scenario(read_scenario(sc), alarms)
    assert report.labels == 2 and any("['spkie'] are not ones the lab knows" in n for n in report.notes), report.notes
    assert not any("inspection." in n for n in report.notes)


def test_a_semicolon_separated_export_and_decimal_commas_are_named_with_the_remedy(tmp_path: Path) -> None:
    """What a spreadsheet in a German or French locale writes."""
    sc = _scenario(tmp_path)
    (sc / POINTS_FILE).write_text((sc / POINTS_FILE).read_text().replace(",", ";"))
    with pytest.raises(DatasetError, match=r"points\.csv: the columns are separated by semicolons; write the file"):
        read_scenario(sc)
    sc = _scenario(tmp_path / "again")
    _rewrite_telemetry(sc, 'time,point,value\n2016-01-01T00:00:00Z,V1,"1,01"\n')
    with pytest.raises(DatasetError, match=r"row 2, column value: '1,01' is not a number; write decimals with a point"):
        read_scenario(sc)
