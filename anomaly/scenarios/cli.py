"""`gridverse anomaly scenarios`: make a labelled scenario set from the simulator."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def cmd_scenarios(args: argparse.Namespace) -> int:
    """Simulate, inject faults, write OUT/train|validation|test; print one JSON summary line."""
    from tqdm import tqdm

    from anomaly.scenarios import ScenarioError, ScenarioParams, generate
    from gridmodel.network import NetworkLoadError

    params = ScenarioParams(
        grid=args.grid,
        days=args.days,
        start_day=args.start_day,
        seed=args.seed,
        step_minutes=args.step_minutes,
        faults_per_week=args.faults_per_week,
        kinds=tuple(args.kinds.split(",")) if args.kinds else (),
        smart_meter_gen_mw=None if args.smart_meter_gen_kw <= 0 else args.smart_meter_gen_kw / 1000.0,
    )
    print(f"loading {args.grid} ...", file=sys.stderr, flush=True)
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="step", desc="power flow", file=sys.stderr, disable=None)
        bar.update(done - bar.n)

    try:
        result = generate(params, args.out, progress=progress)
    except (ScenarioError, NetworkLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    counts: dict[str, int] = {}
    for fault in result.faults:
        counts[fault.kind] = counts.get(fault.kind, 0) + 1
    print(
        f"{len(result.faults)} faults ({', '.join(f'{k} {n}' for k, n in sorted(counts.items()))}) in "
        f"{result.seconds['total']:.0f} s; written to {', '.join(str(p) for p in result.splits.values())}",
        file=sys.stderr,
    )
    summary = {
        "out": str(result.out),
        "splits": {k: str(v) for k, v in result.splits.items()},
        "faults": counts,
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "notes": result.notes,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


def add_scenarios_command(asub: argparse._SubParsersAction) -> None:
    """`gridverse anomaly scenarios ...` under the anomaly lab's subcommands."""
    p = asub.add_parser("scenarios", help="labelled scenarios from the simulator (train/validation/test)")
    p.add_argument("--grid", required=True, metavar="CODE_OR_NETWORK_JSON", help="SimBench code or pandapower JSON")
    p.add_argument("--days", type=float, required=True, help="length of the whole scenario in days")
    p.add_argument("--start-day", type=int, default=0, help="day of the profile year to start at (0 = 1 January)")
    p.add_argument("--seed", type=int, default=0, help="seed of metering plan, faults, noise and attacks")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="writes DIR/train, DIR/validation, DIR/test")
    p.add_argument("--step-minutes", type=int, default=15, help="sampling step (default 15)")
    p.add_argument("--faults-per-week", type=float, default=8.0, help="mean number of faults per week (default 8)")
    p.add_argument("--kinds", default="", help="comma-separated fault kinds (default: every kind)")
    p.add_argument(
        "--smart-meter-gen-kw",
        type=float,
        default=7.0,
        help="generators above this many kW report their 15-minute P from a smart meter (default 7: Germany's "
        "MsbG § 29 (1) 2 plan; 0: none, only generators of 1 MW and more are telemetered)",
    )
    p.set_defaults(func=cmd_scenarios)
