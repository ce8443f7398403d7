"""Transformer overheating: the cooling fails (fans or pumps stop), so the IEC 60076-7 top-oil
rise at the same load is higher and the oil heats up with the model's time constant."""

from __future__ import annotations

from typing import Any

import numpy as np

from anomaly.scenarios.faults.base import Fault, GridEvent, register


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
