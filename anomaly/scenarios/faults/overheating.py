"""Transformer overheating: the cooling fails (fans or pumps stop), so the IEC 60076-7 top-oil
rise at the same load is higher and the oil heats up with the model's time constant.

The label covers the overheating, not only the failure: it lasts until the oil has cooled to
within `COOLED_K` of what the same transformer with its cooling intact would have at that load
(with the model's 180-minute time constant that is hours after the fans come back), since until
then the transformer runs hotter and ages faster than it should."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, GridEvent, register

#: the oil counts as cooled when it is within this of the intact-cooling temperature (4 σ of the
#: oil sensor the generator models: a smaller excess no reading can tell from noise)
COOLED_K = 2.0


@register
class Overheating(GridEvent):
    name = "overheating"
    hours = (6.0, 24.0)

    def draw(self, ctx: Any, rng: np.random.Generator, start: int, end: int) -> Fault | None:
        if not ctx.temp_trafos:
            return None
        trafo = int(rng.choice(ctx.temp_trafos))
        return Fault(self.name, start, end, "trafo", trafo, params={"rise_factor": float(rng.uniform(1.8, 2.5))})

    def rise_factor(self, fault: Fault, trafo: int) -> float:
        return float(fault.params["rise_factor"]) if trafo == fault.element else 1.0

    def settle(self, fault: Fault, ctx: Any) -> bool:
        """Extend the window past the cooling failure while the oil is still `COOLED_K` hotter
        than intact cooling would keep it (the simulation's `oil_excess_k`)."""
        excess = ctx.extra.get("oil_excess_k", {}).get(fault.element)
        if excess is None:
            return True
        end = fault.end
        while end + 1 < len(excess) and excess[end + 1] > COOLED_K:
            end += 1
        fault.params["cooling_restored_step"] = fault.end
        fault.end = end
        return True
