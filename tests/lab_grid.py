"""A small labelled scenario for the lab's tests: a 10-bus LV grid with two feeders and PV, a few
days at 15 minutes, the realistic metering plan, meter noise, and faults injected by hand.

Power flows run on a grid of load and PV levels and are interpolated per step (a power flow per
sample would make the tests slow); each load gets its own noise so no profile is perfect."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd

from anomaly.dataset import write_scenario
from gridmodel.config import TwinConfig
from gridmodel.measurements import measurement_sigma
from gridmodel.metering import realistic_plan

START = pd.Timestamp("2016-06-01", tz="UTC")
_TABLES: dict[tuple[int, int | None], np.ndarray] = {}


def small_grid(feeders: int = 2) -> pp.pandapowerNet:
    net = pp.create_empty_network()
    mv = pp.create_bus(net, 20.0, name="MV")
    lv = pp.create_bus(net, 0.4, name="LV busbar")
    pp.create_ext_grid(net, mv, vm_pu=1.02)
    pp.create_transformer(net, mv, lv, "0.4 MVA 20/0.4 kV")
    for feeder in range(feeders):
        prev = lv
        for k in range(4):
            b = pp.create_bus(net, 0.4, name=f"F{feeder}B{k}")
            pp.create_line(net, prev, b, 0.15, "NAYY 4x150 SE")
            pp.create_load(net, b, p_mw=0.02 + 0.005 * k, q_mvar=0.005)
            prev = b
        pp.create_sgen(net, prev, p_mw=0.03, q_mvar=0.0)
    return net


def _points(net: pp.pandapowerNet, prefix: str = "") -> pd.DataFrame:
    plan = realistic_plan(net, voltage_share=0.5, seed=1)
    rows = []
    for t in plan.trafos:
        for side in ("hv", "lv"):
            rows += [
                (f"T{t}.P{side}", "trafo", t, side, "p_mw", "MW"),
                (f"T{t}.Q{side}", "trafo", t, side, "q_mvar", "Mvar"),
            ]
    for line, side in plan.feeder_heads:
        for q, u in (("p_mw", "MW"), ("q_mvar", "Mvar"), ("i_ka", "kA")):
            rows.append((f"L{line}.{q}", "line", line, side, q, u))
    for bus in plan.voltage_buses:
        rows.append((f"B{bus}.V", "bus", bus, "", "v_pu", "pu"))
    for g in net.sgen.index:
        rows.append((f"G{g}.P", "sgen", int(g), "", "p_mw", "MW"))
    frame = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit"])
    frame["point"] = prefix + frame.point
    return frame.set_index("point")


def _value(net: pp.pandapowerNet, p: pd.Series) -> float:
    if p.element_type == "bus":
        return float(net.res_bus.at[p.element, "vm_pu"])
    if p.element_type == "sgen":
        return float(net.res_sgen.at[p.element, "p_mw"])
    table = net.res_line if p.element_type == "line" else net.res_trafo
    name = {"p_mw": "p_{}_mw", "q_mvar": "q_{}_mvar", "i_ka": "i_{}_ka"}[p.quantity].format(p.side)
    return float(table.at[p.element, name])


def _solve(net: pp.pandapowerNet, points: pd.DataFrame, load: float, pv: float, open_line: int | None) -> np.ndarray:
    n = copy.deepcopy(net)
    n.load["p_mw"] *= load
    n.load["q_mvar"] *= load
    n.sgen["p_mw"] *= pv
    if open_line is not None:
        n.line.at[open_line, "in_service"] = False
    pp.runpp(n, numba=False)  # numba compiles for seconds; these grids are tiny
    return np.nan_to_num(np.array([_value(n, points.loc[name]) for name in points.index]))  # dead: reads 0


def make_scenario(
    out: Path,
    *,
    days: int = 3,
    seed: int = 0,
    faults: list[dict] | None = None,
    step_min: int = 15,
    feeders: int = 2,
    prefix: str = "",
    start: pd.Timestamp = START,
    split: str = "",
) -> Path:
    """Write a scenario directory; `faults`: dicts with type, point or element, start and length in samples
    (types: stuck, spike, dropout, drift, bias, line_outage)."""
    rng = np.random.default_rng(seed)
    net = small_grid(feeders)
    points = _points(net, prefix)
    n = days * 24 * 60 // step_min
    times = pd.date_range(start, periods=n, freq=f"{step_min}min", tz="UTC")
    hour = (times.hour + times.minute / 60).to_numpy()
    load = 0.45 + 0.35 * np.exp(-(((hour - 19) / 3) ** 2)) + 0.15 * np.exp(-(((hour - 8) / 2) ** 2))
    load = load * (1 + 0.05 * rng.standard_normal(n))
    pv = np.clip(np.sin((hour - 6) / 14 * np.pi), 0, None) * (0.8 + 0.2 * rng.random(n))
    load_levels, pv_levels = np.linspace(0.2, 1.4, 4), np.linspace(0, 1, 3)
    outages = [f for f in faults or [] if f["type"] == "line_outage"]

    def table(open_line: int | None) -> np.ndarray:
        key = (feeders, open_line)
        if key not in _TABLES:  # the same grid's flows serve every scenario of a test session
            _TABLES[key] = np.array([[_solve(net, points, a, b, open_line) for b in pv_levels] for a in load_levels])
        return _TABLES[key]

    def interp(tab: np.ndarray) -> np.ndarray:
        ia = np.clip(np.searchsorted(load_levels, load) - 1, 0, len(load_levels) - 2)
        ib = np.clip(np.searchsorted(pv_levels, pv) - 1, 0, len(pv_levels) - 2)
        wa = ((load - load_levels[ia]) / (load_levels[ia + 1] - load_levels[ia]))[:, None]
        wb = ((pv - pv_levels[ib]) / (pv_levels[ib + 1] - pv_levels[ib]))[:, None]
        return (
            tab[ia, ib] * (1 - wa) * (1 - wb)
            + tab[ia + 1, ib] * wa * (1 - wb)
            + tab[ia, ib + 1] * (1 - wa) * wb
            + tab[ia + 1, ib + 1] * wa * wb
        )

    truth = interp(table(None))
    for f in outages:
        window = slice(f["start"], f["start"] + f["length"])
        truth[window] = interp(table(int(f["element"])))[window]
    cfg = TwinConfig()
    meas_type = {"v_pu": "v", "p_mw": "p", "q_mvar": "q", "i_ka": "i"}
    nominal = np.abs(truth).mean(axis=0)
    points["sigma"] = [
        measurement_sigma(meas_type[q], v, 0.5, cfg) for q, v in zip(points.quantity, nominal, strict=True)
    ]
    values = truth + rng.standard_normal(truth.shape) * points.sigma.to_numpy()
    telemetry = pd.DataFrame(values, index=times, columns=points.index)
    labels = []
    for f in faults or []:
        start, length = f["start"], f["length"]
        window = slice(start, start + length)
        if f["type"] == "line_outage":
            labels.append((times[start], times[start + length - 1], "line_outage", "line", int(f["element"]), ""))
            continue
        name = f["point"]
        col = telemetry[name].to_numpy().copy()
        sig = points.at[name, "sigma"]
        scale = max(abs(np.median(col)), 10 * sig)
        if f["type"] == "stuck":
            col[window] = col[start]
        elif f["type"] == "spike":
            col[window] += f.get("size", 0.5) * scale
        elif f["type"] == "dropout":
            col[window] = np.nan
        elif f["type"] == "drift":
            col[window] += np.linspace(0, f.get("size", 0.3) * scale, length)
        elif f["type"] == "bias":
            col[window] += f.get("size", 0.15) * scale
        telemetry[name] = col
        p = points.loc[name]
        labels.append((times[start], times[start + length - 1], f["type"], p.element_type, int(p.element), name))
    label_frame = pd.DataFrame(labels, columns=["start", "end", "type", "element_type", "element", "point"])
    meta = {"seed": seed, "split": split}
    return write_scenario(out, net=net, points=points, telemetry=telemetry, labels=label_frame, meta=meta)
