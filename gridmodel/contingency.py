"""Power flow, what-if switching and N-1 contingency ranking (pandapower Newton-Raphson).

Each outage is run on the network as it is (the latest estimate's loads, or profiles), and
ranked by what an operator must act on first: load left without supply, then overloads, then
voltages outside the band. In a radial grid most single outages cut supply, so for those the
ranking also tries closing each normally-open switch that would re-feed the cut buses and
reports the best one.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandapower as pp
import pandas as pd


class PowerFlowError(Exception):
    """The power flow did not converge for this switching state; the message names it."""


@dataclass(frozen=True)
class FlowSummary:
    converged: bool
    max_loading_percent: float
    overloaded: list[str]
    vm_min_pu: float
    vm_max_pu: float
    voltage_violations: list[str]
    unsupplied_buses: list[int]
    unsupplied_mw: float
    overload_excess_percent: float = 0.0  # Σ loading above the limit, percentage points
    voltage_excess_pu: float = 0.0  # Σ distance outside the voltage band


@dataclass(frozen=True)
class ContingencyResult:
    outage: str  # "line 12" / "trafo 0"
    summary: FlowSummary
    severity: float
    restored_by: str | None = None  # "close switch 31" when that re-feeds the cut load cleanly
    restored: FlowSummary | None = None
    extra: dict = field(default_factory=dict)

    def row(self) -> dict:
        s = asdict(self.summary)
        return {
            "outage": self.outage,
            "severity": round(self.severity, 3),
            **{
                "converged": s["converged"],
                "unsupplied_mw": round(s["unsupplied_mw"], 4),
                "unsupplied_buses": len(s["unsupplied_buses"]),
                "max_loading_percent": round(s["max_loading_percent"], 2),
                "overloaded": ", ".join(s["overloaded"]),
                "vm_min_pu": round(s["vm_min_pu"], 4),
                "vm_max_pu": round(s["vm_max_pu"], 4),
                "voltage_violations": len(s["voltage_violations"]),
                "restored_by": self.restored_by or "",
            },
        }


def _summarise(net: pp.pandapowerNet, band: tuple[float, float], limit: float) -> FlowSummary:
    vm = net.res_bus.vm_pu
    cut = vm.index[vm.isna() & net.bus.in_service].tolist()
    loads = net.load[net.load.in_service]
    unsupplied_mw = float(loads[loads.bus.isin(cut)].p_mw.clip(lower=0).sum())
    overloaded = []
    loading_max = excess = 0.0
    for kind in ("line", "trafo"):
        res = getattr(net, f"res_{kind}")
        if len(res):
            loading = res.loading_percent.fillna(0.0)
            loading_max = max(loading_max, float(loading.max()))
            over = loading[loading > limit]
            overloaded += [f"{kind} {i} ({v:.0f} %)" for i, v in over.items()]
            excess += float((over - limit).sum())
    live = vm.dropna()
    outside = live[(live < band[0]) | (live > band[1])]
    violations = [f"bus {b} ({v:.3f} pu)" for b, v in outside.items()]
    v_excess = float(np.maximum(band[0] - outside, outside - band[1]).sum())
    return FlowSummary(
        True,
        loading_max,
        overloaded,
        float(live.min()) if len(live) else np.nan,
        float(live.max()) if len(live) else np.nan,
        violations,
        [int(b) for b in cut],
        unsupplied_mw,
        excess,
        v_excess,
    )


def power_flow(net: pp.pandapowerNet, band: tuple[float, float] = (0.95, 1.05), limit: float = 100.0) -> FlowSummary:
    """Run an AC power flow on the network as it stands and summarise it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pp.runpp(net, init="auto", calculate_voltage_angles=True)
        except pp.LoadflowNotConverged as exc:
            raise PowerFlowError(f"power flow did not converge: {exc}") from exc
    return _summarise(net, band, limit)


def what_if(
    net: pp.pandapowerNet,
    *,
    open_switches: Iterable[int] = (),
    close_switches: Iterable[int] = (),
    out_of_service: Iterable[tuple[str, int]] = (),
    band: tuple[float, float] = (0.95, 1.05),
    limit: float = 100.0,
) -> FlowSummary:
    """The power flow after a switching action, on a copy; the network itself is not changed."""
    trial = copy.deepcopy(net)
    for s in open_switches:
        trial.switch.at[s, "closed"] = False
    for s in close_switches:
        trial.switch.at[s, "closed"] = True
    for kind, idx in out_of_service:
        getattr(trial, kind).at[idx, "in_service"] = False
    return power_flow(trial, band, limit)


def _severity(s: FlowSummary) -> float:
    if not s.converged:
        return 1e6
    # 1 MW cut ≙ 100 percentage points of overload ≙ 0.1 pu outside the band
    return 100.0 * s.unsupplied_mw + s.overload_excess_percent + 1000.0 * s.voltage_excess_pu


def _refeeding_switches(net: pp.pandapowerNet, cut: set[int]) -> list[int]:
    """Open switches with one side in the cut buses and the other side supplied."""
    out = []
    for idx, sw in net.switch[~net.switch.closed].iterrows():
        if sw.et == "l":
            line = net.line.loc[sw.element]
            ends = {int(line.from_bus), int(line.to_bus)}
            sides = {int(sw.bus)}, ends - {int(sw.bus)}
        elif sw.et == "b":
            sides = {int(sw.bus)}, {int(sw.element)}
        else:
            continue
        a, b = (bool(side & cut) for side in sides)
        if a != b:
            out.append(int(idx))
    return out


def n_minus_1(
    net: pp.pandapowerNet,
    *,
    kinds: tuple[str, ...] = ("line", "trafo"),
    band: tuple[float, float] = (0.95, 1.05),
    limit: float = 100.0,
    restore: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, list[ContingencyResult], float]:
    """Every single outage of an in-service line/transformer: a ranked table (most severe
    first), the full results, and the seconds it took."""
    t0 = time.perf_counter()
    work = copy.deepcopy(net)
    outages = [(k, int(i)) for k in kinds for i in getattr(work, k).index[getattr(work, k).in_service]]
    results = []
    for n, (kind, idx) in enumerate(outages):
        table = getattr(work, kind)
        table.at[idx, "in_service"] = False
        try:
            summary = power_flow(work, band, limit)
        except PowerFlowError:
            summary = FlowSummary(False, np.nan, [], np.nan, np.nan, [], [], np.nan)
        result = ContingencyResult(f"{kind} {idx}", summary, _severity(summary))
        if restore and summary.converged and summary.unsupplied_buses:
            result = _try_restore(work, result, band, limit)
        results.append(result)
        table.at[idx, "in_service"] = True
        if progress:
            progress(n + 1, len(outages))
    results.sort(key=lambda r: -r.severity)
    frame = pd.DataFrame([r.row() for r in results])
    return frame, results, time.perf_counter() - t0


def _try_restore(
    work: pp.pandapowerNet, result: ContingencyResult, band: tuple[float, float], limit: float
) -> ContingencyResult:
    best: tuple[float, int, FlowSummary] | None = None
    for sw in _refeeding_switches(work, set(result.summary.unsupplied_buses)):
        work.switch.at[sw, "closed"] = True
        try:
            trial = power_flow(work, band, limit)
        except PowerFlowError:
            trial = None
        work.switch.at[sw, "closed"] = False
        if trial is None:
            continue
        score = _severity(trial)
        if best is None or score < best[0]:
            best = (score, sw, trial)
    if best is None:
        return result
    return ContingencyResult(
        result.outage, result.summary, result.severity, f"close switch {best[1]}", best[2], {"severity_after": best[0]}
    )
