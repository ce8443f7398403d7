"""A synthetic twin cycle for a network, written to a historian: lets the benches and tests draw the
panoramic view of a grid (up to the 10,458-bus SimBench one) without running the whole stack.

Values are plausible, not physical: voltages around 1.0 pu with a few buses outside the band, a
few lines near and over their limit; buses the normal switching state leaves unsupplied get none."""

from __future__ import annotations

import time

import numpy as np
import pandapower as pp

from gridverse.historian import Historian
from gridverse.points import Record
from gridverse.schema import SIM_CLOCK, TWIN_BRANCH, TWIN_BUS, TWIN_CYCLE
from ui.panorama.layout import build_layout, energised


def synthetic_cycle(
    net: pp.pandapowerNet, site: str, *, time_ns: int | None = None, seed: int = 1, sim_time_ns: int | None = None
) -> list[Record]:
    """One twin cycle's records (cycle, every energised bus, every energised line and trafo)."""
    t = time.time_ns() if time_ns is None else time_ns
    rng = np.random.default_rng(seed)
    layout = build_layout(net)
    live = energised(layout, layout.branch_in_service, layout.switch_normally_closed)
    tags = {"site": site}
    vm = 1.0 + rng.normal(0.0, 0.012, len(layout.bus))
    outside = rng.choice(len(vm), size=max(1, len(vm) // 200), replace=False)
    vm[outside[::2]] = 1.06 + rng.uniform(0, 0.01, len(outside[::2]))
    vm[outside[1::2]] = 0.94 - rng.uniform(0, 0.01, len(outside[1::2]))
    loading = rng.uniform(5, 60, len(layout.branch_kind))
    hot = rng.choice(len(loading), size=max(2, len(loading) // 300), replace=False)
    loading[hot[::2]] = rng.uniform(92, 99, len(hot[::2]))
    loading[hot[1::2]] = rng.uniform(101, 130, len(hot[1::2]))
    records = [
        Record(
            TWIN_CYCLE,
            tags,
            {"converged": 1, "engine": "synthetic", "estimate_s": 0.0, "measurements": 0, "error": "", "suspects": 0},
            t,
        )
    ]
    records += [
        Record(TWIN_BUS, {**tags, "bus": str(int(b))}, {"vm_pu": float(v), "va_degree": 0.0}, t)
        for b, v, on in zip(layout.bus, vm, live, strict=True)
        if on
    ]
    branch_live = live[layout.branch_from] & live[layout.branch_to] & layout.branch_in_service
    records += [
        Record(TWIN_BRANCH, {**tags, "kind": str(k), "index": str(int(i))}, {"loading_percent": float(v)}, t)
        for k, i, v, on in zip(layout.branch_kind, layout.branch_index, loading, branch_live, strict=True)
        if on
    ]
    if sim_time_ns is not None:
        records.append(Record(SIM_CLOCK, tags, {"sim_time_ns": int(sim_time_ns)}, t))
    return records


def write_synthetic_cycle(historian: Historian, net: pp.pandapowerNet, site: str, **kwargs) -> int:
    """Write one synthetic cycle; returns its time (ns)."""
    records = synthetic_cycle(net, site, **kwargs)
    historian.write(records)
    return records[0].time_ns
