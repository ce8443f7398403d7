"""Where each bus, branch and switch is drawn, and which buses the live switching state energises.

Built once per network (vectorised: 10,458 buses in well under a second) and reused every refresh.
Two layouts: geographic (the buses' GeoJSON points, where the network has them) and schematic
(each feeder as a tree from the supply point: depth to the right, one row per leaf)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandapower as pp
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components


class Layout(StrEnum):
    """How the network is laid out on screen."""

    GEOGRAPHIC = "geographic"
    SCHEMATIC = "schematic"


@dataclass(frozen=True)
class GridLayout:
    """The network's drawable shape. Buses and branches are addressed by their position in these
    arrays; `bus`, `branch_index` map back to pandapower indices."""

    bus: np.ndarray  # pandapower bus index per position
    bus_name: np.ndarray
    bus_in_service: np.ndarray  # bool
    geo: np.ndarray | None  # (n, 2) lon/lat, None when the network has no coordinates
    schematic: np.ndarray  # (n, 2)
    branch_kind: np.ndarray  # "line" / "trafo"
    branch_index: np.ndarray  # pandapower index within its table
    branch_name: np.ndarray
    branch_from: np.ndarray  # bus positions
    branch_to: np.ndarray
    branch_in_service: np.ndarray  # bool, as the network file has it (normal state)
    switch_index: np.ndarray  # pandapower switch index
    switch_name: np.ndarray
    switch_bus: np.ndarray  # bus position of the switch's own bus
    switch_et: np.ndarray  # "l", "t", "b"
    switch_branch: np.ndarray  # branch position it sits on (-1 for bus-bus switches)
    switch_other_bus: np.ndarray  # bus position at the far side (for drawing)
    switch_normally_closed: np.ndarray  # bool, as the network file has it
    supply_bus: np.ndarray  # bus positions of in-service external grids

    @property
    def layouts(self) -> list[Layout]:
        """The layouts this network can be drawn in (geographic only where coordinates exist)."""
        return [Layout.GEOGRAPHIC, Layout.SCHEMATIC] if self.geo is not None else [Layout.SCHEMATIC]

    def xy(self, layout: Layout) -> np.ndarray:
        return self.geo if layout is Layout.GEOGRAPHIC and self.geo is not None else self.schematic

    def bus_position(self, index: int) -> int:
        """Position of pandapower bus `index` in the arrays (KeyError naming it when unknown)."""
        hits = np.flatnonzero(self.bus == index)
        if not len(hits):
            raise KeyError(f"bus {index} is not in the network")
        return int(hits[0])


def _geo(net: pp.pandapowerNet) -> np.ndarray | None:
    """lon/lat per bus from pandapower's `geo` column (GeoJSON points); None when most lack one."""
    if "geo" not in net.bus:
        return None
    out = np.full((len(net.bus), 2), np.nan)
    for i, geo in enumerate(net.bus.geo.values):
        if isinstance(geo, str) and geo:
            try:
                x, y = json.loads(geo)["coordinates"][:2]
            except (ValueError, KeyError, TypeError):
                continue
            out[i] = (float(x), float(y))
    if np.isnan(out[:, 0]).mean() > 0.5:
        return None
    return out


def _schematic(n: int, edges: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Tree layout: x = hops from the nearest supply point, y = the order of the leaves below
    (each bus centred over its sub-tree). Buses no supply point reaches follow below."""
    graph = coo_matrix((np.ones(len(edges) + len(roots)), _with_super_root(edges, roots, n)), shape=(n + 1, n + 1))
    order, pred = breadth_first_order(graph.tocsr(), n, directed=False, return_predecessors=True)
    depth = np.full(n + 1, -1, dtype=np.int64)
    depth[n] = -1
    children: list[list[int]] = [[] for _ in range(n + 1)]
    for v in order[1:]:
        p = pred[v]
        depth[v] = depth[p] + 1
        children[p].append(int(v))
    y = np.full(n + 1, np.nan)
    next_row = 0.0
    stack = [n]
    preorder: list[int] = []
    while stack:  # iterative depth-first walk: each sub-tree's leaves get consecutive rows
        v = stack.pop()
        preorder.append(v)
        if not children[v]:
            y[v] = next_row
            next_row += 1
        stack.extend(reversed(children[v]))
    for v in reversed(preorder):
        if children[v]:
            ys = y[children[v]]
            y[v] = (ys.min() + ys.max()) / 2
    xy = np.column_stack([depth[:n].astype(float), -y[:n]])
    unreached = np.isnan(xy[:, 1])
    if unreached.any():
        xy[unreached, 0] = 0.0
        xy[unreached, 1] = -(next_row + 1 + np.arange(unreached.sum()))
    return xy


def _with_super_root(edges: np.ndarray, roots: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate([edges[:, 0], np.full(len(roots), n)])
    cols = np.concatenate([edges[:, 1], roots])
    return rows, cols


def build_layout(net: pp.pandapowerNet) -> GridLayout:
    """The layout of a pandapower network in its normal switching state."""
    bus = net.bus.index.to_numpy()
    pos = pd.Series(np.arange(len(bus)), index=bus)
    kinds, idxs, names, frm, to, ins = [], [], [], [], [], []
    for kind, a, b in (("line", "from_bus", "to_bus"), ("trafo", "hv_bus", "lv_bus")):
        table = getattr(net, kind)
        kinds.append(np.full(len(table), kind))
        idxs.append(table.index.to_numpy())
        names.append(table["name"].astype(str).to_numpy() if "name" in table else np.full(len(table), ""))
        frm.append(pos.loc[table[a]].to_numpy())
        to.append(pos.loc[table[b]].to_numpy())
        ins.append(table.in_service.to_numpy(bool))
    branch_kind = np.concatenate(kinds)
    branch_index = np.concatenate(idxs).astype(np.int64)
    branch_from, branch_to = np.concatenate(frm).astype(np.int64), np.concatenate(to).astype(np.int64)
    branch_pos = {(k, int(i)): p for p, (k, i) in enumerate(zip(branch_kind, branch_index, strict=True))}

    sw = net.switch
    et = sw.et.astype(str).to_numpy()
    sw_bus = pos.loc[sw.bus].to_numpy().astype(np.int64)
    sw_branch = np.full(len(sw), -1, dtype=np.int64)
    other = sw_bus.copy()
    for i, (e, element) in enumerate(zip(et, sw.element.to_numpy(), strict=True)):
        if e == "b":
            other[i] = pos.get(int(element), sw_bus[i])
        elif e in ("l", "t"):
            p = branch_pos.get(("line" if e == "l" else "trafo", int(element)), -1)
            sw_branch[i] = p
            if p >= 0:
                other[i] = branch_to[p] if branch_from[p] == sw_bus[i] else branch_from[p]
    ext = net.ext_grid[net.ext_grid.in_service] if len(net.ext_grid) else net.ext_grid
    supply = pos.loc[ext.bus].to_numpy().astype(np.int64) if len(ext) else np.array([0], dtype=np.int64)

    layout = GridLayout(
        bus=bus,
        bus_name=net.bus["name"].astype(str).to_numpy(),
        bus_in_service=net.bus.in_service.to_numpy(bool),
        geo=_geo(net),
        schematic=np.zeros((len(bus), 2)),
        branch_kind=branch_kind,
        branch_index=branch_index,
        branch_name=np.concatenate(names),
        branch_from=branch_from,
        branch_to=branch_to,
        branch_in_service=np.concatenate(ins),
        switch_index=sw.index.to_numpy(),
        switch_name=sw["name"].astype(str).to_numpy() if "name" in sw else np.full(len(sw), ""),
        switch_bus=sw_bus,
        switch_et=et,
        switch_branch=sw_branch,
        switch_other_bus=other,
        switch_normally_closed=sw.closed.to_numpy(bool),
        supply_bus=supply,
    )
    normal = energised_edges(layout, layout.branch_in_service, layout.switch_normally_closed)
    object.__setattr__(layout, "schematic", _schematic(len(bus), normal, supply))
    return layout


def energised_edges(layout: GridLayout, branch_in_service: np.ndarray, switch_closed: np.ndarray) -> np.ndarray:
    """(k, 2) bus-position pairs joined by a closed path: in-service branches whose switches are
    all closed, and closed bus-bus switches."""
    conducting = branch_in_service.copy()
    on_branch = layout.switch_branch >= 0
    open_on_branch = on_branch & ~switch_closed
    conducting[layout.switch_branch[open_on_branch]] = False
    edges = [np.column_stack([layout.branch_from[conducting], layout.branch_to[conducting]])]
    bb = (layout.switch_et == "b") & switch_closed
    edges.append(np.column_stack([layout.switch_bus[bb], layout.switch_other_bus[bb]]))
    return np.concatenate(edges).astype(np.int64)


def energised(layout: GridLayout, branch_in_service: np.ndarray, switch_closed: np.ndarray) -> np.ndarray:
    """Per bus: is it connected to an in-service supply point through closed switches and
    in-service branches (and in service itself)?"""
    n = len(layout.bus)
    edges = energised_edges(layout, branch_in_service, switch_closed)
    live = layout.bus_in_service
    keep = live[edges[:, 0]] & live[edges[:, 1]]
    edges = edges[keep]
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    supplied = np.unique(labels[layout.supply_bus[live[layout.supply_bus]]])
    return np.isin(labels, supplied) & live
