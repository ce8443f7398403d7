"""The network as the estimators see it: pandapower's own internal bus-branch model (ppci).

Both estimators use the same admittance matrices, so the same measurements give the same state.
Building the model is the slow part (pandapower's conversion, about a second on 10,000 buses);
it is cached by topology, so it is rebuilt only when a breaker or switch changes.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np
import pandapower as pp
import scipy.sparse as sp

# ppci column indices (pypower layout, stable since MATPOWER 4)
_BUS_TYPE, _VM = 1, 7
_F_BUS, _T_BUS, _SHIFT = 0, 1, 9
_REF = 3


class ModelBuildError(Exception):
    """pandapower could not convert the network into a bus-branch model; the message says why."""


@dataclass(frozen=True)
class PpcModel:
    """Admittance matrices and the maps from pandapower elements to internal indices."""

    base_mva: float
    n_bus: int
    bus_lookup: np.ndarray  # pandapower bus index → internal bus (≥ n_bus: not energised)
    slack: np.ndarray  # internal slack buses
    non_slack: np.ndarray
    f_bus: np.ndarray
    t_bus: np.ndarray
    ybus: sp.csr_matrix
    yf: sp.csr_matrix
    yt: sp.csr_matrix
    line_branch: dict[int, int]  # pandapower line index → internal branch row (in service only)
    trafo_branch: dict[int, int]
    vm_init: np.ndarray
    va_init: np.ndarray  # radians: transformer phase shifts carried out from the slack
    base_kv: np.ndarray  # per internal bus
    aux_buses: np.ndarray  # internal buses no pandapower bus maps to (open line-end switches)

    @property
    def n_state(self) -> int:
        return len(self.non_slack) + self.n_bus

    def bus_index(self, bus: int) -> int:
        """Internal bus of a pandapower bus, or -1 when it is not energised."""
        if bus < 0 or bus >= len(self.bus_lookup):
            return -1
        i = int(self.bus_lookup[bus])
        return i if 0 <= i < self.n_bus else -1

    def energised_buses(self, net: pp.pandapowerNet) -> np.ndarray:
        """pandapower bus indices that are part of the model, in net.bus order."""
        idx = net.bus.index.values
        internal = self.bus_lookup[idx]
        return idx[(internal >= 0) & (internal < self.n_bus)]


def topology_key(net: pp.pandapowerNet) -> tuple:
    """Everything that changes the bus-branch model: in-service flags and switch positions."""
    return (
        tuple(net.line.in_service.values),
        tuple(net.trafo.in_service.values),
        tuple(net.switch.closed.values),
        tuple(net.bus.in_service.values),
        tuple(net.ext_grid.in_service.values),
        tuple(net.trafo.get("tap_pos", []).fillna(0).values),
    )


def build_model(net: pp.pandapowerNet) -> PpcModel:
    """Convert with pandapower's own state-estimation conversion, then build Ybus, Yf, Yt."""
    from pandapower.estimation.ppc_conversion import _init_ppc  # private, but the reference
    from pandapower.pypower.makeYbus import makeYbus

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _ppc, ppci = _init_ppc(net, None, None, True)
    except Exception as exc:  # pandapower raises bare exceptions for inconsistent data
        raise ModelBuildError(
            f"pandapower could not build the bus-branch model: {exc}; check the network's "
            "slack (ext_grid), in-service flags and switch tables"
        ) from exc
    bus, branch = ppci["bus"], ppci["branch"]
    base = float(ppci["baseMVA"])
    ybus, yf, yt = makeYbus(base, bus, branch)
    n = bus.shape[0]
    slack = np.flatnonzero(bus[:, _BUS_TYPE] == _REF)
    if len(slack) == 0:
        raise ModelBuildError("the network has no energised slack bus (ext_grid); add or enable one")
    non_slack = np.flatnonzero(bus[:, _BUS_TYPE] != _REF)
    f_bus = branch[:, _F_BUS].real.astype(np.int64)
    t_bus = branch[:, _T_BUS].real.astype(np.int64)
    branch_is = ppci["internal"]["branch_is"]
    lookups = net._pd2ppc_lookups["branch"]
    maps: dict[str, dict[int, int]] = {}
    for element in ("line", "trafo"):
        maps[element] = {}
        if element not in lookups:
            continue
        start, end = lookups[element]
        mask = branch_is[start:end]
        offset = int(np.sum(branch_is[:start]))
        indices = getattr(net, element).index.values[mask]
        maps[element] = {int(e): offset + k for k, e in enumerate(indices)}
    shift = np.radians(branch[:, _SHIFT].real)
    lookup = np.array(net._pd2ppc_lookups["bus"], copy=True)
    mapped = lookup[net.bus.index.values]
    aux = np.setdiff1d(np.arange(n), mapped[(mapped >= 0) & (mapped < n)])
    return PpcModel(
        base_mva=base,
        n_bus=n,
        bus_lookup=lookup,
        slack=slack,
        non_slack=non_slack,
        f_bus=f_bus,
        t_bus=t_bus,
        ybus=sp.csr_matrix(ybus),
        yf=sp.csr_matrix(yf),
        yt=sp.csr_matrix(yt),
        line_branch=maps["line"],
        trafo_branch=maps["trafo"],
        vm_init=bus[:, _VM].real.copy(),
        va_init=_shift_angles(n, slack, f_bus, t_bus, shift),
        base_kv=bus[:, 9].real.copy(),
        aux_buses=aux,
    )


def _shift_angles(n: int, slack: np.ndarray, f_bus: np.ndarray, t_bus: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Flat start that respects phase-shifting transformers: θ_to = θ_from − shift."""
    adjacency: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for f, t, s in zip(f_bus, t_bus, shift, strict=True):
        adjacency[f].append((int(t), -float(s)))
        adjacency[t].append((int(f), float(s)))
    va = np.zeros(n)
    seen = np.zeros(n, dtype=bool)
    queue = deque(int(s) for s in slack)
    seen[slack] = True
    while queue:
        b = queue.popleft()
        for other, delta in adjacency[b]:
            if not seen[other]:
                seen[other] = True
                va[other] = va[b] + delta
                queue.append(other)
    return va
