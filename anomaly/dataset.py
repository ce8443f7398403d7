"""The scenario interchange format: a directory any utility's data can be put in, and be scored.

A scenario directory holds:

- `network.json`: a pandapower network (`pandapower.to_json`), the grid as the operator's model
  knows it (time-series profiles are not needed);
- `points.csv`: `point, element_type, element, side, quantity, unit, sigma`; element_type is
  bus/line/trafo/sgen/load, element the pandapower index, side from/to/hv/lv or empty,
  quantity one of `v_pu, p_mw, q_mvar, i_ka, temp_oil_c`;
- `telemetry.csv.gz`: long form `time, point, value` (ISO times ending in `Z` or a UTC offset,
  never bare local times; an empty value is a missing sample);
- `labels.csv` (when known): `start, end, type, element_type, element, point`;
- `scenario.json` (optional): how it was made (grid, seed, days, split), for provenance.

Detectors write `alarms.csv`: `start, end, type, point, element_type, element, score` (score:
higher = more anomalous). Every reader checks what it reads and names the file, the row (the
line number in the file, header = 1) and the column of the first problem of each kind.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

POINTS_FILE, TELEMETRY_FILE, LABELS_FILE, NETWORK_FILE, META_FILE = (
    "points.csv",
    "telemetry.csv.gz",
    "labels.csv",
    "network.json",
    "scenario.json",
)
ALARMS_COLUMNS = ["start", "end", "type", "point", "element_type", "element", "score"]
LABELS_COLUMNS = ["start", "end", "type", "element_type", "element", "point"]
POINTS_COLUMNS = ["point", "element_type", "element", "side", "quantity", "unit", "sigma"]
TELEMETRY_COLUMNS = ["time", "point", "value"]

#: quantity → the unit `points.csv` must give for it
QUANTITY_UNITS: dict[str, str] = {"v_pu": "pu", "p_mw": "MW", "q_mvar": "Mvar", "i_ka": "kA", "temp_oil_c": "degC"}
ELEMENT_TYPES = ("bus", "line", "trafo", "sgen", "load")
SIDES_OF: dict[str, tuple[str, ...]] = {
    "bus": ("",),
    "line": ("from", "to"),
    "trafo": ("hv", "lv", ""),  # empty: the whole transformer (top-oil temperature)
    "sgen": ("",),
    "load": ("",),
}


class DatasetError(ValueError):
    """A scenario file that cannot be used as it is; the message names file, row, column and remedy."""


class PointsNotInNetwork(DatasetError):
    """`points.csv` names an element `network.json` does not have."""


@dataclass(frozen=True)
class Scenario:
    """One scenario directory, read and checked."""

    path: Path
    points: pd.DataFrame  # indexed by point name, POINTS_COLUMNS less `point`
    telemetry: pd.DataFrame  # wide: UTC DatetimeIndex × point columns, NaN = missing sample
    labels: pd.DataFrame | None  # LABELS_COLUMNS, start/end as UTC timestamps
    meta: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the reader fixed on the way (sorted rows, "nan" values)

    def network(self) -> Any:
        """The pandapower network of `network.json` (loaded on demand: it is the slow part),
        checked to hold every element `points.csv` names."""
        net = read_network(self.path / NETWORK_FILE)
        check_points_in_network(self.points, net, self.path / POINTS_FILE)
        return net


def _row(index: int) -> int:
    """The line number in the CSV file of a 0-based data row (the header is line 1)."""
    return int(index) + 2


def _require_columns(frame: pd.DataFrame, path: Path, wanted: Iterable[str]) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing and len(frame.columns) == 1 and any(sep in str(frame.columns[0]) for sep in ";\t"):
        raise DatasetError(
            f"{path}: the columns are separated by {'a tab' if chr(9) in str(frame.columns[0]) else 'semicolons'}; "
            f"write the file comma-separated, with the header {', '.join(wanted)}"
        )
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {missing}; the header must be {', '.join(wanted)} (found {list(frame.columns)})"
        )


#: an ISO time that says where it is: "Z" or a UTC offset (+02:00, +0200, +02) at its end
_ZONED = re.compile(r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")


def _read_csv(path: Path, what: str, **kwargs: Any) -> pd.DataFrame:
    """`pd.read_csv` whose failures on a damaged or foreign file name the file and the remedy."""
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: byte {exc.start} is not UTF-8 ({exc.reason}); save the file as UTF-8 (it holds {what})"
        ) from None
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: the file is empty; it must hold a header ({what}) and rows") from None
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise DatasetError(
            f"{path}: not a complete gzip file ({exc}); compress the CSV with gzip (it holds {what})"
        ) from None
    except pd.errors.ParserError as exc:
        raise DatasetError(f"{path}: not a CSV file of {what} ({str(exc).strip()[:160]})") from None


def _utc_times(values: pd.Series, path: Path, column: str) -> pd.Series:
    """ISO times that carry "Z" or an offset, as UTC; a time without one is refused: read as UTC,
    a local-time export would shift every window by the local offset without a word."""
    codes, distinct = pd.factorize(values)  # long-form telemetry repeats each time once per point
    parsed = pd.DatetimeIndex(pd.to_datetime(pd.Series(distinct, dtype=object), utc=True, errors="coerce",
                                             format="ISO8601"))  # fmt: skip
    times = pd.Series(parsed.take(codes, allow_fill=True, fill_value=pd.NaT), index=values.index)
    bad = times.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(
            f"{path}: row {_row(i)}, column {column}: {values.iloc[i]!r} is not a UTC ISO time "
            "(e.g. 2016-06-15T11:00:00Z)"
        )
    text = pd.Series(distinct, dtype=str).str.strip()
    unzoned = np.flatnonzero(~text.str.contains(_ZONED).to_numpy())
    if len(unzoned):
        i = int(np.flatnonzero(np.isin(codes, unzoned))[0])
        raise DatasetError(
            f"{path}: row {_row(i)}, column {column}: {values.iloc[i]!r} does not say its time zone; "
            f"write UTC with a Z ({times.iloc[i].strftime('%Y-%m-%dT%H:%M:%SZ')} if it is UTC) "
            "or the local time with its offset (e.g. +01:00)"
        )
    return times


def read_points(path: Path) -> pd.DataFrame:
    """`points.csv`, checked: known quantities and element types, sides that fit, σ > 0, unique names."""
    if not path.exists():
        raise DatasetError(f"{path}: not found; a scenario needs {POINTS_FILE} ({', '.join(POINTS_COLUMNS)})")
    frame = _read_csv(path, "the point list", dtype={"point": str, "side": str, "unit": str}, keep_default_na=False)
    _require_columns(frame, path, POINTS_COLUMNS)
    for i, row in frame.iterrows():
        where = f"{path}: row {_row(int(str(i)))}"
        if row.quantity not in QUANTITY_UNITS:
            raise DatasetError(f"{where}, column quantity: {row.quantity!r} is not one of {sorted(QUANTITY_UNITS)}")
        if row.element_type not in ELEMENT_TYPES:
            raise DatasetError(f"{where}, column element_type: {row.element_type!r} is not one of {ELEMENT_TYPES}")
        if row.side not in SIDES_OF[row.element_type]:
            raise DatasetError(
                f"{where}, column side: {row.side!r} does not fit a {row.element_type}; "
                f"use {' or '.join(repr(s) for s in SIDES_OF[row.element_type])}"
            )
        if row.unit != QUANTITY_UNITS[row.quantity]:
            raise DatasetError(
                f"{where}, column unit: {row.quantity} is given in {QUANTITY_UNITS[row.quantity]!r}, not {row.unit!r}"
            )
        try:
            element, sigma = int(row.element), float(row.sigma)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: element must be an integer index and sigma a number") from None
        if element < 0 or not np.isfinite(sigma) or sigma <= 0:
            raise DatasetError(f"{where}: element must be ≥ 0 and sigma a positive number (got {element}, {sigma})")
    dup = frame.point.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DatasetError(f"{path}: row {_row(i)}, column point: {frame.point.iloc[i]!r} is listed twice")
    frame["element"] = frame.element.astype(int)
    frame["sigma"] = frame.sigma.astype(float)
    return frame.set_index("point")


def read_telemetry(path: Path, points: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`telemetry.csv.gz` as a wide frame (time × point), checked against the point list.

    Duplicate (time, point) rows and points missing from `points.csv` are errors; rows out of
    time order are sorted and literal "nan" values read as missing, each reported in the notes."""
    if not path.exists():
        raise DatasetError(f"{path}: not found; a scenario needs {TELEMETRY_FILE} (time, point, value)")
    frame = _read_csv(
        path, "telemetry: time, point, value", dtype={"point": str, "time": str, "value": str}, keep_default_na=False
    )
    _require_columns(frame, path, TELEMETRY_COLUMNS)
    if frame.empty:
        raise DatasetError(f"{path}: a header and no samples; it needs rows of time, point, value")
    notes: list[str] = []
    unknown = ~frame.point.isin(points.index)
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        missing = sorted(set(frame.point[unknown]))
        raise DatasetError(
            f"{path}: row {_row(i)}, column point: {frame.point.iloc[i]!r} is not in {POINTS_FILE} "
            f"({len(missing)} such point(s): {missing[:5]}); add them to {POINTS_FILE} or drop their rows"
        )
    times = _utc_times(frame.time.replace("", None), path, "time")
    raw = frame.value.str.strip()
    values = pd.to_numeric(raw.replace("", None), errors="coerce")
    bad = values.isna() & (raw != "") & (raw.str.lower() != "nan")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        comma = "; write decimals with a point (0.5)" if "," in frame.value.iloc[i] else ""
        raise DatasetError(f"{path}: row {_row(i)}, column value: {frame.value.iloc[i]!r} is not a number{comma}")
    nan_text = int((raw.str.lower() == "nan").sum())
    if nan_text:
        notes.append(f"{path.name}: {nan_text} value(s) written as 'nan' read as missing samples")
    infinite = np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
    if infinite.any():
        i = int(np.flatnonzero(infinite)[0])
        raise DatasetError(f"{path}: row {_row(i)}, column value: {frame.value.iloc[i]!r} is not finite")
    long = pd.DataFrame({"time": times, "point": frame.point, "value": values})
    dup = long.duplicated(["time", "point"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DatasetError(
            f"{path}: row {_row(i)}: point {long.point.iloc[i]!r} at {frame.time.iloc[i]} appears twice; "
            "keep one sample per point and time"
        )
    if not long.time.is_monotonic_increasing:
        notes.append(f"{path.name}: rows were not in time order; sorted")
    wide = long.pivot(index="time", columns="point", values="value").sort_index()
    wide = wide.reindex(columns=[p for p in points.index if p in wide.columns])
    wide.columns.name = None
    return wide, notes


def _read_windows(path: Path, columns: list[str]) -> pd.DataFrame:
    """A CSV of time windows (labels or alarms): UTC start/end (start ≤ end), a known element
    type or none, element as a nullable integer index."""
    if not path.exists():
        raise DatasetError(f"{path}: not found")
    frame = _read_csv(path, ", ".join(columns), dtype=str, keep_default_na=False)
    _require_columns(frame, path, columns)
    frame["start"] = _utc_times(frame.start, path, "start")
    frame["end"] = _utc_times(frame.end, path, "end")
    backwards = frame.end < frame.start
    if backwards.any():
        i = int(np.flatnonzero(backwards.to_numpy())[0])
        raise DatasetError(f"{path}: row {_row(i)}, column end: the window ends before it starts")
    kinds = frame.element_type.str.strip()
    foreign = ~kinds.isin(("", *ELEMENT_TYPES))
    if foreign.any():
        i = int(np.flatnonzero(foreign.to_numpy())[0])
        raise DatasetError(
            f"{path}: row {_row(i)}, column element_type: {frame.element_type.iloc[i]!r} is not one of "
            f"{ELEMENT_TYPES} (or empty)"
        )
    frame["element_type"] = kinds
    text = frame.element.str.strip()
    index = pd.to_numeric(text.replace("", None), errors="coerce")
    not_index = (text != "") & (index.isna() | (index % 1 != 0) | (index < 0))
    if not_index.any():
        i = int(np.flatnonzero(not_index.to_numpy())[0])
        raise DatasetError(
            f"{path}: row {_row(i)}, column element: {frame.element.iloc[i]!r} is not a pandapower index "
            "(an integer ≥ 0, or empty)"
        )
    frame["element"] = index.astype("Int64")
    return frame


def read_labels(path: Path) -> pd.DataFrame:
    """`labels.csv`: fault windows with their type and target (start ≤ end, UTC)."""
    frame = _read_windows(path, LABELS_COLUMNS)
    untyped = frame.type.str.strip() == ""
    if untyped.any():
        i = int(np.flatnonzero(untyped.to_numpy())[0])
        raise DatasetError(f"{path}: row {_row(i)}, column type: empty; name the fault (e.g. stuck, line_outage)")
    return frame[LABELS_COLUMNS]


def read_alarms(path: Path) -> pd.DataFrame:
    """`alarms.csv` as detectors write it (score: higher = more anomalous; empty: not given)."""
    frame = _read_windows(path, ALARMS_COLUMNS)
    text = frame.score.str.strip()
    score = pd.to_numeric(text.replace("", None), errors="coerce")
    not_number = (text != "") & score.isna()
    if not_number.any():
        i = int(np.flatnonzero(not_number.to_numpy())[0])
        raise DatasetError(f"{path}: row {_row(i)}, column score: {frame.score.iloc[i]!r} is not a number")
    frame["score"] = score
    return frame[ALARMS_COLUMNS]


def in_network(net: Any, element_type: str, element: int) -> bool:
    """Whether the network has this element (an ELEMENT_TYPES name is its pandapower table)."""
    return int(element) in getattr(net, element_type).index


def check_points_in_network(points: pd.DataFrame, net: Any, path: Path) -> None:
    """Every element `points.csv` (at `path`) names is in the network: a point on an element the
    model does not have would be scored and alarmed on as if it were there."""
    for row, (name, p) in enumerate(points.iterrows()):
        if not in_network(net, str(p.element_type), int(p.element)):
            table = getattr(net, str(p.element_type))
            have = f"{len(table)} {p.element_type}(s)" + (
                f", indices {int(table.index.min())}-{int(table.index.max())}" if len(table) else ""
            )
            raise PointsNotInNetwork(
                f"{path}: row {_row(row)}, column element: point {name!r} is on {p.element_type} {int(p.element)}, "
                f"which network.json does not have ({have}); correct the index or the network"
            )


def read_network(path: Path) -> Any:
    """A pandapower network from JSON; a missing or foreign file is a DatasetError with the remedy."""
    import pandapower as pp

    if not path.exists():
        raise DatasetError(f"{path}: not found; write the grid with pandapower.to_json(net, '{path.name}')")
    try:
        return pp.from_json(str(path))
    except Exception as exc:  # pandapower raises bare exceptions for foreign JSON
        raise DatasetError(
            f"{path}: not a pandapower network ({type(exc).__name__}: {str(exc)[:120]}); "
            "write it with pandapower.to_json"
        ) from None


def read_meta(path: Path) -> dict[str, Any]:
    """`scenario.json`: how the scenario was made (a JSON object)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc}); correct it or remove the file (it is optional)") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: must hold a JSON object ({{...}}), not {type(meta).__name__}")
    return meta


def read_scenario(directory: Path | str) -> Scenario:
    """Read and check a scenario directory (the network itself is loaded on demand)."""
    path = Path(directory)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory; a scenario is a directory holding {POINTS_FILE}, ...")
    points = read_points(path / POINTS_FILE)
    telemetry, notes = read_telemetry(path / TELEMETRY_FILE, points)
    labels = read_labels(path / LABELS_FILE) if (path / LABELS_FILE).exists() else None
    meta = read_meta(path / META_FILE) if (path / META_FILE).exists() else {}
    if not (path / NETWORK_FILE).exists():
        raise DatasetError(f"{path / NETWORK_FILE}: not found; write the grid with pandapower.to_json")
    return Scenario(path, points, telemetry, labels, meta, tuple(notes))


def _iso(times: pd.Series | pd.DatetimeIndex) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(times).strftime("%Y-%m-%dT%H:%M:%SZ"))


def write_scenario(
    directory: Path | str,
    *,
    net: Any,
    points: pd.DataFrame,
    telemetry: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a scenario directory: `points` indexed by point name, `telemetry` wide (time × point)."""
    import pandapower as pp

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    pp.to_json(net, str(path / NETWORK_FILE))
    pts = points.reset_index().rename(columns={"index": "point"})[POINTS_COLUMNS]
    pts.to_csv(path / POINTS_FILE, index=False)
    long = telemetry.rename_axis("time").reset_index().melt(id_vars="time", var_name="point", value_name="value")
    long = long.sort_values(["time", "point"], kind="stable")
    long["time"] = _iso(long.time).to_numpy()
    long.to_csv(path / TELEMETRY_FILE, index=False, compression={"method": "gzip", "compresslevel": 6, "mtime": 0})
    if labels is not None:
        write_labels(path / LABELS_FILE, labels)
    if meta is not None:
        (path / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def write_labels(path: Path, labels: pd.DataFrame) -> None:
    out = labels[LABELS_COLUMNS].copy()
    out["start"], out["end"] = _iso(out.start).to_numpy(), _iso(out.end).to_numpy()
    out.to_csv(path, index=False)


def write_alarms(path: Path, alarms: pd.DataFrame) -> None:
    out = alarms[ALARMS_COLUMNS].copy()
    out["start"], out["end"] = _iso(out.start).to_numpy(), _iso(out.end).to_numpy()
    out.to_csv(path, index=False)
