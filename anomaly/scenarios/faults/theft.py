"""Energy theft (non-technical loss): a load draws more than its meter and its profile say (a
bypassed meter); the operator's model does not know, only the flows upstream carry it."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, GridEvent, register


@register
class Theft(GridEvent):
    name = "theft"
    hours = (24.0, 96.0)

    def draw(self, ctx: Any, rng: np.random.Generator, start: int, end: int) -> Fault | None:
        loads = ctx.nominal_load_p[ctx.nominal_load_p > 0]
        if not len(loads):
            return None
        # the larger loads: a theft too small to move any meter is not in anyone's data set
        big = loads[loads >= loads.quantile(0.5)]
        load = int(rng.choice(big.index))
        return Fault(
            self.name,
            start,
            end,
            "load",
            load,
            params={"extra_mw": round(float(loads[load]) * float(rng.uniform(0.6, 1.5)), 5)},
        )

    def apply(self, fault: Fault, net: Any, ctx: Any) -> None:
        p = float(net.load.at[fault.element, "p_mw"])
        extra = float(fault.params["extra_mw"])
        ratio = float(net.load.at[fault.element, "q_mvar"]) / p if abs(p) > 1e-9 else 0.0
        net.load.at[fault.element, "p_mw"] = p + extra
        net.load.at[fault.element, "q_mvar"] = float(net.load.at[fault.element, "q_mvar"]) + extra * ratio
