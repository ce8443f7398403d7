"""N-1 over every line and transformer of a SimBench medium-voltage grid, timed: each outage
is an AC power flow (pandapower Newton-Raphson); outages that cut supply also try each
normally-open switch that would re-feed the cut buses.

    .venv/bin/python bench/n1.py [--quick] [--code 1-MV-rural--1-sw]

Progress on stderr, one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridmodel.contingency import n_minus_1, power_flow
from gridmodel.network import apply_profiles, load_grid, profile_values
from gridverse.config import NetworkConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="same work (it is already quick)")
    parser.add_argument("--code", default="1-MV-rural--1-sw")
    parser.add_argument("--at", default="2016-01-15 18:00", help="profile moment (winter evening peak)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    grid = load_grid(NetworkConfig(simbench_code=args.code))
    net = grid.net
    apply_profiles(net, profile_values(grid.profiles, pd.Timestamp(args.at, tz="UTC")))
    power_flow(net)  # warm numba's compiled power flow, so the timing is of the N-1 itself
    t0 = time.perf_counter()
    base = power_flow(net)
    base_s = time.perf_counter() - t0

    def progress(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            print(f"[n1] {done}/{total} outages", file=sys.stderr, flush=True)

    frame, results, seconds = n_minus_1(net, progress=progress)
    cut = [r for r in results if r.summary.converged and r.summary.unsupplied_buses]
    restorable = [r for r in cut if r.restored_by and r.restored and not r.restored.unsupplied_buses]
    top = frame.head(5)[["outage", "severity", "unsupplied_mw", "max_loading_percent", "vm_min_pu", "restored_by"]]
    print(top.to_string(index=False), file=sys.stderr)
    figures = {
        "bench": "n1",
        "grid": args.code,
        "at": args.at,
        "buses": len(net.bus),
        "outages": len(results),
        "lines": int(net.line.in_service.sum()),
        "trafos": int(net.trafo.in_service.sum()),
        "seconds": round(seconds, 2),
        "ms_per_outage": round(1000 * seconds / max(len(results), 1), 1),
        "base_power_flow_ms": round(1000 * base_s, 1),
        "outages_cutting_supply": len(cut),
        "restorable_by_one_switch": len(restorable),
        "outages_with_overload": sum(bool(r.summary.overloaded) for r in results),
        "outages_with_voltage_violation": sum(bool(r.summary.voltage_violations) for r in results),
        "not_converged": sum(not r.summary.converged for r in results),
        "worst": frame.iloc[0]["outage"] if len(frame) else None,
        "base_case": {
            "max_loading_percent": round(base.max_loading_percent, 1),
            "vm_min_pu": round(base.vm_min_pu, 4),
            "vm_max_pu": round(base.vm_max_pu, 4),
        },
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
