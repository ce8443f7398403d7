"""Numerical observability: which buses the telemetry alone determines, and what would restore
the rest.

The test uses the decoupled, linearised model (Monticelli & Wu, 1985): every branch has unit
admittance, a flow measurement (P, Q or I at either end) fixes the angle difference across its
branch, and an injection fixes the sum over the branches at its bus. A bus is observable when
its angle is fixed relative to the slack, i.e. its row of the null space of H is zero, and its
island of observable branches holds at least one voltage measurement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandapower as pp
import scipy.linalg as la
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from gridmodel.measurements import Measurement
from gridmodel.mfunc import CompiledMeasurements, Kind, compile_measurements
from gridmodel.ppcmodel import PpcModel

_FLOW_KINDS = {Kind.P_FROM, Kind.Q_FROM, Kind.P_TO, Kind.Q_TO, Kind.I_FROM, Kind.I_TO}
_INJECTION_KINDS = {Kind.P_BUS, Kind.Q_BUS}
_TOLERANCE = 1e-8
#: The dense null-space test is exact and fast up to a few thousand buses.
MAX_DENSE_BUSES = 4000


@dataclass(frozen=True)
class Observability:
    observable: list[int]  # pandapower buses
    unobservable: list[int]
    islands: list[list[int]]  # observable islands (pandapower buses), largest first

    @property
    def fully_observable(self) -> bool:
        return not self.unobservable


def _linear_rows(model: PpcModel, cm: CompiledMeasurements) -> tuple[sp.csr_matrix, set[int], set[int]]:
    """The decoupled H (angles of all buses), the branches with a flow measurement, the buses
    with a voltage measurement."""
    rows, cols, vals = [], [], []
    flow_branches: set[int] = set()
    v_buses: set[int] = set()
    seen_injection: set[int] = set()
    incident: list[list[int]] = [[] for _ in range(model.n_bus)]
    for b, (f, t) in enumerate(zip(model.f_bus, model.t_bus, strict=True)):
        incident[f].append(b)
        incident[t].append(b)
    r = 0
    for kind, row in zip(cm.kind, cm.row, strict=True):
        kind = Kind(int(kind))
        if kind in _FLOW_KINDS and int(row) not in flow_branches:
            flow_branches.add(int(row))
            rows += [r, r]
            cols += [int(model.f_bus[row]), int(model.t_bus[row])]
            vals += [1.0, -1.0]
            r += 1
        elif kind in _INJECTION_KINDS and int(row) not in seen_injection:
            seen_injection.add(int(row))
            bus = int(row)
            for b in incident[bus]:
                other = int(model.t_bus[b] if model.f_bus[b] == bus else model.f_bus[b])
                rows += [r, r]
                cols += [bus, other]
                vals += [1.0, -1.0]
            r += 1
        elif kind == Kind.V_BUS:
            v_buses.add(int(row))
    h = sp.csr_matrix((vals, (rows, cols)), shape=(r, model.n_bus))
    return h, flow_branches, v_buses


def _observable_internal(model: PpcModel, cm: CompiledMeasurements) -> np.ndarray:
    if model.n_bus > MAX_DENSE_BUSES:
        raise ValueError(
            f"the observability test is dense and limited to {MAX_DENSE_BUSES} buses; this model has {model.n_bus}"
        )
    h, _flows, v_buses = _linear_rows(model, cm)
    keep = np.setdiff1d(np.arange(model.n_bus), model.slack)
    dense = h[:, keep].toarray() if h.shape[0] else np.zeros((0, len(keep)))
    null = la.null_space(dense) if dense.shape[0] else np.eye(len(keep))
    angle_ok = np.ones(model.n_bus, dtype=bool)
    if null.size:
        angle_ok[keep] = np.linalg.norm(null, axis=1) < 1e-6
    # islands: buses joined by branches whose angle difference is fixed
    f, t = model.f_bus, model.t_bus
    diff_fixed = np.array([_branch_fixed(null, keep, int(a), int(b)) for a, b in zip(f, t, strict=True)], dtype=bool)
    adjacency = sp.csr_matrix(
        (np.ones(int(diff_fixed.sum())), (f[diff_fixed], t[diff_fixed])), shape=(model.n_bus, model.n_bus)
    )
    _n, label = connected_components(adjacency, directed=False)
    has_v = np.zeros(label.max() + 1, dtype=bool)
    if v_buses:
        has_v[label[sorted(v_buses)]] = True
    return angle_ok & has_v[label]


def _branch_fixed(null: np.ndarray, keep: np.ndarray, a: int, b: int) -> bool:
    def row(bus: int) -> np.ndarray:
        k = np.searchsorted(keep, bus)
        if k < len(keep) and keep[k] == bus:
            return null[k]
        return np.zeros(null.shape[1])  # the slack's angle is the reference

    if not null.size:
        return True
    return bool(np.linalg.norm(row(a) - row(b)) < 1e-6)


def analyse(net: pp.pandapowerNet, model: PpcModel, measurements: Sequence[Measurement]) -> Observability:
    """Observability from the telemetered measurements alone (pseudo and virtual ones left out,
    except the zero injections at auxiliary buses, which are physics, not assumptions)."""
    telemetered = [m for m in measurements if not m.pseudo]
    cm = compile_measurements(model, telemetered)
    ok = _observable_internal(model, cm)
    live = model.energised_buses(net)
    internal = model.bus_lookup[live]
    observable = [int(b) for b, i in zip(live, internal, strict=True) if ok[i]]
    unobservable = [int(b) for b, i in zip(live, internal, strict=True) if not ok[i]]
    return Observability(observable, unobservable, _islands(net, model, ok, live))


def _islands(net: pp.pandapowerNet, model: PpcModel, ok: np.ndarray, live: np.ndarray) -> list[list[int]]:
    f, t = model.f_bus, model.t_bus
    both = ok[f] & ok[t]
    adjacency = sp.csr_matrix((np.ones(int(both.sum())), (f[both], t[both])), shape=(model.n_bus, model.n_bus))
    _n, label = connected_components(adjacency, directed=False)
    groups: dict[int, list[int]] = {}
    for b in live:
        i = model.bus_lookup[b]
        if ok[i]:
            groups.setdefault(int(label[i]), []).append(int(b))
    return sorted(groups.values(), key=len, reverse=True)


@dataclass(frozen=True)
class DeviceLossImpact:
    device: str
    newly_unobservable: list[int]
    restore_with: list[Measurement]  # a small set of candidate measurements that restores them


def device_loss_impact(
    net: pp.pandapowerNet,
    model: PpcModel,
    measurements: Sequence[Measurement],
    device: str,
    candidates: Iterable[Measurement] | None = None,
) -> DeviceLossImpact:
    """What the loss of `device`'s points makes unobservable, and a greedy choice among
    `candidates` (default: a P/Q meter at each newly unobservable bus) that restores it."""
    before = set(analyse(net, model, measurements).unobservable)
    remaining = [m for m in measurements if m.device != device]
    after = analyse(net, model, remaining)
    lost = sorted(set(after.unobservable) - before)
    if not lost:
        return DeviceLossImpact(device, [], [])
    pool = list(candidates) if candidates is not None else _candidate_meters(net, lost)
    chosen: list[Measurement] = []
    current = list(remaining)
    missing = set(lost)
    while missing and pool:
        best, best_left = None, None
        for cand in pool:
            left = set(analyse(net, model, current + [cand]).unobservable) & missing
            if best_left is None or len(left) < len(best_left):
                best, best_left = cand, left
        if best is None or best_left is None or len(best_left) == len(missing):
            break
        chosen.append(best)
        current.append(best)
        pool.remove(best)
        missing = best_left
    return DeviceLossImpact(device, lost, chosen)


def _candidate_meters(net: pp.pandapowerNet, buses: Sequence[int]) -> list[Measurement]:
    """A P meter at each bus, and at each end of every line touching one (the flow meter a
    technician could install or a neighbour could provide)."""
    out = [
        Measurement("p", "bus", b, None, 0.0, 1.0, device="(new meter)", point=f"P injection bus {b}") for b in buses
    ]
    wanted = set(buses)
    lines = net.line[net.line.in_service & (net.line.from_bus.isin(wanted) | net.line.to_bus.isin(wanted))]
    for idx, line in lines.iterrows():
        for side in ("from", "to"):
            out.append(
                Measurement(
                    "p",
                    "line",
                    int(idx),
                    side,
                    0.0,
                    1.0,
                    device="(new meter)",
                    point=f"P flow line {idx} {side} (bus {int(line[side + '_bus'])})",
                )
            )
    return out


def unobservable_buses_message(model: PpcModel, gain: sp.spmatrix) -> tuple[list[int], str]:
    """For a singular gain matrix: internal buses whose state has no information, and a hint."""
    diag = np.abs(gain.diagonal())
    ns = len(model.non_slack)
    empty_angles = model.non_slack[np.flatnonzero(diag[:ns] < _TOLERANCE)]
    empty_mags = np.flatnonzero(diag[ns:] < _TOLERANCE)
    internal = sorted(set(empty_angles.tolist()) | set(empty_mags.tolist()))
    pp_buses = [int(np.flatnonzero(model.bus_lookup == i)[0]) for i in internal if np.any(model.bus_lookup == i)]
    if pp_buses:
        return pp_buses, (
            f"no measurement reaches buses {pp_buses[:20]}; add pseudo-measurements "
            "for their loads or restore the devices that metered them"
        )
    return [], (
        "the measurements are linearly dependent somewhere; run "
        "gridmodel.observability.analyse for the unobservable buses"
    )
