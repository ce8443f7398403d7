"""Anomaly lab throughput: how many point-samples per second the statistical and learned
detectors score (features, robust statistics, IsolationForest, events), how long training takes,
and the physics detector's time per time step on the demo grid (and, in full mode, on the
10,458-bus SimBench grid), against real time (one step every 15 minutes).

    .venv/bin/python bench/anomaly_throughput.py [--quick] [--points N] [--days D]

The statistical part runs on synthetic telemetry (daily load shapes, meter noise) of N points:
full mode 1,000 points × 8 weeks (5.4 million point-samples), --quick 300 points × 2 weeks.
The physics part scores a short scenario made by `anomaly.scenarios` for each grid. Prints
progress and one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly.dataset import QUANTITY_UNITS, Scenario, read_scenario

DEMO_GRID = "1-MV-rural--1-sw"
BIG_GRID = "1-MVLV-urban-all-0-sw"
START = pd.Timestamp("2016-03-01", tz="UTC")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def synthetic(n_points: int, days: int, seed: int) -> Scenario:
    """Telemetry of `n_points` meters (voltages, powers, currents) with daily shapes and noise."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(START, periods=days * 96, freq="15min")
    hour = (np.arange(len(index)) % 96) / 4.0
    shape = 0.45 + 0.25 * np.exp(-(((hour - 8) / 1.8) ** 2)) + 0.45 * np.exp(-(((hour - 19) / 2.2) ** 2))
    kinds = [("v_pu", "bus", ""), ("p_mw", "line", "from"), ("q_mvar", "line", "from"), ("i_ka", "line", "from")]
    rows, columns = [], {}
    for k in range(n_points):
        quantity, element_type, side = kinds[k % len(kinds)]
        scale = rng.uniform(0.5, 2.0)
        if quantity == "v_pu":
            base, sigma = 1.0 + 0.02 * (1 - shape) * scale, 0.002
        else:
            base, sigma = scale * shape * (0.2 if quantity == "q_mvar" else 1.0), 0.005 * scale
        columns[f"P{k}"] = base * rng.uniform(0.9, 1.1, len(index)) ** 0.1 + rng.normal(0, sigma, len(index))
        rows.append((f"P{k}", element_type, k, side, quantity, QUANTITY_UNITS[quantity], sigma))
    points = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit", "sigma"])
    telemetry = pd.DataFrame(columns, index=index)
    return Scenario(Path("synthetic"), points.set_index("point"), telemetry, None)


def physics_per_step(code: str, steps: int, work: Path) -> dict[str, Any]:
    """The physics detector's seconds per time step on a short generated scenario of a grid."""
    from anomaly.detectors.lab.physics import PhysicsDetector
    from anomaly.scenarios.generator import ScenarioParams, generate

    out = work / f"{code}-physics"
    if not (out / "test" / "scenario.json").exists():
        say(f"{code}: generating {steps * 5} steps for the physics timing")
        generate(ScenarioParams(grid=code, days=steps * 5 / 96, seed=7, faults_per_week=0.0), out)
    scenario = read_scenario(out / "train")
    net = scenario.network()
    x = scenario.telemetry.iloc[:steps]
    detector = PhysicsDetector(network=net, points=scenario.points).fit(x)
    detector.residual_frame(x.iloc[:1])  # warm-up: numba and the estimator's structures
    t0 = time.perf_counter()
    detector.residual_frame(x)
    per_step = (time.perf_counter() - t0) / len(x)
    return {
        "buses": len(net.bus),
        "points": scenario.telemetry.shape[1],
        "steps": len(x),
        "s_per_step": per_step,
        "times_faster_than_real_time": 900.0 / per_step if per_step > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("var/bench/anomaly"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    n_points = args.points or (300 if args.quick else 1000)
    days = args.days or (14 if args.quick else 56)
    result: dict[str, Any] = {"mode": "quick" if args.quick else "full", "points": n_points, "days": days}

    from anomaly.pipeline import LabPipeline

    train = synthetic(min(n_points, 200), 14, seed=1)
    say(f"training the statistical and learned detectors on {train.telemetry.size} point-samples")
    t0 = time.perf_counter()
    pipeline = LabPipeline(physics=False).fit([train])
    result["train_s"] = time.perf_counter() - t0
    result["train_samples"] = int(train.telemetry.size)

    test = synthetic(n_points, days, seed=2)
    samples = int(test.telemetry.size)
    say(f"scoring {samples} point-samples ({n_points} points × {days} days)")
    t0 = time.perf_counter()
    pipeline.components(test)
    components_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    alarms = pipeline.detect(test)
    detect_s = time.perf_counter() - t0
    result.update(
        {
            "scored_samples": samples,
            "samples_per_s": samples / detect_s,
            "components_samples_per_s": samples / components_s,
            "detect_s": detect_s,
            "alarms_on_clean_synthetic": len(alarms),
        }
    )
    say(f"  {samples / detect_s:,.0f} point-samples/s end to end ({samples / components_s:,.0f}/s for the scores)")

    result["physics"] = {}
    grids = [(DEMO_GRID, 8 if args.quick else 48)] + ([] if args.quick else [(BIG_GRID, 4)])
    for code, steps in grids:
        try:
            result["physics"][code] = figures = physics_per_step(code, steps, args.work)
            say(f"  physics on {code}: {figures['s_per_step'] * 1000:.0f} ms per step ({figures['buses']} buses)")
        except Exception as exc:  # a bench reports what it could not measure instead of stopping
            result["physics"][code] = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"  physics on {code}: not measured ({type(exc).__name__}: {exc})")
    # flat keys for the physics detector's time per step: the demo grid and the 10,458-bus grid
    result["physics_step_s_demo"] = result["physics"].get(DEMO_GRID, {}).get("s_per_step")
    result["physics_step_s_10k"] = result["physics"].get(BIG_GRID, {}).get("s_per_step")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
