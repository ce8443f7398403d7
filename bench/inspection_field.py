"""Inspection in the field: step render time and scan-to-twin registration.

    .venv/bin/python bench/inspection_field.py [--quick] [--trials N] [--points N] [--no-render]

Render: step views of the shipped `primary` substation at 640x480 through the render worker (one
long-lived Open3D ray-casting renderer in its own process), after one warm-up view; the median,
95th percentile and slowest of the timed views (each a different equipment and state: re-colour,
move the camera, render, label, write the PNG), and the geometries the renderer added or removed
(a scene is built once: none after the warm-up). When rendering fails, `render_error` says why.

Registration: simulated scans (ray-cast partial view from a random standpoint, 5 mm noise,
unknown pose within ±30° and ±2 m) of `--points` points (200,000 by default), registered with
`inspection.registration`; a trial succeeds when the translation error is ≤ 2 cm and the
rotation error ≤ 0.5°. Every other trial has one equipment displaced by 10 cm, which counts as
detected when it is flagged `moved`. `--quick`: 6 trials and 20 step views (under two minutes on
a quiet machine; the full run 20 trials and 100 views). JSON on the last line: `render_median_s`
(`render_p95_s`, `render_max_s`), `registration_success`,
`registration_p95_cm`, `registration_p95_deg`, `registration_s` (median seconds per scan),
`registration_p95_s`, `displaced_part_detected` (share of the displaced parts the scan saw that
were flagged `moved`; `displaced_part_detected_all` counts the unseen ones as missed), plus the
trial count and points.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from gridverse.settings import load_settings
from inspection.registration import model_cloud, register_scan
from inspection.scansim import pose_error, simulate_scan
from inspection.state import AssetState

SUBSTATION = "primary"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_render(settings, views: int) -> dict:
    """Step views through the render worker, each another equipment in another state (a state
    change re-colours the scene and moves the camera). Raises when no view could be timed."""
    from inspection.worker import RenderWorker

    cfg = settings.inspection.model_copy(update={"width": 640, "height": 480})
    assets = settings.assets[SUBSTATION]
    worker = RenderWorker(cfg, settings.assets)
    worker.start()
    states = list(AssetState)
    times = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(views + 1):
                asset = assets[(3 * i) % len(assets)]
                t0 = time.perf_counter()
                worker.render_step(
                    SUBSTATION, asset.name, states[i % len(states)], {"P": 1.0e6}, Path(tmp) / "s.png", timeout=120
                )
                took = time.perf_counter() - t0
                if i == 0 or took > 1.0 or i % 10 == 0:
                    say(f"step view {i} ({asset.name}): {took:.3f} s" + (" (warm-up)" if i == 0 else ""))
                if i:
                    times.append(took)
            stats = worker.stats()
    finally:
        worker.stop()
    if not times:
        raise RuntimeError("no step view was timed: ask for at least one view (--views)")
    return {
        "render_median_s": round(statistics.median(times), 4),
        "render_p95_s": round(float(np.percentile(times, 95)), 4),
        "render_max_s": round(max(times), 4),
        "render_views": len(times),
        "render_geometries_added": stats["geometries_added"],
        "render_geometries_removed": stats["geometries_removed"],
    }


def bench_registration(settings, trials: int, points: int) -> dict:
    assets = settings.assets[SUBSTATION]
    model = model_cloud(assets)
    register_scan(simulate_scan(assets, n_points=20_000, seed=999).cloud(), model)  # warm-up: model features
    errors_cm, errors_deg, seconds, ok = [], [], [], 0
    displaced, detected, displaced_all = 0, 0, 0
    ransac_won = 0  # trials whose global alignment came from FPFH + RANSAC (the others: the heading sweep)
    targets = [a.name for a in assets if a.kind.value in ("transformer", "breaker", "disconnector", "ct", "vt")]
    for i in range(trials):
        moved = targets[i % len(targets)] if i % 2 == 0 else None
        sim = simulate_scan(assets, n_points=points, seed=i, displace=moved, displacement_m=0.10)
        try:
            result = register_scan(sim.cloud(), model)
        except Exception as exc:  # a failed registration is a failed trial, not a crashed bench
            say(f"trial {i}: failed ({exc})")
            errors_cm.append(float("inf"))
            errors_deg.append(float("inf"))
            continue
        metres, degrees = pose_error(result.transform, sim.true_pose)
        errors_cm.append(100 * metres)
        errors_deg.append(degrees)
        seconds.append(result.seconds)
        good = metres <= 0.02 and degrees <= 0.5
        ransac_won += result.global_candidate == "fpfh_ransac"
        ok += good
        note = ""
        if moved is not None:
            seen = next(e for e in result.equipment if e.asset == moved)
            displaced_all += 1
            if seen.status != "not_seen":  # a part the scanner did not see cannot be judged
                displaced += 1
                detected += seen.status == "moved"
            note = f", displaced {moved}: {seen.status} ({seen.offset_m})"
        flagged = [e.asset for e in result.flagged if e.asset != moved]
        say(
            f"trial {i}: {100 * metres:.2f} cm, {degrees:.3f}°, {result.seconds:.2f} s, fitness {result.fitness:.3f}"
            f"{note}{', also flagged ' + ', '.join(flagged) if flagged else ''}{'' if good else '  OUT OF LIMITS'}"
        )
    return {
        "registration_trials": trials,
        "registration_points": points,
        "registration_success": round(ok / trials, 3),
        "registration_p95_cm": round(float(np.percentile(errors_cm, 95)), 3),
        "registration_p95_deg": round(float(np.percentile(errors_deg, 95)), 4),
        "registration_s": round(statistics.median(seconds), 3) if seconds else None,
        "registration_p95_s": round(float(np.percentile(seconds, 95)), 3) if seconds else None,
        "registration_fpfh_ransac_won": ransac_won,
        "displaced_part_detected": round(detected / displaced, 3) if displaced else None,
        "displaced_parts_seen": displaced,
        # of every displaced part, seen or not: a part the scan missed is not found either
        "displaced_parts": displaced_all,
        "displaced_part_detected_all": round(detected / displaced_all, 3) if displaced_all else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--views", type=int, default=None)
    parser.add_argument("--no-render", action="store_true")
    args = parser.parse_args()
    trials = args.trials or (6 if args.quick else 20)
    views = args.views or (20 if args.quick else 100)
    settings = load_settings()
    out: dict = {"cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    out.update(bench_registration(settings, trials, args.points))
    if args.no_render:
        out["render_median_s"] = None
        out["render_error"] = "not measured: --no-render"
    else:
        try:
            out.update(bench_render(settings, views))
        except Exception as exc:  # a failed or timed-out render: the registration figures still count
            say(f"rendering failed: {exc}")
            out["render_median_s"] = None
            out["render_error"] = f"{type(exc).__name__}: {exc}"
    out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
