"""Measurement functions h(x) and their Jacobian H(x) on the bus-branch model, in per unit.

State x = [voltage angles of the non-slack buses, voltage magnitudes of all buses] (radians, pu),
the same state pandapower's WLS uses. Measurements are compiled once per measurement set into
arrays (kind, internal row, z, σ), so each iteration is a handful of sparse products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import scipy.sparse as sp

from gridmodel.measurements import Measurement
from gridmodel.ppcmodel import PpcModel

#: pandapower clips every σ below 1e-5 pu to 1e-5 pu; the same floor keeps both engines equal.
SIGMA_FLOOR_PU = 1e-5
#: σ of the zero-injection virtual measurements at auxiliary buses, as pandapower's (pu).
AUX_ZERO_INJECTION_SIGMA_PU = 1e-3


class Kind(IntEnum):
    P_BUS, Q_BUS, P_FROM, Q_FROM, P_TO, Q_TO, V_BUS, I_FROM, I_TO = range(9)


_BRANCH_SIDE = {("line", "from"): 0, ("line", "to"): 1, ("trafo", "hv"): 0, ("trafo", "lv"): 1,
                ("line", None): 0, ("trafo", None): 0}  # fmt: skip
_BRANCH_KIND = {("p", 0): Kind.P_FROM, ("q", 0): Kind.Q_FROM, ("p", 1): Kind.P_TO,
                ("q", 1): Kind.Q_TO, ("i", 0): Kind.I_FROM, ("i", 1): Kind.I_TO}  # fmt: skip


class MeasurementMappingError(ValueError):
    """A measurement names an element, side or type the model does not have."""


@dataclass(frozen=True)
class CompiledMeasurements:
    """Measurements in model units; `source[k]` is the position of row k in the caller's list."""

    kind: np.ndarray
    row: np.ndarray  # internal bus or branch
    z: np.ndarray
    sigma: np.ndarray
    scale: np.ndarray  # model value × scale = value in the measurement's own unit
    source: np.ndarray  # -1: a virtual measurement the model added (auxiliary bus)
    skipped: list[tuple[int, str]]  # (position, reason) of measurements on de-energised parts

    @property
    def weights(self) -> np.ndarray:
        return 1.0 / self.sigma**2

    def structure_key(self) -> tuple:
        return (self.kind.tobytes(), self.row.tobytes(), self.sigma.tobytes())


def compile_measurements(model: PpcModel, measurements: Sequence[Measurement]) -> CompiledMeasurements:
    kinds, rows, zs, sigmas, scales, sources = [], [], [], [], [], []
    skipped: list[tuple[int, str]] = []
    base = model.base_mva
    for k, m in enumerate(measurements):
        if m.element_type == "bus":
            row = model.bus_index(m.element)
            if row < 0:
                skipped.append((k, f"bus {m.element} is not energised"))
                continue
            if m.meas_type == "v":
                kind, scale = Kind.V_BUS, 1.0
            elif m.meas_type in ("p", "q"):
                # pandapower's bus measurements count consumption positive; the model injections.
                kind, scale = (Kind.P_BUS if m.meas_type == "p" else Kind.Q_BUS), -base
            else:
                raise MeasurementMappingError(f"{m.device}/{m.point}: a bus has no {m.meas_type!r} measurement")
        elif m.element_type in ("line", "trafo"):
            branches = model.line_branch if m.element_type == "line" else model.trafo_branch
            if m.element not in branches:
                skipped.append((k, f"{m.element_type} {m.element} is out of service"))
                continue
            row = branches[m.element]
            try:
                side = _BRANCH_SIDE[(m.element_type, m.side)]
                kind = _BRANCH_KIND[(m.meas_type, side)]
            except KeyError:
                raise MeasurementMappingError(
                    f"{m.device}/{m.point}: {m.element_type} {m.element} has no side {m.side!r} "
                    f"or measurement type {m.meas_type!r}; use from/to for lines, hv/lv for trafos"
                ) from None
            if m.meas_type == "i":
                end = model.f_bus[row] if side == 0 else model.t_bus[row]
                scale = base / (np.sqrt(3.0) * model.base_kv[end])  # pu → kA
            else:
                scale = base
        else:
            raise MeasurementMappingError(f"{m.device}/{m.point}: unknown element type {m.element_type!r}")
        kinds.append(int(kind))
        rows.append(row)
        zs.append(m.value / scale)
        sigmas.append(max(m.std_dev / abs(scale), SIGMA_FLOOR_PU))
        scales.append(scale)
        sources.append(k)
    # An open switch at a line's end leaves the line's end as an auxiliary bus with nothing
    # connected: its injection is exactly zero (pandapower's zero_injection="aux_bus").
    for aux in model.aux_buses:
        for kind in (Kind.P_BUS, Kind.Q_BUS):
            kinds.append(int(kind))
            rows.append(int(aux))
            zs.append(0.0)
            sigmas.append(AUX_ZERO_INJECTION_SIGMA_PU)
            scales.append(-base)
            sources.append(-1)
    return CompiledMeasurements(
        kind=np.asarray(kinds, dtype=np.int8), row=np.asarray(rows, dtype=np.int64),
        z=np.asarray(zs, dtype=float), sigma=np.asarray(sigmas, dtype=float),
        scale=np.asarray(scales, dtype=float), source=np.asarray(sources, dtype=np.int64),
        skipped=skipped,
    )  # fmt: skip


def voltages(model: PpcModel, x: np.ndarray) -> np.ndarray:
    va = model.va_init.copy()
    ns = len(model.non_slack)
    va[model.non_slack] = x[:ns]
    return x[ns:] * np.exp(1j * va)


def state_of(model: PpcModel, v: np.ndarray) -> np.ndarray:
    return np.r_[np.angle(v)[model.non_slack], np.abs(v)]


def initial_state(model: PpcModel) -> np.ndarray:
    return np.r_[model.va_init[model.non_slack], model.vm_init]


def _select(rows: np.ndarray, n: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)), shape=(len(rows), n))


def _diag(v: np.ndarray) -> sp.dia_matrix:
    return sp.diags(v)


def evaluate(
    model: PpcModel, cm: CompiledMeasurements, v: np.ndarray, *, jacobian: bool = True
) -> tuple[np.ndarray, sp.csr_matrix | None]:
    """h(x) in compiled order and, when asked, the Jacobian dh/dx (rows in the same order)."""
    n = model.n_bus
    h = np.empty(len(cm.kind))
    blocks_a: list[tuple[np.ndarray, sp.spmatrix]] = []  # (positions, d/dθ) for every kind
    blocks_m: list[tuple[np.ndarray, sp.spmatrix]] = []
    vnorm = v / np.abs(v)
    dv, dvn = _diag(v), _diag(vnorm)

    def add(pos: np.ndarray, values: np.ndarray, d_a: sp.spmatrix | None, d_m: sp.spmatrix | None) -> None:
        h[pos] = values
        if jacobian:
            blocks_a.append((pos, d_a))
            blocks_m.append((pos, d_m))

    # bus injections
    pos_p = np.flatnonzero(cm.kind == Kind.P_BUS)
    pos_q = np.flatnonzero(cm.kind == Kind.Q_BUS)
    if len(pos_p) + len(pos_q):
        ibus = model.ybus @ v
        for pos, part in ((pos_p, "real"), (pos_q, "imag")):
            if not len(pos):
                continue
            r = cm.row[pos]
            s = v[r] * np.conj(ibus[r])
            d_a = d_m = None
            if jacobian:
                y_r = model.ybus[r]
                e_r = _select(r, n)
                ds_da = 1j * (_diag(v[r]) @ (_diag(np.conj(ibus[r])) @ e_r - (y_r @ dv).conj()))
                ds_dm = _diag(v[r]) @ (y_r @ dvn).conj() + _diag(np.conj(ibus[r])) @ e_r @ dvn
                d_a, d_m = getattr(ds_da, part), getattr(ds_dm, part)
            add(pos, getattr(s, part), d_a, d_m)
    # branch flows and currents, per side
    for y_side, ends, kinds in ((model.yf, model.f_bus, (Kind.P_FROM, Kind.Q_FROM, Kind.I_FROM)),
                                (model.yt, model.t_bus, (Kind.P_TO, Kind.Q_TO, Kind.I_TO))):  # fmt: skip
        positions = [np.flatnonzero(cm.kind == k) for k in kinds]
        if sum(len(p) for p in positions) == 0:
            continue
        for pos, what in zip(positions, ("real", "imag", "abs"), strict=True):
            if not len(pos):
                continue
            b = cm.row[pos]
            y_b = y_side[b]
            i_b = y_b @ v
            vs = v[ends[b]]
            d_a = d_m = None
            if what == "abs":
                mag = np.abs(i_b)
                if jacobian:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        unit = np.where(mag > 1e-12, np.conj(i_b) / mag, 0.0)
                    d_a = (_diag(unit) @ (y_b @ _diag(1j * v))).real
                    d_m = (_diag(unit) @ (y_b @ dvn)).real
                add(pos, mag, d_a, d_m)
                continue
            s = vs * np.conj(i_b)
            if jacobian:
                c_s = _select(ends[b], n)
                ds_da = 1j * (_diag(np.conj(i_b)) @ c_s @ dv - _diag(vs) @ (y_b @ dv).conj())
                ds_dm = _diag(vs) @ (y_b @ dvn).conj() + _diag(np.conj(i_b)) @ c_s @ dvn
                d_a, d_m = getattr(ds_da, what), getattr(ds_dm, what)
            add(pos, getattr(s, what), d_a, d_m)
    pos_v = np.flatnonzero(cm.kind == Kind.V_BUS)
    if len(pos_v):
        r = cm.row[pos_v]
        add(pos_v, np.abs(v[r]), sp.csr_matrix((len(r), n)), _select(r, n))
    if not jacobian:
        return h, None
    order = np.concatenate([p for p, _ in blocks_a])
    d_angle = sp.vstack([blk for _, blk in blocks_a], format="csr")[:, model.non_slack]
    d_mag = sp.vstack([blk for _, blk in blocks_m], format="csr")
    stacked = sp.hstack([d_angle, d_mag], format="csr")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return h, stacked[inverse]
