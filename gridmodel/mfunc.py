"""Measurement functions h(x) and their Jacobian H(x) on the bus-branch model, in per unit.

State x = [voltage angles of the non-slack buses, voltage magnitudes of all buses] (radians, pu),
the same state pandapower's WLS uses. Measurements are compiled once per measurement set into
arrays (kind, internal row, z, σ), so each iteration is a handful of sparse products.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import repeat

import numba
import numpy as np
import scipy.sparse as sp

from gridmodel.measurements import Measurement
from gridmodel.ppcmodel import PpcModel

#: pandapower clips every σ below 1e-5 pu to 1e-5 pu; the same floor keeps both engines equal.
SIGMA_FLOOR_PU = 1e-5
#: σ of the zero-injection virtual measurements at auxiliary buses, as pandapower's (pu).
AUX_ZERO_INJECTION_SIGMA_PU = 1e-3
#: Current magnitudes closer to zero than this many σ are set aside (see compile_measurements).
_MIN_CURRENT_SIGMAS = 3.0


class Kind(IntEnum):
    P_BUS, Q_BUS, P_FROM, Q_FROM, P_TO, Q_TO, V_BUS, I_FROM, I_TO = range(9)


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
        """What fixes the structure of the Jacobian (and so of the gain matrix): kinds and rows."""
        return (self.kind.tobytes(), self.row.tobytes())


def _element_rows(model: PpcModel, table: dict[int, int], elements: np.ndarray) -> np.ndarray:
    """Internal branch row per element index (-1: out of service or unknown)."""
    if not table or not len(elements):
        return np.full(len(elements), -1, dtype=np.int64)
    size = max(max(table), int(elements.max())) + 1
    lookup = np.full(size, -1, dtype=np.int64)
    lookup[np.fromiter(table.keys(), dtype=np.int64)] = np.fromiter(table.values(), dtype=np.int64)
    out = np.full(len(elements), -1, dtype=np.int64)
    ok = elements >= 0
    out[ok] = lookup[elements[ok]]
    return out


_FIELDS = operator.attrgetter("meas_type", "element_type", "side", "element", "value", "std_dev", "pseudo")
_MEAS_CODE = {"v": 0, "p": 1, "q": 2, "i": 3}
_ELEMENT_CODE = {"bus": 0, "line": 1, "trafo": 2}
_SIDE_CODE = {None: 0, "": 0, "from": 1, "to": 2, "hv": 3, "lv": 4}


def compile_measurements(model: PpcModel, measurements: Sequence[Measurement]) -> CompiledMeasurements:
    """Measurements → arrays in model units (vectorised: tens of thousands in a few ms)."""
    n = len(measurements)
    base = model.base_mva
    # one pass over the objects in C (attribute reads dominate at tens of thousands of measurements),
    # text turned into small codes by dictionary look-ups (numpy's text arrays and isin were slower)
    cols = list(zip(*map(_FIELDS, measurements), strict=True)) if n else [()] * 7
    mcode = np.fromiter(map(_MEAS_CODE.get, cols[0], repeat(-1)), dtype=np.int8, count=n)
    ecode = np.fromiter(map(_ELEMENT_CODE.get, cols[1], repeat(-1)), dtype=np.int8, count=n)
    scode = np.fromiter(map(_SIDE_CODE.get, cols[2], repeat(-1)), dtype=np.int8, count=n)
    element = np.array(cols[3], dtype=np.int64).reshape(n)
    value = np.array(cols[4], dtype=float).reshape(n)
    std = np.array(cols[5], dtype=float).reshape(n)
    pseudo = np.array(cols[6], dtype=bool).reshape(n)
    is_bus, is_line, is_trafo = ecode == 0, ecode == 1, ecode == 2
    is_v, is_p, is_q, is_i = mcode == 0, mcode == 1, mcode == 2, mcode == 3
    bad = ~(is_bus | is_line | is_trafo)
    bad |= is_bus & ~(is_v | is_p | is_q)
    bad |= ~is_bus & ~(is_p | is_q | is_i)
    bad |= is_line & ~((scode == 0) | (scode == 1) | (scode == 2))
    bad |= is_trafo & ~((scode == 0) | (scode == 3) | (scode == 4))
    if bad.any():
        m = measurements[int(np.flatnonzero(bad)[0])]
        raise MeasurementMappingError(
            f"{m.label}: {m.element_type} {m.element} has no {m.meas_type!r} measurement on side {m.side!r}; "
            "buses take v/p/q, lines p/q/i on from/to, trafos p/q/i on hv/lv"
        )
    side = np.where((scode == 2) | (scode == 4), 1, 0)
    row = np.full(n, -1, dtype=np.int64)
    in_range = is_bus & (element >= 0) & (element < len(model.bus_lookup))
    row[in_range] = model.bus_lookup[element[in_range]]
    row[is_bus & ((row < 0) | (row >= model.n_bus))] = -1
    row[is_line] = _element_rows(model, model.line_branch, element[is_line])
    row[is_trafo] = _element_rows(model, model.trafo_branch, element[is_trafo])
    kind = np.full(n, -1, dtype=np.int8)
    kind[is_bus & is_v] = Kind.V_BUS
    kind[is_bus & is_p] = Kind.P_BUS
    kind[is_bus & is_q] = Kind.Q_BUS
    branch = ~is_bus
    for code, (mt, sd) in {
        Kind.P_FROM: (1, 0),
        Kind.Q_FROM: (2, 0),
        Kind.I_FROM: (3, 0),
        Kind.P_TO: (1, 1),
        Kind.Q_TO: (2, 1),
        Kind.I_TO: (3, 1),
    }.items():
        kind[branch & (mcode == mt) & (side == sd)] = code
    reasons: dict[int, str] = {}
    for k in np.flatnonzero(row < 0):
        reasons[int(k)] = (
            f"bus {element[k]} is not energised" if is_bus[k] else f"{cols[1][k]} {element[k]} is out of service"
        )
    current = is_i & (row >= 0)
    if current.any():
        # Branch ends metered for both P and Q: a current magnitude there comes from the same
        # CT/VT samples (its error is not independent of theirs), and |I|'s curvature slows
        # Gauss-Newton from quadratic to linear convergence, so it is set aside.
        end_code = row * 2 + side + np.where(is_trafo, 1 << 40, 0)
        metered = branch & ~pseudo & (row >= 0)
        both = np.intersect1d(end_code[metered & is_p], end_code[metered & is_q])
        for k in np.flatnonzero(current & np.isin(end_code, both)):
            reasons[int(k)] = "current at an end whose P and Q are metered (same samples, no new information)"
        for k in np.flatnonzero(current & (value < _MIN_CURRENT_SIGMAS * std)):
            # |I| is not differentiable at zero: a near-zero magnitude makes the steps oscillate.
            reasons.setdefault(int(k), f"current {value[k]:.4g} kA is within {_MIN_CURRENT_SIGMAS:g} σ of zero")
    keep = np.ones(n, dtype=bool)
    keep[list(reasons)] = False
    scale = np.where(is_bus, np.where(is_v, 1.0, -base), base)
    live_current = np.flatnonzero(is_i & keep)
    if len(live_current):
        br = row[live_current]
        ends = np.where(side[live_current] == 1, model.t_bus[br], model.f_bus[br])
        scale[live_current] = base / (np.sqrt(3.0) * model.base_kv[ends])  # pu → kA
    source = np.flatnonzero(keep)
    aux = np.repeat(model.aux_buses.astype(np.int64), 2)
    # An open switch at a line's end leaves an auxiliary bus with nothing connected: its
    # injection is exactly zero (pandapower's zero_injection="aux_bus").
    aux_kind = np.tile(np.array([Kind.P_BUS, Kind.Q_BUS], dtype=np.int8), len(model.aux_buses))
    return CompiledMeasurements(
        kind=np.r_[kind[keep], aux_kind].astype(np.int8),
        row=np.r_[row[keep], aux],
        z=np.r_[value[keep] / scale[keep], np.zeros(len(aux))],
        sigma=np.r_[
            np.maximum(std[keep] / np.abs(scale[keep]), SIGMA_FLOOR_PU), np.full(len(aux), AUX_ZERO_INJECTION_SIGMA_PU)
        ],
        scale=np.r_[scale[keep], np.full(len(aux), -base)],
        source=np.r_[source, np.full(len(aux), -1)].astype(np.int64),
        skipped=sorted(reasons.items()),
    )


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
    """h(x) in compiled order and, when asked, the Jacobian dh/dx (rows in the same order).

    The Jacobian is assembled row by row in one compiled kernel (`_jacobian_kernel`): the scipy
    formulation (`evaluate_sparse`, kept as the reference) builds ~100 intermediate sparse
    matrices per call and dominated a warm estimate on a 10,000-bus grid."""
    angle_col = np.full(model.n_bus, -1, dtype=np.int64)
    angle_col[model.non_slack] = np.arange(len(model.non_slack))
    ybus, yf, yt = _csr_parts(model)
    h, indptr, indices, data = _jacobian_kernel(
        cm.kind.astype(np.int64),
        cm.row.astype(np.int64),
        *ybus,
        *yf,
        *yt,
        model.f_bus.astype(np.int64),
        model.t_bus.astype(np.int64),
        np.ascontiguousarray(v, dtype=np.complex128),
        angle_col,
        len(model.non_slack),
    )
    if not jacobian:  # the kernel's Jacobian costs little next to the scipy formulation's h alone
        return h, None
    return h, sp.csr_matrix((data, indices, indptr), shape=(len(cm.kind), model.n_state))


def _csr_parts(model: PpcModel) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
    """(indptr, indices, data) of Ybus, Yf, Yt as int64/complex128, cached on the model object."""
    cached = model.__dict__.get("_csr_parts_cache")
    if cached is None:
        cached = tuple(
            (m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.complex128))
            for m in (sp.csr_matrix(model.ybus), sp.csr_matrix(model.yf), sp.csr_matrix(model.yt))
        )
        object.__setattr__(model, "_csr_parts_cache", cached)
    return cached


@numba.njit(cache=True)
def _jacobian_kernel(
    kind, row, y_ptr, y_idx, y_val, f_ptr, f_idx, f_val, t_ptr, t_idx, t_val, f_bus, t_bus, v, angle_col, n_ns
):  # pragma: no cover - compiled
    m = len(kind)
    vn = np.ones(len(v), dtype=np.complex128)  # v/|v|; a de-energised bus (v = 0) takes angle 0, never divides by 0
    for b in range(len(v)):
        a = abs(v[b])
        if a > 0.0:
            vn[b] = v[b] / a
    # pass 1: entries per row (two per bus touched, one when the bus is the slack's angle)
    indptr = np.zeros(m + 1, dtype=np.int64)
    for i in range(m):
        k = kind[i]
        r = row[i]
        if k == 6:  # V_BUS
            cnt = 1
        else:
            if k <= 1:
                ptr, idx = y_ptr, y_idx
            elif k == 2 or k == 3 or k == 7:
                ptr, idx = f_ptr, f_idx
            else:
                ptr, idx = t_ptr, t_idx
            cnt = 0
            for p in range(ptr[r], ptr[r + 1]):
                cnt += 2 if angle_col[idx[p]] >= 0 else 1
        indptr[i + 1] = indptr[i] + cnt
    indices = np.empty(indptr[m], dtype=np.int64)
    data = np.empty(indptr[m])
    h = np.empty(m)
    for i in range(m):
        k = kind[i]
        r = row[i]
        q = indptr[i]
        if k == 6:
            h[i] = np.abs(v[r])
            indices[q] = n_ns + r
            data[q] = 1.0
            continue
        if k <= 1:
            ptr, idx, val, e = y_ptr, y_idx, y_val, r
        elif k == 2 or k == 3 or k == 7:
            ptr, idx, val, e = f_ptr, f_idx, f_val, f_bus[r]
        else:
            ptr, idx, val, e = t_ptr, t_idx, t_val, t_bus[r]
        cur = 0j
        for p in range(ptr[r], ptr[r + 1]):
            cur += val[p] * v[idx[p]]
        if k == 7 or k == 8:  # current magnitude
            mag = np.abs(cur)
            h[i] = mag
            unit = np.conj(cur) / mag if mag > 1e-12 else 0j
            for p in range(ptr[r], ptr[r + 1]):
                b = idx[p]
                if angle_col[b] >= 0:
                    indices[q] = angle_col[b]
                    data[q] = (unit * val[p] * 1j * v[b]).real
                    q += 1
                indices[q] = n_ns + b
                data[q] = (unit * val[p] * vn[b]).real
                q += 1
            continue
        s = v[e] * np.conj(cur)
        imag = k == 1 or k == 3 or k == 5
        h[i] = s.imag if imag else s.real
        for p in range(ptr[r], ptr[r + 1]):
            b = idx[p]
            yv = val[p] * v[b]
            ds_da = -1j * v[e] * np.conj(yv)
            ds_dm = v[e] * np.conj(val[p] * vn[b])
            if b == e:
                ds_da += 1j * v[e] * np.conj(cur)
                ds_dm += vn[e] * np.conj(cur)
            if angle_col[b] >= 0:
                indices[q] = angle_col[b]
                data[q] = ds_da.imag if imag else ds_da.real
                q += 1
            indices[q] = n_ns + b
            data[q] = ds_dm.imag if imag else ds_dm.real
            q += 1
    return h, indptr, indices, data


def evaluate_sparse(
    model: PpcModel, cm: CompiledMeasurements, v: np.ndarray, *, jacobian: bool = True
) -> tuple[np.ndarray, sp.csr_matrix | None]:
    """h(x) and its Jacobian built from scipy sparse products (the reference formulation)."""
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
    for y_side, ends, kinds in (
        (model.yf, model.f_bus, (Kind.P_FROM, Kind.Q_FROM, Kind.I_FROM)),
        (model.yt, model.t_bus, (Kind.P_TO, Kind.Q_TO, Kind.I_TO)),
    ):
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
