"""The twin page's last N-1 run, kept on disk beside the historian file so that the panoramic view
(another session, or after a restart) can badge the outages that would hurt."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class N1Run:
    time_ns: int  # wall clock of the run
    sim_time_ns: int | None  # the simulator's moment the loads were taken from
    seconds: float
    actor: str
    frame: pd.DataFrame  # gridmodel.contingency.n_minus_1's ranking, most severe first


def n1_path(historian_path: Path) -> Path:
    return Path(historian_path).parent / "n1_last.json"


def save_n1(path: Path, run: N1Run) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "time_ns": run.time_ns,
        "sim_time_ns": run.sim_time_ns,
        "seconds": run.seconds,
        "actor": run.actor,
        "rows": json.loads(run.frame.to_json(orient="records")),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".n1-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(doc, out)
    os.replace(tmp, path)


def load_n1(path: Path) -> N1Run | None:
    """The last run, or None when there is none (or the file is unreadable: it is only a cache)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return N1Run(
            int(doc["time_ns"]),
            None if doc.get("sim_time_ns") is None else int(doc["sim_time_ns"]),
            float(doc["seconds"]),
            str(doc.get("actor", "")),
            pd.DataFrame(doc["rows"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def consequence(row: dict) -> str:
    """What an outage would do, in an operator's words."""
    if not row.get("converged", True):
        return "power flow does not converge"
    parts = []
    mw = float(row.get("unsupplied_mw") or 0.0)
    buses = int(row.get("unsupplied_buses") or 0)
    if buses:
        parts.append(f"cuts {mw:.2f} MW at {buses} buses")
    if row.get("overloaded"):
        parts.append(f"overloads {row['overloaded']}")
    if int(row.get("voltage_violations") or 0):
        parts.append(f"{int(row['voltage_violations'])} buses outside the voltage band")
    if row.get("restored_by"):
        parts.append(f"re-fed by: {row['restored_by']}")
    return "; ".join(parts) or "no consequence"


def harmful(row: dict) -> bool:
    """Whether an outage needs the operator: no converging power flow, an overload, voltages out
    of the band, or load cut that no normally-open switch re-feeds (in a radial grid almost every
    outage cuts load for a moment; those a tie switch restores are not badged)."""
    if not row.get("converged", True):
        return True
    cut = int(row.get("unsupplied_buses") or 0) > 0 and not row.get("restored_by")
    return bool(cut or row.get("overloaded") or int(row.get("voltage_violations") or 0))


def critical_outages(run: N1Run | None) -> dict[tuple[str, int], str]:
    """(kind, index) → consequence, for every outage that is `harmful`."""
    if run is None or run.frame.empty:
        return {}
    out = {}
    for row in run.frame.to_dict(orient="records"):
        severity = row.get("severity")
        if severity is None or (isinstance(severity, float) and math.isnan(severity)) or not harmful(row):
            continue
        kind, _, index = str(row.get("outage", "")).partition(" ")
        if index.isdigit():
            out[(kind, int(index))] = consequence(row)
    return out
