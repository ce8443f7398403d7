"""Read what is true now from the historian: the newest estimate (only while it is fresh), the
breaker and switch positions the devices report, and how each bus's value is known.

A stale or missing estimate yields NaN everywhere (drawn as "no estimate"), never a believable
1.00 pu; the caller says how old the last estimate is."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pandapower as pp

from gridmodel.measurements import from_points
from gridverse.config import Settings
from gridverse.elements import ElementKind, ElementRef
from gridverse.historian import Historian, HistorianError
from gridverse.points import TELEMETRY, Point
from gridverse.points import Quality as PointQuality
from gridverse.schema import SIM_CLOCK, TWIN_BRANCH, TWIN_BUS, TWIN_CYCLE
from ui.panorama.classify import LiveState, Quality
from ui.panorama.layout import GridLayout

_LOOKBACK_NS = 24 * 3600 * 10**9  # how far back to look for the newest estimate


@dataclass(frozen=True)
class Snapshot:
    state: LiveState
    now_ns: int
    estimate_ns: int | None  # the newest estimate's time (whether fresh or not); None: none in 24 h
    fresh: bool  # the estimate is recent enough to show its values
    sim_ns: int | None  # the field simulator's clock at the estimate, when a simulator runs
    problem: str  # why nothing (or not everything) is shown; "" when all is well
    stale_after_s: float


def stale_after_s(settings: Settings) -> float:
    """An estimate older than this is not shown as live: three missed twin cycles, at least the
    twin's own staleness limit for readings."""
    return max(3 * settings.twin.interval_s, settings.twin.stale_after_s)


def _end_bus(net: pp.pandapowerNet, element: ElementRef) -> int | None:
    if element.kind == ElementKind.BUS:
        return element.index
    if element.kind == ElementKind.SWITCH:
        return int(net.switch.at[element.index, "bus"]) if element.index in net.switch.index else None
    table = net.line if element.kind == ElementKind.LINE else net.trafo
    if element.index not in table.index:
        return None
    column = {"from": "from_bus", "to": "to_bus", "hv": "hv_bus", "lv": "lv_bus"}[
        element.side or ("from" if element.kind == ElementKind.LINE else "lv")
    ]
    return int(table.at[element.index, column])


_ESTIMATES: dict[tuple[int, int, str, int], tuple[np.ndarray, np.ndarray]] = {}
_ESTIMATES_LOCK = threading.Lock()


def _estimate(
    historian: Historian, layout: GridLayout, site: str, t: int, since: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Voltage per bus and loading per branch of the estimate at `t`, read once per estimate and
    shared by every session and refresh (decoding 20,000 rows of a large grid takes about a second).
    The twin writes its state with a deadband: the estimate is the newest row of each bus and
    branch in [since, t], `since` being the cycle's `state_since_ns` (gridmodel/writer.py)."""
    since = t if since is None else since
    key = (id(historian), id(layout), site, t)
    with _ESTIMATES_LOCK:
        hit = _ESTIMATES.get(key)
    if hit is not None:
        return hit
    tags = {"site": site}
    vm = np.full(len(layout.bus), np.nan)
    loading = np.full(len(layout.branch_kind), np.nan)
    bus_pos = {int(b): i for i, b in enumerate(layout.bus)}
    for r in historian.latest(TWIN_BUS, tags=tags, start_ns=since, end_ns=t):
        i = bus_pos.get(int(r.tags["bus"]))
        if i is not None and "vm_pu" in r.fields:
            vm[i] = float(r.fields["vm_pu"])
    branch_pos = {(k, int(i)): p for p, (k, i) in enumerate(zip(layout.branch_kind, layout.branch_index, strict=True))}
    for r in historian.latest(TWIN_BRANCH, tags=tags, start_ns=since, end_ns=t):
        p = branch_pos.get((r.tags.get("kind", ""), int(r.tags["index"])))
        if p is not None and "loading_percent" in r.fields:
            loading[p] = float(r.fields["loading_percent"])
    with _ESTIMATES_LOCK:
        if len(_ESTIMATES) >= 4:  # the newest few estimates are all anyone looks at
            _ESTIMATES.pop(next(iter(_ESTIMATES)))
        _ESTIMATES[key] = (vm, loading)
    return vm, loading


def read_snapshot(
    settings: Settings,
    historian: Historian,
    net: pp.pandapowerNet,
    layout: GridLayout,
    *,
    n1: dict[tuple[str, int], str] | None = None,
    now_ns: int | None = None,
) -> Snapshot:
    """The live state of every element for the panoramic view."""
    now = time.time_ns() if now_ns is None else now_ns
    site = settings.site.name
    tags = {"site": site}
    n_bus, n_branch = len(layout.bus), len(layout.branch_kind)
    vm = np.full(n_bus, np.nan)
    loading = np.full(n_branch, np.nan)
    branch_in_service = layout.branch_in_service.copy()
    switch_closed = layout.switch_normally_closed.copy()
    quality = np.full(n_bus, Quality.NONE.value, dtype=object)
    limit_s = stale_after_s(settings)
    problem = ""
    estimate_ns = sim_ns = None
    fresh = False
    try:
        cycles = historian.latest(TWIN_CYCLE, tags=tags, start_ns=now - _LOOKBACK_NS)
        if cycles:
            cycle = cycles[0]
            estimate_ns = cycle.time_ns
            fresh = now - estimate_ns <= limit_s * 1e9
            if not int(cycle.fields.get("converged", 1)):
                problem = f"the twin's last cycle failed: {cycle.fields.get('error', '')}"
                fresh = False
            elif fresh:
                since = int(cycle.fields.get("state_since_ns", estimate_ns))
                vm, loading = _estimate(historian, layout, site, estimate_ns, since)
                vm, loading = vm.copy(), loading.copy()
            clock = historian.latest(SIM_CLOCK, tags=tags, start_ns=estimate_ns - 60 * 10**9, end_ns=estimate_ns)
            if clock:
                ahead = (estimate_ns - clock[0].time_ns) * settings.simulator.speed  # clock written each step
                sim_ns = int(clock[0].fields["sim_time_ns"]) + int(ahead)
        readings = historian.latest(TELEMETRY, tags=tags, start_ns=now - 3600 * 10**9)
    except HistorianError as exc:
        return Snapshot(
            LiveState(vm, loading, branch_in_service, switch_closed, quality, {}),
            now,
            None,
            False,
            None,
            f"the historian cannot be read: {exc}",
            limit_s,
        )

    points = [Point.from_record(r) for r in readings]
    fresh_points = {(p.device, p.name): p for p in points if now - p.time_ns <= settings.twin.stale_after_s * 1e9}
    mset = from_points(net, settings.site, settings.profiles, settings.twin, fresh_points)
    sw_pos = {int(s): i for i, s in enumerate(layout.switch_index)}
    for idx, closed in mset.switch_states.items():
        if idx in sw_pos:
            switch_closed[sw_pos[idx]] = closed
    for kind, opened in (("line", mset.open_lines), ("trafo", mset.open_trafos)):
        et = "l" if kind == "line" else "t"
        for idx in opened:  # a breaker reported open: its switch in the model, else the branch itself
            candidates = np.flatnonzero((layout.switch_et == et) & (layout.switch_branch >= 0))
            on_it = [
                int(s)
                for s in candidates
                if layout.branch_index[layout.switch_branch[s]] == idx
                and layout.branch_kind[layout.switch_branch[s]] == kind
            ]
            if on_it:
                switch_closed[on_it[0]] = False
            else:
                branch_in_service[(layout.branch_kind == kind) & (layout.branch_index == idx)] = False

    if fresh:
        quality[np.isfinite(vm)] = Quality.ESTIMATED.value
    by_device: dict[str, list[Point]] = {}
    for p in points:
        by_device.setdefault(p.device, []).append(p)
    bus_pos = {int(b): i for i, b in enumerate(layout.bus)}
    for sub in settings.site.substations:
        for dev in sub.devices:
            if dev.element is None:
                continue
            bus = _end_bus(net, dev.element)
            if bus is None or bus not in bus_pos:
                continue
            mine = by_device.get(dev.name, [])
            good = [
                p
                for p in mine
                if p.quality is PointQuality.GOOD and now - p.time_ns <= settings.twin.stale_after_s * 1e9
            ]
            i = bus_pos[bus]
            if good:
                quality[i] = Quality.MEASURED.value
            elif quality[i] != Quality.MEASURED.value:
                quality[i] = Quality.STALE.value  # its device is silent, old or bad: the estimate guesses here

    if estimate_ns is None and not problem:
        problem = "no state estimate in the last 24 h: is the stack running (`gridverse demo`)?"
    elif not fresh and not problem:
        problem = f"the newest estimate is older than {limit_s:.0f} s: the twin is not running or cannot keep up"
    n1_pos: dict[int, str] = {}
    if n1:
        for pos, (k, i) in enumerate(zip(layout.branch_kind, layout.branch_index, strict=True)):
            text = n1.get((str(k), int(i)))
            if text:
                n1_pos[pos] = text
    state = LiveState(vm, loading, branch_in_service, switch_closed, quality, n1_pos)
    return Snapshot(state, now, estimate_ns, fresh, sim_ns, problem, limit_s)
