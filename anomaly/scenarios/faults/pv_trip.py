"""PV inverter trip: an inverter disconnects (anti-islanding, overvoltage protection) and
produces nothing until it reconnects; the feeder head sees the load it was offsetting."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, GridEvent, register


@register
class PvTrip(GridEvent):
    name = "pv_trip"
    hours = (1.0, 5.0)
    start_hours = (8, 13)

    def draw(self, ctx: Any, rng: np.random.Generator, start: int, end: int) -> Fault | None:
        if not ctx.pv_sgens:
            return None
        weights = ctx.nominal_sgen_p.loc[ctx.pv_sgens].clip(lower=1e-6).to_numpy()
        sgen = int(rng.choice(ctx.pv_sgens, p=weights / weights.sum()))
        return Fault(self.name, start, end, "sgen", sgen)

    def apply(self, fault: Fault, net: Any, ctx: Any) -> None:
        net.sgen.at[fault.element, "p_mw"] = 0.0
        net.sgen.at[fault.element, "q_mvar"] = 0.0
