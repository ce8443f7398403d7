"""Can the prescribed metering see a PV inverter trip or an energy theft at all? Per labelled trip
and theft of some scenario directories: the power the fault really moved (from the grid's own
SimBench profiles: the tripped unit's output over its window, or the theft's extra draw), the
feeder head that carries it, and how far the feeder detector's statistic rose over the window
against the threshold the lab pipeline learned on the clean samples of --train (its false-alarm
budget: `feeder_short` for a trip, `feeder_long` for a theft).

    .venv/bin/python bench/anomaly_observability.py [--quick] --train TRAIN_DIR DIR [DIR ...]

DIR is a scenario directory (train, validation or test of a set made by `gridverse anomaly
scenarios`); the preceding split, when there is one, is the warm-up history. Run it on the
training grid and on tuning grids, never to tune on a test grid. Prints one line per event and
one JSON object on its last line. --quick: the first DIR only.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly.dataset import Scenario, read_scenario
from anomaly.detectors.lab.feeder import feeder_heads, feeder_pv, feeder_residual
from anomaly.features import _rolling_median
from anomaly.pipeline import LabPipeline


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sgen_output(scenario: Scenario, sgen: int, start: pd.Timestamp, end: pd.Timestamp) -> float | None:
    """Mean output (MW) the unit would have made over the window, from the grid's SimBench profile."""
    from gridmodel.config import NetworkConfig
    from gridmodel.network import load_grid

    code = str(scenario.meta.get("grid", ""))
    try:
        data = load_grid(NetworkConfig(simbench_code=code))
    except Exception:
        return None
    profile = data.profiles.get(("sgen", "p_mw"))
    if profile is None or sgen not in profile.columns:
        return None
    year = pd.Timestamp(f"{start.year}-01-01", tz="UTC")
    first = int((start - year) / pd.Timedelta(minutes=15))
    last = int((end - year) / pd.Timedelta(minutes=15))
    return float(profile[sgen].to_numpy()[first : last + 1].mean())


def observe(path: Path, thresholds: dict[str, float]) -> list[dict[str, Any]]:
    scenario = read_scenario(path)
    if scenario.labels is None:
        return []
    net = scenario.network()
    telemetry = LabPipeline()._with_history(scenario)
    offset = len(telemetry) - len(scenario.telemetry)
    heads = feeder_heads(scenario.points, list(telemetry.columns))
    if not heads:
        return []
    pv = feeder_pv(net, scenario.points, heads)
    z = feeder_residual(telemetry[heads], scenario.points.loc[heads, "sigma"].to_numpy(dtype=float), pv)[offset:]
    short = _rolling_median(z, 4)
    index = scenario.telemetry.index
    faults = {(f["type"], f["start"]): f for f in scenario.meta.get("faults", [])}
    from anomaly.evaluate import Topology

    topology = Topology(net, scenario.points)
    out = []
    for lab in scenario.labels.itertuples():
        if lab.type not in ("pv_trip", "theft"):
            continue
        feeder = topology.feeder((str(lab.element_type), int(lab.element)))
        mine = [k for k, h in enumerate(heads) if int(scenario.points.at[h, "element"]) in _lines_on(net, feeder)]
        window = (index >= lab.start) & (index <= lab.end)
        fault = faults.get((lab.type, lab.start.strftime("%Y-%m-%dT%H:%M:%SZ")), {})
        if lab.type == "theft":
            moved = float(fault.get("params", {}).get("extra_mw", np.nan))
            stat = np.array([np.nanmean(np.clip(z[window, k], -6.0, 6.0)) for k in mine]) if mine else np.array([])
            limit = thresholds["feeder_long"]
        else:
            moved = _sgen_output(scenario, int(lab.element), lab.start, lab.end) or float("nan")
            stat = np.array([np.nanmax(short[window, k]) for k in mine]) if mine else np.array([])
            limit = thresholds["feeder_short"]
        row = {
            "scenario": str(path),
            "type": lab.type,
            "element": int(lab.element),
            "start": str(lab.start),
            "hours": round((lab.end - lab.start) / pd.Timedelta(hours=1) + 0.25, 2),
            "moved_kw": round(moved * 1000, 2),
            "feeder_head": heads[mine[0]] if mine else None,
            "feeder_pv_kw": round(float(pv[mine[0]]) * 1000, 1) if mine else None,
            "peak": round(float(stat.max()), 2) if len(stat) else None,
            "threshold": round(limit, 2),
        }
        row["above_threshold"] = row["peak"] is not None and row["peak"] >= limit
        out.append(row)
    return out


def _lines_on(net: Any, buses: set[int]) -> set[int]:
    return {int(i) for i, r in net.line.iterrows() if int(r.from_bus) in buses or int(r.to_bus) in buses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--train", type=Path, required=True, help="scenario the thresholds are learned on")
    parser.add_argument("dirs", nargs="+", type=Path)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    pipeline = LabPipeline().fit([read_scenario(args.train)])
    thresholds = pipeline.feeder_thresholds_
    say(f"feeder thresholds learned on {args.train}: {thresholds}")
    rows: list[dict[str, Any]] = []
    for path in args.dirs[:1] if args.quick else args.dirs:
        for row in observe(path, thresholds):
            say(
                f"{row['type']:<8} {row['element']:>4} {row['start'][:16]} {row['hours']:>5} h  moved "
                f"{row['moved_kw']:>6} kW on {row['feeder_head']} (PV {row['feeder_pv_kw']} kW): peak "
                f"{row['peak']} vs threshold {row['threshold']}"
            )
            rows.append(row)
    summary: dict[str, Any] = {}
    for kind in ("pv_trip", "theft"):
        mine = [r for r in rows if r["type"] == kind]
        above = [r for r in mine if r["above_threshold"]]
        summary[kind] = {
            "events": len(mine),
            "above_threshold": len(above),
            "moved_kw_median": float(np.nanmedian([r["moved_kw"] for r in mine])) if mine else None,
            "moved_kw_median_above": float(np.nanmedian([r["moved_kw"] for r in above])) if above else None,
            "moved_kw_median_below": (
                float(np.nanmedian([r["moved_kw"] for r in mine if not r["above_threshold"]]))
                if len(above) < len(mine)
                else None
            ),
        }
    print(json.dumps({"events": rows, "summary": summary}, default=str))


if __name__ == "__main__":
    main()
