"""Realistic metering of a network, for accuracy studies, benchmarks and tests.

A distribution utility meters its substations (transformer P/Q), the head of each feeder (P/Q/I)
and the voltage at a share of its buses; everything else is a pseudo-measurement from load
profiles, and buses with nothing connected are zero-injection virtual measurements.
`synthesize` turns a solved power flow (the truth) into such a measurement set with noise drawn
from each meter's accuracy class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandapower as pp

from gridmodel.measurements import Measurement, fused_groups, measurement_sigma, pseudo_measurements
from gridverse.config import TwinConfig


@dataclass(frozen=True)
class MeteringPlan:
    trafos: list[int]  # P/Q at both sides
    feeder_heads: list[tuple[int, str]]  # (line, side at the substation): P/Q/I
    voltage_buses: list[int]
    accuracy_class: float = 0.5


def realistic_plan(
    net: pp.pandapowerNet, *, voltage_share: float = 1 / 3, seed: int = 0, accuracy_class: float = 0.5
) -> MeteringPlan:
    """Every in-service transformer, every line leaving a transformer's busbar, and voltage at
    the substation busbars plus a random `voltage_share` of the other buses."""
    rng = np.random.default_rng(seed)
    group = fused_groups(net)
    trafos = [int(t) for t in net.trafo.index[net.trafo.in_service]]
    busbars = {group[int(b)] for b in net.trafo.lv_bus[net.trafo.in_service]}
    heads = []
    for idx, line in net.line[net.line.in_service].iterrows():
        if group[int(line.from_bus)] in busbars:
            heads.append((int(idx), "from"))
        elif group[int(line.to_bus)] in busbars:
            heads.append((int(idx), "to"))
    buses = np.asarray(net.bus.index[net.bus.in_service])
    chosen = set(rng.choice(buses, size=int(round(voltage_share * len(buses))), replace=False).tolist())
    chosen |= {int(b) for b in net.trafo.lv_bus} | {int(b) for b in net.ext_grid.bus}
    return MeteringPlan(trafos, heads, sorted(chosen), accuracy_class)


def true_values(net: pp.pandapowerNet, plan: MeteringPlan) -> list[Measurement]:
    """The plan's measurements with their exact values from net.res_* (σ from the plan's class)."""
    cfg = TwinConfig()
    out = []

    def add(meas_type: str, element_type: str, element: int, side: str | None, value: float, name: str) -> None:
        sigma = measurement_sigma(meas_type, value, plan.accuracy_class, cfg)
        out.append(
            Measurement(
                meas_type, element_type, element, side, value, sigma, device=f"{element_type}{element}", point=name
            )
        )

    for t in plan.trafos:
        row = net.res_trafo.loc[t]
        for side in ("hv", "lv"):
            add("p", "trafo", t, side, float(row[f"p_{side}_mw"]), f"MMXU{side}.TotW")
            add("q", "trafo", t, side, float(row[f"q_{side}_mvar"]), f"MMXU{side}.TotVAr")
    for line, side in plan.feeder_heads:
        row = net.res_line.loc[line]
        add("p", "line", line, side, float(row[f"p_{side}_mw"]), "MMXU1.TotW")
        add("q", "line", line, side, float(row[f"q_{side}_mvar"]), "MMXU1.TotVAr")
        add("i", "line", line, side, float(row[f"i_{side}_ka"]), "MMXU1.A")
    for bus in plan.voltage_buses:
        if np.isfinite(net.res_bus.at[bus, "vm_pu"]):
            add("v", "bus", bus, None, float(net.res_bus.at[bus, "vm_pu"]), "MMXU1.PhV")
    return out


def synthesize(
    truth: pp.pandapowerNet,
    forecast: pp.pandapowerNet,
    plan: MeteringPlan,
    rng: np.random.Generator,
    cfg: TwinConfig | None = None,
) -> list[Measurement]:
    """Noisy telemetry from the truth's power flow, plus pseudo-measurements from `forecast`
    (the same network with its loads at their profile values) and zero injections."""
    cfg = cfg or TwinConfig()
    exact = true_values(truth, plan)
    noisy = []
    for m in exact:
        value = m.value + float(rng.normal(0.0, m.std_dev))
        if m.meas_type == "i":
            value = abs(value)  # a meter reports a magnitude, never a negative current
        noisy.append(Measurement(m.meas_type, m.element_type, m.element, m.side, value, m.std_dev, m.device, m.point))
    return noisy + pseudo_measurements(forecast, set(), cfg)
