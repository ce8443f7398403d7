"""The combiner: anomaly scores → alarm events an operator can act on (ISA-18.2 / EEMUA 191 style).

Per target (a point, or an element), a score series (higher = more anomalous) raises an event
when it stays at or above `high` for `on_delay` samples in a row, and clears it when it stays
below `low` (< `high`, the hysteresis band) for `off_delay` samples in a row. Between raise and
clear nothing is raised again, so a score that hovers around the threshold gives one event, not
a chattering alarm. The event starts at the sample that raised it (never backdated) and ends at
the sample that cleared it, as a live alarm would.

Vectorised: run lengths come from numpy; the Python loop runs once per event, not per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly.dataset import ALARMS_COLUMNS

#: the fault types an event can name (the label types of `anomaly/scenarios/faults/`)
EVENT_TYPES = (
    "stuck",
    "drift",
    "spike",
    "dropout",
    "bias",
    "line_outage",
    "overheating",
    "overvoltage",
    "pv_trip",
    "theft",
    "fdia",
)


@dataclass(frozen=True)
class Hysteresis:
    """Raise at ≥ `high` after `on_delay` samples; clear below `low` after `off_delay` samples."""

    high: float = 1.0
    low: float = 0.6
    on_delay: int = 1
    off_delay: int = 2

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"hysteresis: low ({self.low}) must not exceed high ({self.high})")
        if self.on_delay < 1 or self.off_delay < 1:
            raise ValueError(f"hysteresis: on_delay and off_delay must be ≥ 1 (got {self.on_delay}, {self.off_delay})")


def _run_length(flag: np.ndarray) -> np.ndarray:
    t = np.arange(len(flag))
    last_false = np.maximum.accumulate(np.where(~flag, t, -1))
    return t - last_false


def event_windows(score: np.ndarray, rule: Hysteresis) -> list[tuple[int, int]]:
    """(raise index, clear index) of each event of one score series; an event still active at the
    end of the series ends at its last index. NaN scores count as below `low` (no evidence)."""
    s = np.nan_to_num(np.asarray(score, dtype=float), nan=-np.inf)
    raises = np.flatnonzero(_run_length(s >= rule.high) == rule.on_delay)
    clears = np.flatnonzero(_run_length(s < rule.low) == rule.off_delay)
    out: list[tuple[int, int]] = []
    pos = 0
    while True:
        k = np.searchsorted(raises, pos)
        if k >= len(raises):
            break
        start = int(raises[k])
        j = np.searchsorted(clears, start, side="right")
        end = int(clears[j]) if j < len(clears) else len(s) - 1
        out.append((start, end))
        if j >= len(clears):
            break
        pos = end + 1
    return out


def combine(
    scores: pd.DataFrame,
    rule: Hysteresis,
    *,
    targets: pd.DataFrame,
    kinds: pd.DataFrame | None = None,
    contributions: pd.DataFrame | None = None,
    top: int = 3,
) -> pd.DataFrame:
    """Alarm events from a score frame (time × target column).

    `targets` (indexed by column) gives `point`, `element_type`, `element` of each column;
    `kinds` (same shape as scores) the fault type each sample's score points to (the event takes
    the type at its peak); `contributions` (time × point scores) names each event's top
    contributing measurements (the `contributing` column, beside ALARMS_COLUMNS)."""
    times = scores.index
    values = scores.to_numpy(dtype=float)
    kind_values = kinds.to_numpy() if kinds is not None else None
    contrib = contributions.to_numpy(dtype=float) if contributions is not None else None
    rows = []
    for c, column in enumerate(scores.columns):
        for start, end in event_windows(values[:, c], rule):
            window = values[start : end + 1, c]
            peak = start + int(np.nanargmax(window))
            kind = str(kind_values[peak, c]) if kind_values is not None else "anomaly"
            target = targets.loc[column]
            names = ""
            if contrib is not None and contributions is not None:
                strength = np.nanmax(np.nan_to_num(contrib[start : end + 1], nan=0.0), axis=0)
                order = np.argsort(-strength)[:top]
                names = ";".join(str(contributions.columns[k]) for k in order if strength[k] > 0)
            rows.append(
                {
                    "start": times[start],
                    "end": times[end],
                    "type": kind,
                    "point": target.point,
                    "element_type": target.element_type,
                    "element": target.element,
                    "score": float(np.nanmax(window)),
                    "contributing": names,
                }
            )
    out = pd.DataFrame(rows, columns=[*ALARMS_COLUMNS, "contributing"])
    if len(out):
        out["element"] = out.element.astype("Int64")
        out = out.sort_values(["start", "point"], kind="stable").reset_index(drop=True)
    return out
