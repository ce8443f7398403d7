"""Anomaly lab quality: train on scenarios of one SimBench grid, test on other SimBench grids the
models never saw, and print side by side today's rule detectors, a plain IsolationForest on raw
values and the lab's pipeline, with the event-level figures of `anomaly.evaluate`.

    .venv/bin/python bench/anomaly_quality.py [--quick] [--work DIR]

- rules: the live rules adapted to a scenario (voltage band of the violation rule, stuck after
  `anomaly.stuck_after_samples` identical readings, comm-fail on a missing sample), each alarm
  cleared after `anomaly.clear_after` samples without its condition, as the alarm book does;
- isolation_forest: scikit-learn's IsolationForest on the raw values of all points at each time
  (columns scaled by their median and IQR), fitted on each test scenario itself (it cannot move
  from one grid's columns to another's, so it is given that advantage), alarm naming the point
  farthest from its median;
- pipeline: `anomaly.pipeline.LabPipeline` with its default parameters fitted on the training
  grid's train split (--physics / --no-physics sets its per-step state estimate; the JSON says
  `pipeline_physics`).

Each test grid is evaluated over its whole generated period (its train, validation and test
splits: the models never saw any of it). Full mode: 4 weeks of the training grid (the pipeline
fits on its first 60 %, the train split), 4 weeks of each test grid; --quick: 6 days of the
training grid and 3 of each test grid, a smoke run (about 90 s on this 2-core machine with the
sets generated, side by side, into --work; 30 s once they exist: later runs reuse them). Prints
progress and one JSON
object on its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly.config import AnomalyConfig
from anomaly.dataset import ALARMS_COLUMNS, Scenario, read_scenario
from anomaly.evaluate import evaluate_scenario, pool

TRAIN_GRID = "1-LV-rural1--0-sw"
TEST_GRIDS = ("1-LV-rural2--0-sw", "1-LV-semiurb4--0-sw")
SPLITS = ("train", "validation", "test")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ baselines


def _runs(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """(column, first, last) of each run of True in a (time, column) mask."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1]), dtype=np.int8)
    padded[1:-1] = mask
    change = np.diff(padded, axis=0)
    out = []
    for col in range(mask.shape[1]):
        starts = np.flatnonzero(change[:, col] == 1)
        ends = np.flatnonzero(change[:, col] == -1) - 1
        out += [(col, int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
    return out


def _rows(scenario: Scenario, mask: np.ndarray, kind: str, score: np.ndarray | None = None) -> list[tuple]:
    index, cols = scenario.telemetry.index, list(scenario.telemetry.columns)
    pts = scenario.points
    rows = []
    for col, first, last in _runs(mask):
        p = pts.loc[cols[col]]
        s = 1.0 if score is None else float(np.nanmax(score[first : last + 1, col]))
        rows.append((index[first], index[last], kind, cols[col], p.element_type, int(p.element), s))
    return rows


def _held(cond: np.ndarray, clear_after: int) -> np.ndarray:
    """The alarm book's hysteresis: raised while the condition holds, cleared after `clear_after` samples without."""
    out = cond.copy()
    for k in range(1, clear_after):
        out[k:] |= cond[:-k]
    return out


def rule_alarms(scenario: Scenario, config: AnomalyConfig | None = None) -> pd.DataFrame:
    """Today's live rules run sample by sample over a scenario: voltage band, stuck, comm-fail."""
    config = config or AnomalyConfig()
    x = scenario.telemetry.to_numpy(dtype=float)
    quantity = scenario.points.loc[scenario.telemetry.columns, "quantity"].to_numpy()
    lo, hi = config.voltage_band_pu
    band = np.zeros_like(x, dtype=bool)
    v = quantity == "v_pu"
    with np.errstate(invalid="ignore"):
        band[:, v] = (x[:, v] < lo) | (x[:, v] > hi)
    same = np.zeros_like(x, dtype=bool)
    same[1:] = x[1:] == x[:-1]
    run = np.zeros_like(x, dtype=np.int32)
    for t in range(1, len(x)):
        run[t] = np.where(same[t], run[t - 1] + 1, 0)
    stuck = run >= config.stuck_after_samples - 1
    missing = np.isnan(x)
    rows = []
    for kind, cond in (("limit", band), ("stuck", stuck), ("comm_fail", missing)):
        rows += _rows(scenario, _held(cond, config.clear_after), kind)
    return pd.DataFrame(rows, columns=ALARMS_COLUMNS)


def iforest_alarms(scenario: Scenario, seed: int = 0) -> pd.DataFrame:
    """A plain IsolationForest on the raw values at each time, fitted on the scenario itself."""
    from sklearn.ensemble import IsolationForest

    frame = scenario.telemetry.ffill().bfill()
    frame = frame.fillna(0.0)
    median = frame.median()
    iqr = (frame.quantile(0.75) - frame.quantile(0.25)).replace(0.0, np.nan).fillna(1e-9)
    z = ((frame - median) / iqr).to_numpy()
    forest = IsolationForest(n_estimators=100, random_state=seed).fit(z)
    flagged = forest.predict(z) == -1
    score = -forest.score_samples(z)
    worst = np.abs(z).argmax(axis=1)
    mask = np.zeros_like(z, dtype=bool)
    mask[np.flatnonzero(flagged), worst[flagged]] = True
    return pd.DataFrame(
        _rows(scenario, mask, "isolation_forest", np.repeat(score[:, None], z.shape[1], 1)), columns=ALARMS_COLUMNS
    )


# ------------------------------------------------------------------ scenarios


def scenario_set(
    code: str, days: float, seed: int, start_day: int, work: Path, smart_meter_gen_kw: float = 7.0
) -> dict[str, Path]:
    """OUT/{train,validation,test} for a grid, generated once and reused while the parameters match.
    `smart_meter_gen_kw`: generators above it report their P (0: none below 1 MW do)."""
    from anomaly.scenarios.generator import ScenarioParams, generate

    smart = None if smart_meter_gen_kw <= 0 else smart_meter_gen_kw / 1000.0
    out = work / (
        f"{code}-d{days:g}-s{seed}-start{start_day}" + ("" if smart == 0.007 else f"-sm{smart_meter_gen_kw:g}")
    )
    marker = out / "test" / "scenario.json"
    params = ScenarioParams(grid=code, days=days, seed=seed, start_day=start_day, smart_meter_gen_mw=smart)
    wanted = json.loads(json.dumps(dataclasses.asdict(params)))  # tuples as lists, as the file has them
    stored = json.loads(marker.read_text()).get("params", {}) if marker.exists() else None
    if stored is not None and all(stored.get(k) == v for k, v in wanted.items()):
        say(f"{code}: reusing {out}")
    else:
        if stored is not None:
            say(f"{code}: {out} was made with other parameters (or an older generator); making it again")
        say(f"{code}: generating {days:g} days (seed {seed}) into {out}")
        t0 = time.perf_counter()
        generate(params, out)
        say(f"{code}: generated in {time.perf_counter() - t0:.0f} s")
    return {s: out / s for s in SPLITS}


def figures(pooled: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "f1",
        "precision",
        "recall",
        "median_delay_samples",
        "p90_delay_samples",
        "false_alarms_per_day",
        "clean_time_in_alarm",
        "localisation",
        "labels",
        "found",
        "alarm_events",
        "false_alarm_events",
        "days",
    )
    out = {k: pooled[k] for k in keys}
    out["recall_by_type"] = {k: round(v["recall"], 3) for k, v in pooled["recall_by_type"].items()}
    out["alarm_load"] = pooled["alarm_load"]
    return out


def _fmt(v: Any) -> str:
    return "   n/a" if v is None else f"{v:6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("var/bench/anomaly"), help="scenario cache")
    parser.add_argument("--train-grid", default=TRAIN_GRID)
    parser.add_argument("--test-grids", nargs="+", default=list(TEST_GRIDS))
    parser.add_argument("--train-days", type=float, default=None)
    parser.add_argument("--test-days", type=float, default=None)
    parser.add_argument("--grace", type=int, default=2)
    parser.add_argument(
        "--smart-meter-gen-kw",
        type=float,
        default=7.0,
        help="the metering plan: generators above this many kW report their 15-minute P (default 7, Germany's "
        "MsbG; 0: only generators of 1 MW and more, the plan of stop 18)",
    )
    parser.add_argument(
        "--physics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the pipeline's physics detector (a state estimate per step; default: the pipeline's own default)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    train_days = args.train_days or (6.0 if args.quick else 28.0)
    test_days = args.test_days or (3.0 if args.quick else 28.0)
    mode = "quick" if args.quick else "full"
    t_start = time.perf_counter()

    smart = args.smart_meter_gen_kw
    plans = [(args.train_grid, train_days, 1, 150)] + [
        (code, test_days, 100 + k, 170) for k, code in enumerate(args.test_grids)
    ]
    # the sets are made side by side on the machine's cores (a power flow per step is one core's work)
    with ProcessPoolExecutor(max_workers=max(1, min(len(plans), os.cpu_count() or 1))) as pool_:
        made = list(pool_.map(scenario_set, *zip(*plans, strict=True), repeat(args.work), repeat(smart)))
    train_set = made[0]
    tests = dict(zip(args.test_grids, made[1:], strict=True))

    pipeline = None
    train_s = None
    pipeline_physics = None
    try:
        from anomaly.pipeline import LabPipeline
    except ImportError as exc:
        say(f"pipeline: not available ({exc}); only the baselines are run")
        LabPipeline = None
    if LabPipeline is not None:
        train = [read_scenario(train_set["train"])]
        say(f"training the lab pipeline on {args.train_grid} train split ({len(train[0].telemetry)} samples)")
        t0 = time.perf_counter()
        last = [-1.0]

        def progress(*a: Any, **_: Any) -> None:
            nums = [x for x in a if isinstance(x, int | float)]
            frac = nums[0] / nums[1] if len(nums) >= 2 and nums[1] else (nums[0] if nums else 0.0)
            if frac - last[0] >= 0.1 or frac >= 1.0:
                last[0] = frac
                say(f"  training {frac * 100:.0f}%")

        pipeline = LabPipeline() if args.physics is None else LabPipeline(physics=args.physics)
        pipeline_physics = bool(pipeline.physics)
        pipeline.fit(train, progress=progress)
        train_s = time.perf_counter() - t0
        say(f"trained in {train_s:.1f} s")

    detectors: dict[str, Any] = {"rules": rule_alarms, "isolation_forest": iforest_alarms}
    if pipeline is not None:
        detectors["pipeline"] = pipeline.detect
    result: dict[str, Any] = {
        "mode": mode,
        "train_grid": args.train_grid,
        "train_days": train_days,
        "test_days": test_days,
        "grace_samples": args.grace,
        "smart_meter_gen_kw": smart,
        "pipeline_physics": pipeline_physics,
        "train_s": train_s,
        "grids": {},
    }
    scored_samples, scored_s = 0, 0.0
    for code, dirs in tests.items():
        scenarios = [read_scenario(d) for d in dirs.values()]
        grid: dict[str, Any] = {"detectors": {}}
        for name, detect in detectors.items():
            reports = []
            for scenario in scenarios:
                t0 = time.perf_counter()
                alarms = detect(scenario)
                seconds = time.perf_counter() - t0
                if name == "pipeline":
                    scored_samples += int(scenario.telemetry.size)
                    scored_s += seconds
                report = evaluate_scenario(scenario, alarms, grace_samples=args.grace)
                reports.append(report)
                if name == "pipeline" and report.events is not None and len(report.events):
                    missed = report.events[~report.events.found.astype(bool)]
                    for lab in missed.itertuples():
                        target = (
                            f"{lab.element_type} {lab.element}" if not lab.point or ";" in str(lab.point) else lab.point
                        )
                        say(
                            f"  missed {code} {scenario.meta.get('split', '')}: {lab.type} on {target} "
                            f"{lab.start}..{lab.end}"
                        )
            grid["detectors"][name] = figures(pool(reports))
            say(f"{code} {name}: done")
        main_one = grid["detectors"].get("pipeline") or {}
        for key in ("f1", "median_delay_samples", "false_alarms_per_day", "clean_time_in_alarm", "recall_by_type"):
            grid[key] = main_one.get(key)
        result["grids"][code] = grid

    result["samples_per_s"] = scored_samples / scored_s if scored_s else None
    say("")
    say(f"{'grid':<22} {'detector':<17} {'F1':>6} {'delay':>6} {'FA/day':>7} {'clean%':>7}  recall by type")
    for code, grid in result["grids"].items():
        for name, f in grid["detectors"].items():
            clean = None if f["clean_time_in_alarm"] is None else f["clean_time_in_alarm"] * 100
            fa = f["false_alarms_per_day"]
            say(
                f"{code:<22} {name:<17} {_fmt(f['f1'])} {_fmt(f['median_delay_samples'])} "
                f"{'   n/a' if fa is None else f'{fa:7.2f}'} {_fmt(clean)}  {f['recall_by_type']}"
            )
    result["seconds"] = time.perf_counter() - t_start
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
